//! State that survives, on this host in subreaper mode: re-exec keeps every child,
//! a restart recreates workspaces from the durable copy, a corrupt snapshot is set
//! aside, and SIGKILL at any moment never leaves a torn snapshot.

use std::io::Read;
use std::path::Path;

use arje_tests::client::Client;
use arje_tests::host::{err, out, Daemon};
use shuma_card::protocol::{CmdState, Request, Response};
use shuma_card::EventKind;

fn ps(d: &Daemon) -> Vec<shuma_card::protocol::CommandInfo> {
    d.client().ps(None)
}

const TICKER: &str = r#"
[workspace]
name = "tick"

[[service]]
name = "counter"
argv = ["/bin/sh", "-c", "i=0; while :; do echo $i; i=$((i+1)); /bin/sleep 0.01; done"]
"#;

/// Follow the counter's output until it has printed line `n` (an event: the daemon
/// pushes output as it reads it).
fn wait_for_line(d: &Daemon, n: u64) {
    let mut c = d.client();
    c.send(&Request::Logs {
        workspace: "tick".into(),
        command: "counter".into(),
        stream: shuma_card::protocol::Stream::Stdout,
        follow: true,
    });
    let mut text = String::new();
    let needle = format!("\n{n}\n");
    while !format!("\n{text}").contains(&needle) {
        match c.recv() {
            Some(Response::Log { data, .. }) => text.push_str(&String::from_utf8_lossy(&data)),
            other => panic!("unexpected {other:?} after {text:?}"),
        }
    }
}

#[test]
fn test_reexec_keeps_pids_uptime_and_every_output_line() {
    let d = Daemon::start_with(&[("tick.toml", TICKER)], &[]);
    wait_for_line(&d, 5);
    let before = ps(&d);
    // A client pinging in a loop across the re-exec.
    let socket = d.socket.clone();
    let pinger = std::thread::spawn(move || {
        let mut failures = 0;
        for _ in 0..300 {
            let mut c = Client::raw(&socket);
            c.send(&Request::Hello {
                version: shuma_card::protocol::PROTOCOL_VERSION,
                client: "pinger".into(),
            });
            if !matches!(c.recv(), Some(Response::Hello { .. })) {
                failures += 1;
                continue;
            }
            c.send(&Request::Ping);
            if c.recv() != Some(Response::Pong) {
                failures += 1;
            }
        }
        failures
    });

    let r = d.shuma(&["daemon-reexec"]);
    let failures = pinger.join().unwrap();
    let after = ps(&d);
    // Output written across the exec: at least 5 more lines after the new image started.
    let seen = out(&d.shuma(&["logs", "tick", "counter"])).lines().count() as u64;
    wait_for_line(&d, seen + 5);
    let logs = out(&d.shuma(&["logs", "tick", "counter"]));

    assert!(r.status.success(), "{}", err(&r));
    assert_eq!(failures, 0, "pings failed across the re-exec");
    assert_eq!(before.len(), 1);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].pid, before[0].pid, "the service kept its pid");
    assert_eq!(after[0].state, CmdState::Running);
    assert_eq!(after[0].restarts, 0);
    assert!(after[0].uptime_ms >= before[0].uptime_ms);
    assert!(d
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("adopted tick/counter")));
    // Output before and after the exec: the new image read the same pipe, so the
    // numbers it kept are contiguous from where the old one stopped.
    let nums: Vec<u64> = logs
        .lines()
        .map(|l| l.trim().parse().expect("a number per line"))
        .collect();
    assert!(nums.len() as u64 > seen + 5, "{logs}");
    let expected: Vec<u64> = (0..nums.len() as u64).collect();
    assert_eq!(nums, expected, "a line was lost across the re-exec");
}

