# 1,000 double-forked grandchildren that exit at once: each ( cmd & ) subshell exits
# before its child, so the child is reparented to PID 1, which must reap it.
i=0
while [ $i -lt 1000 ]; do
    ( /bin/true & )
    i=$((i + 1))
done
echo "SCENARIO orphans: spawned $i"
zombies() {
    n=0
    for s in /proc/[0-9]*/stat; do
        # Field 3 is the state; a Z is a zombie nobody has reaped.
        read -r _ _ st _ <"$s" 2>/dev/null && [ "$st" = Z ] && n=$((n + 1))
    done
    echo $n
}
# The last grandchildren may still be running or just exiting: give the reaper a
# bounded number of looks, and report the final count whatever it is.
tries=0
z=$(zombies)
while [ "$z" != 0 ] && [ $tries -lt 50 ]; do
    sleep 0.2
    tries=$((tries + 1))
    z=$(zombies)
done
echo "SCENARIO orphans: zombies=$z after $tries extra looks"
shuma status | grep -i orphan | sed 's/^/SCENARIO orphans: /'
poweroff
