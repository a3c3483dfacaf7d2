# On the real root: where PID 1 runs from, what / is, a counter written WITHOUT a sync
# (the shutdown's unmount must flush it), and the kernel's ext4 messages about vda
# (journal recovery or orphan cleanup there means the last shutdown left it dirty).
say() { echo "SCENARIO root: $*"; }
say "pid1 exe $(readlink /proc/1/exe)"
while read -r _id _parent _majmin _root mp opts rest; do
    [ "$mp" = / ] && say "root mount $opts ${rest#*- }"
done </proc/self/mountinfo
[ -e /init ] && say "initramfs /init visible" || say "no initramfs /init"
# /bin/shuma is a link to /sbin/arje-init (the multi-call binary).
say "shuma $(shuma ping 2>&1)"
boots=$(cat /var/boots 2>/dev/null || echo 0)
say "boots before $boots"
if echo $((boots + 1)) 2>/dev/null >/var/boots; then
    say "wrote boots $((boots + 1))"
else
    say "root is read-only"
fi
dmesg | grep 'EXT4-fs (vda)' | while read -r line; do say "kmsg $line"; done
say "powering off"
poweroff
