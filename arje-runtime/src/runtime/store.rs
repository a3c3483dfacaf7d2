//! Persistence: when the snapshot is written and where. Owns the state directories
//! (opened and checked once at start: [`Claim`]), the state lock, the encode buffer, the
//! durable writer thread and both debouncers, and knows whether the state is being
//! saved; the bytes themselves are encoded from the live state by `state.rs`.
//!
//! The /run copy is written at once after a quiet interval and at most once per
//! [`RUN_EVERY`] during a burst (with 10,000 live commands the per-turn write was a third
//! of the loop's CPU: `perf record` during `cargo run --release -p arje-bench --bin
//! runtime`). The durable copy is debounced to [`DURABLE_EVERY`] and written off the
//! loop's thread (write-temp, fsync, rename, fsync-directory).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::persist::{self, Debounce, DurableWriter, LockError, StateDir, StateLock};
use crate::timers::{TimerAction, Timers};

/// At most one /run snapshot write per this interval.
pub const RUN_EVERY: Duration = Duration::from_millis(10);

/// Default spacing of durable writes.
pub const DURABLE_EVERY: Duration = Duration::from_secs(1);

/// The state directories, opened and checked before anything else starts (see
/// `persist::open_run_dir`): what [`Store::new`] takes over.
pub struct Claim {
    run: Option<StateDir>,
    /// The run directory's lock: one arje per state directory.
    lock: Option<StateLock>,
    durable: Option<StateDir>,
    /// What the operator must hear (a refused directory): Warnings for the journal.
    warnings: Vec<String>,
}

impl Claim {
    /// Opens the run directory at `state_dir` (or a private one instead), takes its lock,
    /// and opens the durable one. `traverse_group`: the control socket's group when the
    /// socket lives in the state directory, so a directory created here lets that group
    /// through.
    ///
    /// Fails only if another arje-init holds the lock: it serves this state directory
    /// (and most likely this socket), and this one must not start beside it. A lock that
    /// cannot be taken for another reason is a warning: boot goes on.
    pub fn open(
        state_dir: &Path,
        durable_dir: Option<&Path>,
        traverse_group: Option<u32>,
    ) -> Result<Claim, LockError> {
        let run = persist::open_run_dir(state_dir, traverse_group);
        let mut warnings = run.warnings;
        let lock = match run.dir.as_ref().map(StateLock::acquire) {
            Some(Ok(lock)) => Some(lock),
            Some(Err(e @ LockError::Held { .. })) => return Err(e),
            Some(Err(e)) => {
                warnings.push(format!(
                    "{e}; a second arje-init on this state directory would not be stopped"
                ));
                None
            }
            None => None,
        };
        let durable = durable_dir.map(persist::open_durable_dir).and_then(|d| {
            warnings.extend(d.warnings);
            d.dir
        });
        for w in &warnings {
            log::error!("{w}");
        }
        Ok(Claim {
            run: run.dir,
            lock,
            durable,
            warnings,
        })
    }

    /// Where the on-disk event journal goes: `events/` in the durable directory, else in
    /// `journal` (the configured journal directory) if given, else in the run directory;
    /// whether it is on a disk (not tmpfs).
    pub fn journal_dir(
        &self,
        journal: Option<&std::path::Path>,
    ) -> Option<(std::path::PathBuf, bool)> {
        match (&self.durable, journal, &self.run) {
            (Some(d), _, _) => Some((d.join("events"), true)),
            (None, Some(j), _) => Some((j.join("events"), true)),
            (None, None, Some(r)) => Some((r.join("events"), false)),
            (None, None, None) => None,
        }
    }

    /// The run directory claimed (the configured one or its private replacement).
    pub fn run_dir(&self) -> Option<&StateDir> {
        self.run.as_ref()
    }

    /// Load the state from the claimed directories (before [`Store::new`] hands the durable
    /// one to its writer thread).
    pub fn load(&self) -> persist::Loaded {
        persist::load(self.run.as_ref(), self.durable.as_ref())
    }
}

pub struct Store {
    /// `None`: no directory could be trusted; nothing is saved (and status says so).
    run: Option<StateDir>,
    /// Held for the process's life, and across a re-exec ([`Store::hand_over`]).
    lock: Option<StateLock>,
    /// The encoded snapshot, reused between writes.
    pub buf: Vec<u8>,
    durable: Option<DurableWriter>,
    run_debounce: Debounce,
    durable_debounce: Debounce,
    /// Something the snapshot holds changed since the last write was scheduled.
    dirty: bool,
    /// Why the newest /run write failed; `None` once one succeeds.
    run_failure: Option<String>,
    /// The current failure has been put in the journal: one Warning per burst of
    /// failures, not one per write.
    failure_reported: bool,
    /// Warnings from opening the directories, not yet put in the journal.
    warnings: Vec<String>,
    /// A reply waits for this turn's changes: write them now, whatever the debounce says.
    forced: bool,
    /// This boot's id and our pid, read once: every snapshot records them.
    pub boot_id: String,
    pub own_pid: i32,
}

