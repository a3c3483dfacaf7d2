//! What survives: building the snapshot from the live state, writing it (the /run
//! copy at most once per loop turn, the durable copy debounced and off the loop's
//! thread), and restoring from it at start.
//!
//! On start: the /run snapshot of this boot (a re-exec, or a crash restart) adopts the
//! processes still running, checking each pid's start time so a recycled pid is never
//! taken for ours; otherwise the durable copy (a reboot) recreates the workspaces with
//! their limits and starts their services again, without rerunning finished tasks.

use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shuma_card::protocol::WsState;
use shuma_card::snapshot::{LiveProcess, SavedExitStatus, SavedStatsSample, WorkspaceState};
use shuma_card::{CommandKind, CommandSpec, EventKind};

use super::commands::Run;
use super::{Command, Runtime, Workspace};
use crate::persist::{self, Loaded, Source};
use crate::supervise::{Event, State};
use crate::timers::TimerAction;
use crate::token::Token;

/// Connections handed from one image to the next across a re-exec, in
/// `<state-dir>/handover.bin`. Transient (written just before exec, deleted when read),
/// but read by a possibly newer binary, so it carries its own version: a version this
/// build does not know is ignored, and those clients see their connection closed.
#[derive(serde::Serialize, serde::Deserialize, Debug, Default)]
struct Handover {
    version: u32,
    conns: Vec<HandoverConn>,
    /// Captured output, so `shuma logs` shows the same before and after.
    rings: Vec<HandoverRing>,
}

#[derive(serde::Serialize, serde::Deserialize, Debug)]
struct HandoverRing {
    command: u64,
    /// stdout and stderr: bytes held, bytes ever written, bytes dropped.
    out: (Vec<u8>, u64, u64),
    err: (Vec<u8>, u64, u64),
}

#[derive(serde::Serialize, serde::Deserialize, Debug)]
struct HandoverConn {
    fd: i32,
    hello_done: bool,
    /// Read, not yet a whole frame.
    inbox: Vec<u8>,
    /// Not yet written to the client.
    outbox: Vec<u8>,
    /// A `run --wait` client: the command whose exit it waits for.
    waiting_for: Option<u64>,
}

const HANDOVER_VERSION: u32 = 1;
const HANDOVER_FILE: &str = "handover.bin";

/// Newest stats samples per workspace kept in the snapshot. The loop keeps more in
/// memory (`STATS_HISTORY`), but the snapshot is written every turn: at 60 samples the
/// history was 1.56 MB of a 2.0 MB snapshot of 1,000 workspaces and the write took 3.1 ms
/// instead of 0.64 ms (`cargo run --release -p arje-bench --bin snapshot`).
pub const SNAPSHOT_STATS: usize = 8;

/// At most one /run snapshot write per this interval; a change is written at once
/// after a quiet interval, and within this bound during a burst. Measured: with 10,000
/// live commands the per-turn write was a third of the loop's CPU
/// (`perf record` during `cargo run --release -p arje-bench --bin runtime`).
pub const RUN_EVERY: Duration = Duration::from_millis(10);

/// Default spacing of durable writes.
pub const DURABLE_EVERY: Duration = Duration::from_secs(1);

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The Instant that was `ms` of wall clock ago.
fn instant_of_unix_ms(ms: u64, now: Instant, now_unix: u64) -> Instant {
    now.checked_sub(Duration::from_millis(now_unix.saturating_sub(ms)))
        .unwrap_or(now)
}

fn unix_ms_of_instant(t: Instant, now: Instant, now_unix: u64) -> u64 {
    now_unix.saturating_sub(now.saturating_duration_since(t).as_millis() as u64)
}

impl Runtime {
    /// Write the /run copy now, and hand the bytes to the durable writer when due.
    pub(crate) fn persist(&mut self) {
        self.encode_snapshot(false);
        if let Err(e) = persist::write_run(&self.cfg.state_dir, &self.snap_buf) {
            // Logged once per distinct failure burst would be nicer; the loop goes on.
            log::error!("{e}");
        }
        if self.durable.is_some() {
            let now = Instant::now();
            self.debounce.mark_dirty(now);
            self.durable_due(now);
        }
    }

