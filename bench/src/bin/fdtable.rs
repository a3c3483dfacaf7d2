//! The fd table a child gets: copied from arje at clone (before) against shared at clone
//! and unshared keeping the four slots (after; `arje-runtime/src/sys/spawn.rs`). Both
//! spawners are arje's own `Spawner`, run side by side in one process, interleaved.
//!
//! 1. Kernel memory per service: this process holds 3 fds per service (as arje holds a
//!    pidfd and two capture pipes), then starts N services of a static program that
//!    calls pause(2); the `Slab` line of /proc/meminfo before and with them all running,
//!    divided by N. The machine's other activity is noise in both columns alike, so the
//!    rounds alternate and the medians are printed.
//! 2. A spawn among many live children: spawn+exit+reap of a static program that exits
//!    at once, while this process holds the pidfds of L live pause children.
//!
//! Usage: `cargo run --release -p arje-bench --bin fdtable [N] [L]` (default 1000 10000).

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use arje_bench::procfs::slab_kib;
use arje_bench::{tiny_static, us};
use arje_runtime::parts::{ExecPlan, Spawner};

const ROUNDS: usize = 5;
const SPAWNS: usize = 400;

fn spawner(copy: bool) -> Spawner {
    let mut s = Spawner::default();
    if copy {
        s.copy_fd_table();
    }
    s
}

/// Start `n` pause children with `spawner` while holding 3 fds per child; the slab
/// growth per child in bytes. The children are killed and reaped before returning.
fn slab_per_service(spawner: &mut Spawner, pause: &ExecPlan, n: usize) -> f64 {
    let null = std::fs::File::open("/dev/null").unwrap();
    let mut held: Vec<OwnedFd> = Vec::with_capacity(3 * n);
    let before = slab_kib();
    let mut children = Vec::with_capacity(n);
    for _ in 0..n {
        let (r, w) = std::io::pipe().unwrap();
        let s = spawner
            .spawn(pause, [null.as_fd(), w.as_fd(), w.as_fd()], None)
            .expect("spawn pause");
        held.push(r.into());
        held.push(w.into());
        children.push(s);
    }
    let after = slab_kib();
    for c in &children {
        let _ = rustix_kill(c.pid);
    }
    for c in children {
        let _ = nix_wait(c.pid);
    }
    drop(held);
    (after.saturating_sub(before) * 1024) as f64 / n as f64
}

fn rustix_kill(pid: i32) -> i32 {
    // SAFETY: a plain kill(2) of a child this benchmark started and has not reaped.
    unsafe { libc::kill(pid, libc::SIGKILL) }
}

fn nix_wait(pid: i32) -> i32 {
    let mut status = 0;
    // SAFETY: waitpid on our own child, with a valid status pointer.
    unsafe { libc::waitpid(pid, &mut status, libc::__WALL) }
}

/// Reap through the pidfd, as arje does: waitid(P_PIDFD) looks at that child alone.
fn wait_pidfd(pidfd: &OwnedFd) {
    use std::os::fd::AsRawFd;
    // SAFETY: waitid on a pidfd of our own child, into a zeroed siginfo.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(
            libc::P_PIDFD,
            pidfd.as_raw_fd() as libc::id_t,
            &mut info,
            libc::WEXITED | libc::__WALL,
        );
    }
}

/// Median spawn+exit+reap of `quick` over `SPAWNS` runs.
fn spawn_median(spawner: &mut Spawner, quick: &ExecPlan) -> Duration {
    let null = std::fs::File::open("/dev/null").unwrap();
    let mut t = Vec::with_capacity(SPAWNS);
    for _ in 0..SPAWNS {
        let start = Instant::now();
        let s = spawner
            .spawn(quick, [null.as_fd(), null.as_fd(), null.as_fd()], None)
            .expect("spawn");
        wait_pidfd(&s.pidfd);
        t.push(start.elapsed());
    }
    t.sort();
    t[t.len() / 2]
}

/// Medians over `ROUNDS` of each spawner's median spawn+exit+reap, the two taking turns.
fn interleaved_medians(cp: &mut Spawner, sh: &mut Spawner, quick: &ExecPlan) -> (f64, f64) {
    let (mut copied, mut shared) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        copied.push(us(spawn_median(cp, quick)));
        shared.push(us(spawn_median(sh, quick)));
    }
    (median(copied), median(shared))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("N and L are numbers"))
        .collect();
    let n = args.first().copied().unwrap_or(1000);
    let live = args.get(1).copied().unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let pause = tiny_static(dir.path(), "pause", "for (;;) sys1(34, 0);");
    let quick = tiny_static(dir.path(), "exit0", "");
    let plan = |p: &std::path::Path| {
        ExecPlan::new(&[p.to_str().unwrap().to_string()], &[], None, None).unwrap()
    };
    let (pause, quick) = (plan(&pause), plan(&quick));
    // Made first, as the runtime makes its one: the slots are the lowest free fds.
    let (mut cp, mut sh) = (spawner(true), spawner(false));

    println!("== kernel memory per service: {n} pause children, 3 fds held per child ==");
    let (mut copied, mut shared) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        copied.push(slab_per_service(&mut cp, &pause, n));
        shared.push(slab_per_service(&mut sh, &pause, n));
    }
    let (c, s) = (median(copied.clone()), median(shared.clone()));
    println!("table copied at clone (before):  {c:>8.0} B slab per service (rounds {copied:.0?})");
    println!("shared, unshared to the slots:   {s:>8.0} B slab per service (rounds {shared:.0?})");
    println!(
        "saved per service: {:.0} B ({:.1}x less)",
        c - s,
        c / s.max(1.0)
    );

    println!("\n== spawn+exit+reap among {live} live children (median of {SPAWNS}) ==");
    let null = std::fs::File::open("/dev/null").unwrap();
    let holders: Vec<_> = (0..live)
        .map(|_| {
            sh.spawn(&pause, [null.as_fd(), null.as_fd(), null.as_fd()], None)
                .expect("spawn a live child")
        })
        .collect();
    if std::env::var_os("FDTABLE_PROFILE_SHARED").is_some() {
        // For a profile of the shared spawner alone among the live children.
        println!(
            "shared only: median {:.1} us",
            us(spawn_median(&mut sh, &quick))
        );
        return;
    }
    let (c, s) = interleaved_medians(&mut cp, &mut sh, &quick);
    println!("table copied at clone (before):  median {c:>8.1} us");
    println!("shared, unshared to the slots:   median {s:>8.1} us");
    println!("after / before = {:.2}", s / c);
    for h in &holders {
        rustix_kill(h.pid);
    }
    for h in holders {
        nix_wait(h.pid);
    }
    let (c, s) = interleaved_medians(&mut cp, &mut sh, &quick);
    println!("with 0 live: copied median {c:.1} us, shared median {s:.1} us");
}
