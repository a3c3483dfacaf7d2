//! Bad input on the control socket: each bad frame gets an error or a closed connection,
//! and the daemon keeps serving everyone else.

use std::io::Write;

use arje_tests::client::Client;
use arje_tests::host::{out, Daemon};
use shuma_card::protocol::{encode_frame, ErrorCode, Request, Response, MAX_FRAME};

fn assert_ping(d: &Daemon) {
    let r = d.shuma(&["ping"]);
    assert_eq!(out(&r).trim(), "pong");
}

fn expect_error_or_close(c: &mut Client) -> Option<ErrorCode> {
    match c.recv() {
        Some(Response::Error { code, .. }) => {
            assert!(
                c.recv().is_none(),
                "connection stays open after a bad frame"
            );
            Some(code)
        }
        None => None,
        Some(other) => panic!("unexpected answer to a bad frame: {other:?}"),
    }
}

#[test]
fn test_garbage_frame_gets_error_and_daemon_serves_on() {
    let d = Daemon::start();
    let mut c = Client::raw(&d.socket);

    c.stream
        .write_all(&[0, 0, 0, 5, 0xff, 0xfe, 0xfd, 0xfc, 0xfb])
        .unwrap();

    assert_eq!(expect_error_or_close(&mut c), Some(ErrorCode::BadFrame));
    assert_ping(&d);
}

#[test]
fn test_oversized_frame_rejected_without_buffering() {
    let d = Daemon::start();
    let mut c = Client::raw(&d.socket);

    c.stream
        .write_all(&((MAX_FRAME as u32) + 1).to_be_bytes())
        .unwrap();

    assert_eq!(expect_error_or_close(&mut c), Some(ErrorCode::BadFrame));
    assert_ping(&d);
}

#[test]
fn test_truncated_frame_then_close_daemon_serves_on() {
    let d = Daemon::start();
    let mut c = Client::raw(&d.socket);
    let frame = encode_frame(&Request::Hello {
        version: 1,
        client: "x".into(),
    });

    c.stream.write_all(&frame[..frame.len() - 2]).unwrap();
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();

    assert_eq!(expect_error_or_close(&mut c), None);
    assert_ping(&d);
}

#[test]
fn test_wrong_version_gets_version_error() {
    let d = Daemon::start();
    let mut c = Client::raw(&d.socket);

    c.send(&Request::Hello {
        version: 999,
        client: "future".into(),
    });

    assert_eq!(expect_error_or_close(&mut c), Some(ErrorCode::Version));
    assert_ping(&d);
}

#[test]
fn test_request_before_hello_refused() {
    let d = Daemon::start();
    let mut c = Client::raw(&d.socket);

    c.send(&Request::Ping);

    assert_eq!(expect_error_or_close(&mut c), Some(ErrorCode::BadFrame));
    assert_ping(&d);
}

#[test]
fn test_silent_client_does_not_delay_others() {
    let d = Daemon::start();
    // Connected, sends nothing; another holds half a frame.
    let _silent = Client::raw(&d.socket);
    let mut half = Client::raw(&d.socket);
    half.stream.write_all(&[0, 0, 0, 40, 1, 2]).unwrap();

    assert_ping(&d);
    let mut c = d.client();
    assert_eq!(c.call(Request::Ping), Response::Pong);
}
