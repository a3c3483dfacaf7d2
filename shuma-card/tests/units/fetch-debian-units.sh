#!/bin/sh
# Fetch the systemd unit files of a Debian 12 system from the distribution's packages,
# for the corpus test (shuma-card/tests/unit_corpus.rs). Idempotent: the .deb files are
# cached under target/debian-debs; the unit files land in tests/units/debian/<package>/,
# exactly as each package ships them under lib/systemd/system (or usr/lib/...), and
# tests/units/debian/MANIFEST lists package, version and file.
#
# The unit files are the packages' own text, under each package's license
# (see /usr/share/doc/<package>/copyright in the package).
#
# Needs apt-get (with Debian 12 "bookworm" sources) and dpkg-deb. Run from anywhere:
#   sh shuma-card/tests/units/fetch-debian-units.sh
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../../.." && pwd)
cache="${CARGO_TARGET_DIR:-$top/target}/debian-debs"
out="$here/debian"

# The services named in issue 12, and what a minimal Debian 12 system (debootstrap's
# "important" priority plus ssh) ships.
packages="
openssh-server nginx-common cron rsyslog dbus postgresql-common postgresql-15
util-linux systemd systemd-timesyncd udev e2fsprogs procps kmod apt man-db logrotate
ifupdown console-setup keyboard-configuration exim4-base apparmor unattended-upgrades
initramfs-tools sudo fdisk lvm2 mdadm nftables iptables chrony ntpsec
avahi-daemon cups-daemon bluez nfs-common rpcbind smartmontools isc-dhcp-client
wpasupplicant network-manager polkitd haveged irqbalance rsync
"

mkdir -p "$cache" "$out"
cd "$cache"
for p in $packages; do
    if ! ls "${p}"_*.deb >/dev/null 2>&1; then
        apt-get download "$p" >/dev/null
    fi
done

rm -rf "$out".new
mkdir -p "$out".new
: > "$out".new/MANIFEST
for deb in "$cache"/*.deb; do
    p=$(dpkg-deb -f "$deb" Package)
    v=$(dpkg-deb -f "$deb" Version)
    tmp=$(mktemp -d)
    dpkg-deb -x "$deb" "$tmp"
    for d in lib/systemd/system usr/lib/systemd/system; do
        [ -d "$tmp/$d" ] || continue
        (cd "$tmp/$d" && find . -maxdepth 2 \( -type f -o -type l \) ! -path '*.wants/*' ! -path '*.requires/*' \
            \( -name '*.service' -o -name '*.socket' -o -name '*.timer' -o -name '*.conf' \) \
            | sed 's|^\./||' | sort) | while read -r f; do
            mkdir -p "$out.new/$p/$(dirname "$f")"
            cp -P "$tmp/$d/$f" "$out.new/$p/$f"
            printf '%s\t%s\t%s/%s\n' "$p" "$v" "$d" "$f" >> "$out".new/MANIFEST
        done
    done
    rm -rf "$tmp"
done
sort -o "$out".new/MANIFEST "$out".new/MANIFEST
rm -rf "$out"
mv "$out".new "$out"
echo "$(grep -c . "$out/MANIFEST") files from $(ls "$cache"/*.deb | wc -l) packages in $out"
