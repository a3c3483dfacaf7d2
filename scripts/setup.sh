#!/usr/bin/env bash
# Installs everything the boot tests and the demo need, idempotently: Debian packages
# (apt-get update only when one is missing), the musl target (a failure is tolerated:
# build-static.sh falls back to glibc crt-static), and Debian's kernel (cached).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { echo "setup: $*" >&2; }

# package name -> a file it installs, to tell "installed" without asking dpkg per package.
declare -A want=(
    [qemu-system-x86]=/usr/bin/qemu-system-x86_64
    [busybox-static]=/bin/busybox
    [cpio]=/usr/bin/cpio
    [kmod]=/usr/sbin/modinfo
    [e2fsprogs]=/usr/sbin/mkfs.ext4
    [tini]=/usr/bin/tini-static
    [catatonit]=/usr/bin/catatonit
    # Readiness tests (issue 10) use the real programs: systemd's own sd_notify client,
    # a daemon that links libsystemd (dbus-daemon), and python3 for small listeners.
    [systemd]=/usr/bin/systemd-notify
    [dbus-daemon]=/usr/bin/dbus-daemon
    [python3]=/usr/bin/python3
    # A Debian root for the boot test of a whole machine (issue 11, qemu/make-debian.sh),
    # and the ssh client that logs in to it.
    [debootstrap]=/usr/sbin/debootstrap
    [openssh-client]=/usr/bin/ssh-keygen
)
missing=()
for pkg in "${!want[@]}"; do
    [[ -e "${want[$pkg]}" ]] || missing+=("$pkg")
done
# busybox (dynamic) also installs /bin/busybox: the static one is what an initramfs needs.
if [[ -e /bin/busybox ]] && readelf -l /bin/busybox 2>/dev/null | grep -q 'program interpreter'; then
    missing+=(busybox-static)
fi
if [[ ${#missing[@]} -gt 0 ]]; then
    log "installing ${missing[*]}"
    sudo_=""
    [[ "$(id -u)" == 0 ]] || sudo_=sudo
    $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
else
    log "packages present"
fi

if command -v rustup >/dev/null; then
    if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
        rustup target add x86_64-unknown-linux-musl >&2 || log "musl target unavailable: static glibc will be used"
    fi
fi

# The host side of a guest's vsock for the boot test of `shuma --vsock` (issue 14): this
# machine's kernel has no vhost_vsock, so QEMU's vhost-user-vsock-pci with rust-vmm's
# user-space device, which offers the host a unix socket (hybrid vsock). Built once per
# machine from crates.io, pinned, into ~/.cache/arje (a few minutes the first time).
vdv_root="${XDG_CACHE_HOME:-$HOME/.cache}/arje/vhost-device-vsock-0.3.0"
if [[ ! -x "$vdv_root/bin/vhost-device-vsock" ]]; then
    log "building vhost-device-vsock 0.3.0 (once per machine)"
    cargo install --quiet --locked vhost-device-vsock --version 0.3.0 --root "$vdv_root" >&2
fi

"$root/qemu/fetch-kernel.sh" >/dev/null
log "ready"
