//! A host's log files. What a command whose card says `log = "ring"` (the default)
//! prints goes to its rings, for `shuma logs`, and, when a log directory is configured
//! (arje-init on a real root: /var/log/arje), is also appended to
//! `DIR/WORKSPACE/COMMAND.log`, both streams as they arrive, so it outlives a reboot as
//! journald's files do. A file is rotated by size: when a write would take it past
//! `max`, it becomes `COMMAND.log.1` (the older `.1` becomes `.2`, and the `.2` before
//! it is gone), and a new file is begun: at most three files of `max` each per command.
//!
//! The directory is root's: opened once, each workspace's directory below it made and
//! opened without following a link, each file opened relative to it with `O_NOFOLLOW`,
//! so no one but root decides where these writes go. A file is kept open while its
//! command's output flows and closed when it ends (the pipes' EOF); at most [`OPEN_MAX`]
//! are open, past that one is closed for each opened. Commands of the same name in a
//! workspace (ad-hoc `shuma run`s that overlap) share one file and its rotation. A
//! failing write is said once per file; later ones are tried without a word until the
//! file is opened again. A file may pass the bound by one chunk (at most 256 KiB,
//! what the loop reads from a pipe in a turn) before it is rotated.
//!
//! The write is synchronous, in the loop: a hung /var/log (a network filesystem) would
//! stall PID 1 as it would stall journald. /var/log on the root's own disk is what this
//! is for.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

/// Open log files at most; past it every one is closed (and reopened when written).
pub const OPEN_MAX: usize = 256;
/// Rotated generations kept besides the current file (`.1`, `.2`).
const KEEP: u32 = 2;

struct Open {
    file: std::fs::File,
    size: u64,
    /// A write failed and was said: quiet until reopened.
    failed: bool,
}

pub struct LogFiles {
    dir: Option<OwnedFd>,
    max: u64,
    /// By `WORKSPACE/NAME` (neither name can hold a `/`).
    open: HashMap<String, Open>,
    /// The key of the current write, a buffer kept so a write to an open file
    /// allocates nothing.
    key: String,
}

impl LogFiles {
    /// No files: the rings only.
    pub fn none() -> LogFiles {
        LogFiles {
            dir: None,
            max: 0,
            open: HashMap::new(),
            key: String::new(),
        }
    }

    /// Files under `dir` (made 0755 if missing), each rotated past `max` bytes.
    pub fn open(dir: &Path, max: u64) -> LogFiles {
        let _ = std::fs::create_dir_all(dir);
        let fd = rustix::fs::open(
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        );
        match fd {
            Ok(fd) => {
                log::info!(
                    "log files: services' output also in {}/WORKSPACE/COMMAND.log, rotated past {max} bytes",
                    dir.display()
                );
                LogFiles {
                    dir: Some(fd),
                    max: max.max(1),
                    open: HashMap::new(),
                    key: String::new(),
                }
            }
            Err(e) => {
                log::warn!(
                    "log files: {}: {e}; output kept in the rings only",
                    dir.display()
                );
                LogFiles::none()
            }
        }
    }

    /// Append `data`, output of command `workspace/name`, rotating first if it would go
    /// past the bound.
    pub fn write(&mut self, workspace: &str, name: &str, data: &[u8]) {
        let Some(dir) = &self.dir else {
            return;
        };
        key_into(&mut self.key, workspace, name);
        if !self.open.contains_key(self.key.as_str()) {
            if self.open.len() >= OPEN_MAX {
                let any = self.open.keys().next().cloned();
                if let Some(k) = any {
                    self.open.remove(&k);
                }
            }
            match open_log(dir, workspace, name) {
                Ok(file) => {
                    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
                    self.open.insert(
                        self.key.clone(),
                        Open {
                            file,
                            size,
                            failed: false,
                        },
                    );
                }
                Err(e) => {
                    log::warn!("log file of {workspace}/{name}: {e}");
                    return;
                }
            }
        }
        let Some(o) = self.open.get_mut(self.key.as_str()) else {
            return;
        };
        if o.size > 0 && o.size + data.len() as u64 > self.max {
            match rotate(dir, workspace, name) {
                Ok(file) => {
                    o.file = file;
                    o.size = 0;
                    o.failed = false;
                }
                Err(e) => {
                    if !o.failed {
                        log::warn!("log file of {workspace}/{name}: rotate: {e}");
                        o.failed = true;
                    }
                    return;
                }
            }
        }
        match o.file.write_all(data) {
            Ok(()) => o.size += data.len() as u64,
            Err(e) if !o.failed => {
                log::warn!("log file of {workspace}/{name}: {e}; its output is dropped until it is reopened");
                o.failed = true;
            }
            Err(_) => {}
        }
    }

