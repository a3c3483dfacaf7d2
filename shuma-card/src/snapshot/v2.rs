//! Format version 2, frozen: the schema as it was when v2 was the current format, and its
//! migration to the current one.
//!
//! v2 differed from v1 in two ways. The snapshot stored its own copies of the card, event
//! and protocol types (`saved.rs`), so a card field added for a new feature no longer
//! changed the format unnoticed. And workspaces carried ids, so that an id is never
//! reused, even across a re-exec or a reboot.
//!
//! Every type reachable from v2's `Snapshot` is copied here with its fields and variants
//! in their v2 order. postcard decodes by position, so these declarations *are* the v2
//! format: never edit them. The golden files `tests/golden/snapshot-v2-*.bin` fail the
//! tests if one changes. `v1` migrates into these types, so each migration step is
//! written once: v1 → v2 there, v2 → current here.
//!
//! arje never writes v2 any more; only the tests serialise these types, to build v2
//! payloads.
//!
//! Each `migrate` destructures its v2 value exhaustively and builds the current value
//! with a struct literal, so a field added to a current type fails to compile here until
//! someone decides what a v2 file means for it.

use serde::Deserialize;
#[cfg(test)]
use serde::Serialize;

use super::saved::{
    SavedCommandKind, SavedCpuMax, SavedExitStatus, SavedLimits, SavedLogTarget, SavedOomAction,
    SavedReadiness, SavedRestartPolicy, SavedStatsSample,
};
use super::v3::{SavedCommandSpecV3, SavedWorkspaceSpecV3, SnapshotV3, WorkspaceStateV3};
use super::{decode_exact, CommandState, LiveProcess, Snapshot, SnapshotError};

/// The `ready_timeout` a command of a v2 file gets: the default of a card without the key
/// when v3 shipped (systemd's `DefaultTimeoutStartSec`). Written out rather than taken
/// from the card's constant, so that changing the card's default later does not change
/// what an old file means.
const READY_TIMEOUT_MS: u64 = 90_000;

/// Decodes a v2 payload strictly (leftover bytes are an error) and migrates it to the
/// current schema.
pub(super) fn decode(payload: &[u8]) -> Result<Snapshot, SnapshotError> {
    decode_exact::<SnapshotV2>(payload).map(|v2| v2.migrate().migrate())
}

/// v2's `Snapshot`.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
pub(super) struct SnapshotV2 {
    pub(super) written_unix_ms: u64,
    pub(super) boot_id: String,
    pub(super) arje_pid: i32,
    pub(super) next_event_id: u64,
    pub(super) next_command_id: u64,
    pub(super) next_workspace_id: u64,
    pub(super) workspaces: Vec<WorkspaceStateV2>,
    pub(super) listener_fd: Option<i32>,
}

/// v2's `WorkspaceState`.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
pub(super) struct WorkspaceStateV2 {
    pub(super) id: u64,
    pub(super) spec: SavedWorkspaceSpecV2,
    pub(super) created_unix_ms: u64,
    pub(super) stopping: bool,
    pub(super) commands: Vec<CommandStateV2>,
    pub(super) stats: Vec<SavedStatsSampleV2>,
}

/// v2's `CommandState`.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
pub(super) struct CommandStateV2 {
    pub(super) id: u64,
    pub(super) name: String,
    pub(super) restarts: u32,
    pub(super) recent_restarts_unix_ms: Vec<u64>,
    pub(super) last_exit: Option<SavedExitStatusV2>,
    pub(super) done: bool,
    pub(super) failed: Option<String>,
    pub(super) live: Option<LiveProcessV2>,
}

/// v2's `LiveProcess`.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
pub(super) struct LiveProcessV2 {
    pub(super) pid: i32,
    pub(super) start_time_ticks: u64,
    pub(super) started_unix_ms: u64,
    pub(super) stdout_fd: Option<i32>,
    pub(super) stderr_fd: Option<i32>,
}

