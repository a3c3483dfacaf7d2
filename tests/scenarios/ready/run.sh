# Boot to ready: the socket answers, then a clean poweroff through busybox.
if out="$(shuma ping)" && [ "$out" = pong ]; then
    echo "SCENARIO ready: PASS"
else
    echo "SCENARIO ready: FAIL shuma ping said '$out'"
fi
poweroff
