//! Accepting clients.
//!
//! Out of fds (EMFILE, ENFILE) the listener stays readable, and epoll reports it again
//! and again: the loop spun at full CPU and logged about 250,000 lines a second
//! (`host_limits.rs`). So the server keeps one fd in reserve, as libuv and nginx do:
//! out of fds, it closes the reserve, accepts the waiting client into the freed slot and
//! closes it at once (no answer is possible), then takes the reserve back. If even that
//! fails (another thread took the slot), it stops watching the listener until a
//! connection closes or [`ACCEPT_RETRY`] has passed. Either way it logs once on the way
//! in and once on the way out.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use shuma_card::protocol::ErrorCode;

use super::super::reactor::{Interest, Reactor};
use super::Server;
use crate::access;
use crate::control::{self, Conn};
use crate::timers::{TimerAction, Timers};
use crate::token::Token;

/// How long the listener rests when not even the reserve fd let a client be turned away.
pub const ACCEPT_RETRY: Duration = Duration::from_secs(1);

/// What freeing the reserve fd did.
enum TurnAway {
    /// A waiting client was accepted and closed; the reserve is back.
    Closed,
    /// No client was waiting.
    NoneWaiting,
    /// The reserve is gone (another thread took the slot, or reopening failed).
    Failed,
}

/// The reserve fd: /dev/null, read-only.
pub(super) fn open_reserve() -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?)
}

impl Server {
    /// Accept every pending client: refused ones (credentials, the connection cap) get
    /// their error and are closed at once. Out of fds, pending clients are turned away
    /// (see the module's doc); the listener is never left readable and unread.
    pub fn accept(&mut self, reactor: &Reactor, timers: &mut Timers, now: Instant) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    self.recovered();
                    self.admit_client(reactor, timers, now, stream, None);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // The client gave up while it waited: nothing to do.
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    if self.exhausted.is_none() {
                        log::error!(
                            "control: out of file descriptors ({e}): clients are closed \
                             unanswered until some are freed"
                        );
                        self.exhausted = Some(0);
                    }
                    match self.turn_away() {
                        TurnAway::Closed => continue,
                        TurnAway::NoneWaiting => return,
                        TurnAway::Failed => {
                            self.pause(reactor, timers, now);
                            return;
                        }
                    }
                }
                Err(e) => {
                    // ENOMEM, ENOBUFS...: the listener would be reported again at once.
                    self.failures += 1;
                    if self.failures.is_power_of_two() {
                        log::error!("control: accept: {e} ({} in a row)", self.failures);
                    }
                    self.pause(reactor, timers, now);
                    return;
                }
            }
        }
    }

    /// Out of fds: free the reserve, accept one pending client into its slot and close
    /// it, take the reserve back.
    fn turn_away(&mut self) -> TurnAway {
        if self.reserve.take().is_none() {
            return TurnAway::Failed;
        }
        let outcome = match self.listener.accept() {
            Ok((stream, _)) => {
                drop(stream);
                *self.exhausted.get_or_insert(0) += 1;
                TurnAway::Closed
            }
            // accept(2) takes an fd before it looks for a client, so EMFILE said nothing
            // about one waiting: with an fd free, this says none is.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => TurnAway::NoneWaiting,
            Err(_) => TurnAway::Failed,
        };
        self.reserve = open_reserve().ok();
        match outcome {
            TurnAway::Closed if self.reserve.is_none() => TurnAway::Failed,
            other => other,
        }
    }

    /// Stop watching the listener until [`Self::resume`] (a connection closed, or
    /// [`ACCEPT_RETRY`] passed).
    fn pause(&mut self, reactor: &Reactor, timers: &mut Timers, now: Instant) {
        if !self.paused {
            self.paused = true;
            reactor.remove(self.listener.as_fd());
        }
        timers.add_once(now + ACCEPT_RETRY, TimerAction::ResumeAccept);
    }

    /// Watch the listener again, and accept what waits.
    pub fn resume(&mut self, reactor: &Reactor, timers: &mut Timers, now: Instant) {
        if !self.paused {
            return;
        }
        if !self.watch_again(reactor) {
            timers.add_once(now + ACCEPT_RETRY, TimerAction::ResumeAccept);
            return;
        }
        self.accept(reactor, timers, now);
    }

    /// Put a resting listener back in epoll (which reports it if a client waits).
    /// Whether it is watched now.
    pub(super) fn watch_again(&mut self, reactor: &Reactor) -> bool {
        if !self.paused {
            return true;
        }
        match reactor.add(self.listener.as_fd(), Token::Listener, Interest::Read) {
            Ok(()) => {
                self.paused = false;
                true
            }
            Err(e) => {
                log::error!("control: watch the listener again: {e}");
                false
            }
        }
    }

    /// A client was accepted: fds are there again.
    fn recovered(&mut self) {
        if self.reserve.is_none() {
            self.reserve = open_reserve().ok();
        }
        self.failures = 0;
        if let Some(n) = self.exhausted.take() {
            log::warn!(
                "control: file descriptors available again; {n} clients were closed unanswered"
            );
        }
    }

    /// A client accepted: refused (credentials, the cap) or inserted.
    pub(super) fn admit_client(
        &mut self,
        reactor: &Reactor,
        timers: &mut Timers,
        now: Instant,
        stream: UnixStream,
        trusted: Option<access::Peer>,
    ) {
        let _ = stream.set_nonblocking(true);
        let mut conn = Conn::new(stream, now);
        // A vsock client comes with its access decided (`vsock.rs`): it has no
        // credentials to read.
        let peer = match trusted {
            Some(peer) => Ok(peer),
            None => access::peer_access(&conn.stream, self.group),
        };
        let uid = match peer {
            Ok(peer) => {
                conn.peer = peer;
                peer.uid
            }
            Err(why) => {
                log::warn!("control: refused a client: {why}");
                conn.fail(ErrorCode::Denied, why);
                conn.flush();
                return;
            }
        };
        // Only live connections count: one being closed is on its way out.
        let live = self.conns.values().filter(|c| !c.closing).count();
        let cap = if uid == 0 {
            control::MAX_CONNS + control::ROOT_RESERVE
        } else {
            control::MAX_CONNS
        };
        if live >= cap {
            conn.fail(
                ErrorCode::Limit,
                format!("too many clients (at most {})", control::MAX_CONNS),
            );
            conn.flush();
            return;
        }
        self.insert(reactor, timers, conn);
    }
}
