//! Readiness, dependencies and health (issue 10), with real programs: systemd's own
//! `systemd-notify`, `dbus-daemon` (which links libsystemd and is `Type=notify` under
//! systemd) unchanged, a daemon that forks and reports `MAINPID=`, a watchdog that stops
//! being fed, and a three-level chain ordered on readiness.

use arje_tests::host::Daemon;
use shuma_card::protocol::{ErrorCode, Request, Response};
use shuma_card::{
    CommandKind, CommandSpec, DepRef, Event, EventKind, ExitStatus, Probe, Readiness,
    RestartPolicy, WorkspaceSpec,
};

fn service(name: &str, script: &str) -> CommandSpec {
    CommandSpec::new(
        name,
        CommandKind::Service,
        vec!["/bin/sh".into(), "-c".into(), script.into()],
    )
}

fn dep(name: &str) -> DepRef {
    DepRef::parse(name).unwrap()
}

fn create(d: &Daemon, name: &str, commands: Vec<CommandSpec>) {
    let spec = WorkspaceSpec {
        name: name.into(),
        commands,
        ..Default::default()
    };
    match d.client().call(Request::WsCreate { spec }) {
        Response::Created { failed, .. } => assert!(failed.is_empty(), "{failed:?}"),
        other => panic!("ws create: {other:?}"),
    }
}

fn wait_ready(d: &Daemon, ws: &str, command: Option<&str>) -> Response {
    d.client().call(Request::WaitReady {
        workspace: ws.into(),
        command: command.map(str::to_string),
        timeout_ms: Some(60_000),
    })
}

/// The id of the first event matching `pred`.
fn id_of(events: &[Event], pred: impl Fn(&EventKind) -> bool) -> u64 {
    events
        .iter()
        .find(|e| pred(&e.kind))
        .unwrap_or_else(|| panic!("no such event in {events:#?}"))
        .id
}

#[test]
fn test_systemd_notify_declares_ready_and_status_a_silent_one_times_out_with_stderr() {
    let d = Daemon::start();
    let mut good = service(
        "api",
        "systemd-notify --ready --status='Accepting connections'; exec sleep 3600",
    );
    good.ready = Readiness::Notify;
    let mut silent = service(
        "db",
        "echo 'db: cannot bind 127.0.0.1:5432: address in use' >&2; exec sleep 3600",
    );
    silent.ready = Readiness::Notify;
    silent.ready_timeout_ms = 300;
    silent.restart = RestartPolicy::Never;
    create(&d, "w", vec![good]);
    create(&d, "v", vec![silent]);

    let ok = wait_ready(&d, "w", None);
    let not_ready = wait_ready(&d, "v", Some("db"));
    let ps = d.client().ps(Some("w".into()));

    assert_eq!(ok, Response::Ok);
    assert!(ps[0].ready, "{ps:?}");
    assert_eq!(ps[0].status.as_deref(), Some("Accepting connections"));
    let Response::Error { code, message } = not_ready else {
        panic!("{not_ready:?}");
    };
    assert_eq!(code, ErrorCode::NotReady);
    assert!(message.contains("not ready within 300ms"), "{message}");
    assert!(message.contains("cannot bind 127.0.0.1:5432"), "{message}");
}

#[test]
fn test_dbus_daemon_linking_libsystemd_becomes_ready_unchanged() {
    let d = Daemon::start();
    let bus = d.dir.path().join("bus");
    let mut dbus = CommandSpec::new(
        "dbus",
        CommandKind::Service,
        [
            "/usr/bin/dbus-daemon",
            "--session",
            "--nofork",
            "--nopidfile",
            &format!("--address=unix:path={}", bus.display()),
        ]
        .map(String::from)
        .to_vec(),
    );
    dbus.ready = Readiness::Notify;
    create(&d, "bus", vec![dbus]);

    let ready = wait_ready(&d, "bus", None);

    assert_eq!(ready, Response::Ok);
    // Ready means it accepts connections: the socket is there.
    assert!(
        std::os::unix::net::UnixStream::connect(&bus).is_ok(),
        "{}",
        bus.display()
    );
}

