//! Probes: checks arje runs from outside a service. A readiness probe (`ready = { exec |
//! tcp | unix }`) is retried from the start until it succeeds, 50 ms apart at first and
//! at most 1 s apart; a health check (`health`) runs every `interval` once the service is
//! ready, and `retries` failures in a row make it unhealthy: it is stopped and its
//! restart policy decides.
//!
//! One probe per command at a time. An `exec` probe is a child of arje's, born in the
//! run's leaf cgroup with the service's user, environment and directory, output to
//! /dev/null; its exit is reaped like an orphan's and routed here by pid
//! ([`super::procs::Procs::probe_exited`]). A `tcp` probe is a non-blocking connect that
//! epoll reports (`Token::Probe`); a `unix` probe's connect answers at once. Every probe
//! has a deadline; past it an exec probe is killed through its pidfd and a connect
//! dropped.
//!
//! A `tcp` host is an IP address or `localhost`: resolving a name could block the loop
//! (getaddrinfo), and readiness of a service is nearly always checked on this machine.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use shuma_card::protocol::Health;
use shuma_card::{CommandSpec, ExitStatus, Probe, Readiness};

use super::Runtime;
use crate::ids::CommandId;
use crate::supervise::State;
use crate::timers::TimerAction;
use crate::token::Token;

/// First delay between readiness probes; it doubles up to [`READY_PROBE_MAX`].
const READY_PROBE_FIRST: Duration = Duration::from_millis(50);
const READY_PROBE_MAX: Duration = Duration::from_secs(1);
/// How long one readiness probe may take.
const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the probe in flight is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Ready,
    Health,
}

/// A probe in flight.
enum Flight {
    Exec { pid: i32, pidfd: OwnedFd },
    Connect { fd: OwnedFd },
}

/// One command's probes.
#[derive(Default)]
pub struct ProbeState {
    flight: Option<(Purpose, Flight, Instant)>,
    /// When the next probe starts.
    next: Option<Instant>,
    /// The delay before the next readiness probe.
    backoff: Option<Duration>,
    /// Health-check failures in a row, and how the last went.
    failures: u32,
    last: String,
    /// A health probe succeeded since the service became ready.
    healthy: bool,
}

impl ProbeState {
    /// The health verdict `shuma ps` shows; `None` without a `health` check.
    pub fn health(&self, spec: &CommandSpec) -> Option<Health> {
        spec.health.as_ref()?;
        Some(if self.failures > 0 {
            Health::Failing {
                failures: self.failures,
                last: self.last.clone(),
            }
        } else if self.healthy {
            Health::Healthy
        } else {
            Health::Starting
        })
    }
}

impl Runtime {
    /// A run with a readiness probe started: probe it soon, then again until it works.
    pub(crate) fn probe_soon(&mut self, id: CommandId, now: Instant) {
        let Some(cmd) = self.table.commands.get_mut(&id) else {
            return;
        };
        let p = &mut cmd.probe;
        p.backoff = Some(READY_PROBE_FIRST);
        p.next = Some(now + READY_PROBE_FIRST);
        self.timers
            .add(now + READY_PROBE_FIRST, TimerAction::Probe(id));
    }

    /// The service became ready: its health checks begin.
    pub(crate) fn health_start(&mut self, id: CommandId, now: Instant) {
        let Some(cmd) = self.table.commands.get_mut(&id) else {
            return;
        };
        let Some(check) = &cmd.spec.health else {
            return;
        };
        let at = now + Duration::from_millis(check.interval_ms);
        cmd.probe.failures = 0;
        cmd.probe.healthy = false;
        cmd.probe.next = Some(at);
        self.timers.add(at, TimerAction::Probe(id));
    }

    /// The run ended: drop its probe (an exec probe is killed) and its schedule.
    pub(crate) fn probe_on_exit(&mut self, id: CommandId) {
        let Some(cmd) = self.table.commands.get_mut(&id) else {
            return;
        };
        let p = std::mem::take(&mut cmd.probe);
        cmd.probe.failures = p.failures;
        cmd.probe.last = p.last;
        if let Some((_, flight, _)) = p.flight {
            self.drop_flight(flight);
        }
    }

