//! cgroup.events, memory.events and pids.events: parsing, and the fds an epoll loop
//! watches.
//!
//! The kernel rule: when a value in one of these files changes, the kernel calls
//! `cgroup_file_notify()`, which wakes pollers of the file. `poll`/`epoll` then report
//! **EPOLLPRI** (with EPOLLERR) on an fd open on it, never EPOLLIN (a regular file is
//! always readable). The report stays pending until the file is read again through that
//! fd: reading records the event count seen. So the loop registers the fd with EPOLLPRI,
//! and on each wake-up re-reads it with [`read_events`] (pread from offset 0); a
//! level-triggered registration that never re-reads would spin. inotify's IN_MODIFY
//! fires on the same notification and is the alternative.
//!
//! The kernel also coalesces: at most one notification per file per 10 ms
//! (CGROUP_FILE_NOTIFY_MIN_INTV); a change inside that window is delivered by a timer
//! when it ends. So the wake-up can trail the change by up to 10 ms, and the loop must
//! treat the file's content, not the number of wake-ups, as the truth.

use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags};

use super::error::CgroupError;
use super::fs::{read_fd_from_start, Dir};
use super::{CGROUP_EVENTS, MEMORY_EVENTS, PIDS_EVENTS};

/// Which events file to watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventsFile {
    /// cgroup.events: `populated` turns 0 when the last process of the subtree exits.
    Cgroup,
    /// memory.events: `max`, `oom`, `oom_kill`... (needs the memory controller).
    Memory,
    /// pids.events: `max`, forks refused by pids.max (needs the pids controller).
    Pids,
}

impl EventsFile {
    pub fn file_name(self) -> &'static str {
        match self {
            EventsFile::Cgroup => CGROUP_EVENTS,
            EventsFile::Memory => MEMORY_EVENTS,
            EventsFile::Pids => PIDS_EVENTS,
        }
    }
}

/// open(2) an events file O_RDONLY|O_CLOEXEC, for epoll with EPOLLPRI.
pub(crate) fn open_events(dir: &Dir, which: EventsFile) -> Result<OwnedFd, CgroupError> {
    let file = which.file_name();
    rustix::fs::openat(
        &dir.fd,
        file,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| CgroupError::ReadFile {
        path: dir.file_path(file),
        source: e.into(),
    })
}

/// Re-read an events fd from the start (this also re-arms its EPOLLPRI).
pub fn read_events(fd: BorrowedFd<'_>) -> std::io::Result<String> {
    read_fd_from_start(fd)
}

/// The `key value` lines of a flat-keyed cgroup file (memory.events, pids.events,
/// cpu.stat, cgroup.events). Lines that do not parse are skipped: the kernel adds keys
/// over time and an unknown one must not break a reader.
pub fn flat_keyed(text: &str) -> impl Iterator<Item = (&str, u64)> {
    text.lines().filter_map(|line| {
        let mut parts = line.split_whitespace();
        let key = parts.next()?;
        let value = parts.next()?.parse().ok()?;
        Some((key, value))
    })
}

/// The value of `key` in a flat-keyed file; a missing key is 0 (older kernels lack some).
pub fn keyed_value(text: &str, key: &str) -> u64 {
    flat_keyed(text)
        .find(|(k, _)| *k == key)
        .map_or(0, |(_, v)| v)
}

/// `populated` of cgroup.events: true while any process lives in the cgroup or below.
pub fn parse_populated(text: &str) -> Option<bool> {
    flat_keyed(text)
        .find(|(k, _)| *k == "populated")
        .map(|(_, v)| v != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_populated_zero_and_one_read() {
        // Arrange
        let empty = "populated 0\nfrozen 0\n";
        let busy = "populated 1\nfrozen 0\n";

        // Act
        let (a, b) = (parse_populated(empty), parse_populated(busy));

        // Assert
        assert_eq!(a, Some(false));
        assert_eq!(b, Some(true));
    }

    #[test]
    fn test_parse_populated_missing_key_none() {
        assert_eq!(parse_populated("frozen 0\n"), None);
    }

    #[test]
    fn test_flat_keyed_garbage_lines_skipped() {
        // Arrange
        let text = "max 3\nnot-a-number x\n\nfuture_key 7 extra\n";

        // Act
        let pairs: Vec<_> = flat_keyed(text).collect();

        // Assert
        assert_eq!(pairs, vec![("max", 3), ("future_key", 7)]);
    }
}
