//! Property tests: any state survives encode → decode unchanged, the parts encoder
//! writes the same bytes as `encode` for it, and the saved types convert to and from the
//! card, event and protocol types without loss.
//!
//! The generators produce the card's own types and convert them to their saved forms, so
//! the conversions are exercised by every case.

mod snapshot_support;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use shuma_card::protocol::StatsSample;
use shuma_card::snapshot::{
    decode, encode, CommandState, LiveProcess, SavedExitStatus, SavedStatsSample,
    SavedWorkspaceSpec, Snapshot, WorkspaceState, HEADER_LEN, SNAPSHOT_MAGIC, SNAPSHOT_VERSION,
};
use shuma_card::snapshot::{PipelineState, SavedPipelineSpec};
use shuma_card::spec::{CpuMax, OomAction};
use shuma_card::{
    CommandKind, CommandSpec, DepRef, ExitStatus, HealthCheck, Limits, LogTarget, Probe, Readiness,
    RestartPolicy, WorkspaceSpec,
};
use shuma_card::{DirKind, Edge, KillMode, OutStream, PipelineSpec, Rlimit, ServiceDir};

fn text() -> impl Strategy<Value = String> {
    // Any Unicode, not only valid names: the snapshot must carry whatever the spec holds.
    ".{0,12}"
}

fn log_target() -> impl Strategy<Value = LogTarget> {
    prop_oneof![
        Just(LogTarget::Ring),
        Just(LogTarget::Console),
        text().prop_map(LogTarget::File)
    ]
}

fn exit_status() -> impl Strategy<Value = ExitStatus> {
    prop_oneof![
        any::<i32>().prop_map(ExitStatus::Code),
        any::<i32>().prop_map(ExitStatus::Signal),
        Just(ExitStatus::OomKilled)
    ]
}

fn probe() -> impl Strategy<Value = Probe> {
    prop_oneof![
        vec(text(), 0..3).prop_map(Probe::Exec),
        text().prop_map(Probe::Tcp),
        text().prop_map(Probe::Unix)
    ]
}

fn readiness() -> impl Strategy<Value = Readiness> {
    prop_oneof![
        Just(Readiness::Started),
        Just(Readiness::Notify),
        any::<u32>().prop_map(Readiness::Fd),
        text().prop_map(Readiness::Line),
        probe().prop_map(Readiness::Probe)
    ]
}

fn health_check() -> impl Strategy<Value = HealthCheck> {
    (probe(), any::<u64>(), any::<u64>(), any::<u32>()).prop_map(
        |(probe, interval_ms, timeout_ms, retries)| HealthCheck {
            probe,
            interval_ms,
            timeout_ms,
            retries,
        },
    )
}

fn deps() -> impl Strategy<Value = Vec<DepRef>> {
    vec(
        (option::of(text()), text()).prop_map(|(workspace, name)| DepRef { workspace, name }),
        0..3,
    )
}

fn command_spec() -> impl Strategy<Value = CommandSpec> {
    let identity = (
        text(),
        prop_oneof![Just(CommandKind::Task), Just(CommandKind::Service)],
        vec(text(), 0..4),
        vec((text(), text()), 0..4),
        option::of(text()),
        option::of(text()),
        option::of(text()),
        log_target(),
    );
    let policy = (
        prop_oneof![
            Just(RestartPolicy::Never),
            Just(RestartPolicy::OnFailure),
            Just(RestartPolicy::Always)
        ],
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        any::<i32>(),
        any::<u64>(),
    );
    let readiness = (
        readiness(),
        any::<u64>(),
        option::of(any::<u64>()),
        deps(),
        deps(),
        deps(),
        option::of(health_check()),
    );
    let host = (
        vec(
            (0u8..5, text(), any::<u32>()).prop_map(|(k, path, mode)| ServiceDir {
                kind: DirKind::ALL[k as usize].0,
                path,
                mode,
            }),
            0..3,
        ),
        vec(
            (text(), option::of(any::<u64>()), option::of(any::<u64>())).prop_map(
                |(resource, soft, hard)| Rlimit {
                    resource,
                    soft,
                    hard,
                },
            ),
            0..3,
        ),
        prop_oneof![Just(KillMode::ControlGroup), Just(KillMode::Process)],
    );
    (identity, policy, readiness, host).prop_map(
        |((name, kind, argv, env, cwd, user, group, log), policy, readiness, host)| {
            let (directories, rlimits, kill_mode) = host;
            let (
                restart,
                backoff_initial_ms,
                backoff_max_ms,
                max_restarts,
                restart_window_ms,
                min_uptime_ms,
                stop_signal,
                stop_grace_ms,
            ) = policy;
            let (ready, ready_timeout_ms, watchdog_ms, after, requires, wants, health) = readiness;
            CommandSpec {
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
                ready,
                ready_timeout_ms,
                watchdog_ms,
                after,
                requires,
                wants,
                health,
                directories,
                rlimits,
                kill_mode,
            }
        },
    )
}

