//! One connection to arje's control socket: connect, version handshake, framed
//! requests and responses.
//!
//! Blocking I/O on purpose: the CLI does one thing at a time. Every read and write has
//! a timeout (`--timeout`, 30 s by default), so a stopped or hung daemon is an error
//! (exit 3), not a shell that hangs; `run --wait`, `logs -f`, `events -f` and `ws stop`
//! legitimately wait as long as the daemon takes, and lift it once their request is
//! sent ([`Client::wait_without_timeout`]). Their Hello still has it.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use shuma_card::protocol::{
    decode_payload, encode_frame, ErrorCode, Request, Response, HEADER_LEN, MAX_FRAME,
    PROTOCOL_VERSION,
};

/// What went wrong talking to the daemon; each kind has its own exit code.
#[derive(Debug)]
pub enum CliError {
    /// The daemon answered with an error; `message` is printed exactly as it said it.
    Refused { code: ErrorCode, message: String },
    /// The user's input is wrong (a bad card, a bad argument clap could not see).
    Usage(String),
    /// The socket could not be connected to.
    Connect { socket: PathBuf, source: io::Error },
    /// The daemon did not answer (or take a request) within the timeout: stopped, hung,
    /// or far too busy.
    Timeout { socket: PathBuf, after: Duration },
    /// The conversation broke off or made no sense: connection lost, undecodable frame,
    /// an answer that does not fit the request.
    Protocol(String),
}

/// The exit code of a readiness wait that ended without everything ready.
pub const EXIT_NOT_READY: u8 = 4;

impl CliError {
    /// The process exit code documented in docs/CLI.md.
    pub fn exit_code(&self) -> u8 {
        match self {
            // Only `WaitReady` is answered with NotReady: the verdict a script waits for,
            // told apart from a refused request.
            CliError::Refused {
                code: ErrorCode::NotReady,
                ..
            } => EXIT_NOT_READY,
            CliError::Refused { .. } | CliError::Protocol(_) => 1,
            CliError::Usage(_) => 2,
            CliError::Connect { .. } | CliError::Timeout { .. } => 3,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Refused { message, .. } => f.write_str(message),
            CliError::Usage(message) | CliError::Protocol(message) => f.write_str(message),
            CliError::Timeout { socket, after } => write!(
                f,
                "{}: no answer from the daemon within {} (is arje-init stopped or hung?)",
                socket.display(),
                shuma_card::units::format_duration_ms(after.as_millis() as u64)
            ),
            CliError::Connect { socket, source } => {
                let hint = match source.kind() {
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                        " (is arje-init running?)"
                    }
                    io::ErrorKind::PermissionDenied => " (root or arje's control group only)",
                    _ => "",
                };
                write!(
                    f,
                    "cannot connect to {}: {}{hint}",
                    socket.display(),
                    os_message(source)
                )
            }
        }
    }
}

impl std::error::Error for CliError {}

