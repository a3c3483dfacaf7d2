//! The runtime: one thread, one epoll instance, one `match` over [`Token`]s.
//!
//! Event sources and who owns their fds: the signalfd (SIGCHLD and the shutdown
//! signals), the timerfd behind [`Timers`], the listening socket and each [`Conn`],
//! the read end of every captured output pipe, and each workspace's cgroup event files.
//! The loop blocks in `epoll_wait` until one of them is ready: no sleeps, no polling.

mod cg;
mod commands;
mod requests;
mod state;
mod workspaces;

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use rustix::event::epoll;

use shuma_card::protocol::{Mode, Response, ShutdownKind};
use shuma_card::{EventKind, WorkspaceSpec};

use crate::cgroup::Cgroups;
use crate::control::{self, Conn, Follow, ReadOutcome};
use crate::journal::{Journal, DEFAULT_JOURNAL};
use crate::sys::spawn::Spawner;
use crate::timers::{TimerAction, Timers};
use crate::token::Token;
use crate::{Config, Outcome};

pub use commands::Command;
pub use workspaces::Workspace;

/// Most workspaces at once.
pub const MAX_WORKSPACES: usize = 4096;
/// Most commands (all workspaces) at once.
pub const MAX_COMMANDS: usize = 65_536;

/// Why the runtime could not start.
#[derive(Debug)]
pub enum RuntimeError {
    Signals(nix::Error),
    Epoll(std::io::Error),
    Timer(std::io::Error),
    Control(control::ControlError),
    DevNull(std::io::Error),
}

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuntimeError::Signals(e) => write!(f, "block signals / signalfd: {e}"),
            RuntimeError::Epoll(e) => write!(f, "epoll: {e}"),
            RuntimeError::Timer(e) => write!(f, "timerfd: {e}"),
            RuntimeError::Control(e) => write!(f, "{e}"),
            RuntimeError::DevNull(e) => write!(f, "open /dev/null: {e}"),
        }
    }
}

impl std::error::Error for RuntimeError {}

/// The signals the loop handles; all are blocked and read from the signalfd.
const SIGNALS: [Signal; 7] = [
    Signal::SIGCHLD,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGPWR,
];

/// When this process started: an exec (a re-exec) keeps the process, and so its start
/// time in /proc, and `shuma status` counts uptime from there.
fn process_started() -> Instant {
    let now = Instant::now();
    let Some(start) = crate::persist::process_start_time(std::process::id() as i32) else {
        return now;
    };
    let hz = crate::persist::clock_ticks_per_second();
    let ticks = crate::persist::boottime_ticks().saturating_sub(start);
    now.checked_sub(Duration::from_millis(ticks * 1000 / hz))
        .unwrap_or(now)
}

/// A shutdown in progress.
struct Stopping {
    outcome: Outcome,
    deadline: Instant,
}

pub struct Runtime {
    cfg: Config,
    epoll: OwnedFd,
    signals: SignalFd,
    timers: Timers,
    listener: Option<UnixListener>,
    conns: HashMap<u64, Conn>,
    next_conn: u64,
    workspaces: BTreeMap<String, Workspace>,
    commands: BTreeMap<u64, Command>,
    /// Live pid → command id. A pid leaves this map the moment it is reaped.
    pids: HashMap<i32, u64>,
    /// Output pipe id → (command id, is stderr, read end).
    pipes: HashMap<u64, (u64, bool, OwnedFd)>,
    next_pipe: u64,
    next_command: u64,
    journal: Journal,
    spawner: Spawner,
    cgroups: Cgroups,
    watches: HashMap<u64, cg::Watch>,
    next_watch: u64,
    dev_null: OwnedFd,
    started: Instant,
    stopping: Option<Stopping>,
    orphans_reaped: u64,
    /// Something the snapshot holds changed during this loop turn.
    dirty: bool,
    epoll_buf: Vec<epoll::Event>,
    /// The encoded snapshot, reused between writes.
    snap_buf: Vec<u8>,
    durable: Option<crate::persist::DurableWriter>,
    debounce: crate::persist::Debounce,
    durable_timer_armed: bool,
    boot_id: String,
    /// Set once a shutdown began: the snapshot keeps the state from before it.
    persist_frozen: bool,
    /// A re-exec was asked for: the binary to exec at the end of this turn.
    reexec: Option<std::path::PathBuf>,
    /// A SIGCHLD may stand for an orphan not reaped yet (see `on_sigchld`).
    orphan_scan_pending: bool,
    /// The last pids reaped (see `on_sigchld`).
    recently_reaped: std::collections::VecDeque<i32>,
    /// getpid(), once: the snapshot records it every turn.
    own_pid: i32,
    /// Rate of /run snapshot writes (see `run_snapshot_due`).
    run_debounce: crate::persist::Debounce,
    run_timer_armed: bool,
}

