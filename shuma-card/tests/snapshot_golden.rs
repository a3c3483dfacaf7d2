//! Golden snapshot files: every format version that ever shipped must keep decoding to
//! the state it was written from.
//!
//! The files live in `tests/golden/` at the top of the repository. They are written only
//! when `ARJE_REGENERATE_GOLDEN=1` is set:
//!
//! ```text
//! ARJE_REGENERATE_GOLDEN=1 cargo test -p shuma-card --test snapshot_golden
//! ```
//!
//! Regeneration writes only the current version's files (`SNAPSHOT_VERSION`), never an
//! older version's: those are history, and a failing decode of one means a change broke
//! old files. Regenerate the current version's files only while that version has not
//! shipped; after that, a failing current file means a new format version is due
//! (docs/STATE.md).
//!
//! The expected states are written in the current schema: an older version's file must
//! decode, through its migration, to the state given here.

mod snapshot_support;

use std::path::PathBuf;

use shuma_card::protocol::StatsSample;
use shuma_card::snapshot::{
    decode, encode, CommandState, LiveProcess, SavedExitStatus, SavedStatsSample,
    SavedWorkspaceSpec, Snapshot, WorkspaceState, SNAPSHOT_VERSION,
};
use shuma_card::snapshot::{PipelineState, SavedPipelineSpec};
use shuma_card::spec::{CpuMax, OomAction};
use shuma_card::{
    CommandKind, CommandSpec, DepRef, ExitStatus, HealthCheck, Limits, LogTarget, Probe, Readiness,
    RestartPolicy, WorkspaceSpec,
};
use shuma_card::{DirKind, Edge, KillMode, PipelineSpec, Rlimit, ServiceDir};

const REGENERATE_ENV: &str = "ARJE_REGENERATE_GOLDEN";

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/golden")
}

/// The state of the v1 and v2 "full" files, which set every field those versions had and
/// used every enum variant, as their migrations define it in the current schema: the
/// fields added since hold what the migrations fill in. `ids` are its two workspaces' ids
/// and `next_workspace_id` the counter: what the v1 and v2 files differ in.
fn full(ids: [u64; 2], next_workspace_id: u64) -> Snapshot {
    let mut web = CommandSpec::new(
        "web",
        CommandKind::Service,
        vec!["/usr/bin/httpd".into(), "-f".into()],
    );
    web.env = vec![
        ("PORT".into(), "8080".into()),
        ("MODE".into(), "prod".into()),
    ];
    web.cwd = Some("/srv/www".into());
    web.user = Some("www".into());
    web.group = Some("www-data".into());
    web.log = LogTarget::File("/var/log/web.log".into());
    web.restart = RestartPolicy::Always;
    web.backoff_initial_ms = 250;
    web.backoff_max_ms = 60_000;
    web.max_restarts = 5;
    web.restart_window_ms = 120_000;
    web.min_uptime_ms = 2_000;
    web.stop_signal = 2;
    web.stop_grace_ms = 10_000;

    let mut migrate = CommandSpec::new(
        "migrate",
        CommandKind::Task,
        vec!["/usr/bin/migrate".into()],
    );
    migrate.log = LogTarget::Console;

    let mut worker = CommandSpec::new("worker", CommandKind::Service, vec!["/bin/worker".into()]);
    worker.restart = RestartPolicy::OnFailure;
    let mut idle = CommandSpec::new("idle", CommandKind::Service, vec!["/bin/idle".into()]);
    idle.restart = RestartPolicy::Never;

    let shop = WorkspaceState {
        id: ids[0],
        spec: SavedWorkspaceSpec::from(&WorkspaceSpec {
            name: "shop".into(),
            limits: Limits {
                memory_max: Some(256 << 20),
                memory_high: Some(200 << 20),
                memory_swap_max: Some(0),
                pids_max: Some(64),
                cpu_max: Some(CpuMax {
                    quota_us: 50_000,
                    period_us: 100_000,
                }),
                cpu_weight: Some(200),
                io_weight: Some(50),
            },
            ttl_ms: Some(3_600_000),
            on_oom: OomAction::StopWorkspace,
            commands: vec![web, migrate],
            pipelines: vec![],
        }),
        created_unix_ms: 1_700_000_000_000,
        stopping: false,
        commands: vec![
            CommandState {
                id: 41,
                name: "web".into(),
                restarts: 3,
                recent_restarts_unix_ms: vec![1_700_000_100_000, 1_700_000_200_000],
                last_exit: Some(SavedExitStatus::from(ExitStatus::Signal(9))),
                done: false,
                failed: None,
                live: Some(LiveProcess {
                    pid: 4242,
                    start_time_ticks: 123_456,
                    started_unix_ms: 1_700_000_200_500,
                    stdout_fd: Some(17),
                    stderr_fd: Some(18),
                }),
                // A running service: ready, as every started service was before v3.
                ready: true,
                status: None,
                notify_fd: None,
            },
            CommandState {
                id: 42,
                name: "migrate".into(),
                restarts: 0,
                recent_restarts_unix_ms: vec![],
                last_exit: Some(SavedExitStatus::from(ExitStatus::Code(0))),
                done: true,
                failed: None,
                live: None,
                // A task that exited 0.
                ready: true,
                status: None,
                notify_fd: None,
            },
        ],
        stats: [
            StatsSample {
                unix_ms: 1_700_000_300_000,
                memory_current: Some(100 << 20),
                memory_peak: Some(150 << 20),
                pids_current: Some(7),
                cpu_usage_us: Some(9_000_000),
                cpu_percent_x100: Some(1234),
            },
            StatsSample {
                unix_ms: 1_700_000_301_000,
                ..StatsSample::default()
            },
        ]
        .iter()
        .map(SavedStatsSample::from)
        .collect(),
        pipelines: vec![],
    };
    let batch = WorkspaceState {
        id: ids[1],
        spec: SavedWorkspaceSpec::from(&WorkspaceSpec {
            name: "batch".into(),
            limits: Limits::default(),
            ttl_ms: None,
            on_oom: OomAction::Restart,
            commands: vec![worker, idle],
            pipelines: vec![],
        }),
        created_unix_ms: 1_700_000_050_000,
        stopping: true,
        commands: vec![
            CommandState {
                id: 43,
                name: "worker".into(),
                restarts: 10,
                recent_restarts_unix_ms: vec![1, 2, 3],
                last_exit: Some(SavedExitStatus::from(ExitStatus::OomKilled)),
                done: false,
                failed: Some("restart limit: 10 restarts in 60 s".into()),
                live: None,
                ready: false,
                status: None,
                notify_fd: None,
            },
            CommandState {
                id: 44,
                name: "idle".into(),
                restarts: 0,
                recent_restarts_unix_ms: vec![],
                last_exit: None,
                done: false,
                failed: None,
                live: Some(LiveProcess {
                    pid: 77,
                    start_time_ticks: 99,
                    started_unix_ms: 1_700_000_060_000,
                    stdout_fd: None,
                    stderr_fd: None,
                }),
                ready: true,
                status: None,
                notify_fd: None,
            },
        ],
        stats: vec![],
        pipelines: vec![],
    };
    Snapshot {
        written_unix_ms: 1_700_000_400_000,
        boot_id: "59a17b52-3e5c-4c4b-9332-f98cfbe4e6db".into(),
        arje_pid: 1,
        next_event_id: 1_000,
        next_command_id: 45,
        next_workspace_id,
        workspaces: vec![shop, batch],
        listener_fd: Some(3),
        saved_pipelines: vec![],
    }
}

