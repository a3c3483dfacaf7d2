#!/usr/bin/env bash
# Copies the kernel modules a state disk needs into an initramfs staging tree and writes
# /etc/arje/modules.order: one guest path per line, every module after the modules in its
# `depends=` (read with `modinfo -F depends`, since Debian's package ships no modules.dep).
#
# Usage: initramfs/modules.sh KERNEL_DIR STAGE_DIR [MODULE...]
#
# The roots are the MODULEs given (a Debian root's NIC driver: virtio_net), else the
# state disk's: virtio_pci (the PCI transport), virtio_blk (the disk), ext4, and crc32c_generic:
# ext4 asks the crypto API for "crc32c" at mount time, which would otherwise need a
# modprobe helper the guest does not have. libcrc32c is listed for the same reason.
# button and evdev: the ACPI power button as an input device, /dev/input/eventN, which
# PID 1 reads (arje-init/src/pid1/power_button.rs). virtio_console: the `arje.status`
# virtio-serial port that `arje.exit-on` reports to (arje-init/src/pid1/exit_report.rs).
# vmw_vsock_virtio_transport (with vsock and the common transport): the control socket
# for the VM's host, `arje.vsock=`.
set -euo pipefail

kernel_dir="$1" stage="$2"
shift 2
version="$(cat "$kernel_dir/version")"
tree="$kernel_dir/lib/modules/$version"
roots=(virtio_pci virtio_blk crc32c_generic libcrc32c ext4 button evdev virtio_console vmw_vsock_virtio_transport)
[[ $# -eq 0 ]] || roots=("$@")

log() { echo "initramfs/modules: $*" >&2; }

# Module names use '_' in depends= but files may use '-' (crc32c-intel.ko): match both.
find_module() {
    local name="$1" alt="${1//_/-}"
    find "$tree/kernel" \( -name "$name.ko*" -o -name "$alt.ko*" \) -print -quit
}

declare -A state=() # name -> visiting | done
order=()
visit() {
    local name="$1"
    case "${state[$name]:-}" in
    done) return ;;
    visiting) log "dependency cycle at $name"; exit 1 ;;
    esac
    state[$name]=visiting
    local file
    file="$(find_module "$name")"
    [[ -n "$file" ]] || { log "module $name not found under $tree"; exit 1; }
    local dep
    for dep in $(modinfo -F depends "$file" | tr ',' ' '); do
        visit "$dep"
    done
    state[$name]=done
    order+=("$file")
}
for r in "${roots[@]}"; do visit "$r"; done

mkdir -p "$stage/etc/arje"
: >"$stage/etc/arje/modules.order"
for file in "${order[@]}"; do
    rel="${file#"$kernel_dir"/}"
    dest="$stage/$rel"
    mkdir -p "$(dirname "$dest")"
    case "$file" in
    # finit_module takes a compressed module only with MODULE_INIT_COMPRESSED_FILE and a
    # kernel built to decompress; storing them plain avoids depending on either.
    *.ko.xz) xz -dc "$file" >"${dest%.xz}"; rel="${rel%.xz}" ;;
    *.ko.zst) zstd -qdc "$file" >"${dest%.zst}"; rel="${rel%.zst}" ;;
    *.ko.gz) gzip -dc "$file" >"${dest%.gz}"; rel="${rel%.gz}" ;;
    *) cp "$file" "$dest" ;;
    esac
    echo "/$rel" >>"$stage/etc/arje/modules.order"
done
log "$(wc -l <"$stage/etc/arje/modules.order") modules, order: $(xargs -n1 basename <"$stage/etc/arje/modules.order" | tr '\n' ' ')"
