//! Format version 1, frozen: the schema as it was when v1 was the current format, and its
//! migration to v2 (whose own migration, in `v2.rs`, leads on to the current schema).
//!
//! Every type reachable from v1's `Snapshot` is copied here with its fields and variants
//! in their v1 order, including the card, event and protocol types v1 embedded directly
//! (`WorkspaceSpec`, `StatsSample`, `ExitStatus` and the types inside them). postcard
//! decodes by position, so these declarations *are* the v1 format: never edit them. The
//! golden files `tests/golden/snapshot-v1-*.bin` fail the tests if one changes.
//!
//! arje never writes v1 any more; only the tests serialise these types, to build v1
//! payloads.
//!
//! Each `migrate` destructures its v1 value exhaustively and builds the frozen v2 value
//! with a struct literal. Since v2 is frozen too, this file never changes again.

use serde::Deserialize;
#[cfg(test)]
use serde::Serialize;

use super::v2::{
    CommandStateV2, LiveProcessV2, SavedCommandKindV2, SavedCommandSpecV2, SavedCpuMaxV2,
    SavedExitStatusV2, SavedLimitsV2, SavedLogTargetV2, SavedOomActionV2, SavedRestartPolicyV2,
    SavedStatsSampleV2, SavedWorkspaceSpecV2, SnapshotV2, WorkspaceStateV2,
};
use super::{decode_exact, Snapshot, SnapshotError};

/// Decodes a v1 payload strictly (leftover bytes are an error) and migrates it to the
/// current schema, through v2: each step is written once.
pub(super) fn decode(payload: &[u8]) -> Result<Snapshot, SnapshotError> {
    decode_exact::<SnapshotV1>(payload).map(|v1| v1.migrate().migrate().migrate())
}

/// v1's `Snapshot`.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct SnapshotV1 {
    written_unix_ms: u64,
    boot_id: String,
    arje_pid: i32,
    next_event_id: u64,
    next_command_id: u64,
    workspaces: Vec<WorkspaceStateV1>,
    listener_fd: Option<i32>,
}

/// v1's `WorkspaceState`: no id, the card's `WorkspaceSpec` embedded.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct WorkspaceStateV1 {
    spec: WorkspaceSpecV1,
    created_unix_ms: u64,
    stopping: bool,
    commands: Vec<CommandStateV1>,
    stats: Vec<StatsSampleV1>,
}

/// v1's `CommandState`.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct CommandStateV1 {
    id: u64,
    name: String,
    restarts: u32,
    recent_restarts_unix_ms: Vec<u64>,
    last_exit: Option<ExitStatusV1>,
    done: bool,
    failed: Option<String>,
    live: Option<LiveProcessV1>,
}

/// v1's `LiveProcess`.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct LiveProcessV1 {
    pid: i32,
    start_time_ticks: u64,
    started_unix_ms: u64,
    stdout_fd: Option<i32>,
    stderr_fd: Option<i32>,
}

/// The card's `WorkspaceSpec` as v1 saved it.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct WorkspaceSpecV1 {
    name: String,
    limits: LimitsV1,
    ttl_ms: Option<u64>,
    on_oom: OomActionV1,
    commands: Vec<CommandSpecV1>,
}

/// The card's `Limits` as v1 saved them.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct LimitsV1 {
    memory_max: Option<u64>,
    memory_high: Option<u64>,
    memory_swap_max: Option<u64>,
    pids_max: Option<u64>,
    cpu_max: Option<CpuMaxV1>,
    cpu_weight: Option<u16>,
    io_weight: Option<u16>,
}

/// The card's `CpuMax` as v1 saved it.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct CpuMaxV1 {
    quota_us: u64,
    period_us: u64,
}

/// The card's `OomAction` as v1 saved it.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
enum OomActionV1 {
    Restart,
    StopWorkspace,
}

/// The card's `CommandSpec` as v1 saved it.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct CommandSpecV1 {
    name: String,
    kind: CommandKindV1,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    cwd: Option<String>,
    user: Option<String>,
    group: Option<String>,
    log: LogTargetV1,
    restart: RestartPolicyV1,
    backoff_initial_ms: u64,
    backoff_max_ms: u64,
    max_restarts: u32,
    restart_window_ms: u64,
    min_uptime_ms: u64,
    stop_signal: i32,
    stop_grace_ms: u64,
}

/// The card's `CommandKind` as v1 saved it.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
enum CommandKindV1 {
    Task,
    Service,
}

/// The card's `RestartPolicy` as v1 saved it.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
enum RestartPolicyV1 {
    Never,
    OnFailure,
    Always,
}

/// The card's `LogTarget` as v1 saved it.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
enum LogTargetV1 {
    Ring,
    Console,
    File(String),
}

