//! The snapshot schema: everything arje must remember across a re-exec, a crash of the
//! runtime or a reboot, and its byte encoding.
//!
//! A snapshot file is a fixed 20-byte header followed by a postcard payload:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | [`SNAPSHOT_MAGIC`], `b"ARJESNAP"` |
//! | 8 | 4 | format version, u32 little-endian ([`SNAPSHOT_VERSION`] when written) |
//! | 12 | 4 | payload length in bytes, u32 little-endian |
//! | 16 | 4 | CRC-32/ISCSI (Castagnoli) of the payload, u32 little-endian |
//! | 20 | n | postcard payload of that version's schema |
//!
//! Every version that ever shipped stays decodable: [`decode`] dispatches on the header's
//! version to a module per version (`v1`, `v2`, `v3`), and a later version adds a module
//! and a migration from the older schema instead of changing an old one. `v1` and `v2`
//! hold frozen copies of every type their version stored; `v1` migrates to v2's types and
//! `v2` to the current schema, one step each.
//!
//! The schema stores the snapshot's own types, never the card's: [`SavedWorkspaceSpec`]
//! and the other `Saved*` types of `saved.rs`, each with lossless conversions to and from
//! its card, event or protocol counterpart. postcard encodes by position, so embedding a
//! card type would let any field added to the card change the format without a version
//! bump; with saved types the format changes only when the snapshot module does. The
//! golden files under `tests/golden/` fail the tests if an encoding changes by accident.
//! `docs/STATE.md` says what a new version must do.
//!
//! This module is pure data: reading and writing files lives in `arje_runtime::persist`.

use serde::{Deserialize, Serialize};

mod parts;
mod saved;
mod saved_exec;
mod saved_pipeline;
mod v1;
mod v2;
mod v3;
mod v4;

pub use parts::{encode_parts, encode_spec, CommandParts, SnapshotHead, WorkspaceParts};
pub use saved::{
    SavedCommandKind, SavedCommandSpec, SavedCpuMax, SavedDepRef, SavedExitStatus,
    SavedHealthCheck, SavedLimits, SavedLogTarget, SavedOomAction, SavedProbe, SavedReadiness,
    SavedRestartPolicy, SavedStatsSample, SavedWorkspaceSpec,
};
pub use saved_exec::{SavedDirKind, SavedKillMode, SavedRlimit, SavedServiceDir};
pub use saved_pipeline::{SavedEdge, SavedOutStream, SavedPipelineSpec};

/// The first eight bytes of every snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"ARJESNAP";
/// The format version [`encode`] writes.
pub const SNAPSHOT_VERSION: u32 = 4;
/// Bytes before the payload: magic, version, length, checksum.
pub const HEADER_LEN: usize = 20;
/// The largest payload a reader accepts, in bytes.
///
/// A reader allocates what the header announces, so an unchecked length lets a corrupt or
/// hostile file make arje (possibly PID 1) allocate gigabytes at boot. 64 MiB is far above
/// any real state: 10,000 workspaces with two commands, limits, environment and 8 stats
/// samples encode to about 6.5 MB, and about 20 MB with the runtime's full history of 60
/// samples (see `docs/BENCHMARKS.md`), and the runtime caps
/// the number of workspaces well below that. It is also far below the memory of the
/// smallest VM arje boots, so reading a file of the maximum size cannot itself fail boot.
pub const MAX_SNAPSHOT: usize = 64 << 20;

/// The CRC of the header: CRC-32C (Castagnoli, "ISCSI" in the catalogue), whose
/// polynomial keeps a larger Hamming distance than the zlib CRC-32 over the payload sizes
/// arje writes (Koopman's tables). Changing it would be a new format version.
/// The slice-by-16 table (16 KiB of static data) checksums a 1 MB snapshot several
/// times faster than the default byte-wise table, which would otherwise cost more than the
/// encoding itself.
const CHECKSUM: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

