# The test-only panic trigger fires inside a handler; the daemon must keep serving.
shuma ping >/dev/null || echo "SCENARIO panic: FAIL no pong before"
arje-guest test-panic
if [ "$(shuma ping)" = pong ] && [ "$(shuma ping)" = pong ]; then
    echo "SCENARIO panic: PASS still answering after the panic"
else
    echo "SCENARIO panic: FAIL no pong after the panic"
fi
poweroff
