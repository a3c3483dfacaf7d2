//! Starting a child: clone3(CLONE_VM | CLONE_VFORK | CLONE_PIDFD [| CLONE_INTO_CGROUP]).
//!
//! Why this shape:
//! - `CLONE_VM | CLONE_VFORK` is what posix_spawn does inside: the child borrows the
//!   parent's memory on a small stack of its own until it execs, so a spawn costs the
//!   same from a 2 MiB arje as from a 512 MiB one (a plain fork copies page tables).
//! - `CLONE_PIDFD` gives a handle that names this process and no other: signals go
//!   through `pidfd_send_signal`, so a recycled pid is never hit.
//! - `CLONE_INTO_CGROUP` makes the child born inside its workspace's leaf cgroup: it
//!   never runs a single instruction outside it, and no `cgroup.procs` write (measured
//!   at 6-10 ms here) sits on the spawn path.
//!
//! The child runs [`child_main`] on the borrowed stack. It shares the parent's memory,
//! so it must not allocate, lock, or unwind: everything it needs is prepared in
//! [`ExecPlan`] beforehand, and it reports a failure by storing errno in the shared
//! context before `_exit(127)`. The parent is suspended (`CLONE_VFORK`) until the child
//! execs or exits, so reading that context afterwards is race-free.
//!
//! The child's exit signal is SIGCHLD, as for fork: exec resets it to SIGCHLD anyway
//! (the kernel's de_thread, "we have changed execution domain"), so a clone-style
//! exit signal of 0 would not keep it out of `waitid(P_ALL)` once it runs its program.
//! The runtime reaps its commands through their pidfds and scans for orphans only when a
//! SIGCHLD may stand for one (see `runtime/commands.rs`).
//!
//! clone3 is required: Linux 5.3, and 5.7 for `CLONE_INTO_CGROUP`. There is no fallback
//! to clone(2): it has no `CLONE_INTO_CGROUP`, so a child would have to move itself with
//! a `cgroup.procs` write before exec, a second placement path that `shuma caps` would
//! have to tell apart. Where clone3 is missing (ENOSYS: a kernel before 5.3, or a
//! seccomp filter) every spawn fails with [`SpawnError::Clone`], whose message names the
//! requirement. [`probe_clone_into_cgroup`] asks the same question once, without
//! starting a process, so that cgroup setup can refuse a host where children could not
//! be born in their cgroup instead of claiming limits it cannot apply.
//!
//! The child's fd table. Without `CLONE_FILES` the kernel copies arje's whole table into
//! the child, sized to arje's highest open fd, and exec keeps that size even after
//! closing every close-on-exec fd: with 1,000 services (3 fds each in arje) every child
//! carried a 3,000-slot table, about 24 KiB of kernel memory, and a spawn among 10,000
//! live children spent most of its time copying it. So the child shares arje's table at
//! clone (`CLONE_FILES`) and unshares it at once with `close_range(N, ~0,
//! CLOSE_RANGE_UNSHARE)` (Linux 5.9), which copies only fds below N. What it must keep
//! (its stdio and the notification fd) is first placed by the parent in four low
//! *slots* reserved for that at start ([`Slots`], /dev/null between spawns), so N is
//! small and the child's table is the kernel's embedded one. Where close_range cannot
//! unshare (before 5.9), the child unshares with `unshare(CLONE_FILES)`, a full copy as
//! before. While the table is shared the child touches no fd: the other thread of arje
//! (the durable writer) opens and closes fds meanwhile, above the slots.
//!
//! The child is started by a few lines of x86_64 assembly (a clone3 child begins on its
//! new stack with no frame to return to), so other architectures do not build.

use std::ffi::{c_int, c_void, CString};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::signals::{rt_sigaction, KernelSigaction};

/// `CLONE_INTO_CGROUP` (Linux 5.7); libc only defines it for glibc targets.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
/// `__NR_clone3` (Linux 5.3).
const SYS_CLONE3: libc::c_long = 435;
/// `__NR_close_range` (Linux 5.9).
const SYS_CLOSE_RANGE: libc::c_long = 436;
/// Stack the child runs on until exec. It only calls a handful of libc wrappers.
const CHILD_STACK: usize = 64 * 1024;

