//! Snapshots in /run and the durable copy: the directories they live in (trusted only if
//! arje owns them, used only through their fds), the lock that keeps a second arje out,
//! writing them atomically, loading them at start with a fall-back order, and the facts
//! needed to adopt live children (start times, boot id).
//!
//! Nothing here knows the event loop. The loop encodes a [`Snapshot`] with
//! [`shuma_card::snapshot::encode`], calls [`write_run`] at most once per turn, and hands the
//! same bytes to a [`DurableWriter`] when its [`Debounce`] says a durable write is due.
//! `docs/STATE.md` describes the files and the load order.

mod debounce;
mod dir;
mod durable;
mod eventlog;
mod fallback;
mod load;
mod lock;

#[cfg(test)]
mod crash_tests;

use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

pub use debounce::Debounce;
pub use dir::{names_at, read_regular_at, ReadError, StateDir};
pub use durable::DurableWriter;
pub use eventlog::{EventLog, Limits as EventLogLimits, QUEUE as EVENT_QUEUE};
pub use fallback::{open_durable_dir, open_run_dir};
pub use load::{load, Loaded, Source};
pub use lock::{LockError, StateLock};
pub use shuma_card::snapshot::Snapshot;

/// The snapshot's file name, in the /run directory and in the durable one.
pub const SNAPSHOT_FILE: &str = "snapshot.bin";
/// The temporary file [`write_run`] renames over [`SNAPSHOT_FILE`]. A fixed name, so a
/// crash between create and rename leaves one stale file that the next write removes,
/// not a growing litter.
const RUN_TEMP_FILE: &str = ".snapshot.bin.tmp";

/// A snapshot file could not be written. Each variant names the path it failed on.
#[derive(Debug)]
pub enum PersistError {
    WriteTemp {
        path: PathBuf,
        source: io::Error,
    },
    SyncFile {
        path: PathBuf,
        source: io::Error,
    },
    Rename {
        from: PathBuf,
        to: PathBuf,
        source: io::Error,
    },
    SyncDir {
        path: PathBuf,
        source: io::Error,
    },
}

impl std::fmt::Display for PersistError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PersistError::WriteTemp { path, source } => {
                write!(
                    f,
                    "cannot write snapshot temp file {}: {source}",
                    path.display()
                )
            }
            PersistError::SyncFile { path, source } => {
                write!(f, "cannot fsync {}: {source}", path.display())
            }
            PersistError::Rename { from, to, source } => {
                write!(
                    f,
                    "cannot rename {} to {}: {source}",
                    from.display(),
                    to.display()
                )
            }
            PersistError::SyncDir { path, source } => {
                write!(f, "cannot fsync directory {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for PersistError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PersistError::WriteTemp { source, .. }
            | PersistError::SyncFile { source, .. }
            | PersistError::Rename { source, .. }
            | PersistError::SyncDir { source, .. } => Some(source),
        }
    }
}

/// Writes the /run copy: `bytes` into a new temp file in `dir`, then rename(2) over
/// `dir/snapshot.bin`.
///
/// rename(2) replaces the name atomically, so a reader (the next arje after a crash or a
/// re-exec) sees the old file or the new one, never a torn one. There is no fsync: `dir`
/// is a tmpfs, whose page cache *is* the storage. A crash of arje loses nothing the kernel
/// already accepted from write(2), and a power loss or reboot loses the whole tmpfs
/// anyway, so an fsync would cost a syscall and buy nothing. (Pointing `--state-dir` at a
/// disk keeps atomicity but gives no durability; that is what [`write_durable`] is for.)
///
/// The temp name is unlinked and created anew with O_EXCL (never opened as it is: a
/// symlink there would redirect the write), relative to the directory's fd. The file is
/// 0600: a snapshot holds the commands' environment, which may carry secrets.
pub fn write_run(dir: &StateDir, bytes: &[u8]) -> Result<(), PersistError> {
    let temp_err = |source| PersistError::WriteTemp {
        path: dir.join(RUN_TEMP_FILE),
        source,
    };
    dir.remove(RUN_TEMP_FILE).map_err(temp_err)?;
    let mut file = dir.create_new(RUN_TEMP_FILE).map_err(temp_err)?;
    file.write_all(bytes).map_err(temp_err)?;
    drop(file);
    dir.rename(RUN_TEMP_FILE, SNAPSHOT_FILE)
        .map_err(|source| PersistError::Rename {
            from: dir.join(RUN_TEMP_FILE),
            to: dir.join(SNAPSHOT_FILE),
            source,
        })
}

