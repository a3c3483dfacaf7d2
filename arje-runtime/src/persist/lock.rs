//! One arje per state directory: an exclusive `flock` on `<state-dir>/lock`, held for the
//! process's life and across a re-exec.
//!
//! Two arje-init on one state directory would write the same snapshot, and the second
//! would take the control socket over (bind removes a live socket's file). The second
//! one stops at start instead, naming the first's pid, which the lock file holds.
//!
//! A flock belongs to the open file description, not to the process: it is released only
//! when the last fd of that description is closed. So the lock survives a re-exec if its
//! fd survives the exec: [`StateLock::hand_over`] clears close-on-exec just before it, and
//! the new image finds the fd it inherited by the lock file's inode and takes it over
//! ([`crate::sys::fd::adopt_inherited`]). Re-locking an inherited description succeeds at
//! once; a fresh `open` + `flock` would fail against our own inherited lock. At no moment
//! between the two images is the lock free, so no other arje can slip in. The adopted fd
//! is close-on-exec again, so no child arje starts inherits the lock (a child that
//! outlived arje would otherwise keep every later arje out).

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use rustix::fs::{AtFlags, FlockOperation};
use rustix::io::Errno;

use super::StateDir;

/// The lock file's name in the state directory.
pub const LOCK_FILE: &str = "lock";

/// The held lock. Dropping it (closing the fd) releases it.
#[derive(Debug)]
pub struct StateLock {
    file: File,
}

/// The state directory's lock could not be taken.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it: the pid it wrote, if it did yet.
    Held {
        path: PathBuf,
        pid: Option<i32>,
    },
    Io {
        path: PathBuf,
        source: io::Error,
    },
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held {
                path,
                pid: Some(pid),
            } => write!(
                f,
                "another arje-init (pid {pid}) holds {}: it serves this state directory",
                path.display()
            ),
            LockError::Held { path, pid: None } => write!(
                f,
                "another arje-init holds {} (its pid is not written yet): it serves this state directory",
                path.display()
            ),
            LockError::Io { path, source } => {
                write!(f, "cannot lock {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for LockError {}

impl StateLock {
    /// `flock(LOCK_EX | LOCK_NB)` on `dir/lock` (opened without following a symlink),
    /// or on the fd of it this process inherited across a re-exec; then writes our pid
    /// into it.
    pub fn acquire(dir: &StateDir) -> Result<StateLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = match inherited(dir) {
            Some(fd) => File::from(fd),
            None => dir.open_or_create(LOCK_FILE).map_err(io_err)?,
        };
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => match holder(&mut file) {
                // Held by this very process: by an fd inherited across a re-exec that
                // was not found (no /proc), which holds it for the process's life; or,
                // in a multi-threaded test process, by a copy of our own fd in a child
                // between its fork and exec. Not another arje.
                Some(pid) if pid == std::process::id() as i32 => {
                    log::warn!(
                        "{}: held by this process already (an fd inherited across exec that was not found); going on",
                        path.display()
                    );
                    return Ok(StateLock { file });
                }
                pid => return Err(LockError::Held { pid, path }),
            },
            Err(e) => return Err(io_err(e.into())),
        }
        let pid = format!("{}\n", std::process::id());
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(pid.as_bytes()))
            .map_err(io_err)?;
        Ok(StateLock { file })
    }

    /// Just before exec'ing a new image: keep the lock's fd open across exec (clear
    /// close-on-exec), so the lock is never released between the two images.
    pub fn hand_over(&self) {
        if let Err(e) = rustix::io::fcntl_setfd(&self.file, rustix::io::FdFlags::empty()) {
            log::warn!("re-exec: the state lock will be taken again after exec: {e}");
        }
    }
}

/// The fd of `dir/lock` this process inherited across exec, if any: the same inode.
fn inherited(dir: &StateDir) -> Option<OwnedFd> {
    let st = rustix::fs::statat(dir.fd(), LOCK_FILE, AtFlags::SYMLINK_NOFOLLOW).ok()?;
    crate::sys::fd::adopt_inherited(|m| m.dev() == st.st_dev && m.ino() == st.st_ino)
}

/// The pid the holder wrote into the lock file.
fn holder(file: &mut File) -> Option<i32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_acquire_held_by_another_pid_is_held_naming_that_pid() {
        // Arrange: a second open file description of a held lock, whose file names
        // another pid (as another arje-init writes its own).
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path(), None).unwrap();
        let first = StateLock::acquire(&dir).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap(),
            format!("{}\n", std::process::id())
        );
        std::fs::write(dir.join(LOCK_FILE), b"4242\n").unwrap();

        // Act
        let second = StateLock::acquire(&dir);

        // Assert
        match second {
            Err(
                e @ LockError::Held {
                    pid: Some(4242), ..
                },
            ) => {
                assert!(e.to_string().contains("pid 4242"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        drop(first);
    }

    #[test]
    fn test_acquire_after_drop_succeeds() {
        // Arrange
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path(), None).unwrap();
        drop(StateLock::acquire(&dir).unwrap());

        // Act
        let again = StateLock::acquire(&dir);

        // Assert
        assert!(again.is_ok(), "{again:?}");
    }

    #[test]
    fn test_acquire_lock_file_symlink_is_refused_and_target_unchanged() {
        // Arrange
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(&tmp.path().join("d"), None).unwrap();
        let target = tmp.path().join("target");
        std::fs::write(&target, b"keep").unwrap();
        std::os::unix::fs::symlink(&target, dir.join(LOCK_FILE)).unwrap();

        // Act
        let result = StateLock::acquire(&dir);

        // Assert
        assert!(matches!(result, Err(LockError::Io { .. })), "{result:?}");
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    }
}
