//! The fallback when the runtime cannot start or has died: PID 1 must never exit (that
//! is a kernel panic), so it keeps reaping, offers a shell on the console, and still
//! honours halt/poweroff/reboot signals.

use std::process::{Child, Command};
use std::time::Instant;

use shuma_card::protocol::ShutdownKind;

use super::reap::{drain, pid1_signals, reap_ready, signalfd, wait_readable};

/// Most shell restarts in the emergency loop: a shell that dies at once must not spin.
const MAX_SHELL_SPAWNS: u32 = 20;

/// Starts a shell on the console: busybox's `cttyhack` makes the console's real tty the
/// shell's controlling terminal (so Ctrl-C and job control work); plain `/bin/sh` if
/// cttyhack is missing. The child gets an empty signal mask from std's spawn.
pub fn spawn_shell() -> Option<Child> {
    let mut cmd = if std::path::Path::new("/bin/cttyhack").exists() {
        let mut c = Command::new("/bin/cttyhack");
        c.arg("/bin/sh");
        c
    } else {
        Command::new("/bin/sh")
    };
    cmd.env_clear()
        .env("PATH", "/bin:/sbin:/usr/bin:/usr/sbin")
        .env("HOME", "/root")
        .env("TERM", "linux");
    match cmd.spawn() {
        Ok(child) => {
            log::info!("console shell started (pid {})", child.id());
            Some(child)
        }
        Err(e) => {
            log::error!("console shell /bin/sh: {e}");
            None
        }
    }
}

/// Logs `reason` loudly, starts a console shell, and reaps forever. A halt, poweroff or
/// reboot signal runs the shutdown path.
pub fn emergency(reason: &str) -> ! {
    log::error!("EMERGENCY: {reason}");
    log::error!("EMERGENCY: arje's runtime is not running; reaping only. A shell is on the console; poweroff, reboot and halt work.");
    reaper_loop(Some(spawn_shell))
}

/// The loop behind [`emergency`]; with `shell == None` it only reaps and ignores
/// shutdown signals (called after reboot(2) failed).
pub fn reaper_loop(shell: Option<fn() -> Option<Child>>) -> ! {
    let sfd = match signalfd(&pid1_signals()) {
        Ok(s) => Some(s),
        Err(e) => {
            log::error!("signalfd: {e}; reaping every 1 s instead");
            None
        }
    };
    let mut child = shell.and_then(|f| f());
    let mut spawns = u32::from(child.is_some());
    loop {
        let signals = match &sfd {
            Some(sfd) => {
                wait_readable(sfd, std::time::Duration::from_secs(3600));
                drain(sfd)
            }
            None => {
                // No signalfd: nothing to wake us, so a bounded sleep is all that is left.
                std::thread::sleep(std::time::Duration::from_secs(1));
                Vec::new()
            }
        };
        if let Some(f) = shell {
            for sig in &signals {
                let kind = match *sig {
                    libc::SIGUSR1 => ShutdownKind::Halt,
                    libc::SIGUSR2 | libc::SIGPWR => ShutdownKind::Poweroff,
                    libc::SIGTERM | libc::SIGINT => ShutdownKind::Reboot,
                    _ => continue,
                };
                super::shutdown::finish(kind, Instant::now(), None);
            }
            // try_wait reaps the shell itself before the blanket reap can take it.
            let shell_gone = child
                .as_mut()
                .is_some_and(|c| !matches!(c.try_wait(), Ok(None)));
            if shell_gone && spawns < MAX_SHELL_SPAWNS {
                child = f();
                spawns += 1;
            }
        }
        reap_ready();
    }
}
