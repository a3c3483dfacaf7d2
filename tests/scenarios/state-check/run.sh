# Boot 2 of the state tests: prints what the restored state looks like, one line per
# workspace (state and the limits in its cgroup files) and per command (pid, state, and
# the cgroup that pid is really in), then powers off. The host compares.
say() { echo "SCENARIO state-check: $*"; }
shuma ws ls | awk 'NR > 1 { print $1, $2 }' | while read -r name state; do
    cg=/sys/fs/cgroup/arje/$name
    mem=$(cat "$cg/memory.max" 2>/dev/null || echo -)
    pids=$(cat "$cg/pids.max" 2>/dev/null || echo -)
    say "ws $name $state memory.max=$mem pids.max=$pids"
done
shuma ps | awk 'NR > 1 { print $2, $3, $4, $5 }' | while read -r ws name pid state; do
    cg=-
    [ "$pid" != - ] && cg=$(sed -n 's/^0:://p' "/proc/$pid/cgroup" 2>/dev/null)
    say "cmd $ws $name $pid $state ${cg:--}"
done
# Pipelines as restored; a restored `chain` moves lines again in this boot (its sink's
# ring is new, so "n 1" is this boot's).
if shuma pipeline ls --workspace flow >/dev/null 2>&1; then
    shuma logs -f flow chain.sink | grep -m1 -q "n 1" && say "chain flows again"
    shuma pipeline ls --workspace flow | awk 'NR > 1 { print "SCENARIO state-check: pipe", $1, $2, $3, $4 }'
fi
# The event journal as this boot reads it (from the disk: events of the boots before).
shuma events | awk '/workspace (keep|w1) created/ { print "SCENARIO state-check: journal " $0 }
    { n++; if (!first) first = $1; last = $1 }
    END { print "SCENARIO state-check: journal has " n " events, ids " first ".." last }'
say "done"
poweroff
