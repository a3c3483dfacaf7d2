//! Resource pressure on the control plane: the fd limit arje runs under and the one its
//! children get, fd exhaustion, and a flood of silent connections.

use arje_tests::host::{err, out, Daemon, Launch};
use shuma_card::protocol::CmdState;
use shuma_card::EventKind;

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
