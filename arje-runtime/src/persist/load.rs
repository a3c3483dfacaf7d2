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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::{write_durable, write_run};
    use shuma_card::snapshot::{encode, SNAPSHOT_VERSION};

    fn state(id: u64) -> Snapshot {
        Snapshot {
            next_event_id: id,
            boot_id: "boot".into(),
            ..Snapshot::default()
        }
    }

    fn bad_names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("snapshot.bin.bad-"))
            .collect();
        names.sort();
        names
    }

    /// The damaged /run files `load` must refuse, each with a word its reason contains.
    fn damaged_files() -> Vec<(&'static str, Vec<u8>, &'static str)> {
        let good = encode(&state(1));
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x10;
        let mut magic = good.clone();
        magic[0] = b'X';
        let mut future = good.clone();
        future[8..12].copy_from_slice(&(SNAPSHOT_VERSION + 1).to_le_bytes());
        vec![
            ("zero-length", Vec::new(), "shorter"),
            ("truncated", good[..good.len() - 3].to_vec(), "announces"),
            ("bit-flipped", flipped, "checksum"),
            ("wrong magic", magic, "magic"),
            ("future version", future, "version"),
        ]
    }

    #[test]
    fn test_load_damaged_run_copy_is_set_aside_and_durable_used() {
        for (kind, bytes, reason) in damaged_files() {
            // Arrange
            let (run, durable) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            fs::write(run.path().join(SNAPSHOT_FILE), &bytes).unwrap();
            write_durable(durable.path(), &encode(&state(2))).unwrap();

            // Act
            let loaded = load(run.path(), Some(durable.path()));

            // Assert
            assert_eq!(loaded.source, Source::Durable, "{kind}");
            assert_eq!(loaded.snapshot, Some(state(2)), "{kind}");
            assert_eq!(loaded.set_aside.len(), 1, "{kind}");
            let (moved_to, why) = &loaded.set_aside[0];
            assert!(
                why.contains(reason),
                "{kind}: reason {why:?} lacks {reason:?}"
            );
            assert_eq!(
                fs::read(moved_to).unwrap(),
                bytes,
                "{kind}: moved file keeps its bytes"
            );
            assert_eq!(bad_names(run.path()).len(), 1, "{kind}");
            assert!(
                !run.path().join(SNAPSHOT_FILE).exists(),
                "{kind}: damaged file still in place"
            );
        }
    }

    #[test]
    fn test_load_both_copies_damaged_is_empty_with_two_set_aside() {
        // Arrange
        let (run, durable) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::write(run.path().join(SNAPSHOT_FILE), b"").unwrap();
        fs::write(
            durable.path().join(SNAPSHOT_FILE),
            b"garbage that is long enough to have a header",
        )
        .unwrap();

        // Act
        let loaded = load(run.path(), Some(durable.path()));

        // Assert
        assert_eq!(loaded.source, Source::Empty);
        assert!(loaded.snapshot.is_none());
        assert_eq!(loaded.set_aside.len(), 2);
        assert_eq!(
            bad_names(run.path()).len() + bad_names(durable.path()).len(),
            2
        );
    }

    #[test]
    fn test_load_run_copy_present_wins_over_durable() {
        // Arrange
        let (run, durable) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write_run(run.path(), &encode(&state(1))).unwrap();
        write_durable(durable.path(), &encode(&state(2))).unwrap();

        // Act
        let loaded = load(run.path(), Some(durable.path()));

        // Assert
        assert_eq!(loaded.source, Source::Run);
        assert_eq!(loaded.snapshot, Some(state(1)));
        assert!(loaded.set_aside.is_empty());
    }

    #[test]
    fn test_load_nothing_anywhere_is_empty_without_set_aside() {
        // Arrange: directories that do not even exist (first boot).
        let tmp = tempfile::tempdir().unwrap();

        // Act
        let loaded = load(&tmp.path().join("run"), Some(&tmp.path().join("lib")));

        // Assert
        assert_eq!(loaded.source, Source::Empty);
        assert!(loaded.snapshot.is_none());
        assert!(loaded.set_aside.is_empty());
    }

    #[test]
    fn test_load_file_above_cap_is_set_aside_without_reading() {
        // Arrange: a sparse file one byte above the cap, and no durable copy.
        let run = tempfile::tempdir().unwrap();
        let file = File::create(run.path().join(SNAPSHOT_FILE)).unwrap();
        file.set_len((HEADER_LEN + MAX_SNAPSHOT + 1) as u64)
            .unwrap();

        // Act
        let loaded = load(run.path(), None);

        // Assert
        assert_eq!(loaded.source, Source::Empty);
        assert_eq!(loaded.set_aside.len(), 1);
        assert!(
            loaded.set_aside[0].1.contains("exceeds"),
            "{:?}",
            loaded.set_aside
        );
    }

    #[test]
    fn test_load_twice_same_millisecond_names_do_not_collide() {
        // Arrange: an existing set-aside file with the name the next one would get is
        // simulated by setting aside twice in a row, as two quick boots would.
        let run = tempfile::tempdir().unwrap();

        // Act
        fs::write(run.path().join(SNAPSHOT_FILE), b"one").unwrap();
        let first = load(run.path(), None);
        fs::write(run.path().join(SNAPSHOT_FILE), b"two").unwrap();
        let second = load(run.path(), None);

        // Assert: both damaged files are kept, under different names.
        assert_ne!(first.set_aside[0].0, second.set_aside[0].0);
        assert_eq!(bad_names(run.path()).len(), 2);
    }

    #[test]
    fn test_load_removes_stale_temp_files() {
        // Arrange: what a writer killed between create and rename leaves.
        let (run, durable) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::write(run.path().join(".snapshot.bin.tmp"), b"partial").unwrap();
        fs::write(durable.path().join(".snapshot.bin.AbC123.tmp"), b"partial").unwrap();
        fs::write(durable.path().join("unrelated.tmp"), b"keep").unwrap();

        // Act
        load(run.path(), Some(durable.path()));

        // Assert
        assert!(!run.path().join(".snapshot.bin.tmp").exists());
        assert!(!durable.path().join(".snapshot.bin.AbC123.tmp").exists());
        assert!(durable.path().join("unrelated.tmp").exists());
    }
}
