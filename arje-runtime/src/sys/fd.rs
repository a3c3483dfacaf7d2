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

/// The fds above stderr that are open without close-on-exec: those an exec would hand
/// to the next image. Empty without /proc (logged).
pub fn inheritable() -> Vec<RawFd> {
    let dir = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir,
        Err(e) => {
            log::warn!("/proc/self/fd: {e}; cannot tell which fds an exec keeps");
            return Vec::new();
        }
    };
    // The directory's own fd is listed too; it is close-on-exec, so it is skipped.
    dir.flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<RawFd>().ok())
        .filter(|&fd| fd > 2)
        .filter(|&fd| {
            // SAFETY: F_GETFD on any number is harmless; it fails with EBADF if not open.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            flags >= 0 && flags & libc::FD_CLOEXEC == 0
        })
        .collect()
}

/// Marks close-on-exec again every fd above stderr that lacks it, except those in
/// `keep` (the ones that lacked it before a re-exec was prepared). Returns how many
/// were marked. Undoes the clearing a re-exec does when its exec failed.
pub fn close_on_exec_again(keep: &[RawFd]) -> usize {
    let mut marked = 0;
    for fd in inheritable() {
        if keep.contains(&fd) {
            continue;
        }
        // SAFETY: F_SETFD changes only the close-on-exec flag, not who owns the fd, and
        // on a number that is not open it fails with EBADF. The fd was listed just now
        // by the loop's thread, the only one that opens or closes fds other than the
        // durable writer, which was flushed before the re-exec and opens its files
        // close-on-exec anyway.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } == 0 {
            marked += 1;
        }
    }
    marked
}
