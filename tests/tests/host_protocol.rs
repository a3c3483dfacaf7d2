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
fn test_trailing_bytes_after_request_get_bad_frame_and_daemon_serves_on() {
    let d = Daemon::start();
    let mut c = d.client();
    // A whole Ping with a byte after it, inside one frame: the sender and this
    // daemon disagree about the request, which must not pass as a Ping.
    let mut frame = encode_frame(&Request::Ping);
    frame.push(0);
    let len = (frame.len() - 4) as u32;
    frame[..4].copy_from_slice(&len.to_be_bytes());

    c.stream.write_all(&frame).unwrap();

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
fn test_requests_then_half_close_are_answered_then_the_connection_ends() {
    // Arrange: Hello and a Ping written at once, then the writing side shut down, as
    // `nc -N` or a here-document client does.
    let d = Daemon::start();
    let mut c = Client::raw(&d.socket);
    let mut bytes = encode_frame(&Request::Hello {
        version: shuma_card::protocol::PROTOCOL_VERSION,
        client: "half-close".into(),
    });
    bytes.extend(encode_frame(&Request::Ping));

    // Act
    c.stream.write_all(&bytes).unwrap();
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    let hello = c.recv();
    let pong = c.recv();
    let end = c.recv();

    // Assert: both answered, then the daemon closed its side; and it serves on.
    assert!(matches!(hello, Some(Response::Hello { .. })), "{hello:?}");
    assert_eq!(pong, Some(Response::Pong), "{:#?}", d.log.lock().unwrap());
    assert_eq!(end, None);
    assert_ping(&d);
}

#[test]
fn test_run_wait_then_half_close_still_gets_the_exit_code() {
    // Arrange: a `run --wait` whose answer comes only when the command exits, long after
    // the client has shut down its writing side.
    let d = Daemon::start();
    assert!(d
        .ws_create("w.toml", "[workspace]\nname = \"w\"\n")
        .status
        .success());
    let mut c = Client::connect(&d.socket);

    // Act
    c.send(&Request::Run {
        workspace: "w".into(),
        command: shuma_card::CommandSpec::new(
            "seven",
            shuma_card::CommandKind::Task,
            vec!["/bin/sh".into(), "-c".into(), "exit 7".into()],
        ),
        wait: true,
    });
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answers = Vec::new();
    while let Some(r) = c.recv() {
        answers.push(r);
    }

    // Assert
    assert!(
        answers.iter().any(|r| matches!(r, Response::Exited { .. })),
        "{answers:?}"
    );
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
fn test_previous_version_client_gets_version_error_naming_both() {
    let d = Daemon::start();
    let mut c = Client::raw(&d.socket);

    c.send(&Request::Hello {
        version: 1,
        client: "shuma 0.1 (protocol 1)".into(),
    });

    match c.recv() {
        Some(Response::Error { code, message }) => {
            assert_eq!(code, ErrorCode::Version);
            assert!(message.contains("version 1 is not supported"), "{message}");
            let speaks = format!("speaks version {}", shuma_card::protocol::PROTOCOL_VERSION);
            assert!(message.contains(&speaks), "{message}");
        }
        other => panic!("expected a Version error, got {other:?}"),
    }
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

#[test]
fn test_socket_is_0600_by_default() {
    use std::os::unix::fs::PermissionsExt;
    let d = Daemon::start();

    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;

    assert_eq!(mode, 0o600);
}

#[test]
fn test_socket_group_makes_it_0660_and_admits_that_group() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let d = Daemon::start_with(&[], &["--socket-group", "4242"]);

    let meta = std::fs::metadata(&d.socket).unwrap();
    // A client of another uid in that group (the test runs as root: drop to it).
    let socket = d.socket.clone();
    let admitted = std::process::Command::new("/usr/bin/setpriv")
        .args(["--reuid", "4343", "--regid", "4242", "--clear-groups", "--"])
        .arg(arje_tests::host::bin_dir().join("shuma"))
        .arg("--socket")
        .arg(&socket)
        .arg("ping")
        .output()
        .unwrap();
    let refused = std::process::Command::new("/usr/bin/setpriv")
        .args(["--reuid", "4343", "--regid", "4343", "--clear-groups", "--"])
        .arg(arje_tests::host::bin_dir().join("shuma"))
        .arg("--socket")
        .arg(&socket)
        .arg("ping")
        .output()
        .unwrap();

    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), 4242);
    assert_eq!(
        out(&admitted).trim(),
        "pong",
        "{}",
        String::from_utf8_lossy(&admitted.stderr)
    );
    // Outside the group the file mode already refuses the connect (and the daemon's
    // SO_PEERCRED check stands behind it).
    assert_eq!(refused.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Permission denied"));
}

#[test]
fn test_events_of_large_failures_come_in_frames_under_the_limit() {
    // Four tasks whose 200 KB argv[0] cannot be exec'd: each failure is journaled twice
    // (could not start, failed) and each record quotes the error. Eight such records
    // in one `Events` frame would be 1.6 MB.
    let path = format!("/{}", "a".repeat(200_000));
    let mut card = String::from("[workspace]\nname = \"big\"\n");
    for i in 0..4 {
        card.push_str(&format!("[[task]]\nname = \"t{i}\"\nargv = [\"{path}\"]\n"));
    }
    let d = Daemon::start_with(&[("big.toml", &card)], &[]);
    d.events_until(4, |k| {
        matches!(k, shuma_card::EventKind::CommandFailed { .. })
    });
    let mut c = d.client();

    c.send(&Request::Events {
        after: None,
        follow: false,
    });
    let mut failures = 0;
    // `Client::recv` asserts that every frame is within MAX_FRAME.
    loop {
        match c.recv().expect("the server closed the connection") {
            Response::Events(evs) => {
                failures += evs
                    .iter()
                    .filter(|e| matches!(e.kind, shuma_card::EventKind::CommandFailed { .. }))
                    .count()
            }
            Response::End => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    let shuma = d.shuma(&["events"]);

    assert_eq!(failures, 4);
    assert!(shuma.status.success(), "{}", arje_tests::host::err(&shuma));
}
