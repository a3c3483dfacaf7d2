//! The control server: the listening socket, one [`Conn`] per client, and what each
//! client follows. It owns their fds: it registers, services and drops them, so a stale
//! event can only reach it, and it finds nothing under a dropped id.
//!
//! Request handlers never touch a connection: they return a [`Reply`](super::Reply) and
//! the loop hands it to [`Server::deliver`], the one place that sends.
//!
//! Accepting clients, and turning them away when fds run out, is `server/accept.rs`.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Instant;

use rustix::event::epoll::EventFlags;
use shuma_card::protocol::{ErrorCode, Request, Response};

use super::reactor::{Interest, Reactor};
use crate::access::{self, Access};
use crate::control::{self, Conn, Follow, ReadOutcome};
use crate::ids::{ConnId, IdGen};
use crate::timers::{TimerAction, Timers};
use crate::token::Token;

mod accept;
mod vsock;

pub struct Server {
    listener: UnixListener,
    /// `--socket-group`: its members may connect too.
    group: Option<u32>,
    conns: HashMap<ConnId, Conn>,
    ids: IdGen<ConnId>,
    /// /dev/null, held so that one fd can be freed when none is left (`accept.rs`).
    reserve: Option<OwnedFd>,
    /// Out of fds since the last accepted client: how many were turned away.
    exhausted: Option<u64>,
    /// The listener is out of epoll (see [`accept::ACCEPT_RETRY`]).
    paused: bool,
    /// Other accept errors in a row, logged at the 1st, 2nd, 4th...
    failures: u64,
    /// Connections with a held reply, released at the end of the turn.
    held: Vec<ConnId>,
    /// Connections that turned closing this turn and are still open: their deadline
    /// timer is brought forward at the end of the turn ([`Server::arm_closing`]).
    closing: Vec<ConnId>,
    /// Clients dropped for [`control::WRITE_BUDGET`]: the first is logged, the rest
    /// counted.
    over_budget: u64,
    /// The vsock listener (`arje.vsock=PORT`), if any (`vsock.rs`).
    vsock: Option<OwnedFd>,
    /// It is out of epoll after an accept failure, until a connection closes.
    vsock_paused: bool,
}

/// A connection handed across a re-exec (see `handover.rs`).
pub struct Inherited {
    pub stream: UnixStream,
    pub hello_done: bool,
    pub inbox: Vec<u8>,
    pub outbox: Vec<u8>,
    pub follow: Follow,
}

impl Server {
    pub fn new(
        reactor: &Reactor,
        listener: UnixListener,
        group: Option<u32>,
    ) -> std::io::Result<Server> {
        reactor.add(listener.as_fd(), Token::Listener, Interest::Read)?;
        let reserve = accept::open_reserve()
            .map_err(|e| log::warn!("control: no reserve fd ({e}); out of fds, the listener rests"))
            .ok();
        Ok(Server {
            listener,
            group,
            conns: HashMap::new(),
            ids: IdGen::default(),
            reserve,
            exhausted: None,
            paused: false,
            failures: 0,
            held: Vec::new(),
            closing: Vec::new(),
            over_budget: 0,
            vsock: None,
            vsock_paused: false,
        })
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    fn insert(&mut self, reactor: &Reactor, timers: &mut Timers, conn: Conn) -> Option<ConnId> {
        let id = self.ids.next();
        reactor
            .add(conn.fd(), Token::Conn(id), Interest::Read)
            .ok()?;
        if let Some((at, _)) = conn.deadline() {
            timers.add_once(at, TimerAction::ConnDeadline(id));
        }
        self.conns.insert(id, conn);
        Some(id)
    }

    /// A connection's deadline timer fired: close it if it is due (see
    /// [`Conn::deadline`]), or check again when it will be. Its activity since the timer
    /// was set only moved the deadline, so one timer per connection is pending at most.
    pub fn deadline(&mut self, reactor: &Reactor, timers: &mut Timers, id: ConnId, now: Instant) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        match conn.deadline() {
            // Following: waiting is its job; look again later, in case it stops.
            None => {
                timers.add_once(now + control::IDLE_TIMEOUT, TimerAction::ConnDeadline(id));
            }
            Some((at, _)) if now < at => {
                timers.add_once(at, TimerAction::ConnDeadline(id));
            }
            // Bytes wait unread: the client spoke in time and the loop was busy (a turn
            // that stopped 1,000 services). Its event comes in this turn or the next.
            Some(_) if waiting_input(&conn.stream) => {
                timers.add_once(now + control::HELLO_TIMEOUT, TimerAction::ConnDeadline(id));
            }
            Some((_, why)) => {
                log::debug!("control: closing connection {id}: {why}");
                if !conn.closing {
                    conn.fail(ErrorCode::Limit, format!("closed: {why}"));
                }
                // Best effort: the answer goes if the socket takes it, and the slot is
                // freed either way.
                conn.flush();
                self.drop_conn(reactor, id);
            }
        }
    }