#[test]
fn test_restart_recreates_workspace_from_durable_copy_without_rerunning_tasks() {
    let state = tempfile::tempdir().unwrap();
    let durable = state.path().join("durable");
    let card = r#"
[workspace]
name = "keep"

[[service]]
name = "svc"
argv = ["/bin/sleep", "3600"]

[[task]]
name = "once"
argv = ["/bin/echo", "ran"]
"#;
    let first = Daemon::start_with(&[], &["--durable-dir", durable.to_str().unwrap()]);
    let file = first.dir.path().join("keep.toml");
    std::fs::write(&file, card).unwrap();
    assert!(first
        .shuma(&["ws", "create", file.to_str().unwrap()])
        .status
        .success());
    first.events_until(
        1,
        |k| matches!(k, EventKind::CommandExited { command, .. } if command == "once"),
    );
    assert_eq!(first.stop(), Some(0));

    // A new arje with a fresh /run (as after a reboot) and the same durable copy.
    let second = Daemon::start_with(&[], &["--durable-dir", durable.to_str().unwrap()]);
    // The journal on disk holds the first daemon's events too (docs/STATE.md), so the
    // second's start of svc is the second one in it.
    let events = second.events_until(
        2,
        |k| matches!(k, EventKind::CommandStarted { command, .. } if command == "svc"),
    );
    let cmds = ps(&second);

    let once_started = events
        .iter()
        .filter(
            |e| matches!(&e.kind, EventKind::CommandStarted { command, .. } if command == "once"),
        )
        .count();
    assert_eq!(once_started, 1, "the task ran again: {events:#?}");
    let once = cmds
        .iter()
        .find(|c| c.name == "once")
        .expect("task remembered");
    assert_eq!(once.state, CmdState::Exited);
    assert!(cmds
        .iter()
        .any(|c| c.name == "svc" && c.state == CmdState::Running));
}

#[test]
fn test_corrupt_snapshot_set_aside_and_start_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::write(
        run.join("snapshot.bin"),
        b"ARJESNAP but not really a snapshot",
    )
    .unwrap();

    let d = Daemon::start_with(&[], &["--state-dir", run.to_str().unwrap()]);
    let events = d.events_until(
        1,
        |k| matches!(k, EventKind::Warning { message } if message.contains("set aside")),
    );

    assert_eq!(out(&d.shuma(&["ping"])).trim(), "pong");
    let aside: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("snapshot.bin.bad-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "{events:#?}");
}

fn decode(path: &Path) -> shuma_card::snapshot::Snapshot {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    shuma_card::snapshot::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()))
}

#[test]
fn test_sigkill_during_churn_never_leaves_a_torn_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let durable = dir.path().join("durable");
    let args = [
        "--state-dir",
        run.to_str().unwrap(),
        "--durable-dir",
        durable.to_str().unwrap(),
    ];
    let mut restored_ok = 0;
    for trial in 0..100u64 {
        let mut d = Daemon::start_with(&[], &args);
        // Every restart finds what the last one left, intact.
        let set_aside: Vec<String> = d
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("set aside"))
            .cloned()
            .collect();
        assert!(set_aside.is_empty(), "trial {trial}: {set_aside:#?}");
        let mut c = d.client();
        // Churn: create and stop workspaces; kill after a number of changes that
        // varies by trial, at a moment no write waits for.
        let n = 1 + trial % 7;
        for i in 0..n {
            let name = format!("w{trial}-{i}");
            let spec = shuma_card::WorkspaceSpec {
                name: name.clone(),
                ..Default::default()
            };
            c.send(&Request::WsCreate { spec });
            if i % 2 == 1 {
                c.send(&Request::WsStop {
                    name,
                    grace_ms: Some(0),
                });
            }
        }
        // Wait for the answer to the first request only: the rest is in flight.
        assert!(c.recv().is_some());
        let _ = d.child.kill();
        let _ = d.child.wait();
        if run.join("snapshot.bin").exists() {
            let snap = decode(&run.join("snapshot.bin"));
            assert!(snap.workspaces.iter().all(|w| w.spec.name.starts_with('w')));
            restored_ok += 1;
        }
        if durable.join("snapshot.bin").exists() {
            decode(&durable.join("snapshot.bin"));
        }
    }
    assert_eq!(restored_ok, 100);
}

