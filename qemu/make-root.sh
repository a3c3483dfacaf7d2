#!/usr/bin/env bash
# Builds a minimal root filesystem image for booting through arje's initramfs with
# root=...: an ext4 image made with `mkfs.ext4 -d` from a staging directory (no loop
# mount, so no privilege is needed beyond owning the files as root).
#
# Usage: qemu/make-root.sh --out IMG --bin DIR [--scenarios DIR] [--label L] [--uuid U]
#                          [--size 64M]
#   --bin DIR        static arje-init and shuma (scripts/build-static.sh's output)
#   --scenarios DIR  each subfolder goes to /etc/arje/scenarios/<name>/ (picked with
#                    arje.cards=/etc/arje/scenarios/NAME, as in the initramfs)
#
# The layout: busybox-static at /bin/busybox with one link per applet in /bin (its `init`
# left out), arje-init at /sbin/arje-init (the first place the initramfs's arje-init looks
# for the root's init), /bin/shuma a link to it (the multi-call arje-init is the CLI when
# called shuma: docs/PID1.md), empty /dev /proc /sys /run for the mounts the initramfs
# moves in.
set -euo pipefail

out="" bin="" scenarios="" label="arje-root" uuid="" size="64M"
while [[ $# -gt 0 ]]; do
    case "$1" in
    --out) out="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    --scenarios) scenarios="$2"; shift 2 ;;
    --label) label="$2"; shift 2 ;;
    --uuid) uuid="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    *) echo "qemu/make-root.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ -n "$out" && -n "$bin" ]] || { echo "usage: $0 --out IMG --bin DIR [options]" >&2; exit 2; }

busybox="${BUSYBOX:-/bin/busybox}"
if readelf -l "$busybox" 2>/dev/null | grep -q 'Requesting program interpreter'; then
    echo "make-root: $busybox is dynamically linked; install busybox-static" >&2
    exit 1
fi

stage="$(mktemp -d "${TMPDIR:-/tmp}/arje-root.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,sbin,dev,proc,sys,run,tmp,root,etc/arje/cards,etc/arje/scenarios,var/lib/arje,mnt}
chmod 1777 "$stage/tmp"
install -m 0755 "$busybox" "$stage/bin/busybox"
for applet in $("$busybox" --list); do
    case "$applet" in busybox | linuxrc | init) continue ;; esac
    ln -s busybox "$stage/bin/$applet"
done
install -m 0755 "$bin/arje-init" "$stage/sbin/arje-init"
ln -s ../sbin/arje-init "$stage/bin/shuma"
if [[ -n "$scenarios" ]]; then
    for dir in "$scenarios"/*/; do
        name="$(basename "$dir")"
        mkdir -p "$stage/etc/arje/scenarios/$name"
        cp -R "$dir". "$stage/etc/arje/scenarios/$name/"
    done
fi
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$stage/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$stage/etc/group"
echo arje-root >"$stage/etc/hostname"

rm -f "$out"
truncate -s "$size" "$out"
args=(-q -F -L "$label" -E root_owner=0:0 -d "$stage")
[[ -z "$uuid" ]] || args+=(-U "$uuid")
mkfs.ext4 "${args[@]}" "$out" >&2
echo "make-root: wrote $out ($size, LABEL=$label${uuid:+ UUID=$uuid})" >&2