/// What arje remembers. Field order is part of the v3 encoding: never reorder, never
/// insert; change the schema only through a new version (see `docs/STATE.md`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Wall clock when the snapshot was encoded, milliseconds since the Unix epoch: shown
    /// by the operator tools and in the load log line ("state from 3 s ago").
    pub written_unix_ms: u64,
    /// `/proc/sys/kernel/random/boot_id` of the boot that wrote it. Equal to the current
    /// boot's id: a re-exec or a crash restart, so the recorded pids are meaningful and
    /// may be adopted (after their start times are checked). Different: a reboot, so every
    /// pid in [`LiveProcess`] is stale and services are started afresh. The /run copy
    /// cannot normally outlive a boot (tmpfs), but in subreaper mode `--state-dir` may be
    /// on a disk, so the id is checked rather than assumed. Empty if it was unreadable.
    pub boot_id: String,
    /// The pid of the arje that wrote it: after a re-exec it is our own pid (as PID 1,
    /// always 1); a different pid in the same boot means a crash restart of a subreaper,
    /// whose orphans were reparented elsewhere and cannot be waited for.
    pub arje_pid: i32,
    /// The next event journal id: ids are never reused, even across restarts.
    pub next_event_id: u64,
    /// The next command instance id ([`CommandState::id`]).
    pub next_command_id: u64,
    /// The next workspace id ([`WorkspaceState::id`]). Ids are never reused, even across
    /// a re-exec or a reboot, so an id recorded anywhere (an event, a log line, a client
    /// holding it) never comes to name a later workspace of the same name.
    pub next_workspace_id: u64,
    /// Every workspace that exists, including ones being stopped, in creation order.
    pub workspaces: Vec<WorkspaceState>,
    /// For a re-exec only: the listening control socket's fd, kept open across exec so no
    /// client sees a refused connection. `None` in the durable copy and after a reboot.
    pub listener_fd: Option<i32>,
    /// Pipelines saved by name (`shuma pipeline save`), to be run in any workspace
    /// (from v4 on).
    pub saved_pipelines: Vec<SavedPipelineSpec>,
}

/// One workspace as arje last saw it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct WorkspaceState {
    /// The workspace's id: unique in this arje state and never reused (see
    /// [`Snapshot::next_workspace_id`]). A v1 file, which had none, numbers its workspaces
    /// 1..=n in order.
    pub id: u64,
    /// The workspace as declared (name, limits, TTL, commands): what a reboot recreates.
    pub spec: SavedWorkspaceSpec,
    /// When it was created, milliseconds since the Unix epoch: the origin of its TTL.
    pub created_unix_ms: u64,
    /// A stop was asked for and had not finished: after a restart, finish the stop
    /// instead of restarting its services.
    pub stopping: bool,
    /// Runtime state of each command of `spec.commands`, in the same order.
    pub commands: Vec<CommandState>,
    /// A short, bounded history of resource samples for `shuma stats`, newest last.
    pub stats: Vec<SavedStatsSample>,
    /// The restart record of each pipeline of `spec.pipelines` (from v4 on; its nodes'
    /// processes are commands, in `commands`).
    pub pipelines: Vec<PipelineState>,
}

/// What a pipeline had been through, so a re-exec or a reboot keeps its restart count
/// and backoff.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct PipelineState {
    /// The key into the workspace's `spec.pipelines`.
    pub name: String,
    /// Restarts since it was started, counted against its `restart_max`.
    pub restarts: u32,
    /// It ended for good: every node exited 0 (and it is not restarted always), or it
    /// was stopped by hand. It is not run again after a reboot.
    pub done: bool,
    /// Why it was marked failed (its restarts ran out: the node that failed and its
    /// stderr tail), if it was.
    pub failed: Option<String>,
    /// A restart was waiting out its backoff until this time, ms since the Unix epoch.
    pub backoff_until_unix_ms: Option<u64>,
}

/// Runtime state of one command of a workspace.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CommandState {
    /// The instance id (unique per arje state, never reused; see
    /// [`Snapshot::next_command_id`]): the key events and log streams use.
    pub id: u64,
    /// The command's name: the key into the workspace's `spec.commands`, where its
    /// declaration lives. (The declaration is not repeated here: it was 40% of a
    /// realistic snapshot, and two copies could disagree.)
    pub name: String,
    /// Restarts since the workspace was created, shown by `shuma ps`.
    pub restarts: u32,
    /// Wall-clock times of the restarts inside the current restart window, oldest first:
    /// so the restart limit still applies after a re-exec. Bounded by the spec's
    /// `max_restarts`.
    pub recent_restarts_unix_ms: Vec<u64>,
    /// How its last run ended, if it has run and ended.
    pub last_exit: Option<SavedExitStatus>,
    /// A task that ran to completion: it is not run again after a reboot.
    pub done: bool,
    /// Why it was given up on (restart limit reached, spawn failed), if it was.
    pub failed: Option<String>,
    /// The process running it when the snapshot was taken, if any.
    pub live: Option<LiveProcess>,
    /// Its current run was ready (its `ready` condition held; a task: it exited 0), so
    /// what waits for it need not wait again after a re-exec. (From v3 on, like the two
    /// after it. A v2 file's running services and tasks that exited 0 migrate as ready:
    /// under v2, started was ready.)
    pub ready: bool,
    /// The last `STATUS=` text it sent over its notify socket, shown by `shuma ps`.
    pub status: Option<String>,
    /// For a re-exec only: the command's readiness channel, close-on-exec cleared so the
    /// next image keeps it, like [`LiveProcess::stdout_fd`]: its notify socket (whose
    /// abstract name is its `NOTIFY_SOCKET`), which keeps bringing `READY=1`, `STATUS=`
    /// and `WATCHDOG=1`; or, for `ready = { fd = N }`, the read end of the notification
    /// pipe whose newline has not come yet. The next image tells them apart by the fd's
    /// type (a socket or a FIFO).
    pub notify_fd: Option<i32>,
}