fn limits() -> impl Strategy<Value = Limits> {
    (
        option::of(any::<u64>()),
        option::of(any::<u64>()),
        option::of(any::<u64>()),
        option::of(any::<u64>()),
        option::of(
            (any::<u64>(), any::<u64>()).prop_map(|(quota_us, period_us)| CpuMax {
                quota_us,
                period_us,
            }),
        ),
        option::of(any::<u16>()),
        option::of(any::<u16>()),
    )
        .prop_map(
            |(
                memory_max,
                memory_high,
                memory_swap_max,
                pids_max,
                cpu_max,
                cpu_weight,
                io_weight,
            )| Limits {
                memory_max,
                memory_high,
                memory_swap_max,
                pids_max,
                cpu_max,
                cpu_weight,
                io_weight,
            },
        )
}

fn live_process() -> impl Strategy<Value = LiveProcess> {
    (
        any::<i32>(),
        any::<u64>(),
        any::<u64>(),
        option::of(any::<i32>()),
        option::of(any::<i32>()),
    )
        .prop_map(
            |(pid, start_time_ticks, started_unix_ms, stdout_fd, stderr_fd)| LiveProcess {
                pid,
                start_time_ticks,
                started_unix_ms,
                stdout_fd,
                stderr_fd,
            },
        )
}

fn command_state() -> impl Strategy<Value = CommandState> {
    (
        any::<u64>(),
        text(),
        any::<u32>(),
        vec(any::<u64>(), 0..4),
        option::of(exit_status()),
        any::<bool>(),
        option::of(text()),
        option::of(live_process()),
        (any::<bool>(), option::of(text()), option::of(any::<i32>())),
    )
        .prop_map(
            |(
                id,
                name,
                restarts,
                recent_restarts_unix_ms,
                last_exit,
                done,
                failed,
                live,
                (ready, status, notify_fd),
            )| CommandState {
                id,
                name,
                restarts,
                recent_restarts_unix_ms,
                last_exit: last_exit.map(SavedExitStatus::from),
                done,
                failed,
                live,
                ready,
                status,
                notify_fd,
            },
        )
}

fn stats_sample() -> impl Strategy<Value = StatsSample> {
    (
        any::<u64>(),
        option::of(any::<u64>()),
        option::of(any::<u64>()),
        option::of(any::<u64>()),
        option::of(any::<u64>()),
        option::of(any::<u32>()),
    )
        .prop_map(
            |(
                unix_ms,
                memory_current,
                memory_peak,
                pids_current,
                cpu_usage_us,
                cpu_percent_x100,
            )| StatsSample {
                unix_ms,
                memory_current,
                memory_peak,
                pids_current,
                cpu_usage_us,
                cpu_percent_x100,
            },
        )
}

fn workspace_spec() -> impl Strategy<Value = WorkspaceSpec> {
    (
        text(),
        limits(),
        option::of(any::<u64>()),
        prop_oneof![Just(OomAction::Restart), Just(OomAction::StopWorkspace)],
        vec(command_spec(), 0..3),
        vec(pipeline_spec(), 0..2),
    )
        .prop_map(
            |(name, limits, ttl_ms, on_oom, commands, pipelines)| WorkspaceSpec {
                name,
                limits,
                ttl_ms,
                on_oom,
                commands,
                pipelines,
            },
        )
}

fn pipeline_spec() -> impl Strategy<Value = PipelineSpec> {
    (
        text(),
        vec(command_spec(), 0..3),
        vec((text(), any::<bool>(), text()), 0..3),
        (
            0u8..3,
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            any::<u64>(),
        ),
    )
        .prop_map(
            |(name, nodes, edges, (restart, bi, bm, rmax, fan))| PipelineSpec {
                name,
                nodes,
                edges: edges
                    .into_iter()
                    .map(|(from, err, to)| Edge {
                        from,
                        stream: if err {
                            OutStream::Stderr
                        } else {
                            OutStream::Stdout
                        },
                        to,
                    })
                    .collect(),
                restart: [
                    RestartPolicy::Never,
                    RestartPolicy::OnFailure,
                    RestartPolicy::Always,
                ][restart as usize],
                backoff_initial_ms: bi,
                backoff_max_ms: bm,
                restart_max: rmax,
                fanout_buffer: fan,
            },
        )
}

fn pipeline_state() -> impl Strategy<Value = PipelineState> {
    (
        text(),
        any::<u32>(),
        any::<bool>(),
        option::of(text()),
        option::of(any::<u64>()),
    )
        .prop_map(
            |(name, restarts, done, failed, backoff_until_unix_ms)| PipelineState {
                name,
                restarts,
                done,
                failed,
                backoff_until_unix_ms,
            },
        )
}