/// The kernel's `struct clone_args`, version 2 (with `cgroup`).
#[repr(C, align(8))]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Everything the child needs, prepared in the parent: the child may not allocate.
pub struct ExecPlan {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    cwd: Option<CString>,
    /// uid, gid, supplementary groups.
    creds: Option<(u32, u32, Vec<libc::gid_t>)>,
    /// An environment entry `NAME=` whose value the child fills in with its own pid
    /// (`WATCHDOG_PID`, which only the child knows before exec), and where the value
    /// starts. An `UnsafeCell`: the child writes it through the shared plan.
    pid_env: Option<(Box<std::cell::UnsafeCell<[u8; PID_ENV_LEN]>>, usize)>,
    /// Resource limits set in the child before exec, after arje's RLIMIT_NOFILE reset
    /// (so a card's `nofile` wins).
    rlimits: Vec<(c_int, libc::rlimit)>,
}

/// Bytes of a pid-valued environment entry: a name of up to 31 bytes, `=`, and room for
/// the 20 digits of any u64 and the NUL, so the child can never write past it.
const PID_ENV_LEN: usize = 54;

impl ExecPlan {
    /// `argv[0]` is the program's path; `env` is the whole environment.
    pub fn new(
        argv: &[String],
        env: &[(String, String)],
        cwd: Option<&str>,
        creds: Option<(u32, u32, Vec<u32>)>,
    ) -> Result<ExecPlan, SpawnError> {
        let cstr = |s: &str| CString::new(s).map_err(|_| SpawnError::Nul(s.to_string()));
        let first = argv.first().ok_or(SpawnError::EmptyArgv)?;
        let path = cstr(first)?;
        let argv: Vec<CString> = argv.iter().map(|a| cstr(a)).collect::<Result<_, _>>()?;
        let envp: Vec<CString> = env
            .iter()
            .map(|(k, v)| cstr(&format!("{k}={v}")))
            .collect::<Result<_, _>>()?;
        let cwd = cwd.map(cstr).transpose()?;
        let mut plan = ExecPlan {
            path,
            argv,
            envp,
            argv_ptrs: Vec::new(),
            envp_ptrs: Vec::new(),
            cwd,
            creds,
            pid_env: None,
            rlimits: Vec::new(),
        };
        plan.argv_ptrs = plan
            .argv
            .iter()
            .map(|a| a.as_ptr())
            .chain([std::ptr::null()])
            .collect();
        plan.envp_ptrs = plan
            .envp
            .iter()
            .map(|a| a.as_ptr())
            .chain([std::ptr::null()])
            .collect();
        Ok(plan)
    }

    /// Resource limits for the child: `(resource, soft, hard)`, `None` unlimited.
    pub fn with_rlimits(mut self, limits: &[(c_int, Option<u64>, Option<u64>)]) -> ExecPlan {
        let value = |v: Option<u64>| v.unwrap_or(libc::RLIM_INFINITY);
        self.rlimits = limits
            .iter()
            .map(|&(res, soft, hard)| {
                let lim = libc::rlimit {
                    rlim_cur: value(soft),
                    rlim_max: value(hard),
                };
                (res, lim)
            })
            .collect();
        self
    }

    /// Add `name=<the child's pid>` to the environment, filled in by the child between
    /// clone and exec (systemd sets `WATCHDOG_PID` so; sd_watchdog_enabled(3) checks it).
    pub fn with_pid_env(mut self, name: &str) -> ExecPlan {
        if name.len() > 31 || name.contains('=') || name.contains('\0') {
            return self;
        }
        let mut buf = [0u8; PID_ENV_LEN];
        buf[..name.len()].copy_from_slice(name.as_bytes());
        buf[name.len()] = b'=';
        let cell = Box::new(std::cell::UnsafeCell::new(buf));
        let ptr = cell.get() as *const libc::c_char;
        // Before the trailing null.
        let at = self.envp_ptrs.len() - 1;
        self.envp_ptrs.insert(at, ptr);
        self.pid_env = Some((cell, name.len() + 1));
        self
    }
}

/// Why a spawn failed.
#[derive(Debug)]
pub enum SpawnError {
    EmptyArgv,
    /// An argument, variable or path holds a NUL byte.
    Nul(String),
    /// clone3 itself failed; ENOSYS and E2BIG mean the kernel is too old for it.
    Clone(std::io::Error),
    /// The child failed at `stage` (e.g. "execve /bin/x") with this error.
    Child {
        stage: &'static str,
        error: std::io::Error,
    },
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpawnError::EmptyArgv => write!(f, "empty argv"),
            SpawnError::Nul(s) => write!(f, "NUL byte in {s:?}"),
            SpawnError::Clone(e) => {
                write!(f, "clone3: {e}")?;
                match e.raw_os_error() {
                    Some(libc::ENOSYS) => write!(
                        f,
                        " (arje starts every process with clone3: Linux 5.3 or later, and no \
                         seccomp filter refusing it)"
                    ),
                    // The kernel's clone_args is shorter than ours and our `cgroup` is set.
                    Some(libc::E2BIG) => write!(
                        f,
                        " (a child born in its cgroup needs clone3's CLONE_INTO_CGROUP: Linux \
                         5.7 or later)"
                    ),
                    _ => Ok(()),
                }
            }
            SpawnError::Child { stage, error } => write!(f, "{stage}: {error}"),
        }
    }
}