    fn drop_flight(&mut self, flight: Flight) {
        match flight {
            Flight::Exec { pid, pidfd } => {
                // Its whole process group (the probe called setsid, and a `sh -c` probe
                // may have started a hung `curl`): the group id is pinned while the probe
                // is unreaped. Reaped as an orphan later; the pid is forgotten so it is
                // not routed here.
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let _ = rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL);
                self.procs.probe_forget(pid);
            }
            Flight::Connect { fd } => self.reactor.remove(fd.as_fd()),
        }
    }

    /// A probe timer: the probe in flight is past its deadline, or the next is due.
    pub(crate) fn on_probe_timer(&mut self, id: CommandId, now: Instant) {
        let Some(cmd) = self.table.commands.get_mut(&id) else {
            return;
        };
        if !matches!(cmd.sup.state, State::Running { .. }) {
            return;
        }
        if let Some((purpose, _, deadline)) = &cmd.probe.flight {
            if *deadline <= now {
                let purpose = *purpose;
                if let Some((_, flight, _)) = cmd.probe.flight.take() {
                    self.drop_flight(flight);
                }
                self.probe_done(id, purpose, Err("timed out".into()), now);
            }
            return;
        }
        if cmd.probe.next.is_some_and(|n| n <= now) {
            cmd.probe.next = None;
            self.probe_start(id, now);
        }
    }

    /// Start the probe due for `id`: the readiness probe until it is ready, then the
    /// health check.
    fn probe_start(&mut self, id: CommandId, now: Instant) {
        let Some(cmd) = self.table.commands.get(&id) else {
            return;
        };
        let (purpose, probe, timeout) = match (&cmd.spec.ready, &cmd.spec.health) {
            (Readiness::Probe(p), _) if !cmd.ready.ready => {
                (Purpose::Ready, p.clone(), READY_PROBE_TIMEOUT)
            }
            (_, Some(h)) if cmd.ready.ready => (
                Purpose::Health,
                h.probe.clone(),
                Duration::from_millis(h.timeout_ms),
            ),
            _ => return,
        };
        let started = match &probe {
            Probe::Exec(argv) => self.spawn_probe(id, argv).map(Some),
            Probe::Tcp(addr) => tcp_connect(addr).and_then(|fd| match fd {
                None => Ok(None),
                Some(fd) => {
                    self.reactor
                        .add(
                            fd.as_fd(),
                            Token::Probe(id),
                            super::reactor::Interest::ReadWrite,
                        )
                        .map_err(|e| format!("epoll_ctl: {e}"))?;
                    Ok(Some(Flight::Connect { fd }))
                }
            }),
            Probe::Unix(path) => unix_connect(path).map(|()| None),
        };
        match started {
            Ok(Some(flight)) => {
                let deadline = now + timeout;
                if let Some(cmd) = self.table.commands.get_mut(&id) {
                    cmd.probe.flight = Some((purpose, flight, deadline));
                }
                self.timers.add(deadline, TimerAction::Probe(id));
            }
            // Answered at once: a unix connect, or a tcp connect that completed.
            Ok(None) => self.probe_done(id, purpose, Ok(()), now),
            Err(why) => self.probe_done(id, purpose, Err(why), now),
        }
    }

    fn spawn_probe(&mut self, id: CommandId, argv: &[String]) -> Result<Flight, String> {
        let cmd = self.table.commands.get(&id).ok_or("no such command")?;
        let creds = super::creds::resolve(&cmd.spec)?;
        let plan =
            crate::sys::spawn::ExecPlan::new(argv, &cmd.spec.env, cmd.spec.cwd.as_deref(), creds)
                .map_err(|e| e.to_string())?;
        let leaf = cmd.run.as_ref().and_then(|r| r.leaf.as_ref());
        let target = leaf.map(|l| crate::sys::spawn::CgroupTarget { dir: l.fd() });
        let spawned = self
            .procs
            .spawn_probe(id, &plan, target.as_ref())
            .map_err(|e| format!("{} {e}", argv[0]))?;
        Ok(Flight::Exec {
            pid: spawned.pid,
            pidfd: spawned.pidfd,
        })
    }

    /// A probe's child exited (routed by pid from the reaper).
    pub(crate) fn on_probe_exit(&mut self, id: CommandId, status: ExitStatus) {
        let Some(cmd) = self.table.commands.get_mut(&id) else {
            return;
        };
        let Some((purpose, _, _)) = cmd.probe.flight.take() else {
            return;
        };
        let result = if status.success() {
            Ok(())
        } else {
            Err(status.to_string())
        };
        self.probe_done(id, purpose, result, Instant::now());
    }

    /// A tcp probe's connect finished (its socket is writable).
    pub(crate) fn on_probe_socket(&mut self, id: CommandId) {
        let Some(cmd) = self.table.commands.get_mut(&id) else {
            return;
        };
        if !matches!(cmd.probe.flight, Some((_, Flight::Connect { .. }, _))) {
            return;
        }
        let Some((purpose, Flight::Connect { fd }, _)) = cmd.probe.flight.take() else {
            return;
        };
        self.reactor.remove(fd.as_fd());
        let result = match rustix::net::sockopt::socket_error(&fd) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("connect: {e}")),
            Err(e) => Err(format!("SO_ERROR: {e}")),
        };
        self.probe_done(id, purpose, result, Instant::now());
    }

    fn probe_done(
        &mut self,
        id: CommandId,
        purpose: Purpose,
        result: Result<(), String>,
        now: Instant,
    ) {
        let Some(cmd) = self.table.commands.get_mut(&id) else {
            return;
        };
        if !matches!(cmd.sup.state, State::Running { .. }) {
            return;
        }
        match (purpose, result) {
            (Purpose::Ready, Ok(())) => self.mark_ready(id, now),
            (Purpose::Ready, Err(_)) => {
                let delay = cmd.probe.backoff.unwrap_or(READY_PROBE_FIRST);
                cmd.probe.backoff = Some((delay * 2).min(READY_PROBE_MAX));
                cmd.probe.next = Some(now + delay);
                self.timers.add(now + delay, TimerAction::Probe(id));
            }
            (Purpose::Health, result) => {
                let Some(check) = cmd.spec.health.clone() else {
                    return;
                };
                match result {
                    Ok(()) => {
                        cmd.probe.failures = 0;
                        cmd.probe.healthy = true;
                    }
                    Err(why) => {
                        cmd.probe.failures += 1;
                        cmd.probe.last = why;
                    }
                }
                if cmd.probe.failures >= check.retries.max(1) {
                    let why = format!(
                        "health check failed {} times in a row; last: {}",
                        cmd.probe.failures, cmd.probe.last
                    );
                    let signal = cmd.spec.stop_signal;
                    self.unhealthy(id, why, signal, now);
                    return;
                }
                let at = now + Duration::from_millis(check.interval_ms);
                cmd.probe.next = Some(at);
                self.timers.add(at, TimerAction::Probe(id));
            }
        }
    }
}

