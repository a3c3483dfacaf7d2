# Readiness and dependencies in the guest (issue 10). Workspace "chain" starts in
# dependency order, not card order, and `shuma ws create --wait-ready` returns once all
# of it is ready; workspace "stuck" has a service that never becomes ready, and the same
# command exits 4 naming it with its stderr. Prints `ps`, `logs`, the stderr of shuma
# and the whole journal as "SCENARIO readiness: ..." lines; the host test checks the
# order of events by their ids. Each check here prints "ok NAME" or "FAILED NAME".
n=readiness
d=/etc/arje/scenarios/$n
ok=1
say() { echo "SCENARIO $n: $*"; }
check() { # name, command...
    name=$1; shift
    if "$@"; then say "ok $name"; else say "FAILED $name"; ok=0; fi
}
prefix() { sed "s/^/SCENARIO $n: $1: /"; }

# 1. The chain: web after db and cache, db after net; every command ready on return.
shuma ws create $d/extra/chain.toml --wait-ready --timeout 30s >/tmp/chain.out 2>&1
rc=$?
prefix create-chain </tmp/chain.out
say "chain --wait-ready exit $rc"
shuma ps chain | prefix ps
shuma logs chain web | prefix web-log
shuma wait-ready chain web --timeout 30s
check wait-ready-web [ $? = 0 ]

# The exec probe runs in the service's own leaf cgroup.
cache=$(shuma ps chain | awk '$3 == "cache" {print $4}')
say "cache leaf: $(cat /proc/$cache/cgroup)"
say "cache probe leaf: $(cat /run/cache-probe.cgroup)"
check probe-in-service-leaf [ "$(cat /run/cache-probe.cgroup)" = "$(cat /proc/$cache/cgroup)" ]
check probe-leaf-is-cache grep -qE '^0::/arje/chain/[0-9]+-cache$' /run/cache-probe.cgroup

# Stopping goes the other way: web before what it is after.
check stop-chain shuma ws stop chain --grace 2s

# 2. A service that never becomes ready: its stderr is the verdict's last words.
shuma ws create $d/extra/stuck.toml --wait-ready --timeout 30s 2>/tmp/stuck.err
rc=$?
say "stuck --wait-ready exit $rc"
prefix stuck-stderr </tmp/stuck.err
shuma wait-ready stuck mute --timeout 30s 2>/tmp/stuck-again.err
say "stuck wait-ready exit $?"
prefix stuck-again-stderr </tmp/stuck-again.err
shuma ps stuck | prefix stuck-ps
shuma ws show stuck | prefix stuck-show
check stop-stuck shuma ws stop stuck --grace 2s

shuma events | prefix event
[ $ok = 1 ] && say PASS || say FAIL
shuma poweroff
