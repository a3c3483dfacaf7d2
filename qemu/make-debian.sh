#!/usr/bin/env bash
# Builds a Debian 12 (bookworm) root filesystem image for booting with arje as PID 1
# through arje's initramfs (docs/HOST.md, "A Debian root").
#
# Two steps:
#  1. The base: `debootstrap --variant=minbase` with the packages below, from the Debian
#     mirror this machine's apt uses (read at run time from /etc/apt/sources.list*, or
#     ARJE_DEBIAN_MIRROR). It is cached as a tarball outside the clone,
#     ${XDG_CACHE_HOME:-$HOME/.cache}/arje/debian-bookworm-<hash>.tar, the hash covering
#     the suite, the variant and the package list: built once per machine, and a fresh
#     clone (CI) re-uses it.
#  2. The image: the base unpacked into a staging directory, arje staged into it (the
#     static arje-init at /usr/sbin/arje-init, shuma at /usr/local/bin/shuma, the
#     machine-command links in /usr/local/sbin, the virtio_net module and
#     /etc/arje/modules.order), the services' cards converted from the image's own unit
#     files (`shuma card from-unit --root STAGE ssh.service`, nginx.service, cron.service,
#     unedited) and the hand-written cards of what is not a service's unit (the network's
#     address) in /etc/arje/cards, fresh ssh host keys, the caller's ssh key for root,
#     then `mkfs.ext4 -d` (no loop mount) into a sparse image.
#
# Usage: qemu/make-debian.sh --base-only           (prints the cached tarball's path)
#        qemu/make-debian.sh --out IMG --bin DIR --authorized-key FILE
#                            [--cards DIR] [--kernel-dir DIR] [--label L] [--size 1G]
#                            [--hostname NAME] [--systemd] [--initrd OUT]
#   --bin DIR            static arje-init and shuma (scripts/build-static.sh's output)
#   --authorized-key F   an ssh public key, root's only authorized key
#   --cards DIR          the hand-written cards (default qemu/debian/cards: the network)
#   --kernel-dir DIR     the kernel tree of qemu/fetch-kernel.sh (default: fetched)
#   --systemd            also install systemd (+ udev, kmod) and configure it to do the
#                        same job (systemd-networkd for the address), for booting
#                        the same machine with
#                        init=/lib/systemd/systemd as a comparison (qemu/bench-debian.sh);
#                        a base of its own in the cache
#   --initrd OUT         also make Debian's own initramfs for the kernel, in the image
#                        (`mkinitramfs` in a chroot of the stage, /boot/initrd.img-VERSION
#                        beside /boot/vmlinuz-VERSION, as a Debian machine has them) and
#                        copy it to OUT, for booting with `init=/usr/sbin/arje-init`
#                        (docs/HOST.md, "Under the distribution's initramfs")
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
suite=bookworm
variant=minbase
# What the machine runs, beyond minbase (which has e2fsprogs, util-linux, hostname):
# no ifupdown, no init system: arje's cards bring the network up with iproute2.
# initramfs-tools (with its udev and kmod): the distribution's own initramfs, made in the
# image by `--initrd` for booting it with `init=/usr/sbin/arje-init`, as a Debian machine
# installed the usual way has it.
# sudo: a user who logs in over ssh and types `sudo reboot` (the test's `op`).
packages=(openssh-server nginx-light cron iproute2 procps netbase initramfs-tools sudo)

out="" bin="" key="" cards="$root/qemu/debian/cards" kernel_dir="" label="arje-debian"
size="1G" hostname="arje-debian" base_only=0 with_systemd=0 initrd=""
while [[ $# -gt 0 ]]; do
    case "$1" in
    --out) out="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    --authorized-key) key="$2"; shift 2 ;;
    --cards) cards="$2"; shift 2 ;;
    --kernel-dir) kernel_dir="$2"; shift 2 ;;
    --label) label="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    --hostname) hostname="$2"; shift 2 ;;
    --base-only) base_only=1; shift ;;
    --systemd) with_systemd=1; shift ;;
    --initrd) initrd="$2"; shift 2 ;;
    *) echo "qemu/make-debian.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [[ "$base_only" == 0 && ( -z "$out" || -z "$bin" || -z "$key" ) ]]; then
    echo "usage: $0 --out IMG --bin DIR --authorized-key FILE [options] | --base-only" >&2
    exit 2
