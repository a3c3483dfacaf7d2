//! Snapshot benchmark: size and encode+write time of the postcard snapshot against the
//! same state as JSON; the runtime's per-turn path (`encode_parts` from cached spec bytes
//! and borrowed state) against building a `Snapshot` and `encode_into`; what the stats
//! history costs; and the durable write against a bare write+fsync+rename.
//!
//! `cargo run --release -p arje-bench --bin snapshot [DURABLE_DIR_PARENT]`
//!
//! The /run copy is written to /dev/shm (tmpfs) if it exists, else /run, else the temp
//! dir. The durable comparison runs in a temp directory under DURABLE_DIR_PARENT (default
//! /var/tmp), which must be on a real disk to mean anything. Figures are medians and
//! 90th percentiles of many repetitions; compare ratios, not absolute times.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arje_runtime::parts::{write_durable, write_run, StateDir};
use shuma_card::protocol::StatsSample;
use shuma_card::snapshot::{
    encode, encode_into, encode_parts, encode_spec, CommandParts, CommandState, LiveProcess,
    SavedExitStatus, SavedStatsSample, SavedWorkspaceSpec, Snapshot, SnapshotHead, WorkspaceParts,
    WorkspaceState,
};
use shuma_card::spec::CpuMax;
use shuma_card::{CommandKind, CommandSpec, Limits, LogTarget, RestartPolicy, WorkspaceSpec};

/// Stats samples kept per workspace: a "short history" (one per 10 s for 80 s).
const STATS_PER_WORKSPACE: u64 = 8;
/// The runtime's own cap (`STATS_HISTORY` in arje-runtime's workspaces.rs: one sample
/// every 2 s for 2 min), for the stats-history table.
const RUNTIME_STATS_HISTORY: u64 = 60;

/// A workspace as a user would declare it: a service and a one-shot task, limits, a few
/// environment variables, restart history, a live service process, recent stats.
fn workspace(i: usize, stats: u64) -> WorkspaceState {
    let mut web = CommandSpec::new(
        "web",
        CommandKind::Service,
        vec![
            "/usr/bin/python3".into(),
            "-m".into(),
            "http.server".into(),
            format!("{}", 8000 + i % 1000),
        ],
    );
    web.env = vec![
        ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
        ("HOME".into(), format!("/home/ws-{i:05}")),
        ("LANG".into(), "C.UTF-8".into()),
        ("APP_MODE".into(), "production".into()),
    ];
    web.cwd = Some(format!("/srv/ws-{i:05}"));
    web.user = Some("app".into());
    web.restart = RestartPolicy::Always;
    let mut setup = CommandSpec::new(
        "setup",
        CommandKind::Task,
        vec!["/bin/sh".into(), "-c".into(), "./migrate.sh".into()],
    );
    setup.env = web.env.clone();
    setup.log = LogTarget::File(format!("/var/log/ws-{i:05}-setup.log"));
    let base_ms = 1_763_000_000_000 + i as u64 * 1_000;
    WorkspaceState {
        id: i as u64 + 1,
        spec: SavedWorkspaceSpec::from(&WorkspaceSpec {
            name: format!("ws-{i:05}"),
            limits: Limits {
                memory_max: Some(512 << 20),
                memory_high: Some(448 << 20),
                memory_swap_max: None,
                pids_max: Some(128),
                cpu_max: Some(CpuMax {
                    quota_us: 50_000,
                    period_us: 100_000,
                }),
                cpu_weight: Some(100),
                io_weight: None,
            },
            ttl_ms: Some(86_400_000),
            commands: vec![web, setup],
            ..WorkspaceSpec::default()
        }),
        created_unix_ms: base_ms,
        stopping: false,
        commands: vec![
            CommandState {
                id: 2 * i as u64,
                name: "web".into(),
                restarts: 2,
                recent_restarts_unix_ms: vec![base_ms + 5_000, base_ms + 9_000],
                last_exit: Some(SavedExitStatus::Signal(9)),
                done: false,
                failed: None,
                live: Some(LiveProcess {
                    pid: 10_000 + i as i32,
                    start_time_ticks: 1_234_567 + i as u64,
                    started_unix_ms: base_ms + 9_100,
                    stdout_fd: Some(100 + 2 * i as i32),
                    stderr_fd: Some(101 + 2 * i as i32),
                }),
                ready: true,
                status: None,
                notify_fd: None,
            },
            CommandState {
                id: 2 * i as u64 + 1,
                name: "setup".into(),
                restarts: 0,
                recent_restarts_unix_ms: vec![],
                last_exit: Some(SavedExitStatus::Code(0)),
                done: true,
                failed: None,
                live: None,
                ready: true,
                status: None,
                notify_fd: None,
            },
        ],
        stats: (0..stats)
            .map(|k| SavedStatsSample {
                unix_ms: base_ms + 60_000 + k * 10_000,
                memory_current: Some((90 << 20) + k * 4096),
                memory_peak: Some(120 << 20),
                pids_current: Some(6),
                cpu_usage_us: Some(3_000_000 + k * 12_345),
                cpu_percent_x100: Some(250 + k as u32),
            })
            .collect(),
        pipelines: Vec::new(),
    }
}