/// The protocol's `StatsSample` as v1 saved it.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct StatsSampleV1 {
    unix_ms: u64,
    memory_current: Option<u64>,
    memory_peak: Option<u64>,
    pids_current: Option<u64>,
    cpu_usage_us: Option<u64>,
    cpu_percent_x100: Option<u32>,
}

/// The event journal's `ExitStatus` as v1 saved it.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
enum ExitStatusV1 {
    Code(i32),
    Signal(i32),
    OomKilled,
}

impl SnapshotV1 {
    fn migrate(self) -> SnapshotV2 {
        let SnapshotV1 {
            written_unix_ms,
            boot_id,
            arje_pid,
            next_event_id,
            next_command_id,
            workspaces,
            listener_fd,
        } = self;
        // v1 had no workspace ids. Numbering the workspaces 1..=n in their saved order
        // (creation order) gives each a distinct id, and starting the counter after them
        // keeps the rule that an id is never given twice.
        let workspaces: Vec<WorkspaceStateV2> = (1..)
            .zip(workspaces)
            .map(|(id, ws)| ws.migrate(id))
            .collect();
        let next_workspace_id = workspaces.len() as u64 + 1;
        SnapshotV2 {
            written_unix_ms,
            boot_id,
            arje_pid,
            next_event_id,
            next_command_id,
            next_workspace_id,
            workspaces,
            listener_fd,
        }
    }
}

impl WorkspaceStateV1 {
    fn migrate(self, id: u64) -> WorkspaceStateV2 {
        let WorkspaceStateV1 {
            spec,
            created_unix_ms,
            stopping,
            commands,
            stats,
        } = self;
        WorkspaceStateV2 {
            id,
            spec: spec.migrate(),
            created_unix_ms,
            stopping,
            commands: commands.into_iter().map(CommandStateV1::migrate).collect(),
            stats: stats.into_iter().map(StatsSampleV1::migrate).collect(),
        }
    }
}

impl CommandStateV1 {
    fn migrate(self) -> CommandStateV2 {
        let CommandStateV1 {
            id,
            name,
            restarts,
            recent_restarts_unix_ms,
            last_exit,
            done,
            failed,
            live,
        } = self;
        CommandStateV2 {
            id,
            name,
            restarts,
            recent_restarts_unix_ms,
            last_exit: last_exit.map(ExitStatusV1::migrate),
            done,
            failed,
            live: live.map(LiveProcessV1::migrate),
        }
    }
}

impl LiveProcessV1 {
    fn migrate(self) -> LiveProcessV2 {
        let LiveProcessV1 {
            pid,
            start_time_ticks,
            started_unix_ms,
            stdout_fd,
            stderr_fd,
        } = self;
        LiveProcessV2 {
            pid,
            start_time_ticks,
            started_unix_ms,
            stdout_fd,
            stderr_fd,
        }
    }
}

impl WorkspaceSpecV1 {
    fn migrate(self) -> SavedWorkspaceSpecV2 {
        let WorkspaceSpecV1 {
            name,
            limits,
            ttl_ms,
            on_oom,
            commands,
        } = self;
        SavedWorkspaceSpecV2 {
            name,
            limits: limits.migrate(),
            ttl_ms,
            on_oom: on_oom.migrate(),
            commands: commands.into_iter().map(CommandSpecV1::migrate).collect(),
        }
    }
}

impl LimitsV1 {
    fn migrate(self) -> SavedLimitsV2 {
        let LimitsV1 {
            memory_max,
            memory_high,
            memory_swap_max,
            pids_max,
            cpu_max,
            cpu_weight,
            io_weight,
        } = self;
        SavedLimitsV2 {
            memory_max,
            memory_high,
            memory_swap_max,
            pids_max,
            cpu_max: cpu_max.map(CpuMaxV1::migrate),
            cpu_weight,
            io_weight,
        }
    }
}

impl CpuMaxV1 {
    fn migrate(self) -> SavedCpuMaxV2 {
        let CpuMaxV1 {
            quota_us,
            period_us,
        } = self;
        SavedCpuMaxV2 {
            quota_us,
            period_us,
        }
    }
}

impl OomActionV1 {
    fn migrate(self) -> SavedOomActionV2 {
        match self {
            OomActionV1::Restart => SavedOomActionV2::Restart,
            OomActionV1::StopWorkspace => SavedOomActionV2::StopWorkspace,
        }
    }
}