/// Tells apart the temp files of one process's durable writes.
static DURABLE_TEMPS: AtomicU64 = AtomicU64::new(0);

/// Writes the durable copy: writes `bytes` to a fresh temp file in `dir`, fsyncs the
/// file, renames it over `dir/snapshot.bin` and fsyncs `dir`.
///
/// Each step defends against a power cut at a different moment: the file fsync makes the
/// data reach the disk before the name points at it (otherwise ext4 may commit the rename
/// first and leave a zero-length file); the rename makes the switch atomic; the directory
/// fsync makes the rename itself durable, so after this returns the new state survives a
/// power cut. The temp file is `.snapshot.bin.<pid>-<n>.tmp`, created with O_EXCL
/// relative to the directory's fd, so two writers never share one.
pub fn write_durable(dir: &StateDir, bytes: &[u8]) -> Result<(), PersistError> {
    let (temp, file) = create_durable_temp(dir)?;
    let temp_err = |source| PersistError::WriteTemp {
        path: dir.join(&temp),
        source,
    };
    let written = (&file)
        .write_all(bytes)
        .map_err(temp_err)
        .and_then(|()| {
            file.sync_all().map_err(|source| PersistError::SyncFile {
                path: dir.join(&temp),
                source,
            })
        })
        .and_then(|()| {
            dir.rename(&temp, SNAPSHOT_FILE)
                .map_err(|source| PersistError::Rename {
                    from: dir.join(&temp),
                    to: dir.join(SNAPSHOT_FILE),
                    source,
                })
        });
    if let Err(e) = written {
        // Best effort: `load` removes what is left at the next start anyway.
        let _ = dir.remove(&temp);
        return Err(e);
    }
    dir.sync().map_err(|source| PersistError::SyncDir {
        path: dir.path().to_path_buf(),
        source,
    })
}

fn create_durable_temp(dir: &StateDir) -> Result<(String, fs::File), PersistError> {
    let pid = std::process::id();
    let mut attempts = 0;
    loop {
        let n = DURABLE_TEMPS.fetch_add(1, Ordering::Relaxed);
        let name = format!(".snapshot.bin.{pid}-{n}.tmp");
        match dir.create_new(&name) {
            Ok(file) => return Ok((name, file)),
            // A stale one of an earlier process with this pid: take the next number.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 100 => {
                attempts += 1;
            }
            Err(source) => {
                return Err(PersistError::WriteTemp {
                    path: dir.join(&name),
                    source,
                })
            }
        }
    }
}

/// Field 22 of `/proc/PID/stat`: the process's start time in clock ticks since boot, or
/// `None` if there is no such process (or /proc is not mounted).
///
/// Together with the pid it names one process for the whole boot: a pid can be recycled,
/// a (pid, start time) pair cannot, which is why adoption compares both.
pub fn process_start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// Parses field 22 out of a `/proc/PID/stat` line. Field 2 is the command name in
/// parentheses and may itself contain spaces and ')' (a process may name itself
/// anything), so fields are counted from the *last* ')', after which field 3 begins.
fn parse_start_time(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Field 3 is the first token after the name, so field 22 is the 20th (index 19).
    after_comm
        .split_ascii_whitespace()
        .nth(22 - 3)?
        .parse()
        .ok()
}