fn dep(text: &str) -> DepRef {
    DepRef::parse(text).unwrap()
}

fn service(name: &str, ready: Readiness) -> CommandSpec {
    let mut c = CommandSpec::new(name, CommandKind::Service, vec![format!("/bin/{name}")]);
    c.ready = ready;
    c
}

fn running(id: u64, name: &str, pid: i32, ready: bool) -> CommandState {
    CommandState {
        id,
        name: name.into(),
        restarts: 0,
        recent_restarts_unix_ms: vec![],
        last_exit: None,
        done: false,
        failed: None,
        live: Some(LiveProcess {
            pid,
            start_time_ticks: 1_000 + id,
            started_unix_ms: 1_700_000_070_000,
            stdout_fd: None,
            stderr_fd: None,
        }),
        ready,
        status: None,
        notify_fd: None,
    }
}

/// The v3 "full" state: the v2 one with every field added in v3 set and every new enum
/// variant used (each readiness and each probe, in `ready` and in `health`), and three
/// more services in `batch` to hold the probe forms of `ready`.
fn full_v3() -> Snapshot {
    let mut s = full([7, 1_000], 1_001);

    let mut shop = s.workspaces[0].spec.clone().into_card();
    let web = &mut shop.commands[0];
    web.ready = Readiness::Notify;
    web.ready_timeout_ms = 0;
    web.watchdog_ms = Some(10_000);
    web.after = vec![dep("migrate")];
    web.requires = vec![dep("migrate"), dep("batch/worker")];
    web.wants = vec![dep("other/metrics")];
    web.health = Some(HealthCheck {
        probe: Probe::Tcp("127.0.0.1:8080".into()),
        interval_ms: 15_000,
        timeout_ms: 2_000,
        retries: 4,
    });
    shop.commands[1].after = vec![dep("batch/idle")];
    s.workspaces[0].spec = SavedWorkspaceSpec::from(&shop);
    s.workspaces[0].commands[0].status = Some("serving 12 clients".into());
    s.workspaces[0].commands[0].notify_fd = Some(19);

    let mut batch = s.workspaces[1].spec.clone().into_card();
    batch.commands[0].ready = Readiness::Line("worker up".into());
    batch.commands[0].health = Some(HealthCheck {
        probe: Probe::Exec(vec!["/bin/check".into(), "--quick".into()]),
        interval_ms: 30_000,
        timeout_ms: 5_000,
        retries: 3,
    });
    batch.commands[1].ready = Readiness::Fd(4);
    batch.commands[1].ready_timeout_ms = 120_000;
    batch.commands[1].health = Some(HealthCheck {
        probe: Probe::Unix("/run/idle.sock".into()),
        interval_ms: 1_000,
        timeout_ms: 500,
        retries: 1,
    });
    batch.commands.extend([
        service("pg", Readiness::Probe(Probe::Tcp("[::1]:5432".into()))),
        service(
            "sock",
            Readiness::Probe(Probe::Unix("/run/sock.sock".into())),
        ),
        service(
            "check",
            Readiness::Probe(Probe::Exec(vec!["/usr/bin/pg_isready".into(), "-q".into()])),
        ),
    ]);
    s.workspaces[1].spec = SavedWorkspaceSpec::from(&batch);
    // `idle` runs but its fd 4 has not said ready yet.
    s.workspaces[1].commands[1].ready = false;
    s.workspaces[1].commands.extend([
        running(45, "pg", 80, true),
        running(46, "sock", 81, false),
        running(47, "check", 82, true),
    ]);
    s.next_command_id = 48;
    s
}

