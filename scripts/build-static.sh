#!/usr/bin/env bash
# Builds static arje-init (the multi-call binary: also shuma when called so) and the
# standalone shuma (release profile), plus the test helper, into
# build/bin/<variant>/: `test` is built with --features test-hooks (the boot tests'
# initramfs), `demo` without. Static glibc (the host's target with crt-static) by
# default: measured faster than musl on arje's spawn path (docs/BENCHMARKS.md, "The
# shipped build against glibc"); ARJE_STATIC_LIBC=musl builds with musl instead (smaller;
# its target is installed with rustup if missing, else glibc is used). Prints the output
# directory of the last variant built; writes the stripped sizes to build/bin/sizes.txt.
#
# Usage: scripts/build-static.sh [test|demo|all]   (default all)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
variant="${1:-all}"
log() { echo "build-static: $*" >&2; }

target=x86_64-unknown-linux-gnu
rustflags="-C target-feature=+crt-static"
if [ "${ARJE_STATIC_LIBC:-glibc}" = musl ]; then
    if rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl \
        || rustup target add x86_64-unknown-linux-musl >&2; then
        target=x86_64-unknown-linux-musl
        rustflags=""
    else
        log "musl target not installable: glibc with crt-static instead"
    fi
fi

build_variant() {
    local name="$1"; shift
    local out="$root/build/bin/$name"
    # A separate target dir per variant keeps the feature sets from rebuilding each other.
    local tdir="$root/target/static-$name"
    RUSTFLAGS="$rustflags" cargo build -q --release --target "$target" --target-dir "$tdir" \
        -p shuma -p arje-tests --bin shuma --bin arje-guest --bin cg-probe >&2
    # arje-init on its own: built beside shuma, cargo would unify shuma's features and
    # give the multi-call binary the unit converter it leaves out (docs/PID1.md).
    RUSTFLAGS="$rustflags" cargo build -q --release --target "$target" --target-dir "$tdir" \
        -p arje-init --bin arje-init "$@" >&2
    mkdir -p "$out"
    for bin in arje-init shuma arje-guest cg-probe; do
        cp "$tdir/$target/release/$bin" "$out/$bin"
        strip "$out/$bin" 2>/dev/null || true
        if readelf -l "$out/$bin" | grep -q 'Requesting program interpreter'; then
            log "$out/$bin is not static"; exit 1
        fi
        # A static glibc binary that calls getpwnam(3) and kin carries NSS, which dlopens
        # the modules nsswitch.conf names and can crash (arje_runtime::userdb says why).
        if grep -q 'nsswitch.conf' "$out/$bin"; then
            log "$out/$bin links glibc's NSS (a getpw*/getgr* call): use arje_runtime::userdb"
            exit 1
        fi
    done
    printf '%s %s arje-init=%s shuma=%s\n' "$name" "$target" \
        "$(stat -c %s "$out/arje-init")" "$(stat -c %s "$out/shuma")" >>"$root/build/bin/sizes.txt.new"
    log "$name ($target): arje-init $(stat -c %s "$out/arje-init") bytes, shuma $(stat -c %s "$out/shuma") bytes stripped"
    echo "$out"
}

mkdir -p build/bin
: >build/bin/sizes.txt.new
case "$variant" in
test) build_variant test --features arje-init/test-hooks ;;
demo) build_variant demo ;;
all) build_variant test --features arje-init/test-hooks >/dev/null; build_variant demo ;;
*) log "unknown variant $variant"; exit 2 ;;
esac
mv build/bin/sizes.txt.new build/bin/sizes.txt
