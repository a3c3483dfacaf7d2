#!/usr/bin/env bash
# Boots the same Debian 12 machine with arje as PID 1 and with systemd as PID 1, and
# prints, for each boot: the seconds from QEMU's start to nginx answering on http and to
# an ssh login, PID 1's VmRSS, and the seconds from `poweroff` (over ssh) to QEMU's exit.
# docs/HOST.md, "A Debian root", has the figures.
#
# Both boots go through arje's initramfs (root=LABEL=... ro) with the project's kernel;
# the systemd image is qemu/make-debian.sh --systemd (systemd, udev, kmod added; the
# address from systemd-networkd), booted with init=/lib/systemd/systemd. The first
# boot of each image makes its ssh host keys; the later ones are warm.
#
# Timing is from outside, the same way for both inits, through QEMU's forwarded ports:
# every 100 ms, a GET with curl (bounded at 1 s) until one answers 200, and a read of
# sshd's "SSH-" banner (bounded at 1 s) until one comes; then one ssh login, whose end is
# the ssh figure. A refused connection fails at once; one made before the guest's
# network is up waits for its bound, so a figure may be late by up to a second.
#
# Usage: qemu/bench-debian.sh [--boots N] [--only arje|systemd]   (default 3 boots each)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
boots=3 only=""
while [[ $# -gt 0 ]]; do
    case "$1" in
    --boots) boots="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    *) echo "qemu/bench-debian.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

log() { echo "bench-debian: $*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }

prep="$("$root/scripts/prepare-boot-tests.sh")"
kernel="$(sed -n 's/^KERNEL=//p' <<<"$prep")"
initramfs="$(sed -n 's/^INITRAMFS=//p' <<<"$prep")"
out="$root/build/bench-debian"
mkdir -p "$out"
[[ -f "$out/key" ]] || ssh-keygen -q -t ed25519 -N "" -C arje-bench -f "$out/key"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ssh_port="$(port)" http_port="$(port)"
ssh_=(ssh -i "$out/key" -p "$ssh_port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
    -o BatchMode=yes -o ConnectTimeout=5 -o LogLevel=ERROR root@127.0.0.1)

# One boot: prints "INIT BOOT nginx_s ssh_s rss_kb poweroff_s".
boot_once() {
    local init="$1" img="$2" n="$3" append="root=LABEL=arje-debian ro"
    [[ "$init" == arje ]] || append+=" init=/lib/systemd/systemd"
    local console="$out/$init-$n.log"
    local t0 t_http="" t_ssh="" deadline=$((SECONDS + 300))
    t0="$(now)"
    qemu-system-x86_64 -accel "${ARJE_ACCEL:-tcg}" -m 512M -smp 1 -display none \
        -serial "file:$console" -monitor none -no-reboot \
        -nic "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:$ssh_port-:22,hostfwd=tcp:127.0.0.1:$http_port-:80" \
        -kernel "$kernel" -initrd "$initramfs" -drive "file=$img,format=raw,if=virtio" \
        -append "console=ttyS0 quiet panic=-1 no_timer_check $append" </dev/null &
    local qemu=$!
    local banner=""
    while [[ -z "$t_http" || -z "$banner" ]]; do
        if ((SECONDS > deadline)) || ! kill -0 "$qemu" 2>/dev/null; then
            kill "$qemu" 2>/dev/null || true
            log "$init boot $n: not serving (http ${t_http:-no}, ssh ${banner:-no}); console: $console"
            tail -n 20 "$console" >&2
            exit 1
        fi
        if [[ -z "$t_http" ]] &&
            [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$http_port/" || true)" == 200 ]]; then
            t_http="$(since "$t0")"
        fi
        if [[ -z "$banner" ]] &&
            timeout 1 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && head -c 4 <&3' _ "$ssh_port" 2>/dev/null |
            grep -q '^SSH-'; then
            banner="$(since "$t0")"
        fi
        sleep 0.1
    done
    "${ssh_[@]}" true || { log "$init boot $n: ssh login failed; console: $console"; exit 1; }
    t_ssh="$(since "$t0")"
    local rss
    rss="$("${ssh_[@]}" "awk '/^VmRSS/{print \$2}' /proc/1/status")"
    local t1
    t1="$(now)"
    "${ssh_[@]}" poweroff 2>/dev/null || true
    wait "$qemu" || true
    local t_off
    t_off="$(since "$t1")"
    grep -q 'reboot: Power down' "$console" || { log "$init boot $n: no power down; console: $console"; exit 1; }
    e2fsck -fn "$img" >/dev/null 2>&1 || { log "$init boot $n: e2fsck -fn failed on $img"; exit 1; }
    printf '%-8s %4s %8s %8s %10s %10s\n' "$init" "$n" "$t_http" "$t_ssh" "$rss" "$t_off"
}

printf '%-8s %4s %8s %8s %10s %10s\n' init boot nginx_s ssh_s pid1_rss_kb poweroff_s
for init in arje systemd; do
    [[ -z "$only" || "$only" == "$init" ]] || continue
    img="$out/$init.img"
    flags=()
    [[ "$init" == arje ]] || flags=(--systemd)
    "$root/qemu/make-debian.sh" --out "$img" --bin "$root/build/bin/test" \
        --authorized-key "$out/key.pub" "${flags[@]}"
    for n in $(seq 1 "$boots"); do
        boot_once "$init" "$img" "$n"
    done
done
