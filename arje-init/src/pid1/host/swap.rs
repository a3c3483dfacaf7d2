//! Swap areas: fstab's swap entries on at boot (as `swapon -a`), every area off at
//! shutdown (as systemd does before its last unmount): a swap file keeps its
//! filesystem busy, and the root cannot be remounted read-only under it.

use std::ffi::CString;

use super::source;
use crate::pid1::mounts::unescape;

const PROC_SWAPS: &str = "/proc/swaps";

/// The paths of the active swap areas, from /proc/swaps's text (a header line, then one
/// area a line, its path first, octal-escaped like /proc/self/mounts).
pub fn active(proc_swaps: &str) -> Vec<String> {
    proc_swaps
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(unescape)
        .collect()
}

/// swapon(2) on the area `spec` names; an area on already is not an error (a second
/// `swapon -a` says nothing either).
pub fn on(spec: &str, flags: i32) -> Result<String, String> {
    let dev = source::resolve(spec)?;
    let text = std::fs::read_to_string(PROC_SWAPS).unwrap_or_default();
    if active(&text).contains(&dev) {
        return Ok(format!("swap on {dev} already"));
    }
    let c = CString::new(dev.clone()).map_err(|_| "a NUL in the path".to_string())?;
    arje_runtime::swapon(&c, flags).map_err(|e| format!("swapon {dev}: {e}"))?;
    Ok(format!("swap on {dev} (flags {flags:#x})"))
}

/// swapoff(2) on every active area; one console line each.
pub fn off_all() {
    let text = std::fs::read_to_string(PROC_SWAPS).unwrap_or_default();
    for path in active(&text) {
        let Ok(c) = CString::new(path.clone()) else {
            continue;
        };
        match arje_runtime::swapoff(&c) {
            Ok(()) => log::info!("swap off {path}"),
            Err(e) => log::warn!("swapoff {path}: {e}; its filesystem may stay busy"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_active_reads_paths_after_the_header() {
        // Arrange
        let text = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n\
                    /swapfile                               file\t\t16380\t\t0\t\t5\n\
                    /dev/vdb2                               partition\t1048572\t\t0\t\t-2\n\
                    /srv/swap\\040file                       file\t\t1020\t\t0\t\t-3\n";

        // Act
        let paths = active(text);

        // Assert
        assert_eq!(paths, ["/swapfile", "/dev/vdb2", "/srv/swap file"]);
    }
}
