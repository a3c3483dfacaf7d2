//! Entrypoint mode (issue 14): `arje-init -- PROGRAM ARGS...` does a container
//! entrypoint's job, as tini and catatonit do. No cards, no control socket, no state
//! directory: PROGRAM is arje's only direct child, in a process group of its own and
//! with the terminal's foreground if there is one (`spawn.rs`); every signal arje gets
//! is forwarded to it (`policy.rs`); every zombie that comes to arje is reaped; and when
//! PROGRAM ends, arje exits with its status (128+N if signal N killed it). On a
//! terminal, a stopped PROGRAM stops arje with it, as sudo does (`terminal.rs`).
//!
//! One blocking read of a signalfd per signal, nothing else: no epoll, no timer, no
//! thread. Every signal the C library lets a program block is blocked from before the
//! fork, so a signal, or the child's own end, that comes before the loop starts waits
//! in the signalfd instead of being lost.
//!
//! Like tini, arje exits as soon as PROGRAM has ended and the zombies ready at that
//! moment are reaped; it does not signal what is left of PROGRAM's group. As PID 1 of a
//! pid namespace its exit makes the kernel kill everything left in the namespace; as a
//! subreaper, what is left goes to the next subreaper or init up the tree.
//!
//! Nothing here reads a file or the environment: entrypoint mode acts on its argv
//! alone (docs/SECURITY.md).

mod args;
mod policy;
mod spawn;
mod terminal;

use std::panic::AssertUnwindSafe;

use nix::errno::Errno;
use std::os::fd::AsFd;

use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use rustix::process::WaitOptions;

pub use args::{detect, Detected, Options};
use policy::{Action, Ended};

/// Runs entrypoint mode to its end; returns arje's exit status. Never panics out: a
/// panic in the loop (a bug) falls back to waiting for PROGRAM without forwarding.
pub fn main(opts: Options) -> i32 {
    let is_init = rustix::process::getpid().is_init();
    ensure_reaper(is_init);
    // glibc's and musl's full sets leave out the few real-time signals the C library
    // keeps for itself (glibc 32-33, musl 32-34): those are added below.
    let all = SigSet::all();
    if let Err(e) = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&all), None) {
        log::error!("sigprocmask: {e}");
        return 1;
    }
    let sfd = match SignalFd::with_flags(&all, SfdFlags::SFD_CLOEXEC) {
        Ok(fd) => fd,
        Err(e) => {
            log::error!("signalfd: {e}");
            return 1;
        }
    };
    // And those few too, with the raw calls: their default action would end arje (a
    // `kill -32` of a subreaper arje did), and PROGRAM should get them like any other.
    // SIGKILL and SIGSTOP in the mask are ignored by the kernel.
    let every = u64::MAX;
    if let Err(e) = arje_runtime::block_signals_raw(every)
        .and_then(|()| arje_runtime::set_signalfd_mask(sfd.as_fd(), every))
    {
        log::warn!("blocking the C library's real-time signals: {e}; they stay at their default");
    }
    let name = opts
        .program
        .first()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let child = match spawn::spawn(&opts.program) {
        Ok(pid) => pid,
        Err(e) => {
            log::error!("cannot run {name}: {e}");
            return policy::exec_failure_code(e.raw_os_error());
        }
    };
    log::info!(
        "started {name} as pid {child}; forwarding signals to its {}",
        if opts.to_group { "group" } else { "pid" }
    );
    let mut entry = Entrypoint {
        child,
        to_group: opts.to_group,
        reaped: 0,
        terminal: terminal::Terminal::after_spawn(child, is_init),
    };
    match std::panic::catch_unwind(AssertUnwindSafe(|| entry.run(&sfd))) {
        Ok(code) => code,
        Err(payload) => {
            log::error!(
                "entrypoint loop panicked ({}); waiting for pid {child} without forwarding signals",
                crate::panic_message(&payload)
            );
            wait_blocking(child)
        }
    }
}

/// PID 1 reaps every orphan of its namespace; anywhere else arje asks to be a child
/// subreaper, so that orphans among PROGRAM's descendants come to it rather than to the
/// system's init. If neither holds, tini's warning.
fn ensure_reaper(is_init: bool) {
    if is_init {
        return;
    }
    match rustix::process::set_child_subreaper(Some(rustix::process::getpid())) {
        Ok(()) => log::debug!("child subreaper: orphans below PROGRAM come to arje"),
        Err(e) => {
            log::debug!("PR_SET_CHILD_SUBREAPER: {e}");
            log::warn!("not PID 1 and not a subreaper; zombies will not be reaped");
        }
    }
}