/// v2's `SavedWorkspaceSpec`.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
pub(super) struct SavedWorkspaceSpecV2 {
    pub(super) name: String,
    pub(super) limits: SavedLimitsV2,
    pub(super) ttl_ms: Option<u64>,
    pub(super) on_oom: SavedOomActionV2,
    pub(super) commands: Vec<SavedCommandSpecV2>,
}

/// v2's `SavedLimits`.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
pub(super) struct SavedLimitsV2 {
    pub(super) memory_max: Option<u64>,
    pub(super) memory_high: Option<u64>,
    pub(super) memory_swap_max: Option<u64>,
    pub(super) pids_max: Option<u64>,
    pub(super) cpu_max: Option<SavedCpuMaxV2>,
    pub(super) cpu_weight: Option<u16>,
    pub(super) io_weight: Option<u16>,
}

/// v2's `SavedCpuMax`.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
pub(super) struct SavedCpuMaxV2 {
    pub(super) quota_us: u64,
    pub(super) period_us: u64,
}

/// v2's `SavedOomAction`.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
pub(super) enum SavedOomActionV2 {
    Restart,
    StopWorkspace,
}

/// v2's `SavedCommandSpec`: no readiness, dependencies or health yet.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
pub(super) struct SavedCommandSpecV2 {
    pub(super) name: String,
    pub(super) kind: SavedCommandKindV2,
    pub(super) argv: Vec<String>,
    pub(super) env: Vec<(String, String)>,
    pub(super) cwd: Option<String>,
    pub(super) user: Option<String>,
    pub(super) group: Option<String>,
    pub(super) log: SavedLogTargetV2,
    pub(super) restart: SavedRestartPolicyV2,
    pub(super) backoff_initial_ms: u64,
    pub(super) backoff_max_ms: u64,
    pub(super) max_restarts: u32,
    pub(super) restart_window_ms: u64,
    pub(super) min_uptime_ms: u64,
    pub(super) stop_signal: i32,
    pub(super) stop_grace_ms: u64,
}

/// v2's `SavedCommandKind`.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Serialize))]
pub(super) enum SavedCommandKindV2 {
    Task,
    Service,
}

/// v2's `SavedRestartPolicy`.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
pub(super) enum SavedRestartPolicyV2 {
    Never,
    OnFailure,
    Always,
}

/// v2's `SavedLogTarget`.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
pub(super) enum SavedLogTargetV2 {
    Ring,
    Console,
    File(String),
}

/// v2's `SavedExitStatus`.
#[derive(Deserialize, Clone, Copy)]
#[cfg_attr(test, derive(Serialize))]
pub(super) enum SavedExitStatusV2 {
    Code(i32),
    Signal(i32),
    OomKilled,
}

/// v2's `SavedStatsSample`.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
pub(super) struct SavedStatsSampleV2 {
    pub(super) unix_ms: u64,
    pub(super) memory_current: Option<u64>,
    pub(super) memory_peak: Option<u64>,
    pub(super) pids_current: Option<u64>,
    pub(super) cpu_usage_us: Option<u64>,
    pub(super) cpu_percent_x100: Option<u32>,
}

impl SnapshotV2 {
    pub(super) fn migrate(self) -> SnapshotV3 {
        let SnapshotV2 {
            written_unix_ms,
            boot_id,
            arje_pid,
            next_event_id,
            next_command_id,
            next_workspace_id,
            workspaces,
            listener_fd,
        } = self;
        SnapshotV3 {
            written_unix_ms,
            boot_id,
            arje_pid,
            next_event_id,
            next_command_id,
            next_workspace_id,
            workspaces: workspaces
                .into_iter()
                .map(WorkspaceStateV2::migrate)
                .collect(),
            listener_fd,
        }
    }
}