impl CommandSpecV1 {
    fn migrate(self) -> SavedCommandSpecV2 {
        let CommandSpecV1 {
            name,
            kind,
            argv,
            env,
            cwd,
            user,
            group,
            log,
            restart,
            backoff_initial_ms,
            backoff_max_ms,
            max_restarts,
            restart_window_ms,
            min_uptime_ms,
            stop_signal,
            stop_grace_ms,
        } = self;
        SavedCommandSpecV2 {
            name,
            kind: kind.migrate(),
            argv,
            env,
            cwd,
            user,
            group,
            log: log.migrate(),
            restart: restart.migrate(),
            backoff_initial_ms,
            backoff_max_ms,
            max_restarts,
            restart_window_ms,
            min_uptime_ms,
            stop_signal,
            stop_grace_ms,
        }
    }
}

impl CommandKindV1 {
    fn migrate(self) -> SavedCommandKindV2 {
        match self {
            CommandKindV1::Task => SavedCommandKindV2::Task,
            CommandKindV1::Service => SavedCommandKindV2::Service,
        }
    }
}

impl RestartPolicyV1 {
    fn migrate(self) -> SavedRestartPolicyV2 {
        match self {
            RestartPolicyV1::Never => SavedRestartPolicyV2::Never,
            RestartPolicyV1::OnFailure => SavedRestartPolicyV2::OnFailure,
            RestartPolicyV1::Always => SavedRestartPolicyV2::Always,
        }
    }
}

impl LogTargetV1 {
    fn migrate(self) -> SavedLogTargetV2 {
        match self {
            LogTargetV1::Ring => SavedLogTargetV2::Ring,
            LogTargetV1::Console => SavedLogTargetV2::Console,
            LogTargetV1::File(path) => SavedLogTargetV2::File(path),
        }
    }
}

impl StatsSampleV1 {
    fn migrate(self) -> SavedStatsSampleV2 {
        let StatsSampleV1 {
            unix_ms,
            memory_current,
            memory_peak,
            pids_current,
            cpu_usage_us,
            cpu_percent_x100,
        } = self;
        SavedStatsSampleV2 {
            unix_ms,
            memory_current,
            memory_peak,
            pids_current,
            cpu_usage_us,
            cpu_percent_x100,
        }
    }
}

impl ExitStatusV1 {
    fn migrate(self) -> SavedExitStatusV2 {
        match self {
            ExitStatusV1::Code(code) => SavedExitStatusV2::Code(code),
            ExitStatusV1::Signal(signal) => SavedExitStatusV2::Signal(signal),
            ExitStatusV1::OomKilled => SavedExitStatusV2::OomKilled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace_v1(name: &str) -> WorkspaceStateV1 {
        WorkspaceStateV1 {
            spec: WorkspaceSpecV1 {
                name: name.into(),
                limits: LimitsV1 {
                    memory_max: None,
                    memory_high: None,
                    memory_swap_max: None,
                    pids_max: None,
                    cpu_max: None,
                    cpu_weight: None,
                    io_weight: None,
                },
                ttl_ms: None,
                on_oom: OomActionV1::Restart,
                commands: Vec::new(),
            },
            created_unix_ms: 0,
            stopping: false,
            commands: Vec::new(),
            stats: Vec::new(),
        }
    }

    fn snapshot_v1(workspaces: Vec<WorkspaceStateV1>) -> SnapshotV1 {
        SnapshotV1 {
            written_unix_ms: 0,
            boot_id: String::new(),
            arje_pid: 0,
            next_event_id: 0,
            next_command_id: 0,
            workspaces,
            listener_fd: None,
        }
    }

    #[test]
    fn test_decode_three_workspaces_numbered_in_order_and_counter_after_them() {
        // Arrange
        let names = ["a", "b", "c"];
        let v1 = snapshot_v1(names.iter().map(|n| workspace_v1(n)).collect());
        let payload = postcard::to_allocvec(&v1).unwrap();

        // Act
        let migrated = decode(&payload).unwrap();

        // Assert
        let ids: Vec<(u64, &str)> = migrated
            .workspaces
            .iter()
            .map(|w| (w.id, w.spec.name.as_str()))
            .collect();
        assert_eq!(ids, vec![(1, "a"), (2, "b"), (3, "c")]);
        assert_eq!(migrated.next_workspace_id, 4);
    }

    #[test]
    fn test_decode_no_workspaces_counter_starts_at_one() {
        // Arrange
        let payload = postcard::to_allocvec(&snapshot_v1(Vec::new())).unwrap();

        // Act
        let migrated = decode(&payload).unwrap();

        // Assert
        assert_eq!(migrated.next_workspace_id, 1);
        assert!(migrated.workspaces.is_empty());
    }

    #[test]
    fn test_decode_trailing_byte_is_decode_error() {
        // Arrange
        let mut payload = postcard::to_allocvec(&snapshot_v1(Vec::new())).unwrap();
        payload.push(0);

        // Act
        let result = decode(&payload);

        // Assert
        assert_eq!(
            result,
            Err(SnapshotError::Decode(
                "1 bytes left after the snapshot".into()
            ))
        );
    }
}
