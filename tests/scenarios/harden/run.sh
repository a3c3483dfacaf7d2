# PID 1 under pressure (issue 9). Each check prints one line; the host asserts on them.
ok=1
say() { echo "SCENARIO harden: $*"; }
fail() { say "FAILED $*"; ok=0; }

# 1. The kernel starts init with RLIMIT_NOFILE 1024 and arje holds about 3 fds per
#    service: 400 services need more, so arje must raise its own soft limit.
for ws in a b; do
    f=/tmp/fd-$ws.toml
    { echo '[workspace]'; echo "name = \"fd-$ws\""
      i=0
      while [ $i -lt 200 ]; do
          echo '[[service]]'; echo "name = \"s$i\""; echo 'argv = ["/bin/sleep", "3600"]'
          i=$((i + 1))
      done; } >$f
    shuma ws create $f >/dev/null || fail "ws create fd-$ws"
done
running=$(shuma ps | grep -c ' running ')
say "running=$running"
[ "$running" -ge 400 ] && say "ok 400 services under the default fd limit" || fail "only $running of 400 running"
shuma run fd-a --name nofile --wait -- /bin/sh -c 'ulimit -n' >/dev/null 2>&1
say "child-nofile=$(shuma logs fd-a nofile 2>&1)"

# 2. A re-exec into something that is not arje is refused; the daemon and its children stay.
# Ids and pids of what runs (the uptime column moves on, so it is left out).
running_pids() { shuma ps | awk '/ running /{print $1, $4}' | md5sum; }
before=$(running_pids)
for bad in /etc/hostname /etc /etc/arje/scenarios/harden/run.sh; do
    if shuma daemon-reexec --binary $bad >/dev/null 2>&1; then fail "re-exec into $bad accepted"; fi
done
[ "$(shuma ping)" = pong ] || fail "no pong after refused re-execs"
after=$(running_pids)
[ "$before" = "$after" ] && say "ok bad re-exec binaries refused, children kept" || fail "children changed"

# 3. Signals nobody sends init on purpose: PID 1 must neither die nor stop.
for s in ALRM XCPU XFSZ VTALRM PROF IO SYS STKFLT TSTP TTIN TTOU 34 50 64; do
    kill -$s 1 2>/dev/null
done
[ "$(shuma ping)" = pong ] && say "ok still answering after stray signals" || fail "no pong after signals"

[ $ok = 1 ] && say "PASS" || say "FAIL"
shuma poweroff
