//! The figures of every round and the tables printed from them.

use arje_bench::median;

/// One supervisor's figures, one entry per round (`restart_us` and `run_true_us`: per
/// kill and per run).
#[derive(Default)]
pub struct Results {
    pub running_ms: Vec<f64>,
    /// CPU time of the supervisor's processes (schedstat) when every service runs.
    pub start_cpu_ms: Vec<f64>,
    pub ready_ms: Vec<f64>,
    pub stop_ms: Vec<f64>,
    pub restart_us: Vec<f64>,
    pub procs: Vec<f64>,
    pub rss_kib: Vec<f64>,
    pub pss_kib: Vec<f64>,
    pub fds: Vec<f64>,
    pub slab_per_service: Vec<f64>,
    pub idle_cpu_ms: Vec<f64>,
    pub idle_ticks: Vec<f64>,
    pub idle_wakeups: Vec<f64>,
    pub run_true_us: Vec<f64>,
}

/// "min / median / max" of `v`, or `why` when there are none.
fn mmm(v: &mut [f64], decimals: usize, why: &str) -> String {
    if v.is_empty() {
        return why.to_string();
    }
    let med = median(v);
    format!(
        "{:>10.d$} {:>10.d$} {:>10.d$}",
        v[0],
        med,
        v[v.len() - 1],
        d = decimals
    )
}

fn table(title: &str, unit: &str, labels: &[String], rows: Vec<String>) {
    println!("\n== {title} ==");
    println!(
        "{:<34} {:>10} {:>10} {:>10}   ({unit})",
        "", "min", "median", "max"
    );
    for (l, r) in labels.iter().zip(rows) {
        println!("{l:<34} {r}");
    }
}

/// Every table; `n` is the services per supervisor, for the per-service columns.
pub fn print(
    summary: &str,
    n: usize,
    labels: &[String],
    results: &mut [Results],
    notes: &[String],
) {
    println!("== peers: {summary} ==");
    for n in notes {
        println!("note: {n}");
    }
    let rows = |f: &mut dyn FnMut(&mut Results) -> String, results: &mut [Results]| {
        results.iter_mut().map(f).collect::<Vec<_>>()
    };
    table(
        "1a. start: spawn of the supervisor -> every service running",
        "ms, per round",
        labels,
        rows(&mut |r| mmm(&mut r.running_ms, 1, ""), results),
    );
    table(
        "1b. start: spawn of the supervisor -> every service ready",
        "ms, per round",
        labels,
        rows(
            &mut |r| mmm(&mut r.ready_ms, 1, "   (no readiness protocol)"),
            results,
        ),
    );
    // Paired by round before the table below sorts the figures: each round's CPU time
    // over the first supervisor's in the same round, so that the machine's drift
    // between rounds cancels out.
    let first = results
        .first()
        .map(|r| r.start_cpu_ms.clone())
        .unwrap_or_default();
    let mut paired: Vec<Vec<f64>> = results
        .iter()
        .map(|r| {
            r.start_cpu_ms
                .iter()
                .zip(&first)
                .map(|(a, b)| a / b)
                .collect()
        })
        .collect();
    table(
        "1c. start: CPU time of the supervisor's processes (schedstat) when every service is running",
        "ms, per round",
        labels,
        rows(&mut |r| mmm(&mut r.start_cpu_ms, 1, ""), results),
    );
    table(
        &format!(
            "1d. start CPU time over {}'s in the same round",
            labels.first().map_or("", String::as_str)
        ),
        "ratio, per round",
        labels,
        paired.iter_mut().map(|v| mmm(v, 2, "")).collect(),
    );
    table(
        "2. stop: asking for every service's stop -> every service process ended",
        "ms, per round",
        labels,
        rows(&mut |r| mmm(&mut r.stop_ms, 1, ""), results),
    );
    table(
        "3. restart after SIGKILL: kill -> successor running",
        "us, every kill of every round",
        labels,
        rows(
            &mut |r| {
                let n = r.restart_us.len();
                format!("{}  n={n}", mmm(&mut r.restart_us, 1, ""))
            },
            results,
        ),
    );
    println!("\n== 4. memory and fds of the supervisor's processes (helpers included), median of the rounds ==");
    println!(
        "{:<34} {:>6} {:>10} {:>10} {:>10} {:>8} {:>9} {:>12}",
        "", "procs", "RSS kB", "Pss kB", "Pss/svc B", "fds", "fds/svc", "slab/svc B"
    );
    for (l, r) in labels.iter().zip(results.iter_mut()) {
        let pss = if r.pss_kib.is_empty() {
            f64::NAN
        } else {
            median(&mut r.pss_kib)
        };
        let per = |total: f64| total / n as f64;
        let fds = median(&mut r.fds);
        println!(
            "{l:<34} {:>6.0} {:>10.0} {:>10.0} {:>10.0} {:>8.0} {:>9.2} {:>12.0}",
            median(&mut r.procs),
            median(&mut r.rss_kib),
            pss,
            per(pss * 1024.0),
            fds,
            per(fds),
            median(&mut r.slab_per_service)
        );
    }
    println!("(slab/svc: growth of Slab in /proc/meminfo from before the start to the running tree, per service, services' own kernel objects included; rounds: min-max below)");
    for (l, r) in labels.iter().zip(results.iter_mut()) {
        println!(
            "{l:<34} RSS kB {}   slab/svc B {}",
            mmm(&mut r.rss_kib, 0, ""),
            mmm(&mut r.slab_per_service, 0, "")
        );
    }
    table(
        "5a. idle: CPU time of the supervisor's processes (schedstat), per 60 s",
        "ms, per round",
        labels,
        rows(&mut |r| mmm(&mut r.idle_cpu_ms, 2, ""), results),
    );
    table(
        "5b. idle: utime+stime clock ticks of the supervisor's processes, per 60 s",
        "ticks, per round",
        labels,
        rows(&mut |r| mmm(&mut r.idle_ticks, 1, ""), results),
    );
    table(
        "5c. idle: wakeups (voluntary context switches) of the supervisor's processes",
        "per s, per round",
        labels,
        rows(&mut |r| mmm(&mut r.idle_wakeups, 2, ""), results),
    );
    table(
        "6. `run --wait /bin/true` through the CLI, its own start included",
        "us, every run of every round",
        labels,
        rows(
            &mut |r| {
                let n = r.run_true_us.len();
                let s = mmm(&mut r.run_true_us, 0, "   (no such command)");
                if n > 0 {
                    format!("{s}  n={n}")
                } else {
                    s
                }
            },
            results,
        ),
    );
}
