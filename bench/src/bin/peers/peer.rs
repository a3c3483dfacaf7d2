//! What the benchmark asks of every supervisor, and the helpers their drivers share.

use std::collections::HashSet;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// What every round's supervisor is set up with.
pub struct Ctx {
    /// Services per supervisor.
    pub n: usize,
    /// The service program (`arje_bench::stamp`).
    pub svc: PathBuf,
    /// The directory holding the FIFO `started`, the services' working directory where
    /// the supervisor lets it be set (the others get a symlink to the FIFO).
    pub work: PathBuf,
    /// A fresh directory for this round's configuration and state.
    pub dir: PathBuf,
}

/// One supervisor under test. `start` is called once per round, and the others between
/// it and `finish`.
pub trait Peer {
    /// Name and version, for the tables.
    fn label(&self) -> String;
    /// How it is set up, one line for the notes.
    fn config(&self) -> String;
    /// Spawn the supervisor with `ctx.n` services configured, starting them; returns the
    /// root of its process tree once spawned (the services report their start through
    /// the FIFO).
    fn start(&mut self, ctx: &Ctx) -> i32;
    /// Block until the supervisor counts every service ready. `false` (at once) for a
    /// supervisor without readiness.
    fn wait_ready(&mut self, ctx: &Ctx) -> bool;
    /// Ask the supervisor to stop every service and not restart them; returns once asked
    /// (the caller waits for the services' ends).
    fn stop_all(&mut self, ctx: &Ctx);
    /// `X run --wait /bin/true` through the supervisor's own command-line client, timed
    /// from that client's spawn to its exit; `None` for a supervisor without one.
    fn run_true(&mut self, ctx: &Ctx) -> Option<Duration>;
    /// End the supervisor and every helper process of it (its services are down).
    fn finish(&mut self, ctx: &Ctx);
}

/// pidfd_open(2) of `pid`, or `None` if it is gone.
pub fn pidfd(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open has no memory arguments; a valid result is a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a non-negative result is a fresh fd.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Wait until every process of `fds` has ended (its pidfd reads as ready), for at most
/// `limit`; returns how many are left.
pub fn wait_gone(mut fds: Vec<OwnedFd>, limit: Duration) -> usize {
    let end = Instant::now() + limit;
    while !fds.is_empty() {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut polls: Vec<libc::pollfd> = fds
            .iter()
            .map(|f| libc::pollfd {
                fd: f.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: poll over a vector of pollfds we own, its length given.
        let n = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, ms) };
        if n <= 0 {
            continue;
        }
        let mut i = 0;
        fds.retain(|_| {
            let keep = polls[i].revents == 0;
            i += 1;
            keep
        });
    }
    fds.len()
}

/// SIGTERM to every supervisor process under `root` (the services are down), SIGKILL to
/// those left after 5 s, and wait until all are gone; then reap `child`, the root.
pub fn end_tree(root: i32, child: &mut Child) {
    let pids = arje_bench::procfs::tree(root, &HashSet::new());
    let fds: Vec<OwnedFd> = pids.iter().filter_map(|&p| pidfd(p)).collect();
    for &p in &pids {
        // SAFETY: kill(2) of a process of the supervisor tree this benchmark started.
        unsafe { libc::kill(p, libc::SIGTERM) };
    }
    if wait_gone(fds, Duration::from_secs(5)) > 0 {
        for &p in &pids {
            // SAFETY: as above.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
    }
    let _ = child.wait();
}

/// Run `cmd` to its end; panics naming it if it fails.
pub fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run `cmd` to its end and return how long it took; panics if it fails.
pub fn timed(cmd: &mut Command) -> Duration {
    let t = Instant::now();
    run(cmd);
    t.elapsed()
}

/// The mount points of the cgroup v2 hierarchy and of v1 `name=systemd`, if any (the v2
/// one first).
pub fn cgroup_roots() -> Vec<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut roots: Vec<(bool, PathBuf)> = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let v2 = f.get(2) == Some(&"cgroup2");
            let systemd_v1 = f.get(2) == Some(&"cgroup") && f.get(3)?.contains("name=systemd");
            (v2 || systemd_v1).then(|| (!v2, PathBuf::from(f[1])))
        })
        .collect();
    roots.sort();
    roots.into_iter().map(|(_, p)| p).collect()
}

/// Remove the cgroup `dir` and those below it, the deepest first (a cgroup is removed
/// with rmdir once it has no processes and no children).
pub fn remove_cgroup(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}
