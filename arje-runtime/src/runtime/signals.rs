//! Every signal's disposition, decided once for both modes, and the signalfd that
//! delivers the ones the loop reads.
//!
//! Under another init a signal left at its default would end a subreaper arje-init and
//! orphan every service (SIGALRM, SIGXCPU, SIGVTALRM, a real-time signal...) or stop it
//! (SIGTSTP, SIGTTIN, SIGTTOU). As PID 1 the kernel drops signals whose action is the
//! default, so the table changes only what gets logged there. [`TABLE`] decides each:
//!
//! - [`Disposition::Act`]: blocked and read from the signalfd; the loop acts on it
//!   (`Runtime::on_stop_signal`, SIGCHLD reaping), by mode;
//! - [`Disposition::Log`]: blocked and read from the signalfd, logged (at counts 1, 2, 4,
//!   8, ... of each signal, so a sender in a loop costs a few lines) and otherwise
//!   ignored;
//! - [`Disposition::Ignore`]: SIG_IGN (SIGPIPE: a write to a client that went away
//!   returns EPIPE, which the server handles);
//! - [`Disposition::Default`]: left at the default: the synchronous faults (a real
//!   crash must still crash, with a core, and be seen), and the signals whose default
//!   is to do nothing;
//! - [`Disposition::Uncatchable`]: SIGKILL and SIGSTOP.
//!
//! A disposition inherited as SIG_IGN is put back to the default for every signal the
//! table does not ignore: a signal sent while ignored is discarded even if blocked, so a
//! subreaper started as a shell's background job (SIGINT ignored) would never see its
//! SIGINT. Children get an empty mask and SIG_DFL for what the table ignores
//! (`sys/spawn.rs`), so they start with every disposition at its default.

use std::ffi::c_int;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use shuma_card::protocol::ShutdownKind;

use crate::sys::signals::{self as sys, Handler, SigMask, NSIG};

/// What arje does with a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Blocked, read from the signalfd, acted on.
    Act,
    /// Blocked, read from the signalfd, logged, otherwise ignored.
    Log,
    /// SIG_IGN.
    Ignore,
    /// The kernel's default, untouched (a handler Rust's std installed stays).
    Default,
    /// SIGKILL, SIGSTOP.
    Uncatchable,
}

use Disposition::*;

/// Signals 1 to 31 by number; 32 to 64 (real-time) are [`Disposition::Log`] but for
/// systemd's shutdown requests ([`systemd_request`]), which are [`Disposition::Act`].
pub const TABLE: [(c_int, &str, Disposition); 31] = [
    (libc::SIGHUP, "SIGHUP", Act),
    (libc::SIGINT, "SIGINT", Act),
    (libc::SIGQUIT, "SIGQUIT", Log),
    (libc::SIGILL, "SIGILL", Default),
    (libc::SIGTRAP, "SIGTRAP", Default),
    (libc::SIGABRT, "SIGABRT", Default),
    (libc::SIGBUS, "SIGBUS", Default),
    (libc::SIGFPE, "SIGFPE", Default),
    (libc::SIGKILL, "SIGKILL", Uncatchable),
    (libc::SIGUSR1, "SIGUSR1", Act),
    (libc::SIGSEGV, "SIGSEGV", Default),
    (libc::SIGUSR2, "SIGUSR2", Act),
    (libc::SIGPIPE, "SIGPIPE", Ignore),
    (libc::SIGALRM, "SIGALRM", Log),
    (libc::SIGTERM, "SIGTERM", Act),
    (libc::SIGSTKFLT, "SIGSTKFLT", Log),
    (libc::SIGCHLD, "SIGCHLD", Act),
    (libc::SIGCONT, "SIGCONT", Default),
    (libc::SIGSTOP, "SIGSTOP", Uncatchable),
    (libc::SIGTSTP, "SIGTSTP", Log),
    (libc::SIGTTIN, "SIGTTIN", Log),
    (libc::SIGTTOU, "SIGTTOU", Log),
    (libc::SIGURG, "SIGURG", Default),
    (libc::SIGXCPU, "SIGXCPU", Log),
    (libc::SIGXFSZ, "SIGXFSZ", Log),
    (libc::SIGVTALRM, "SIGVTALRM", Log),
    (libc::SIGPROF, "SIGPROF", Log),
    (libc::SIGWINCH, "SIGWINCH", Default),
    (libc::SIGIO, "SIGIO", Log),
    (libc::SIGPWR, "SIGPWR", Act),
    (libc::SIGSYS, "SIGSYS", Log),
];

/// The disposition of `sig` (1..=64).
pub fn disposition(sig: c_int) -> Disposition {
    match TABLE.get((sig - 1) as usize) {
        Some(&(_, _, d)) => d,
        None if systemd_request(sig).is_some() => Act,
        None => Log,
    }
}