/// The loop's state: PROGRAM's pid, where signals go, how many processes arje has
/// reaped (PROGRAM included, for the last debug line), and the terminal's job control.
struct Entrypoint {
    child: i32,
    to_group: bool,
    reaped: u64,
    terminal: terminal::Terminal,
}

impl Entrypoint {
    /// Reads signals until PROGRAM has ended; returns arje's exit status.
    fn run(&mut self, sfd: &SignalFd) -> i32 {
        loop {
            let sig = match sfd.read_signal() {
                Ok(Some(info)) => info.ssi_signo as i32,
                // A blocking fd returns nothing only when interrupted.
                Ok(None) | Err(Errno::EINTR) => continue,
                Err(e) => {
                    log::error!(
                        "signalfd read: {e}; waiting for pid {} without forwarding",
                        self.child
                    );
                    return wait_blocking(self.child);
                }
            };
            match policy::route(sig, self.child, self.to_group) {
                Action::Reap => {
                    if let Some(ended) = self.reap_ready() {
                        log::debug!(
                            "pid {} ended ({ended:?}); reaped {} processes in all",
                            self.child,
                            self.reaped
                        );
                        return policy::exit_code(ended);
                    }
                }
                Action::Forward(target) => {
                    if sig == libc::SIGCONT {
                        self.terminal.on_continue();
                    }
                    forward(sig, target)
                }
            }
        }
    }

    /// Reaps every child that has ended, without blocking: SIGCHLDs merge, so one may
    /// stand for many exits. Returns how PROGRAM ended if it was among them. A stop of
    /// PROGRAM (reported once per stop with UNTRACED) goes to the terminal's job
    /// control; other children's stops are not arje's business.
    fn reap_ready(&mut self) -> Option<Ended> {
        let mut main = None;
        loop {
            match rustix::process::wait(WaitOptions::NOHANG | WaitOptions::UNTRACED) {
                Ok(Some((pid, status))) if status.stopped() => {
                    if pid.as_raw_nonzero().get() == self.child {
                        let sig = status.stopping_signal().unwrap_or(0);
                        self.terminal.on_child_stopped(sig);
                    }
                }
                Ok(Some((pid, status))) => {
                    self.reaped += 1;
                    if pid.as_raw_nonzero().get() == self.child {
                        main = ended(status);
                    } else {
                        log::trace!("reaped pid {}", pid.as_raw_nonzero());
                    }
                }
                Err(rustix::io::Errno::INTR) => continue,
                Ok(None) | Err(rustix::io::Errno::CHILD) => return main,
                Err(e) => {
                    log::error!("waitpid: {e}");
                    return main;
                }
            }
        }
    }
}

/// Sends `sig` on to `target` (a pid, or a negated process group).
fn forward(sig: i32, target: i32) {
    let name = signal_name(sig);
    match arje_runtime::kill_raw(target, sig) {
        Ok(()) => log::debug!("forwarded {name} to {target}"),
        // PROGRAM has ended and is not reaped yet; its SIGCHLD is on its way.
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
            log::debug!("{name} not forwarded: {target} is gone")
        }
        Err(e) => log::warn!("forwarding {name} to {target}: {e}"),
    }
}

/// How a waitpid status ended a process (None: it did not end: stopped or continued,
/// which waitpid reports only when asked to).
fn ended(status: rustix::process::WaitStatus) -> Option<Ended> {
    if let Some(code) = status.exit_status() {
        Some(Ended::Exited(code))
    } else {
        status.terminating_signal().map(Ended::Killed)
    }
}

/// The fallback after a broken loop: reap with a blocking waitpid(-1) until PROGRAM has
/// ended. Signals are no longer forwarded, but no zombie piles up and arje still exits
/// with PROGRAM's status.
fn wait_blocking(child: i32) -> i32 {
    loop {
        match rustix::process::wait(WaitOptions::empty()) {
            Ok(Some((pid, status))) if pid.as_raw_nonzero().get() == child => {
                if let Some(e) = ended(status) {
                    return policy::exit_code(e);
                }
            }
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                log::error!("waitpid: {e}; PROGRAM's status is lost");
                return 1;
            }
        }
    }
}

/// "SIGTERM", or the number of a real-time signal.
fn signal_name(sig: i32) -> String {
    match nix::sys::signal::Signal::try_from(sig) {
        Ok(s) => s.as_str().to_string(),
        Err(_) => format!("signal {sig}"),
    }
}