    /// The connection is readable (or hung up): the whole requests it sent, in order.
    /// A closed connection is dropped and yields none.
    pub fn read(
        &mut self,
        reactor: &Reactor,
        id: ConnId,
        flags: EventFlags,
        now: Instant,
    ) -> Vec<Request> {
        let Some(conn) = self.conns.get_mut(&id) else {
            return Vec::new();
        };
        conn.last_active = now;
        if conn.peer_done && flags.intersects(EventFlags::HUP | EventFlags::ERR) {
            // Half-closed before, gone now: nobody reads what is left.
            self.drop_conn(reactor, id);
            return Vec::new();
        }
        if !flags.intersects(EventFlags::IN | EventFlags::HUP | EventFlags::ERR) {
            self.service(reactor, id);
            return Vec::new();
        }
        match conn.read() {
            ReadOutcome::Closed => {
                self.drop_conn(reactor, id);
                Vec::new()
            }
            ReadOutcome::Requests(reqs) => {
                conn.dispatching = !reqs.is_empty();
                if conn.peer_done {
                    // Its EOF stays readable: stop asking for it.
                    conn.interest = set_interest(reactor, id, conn);
                }
                reqs
            }
        }
    }

    /// The requests of the connection's last read are handled: service it (and drop it
    /// if that was all its peer will ask).
    pub fn dispatched(&mut self, reactor: &Reactor, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.dispatching = false;
        }
        self.service(reactor, id);
    }

    /// Flush a connection, adjust its EPOLLOUT interest, drop it when done. A held
    /// connection waits for [`Server::release_held`].
    pub fn service(&mut self, reactor: &Reactor, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.held {
            return;
        }
        if !conn.flush() || conn.finished() {
            self.drop_conn(reactor, id);
            return;
        }
        // Buffers grow only while bytes stay queued (a flushed one shrinks back to a few
        // KiB), so this is where the sum can pass the budget.
        if conn.pending() > 0 {
            self.enforce_budget(reactor);
        }
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.interest = set_interest(reactor, id, conn);
        if conn.closing && !conn.closing_armed {
            conn.closing_armed = true;
            self.closing.push(id);
        }
    }

    /// The connections that turned closing with their last answer unsent get the
    /// closing deadline (a Hello's length) instead of the idle one they had.
    pub fn arm_closing(&mut self, timers: &mut Timers) {
        for id in self.closing.drain(..) {
            if let Some((at, _)) = self.conns.get(&id).and_then(Conn::deadline) {
                timers.bring_forward(at, TimerAction::ConnDeadline(id));
            }
        }
    }

    /// While all write buffers together hold more than [`control::WRITE_BUDGET`], drop
    /// the client with the most: a follower first (it is the one falling behind a
    /// stream), else any. It gets a last error frame if its socket takes one now, and is
    /// closed either way.
    fn enforce_budget(&mut self, reactor: &Reactor) {
        loop {
            let total: usize = self.conns.values().map(Conn::buffered).sum();
            if total <= control::WRITE_BUDGET {
                return;
            }
            let Some((&id, conn)) = self
                .conns
                .iter_mut()
                .max_by_key(|(_, c)| (c.follow != Follow::None, c.buffered()))
            else {
                return;
            };
            let queued = conn.pending();
            let message = format!(
                "closed: this client did not read ({queued} bytes queued for it), and all \
                 clients' queued output together passed arje's bound of {} MiB",
                control::WRITE_BUDGET >> 20
            );
            let told = conn.abandon(ErrorCode::Limit, message);
            self.over_budget += 1;
            if self.over_budget == 1 {
                log::warn!(
                    "control: dropped a client with {queued} bytes queued: all write buffers \
                     passed {} MiB (logged once; later drops are counted at debug level)",
                    control::WRITE_BUDGET >> 20
                );
            } else {
                log::debug!(
                    "control: dropped client {} for the write budget ({queued} bytes queued, \
                     told: {told})",
                    self.over_budget
                );
            }
            self.drop_conn(reactor, id);
        }
    }
}

