#!/usr/bin/env bash
# Boots the same Debian 12 machine with arje as PID 1 and with systemd as PID 1, and
# prints, for each boot: the seconds from QEMU's start to nginx answering on http and to
# an ssh login, PID 1's VmRSS, the memory in use (MemTotal - MemAvailable), the number
# of processes, and the seconds from `poweroff` (over ssh) to QEMU's exit.
# docs/HOST.md, "A Debian root", has the figures.
#
# Both boots go through arje's initramfs (root=LABEL=... ro) with the project's kernel;
# the systemd image is qemu/make-debian.sh --systemd (systemd, udev, kmod added; the
# address from systemd-networkd), booted with init=/lib/systemd/systemd. The first
# boot of each image makes its ssh host keys; the later ones are warm.
#
# Timing is from outside, the same way for both inits, through QEMU's forwarded ports.
# QEMU's user network accepts on the host side at once and only then connects to the
# guest, so a connection made before the guest's network is up hangs rather than fails.
# Hence: a GET with curl every 100 ms (bounded at 1 s) until one answers 200; once a GET
# has come back reset (the guest answered: its network is up) or answered, ssh logins
# are tried one after the other (each in the background, so the GETs go on), and the
# end of the first that logs in is the ssh figure.
#
# Usage: qemu/bench-debian.sh [--boots N] [--only arje|systemd]   (default 3 boots each)
# The table is also written to build/bench-debian/figures.txt; consoles beside it.
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
    -o BatchMode=yes -o ConnectTimeout=30 -o LogLevel=ERROR root@127.0.0.1)

# One boot: prints "INIT BOOT nginx_s ssh_s rss_kb used_kb procs poweroff_s".
boot_once() {
    local init="$1" img="$2" n="$3" append="root=LABEL=arje-debian ro"
    [[ "$init" == arje ]] || append+=" init=/lib/systemd/systemd"
    local console="$out/$init-$n.log" probes="$out/$init-$n.probes"
    local t0 t_http="" t_ssh="" deadline=$((SECONDS + 300))
    rm -rf "$probes"
    mkdir -p "$probes"
    t0="$(now)"
    qemu-system-x86_64 -accel "${ARJE_ACCEL:-tcg}" -m 512M -smp 1 -display none \
        -serial "file:$console" -monitor none -no-reboot \
        -nic "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:$ssh_port-:22,hostfwd=tcp:127.0.0.1:$http_port-:80" \
        -kernel "$kernel" -initrd "$initramfs" -drive "file=$img,format=raw,if=virtio" \
        -append "console=ttyS0 quiet panic=-1 no_timer_check $append" </dev/null &
    local qemu=$!
    local net_up=0 ssh_pid="" rc code
    while [[ -z "$t_http" || ! -s "$probes/ssh" ]]; do
        if ((SECONDS > deadline)) || ! kill -0 "$qemu" 2>/dev/null; then
            kill "$qemu" 2>/dev/null || true
            log "$init boot $n: not serving (http ${t_http:-no}, ssh $(cat "$probes/ssh" 2>/dev/null || echo no)); console: $console"
            tail -n 20 "$console" >&2
            exit 1
        fi
        if [[ -z "$t_http" ]]; then
            rc=0
            code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$http_port/")" || rc=$?
            if [[ "$code" == 200 ]]; then
                t_http="$(since "$t0")" net_up=1
            elif [[ "$rc" == 52 || "$rc" == 56 ]]; then
                net_up=1 # empty reply, reset: the guest refused port 80
            fi
        fi
        if [[ "$net_up" == 1 && ! -s "$probes/ssh" ]] &&
            { [[ -z "$ssh_pid" ]] || ! kill -0 "$ssh_pid" 2>/dev/null; }; then
            { "${ssh_[@]}" true 2>/dev/null && since "$t0" >"$probes/ssh"; } &
            ssh_pid=$!
        fi
        sleep 0.1
    done
    t_ssh="$(cat "$probes/ssh")"
    local rss used procs
    read -r rss used procs < <("${ssh_[@]}" "awk '/^VmRSS/{r=\$2} END{printf \"%s \", r}' /proc/1/status;
        awk '/^MemTotal/{t=\$2} /^MemAvailable/{a=\$2} END{printf \"%s \", t-a}' /proc/meminfo;
        ls -d /proc/[0-9]* 2>/dev/null | wc -l")
    local t1
    t1="$(now)"
    "${ssh_[@]}" poweroff 2>/dev/null || true
    wait "$qemu" || true
    local t_off
    t_off="$(since "$t1")"
    grep -q 'reboot: Power down' "$console" || { log "$init boot $n: no power down; console: $console"; exit 1; }
    e2fsck -fn "$img" >/dev/null 2>&1 || { log "$init boot $n: e2fsck -fn failed on $img"; exit 1; }
    printf '%-8s %4s %8s %8s %12s %12s %6s %10s\n' "$init" "$n" "$t_http" "$t_ssh" "$rss" "$used" "$procs" "$t_off"
}

inits=(arje systemd)
[[ -z "$only" ]] || inits=("$only")
for init in "${inits[@]}"; do
    flags=()
    [[ "$init" == arje ]] || flags=(--systemd)
    "$root/qemu/make-debian.sh" --out "$out/$init.img" --bin "$root/build/bin/test" \
        --authorized-key "$out/key.pub" "${flags[@]}"
done

# The boots alternate between the inits, so that whatever else loads this machine
# meanwhile weighs on both alike.
printf '%-8s %4s %8s %8s %12s %12s %6s %10s\n' init boot nginx_s ssh_s pid1_rss_kb mem_used_kb procs poweroff_s |
    tee "$out/figures.txt"
for n in $(seq 1 "$boots"); do
    for init in "${inits[@]}"; do
        boot_once "$init" "$out/$init.img" "$n" | tee -a "$out/figures.txt"
    done
done

# Medians of the warm boots (2 and later: the first makes the ssh host keys).
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
if ((boots > 1)); then
    echo "median of boots 2-$boots:"
    for init in "${inits[@]}"; do
        row=()
        for c in 3 4 5 6 7 8; do
            row+=("$(awk -v i="$init" -v c="$c" '$1 == i && $2 > 1 { print $c }' "$out/figures.txt" | median)")
        done
        printf '%-8s %4s %8s %8s %12s %12s %6s %10s\n' "$init" med "${row[@]}"
    done
fi