impl std::error::Error for SpawnError {}

/// A started child.
#[derive(Debug)]
pub struct Spawned {
    pub pid: i32,
    pub pidfd: OwnedFd,
}

/// Shared between parent and child (CLONE_VM): inputs, and the failure report.
struct ChildCtx<'a> {
    plan: &'a ExecPlan,
    /// fds to become 0, 1, 2.
    stdio: [RawFd; 3],
    /// One more fd to hand over, as (source, number in the child): a readiness
    /// notification fd (s6's `notification-fd`).
    extra: Option<(RawFd, c_int)>,
    /// The child shares arje's fd table at clone and unshares it keeping fds below this
    /// (the slots); `None`: the table was copied at clone.
    unshare_below: Option<u32>,
    reset_oom: bool,
    /// Signals whose disposition is SIG_IGN in arje, 0-terminated.
    ignored: [c_int; MAX_RESET + 1],
    nofile: Option<libc::rlimit>,
    errno: c_int,
    stage: &'static str,
}

/// Reusable spawner: owns the child stack (the child runs on it only while the parent
/// is suspended, so one stack serves every spawn of this single-threaded loop).
pub struct Spawner {
    stack: Vec<u8>,
    /// arje protects itself from the OOM killer (oom_score_adj -1000 as a subreaper);
    /// children inherit the value, so the child resets its own to 0 before exec.
    pub reset_oom_score_adj: bool,
    /// Signals arje ignores (SIG_IGN survives exec), 0-terminated.
    ignored: [c_int; MAX_RESET + 1],
    /// RLIMIT_NOFILE to give the child (arje raised its own; see `arje-init`'s
    /// `limits.rs`), or `None` to leave the child arje's.
    pub nofile: Option<libc::rlimit>,
    /// Where the child's fds wait for it; `None` (no /dev/null): the table is copied.
    slots: Option<Slots>,
}

/// Four low fds reserved at start, holding /dev/null between spawns: for a spawn they
/// hold the child's stdin, stdout, stderr and notification fd, so that the child can
/// unshare the fd table keeping only the fds below the highest slot (module docs).
/// Always open, so no other open can take their numbers.
struct Slots {
    null: OwnedFd,
    fds: [OwnedFd; 4],
    /// The leading slots holding a spawn's fds (3, or 4 with a notification fd): those
    /// [`Slots::clear`] puts /dev/null back into.
    used: usize,
}

impl Slots {
    fn new() -> Option<Slots> {
        use rustix::fs::{open, Mode, OFlags};
        use rustix::io::fcntl_dupfd_cloexec;
        let null = open("/dev/null", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()).ok()?;
        let slot = || fcntl_dupfd_cloexec(&null, 3).ok();
        let fds = [slot()?, slot()?, slot()?, slot()?];
        Some(Slots { null, fds, used: 0 })
    }

    /// The fds below which the child keeps its table.
    fn below(&self) -> u32 {
        self.fds.iter().map(|f| f.as_raw_fd()).max().unwrap_or(2) as u32 + 1
    }

    /// Put `fds` into the slots (close-on-exec in arje; the child dup2s them), up to the
    /// first `None`.
    fn fill(&mut self, fds: [Option<BorrowedFd<'_>>; 4]) -> Result<(), SpawnError> {
        for fd in fds.into_iter().map_while(|fd| fd) {
            let slot = &mut self.fds[self.used];
            rustix::io::dup3(fd, slot, rustix::io::DupFlags::CLOEXEC).map_err(|e| {
                SpawnError::Child {
                    stage: "dup3 into a slot",
                    error: e.into(),
                }
            })?;
            self.used += 1;
        }
        Ok(())
    }

    /// /dev/null back into the slots a spawn used: what it put there (a pipe's write
    /// end) must not stay open in arje.
    fn clear(&mut self) {
        for slot in &mut self.fds[..self.used] {
            let _ = rustix::io::dup3(&self.null, slot, rustix::io::DupFlags::CLOEXEC);
        }
        self.used = 0;
    }
}

/// Most signals a spawner resets to SIG_DFL in the child.
const MAX_RESET: usize = 64;

impl Spawner {
    /// A spawner whose children get SIG_DFL back for each of `reset`: the signals arje
    /// sets to SIG_IGN, since an ignored disposition survives exec (handled ones are
    /// reset by the kernel, and the child's mask is emptied anyway). The runtime passes
    /// the ignored signals of its table (`runtime/signals.rs`).
    ///
    /// Make it early: its slots are the lowest free fds at that moment, and the child
    /// keeps a table as large as the highest slot.
    pub fn new(reset: &[c_int]) -> Spawner {
        let mut ignored = [0; MAX_RESET + 1];
        for (slot, &sig) in ignored.iter_mut().zip(reset.iter().take(MAX_RESET)) {
            *slot = sig;
        }
        Spawner {
            stack: vec![0u8; CHILD_STACK],
            reset_oom_score_adj: false,
            ignored,
            nofile: None,
            slots: Slots::new(),
        }
    }

