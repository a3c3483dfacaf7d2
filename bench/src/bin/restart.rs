//! Restart latency after a SIGKILL: arje against runit (runsv) and s6 (s6-supervise),
//! each supervising the same static program, interleaved in one run.
//!
//! The service is a tiny static program that, as it starts, reads CLOCK_MONOTONIC and
//! writes that time and its pid into the FIFO `started` in its working directory, then
//! pauses (`arje_bench::stamp`). Each round kills every supervisor's service with SIGKILL, one after the
//! other, recording CLOCK_MONOTONIC just before the kill, and reads the successor's
//! start time from the FIFO: the latency is the successor's time minus the kill's. Both
//! clocks are the same kernel clock, read in two processes.
//!
//! Each supervisor at its lowest delay: runit and s6 restart at once a service that ran
//! one second or more (and wait a second otherwise, which cannot be set lower; s6 without
//! a `notification-fd`, as here, waits the second always: `peers.rs` measures s6 with the
//! fd, where a service that said it was ready restarts at once), arje
//! restarts at once one that ran `min_uptime` (set to 1 s here too, so the rounds are
//! the same for all). So every round first lets each service run past 1 s.
//!
//! Usage: `cargo build --release -p arje-init && cargo run --release -p arje-bench --bin
//! restart [ROUNDS]` (default 30); runit and s6 come from the distribution
//! (`apt-get install runit s6`), and a missing one is skipped with a note.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use arje_bench::stamp::{build_service, monotonic_ns, Stamps};
use arje_bench::{dpkg_version, median, on_path, Daemon};

struct Peer {
    name: String,
    stamps: Stamps,
    pid: i32,
    _supervisor: Option<Child>,
    _arje: Option<Daemon>,
    latencies_us: Vec<f64>,
}

/// A service directory with its own FIFO `started`.
fn service_dir(root: &Path, name: &str) -> (PathBuf, Stamps) {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let stamps = Stamps::create(&dir.join("started"));
    (dir, stamps)
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("ROUNDS is a number"))
        .unwrap_or(30);
    let uptime = Duration::from_millis(
        std::env::var("RESTART_BENCH_UPTIME_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1100),
    );
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let stamp = build_service(root, "stamp");
    let mut peers: Vec<Peer> = Vec::new();

    // arje: one service, restart always, min_uptime 1 s.
    {
        let (dir, mut stamps) = service_dir(root, "arje");
        let cards = root.join("cards");
        std::fs::create_dir_all(&cards).unwrap();
        std::fs::write(
            cards.join("bench.toml"),
            format!(
                "[workspace]\nname = \"bench\"\n\n[[service]]\nname = \"stamp\"\nargv = [\"{}\"]\ncwd = \"{}\"\nrestart = \"always\"\nmin_uptime = \"1s\"\nmax_restarts = 0\n",
                stamp.display(),
                dir.display()
            ),
        )
        .unwrap();
        let daemon = Daemon::start(root, &["--cards", cards.to_str().unwrap()]);
        let pid = stamps.read().pid;
        peers.push(Peer {
            name: format!("arje {}", env!("CARGO_PKG_VERSION")),
            stamps,
            pid,
            _supervisor: None,
            _arje: Some(daemon),
            latencies_us: Vec::new(),
        });
    }
    for (prog, label) in [("runsv", "runit"), ("s6-supervise", "s6")] {
        if !on_path(prog) {
            println!("{label}: {prog} not installed (apt-get install {label}); skipped");
            continue;
        }
        let (dir, mut stamps) = service_dir(root, label);
        std::os::unix::fs::symlink(&stamp, dir.join("run")).unwrap();
        let child = Command::new(prog)
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {prog}: {e}"));
        let pid = stamps.read().pid;
        peers.push(Peer {
            name: format!("{label} {} ({prog})", dpkg_version(label)),
            stamps,
            pid,
            _supervisor: Some(child),
            _arje: None,
            latencies_us: Vec::new(),
        });
    }

    for _ in 0..rounds {
        // Past every supervisor's one-second rule (see the module docs).
        std::thread::sleep(uptime);
        for p in &mut peers {
            let t0 = monotonic_ns();
            // SAFETY: kill(2) of the service's current pid, read from its own stamp.
            unsafe { libc::kill(p.pid, libc::SIGKILL) };
            let next = p.stamps.read();
            p.latencies_us.push((next.mono_ns - t0) as f64 / 1000.0);
            p.pid = next.pid;
        }
    }

    println!(
        "== restart after SIGKILL: kill -> successor running ({rounds} rounds, interleaved) =="
    );
    for p in &mut peers {
        let n = p.latencies_us.len();
        let min = p.latencies_us.iter().copied().fold(f64::MAX, f64::min);
        let max = p.latencies_us.iter().copied().fold(0.0, f64::max);
        let med = median(&mut p.latencies_us);
        println!(
            "{:<40} median {med:>8.1} us  min {min:>8.1} us  max {max:>8.1} us  (n={n})",
            p.name
        );
    }
    // Supervisors first (else they would restart the service), then their services;
    // arje stops its own when its `Daemon` is dropped.
    for p in &mut peers {
        if let Some(c) = p._supervisor.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
            // SAFETY: kill(2) of the service's last pid, read from its own stamp.
            unsafe { libc::kill(p.pid, libc::SIGKILL) };
        }
    }
}
