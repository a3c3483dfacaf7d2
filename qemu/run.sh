#!/usr/bin/env bash
# Boots an initramfs under QEMU with the serial console on this terminal and in a file,
# enforces a timeout, and says how the guest ended: poweroff, reboot, halt, panic, timeout.
#
# Usage: qemu/run.sh --initramfs FILE [options] [-- extra qemu args]
#   --kernel FILE        default: the cached Debian kernel (qemu/fetch-kernel.sh)
#   --append "ARGS"      extra kernel command line (console=ttyS0 quiet panic=-1 no_timer_check always)
#   --disk IMG           attach IMG as a virtio disk (/dev/vda in the guest)
#   --make-disk SIZE     create IMG first as an empty ext4 filesystem if it does not exist
#   --timeout SECS       kill the guest after SECS (default 120; 0 = none)
#   --log FILE           serial console copy (default build/vm-logs/run.log)
#   --nic SPEC           QEMU's -nic value (default none), e.g. for a Debian root:
#                        user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:2222-:22
#   --allow-reboot       let a guest reboot (default: -no-reboot, a reboot ends QEMU)
#   --interactive        the terminal's input goes to the guest console (Ctrl-A X quits)
#
# Environment: ARJE_ACCEL (default tcg: KVM hangs on these machines), ARJE_MEM (512M).
# Exit status: 0 for poweroff, 10 reboot, 11 halt, 12 panic, 124 timeout, 1 otherwise.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
initramfs="" kernel="" append="" disk="" make_disk="" timeout_s=120
log_file="$root/build/vm-logs/run.log" nic=none no_reboot=(-no-reboot) interactive=0 extra=()
while [[ $# -gt 0 ]]; do
    case "$1" in
    --initramfs) initramfs="$2"; shift 2 ;;
    --kernel) kernel="$2"; shift 2 ;;
    --append) append="$2"; shift 2 ;;
    --disk) disk="$2"; shift 2 ;;
    --make-disk) make_disk="$2"; shift 2 ;;
    --timeout) timeout_s="$2"; shift 2 ;;
    --log) log_file="$2"; shift 2 ;;
    --nic) nic="$2"; shift 2 ;;
    --allow-reboot) no_reboot=(); shift ;;
    --interactive) interactive=1; shift ;;
    --) shift; extra=("$@"); break ;;
    *) echo "qemu/run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ -n "$initramfs" ]] || { echo "usage: $0 --initramfs FILE [options]" >&2; exit 2; }
[[ -n "$kernel" ]] || kernel="$("$root/qemu/fetch-kernel.sh")/vmlinuz"

drive=()
if [[ -n "$disk" ]]; then
    if [[ -n "$make_disk" && ! -e "$disk" ]]; then
        truncate -s "$make_disk" "$disk"
        mkfs.ext4 -q -F -E root_owner=0:0 "$disk"
    fi
    drive=(-drive "file=$disk,format=raw,if=virtio")
fi

mkdir -p "$(dirname "$log_file")"
: >"$log_file"
cmd=(qemu-system-x86_64 -accel "${ARJE_ACCEL:-tcg}" -m "${ARJE_MEM:-512M}" -smp 1
    -kernel "$kernel" -initrd "$initramfs"
    -append "console=ttyS0 quiet panic=-1 no_timer_check $append"
    -nographic -nic "$nic" "${no_reboot[@]}" "${drive[@]}" "${extra[@]}")

start=$(date +%s.%N)
# The guest's output is read line by line so that a halt, which leaves QEMU running with
# a stopped CPU, ends the run as soon as the kernel says so. `timeout` forwards our kill.
fifo="$(mktemp -u "${TMPDIR:-/tmp}/arje-qemu.XXXXXX")"
mkfifo "$fifo"
trap 'rm -f "$fifo"' EXIT
if [[ "$interactive" == 1 ]]; then
    # A background job gets /dev/null as stdin unless stdin is redirected explicitly.
    exec 3<&0
    timeout --foreground "$timeout_s" "${cmd[@]}" >"$fifo" <&3 &
else
    timeout "$timeout_s" "${cmd[@]}" >"$fifo" </dev/null &
fi
qemu_pid=$!
halted=0
while IFS= read -r line; do
    line="${line%$'\r'}"
    printf '%s\n' "$line"
    printf '%s\n' "$line" >>"$log_file"
    if [[ "$line" == *"reboot: System halted"* ]]; then
        halted=1
        kill "$qemu_pid" 2>/dev/null || true
    fi
done <"$fifo"
rc=0
wait "$qemu_pid" || rc=$?
timed_out=0
[[ "$rc" != 124 || "$halted" == 1 ]] || timed_out=1
wall=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')

end=unknown status=1
if grep -q 'Kernel panic' "$log_file"; then end=panic status=12
elif [[ "$timed_out" == 1 ]]; then end=timeout status=124
elif grep -q 'reboot: Power down' "$log_file"; then end=poweroff status=0
elif grep -q 'reboot: Restarting system' "$log_file"; then end=reboot status=10
elif grep -q 'reboot: System halted' "$log_file"; then end=halt status=11
fi
echo "qemu/run.sh: guest ended: $end (wall ${wall}s, console in $log_file)" >&2
exit "$status"
