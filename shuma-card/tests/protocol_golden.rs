//! Golden frames: the protocol's version rule, held by the bytes.
//!
//! - `Hello` and the `Version` error are frozen across every version: an old client's
//!   Hello must still decode, so it gets a clear "version N is not supported" instead of
//!   a garbled decode. Their bytes are written out here and never change.
//! - Everything else belongs to one version: the frames of `PROTOCOL_VERSION` are pinned
//!   in `tests/golden/protocol-v<N>-*.bin`. Changing a wire type (a card type included,
//!   since `WsCreate` and `Run` carry them) fails this test; the fix is to bump
//!   `PROTOCOL_VERSION` and write the new version's files, never to regenerate the files
//!   of a version that shipped:
//!
//! ```text
//! ARJE_REGENERATE_GOLDEN=1 cargo test -p shuma-card --test protocol_golden
//! ```

use std::path::PathBuf;

use shuma_card::protocol::{
    decode_payload, encode_frame, CmdAction, CmdState, CommandInfo, ErrorCode, Health, Mode,
    PipeState, PipelineInfo, Request, Response, StatusInfo, PROTOCOL_VERSION,
};
use shuma_card::{
    CommandKind, CommandSpec, DepRef, Event, EventKind, ExitStatus, HealthCheck, LogTarget, Probe,
    Readiness, RestartPolicy, WorkspaceSpec,
};
use shuma_card::{DirKind, Edge, KillMode, PipelineSpec, Rlimit, ServiceDir};

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/golden")
        .join(format!("protocol-v{PROTOCOL_VERSION}-{name}.bin"))
}

/// A card whose first service (`run` sends it alone) sets every card field, and whose
/// others use the remaining forms of `ready` and of the health probe (from version 4).
fn card() -> WorkspaceSpec {
    let mut svc = CommandSpec::new("web", CommandKind::Service, vec!["/bin/httpd".into()]);
    svc.env = vec![("PORT".into(), "80".into())];
    svc.cwd = Some("/srv".into());
    svc.user = Some("www".into());
    svc.group = Some("www".into());
    svc.log = LogTarget::File("/var/log/web".into());
    svc.restart = RestartPolicy::Always;
    svc.ready = Readiness::Notify;
    svc.ready_timeout_ms = 30_000;
    svc.watchdog_ms = Some(10_000);
    svc.after = vec![dep("db")];
    svc.requires = vec![dep("db"), dep("net/up")];
    svc.wants = vec![dep("cache")];
    svc.health = Some(HealthCheck {
        probe: Probe::Exec(vec!["/bin/check".into(), "-q".into()]),
        interval_ms: 10_000,
        timeout_ms: 2_000,
        retries: 3,
    });
    // From version 6: a host daemon's directories, limits and kill mode.
    svc.directories = vec![ServiceDir {
        kind: DirKind::Runtime,
        path: "httpd".into(),
        mode: 0o750,
    }];
    svc.rlimits = vec![Rlimit {
        resource: "nofile".into(),
        soft: Some(1024),
        hard: None,
    }];
    svc.kill_mode = KillMode::Process;
    let mut db = CommandSpec::new("db", CommandKind::Service, vec!["/bin/db".into()]);
    db.ready = Readiness::Probe(Probe::Tcp("127.0.0.1:5432".into()));
    db.health = Some(HealthCheck {
        probe: Probe::Unix("/run/db.sock".into()),
        interval_ms: 30_000,
        timeout_ms: 5_000,
        retries: 1,
    });
    let mut cache = CommandSpec::new("cache", CommandKind::Service, vec!["/bin/cache".into()]);
    cache.ready = Readiness::Fd(3);
    cache.health = Some(HealthCheck {
        probe: Probe::Tcp("[::1]:6379".into()),
        interval_ms: 5_000,
        timeout_ms: 1_000,
        retries: 2,
    });
    let mut log = CommandSpec::new("log", CommandKind::Service, vec!["/bin/log".into()]);
    log.ready = Readiness::Line("listening".into());
    let mut sock = CommandSpec::new("sock", CommandKind::Service, vec!["/bin/sock".into()]);
    sock.ready = Readiness::Probe(Probe::Unix("/run/sock".into()));
    let mut pg = CommandSpec::new("pg", CommandKind::Service, vec!["/bin/pg".into()]);
    pg.ready = Readiness::Probe(Probe::Exec(vec!["/bin/pg_isready".into()]));
    let mut spec = WorkspaceSpec {
        name: "site".into(),
        ttl_ms: Some(60_000),
        ..Default::default()
    };
    spec.limits.memory_max = Some(64 << 20);
    spec.limits.pids_max = Some(32);
    spec.commands = vec![svc, db, cache, log, sock, pg];
    spec.pipelines = vec![pipeline()];
    spec
}

