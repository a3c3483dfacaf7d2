//! The control socket: a non-blocking listener and one connection per client, each
//! with bounded read and write buffers. A garbage or oversized frame gets an error
//! response and that connection is closed; a stalled client only ever fills its own
//! write buffer, never delays the loop.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::access::{Access, Peer};
use crate::ids::{CommandId, WorkspaceId};
use shuma_card::protocol::{
    decode_payload, encode_frame, split_frame, ErrorCode, FrameError, Request, Response,
    HEADER_LEN, MAX_FRAME,
};

/// Most clients connected at once (live ones: not counting those being closed).
pub const MAX_CONNS: usize = 128;
/// Slots beyond [`MAX_CONNS`] that only root's clients may take, so that a flood of
/// other clients cannot lock the administrator out.
pub const ROOT_RESERVE: usize = 8;
/// A client must say Hello within this long of being accepted: a connection that says
/// nothing holds a slot, and 128 of them locked every other client out.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// A client past Hello that neither sends nor reads for this long is closed, unless it
/// follows something (logs, events, an exit), which is waiting by design.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most bytes queued for one client. Beyond it, follow output is dropped and counted;
/// a plain response that does not fit closes the connection (the client is not reading).
pub const WRITE_CAP: usize = 4 << 20;
/// Most bytes all clients' write buffers may hold together. [`WRITE_CAP`] alone let
/// 120 followers that never read hold 4 MiB each, about 500 MB; beyond this bound the
/// client with the most queued bytes is dropped (`Server::enforce_budget`).
pub const WRITE_BUDGET: usize = 64 << 20;
/// A write buffer that has emptied keeps at most this much of its allocation.
const KEEP_CAPACITY: usize = 64 * 1024;
/// Bytes read from one client per loop turn, so one busy client cannot starve others.
const READ_PER_TURN: usize = 256 * 1024;

