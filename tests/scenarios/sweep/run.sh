# The crash sweep through cgroups (issue 9), in the guest. PID 1 arje runs this; it
# starts a second arje-init in subreaper mode with its own socket, state directory and
# cgroup subtree (/sys/fs/cgroup/nested, beside PID 1's own), creates a workspace with a
# service through it, plants in that subtree what the nested arje's snapshot cannot
# know, kill -9's the nested arje and starts it again on the same state:
#   - a leaf by hand, naming no command, with a process in it: killed, then removed;
#   - a leaf named as a `run` created after the snapshot was written (id 50), holding a
#     session leader: adopted as that ad-hoc command (a `run` answered just before a
#     crash, whose Started does not wait for the snapshot);
#   - a workspace directory the snapshot lacks, with a process in it: killed, removed.
# Each check prints "ok NAME" or "FAILED NAME"; the host asserts on them. Waits are on
# events (the nested arje's own log line, its journal, `wait` for a child), not clocks.
n=sweep
d=/etc/arje/scenarios/$n
root=/sys/fs/cgroup/nested
sub=$root/arje
sock=/run/nested/control.sock
state=/run/nested/state
ok=1
say() { echo "SCENARIO $n: $*"; }
check() { # name, command...
    name=$1; shift
    if "$@"; then say "ok $name"; else say "FAILED $name"; ok=0; fi
}
ns() { shuma --socket $sock "$@"; }
quiet() { "$@" >/dev/null; }
# Block until the nested arje's journal holds an event matching the ERE $1 (past or
# future); print it.
wait_event() {
    fifo=/tmp/events.$$.$RANDOM
    mkfifo $fifo
    ns events -f >$fifo &
    follower=$!
    grep -m1 -E "$1" <$fifo
    kill $follower 2>/dev/null
    wait $follower 2>/dev/null
    rm -f $fifo
}
# Start the nested arje-init (this initramfs's /init) with its log in file $1; return
# once it logs that its control socket is ready (or it died first: then fail). Sets
# $nested to its pid.
start_nested() {
    logf=$1
    out=/tmp/nested-out.$$.$RANDOM ready=/tmp/nested-ready.$$.$RANDOM
    mkfifo $out $ready
    /init --subreaper --socket $sock --state-dir $state --cgroup-root $root \
        --shutdown-timeout 5s 2>$out &
    nested=$!
    awk -v logf=$logf '
        { print >> logf; fflush(logf) }
        /control socket ready/ && !seen { seen = 1; print "ready"; fflush() }
    ' <$out >$ready &
    read -r line <$ready
    rm -f $out $ready
    [ "$line" = ready ]
}
# The pid `shuma ps` shows for command $1 of workspace app.
pid_of() { ns ps app | awk -v c="$1" '$3 == c { print $4 }'; }
# A process planted by hand in cgroup $1, running the rest; returns once it is in
# place (it says so on a fifo). Sets $planted to its pid.
plant() { # cgroup, command...
    cg=$1; shift
    fifo=/tmp/plant.$$.$RANDOM
    mkfifo $fifo
    sh -c 'echo $$ >"$1/cgroup.procs"; echo moved >"$2"; shift 2; exec "$@"' \
        plant $cg $fifo "$@" &
    planted=$!
    read -r _ <$fifo
    rm -f $fifo
}
dump() { # on failure: what the nested arje said
    for f in /tmp/nested-1.log /tmp/nested-2.log; do
        [ -e $f ] && sed "s|^|SCENARIO $n: log $(basename $f): |" $f
    done
}

mkdir -p /run/nested $root
check nested-started start_nested /tmp/nested-1.log
check nested-cgroups [ -d $sub ]
check app-created quiet ns ws create $d/extra/app.toml
svc=$(pid_of svc)
say "svc pid before: $svc"
check svc-running [ -n "$svc" -a "$svc" != - ]

# What the snapshot cannot know: planted by hand, after its last write.
mkdir $sub/app/intruder
plant $sub/app/intruder /bin/sleep 3600
intruder=$planted
# setsid makes it a session leader, as the spawner's child is (busybox's setsid does
# not fork here: a background job of this shell leads no process group).
mkdir $sub/app/50-late
plant $sub/app/50-late setsid /bin/sleep 3600
late=$planted
mkdir $sub/ghost
plant $sub/ghost /bin/sleep 3600
ghost=$planted
check intruder-planted [ "$(cat $sub/app/intruder/cgroup.procs)" = $intruder ]
check late-planted [ "$(cat $sub/app/50-late/cgroup.procs)" = $late ]
check ghost-planted [ "$(cat $sub/ghost/cgroup.procs)" = $ghost ]
say "planted intruder=$intruder late=$late ghost=$ghost"

kill -9 $nested
wait $nested
check nested-killed [ $? = 137 ]
check svc-outlived-the-crash [ -d /proc/$svc ]

check nested-restarted start_nested /tmp/nested-2.log
svc_after=$(pid_of svc)
say "svc pid after: $svc_after"
check svc-adopted-same-pid [ "$svc_after" = "$svc" ]
check svc-adopted-logged grep -q "adopted app/svc pid $svc" /tmp/nested-2.log
# No second copy: the service's leaf holds its one process, and no other leaf of the
# workspace holds a sleep of the card's.
svc_leaf=$(ls -d $sub/app/*-svc)
check svc-one-process [ "$(cat $svc_leaf/cgroup.procs)" = "$svc" ]
check svc-listed-once [ "$(ns ps app | awk '$3 == "svc"' | wc -l)" = 1 ]
check late-adopted [ "$(pid_of late)" = "$late" ]

say "intruder warning: $(wait_event 'killed what ran in cgroup intruder')"
wait $intruder
check intruder-killed [ $? = 137 ]
say "intruder removed: $(wait_event 'removed cgroup intruder')"
check intruder-leaf-removed [ ! -e $sub/app/intruder ]

say "ghost warning: $(wait_event 'ghost')"
wait $ghost
check ghost-killed [ $? = 137 ]
say "ghost stopped: $(wait_event 'workspace ghost stopped')"
check ghost-removed [ ! -e $sub/ghost ]

check ping-after quiet ns ping
kill -TERM $nested
wait $nested
check nested-stopped [ $? = 0 ]
[ $ok = 1 ] || dump
[ $ok = 1 ] && say "PASS" || say "FAIL"
poweroff