    /// Copy arje's fd table into each child at clone, as before the slots (for the
    /// benchmark that compares the two).
    pub fn copy_fd_table(&mut self) {
        self.slots = None;
    }
}

impl Default for Spawner {
    /// Resets what the runtime's signal table ignores (the benchmarks' spawner).
    fn default() -> Self {
        let reset: Vec<c_int> = crate::runtime::signals::ignored().collect();
        Spawner::new(&reset)
    }
}

/// Where the child is born: the leaf cgroup's directory fd, passed to clone3 with
/// `CLONE_INTO_CGROUP`.
pub struct CgroupTarget<'a> {
    pub dir: BorrowedFd<'a>,
}

impl Spawner {
    /// Start `plan` with `stdio` as its fds 0, 1, 2, in `cgroup` if given.
    ///
    /// Every other fd of arje is close-on-exec (rustix, nix and std open them so), and
    /// the child also marks every fd above 2 close-on-exec with close_range(2), so an fd
    /// inherited by arje without the flag cannot leak either.
    pub fn spawn(
        &mut self,
        plan: &ExecPlan,
        stdio: [BorrowedFd<'_>; 3],
        cgroup: Option<&CgroupTarget<'_>>,
    ) -> Result<Spawned, SpawnError> {
        self.spawn_with(plan, stdio, None, cgroup)
    }

    /// [`Spawner::spawn`], and `extra`'s fd becomes fd number `extra.1` (3 or above) in
    /// the child, open across exec.
    pub fn spawn_with(
        &mut self,
        plan: &ExecPlan,
        stdio: [BorrowedFd<'_>; 3],
        extra: Option<(BorrowedFd<'_>, u32)>,
        cgroup: Option<&CgroupTarget<'_>>,
    ) -> Result<Spawned, SpawnError> {
        let (stdio, extra, unshare_below) = match &mut self.slots {
            Some(slots) => {
                let filled = slots.fill([
                    Some(stdio[0]),
                    Some(stdio[1]),
                    Some(stdio[2]),
                    extra.map(|(fd, _)| fd),
                ]);
                if let Err(e) = filled {
                    slots.clear();
                    return Err(e);
                }
                let fd = |i: usize| slots.fds[i].as_raw_fd();
                (
                    [fd(0), fd(1), fd(2)],
                    extra.map(|(_, n)| (fd(3), n as c_int)),
                    Some(slots.below()),
                )
            }
            None => (
                stdio.map(|fd| fd.as_raw_fd()),
                extra.map(|(fd, n)| (fd.as_raw_fd(), n as c_int)),
                None,
            ),
        };
        let mut ctx = ChildCtx {
            extra,
            plan,
            stdio,
            unshare_below,
            reset_oom: self.reset_oom_score_adj,
            ignored: self.ignored,
            nofile: self.nofile,
            errno: 0,
            stage: "",
        };
        let mut pidfd: c_int = -1;
        let stack_top = self.stack.as_mut_ptr() as u64;
        let mut args = CloneArgs {
            flags: (libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD) as u64,
            pidfd: &mut pidfd as *mut c_int as u64,
            exit_signal: libc::SIGCHLD as u64,
            stack: stack_top,
            stack_size: self.stack.len() as u64,
            ..Default::default()
        };
        if let Some(cg) = cgroup {
            args.flags |= CLONE_INTO_CGROUP;
            args.cgroup = cg.dir.as_raw_fd() as u64;
        }
        if ctx.unshare_below.is_some() {
            args.flags |= libc::CLONE_FILES as u64;
        }
        let ctx_ptr = &mut ctx as *mut ChildCtx<'_> as *mut c_void;
        // SAFETY: `args` describes a valid child stack owned by `self` and a valid pidfd
        // slot; the child runs `child_entry` with `ctx_ptr`, which stays alive because
        // CLONE_VFORK suspends us until the child has exec'd or exited.
        let ret = unsafe { raw_clone3(&mut args, child_entry, ctx_ptr) };
        if let Some(slots) = &mut self.slots {
            slots.clear();
        }
        if ret < 0 {
            return Err(SpawnError::Clone(std::io::Error::from_raw_os_error(
                -ret as i32,
            )));
        }
        // SAFETY: the kernel returned a fresh pidfd (CLONE_PIDFD) that nobody else owns.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        if ctx.errno != 0 {
            // The child died before exec; reap it now so no zombie is left behind. It is
            // our child and already exited (the vfork suspension ended with its _exit).
            let _ = nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(ret as i32),
                Some(nix::sys::wait::WaitPidFlag::__WALL),
            );
            return Err(SpawnError::Child {
                stage: ctx.stage,
                error: std::io::Error::from_raw_os_error(ctx.errno),
            });
        }
        Ok(Spawned {
            pid: ret as i32,
            pidfd,
        })
    }
}

/// Can clone3 start a child inside a cgroup here (`CLONE_INTO_CGROUP`, Linux 5.7)? Asked
/// without starting a process: clone3(2) with `CLONE_INTO_CGROUP` and a `cgroup` fd above
/// INT_MAX, which every kernel refuses while it copies the arguments, each in its own way:
/// - EINVAL: the kernel knows the `cgroup` field and rejected the fd: supported;
/// - E2BIG: the kernel's `struct clone_args` ends before `cgroup` (5.3 to 5.6), and the
///   bytes it does not know are not zero;
/// - ENOSYS: no clone3 (before 5.3) or a seccomp filter refusing it. A filter cannot
///   read clone3's arguments, so it refuses every clone3 alike, and what the probe meets
///   is what a spawn would meet.
///
/// Any error but EINVAL is returned as [`SpawnError::Clone`], which names the requirement.
pub fn probe_clone_into_cgroup() -> Result<(), SpawnError> {
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        cgroup: i32::MAX as u64 + 1,
        ..Default::default()
    };
    // SAFETY: clone3 only reads `args`, valid for its size; it fails before creating a
    // process (see above). Without CLONE_VM or a stack it would act as fork, so the
    // impossible success is handled like one below.
    let ret = unsafe {
        libc::syscall(
            SYS_CLONE3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        // SAFETY: in a forked child _exit is async-signal-safe and runs nothing of ours.
        0 => unsafe { libc::_exit(0) },
        pid if pid > 0 => {
            // The kernel took the arguments after all: it placed a child, so the flag
            // works. Reap it (exit signal 0: __WALL).
            let _ = nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(pid as i32),
                Some(nix::sys::wait::WaitPidFlag::__WALL),
            );
            Ok(())
        }
        _ => match std::io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
            e => Err(SpawnError::Clone(e)),
        },
    }
}