impl WorkspaceStateV2 {
    fn migrate(self) -> WorkspaceStateV3 {
        let WorkspaceStateV2 {
            id,
            spec,
            created_unix_ms,
            stopping,
            commands,
            stats,
        } = self;
        // A command's kind lives in the spec, found by name; one that is not there is an
        // ad-hoc `shuma run`, a task.
        let is_service = |name: &str| {
            spec.commands
                .iter()
                .any(|c| c.name == name && c.kind == SavedCommandKindV2::Service)
        };
        let commands = commands
            .into_iter()
            .map(|c| {
                let service = is_service(&c.name);
                c.migrate(service)
            })
            .collect();
        WorkspaceStateV3 {
            id,
            spec: spec.migrate(),
            created_unix_ms,
            stopping,
            commands,
            stats: stats.into_iter().map(SavedStatsSampleV2::migrate).collect(),
        }
    }
}

impl CommandStateV2 {
    fn migrate(self, service: bool) -> CommandState {
        let CommandStateV2 {
            id,
            name,
            restarts,
            recent_restarts_unix_ms,
            last_exit,
            done,
            failed,
            live,
        } = self;
        // v2 knew no readiness; every command of a v2 file migrates with `ready =
        // started`, under which a service is ready once it runs and a task once it
        // exited 0. So "as before" is: a service with a live process is ready, and so is
        // a task whose last run exited 0 and that does not run again now.
        let ready = if service {
            live.is_some()
        } else {
            live.is_none() && matches!(last_exit, Some(SavedExitStatusV2::Code(0)))
        };
        CommandState {
            id,
            name,
            restarts,
            recent_restarts_unix_ms,
            last_exit: last_exit.map(SavedExitStatusV2::migrate),
            done,
            failed,
            live: live.map(LiveProcessV2::migrate),
            ready,
            // No service of v2 could send STATUS= or have a notify socket.
            status: None,
            notify_fd: None,
        }
    }
}

impl LiveProcessV2 {
    fn migrate(self) -> LiveProcess {
        let LiveProcessV2 {
            pid,
            start_time_ticks,
            started_unix_ms,
            stdout_fd,
            stderr_fd,
        } = self;
        LiveProcess {
            pid,
            start_time_ticks,
            started_unix_ms,
            stdout_fd,
            stderr_fd,
        }
    }
}

impl SavedWorkspaceSpecV2 {
    fn migrate(self) -> SavedWorkspaceSpecV3 {
        let SavedWorkspaceSpecV2 {
            name,
            limits,
            ttl_ms,
            on_oom,
            commands,
        } = self;
        SavedWorkspaceSpecV3 {
            name,
            limits: limits.migrate(),
            ttl_ms,
            on_oom: on_oom.migrate(),
            commands: commands
                .into_iter()
                .map(SavedCommandSpecV2::migrate)
                .collect(),
        }
    }
}

impl SavedLimitsV2 {
    fn migrate(self) -> SavedLimits {
        let SavedLimitsV2 {
            memory_max,
            memory_high,
            memory_swap_max,
            pids_max,
            cpu_max,
            cpu_weight,
            io_weight,
        } = self;
        SavedLimits {
            memory_max,
            memory_high,
            memory_swap_max,
            pids_max,
            cpu_max: cpu_max.map(SavedCpuMaxV2::migrate),
            cpu_weight,
            io_weight,
        }
    }
}

impl SavedCpuMaxV2 {
    fn migrate(self) -> SavedCpuMax {
        let SavedCpuMaxV2 {
            quota_us,
            period_us,
        } = self;
        SavedCpuMax {
            quota_us,
            period_us,
        }
    }
}

impl SavedOomActionV2 {
    fn migrate(self) -> SavedOomAction {
        match self {
            SavedOomActionV2::Restart => SavedOomAction::Restart,
            SavedOomActionV2::StopWorkspace => SavedOomAction::StopWorkspace,
        }
    }
}