/// The OS's text for an error without Rust's " (os error N)" suffix, as a user expects it.
fn os_message(err: &io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// The client's self-description sent in the handshake.
pub fn client_name() -> String {
    format!("shuma {}", env!("CARGO_PKG_VERSION"))
}

/// A connection that has passed the version handshake.
pub struct Client {
    stream: UnixStream,
    socket: PathBuf,
    /// The daemon's self-description from its Hello.
    pub server: String,
    /// How long a read or write may wait, until lifted.
    timeout: Option<Duration>,
}

impl Client {
    /// Connect to `socket` and exchange Hello; every read and write then gives up after
    /// `timeout` (`None`: never). A version mismatch is a [`CliError::Refused`]
    /// carrying the daemon's own explanation.
    ///
    /// connect(2) itself has no timeout here: it only waits when the daemon's listen
    /// backlog is full (thousands of unaccepted clients), and a stopped daemon's
    /// backlog accepts the connection, so the Hello is what times out.
    pub fn connect(socket: &Path, timeout: Option<Duration>) -> Result<Client, CliError> {
        let stream = UnixStream::connect(socket).map_err(|source| CliError::Connect {
            socket: socket.to_path_buf(),
            source,
        })?;
        Client::handshake(stream, socket.to_path_buf(), timeout)
    }

    /// [`Client::connect`] to a VM's arje over vsock (`--vsock`).
    pub fn connect_vsock(
        to: &crate::vsock::Vsock,
        timeout: Option<Duration>,
    ) -> Result<Client, CliError> {
        let name = PathBuf::from(to.to_string());
        let stream = crate::vsock::connect(to).map_err(|source| CliError::Connect {
            socket: name.clone(),
            source,
        })?;
        Client::handshake(stream, name, timeout)
    }

    fn handshake(
        stream: UnixStream,
        socket: PathBuf,
        timeout: Option<Duration>,
    ) -> Result<Client, CliError> {
        let connect_err = |source| CliError::Connect {
            socket: socket.clone(),
            source,
        };
        stream.set_read_timeout(timeout).map_err(connect_err)?;
        stream.set_write_timeout(timeout).map_err(connect_err)?;
        let mut client = Client {
            stream,
            socket: socket.clone(),
            server: String::new(),
            timeout,
        };
        let hello = Request::Hello {
            version: PROTOCOL_VERSION,
            client: client_name(),
        };
        if let Err(send_err) = client.send(&hello) {
            // A daemon at its connection cap may answer with an error and close before
            // reading anything; its explanation beats "broken pipe".
            return match client.recv() {
                Ok(Some(Response::Error { code, message })) => {
                    Err(CliError::Refused { code, message })
                }
                _ => Err(send_err),
            };
        }
        match client.recv_required()? {
            Response::Hello { version, server } if version == PROTOCOL_VERSION => {
                client.server = server;
                Ok(client)
            }
            // A daemon that answered Hello but with another version should have refused;
            // say what both sides speak rather than decode garbage later.
            Response::Hello { version, server } => Err(CliError::Refused {
                code: ErrorCode::Version,
                message: format!(
                    "{server} speaks control protocol {version}, {} speaks {PROTOCOL_VERSION}",
                    client_name()
                ),
            }),
            Response::Error { code, message } => Err(CliError::Refused { code, message }),
            other => Err(client.unexpected("Hello", &other)),
        }
    }

    /// From now on, wait for the daemon as long as it takes: for requests whose answer
    /// comes when something happens (an exit, a workspace gone, output, events).
    pub fn wait_without_timeout(&mut self) -> Result<(), CliError> {
        self.wait_at_most(None)
    }

    /// From now on, wait for an answer this long (`None`: as long as it takes), for a
    /// request whose answer has a deadline of its own, such as `WaitReady`.
    pub fn wait_at_most(&mut self, timeout: Option<Duration>) -> Result<(), CliError> {
        self.stream
            .set_read_timeout(timeout)
            .map_err(|e| self.lost(e))?;
        if timeout.is_some() {
            // So that a timeout names the limit that ran out.
            self.timeout = timeout;
        }
        Ok(())
    }

    pub fn send(&mut self, req: &Request) -> Result<(), CliError> {
        let frame = encode_frame(req);
        self.stream.write_all(&frame).map_err(|e| self.lost(e))
    }

    /// The next response, or `None` when the daemon closed the connection cleanly
    /// between two frames.
    pub fn recv(&mut self) -> Result<Option<Response>, CliError> {
        let mut header = [0u8; HEADER_LEN];
        // Read the first byte alone to tell a clean close (EOF before any byte) from a
        // connection lost halfway through a frame.
        match self.stream.read(&mut header[..1]) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return self.recv(),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(None),
            Err(e) => return Err(self.lost(e)),
        }
        self.stream
            .read_exact(&mut header[1..])
            .map_err(|e| self.lost(e))?;
        let len = u32::from_be_bytes(header) as usize;
        // The cap is checked before allocating so a corrupt prefix cannot make the
        // client allocate gigabytes.
        if len > MAX_FRAME {
            return Err(CliError::Protocol(format!(
                "{}: the daemon sent a frame of {len} bytes, over the {MAX_FRAME}-byte limit",
                self.socket.display()
            )));
        }
        let mut payload = vec![0u8; len];
        self.stream
            .read_exact(&mut payload)
            .map_err(|e| self.lost(e))?;
        decode_payload::<Response>(&payload).map(Some).map_err(|e| {
            CliError::Protocol(format!(
                "{}: bad answer from the daemon: {e}",
                self.socket.display()
            ))
        })
    }

    /// The next response; a closed connection is an error here.
    pub fn recv_required(&mut self) -> Result<Response, CliError> {
        self.recv()?.ok_or_else(|| {
            CliError::Protocol(format!(
                "{}: the daemon closed the connection without answering",
                self.socket.display()
            ))
        })
    }

    /// Send one request and read its one answer. `Response::Error` becomes
    /// [`CliError::Refused`].
    pub fn call(&mut self, req: &Request) -> Result<Response, CliError> {
        self.send(req)?;
        match self.recv_required()? {
            Response::Error { code, message } => Err(CliError::Refused { code, message }),
            other => Ok(other),
        }
    }

    /// Read the pages of a command listing (`Ps`, and `WsShow` after its detail): one or
    /// more `Commands` frames, then `End`.
    pub fn command_pages(&mut self) -> Result<Vec<shuma_card::protocol::CommandInfo>, CliError> {
        let mut all = Vec::new();
        loop {
            match self.recv_required()? {
                Response::Commands(page) => all.extend(page),
                Response::End => return Ok(all),
                Response::Error { code, message } => {
                    return Err(CliError::Refused { code, message })
                }
                other => return Err(self.unexpected("Commands or End", &other)),
            }
        }
    }

    /// The error for an answer that does not fit the request.
    pub fn unexpected(&self, wanted: &str, got: &Response) -> CliError {
        let got = format!("{got:?}");
        let got: String = got.chars().take(80).collect();
        CliError::Protocol(format!(
            "{}: expected {wanted} from the daemon, got {got}",
            self.socket.display()
        ))
    }

    fn lost(&self, e: io::Error) -> CliError {
        // A socket timeout surfaces as EAGAIN (WouldBlock) from read and write.
        if let (io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut, Some(after)) =
            (e.kind(), self.timeout)
        {
            return CliError::Timeout {
                socket: self.socket.clone(),
                after,
            };
        }
        CliError::Protocol(format!(
            "{}: connection to the daemon lost: {}",
            self.socket.display(),
            os_message(&e)
        ))
    }
}
