//! A fake daemon for unit tests: one thread, one connection, canned answers.
//!
//! The server thread ends when the client closes the connection (or when the script
//! says to close it), so a test joins it after the command under test has returned:
//! the join is the synchronisation, no sleeps.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::thread::JoinHandle;

use shuma_card::protocol::{
    decode_payload, encode_frame, Request, Response, HEADER_LEN, PROTOCOL_VERSION,
};

/// What the fake daemon does after reading one request.
pub enum Answer {
    /// Send these responses, each as one frame, then read the next request.
    Frames(Vec<Response>),
    /// Send these responses, then close the connection.
    FramesThenClose(Vec<Response>),
    /// Send these bytes as they are, then close the connection.
    RawThenClose(Vec<u8>),
    /// Answer nothing, as a stopped daemon: wait for the client to give up and close.
    Nothing,
}

pub struct FakeDaemon {
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
    thread: Option<JoinHandle<Vec<Request>>>,
}

impl FakeDaemon {
    /// Listen on a fresh socket and serve one connection with `script`.
    pub fn start(mut script: impl FnMut(&Request) -> Answer + Send + 'static) -> FakeDaemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("control.sock");
        let listener = UnixListener::bind(&socket).expect("bind fake socket");
        let thread = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            let mut seen = Vec::new();
            loop {
                let mut header = [0u8; HEADER_LEN];
                if conn.read_exact(&mut header).is_err() {
                    return seen;
                }
                let mut payload = vec![0u8; u32::from_be_bytes(header) as usize];
                conn.read_exact(&mut payload).expect("read payload");
                let req: Request = decode_payload(&payload).expect("client sent a bad frame");
                let answer = script(&req);
                seen.push(req);
                let (bytes, close) = match answer {
                    Answer::Frames(r) => (frames(&r), false),
                    Answer::FramesThenClose(r) => (frames(&r), true),
                    Answer::RawThenClose(raw) => (raw, true),
                    Answer::Nothing => {
                        // Returns at the client's close: its end of the conversation.
                        let _ = conn.read_to_end(&mut Vec::new());
                        return seen;
                    }
                };
                // The client may already have gone (it stops at the first error);
                // that is its business, not a test failure.
                if conn.write_all(&bytes).is_err() || close {
                    return seen;
                }
            }
        });
        FakeDaemon {
            socket,
            _dir: dir,
            thread: Some(thread),
        }
    }

    /// A daemon that answers the connection itself with `first` and closes without
    /// reading anything, as a daemon at its connection cap does.
    pub fn refuse_on_accept(first: Response) -> FakeDaemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("control.sock");
        let listener = UnixListener::bind(&socket).expect("bind fake socket");
        let thread = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            conn.write_all(&encode_frame(&first))
                .expect("write refusal");
            Vec::new()
        });
        FakeDaemon {
            socket,
            _dir: dir,
            thread: Some(thread),
        }
    }

    /// A daemon that answers Hello correctly and everything else with `answer`.
    pub fn with(mut answer: impl FnMut(&Request) -> Answer + Send + 'static) -> FakeDaemon {
        FakeDaemon::start(move |req| match req {
            Request::Hello { .. } => Answer::Frames(vec![hello()]),
            other => answer(other),
        })
    }

    /// Wait for the connection to end; the requests the daemon read, in order.
    pub fn requests(mut self) -> Vec<Request> {
        self.thread
            .take()
            .expect("joined once")
            .join()
            .expect("fake daemon panicked")
    }
}

pub fn hello() -> Response {
    Response::Hello {
        version: PROTOCOL_VERSION,
        server: "fake-arje 0".into(),
    }
}

fn frames(responses: &[Response]) -> Vec<u8> {
    responses.iter().flat_map(encode_frame).collect()
}