fi

log() { echo "make-debian: $*" >&2; }
# The comparison image: systemd as Debian installs it, udev to find the root by its
# label and load the NIC's driver, kmod for udev's module loading.
[[ "$with_systemd" == 0 ]] || packages+=(systemd udev kmod)

# The first mirror apt is configured with for $suite's main component: deb822 .sources
# files (URIs/Suites fields) or one-line sources.list entries.
mirror_from_apt() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] || continue
        awk -v suite="$suite" '
            BEGIN { RS = ""; FS = "\n" }
            {
                uri = ""; ok = 0; deb = 0
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); uri = a[2] }
                    if ($i ~ /^Suites:/ && (" " $i " ") ~ (" " suite " ")) ok = 1
                    if ($i ~ /^Types:/ && $i ~ /(^|[ \t])deb([ \t]|$)/) deb = 1
                }
                if (uri != "" && ok && deb) { print uri; exit }
            }' "$f"
    done
    local lists=()
    [[ ! -f /etc/apt/sources.list ]] || lists+=(/etc/apt/sources.list)
    for f in /etc/apt/sources.list.d/*.list; do [[ -f "$f" ]] && lists+=("$f"); done
    [[ ${#lists[@]} -eq 0 ]] ||
        sed -nE "s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+)[[:space:]]+$suite[[:space:]].*/\2/p" \
            "${lists[@]}"
}

cache_dir="${XDG_CACHE_HOME:-${HOME:?neither XDG_CACHE_HOME nor HOME is set}/.cache}/arje"
hash="$(printf '%s\n' "$suite" "$variant" "${packages[@]}" | sha256sum | cut -c1-12)"
base="$cache_dir/debian-$suite-$hash.tar"