impl SavedCommandSpecV2 {
    fn migrate(self) -> SavedCommandSpecV3 {
        let SavedCommandSpecV2 {
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
        // What a card without the new keys gives: ready once started, no watchdog, no
        // dependencies, no health check. That is how every v2 command behaved.
        SavedCommandSpecV3 {
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
            ready: SavedReadiness::Started,
            ready_timeout_ms: READY_TIMEOUT_MS,
            watchdog_ms: None,
            after: Vec::new(),
            requires: Vec::new(),
            wants: Vec::new(),
            health: None,
        }
    }
}

impl SavedCommandKindV2 {
    fn migrate(self) -> SavedCommandKind {
        match self {
            SavedCommandKindV2::Task => SavedCommandKind::Task,
            SavedCommandKindV2::Service => SavedCommandKind::Service,
        }
    }
}

impl SavedRestartPolicyV2 {
    fn migrate(self) -> SavedRestartPolicy {
        match self {
            SavedRestartPolicyV2::Never => SavedRestartPolicy::Never,
            SavedRestartPolicyV2::OnFailure => SavedRestartPolicy::OnFailure,
            SavedRestartPolicyV2::Always => SavedRestartPolicy::Always,
        }
    }
}

impl SavedLogTargetV2 {
    fn migrate(self) -> SavedLogTarget {
        match self {
            SavedLogTargetV2::Ring => SavedLogTarget::Ring,
            SavedLogTargetV2::Console => SavedLogTarget::Console,
            SavedLogTargetV2::File(path) => SavedLogTarget::File(path),
        }
    }
}

impl SavedExitStatusV2 {
    fn migrate(self) -> SavedExitStatus {
        match self {
            SavedExitStatusV2::Code(code) => SavedExitStatus::Code(code),
            SavedExitStatusV2::Signal(signal) => SavedExitStatus::Signal(signal),
            SavedExitStatusV2::OomKilled => SavedExitStatus::OomKilled,
        }
    }
}

impl SavedStatsSampleV2 {
    fn migrate(self) -> SavedStatsSample {
        let SavedStatsSampleV2 {
            unix_ms,
            memory_current,
            memory_peak,
            pids_current,
            cpu_usage_us,
            cpu_percent_x100,
        } = self;
        SavedStatsSample {
            unix_ms,
            memory_current,
            memory_peak,
            pids_current,
            cpu_usage_us,
            cpu_percent_x100,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command_v2(kind: SavedCommandKindV2, name: &str) -> SavedCommandSpecV2 {
        SavedCommandSpecV2 {
            name: name.into(),
            kind,
            argv: vec!["/bin/true".into()],
            env: Vec::new(),
            cwd: None,
            user: None,
            group: None,
            log: SavedLogTargetV2::Ring,
            restart: SavedRestartPolicyV2::Never,
            backoff_initial_ms: 100,
            backoff_max_ms: 30_000,
            max_restarts: 10,
            restart_window_ms: 60_000,
            min_uptime_ms: 1_000,
            stop_signal: 15,
            stop_grace_ms: 5_000,
        }
    }

    fn state_v2(name: &str, last_exit: Option<SavedExitStatusV2>, live: bool) -> CommandStateV2 {
        CommandStateV2 {
            id: 1,
            name: name.into(),
            restarts: 0,
            recent_restarts_unix_ms: Vec::new(),
            last_exit,
            done: false,
            failed: None,
            live: live.then_some(LiveProcessV2 {
                pid: 10,
                start_time_ticks: 1,
                started_unix_ms: 1,
                stdout_fd: Some(7),
                stderr_fd: None,
            }),
        }
    }

    /// One workspace holding a service `svc` and a task `job` with the given states.
    fn snapshot_v2(commands: Vec<CommandStateV2>) -> SnapshotV2 {
        SnapshotV2 {
            written_unix_ms: 0,
            boot_id: String::new(),
            arje_pid: 1,
            next_event_id: 0,
            next_command_id: 0,
            next_workspace_id: 2,
            workspaces: vec![WorkspaceStateV2 {
                id: 1,
                spec: SavedWorkspaceSpecV2 {
                    name: "w".into(),
                    limits: SavedLimitsV2 {
                        memory_max: None,
                        memory_high: None,
                        memory_swap_max: None,
                        pids_max: None,
                        cpu_max: None,
                        cpu_weight: None,
                        io_weight: None,
                    },
                    ttl_ms: None,
                    on_oom: SavedOomActionV2::Restart,
                    commands: vec![
                        command_v2(SavedCommandKindV2::Service, "svc"),
                        command_v2(SavedCommandKindV2::Task, "job"),
                    ],
                },
                created_unix_ms: 0,
                stopping: false,
                commands,
                stats: Vec::new(),
            }],
            listener_fd: None,
        }
    }

    fn ready_after_migration(state: CommandStateV2) -> bool {
        let payload = postcard::to_allocvec(&snapshot_v2(vec![state])).unwrap();
        decode(&payload).unwrap().workspaces[0].commands[0].ready
    }

    #[test]
    fn test_decode_spec_gets_the_defaults_of_a_card_without_the_new_keys() {
        // Arrange
        let payload = postcard::to_allocvec(&snapshot_v2(Vec::new())).unwrap();

        // Act
        let migrated = decode(&payload).unwrap();

        // Assert: exactly what loading the same card today gives.
        let spec = migrated.workspaces[0].spec.clone().into_card();
        let expected = crate::spec::CommandSpec::new(
            "svc",
            crate::spec::CommandKind::Service,
            vec!["/bin/true".into()],
        );
        let svc = &spec.commands[0];
        assert_eq!(
            (
                &svc.ready,
                svc.ready_timeout_ms,
                svc.watchdog_ms,
                &svc.after,
                &svc.requires,
                &svc.wants,
                &svc.health
            ),
            (
                &expected.ready,
                expected.ready_timeout_ms,
                expected.watchdog_ms,
                &expected.after,
                &expected.requires,
                &expected.wants,
                &expected.health
            )
        );
    }

    #[test]
    fn test_decode_running_service_is_ready() {
        // Arrange
        let state = state_v2("svc", None, true);

        // Act
        let ready = ready_after_migration(state);

        // Assert
        assert!(ready);
    }

    #[test]
    fn test_decode_service_not_running_is_not_ready() {
        // Arrange
        let state = state_v2("svc", Some(SavedExitStatusV2::Code(0)), false);

        // Act
        let ready = ready_after_migration(state);

        // Assert
        assert!(!ready);
    }

    #[test]
    fn test_decode_task_that_exited_zero_is_ready() {
        // Arrange
        let state = state_v2("job", Some(SavedExitStatusV2::Code(0)), false);

        // Act
        let ready = ready_after_migration(state);

        // Assert
        assert!(ready);
    }

    #[test]
    fn test_decode_task_running_or_failed_is_not_ready() {
        // Arrange
        let running = state_v2("job", Some(SavedExitStatusV2::Code(0)), true);
        let failed = state_v2("job", Some(SavedExitStatusV2::Code(1)), false);
        let adhoc = state_v2("not-in-spec", None, true);

        // Act
        let ready = [running, failed, adhoc].map(ready_after_migration);

        // Assert
        assert_eq!(ready, [false, false, false]);
    }

    #[test]
    fn test_decode_new_command_state_fields_are_empty() {
        // Arrange
        let payload =
            postcard::to_allocvec(&snapshot_v2(vec![state_v2("svc", None, true)])).unwrap();

        // Act
        let command = decode(&payload).unwrap().workspaces[0].commands.remove(0);

        // Assert
        assert_eq!((command.status, command.notify_fd), (None, None));
        assert_eq!(command.live.and_then(|l| l.stdout_fd), Some(7));
    }
}