/// SIGRTMIN as systemd counts it: glibc's (34), which is what systemctl, and every tool
/// built against glibc that asks systemd to shut down, sends. musl's SIGRTMIN is 35, so
/// arje's own `libc::SIGRTMIN()` would be off by one: the kernel's numbers are fixed here.
const SYSTEMD_RTMIN: c_int = 34;

/// What systemd(1) ("Signals") does on these, and so arje as PID 1: SIGRTMIN+3, +4, +5
/// halt, power off, reboot (the services are stopped first); +13, +14, +15 do so
/// "immediately": no service gets its stop signal and grace, everything is killed at
/// once, then the final steps as usual (kill, reap, unmount, sync). The rest of
/// systemd's (SIGRTMIN+0..2 to change the target, +6 kexec, +20..+29 for its status
/// output and log level) have no meaning here and stay logged.
const SYSTEMD: [(c_int, &str, ShutdownKind, bool); 6] = [
    (3, "halt", ShutdownKind::Halt, false),
    (4, "poweroff", ShutdownKind::Poweroff, false),
    (5, "reboot", ShutdownKind::Reboot, false),
    (13, "immediate halt", ShutdownKind::Halt, true),
    (14, "immediate poweroff", ShutdownKind::Poweroff, true),
    (15, "immediate reboot", ShutdownKind::Reboot, true),
];

/// The shutdown systemd's SIGRTMIN+N asks for, and whether at once (see [`SYSTEMD`]).
pub fn systemd_request(sig: c_int) -> Option<(ShutdownKind, bool)> {
    SYSTEMD
        .iter()
        .find(|&&(n, ..)| sig == SYSTEMD_RTMIN + n)
        .map(|&(_, _, kind, now)| (kind, now))
}

/// The name of `sig`: `SIGALRM`, or `signal 40` for a real-time one (the C libraries
/// number SIGRTMIN differently: glibc 34, musl 35).
pub fn name(sig: c_int) -> String {
    match TABLE.get((sig - 1) as usize) {
        Some(&(_, name, _)) => name.to_string(),
        None => match SYSTEMD.iter().find(|&&(n, ..)| sig == SYSTEMD_RTMIN + n) {
            Some((n, what, ..)) => format!("signal {sig} (systemd's SIGRTMIN+{n}, {what})"),
            None => format!("signal {sig}"),
        },
    }
}

/// Every signal number.
fn all() -> impl Iterator<Item = c_int> {
    1..=NSIG
}

/// The signals arje sets to SIG_IGN: what a child must get back as SIG_DFL.
pub fn ignored() -> impl Iterator<Item = c_int> {
    all().filter(|&s| disposition(s) == Ignore)
}

/// The signals read from the signalfd.
pub fn read_mask() -> SigMask {
    all()
        .filter(|&s| matches!(disposition(s), Act | Log))
        .fold(0, |m, s| m | sys::bit(s))
}

/// Start a helper thread (a disk writer) that never takes a signal meant for the loop.
///
/// A new thread inherits the caller's mask, but glibc's thread creation leaves its own
/// two signals (32, 33) unblocked, in the new thread and, as seen here, in the caller
/// afterwards; the kernel's default action for them is to end the process (`kill -32`
/// did). So the new thread blocks the loop's whole mask with the raw call before it runs
/// `f`, and the caller blocks it again once the thread exists.
pub fn spawn_blocked<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<T>> {
    let handle = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            if let Err(e) = sys::block(read_mask()) {
                log::error!("block signals in a helper thread: {e}");
            }
            f()
        })?;
    sys::block(read_mask())?;
    Ok(handle)
}

/// One signal read from the signalfd, for the loop to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub signo: c_int,
    /// The sender (for SIGCHLD, the child).
    pub pid: i32,
    pub uid: u32,
}

/// The signalfd and what was ignored so far. The loop's `Token::Signal`.
pub struct Signals {
    fd: OwnedFd,
    /// How many of each signal were ignored, for the log's 1, 2, 4, 8... rule.
    ignored: [u64; NSIG as usize + 1],
}

/// `struct signalfd_siginfo` is 128 bytes; these are the fields read, by offset.
const SIGINFO_SIZE: usize = 128;
const SSI_SIGNO: usize = 0;
const SSI_PID: usize = 12;
const SSI_UID: usize = 16;

