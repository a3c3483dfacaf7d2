//! Loading the state at start: the /run copy, else the durable copy, else nothing.
//!
//! Boot never fails because of state: an unreadable or undecodable file is moved aside
//! (so it can be inspected and is not tried again), logged loudly, and the next source is
//! tried. Nothing here panics.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use shuma_card::snapshot::{decode, Snapshot, HEADER_LEN, MAX_SNAPSHOT};

use super::{ReadError, StateDir, SNAPSHOT_FILE};

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

/// Loads `run/snapshot.bin`, else `durable/snapshot.bin`, else nothing. A directory that
/// is `None` (refused as untrusted, or not configured) is not read.
///
/// A missing file is simply skipped. A file that is not a regular file (a FIFO, whose
/// open would block boot forever; a directory; a symlink), too large, zero-length,
/// truncated, damaged, of the wrong magic or of a version this build does not know is
/// renamed to `snapshot.bin.bad-<unix-ms>` beside itself with an error log line naming it
/// and the reason, and the next source is tried. A file that cannot be read at all
/// (EACCES, EIO) is logged and skipped but left in place: moving it would most likely
/// fail the same way.
///
/// It also removes the temp files a writer killed between create and rename left behind
/// (`.snapshot.bin*.tmp`): `load` runs before any writer exists, so none is in use.
pub fn load(run: Option<&StateDir>, durable: Option<&StateDir>) -> Loaded {
    let mut set_aside = Vec::new();
    let sources = [(run, Source::Run), (durable, Source::Durable)];
    for dir in sources.iter().filter_map(|(dir, _)| *dir) {
        remove_stale_temps(dir);
    }
    for (dir, source) in sources {
        let Some(dir) = dir else { continue };
        if let Some(snapshot) = try_one(dir, &mut set_aside) {
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

fn try_one(dir: &StateDir, set_aside: &mut Vec<(PathBuf, String)>) -> Option<Snapshot> {
    let cap = (HEADER_LEN + MAX_SNAPSHOT) as u64;
    let bytes = match dir.read_capped(SNAPSHOT_FILE, cap) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return None,
        Err(ReadError::TooLarge(len)) => {
            let why = format!("file of {len} bytes exceeds the {cap}-byte snapshot limit");
            move_aside(dir, why, set_aside);
            return None;
        }
        Err(ReadError::NotRegular(kind)) => {
            move_aside(dir, format!("not a regular file ({kind})"), set_aside);
            return None;
        }
        Err(ReadError::Io(e)) => {
            log::error!(
                "snapshot {} cannot be read, ignoring it: {e}",
                dir.join(SNAPSHOT_FILE).display()
            );
            return None;
        }
    };
    match decode(&bytes) {
        Ok(snapshot) => Some(snapshot),
        Err(e) => {
            move_aside(dir, e.to_string(), set_aside);
            None
        }
    }
}

/// Removes `.snapshot.bin*.tmp` files from `dir`; errors are logged, never fatal.
fn remove_stale_temps(dir: &StateDir) {
    let Ok(names) = dir.names() else {
        return;
    };
    for name in names {
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(".snapshot.bin") && name.ends_with(".tmp") {
            if let Err(e) = dir.remove(name) {
                log::warn!(
                    "cannot remove stale snapshot temp file {}: {e}",
                    dir.join(name).display()
                );
            }
        }
    }
}

/// Renames `dir/snapshot.bin` to `snapshot.bin.bad-<unix-ms>` (with `-N` appended if that
/// name is taken) and logs why. Never fails: if the rename fails the file stays, and the
/// log says so.
fn move_aside(dir: &StateDir, why: String, set_aside: &mut Vec<(PathBuf, String)>) {
    let path = dir.join(SNAPSHOT_FILE);
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let base = format!("{SNAPSHOT_FILE}.bad-{now_ms}");
    let mut result = Ok(());
    for n in 0..1000 {
        let target = if n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        result = dir.rename_noreplace(SNAPSHOT_FILE, &target);
        match &result {
            Ok(()) => {
                let target = dir.join(&target);
                log::error!(
                    "snapshot {} is unusable ({why}); moved aside to {}",
                    path.display(),
                    target.display()
                );
                set_aside.push((target, why));
                return;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(_) => break,
        }
    }
    let e = result
        .err()
        .map_or_else(|| "no free name".into(), |e| e.to_string());
    log::error!(
        "snapshot {} is unusable ({why}) and could not be moved aside: {e}",
        path.display()
    );
    set_aside.push((path, format!("{why}; not moved: {e}")));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::{write_durable, write_run};
    use shuma_card::snapshot::{encode, SNAPSHOT_VERSION};
    use std::fs::{self, File};
    use std::path::Path;

    /// A temporary directory opened as a state directory.
    fn open(t: &tempfile::TempDir) -> StateDir {
        StateDir::open(t.path(), None).unwrap()
    }

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
            write_durable(&open(&durable), &encode(&state(2))).unwrap();

            // Act
            let loaded = load(Some(&open(&run)), Some(&open(&durable)));

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
        let loaded = load(Some(&open(&run)), Some(&open(&durable)));

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
        write_run(&open(&run), &encode(&state(1))).unwrap();
        write_durable(&open(&durable), &encode(&state(2))).unwrap();

        // Act
        let loaded = load(Some(&open(&run)), Some(&open(&durable)));

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
        let run = StateDir::open(&tmp.path().join("run"), None).unwrap();
        let lib = StateDir::open(&tmp.path().join("lib"), None).unwrap();
        let loaded = load(Some(&run), Some(&lib));

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
        let loaded = load(Some(&open(&run)), None);

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
        let first = load(Some(&open(&run)), None);
        fs::write(run.path().join(SNAPSHOT_FILE), b"two").unwrap();
        let second = load(Some(&open(&run)), None);

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
        load(Some(&open(&run)), Some(&open(&durable)));

        // Assert
        assert!(!run.path().join(".snapshot.bin.tmp").exists());
        assert!(!durable.path().join(".snapshot.bin.AbC123.tmp").exists());
        assert!(durable.path().join("unrelated.tmp").exists());
    }

    #[test]
    fn test_load_fifo_run_copy_is_set_aside_unopened_and_durable_used() {
        // Arrange: a FIFO nobody writes; a blocking open of it would never return.
        let (run, durable) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        nix::unistd::mkfifo(
            &run.path().join(SNAPSHOT_FILE),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        write_durable(&open(&durable), &encode(&state(2))).unwrap();

        // Act
        let loaded = load(Some(&open(&run)), Some(&open(&durable)));

        // Assert
        assert_eq!(loaded.source, Source::Durable);
        assert_eq!(loaded.set_aside.len(), 1);
        assert!(
            loaded.set_aside[0]
                .1
                .contains("not a regular file (a FIFO)"),
            "{:?}",
            loaded.set_aside
        );
        assert_eq!(bad_names(run.path()).len(), 1);
    }

    #[test]
    fn test_load_symlink_as_run_copy_is_set_aside_not_followed() {
        // Arrange: a valid snapshot elsewhere, reachable only through a symlink.
        let (run, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write_run(&open(&other), &encode(&state(1))).unwrap();
        std::os::unix::fs::symlink(
            other.path().join(SNAPSHOT_FILE),
            run.path().join(SNAPSHOT_FILE),
        )
        .unwrap();

        // Act
        let loaded = load(Some(&open(&run)), None);

        // Assert
        assert_eq!(loaded.source, Source::Empty);
        assert!(
            loaded.set_aside[0].1.contains("a symlink"),
            "{:?}",
            loaded.set_aside
        );
        assert!(
            other.path().join(SNAPSHOT_FILE).exists(),
            "the target stays"
        );
    }
}