    /// Encode the state into `snap_buf` from borrowed parts: no `Snapshot` value is
    /// built and no spec is cloned; each workspace's spec is encoded once and cached
    /// (`Workspace::spec_bytes`). With `for_reexec`, the fds the next image takes over
    /// (the listener, each live run's output pipes) are recorded too.
    fn encode_snapshot(&mut self, for_reexec: bool) {
        use shuma_card::snapshot::{encode_parts, CommandParts, SnapshotHead, WorkspaceParts};
        let now = Instant::now();
        let now_unix = unix_ms();
        let head = SnapshotHead {
            written_unix_ms: now_unix,
            boot_id: &self.boot_id,
            arje_pid: self.own_pid,
            next_event_id: self.journal.next_id(),
            next_command_id: self.next_command,
            next_workspace_id: 0, // TODO(snap-v2): the runtime's next workspace id.
            listener_fd: self
                .listener
                .as_ref()
                .filter(|_| for_reexec)
                .map(|l| l.as_raw_fd()),
        };
        let commands = &self.commands;
        let pipes = &self.pipes;
        // The read end of a command's stdout (false) or stderr (true) pipe, for a re-exec.
        let pipe_fd = move |c: &Command, is_err: bool| {
            c.pipe_ids
                .iter()
                .filter_map(|id| pipes.get(id))
                .find(|(_, e, _)| *e == is_err)
                .map(|(_, _, fd)| fd.as_raw_fd())
                .filter(|_| for_reexec)
        };
        let workspaces = self.workspaces.values().map(|ws| WorkspaceParts {
            id: 0, // TODO(snap-v2): the workspace's id.
            spec_bytes: &ws.spec_bytes,
            created_unix_ms: ws.created_unix_ms,
            stopping: ws.state != WsState::Running,
            commands: ws
                .commands
                .iter()
                // Every id of a workspace is in the command table (they are inserted and
                // removed together); indexing keeps the iterator's exact length, so the
                // encoder writes the count first instead of shifting the bytes after.
                .map(move |id| &commands[id])
                .map(move |c| CommandParts {
                    id: c.id,
                    name: &c.spec.name,
                    restarts: c.sup.restarts,
                    recent_restarts_unix_ms: c
                        .sup
                        .recent_restarts
                        .iter()
                        .map(move |t| unix_ms_of_instant(*t, now, now_unix)),
                    last_exit: c.sup.last_exit,
                    done: c.spec.kind == CommandKind::Task && c.sup.is_final(),
                    failed: match &c.sup.state {
                        State::Failed { reason } => Some(reason.as_str()),
                        _ => None,
                    },
                    live: c.run.as_ref().map(|r| LiveProcess {
                        pid: r.pid,
                        start_time_ticks: r.start_time_ticks,
                        started_unix_ms: r.started_unix_ms,
                        stdout_fd: pipe_fd(c, false),
                        stderr_fd: pipe_fd(c, true),
                    }),
                }),
            stats: ws
                .stats
                .iter()
                .skip(ws.stats.len().saturating_sub(SNAPSHOT_STATS)),
        });
        encode_parts(&head, workspaces, &mut self.snap_buf);
    }

    /// Submit the newest bytes to the durable writer if the debounce allows, else arm
    /// the timer for when it will.
    pub(crate) fn durable_due(&mut self, now: Instant) {
        let Some(writer) = &self.durable else { return };
        if !self.debounce.is_dirty() {
            return;
        }
        if self.debounce.due(now) {
            writer.submit(self.snap_buf.clone());
            self.debounce.written(now);
        } else if let Some(at) = self.debounce.next_deadline() {
            if !self.durable_timer_armed {
                self.durable_timer_armed = true;
                self.timers.add(at, TimerAction::Durable);
            }
        }
    }

    pub(crate) fn on_durable_timer(&mut self, now: Instant) {
        self.durable_timer_armed = false;
        self.durable_due(now);
    }

    /// Flush both copies and wait for the durable one (shutdown, re-exec).
    pub fn flush_state(&mut self) {
        self.persist();
        if let Some(writer) = &self.durable {
            writer.submit(self.snap_buf.clone());
            if let Err(e) = writer.flush_blocking() {
                log::error!("durable snapshot: {e}");
            }
        }
    }

    /// Restore what `loaded` holds. Called once, before the cards are loaded.
    pub(crate) fn restore(&mut self, loaded: Loaded) {
        for (path, why) in &loaded.set_aside {
            let message = format!("snapshot set aside as {}: {why}", path.display());
            log::error!("{message}");
            self.event(EventKind::Warning { message });
        }
        let Some(snap) = loaded.snapshot else { return };
        let adopt = loaded.source == Source::Run && persist::same_boot(&snap);
        let reexec = adopt && snap.arje_pid == std::process::id() as i32;
        log::info!(
            "state: {} workspace(s) from the {} copy, written {} ms ago ({})",
            snap.workspaces.len(),
            if loaded.source == Source::Run {
                "/run"
            } else {
                "durable"
            },
            unix_ms().saturating_sub(snap.written_unix_ms),
            if reexec {
                "re-exec: adopting children"
            } else if adopt {
                "crash restart: adopting what still runs"
            } else {
                "reboot: starting afresh"
            }
        );
        self.journal =
            crate::journal::Journal::new(crate::journal::DEFAULT_JOURNAL, snap.next_event_id);
        self.next_command = self.next_command.max(snap.next_command_id);
        let now = Instant::now();
        let now_unix = unix_ms();
        for ws in snap.workspaces {
            self.restore_workspace(ws, adopt, now, now_unix);
        }
    }

