//! A minimal blocking client of the control protocol, for tests that need structured
//! answers or raw frames (the `shuma` binary is driven separately).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use shuma_card::protocol::{
    decode_payload, encode_frame, Request, Response, HEADER_LEN, MAX_FRAME, PROTOCOL_VERSION,
};

pub struct Client {
    pub stream: UnixStream,
}

impl Client {
    /// Connect and exchange Hello.
    pub fn connect(socket: &Path) -> Client {
        let mut c = Client::raw(socket);
        match c.call(Request::Hello {
            version: PROTOCOL_VERSION,
            client: "arje-tests".into(),
        }) {
            Response::Hello { version, .. } => assert_eq!(version, PROTOCOL_VERSION),
            other => panic!("unexpected Hello answer {other:?}"),
        }
        c
    }

    /// Connect and exchange Hello; an error says which step failed.
    pub fn try_connect(socket: &Path) -> Result<Client, String> {
        let stream = UnixStream::connect(socket)
            .map_err(|e| format!("connect {}: {e}", socket.display()))?;
        let mut c = Client { stream };
        match c.call_checked(Request::Hello {
            version: PROTOCOL_VERSION,
            client: "arje-tests".into(),
        }) {
            Some(Response::Hello { .. }) => Ok(c),
            other => Err(format!("Hello answered {other:?}")),
        }
    }

    /// Send a request and read one response; `None` if the connection closed.
    pub fn call_checked(&mut self, req: Request) -> Option<Response> {
        self.stream.write_all(&encode_frame(&req)).ok()?;
        self.recv()
    }

    /// Connect without Hello.
    pub fn raw(socket: &Path) -> Client {
        let stream = UnixStream::connect(socket)
            .unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
        Client { stream }
    }

    pub fn send(&mut self, req: &Request) {
        self.stream
            .write_all(&encode_frame(req))
            .expect("send frame");
    }

    /// The next response, or None if the server closed the connection.
    pub fn recv(&mut self) -> Option<Response> {
        let mut len = [0u8; HEADER_LEN];
        if self.stream.read_exact(&mut len).is_err() {
            return None;
        }
        let len = u32::from_be_bytes(len) as usize;
        assert!(len <= MAX_FRAME, "server sent an oversized frame ({len})");
        let mut buf = vec![0u8; len];
        self.stream.read_exact(&mut buf).ok()?;
        Some(decode_payload(&buf).expect("server frame decodes"))
    }

    /// `Ps`, read to its `End`: every page of commands.
    pub fn ps(&mut self, workspace: Option<String>) -> Vec<shuma_card::protocol::CommandInfo> {
        self.send(&Request::Ps { workspace });
        let mut all = Vec::new();
        loop {
            match self.recv().expect("server closed the connection") {
                Response::Commands(page) => all.extend(page),
                Response::End => return all,
                other => panic!("expected Commands or End, got {other:?}"),
            }
        }
    }

    pub fn call(&mut self, req: Request) -> Response {
        self.send(&req);
        self.recv().expect("server closed the connection")
    }
}
