//! arje's runtime: one thread, one epoll loop over a signalfd, the children it started,
//! timers, the control socket and log pipes. `arje-init` wires it up as PID 1 or as a
//! subreaper; everything that does work lives here.
#![deny(unsafe_code)]

// Private modules with a curated `pub use`: the compiler finds dead code, and
// `arje-init` sees only the runtime's face.
mod access;
mod cgroup;
mod control;
mod ids;
mod journal;
mod persist;
mod ring;
mod runtime;
mod supervise;
mod sys;
mod timers;
mod token;
pub mod userdb;

pub use ids::CommandId;

/// The pieces the benchmarks time beside the runtime (the spawner alone, the cgroup
/// tree alone, the snapshot writers alone, the journal alone). Not for `arje-init`.
pub mod parts {
    pub use crate::cgroup::{Cgroups, Setup};
    pub use crate::journal::Journal;
    pub use crate::persist::{write_durable, write_run, EventLog, EventLogLimits, StateDir};
    pub use crate::sys::spawn::{CgroupTarget, ExecPlan, Spawner};
}

use std::path::PathBuf;
use std::time::Duration;

pub use shuma_card::protocol::{Mode, ShutdownKind};

/// How `arje-init` configures the runtime.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    /// The control socket's path.
    pub socket: PathBuf,
    /// If set, the socket is 0660 and members of this group may use it.
    pub socket_group: Option<u32>,
    /// Every `*.toml` in it is loaded at start.
    pub cards_dir: Option<PathBuf>,
    /// Where the /run snapshot lives (tmpfs): `/run/arje` as PID 1.
    pub state_dir: PathBuf,
    /// Where the durable copy lives (`/var/lib/arje` by default), if any.
    pub durable_dir: Option<PathBuf>,
    /// The cgroup v2 directory under which workspaces are created; `None` disables cgroups.
    pub cgroup_root: Option<PathBuf>,
    /// The bound on stopping everything at shutdown.
    pub shutdown_timeout: Duration,
    /// The soft RLIMIT_NOFILE children get, when it is not arje's own: arje-init raises
    /// its own to the hard limit and gives children the one it found.
    pub child_nofile: Option<u64>,
    /// Where to listen for syslog(3) messages (`/dev/log` as PID 1), if anywhere.
    pub syslog: Option<PathBuf>,
    /// Bound on the event journal on disk, in bytes ([`JOURNAL_MAX_DEFAULT`]); 0: in
    /// memory only. In the state directory (no durable one) at most [`JOURNAL_MAX_RUN`].
    pub journal_max: u64,
    /// Where the event journal's `events/` goes when there is no durable directory, if
    /// not in the state directory: a host's /var/lib/arje (arje-init on a real root),
    /// so the journal outlives a reboot while the snapshot, which a host's cards
    /// replace at every boot, does not.
    pub journal_dir: Option<PathBuf>,
    /// Where ring-logged commands' output is also written, `DIR/WORKSPACE/COMMAND.log`,
    /// rotated past [`Config::log_file_max`] bytes: a host's /var/log/arje.
    pub log_dir: Option<PathBuf>,
    pub log_file_max: u64,
    /// Serve the control protocol on this AF_VSOCK port too (`arje.vsock=PORT`), with
    /// full access for the VM's host (docs/SECURITY.md).
    pub vsock_port: Option<u32>,
}

/// A log file's default bound before it is rotated (three files kept per command).
pub const LOG_FILE_MAX_DEFAULT: u64 = 8 << 20;
/// The on-disk journal's default bound.
pub const JOURNAL_MAX_DEFAULT: u64 = 32 << 20;
/// The bound when the journal lives in the state directory (tmpfs: memory).
pub const JOURNAL_MAX_RUN: u64 = 4 << 20;

/// Why [`Runtime::run`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Subreaper mode: SIGTERM or SIGINT; every workspace is stopped.
    Exit,
    /// PID 1: a shutdown was asked for (signal or `shuma`); every workspace is stopped,
    /// the caller kills what is left, unmounts and calls reboot(2).
    Shutdown(ShutdownKind),
    /// `shuma daemon-reexec`: the snapshot is flushed and the fds to keep are marked
    /// inheritable; the caller execs `binary` with the same arguments.
    Reexec { binary: PathBuf },
}
pub use runtime::laps::Laps;
pub use runtime::{ArjeNote, Created, Previous, Runtime, RuntimeError};
pub use sys::host::{getrandom, interface_up, swapoff, swapon};
pub use sys::signals::{block as block_signals_raw, kill_raw, set_signalfd_mask};