impl Store {
    /// The durable writer thread is started here, after the loop blocked its signals: it
    /// inherits the mask, so no signal is ever delivered to it instead of the signalfd.
    pub fn new(claim: Claim) -> Store {
        let durable = claim.durable.and_then(|dir| {
            let path = dir.path().to_path_buf();
            match DurableWriter::spawn(dir) {
                Ok(w) => Some(w),
                Err(e) => {
                    log::error!("durable snapshot writer for {}: {e}", path.display());
                    None
                }
            }
        });
        Store {
            run: claim.run,
            lock: claim.lock,
            buf: Vec::new(),
            durable,
            run_debounce: Debounce::new(RUN_EVERY),
            durable_debounce: Debounce::new(DURABLE_EVERY),
            dirty: false,
            run_failure: None,
            failure_reported: false,
            warnings: claim.warnings,
            forced: false,
            boot_id: persist::boot_id().unwrap_or_default(),
            own_pid: std::process::id() as i32,
        }
    }

    /// The run state directory in use (the configured one or its private replacement).
    pub fn state_dir(&self) -> Option<&StateDir> {
        self.run.as_ref()
    }

    /// Before exec'ing a new image: the lock's fd stays open across the exec, so the lock
    /// is never free between the two images.
    pub fn hand_over(&self) {
        if let Some(lock) = &self.lock {
            lock.hand_over();
        }
    }

    pub fn has_durable(&self) -> bool {
        self.durable.is_some()
    }

    /// The warnings of opening the directories, once.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// Something the snapshot holds changed.
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// A reply acknowledges a change of this turn: the next [`Store::run_write_due`]
    /// says yes if anything is unwritten, whatever the debounce says.
    pub fn force_run_write(&mut self) {
        self.forced = true;
    }

    /// End of a turn, or the /run timer fired: should the /run copy be encoded and
    /// written now? If a write is pending but not yet allowed, the timer is set for it.
    pub fn run_write_due(&mut self, now: Instant, timers: &mut Timers) -> bool {
        if std::mem::take(&mut self.dirty) {
            self.run_debounce.mark_dirty(now);
        }
        let forced = std::mem::take(&mut self.forced);
        if !self.run_debounce.is_dirty() {
            return false;
        }
        if forced || self.run_debounce.due(now) {
            self.run_debounce.written(now);
            return true;
        }
        if let Some(at) = self.run_debounce.next_deadline() {
            timers.add_once(at, TimerAction::RunSnapshot);
        }
        false
    }

    /// Write `buf` (just encoded) as the /run copy, and to the durable copy when due.
    /// Returns a Warning for the journal when the state has just stopped being saved.
    pub fn write(&mut self, now: Instant, timers: &mut Timers) -> Option<String> {
        self.write_run();
        if self.durable.is_some() {
            self.durable_debounce.mark_dirty(now);
            self.durable_due(now, timers);
        }
        self.report()
    }

    fn write_run(&mut self) {
        let Some(dir) = &self.run else { return };
        match persist::write_run(dir, &self.buf) {
            Ok(()) => self.run_failure = None,
            Err(e) => {
                // Logged once per burst: a full disk would otherwise log every turn.
                if self.run_failure.is_none() {
                    log::error!("{e}");
                }
                self.run_failure = Some(e.to_string());
            }
        }
    }

    /// Why the state is not being saved, if it is not: no trusted state directory, or
    /// the newest write of the /run or the durable copy failed. For `shuma status`.
    pub fn failure(&self) -> Option<String> {
        if self.run.is_none() {
            return Some("no trusted state directory (see the journal)".into());
        }
        if let Some(e) = &self.run_failure {
            return Some(e.clone());
        }
        self.durable
            .as_ref()
            .and_then(DurableWriter::failure)
            .map(|e| format!("durable copy: {e}"))
    }

    /// A Warning the first time a write fails after writes succeeded (a burst of
    /// failures is reported once); a log line when writes succeed again. A failure of
    /// the durable writer thread is seen here, at the next change after it.
    fn report(&mut self) -> Option<String> {
        match (self.failure(), self.failure_reported) {
            (Some(why), false) => {
                self.failure_reported = true;
                Some(format!("state is not being saved: {why}"))
            }
            (None, true) => {
                self.failure_reported = false;
                log::info!("state is being saved again");
                None
            }
            _ => None,
        }
    }

    /// Submit the newest bytes to the durable writer if its debounce allows, else set the
    /// timer for when it will.
    pub fn durable_due(&mut self, now: Instant, timers: &mut Timers) {
        let Some(writer) = &self.durable else { return };
        if !self.durable_debounce.is_dirty() {
            return;
        }
        if self.durable_debounce.due(now) {
            writer.submit(self.buf.clone());
            self.durable_debounce.written(now);
        } else if let Some(at) = self.durable_debounce.next_deadline() {
            timers.add_once(at, TimerAction::Durable);
        }
    }

    /// Write `buf` to both copies now and wait for the durable one (shutdown, re-exec).
    pub fn flush(&mut self, durable_bytes: Option<Vec<u8>>) {
        self.write_run();
        if let Some(writer) = &self.durable {
            writer.submit(durable_bytes.unwrap_or_else(|| self.buf.clone()));
            if let Err(e) = writer.flush_blocking() {
                log::error!("durable snapshot: {e}");
            }
        }
    }
}
