//! What a pidfd can tell about a process arje cannot reap.

use std::os::fd::{AsRawFd, BorrowedFd};

/// The kernel's `struct pidfd_info`, first version (64 bytes, `PIDFD_INFO_SIZE_VER0`).
#[repr(C)]
#[derive(Default)]
struct PidfdInfo {
    mask: u64,
    cgroupid: u64,
    pid: u32,
    tgid: u32,
    ppid: u32,
    ruid: u32,
    rgid: u32,
    euid: u32,
    egid: u32,
    suid: u32,
    sgid: u32,
    fsuid: u32,
    fsgid: u32,
    exit_code: i32,
}

/// `PIDFD_GET_INFO`: `_IOWR(PIDFS_IOCTL_MAGIC = 0xFF, 11, struct pidfd_info)`. Computed as
/// the kernel's 32 bits, then cast to the request type of the C library: an unsigned long
/// in glibc, an int in musl (the static build PID 1 runs), where the top bit wraps.
const PIDFD_GET_INFO: libc::Ioctl =
    ((3u32 << 30) | ((std::mem::size_of::<PidfdInfo>() as u32) << 16) | (0xFF << 8) | 11)
        as libc::Ioctl;
/// Ask for (and learn whether the kernel has) the exit status.
const PIDFD_INFO_EXIT: u64 = 1 << 3;

/// `ioctl(pidfd, PIDFD_GET_INFO)` with `PIDFD_INFO_EXIT`: the wait(2) status of the
/// process, once the kernel has recorded it (Linux 6.15: when the process is reaped, by
/// whichever parent). `None` before that, or on an older kernel. See pidfd_open(2).
pub fn exit_status(pidfd: BorrowedFd<'_>) -> Option<i32> {
    let mut info = PidfdInfo {
        mask: PIDFD_INFO_EXIT,
        ..PidfdInfo::default()
    };
    // SAFETY: the ioctl reads and writes at most size_of::<PidfdInfo>() bytes, the size
    // encoded in the request, of a live, writable struct of the kernel's layout.
    let r = unsafe { libc::ioctl(pidfd.as_raw_fd(), PIDFD_GET_INFO, &mut info) };
    (r == 0 && info.mask & PIDFD_INFO_EXIT != 0).then_some(info.exit_code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn test_pidfd_info_request_is_the_kernels() {
        // include/uapi/linux/pidfd.h: PIDFD_GET_INFO _IOWR(0xFF, 11, struct pidfd_info)
        // with the 64-byte first version.
        assert_eq!(std::mem::size_of::<PidfdInfo>(), 64);
        assert_eq!(PIDFD_GET_INFO, 0xC040_FF0B);
    }

    #[test]
    fn test_exit_status_of_running_process_is_none() {
        let pidfd = rustix::process::pidfd_open(
            rustix::process::getpid(),
            rustix::process::PidfdFlags::empty(),
        )
        .unwrap();

        assert_eq!(exit_status(pidfd.as_fd()), None);
    }
}
