//! The control protocol spoken over arje's unix socket.
//!
//! A frame is a u32 big-endian payload length followed by that many bytes of postcard.
//! Frames are at most [`MAX_FRAME`] bytes of payload. The first request on a connection
//! must be [`Request::Hello`] carrying [`PROTOCOL_VERSION`]; the server answers
//! [`Response::Hello`] or, on a mismatch, an [`Response::Error`] with
//! [`ErrorCode::Version`] and closes. Postcard encodes enum variants by index, so a
//! variant is only ever appended, never reordered or removed, within one version.
//!
//! The version rule. [`Request::Hello`] is variant 0 with the fields `version: u32` and
//! `client: String`, and [`Response::Error`] with [`ErrorCode::Version`] keeps its place:
//! both are frozen for every version, so a client of any version learns in its first
//! exchange that the versions differ, never through a garbled decode. Everything else a
//! frame carries, including the card types on the wire ([`WorkspaceSpec`],
//! [`CommandSpec`], [`Limits`]), belongs to one version: any change to any of them (a
//! field added to a card type, too) bumps [`PROTOCOL_VERSION`]. The golden frames in
//! `tests/protocol_golden.rs` fail when an encoding changes without that bump.
//!
//! Version history:
//! - 1: first release.
//! - 2: `Ps` and `WsShow` answer in pages so no frame exceeds [`MAX_FRAME`]: `Ps` with
//!   one or more [`Response::Commands`] then [`Response::End`]; `WsShow` with
//!   [`Response::Workspace`] (whose [`WorkspaceDetail`] no longer holds the commands),
//!   then one or more `Commands`, then `End`.
//! - 3: [`StatusInfo::state_not_saved`]: why the state is not being saved, if it is not.
//! - 4: readiness, dependencies and health: the card fields `ready`, `ready_timeout`,
//!   `watchdog`, `after`, `requires`, `wants` and `health` in [`CommandSpec`];
//!   [`CommandInfo::ready`], [`CommandInfo::status`], [`CommandInfo::health`] and
//!   [`CommandInfo::waiting_for`]; [`Request::WaitReady`] and [`ErrorCode::NotReady`];
//!   the events `CommandReady`, `CommandNotReady` and `CommandUnhealthy`.
//! - 5: one command at a time: [`Request::Control`] with a [`CmdAction`] (`shuma
//!   start|stop|restart|reload|kill WORKSPACE/NAME`); the event `Syslog` (a message
//!   from `/dev/log`).
//! - 6: pipelines: [`WorkspaceSpec::pipelines`](crate::WorkspaceSpec::pipelines) on the
//!   wire; [`CommandInfo::pipeline`]; the requests `PipelineSave`, `PipelineList`,
//!   `PipelineShow`, `PipelineRemove`, `PipelineRun`, `PipelineStop` and `PipelinePs`
//!   with [`Response::Pipelines`] and [`Response::Pipeline`]; the events `PipelineStarted`,
//!   `PipelineRestarting`, `PipelineFailed`, `PipelineFinished` and `PipelineDropped`.
//!   (The journal's `Event` encoding only gained variants, so the on-disk event log
//!   reads segments of version 5 too.)

use serde::{Deserialize, Serialize};

use crate::event::{Event, ExitStatus};
use crate::pipeline::PipelineSpec;
use crate::spec::{CommandSpec, Limits, WorkspaceSpec};

pub const PROTOCOL_VERSION: u32 = 6;
/// Largest payload of one frame, in bytes.
pub const MAX_FRAME: usize = 1 << 20;
/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
    Both,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownKind {
    Poweroff,
    Reboot,
    Halt,
}