fn dep(text: &str) -> DepRef {
    DepRef::parse(text).unwrap()
}

fn event(id: u64, kind: EventKind) -> Event {
    Event {
        id,
        mono_us: 1_000_000 * id,
        unix_ms: 1_700_000_000_000 + id,
        kind,
    }
}

/// A `ps` line with every field added in version 4 set.
fn command_info(name: &str, health: Option<Health>) -> CommandInfo {
    CommandInfo {
        id: 7,
        workspace: "site".into(),
        name: name.into(),
        service: true,
        pid: Some(4242),
        state: CmdState::Running,
        restarts: 1,
        last_exit: Some(ExitStatus::Signal(6)),
        reason: None,
        uptime_ms: Some(12_000),
        ready: true,
        status: Some("serving 3 clients".into()),
        health,
        waiting_for: vec!["db".into(), "net/up".into()],
        pipeline: Some("etl".into()),
    }
}

/// A pipeline with fan-out, fan-in and a stderr edge (from version 6).
fn pipeline() -> PipelineSpec {
    let mut p = PipelineSpec::new("etl");
    for n in ["extract", "transform", "load"] {
        p.nodes.push(CommandSpec::new(
            n,
            CommandKind::Task,
            vec![format!("/bin/{n}")],
        ));
    }
    p.edges = [
        "extract -> transform",
        "extract -> load",
        "transform:stderr -> load",
    ]
    .iter()
    .map(|e| Edge::parse(e).unwrap())
    .collect();
    p.restart_max = 5;
    p
}

