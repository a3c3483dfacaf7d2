//! The face the runtime shows a binary that wants to watch it between turns without
//! owning a part of the loop: PID 1's `arje.exit-on` (arje-init/src/pid1/exit_on.rs)
//! reads the journal by cursor after every turn and asks for a shutdown when the
//! command it watches has ended. No timer and no fd of its own: a journal entry can
//! only appear during a turn (or while the cards load), so looking right before each
//! wait sees every entry as early as it can be seen.

use std::panic::{catch_unwind, AssertUnwindSafe};

use shuma_card::protocol::{Mode, ShutdownKind};
use shuma_card::Event;

use super::{Lifecycle, Runtime};
use crate::Outcome;

impl Runtime {
    /// The id of the newest journal entry before this runtime started:
    /// [`Runtime::events_after`] with it returns everything this start journalled,
    /// the starts of workspaces restored from the state included, and nothing of an
    /// earlier boot (the journal on disk holds those too).
    pub fn journal_start_cursor(&self) -> u64 {
        self.start_cursor
    }

    /// Journal entries with an id above `cursor`, oldest first (as `shuma events`
    /// reads them: the ring, or the disk for entries the ring no longer holds).
    pub fn events_after(&self, cursor: u64) -> Vec<Event> {
        self.journal.after(cursor)
    }

    /// Stop every workspace and end the loop: [`Outcome::Shutdown`] with `kind` as PID
    /// 1, [`Outcome::Exit`] under another init. Nothing if a shutdown is under way.
    pub fn request_shutdown(&mut self, kind: ShutdownKind) {
        if matches!(self.life, Lifecycle::Stopping { .. }) {
            return;
        }
        let outcome = match self.cfg.mode {
            Mode::Pid1 => Outcome::Shutdown(kind),
            Mode::Subreaper => Outcome::Exit,
        };
        log::info!("{kind:?} requested in-process: {outcome:?}");
        self.begin_shutdown(outcome);
    }

    /// [`Runtime::run`], calling `observe` once the cards are loaded, after every turn,
    /// and once more with the outcome decided (the last turn's entries).
    pub fn run_observed(&mut self, observe: &mut dyn FnMut(&mut Runtime)) -> Outcome {
        self.begin_serving();
        self.serve_observed(observe)
    }

    /// [`Runtime::resume`] with the same calls to `observe` as [`Runtime::run_observed`].
    pub fn resume_observed(&mut self, observe: &mut dyn FnMut(&mut Runtime)) -> Outcome {
        self.serve_observed(observe)
    }

    fn serve_observed(&mut self, observe: &mut dyn FnMut(&mut Runtime)) -> Outcome {
        loop {
            self.observe_contained(observe);
            if let Some(outcome) = self.turn() {
                self.observe_contained(observe);
                return outcome;
            }
        }
    }

    /// A panic in the observer is the binary's bug, not the loop's: contained as a
    /// handler's is, so PID 1 keeps serving.
    fn observe_contained(&mut self, observe: &mut dyn FnMut(&mut Runtime)) {
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| observe(self))) {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic".into());
            log::error!("contained a panic in the runtime's observer: {msg}");
        }
    }
}
