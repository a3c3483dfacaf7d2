# Memory limits in the guest: a hog in workspace "hog" (memory_max 32M) is OOM-killed
# while workspace "calm" keeps its ticker and `shuma ping` keeps answering; a probe
# reads its own cgroup first thing; `shuma ws set` rewrites memory.max of a running
# workspace. Each check prints "ok NAME" or "FAILED NAME"; the host asserts on them.
n=cg-memory
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

# A pinger for the whole scenario: every answer and every failure is counted.
(
    good=0 bad=0
    while [ ! -e /tmp/stop-ping ]; do
        if shuma ping >/dev/null 2>&1; then good=$((good + 1)); else bad=$((bad + 1)); fi
        sleep 0.1
    done
    echo "$good $bad" >/tmp/ping.counts
) &
pinger=$!

check create-calm shuma ws create $d/extra/calm.toml
check create-hog shuma ws create $d/extra/hog.toml
started=$(wait_event 'calm/ticker started pid')
ticker=${started##* }
say "ticker: $started"
check hog-memory-max [ "$(cat $cg/hog/memory.max)" = 33554432 ]
check calm-memory-max [ "$(cat $cg/calm/memory.max)" = 67108864 ]

# The probe's first read of /proc/self/cgroup must be its run leaf.
shuma run calm --name probe --wait -- /bin/cg-probe self calm probe
check probe-in-leaf [ $? = 0 ]
shuma logs calm probe | sed "s/^/SCENARIO $n: /"

# The hog: --wait returns when it has been reaped; 137 = 128 + SIGKILL.
shuma run hog --name eater --wait -- /bin/cg-probe hog >/dev/null
rc=$?
say "hog exit code $rc"
check hog-killed [ $rc = 137 ]
say "exit event: $(wait_event 'hog/eater pid [0-9]+ exited')"
say "oom event: $(wait_event 'hog(/eater)? OOM')"
shuma logs hog eater | tail -n 2 | sed "s/^/SCENARIO $n: hog said: /"
shuma events | grep -E 'hog|calm' | sed "s/^/SCENARIO $n: event: /"

# The neighbour is untouched: same ticker pid, still running, never exited.
check ticker-alive [ -d /proc/$ticker ]
check ticker-still-listed sh -c "shuma ps calm | grep ticker | grep -q $ticker"
check ticker-never-exited sh -c "! shuma events | grep -q 'calm/ticker pid .* exited'"

# A running workspace's memory.max rewritten.
check ws-set shuma ws set calm memory_max=48M
say "calm memory.max after set: $(cat $cg/calm/memory.max)"
check ws-set-file [ "$(cat $cg/calm/memory.max)" = 50331648 ]

shuma caps | sed "s/^/SCENARIO $n: caps: /"
check caps-memory-max sh -c "shuma caps | grep -qE '^memory.max +yes'"
check caps-clone-into-cgroup sh -c "shuma caps | grep -qE '^clone-into-cgroup +yes'"
shuma ws stats calm | sed "s/^/SCENARIO $n: stats: /"
shuma top --once | sed "s/^/SCENARIO $n: top: /"

touch /tmp/stop-ping
wait $pinger
read good bad </tmp/ping.counts
say "pings answered=$good failed=$bad"
check ping-throughout [ "$good" -gt 0 -a "$bad" = 0 ]
check ping-now shuma ping
[ $ok = 1 ] && say PASS || say FAIL
poweroff
