//! Persistence: when the snapshot is written and where. Owns the encode buffer, the
//! durable writer thread and both debouncers; the bytes themselves are encoded from the
//! live state by `state.rs`.
//!
//! The /run copy is written at once after a quiet interval and at most once per
//! [`RUN_EVERY`] during a burst (with 10,000 live commands the per-turn write was a third
//! of the loop's CPU: `perf record` during `cargo run --release -p arje-bench --bin
//! runtime`). The durable copy is debounced to [`DURABLE_EVERY`] and written off the
//! loop's thread (write-temp, fsync, rename, fsync-directory).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::persist::{self, Debounce, DurableWriter};
use crate::timers::{TimerAction, Timers};

/// At most one /run snapshot write per this interval.
pub const RUN_EVERY: Duration = Duration::from_millis(10);

/// Default spacing of durable writes.
pub const DURABLE_EVERY: Duration = Duration::from_secs(1);

pub struct Store {
    state_dir: PathBuf,
    /// The encoded snapshot, reused between writes.
    pub buf: Vec<u8>,
    durable: Option<DurableWriter>,
    run_debounce: Debounce,
    durable_debounce: Debounce,
    /// Something the snapshot holds changed since the last write was scheduled.
    dirty: bool,
    /// A reply waits for this turn's changes: write them now, whatever the debounce says.
    forced: bool,
    /// This boot's id and our pid, read once: every snapshot records them.
    pub boot_id: String,
    pub own_pid: i32,
}

impl Store {
    /// The durable writer thread is started here, after the loop blocked its signals: it
    /// inherits the mask, so no signal is ever delivered to it instead of the signalfd.
    pub fn new(state_dir: PathBuf, durable_dir: Option<PathBuf>) -> Store {
        let durable = durable_dir.and_then(|dir| match DurableWriter::spawn(dir.clone()) {
            Ok(w) => Some(w),
            Err(e) => {
                log::error!("durable snapshot writer for {}: {e}", dir.display());
                None
            }
        });
        Store {
            state_dir,
            buf: Vec::new(),
            durable,
            run_debounce: Debounce::new(RUN_EVERY),
            durable_debounce: Debounce::new(DURABLE_EVERY),
            dirty: false,
            forced: false,
            boot_id: persist::boot_id().unwrap_or_default(),
            own_pid: std::process::id() as i32,
        }
    }

    pub fn state_dir(&self) -> &std::path::Path {
        &self.state_dir
    }

    pub fn has_durable(&self) -> bool {
        self.durable.is_some()
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
    pub fn write(&mut self, now: Instant, timers: &mut Timers) {
        if let Err(e) = persist::write_run(&self.state_dir, &self.buf) {
            log::error!("{e}");
        }
        if self.durable.is_some() {
            self.durable_debounce.mark_dirty(now);
            self.durable_due(now, timers);
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
        if let Err(e) = persist::write_run(&self.state_dir, &self.buf) {
            log::error!("{e}");
        }
        if let Some(writer) = &self.durable {
            writer.submit(durable_bytes.unwrap_or_else(|| self.buf.clone()));
            if let Err(e) = writer.flush_blocking() {
                log::error!("durable snapshot: {e}");
            }
        }
    }
}
