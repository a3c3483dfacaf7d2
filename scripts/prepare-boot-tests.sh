#!/usr/bin/env bash
# Everything a QEMU boot test needs, idempotently: prerequisites, the static test build
# (with test-hooks), and ONE initramfs holding every scenario of tests/scenarios/ (a test
# picks its scenario with arje.cards=/etc/arje/scenarios/NAME). Called once per test
# process by tests/src/vm.rs under a file lock. Prints KEY=VALUE lines: KERNEL, INITRAMFS.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/setup.sh"
bin="$("$root/scripts/build-static.sh" test)"
kernel_dir="$("$root/qemu/fetch-kernel.sh")"
out="$root/build/boot-test.cpio.gz"
"$root/initramfs/build.sh" --out "$out" --init "$bin/arje-init" --shuma-link \
    --helper "$bin/arje-guest" --file "$bin/cg-probe:/bin/cg-probe" --cards "$root/initramfs/cards" \
    --scenarios "$root/tests/scenarios" --kernel-dir "$kernel_dir"
echo "KERNEL=$kernel_dir/vmlinuz"
echo "INITRAMFS=$out"
