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