    fn restore_workspace(
        &mut self,
        state: WorkspaceState,
        adopt: bool,
        now: Instant,
        now_unix: u64,
    ) {
        let ws_spec = state.spec.into_card();
        let name = ws_spec.name.clone();
        let cgroup = if self.cgroups.is_enabled() {
            let existing = if adopt {
                self.cgroups.open_workspace(&name).ok()
            } else {
                None
            };
            match existing {
                Some(cg) => Some(cg),
                None => match self.cgroups.create_workspace(&name, &ws_spec.limits) {
                    Ok((cg, _)) => Some(cg),
                    Err(e) => {
                        log::error!("restore workspace {name}: {e}; running it without a cgroup");
                        None
                    }
                },
            }
        } else {
            None
        };
        let mut ws = Workspace {
            spec_bytes: shuma_card::snapshot::encode_spec(&ws_spec),
            spec: ws_spec.clone(),
            created_unix_ms: state.created_unix_ms,
            state: WsState::Running,
            commands: Default::default(),
            finished_runs: Default::default(),
            cgroup,
            unenforced: self.cgroups.unenforced(&ws_spec.limits),
            stats: state
                .stats
                .into_iter()
                .map(SavedStatsSample::into_protocol)
                .collect(),
        };
        let mut to_start = Vec::new();
        for cs in state.commands {
            let spec = ws_spec
                .commands
                .iter()
                .find(|c| c.name == cs.name)
                .cloned()
                // An ad-hoc `shuma run`: its declaration is not in the card.
                .unwrap_or_else(|| {
                    CommandSpec::new(cs.name.clone(), CommandKind::Task, Vec::new())
                });
            let mut cmd = Command::new(cs.id, &name, spec);
            cmd.adhoc = !ws_spec.commands.iter().any(|c| c.name == cs.name);
            cmd.sup.restarts = cs.restarts;
            cmd.sup.last_exit = cs.last_exit.map(SavedExitStatus::into_event);
            cmd.sup.recent_restarts = cs
                .recent_restarts_unix_ms
                .iter()
                .map(|t| instant_of_unix_ms(*t, now, now_unix))
                .collect();
            let adopted = match (adopt, cs.live) {
                (true, Some(live)) => self.adopt_process(&mut cmd, &ws, live, now, now_unix),
                _ => false,
            };
            if !adopted {
                if let Some(reason) = cs.failed {
                    cmd.sup.state = State::Failed { reason };
                } else if cs.done
                    || (adopt && cs.live.is_none() && cmd.spec.kind == CommandKind::Task)
                {
                    cmd.sup.state = State::Exited;
                } else if cmd.adhoc {
                    // A one-shot whose process is gone and whose argv we never stored.
                    cmd.sup.state = State::Exited;
                } else {
                    to_start.push(cs.id);
                }
            }
            ws.commands.insert(cs.id);
            self.commands.insert(cs.id, cmd);
        }
        if let Some(ttl) = ws_spec.ttl_ms {
            let at = instant_of_unix_ms(state.created_unix_ms + ttl, now, now_unix);
            self.timers
                .add(at.max(now), TimerAction::WorkspaceTtl(name.clone()));
        }
        let stopping = state.stopping;
        self.workspaces.insert(name.clone(), ws);
        self.watch_workspace(&name);
        if self
            .workspaces
            .get(&name)
            .is_some_and(|w| w.cgroup.is_some())
        {
            self.timers
                .add(now + super::workspaces::STATS_EVERY, TimerAction::Stats);
        }
        if stopping {
            self.stop_workspace(&name, None, false);
            return;
        }
        for id in to_start {
            self.command_event(id, Event::Start, now);
        }
    }