/// `host:port` with an IP address or `localhost` as the host.
pub fn parse_tcp(addr: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = addr.parse::<SocketAddr>() {
        return Ok(a);
    }
    match addr.rsplit_once(':') {
        Some(("localhost", port)) => port
            .parse::<u16>()
            .map(|p| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p))
            .map_err(|_| format!("tcp probe {addr}: bad port")),
        _ => Err(format!(
            "tcp probe {addr}: the host must be an IP address or localhost"
        )),
    }
}

/// Start a non-blocking connect: `None` if it completed at once, the socket to wait on
/// otherwise.
fn tcp_connect(addr: &str) -> Result<Option<OwnedFd>, String> {
    let addr = parse_tcp(addr)?;
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    let fd = rustix::net::socket_with(
        family,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    match rustix::net::connect(&fd, &addr) {
        Ok(()) => Ok(None),
        Err(rustix::io::Errno::INPROGRESS) => Ok(Some(fd)),
        Err(e) => Err(format!("connect {addr}: {e}")),
    }
}

/// Connect to a unix stream socket: a listener that accepts (or whose backlog is full,
/// which still says it listens) passes.
fn unix_connect(path: &str) -> Result<(), String> {
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    let addr = SocketAddrUnix::new(path).map_err(|e| format!("unix probe {path}: {e}"))?;
    match rustix::net::connect(&fd, &addr) {
        Ok(()) | Err(rustix::io::Errno::AGAIN) => Ok(()),
        Err(e) => Err(format!("connect {path}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_tcp_ip_localhost_and_name_refused() {
        assert_eq!(parse_tcp("127.0.0.1:80").unwrap().port(), 80);
        assert!(parse_tcp("[::1]:5432").unwrap().is_ipv6());
        assert_eq!(
            parse_tcp("localhost:8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert!(parse_tcp("db.example:5432")
            .unwrap_err()
            .contains("IP address"));
    }

    #[test]
    fn test_unix_connect_listener_passes_missing_path_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();

        assert_eq!(unix_connect(path.to_str().unwrap()), Ok(()));
        assert!(unix_connect(dir.path().join("none").to_str().unwrap()).is_err());
    }

    #[test]
    fn test_tcp_connect_to_a_listener_completes() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();

        let fd = tcp_connect(&addr).unwrap();

        if let Some(fd) = fd {
            let mut pfd = [rustix::event::PollFd::new(
                &fd,
                rustix::event::PollFlags::OUT,
            )];
            rustix::event::poll(&mut pfd, None).unwrap();
            assert_eq!(rustix::net::sockopt::socket_error(&fd).unwrap(), Ok(()));
        }
    }
}
