//! Restart latency after a SIGKILL: arje against runit (runsv) and s6 (s6-supervise),
//! each supervising the same static program, interleaved in one run.
//!
//! The service is a tiny static program that, as it starts, reads CLOCK_MONOTONIC and
//! writes that time and its pid into the FIFO `started` in its working directory, then
//! pauses. Each round kills every supervisor's service with SIGKILL, one after the
//! other, recording CLOCK_MONOTONIC just before the kill, and reads the successor's
//! start time from the FIFO: the latency is the successor's time minus the kill's. Both
//! clocks are the same kernel clock, read in two processes.
//!
//! Each supervisor at its lowest delay: runit and s6 restart at once a service that ran
//! one second or more (and wait a second otherwise, which cannot be set lower), arje
//! restarts at once one that ran `min_uptime` (set to 1 s here too, so the rounds are
//! the same for all). So every round first lets each service run past 1 s.
//!
//! Usage: `cargo build --release -p arje-init && cargo run --release -p arje-bench --bin
//! restart [ROUNDS]` (default 30); runit and s6 come from the distribution
//! (`apt-get install runit s6`), and a missing one is skipped with a note.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use arje_bench::{tiny_static, Daemon};

/// The service: stamp (seconds, nanoseconds, pid) into ./started, then pause.
const STAMP: &str = r#"
    long t[3];
    sys3(228, 1, (long)t, 0);
    t[2] = sys3(39, 0, 0, 0);
    long fd = sys3(2, (long)"started", 1, 0);
    sys3(1, fd, (long)t, 24);
    sys3(3, fd, 0, 0);
    for (;;) sys1(34, 0);
"#;

struct Peer {
    name: String,
    fifo: File,
    pid: i32,
    _supervisor: Option<Child>,
    _arje: Option<Daemon>,
    latencies_us: Vec<f64>,
}

fn monotonic_ns() -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime into a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// A service directory with the FIFO, opened read-write (so it never sees EOF and the
/// writer's open never blocks).
fn service_dir(root: &Path, name: &str) -> (PathBuf, File) {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("started");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(&fifo)
        .unwrap();
    (dir, f)
}

/// The next stamp: (CLOCK_MONOTONIC ns, pid).
fn next_stamp(fifo: &mut File) -> (i128, i32) {
    let mut b = [0u8; 24];
    fifo.read_exact(&mut b).unwrap();
    let word = |i: usize| i64::from_ne_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
    (
        word(0) as i128 * 1_000_000_000 + word(1) as i128,
        word(2) as i32,
    )
}

fn on_path(prog: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).exists()))
        .unwrap_or(false)
}

fn version(cmd: &str) -> String {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", cmd])
        .output();
    out.ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "?".into())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
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
    let stamp = tiny_static(root, "stamp", STAMP);
    let mut peers: Vec<Peer> = Vec::new();

    // arje: one service, restart always, min_uptime 1 s.
    {
        let (dir, mut fifo) = service_dir(root, "arje");
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
        let (_, pid) = next_stamp(&mut fifo);
        peers.push(Peer {
            name: format!("arje {}", env!("CARGO_PKG_VERSION")),
            fifo,
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
        let (dir, mut fifo) = service_dir(root, label);
        std::os::unix::fs::symlink(&stamp, dir.join("run")).unwrap();
        let child = Command::new(prog)
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {prog}: {e}"));
        let (_, pid) = next_stamp(&mut fifo);
        peers.push(Peer {
            name: format!("{label} {} ({prog})", version(label)),
            fifo,
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
            let (t1, pid) = next_stamp(&mut p.fifo);
            p.latencies_us.push((t1 - t0) as f64 / 1000.0);
            p.pid = pid;
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
