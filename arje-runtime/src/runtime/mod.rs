//! The runtime: one thread, one epoll instance, one `match` over [`Token`]s.
//!
//! [`Runtime`] is the router. Each event source belongs to the component that handles it:
//!
//! | component | owns | token |
//! | --- | --- | --- |
//! | [`signals::Signals`] | the signalfd; every signal's disposition | `Signal` |
//! | [`Timers`] | the timerfd and every deadline | `Timer` |
//! | [`server::Server`] | the listener, each client connection, what it follows | `Listener`, `Conn` |
//! | [`procs::Procs`] | the spawner, the pid table, reaping and the orphan scan | (SIGCHLD) |
//! | [`commands::Command`] | its run: the pidfd, the leaf cgroup, its rings | `Child` |
//! | [`capture::Capture`] | the read ends of the output pipes | `Log` |
//! | [`watches::Watches`] | the cgroup tree and the watched event files | `Cgroup` |
//! | [`store::Store`] | the snapshot buffer, the durable writer, both debouncers | (timers) |
//!
//! A component registers, handles and closes its own fds; the loop routes a token to its
//! owner and acts on what the owner returns (a request's [`Reply`], a chunk of output, a
//! watch's report, an exit). The lifecycle is one explicit state ([`Lifecycle`]), and
//! `docs/ARCHITECTURE.md` draws the data path of one `run --wait`.

mod by_hand;
mod capture;
mod cards;
mod commands;
mod creds;
mod deps;
mod exits;
mod fanout;
mod handover;
mod identity;
pub(crate) mod laps;
mod lifecycle;
mod logfiles;
mod notify;
mod observe;
mod output;
mod pipelines;
mod probes;
mod procs;
pub(crate) mod reactor;
mod ready;
mod reexec;
mod requests;
mod rollback;
mod server;
mod sessions;
mod setup;
pub(crate) mod signals;
mod state;
mod stop;
mod store;
mod strays;
mod syslog;
mod table;
mod watches;
mod workspaces;

#[cfg(test)]
mod tests;

use std::os::unix::net::UnixListener;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use shuma_card::protocol::{ErrorCode, Response};
use shuma_card::{EventKind, WorkspaceSpec};

use crate::control::{self, Follow};
use crate::ids::CommandId;
use crate::journal::{Journal, DEFAULT_JOURNAL};
use crate::timers::{TimerAction, Timers};
use crate::token::Token;
use crate::{Config, Outcome};

pub use identity::ArjeNote;
use reactor::{Interest, Reactor, Ready};
use requests::Reply;
pub use rollback::Previous;
use table::Table;
pub use workspaces::Created;

/// Most workspaces at once.
pub const MAX_WORKSPACES: usize = 4096;
/// Most commands (all workspaces) at once.
pub const MAX_COMMANDS: usize = 65_536;

/// Why the runtime could not start.
#[derive(Debug)]
pub enum RuntimeError {
    Signals(std::io::Error),
    Epoll(std::io::Error),
    Timer(std::io::Error),
    Control(control::ControlError),
    DevNull(std::io::Error),
    /// Another arje-init holds the state directory's lock.
    Locked(crate::persist::LockError),
    /// After a re-exec: this build cannot read the state the previous image handed
    /// over (`rollback.rs`); nothing was taken over, and the previous image can be
    /// exec'd back.
    Restore(String),
}

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuntimeError::Signals(e) => write!(f, "block signals / signalfd: {e}"),
            RuntimeError::Epoll(e) => write!(f, "epoll: {e}"),
            RuntimeError::Timer(e) => write!(f, "timerfd: {e}"),
            RuntimeError::Control(e) => write!(f, "{e}"),
            RuntimeError::DevNull(e) => write!(f, "open /dev/null: {e}"),
            RuntimeError::Locked(e) => write!(f, "{e}"),
            RuntimeError::Restore(why) => write!(f, "cannot restore the handed-over state: {why}"),
        }
    }
}

impl std::error::Error for RuntimeError {}

/// Opens the state directories `cfg` names and takes the state lock (see `store::Claim`).
/// A directory created for a state dir that also holds the control socket lets the
/// socket's group through.
fn claim_state(cfg: &Config) -> Result<store::Claim, RuntimeError> {
    let socket_in_state_dir = cfg.socket.parent() == Some(cfg.state_dir.as_path());
    let traverse_group = cfg.socket_group.filter(|_| socket_in_state_dir);
    store::Claim::open(&cfg.state_dir, cfg.durable_dir.as_deref(), traverse_group)
        .map_err(RuntimeError::Locked)
}