/// EPOLLOUT while something is queued: adjust the registration when that changes.
/// Ask epoll for what the connection needs now: its requests unless its peer is done
/// sending, and room to write while output is queued. Returns what was asked.
fn set_interest(reactor: &Reactor, id: ConnId, conn: &Conn) -> Interest {
    let want = match (conn.peer_done, conn.pending() > 0) {
        (false, false) => Interest::Read,
        (false, true) => Interest::ReadWrite,
        (true, true) => Interest::Write,
        (true, false) => Interest::Nothing,
    };
    if want != conn.interest {
        reactor.modify(conn.fd(), Token::Conn(id), want);
    }
    want
}

/// Has the peer sent bytes that are not read yet?
fn waiting_input(stream: &UnixStream) -> bool {
    use rustix::net::RecvFlags;
    let mut byte = [0u8; 1];
    matches!(
        rustix::net::recv(stream, &mut byte, RecvFlags::PEEK | RecvFlags::DONTWAIT),
        Ok((n, _)) if n > 0
    )
}

impl Server {
    fn drop_conn(&mut self, reactor: &Reactor, id: ConnId) {
        if let Some(conn) = self.conns.remove(&id) {
            reactor.remove(conn.fd());
            drop(conn);
            self.vsock_resume(reactor);
            // An fd was freed: a resting listener may accept again.
            self.watch_again(reactor);
        }
    }

    /// Queue frames for a client and service it: the one place replies are sent.
    pub fn deliver(&mut self, reactor: &Reactor, id: ConnId, frames: &[Response]) {
        if let Some(conn) = self.conns.get_mut(&id) {
            for frame in frames {
                if !conn.send(frame) {
                    break;
                }
            }
        }
        self.service(reactor, id);
    }

    /// Queue `frames`, which acknowledge a change, and hold everything the connection is
    /// sent from now until the end of the turn, when the /run snapshot holding the change
    /// has been written ([`Server::release_held`]). Later frames of the same turn (an
    /// event pushed to it, the answer to its next request) queue behind, so the client
    /// sees them in order.
    pub fn deliver_held(&mut self, reactor: &Reactor, id: ConnId, frames: &[Response]) {
        if let Some(conn) = self.conns.get_mut(&id) {
            if !conn.held {
                conn.held = true;
                self.held.push(id);
            }
        }
        self.deliver(reactor, id, frames);
    }

    /// Does any connection wait for this turn's snapshot?
    pub fn has_held(&self) -> bool {
        !self.held.is_empty()
    }

