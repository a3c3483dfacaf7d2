//! arje against the supervisors a user would install instead (issue 15): s6
//! (`s6-svscan` + `s6-supervise`), runit (`runsvdir` + `runsv`), supervisord, and
//! systemd as a user manager, each supervising N copies of the same tiny static service
//! (`arje_bench::stamp`: it stamps its start into a FIFO, says it is ready in both
//! protocols, and pauses), at its lowest configurable restart delay. arje runs twice:
//! the release build (glibc) and, if present, the static one of
//! `scripts/build-static.sh` (`build/bin/demo/`: static glibc, or musl).
//!
//! Each round, for each supervisor in turn (interleaved, so that the machine's drift hits
//! all alike), with a fresh supervisor:
//! 1. start: from the supervisor's spawn until every service has stamped its start, and
//!    until the supervisor counts every one ready where it has readiness; and the CPU
//!    time the supervisor's processes used until every service ran (schedstat), also
//!    over the first supervisor's in the same round;
//! 2. restart: SIGKILL of one service after another (each a different one, all up more
//!    than 1 s), from just before the kill to the successor's stamp;
//! 3. idle: CPU time (schedstat, and clock ticks from /proc/PID/stat) and voluntary
//!    context switches of the supervisor's processes over a window;
//! 4. memory: RSS, Pss and open fds summed over the supervisor's processes (helpers
//!    included: one `runsv` or `s6-supervise` per service), and the growth of the
//!    kernel's slab since before the start;
//! 5. `run --wait /bin/true` through the supervisor's command-line client, where it has
//!    one (arje's `shuma`, `systemd-run --user`);
//! 6. stop: from asking the supervisor to stop every service until every service process
//!    has ended (each watched through a pidfd).
//!
//! This program installs nothing: `bench/peers.sh` installs the peers, then runs it.
//! Usage: `peers [--n N] [--rounds R] [--kills K] [--idle-secs S] [--runs R]
//! [--peers LIST] [--arje-static PATH] [--arje-bin LABEL=PATH ...]` (defaults 1000
//! services, 5 rounds, 20 kills a round, 60 s of idle in all, split over the rounds, 20
//! runs a round; LIST is a comma list of arje, arje-static, s6, runit, supervisord,
//! systemd, and, not in the default list, arje-cgroup: the glibc arje with
//! `--cgroup-root` (a directory made for each round in the cgroup v2 hierarchy), and
//! s6-nofd: s6 without `notification-fd`). Each `--arje-bin` adds one more arje build,
//! labelled LABEL, its `shuma` beside it: builds compared in the same interleaved run.

mod arje;
mod peer;
mod report;
mod supervisord;
mod svdir;
mod systemd;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use arje_bench::procfs::{sample_all, slab_kib, tree, ProcSample};
use arje_bench::stamp::{build_service, monotonic_ns, Stamps};
use arje_bench::{on_path, us};

use peer::{pidfd, wait_gone, Ctx, Peer};
use report::Results;

/// Between the last kill and the idle window (see `round`).
const IDLE_SETTLE: Duration = Duration::from_secs(2);

struct Opts {
    n: usize,
    rounds: usize,
    kills: usize,
    idle: Duration,
    runs: usize,
    peers: Vec<String>,
    arje_static: PathBuf,
    /// More arje builds side by side, `LABEL=PATH` each (`--arje-bin`, repeatable).
    arje_bins: Vec<(String, PathBuf)>,
}

fn parse_opts() -> Opts {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let mut o = Opts {
        n: 1000,
        rounds: 5,
        kills: 20,
        idle: Duration::from_secs(60),
        runs: 20,
        peers: [
            "arje",
            "arje-static",
            "s6",
            "runit",
            "supervisord",
            "systemd",
        ]
        .map(String::from)
        .to_vec(),
        arje_static: root.join("build/bin/demo/arje-init"),
        arje_bins: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| panic!("{flag} needs a value"))
        };
        let number = |v: String| -> usize { v.parse().expect("a number") };
        match flag.as_str() {
            "--n" => o.n = number(value()),
            "--rounds" => o.rounds = number(value()).max(1),
            "--kills" => o.kills = number(value()),
            "--idle-secs" => o.idle = Duration::from_secs_f64(value().parse().expect("seconds")),
            "--runs" => o.runs = number(value()),
            "--peers" => o.peers = value().split(',').map(String::from).collect(),
            "--arje-static" => o.arje_static = value().into(),
            "--arje-bin" => {
                let v = value();
                let (label, path) = v.split_once('=').expect("--arje-bin LABEL=PATH");
                o.arje_bins.push((label.to_string(), path.into()));
            }
            _ => panic!("unknown argument {flag} (see the module docs)"),
        }
    }
    o
}