/// Where the runtime is in its life. One state instead of several flags: what the loop
/// may do (accept workspaces, write snapshots) follows from it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Lifecycle {
    Running,
    /// `daemon-reexec` was asked for: exec `binary` at the end of this turn.
    Reexec {
        binary: std::path::PathBuf,
    },
    /// The fds to keep are inheritable and the snapshot and handover written for
    /// `binary`: the caller execs it. If the exec fails, [`Runtime::reexec_failed`]
    /// undoes this and the runtime carries on. `inheritable` lists the fds that were
    /// already without close-on-exec before (left as they were by the undo).
    HandedOver {
        binary: std::path::PathBuf,
        inheritable: Vec<std::os::fd::RawFd>,
    },
    /// A shutdown (PID 1) or exit (subreaper) in progress. The snapshot is frozen: the
    /// durable copy keeps the workspaces as they were, so the next boot brings them back.
    Stopping {
        outcome: Outcome,
        began: Instant,
        deadline: Instant,
    },
}

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

pub struct Runtime {
    cfg: Config,
    reactor: Reactor,
    signals: signals::Signals,
    timers: Timers,
    server: server::Server,
    procs: procs::Procs,
    capture: capture::Capture,
    /// A host's log files of ring-logged commands (`logfiles.rs`), if configured.
    logfiles: logfiles::LogFiles,
    /// Fan-out copiers of pipeline outputs (`fanout.rs`).
    fanouts: fanout::Fanouts,
    /// Cgroup statistics are sampled until then: someone asked for them (`ws stats`,
    /// `top`) within [`workspaces::STATS_WATCH`]. No one asking, no periodic wake-up.
    stats_until: Option<Instant>,
    cgroups: watches::Watches,
    store: store::Store,
    journal: Journal,
    table: Table,
    life: Lifecycle,
    started: Instant,
    /// The ready sources of the current turn (a buffer kept between turns).
    ready: Vec<Ready>,
    /// The `/dev/log` sink, if configured and bound.
    syslog: Option<syslog::Syslog>,
    /// The newest journal entry before this start (`observe.rs`): what came after it
    /// is this image's, the restored workspaces' starts included.
    start_cursor: u64,
    /// Where this start's time went, for the ready line (`laps.rs`).
    laps: laps::Laps,
}

impl Runtime {
    /// Block the handled signals, set up epoll, the timer and the control socket, and
    /// restore the saved state.
    pub fn new(cfg: Config) -> Result<Runtime, RuntimeError> {
        // The state directories and their lock first: a second arje-init on the same
        // state directory stops here, before it touches cgroups or the socket.
        let mut laps = laps::Laps::start();
        let claim = claim_state(&cfg)?;
        laps.lap("state lock");
        let cgroups = watches::setup(&cfg);
        laps.lap("cgroups");
        Runtime::start(cfg, claim, cgroups, laps)
    }

    /// [`Runtime::new`] on a cgroup tree set up by the caller (tests: a fake cgroupfs).
    #[cfg(test)]
    fn with_cgroups(cfg: Config, cgroups: crate::cgroup::Cgroups) -> Result<Runtime, RuntimeError> {
        let claim = claim_state(&cfg)?;
        Runtime::start(cfg, claim, cgroups, laps::Laps::start())
    }