    /// Take over a process recorded in the snapshot, if it is still the same process.
    fn adopt_process(
        &mut self,
        cmd: &mut Command,
        ws: &Workspace,
        live: LiveProcess,
        now: Instant,
        now_unix: u64,
    ) -> bool {
        if !persist::still_running(&live) {
            return false;
        }
        let Some(pid) = rustix::process::Pid::from_raw(live.pid) else {
            return false;
        };
        let pidfd = match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
            Ok(fd) => fd,
            Err(e) => {
                log::warn!("adopt pid {}: pidfd_open: {e}", live.pid);
                return false;
            }
        };
        let leaf = ws.cgroup.as_ref().and_then(|cg| {
            cg.open_leaf(&super::commands::leaf_name(cmd.id, &cmd.spec.name))
                .ok()
        });
        let ws_name = cmd.workspace.clone();
        let (oom_base, watch_ids) = self.watch_leaf(&ws_name, leaf.as_ref());
        let started = instant_of_unix_ms(live.started_unix_ms, now, now_unix);
        if let Err(e) = self.register(pidfd.as_fd(), Token::Child(cmd.id), false) {
            log::warn!("adopt pid {}: epoll: {e}", live.pid);
            return false;
        }
        let pipe_ids: Vec<u64> = [(live.stdout_fd, false), (live.stderr_fd, true)]
            .into_iter()
            .filter_map(|(fd, is_err)| Some((fd.and_then(crate::sys::fd::adopt)?, is_err)))
            .filter_map(|(fd, is_err)| self.add_pipe(cmd.id, is_err, fd))
            .collect();
        cmd.pipe_ids = pipe_ids;
        cmd.sup.started(started);
        cmd.run = Some(Run {
            pid: live.pid,
            pidfd,
            started,
            started_unix_ms: live.started_unix_ms,
            start_time_ticks: live.start_time_ticks,
            leaf,
            oom_kills_seen: oom_base,
            oom_kills_base: oom_base,
            watch_ids,
        });
        self.pids.insert(live.pid, cmd.id);
        log::info!(
            "adopted {}/{} pid {}",
            cmd.workspace,
            cmd.spec.name,
            live.pid
        );
        true
    }

    /// After a re-exec: take over the client connections the previous image left open.
    pub(crate) fn adopt_connections(&mut self) {
        let path = self.cfg.state_dir.join(HANDOVER_FILE);
        let Ok(bytes) = std::fs::read(&path) else {
            return;
        };
        let _ = std::fs::remove_file(&path);
        let handover: Handover = match postcard::from_bytes(&bytes) {
            Ok(h) => h,
            Err(e) => {
                log::warn!("{}: {e}; its clients' connections are lost", path.display());
                return;
            }
        };
        if handover.version != HANDOVER_VERSION {
            log::warn!(
                "{}: version {} unknown; its clients' connections are lost",
                path.display(),
                handover.version
            );
            return;
        }
        for hr in handover.rings {
            if let Some(cmd) = self.commands.get_mut(&hr.command) {
                let cap = crate::ring::DEFAULT_RING;
                // What the new image already read from the pipe comes after it.
                let newer = cmd.out.contents();
                cmd.out = crate::ring::Ring::restore(cap, &hr.out.0, hr.out.1, hr.out.2);
                cmd.out.push(&newer);
                let newer = cmd.err.contents();
                cmd.err = crate::ring::Ring::restore(cap, &hr.err.0, hr.err.1, hr.err.2);
                cmd.err.push(&newer);
            }
        }
        for hc in handover.conns {
            let Some(fd) = crate::sys::fd::adopt(hc.fd) else {
                continue;
            };
            let stream = std::os::unix::net::UnixStream::from(fd);
            let _ = stream.set_nonblocking(true);
            let mut conn =
                crate::control::Conn::restore(stream, hc.hello_done, hc.inbox, hc.outbox);
            if let Some(id) = hc.waiting_for {
                conn.follow = crate::control::Follow::Exit(id);
            }
            let id = self.next_conn;
            self.next_conn += 1;
            if self.register(conn.fd(), Token::Conn(id), false).is_ok() {
                self.conns.insert(id, conn);
                self.service_conn(id);
            }
        }
    }

    /// Before exec'ing a new image: keep the fds it needs open across exec and write a
    /// snapshot that names them.
    pub(crate) fn prepare_reexec(&mut self) {
        // exec closes every close-on-exec fd: clear the flag on those the new image
        // takes over (their numbers go into the snapshot).
        for (_, _, fd) in self.pipes.values() {
            let _ = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty());
        }
        if let Some(l) = &self.listener {
            let _ = rustix::io::fcntl_setfd(l, rustix::io::FdFlags::empty());
        }
        // Clients connected now keep their connection: a `shuma ping` in flight is
        // answered by the new image. Followers of logs or events are closed (their
        // streams end); `run --wait` clients keep waiting.
        let ring = |r: &crate::ring::Ring| (r.contents(), r.written(), r.dropped());
        let mut handover = Handover {
            version: HANDOVER_VERSION,
            conns: Vec::new(),
            rings: self
                .commands
                .values()
                .filter(|c| c.out.written() > 0 || c.err.written() > 0)
                .map(|c| HandoverRing {
                    command: c.id,
                    out: ring(&c.out),
                    err: ring(&c.err),
                })
                .collect(),
        };
        for conn in self.conns.values() {
            let waiting_for = match conn.follow {
                crate::control::Follow::None => None,
                crate::control::Follow::Exit(id) => Some(id),
                _ => continue,
            };
            if conn.closing {
                continue;
            }
            let _ = rustix::io::fcntl_setfd(conn.fd(), rustix::io::FdFlags::empty());
            let (inbox, outbox) = conn.buffers();
            handover.conns.push(HandoverConn {
                fd: conn.fd().as_raw_fd(),
                hello_done: conn.hello_done,
                inbox: inbox.to_vec(),
                outbox: outbox.to_vec(),
                waiting_for,
            });
        }
        if let Ok(bytes) = postcard::to_allocvec(&handover) {
            if let Err(e) = std::fs::write(self.cfg.state_dir.join(HANDOVER_FILE), bytes) {
                log::warn!("re-exec: could not hand over client connections: {e}");
            }
        }
        // The durable copy never names fds: they mean nothing after a reboot.
        let durable_bytes = self.durable.is_some().then(|| {
            self.encode_snapshot(false);
            self.snap_buf.clone()
        });
        self.encode_snapshot(true);
        if let Err(e) = persist::write_run(&self.cfg.state_dir, &self.snap_buf) {
            log::error!("re-exec snapshot: {e}");
        }
        if let (Some(writer), Some(bytes)) = (&self.durable, durable_bytes) {
            writer.submit(bytes);
            if let Err(e) = writer.flush_blocking() {
                log::error!("durable snapshot: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime(dir: &std::path::Path) -> Runtime {
        let cfg = crate::Config {
            mode: shuma_card::protocol::Mode::Subreaper,
            socket: dir.join("s.sock"),
            socket_group: None,
            cards_dir: None,
            state_dir: dir.join("run"),
            durable_dir: None,
            cgroup_root: None,
            shutdown_timeout: Duration::from_secs(5),
        };
        Runtime::new(cfg).expect("runtime")
    }

    #[test]
    fn test_encode_snapshot_records_state_and_reexec_fds() {
        let dir = tempfile::tempdir().unwrap();
        let mut rt = runtime(dir.path());
        let mut spec = shuma_card::WorkspaceSpec {
            name: "w".into(),
            ..Default::default()
        };
        spec.limits.memory_max = Some(64 << 20);
        spec.commands.push(CommandSpec::new(
            "t",
            CommandKind::Task,
            vec!["/bin/true".into()],
        ));
        let svc = CommandSpec::new(
            "s",
            CommandKind::Service,
            vec!["/bin/sleep".into(), "60".into()],
        );
        spec.commands.push(svc);
        rt.create_workspace(spec.clone()).unwrap();
        let id = rt
            .start_oneshot(
                "w",
                CommandSpec::new("", CommandKind::Task, vec!["/bin/false".into()]),
            )
            .unwrap();
        while rt.exit_status(id).is_none() {
            rt.turn();
        }

        rt.encode_snapshot(false);
        let plain = shuma_card::snapshot::decode(&rt.snap_buf).unwrap();
        rt.encode_snapshot(true);
        let reexec = shuma_card::snapshot::decode(&rt.snap_buf).unwrap();

        assert_eq!(plain.workspaces.len(), 1);
        assert_eq!(plain.workspaces[0].spec.clone().into_card(), spec);
        let cmds = &plain.workspaces[0].commands;
        assert_eq!(cmds.len(), 3);
        assert_eq!(cmds[2].last_exit, Some(SavedExitStatus::Code(1)));
        let live = cmds[1].live.expect("the service runs");
        assert_eq!(
            (live.stdout_fd, live.stderr_fd, plain.listener_fd),
            (None, None, None)
        );
        let live = reexec.workspaces[0].commands[1].live.unwrap();
        assert!(
            live.stdout_fd.is_some() && live.stderr_fd.is_some() && reexec.listener_fd.is_some()
        );
        assert_ne!(live.stdout_fd, live.stderr_fd);
    }
}