impl Signals {
    /// Put every disposition in the table's place and open the signalfd. The mask is
    /// the calling thread's: threads started afterwards (the durable writer) inherit it,
    /// so no signal is delivered to one of them instead of the signalfd.
    pub fn install() -> std::io::Result<Signals> {
        let mask = read_mask();
        // Block first, so a signal sent from here on waits in the signalfd instead of
        // meeting its default action.
        sys::block(mask)?;
        for sig in all() {
            let want = match disposition(sig) {
                Uncatchable => continue,
                Ignore => Handler::Ignore,
                // A handler (Rust's std's, for a stack overflow) may stay; SIG_IGN may
                // not: it would discard the signal even while blocked.
                Act | Log | Default => match sys::handler(sig) {
                    Ok(Handler::Ignore) => Handler::Default,
                    _ => continue,
                },
            };
            // Not fatal: the loop runs either way, and the line says what is off.
            if let Err(e) = sys::set_handler(sig, want) {
                log::error!("set the disposition of {}: {e}", name(sig));
            }
        }
        Ok(Signals {
            fd: sys::signalfd(mask)?,
            ignored: [0; NSIG as usize + 1],
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Everything pending on the signalfd: the signals to act on, in order. Those the
    /// table only logs are logged here.
    pub fn read(&mut self) -> Vec<Received> {
        let mut out = Vec::new();
        let mut buf = [0u8; SIGINFO_SIZE * 16];
        loop {
            let n = match rustix::io::read(&self.fd, &mut buf) {
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => break,
                Err(e) => {
                    log::error!("signalfd read: {e}");
                    break;
                }
            };
            for info in buf[..n].chunks_exact(SIGINFO_SIZE) {
                let field = |at: usize| u32::from_ne_bytes(info[at..at + 4].try_into().unwrap());
                let got = Received {
                    signo: field(SSI_SIGNO) as c_int,
                    pid: field(SSI_PID) as i32,
                    uid: field(SSI_UID),
                };
                match disposition(got.signo) {
                    Act => out.push(got),
                    _ => self.ignore(got, "no use for it"),
                }
            }
            if n < buf.len() {
                break;
            }
        }
        out
    }

    /// Log a signal arje does nothing with, at the 1st, 2nd, 4th, 8th... of its kind:
    /// whoever sends it in a loop gets a few lines, not one per signal.
    pub fn ignore(&mut self, got: Received, why: &str) {
        let Some(count) = self.ignored.get_mut(got.signo as usize) else {
            return;
        };
        *count += 1;
        if count.is_power_of_two() {
            log::warn!(
                "ignoring {} from pid {} (uid {}): {why} ({} so far)",
                name(got.signo),
                got.pid,
                got.uid,
                *count
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_table_lists_signals_1_to_31_in_order() {
        for (i, &(sig, _, _)) in TABLE.iter().enumerate() {
            assert_eq!(sig, i as c_int + 1);
        }
    }

    #[test]
    fn test_table_faults_default_pipe_ignored_realtime_logged() {
        // Arrange
        let faults = [
            libc::SIGILL,
            libc::SIGTRAP,
            libc::SIGABRT,
            libc::SIGBUS,
            libc::SIGFPE,
            libc::SIGSEGV,
        ];

        // Act
        let ignored: Vec<c_int> = ignored().collect();
        let mask = read_mask();

        // Assert
        for sig in faults {
            assert_eq!(disposition(sig), Default, "{}", name(sig));
            assert_eq!(mask & sys::bit(sig), 0);
        }
        assert_eq!(ignored, vec![libc::SIGPIPE]);
        for sig in 32..=64 {
            assert_ne!(mask & sys::bit(sig), 0, "real-time {sig} not read");
        }
        for sig in [libc::SIGKILL, libc::SIGSTOP, libc::SIGCONT, libc::SIGPIPE] {
            assert_eq!(mask & sys::bit(sig), 0, "{}", name(sig));
        }
    }

    #[test]
    fn test_systemd_rtmin_requests_act_by_kernel_number_others_logged() {
        // Arrange: the kernel's numbers as glibc-built systemctl sends them.
        let want = [
            (37, ShutdownKind::Halt, false),
            (38, ShutdownKind::Poweroff, false),
            (39, ShutdownKind::Reboot, false),
            (47, ShutdownKind::Halt, true),
            (48, ShutdownKind::Poweroff, true),
            (49, ShutdownKind::Reboot, true),
        ];

        // Act / Assert
        for (sig, kind, now) in want {
            assert_eq!(systemd_request(sig), Some((kind, now)), "{sig}");
            assert_eq!(disposition(sig), Act, "{sig}");
            assert_ne!(read_mask() & sys::bit(sig), 0);
        }
        for sig in (32..=64).filter(|s| !want.iter().any(|w| w.0 == *s)) {
            assert_eq!(systemd_request(sig), None, "{sig}");
            assert_eq!(disposition(sig), Log, "{sig}");
        }
        assert_eq!(name(38), "signal 38 (systemd's SIGRTMIN+4, poweroff)");
    }
}