    fn start(
        cfg: Config,
        claim: store::Claim,
        cgroups: crate::cgroup::Cgroups,
        mut laps: laps::Laps,
    ) -> Result<Runtime, RuntimeError> {
        // First, so a signal sent from here on waits in the signalfd (and the durable
        // writer thread, started below with the store, inherits the mask).
        let signals = signals::Signals::install().map_err(RuntimeError::Signals)?;
        let reactor = Reactor::new().map_err(RuntimeError::Epoll)?;
        let timers = Timers::new().map_err(RuntimeError::Timer)?;
        reactor
            .add(signals.fd(), Token::Signal, Interest::Read)
            .map_err(RuntimeError::Epoll)?;
        reactor
            .add(timers.fd(), Token::Timer, Interest::Read)
            .map_err(RuntimeError::Epoll)?;
        let procs = procs::Procs::new(cfg.child_nofile).map_err(RuntimeError::DevNull)?;
        laps.lap("loop");
        let (disk_journal, journal_warnings) = open_disk_journal(&cfg, &claim);
        laps.lap("journal");
        let loaded = claim.load();
        let store = store::Store::new(claim);
        let plan = state::plan(&loaded);
        // After a re-exec the listening socket is inherited: clients never see a refused
        // connection. Otherwise bind a fresh one.
        let listener = match plan
            .inherited_listener
            .and_then(crate::sys::fd::adopt)
            .map(UnixListener::from)
        {
            Some(l) => {
                let _ = l.set_nonblocking(true);
                log::info!("kept the control socket across the re-exec");
                l
            }
            None => control::bind(&cfg.socket, cfg.socket_group).map_err(RuntimeError::Control)?,
        };
        laps.lap("snapshot");
        let mut server = server::Server::new(&reactor, listener, cfg.socket_group)
            .map_err(RuntimeError::Epoll)?;
        if let Some(port) = cfg.vsock_port {
            // Without it the guest still runs; the host cannot drive it, and says so.
            match server.add_vsock(&reactor, port) {
                Ok(()) => log::info!("control: listening on vsock port {port} too"),
                Err(e) => log::error!("control: vsock port {port}: {e}; not listening there"),
            }
        }
        let mut rt = Runtime {
            reactor,
            signals,
            timers,
            server,
            procs,
            capture: capture::Capture::default(),
            logfiles: match &cfg.log_dir {
                Some(dir) => logfiles::LogFiles::open(dir, cfg.log_file_max),
                None => logfiles::LogFiles::none(),
            },
            fanouts: fanout::Fanouts::default(),
            stats_until: None,
            cgroups: watches::Watches::new(cgroups),
            store,
            journal: match disk_journal {
                Some((log, last)) => {
                    Journal::new(DEFAULT_JOURNAL, plan.next_event_id).with_disk(log, last)
                }
                None => Journal::new(DEFAULT_JOURNAL, plan.next_event_id),
            },
            table: Table::default(),
            life: Lifecycle::Running,
            started: process_started(),
            ready: Vec::with_capacity(256),
            syslog: None,
            start_cursor: 0,
            laps,
            cfg,
        };
        rt.laps.lap("socket");
        rt.start_cursor = rt.journal.last_id();
        for message in rt.store.take_warnings().into_iter().chain(journal_warnings) {
            rt.event(EventKind::Warning { message });
        }
        // A sink that cannot be bound (no /dev yet, a read-only /dev) is a warning, not
        // a reason to fail boot. After a re-exec it is bound afresh.
        if let Some(path) = rt.cfg.syslog.clone() {
            match syslog::Syslog::bind(&path) {
                Ok(sink) => match rt.reactor.add(
                    std::os::fd::AsFd::as_fd(&sink.fd),
                    Token::Syslog,
                    Interest::Read,
                ) {
                    Ok(()) => rt.syslog = Some(sink),
                    Err(e) => log::warn!("syslog sink {}: epoll: {e}", path.display()),
                },
                Err(e) => {
                    let message = format!(
                        "syslog sink {}: {e}; syslog(3) messages are lost",
                        path.display()
                    );
                    log::warn!("{message}");
                    rt.event(EventKind::Warning { message });
                }
            }
        }
        rt.laps.lap("syslog");
        let reexec = plan.reexec;
        rt.restore(loaded, plan);
        if reexec {
            rt.adopt_handover();
        }
        rt.laps.lap("restore");
        // Write the restored state at once, so a crash now finds it (at the end of the
        // first turn, or `begin_serving`'s). This start's events go to the journal's
        // disk now: the first turn may wait for hours.
        rt.store.mark_dirty();
        rt.journal.end_turn();
        Ok(rt)
    }

    /// Run until a shutdown (PID 1), a stop signal (subreaper) or a re-exec request.
    pub fn run(&mut self) -> Outcome {
        self.begin_serving();
        self.resume()
    }