#[test]
fn test_reexec_refuses_a_binary_that_cannot_be_arje_and_keeps_children() {
    let d = Daemon::start_with(&[("tick.toml", TICKER)], &[]);
    wait_for_line(&d, 1);
    let before = ps(&d);
    let dir = d.dir.path();
    let plain = dir.join("plain");
    std::fs::write(&plain, b"\x7fELF not executable").unwrap();
    let script = dir.join("script");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    let text = dir.join("text");
    std::fs::write(&text, "just words\n").unwrap();
    // A valid ELF executable for this machine that is not arje-init: it has no arje
    // identity note, and is refused without being run.
    let other_program = dir.join("true");
    std::fs::copy("/bin/true", &other_program).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for f in [&script, &text, &other_program] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let cases = [
        (plain.clone(), "not executable"),
        (script.clone(), "not an ELF executable"),
        (text.clone(), "not an ELF executable"),
        (dir.to_path_buf(), "not a regular file"),
        (other_program.clone(), "is not arje-init"),
    ];

    let answers: Vec<_> = cases
        .iter()
        .map(|(binary, _)| d.shuma(&["daemon-reexec", "--binary", binary.to_str().unwrap()]))
        .collect();
    let after = ps(&d);

    for ((binary, why), answer) in cases.iter().zip(&answers) {
        assert_eq!(
            answer.status.code(),
            Some(1),
            "{}: {}",
            binary.display(),
            out(answer)
        );
        assert!(
            err(answer).contains(why),
            "{}: {}",
            binary.display(),
            err(answer)
        );
    }
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].pid, before[0].pid, "the service kept running");
    assert!(!d
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("re-exec of")));
}

const SLEEPER: &str = r#"
[workspace]
name = "sleepy"

[[service]]
name = "svc"
argv = ["/bin/sleep", "3600"]
"#;

/// SIGTERM the running `svc` and return the status its exit event reports.
fn term_service_and_read_its_exit(d: &Daemon) -> shuma_card::ExitStatus {
    let pid = ps(d)
        .iter()
        .find(|c| c.name == "svc")
        .and_then(|c| c.pid)
        .expect("svc runs");
    // SAFETY: a plain kill of the service's pid, which the daemon holds a pidfd for
    // (and which is unreaped until the daemon reaps it, so it names that process).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let events = d.events_until(
        1,
        |k| matches!(k, EventKind::CommandExited { pid: p, .. } if *p == pid),
    );
    events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::CommandExited { pid: p, status, .. } if *p == pid => Some(*status),
            _ => None,
        })
        .expect("the exit event")
}

#[test]
fn test_adopted_service_exit_after_reexec_shows_its_signal() {
    let d = Daemon::start_with(&[("sleepy.toml", SLEEPER)], &[]);
    d.events_until(
        1,
        |k| matches!(k, EventKind::CommandStarted { command, .. } if command == "svc"),
    );
    assert!(d.shuma(&["daemon-reexec"]).status.success());

    let status = term_service_and_read_its_exit(&d);

    assert_eq!(status, shuma_card::ExitStatus::Signal(libc::SIGTERM));
}

#[test]
fn test_adopted_service_exit_after_crash_restart_shows_its_signal() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let args = ["--state-dir", run.to_str().unwrap()];
    let mut first = Daemon::start_with(&[("sleepy.toml", SLEEPER)], &args);
    first.events_until(
        1,
        |k| matches!(k, EventKind::CommandStarted { command, .. } if command == "svc"),
    );
    let before = ps(&first);
    // A crash: the service is orphaned to another parent, still running.
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    let second = Daemon::start_with(&[], &args);
    let adopted = ps(&second);
    let status = term_service_and_read_its_exit(&second);

    assert_eq!(adopted[0].pid, before[0].pid, "the service was adopted");
    // Not our child any more, so waitid cannot reap it; its status is still known.
    assert_eq!(status, shuma_card::ExitStatus::Signal(libc::SIGTERM));
}