/// A running process, recorded so that a re-exec or a crash restart can adopt it.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveProcess {
    pub pid: i32,
    /// Field 22 of `/proc/PID/stat` (start time in clock ticks since boot). A pid is
    /// adopted only if the process with that pid still has this start time, so a recycled
    /// pid is never mistaken for ours. Meaningful only within the same boot.
    pub start_time_ticks: u64,
    /// When it was started, milliseconds since the Unix epoch: its uptime in `shuma ps`
    /// and the min-uptime rule survive a re-exec.
    pub started_unix_ms: u64,
    /// For a re-exec only: the read end of its stdout pipe, close-on-exec cleared so no
    /// output is lost across the exec.
    pub stdout_fd: Option<i32>,
    /// For a re-exec only: the read end of its stderr pipe.
    pub stderr_fd: Option<i32>,
}

/// Why bytes are not a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotError {
    /// Fewer bytes than the header (a zero-length or truncated file).
    TooShort { len: usize },
    /// The file does not start with [`SNAPSHOT_MAGIC`].
    BadMagic,
    /// A version this build does not know: written by a newer arje.
    UnknownVersion(u32),
    /// The header announces a payload above [`MAX_SNAPSHOT`].
    TooLarge { announced: usize },
    /// The header's payload length differs from the bytes that follow it (truncated, or
    /// trailing garbage).
    LengthMismatch { header: usize, actual: usize },
    /// The payload's CRC differs from the header's: the bytes are damaged.
    Checksum { expected: u32, actual: u32 },
    /// The checksum matched but the payload is not that version's schema (a bug in the
    /// writer, or a schema changed without a version bump).
    Decode(String),
}

impl core::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SnapshotError::TooShort { len } => {
                write!(
                    f,
                    "{len} bytes is shorter than the {HEADER_LEN}-byte snapshot header"
                )
            }
            SnapshotError::BadMagic => write!(f, "does not start with the snapshot magic ARJESNAP"),
            SnapshotError::UnknownVersion(v) => {
                write!(
                    f,
                    "format version {v} is unknown to this build (it reads 1..={SNAPSHOT_VERSION})"
                )
            }
            SnapshotError::TooLarge { announced } => {
                write!(
                    f,
                    "payload of {announced} bytes exceeds the {MAX_SNAPSHOT}-byte limit"
                )
            }
            SnapshotError::LengthMismatch { header, actual } => {
                write!(
                    f,
                    "header announces {header} payload bytes but {actual} follow"
                )
            }
            SnapshotError::Checksum { expected, actual } => {
                write!(
                    f,
                    "checksum mismatch: header {expected:#010x}, payload {actual:#010x}"
                )
            }
            SnapshotError::Decode(e) => write!(f, "payload does not decode: {e}"),
        }
    }
}

impl std::error::Error for SnapshotError {}

/// Encodes `s` as a current-version snapshot file (header and payload).
pub fn encode(s: &Snapshot) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(s, &mut out);
    out
}

/// Like [`encode`], into `out` (cleared first), reusing its capacity. The loop encodes on
/// every change; keeping one buffer avoids regrowing a megabyte-sized `Vec` each time,
/// which cost about a quarter of the encode time of 1,000 workspaces.
pub fn encode_into(s: &Snapshot, out: &mut Vec<u8>) {
    // Reserve the header, serialise behind it, then fill the header in: no copy of the
    // payload.
    out.clear();
    out.resize(HEADER_LEN, 0);
    let buf = VecFlavor(std::mem::take(out));
    *out = postcard::serialize_with_flavor(s, buf).expect("postcard into a Vec cannot fail");
    seal(out);
}