#[test]
fn test_forking_daemon_reports_mainpid_and_its_child_is_supervised() {
    let d = Daemon::start();
    // The parent starts the real daemon, reports it as MAINPID with READY=1, and exits
    // 0: the classic forking daemon.
    let mut forking = service(
        "forker",
        "sleep 3600 & systemd-notify --ready --pid=$!; exit 0",
    );
    forking.ready = Readiness::Notify;
    forking.restart = RestartPolicy::Never;
    create(&d, "f", vec![forking]);

    let ready = wait_ready(&d, "f", None);
    let ps = d.client().ps(Some("f".into()));
    let started = d.events_until(1, |k| matches!(k, EventKind::CommandStarted { .. }));
    let first_pid = started
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::CommandStarted { pid, .. } => Some(*pid),
            _ => None,
        })
        .unwrap();
    let main = ps[0].pid.expect("running");
    let comm = std::fs::read_to_string(format!("/proc/{main}/comm")).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(main),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let exited = d.events_until(1, |k| matches!(k, EventKind::CommandExited { .. }));

    assert_eq!(ready, Response::Ok);
    assert_ne!(main, first_pid, "MAINPID not followed: {ps:?}");
    assert_eq!(comm.trim(), "sleep");
    // The parent's exit 0 was not the service's: the exit arje reports is the child's.
    let exits: Vec<_> = exited
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::CommandExited { pid, status, .. } => Some((*pid, *status)),
            _ => None,
        })
        .collect();
    assert_eq!(exits, vec![(main, ExitStatus::Signal(9))]);
}

