//! A test-only helper that runs inside QEMU guests, for what `shuma` deliberately cannot
//! do: `arje-guest test-panic [SOCKET]` sends Request::TestPanic (honoured only by a
//! `test-hooks` build) and prints the daemon's answer, or that the connection closed.
//! Built static by scripts/build-static.sh and put in the test initramfs as /bin/arje-guest.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use shuma_card::protocol::{
    decode_payload, encode_frame, split_frame, Request, Response, PROTOCOL_VERSION,
};

fn main() {
    let mut args = std::env::args().skip(1);
    let cmd = args.next().unwrap_or_default();
    let socket = args
        .next()
        .unwrap_or_else(|| "/run/arje/control.sock".to_string());
    let code = match cmd.as_str() {
        "test-panic" => match test_panic(&socket) {
            Ok(answer) => {
                println!("arje-guest: test-panic answered: {answer}");
                0
            }
            Err(e) => {
                eprintln!("arje-guest: test-panic on {socket}: {e}");
                1
            }
        },
        _ => {
            eprintln!("usage: arje-guest test-panic [SOCKET]");
            2
        }
    };
    std::process::exit(code);
}

fn test_panic(socket: &str) -> std::io::Result<String> {
    let mut conn = UnixStream::connect(socket)?;
    // The daemon may contain the panic and keep the connection open without an answer:
    // bound the wait so the scenario goes on to check that it still serves others.
    conn.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    let hello = Request::Hello {
        version: PROTOCOL_VERSION,
        client: "arje-guest".into(),
    };
    conn.write_all(&encode_frame(&hello))?;
    match read_response(&mut conn)? {
        Some(Response::Hello { .. }) => {}
        other => return Ok(format!("handshake refused: {other:?}")),
    }
    conn.write_all(&encode_frame(&Request::TestPanic))?;
    Ok(match read_response(&mut conn) {
        Ok(Some(resp)) => format!("{resp:?}"),
        Ok(None) => "connection closed".to_string(),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            "no answer within 5 s (connection left open)".to_string()
        }
        Err(e) => return Err(e),
    })
}

/// One response frame, or None if the daemon closed the connection first.
fn read_response(conn: &mut UnixStream) -> std::io::Result<Option<Response>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((_, payload)) = split_frame(&buf).map_err(std::io::Error::other)? {
            return decode_payload(payload)
                .map(Some)
                .map_err(std::io::Error::other);
        }
        match conn.read(&mut chunk)? {
            0 => return Ok(None),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