/// The v4 "full" state: the v3 one with a pipeline of every shape (a chain, fan-out,
/// fan-in, a stderr edge) in `batch`, its two nodes' states and its restart record, and
/// a saved pipeline.
fn full_v4() -> Snapshot {
    let mut s = full_v3();
    let mut etl = PipelineSpec::new("etl");
    for n in ["extract", "transform", "load"] {
        etl.nodes.push(CommandSpec::new(
            n,
            CommandKind::Task,
            vec![format!("/bin/{n}")],
        ));
    }
    etl.edges = [
        "extract -> transform",
        "extract -> load",
        "transform -> load",
        "transform:stderr -> load",
    ]
    .iter()
    .map(|e| Edge::parse(e).unwrap())
    .collect();
    etl.restart = RestartPolicy::Always;
    etl.restart_max = 0;
    etl.backoff_initial_ms = 50;
    etl.fanout_buffer = 4096;
    let mut batch = s.workspaces[1].spec.clone().into_card();
    batch.pipelines = vec![etl.clone()];
    let worker = &mut batch.commands[0];
    worker.directories = vec![
        ServiceDir {
            kind: DirKind::Runtime,
            path: "worker".into(),
            mode: 0o755,
        },
        ServiceDir {
            kind: DirKind::State,
            path: "worker/db".into(),
            mode: 0o700,
        },
    ];
    worker.rlimits = vec![Rlimit {
        resource: "nofile".into(),
        soft: Some(4096),
        hard: Some(65536),
    }];
    worker.kill_mode = KillMode::Process;
    s.workspaces[1].spec = SavedWorkspaceSpec::from(&batch);
    s.workspaces[1].commands.extend([
        running(48, "etl.extract", 83, true),
        running(49, "etl.transform", 84, true),
    ]);
    s.workspaces[1].pipelines = vec![PipelineState {
        name: "etl".into(),
        restarts: 3,
        done: false,
        failed: Some("transform: exit 2".into()),
        backoff_until_unix_ms: Some(1_700_000_090_000),
    }];
    let mut saved = etl;
    saved.name = "nightly".into();
    saved.restart = RestartPolicy::Never;
    s.saved_pipelines = vec![SavedPipelineSpec::from(&saved)];
    s.next_command_id = 50;
    s
}

/// One golden file: `snapshot-v<version>-<kind>.bin` and the state it must decode to.
struct Golden {
    version: u32,
    kind: &'static str,
    state: Snapshot,
}

impl Golden {
    fn name(&self) -> String {
        format!("snapshot-v{}-{}.bin", self.version, self.kind)
    }
}

/// Every golden file of every version, with the state it must decode to in the current
/// schema. A new version adds its files here; old entries are never removed, only their
/// states rewritten into the new schema as its migration defines.
fn goldens() -> Vec<Golden> {
    vec![
        // v1 had no workspace ids: the migration numbers workspaces 1..=n in order and
        // starts the counter after them.
        Golden {
            version: 1,
            kind: "empty",
            state: Snapshot {
                next_workspace_id: 1,
                ..Snapshot::default()
            },
        },
        Golden {
            version: 1,
            kind: "full",
            state: full([1, 2], 3),
        },
        Golden {
            version: 2,
            kind: "empty",
            state: Snapshot::default(),
        },
        // Ids with a gap (workspaces were removed) and one above 127, a two-byte varint.
        Golden {
            version: 2,
            kind: "full",
            state: full([5, 300], 301),
        },
        Golden {
            version: 3,
            kind: "empty",
            state: Snapshot::default(),
        },
        Golden {
            version: 3,
            kind: "full",
            state: full_v3(),
        },
        Golden {
            version: 4,
            kind: "empty",
            state: Snapshot::default(),
        },
        Golden {
            version: 4,
            kind: "full",
            state: full_v4(),
        },
    ]
}

