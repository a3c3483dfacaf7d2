//! Taking ownership of fds inherited across a re-exec.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Take ownership of `fd`, recorded in the snapshot by the arje that exec'd us, if it
/// is open; and mark it close-on-exec again.
///
/// The snapshot is our own, checksummed, and written for this pid in this boot, so the
/// number names the fd the previous image left open for us; it is checked with
/// F_GETFD before being owned, so a stale number never wraps a closed fd.
pub fn adopt(fd: RawFd) -> Option<OwnedFd> {
    if fd < 3 {
        return None;
    }
    // SAFETY: F_GETFD on any number is harmless; it fails with EBADF if not open.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return None;
    }
    // SAFETY: the fd is open (checked above) and nothing else in this process owns it:
    // it was inherited across exec and only the snapshot knows its number.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let _ = rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC);
    Some(owned)
}

/// Take ownership of the first fd inherited across exec whose file `is_it` recognizes
/// (from the metadata of `/proc/self/fd/N`, which names the open file itself), and mark
/// it close-on-exec again. For an fd whose number was not recorded: the state lock.
///
/// Only fds without close-on-exec are looked at. Right after an exec those are exactly
/// the inherited ones, and every fd this process opens itself is close-on-exec, so an fd
/// some other part of this process owns is never taken. `None` if there is none, or if
/// /proc is not mounted.
pub fn adopt_inherited(is_it: impl Fn(&std::fs::Metadata) -> bool) -> Option<OwnedFd> {
    for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        else {
            continue;
        };
        if fd < 3 {
            continue;
        }
        // SAFETY: F_GETFD on any number is harmless; it fails with EBADF if not open.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags < 0 || flags & libc::FD_CLOEXEC != 0 {
            continue;
        }
        match std::fs::metadata(entry.path()) {
            Ok(meta) if is_it(&meta) => return adopt(fd),
            _ => continue,
        }
    }
    None
}