#[test]
fn test_watchdog_not_fed_gets_sigabrt_and_is_restarted_with_watchdog_usec_set() {
    let d = Daemon::start();
    let mut starved = service(
        "starved",
        "echo usec=$WATCHDOG_USEC; systemd-notify --ready; exec sleep 3600",
    );
    starved.ready = Readiness::Notify;
    starved.watchdog_ms = Some(300);
    starved.restart = RestartPolicy::Always;
    starved.min_uptime_ms = 0;
    create(&d, "dog", vec![starved]);

    let events = d.events_until(1, |k| matches!(k, EventKind::CommandRestarting { .. }));
    d.wait_output("dog", "starved", "usec=300000");

    let unhealthy = events.iter().find_map(|e| match &e.kind {
        EventKind::CommandUnhealthy { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert!(
        unhealthy.as_deref().is_some_and(|r| r.contains("watchdog")),
        "{events:#?}"
    );
    assert!(events.iter().any(|e| matches!(
        e.kind,
        EventKind::CommandExited {
            status: ExitStatus::Signal(6),
            ..
        }
    )));
}

#[test]
fn test_three_level_chain_starts_in_order_stops_in_reverse_requires_failure_stops_dependent() {
    let d = Daemon::start();
    let sock = d.dir.path().join("db.sock");
    let net = CommandSpec::new(
        "net",
        CommandKind::Task,
        vec!["/bin/sh".into(), "-c".into(), "echo network up".into()],
    );
    // A database-like service: ready once its unix socket accepts connections.
    let mut db = CommandSpec::new(
        "db",
        CommandKind::Service,
        vec![
            "/usr/bin/python3".into(),
            "-c".into(),
            format!(
                "import socket,time; s=socket.socket(socket.AF_UNIX); time.sleep(0.2); \
                 s.bind('{}'); s.listen(); time.sleep(3600)",
                sock.display()
            ),
        ],
    );
    db.after = vec![dep("net")];
    db.requires = vec![dep("net")];
    db.ready = Readiness::Probe(Probe::Unix(sock.display().to_string()));
    db.restart = RestartPolicy::Never;
    // A web-like service after the database, ready on a line of its output.
    let mut web = service("web", "echo 'web: listening on :8080'; exec sleep 3600");
    web.after = vec![dep("db")];
    web.requires = vec![dep("db")];
    web.ready = Readiness::Line("listening".into());
    // Declared first, started last: order comes from the dependencies, not the card.
    create(&d, "chain", vec![web, db, net]);

    let ready = wait_ready(&d, "chain", None);
    let up = d.events_until(
        1,
        |k| matches!(k, EventKind::CommandReady { command, .. } if command == "web"),
    );
    let ps = d.client().ps(Some("chain".into()));
    let db_pid = ps
        .iter()
        .find(|c| c.name == "db")
        .and_then(|c| c.pid)
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(db_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let down = d.events_until(
        1,
        |k| matches!(k, EventKind::CommandFailed { command, .. } if command == "web"),
    );

    assert_eq!(ready, Response::Ok);
    let started = |c: &str| {
        let c = c.to_string();
        move |k: &EventKind| matches!(k, EventKind::CommandStarted { command, .. } if *command == c)
    };
    let net_done = id_of(
        &up,
        |k| matches!(k, EventKind::CommandExited { command, status: ExitStatus::Code(0), .. } if command == "net"),
    );
    let db_ready = id_of(
        &up,
        |k| matches!(k, EventKind::CommandReady { command, .. } if command == "db"),
    );
    assert!(net_done < id_of(&up, started("db")), "{up:#?}");
    assert!(db_ready < id_of(&up, started("web")), "{up:#?}");
    // Timestamps agree with the ids.
    let at = |id: u64| up.iter().find(|e| e.id == id).unwrap().mono_us;
    assert!(at(db_ready) <= at(id_of(&up, started("web"))));
    let reason = down
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::CommandFailed {
                command, reason, ..
            } if command == "web" => Some(reason.clone()),
            _ => None,
        })
        .unwrap();
    assert!(reason.contains("required db"), "{reason}");
}

#[test]
fn test_stop_order_is_the_reverse_of_the_start_order() {
    let d = Daemon::start();
    let base = service("base", "exec sleep 3600");
    let mut mid = service("mid", "exec sleep 3600");
    mid.after = vec![dep("base")];
    let mut top = service("top", "exec sleep 3600");
    top.after = vec![dep("mid")];
    create(&d, "stack", vec![base, mid, top]);
    assert_eq!(wait_ready(&d, "stack", None), Response::Ok);

    let mut stopper = d.client();
    stopper.send(&Request::WsStop {
        name: "stack".into(),
        grace_ms: Some(5_000),
    });
    let events = d.events_until(1, |k| matches!(k, EventKind::WorkspaceStopped { .. }));

    let exited = |c: &str| {
        id_of(
            &events,
            |k| matches!(k, EventKind::CommandExited { command, .. } if command == c),
        )
    };
    assert!(exited("top") < exited("mid"), "{events:#?}");
    assert!(exited("mid") < exited("base"), "{events:#?}");
}

#[test]
fn test_wait_ready_for_a_dependency_in_another_workspace_waits_for_it_to_exist() {
    let d = Daemon::start();
    let mut app = service("app", "exec sleep 3600");
    app.after = vec![dep("infra/net")];
    create(&d, "apps", vec![app]);
    let mut c = d.client();
    c.send(&Request::WaitReady {
        workspace: "apps".into(),
        command: None,
        timeout_ms: Some(60_000),
    });
    let waiting = d.client().ps(Some("apps".into()));

    let net = CommandSpec::new("net", CommandKind::Task, vec!["/bin/true".into()]);
    create(&d, "infra", vec![net]);
    let answer = c.recv();

    assert_eq!(waiting[0].pid, None, "{waiting:?}");
    assert!(
        waiting[0]
            .waiting_for
            .iter()
            .any(|w| w.contains("infra/net")),
        "{waiting:?}"
    );
    assert_eq!(answer, Some(Response::Ok));
}