impl Runtime {
    /// Block the handled signals, set up epoll, the timer, the control socket, and load
    /// the cards directory.
    pub fn new(cfg: Config) -> Result<Runtime, RuntimeError> {
        let cgroups = cg::setup(&cfg);
        let mut mask = SigSet::empty();
        for s in SIGNALS {
            mask.add(s);
        }
        // Block first, so a signal sent between here and the signalfd is queued, not
        // lost or delivered with the default action (which for PID 1 is nothing).
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
            .map_err(RuntimeError::Signals)?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(RuntimeError::Signals)?;
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)
            .map_err(|e| RuntimeError::Epoll(e.into()))?;
        let timers = Timers::new().map_err(RuntimeError::Timer)?;
        let dev_null = rustix::fs::open(
            "/dev/null",
            rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| RuntimeError::DevNull(e.into()))?;
        let mut spawner = Spawner::default();
        spawner.reset_oom_score_adj =
            std::fs::read_to_string("/proc/self/oom_score_adj").is_ok_and(|v| v.trim() != "0");
        let mut rt = Runtime {
            epoll,
            signals,
            timers,
            listener: None,
            conns: HashMap::new(),
            next_conn: 1,
            workspaces: BTreeMap::new(),
            commands: BTreeMap::new(),
            pids: HashMap::new(),
            pipes: HashMap::new(),
            next_pipe: 1,
            next_command: 1,
            journal: Journal::new(DEFAULT_JOURNAL, 1),
            spawner,
            cgroups,
            watches: HashMap::new(),
            next_watch: 1,
            dev_null,
            started: process_started(),
            stopping: None,
            orphans_reaped: 0,
            dirty: false,
            epoll_buf: Vec::with_capacity(256),
            snap_buf: Vec::new(),
            durable: None,
            debounce: crate::persist::Debounce::new(state::DURABLE_EVERY),
            durable_timer_armed: false,
            boot_id: crate::persist::boot_id().unwrap_or_default(),
            persist_frozen: false,
            reexec: None,
            orphan_scan_pending: false,
            recently_reaped: std::collections::VecDeque::new(),
            own_pid: std::process::id() as i32,
            run_debounce: crate::persist::Debounce::new(state::RUN_EVERY),
            run_timer_armed: false,
            cfg,
        };
        rt.register(rt.signals.as_fd(), Token::Signal, false)
            .map_err(RuntimeError::Epoll)?;
        rt.register(rt.timers.fd(), Token::Timer, false)
            .map_err(RuntimeError::Epoll)?;
        // The durable writer thread starts after the signals are blocked: it inherits
        // the mask, so no signal is ever delivered to it instead of the signalfd.
        if let Some(dir) = rt.cfg.durable_dir.clone() {
            match crate::persist::DurableWriter::spawn(dir.clone()) {
                Ok(w) => rt.durable = Some(w),
                Err(e) => log::error!("durable snapshot writer for {}: {e}", dir.display()),
            }
        }
        let loaded = crate::persist::load(&rt.cfg.state_dir, rt.cfg.durable_dir.as_deref());
        // After a re-exec the listening socket is inherited: clients never see a
        // refused connection. Otherwise bind a fresh one.
        let own_pid = std::process::id() as i32;
        let inherited = loaded
            .snapshot
            .as_ref()
            .filter(|s| loaded.source == crate::persist::Source::Run && s.arje_pid == own_pid)
            .filter(|s| crate::persist::same_boot(s))
            .and_then(|s| s.listener_fd)
            .and_then(crate::sys::fd::adopt)
            .map(UnixListener::from);
        let inherited_listener = inherited.is_some();
        let listener = match inherited {
            Some(l) => {
                let _ = l.set_nonblocking(true);
                log::info!("kept the control socket across the re-exec");
                l
            }
            None => {
                control::bind(&rt.cfg.socket, rt.cfg.socket_group).map_err(RuntimeError::Control)?
            }
        };
        rt.register(listener.as_fd(), Token::Listener, false)
            .map_err(RuntimeError::Epoll)?;
        rt.listener = Some(listener);
        let reexec = inherited_listener;
        rt.restore(loaded);
        if reexec {
            rt.adopt_connections();
        }
        // Write the restored state at once, so a crash now finds it.
        rt.dirty = true;
        Ok(rt)
    }

    /// Load every `*.toml` card of the cards directory and start its workspace. A bad
    /// card is logged with its file, line and field and skipped; the others still load.
    pub fn load_cards(&mut self) {
        let Some(dir) = self.cfg.cards_dir.clone() else {
            return;
        };
        let mut files: Vec<_> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect(),
            Err(e) => {
                log::warn!("cards directory {}: {e}", dir.display());
                return;
            }
        };
        files.sort();
        for file in files {
            match shuma_card::card::load_file(&file) {
                Ok(spec) => match self.create_workspace(spec) {
                    Ok(warnings) => {
                        for w in warnings {
                            log::warn!("{}: {w}", file.display());
                        }
                    }
                    Err((_, msg)) => log::error!("{}: {msg}", file.display()),
                },
                Err(e) => log::error!("bad card: {e}"),
            }
        }
    }

    /// Run until a shutdown (PID 1), a stop signal (subreaper) or a re-exec request.
    pub fn run(&mut self) -> Outcome {
        self.load_cards();
        let boottime = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
        log::info!(
            "control socket ready at {} (boottime {}.{:03}s)",
            self.cfg.socket.display(),
            boottime.tv_sec,
            boottime.tv_nsec / 1_000_000
        );
        loop {
            if let Some(outcome) = self.turn() {
                return outcome;
            }
        }
    }

    /// One turn of the loop: wait for events, handle them, flush what they changed.
    /// Returns the outcome once the runtime is done. [`Self::run`] is this in a loop;
    /// it is public for in-process drivers (the benchmark).
    pub fn turn(&mut self) -> Option<Outcome> {
        let mut events = std::mem::take(&mut self.epoll_buf);
        events.clear();
        match epoll::wait(
            &self.epoll,
            rustix::buffer::spare_capacity(&mut events),
            None,
        ) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                // EBADF/EINVAL would mean our own epoll fd is broken: nothing else can
                // wake us, so log and keep trying rather than exit.
                log::error!("epoll_wait: {e}");
            }
        }
        for ev in &events {
            let data = ev.data.u64();
            let Some(token) = Token::decode(data) else {
                continue;
            };
            // A panic in one handler is contained here: it is logged and the loop goes
            // on with the next event (for PID 1, unwinding out of main would be a
            // kernel panic).
            let r = catch_unwind(AssertUnwindSafe(|| self.dispatch(token, ev.flags)));
            if let Err(p) = r {
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic".into());
                let message = format!("contained a panic in the handler of {token:?}: {msg}");
                log::error!("{message}");
                // A client whose request panicked gets an answer, and its connection
                // (whose state the panic may have left half-updated) is closed.
                if let Token::Conn(id) = token {
                    if let Some(conn) = self.conns.get_mut(&id) {
                        conn.fail(shuma_card::protocol::ErrorCode::Internal, message.clone());
                    }
                    self.service_conn(id);
                }
                self.event(EventKind::Warning { message });
            }
        }
        self.epoll_buf = events;
        if catch_unwind(AssertUnwindSafe(|| self.end_of_turn())).is_err() {
            log::error!("contained a panic while writing the snapshot");
        }
        self.finished()
    }

    /// Start a one-shot in a workspace without the socket (in-process drivers).
    pub fn start_oneshot(
        &mut self,
        workspace: &str,
        spec: shuma_card::CommandSpec,
    ) -> Result<u64, String> {
        let id = self.run_in_workspace(workspace, spec).map_err(|(_, m)| m)?;
        self.command_event(id, crate::supervise::Event::Start, Instant::now());
        Ok(id)
    }

    /// How a command ended, once it has.
    pub fn exit_status(&self, id: u64) -> Option<shuma_card::ExitStatus> {
        let cmd = self.commands.get(&id)?;
        cmd.sup.is_final().then_some(cmd.sup.last_exit).flatten()
    }

    fn dispatch(&mut self, token: Token, flags: epoll::EventFlags) {
        match token {
            Token::Signal => self.on_signals(),
            Token::Timer => {
                let now = Instant::now();
                for action in self.timers.expired(now) {
                    self.on_timer(action, now);
                }
            }
            Token::Listener => self.accept(),
            Token::Conn(id) => self.on_conn(id, flags),
            Token::Log(id) => self.on_log(id),
            Token::Cgroup(id) => self.on_cgroup_event(id),
            Token::Child(id) => self.on_child(id),
        }
    }

    fn on_signals(&mut self) {
        loop {
            match self.signals.read_signal() {
                Ok(Some(info)) => {
                    let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                        continue;
                    };
                    match sig {
                        Signal::SIGCHLD => self.on_sigchld(info.ssi_pid as i32),
                        other => self.on_stop_signal(other),
                    }
                }
                Ok(None) => break,
                Err(nix::Error::EINTR) => continue,
                Err(e) => {
                    log::error!("signalfd read: {e}");
                    break;
                }
            }
        }
    }

    /// What a signal means depends on the mode: busybox's halt, poweroff and reboot
    /// send PID 1 SIGUSR1, SIGUSR2 and SIGTERM; SIGINT is ctrl-alt-del; SIGPWR a power
    /// failure. Under another init, SIGTERM and SIGINT ask arje to stop and exit.
    fn on_stop_signal(&mut self, sig: Signal) {
        let outcome = match (&self.cfg.mode, sig) {
            (Mode::Pid1, Signal::SIGUSR1) => Outcome::Shutdown(ShutdownKind::Halt),
            (Mode::Pid1, Signal::SIGUSR2 | Signal::SIGPWR) => {
                Outcome::Shutdown(ShutdownKind::Poweroff)
            }
            (Mode::Pid1, Signal::SIGTERM | Signal::SIGINT) => {
                Outcome::Shutdown(ShutdownKind::Reboot)
            }
            (Mode::Subreaper, Signal::SIGTERM | Signal::SIGINT) => Outcome::Exit,
            (_, Signal::SIGHUP) => {
                log::info!("SIGHUP: reloading nothing (cards are loaded at start and with `shuma ws create`)");
                return;
            }
            (_, other) => {
                log::info!("ignoring {other}");
                return;
            }
        };
        log::info!("{sig}: {outcome:?}");
        self.begin_shutdown(outcome);
    }

    /// Stop every workspace in parallel under one deadline.
    pub(crate) fn begin_shutdown(&mut self, outcome: Outcome) {
        if self.stopping.is_some() {
            return;
        }
        // The durable copy keeps the intent (the workspaces as they are now), not the
        // emptiness the shutdown leaves: the next boot brings them back. From here on
        // the snapshot is frozen.
        self.flush_state();
        self.persist_frozen = true;
        let deadline = Instant::now() + self.cfg.shutdown_timeout;
        self.stopping = Some(Stopping { outcome, deadline });
        self.timers.add(deadline, TimerAction::ShutdownDeadline);
        let names: Vec<String> = self.workspaces.keys().cloned().collect();
        // Leave a tenth of the bound for the final kill and reap.
        let cap = self.cfg.shutdown_timeout.mul_f32(0.9);
        for name in names {
            self.stop_workspace(&name, Some(cap), true);
        }
    }

    fn finished(&mut self) -> Option<Outcome> {
        if let Some(binary) = self.reexec.take() {
            // The answer to `daemon-reexec` goes out before the exec.
            for conn in self.conns.values_mut() {
                conn.flush();
            }
            self.prepare_reexec();
            log::info!("re-exec of {}", binary.display());
            return Some(Outcome::Reexec { binary });
        }
        let stopping = self.stopping.as_ref()?;
        if !self.workspaces.is_empty() {
            return None;
        }
        // Flush what clients are owed (a `ws stop` answer) on a best-effort basis.
        for conn in self.conns.values_mut() {
            conn.flush();
        }
        let outcome = stopping.outcome.clone();
        log::info!(
            "every workspace stopped after {:?}",
            Instant::now().saturating_duration_since(stopping.deadline - self.cfg.shutdown_timeout)
        );
        Some(outcome)
    }

    fn on_timer(&mut self, action: TimerAction, now: Instant) {
        match action {
            TimerAction::Command(id) => self.command_event(id, crate::supervise::Event::Timer, now),
            TimerAction::WorkspaceTtl(name) => {
                log::info!("workspace {name}: TTL reached");
                self.stop_workspace(&name, None, false);
            }
            TimerAction::ShutdownDeadline => self.shutdown_deadline(),
            TimerAction::Stats => self.sample_stats(),
            TimerAction::CgroupReport(id) => self.report_watch(id, now),
            TimerAction::RunSnapshot => {
                self.run_timer_armed = false;
                self.run_snapshot_due(now);
            }
            TimerAction::OrphanScan => {
                if self.orphan_scan_pending {
                    self.reap_orphans();
                }
            }
            TimerAction::Durable => self.on_durable_timer(now),
        }
    }

    fn shutdown_deadline(&mut self) {
        let names: Vec<String> = self.workspaces.keys().cloned().collect();
        if !names.is_empty() {
            log::warn!(
                "shutdown deadline reached; still stopping: {}; killing them",
                names.join(", ")
            );
        }
        for name in names {
            self.force_remove_workspace(&name);
        }
    }

    // ---- the control socket ----

    fn accept(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, _)) => {
                    let _ = stream.set_nonblocking(true);
                    let mut conn = Conn::new(stream);
                    if let Err(why) = control::peer_allowed(&conn.stream, self.cfg.socket_group) {
                        log::warn!("control: refused a client: {why}");
                        conn.fail(shuma_card::protocol::ErrorCode::Denied, why);
                        conn.flush();
                        continue;
                    }
                    if self.conns.len() >= control::MAX_CONNS {
                        conn.fail(
                            shuma_card::protocol::ErrorCode::Limit,
                            format!("too many clients (at most {})", control::MAX_CONNS),
                        );
                        conn.flush();
                        continue;
                    }
                    let id = self.next_conn;
                    self.next_conn += 1;
                    if self.register(conn.fd(), Token::Conn(id), false).is_ok() {
                        self.conns.insert(id, conn);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: log and wait for the next readiness.
                    log::error!("control: accept: {e}");
                    return;
                }
            }
        }
    }

    fn on_conn(&mut self, id: u64, flags: epoll::EventFlags) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if flags.intersects(epoll::EventFlags::IN | epoll::EventFlags::HUP | epoll::EventFlags::ERR)
        {
            match conn.read() {
                ReadOutcome::Closed => {
                    self.drop_conn(id);
                    return;
                }
                ReadOutcome::Requests(reqs) => {
                    for req in reqs {
                        self.handle_request(id, req);
                    }
                }
            }
        }
        self.service_conn(id);
    }

    /// Flush a connection, adjust its EPOLLOUT interest, drop it when done.
    pub(crate) fn service_conn(&mut self, id: u64) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if !conn.flush() || conn.finished() {
            self.drop_conn(id);
            return;
        }
        let want = conn.pending() > 0;
        if want != conn.want_write {
            conn.want_write = want;
            let mut fl = epoll::EventFlags::IN;
            if want {
                fl |= epoll::EventFlags::OUT;
            }
            let _ = epoll::modify(
                &self.epoll,
                conn.fd(),
                epoll::EventData::new_u64(Token::Conn(id).encode()),
                fl,
            );
        }
    }

    fn drop_conn(&mut self, id: u64) {
        if let Some(conn) = self.conns.remove(&id) {
            let _ = epoll::delete(&self.epoll, conn.fd());
        }
    }

    /// Send one response to a connection and service it.
    pub(crate) fn reply(&mut self, id: u64, resp: Response) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.send(&resp);
        }
        self.service_conn(id);
    }

    /// Connections following `pred`.
    pub(crate) fn followers(&self, pred: impl Fn(&Follow) -> bool) -> Vec<u64> {
        self.conns
            .iter()
            .filter(|(_, c)| pred(&c.follow))
            .map(|(id, _)| *id)
            .collect()
    }

    // ---- bookkeeping ----

    pub(crate) fn register(
        &self,
        fd: std::os::fd::BorrowedFd<'_>,
        token: Token,
        pri: bool,
    ) -> std::io::Result<()> {
        let flags = if pri {
            epoll::EventFlags::PRI
        } else {
            epoll::EventFlags::IN
        };
        epoll::add(
            &self.epoll,
            fd,
            epoll::EventData::new_u64(token.encode()),
            flags,
        )
        .map_err(Into::into)
    }

    pub(crate) fn unregister(&self, fd: std::os::fd::BorrowedFd<'_>) {
        let _ = epoll::delete(&self.epoll, fd);
    }

    /// Record an event and push it to followers.
    pub(crate) fn event(&mut self, kind: EventKind) {
        let mono = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let mono_us = mono.tv_sec as u64 * 1_000_000 + mono.tv_nsec as u64 / 1_000;
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        // Routine lifecycle at debug: the journal has it, and a console line per
        // spawn costs more than the spawn's bookkeeping.
        let routine = matches!(
            kind,
            EventKind::CommandStarted { .. }
                | EventKind::CommandExited {
                    status: shuma_card::ExitStatus::Code(0),
                    ..
                }
        );
        if routine {
            log::debug!("event: {kind}");
        } else {
            log::info!("event: {kind}");
        }
        let ev = self.journal.push(kind, mono_us, unix_ms).clone();
        self.dirty = true;
        for id in self.followers(|f| matches!(f, Follow::Events(_))) {
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.send_lossy(&Response::Events(vec![ev.clone()]), 1);
                conn.follow = Follow::Events(ev.id);
            }
            self.service_conn(id);
        }
    }

    fn end_of_turn(&mut self) {
        let now = Instant::now();
        if self.dirty && !self.persist_frozen {
            self.dirty = false;
            self.run_debounce.mark_dirty(now);
            self.run_snapshot_due(now);
        }
        // Last: the snapshot may have added a timer (the durable copy's debounce).
        if let Err(e) = self.timers.rearm(now) {
            log::error!("timerfd: {e}");
        }
    }

    /// Write the /run copy if its debounce allows, else arm the timer for when it will.
    /// A lone change is written at once; a burst of turns (a client running commands
    /// back to back) is coalesced to one write per [`state::RUN_EVERY`], so the snapshot's
    /// cost does not scale with the rate of turns.
    fn run_snapshot_due(&mut self, now: Instant) {
        if !self.run_debounce.is_dirty() || self.persist_frozen {
            return;
        }
        if self.run_debounce.due(now) {
            self.run_debounce.written(now);
            self.persist();
        } else if let (Some(at), false) = (self.run_debounce.next_deadline(), self.run_timer_armed)
        {
            self.run_timer_armed = true;
            self.timers.add(at, TimerAction::RunSnapshot);
        }
    }

    pub(crate) fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Create a workspace from a card at start (see [`Self::load_cards`]).
    pub fn create_workspace(
        &mut self,
        spec: WorkspaceSpec,
    ) -> Result<Vec<String>, (shuma_card::protocol::ErrorCode, String)> {
        self.create_workspace_inner(spec)
    }
}