#[derive(Debug)]
pub enum ControlError {
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    Permissions {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlError::Bind { path, source } => {
                write!(f, "bind control socket {}: {source}", path.display())
            }
            ControlError::Permissions { path, source } => {
                write!(
                    f,
                    "set permissions of control socket {}: {source}",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for ControlError {}

/// Bind the listening socket: 0600, or 0660 owned by `group`.
///
/// A stale socket file from a previous run is removed first; a live one would mean two
/// daemons, which the caller prevents by its own lock or mode.
pub fn bind(path: &Path, group: Option<u32>) -> Result<UnixListener, ControlError> {
    let err = |source| ControlError::Bind {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    // Bind under a umask-independent mode: chmod right after bind, before listen
    // returns to the loop; nobody can connect before the loop accepts anyway.
    let listener = UnixListener::bind(path).map_err(err)?;
    listener.set_nonblocking(true).map_err(err)?;
    let perm_err = |source| ControlError::Permissions {
        path: path.to_path_buf(),
        source,
    };
    let mode = if group.is_some() { 0o660 } else { 0o600 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(perm_err)?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(perm_err)?;
    }
    Ok(listener)
}

/// `resp` as a frame, or its payload size if that is over [`MAX_FRAME`]: the server
/// never sends a frame its peer must refuse. Every frame goes through here.
fn checked_frame(resp: &Response) -> Result<Vec<u8>, usize> {
    let frame = encode_frame(resp);
    let size = frame.len() - HEADER_LEN;
    if size > MAX_FRAME {
        log::error!("control: refused to send a {size}-byte frame (limit {MAX_FRAME})");
        return Err(size);
    }
    Ok(frame)
}

/// What a connection is waiting for, besides requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Follow {
    None,
    /// `Run { wait: true }`: the command's exit.
    Exit(CommandId),
    /// `WsStop`: the workspace to be gone.
    WsStopped(WorkspaceId),
    /// `Logs { follow }`: cursors into the command's stdout and stderr rings.
    Logs {
        command: CommandId,
        out: Option<u64>,
        err: Option<u64>,
    },
    /// `Events { follow }`: the last id sent.
    Events(u64),
    /// `WaitReady`: a workspace's commands (or one) to be ready.
    Ready {
        ws: WorkspaceId,
        command: Option<CommandId>,
        deadline: Option<std::time::Instant>,
    },
}

pub struct Conn {
    pub stream: UnixStream,
    /// Who is on the other end, read at accept (or at adoption after a re-exec).
    pub peer: Peer,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    pub hello_done: bool,
    /// Close once the write buffer is flushed.
    pub closing: bool,
    /// Its deadline timer was moved to the closing one (`Server::arm_closing`).
    pub closing_armed: bool,
    pub follow: Follow,
    /// Follow output dropped because this client did not read it.
    pub dropped: u64,
    /// What epoll is asked to report for it now.
    pub interest: crate::runtime::reactor::Interest,
    /// The peer shut down its writing side (EOF read): no more requests will come, but
    /// the answers to those it sent are still written (a client that writes its request
    /// and half-closes, as `nc -N` or a shell's here-document does).
    pub peer_done: bool,
    /// The requests of its last read are being handled: not finished, even if the peer
    /// is done and the first answers are flushed.
    pub dispatching: bool,
    /// When it was accepted (or adopted after a re-exec): the Hello deadline counts
    /// from here, so dribbling bytes does not extend it.
    pub accepted: Instant,
    /// Its last event (bytes read, room to write, a hang-up): the idle deadline counts
    /// from here.
    pub last_active: Instant,
    /// Nothing is written until the end of the turn: a reply queued here acknowledges a
    /// change that the /run snapshot must hold first (see `Server::deliver_held`).
    pub held: bool,
    /// Bytes at the start of `wbuf` that end a frame already partly written to the
    /// socket, so `wbuf[head_left..]` starts at a frame boundary. `None` while unknown:
    /// a buffer inherited across a re-exec may start anywhere in a frame.
    head_left: Option<usize>,
}

/// One step of reading a connection.
pub enum ReadOutcome {
    /// Decoded requests, in order.
    Requests(Vec<Request>),
    /// The peer closed, or the read failed.
    Closed,
}

impl Conn {
    /// A connection whose peer is not known yet has no more than read access.
    pub fn new(stream: UnixStream, now: Instant) -> Self {
        Conn {
            accepted: now,
            last_active: now,
            stream,
            peer: Peer {
                uid: u32::MAX,
                access: Access::ReadOnly,
            },
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            hello_done: false,
            closing: false,
            closing_armed: false,
            follow: Follow::None,
            dropped: 0,
            interest: crate::runtime::reactor::Interest::Read,
            peer_done: false,
            dispatching: false,
            held: false,
            head_left: Some(0),
        }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }

    /// What a re-exec must carry over: bytes read but not yet a whole frame, and bytes
    /// not yet written.
    pub fn buffers(&self) -> (&[u8], &[u8]) {
        (&self.rbuf, &self.wbuf)
    }

    /// A connection inherited across a re-exec, with its buffers.
    pub fn restore(
        stream: UnixStream,
        hello_done: bool,
        rbuf: Vec<u8>,
        wbuf: Vec<u8>,
        now: Instant,
    ) -> Self {
        let mut conn = Conn::new(stream, now);
        conn.hello_done = hello_done;
        conn.rbuf = rbuf;
        conn.head_left = wbuf.is_empty().then_some(0);
        conn.wbuf = wbuf;
        conn
    }

    /// Read what is there (bounded) and split it into requests. A bad frame queues an
    /// error response and marks the connection closing.
    pub fn read(&mut self) -> ReadOutcome {
        let mut chunk = [0u8; 16 * 1024];
        let mut total = 0;
        while total < READ_PER_TURN && !self.closing && !self.peer_done {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.peer_done = true;
                    break;
                }
                Ok(n) => {
                    total += n;
                    self.rbuf.extend_from_slice(&chunk[..n]);
                    // Check the prefix as soon as it is here: an oversized frame is
                    // refused before its body is buffered.
                    if self.rbuf.len() >= HEADER_LEN && self.rbuf.len() > MAX_FRAME + HEADER_LEN {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return ReadOutcome::Closed,
            }
        }
        let mut requests = Vec::new();
        let mut used = 0;
        while !self.closing {
            match split_frame(&self.rbuf[used..]) {
                Ok(Some((len, payload))) => {
                    match decode_payload::<Request>(payload) {
                        Ok(req) => requests.push(req),
                        Err(e) => self.fail(ErrorCode::BadFrame, e.to_string()),
                    }
                    used += len;
                }
                Ok(None) => break,
                Err(e @ FrameError::TooLarge(_)) => self.fail(ErrorCode::BadFrame, e.to_string()),
                Err(e) => self.fail(ErrorCode::BadFrame, e.to_string()),
            }
        }
        self.rbuf.drain(..used.min(self.rbuf.len()));
        if self.closing {
            self.rbuf.clear();
        }
        if self.peer_done {
            // What is left is a frame cut short: it will never be completed.
            self.rbuf.clear();
            if requests.is_empty() && self.finished() {
                return ReadOutcome::Closed;
            }
        }
        ReadOutcome::Requests(requests)
    }

    /// Queue an error and close after it is sent.
    pub fn fail(&mut self, code: ErrorCode, message: String) {
        self.send(&Response::Error { code, message });
        self.closing = true;
    }

    /// Queue a response. If the client is so far behind that it does not fit, the
    /// connection is closed instead of growing without bound.
    pub fn send(&mut self, resp: &Response) -> bool {
        let frame = match checked_frame(resp) {
            Ok(frame) => frame,
            // A handler produced an answer over the frame limit (a bug: every listing
            // pages, every quoted text is bounded). The client gets an error it can
            // read, never a frame it must refuse.
            Err(size) => encode_frame(&Response::Error {
                code: ErrorCode::Internal,
                message: format!(
                    "the answer ({size} bytes) exceeds the {MAX_FRAME}-byte frame limit"
                ),
            }),
        };
        if self.wbuf.len() + frame.len() > WRITE_CAP {
            self.closing = true;
            self.wbuf.clear();
            return false;
        }
        self.wbuf.extend_from_slice(&frame);
        true
    }

    /// Queue follow output only if it fits; otherwise count it as dropped.
    pub fn send_lossy(&mut self, resp: &Response, bytes: u64) -> bool {
        let Ok(frame) = checked_frame(resp) else {
            self.dropped += bytes;
            return false;
        };
        if self.wbuf.len() + frame.len() > WRITE_CAP {
            self.dropped += bytes;
            return false;
        }
        self.wbuf.extend_from_slice(&frame);
        true
    }

    pub fn pending(&self) -> usize {
        self.wbuf.len()
    }

    /// Memory the write buffer holds (its allocation, not only the queued bytes): what
    /// [`WRITE_BUDGET`] bounds.
    pub fn buffered(&self) -> usize {
        self.wbuf.capacity()
    }

    /// Write what the socket takes. Returns false if the connection is dead.
    pub fn flush(&mut self) -> bool {
        while !self.wbuf.is_empty() {
            match self.stream.write(&self.wbuf) {
                Ok(0) => return false,
                Ok(n) => {
                    self.written(n);
                    self.wbuf.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        self.head_left = Some(0);
        if self.wbuf.capacity() > KEEP_CAPACITY {
            self.wbuf = Vec::new();
        }
        true
    }

    /// `n` bytes from the start of `wbuf` reached the socket: find where the frame now at
    /// its start ends. Every frame after `head_left` was queued whole, so their headers
    /// can be walked.
    fn written(&mut self, n: usize) {
        let Some(left) = self.head_left else { return };
        let mut end = left;
        while end < n {
            let len = u32::from_be_bytes([
                self.wbuf[end],
                self.wbuf[end + 1],
                self.wbuf[end + 2],
                self.wbuf[end + 3],
            ]) as usize;
            end += HEADER_LEN + len;
        }
        self.head_left = Some(end - n);
    }

    /// Give up on a client that does not read: drop what is queued for it but the rest of
    /// a frame it has partly received, queue `message` as a last error frame, and try to
    /// write both now. Returns whether they were written (else the caller just closes:
    /// the socket is full, and so is the client's chance). A buffer whose frame
    /// boundaries are unknown is not cut: the caller closes.
    pub fn abandon(&mut self, code: ErrorCode, message: String) -> bool {
        let Some(left) = self.head_left else {
            return false;
        };
        self.wbuf.truncate(left);
        self.wbuf.shrink_to_fit();
        self.follow = Follow::None;
        self.fail(code, message);
        self.flush() && self.wbuf.is_empty()
    }

    /// Done: flushed, and closing, or its peer is done sending and nothing it asked for
    /// is still to come (no reply held, nothing followed).
    pub fn finished(&self) -> bool {
        self.wbuf.is_empty()
            && (self.closing
                || (self.peer_done
                    && !self.dispatching
                    && !self.held
                    && self.follow == Follow::None))
    }

    /// When this connection is due to be closed, and why; `None` while it follows
    /// something (it waits by design).
    pub fn deadline(&self) -> Option<(Instant, &'static str)> {
        if self.closing {
            // An answer it does not read: give it as long as a Hello.
            Some((
                self.last_active + HELLO_TIMEOUT,
                "did not read its last answer",
            ))
        } else if !self.hello_done {
            Some((self.accepted + HELLO_TIMEOUT, "no Hello"))
        } else if self.follow == Follow::None {
            Some((self.last_active + IDLE_TIMEOUT, "idle"))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sent_frames(conn: &Conn) -> Vec<Response> {
        let mut buf = conn.buffers().1;
        let mut frames = Vec::new();
        while let Some((used, payload)) = split_frame(buf).expect("a frame within the limit") {
            frames.push(decode_payload(payload).expect("decodes"));
            buf = &buf[used..];
        }
        assert!(buf.is_empty(), "a partial frame was queued");
        frames
    }

    #[test]
    fn test_send_oversized_answer_becomes_error_within_limit() {
        let (ours, _peer) = UnixStream::pair().unwrap();
        let mut conn = Conn::new(ours, std::time::Instant::now());
        let huge = Response::Error {
            code: ErrorCode::NotFound,
            message: "x".repeat(MAX_FRAME + 1),
        };

        conn.send(&huge);

        match sent_frames(&conn).as_slice() {
            [Response::Error { code, message }] => {
                assert_eq!(*code, ErrorCode::Internal);
                assert!(message.contains("frame limit"), "{message}");
            }
            other => panic!("expected one error, got {} frames", other.len()),
        }
    }

    #[test]
    fn test_abandon_after_a_partial_write_keeps_frames_whole_and_ends_with_the_error() {
        // Arrange: more frames than the socket takes, of a size that makes the last
        // write cut one; then the peer reads a little, so the socket has room again.
        let (ours, mut peer) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let mut conn = Conn::new(ours, std::time::Instant::now());
        let frame = Response::Log {
            stream: shuma_card::protocol::Stream::Stdout,
            data: vec![7; 3001],
            dropped: 0,
        };
        for _ in 0..1000 {
            conn.send_lossy(&frame, 3001);
        }
        conn.flush();
        assert!(conn.pending() > 0, "the socket took everything");
        assert_ne!(conn.head_left, Some(0), "no frame was cut");
        let mut bytes = vec![0; 64 * 1024];
        peer.read_exact(&mut bytes).unwrap();

        // Act: give up on it; then the peer reads the rest.
        let told = conn.abandon(ErrorCode::Limit, "closed".into());
        drop(conn);
        peer.read_to_end(&mut bytes).unwrap();

        // Assert: whole frames, the rest of the cut one included, then the error.
        assert!(told);
        let mut buf = &bytes[..];
        let mut frames = Vec::new();
        while let Some((used, payload)) = split_frame(buf).expect("a frame within the limit") {
            frames.push(decode_payload::<Response>(payload).expect("decodes"));
            buf = &buf[used..];
        }
        assert!(buf.is_empty(), "{} bytes of a cut frame", buf.len());
        let (last, log) = frames.split_last().unwrap();
        assert!(log.iter().all(|f| *f == frame));
        assert_eq!(
            *last,
            Response::Error {
                code: ErrorCode::Limit,
                message: "closed".into()
            }
        );
    }

    #[test]
    fn test_send_lossy_oversized_frame_dropped_and_counted() {
        let (ours, _peer) = UnixStream::pair().unwrap();
        let mut conn = Conn::new(ours, std::time::Instant::now());
        let huge = Response::Log {
            stream: shuma_card::protocol::Stream::Stdout,
            data: vec![0; MAX_FRAME + 1],
            dropped: 0,
        };

        let queued = conn.send_lossy(&huge, (MAX_FRAME + 1) as u64);

        assert!(!queued);
        assert_eq!(conn.pending(), 0);
        assert_eq!(conn.dropped, (MAX_FRAME + 1) as u64);
    }
}
