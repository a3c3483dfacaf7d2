//! Entrypoint benchmark (issue 14): arje-init's entrypoint mode (`arje-init -- PROG`)
//! beside tini-static and catatonit, in one run, on three figures:
//!
//! - the stripped static binary's size (arje-init as `scripts/build-static.sh` builds
//!   it, in `build/bin/demo/`; Debian's tini-static and catatonit);
//! - idle memory: VmRSS and RssAnon of the wrapper from /proc while it runs
//!   `sh -c 'echo ready; exec sleep 1000'`, read once the child printed `ready` (the
//!   wrapper has spawned it and is in its wait loop);
//! - time to run `X -- /bin/true` to its end (spawn, the wrapper's start, its child's
//!   exec and exit, the reap), sequentially, with `/bin/true` alone as the baseline.
//!   The variants take turns in rounds so that the machine's drift hits them alike.
//!
//! Usage: `cargo run --release -p arje-bench --bin entrypoint [RUNS] [ARJE]`
//! (default 2,000 runs per variant; ARJE defaults to build/bin/demo/arje-init).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arje_bench::{percentile, us};

const TINI: &str = "/usr/bin/tini-static";
const CATATONIT: &str = "/usr/bin/catatonit";
const ROUNDS: usize = 20;

struct Wrapper {
    name: &'static str,
    /// The wrapper and its arguments before PROGRAM (`--` included); empty for the
    /// baseline, which runs PROGRAM alone.
    argv: Vec<String>,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(2000);
    let arje: PathBuf = args.next().map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../build/bin/demo/arje-init")
    });
    for p in [arje.as_path(), Path::new(TINI), Path::new(CATATONIT)] {
        assert!(
            p.exists(),
            "{} is missing (scripts/build-static.sh demo; scripts/setup.sh for the peers)",
            p.display()
        );
    }
    let arje = arje.canonicalize().expect("arje-init path");
    let wrappers = [
        Wrapper {
            name: "arje-init --",
            argv: vec![arje.display().to_string(), "--".into()],
        },
        Wrapper {
            name: "tini-static -s --",
            // -s: a subreaper like the other two (without it tini warns off PID 1).
            argv: vec![TINI.into(), "-s".into(), "--".into()],
        },
        Wrapper {
            name: "catatonit --",
            argv: vec![CATATONIT.into(), "--".into()],
        },
    ];

    println!("== stripped static binary ==");
    for w in &wrappers {
        let bytes = std::fs::metadata(&w.argv[0]).expect("stat").len();
        println!("{:<18} {:>10} bytes  ({})", w.name, bytes, w.argv[0]);
    }

    println!("\n== idle memory, running `sh -c 'echo ready; exec sleep 1000'` ==");
    for w in &wrappers {
        let (rss, anon) = idle_memory(&w.argv);
        println!("{:<18} VmRSS {rss:>6} kB  RssAnon {anon:>6} kB", w.name);
    }

    println!("\n== `X /bin/true` to its end (spawn to reap), {runs} sequential runs each, {ROUNDS} interleaved rounds ==");
    let baseline = Wrapper {
        name: "/bin/true alone",
        argv: Vec::new(),
    };
    let all: Vec<&Wrapper> = std::iter::once(&baseline).chain(wrappers.iter()).collect();
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(runs); all.len()];
    // One warm-up run each: page cache, dynamic loader of /bin/true.
    for w in &all {
        time_true(&w.argv);
    }
    let per_round = runs.div_ceil(ROUNDS);
    for _ in 0..ROUNDS {
        for (i, w) in all.iter().enumerate() {
            for _ in 0..per_round {
                times[i].push(time_true(&w.argv));
            }
        }
    }
    let base_median = {
        let mut t = times[0].clone();
        t.sort();
        percentile(&t, 0.5)
    };
    for (w, t) in all.iter().zip(times.iter_mut()) {
        t.sort();
        let median = percentile(t, 0.5);
        println!(
            "{:<18} median {:>8.1} us  p10 {:>8.1} us  p90 {:>8.1} us  over the baseline {:>+8.1} us",
            w.name,
            us(median),
            us(percentile(t, 0.1)),
            us(percentile(t, 0.9)),
            us(median) - us(base_median),
        );
    }
}

/// Starts `wrapper sh -c 'echo ready; exec sleep 1000'`, reads `ready`, then the
/// wrapper's VmRSS and RssAnon (kB); ends it with SIGTERM, which every wrapper forwards
/// to the sleep.
fn idle_memory(wrapper: &[String]) -> (u64, u64) {
    let mut child = Command::new(&wrapper[0])
        .args(&wrapper[1..])
        .args(["/bin/sh", "-c", "echo ready; exec sleep 1000"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the wrapper");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("read ready");
    assert_eq!(line.trim(), "ready", "{}", wrapper[0]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let figures = (field("VmRSS:"), field("RssAnon:"));
    // SAFETY: kill(2) on the wrapper this function started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    figures
}

/// One run of `wrapper /bin/true`, spawn to reap.
fn time_true(wrapper: &[String]) -> Duration {
    let mut cmd = match wrapper.split_first() {
        Some((w, rest)) => {
            let mut c = Command::new(w);
            c.args(rest).arg("/bin/true");
            c
        }
        None => Command::new("/bin/true"),
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let start = Instant::now();
    let status = cmd.status().expect("run");
    let took = start.elapsed();
    assert!(status.success(), "{wrapper:?} /bin/true: {status}");
    took
}
