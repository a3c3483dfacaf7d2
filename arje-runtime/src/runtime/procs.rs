//! The process table: spawning, the live pid → command map, and reaping. Owns the spawner,
//! /dev/null (every child's stdin), and the orphan-scan rule; the pidfds themselves live
//! with each run ([`super::commands::Run`]), so a run's pidfd is closed with it.
//!
//! Reaping has two paths. A command's pidfd becoming readable reaps exactly that process
//! (`waitid(P_PIDFD)`: O(1), whatever the number of other children). Orphans the kernel
//! reparents to us (PID 1 or a subreaper) are found with `waitid(P_ALL)` in a loop, which
//! scans every child (2.9 ms with 10,000 of them): so a SIGCHLD from one of our own
//! commands defers that scan ([`ORPHAN_SCAN_DELAY`], or the next non-`run` request), and
//! only a SIGCHLD from an unknown pid scans at once. A pid reaped by either path is
//! reported once: [`Procs::exited`] removes it from the table.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use shuma_card::ExitStatus;

use super::sessions::ProcStat;
use crate::ids::CommandId;
use crate::sys::spawn::{CgroupTarget, ExecPlan, SpawnError, Spawned, Spawner};

/// Pids reaped lately, so a SIGCHLD read after the pidfd event still counts as ours.
pub const RECENTLY_REAPED: usize = 256;

/// How long a possibly merged orphan SIGCHLD may wait for its scan.
pub const ORPHAN_SCAN_DELAY: Duration = Duration::from_millis(20);

/// What reaping through a pidfd found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PidfdExit {
    /// Not exited after all (a spurious wakeup, or a stop/continue report).
    NotYet,
    Exited(ExitStatus),
    /// It exited, but how cannot be known (the reason, for the journal). The run ends
    /// with status signal 0, which no real exit has.
    Unknown(String),
}

/// How a process that is not our child ended: from the pidfd if the kernel has recorded
/// it (Linux 6.15, once the real parent reaped it), else from `/proc/<pid>/stat` while
/// it is still a zombie with the start time we know (so never another process's), else
/// from the pidfd again in case it was reaped meanwhile.
fn foreign_exit(pid: i32, pidfd: BorrowedFd<'_>, start_ticks: u64) -> Option<ExitStatus> {
    let from_pidfd = || crate::sys::pidfd::exit_status(pidfd).map(decode_wait_status);
    from_pidfd()
        .or_else(|| zombie_exit(pid, start_ticks))
        .or_else(from_pidfd)
}

/// A zombie's wait status, field 52 of `/proc/<pid>/stat` (Linux 3.5). The kernel shows
/// it only to a reader that may ptrace the process, and 0 to others, so it is trusted
/// only when arje is root.
fn zombie_exit(pid: i32, start_ticks: u64) -> Option<ExitStatus> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_zombie_stat(&stat, start_ticks).map(decode_wait_status)
}

/// The wait status of a `/proc/PID/stat` line if it is a zombie started at
/// `start_ticks` (±1 tick, as `persist::still_running`). Fields are counted from the
/// last ')': the command name may contain anything.
fn parse_zombie_stat(stat: &str, start_ticks: u64) -> Option<i32> {
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..]
        .split_ascii_whitespace()
        .collect();
    let field = |n: usize| fields.get(n - 3).copied();
    let started: u64 = field(22)?.parse().ok()?;
    if field(3)? != "Z" || started.abs_diff(start_ticks) > 1 {
        return None;
    }
    field(52)?.parse().ok()
}

/// A wait(2) status word: exited with a code, or killed by a signal.
fn decode_wait_status(status: i32) -> ExitStatus {
    if status & 0x7f == 0 {
        ExitStatus::Code((status >> 8) & 0xff)
    } else {
        ExitStatus::Signal(status & 0x7f)
    }
}

/// What a SIGCHLD record asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// From an unknown pid: an orphan; scan now.
    Now,
    /// From one of ours: its pidfd reaps it; scan later in case an orphan's SIGCHLD
    /// merged into it.
    Later,
}