fn frames() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "wscreate",
            encode_frame(&Request::WsCreate { spec: card() }),
        ),
        (
            "run",
            encode_frame(&Request::Run {
                workspace: "site".into(),
                command: card().commands.remove(0),
                wait: true,
            }),
        ),
        // Pinned from version 3 on: `state_not_saved` was added to it.
        (
            "status",
            encode_frame(&Response::Status(StatusInfo {
                version: "0.1.0".into(),
                pid: 1,
                mode: Mode::Pid1,
                uptime_ms: 60_000,
                workspaces: 2,
                commands: 3,
                running: 1,
                connections: 1,
                last_event_id: 42,
                orphans_reaped: 7,
                state_not_saved: Some("cannot write snapshot temp file".into()),
            })),
        ),
        // Pinned from version 4 on: readiness, dependencies and health.
        (
            "waitready",
            encode_frame(&Request::WaitReady {
                workspace: "site".into(),
                command: Some("web".into()),
                timeout_ms: Some(30_000),
            }),
        ),
        (
            "notready",
            encode_frame(&Response::Error {
                code: ErrorCode::NotReady,
                message: "site/web exited before it was ready: exit 1; stderr: bind: in use".into(),
            }),
        ),
        (
            "commands",
            encode_frame(&Response::Commands(vec![
                command_info(
                    "web",
                    Some(Health::Failing {
                        failures: 2,
                        last: "exit 1".into(),
                    }),
                ),
                command_info("db", Some(Health::Healthy)),
                command_info("cache", Some(Health::Starting)),
                command_info("log", None),
            ])),
        ),
        (
            "events",
            encode_frame(&Response::Events(vec![
                event(
                    1,
                    EventKind::CommandReady {
                        workspace: "site".into(),
                        command: "db".into(),
                        after_ms: 850,
                    },
                ),
                event(
                    2,
                    EventKind::CommandNotReady {
                        workspace: "site".into(),
                        command: "web".into(),
                        reason: "not ready within 30s; stderr: waiting for db".into(),
                    },
                ),
                event(
                    3,
                    EventKind::CommandUnhealthy {
                        workspace: "site".into(),
                        command: "web".into(),
                        reason: "3 health checks in a row failed: exit 1".into(),
                    },
                ),
            ])),
        ),
        // Pinned from version 5 on: a message from /dev/log in the journal.
        (
            "syslog",
            encode_frame(&Response::Events(vec![event(
                1,
                EventKind::Syslog {
                    facility: 9,
                    severity: 6,
                    program: "CRON".into(),
                    pid: Some(4242),
                    message: "(root) CMD (run-parts /etc/cron.hourly)".into(),
                },
            )])),
        ),
        // Pinned from version 5 on: one command at a time (two frames: an action without
        // and one with a field).
        (
            "control",
            [CmdAction::Start, CmdAction::Kill { signal: 10 }]
                .into_iter()
                .flat_map(|action| {
                    encode_frame(&Request::Control {
                        workspace: "site".into(),
                        command: "web".into(),
                        action,
                    })
                })
                .collect(),
        ),
        // Pinned from version 6 on: pipelines.
        (
            "pipelines",
            [
                encode_frame(&Request::PipelineSave { spec: pipeline() }),
                encode_frame(&Request::PipelineRun {
                    workspace: "site".into(),
                    name: "etl".into(),
                }),
                encode_frame(&Request::PipelinePs { workspace: None }),
                encode_frame(&Response::Pipelines(vec![PipelineInfo {
                    workspace: Some("site".into()),
                    name: "etl".into(),
                    state: PipeState::Failed,
                    restarts: 5,
                    nodes: vec!["extract".into(), "transform".into(), "load".into()],
                    edges: vec!["extract -> transform".into()],
                    reason: Some("transform: exit 1; stderr: bad row".into()),
                    dropped: 4096,
                }])),
                encode_frame(&Response::Events(vec![
                    event(
                        1,
                        EventKind::PipelineRestarting {
                            workspace: "site".into(),
                            pipeline: "etl".into(),
                            node: "transform".into(),
                            delay_ms: 200,
                            restarts: 2,
                        },
                    ),
                    event(
                        2,
                        EventKind::PipelineDropped {
                            workspace: "site".into(),
                            pipeline: "etl".into(),
                            edge: "extract -> load".into(),
                            bytes: 4096,
                        },
                    ),
                ])),
            ]
            .concat(),
        ),
    ]
}

#[test]
fn test_hello_of_every_version_keeps_its_bytes() {
    // Variant 0, the version as a varint, the client's name as a length and bytes.
    for version in [1u32, 2, 3, 4, PROTOCOL_VERSION] {
        let frame = encode_frame(&Request::Hello {
            version,
            client: "x".into(),
        });
        assert_eq!(frame, [0, 0, 0, 4, 0, version as u8, 1, b'x'], "v{version}");
        assert_eq!(
            decode_payload::<Request>(&frame[4..]).unwrap(),
            Request::Hello {
                version,
                client: "x".into()
            }
        );
    }
}

#[test]
fn test_version_error_keeps_its_bytes() {
    let frame = encode_frame(&Response::Error {
        code: ErrorCode::Version,
        message: "m".into(),
    });
    // Response variant 3 (Error), ErrorCode variant 0 (Version), then the message.
    assert_eq!(frame, [0, 0, 0, 4, 3, 0, 1, b'm']);
}

#[test]
fn test_frames_of_this_version_match_the_golden_files() {
    let regenerate = std::env::var_os("ARJE_REGENERATE_GOLDEN").is_some();
    for (name, bytes) in frames() {
        let path = golden(name);
        if regenerate {
            std::fs::write(&path, &bytes).unwrap();
            continue;
        }
        let want = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}: a new PROTOCOL_VERSION needs its golden frames (ARJE_REGENERATE_GOLDEN=1)",
                path.display()
            )
        });
        assert_eq!(
            bytes,
            want,
            "the {name} frame changed under protocol version {PROTOCOL_VERSION}: bump PROTOCOL_VERSION (shuma-card/src/protocol.rs) and write the new version's golden frames"
        );
    }
}