build_base() {
    command -v debootstrap >/dev/null || {
        log "debootstrap is missing: run scripts/setup.sh"
        exit 1
    }
    local mirror="${ARJE_DEBIAN_MIRROR:-}"
    [[ -n "$mirror" ]] || mirror="$(mirror_from_apt | head -n1)"
    [[ -n "$mirror" ]] || { log "no $suite mirror in apt's sources; set ARJE_DEBIAN_MIRROR"; exit 1; }
    local work
    work="$(mktemp -d "$cache_dir/debootstrap.XXXXXX")"
    # debootstrap mounts proc and sys inside the target; a failure can leave them there,
    # so they are unmounted before anything is deleted, and rm never leaves this file
    # system.
    trap 'umount -R "'"$work"'/target/proc" "'"$work"'/target/sys" 2>/dev/null || true; rm -rf --one-file-system "'"$work"'"' EXIT
    log "debootstrap $suite ($variant + ${packages[*]}); cached as $base"
    local t0=$SECONDS
    local inc
    inc="$(IFS=,; echo "${packages[*]}")"
    debootstrap --variant="$variant" --include="$inc" "$suite" "$work/target" "$mirror" \
        >"$work/debootstrap.log" 2>&1 || {
        tail -n 30 "$work/debootstrap.log" >&2
        log "debootstrap failed (log above)"
        exit 1
    }
    # What the image need not carry: downloaded packages and the package lists.
    rm -rf "$work"/target/var/cache/apt/archives/*.deb "$work"/target/var/lib/apt/lists/*
    tar --numeric-owner --xattrs --xattrs-include='*' -C "$work/target" -cf "$base.tmp" .
    mv "$base.tmp" "$base"
    log "base built in $((SECONDS - t0)) s: $(du -h "$base" | cut -f1)"
    # Removed here, not by the EXIT trap: the staging step below sets a trap of its own,
    # which replaced this one and left every built tree (150-200 MB) in the cache.
    umount -R "$work/target/proc" "$work/target/sys" 2>/dev/null || true
    rm -rf --one-file-system "$work"
    trap - EXIT
}

mkdir -p "$cache_dir"
# Two builds at once (two test processes, two clones) wait for each other here.
exec 9>"$cache_dir/debian.lock"
flock 9
[[ -f "$base" ]] || build_base
flock -u 9
if [[ "$base_only" == 1 ]]; then
    echo "$base"
    exit 0
fi

[[ -n "$kernel_dir" ]] || kernel_dir="$("$root/qemu/fetch-kernel.sh")"
stage="$(mktemp -d "${TMPDIR:-/tmp}/arje-debian.XXXXXX")"
trap 'rm -rf --one-file-system "'"$stage"'"' EXIT
tar --numeric-owner --xattrs --xattrs-include='*' -C "$stage" -xpf "$base"

# /dev, /proc, /sys and /run are mount points: the initramfs moves its mounts onto them.
rm -rf --one-file-system "${stage:?}"/dev/* "${stage:?}"/run/*
# Per-machine identity must not be shared by every image made from the cached base. The
# machine id is made on the machine's first boot, by arje-init itself (docs/HOST.md).
# The ssh host keys are made here, once per image, with `ssh-keygen -A` (this machine's,
# with the stage as its prefix: the stage has no /dev to chroot into): that is when
# Debian makes them (openssh-server's postinst, at install time), and its ssh.service,
# converted unedited below, expects them (its `sshd -t` fails without).
rm -f "$stage"/etc/ssh/ssh_host_*
ssh-keygen -q -A -f "$stage" >&2
: >"$stage/etc/machine-id"

install -m 0755 "$bin/arje-init" "$stage/usr/sbin/arje-init"
install -m 0755 "$bin/shuma" "$stage/usr/local/bin/shuma"
# docs/HOST.md, "The machine's own commands": ahead of the distribution's in PATH.
for n in poweroff reboot halt shutdown telinit; do
    ln -sf /usr/sbin/arje-init "$stage/usr/local/sbin/$n"
done
mkdir -p "$stage/etc/arje/cards"
install -m 0644 "$cards"/*.toml "$stage/etc/arje/cards/"
# arje's own cards for a host (a getty on the console), installed with arje-init.
install -m 0644 "$root"/host/cards/*.toml "$stage/etc/arje/cards/"
# The services' cards: Debian's own units, converted with no hand edit (docs/HOST.md, "What
# remains as cards"). Exit 5 is a card written with notes (directives not translated,
# listed on stderr and in the card); anything else is a failure.
# udev is Debian's three units in one card (workspace `udev`): the daemon, the coldplug
# `udevadm trigger` (after the daemon: its After= of the daemon's sockets) and `udevadm
# settle`, which the network's card waits for, as systemd orders them.
mkdir -p "$stage/etc/arje/from-unit"
convert() {
    local card="$1" rc=0
    shift
    "$bin/shuma" card from-unit --root "$stage" -o "$stage/etc/arje/cards/$card.toml" \
        --workspace "$card" "$@" 2>"$stage/etc/arje/from-unit/$card.notes" || rc=$?
    if [[ "$rc" != 0 && "$rc" != 5 ]]; then
        cat "$stage/etc/arje/from-unit/$card.notes" >&2
        log "shuma card from-unit $* failed (exit $rc)"
        exit 1
    fi
    log "$* -> /etc/arje/cards/$card.toml: $(tail -n1 "$stage/etc/arje/from-unit/$card.notes")"
}
convert ssh ssh.service
convert nginx nginx.service
convert cron cron.service
convert udev systemd-udevd.service systemd-udev-trigger.service systemd-udev-settle.service
# The network card's `ip -batch` file.
install -m 0644 "$root/qemu/debian/network.ip" "$stage/etc/arje/network.ip"

# The modules: the NIC's driver (virtio_net) is loaded by udev from the device's
# modalias, at its coldplug; it only has to be in the tree, with depmod's index. The
# power button's (button, evdev) are in the root's /etc/arje/modules.order, which
# arje-init loads before its runtime and its button watch start (arje's initramfs has
# loaded them already: those lines are EEXIST, which is fine; Debian's has not).
"$root/initramfs/modules.sh" "$kernel_dir" "$stage" virtio_net >/dev/null
"$root/initramfs/modules.sh" "$kernel_dir" "$stage" button evdev
version="$(cat "$kernel_dir/version")"
# The kernel's own lists, so that modprobe knows a built-in module as such.
cp "$kernel_dir/lib/modules/$version"/modules.{order,builtin,builtin.modinfo} \
    "$stage/lib/modules/$version/"
depmod -b "$stage" "$version"
if [[ "$with_systemd" == 0 ]]; then
    # The network card configures eth0: udev's predictable names (ens3) off, the way
    # Debian documents it.
    mkdir -p "$stage/etc/systemd/network"
    ln -sf /dev/null "$stage/etc/systemd/network/99-default.link"
fi

if [[ "$with_systemd" == 1 ]]; then
    # udev renames eth0 by its slot (ens3), hence the two names in the .network file.
    mkdir -p "$stage/etc/systemd/network"
    printf '[Match]\nName=eth0 en*\n\n[Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\n' \
        >"$stage/etc/systemd/network/10-eth0.network"
    systemctl --root="$stage" enable systemd-networkd.service >&2
fi

echo "$hostname" >"$stage/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
    "$hostname" >"$stage/etc/hosts"
# QEMU's user-mode network: the guest is 10.0.2.15, the gateway 10.0.2.2, DNS 10.0.2.3.
echo "nameserver 10.0.2.3" >"$stage/etc/resolv.conf"
# PAM's pam_env reads it at every ssh login (and logs an error without it); C.UTF-8 is
# built into glibc, no locales package needed.
echo "LANG=C.UTF-8" >"$stage/etc/default/locale"
# arje-init reads this table itself (docs/HOST.md, "The host's duties"): / checked and
# remounted, the rest mounted in order. The last four lines are there for the test
# (tests/tests/boot_debian.rs), one case of the format each: an escaped space with
# options for other programs, noauto, a missing disk with nofail, and a swap file.
cat >"$stage/etc/fstab" <<'EOF'
# <file system>  <mount point>  <type>  <options>  <dump>  <pass>
LABEL=@LABEL@    /              ext4    errors=remount-ro  0  1
tmpfs            /dev/shm       tmpfs   nosuid,nodev,mode=1777,X-mount.mkdir  0  0
tmpfs            /srv/with\040space  tmpfs  size=1m,mode=0750,X-mount.mkdir,x-test.note=ignored,comment=test  0  0
tmpfs            /mnt/never     tmpfs   noauto,X-mount.mkdir  0  0
LABEL=no-such-disk  /mnt/absent ext4    nofail  0  2
/swapfile        none           swap    sw,pri=5  0  0
EOF
sed -i "s/@LABEL@/$label/" "$stage/etc/fstab"
# The swap file: random bytes rather than zeros, because mkfs.ext4 -d stores zero
# blocks as holes and the kernel refuses a swap file with holes; mkswap then writes
# its header into the first page.
head -c 16M /dev/urandom >"$stage/swapfile"
chmod 0600 "$stage/swapfile"
mkswap -q "$stage/swapfile" >&2
# A cron job for the test: every minute a line on the console, which the test awaits
# (cron's own log line of the job reaches arje's journal through /dev/log).
echo '* * * * * root echo "arje-test: cron ran a job" >/dev/console' >"$stage/etc/cron.d/arje-test"
chmod 0644 "$stage/etc/cron.d/arje-test"
# Kernel settings: arje-init applies sysctl.d at boot as systemd-sysctl does, procps's
# own /usr/lib/sysctl.d/99-protect-links.conf among them. For the test, a package's file
# hidden by the administrator's of the same name, and a key this kernel lacks, allowed
# to fail by its leading '-'.
printf 'kernel.domainname = from-usr-lib\n' >"$stage/usr/lib/sysctl.d/60-arje-test.conf"
printf 'kernel.domainname = arje-test\n-kernel.arje_no_such_key = 1\n' >"$stage/etc/sysctl.d/60-arje-test.conf"
install -d -m 0700 "$stage/root/.ssh"
install -m 0600 "$key" "$stage/root/.ssh/authorized_keys"
# A user for the test, `op`, who may sudo without a password, with the same key.
useradd --root "$stage" --create-home --shell /bin/bash --groups sudo op
echo 'op ALL=(ALL) NOPASSWD: ALL' >"$stage/etc/sudoers.d/op"
chmod 0440 "$stage/etc/sudoers.d/op"
op_ids="$(awk -F: '$1 == "op" { print $3 ":" $4 }' "$stage/etc/passwd")"
install -d -m 0700 -o "${op_ids%:*}" -g "${op_ids#*:}" "$stage/home/op/.ssh"
install -m 0600 -o "${op_ids%:*}" -g "${op_ids#*:}" "$key" "$stage/home/op/.ssh/authorized_keys"

if [[ -n "$initrd" ]]; then
    # Debian's initramfs for this kernel, made as its kernel package's postinst makes it:
    # mkinitramfs in the machine itself (a chroot of the stage, its /dev, /proc and /sys
    # mounted in a mount namespace of its own, gone when it ends), last, so that its fsck
    # hook finds the root's type in /etc/fstab. It holds only the
    # modules the root needs (MODULES=list): the disk's and ext4's, copied into the
    # stage with their dependencies (initramfs/modules.sh's default roots).
    # (Into a directory of its own: its modules.order is not the root's.)
    mods="$(mktemp -d "${TMPDIR:-/tmp}/arje-mods.XXXXXX")"
    "$root/initramfs/modules.sh" "$kernel_dir" "$mods" >/dev/null
    cp -a "$mods/lib/." "$stage/lib/"
    rm -rf "$mods"
    depmod -b "$stage" "$version"
    install -m 0644 "$kernel_dir/vmlinuz-$version" "$stage/boot/vmlinuz-$version"
    install -m 0644 "$kernel_dir/config-$version" "$stage/boot/config-$version"
    echo "MODULES=list" >"$stage/etc/initramfs-tools/conf.d/arje-test.conf"
    printf '%s\n' virtio_pci virtio_blk crc32c_generic ext4 >>"$stage/etc/initramfs-tools/modules"
    t0=$SECONDS
    unshare --mount --propagation private -- bash -euc '
        stage="$1" version="$2"
        mount --rbind /dev "$stage/dev"
        mount -t proc proc "$stage/proc"
        mount -t sysfs sysfs "$stage/sys"
        chroot "$stage" mkinitramfs -o "/boot/initrd.img-$version" "$version"
    ' make-debian "$stage" "$version" >&2
    cp "$stage/boot/initrd.img-$version" "$initrd"
    log "Debian's initramfs for $version made in $((SECONDS - t0)) s: $(stat -c %s "$initrd") bytes, copied to $initrd"
fi

rm -f "$out"
truncate -s "$size" "$out"
mkfs.ext4 -q -F -L "$label" -E root_owner=0:0 -d "$stage" "$out" >&2
log "wrote $out ($size sparse, LABEL=$label, $(du -sh --apparent-size "$stage" | cut -f1) of files)"
