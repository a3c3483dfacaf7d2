#!/bin/sh
# Fetch the systemd units of a Debian 12 system from the distribution's packages, for
# the corpus test (shuma-card/tests/unit_corpus.rs). Idempotent: the .deb files are
# cached under target/debian-debs; what the test needs is committed under
# tests/units/debian/, one root-like directory per package:
#
#   debian/<package>/lib/systemd/system/...   the unit files and drop-ins, as shipped
#                                             (symlinks too: aliases and masks)
#   debian/<package>/etc/default/...          the environment files units read
#   debian/base-passwd/etc/{passwd,group}     base-passwd's passwd.master, group.master
#   debian/MANIFEST                           package, version, file
#   debian/PROGRAMS                           every program the packages install in a
#                                             bin or sbin directory (the test creates
#                                             them empty, so bare names in ExecStart=
#                                             resolve as on the real system)
#
# The files are the packages' own text, under each package's license (see
# /usr/share/doc/<package>/copyright in the package).
#
# Needs apt-get (with Debian 12 "bookworm" sources) and dpkg-deb. Run from anywhere:
#   sh shuma-card/tests/units/fetch-debian-units.sh
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../../.." && pwd)
cache="${CARGO_TARGET_DIR:-$top/target}/debian-debs"
out="$here/debian"

# The services named in issue 12, what a minimal Debian 12 system ships (debootstrap's
# required and important priorities, plus ssh), and a few common daemons.
packages="
openssh-server nginx-common cron rsyslog dbus postgresql-common postgresql-15
util-linux systemd systemd-timesyncd udev e2fsprogs procps kmod apt man-db logrotate
ifupdown console-setup keyboard-configuration exim4-base apparmor unattended-upgrades
initramfs-tools sudo fdisk lvm2 mdadm nftables iptables chrony ntpsec
avahi-daemon cups-daemon bluez nfs-common rpcbind smartmontools isc-dhcp-client
wpasupplicant network-manager polkitd haveged irqbalance rsync coreutils base-passwd
bash dash login passwd mount
"

mkdir -p "$cache"
cd "$cache"
for p in $packages; do
    if ! ls "${p}"_*.deb >/dev/null 2>&1; then
        apt-get download "$p" >/dev/null
    fi
done

new="$out.new"
rm -rf "$new"
mkdir -p "$new"
: > "$new/MANIFEST"
: > "$new/PROGRAMS"
for deb in "$cache"/*.deb; do
    p=$(dpkg-deb -f "$deb" Package)
    v=$(dpkg-deb -f "$deb" Version)
    tmp=$(mktemp -d)
    dpkg-deb -x "$deb" "$tmp"
    (
        cd "$tmp"
        # Unit files and drop-ins; not the .wants/.requires links of enabling.
        for d in lib/systemd/system usr/lib/systemd/system; do
            [ -d "$d" ] || continue
            find "$d" -maxdepth 2 \( -type f -o -type l \) \
                ! -path '*.wants/*' ! -path '*.requires/*' \
                \( -name '*.service' -o -name '*.socket' -o -name '*.timer' \
                   -o -name '*.target' -o -name '*.conf' \)
        done
        [ -d etc/default ] && find etc/default -type f
        true
    ) | sort | while read -r f; do
        mkdir -p "$new/$p/$(dirname "$f")"
        cp -P "$tmp/$f" "$new/$p/$f"
        printf '%s\t%s\t%s\n' "$p" "$v" "$f" >> "$new/MANIFEST"
    done
    if [ "$p" = base-passwd ]; then
        mkdir -p "$new/$p/etc"
        cp "$tmp/usr/share/base-passwd/passwd.master" "$new/$p/etc/passwd"
        cp "$tmp/usr/share/base-passwd/group.master" "$new/$p/etc/group"
        printf '%s\t%s\t%s\n' "$p" "$v" "etc/passwd (passwd.master)" >> "$new/MANIFEST"
        printf '%s\t%s\t%s\n' "$p" "$v" "etc/group (group.master)" >> "$new/MANIFEST"
    fi
    (cd "$tmp" && find bin sbin usr/bin usr/sbin usr/lib/systemd -maxdepth 1 \
        \( -type f -o -type l \) 2>/dev/null | sed 's|^|/|') >> "$new/PROGRAMS"
    rm -rf "$tmp"
done
sort -o "$new/MANIFEST" "$new/MANIFEST"
sort -u -o "$new/PROGRAMS" "$new/PROGRAMS"
rm -rf "$out"
mv "$new" "$out"
echo "$(grep -c . "$out/MANIFEST") files, $(grep -c . "$out/PROGRAMS") programs from $(ls "$cache"/*.deb | wc -l) packages in $out"
