//! Processes as `/proc/PID/stat` shows them: parent, process group, session and start
//! time. Without a cgroup, the session is what ties a command's descendants to it (the
//! spawner calls setsid, so a run's session id is its pid); after a crash, the session
//! tells a command's main process from its descendants in a leaf cgroup.
//!
//! A session id names a session only while the session has a member: the kernel keeps a
//! pid allocated while any process uses it as its pid, process group or session id, so
//! while the run itself is unreaped its pid cannot be handed to another process, and
//! nothing outside the run's session can have that session id. Sweeps rely on this and
//! run only while the run is unreaped (see `stop.rs`).

/// The fields of one `/proc/PID/stat` line that arje uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: i32,
    /// Field 3: `Z` for a zombie.
    pub state: char,
    /// Field 4.
    pub ppid: i32,
    /// Field 5.
    pub pgid: i32,
    /// Field 6: the session id, the pid of the session's leader.
    pub sid: i32,
    /// Field 22: start time in clock ticks since boot.
    pub start_ticks: u64,
}

impl ProcStat {
    /// A session leader: the process that called setsid, as the spawner's child does.
    pub fn leads_session(&self) -> bool {
        self.sid == self.pid
    }

    pub fn is_zombie(&self) -> bool {
        self.state == 'Z'
    }
}

/// Parse a `/proc/PID/stat` line. Fields are counted from the *last* ')': the command
/// name in field 2 may contain spaces and ')'.
pub fn parse_stat(line: &str) -> Option<ProcStat> {
    let pid = line.split_once(' ')?.0.parse().ok()?;
    let fields: Vec<&str> = line[line.rfind(')')? + 1..]
        .split_ascii_whitespace()
        .collect();
    let field = |n: usize| fields.get(n - 3).copied();
    Some(ProcStat {
        pid,
        state: field(3)?.chars().next()?,
        ppid: field(4)?.parse().ok()?,
        pgid: field(5)?.parse().ok()?,
        sid: field(6)?.parse().ok()?,
        start_ticks: field(22)?.parse().ok()?,
    })
}

/// One process's stat, if it exists.
pub fn stat(pid: i32) -> Option<ProcStat> {
    if pid <= 0 {
        return None;
    }
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The children of `pid`, of every thread of it, from `/proc/PID/task/TID/children`:
/// one read per thread instead of one per process on the machine. `None` where the
/// kernel has no such files (built without CONFIG_PROC_CHILDREN); empty for a process
/// that is gone.
pub fn children(pid: i32) -> Option<Vec<i32>> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Some(Vec::new());
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        match std::fs::read_to_string(task.path().join("children")) {
            Ok(text) => out.extend(
                text.split_ascii_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !task.path().exists() => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(_) => {}
        }
    }
    Some(out)
}

/// Every live process below `roots` and the roots themselves, walking the children
/// files (`None` without them), skipping what `seen` holds and adding what it walks. The
/// second list holds those not in session `sid`.
///
/// A zombie's children are not walked: the kernel moved them to the reaper (arje, a
/// subreaper) before the zombie became visible, so they are among arje's children.
pub fn descendants(
    roots: Vec<i32>,
    sid: i32,
    seen: &mut std::collections::HashSet<i32>,
) -> Option<(Vec<ProcStat>, Vec<ProcStat>)> {
    let (mut found, mut left) = (Vec::new(), Vec::new());
    let mut stack = roots;
    while let Some(pid) = stack.pop() {
        if !seen.insert(pid) {
            continue;
        }
        let Some(p) = stat(pid).filter(|p| !p.is_zombie()) else {
            continue;
        };
        if p.sid != sid {
            left.push(p);
        }
        found.push(p);
        stack.extend(children(pid)?);
    }
    Some((found, left))
}

/// Every process /proc lists (one read per process; a process gone meanwhile is
/// skipped). The fallback where [`children`] has nothing.
pub fn all() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat)
        .collect()
}

/// Is the process `pid` that started at `start_ticks` still there (running or a zombie
/// not yet reaped)? A recycled pid has a later start time.
pub fn present(pid: i32, start_ticks: u64) -> bool {
    stat(pid).is_some_and(|s| s.start_ticks == start_ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_stat_name_with_parens_and_spaces_reads_the_right_fields() {
        let mut fields: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
        fields[0] = "S".into();
        let line = format!("4242 (a) b (c)) {}\n", fields.join(" "));

        let s = parse_stat(&line).unwrap();

        assert_eq!(
            s,
            ProcStat {
                pid: 4242,
                state: 'S',
                ppid: 4,
                pgid: 5,
                sid: 6,
                start_ticks: 22
            }
        );
        assert!(!s.leads_session());
    }

    #[test]
    fn test_children_and_descendants_of_this_process_include_a_child() {
        let me = std::process::id() as i32;
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("3600")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;

        let children = children(me);
        // No process is in session -1 (sids are pids, or 0 for a session led from
        // outside this pid namespace, as under CI), so every process found has "left" it.
        let below = descendants(vec![me], -1, &mut Default::default());
        let _ = child.kill();
        let _ = child.wait();

        // A kernel without CONFIG_PROC_CHILDREN has neither; every other lists the child.
        if let Some(children) = children {
            assert!(children.contains(&pid), "{children:?}");
            let (found, left) = below.unwrap();
            assert!(found.iter().any(|p| p.pid == pid));
            assert_eq!(found.len(), left.len(), "session -1 holds nothing");
        }
    }

    #[test]
    fn test_stat_of_this_process_matches_its_ids() {
        let me = std::process::id() as i32;

        let s = stat(me).unwrap();

        assert_eq!(s.pid, me);
        // nix, not rustix: getsid is 0 when the session's leader is outside this pid
        // namespace (as under CI), and rustix's Pid cannot hold 0 (it panics).
        assert_eq!(s.sid, nix::unistd::getsid(None).unwrap().as_raw());
        assert!(present(me, s.start_ticks));
        assert!(!present(me, s.start_ticks + 1));
    }
}