fn workspace_state() -> impl Strategy<Value = WorkspaceState> {
    (
        any::<u64>(),
        workspace_spec(),
        any::<u64>(),
        any::<bool>(),
        vec(command_state(), 0..3),
        vec(stats_sample(), 0..3),
        vec(pipeline_state(), 0..2),
    )
        .prop_map(
            |(id, spec, created_unix_ms, stopping, commands, stats, pipelines)| WorkspaceState {
                id,
                spec: SavedWorkspaceSpec::from(&spec),
                created_unix_ms,
                stopping,
                commands,
                stats: stats.iter().map(SavedStatsSample::from).collect(),
                pipelines,
            },
        )
}

fn snapshot() -> impl Strategy<Value = Snapshot> {
    (
        any::<u64>(),
        text(),
        any::<i32>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        vec(workspace_state(), 0..4),
        option::of(any::<i32>()),
        vec(pipeline_spec(), 0..2),
    )
        .prop_map(
            |(
                written_unix_ms,
                boot_id,
                arje_pid,
                next_event_id,
                next_command_id,
                next_workspace_id,
                workspaces,
                listener_fd,
                saved,
            )| Snapshot {
                written_unix_ms,
                boot_id,
                arje_pid,
                next_event_id,
                next_command_id,
                next_workspace_id,
                workspaces,
                listener_fd,
                saved_pipelines: saved.iter().map(SavedPipelineSpec::from).collect(),
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn test_snapshot_any_state_round_trips_unchanged(state in snapshot()) {
        // Arrange: the generated state.

        // Act
        let decoded = decode(&encode(&state));

        // Assert
        prop_assert_eq!(decoded, Ok(state));
    }

    #[test]
    fn test_encode_parts_any_state_equals_encode(state in snapshot()) {
        // Arrange: the generated state.

        // Act
        let from_parts = snapshot_support::encode_via_parts(&state);

        // Assert
        prop_assert_eq!(from_parts, encode(&state));
    }

    #[test]
    fn test_saved_workspace_spec_any_spec_converts_back_unchanged(spec in workspace_spec()) {
        // Arrange: the generated spec.

        // Act
        let back = SavedWorkspaceSpec::from(&spec).into_card();

        // Assert
        prop_assert_eq!(back, spec);
    }

    #[test]
    fn test_saved_exit_status_any_status_converts_back_unchanged(status in exit_status()) {
        // Arrange: the generated status.

        // Act
        let back = SavedExitStatus::from(status).into_event();

        // Assert
        prop_assert_eq!(back, status);
    }

    #[test]
    fn test_saved_stats_sample_any_sample_converts_back_unchanged(sample in stats_sample()) {
        // Arrange: the generated sample.

        // Act
        let back = SavedStatsSample::from(&sample).into_protocol();

        // Assert
        prop_assert_eq!(back, sample);
    }

    #[test]
    fn test_decode_arbitrary_payload_with_valid_header_never_panics(
        version in 1..=SNAPSHOT_VERSION,
        payload in vec(any::<u8>(), 0..256),
    ) {
        // Arrange: random bytes behind a header that passes every check, checksum
        // included, so each version's schema decoder and migration see them.
        let bytes = with_header(version, &payload);

        // Act
        let result = decode(&bytes);

        // Assert: a value or a decode error, never a panic nor a header error.
        prop_assert!(
            matches!(result, Ok(_) | Err(shuma_card::snapshot::SnapshotError::Decode(_))),
            "{:?}",
            result
        );
    }

    #[test]
    fn test_decode_arbitrary_bytes_never_panics(bytes in vec(any::<u8>(), 0..256)) {
        // Arrange: random bytes, and the same bytes behind a valid magic and version so
        // the decoder gets past the first checks.
        let mut framed = b"ARJESNAP".to_vec();
        framed.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        framed.extend_from_slice(&bytes);

        // Act
        let plain = decode(&bytes);
        let behind_header = decode(&framed);

        // Assert: an error, not a panic; random bytes behind a header almost never carry
        // a matching length and CRC, and when they do the result must still be a value.
        prop_assert!(plain.is_err() || bytes.len() >= 20);
        prop_assert!(behind_header.is_err() || framed.len() >= 20);
    }
}

/// A snapshot file of `version` around `payload`, with a header that matches it.
fn with_header(version: u32, payload: &[u8]) -> Vec<u8> {
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(payload);
    let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
    bytes.extend_from_slice(&SNAPSHOT_MAGIC);
    bytes.extend_from_slice(&version.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes.extend_from_slice(payload);
    bytes
}
