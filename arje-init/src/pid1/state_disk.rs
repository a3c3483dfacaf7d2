//! The state device: wait for its /dev node, then mount it.
//!
//! virtio_blk probes its disk asynchronously: finit_module returns before /dev/vda
//! exists. Rather than sleep-polling, an inotify watch on the node's directory wakes us
//! when devtmpfs creates it, bounded by a timeout.

use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};
use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
use rustix::fs::Mode;
use rustix::mount::{mount, MountFlags};

#[derive(Debug)]
pub enum StateDiskError {
    /// The device node did not appear in time.
    NoDevice { dev: PathBuf, waited: Duration },
    Watch {
        dir: PathBuf,
        err: rustix::io::Errno,
    },
    Mkdir {
        dir: PathBuf,
        err: rustix::io::Errno,
    },
    Mount {
        dev: PathBuf,
        target: PathBuf,
        fstype: String,
        err: rustix::io::Errno,
    },
}

impl std::fmt::Display for StateDiskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateDiskError::NoDevice { dev, waited } => {
                write!(
                    f,
                    "{} did not appear within {} ms",
                    dev.display(),
                    waited.as_millis()
                )
            }
            StateDiskError::Watch { dir, err } => {
                write!(f, "inotify watch on {}: {err}", dir.display())
            }
            StateDiskError::Mkdir { dir, err } => write!(f, "mkdir {}: {err}", dir.display()),
            StateDiskError::Mount {
                dev,
                target,
                fstype,
                err,
            } => {
                write!(
                    f,
                    "mount {} ({fstype}) on {}: {err}",
                    dev.display(),
                    target.display()
                )
            }
        }
    }
}

/// Waits until `dev` exists, at most `timeout`. Returns how long it waited.
pub fn wait_for_node(dev: &Path, timeout: Duration) -> Result<Duration, StateDiskError> {
    let start = Instant::now();
    let dir = dev.parent().unwrap_or(Path::new("/")).to_path_buf();
    let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK).map_err(|err| {
        StateDiskError::Watch {
            dir: dir.clone(),
            err,
        }
    })?;
    inotify::add_watch(&fd, &dir, WatchFlags::CREATE | WatchFlags::MOVED_TO).map_err(|err| {
        StateDiskError::Watch {
            dir: dir.clone(),
            err,
        }
    })?;
    // Checked after the watch is in place: a node created in between is seen either here
    // or as an event, never missed.
    let mut buf = [MaybeUninit::<u8>::uninit(); 1024];
    loop {
        if dev.exists() {
            return Ok(start.elapsed());
        }
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(StateDiskError::NoDevice {
                dev: dev.to_path_buf(),
                waited: start.elapsed(),
            });
        }
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut fds, Some(&crate::pid1::reap::timespec(left))) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(err) => return Err(StateDiskError::Watch { dir, err }),
        }
        // Drain the events; which name arrived does not matter, the exists() check does.
        let mut reader = inotify::Reader::new(&fd, &mut buf);
        while reader.next().is_ok() {}
    }
}

/// Waits for `dev`, creates `target` and mounts `dev` on it.
pub fn mount_state(
    dev: &Path,
    target: &Path,
    fstype: &str,
    timeout: Duration,
) -> Result<(), StateDiskError> {
    let waited = wait_for_node(dev, timeout)?;
    log::info!(
        "state device {} present after {} ms",
        dev.display(),
        waited.as_millis()
    );
    create_dir_all(target)?;
    mount(dev, target, fstype, MountFlags::NOATIME, None).map_err(|err| StateDiskError::Mount {
        dev: dev.to_path_buf(),
        target: target.to_path_buf(),
        fstype: fstype.to_string(),
        err,
    })?;
    log::info!(
        "state device {} mounted on {} ({fstype})",
        dev.display(),
        target.display()
    );
    Ok(())
}

fn create_dir_all(dir: &Path) -> Result<(), StateDiskError> {
    let mut path = PathBuf::from("/");
    for part in dir.components().skip(1) {
        path.push(part);
        match rustix::fs::mkdir(&path, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(err) => return Err(StateDiskError::Mkdir { dir: path, err }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_wait_for_node_existing_returns_at_once() {
        // Arrange
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("vda");
        std::fs::write(&node, b"").unwrap();

        // Act
        let r = wait_for_node(&node, Duration::from_secs(5));

        // Assert
        assert!(r.is_ok(), "{r:?}");
    }

    #[test]
    fn test_wait_for_node_created_later_is_seen() {
        // Arrange
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("vdb");
        let creator_node = node.clone();
        // The creator waits for nothing: whether it runs before or after the watch is
        // installed, the waiter must see the node (the race the ordering defends against).
        let creator = std::thread::spawn(move || std::fs::write(creator_node, b"").unwrap());

        // Act
        let r = wait_for_node(&node, Duration::from_secs(30));
        creator.join().unwrap();

        // Assert
        assert!(r.is_ok(), "{r:?}");
    }

    #[test]
    fn test_wait_for_node_absent_times_out_naming_device() {
        // Arrange
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("never");

        // Act
        let r = wait_for_node(&node, Duration::from_millis(50));

        // Assert
        let msg = r.unwrap_err().to_string();
        assert!(
            msg.contains("never") && msg.contains("did not appear"),
            "{msg}"
        );
    }
}
