//! Loading the state at start: the /run copy, else the durable copy, else nothing.
//!
//! Boot never fails because of state: an unreadable or undecodable file is moved aside
//! (so it can be inspected and is not tried again), logged loudly, and the next source is
//! tried. Nothing here panics.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use shuma_card::snapshot::{decode, Snapshot, HEADER_LEN, MAX_SNAPSHOT};

use super::SNAPSHOT_FILE;

/// Where the loaded state came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The /run copy: a re-exec or a crash restart within the same boot (check
    /// [`super::same_boot`] before adopting pids).
    Run,
    /// The durable copy: a reboot. Recreate workspaces, restart services, skip done tasks.
    Durable,
    /// Neither exists or decodes: start empty.
    Empty,
}

/// What [`load`] found.
#[derive(Debug)]
pub struct Loaded {
    pub snapshot: Option<Snapshot>,
    pub source: Source,
    /// Files that were moved aside: where each now is, and why it was refused.
    pub set_aside: Vec<(PathBuf, String)>,
}

/// Loads `run_dir/snapshot.bin`, else `durable_dir/snapshot.bin`, else nothing.
///
/// A missing file is simply skipped. A file that is too large, zero-length, truncated,
/// damaged, of the wrong magic or of a version this build does not know is renamed to
/// `snapshot.bin.bad-<unix-ms>` beside itself with an error log line naming it and the
/// reason, and the next source is tried. A file that cannot be read at all (EACCES, EIO) is
/// logged and skipped but left in place: moving it would most likely fail the same way.
///
/// It also removes the temp files a writer killed between create and rename left behind
/// (`.snapshot.bin*.tmp`): `load` runs before any writer exists, so none is in use.
pub fn load(run_dir: &Path, durable_dir: Option<&Path>) -> Loaded {
    let mut set_aside = Vec::new();
    let sources = [(Some(run_dir), Source::Run), (durable_dir, Source::Durable)];
    for (dir, _) in &sources {
        if let Some(dir) = dir {
            remove_stale_temps(dir);
        }
    }
    for (dir, source) in sources {
        let Some(dir) = dir else { continue };
        if let Some(snapshot) = try_one(&dir.join(SNAPSHOT_FILE), &mut set_aside) {
            return Loaded {
                snapshot: Some(snapshot),
                source,
                set_aside,
            };
        }
    }
    Loaded {
        snapshot: None,
        source: Source::Empty,
        set_aside,
    }
}

fn try_one(path: &Path, set_aside: &mut Vec<(PathBuf, String)>) -> Option<Snapshot> {
    let bytes = match read_capped(path) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return None,
        Err(ReadError::TooLarge(len)) => {
            let why = format!(
                "file of {len} bytes exceeds the {}-byte snapshot limit",
                HEADER_LEN + MAX_SNAPSHOT
            );
            move_aside(path, why, set_aside);
            return None;
        }
        Err(ReadError::Io(e)) => {
            log::error!(
                "snapshot {} cannot be read, ignoring it: {e}",
                path.display()
            );
            return None;
        }
    };
    match decode(&bytes) {
        Ok(snapshot) => Some(snapshot),
        Err(e) => {
            move_aside(path, e.to_string(), set_aside);
            None
        }
    }
}

/// Removes `.snapshot.bin*.tmp` files from `dir`; errors are logged, never fatal.
fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(".snapshot.bin") && name.ends_with(".tmp") {
            if let Err(e) = fs::remove_file(entry.path()) {
                log::warn!(
                    "cannot remove stale snapshot temp file {}: {e}",
                    entry.path().display()
                );
            }
        }
    }
}

enum ReadError {
    TooLarge(u64),
    Io(io::Error),
}

/// Reads at most the largest valid snapshot plus one byte, so a huge file (or one that
/// grows while being read) never makes arje allocate more than the cap. `Ok(None)`: no
/// such file.
fn read_capped(path: &Path) -> Result<Option<Vec<u8>>, ReadError> {
    let cap = (HEADER_LEN + MAX_SNAPSHOT) as u64;
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ReadError::Io(e)),
    };
    let len = file.metadata().map_err(ReadError::Io)?.len();
    if len > cap {
        return Err(ReadError::TooLarge(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > cap {
        return Err(ReadError::TooLarge(bytes.len() as u64));
    }
    Ok(Some(bytes))
}

/// Renames `path` to `path.bad-<unix-ms>` (with `-N` appended if that name is taken) and
/// logs why. Never fails: if the rename fails the file stays, and the log says so.
fn move_aside(path: &Path, why: String, set_aside: &mut Vec<(PathBuf, String)>) {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let base = format!("{}.bad-{now_ms}", path.display());
    let mut target = PathBuf::from(&base);
    let mut n = 1;
    while target.exists() && n < 1000 {
        target = PathBuf::from(format!("{base}-{n}"));
        n += 1;
    }
    match fs::rename(path, &target) {
        Ok(()) => {
            log::error!(
                "snapshot {} is unusable ({why}); moved aside to {}",
                path.display(),
                target.display()
            );
            set_aside.push((target, why));
        }
        Err(e) => {
            log::error!(
                "snapshot {} is unusable ({why}) and could not be moved aside: {e}",
                path.display()
            );
            set_aside.push((path.to_path_buf(), format!("{why}; not moved: {e}")));
        }
    }
}