/// The supervisors asked for that can run here; a note for each that cannot.
fn peers(o: &Opts, notes: &mut Vec<String>) -> Vec<Box<dyn Peer>> {
    let mut out: Vec<Box<dyn Peer>> = Vec::new();
    let bin = arje_bench::bin_dir();
    for name in &o.peers {
        let missing = |prog: &str| (!on_path(prog)).then(|| format!("{prog} is not installed"));
        let why_not = match name.as_str() {
            "arje" => {
                out.push(Box::new(arje::Arje::new(
                    "glibc",
                    bin.join("arje-init"),
                    bin.join("shuma"),
                )));
                None
            }
            "arje-cgroup" => match peer::cgroup_roots().into_iter().next() {
                Some(base) if base.join("cgroup.controllers").exists() => {
                    let a = arje::Arje::new("glibc", bin.join("arje-init"), bin.join("shuma"));
                    out.push(Box::new(a.with_cgroups(base)));
                    None
                }
                _ => Some("no cgroup v2 hierarchy is mounted".into()),
            },
            "arje-static" if o.arje_static.exists() => {
                let shuma = o.arje_static.with_file_name("shuma");
                out.push(Box::new(arje::Arje::new(
                    static_libc(&o.arje_static),
                    o.arje_static.clone(),
                    shuma,
                )));
                None
            }
            "arje-static" => Some(format!(
                "{} not found (scripts/build-static.sh demo makes it)",
                o.arje_static.display()
            )),
            "s6" => missing("s6-svscan").or_else(|| {
                out.push(Box::new(svdir::SvDir::new(svdir::Kind::S6)));
                None
            }),
            "s6-nofd" => missing("s6-svscan").or_else(|| {
                out.push(Box::new(svdir::SvDir::new(svdir::Kind::S6WithoutReadiness)));
                None
            }),
            "runit" => missing("runsvdir").or_else(|| {
                out.push(Box::new(svdir::SvDir::new(svdir::Kind::Runit)));
                None
            }),
            "supervisord" => missing("supervisord").or_else(|| {
                out.push(Box::new(supervisord::Supervisord::new()));
                None
            }),
            "systemd" => systemd::unavailable().or_else(|| {
                out.push(Box::new(systemd::Systemd::new()));
                None
            }),
            other => panic!("unknown peer {other}"),
        };
        if let Some(why) = why_not {
            notes.push(format!("{name}: skipped: {why}"));
        }
    }
    for (label, path) in &o.arje_bins {
        if path.exists() {
            let shuma = path.with_file_name("shuma");
            out.push(Box::new(arje::Arje::new(label, path.clone(), shuma)));
        } else {
            notes.push(format!("{label}: skipped: {} not found", path.display()));
        }
    }
    out
}

/// "static glibc" or "static musl": which C library a static binary carries (glibc's
/// holds the name of its tunables variable, musl has none).
fn static_libc(bin: &std::path::Path) -> &'static str {
    let bytes = std::fs::read(bin).unwrap_or_default();
    if bytes.windows(14).any(|w| w == b"GLIBC_TUNABLES") {
        "static glibc"
    } else {
        "static musl"
    }
}

/// Sum of the samples of the pids found in both, as `after - before`.
fn delta(
    before: &std::collections::HashMap<i32, ProcSample>,
    after: &std::collections::HashMap<i32, ProcSample>,
) -> (u64, u64, u64) {
    let (mut ticks, mut run_ns, mut wakeups) = (0, 0, 0);
    for (pid, b) in before {
        if let Some(a) = after.get(pid) {
            ticks += a.ticks - b.ticks;
            run_ns += a.run_ns - b.run_ns;
            wakeups += a.voluntary - b.voluntary;
        }
    }
    (ticks, run_ns, wakeups)
}

