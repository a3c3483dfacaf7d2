# A file written on the state disk in one boot is read in the next. The host passes a
# token as scenario.token=... on the kernel command line.
token=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^scenario\.token=//p')
dir=/var/lib/arje
grep -q " $dir ext4 " /proc/mounts && echo "SCENARIO state: $dir is ext4"
if [ -f "$dir/token" ]; then
    echo "SCENARIO state: read $(cat "$dir/token")"
else
    echo "$token" >"$dir/token.tmp" && mv "$dir/token.tmp" "$dir/token" && sync
    echo "SCENARIO state: wrote $token"
fi
poweroff
