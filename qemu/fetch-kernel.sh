#!/usr/bin/env bash
# Fetches Debian's current amd64 kernel package once and extracts it under
# build/kernel/. Prints the kernel directory's path on stdout: it holds `vmlinuz`
# (a stable link to boot/vmlinuz-*), `version`, the kernel's build configuration
# `config-<version>` (Debian's mkinitramfs reads it: qemu/make-debian.sh --initrd), and
# the module tree lib/modules/<version>.
#
# Only the one package the metapackage linux-image-amd64 depends on is downloaded:
# `apt-get download linux-image-6.1.0-*` with a glob would fetch every version.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${ARJE_BUILD_DIR:-$root/build}"
dest="$build/kernel"

if [[ -f "$dest/version" && -e "$dest/vmlinuz" && -f "$dest/config-$(cat "$dest/version")" ]]; then
    echo "$dest"
    exit 0
fi

log() { echo "fetch-kernel: $*" >&2; }

resolve() {
    apt-cache depends linux-image-amd64 2>/dev/null |
        awk '/Depends: linux-image-[0-9]/{print $2; exit}'
}

pkg="$(resolve || true)"
if [[ -z "$pkg" ]]; then
    log "linux-image-amd64 not in the package lists; running apt-get update"
    apt-get update -qq >&2
    pkg="$(resolve)"
fi
[[ -n "$pkg" ]] || { log "cannot resolve linux-image-amd64's kernel package"; exit 1; }
log "kernel package: $pkg"

mkdir -p "$build"
work="$(mktemp -d "$build/kernel-fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -q "$pkg" >&2)
deb="$(ls "$work"/*.deb)"
mkdir -p "$work/x"
dpkg -x "$deb" "$work/x"

vmlinuz="$(ls "$work"/x/boot/vmlinuz-* | head -n1)"
version="${vmlinuz##*/vmlinuz-}"
rm -rf "$dest.tmp"
mkdir -p "$dest.tmp/lib/modules"
mv "$vmlinuz" "$dest.tmp/vmlinuz-$version"
mv "$work/x/boot/config-$version" "$dest.tmp/config-$version"
ln -s "vmlinuz-$version" "$dest.tmp/vmlinuz"
mv "$work/x/lib/modules/$version" "$dest.tmp/lib/modules/$version"
echo "$version" >"$dest.tmp/version"
echo "$pkg" >"$dest.tmp/package"
rm -rf "$dest"
mv "$dest.tmp" "$dest"
log "kernel $version cached in $dest"
echo "$dest"