/// The golden files of the current version, the only ones an encoder is checked against.
fn current_goldens() -> impl Iterator<Item = Golden> {
    goldens()
        .into_iter()
        .filter(|g| g.version == SNAPSHOT_VERSION)
}

/// Writes the current version's files once per test run, before any test reads them.
fn regenerate_if_asked() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(regenerate);
}

fn regenerate() {
    if std::env::var_os(REGENERATE_ENV).is_none() {
        return;
    }
    std::fs::create_dir_all(golden_dir()).unwrap();
    // Files of older versions are history: only the current version's are written, and
    // `encode` can only write the current version anyway.
    for golden in current_goldens() {
        std::fs::write(golden_dir().join(golden.name()), encode(&golden.state)).unwrap();
    }
}

#[test]
fn test_golden_files_every_version_decode_to_expected_state() {
    // Arrange
    regenerate_if_asked();

    for golden in goldens() {
        let name = golden.name();
        let path = golden_dir().join(&name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));

        // Act
        let decoded = decode(&bytes);

        // Assert
        assert_eq!(
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
            golden.version,
            "{name}: header version"
        );
        assert_eq!(
            decoded.as_ref(),
            Ok(&golden.state),
            "{name} no longer decodes to its state"
        );
    }
}

#[test]
fn test_golden_files_every_known_version_has_files() {
    // Arrange
    let versions: Vec<u32> = goldens().iter().map(|g| g.version).collect();

    for version in 1..=SNAPSHOT_VERSION {
        // Act
        let files = versions.iter().filter(|v| **v == version).count();

        // Assert: a version without files would have no test that it stays readable.
        assert!(files > 0, "no golden files for format version {version}");
    }
}

#[test]
fn test_golden_files_current_version_encoding_is_stable() {
    // Arrange
    regenerate_if_asked();

    for golden in current_goldens() {
        let name = golden.name();
        let file = std::fs::read(golden_dir().join(&name)).unwrap();

        // Act
        let encoded = encode(&golden.state);

        // Assert: the same state must still encode to the same bytes, or the format
        // changed without a version bump.
        assert!(
            encoded == file,
            "{name}: encoding changed; bump SNAPSHOT_VERSION"
        );
    }
}

#[test]
fn test_golden_files_current_version_parts_encoding_equals_file() {
    // Arrange
    regenerate_if_asked();

    for golden in current_goldens() {
        let name = golden.name();
        let file = std::fs::read(golden_dir().join(&name)).unwrap();

        // Act
        let encoded = snapshot_support::encode_via_parts(&golden.state);

        // Assert: the runtime's per-turn encoder writes the very bytes of the golden file.
        assert!(
            encoded == file,
            "{name}: encode_parts differs from the golden file"
        );
    }
}

#[test]
fn test_golden_v2_full_migrates_new_fields_to_their_defaults() {
    // Arrange
    let bytes = std::fs::read(golden_dir().join("snapshot-v2-full.bin")).unwrap();

    // Act
    let state = decode(&bytes).unwrap();

    // Assert: every spec behaves as a card without the v3 keys, no command has a status
    // or a notify socket, and only what was up under v2 is ready.
    let defaults = CommandSpec::new("x", CommandKind::Service, vec![]);
    for ws in &state.workspaces {
        for c in ws.spec.clone().into_card().commands {
            assert_eq!(c.ready, Readiness::Started, "{}", c.name);
            assert_eq!(c.ready_timeout_ms, defaults.ready_timeout_ms, "{}", c.name);
            assert_eq!((c.watchdog_ms, &c.health), (None, &None), "{}", c.name);
            assert!(c.after.is_empty() && c.requires.is_empty() && c.wants.is_empty());
        }
    }
    let ready: Vec<(&str, bool, Option<&str>, Option<i32>)> = state
        .workspaces
        .iter()
        .flat_map(|ws| &ws.commands)
        .map(|c| (c.name.as_str(), c.ready, c.status.as_deref(), c.notify_fd))
        .collect();
    assert_eq!(
        ready,
        vec![
            ("web", true, None, None),
            ("migrate", true, None, None),
            ("worker", false, None, None),
            ("idle", true, None, None),
        ]
    );
}