// `Run` carries a whole `CommandSpec` (about 430 bytes since version 4's readiness fields)
// beside small variants. A request is decoded, handled and dropped one at a time, never
// stored in bulk, so the size costs nothing; boxing the spec would change the type every
// client and the runtime build against. (postcard encodes a `Box<T>` as `T`: the wire
// would not change either way.)
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Must be first on a connection.
    Hello {
        version: u32,
        client: String,
    },
    Ping,
    Status,
    /// Create a workspace and start its commands.
    WsCreate {
        spec: WorkspaceSpec,
    },
    WsList,
    WsShow {
        name: String,
    },
    /// Stop every command (stop signal, grace, kill) and remove the workspace.
    WsStop {
        name: String,
        grace_ms: Option<u64>,
    },
    /// Change one limit of a running workspace, e.g. key "memory_max", value "64M".
    WsSet {
        name: String,
        key: String,
        value: String,
    },
    WsStats {
        name: String,
    },
    /// Start a one-shot command in a workspace. With `wait`, the answer is
    /// [`Response::Exited`] once it ends; otherwise [`Response::Started`].
    Run {
        workspace: String,
        command: CommandSpec,
        wait: bool,
    },
    /// Commands of one workspace, or of all.
    Ps {
        workspace: Option<String>,
    },
    /// Captured output. With `follow`, [`Response::Log`] frames keep coming.
    Logs {
        workspace: String,
        command: String,
        stream: Stream,
        follow: bool,
    },
    /// Journal records with id > `after`. With `follow`, [`Response::Events`] keep coming.
    Events {
        after: Option<u64>,
        follow: bool,
    },
    /// What arje can enforce here.
    Caps,
    Shutdown {
        kind: ShutdownKind,
    },
    /// Flush the snapshot and exec `binary` (default: the running one) in place.
    DaemonReexec {
        binary: Option<String>,
    },
    /// Panic inside a handler. Only honoured by a build with the `test-hooks` feature.
    TestPanic,
    /// Answer [`Response::Ok`] once every command of `workspace` (or only `command`, a
    /// name or a run's id in decimal) is ready, or an [`ErrorCode::NotReady`] error naming
    /// the first that failed or exited before it was ready, with its stderr tail. Past
    /// `timeout_ms` the error names those still not ready.
    WaitReady {
        workspace: String,
        command: Option<String>,
        timeout_ms: Option<u64>,
    },
    /// Act on one command of a workspace's card (version 5): answered with
    /// [`Response::Ok`] once the change is in the /run snapshot (for a stop: the stop
    /// signal is sent), or [`ErrorCode::NotFound`] naming the workspace or command.
    Control {
        workspace: String,
        command: String,
        action: CmdAction,
    },
    /// Save a pipeline by its name for later runs (version 6); replaces one of the same
    /// name. Answered with [`Response::Ok`] once saved.
    PipelineSave {
        spec: PipelineSpec,
    },
    /// The saved pipelines, in one [`Response::Pipelines`] (their `workspace` is `None`).
    PipelineList,
    /// One saved pipeline's spec, as [`Response::Pipeline`].
    PipelineShow {
        name: String,
    },
    /// Forget a saved pipeline (the live runs of it go on).
    PipelineRemove {
        name: String,
    },
    /// Start the saved pipeline `name` in `workspace`: it joins the workspace's pipelines
    /// and is supervised as a card's are.
    PipelineRun {
        workspace: String,
        name: String,
    },
    /// Stop a live pipeline, source nodes first, and leave it stopped.
    PipelineStop {
        workspace: String,
        name: String,
    },
    /// The live pipelines of one workspace or of all, in one [`Response::Pipelines`].
    PipelinePs {
        workspace: Option<String>,
    },
}

/// A pipeline as `shuma pipeline ls` shows it (version 6).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PipelineInfo {
    /// The workspace it runs in; `None` for a saved pipeline.
    pub workspace: Option<String>,
    pub name: String,
    pub state: PipeState,
    /// Restarts so far, against its `restart_max`.
    pub restarts: u32,
    /// Node names, in the card's order.
    pub nodes: Vec<String>,
    /// Edges as `from -> to` / `from:stderr -> to`.
    pub edges: Vec<String>,
    /// Why it failed (the node and its stderr tail), when `state` is Failed.
    pub reason: Option<String>,
    /// Bytes dropped on fan-out edges for readers that fell behind, since it started.
    pub dropped: u64,
}

/// A pipeline's state as shown (version 6).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipeState {
    /// Saved, not running anywhere (only for saved pipelines).
    Saved,
    Running,
    /// Waiting out its backoff before a restart.
    Backoff,
    Stopping,
    /// Every node exited 0, or it was stopped.
    Done,
    /// Its restarts ran out.
    Failed,
}

