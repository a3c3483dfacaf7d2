//! One command at a time (issue 11): `shuma start|stop|restart|reload|kill
//! WORKSPACE/NAME` against a real daemon and real processes. No sleeps: each test awaits
//! the event or the output line that says the thing happened, and a ping is the barrier
//! after which whatever the same turn did is in the journal.

use arje_tests::host::{err, Daemon};
use shuma_card::protocol::{CmdState, CommandInfo, Request, Response};
use shuma_card::{
    CommandKind, CommandSpec, DepRef, Event, EventKind, RestartPolicy, WorkspaceSpec,
};

fn service(name: &str, script: &str) -> CommandSpec {
    let mut spec = CommandSpec::new(
        name,
        CommandKind::Service,
        vec!["/bin/sh".into(), "-c".into(), script.into()],
    );
    spec.restart = RestartPolicy::Always;
    spec.stop_grace_ms = 5_000;
    spec
}

fn create(d: &Daemon, commands: Vec<CommandSpec>) {
    let spec = WorkspaceSpec {
        name: "w".into(),
        commands,
        ..Default::default()
    };
    match d.client().call(Request::WsCreate { spec }) {
        Response::Created { failed, .. } => assert!(failed.is_empty(), "{failed:?}"),
        other => panic!("ws create: {other:?}"),
    }
}

fn shuma_ok(d: &Daemon, args: &[&str]) {
    let o = d.shuma(args);
    assert!(o.status.success(), "shuma {args:?}: {}", err(&o));
}

fn info(d: &Daemon, name: &str) -> CommandInfo {
    d.client()
        .ps(Some("w".into()))
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no command {name}"))
}

fn is(kind: &EventKind, what: &str, name: &str) -> bool {
    let (k, command) = match kind {
        EventKind::CommandStarted { command, .. } => ("started", command),
        EventKind::CommandExited { command, .. } => ("exited", command),
        EventKind::CommandRestarting { command, .. } => ("restarting", command),
        EventKind::CommandFailed { command, .. } => ("failed", command),
        _ => return false,
    };
    k == what && command == name
}

/// Every event so far (after a ping, so whatever an earlier turn did is in).
fn journal(d: &Daemon) -> Vec<Event> {
    d.ping().unwrap();
    let mut c = d.client();
    c.send(&Request::Events {
        after: None,
        follow: false,
    });
    let mut all = Vec::new();
    loop {
        match c.recv() {
            Some(Response::Events(evs)) => all.extend(evs),
            Some(Response::End) => return all,
            other => panic!("events: {other:?}"),
        }
    }
}

fn count(events: &[Event], what: &str, name: &str) -> usize {
    events.iter().filter(|e| is(&e.kind, what, name)).count()
}

#[test]
fn test_stop_keeps_service_stopped_start_brings_it_back_with_new_pid() {
    // Arrange: a service under `restart = always`.
    let d = Daemon::start();
    create(&d, vec![service("svc", "echo up; exec sleep 3600")]);
    d.wait_output("w", "svc", "up");
    let first = info(&d, "svc").pid.expect("running");

    // Act: stop; await its exit, then the barrier.
    shuma_ok(&d, &["stop", "w/svc"]);
    d.events_until(1, |k| is(k, "exited", "svc"));
    let after_stop = journal(&d);
    let stopped = info(&d, "svc");
    shuma_ok(&d, &["start", "w/svc"]);
    d.events_until(2, |k| is(k, "started", "svc"));
    let started = info(&d, "svc");

    // Assert: no restart followed the stop; the start is a new process.
    assert_eq!(
        count(&after_stop, "restarting", "svc"),
        0,
        "{after_stop:#?}"
    );
    assert_eq!(count(&after_stop, "started", "svc"), 1);
    assert_eq!(stopped.state, CmdState::Exited, "{stopped:?}");
    assert_eq!(stopped.pid, None);
    assert_eq!(started.state, CmdState::Running, "{started:?}");
    assert!(started.pid.is_some_and(|p| p != first), "{started:?}");
}

#[test]
fn test_restart_gives_new_pid_and_stays_running() {
    // Arrange
    let d = Daemon::start();
    create(&d, vec![service("svc", "exec sleep 3600")]);
    d.events_until(1, |k| is(k, "started", "svc"));
    let first = info(&d, "svc").pid.expect("running");

    // Act
    shuma_ok(&d, &["restart", "w/svc"]);
    d.events_until(2, |k| is(k, "started", "svc"));
    let events = journal(&d);
    let after = info(&d, "svc");

    // Assert: stopped once, started once more, not through the restart policy.
    assert_eq!(count(&events, "exited", "svc"), 1, "{events:#?}");
    assert_eq!(count(&events, "restarting", "svc"), 0, "{events:#?}");
    assert_eq!(after.state, CmdState::Running);
    assert!(after.pid.is_some_and(|p| p != first), "{after:?}");
}

#[test]
fn test_kill_usr1_and_reload_deliver_to_the_service() {
    // Arrange: a shell that traps USR1 and HUP and says so.
    let d = Daemon::start();
    let script = "trap 'echo got-usr1' USR1; trap 'echo got-hup' HUP; echo up; \
                  while :; do sleep 3600 & wait $!; done";
    create(&d, vec![service("svc", script)]);
    d.wait_output("w", "svc", "up");
    let pid = info(&d, "svc").pid;

    // Act / Assert: each signal's line appears; the service keeps its pid.
    shuma_ok(&d, &["kill", "-s", "USR1", "w/svc"]);
    d.wait_output("w", "svc", "got-usr1");
    shuma_ok(&d, &["reload", "w/svc"]);
    d.wait_output("w", "svc", "got-hup");
    assert_eq!(info(&d, "svc").pid, pid);
}

#[test]
fn test_stop_of_required_command_stops_what_requires_it() {
    // Arrange: web requires db and is ordered after it.
    let d = Daemon::start();
    let db = service("db", "exec sleep 3600");
    let mut web = service("web", "exec sleep 3600");
    web.after = vec![DepRef::parse("db").unwrap()];
    web.requires = vec![DepRef::parse("db").unwrap()];
    create(&d, vec![db, web]);
    d.events_until(1, |k| is(k, "started", "web"));

    // Act
    shuma_ok(&d, &["stop", "w/db"]);
    let events = d.events_until(1, |k| is(k, "failed", "web"));
    d.events_until(1, |k| is(k, "exited", "web"));
    let web = info(&d, "web");

    // Assert
    let reason = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::CommandFailed {
                command, reason, ..
            } if command == "web" => Some(reason.clone()),
            _ => None,
        })
        .unwrap();
    assert!(reason.contains("required db stopped"), "{reason}");
    assert_eq!(web.pid, None, "{web:?}");
    assert_eq!(web.state, CmdState::Failed, "{web:?}");
}

#[test]
fn test_unknown_workspace_or_command_is_not_found_naming_it() {
    let d = Daemon::start();
    create(&d, vec![service("svc", "exec sleep 3600")]);

    let no_cmd = d.shuma(&["stop", "w/nope"]);
    let no_ws = d.shuma(&["start", "nows/svc"]);
    let bad = d.shuma(&["kill", "-s", "NOPE", "w/svc"]);

    assert_eq!(no_cmd.status.code(), Some(1));
    assert!(
        err(&no_cmd).contains("no command nope in workspace w"),
        "{}",
        err(&no_cmd)
    );
    assert_eq!(no_ws.status.code(), Some(1));
    assert!(err(&no_ws).contains("no workspace nows"), "{}", err(&no_ws));
    assert_eq!(bad.status.code(), Some(2), "{}", err(&bad));
}
