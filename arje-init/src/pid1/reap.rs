//! Reaping as PID 1 outside the runtime: during the final shutdown and in the emergency
//! loop. SIGCHLD arrives through a signalfd, so waiting never sleep-polls.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::process::{waitid, WaitId, WaitIdOptions};

/// The signals PID 1 handles itself outside the runtime: children, and the shutdown
/// requests of busybox's halt (USR1), poweroff (USR2) and reboot (TERM), ctrl-alt-del
/// (INT) and SIGPWR.
pub fn pid1_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGPWR,
    ] {
        set.add(s);
    }
    set
}

/// A signalfd for `set`, with `set` blocked first (a blocked signal stays pending for
/// the fd instead of running a handler or being ignored).
pub fn signalfd(set: &SigSet) -> nix::Result<SignalFd> {
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(set), None)?;
    SignalFd::with_flags(set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
}

/// Reaps every child that has exited, without blocking. Returns how many, and whether
/// no child is left at all (ECHILD).
pub fn reap_ready() -> (usize, bool) {
    let mut n = 0;
    loop {
        // SIGCHLDs merge: one signal may stand for many exits, so loop until none is ready.
        match waitid(WaitId::All, WaitIdOptions::EXITED | WaitIdOptions::NOHANG) {
            Ok(Some(_)) => n += 1,
            Ok(None) => return (n, false),
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::CHILD) => return (n, true),
            Err(e) => {
                log::error!("waitid: {e}");
                return (n, false);
            }
        }
    }
}

/// Reaps until no child is left or `deadline` passes, waking only on SIGCHLD. Returns
/// true if every child is gone.
pub fn reap_until_empty(sfd: &SignalFd, deadline: Instant) -> bool {
    loop {
        if reap_ready().1 {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        wait_readable(sfd, left);
        drain(sfd);
    }
}

/// Blocks until the signalfd is readable or `timeout` passes.
pub fn wait_readable(sfd: &SignalFd, timeout: Duration) {
    let fd = sfd.as_fd();
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    // EINTR and errors alike just end this wait: the caller re-checks its state.
    let _ = poll(&mut fds, Some(&timespec(timeout)));
}

/// Reads every pending signal off the fd; returns their numbers.
pub fn drain(sfd: &SignalFd) -> Vec<i32> {
    let mut got = Vec::new();
    while let Ok(Some(info)) = sfd.read_signal() {
        got.push(info.ssi_signo as i32);
    }
    got
}

/// User-space processes still alive other than ourselves, as "pid (comm)", at most
/// `max` of them: what blocked a shutdown step, for the log. Kernel threads (children
/// of kthreadd, pid 2) are left out.
pub fn survivors(max: usize) -> Vec<String> {
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me || pid == 2 {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parens, so split at the last ')'.
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let comm = stat
            .get(stat.find('(').map_or(0, |i| i + 1)..close)
            .unwrap_or("?");
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next().unwrap_or("?");
        let ppid: u32 = rest.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid == 2 {
            continue;
        }
        if out.len() < max {
            out.push(format!("{pid} ({comm}, {state})"));
        }
    }
    out
}

/// A poll(2) timeout from a Duration.
pub fn timespec(d: Duration) -> rustix::time::Timespec {
    rustix::time::Timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}