pub struct Procs {
    spawner: Spawner,
    dev_null: OwnedFd,
    /// Live pid → command. A pid leaves the map the moment it is reaped.
    pids: HashMap<i32, CommandId>,
    recently_reaped: VecDeque<i32>,
    /// Processes a stop holds besides its commands' runs (`stop.rs`): pid → command.
    stragglers: HashMap<i32, CommandId>,
    /// Probe processes (`probes.rs`) by pid, with the command they probe. Not commands:
    /// their exits go to the probe, never to the supervisor.
    probes: HashMap<i32, CommandId>,
    /// arje's children that are neither runs nor held by a stop, read once per turn
    /// ([`Procs::orphans`]); `Some(None)`: the kernel cannot list children.
    orphans: Option<Option<Vec<ProcStat>>>,
    /// A SIGCHLD may stand for an orphan not reaped yet.
    scan_pending: bool,
    orphans_reaped: u64,
}

impl Procs {
    /// `child_nofile`: the soft RLIMIT_NOFILE children get ([`crate::Config`]).
    pub fn new(child_nofile: Option<u64>) -> std::io::Result<Procs> {
        let dev_null = rustix::fs::open(
            "/dev/null",
            rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        let reset: Vec<i32> = super::signals::ignored().collect();
        let mut spawner = Spawner::new(&reset);
        // A subreaper started with a raised oom_score_adj (to protect itself) must not
        // pass it on to its children.
        spawner.nofile = child_nofile.map(|soft| {
            let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
                .maximum
                .unwrap_or(libc::RLIM_INFINITY);
            libc::rlimit {
                rlim_cur: soft.min(hard),
                rlim_max: hard,
            }
        });
        spawner.reset_oom_score_adj =
            std::fs::read_to_string("/proc/self/oom_score_adj").is_ok_and(|v| v.trim() != "0");
        Ok(Procs {
            spawner,
            dev_null,
            pids: HashMap::new(),
            recently_reaped: VecDeque::new(),
            stragglers: HashMap::new(),
            probes: HashMap::new(),
            orphans: None,
            scan_pending: false,
            orphans_reaped: 0,
        })
    }

    /// Start `plan` with `stdin` (/dev/null if `None`) and `out`/`err` as stdout/stderr, born in
    /// `target`'s cgroup, and track it as `id`'s.
    pub fn spawn(
        &mut self,
        id: CommandId,
        plan: &ExecPlan,
        (stdin, out, err): (Option<BorrowedFd<'_>>, BorrowedFd<'_>, BorrowedFd<'_>),
        extra: Option<(BorrowedFd<'_>, u32)>,
        target: Option<&CgroupTarget<'_>>,
    ) -> Result<Spawned, SpawnError> {
        let stdin = stdin.unwrap_or(self.dev_null.as_fd());
        let spawned = self
            .spawner
            .spawn_with(plan, [stdin, out, err], extra, target)?;
        self.pids.insert(spawned.pid, id);
        Ok(spawned)
    }

    /// Start a probe of command `id`: stdio on /dev/null, in `target` if given.
    pub fn spawn_probe(
        &mut self,
        id: CommandId,
        plan: &ExecPlan,
        target: Option<&CgroupTarget<'_>>,
    ) -> Result<Spawned, SpawnError> {
        let null = self.dev_null.as_fd();
        let spawned = self.spawner.spawn(plan, [null, null, null], target)?;
        self.probes.insert(spawned.pid, id);
        Ok(spawned)
    }

    /// The command a reaped pid was probing, if it was a probe.
    pub fn probe_exited(&mut self, pid: i32) -> Option<CommandId> {
        self.probes.remove(&pid)
    }

    /// A probe given up on (killed): its exit, reaped later, is an orphan's.
    pub fn probe_forget(&mut self, pid: i32) {
        self.probes.remove(&pid);
    }

    /// A process adopted after a re-exec, or a main pid named by `MAINPID=`.
    pub fn track(&mut self, pid: i32, id: CommandId) {
        self.pids.insert(pid, id);
    }

    /// A process a stop holds for command `id` besides its run.
    pub fn hold_straggler(&mut self, pid: i32, id: CommandId) {
        self.stragglers.insert(pid, id);
    }

    /// arje's live children that are neither runs nor held by a stop: orphans the kernel
    /// reparented to it, not reaped because they still run. Read at most once per turn
    /// (a stop of 10,000 commands sweeps 10,000 sessions in one turn); `None` where the
    /// kernel cannot list children.
    pub fn orphans(&mut self) -> Option<&[ProcStat]> {
        if self.orphans.is_none() {
            let me = std::process::id() as i32;
            let list = super::sessions::children(me).map(|pids| {
                pids.into_iter()
                    .filter(|pid| !self.holds(*pid))
                    .filter_map(super::sessions::stat)
                    .filter(|p| !p.is_zombie())
                    .collect()
            });
            self.orphans = Some(list);
        }
        self.orphans.as_ref().and_then(|o| o.as_deref())
    }

    /// A turn is over: what [`Procs::orphans`] read may be stale by the next.
    pub fn end_turn(&mut self) {
        self.orphans = None;
    }

    /// Is `pid` the process of a command's run (a session leader of its own)?
    pub fn is_run(&self, pid: i32) -> bool {
        self.pids.contains_key(&pid)
    }

    /// Is `pid` a command's run or a process a stop holds?
    pub fn holds(&self, pid: i32) -> bool {
        self.pids.contains_key(&pid)
            || self.stragglers.contains_key(&pid)
            || self.probes.contains_key(&pid)
    }

    /// A held process is gone (or `pid` was reaped): whose it was, if one.
    pub fn straggler_gone(&mut self, pid: i32) -> Option<CommandId> {
        self.stragglers.remove(&pid)
    }

    /// Stop tracking a pid whose command is gone (killed at the shutdown deadline): it is
    /// reaped later as an orphan.
    pub fn forget(&mut self, pid: i32) {
        self.pids.remove(&pid);
    }

    pub fn running(&self) -> usize {
        self.pids.len()
    }

    pub fn orphans_reaped(&self) -> u64 {
        self.orphans_reaped
    }

    pub fn scan_pending(&self) -> bool {
        self.scan_pending
    }

    /// A SIGCHLD record from `pid` arrived.
    pub fn on_sigchld(&mut self, pid: i32) -> Scan {
        // The pidfd event may have been handled first in this batch: a command reaped a
        // moment ago counts as ours too.
        if self.pids.contains_key(&pid)
            || self.probes.contains_key(&pid)
            || self.recently_reaped.contains(&pid)
        {
            self.scan_pending = true;
            Scan::Later
        } else {
            Scan::Now
        }
    }

    /// Reap the process behind `pidfd` if it has exited. `start_ticks` is its start time
    /// as recorded (see [`crate::persist::still_running`]), to recognise it in /proc.
    pub fn reap_pidfd(&mut self, pid: i32, pidfd: BorrowedFd<'_>, start_ticks: u64) -> PidfdExit {
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::__WALL;
        match waitid(Id::PIDFd(pidfd), flags) {
            Ok(WaitStatus::Exited(_, code)) => PidfdExit::Exited(ExitStatus::Code(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                PidfdExit::Exited(ExitStatus::Signal(sig as i32))
            }
            Ok(_) | Err(nix::Error::EINTR) => PidfdExit::NotYet,
            // Not our child: a process adopted after a crash restart. Its parent was the
            // arje that crashed; the kernel gave it to the next subreaper or init, which
            // reaps it, so waitid cannot. Its pidfd still says that it exited, and the
            // status can still be read, from /proc while it is a zombie or from the
            // pidfd once reaped.
            // Not (yet) arje's child and still running: e.g. a MAINPID= whose parent has
            // not exited, seen through a stale event of the previous main process.
            Err(nix::Error::ECHILD)
                if super::sessions::stat(pid)
                    .is_some_and(|s| s.start_ticks == start_ticks && !s.is_zombie()) =>
            {
                PidfdExit::NotYet
            }
            Err(nix::Error::ECHILD) => match foreign_exit(pid, pidfd, start_ticks) {
                Some(status) => PidfdExit::Exited(status),
                None => PidfdExit::Unknown(format!(
                    "pid {pid} exited, but its exit status is unknown: it is not arje's \
                     child (adopted after a crash restart) and its parent reaped it first; \
                     recorded as signal 0"
                )),
            },
            Err(e) => {
                // Record the run as ended rather than keep a dead pid on the books.
                PidfdExit::Unknown(format!(
                    "waitid on the pidfd of pid {pid}: {e}; its exit is recorded as signal 0"
                ))
            }
        }
    }

    /// Reap every child that has exited (orphans, and commands whose pidfd event has not
    /// been handled yet), until nothing is left.
    pub fn reap_all(&mut self) -> Vec<(i32, ExitStatus)> {
        self.scan_pending = false;
        let mut reaped = Vec::new();
        loop {
            match waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG) {
                Ok(WaitStatus::Exited(pid, code)) => {
                    reaped.push((pid.as_raw(), ExitStatus::Code(code)))
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    reaped.push((pid.as_raw(), ExitStatus::Signal(sig as i32)))
                }
                Ok(WaitStatus::StillAlive) => return reaped,
                Ok(_) | Err(nix::Error::EINTR) => continue,
                Err(_) => return reaped, // ECHILD: no children at all.
            }
        }
    }

    /// `pid` was reaped: whose it was, if ours (an orphan is counted).
    pub fn exited(&mut self, pid: i32) -> Option<CommandId> {
        if self.recently_reaped.len() == RECENTLY_REAPED {
            self.recently_reaped.pop_front();
        }
        self.recently_reaped.push_back(pid);
        let id = self.pids.remove(&pid);
        if id.is_none() {
            self.orphans_reaped += 1;
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zombie's stat line as Linux 6.x prints it (52 fields), with a name that tries
    /// to shift the fields.
    fn zombie_line(start: u64, exit_code: i32) -> String {
        let mut fields: Vec<String> = (3..=52).map(|_| "0".to_string()).collect();
        fields[0] = "Z".into();
        fields[22 - 3] = start.to_string();
        fields[52 - 3] = exit_code.to_string();
        format!("4242 (a) b Z 1 (x)) {}\n", fields.join(" "))
    }

    #[test]
    fn test_parse_zombie_stat_reads_exit_code_of_same_process() {
        let line = zombie_line(1000, 15);

        assert_eq!(parse_zombie_stat(&line, 1000), Some(15));
        assert_eq!(parse_zombie_stat(&line, 1001), Some(15));
    }

    #[test]
    fn test_parse_zombie_stat_other_start_time_or_running_is_none() {
        let line = zombie_line(1000, 15);
        let running = line.replacen(") Z ", ") S ", 1);

        assert_eq!(parse_zombie_stat(&line, 2000), None);
        assert_eq!(parse_zombie_stat(&running, 1000), None);
    }

    #[test]
    fn test_foreign_exit_after_its_parent_reaped_it_read_from_pidfd() {
        use std::io::BufRead;
        use std::os::fd::AsFd;
        // A sleep whose parent is a shell, not us: the shell reaps it.
        let mut sh = std::process::Command::new("/bin/sh")
            .args(["-c", "/bin/sleep 1000 & echo $!; wait $!"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(sh.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let pid: i32 = line.trim().parse().unwrap();
        let pidfd = rustix::process::pidfd_open(
            rustix::process::Pid::from_raw(pid).unwrap(),
            rustix::process::PidfdFlags::empty(),
        )
        .unwrap();
        let start = crate::persist::process_start_time(pid).unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        // The shell exits once its `wait` has reaped the sleep.
        sh.wait().unwrap();

        let status = foreign_exit(pid, pidfd.as_fd(), start);

        // PIDFD_INFO_EXIT needs Linux 6.15; before it the status is honestly unknown.
        let (major, minor) = kernel_version();
        if (major, minor) >= (6, 15) {
            assert_eq!(status, Some(ExitStatus::Signal(15)));
        } else {
            assert_eq!(status, None);
        }
    }

    fn kernel_version() -> (u32, u32) {
        let uname = rustix::system::uname();
        let release = uname.release().to_string_lossy().into_owned();
        let mut parts = release.split(['.', '-']).map(|p| p.parse().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    }

    #[test]
    fn test_decode_wait_status_code_and_signal() {
        assert_eq!(decode_wait_status(3 << 8), ExitStatus::Code(3));
        assert_eq!(decode_wait_status(15), ExitStatus::Signal(15));
        // Killed by SIGSEGV with a core dump (0x80).
        assert_eq!(decode_wait_status(0x80 | 11), ExitStatus::Signal(11));
    }
}
