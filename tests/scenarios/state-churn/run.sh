# The power-cut test's boot 1: create and stop workspaces in a loop (w1, w2, ...; w(i-2)
# is stopped after wi is created, so at any moment the workspaces are a window of at
# most three consecutive names) until the host kills QEMU. Each time the durable
# snapshot's content changes (md5 of the file on the state disk), a line says so.
# After the power cut this workspace is restored and this task runs again: only the
# boot that chose this scenario on the command line acts.
tr ' ' '\n' </proc/cmdline | grep -qx 'arje.cards=/etc/arje/scenarios/state-churn' || exit 0
say() { echo "SCENARIO state-churn: $*"; }
snap=/var/lib/arje/snapshot.bin
last=$(md5sum <$snap 2>/dev/null)
seen=0
i=0
while [ $i -lt 100000 ]; do
    i=$((i + 1))
    printf '[workspace]\nname = "w%d"\nmemory_max = "32M"\npids_max = 8\n\n[[service]]\nname = "svc"\nargv = ["/bin/sleep", "100000"]\nstop_grace = "1s"\n' $i >/tmp/w.toml
    shuma ws create /tmp/w.toml >/dev/null || say "create w$i FAILED"
    if [ $i -gt 2 ]; then
        shuma ws stop w$((i - 2)) >/dev/null || say "stop w$((i - 2)) FAILED"
    fi
    say "step $i"
    now=$(md5sum <$snap 2>/dev/null)
    if [ "$now" != "$last" ]; then
        last=$now
        seen=$((seen + 1))
        say "durable write seen $seen at step $i"
    fi
done
