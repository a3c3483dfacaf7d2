#!/usr/bin/env bash
# The README's test command: the whole suite on a fresh machine.
# Installs what is missing (scripts/setup.sh: qemu, busybox-static, cpio, kmod,
# e2fsprogs, the kernel, the musl target), checks formatting and lints, then runs every
# test: unit tests, host-mode integration tests (arje-init --subreaper driven by shuma)
# and the QEMU boot tests (arje as PID 1 in a real kernel, where cgroup limits are
# enforced).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/setup.sh"
echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test" >&2
cargo test --workspace
