# Drives shuma over the socket: create a workspace with a service, run a one-shot,
# read logs and events. Each check prints a line; the host asserts on them.
ok=1
check() { # name, command...
    name=$1; shift
    if "$@"; then echo "SCENARIO drive: ok $name"; else echo "SCENARIO drive: FAILED $name"; ok=0; fi
}
d=/etc/arje/scenarios/drive
check create shuma ws create $d/extra/app.toml
check list sh -c 'shuma ws ls | grep -q app'
out=$(shuma run app --wait -- /bin/echo one-shot-output)
check oneshot-exit [ $? = 0 ]
shuma run app --wait -- /bin/sh -c 'exit 7'
check oneshot-exit-code [ $? = 7 ]
shuma run app --name said -- /bin/echo hello-from-run
check ps sh -c 'shuma ps app | grep -q ticker'
# The ticker prints once a second: its log has a tick once it has run; follow until one shows.
check logs sh -c 'shuma logs app ticker -f | grep -m1 -q "tick 1"'
check events sh -c 'shuma events | grep -qi started'
check stop shuma ws stop app --grace 1s
check gone sh -c '! shuma ws ls | grep -q app'
[ $ok = 1 ] && echo "SCENARIO drive: PASS" || echo "SCENARIO drive: FAIL"
# Power off over the control socket (Request::Shutdown), not through busybox's signal.
shuma poweroff
