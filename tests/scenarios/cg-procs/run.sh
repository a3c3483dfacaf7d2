# Process limits and stopping in the guest: a fork bomb in workspace "bomb" (pids_max
# 64) stays at or under 64 tasks, a pids.max event is recorded, and stopping the
# workspace leaves no process and no cgroup; a service that double-forks a daemon and
# exits still has the daemon killed when its workspace stops. `shuma ping` answers
# throughout. Each check prints "ok NAME" or "FAILED NAME"; the host asserts on them.
n=cg-procs
d=/etc/arje/scenarios/$n
cg=/sys/fs/cgroup/arje
ok=1
say() { echo "SCENARIO $n: $*"; }
check() { # name, command...
    name=$1; shift
    if "$@"; then say "ok $name"; else say "FAILED $name"; ok=0; fi
}
# Block until the journal holds an event matching the ERE $1 (past or future); print it.
wait_event() {
    fifo=/tmp/events.$$.$RANDOM
    mkfifo $fifo
    shuma events -f >$fifo &
    follower=$!
    grep -m1 -E "$1" <$fifo
    kill $follower 2>/dev/null
    wait $follower 2>/dev/null
    rm -f $fifo
}
# How many of the pids in file $1 are alive (present and not a zombie).
alive() {
    count=0
    for p in $(cat "$1"); do
        read -r _ _ st _ </proc/$p/stat 2>/dev/null && [ "$st" != Z ] && count=$((count + 1))
    done
    echo $count
}

(
    good=0 bad=0
    while [ ! -e /tmp/stop-ping ]; do
        if shuma ping >/dev/null 2>&1; then good=$((good + 1)); else bad=$((bad + 1)); fi
        sleep 0.1
    done
    echo "$good $bad" >/tmp/ping.counts
) &
pinger=$!

# The fork bomb.
check create-bomb shuma ws create $d/extra/bomb.toml
check bomb-pids-max [ "$(cat $cg/bomb/pids.max)" = 64 ]
check bomb-started shuma run bomb --name bomb -- /bin/cg-probe bomb
say "pids event: $(wait_event 'bomb hit pids.max')"
current=$(cat $cg/bomb/pids.current)
peak=$(cat $cg/bomb/pids.peak 2>/dev/null || echo none)
cat $cg/bomb/*/cgroup.procs >/tmp/bomb.pids
tasks=$(wc -l </tmp/bomb.pids)
say "bomb pids.current=$current pids.peak=$peak tasks=$tasks"
check bomb-current-bounded [ "$current" -le 64 ]
check bomb-peak-bounded sh -c "[ $peak = none ] || [ $peak -le 64 ]"
check bomb-tasks-bounded [ "$tasks" -le 64 ]
check bomb-ping-during shuma ping
check bomb-stop shuma ws stop bomb --grace 1s
check bomb-cgroup-gone [ ! -e $cg/bomb ]
left=$(alive /tmp/bomb.pids)
say "bomb processes alive after stop: $left"
check bomb-nothing-left [ "$left" = 0 ]
check bomb-no-probe sh -c "! pgrep -f 'cg-probe bomb' >/dev/null"

# The double-forking service.
check create-svc shuma ws create $d/extra/svc.toml
say "spawner: $(wait_event 'svc/spawner pid [0-9]+ exited')"
daemon=$(cat /run/daemon.pid)
echo $daemon >/tmp/daemon.pids
say "daemon pid $daemon in $(cat /proc/$daemon/cgroup) with parent $(cut -d' ' -f4 /proc/$daemon/stat)"
check daemon-alive [ "$(alive /tmp/daemon.pids)" = 1 ]
check daemon-in-leaf grep -qE '^0::/arje/svc/[0-9]+-spawner$' /proc/$daemon/cgroup
check svc-stop shuma ws stop svc --grace 1s
check daemon-gone [ "$(alive /tmp/daemon.pids)" = 0 ]
check svc-cgroup-gone [ ! -e $cg/svc ]

touch /tmp/stop-ping
wait $pinger
read good bad </tmp/ping.counts
say "pings answered=$good failed=$bad"
check ping-throughout [ "$good" -gt 0 -a "$bad" = 0 ]
check ping-now shuma ping
[ $ok = 1 ] && say PASS || say FAIL
poweroff