    /// What [`Self::run`] does once before its loop: the boot cards' workspaces, the
    /// ready line, then their commands' start. The socket listens and every boot
    /// workspace exists when the line is printed; nothing of theirs has been spawned
    /// (docs/PID1.md, "Where boot's time goes"), and no request is read before it is.
    fn begin_serving(&mut self) {
        let held = self.load_cards();
        self.laps.lap("cards");
        let boottime = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
        log::info!(
            "control socket ready at {} (boottime {}.{:03}s); runtime start {}",
            self.cfg.socket.display(),
            boottime.tv_sec,
            boottime.tv_nsec / 1_000_000,
            self.laps.render()
        );
        self.start_cards(held);
        // Their state and events are saved now, not at the end of a first turn that
        // may wait for hours.
        self.end_of_turn();
        self.journal.end_turn();
    }

    /// One turn of the loop: wait for events, handle them, flush what they changed.
    /// Returns the outcome once the runtime is done. [`Self::run`] is this in a loop;
    /// it is public for in-process drivers (the benchmark).
    pub fn turn(&mut self) -> Option<Outcome> {
        self.turn_within(None)
    }

    /// A turn whose wait gives up after `timeout` (in-process tests).
    fn turn_within(&mut self, timeout: Option<Duration>) -> Option<Outcome> {
        let mut ready = std::mem::take(&mut self.ready);
        self.reactor.wait(&mut self.timers, timeout, &mut ready);
        for ev in &ready {
            // A panic in one handler is contained here: it is logged and the loop goes
            // on with the next event (for PID 1, unwinding out of main would be a
            // kernel panic).
            let r = catch_unwind(AssertUnwindSafe(|| self.dispatch(*ev)));
            if let Err(p) = r {
                self.contain_panic(ev.token, &p);
            }
        }
        self.ready = ready;
        // Timers that fell due while this turn's events were handled (a restart after
        // a run that lasted `min_uptime`, whose delay is zero) fire now, before the
        // snapshot: a restart waits for no other epoll round, and the exit and the
        // new run are written in one snapshot, after the spawn, not one before it.
        let now = Instant::now();
        if self.timers.any_due(now) {
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| self.fire_timers(now))) {
                self.contain_panic(Token::Timer, &p);
            }
        }
        self.procs.end_turn();
        if catch_unwind(AssertUnwindSafe(|| self.end_of_turn())).is_err() {
            log::error!("contained a panic while writing the snapshot");
        }
        // After the snapshot, whose warnings are events too.
        self.journal.end_turn();
        // Held replies go out whatever the write did: a failed write is logged (and a
        // client is never left without its answer).
        self.server.release_held(&self.reactor);
        self.server.arm_closing(&mut self.timers);
        self.finished()
    }

    fn contain_panic(&mut self, token: Token, payload: &Box<dyn std::any::Any + Send>) {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic".into());
        let message = format!("contained a panic in the handler of {token:?}: {msg}");
        log::error!("{message}");
        // A client whose request panicked gets an answer, and its connection (whose
        // state the panic may have left half-updated) is closed.
        if let Token::Conn(id) = token {
            self.server
                .fail(&self.reactor, id, ErrorCode::Internal, message.clone());
        }
        self.event(EventKind::Warning { message });
    }

    /// Start a one-shot in a workspace without the socket (in-process drivers).
    pub fn start_oneshot(
        &mut self,
        workspace: &str,
        spec: shuma_card::CommandSpec,
    ) -> Result<CommandId, String> {
        let id = self.run_in_workspace(workspace, spec).map_err(|(_, m)| m)?;
        self.start_command(id, Instant::now())?;
        Ok(id)
    }

    /// How a command ended, once it has.
    pub fn exit_status(&self, id: CommandId) -> Option<shuma_card::ExitStatus> {
        let cmd = self.table.commands.get(&id)?;
        cmd.sup.is_final().then_some(cmd.sup.last_exit).flatten()
    }

    /// Create a workspace from a card (the cards directory, in-process drivers).
    pub fn create_workspace(
        &mut self,
        spec: WorkspaceSpec,
    ) -> Result<Created, (ErrorCode, String)> {
        self.create_workspace_inner(spec)
    }

    /// The only router: each token goes to the component that owns its source.
    fn dispatch(&mut self, ev: Ready) {
        match ev.token {
            Token::Signal => self.on_signals(),
            Token::Timer => self.fire_timers(Instant::now()),
            Token::Listener => self
                .server
                .accept(&self.reactor, &mut self.timers, Instant::now()),
            Token::VsockListener => {
                self.server
                    .accept_vsock(&self.reactor, &mut self.timers, Instant::now())
            }
            Token::Conn(id) => {
                for req in self
                    .server
                    .read(&self.reactor, id, ev.flags, Instant::now())
                {
                    self.on_request(id, req);
                }
                self.server.dispatched(&self.reactor, id);
            }
            Token::Log(id) => self.on_log(id),
            Token::Cgroup(id) => {
                let news = self.cgroups.on_event(id, Instant::now(), &mut self.timers);
                self.on_cgroup_news(news);
            }
            Token::Child(id) => self.on_child(id),
            Token::Notify(id) => self.on_notify(id),
            Token::Probe(id) => self.on_probe_socket(id),
            Token::ReadyFd(id) => self.on_ready_fd(id),
            Token::FanoutIn(id) => {
                let moved = self.fanouts.on_source(&self.reactor, id, Instant::now());
                self.on_fanout(moved);
            }
            Token::FanoutOut(id) => {
                let moved = self.fanouts.on_dest(&self.reactor, id, Instant::now());
                self.on_fanout(moved);
            }
            Token::Syslog => {
                let events = self
                    .syslog
                    .as_mut()
                    .map_or(Vec::new(), |s| s.drain(Instant::now()));
                for kind in events {
                    self.event(kind);
                }
            }
        }
    }

    /// Answer one request: the handler returns its reply, and this is the one place
    /// that sends it.
    fn on_request(&mut self, conn: crate::ids::ConnId, req: shuma_card::protocol::Request) {
        match self.handle_request(conn, req) {
            Ok(Reply::Frames(frames)) => self.server.deliver(&self.reactor, conn, &frames),
            Ok(Reply::Saved(frames)) => self.server.deliver_held(&self.reactor, conn, &frames),
            Ok(Reply::Follow { frames, follow }) => {
                self.server.deliver(&self.reactor, conn, &frames);
                if let Follow::Ready {
                    deadline: Some(at), ..
                } = &follow
                {
                    self.timers.add(*at, TimerAction::WaitReady(conn));
                }
                self.server.set_follow(conn, follow);
            }
            Ok(Reply::Close { code, message }) => {
                self.server.fail(&self.reactor, conn, code, message)
            }
            Err((code, message)) => {
                self.server
                    .deliver(&self.reactor, conn, &[Response::Error { code, message }])
            }
        }
    }

    fn on_timer(&mut self, action: TimerAction, now: Instant) {
        match action {
            TimerAction::Command(id) => {
                self.command_event(id, crate::supervise::Event::Timer, now);
                self.straggler_deadline(id, now);
            }
            TimerAction::WorkspaceTtl(id) => {
                if let Some(name) = self.table.workspace_name(id) {
                    log::info!("workspace {name}: TTL reached");
                    self.stop_workspace(id, None, false);
                }
            }
            TimerAction::ShutdownDeadline => self.shutdown_deadline(),
            TimerAction::Stats => self.sample_stats(now),
            TimerAction::CgroupReport(id) => {
                if let Some(report) = self.cgroups.report(id, now) {
                    self.on_cgroup_news(watches::News::Report(report));
                }
            }
            TimerAction::RunSnapshot => self.persist_if_due(now),
            TimerAction::OrphanScan => {
                if self.procs.scan_pending() {
                    self.reap_orphans();
                }
            }
            TimerAction::Durable => self.store.durable_due(now, &mut self.timers),
            TimerAction::ResumeAccept => self.server.resume(&self.reactor, &mut self.timers, now),
            TimerAction::ConnDeadline(id) => {
                self.server
                    .deadline(&self.reactor, &mut self.timers, id, now)
            }
            TimerAction::Ready(id) => self.on_ready_timer(id, now),
            TimerAction::WaitReady(conn) => self.on_wait_ready_timer(conn),
            TimerAction::Probe(id) => self.on_probe_timer(id, now),
            TimerAction::Pipeline(id) => self.on_pipeline_timer(id, now),
        }
    }

    /// Fire every timer due at `now`. The loop passes the clock; in-process tests pass a
    /// later instant, their fake clock.
    fn fire_timers(&mut self, now: Instant) {
        for action in self.timers.expired(now) {
            self.on_timer(action, now);
        }
    }

    /// Record an event and push it to followers.
    fn event(&mut self, kind: EventKind) {
        let mono = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let mono_us = mono.tv_sec as u64 * 1_000_000 + mono.tv_nsec as u64 / 1_000;
        let unix_ms = workspaces::unix_ms();
        log::log!(log_level(&kind), "event: {kind}");
        let ev = self.journal.push(kind, mono_us, unix_ms).clone();
        self.store.mark_dirty();
        for id in self.server.followers(|f| matches!(f, Follow::Events(_))) {
            if let Some(conn) = self.server.conn_mut(id) {
                conn.send_lossy(&Response::Events(vec![ev.clone()]), 1);
                conn.follow = Follow::Events(ev.id);
            }
            self.server.service(&self.reactor, id);
        }
    }

    /// Write the /run copy if it is due. A reply that acknowledges a change of this turn
    /// is held by the server until then, so the write is due now whatever the debounce
    /// says: an answered change is in the /run snapshot before its answer is sent.
    fn end_of_turn(&mut self) {
        if self.server.has_held() {
            self.store.force_run_write();
        }
        self.persist_if_due(Instant::now());
    }

    /// Write the /run copy if something changed and its debounce allows (a lone change
    /// at once, a burst coalesced), unless a shutdown froze the snapshot. (Before a
    /// re-exec the write is harmless: `prepare_reexec` writes the final one.)
    fn persist_if_due(&mut self, now: Instant) {
        if matches!(self.life, Lifecycle::Stopping { .. }) {
            return;
        }
        if let Some(n) = self.journal.new_disk_losses() {
            let message = format!(
                "{n} event(s) not written to the event journal on disk: its writer fell \
                 behind by {} events; they stay in memory while the ring holds them",
                crate::persist::EVENT_QUEUE
            );
            log::warn!("{message}");
            self.event(EventKind::Warning { message });
        }
        if self.store.run_write_due(now, &mut self.timers) {
            self.encode_snapshot(false);
            if let Some(message) = self.store.write(now, &mut self.timers) {
                self.event(EventKind::Warning { message });
            }
        }
    }

    /// Flush both copies and wait for the durable one, and for the event journal on disk
    /// (shutdown).
    fn flush_state(&mut self) {
        self.journal.flush_disk(JOURNAL_FLUSH_BOUND);
        self.encode_snapshot(false);
        self.store.flush(None);
    }

    fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

