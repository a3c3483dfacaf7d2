//! Signal masks and dispositions over the whole range 1..=64, through the kernel's own
//! calls: rt_sigprocmask(2), rt_sigaction(2), signalfd4(2).
//!
//! Why not nix or the C library: the C library keeps a few real-time signals for itself
//! (glibc 32 and 33, musl 32 to 34). glibc's `sigaddset` refuses them (and nix's
//! `SigSet::add` ignores that failure), its `sigprocmask` silently removes them from the
//! set, and both libcs' `sigaction` refuse them; yet the kernel's default action for
//! them is to terminate, and `kill -32` ended a subreaper arje-init (seen before this
//! module existed). On x86_64 the kernel's signal set is one 64-bit word, bit `sig - 1`.
//!
//! arje never uses thread cancellation, and never changes credentials in the parent
//! (the child does, alone, after clone): the two jobs glibc sends its signals for. So
//! blocking them like the other real-time signals costs nothing.

use std::ffi::c_int;
use std::os::fd::{FromRawFd, OwnedFd};

/// The kernel's signal set on x86_64: bit `sig - 1` for signal `sig`.
pub type SigMask = u64;

/// Highest signal number (the kernel's _NSIG is 64).
pub const NSIG: c_int = 64;

/// The bit of `sig` in a [`SigMask`].
pub const fn bit(sig: c_int) -> SigMask {
    1 << (sig - 1)
}

/// The kernel's `struct sigaction` for rt_sigaction(2).
#[repr(C)]
#[derive(Default)]
pub struct KernelSigaction {
    pub handler: usize,
    pub flags: u64,
    pub restorer: usize,
    pub mask: u64,
}

/// rt_sigaction(sig, new, old): the raw syscall (see the module's doc). Returns the
/// syscall's result (0, or -1 with errno set). Async-signal-safe: the spawned child
/// calls it between clone and exec.
pub fn rt_sigaction(
    sig: c_int,
    new: Option<&KernelSigaction>,
    old: Option<&mut KernelSigaction>,
) -> libc::c_long {
    let new = new.map_or(std::ptr::null(), |n| n as *const KernelSigaction);
    let old = old.map_or(std::ptr::null_mut(), |o| o as *mut KernelSigaction);
    // SAFETY: both pointers are null or point to valid kernel_sigaction-shaped memory;
    // the size argument is the kernel's sigset size (8 bytes).
    unsafe { libc::syscall(libc::SYS_rt_sigaction, sig, new, old, 8usize) }
}

/// What a signal's disposition is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// SIG_DFL.
    Default,
    /// SIG_IGN: survives exec, and a signal sent while ignored is discarded even if
    /// it is blocked.
    Ignore,
    /// A handler (Rust's std installs one for SIGSEGV and SIGBUS, to report a stack
    /// overflow).
    Caught,
}

/// [rt_sigaction(2)]: the disposition of `sig`.
///
/// [rt_sigaction(2)]: https://man7.org/linux/man-pages/man2/sigaction.2.html
pub fn handler(sig: c_int) -> std::io::Result<Handler> {
    let mut old = KernelSigaction::default();
    if rt_sigaction(sig, None, Some(&mut old)) != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(match old.handler {
        h if h == libc::SIG_DFL => Handler::Default,
        h if h == libc::SIG_IGN => Handler::Ignore,
        _ => Handler::Caught,
    })
}

/// [rt_sigaction(2)]: set `sig` to SIG_DFL or SIG_IGN (`Caught` is refused: arje installs
/// no handler; signals it acts on come through a signalfd).
///
/// [rt_sigaction(2)]: https://man7.org/linux/man-pages/man2/sigaction.2.html
pub fn set_handler(sig: c_int, to: Handler) -> std::io::Result<()> {
    let handler = match to {
        Handler::Default => libc::SIG_DFL,
        Handler::Ignore => libc::SIG_IGN,
        Handler::Caught => return Err(std::io::Error::from_raw_os_error(libc::EINVAL)),
    };
    let new = KernelSigaction {
        handler,
        ..Default::default()
    };
    if rt_sigaction(sig, Some(&new), None) != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// [rt_sigprocmask(2)] `SIG_BLOCK`: add `mask` to the calling thread's blocked set.
/// Threads started afterwards inherit it.
///
/// [rt_sigprocmask(2)]: https://man7.org/linux/man-pages/man2/sigprocmask.2.html
pub fn block(mask: SigMask) -> std::io::Result<()> {
    // SAFETY: `mask` is a valid 8-byte kernel sigset; no old set is asked for.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_BLOCK,
            &mask as *const SigMask,
            std::ptr::null_mut::<SigMask>(),
            std::mem::size_of::<SigMask>(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// [signalfd(2)] (signalfd4): a new non-blocking, close-on-exec signalfd for `mask`.
///
/// [signalfd(2)]: https://man7.org/linux/man-pages/man2/signalfd.2.html
pub fn signalfd(mask: SigMask) -> std::io::Result<OwnedFd> {
    // SAFETY: -1 asks for a new fd; `mask` is a valid 8-byte kernel sigset.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_signalfd4,
            -1,
            &mask as *const SigMask,
            std::mem::size_of::<SigMask>(),
            libc::SFD_CLOEXEC | libc::SFD_NONBLOCK,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh fd that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as c_int) })
}

/// signalfd4(2) on an existing signalfd: replace the set it reads with `mask`, which may
/// hold the C library's own real-time signals (a libc `sigset_t` cannot).
pub fn set_signalfd_mask(fd: std::os::fd::BorrowedFd<'_>, mask: SigMask) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `fd` is a live signalfd the caller owns; `mask` is a valid 8-byte sigset.
    let r = unsafe {
        libc::syscall(
            libc::SYS_signalfd4,
            fd.as_raw_fd(),
            &mask as *const SigMask,
            std::mem::size_of::<SigMask>(),
            0,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// [kill(2)] with any signal number, the real-time range included: nix's `Signal` has
/// no real-time signals, and rustix refuses the C library's. The machine's commands
/// (`arje-init` called as `reboot`) send systemd's SIGRTMIN+n to PID 1 with it.
///
/// [kill(2)]: https://man7.org/linux/man-pages/man2/kill.2.html
pub fn kill_raw(pid: i32, signal: i32) -> std::io::Result<()> {
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
