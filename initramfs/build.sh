#!/usr/bin/env bash
# Builds a gzip-compressed newc cpio initramfs, reproducibly: entries sorted by name,
# every mtime set to 0, owner root:root, `cpio --reproducible` (stable inode numbers),
# `gzip -n` (no name or time in the header). Same inputs, same bytes.
#
# Usage: initramfs/build.sh --out FILE --init FILE [options]
#   --init FILE        becomes /init (arje-init, or a shell script for a baseline)
#   --shuma FILE       becomes /bin/shuma
#   --shuma-link       /bin/shuma is a link to /init instead: the multi-call arje-init,
#                      which is the CLI when called as shuma (one binary in the image)
#   --helper FILE      becomes /bin/arje-guest (test-only helper, see tests/src/bin)
#   --cards DIR        every *.toml in it goes to /etc/arje/cards/
#   --scenarios DIR    each subfolder goes to /etc/arje/scenarios/<name>/
#   --kernel-dir DIR   a kernel tree from qemu/fetch-kernel.sh: the state-disk modules
#                      are copied from it and /etc/arje/modules.order is written
#   --no-modules       leave the modules out
#   --file SRC:DEST    copy SRC to DEST in the image (e.g. a peer init for a benchmark)
#
# The guest layout: busybox-static at /bin/busybox with one link per applet in /bin;
# /sbin, /usr/bin and /usr/sbin are links to /bin so any applet path resolves.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="" init="" shuma="" shuma_link=0 helper="" cards="" scenarios="" kernel_dir="" modules=1 files=()
while [[ $# -gt 0 ]]; do
    case "$1" in
    --out) out="$2"; shift 2 ;;
    --init) init="$2"; shift 2 ;;
    --shuma) shuma="$2"; shift 2 ;;
    --shuma-link) shuma_link=1; shift ;;
    --helper) helper="$2"; shift 2 ;;
    --cards) cards="$2"; shift 2 ;;
    --scenarios) scenarios="$2"; shift 2 ;;
    --kernel-dir) kernel_dir="$2"; shift 2 ;;
    --no-modules) modules=0; shift ;;
    --file) files+=("$2"); shift 2 ;;
    *) echo "initramfs/build.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ -n "$out" && -n "$init" ]] || { echo "usage: $0 --out FILE --init FILE [options]" >&2; exit 2; }

log() { echo "initramfs: $*" >&2; }

busybox="${BUSYBOX:-/bin/busybox}"
# A dynamically linked busybox would boot to "No such file" for its loader: refuse it here.
if readelf -l "$busybox" 2>/dev/null | grep -q 'Requesting program interpreter'; then
    log "$busybox is dynamically linked; install busybox-static"
    exit 1
fi

stage="$(mktemp -d "${TMPDIR:-/tmp}/arje-initramfs.XXXXXX")"
trap 'rm -rf "$stage"' EXIT

mkdir -p "$stage"/{bin,dev,etc/arje/cards,etc/arje/scenarios,lib,proc,sys,run,tmp,root,var/lib/arje,mnt,usr}
chmod 1777 "$stage/tmp"
ln -s bin "$stage/sbin"
ln -s ../bin "$stage/usr/bin"
ln -s ../bin "$stage/usr/sbin"

install -m 0755 "$init" "$stage/init"
# The kernel opens /dev/console for init before init runs: with the node in the cpio,
# PID 1 has a stderr from its first instruction (before it mounts devtmpfs).
if [[ "$(id -u)" == 0 ]]; then
    mknod -m 0600 "$stage/dev/console" c 5 1
else
    log "not root: no /dev/console node, early PID-1 output is lost until devtmpfs"
fi
install -m 0755 "$busybox" "$stage/bin/busybox"
for applet in $("$busybox" --list); do
    # /init is ours; busybox's own init and linuxrc are never the entry point.
    case "$applet" in busybox | linuxrc) continue ;; esac
    [[ -e "$stage/bin/$applet" ]] || ln -s busybox "$stage/bin/$applet"
done
[[ -z "$shuma" ]] || install -m 0755 "$shuma" "$stage/bin/shuma"
[[ "$shuma_link" == 0 ]] || ln -sf ../init "$stage/bin/shuma"
[[ -z "$helper" ]] || install -m 0755 "$helper" "$stage/bin/arje-guest"

for spec in "${files[@]}"; do
    dest="$stage/${spec#*:}"
    mkdir -p "$(dirname "$dest")"
    install -m 0755 "${spec%%:*}" "$dest"
done
if [[ -n "$cards" ]]; then
    for card in "$cards"/*.toml; do
        [[ -e "$card" ]] && install -m 0644 "$card" "$stage/etc/arje/cards/"
    done
fi
if [[ -n "$scenarios" ]]; then
    for dir in "$scenarios"/*/; do
        name="$(basename "$dir")"
        mkdir -p "$stage/etc/arje/scenarios/$name"
        cp -R "$dir". "$stage/etc/arje/scenarios/$name/"
    done
fi

printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$stage/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$stage/etc/group"
echo arje >"$stage/etc/hostname"

if [[ "$modules" == 1 && -n "$kernel_dir" ]]; then
    "$root/initramfs/modules.sh" "$kernel_dir" "$stage"
fi

# Reproducibility: fixed mtimes (links included), sorted names, no gzip timestamp.
find "$stage" -exec touch -h -d @0 {} +
mkdir -p "$(dirname "$out")"
(cd "$stage" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
    cpio --quiet -o -H newc --reproducible -R 0:0) | gzip -n -6 >"$out.tmp"
mv "$out.tmp" "$out"
log "wrote $out ($(stat -c %s "$out") bytes)"
