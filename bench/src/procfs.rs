//! What /proc says about processes and the kernel's memory, for the benchmarks that
//! measure a supervisor from outside.

use std::collections::{HashMap, HashSet};
use std::path::Path;

/// A `KEY:` line of /proc/meminfo, in KiB.
pub fn meminfo_kib(key: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").expect("read /proc/meminfo");
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{key}: in /proc/meminfo"))
}

/// `Slab:` of /proc/meminfo, in KiB: the kernel's object caches (tasks, files, pipes...).
pub fn slab_kib() -> u64 {
    meminfo_kib("Slab")
}

/// pid -> parent pid of every process, from /proc/PID/stat.
fn parents() -> HashMap<i32, i32> {
    let mut out = HashMap::new();
    for e in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Some(f) = stat_fields(pid) {
            if let Some(ppid) = f.get(1).and_then(|v| v.parse().ok()) {
                out.insert(pid, ppid);
            }
        }
    }
    out
}

/// The fields of /proc/PID/stat after the command name (`state` is the first).
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name is in parentheses and may hold spaces and parentheses itself.
    let rest = &text[text.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// `root` and its live descendants, without those in `except` (and theirs).
pub fn tree(root: i32, except: &HashSet<i32>) -> Vec<i32> {
    let parents = parents();
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (&pid, &ppid) in &parents {
        children.entry(ppid).or_default().push(pid);
    }
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(p) = todo.pop() {
        if except.contains(&p) || !parents.contains_key(&p) {
            continue;
        }
        out.push(p);
        todo.extend(children.get(&p).into_iter().flatten());
    }
    out.sort_unstable();
    out
}

/// One process's figures.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcSample {
    pub rss_kib: u64,
    /// From smaps_rollup; `None` where it cannot be read.
    pub pss_kib: Option<u64>,
    pub fds: u64,
    /// utime + stime of all its threads, in clock ticks.
    pub ticks: u64,
    /// Time on a CPU of all its threads from /proc/PID/task/TID/schedstat, in ns.
    pub run_ns: u64,
    /// Voluntary context switches of all its threads: its wakeups, roughly.
    pub voluntary: u64,
    pub involuntary: u64,
}

impl std::ops::AddAssign for ProcSample {
    fn add_assign(&mut self, o: ProcSample) {
        self.rss_kib += o.rss_kib;
        self.pss_kib = self.pss_kib.zip(o.pss_kib).map(|(a, b)| a + b);
        self.fds += o.fds;
        self.ticks += o.ticks;
        self.run_ns += o.run_ns;
        self.voluntary += o.voluntary;
        self.involuntary += o.involuntary;
    }
}

fn status_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The figures of `pid`, or `None` if it is gone.
pub fn sample(pid: i32) -> Option<ProcSample> {
    let f = stat_fields(pid)?;
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let pss_kib = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|t| status_kib(&t, "Pss"));
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    let mut s = ProcSample {
        rss_kib: status_kib(&status, "VmRSS").unwrap_or(0),
        pss_kib,
        fds,
        ticks,
        ..ProcSample::default()
    };
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let dir = t.path();
        s.run_ns += read_first_u64(&dir.join("schedstat")).unwrap_or(0);
        if let Ok(st) = std::fs::read_to_string(dir.join("status")) {
            s.voluntary += status_kib(&st, "voluntary_ctxt_switches").unwrap_or(0);
            s.involuntary += status_kib(&st, "nonvoluntary_ctxt_switches").unwrap_or(0);
        }
    }
    Some(s)
}

fn read_first_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The figures of each of `pids` still alive.
pub fn sample_all(pids: &[i32]) -> HashMap<i32, ProcSample> {
    pids.iter().filter_map(|&p| Some((p, sample(p)?))).collect()
}

/// The kernel's clock tick (`sysconf(_SC_CLK_TCK)`), for [`ProcSample::ticks`].
pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no memory effects.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as u64 }
}
