#!/usr/bin/env bash
# The README's main command: installs what is missing, builds static arje-init and
# shuma, makes an initramfs with the demo cards (initramfs/cards: a ticking service, a
# one-shot, and a shell on the console), and boots it under QEMU with arje as PID 1.
#
#   scripts/demo.sh                  interactive: a shell on the console where `shuma`
#                                    works; `poweroff` ends it (Ctrl-A X kills QEMU)
#   scripts/demo.sh --scenario NAME  non-interactive: boots tests/scenarios/NAME, which
#                                    prints "SCENARIO NAME: ..." and powers off; the exit
#                                    status is 0 if the guest powered off and no line
#                                    says FAIL
#   --disk IMG                       attach (and create, 64M ext4) a state disk
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scenario="" disk=""
while [[ $# -gt 0 ]]; do
    case "$1" in
    --scenario) scenario="$2"; shift 2 ;;
    --disk) disk="$2"; shift 2 ;;
    -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "demo.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

"$root/scripts/setup.sh"
kernel_dir="$("$root/qemu/fetch-kernel.sh")"
disk_args=()
append=""
if [[ -n "$disk" ]]; then
    disk_args=(--disk "$disk" --make-disk 64M)
    append="arje.state=/dev/vda"
fi

if [[ -z "$scenario" ]]; then
    bin="$("$root/scripts/build-static.sh" demo)"
    "$root/initramfs/build.sh" --out build/demo.cpio.gz --init "$bin/arje-init" \
        --shuma-link --cards initramfs/cards --kernel-dir "$kernel_dir"
    echo "demo: booting; try 'shuma ps', 'shuma logs demo ticker -f', 'shuma events'; 'poweroff' ends it" >&2
    exec "$root/qemu/run.sh" --initramfs build/demo.cpio.gz --interactive --timeout 0 \
        --append "$append" --log build/vm-logs/demo.log "${disk_args[@]}"
fi

[[ -d "tests/scenarios/$scenario" ]] || { echo "demo.sh: no scenario tests/scenarios/$scenario" >&2; exit 2; }
eval "$("$root/scripts/prepare-boot-tests.sh")"
log="build/vm-logs/scenario-$scenario.log"
status=0
"$root/qemu/run.sh" --initramfs "$INITRAMFS" --kernel "$KERNEL" --timeout 180 --log "$log" \
    --append "arje.cards=/etc/arje/scenarios/$scenario $append" "${disk_args[@]}" || status=$?
if [[ "$status" == 0 ]] && grep -q "SCENARIO $scenario: .*FAIL" "$log"; then
    echo "demo.sh: scenario $scenario reported a failure" >&2
    status=1
fi
exit "$status"