/// Is the process recorded in `live` still the same process? True only if its pid exists
/// and the process started no later than the recorded start time, so a recycled pid is
/// never adopted. Meaningful only if the snapshot is from this boot (see [`same_boot`]).
///
/// The recorded time is taken by the spawner from CLOCK_BOOTTIME after clone3 returned
/// and after the spawn's bookkeeping ([`boottime_ticks`]) rather than read from /proc (8
/// syscalls on the spawn path). It is late by that time, and by more than one tick when
/// the spawner is preempted: on a loaded 2-core machine 4 spawns in 180 recorded two
/// ticks after the kernel, and an equality check (± 1 tick) then left a running service
/// unadopted after a re-exec and started it a second time. Releases already shipped
/// record the time this way, so adoption must accept it however late.
///
/// It is never early, and that bounds the check on the other side: our child cannot be
/// reaped (a zombie keeps its pid) before the spawner has recorded it, so any other
/// process that has this pid now started after the recorded time. One tick of slack is
/// kept beyond it: a pid recycled within the same 10 ms tick is not a practical risk.
pub fn still_running(live: &shuma_card::snapshot::LiveProcess) -> bool {
    process_start_time(live.pid).is_some_and(|t| t <= live.start_time_ticks + 1)
}

/// CLOCK_BOOTTIME now, in the clock ticks `/proc/PID/stat` counts a start time in.
pub fn boottime_ticks() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    let ns = t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64;
    ns / (1_000_000_000 / clock_ticks_per_second())
}

/// USER_HZ, the unit of /proc's start times (100 on every Linux this runs on).
pub fn clock_ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&hz| hz > 0)
        .unwrap_or(100) as u64
}

/// This boot's id from `/proc/sys/kernel/random/boot_id`, for [`Snapshot::boot_id`].
/// `None` if /proc is not mounted (very early as PID 1): then every snapshot is treated as
/// from another boot, which is the safe side (nothing is adopted by pid).
pub fn boot_id() -> Option<String> {
    let id = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_owned())
}

