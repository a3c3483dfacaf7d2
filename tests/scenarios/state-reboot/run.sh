# Boot 1 of the reboot test: a workspace with limits (one of them changed after creation,
# so boot 2 shows the live limits, not the card's) and a service; then reboot. Boot 2
# runs state-check.
# This workspace is restored after the reboot and this task, interrupted by it, runs
# again: only the boot that chose this scenario on the command line acts.
tr ' ' '\n' </proc/cmdline | grep -qx 'arje.cards=/etc/arje/scenarios/state-reboot' || exit 0
say() { echo "SCENARIO state-reboot: $*"; }
d=/etc/arje/scenarios/state-reboot
shuma ws create $d/extra/keep.toml >/dev/null && say "created keep"
shuma ws set keep memory_max=96M >/dev/null && say "set memory_max=96M"
# The service has run once it has printed (read from its log stream, not a clock).
shuma logs -f keep svc | grep -m1 -q "tick 1" && say "svc printed"
# Two pipelines: `chain` has moved a line from its source to its sink, `flaky` has
# failed and been restarted three times (read from the journal as it happens).
shuma ws create $d/extra/flow.toml >/dev/null && say "created flow"
shuma logs -f flow chain.sink | grep -m1 -q "n 1" && say "chain flowed"
shuma events -f | grep -m3 "pipeline flow/flaky: node src failed" >/dev/null && say "flaky restarted"
shuma pipeline ls --workspace flow | awk 'NR > 1 { print "SCENARIO state-reboot: pipe", $1, $2, $3, $4 }'
shuma ps keep | awk 'NR > 1 { print "SCENARIO state-reboot: cmd", $2, $3, $4, $5 }'
shuma events | awk '/workspace keep created/ { print "SCENARIO state-reboot: journal " $0 }'
say "calling reboot"
reboot
