# `shuma daemon-reexec` while services run, with a client pinging in a loop across it.
# Prints ps/status as JSON before and after, the guest uptime around them, the pinger's
# tally and whether the printer's numbered lines are contiguous. The host judges.
say() { echo "SCENARIO state-reexec: $*"; }
d=/etc/arje/scenarios/state-reexec
# shuma pretty-prints JSON: squeeze it onto one console line.
json() { shuma "$@" --json | tr -d ' \n'; }
shuma ws create $d/extra/app.toml >/dev/null && say "created app"
# Let the printer run a while first (read from its log stream, not a clock), so that its
# uptime before the re-exec is large beside the re-exec itself.
shuma logs -f app printer | awk '$1 >= 100 { exit }'

mkfifo /tmp/ping.fifo
(
    n=0 fail=0 during=0
    while :; do
        [ -e /tmp/reexec.start ] && [ ! -e /tmp/reexec.done ] && during=$((during + 1))
        if ! out=$(shuma ping 2>&1); then
            fail=$((fail + 1))
            say "ping failed: $out"
        fi
        n=$((n + 1))
        [ $n = 3 ] && echo ready >/tmp/ping.fifo
        [ -e /tmp/ping.stop ] && break
    done
    say "pings=$n failures=$fail during-reexec=$during"
) &
pinger=$!
read -r _ </tmp/ping.fifo

t0=$(cut -d' ' -f1 /proc/uptime)
say "status-before $(json status)"
say "ps-before $(json ps app)"
at=$(shuma logs app printer | tail -n 1)
# The window in which the pinger counts its pings as "during the re-exec": from the
# request until the new image has answered (the old one answers before it execs).
touch /tmp/reexec.start
shuma daemon-reexec >/dev/null
rc=$?
after=$(json ps app)
touch /tmp/reexec.done
say "reexec rc=$rc at-line=$at"
say "ps-after $after"
say "status-after $(json status)"
t1=$(cut -d' ' -f1 /proc/uptime)
say "uptime-window $t0 $t1"

# The printer well past the re-exec, then stop the pinger.
shuma logs -f app printer | awk -v t=$((at + 100)) '$1 >= t { exit }'
touch /tmp/ping.stop
wait $pinger
shuma logs app printer 2>/dev/null | awk '
    NR == 1 { first = $1; prev = $1; next }
    $1 != prev + 1 { gaps++; if (!g) g = prev }
    { prev = $1 }
    END { printf "SCENARIO state-reexec: lines first=%d last=%d gaps=%d first-gap-after=%d\n", first, prev, gaps, g }'
poweroff