/// Was `snapshot` written during the current boot (a re-exec or a crash restart), so its
/// live pids may be checked and adopted? False after a reboot, or if either id is unknown.
pub fn same_boot(snapshot: &Snapshot) -> bool {
    match boot_id() {
        Some(now) => !snapshot.boot_id.is_empty() && snapshot.boot_id == now,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shuma_card::snapshot::{decode, encode, LiveProcess};

    #[test]
    fn test_parse_start_time_comm_with_spaces_and_parens_reads_field_22() {
        // Arrange: a name that contains ") (" and digits, to trip a naive split.
        let fields: Vec<String> = (3..=52).map(|n| format!("{}", n * 10)).collect();
        let stat = format!("4242 (evil) 1 2 (x) {}\n", fields.join(" "));

        // Act
        let start = parse_start_time(&stat);

        // Assert: field 22 carries 220 by construction.
        assert_eq!(start, Some(220));
    }

    #[test]
    fn test_parse_start_time_short_line_is_none() {
        // Arrange
        let stat = "1 (init) S 0 1";

        // Act
        let start = parse_start_time(stat);

        // Assert
        assert_eq!(start, None);
    }

    #[test]
    fn test_process_start_time_child_started_after_us_is_not_earlier() {
        // Arrange
        let ours = process_start_time(std::process::id() as i32).expect("our own stat");
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");

        // Act
        let theirs = process_start_time(child.id() as i32);
        child.kill().expect("kill sleep");
        child.wait().expect("reap sleep");

        // Assert
        let theirs = theirs.expect("child's stat while it runs");
        assert!(theirs >= ours, "child {theirs} < parent {ours}");
    }

    fn live(pid: i32, start_time_ticks: u64) -> LiveProcess {
        LiveProcess {
            pid,
            start_time_ticks,
            started_unix_ms: 0,
            stdout_fd: None,
            stderr_fd: None,
        }
    }

    #[test]
    fn test_still_running_process_started_after_the_record_is_false() {
        // Arrange: our own pid, recorded two ticks before it started: the process now
        // holding the pid is not the one recorded (a recycled pid).
        let pid = std::process::id() as i32;
        let real = process_start_time(pid).unwrap();

        // Act
        let recycled = still_running(&live(pid, real - 2));

        // Assert
        assert!(!recycled);
    }

    #[test]
    fn test_still_running_recorded_at_or_after_the_start_is_true() {
        // Arrange: our own pid, recorded at its start, and recorded late, as a spawner
        // preempted between clone3 and its clock read records it.
        let pid = std::process::id() as i32;
        let real = process_start_time(pid).unwrap();

        // Act
        let (exact, late) = (
            still_running(&live(pid, real)),
            still_running(&live(pid, real + 50)),
        );

        // Assert
        assert!(exact);
        assert!(late);
    }

    #[test]
    fn test_process_start_time_no_such_pid_is_none() {
        // Arrange: pids are at most 2^22 (PID_MAX_LIMIT), so this one cannot exist.
        let pid = i32::MAX;

        // Act
        let start = process_start_time(pid);

        // Assert
        assert_eq!(start, None);
    }

    #[test]
    fn test_write_run_file_decodes_and_no_temp_is_left() {
        // Arrange
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(&tmp.path().join("run/arje"), None).unwrap();
        let s = Snapshot {
            next_event_id: 7,
            ..Snapshot::default()
        };

        // Act
        write_run(&dir, &encode(&s)).unwrap();

        // Assert
        let bytes = fs::read(dir.join(SNAPSHOT_FILE)).unwrap();
        assert_eq!(decode(&bytes), Ok(s));
        assert!(!dir.join(RUN_TEMP_FILE).exists(), "temp file left behind");
    }

    #[test]
    fn test_write_run_temp_name_taken_by_a_directory_fails_naming_it() {
        // Arrange: something that is not a stale temp file sits at the temp name.
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path(), None).unwrap();
        fs::create_dir_all(dir.join(RUN_TEMP_FILE).join("x")).unwrap();

        // Act
        let err = write_run(&dir, b"x").unwrap_err();

        // Assert
        assert!(matches!(err, PersistError::WriteTemp { .. }), "{err:?}");
        assert!(err.to_string().contains(RUN_TEMP_FILE), "{err}");
    }

    #[test]
    fn test_write_durable_replaces_file_and_leaves_no_temp() {
        // Arrange
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(&tmp.path().join("lib/arje"), None).unwrap();
        let old = Snapshot {
            next_event_id: 1,
            ..Snapshot::default()
        };
        let new = Snapshot {
            next_event_id: 2,
            ..Snapshot::default()
        };

        // Act
        write_durable(&dir, &encode(&old)).unwrap();
        write_durable(&dir, &encode(&new)).unwrap();

        // Assert
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(SNAPSHOT_FILE)]);
        assert_eq!(decode(&fs::read(dir.join(SNAPSHOT_FILE)).unwrap()), Ok(new));
    }

    #[test]
    fn test_write_run_file_mode_is_0600() {
        use std::os::unix::fs::PermissionsExt;
        // Arrange
        let tmp = tempfile::tempdir().unwrap();
        let run = StateDir::open(tmp.path(), None).unwrap();
        let durable = StateDir::open(&tmp.path().join("d"), None).unwrap();

        // Act
        write_run(&run, b"x").unwrap();
        write_durable(&durable, b"x").unwrap();

        // Assert
        let mode = |p: PathBuf| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(run.join(SNAPSHOT_FILE)), 0o600);
        assert_eq!(mode(durable.join(SNAPSHOT_FILE)), 0o600);
    }

    #[test]
    fn test_write_durable_removed_dir_is_write_temp_error_naming_it() {
        // Arrange: the directory is removed after it was opened.
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(&tmp.path().join("arje"), None).unwrap();
        fs::remove_dir(dir.path()).unwrap();

        // Act
        let err = write_durable(&dir, b"x").unwrap_err();

        // Assert
        assert!(matches!(err, PersistError::WriteTemp { .. }), "{err:?}");
        assert!(err.to_string().contains("arje/.snapshot.bin."), "{err}");
    }
}

#[cfg(test)]
mod start_time_tests {
    use super::*;

    #[test]
    fn test_boottime_ticks_matches_proc_start_time_of_new_child() {
        let before = boottime_ticks();
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let after = boottime_ticks();

        let proc = process_start_time(child.id() as i32).unwrap();
        let _ = child.kill();
        let _ = child.wait();

        assert!(
            before <= proc + 1 && proc <= after + 1,
            "{before} <= {proc} <= {after}"
        );
    }
}
