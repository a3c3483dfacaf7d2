//! Resource pressure on the control plane: the fd limit arje runs under and the one its
//! children get, fd exhaustion, and a flood of silent connections.

use std::io::Read;
use std::time::Duration;

use arje_tests::client::Client;
use arje_tests::host::{err, out, Daemon, Launch};
use shuma_card::protocol::{
    decode_payload, CmdState, Request, Response, HEADER_LEN, PROTOCOL_VERSION,
};
use shuma_card::EventKind;

/// Turns a hang into a failure; never reached by a working daemon.
const GUARD: Duration = Duration::from_secs(20);

/// A workspace of `services` idle services and a task that prints its own fd limit.
fn card(services: usize) -> String {
    let mut toml = String::from("[workspace]\nname = \"w\"\n");
    for i in 0..services {
        toml.push_str(&format!(
            "\n[[service]]\nname = \"s{i}\"\nargv = [\"/bin/sleep\", \"1000000\"]\n"
        ));
    }
    toml.push_str("\n[[task]]\nname = \"limit\"\nargv = [\"/bin/sh\", \"-c\", \"ulimit -n\"]\n");
    toml
}

#[test]
fn test_nofile_soft_256_raised_for_arje_children_get_256() {
    // Arrange: a soft limit of 256 under a higher hard one, and 100 services with
    // captured output: about 3 fds each (two pipes' read ends and a pidfd), so more
    // than 256 in all.
    let services = 100;
    let d = Daemon::launch(
        &[("w.toml", &card(services))],
        &[],
        &Launch {
            nofile: Some((256, 4096)),
            ..Launch::default()
        },
    );

    // Act: every start is reported, as started or failed (a task that failed to start
    // never exits: stop here rather than wait for it).
    let events = d.events_until(services + 1, |k| {
        matches!(
            k,
            EventKind::CommandStarted { .. } | EventKind::SpawnFailed { .. }
        )
    });
    let failed: Vec<_> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::SpawnFailed { .. }))
        .collect();
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        failed.first()
    );
    d.events_until(
        1,
        |k| matches!(k, EventKind::CommandExited { command, .. } if command == "limit"),
    );
    let ps = d.client().ps(None);
    let limit = d.shuma(&["logs", "w", "limit"]);

    // Assert
    let running = ps
        .iter()
        .filter(|c| c.service && c.state == CmdState::Running)
        .count();
    assert_eq!(running, services);
    assert_eq!(out(&limit).trim(), "256", "the child's `ulimit -n`");
}

#[test]
fn test_nofile_child_limit_kept_across_reexec() {
    // Arrange: the new image inherits the raised limit; children must still get 256.
    let d = Daemon::launch(
        &[("w.toml", &card(0))],
        &[],
        &Launch {
            nofile: Some((256, 4096)),
            ..Launch::default()
        },
    );
    let check = [
        "run",
        "w",
        "--wait",
        "--",
        "/bin/sh",
        "-c",
        "test $(ulimit -n) = 256",
    ];
    let before = d.shuma(&check);

    // Act
    let reexec = d.shuma(&["daemon-reexec"]);
    let after = d.shuma(&check);

    // Assert
    assert!(reexec.status.success(), "{}", err(&reexec));
    assert_eq!(before.status.code(), Some(0), "{}", err(&before));
    assert_eq!(after.status.code(), Some(0), "{}", err(&after));
}

/// Read one frame's header and body: `Ok(None)` when the server closed the connection.
/// The read timeout only turns a hang (a client neither accepted nor refused) into an
/// error; a working daemon answers at once.
fn recv_or_closed(c: &mut Client) -> std::io::Result<Option<Response>> {
    let mut len = [0u8; HEADER_LEN];
    match c.stream.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    c.stream.read_exact(&mut body)?;
    Ok(Some(decode_payload(&body).expect("a frame")))
}

#[test]
fn test_fd_exhaustion_turns_clients_away_logs_once_and_recovers() {
    // Arrange: 64 fds in all (soft and hard), so clients exhaust them quickly.
    let d = Daemon::launch(
        &[],
        &[],
        &Launch {
            nofile: Some((64, 64)),
            ..Launch::default()
        },
    );
    let logged = d.log_len();
    let hello = Request::Hello {
        version: PROTOCOL_VERSION,
        client: "flood".into(),
    };

    // Act: clients that say Hello, until one is turned away.
    let mut held = Vec::new();
    loop {
        assert!(held.len() < 1000, "1000 clients and none turned away");
        let mut c = Client::raw(&d.socket);
        c.stream.set_read_timeout(Some(GUARD)).unwrap();
        // A client turned away may be closed before it writes: EPIPE is a refusal too.
        let frame = shuma_card::protocol::encode_frame(&hello);
        if std::io::Write::write_all(&mut c.stream, &frame).is_err() {
            break;
        }
        match recv_or_closed(&mut c) {
            Ok(Some(Response::Hello { .. })) => held.push(c),
            Ok(None) => break,
            Ok(Some(other)) => panic!("unexpected {other:?}"),
            Err(e) => panic!(
                "client {} neither accepted nor turned away ({e}); arje-init logged {} lines",
                held.len(),
                d.log_len() - logged
            ),
        }
    }
    let accepted = held.len();
    // Free fds, and make sure the daemon has seen it: a held client's request is read
    // after the hang-ups that came before it.
    held.truncate(1);
    let pong = held[0].call(Request::Ping);
    let after = d.ping();

    // Assert
    assert!(accepted > 10, "only {accepted} clients before exhaustion");
    assert_eq!(pong, Response::Pong);
    assert_eq!(after, Ok(()), "no answer once fds were freed");
    let lines = d.log_len() - logged;
    assert!(
        lines <= 4,
        "{lines} lines logged: {:#?}",
        d.log.lock().unwrap()
    );
}

#[test]
fn test_128_silent_connections_root_still_pings() {
    // Arrange: the connection cap's worth of clients that connect and say nothing. They
    // are accepted in the order they connected, before the ping below.
    let d = Daemon::start();
    let silent: Vec<Client> = (0..128).map(|_| Client::raw(&d.socket)).collect();

    // Act: this test runs as root, whose clients have slots beyond the cap.
    let ping = d.shuma(&["ping"]);

    // Assert
    assert!(ping.status.success(), "{}", err(&ping));
    assert_eq!(out(&ping).trim(), "pong");
    drop(silent);
}
