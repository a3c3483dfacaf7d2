//! Host-mode integration tests: the real `arje-init --subreaper`, driven by the real
//! `shuma` and by raw frames.

use arje_tests::host::{err, out, Daemon};
use shuma_card::protocol::{Request, Response};
use shuma_card::{EventKind, ExitStatus};

const DEMO: &str = r#"
[workspace]
name = "demo"

[[task]]
name = "hello"
argv = ["/bin/echo", "hello from a card"]
"#;

#[test]
fn test_ws_create_card_oneshot_output_readable() {
    let d = Daemon::start();

    let created = d.ws_create("demo.toml", DEMO);
    let exited = d.events_until(
        1,
        |k| matches!(k, EventKind::CommandExited { command, .. } if command == "hello"),
    );
    let logs = d.shuma(&["logs", "demo", "hello"]);
    let ls = d.shuma(&["ws", "ls"]);

    assert!(created.status.success(), "{}", err(&created));
    assert!(exited.iter().any(|e| matches!(
        &e.kind,
        EventKind::CommandExited {
            status: ExitStatus::Code(0),
            ..
        }
    )));
    assert_eq!(out(&logs), "hello from a card\n");
    assert!(out(&ls).contains("demo"), "{}", out(&ls));
}

#[test]
fn test_cards_dir_loaded_at_start() {
    let d = Daemon::start_with(&[("demo.toml", DEMO)], &[]);

    d.events_until(
        1,
        |k| matches!(k, EventKind::CommandExited { command, .. } if command == "hello"),
    );
    let logs = d.shuma(&["logs", "demo", "hello"]);

    assert_eq!(out(&logs), "hello from a card\n");
}

#[test]
fn test_run_wait_exit_codes_propagate() {
    let d = Daemon::start_with(&[("demo.toml", DEMO)], &[]);

    let three = d.shuma(&["run", "demo", "--wait", "--", "/bin/sh", "-c", "exit 3"]);
    let zero = d.shuma(&["run", "demo", "--wait", "--", "/bin/true"]);
    let killed = d.shuma(&["run", "demo", "--wait", "--", "/bin/sh", "-c", "kill -9 $$"]);
    let missing = d.shuma(&["run", "demo", "--wait", "--", "/nonexistent/program"]);

    assert_eq!(three.status.code(), Some(3));
    assert_eq!(zero.status.code(), Some(0));
    assert_eq!(killed.status.code(), Some(137));
    assert_eq!(missing.status.code(), Some(1), "{}", err(&missing));
    assert!(
        err(&missing).contains("/nonexistent/program"),
        "{}",
        err(&missing)
    );
}

#[test]
fn test_bad_card_rejected_with_line_and_field() {
    let d = Daemon::start();

    let r = d.ws_create("bad.toml", "[workspace]\nname = \"demo\"\n\n[[service]]\nname = \"s\"\nargv = [\"/bin/true\"]\nrestart = \"sometimes\"\n");
    let ls = d.shuma(&["ws", "ls", "--json"]);

    assert_eq!(r.status.code(), Some(2));
    let msg = err(&r);
    assert!(msg.contains("bad.toml:7:"), "{msg}");
    assert!(msg.contains("restart"), "{msg}");
    assert!(
        !out(&ls).contains("demo"),
        "nothing of a bad card is applied: {}",
        out(&ls)
    );
}

#[test]
fn test_service_restarts_with_growing_backoff() {
    let card = r#"
[workspace]
name = "flaky"

[[service]]
name = "crash"
argv = ["/bin/sh", "-c", "exit 1"]
restart = "always"
backoff = { initial = "50ms", max = "200ms" }
max_restarts = 0
min_uptime = "1h"
"#;
    let d = Daemon::start_with(&[("flaky.toml", card)], &[]);

    let events = d.events_until(5, |k| matches!(k, EventKind::CommandStarted { .. }));

    let delays: Vec<u64> = events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::CommandRestarting { delay_ms, .. } => Some(delay_ms),
            _ => None,
        })
        .collect();
    assert_eq!(&delays[..4], &[50, 100, 200, 200]);
    // Each restart really waited its delay: from the exit to the next start.
    let mut last_exit = None;
    let mut checked = 0;
    let mut pending_delay = 0;
    for e in &events {
        match e.kind {
            EventKind::CommandExited { .. } => last_exit = Some(e.mono_us),
            EventKind::CommandRestarting { delay_ms, .. } => pending_delay = delay_ms,
            EventKind::CommandStarted { .. } => {
                if let Some(t) = last_exit.take() {
                    assert!(
                        e.mono_us - t >= pending_delay * 1000,
                        "restart came {}us after exit, delay {pending_delay}ms",
                        e.mono_us - t
                    );
                    checked += 1;
                }
            }
            _ => {}
        }
    }
    assert_eq!(checked, 4);
}

