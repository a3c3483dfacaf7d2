#!/usr/bin/env bash
# The peer comparison (issue 15): installs the peers it compares arje with, if missing
# (Debian packages; root), builds arje and the benchmark, then runs
# bench/src/bin/peers/main.rs with this script's arguments (see its module docs, e.g.
# `--n 100 --rounds 1 --idle-secs 5` for a quick run). The static arje-init is
# compared too if scripts/build-static.sh has made it (`build/bin/demo/`).
#
# Usage: bench/peers.sh [ARGS...]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# runit and s6 supervisors, supervisord, and systemd for `systemd --user`.
missing=()
for pkg in runit s6 supervisor systemd; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "peers.sh: installing ${missing[*]}" >&2
    apt-get install -y "${missing[@]}" >&2 ||
        echo "peers.sh: could not install ${missing[*]}: the benchmark skips what is missing" >&2
fi

cargo build --release -q -p arje-init -p shuma -p arje-bench --bin arje-init --bin shuma --bin peers >&2
target="${CARGO_TARGET_DIR:-$root/target}"
exec "$target/release/peers" "$@"
