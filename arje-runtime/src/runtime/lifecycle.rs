//! The runtime's life: the signals that end it (or are only logged), a shutdown under
//! one deadline, and when the loop is done (an exit, a shutdown, a re-exec).

use std::time::Instant;

use shuma_card::protocol::{Mode, ShutdownKind};
use shuma_card::EventKind;

use super::{signals, Lifecycle, Runtime};
use crate::timers::TimerAction;
use crate::Outcome;

impl Runtime {
    pub(super) fn on_signals(&mut self) {
        for got in self.signals.read() {
            match got.signo {
                libc::SIGCHLD => self.on_sigchld(got.pid),
                _ => self.on_stop_signal(got),
            }
        }
    }

    /// What a signal means depends on the mode: busybox's halt, poweroff and reboot
    /// send PID 1 SIGUSR1, SIGUSR2 and SIGTERM; SIGINT is ctrl-alt-del; SIGPWR a power
    /// failure. Under another init, SIGTERM and SIGINT ask arje to stop and exit.
    fn on_stop_signal(&mut self, got: signals::Received) {
        if let Some((kind, now)) = signals::systemd_request(got.signo) {
            return self.on_systemd_request(got, kind, now);
        }
        let outcome = match (&self.cfg.mode, got.signo) {
            (Mode::Pid1, libc::SIGUSR1) => Outcome::Shutdown(ShutdownKind::Halt),
            (Mode::Pid1, libc::SIGUSR2 | libc::SIGPWR) => Outcome::Shutdown(ShutdownKind::Poweroff),
            (Mode::Pid1, libc::SIGTERM | libc::SIGINT) => Outcome::Shutdown(ShutdownKind::Reboot),
            (Mode::Subreaper, libc::SIGTERM | libc::SIGINT) => Outcome::Exit,
            (_, libc::SIGHUP) => {
                let why =
                    "reloading nothing (cards are loaded at start and with `shuma ws create`)";
                self.signals.ignore(got, why);
                return;
            }
            (_, _) => {
                self.signals.ignore(got, "no meaning in this mode");
                return;
            }
        };
        log::info!("{}: {outcome:?}", signals::name(got.signo));
        self.begin_shutdown(outcome);
    }

    /// systemd's SIGRTMIN+3/4/5 (halt, poweroff, reboot) and +13/14/15 (the same,
    /// immediately: everything is killed at once instead of stopped). A subreaper has no
    /// machine to halt: logged, as busybox's SIGUSR1 and SIGUSR2 are (docs/PID1.md).
    fn on_systemd_request(&mut self, got: signals::Received, kind: ShutdownKind, now: bool) {
        if self.cfg.mode != Mode::Pid1 {
            self.signals
                .ignore(got, "a machine shutdown; this arje is a subreaper");
            return;
        }
        log::info!("{}: {kind:?}", signals::name(got.signo));
        self.begin_shutdown(Outcome::Shutdown(kind));
        if now {
            self.shutdown_deadline();
        }
    }

    /// Stop every workspace in parallel under one deadline.
    pub(super) fn begin_shutdown(&mut self, outcome: Outcome) {
        if matches!(self.life, Lifecycle::Stopping { .. }) {
            return;
        }
        // The durable copy keeps the intent (the workspaces as they are now), not the
        // emptiness the shutdown leaves: the next boot brings them back. From here on
        // the snapshot is frozen.
        self.flush_state();
        let began = Instant::now();
        let deadline = began + self.cfg.shutdown_timeout;
        self.life = Lifecycle::Stopping {
            outcome,
            began,
            deadline,
        };
        self.timers.add(deadline, TimerAction::ShutdownDeadline);
        // Leave a tenth of the bound for the final kill and reap.
        let cap = self.cfg.shutdown_timeout.mul_f32(0.9);
        for id in self.table.workspace_ids() {
            self.stop_workspace(id, Some(cap), true);
        }
    }

    /// Is the runtime done (an outcome to return)?
    pub(super) fn finished(&mut self) -> Option<Outcome> {
        match &self.life {
            Lifecycle::Running => None,
            Lifecycle::Reexec { binary } => {
                let binary = binary.clone();
                // A `WaitReady` is not carried across the exec (the handover names only
                // `run --wait` follows): its client hears so rather than waiting for ever.
                self.interrupt_waiters("arje was re-executed; ask again");
                // The answer to `daemon-reexec` goes out before the exec.
                self.server.flush_all();
                let inheritable = crate::sys::fd::inheritable();
                self.prepare_reexec();
                log::info!("re-exec of {}", binary.display());
                self.life = Lifecycle::HandedOver {
                    binary: binary.clone(),
                    inheritable,
                };
                Some(Outcome::Reexec { binary })
            }
            // Asked again without `reexec_failed`: the exec is still the caller's to do.
            Lifecycle::HandedOver { binary, .. } => Some(Outcome::Reexec {
                binary: binary.clone(),
            }),
            Lifecycle::Stopping { outcome, began, .. } => {
                if !self.table.workspaces.is_empty() {
                    return None;
                }
                let (outcome, began) = (outcome.clone(), *began);
                // Flush what clients are owed (a `ws stop` answer) on a best-effort basis.
                self.server.flush_all();
                log::info!("every workspace stopped after {:?}", began.elapsed());
                Some(outcome)
            }
        }
    }

    /// The exec of [`Outcome::Reexec`] failed (`error`) and this process is still this
    /// image, with everything it had: undo what the hand-over did (`take_back`), say so
    /// in the log and the journal, and carry on with [`Runtime::resume`]. The
    /// `daemon-reexec` answer already sent stays true: the request was accepted and
    /// carried out as far as the kernel allowed. Does nothing unless a hand-over is
    /// under way.
    pub fn reexec_failed(&mut self, error: &std::io::Error) {
        let Lifecycle::HandedOver {
            binary,
            inheritable,
        } = std::mem::replace(&mut self.life, Lifecycle::Running)
        else {
            return;
        };
        self.take_back(&inheritable);
        let message = format!(
            "re-exec of {} failed: {error}; this image carries on with every child",
            binary.display()
        );
        log::error!("{message}");
        self.event(EventKind::Warning { message });
    }

    /// Serve again after [`Runtime::reexec_failed`]: [`Runtime::run`]'s loop, without
    /// loading the cards a second time.
    pub fn resume(&mut self) -> Outcome {
        loop {
            if let Some(outcome) = self.turn() {
                return outcome;
            }
        }
    }

    pub(super) fn shutdown_deadline(&mut self) {
        let names: Vec<String> = self
            .table
            .workspaces
            .values()
            .map(|w| w.spec.name.clone())
            .collect();
        if !names.is_empty() {
            log::warn!(
                "shutdown deadline reached; still stopping: {}; killing them",
                names.join(", ")
            );
        }
        for id in self.table.workspace_ids() {
            self.force_remove_workspace(id);
        }
    }
}
