//! Events per second the journal sustains: the in-memory ring alone (before the disk
//! log) against the ring with every event also appended to the on-disk log, counted
//! until the last event is written and synced (`persist/eventlog.rs`). Same events, one
//! process, rounds interleaved.
//!
//! Usage: `cargo run --release -p arje-bench --bin journal [N] [DIR]` (default 200000
//! events, the log in a temporary directory under /var/tmp, a real disk here; pass a
//! directory on another filesystem to measure that one).

use std::time::{Duration, Instant};

use arje_runtime::parts::{EventLog, EventLogLimits, Journal, StateDir};
use shuma_card::EventKind;

const ROUNDS: usize = 3;
const PACE: u64 = 512;

fn kind(i: u64) -> EventKind {
    // A typical event: a command's exit, with its workspace and name.
    EventKind::CommandExited {
        workspace: "bench".into(),
        command: format!("svc{}", i % 100),
        pid: 1000 + (i % 30_000) as i32,
        status: shuma_card::ExitStatus::Code(0),
    }
}

/// Events pushed per second, and written per second (those not lost to a full queue).
/// With `paced`, the pusher waits for the writer every [`PACE`] events (half its queue),
/// so that nothing is lost: the rate the disk log sustains, a sync per `PACE` events.
fn run(n: u64, disk: Option<(&std::path::Path, usize)>, paced: bool) -> (f64, f64) {
    let mut j = Journal::new(4096, 1);
    let mut _dir_guard = None;
    if let Some((parent, round)) = disk {
        let path = parent.join(format!("events-{round}"));
        let dir = StateDir::open(&path, None).expect("journal dir");
        let (log, _) = EventLog::open(dir, EventLogLimits::with_total(32 << 20)).expect("open");
        j = j.with_disk(log, None);
        _dir_guard = Some(path);
    }
    let start = Instant::now();
    for i in 0..n {
        j.push(kind(i), i, i);
        if paced && i % PACE == PACE - 1 {
            j.flush_disk(Duration::from_secs(120));
        }
    }
    j.flush_disk(Duration::from_secs(120));
    let secs = start.elapsed().as_secs_f64();
    let lost = j.new_disk_losses().unwrap_or(0);
    (n as f64 / secs, (n - lost) as f64 / secs)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: u64 = args.first().map_or(200_000, |a| a.parse().expect("N"));
    let tmp = match args.get(1) {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir_in("/var/tmp"),
    }
    .expect("tempdir");
    let (mut mem, mut pushed, mut written, mut paced) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        mem.push(run(n, None, false).0);
        let (p, w) = run(n, Some((tmp.path(), 2 * round)), false);
        pushed.push(p);
        written.push(w);
        paced.push(run(n, Some((tmp.path(), 2 * round + 1)), true).1);
    }
    for v in [&mut mem, &mut pushed, &mut written, &mut paced] {
        v.sort_by(f64::total_cmp);
    }
    let m = ROUNDS / 2;
    println!("== journal: {n} events pushed as fast as possible, median of {ROUNDS} rounds ==");
    println!(
        "in memory only (before):             {:>10.0} events/s",
        mem[m]
    );
    println!(
        "ring + disk log, pushed:             {:>10.0} events/s",
        pushed[m]
    );
    println!(
        "ring + disk log, written and synced: {:>10.0} events/s  (log in {})",
        written[m],
        tmp.path().display()
    );
    println!("(pushed faster than written: the rest was counted lost past the writer's queue)");
    println!(
        "ring + disk log, paced, none lost:  {:>10.0} events/s  (a wait for the writer every {PACE})",
        paced[m]
    );
}