fn state(n: usize) -> Snapshot {
    state_with_stats(n, STATS_PER_WORKSPACE)
}

fn state_with_stats(n: usize, stats: u64) -> Snapshot {
    Snapshot {
        written_unix_ms: 1_763_100_000_000,
        boot_id: "59a17b52-3e5c-4c4b-9332-f98cfbe4e6db".into(),
        arje_pid: 1,
        next_event_id: 123_456,
        next_command_id: 2 * n as u64,
        next_workspace_id: n as u64 + 1,
        workspaces: (0..n).map(|i| workspace(i, stats)).collect(),
        listener_fd: Some(3),
        saved_pipelines: Vec::new(),
    }
}

/// The runtime's per-turn encode: head fields and workspace state borrowed, each spec
/// and stats taken from `cached` (what the runtime keeps), nothing cloned.
fn encode_turn(s: &Snapshot, cached: &[Cached], out: &mut Vec<u8>) {
    let head = SnapshotHead {
        written_unix_ms: s.written_unix_ms,
        boot_id: &s.boot_id,
        arje_pid: s.arje_pid,
        next_event_id: s.next_event_id,
        next_command_id: s.next_command_id,
        next_workspace_id: s.next_workspace_id,
        listener_fd: s.listener_fd,
        saved_pipelines: &s.saved_pipelines,
    };
    let workspaces = s
        .workspaces
        .iter()
        .zip(cached)
        .map(|(w, cached)| WorkspaceParts {
            id: w.id,
            spec_bytes: &cached.spec_bytes,
            created_unix_ms: w.created_unix_ms,
            stopping: w.stopping,
            pipelines: &w.pipelines,
            commands: w.commands.iter().map(|c| CommandParts {
                id: c.id,
                name: &c.name,
                restarts: c.restarts,
                recent_restarts_unix_ms: c.recent_restarts_unix_ms.iter().copied(),
                last_exit: c.last_exit.map(SavedExitStatus::into_event),
                done: c.done,
                failed: c.failed.as_deref(),
                live: c.live,
                ready: c.ready,
                status: c.status.as_deref(),
                notify_fd: c.notify_fd,
            }),
            stats: &cached.stats,
        });
    encode_parts(&head, workspaces, out);
}

/// What the runtime keeps per workspace in its own types: the spec's cached `encode_spec`
/// bytes and the stats history as protocol samples (the snapshot holds saved forms).
struct Cached {
    spec_bytes: Vec<u8>,
    stats: Vec<StatsSample>,
}

fn cached(s: &Snapshot) -> Vec<Cached> {
    s.workspaces
        .iter()
        .map(|w| Cached {
            spec_bytes: encode_spec(&w.spec.clone().into_card()),
            stats: w
                .stats
                .iter()
                .cloned()
                .map(SavedStatsSample::into_protocol)
                .collect(),
        })
        .collect()
}