/// clone3 that starts the child on the given stack at `entry(arg)`.
///
/// The syscall returns twice; in the child, the kernel has switched `rsp` to the top of
/// the new stack, so the child must not return into Rust code of the parent's frame:
/// it calls `entry`, which never returns.
///
/// # Safety
/// `args` must describe a valid, writable stack; `entry` must never return and must be
/// safe to run on that stack sharing the parent's memory.
#[cfg(target_arch = "x86_64")]
unsafe fn raw_clone3(
    args: &mut CloneArgs,
    entry: extern "C" fn(*mut c_void) -> !,
    arg: *mut c_void,
) -> isize {
    let ret: isize;
    // SAFETY: the caller upholds the contract above; r12 and r13 survive the syscall in
    // the child, which only uses them to call `entry(arg)` on its new stack.
    unsafe {
        core::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            // Child: a fresh stack, 16-byte aligned at its top; no frame to return to.
            "xor ebp, ebp",
            "mov rdi, r13",
            "call r12",
            "ud2",
            "2:",
            inlateout("rax") SYS_CLONE3 as isize => ret,
            in("rdi") args as *mut CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") entry,
            in("r13") arg,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

// Without a `raw_clone3` there is no way to start a child: say so at build time rather
// than fail every spawn at run time.
#[cfg(not(target_arch = "x86_64"))]
compile_error!("sys/spawn.rs: raw_clone3 is x86_64 assembly; port it to this architecture");

extern "C" fn child_entry(arg: *mut c_void) -> ! {
    // SAFETY: `arg` is the `ChildCtx` the parent keeps alive while suspended.
    let ctx = unsafe { &mut *(arg as *mut ChildCtx<'_>) };
    child_main(ctx)
}

/// Runs in the child between clone and exec: async-signal-safe calls only.
fn child_main(ctx: &mut ChildCtx<'_>) -> ! {
    macro_rules! check {
        ($stage:expr, $call:expr) => {
            if $call < 0 {
                fail(ctx, $stage);
            }
        };
    }
    // SAFETY: plain libc calls on values prepared by the parent; this child has its
    // own signal dispositions (no CLONE_SIGHAND), and its own fd table once the first
    // step has unshared it.
    unsafe {
        if let Some(below) = ctx.unshare_below {
            // Keep fds 0..below (arje's stdio and the slots), nothing above.
            if libc::syscall(SYS_CLOSE_RANGE, below, u32::MAX, libc::CLOSE_RANGE_UNSHARE) < 0 {
                check!("unshare", libc::unshare(libc::CLONE_FILES));
            }
        }
        if ctx.reset_oom {
            // Raising one's own oom_score_adj needs no privilege.
            let fd = libc::open(
                c"/proc/self/oom_score_adj".as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            );
            if fd >= 0 {
                libc::write(fd, b"0".as_ptr() as *const c_void, 1);
                libc::close(fd);
            }
        }
        // Ignored dispositions survive exec (handled ones are reset by the kernel): give
        // the program the defaults it expects. arje set every disposition from its
        // table at start, so the signals that table ignores are exactly those to reset.
        let default = KernelSigaction::default(); // handler 0 = SIG_DFL
        for &sig in ctx.ignored.iter().take_while(|&&s| s != 0) {
            rt_sigaction(sig, Some(&default), None);
        }
        // arje raised its own fd limit; the program gets the one it would have had.
        // Lowering a soft limit needs no privilege.
        if let Some(limit) = &ctx.nofile {
            check!("setrlimit", libc::setrlimit(libc::RLIMIT_NOFILE, limit));
        }
        // The card's limits, before the credentials change: raising a hard limit needs
        // the privilege arje still has here.
        for (resource, limit) in &ctx.plan.rlimits {
            check!("setrlimit", libc::setrlimit(*resource as _, limit));
        }
        check!("setsid", libc::setsid());
        for (target, &src) in ctx.stdio.iter().enumerate() {
            // dup2 onto 0/1/2 clears close-on-exec on the copy.
            if src != target as c_int {
                check!("dup2", libc::dup2(src, target as c_int));
            } else {
                let flags = libc::fcntl(src, libc::F_GETFD);
                libc::fcntl(src, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            }
        }
        // Nothing above 2 survives exec, whatever flags it was opened with. Failure
        // (kernel < 5.11) leaves the per-fd close-on-exec flags in charge.
        libc::syscall(SYS_CLOSE_RANGE, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
        // Except the notification fd, placed after the sweep: dup2 clears the flag.
        if let Some((src, target)) = ctx.extra {
            if src != target {
                check!("dup2", libc::dup2(src, target));
            } else {
                let flags = libc::fcntl(src, libc::F_GETFD);
                libc::fcntl(src, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            }
        }
        if let Some(cwd) = &ctx.plan.cwd {
            check!("chdir", libc::chdir(cwd.as_ptr()));
        }
        if let Some((cell, at)) = &ctx.plan.pid_env {
            // The raw syscall: a C library may cache its pid, and this child shares the
            // parent's memory.
            let pid = libc::syscall(libc::SYS_getpid) as u64;
            let buf = &mut *cell.get();
            write_decimal(&mut buf[*at..PID_ENV_LEN - 1], pid);
        }
        if let Some((uid, gid, groups)) = &ctx.plan.creds {
            // Raw syscalls, not the C library's wrappers: those apply the change to every
            // thread of the process they believe they are in (glibc's setxid broadcast,
            // musl's __synccall). This child shares arje's memory, so its "threads" would
            // be arje's (the durable writer): musl would signal that thread by tid and
            // change arje's own credentials, glibc may wait on a lock one of them holds.
            // The kernel's setuid changes the calling task only, and this task is alone
            // in its new process.
            check!(
                "setgroups",
                libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr())
            );
            check!("setgid", libc::syscall(libc::SYS_setgid, *gid));
            check!("setuid", libc::syscall(libc::SYS_setuid, *uid));
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        check!(
            "sigprocmask",
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut())
        );
        libc::execve(
            ctx.plan.path.as_ptr(),
            ctx.plan.argv_ptrs.as_ptr(),
            ctx.plan.envp_ptrs.as_ptr(),
        );
        fail(ctx, "execve");
    }
}

/// `n` in decimal at the start of `out`, NUL-terminated (`out` holds at least 21 bytes);
/// no allocation, no formatting machinery: safe between clone and exec.
fn write_decimal(out: &mut [u8], mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = digits.len() - i;
    out[..len].copy_from_slice(&digits[i..]);
    out[len] = 0;
}

fn fail(ctx: &mut ChildCtx<'_>, stage: &'static str) -> ! {
    // SAFETY: reading errno and _exit are async-signal-safe; the writes land in the
    // parent's memory (CLONE_VM), which it reads after we are gone.
    unsafe {
        ctx.errno = *libc::__errno_location();
        ctx.stage = stage;
        libc::_exit(127)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsFd;

    fn spawn(plan: &ExecPlan, stdio: [BorrowedFd<'_>; 3]) -> Result<Spawned, SpawnError> {
        Spawner::default().spawn(plan, stdio, None)
    }

    fn plan(argv: &[&str]) -> ExecPlan {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        ExecPlan::new(
            &argv,
            &[("PATH".into(), "/usr/bin:/bin".into())],
            None,
            None,
        )
        .unwrap()
    }

    #[test]
    fn test_spawn_echo_output_and_exit_code() {
        let (mut r, w) = std::io::pipe().unwrap();
        let null = std::fs::File::open("/dev/null").unwrap();
        let p = plan(&["/bin/sh", "-c", "echo hi; exit 7"]);
        let child = spawn(&p, [null.as_fd(), w.as_fd(), w.as_fd()]).unwrap();
        drop(w);
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        let status = nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(child.pid),
            Some(nix::sys::wait::WaitPidFlag::__WALL),
        )
        .unwrap();
        assert_eq!(out, "hi\n");
        assert_eq!(
            status,
            nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(child.pid), 7)
        );
    }

    /// The fd table size (`FDSize` of /proc/PID/status) a child gets from `spawner` while
    /// this process holds 1,500 more fds, as the child's shell reads it of itself.
    fn child_fd_table(mut spawner: Spawner) -> u32 {
        let null = std::fs::File::open("/dev/null").unwrap();
        let held: Vec<OwnedFd> = (0..1500)
            .map(|_| null.as_fd().try_clone_to_owned().unwrap())
            .collect();
        let (mut r, w) = std::io::pipe().unwrap();
        let p = plan(&[
            "/bin/sh",
            "-c",
            "while read -r k v; do [ \"$k\" = FDSize: ] && echo \"$v\"; done < /proc/self/status",
        ]);
        let child = spawner
            .spawn(&p, [null.as_fd(), w.as_fd(), w.as_fd()], None)
            .unwrap();
        drop((w, held));
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child.pid), None);
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("FDSize in {out:?}"))
    }

    #[test]
    fn test_spawn_child_fd_table_is_small_whatever_arje_holds() {
        // Arrange
        let shared = Spawner::default();
        let mut copied = Spawner::default();
        copied.copy_fd_table();

        // Act
        let (small, large) = (child_fd_table(shared), child_fd_table(copied));

        // Assert: the kernel's embedded table (64 slots) against a copy of ours.
        assert!(small <= 64, "FDSize {small} with the slots");
        assert!(
            large >= 1500,
            "FDSize {large} with the table copied at clone"
        );
    }

    #[test]
    fn test_probe_clone_into_cgroup_this_host_supported() {
        // Arrange: arje is developed on kernels far past 5.7; on an older one this test
        // fails with the probe's reason, and cgroups would be off there.
        let kernel = rustix::system::uname();
        let release = kernel.release().to_string_lossy();

        // Act
        let probe = probe_clone_into_cgroup();

        // Assert
        assert!(probe.is_ok(), "kernel {release}: {}", probe.unwrap_err());
    }

    #[test]
    fn test_clone_error_old_kernel_names_requirement() {
        // Arrange
        let enosys = SpawnError::Clone(std::io::Error::from_raw_os_error(libc::ENOSYS));
        let e2big = SpawnError::Clone(std::io::Error::from_raw_os_error(libc::E2BIG));

        // Act
        let (enosys, e2big) = (enosys.to_string(), e2big.to_string());

        // Assert
        assert!(enosys.starts_with("clone3: "), "{enosys}");
        assert!(enosys.contains("Linux 5.3"), "{enosys}");
        assert!(e2big.contains("CLONE_INTO_CGROUP: Linux 5.7"), "{e2big}");
    }

    #[test]
    fn test_spawn_missing_binary_reports_execve_enoent() {
        let null = std::fs::File::open("/dev/null").unwrap();
        let p = plan(&["/nonexistent/prog"]);
        let err = spawn(&p, [null.as_fd(), null.as_fd(), null.as_fd()]).unwrap_err();
        match err {
            SpawnError::Child { stage, error } => {
                assert_eq!(stage, "execve");
                assert_eq!(error.raw_os_error(), Some(libc::ENOENT));
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn test_spawn_nofile_set_child_gets_that_soft_limit() {
        // Arrange: a soft limit below the hard one, as arje-init's children get.
        let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .maximum
            .unwrap_or(libc::RLIM_INFINITY);
        let mut spawner = Spawner {
            nofile: Some(libc::rlimit {
                rlim_cur: 200.min(hard),
                rlim_max: hard,
            }),
            ..Spawner::default()
        };
        let (mut r, w) = std::io::pipe().unwrap();
        let null = std::fs::File::open("/dev/null").unwrap();

        // Act
        let p = plan(&["/bin/sh", "-c", "ulimit -n"]);
        let child = spawner
            .spawn(&p, [null.as_fd(), w.as_fd(), w.as_fd()], None)
            .unwrap();
        drop(w);
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(child.pid),
            Some(nix::sys::wait::WaitPidFlag::__WALL),
        )
        .unwrap();

        // Assert
        assert_eq!(out.trim(), 200.min(hard).to_string());
    }

    #[test]
    fn test_spawn_pid_env_holds_the_childs_own_pid() {
        let (mut r, w) = std::io::pipe().unwrap();
        let null = std::fs::File::open("/dev/null").unwrap();
        let p = plan(&["/bin/sh", "-c", "echo $WATCHDOG_PID $$ $A"]);
        let p = ExecPlan::new(
            &p.argv
                .iter()
                .map(|a| a.to_str().unwrap().to_string())
                .collect::<Vec<_>>(),
            &[("A".into(), "b".into())],
            None,
            None,
        )
        .unwrap()
        .with_pid_env("WATCHDOG_PID");

        let child = Spawner::default()
            .spawn(&p, [null.as_fd(), w.as_fd(), w.as_fd()], None)
            .unwrap();
        drop(w);
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child.pid), None).unwrap();

        assert_eq!(out, format!("{0} {0} b\n", child.pid));
    }

    #[test]
    fn test_spawn_with_extra_fd_child_has_it_at_the_asked_number_only() {
        let (mut r, w) = std::io::pipe().unwrap();
        let (mut nr, nw) = std::io::pipe().unwrap();
        let null = std::fs::File::open("/dev/null").unwrap();
        let p = plan(&["/bin/sh", "-c", "ls /proc/self/fd; echo ready >&7"]);

        let child = Spawner::default()
            .spawn_with(
                &p,
                [null.as_fd(), w.as_fd(), w.as_fd()],
                Some((nw.as_fd(), 7)),
                None,
            )
            .unwrap();
        drop((w, nw));
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        let mut note = String::new();
        nr.read_to_string(&mut note).unwrap();
        nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child.pid), None).unwrap();

        let fds: Vec<&str> = out.lines().collect();
        // 0,1,2, the notification fd 7, and the one `ls` opens for the directory.
        assert_eq!(fds, vec!["0", "1", "2", "3", "7"]);
        assert_eq!(note, "ready\n");
    }

    #[test]
    fn test_spawn_child_has_only_stdio_fds_and_empty_mask() {
        // arje's dispositions as the runtime sets them: whatever this test process
        // inherited ignored (here, signal 32) is back to the default, SIGPIPE ignored.
        let _signals = crate::runtime::signals::Signals::install().unwrap();
        let (mut r, w) = std::io::pipe().unwrap();
        // An fd without close-on-exec, as a careless parent might leave one.
        let leaky = rustix::io::dup(std::fs::File::open("/dev/null").unwrap()).unwrap();
        let null = std::fs::File::open("/dev/null").unwrap();
        let p = plan(&[
            "/bin/sh",
            "-c",
            "ls /proc/self/fd; grep -E 'SigBlk|SigIgn' /proc/self/status",
        ]);
        let child = spawn(&p, [null.as_fd(), w.as_fd(), w.as_fd()]).unwrap();
        drop(w);
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(child.pid),
            Some(nix::sys::wait::WaitPidFlag::__WALL),
        )
        .unwrap();
        drop(leaky);
        let fds: Vec<&str> = out
            .lines()
            .filter(|l| l.chars().all(|c| c.is_ascii_digit()))
            .collect();
        // 0,1,2 plus the one `ls` opens for reading the directory.
        assert_eq!(fds, vec!["0", "1", "2", "3"]);
        assert!(out.contains("SigBlk:\t0000000000000000"), "{out}");
        // arje ignores SIGPIPE (so does Rust's std): the child must not.
        assert!(out.contains("SigIgn:\t0000000000000000"), "{out}");
    }
}