/// The level an event is logged at (the console as PID 1). Routine lifecycle at debug:
/// the journal has it, and a console line per spawn costs more than the spawn's
/// bookkeeping. So is a syslog message below warning: sshd and PAM write several per
/// login at info and debug, which would flood a host's serial console.
pub(crate) fn log_level(kind: &EventKind) -> log::Level {
    let routine = match kind {
        EventKind::CommandStarted { .. }
        | EventKind::CommandExited {
            status: shuma_card::ExitStatus::Code(0),
            ..
        } => true,
        EventKind::Syslog { severity, .. } => *severity > syslog::CONSOLE_MAX_SEVERITY,
        _ => false,
    };
    if routine {
        log::Level::Debug
    } else {
        log::Level::Info
    }
}

/// How long a shutdown or re-exec waits for the event journal to reach the disk.
pub(crate) const JOURNAL_FLUSH_BOUND: Duration = Duration::from_secs(5);

/// The on-disk event journal, if `cfg` wants one and a trusted directory holds it, with
/// the newest id it holds; and what opening it found (warnings for the journal).
fn open_disk_journal(
    cfg: &Config,
    claim: &store::Claim,
) -> (Option<(crate::persist::EventLog, Option<u64>)>, Vec<String>) {
    let Some((path, durable)) = claim
        .journal_dir(cfg.journal_dir.as_deref())
        .filter(|_| cfg.journal_max > 0)
    else {
        return (None, Vec::new());
    };
    let total = if durable {
        cfg.journal_max
    } else {
        cfg.journal_max.min(crate::JOURNAL_MAX_RUN)
    };
    let opened = crate::persist::StateDir::open(&path, None)
        .map_err(|e| e.to_string())
        .and_then(|dir| {
            crate::persist::EventLog::open(dir, crate::persist::EventLogLimits::with_total(total))
                .map_err(|e| e.to_string())
        });
    match opened {
        Ok((log, found)) => (Some((log, found.last_id)), found.warnings),
        Err(e) => {
            let message = format!(
                "event journal {}: {e}; events are kept in memory only",
                path.display()
            );
            log::warn!("{message}");
            (None, vec![message])
        }
    }
}