/// Fills in the header of `buf`, whose first [`HEADER_LEN`] bytes were reserved and whose
/// payload follows them.
fn seal(buf: &mut [u8]) {
    let payload_len = buf.len() - HEADER_LEN;
    let crc = CHECKSUM.checksum(&buf[HEADER_LEN..]);
    buf[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
    buf[8..12].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    // The length field is a u32; a state above 4 GiB is far beyond MAX_SNAPSHOT and would
    // be refused by every reader anyway, so saturating only makes it fail loudly there.
    let len32 = u32::try_from(payload_len).unwrap_or(u32::MAX);
    buf[12..16].copy_from_slice(&len32.to_le_bytes());
    buf[16..20].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes a snapshot file of any version that ever shipped, converted to the current
/// schema. Checks run cheapest first and the checksum before any decoding, so damaged
/// bytes are reported as damage, not as a confusing schema error.
pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
    if bytes.len() < HEADER_LEN {
        return Err(SnapshotError::TooShort { len: bytes.len() });
    }
    if bytes[0..8] != SNAPSHOT_MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let version = u32_le(&bytes[8..12]);
    if version == 0 || version > SNAPSHOT_VERSION {
        return Err(SnapshotError::UnknownVersion(version));
    }
    let header_len = u32_le(&bytes[12..16]) as usize;
    if header_len > MAX_SNAPSHOT {
        return Err(SnapshotError::TooLarge {
            announced: header_len,
        });
    }
    let payload = &bytes[HEADER_LEN..];
    if payload.len() != header_len {
        return Err(SnapshotError::LengthMismatch {
            header: header_len,
            actual: payload.len(),
        });
    }
    let expected = u32_le(&bytes[16..20]);
    let actual = CHECKSUM.checksum(payload);
    if expected != actual {
        return Err(SnapshotError::Checksum { expected, actual });
    }
    match version {
        1 => v1::decode(payload),
        2 => v2::decode(payload),
        3 => v3::decode(payload),
        4 => v4::decode(payload),
        // Unreachable: the range check above admits only known versions. Kept as an error,
        // not a panic, because this runs at boot.
        other => Err(SnapshotError::UnknownVersion(other)),
    }
}

/// A postcard output that appends to a `Vec` a slice at a time. (postcard's `to_extend`
/// goes through `Extend` one byte at a time, which made encoding several times slower.)
struct VecFlavor(Vec<u8>);

impl postcard::ser_flavors::Flavor for VecFlavor {
    type Output = Vec<u8>;

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
}

fn u32_le(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Decodes one complete `T` from `payload`, strictly: bytes left over after a complete
/// value mean the writer and this reader disagree on the schema, which must not pass
/// silently. Every version's decoder goes through here.
fn decode_exact<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, SnapshotError> {
    let (value, rest) = postcard::take_from_bytes::<T>(payload)
        .map_err(|e| SnapshotError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(SnapshotError::Decode(format!(
            "{} bytes left after the snapshot",
            rest.len()
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_encode_empty_snapshot_has_header_fields() {
        // Arrange
        let s = Snapshot::default();

        // Act
        let bytes = encode(&s);

        // Assert
        assert_eq!(&bytes[0..8], b"ARJESNAP");
        assert_eq!(u32_le(&bytes[8..12]), SNAPSHOT_VERSION);
        assert_eq!(u32_le(&bytes[12..16]) as usize, bytes.len() - HEADER_LEN);
        assert_eq!(decode(&bytes), Ok(s));
    }

    #[test]
    fn test_encode_into_reused_buffer_equals_encode() {
        // Arrange: a buffer holding a larger, older snapshot.
        let big = Snapshot {
            boot_id: "x".repeat(1000),
            ..Snapshot::default()
        };
        let small = Snapshot {
            next_event_id: 3,
            ..Snapshot::default()
        };
        let mut buf = encode(&big);

        // Act
        encode_into(&small, &mut buf);

        // Assert
        assert_eq!(buf, encode(&small));
    }

    #[test]
    fn test_decode_trailing_bytes_in_payload_is_decode_error() {
        // Arrange: a valid payload with one extra byte, and a header that matches it, so
        // only the schema decoder can notice.
        let mut payload = postcard::to_allocvec(&Snapshot::default()).unwrap();
        payload.push(0);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&SNAPSHOT_MAGIC);
        bytes.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&CHECKSUM.checksum(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);

        // Act
        let result = decode(&bytes);

        // Assert
        assert!(
            matches!(result, Err(SnapshotError::Decode(_))),
            "{result:?}"
        );
    }

    #[test]
    fn test_decode_version_zero_is_unknown_version() {
        // Arrange
        let mut bytes = encode(&Snapshot::default());
        bytes[8..12].copy_from_slice(&0u32.to_le_bytes());

        // Act
        let result = decode(&bytes);

        // Assert
        assert_eq!(result, Err(SnapshotError::UnknownVersion(0)));
    }
}
