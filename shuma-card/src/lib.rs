//! Plain data shared by both ends of arje: workspace and command specs ("cards") and
//! their TOML loading, the control protocol (requests, responses, framing), the event
//! journal's records and the snapshot schema. No syscalls live here.
#![forbid(unsafe_code)]

pub mod card;
pub mod event;
pub mod pipeline;
pub mod protocol;
pub mod snapshot;
pub mod spec;
pub mod unit;
pub mod units;

pub use event::{Event, EventKind, ExitStatus};
pub use pipeline::{Edge, OutStream, PipelineSpec};
pub use spec::{
    CommandKind, CommandSpec, DepRef, DirKind, HealthCheck, KillMode, Limits, LogTarget, Probe,
    Readiness, RestartPolicy, Rlimit, ServiceDir, WorkspaceSpec,
};
