//! A background thread that writes the durable copy, so the event loop never waits on a
//! disk's fsync.
//!
//! A durable write is two fsyncs; on a real disk that is milliseconds, on a busy or
//! network-backed one it can be seconds, and the loop must keep reaping children and
//! answering clients meanwhile. The loop hands the newest encoded bytes over and goes on;
//! the thread writes the newest bytes it has. Bytes handed over while a write is under way
//! replace each other (newest wins), so a burst of changes costs one extra write, not a
//! queue.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::{write_durable, PersistError, StateDir};

/// Owns the durable-copy writer thread for one directory.
///
/// Spawn it *after* the loop has blocked its signals with sigprocmask: a new thread
/// inherits the mask, and an unblocked thread would otherwise receive SIGTERM or SIGCHLD
/// with the default disposition instead of the loop's signalfd. Before a re-exec call
/// [`DurableWriter::flush_blocking`]: exec ends every other thread. Dropping it writes what
/// is pending and joins the thread.
#[derive(Debug)]
pub struct DurableWriter {
    shared: Arc<Shared>,
    dir: Arc<StateDir>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled on every change of `state`: new bytes, a finished write, stop, death.
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// The newest bytes not yet taken by the thread.
    pending: Option<Vec<u8>>,
    /// Generation of the newest bytes handed over (counts [`DurableWriter::submit`]s).
    submitted: u64,
    /// Generation of the newest bytes whose write has finished, well or badly.
    finished: u64,
    /// The error of the newest finished write, if it failed, until reported by a flush.
    last_error: Option<PersistError>,
    /// Why the newest finished write failed, as long as no later one succeeded: what
    /// [`DurableWriter::failure`] reports.
    failing: Option<String>,
    stop: bool,
    /// The thread has exited (stopped, or panicked: then the caller writes itself).
    dead: bool,
}

impl DurableWriter {
    /// Starts the writer thread for `dir`.
    pub fn spawn(dir: StateDir) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let dir = Arc::new(dir);
        let thread = {
            let shared = Arc::clone(&shared);
            let dir = Arc::clone(&dir);
            crate::runtime::signals::spawn_blocked("arje-durable", move || {
                writer_thread(&shared, &dir)
            })?
        };
        Ok(DurableWriter {
            shared,
            dir,
            thread: Some(thread),
        })
    }

    /// Hands `bytes` (an encoded snapshot) over to be written; returns at once. Replaces
    /// bytes handed over earlier and not yet taken.
    pub fn submit(&self, bytes: Vec<u8>) {
        let mut state = self.shared.lock();
        state.pending = Some(bytes);
        state.submitted += 1;
        drop(state);
        self.shared.changed.notify_all();
    }

    /// Why the durable copy is not being written: the error of the newest finished write,
    /// until a later write succeeds. `None` while writes succeed (or none finished yet).
    pub fn failure(&self) -> Option<String> {
        self.shared.lock().failing.clone()
    }

    /// Waits until everything handed over so far is on disk, for shutdown and re-exec.
    /// Returns the error of the newest write if it failed (each error is reported once).
    /// If the thread is gone, writes the pending bytes in the calling thread instead, so
    /// the final state is written whatever happened to the thread.
    pub fn flush_blocking(&self) -> Result<(), PersistError> {
        let mut state = self.shared.lock();
        let target = state.submitted;
        while state.finished < target && !state.dead {
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
        if state.finished < target {
            log::error!(
                "durable writer thread for {} is gone; writing in the caller",
                self.dir.path().display()
            );
            if let Some(bytes) = state.pending.take() {
                state.finished = target;
                drop(state);
                return write_durable(&self.dir, &bytes);
            }
        }
        state.last_error.take().map_or(Ok(()), Err)
    }
}

impl Drop for DurableWriter {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            // The thread writes what is pending before it exits; a panic in it was logged
            // by the panic hook already and must not become a second panic here.
            let _ = thread.join();
        }
    }
}

impl Shared {
    /// Locks the state. A poisoned mutex (a panic while it was held) still holds
    /// consistent plain data, and this runs inside PID 1, so poison is not a reason to stop.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Marks the state dead when the thread exits for any reason, including a panic, so that
/// [`DurableWriter::flush_blocking`] never waits for a thread that will not answer.
struct DeathNotice<'a>(&'a Shared);

impl Drop for DeathNotice<'_> {
    fn drop(&mut self) {
        self.0.lock().dead = true;
        self.0.changed.notify_all();
    }
}

fn writer_thread(shared: &Shared, dir: &StateDir) {
    let _notice = DeathNotice(shared);
    let mut state = shared.lock();
    loop {
        if let Some(bytes) = state.pending.take() {
            let generation = state.submitted;
            drop(state);
            let result = write_durable(dir, &bytes);
            if let Err(e) = &result {
                log::error!("durable snapshot not written: {e}");
            }
            state = shared.lock();
            state.finished = generation;
            state.failing = result.as_ref().err().map(ToString::to_string);
            state.last_error = result.err();
            shared.changed.notify_all();
        } else if state.stop {
            return;
        } else {
            state = shared
                .changed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::SNAPSHOT_FILE;

    fn open(t: &tempfile::TempDir) -> StateDir {
        StateDir::open(t.path(), None).unwrap()
    }

    #[test]
    fn test_durable_writer_flush_writes_newest_bytes() {
        // Arrange
        let tmp = tempfile::tempdir().unwrap();
        let writer = DurableWriter::spawn(open(&tmp)).unwrap();

        // Act
        for i in 0..50u32 {
            writer.submit(i.to_le_bytes().to_vec());
        }
        let result = writer.flush_blocking();

        // Assert
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(
            std::fs::read(tmp.path().join(SNAPSHOT_FILE)).unwrap(),
            49u32.to_le_bytes()
        );
    }

    #[test]
    fn test_durable_writer_drop_writes_pending() {
        // Arrange
        let tmp = tempfile::tempdir().unwrap();
        let writer = DurableWriter::spawn(open(&tmp)).unwrap();
        writer.submit(b"last".to_vec());

        // Act
        drop(writer);

        // Assert
        assert_eq!(
            std::fs::read(tmp.path().join(SNAPSHOT_FILE)).unwrap(),
            b"last"
        );
    }

    #[test]
    fn test_durable_writer_unwritable_dir_flush_reports_error_once_and_failure_until_fixed() {
        // Arrange: the directory is removed once opened, so no file can be created in it.
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("arje");
        let writer = DurableWriter::spawn(StateDir::open(&path, None).unwrap()).unwrap();
        std::fs::remove_dir(&path).unwrap();
        writer.submit(b"x".to_vec());

        // Act
        let first = writer.flush_blocking();
        let second = writer.flush_blocking();
        let failure = writer.failure();

        // Assert
        assert!(
            matches!(first, Err(PersistError::WriteTemp { .. })),
            "{first:?}"
        );
        assert!(second.is_ok(), "{second:?}");
        assert!(failure.is_some_and(|f| f.contains("arje/.snapshot.bin.")));
    }

    #[test]
    fn test_durable_writer_flush_with_nothing_submitted_is_ok() {
        // Arrange
        let tmp = tempfile::tempdir().unwrap();
        let writer = DurableWriter::spawn(open(&tmp)).unwrap();

        // Act
        let result = writer.flush_blocking();

        // Assert
        assert!(result.is_ok());
        assert!(!tmp.path().join(SNAPSHOT_FILE).exists());
    }
}