/// One round of one supervisor (see the module docs); figures go into `r`.
fn round(peer: &mut dyn Peer, ctx: &Ctx, stamps: &mut Stamps, o: &Opts, r: &mut Results) {
    stamps.drain();
    let slab_before = slab_kib();
    let t0 = monotonic_ns();
    let root = peer.start(ctx);
    let mut live = HashSet::new();
    let mut last = t0;
    for _ in 0..ctx.n {
        let s = stamps.read();
        live.insert(s.pid);
        last = last.max(s.mono_ns);
    }
    r.running_ms.push((last - t0) as f64 / 1e6);
    let start_cpu_ns: u64 = sample_all(&tree(root, &live))
        .values()
        .map(|s| s.run_ns)
        .sum();
    r.start_cpu_ms.push(start_cpu_ns as f64 / 1e6);
    if peer.wait_ready(ctx) {
        r.ready_ms.push((monotonic_ns() - t0) as f64 / 1e6);
    }

    // Every victim has run more than a second: runit's and s6's rule (module docs of
    // `restart.rs`) then allows an immediate restart.
    let settle = last + 1_100_000_000 - monotonic_ns();
    if settle > 0 {
        std::thread::sleep(Duration::from_nanos(settle as u64));
    }
    let victims: Vec<i32> = live.iter().take(o.kills).copied().collect();
    for v in victims {
        let t = monotonic_ns();
        // SAFETY: kill(2) of a service pid read from its own stamp.
        unsafe { libc::kill(v, libc::SIGKILL) };
        let s = stamps.read();
        r.restart_us.push((s.mono_ns - t) as f64 / 1e3);
        live.remove(&v);
        live.insert(s.pid);
    }

    // The idle window opens once the kills' own work is over: a deferred write (arje's
    // /run snapshot debounce, its journal writer) answers a kill, it is not a wake-up
    // that nothing asked for. Every peer gets the same pause.
    std::thread::sleep(IDLE_SETTLE);
    let supervisor = tree(root, &live);
    let window = o.idle / o.rounds as u32;
    let before = sample_all(&supervisor);
    let t = Instant::now();
    std::thread::sleep(window);
    let after = sample_all(&supervisor);
    let secs = t.elapsed().as_secs_f64();
    let (ticks, run_ns, wakeups) = delta(&before, &after);
    let per_min = 60.0 / secs;
    r.idle_ticks.push(ticks as f64 * per_min);
    r.idle_cpu_ms.push(run_ns as f64 / 1e6 * per_min);
    r.idle_wakeups.push(wakeups as f64 / secs);

    let supervisor = tree(root, &live);
    let mut total = ProcSample {
        pss_kib: Some(0),
        ..ProcSample::default()
    };
    for s in sample_all(&supervisor).into_values() {
        total += s;
    }
    let slab_after = slab_kib();
    r.procs.push(supervisor.len() as f64);
    r.rss_kib.push(total.rss_kib as f64);
    if let Some(pss) = total.pss_kib {
        r.pss_kib.push(pss as f64);
    }
    r.fds.push(total.fds as f64);
    r.slab_per_service
        .push((slab_after as f64 - slab_before as f64) * 1024.0 / ctx.n as f64);

    for _ in 0..o.runs {
        match peer.run_true(ctx) {
            Some(d) => r.run_true_us.push(us(d)),
            None => break,
        }
    }

    let fds = live.iter().filter_map(|&p| pidfd(p)).collect();
    let t = Instant::now();
    peer.stop_all(ctx);
    let left = wait_gone(fds, Duration::from_secs(300));
    assert_eq!(
        left,
        0,
        "{}: services still running 300 s after the stop",
        peer.label()
    );
    r.stop_ms.push(t.elapsed().as_secs_f64() * 1e3);
    peer.finish(ctx);
}

fn main() {
    let o = parse_opts();
    // SAFETY: getrlimit/setrlimit on a valid struct; the benchmark holds a pidfd per
    // service while it waits for their ends.
    unsafe {
        let mut l: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
        l.rlim_cur = l.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &l);
    }
    let mut notes = Vec::new();
    let mut peers = peers(&o, &mut notes);
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let mut stamps = Stamps::create(&work.join("started"));
    let svc = build_service(tmp.path(), "svc");
    let mut results: Vec<Results> = peers.iter().map(|_| Results::default()).collect();
    for n in 0..o.rounds {
        for (i, p) in peers.iter_mut().enumerate() {
            eprintln!("round {}/{}: {}", n + 1, o.rounds, p.label());
            let dir = tmp.path().join(format!("r{n}-p{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            let ctx = Ctx {
                n: o.n,
                svc: svc.clone(),
                work: work.clone(),
                dir,
            };
            round(p.as_mut(), &ctx, &mut stamps, &o, &mut results[i]);
        }
    }
    let labels: Vec<String> = peers.iter().map(|p| p.label()).collect();
    report::print(&o_summary(&o), o.n, &labels, &mut results, &notes);
    println!("\n== configurations ==");
    for p in &peers {
        println!("{}: {}", p.label(), p.config());
    }
}

fn o_summary(o: &Opts) -> String {
    format!(
        "N = {} services, {} interleaved rounds, {} kills a round, {:.0} s idle in all ({:.1} s a round), {} runs a round",
        o.n,
        o.rounds,
        o.kills,
        o.idle.as_secs_f64(),
        o.idle.as_secs_f64() / o.rounds as f64,
        o.runs
    )
}