#[test]
fn test_term_ignoring_service_killed_after_grace() {
    let card = r#"
[workspace]
name = "stubborn"

[[service]]
name = "ignore"
argv = ["/bin/sh", "-c", "trap '' TERM; echo up; while :; do /bin/sleep 1; done"]
stop_grace = "300ms"
"#;
    let d = Daemon::start_with(&[("s.toml", card)], &[]);
    // "up" comes after the trap: from then on TERM is ignored.
    d.wait_output("stubborn", "ignore", "up");

    let stop = d.shuma(&["ws", "stop", "stubborn"]);
    let events = d.events_until(1, |k| matches!(k, EventKind::WorkspaceStopped { .. }));

    assert!(stop.status.success(), "{}", err(&stop));
    assert!(
        events.iter().any(|e| matches!(
            e.kind,
            EventKind::CommandExited {
                status: ExitStatus::Signal(9),
                ..
            }
        )),
        "{events:#?}"
    );
    let ls = d.shuma(&["ws", "ls", "--json"]);
    assert!(!out(&ls).contains("stubborn"));
}

#[test]
fn test_double_forked_grandchild_leaves_no_zombie() {
    let d = Daemon::start_with(&[("demo.toml", DEMO)], &[]);
    let pidfile = d.dir.path().join("grandchild.pid");
    // The subshell starts the grandchild in the background, records its pid and
    // exits: the grandchild is reparented to arje, the nearest subreaper.
    let script = format!(
        "(/bin/sh -c 'exit 0' & echo $! > {0}); exit 0",
        pidfile.display()
    );

    let r = d.shuma(&["run", "demo", "--wait", "--", "/bin/sh", "-c", &script]);
    assert_eq!(r.status.code(), Some(0));
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Wait for the grandchild's exit through a pidfd (an event, not a sleep). Its
    // SIGCHLD is queued on arje before our pidfd wakes, so the next request arje
    // answers comes after it has reaped the orphan.
    wait_exit(pid);
    let pong = d.shuma(&["ping"]);

    assert_eq!(out(&pong).trim(), "pong");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
    assert!(stat.is_err(), "grandchild {pid} still present: {stat:?}");
}

/// Block until `pid` has exited (not necessarily been reaped), via pidfd + poll.
fn wait_exit(pid: i32) {
    // SAFETY: pidfd_open returns a new fd or -1; poll on it is plain.
    unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
        if fd < 0 {
            return; // Already gone (and reaped).
        }
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        libc::poll(&mut p, 1, -1);
        libc::close(fd);
    }
}

#[test]
fn test_thousand_commands_at_once_all_accounted() {
    let d = Daemon::start_with(&[("demo.toml", DEMO)], &[]);
    let mut c = d.client();
    let n = 1000;

    for i in 0..n {
        let mut cmd = shuma_card::CommandSpec::new(
            format!("c{i}"),
            shuma_card::CommandKind::Task,
            vec!["/bin/sh".into(), "-c".into(), format!("exit {}", i % 7)],
        );
        cmd.log = shuma_card::LogTarget::Ring;
        c.send(&Request::Run {
            workspace: "demo".into(),
            command: cmd,
            wait: false,
        });
    }
    let mut started = 0;
    for _ in 0..n {
        match c.recv() {
            Some(Response::Started { .. }) => started += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    let events = d.events_until(
        n,
        |k| matches!(k, EventKind::CommandExited { command, .. } if command.starts_with('c')),
    );

    assert_eq!(started, n);
    let mut seen = std::collections::HashMap::new();
    for e in events {
        if let EventKind::CommandExited {
            command, status, ..
        } = e.kind
        {
            if let Some(i) = command
                .strip_prefix('c')
                .and_then(|s| s.parse::<i32>().ok())
            {
                assert_eq!(status, ExitStatus::Code(i % 7), "{command}");
                assert!(seen.insert(i, status).is_none(), "{command} exited twice");
            }
        }
    }
    assert_eq!(seen.len(), n);
}

#[test]
fn test_child_has_only_stdio_fds() {
    let d = Daemon::start_with(&[("demo.toml", DEMO)], &[]);

    // `ls` lists the fds of the shell (its parent, which waits and opens nothing).
    let r = d.shuma(&[
        "run",
        "demo",
        "--wait",
        "--name",
        "fds",
        "--",
        "/bin/sh",
        "-c",
        "ls /proc/$$/fd",
    ]);
    let logs = out(&d.shuma(&["logs", "demo", "fds"]));

    assert_eq!(r.status.code(), Some(0));
    let fds: Vec<&str> = logs.split_whitespace().collect();
    assert_eq!(fds, vec!["0", "1", "2"], "{logs}");
}

#[test]
fn test_sigterm_stops_workspaces_and_exits_zero() {
    let card = r#"
[workspace]
name = "svc"

[[service]]
name = "sleeper"
argv = ["/bin/sh", "-c", "echo up; exec /bin/sleep 3600"]
stop_grace = "5s"
"#;
    let d = Daemon::start_with(&[("svc.toml", card)], &[]);
    let started = d.events_until(1, |k| matches!(k, EventKind::CommandStarted { .. }));
    let pid = started.iter().find_map(|e| match e.kind {
        EventKind::CommandStarted { pid, .. } => Some(pid),
        _ => None,
    });

    let code = d.stop();

    assert_eq!(code, Some(0));
    let pid = pid.unwrap();
    assert!(
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_err(),
        "service {pid} outlived arje"
    );
}