/// What [`Request::Control`] does to one command (version 5).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmdAction {
    /// Start a stopped, exited or failed command, its failure record cleared; it waits for
    /// its `after` dependencies as at creation. A running one is left alone.
    Start,
    /// Stop it with its stop signal and grace; it stays stopped (no restart), and what
    /// `requires` it stops too.
    Stop,
    /// Stop, then start once it has exited.
    Restart,
    /// SIGHUP to the run (cards have no reload command yet).
    Reload,
    /// Send `signal` (1..=64) to the run's process group and its main process.
    Kill { signal: i32 },
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Protocol version mismatch.
    Version,
    /// A frame that did not decode, was too large, or came out of order.
    BadFrame,
    /// The peer is not allowed.
    Denied,
    NotFound,
    AlreadyExists,
    Invalid,
    /// A cap (workspaces, commands, connections) is reached.
    Limit,
    /// Something failed on the server's side (a syscall, a cgroup write).
    Internal,
    Unsupported,
    /// What [`Request::WaitReady`] waited for failed, or the wait timed out.
    NotReady,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Pid1,
    Subreaper,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct StatusInfo {
    pub version: String,
    pub pid: i32,
    pub mode: Mode,
    pub uptime_ms: u64,
    pub workspaces: u32,
    pub commands: u32,
    pub running: u32,
    pub connections: u32,
    pub last_event_id: u64,
    /// Orphans reaped that arje did not start.
    pub orphans_reaped: u64,
    /// Why the state (the /run snapshot or the durable copy) is not being saved: the
    /// newest write failed (a full or read-only disk), or no state directory could be
    /// trusted. `None` while every write succeeds. (Protocol version 3.)
    pub state_not_saved: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum WsState {
    Running,
    Stopping,
    Stopped,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceInfo {
    pub name: String,
    pub state: WsState,
    pub commands: u32,
    pub running: u32,
    pub limits: Limits,
    /// The workspace's cgroup directory (absolute, e.g. `/sys/fs/cgroup/arje/web`), if
    /// it has one.
    pub cgroup: Option<String>,
    pub created_unix_ms: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum CmdState {
    /// Not started yet, or waiting out a restart backoff.
    Waiting,
    Running,
    Stopping,
    /// A task that finished, or a service that was stopped.
    Exited,
    /// A service that gave up.
    Failed,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CommandInfo {
    pub id: u64,
    pub workspace: String,
    pub name: String,
    pub service: bool,
    pub pid: Option<i32>,
    pub state: CmdState,
    pub restarts: u32,
    pub last_exit: Option<ExitStatus>,
    /// Why it failed, when `state` is Failed.
    pub reason: Option<String>,
    /// Since the current run started, if running.
    pub uptime_ms: Option<u64>,
    /// Its `ready` condition held for the current run (a task: it exited 0).
    pub ready: bool,
    /// The last `STATUS=` text it sent over `NOTIFY_SOCKET`.
    pub status: Option<String>,
    /// Its health check's verdict; `None` without a check.
    pub health: Option<Health>,
    /// The dependencies it waits for before it starts (`after`), as written in the card.
    pub waiting_for: Vec<String>,
    /// The pipeline it is a node of, if it is one (version 6).
    pub pipeline: Option<String>,
}

/// A health check's verdict.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Not ready yet, or no probe has finished since it became ready.
    Starting,
    Healthy,
    /// The last `failures` probes in a row failed; `last` says how the newest did.
    Failing {
        failures: u32,
        last: String,
    },
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceDetail {
    pub info: WorkspaceInfo,
    pub spec: WorkspaceSpec,
    /// Limits that the card asks for but this host cannot enforce, each with the reason.
    pub unenforced: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct StatsSample {
    pub unix_ms: u64,
    pub memory_current: Option<u64>,
    pub memory_peak: Option<u64>,
    pub pids_current: Option<u64>,
    pub cpu_usage_us: Option<u64>,
    /// CPU use between this sample and the previous, in hundredths of a percent of one CPU.
    pub cpu_percent_x100: Option<u32>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    pub name: String,
    pub enforced: bool,
    /// Why not, when not enforced; or where, when enforced.
    pub detail: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum Response {
    Hello {
        version: u32,
        server: String,
    },
    Pong,
    Ok,
    Error {
        code: ErrorCode,
        message: String,
    },
    Status(StatusInfo),
    /// A workspace was created; `warnings` names limits that are not enforced, `failed`
    /// each command that could not be started (`name: why`): the workspace exists either
    /// way, and a failed service follows its restart policy.
    Created {
        name: String,
        warnings: Vec<String>,
        failed: Vec<String>,
    },
    Workspaces(Vec<WorkspaceInfo>),
    Workspace(Box<WorkspaceDetail>),
    Commands(Vec<CommandInfo>),
    Started {
        id: u64,
        pid: i32,
    },
    Exited {
        id: u64,
        status: ExitStatus,
    },
    /// A chunk of captured output. `dropped` counts bytes lost from the ring before it.
    Log {
        stream: Stream,
        data: Vec<u8>,
        dropped: u64,
    },
    Events(Vec<Event>),
    Stats {
        name: String,
        samples: Vec<StatsSample>,
    },
    Caps(Vec<Capability>),
    /// End of a non-follow listing that came as several frames.
    End,
    /// Pipelines, saved or live (version 6).
    Pipelines(Vec<PipelineInfo>),
    /// One saved pipeline's declaration (version 6).
    Pipeline(Box<PipelineSpec>),
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix announced more than [`MAX_FRAME`].
    TooLarge(usize),
    /// The payload is not a valid postcard message of the expected type.
    Decode(String),
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FrameError::TooLarge(n) => {
                write!(f, "frame of {n} bytes exceeds the {MAX_FRAME}-byte limit")
            }
            FrameError::Decode(e) => write!(f, "frame does not decode: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Encode `msg` as one frame: length prefix plus postcard payload.
pub fn encode_frame<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_LEN];
    // Serialising our own enums into a Vec cannot fail: no maps of unknown length,
    // no custom serialisers that error.
    out = postcard::to_extend(msg, out).unwrap_or_else(|_| vec![0u8; HEADER_LEN]);
    let len = (out.len() - HEADER_LEN) as u32;
    out[..HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    out
}

/// Decode one payload (without its length prefix), strictly: bytes left over after a
/// complete message mean the sender and this reader disagree about the message (another
/// version, a bug, an attack), which must not pass as the shorter message it happens to
/// begin with. The snapshot decoder follows the same rule.
pub fn decode_payload<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, FrameError> {
    let (value, rest) =
        postcard::take_from_bytes(payload).map_err(|e| FrameError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        let n = rest.len();
        let s = if n == 1 { "" } else { "s" };
        return Err(FrameError::Decode(format!(
            "{n} byte{s} left after a complete message"
        )));
    }
    Ok(value)
}

/// Look for one complete frame at the start of `buf`.
///
/// Returns `Ok(Some((payload_range_end, payload)))` when a whole frame is there, with
/// the number of bytes it occupies, `Ok(None)` when more bytes are needed, and
/// `Err(TooLarge)` as soon as the prefix announces an oversized frame, so a reader
/// never buffers more than [`MAX_FRAME`] + [`HEADER_LEN`] bytes.
pub fn split_frame(buf: &[u8]) -> Result<Option<(usize, &[u8])>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let end = HEADER_LEN + len;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some((end, &buf[HEADER_LEN..end])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_frame_round_trip_request() {
        let req = Request::Hello {
            version: PROTOCOL_VERSION,
            client: "t".into(),
        };
        let frame = encode_frame(&req);
        let (used, payload) = split_frame(&frame).unwrap().unwrap();
        assert_eq!(used, frame.len());
        assert_eq!(decode_payload::<Request>(payload).unwrap(), req);
    }

    #[test]
    fn test_split_frame_partial_needs_more() {
        let frame = encode_frame(&Request::Ping);
        assert_eq!(split_frame(&frame[..frame.len() - 1]).unwrap(), None);
        assert_eq!(split_frame(&frame[..2]).unwrap(), None);
    }

    #[test]
    fn test_decode_payload_trailing_bytes_is_decode_error() {
        let mut frame = encode_frame(&Request::Ping);
        frame.push(0);

        let decoded = decode_payload::<Request>(&frame[HEADER_LEN..]);

        assert!(
            matches!(&decoded, Err(FrameError::Decode(why)) if why.contains("1 byte")),
            "{decoded:?}"
        );
    }

    #[test]
    fn test_split_frame_oversized_rejected_early() {
        let buf = ((MAX_FRAME + 1) as u32).to_be_bytes();
        assert_eq!(split_frame(&buf), Err(FrameError::TooLarge(MAX_FRAME + 1)));
    }
}