    /// The command's output has ended: its file is closed.
    pub fn forget(&mut self, workspace: &str, name: &str) {
        if self.open.is_empty() {
            // Always so without a log directory: no work at every command's exit.
            return;
        }
        key_into(&mut self.key, workspace, name);
        self.open.remove(self.key.as_str());
    }

    /// How many files are open (for tests).
    #[cfg(test)]
    pub fn open_count(&self) -> usize {
        self.open.len()
    }
}

/// `WORKSPACE/NAME` into `key`, the buffer it reuses.
fn key_into(key: &mut String, workspace: &str, name: &str) {
    key.clear();
    key.push_str(workspace);
    key.push('/');
    key.push_str(name);
}

/// The workspace's directory under `dir`, made 0750 if missing, never through a link.
fn ws_dir(dir: &OwnedFd, workspace: &str) -> std::io::Result<OwnedFd> {
    match rustix::fs::mkdirat(dir, workspace, Mode::from_raw_mode(0o750)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(rustix::fs::openat(
        dir,
        workspace,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn open_log(dir: &OwnedFd, workspace: &str, name: &str) -> std::io::Result<std::fs::File> {
    let ws = ws_dir(dir, workspace)?;
    let fd = rustix::fs::openat(
        &ws,
        format!("{name}.log"),
        OFlags::WRONLY | OFlags::CREATE | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o640),
    )?;
    Ok(std::fs::File::from(fd))
}

/// `.1` to `.2`, the current file to `.1`, and a new current file.
fn rotate(dir: &OwnedFd, workspace: &str, name: &str) -> std::io::Result<std::fs::File> {
    let ws = ws_dir(dir, workspace)?;
    for g in (1..KEEP).rev() {
        let from = format!("{name}.log.{g}");
        let to = format!("{name}.log.{}", g + 1);
        match rustix::fs::renameat(&ws, &from, &ws, &to) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    rustix::fs::renameat(&ws, format!("{name}.log"), &ws, format!("{name}.log.1"))?;
    open_log(dir, workspace, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    #[test]
    fn test_output_appended_then_rotated_keeping_two_older_files() {
        // Arrange
        let t = tempfile::tempdir().unwrap();
        let mut f = LogFiles::open(t.path(), 10);

        // Act: 6 + 6 bytes pass 10: rotate; then twice more.
        for chunk in ["aaaaa\n", "bbbbb\n", "ccccc\n", "ddddd\n"] {
            f.write("web", "nginx", chunk.as_bytes());
        }

        // Assert
        let base = t.path().join("web");
        assert_eq!(read(&base.join("nginx.log")), "ddddd\n");
        assert_eq!(read(&base.join("nginx.log.1")), "ccccc\n");
        assert_eq!(read(&base.join("nginx.log.2")), "bbbbb\n");
        assert!(!base.join("nginx.log.3").exists());
    }

    #[test]
    fn test_a_link_in_place_of_the_file_is_not_followed() {
        // Arrange: the workspace's directory holds a link where the file would be.
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("target");
        std::fs::write(&target, "untouched").unwrap();
        std::fs::create_dir(t.path().join("evil")).unwrap();
        std::os::unix::fs::symlink(&target, t.path().join("evil/cmd.log")).unwrap();
        let mut f = LogFiles::open(t.path(), 1 << 20);

        // Act
        f.write("evil", "cmd", b"x\n");

        // Assert
        assert_eq!(read(&target), "untouched");
        assert_eq!(f.open_count(), 0);
    }

    #[test]
    fn test_open_files_are_bounded() {
        let t = tempfile::tempdir().unwrap();
        let mut f = LogFiles::open(t.path(), 1 << 20);

        for i in 0..=OPEN_MAX {
            f.write("w", &format!("c{i}"), b"x\n");
        }

        assert_eq!(f.open_count(), OPEN_MAX);
        assert_eq!(read(&t.path().join("w/c0.log")), "x\n");
        assert_eq!(read(&t.path().join(format!("w/c{OPEN_MAX}.log"))), "x\n");
    }
}