    /// The turn's snapshot is written (or could not be): send what was held.
    pub fn release_held(&mut self, reactor: &Reactor) {
        for id in std::mem::take(&mut self.held) {
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.held = false;
            }
            self.service(reactor, id);
        }
    }

    /// Answer with an error and close once it is sent.
    pub fn fail(&mut self, reactor: &Reactor, id: ConnId, code: ErrorCode, message: String) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.fail(code, message);
        }
        self.service(reactor, id);
    }

    pub fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns.get_mut(&id)
    }

    pub fn set_follow(&mut self, id: ConnId, follow: Follow) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.follow = follow;
        }
    }

    /// What connection `id` follows.
    pub fn follow_of(&self, id: ConnId) -> Option<Follow> {
        self.conns.get(&id).map(|c| c.follow.clone())
    }

    /// Connections whose follow matches `pred`.
    pub fn followers(&self, pred: impl Fn(&Follow) -> bool) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| pred(&c.follow))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Write what every client is owed, best effort (before a re-exec or an exit).
    pub fn flush_all(&mut self) {
        for conn in self.conns.values_mut() {
            conn.flush();
        }
    }

    pub fn listener_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }

    /// Before a re-exec: the connections the next image takes over (plain requests and
    /// `run --wait` waiters; followers of logs and events see their stream end), with
    /// close-on-exec cleared on their fds and on the listener's.
    pub fn hand_over(&self) -> Vec<(RawFd, &Conn)> {
        let _ = rustix::io::fcntl_setfd(&self.listener, rustix::io::FdFlags::empty());
        self.conns
            .values()
            .filter(|c| matches!(c.follow, Follow::None | Follow::Exit(_)) && !c.closing)
            .map(|c| {
                let _ = rustix::io::fcntl_setfd(c.fd(), rustix::io::FdFlags::empty());
                (c.fd().as_raw_fd(), c)
            })
            .collect()
    }

    /// After a re-exec: take over a connection the previous image left open. Its peer's
    /// credentials are the socket's, read again: they are the ones of connect time.
    pub fn adopt(
        &mut self,
        reactor: &Reactor,
        timers: &mut Timers,
        now: Instant,
        inherited: Inherited,
    ) {
        let _ = inherited.stream.set_nonblocking(true);
        let peer = match access::peer_access(&inherited.stream, self.group) {
            Ok(peer) => peer,
            Err(why) => {
                log::warn!("control: dropped an inherited client: {why}");
                return;
            }
        };
        let mut conn = Conn::restore(
            inherited.stream,
            inherited.hello_done,
            inherited.inbox,
            inherited.outbox,
            now,
        );
        conn.peer = peer;
        conn.follow = inherited.follow;
        if let Some(id) = self.insert(reactor, timers, conn) {
            self.service(reactor, id);
        }
    }
}

impl Server {
    /// The protocol's rules before a request reaches a handler: the first request must be
    /// a Hello of this protocol version (answered here), and a connection that follows
    /// or waits is a one-way stream. Returns whether `req` is for a handler.
    pub fn admit(
        &mut self,
        reactor: &Reactor,
        timers: &mut Timers,
        id: ConnId,
        req: &Request,
    ) -> bool {
        use shuma_card::protocol::PROTOCOL_VERSION;
        let Some(conn) = self.conns.get_mut(&id) else {
            return false;
        };
        if !conn.hello_done {
            match req {
                Request::Hello { version, .. } if *version == PROTOCOL_VERSION => {
                    conn.hello_done = true;
                    // The Hello's deadline is met: the timer moves to the idle one
                    // rather than wake the loop at the Hello's to find that out.
                    if let Some((at, _)) = conn.deadline() {
                        timers.move_once(at, TimerAction::ConnDeadline(id));
                    }
                    let hello = Response::Hello {
                        version: PROTOCOL_VERSION,
                        server: format!("arje-init {}", env!("CARGO_PKG_VERSION")),
                    };
                    self.deliver(reactor, id, &[hello]);
                }
                Request::Hello { version, .. } => {
                    let message = format!(
                        "protocol version {version} is not supported: this arje-init speaks version {PROTOCOL_VERSION}"
                    );
                    self.fail(reactor, id, ErrorCode::Version, message);
                }
                _ => self.fail(
                    reactor,
                    id,
                    ErrorCode::BadFrame,
                    "the first request must be Hello".into(),
                ),
            }
            return false;
        }
        if conn.follow != Follow::None {
            self.fail(
                reactor,
                id,
                ErrorCode::BadFrame,
                "no requests while following".into(),
            );
            return false;
        }
        if !conn.peer.access.may(req) {
            let message = format!(
                "uid {} may only read: {} needs root or arje's own user (uid {})",
                conn.peer.uid,
                access::request_name(req),
                rustix::process::geteuid().as_raw()
            );
            let denied = Response::Error {
                code: ErrorCode::Denied,
                message,
            };
            self.deliver(reactor, id, &[denied]);
            return false;
        }
        true
    }

    /// What the peer of `id` may do (nothing, if it is gone).
    pub fn access(&self, id: ConnId) -> Option<Access> {
        self.conns.get(&id).map(|c| c.peer.access)
    }
}
