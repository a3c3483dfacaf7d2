//! Job control when PROGRAM holds the terminal's foreground (spawn.rs gave it): what
//! sudo does for its command, so that Ctrl-Z on `arje-init -- vim` from an interactive
//! shell suspends the whole job instead of leaving the terminal to a stopped group.
//!
//! When PROGRAM is stopped (Ctrl-Z sends SIGTSTP to the foreground group, PROGRAM's),
//! arje takes the foreground back for its own group and stops itself with SIGSTOP: the
//! shell that started arje sees its job stop and takes the terminal. When the shell
//! continues it (`fg` gives arje's group the foreground, then sends SIGCONT), arje
//! hands the foreground back to PROGRAM's group before forwarding SIGCONT to it; after
//! `bg` (SIGCONT without the foreground) it leaves the terminal with the shell.
//!
//! As PID 1 of a pid namespace none of this happens: the kernel does not deliver a
//! SIGSTOP from inside the namespace to its init, so arje could not stop, and nothing
//! above it would see the stop anyway. PROGRAM then stays stopped until something
//! sends arje (or PROGRAM) SIGCONT, as under tini.

use rustix::process::{getpgrp, getpid, Pid};
use rustix::stdio::stdin;
use rustix::termios::{tcgetpgrp, tcsetpgrp};

/// What arje knows about the terminal on its fd 0.
pub struct Terminal {
    child: Pid,
    /// PROGRAM's group held the foreground right after it started.
    handed: bool,
    /// arje can stop itself (it is not PID 1 of a namespace).
    can_stop: bool,
    /// arje stopped itself after PROGRAM stopped, and has not been continued yet.
    stopped_self: bool,
}

impl Terminal {
    /// Called once PROGRAM runs (spawn returns after its exec, so its tcsetpgrp, if it
    /// worked, is done).
    pub fn after_spawn(child: i32, is_init: bool) -> Terminal {
        let child = Pid::from_raw(child).unwrap_or_else(getpid);
        let handed = tcgetpgrp(stdin()) == Ok(child);
        if handed {
            log::debug!(
                "pid {} holds the terminal's foreground",
                child.as_raw_nonzero()
            );
        }
        Terminal {
            child,
            handed,
            can_stop: !is_init,
            stopped_self: false,
        }
    }

    /// PROGRAM was stopped by `sig`.
    pub fn on_child_stopped(&mut self, sig: i32) {
        if !(self.handed && self.can_stop) {
            log::info!(
                "pid {} stopped by signal {sig}",
                self.child.as_raw_nonzero()
            );
            return;
        }
        // SIGTTOU is blocked in arje, so this works even from the background.
        if let Err(e) = tcsetpgrp(stdin(), getpgrp()) {
            log::debug!("taking the terminal back: {e}");
        }
        log::debug!(
            "pid {} stopped by signal {sig}; stopping too",
            self.child.as_raw_nonzero()
        );
        self.stopped_self = true;
        if let Err(e) = arje_runtime::kill_raw(getpid().as_raw_nonzero().get(), libc::SIGSTOP) {
            log::warn!("SIGSTOP to self: {e}");
            self.stopped_self = false;
        }
    }

    /// arje received SIGCONT (it is about to be forwarded to PROGRAM's group).
    pub fn on_continue(&mut self) {
        if !std::mem::take(&mut self.stopped_self) {
            return;
        }
        // Continued in the foreground (`fg`): PROGRAM gets it back. In the background
        // (`bg`): the shell keeps the terminal, and PROGRAM, if it reads it, stops on
        // SIGTTIN as any background job does.
        if tcgetpgrp(stdin()) == Ok(getpgrp()) {
            if let Err(e) = tcsetpgrp(stdin(), self.child) {
                log::debug!("handing the terminal back: {e}");
            }
        }
    }
}
