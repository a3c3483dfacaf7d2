//! From the journal's marks to the figures: per round (total, critical path, arje's
//! CPU) and per service (own readiness, hand-off), and their printing.

use std::collections::HashMap;

use crate::{name, Shape, Topology};

/// What one round recorded, all in CLOCK_MONOTONIC microseconds.
pub struct Round {
    pub sent: u64,
    pub answered: u64,
    /// arje's CPU time from before `WsCreate` to the `WaitReady` answer.
    pub cpu: u64,
    pub started: HashMap<String, u64>,
    pub ready: HashMap<String, u64>,
    /// The helper's own marks from its `STATUS=`: top of main, `READY=1` sent.
    pub marks: HashMap<String, (u64, u64)>,
}

/// Per-round figures, in microseconds.
pub struct Figures {
    pub total: f64,
    /// arje's own CPU time for the round, up to `WaitReady`'s answer.
    pub cpu: f64,
    /// The longest path through the `after` graph, each service weighing its own
    /// readiness time as the journal has it (`CommandStarted` to `CommandReady`).
    pub critical: f64,
    /// The same, each service weighing its time to sending `READY=1` by its own mark
    /// (without arje's time to handle the datagram); `None` for a notifier that sends
    /// no marks.
    pub critical_sent: Option<f64>,
    pub create_to_answer: f64,
    pub create_to_first_start: f64,
}

/// `t0=N t1=M` from the helper's `STATUS=`.
pub fn parse_marks(status: &str) -> Option<(u64, u64)> {
    let mut it = status.split(' ');
    let t0 = it.next()?.strip_prefix("t0=")?.parse().ok()?;
    let t1 = it.next()?.strip_prefix("t1=")?.parse().ok()?;
    Some((t0, t1))
}

/// The per-round figures, and adds the per-service samples to `pool`.
pub fn figures(r: &Round, topology: Topology, shape: Shape, pool: &mut Pool) -> Figures {
    let at = |map: &HashMap<String, u64>, k, j| map[&name(k, j)] as f64;
    let first = r.started.values().copied().min().unwrap() as f64;
    let last = r.ready.values().copied().max().unwrap() as f64;
    // Longest paths by own time, level by level: to `CommandReady`, and to the
    // notifier's `READY=1` sent.
    let mut path = vec![vec![0.0f64; shape.width]; shape.levels];
    let mut path_sent = vec![vec![0.0f64; shape.width]; shape.levels];
    let mut all_marked = true;
    for k in 0..shape.levels {
        let mut fastest = f64::MAX;
        for j in 0..shape.width {
            let own = at(&r.ready, k, j) - at(&r.started, k, j);
            let deps = topology.deps(shape, k, j);
            let before = deps.iter().map(|&d| path[k - 1][d]).fold(0.0f64, f64::max);
            path[k][j] = before + own;
            pool.own.push(own);
            let before_sent = deps
                .iter()
                .map(|&d| path_sent[k - 1][d])
                .fold(0.0f64, f64::max);
            if let Some(&(t0, t1)) = r.marks.get(&name(k, j)) {
                pool.exec.push(t0 as f64 - at(&r.started, k, j));
                pool.notice.push(at(&r.ready, k, j) - t1 as f64);
                path_sent[k][j] = before_sent + (t1 as f64 - at(&r.started, k, j));
            } else {
                all_marked = false;
            }
            if !deps.is_empty() {
                let settled = deps
                    .iter()
                    .map(|&d| at(&r.ready, k - 1, d))
                    .fold(0.0f64, f64::max);
                let dispatch = at(&r.started, k, j) - settled;
                pool.dispatch.push(dispatch);
                fastest = fastest.min(dispatch);
            }
        }
        if k > 0 && topology != Topology::Flat {
            pool.handoff.push(fastest);
        }
        let starts: Vec<f64> = (0..shape.width).map(|j| at(&r.started, k, j)).collect();
        let spread = starts.iter().copied().fold(0.0f64, f64::max)
            - starts.iter().copied().fold(f64::MAX, f64::min);
        pool.spread.push(spread);
    }
    let longest = |p: &[Vec<f64>]| p.iter().flatten().copied().fold(0.0f64, f64::max);
    Figures {
        total: last - first,
        cpu: r.cpu as f64,
        critical: longest(&path),
        critical_sent: all_marked.then(|| longest(&path_sent)),
        create_to_answer: (r.answered - r.sent) as f64,
        create_to_first_start: first - r.sent as f64,
    }
}

/// Per-service samples over all rounds of a variant, in microseconds.
#[derive(Default)]
pub struct Pool {
    /// `CommandStarted` -> `CommandReady`.
    pub own: Vec<f64>,
    /// `CommandStarted` -> the helper's `main`.
    pub exec: Vec<f64>,
    /// The helper sent `READY=1` -> `CommandReady`.
    pub notice: Vec<f64>,
    /// The last of its dependencies' `CommandReady` -> its `CommandStarted`.
    pub dispatch: Vec<f64>,
    /// Per level: the smallest `dispatch` of its services (the first one spawned).
    pub handoff: Vec<f64>,
    /// Per level: its first `CommandStarted` to its last.
    pub spread: Vec<f64>,
}

pub fn sorted(v: &[f64]) -> Vec<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

pub fn pick(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// `min median max` of per-round figures, in ms.
pub fn row_rounds(label: &str, v: &[f64]) {
    let s = sorted(v);
    println!(
        "  {label:<44} {:>9.2} {:>9.2} {:>9.2}",
        pick(&s, 0.0) / 1e3,
        pick(&s, 0.5) / 1e3,
        pick(&s, 1.0) / 1e3
    );
}

/// `median p90 max` of pooled per-service samples, in us.
pub fn row_pool(label: &str, v: &[f64]) {
    if v.is_empty() {
        println!("  {label:<44} {:>9} {:>9} {:>9}", "-", "-", "-");
        return;
    }
    let s = sorted(v);
    println!(
        "  {label:<44} {:>9.0} {:>9.0} {:>9.0}",
        pick(&s, 0.5),
        pick(&s, 0.9),
        pick(&s, 1.0)
    );
}