/// Fastest, median and 90th percentile of `reps` runs of `f`.
struct Times {
    /// What the work costs when nothing else competes for the CPU and caches: on a loaded
    /// machine the median includes time other processes took.
    min: Duration,
    med: Duration,
    p90: Duration,
}

fn measure(reps: usize, mut f: impl FnMut()) -> Times {
    let mut times: Vec<Duration> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    Times {
        min: times[0],
        med: times[reps / 2],
        p90: times[(reps * 9 / 10).min(reps - 1)],
    }
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn tmpfs_dir() -> PathBuf {
    ["/dev/shm", "/run"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_dir())
        .unwrap_or_else(std::env::temp_dir)
}

/// The baseline: what any careful program does, without the directory fsync and with a
/// fixed temp name.
fn bare_write(dir: &Path, bytes: &[u8]) {
    let temp = dir.join("bare.tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)
        .unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
    std::fs::rename(&temp, dir.join("bare.bin")).unwrap();
}

/// The baseline plus the directory fsync: isolates what the directory fsync costs.
fn bare_write_dirsync(dir: &Path, bytes: &[u8]) {
    bare_write(dir, bytes);
    std::fs::File::open(dir).unwrap().sync_all().unwrap();
}

fn pct(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn main() {
    let durable_parent = std::env::args().nth(1).unwrap_or_else(|| "/var/tmp".into());
    let run_parent = tmpfs_dir();
    let run = tempfile::tempdir_in(&run_parent).expect("temp dir on tmpfs");
    let run_dir = StateDir::open(run.path(), None).expect("the tmpfs temp dir as a state dir");

    println!(
        "snapshot size and encode+write_run to {} (tmpfs)",
        run_parent.display()
    );
    println!(
        "{:>10} {:>12} {:>12} {:>6} | {:>14} {:>14} {:>14} | {:>14} {:>14}",
        "workspaces",
        "postcard B",
        "json B",
        "ratio",
        "encode med us",
        "enc+wr med us",
        "enc+wr p90 us",
        "json e+w med",
        "json e+w p90"
    );
    for (n, reps) in [(10, 2000), (1_000, 300), (10_000, 30)] {
        let s = state(n);
        let postcard_len = encode(&s).len();
        let json_len = serde_json::to_vec(&s).unwrap().len();
        let mut buf = Vec::new();
        let enc = measure(reps, || encode_into(std::hint::black_box(&s), &mut buf));
        // As the loop does it: one buffer kept across turns.
        let mut buf = Vec::new();
        let ew = measure(reps, || {
            encode_into(&s, &mut buf);
            write_run(&run_dir, &buf).unwrap()
        });
        let json_dir = StateDir::open(&run.path().join("json"), None).unwrap();
        let jw = measure(reps, || {
            write_run(&json_dir, &serde_json::to_vec(&s).unwrap()).unwrap()
        });
        println!(
            "{:>10} {:>12} {:>12} {:>6.2} | {:>14} {:>14} {:>14} | {:>14} {:>14}",
            n,
            postcard_len,
            json_len,
            postcard_len as f64 / json_len as f64,
            us(enc.med),
            us(ew.med),
            us(ew.p90),
            us(jw.med),
            us(jw.p90)
        );
    }

    println!();
    println!("per-turn path, us: encode_parts (specs pre-encoded, state borrowed) + write_run,");
    println!("against cloning the state into a Snapshot + encode_into + write_run (c+e+w)");
    println!(
        "{:>10} {:>10} {:>4} | {:>9} {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9} {:>9}",
        "workspaces",
        "bytes",
        "same",
        "enc med",
        "e+w min",
        "e+w med",
        "e+w p90",
        "clone med",
        "c+e+w min",
        "c+e+w med",
        "c+e+w p90"
    );
    for (n, reps) in [(10, 2000), (1_000, 300), (10_000, 30)] {
        let s = state(n);
        let cached = cached(&s);
        let mut buf = Vec::new();
        encode_turn(&s, &cached, &mut buf);
        let same = buf == encode(&s);
        let enc = measure(reps, || {
            encode_turn(std::hint::black_box(&s), &cached, &mut buf)
        });
        let ew = measure(reps, || {
            encode_turn(&s, &cached, &mut buf);
            write_run(&run_dir, &buf).unwrap()
        });
        let clone = measure(reps, || {
            std::hint::black_box(std::hint::black_box(&s).clone());
        });
        let old = measure(reps, || {
            let snap = s.clone();
            encode_into(&snap, &mut buf);
            write_run(&run_dir, &buf).unwrap()
        });
        println!(
            "{:>10} {:>10} {:>4} | {:>9} {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9} {:>9}",
            n,
            buf.len(),
            if same { "yes" } else { "NO" },
            us(enc.med),
            us(ew.min),
            us(ew.med),
            us(ew.p90),
            us(clone.med),
            us(old.min),
            us(old.med),
            us(old.p90)
        );
    }

    println!();
    println!("stats history share, 1000 workspaces, per-turn path (encode_parts + write_run)");
    println!(
        "{:>10} {:>10} | {:>9} {:>9} | {:>9} {:>9} {:>9}",
        "samples/ws", "bytes", "enc min", "enc med", "e+w min", "e+w med", "e+w p90"
    );
    for stats in [0, STATS_PER_WORKSPACE, RUNTIME_STATS_HISTORY] {
        let s = state_with_stats(1_000, stats);
        let cached = cached(&s);
        let mut buf = Vec::new();
        let enc = measure(300, || {
            encode_turn(std::hint::black_box(&s), &cached, &mut buf)
        });
        let ew = measure(300, || {
            encode_turn(&s, &cached, &mut buf);
            write_run(&run_dir, &buf).unwrap()
        });
        println!(
            "{:>10} {:>10} | {:>9} {:>9} | {:>9} {:>9} {:>9}",
            stats,
            buf.len(),
            us(enc.min),
            us(enc.med),
            us(ew.min),
            us(ew.med),
            us(ew.p90)
        );
    }

    let disk = tempfile::tempdir_in(&durable_parent).expect("temp dir for the durable comparison");
    let disk_dir = StateDir::open(disk.path(), None).expect("the durable temp dir as a state dir");
    println!();
    println!(
        "durable write vs bare write+fsync+rename, same bytes, same dir ({})",
        disk.path().display()
    );
    println!(
        "{:>10} {:>10} {:>5} | {:>12} {:>12} | {:>12} {:>12} | {:>12} {:>12} | {:>6} {:>6}",
        "workspaces",
        "bytes",
        "reps",
        "durable med",
        "durable p90",
        "bare med",
        "bare p90",
        "bare+dir med",
        "bare+dir p90",
        "d/bare",
        "d/b+dir"
    );
    for (n, reps) in [(10, 200), (1_000, 200)] {
        let bytes = encode(&state(n));
        let mut times = [
            Vec::with_capacity(reps),
            Vec::with_capacity(reps),
            Vec::with_capacity(reps),
        ];
        // Interleaved, so drift in the disk's behaviour hits every variant alike.
        for _ in 0..reps {
            let t = Instant::now();
            write_durable(&disk_dir, &bytes).unwrap();
            times[0].push(t.elapsed());
            let t = Instant::now();
            bare_write(disk.path(), &bytes);
            times[1].push(t.elapsed());
            let t = Instant::now();
            bare_write_dirsync(disk.path(), &bytes);
            times[2].push(t.elapsed());
        }
        for t in &mut times {
            t.sort();
        }
        let [durable, bare, dirsync] = &times;
        println!(
            "{:>10} {:>10} {:>5} | {:>9} us {:>9} us | {:>9} us {:>9} us | {:>9} us {:>9} us | {:>6.2} {:>6.2}",
            n,
            bytes.len(),
            reps,
            us(pct(durable, 50)),
            us(pct(durable, 90)),
            us(pct(bare, 50)),
            us(pct(bare, 90)),
            us(pct(dirsync, 50)),
            us(pct(dirsync, 90)),
            pct(durable, 50).as_secs_f64() / pct(bare, 50).as_secs_f64(),
            pct(durable, 50).as_secs_f64() / pct(dirsync, 50).as_secs_f64(),
        );
    }
}
