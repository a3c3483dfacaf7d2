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
        "echo usec=$WATCHDOG_USEC pid=$WATCHDOG_PID self=$$; systemd-notify --ready; exec sleep 3600",
    );
    starved.ready = Readiness::Notify;
    starved.watchdog_ms = Some(300);
    starved.restart = RestartPolicy::Always;
    starved.min_uptime_ms = 0;
    create(&d, "dog", vec![starved]);

    let events = d.events_until(1, |k| matches!(k, EventKind::CommandRestarting { .. }));
    d.wait_output("dog", "starved", "usec=300000");
    let logs = arje_tests::host::out(&d.shuma(&["logs", "dog", "starved"]));
    let first = logs.lines().next().unwrap_or_default().to_string();
    let field = |k: &str| {
        first
            .split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .map(str::to_string)
    };

    let unhealthy = events.iter().find_map(|e| match &e.kind {
        EventKind::CommandUnhealthy { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert!(
        unhealthy.as_deref().is_some_and(|r| r.contains("watchdog")),
        "{events:#?}"
    );
    // WATCHDOG_PID names the service's own process, as systemd sets it.
    assert!(field("pid=").is_some_and(|p| !p.is_empty()), "{first}");
    assert_eq!(field("pid="), field("self="), "{first}");
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

#[test]
fn test_reexec_keeps_readiness_status_and_the_notify_socket() {
    let d = Daemon::start();
    let fifo = d.dir.path().join("go");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // Ready with a status; then, once told through the fifo, "reload" and be ready again
    // with another status, on the same NOTIFY_SOCKET.
    let mut svc = service(
        "svc",
        &format!(
            "systemd-notify --ready --status=before; read x < {}; \
             systemd-notify RELOADING=1 READY=1 STATUS=after-$x; exec sleep 3600",
            fifo.display()
        ),
    );
    svc.ready = Readiness::Notify;
    create(&d, "keep", vec![svc]);
    assert_eq!(wait_ready(&d, "keep", None), Response::Ok);
    let before = d.client().ps(Some("keep".into()));

    let reexec = d.shuma(&["daemon-reexec"]);
    let after = d.client().ps(Some("keep".into()));
    let last_id = match d.client().call(Request::Status) {
        Response::Status(s) => s.last_event_id,
        other => panic!("{other:?}"),
    };
    let mut events = d.client();
    events.send(&Request::Events {
        after: Some(last_id),
        follow: true,
    });
    std::fs::write(&fifo, "go\n").unwrap();
    // The second READY=1 arrives on the socket the new image inherited.
    let is_ready =
        |k: &EventKind| matches!(k, EventKind::CommandReady { command, .. } if command == "svc");
    loop {
        match events.recv() {
            Some(Response::Events(evs)) if evs.iter().any(|e| is_ready(&e.kind)) => break,
            Some(Response::Events(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    let last = d.client().ps(Some("keep".into()));

    assert!(
        reexec.status.success(),
        "{}",
        arje_tests::host::err(&reexec)
    );
    assert_eq!(before[0].pid, after[0].pid);
    assert!(after[0].ready, "{after:?}");
    assert_eq!(after[0].status.as_deref(), Some("before"));
    assert_eq!(last[0].status.as_deref(), Some("after-go"));
    assert!(last[0].ready);
}

#[test]
fn test_cli_ws_create_wait_ready_names_the_service_that_never_became_ready() {
    let d = Daemon::start();
    let card = d.dir.path().join("app.toml");
    std::fs::write(
        &card,
        r#"[workspace]
name = "app"

[[task]]
name = "migrate"
argv = ["/bin/true"]

[[service]]
name = "db"
argv = ["/bin/sh", "-c", "echo 'FATAL: data directory has wrong ownership' >&2; exec sleep 3600"]
after = ["migrate"]
ready = "notify"
ready_timeout = "300ms"
restart = "never"
"#,
    )
    .unwrap();
    let ok_card = d.dir.path().join("ok.toml");
    std::fs::write(
        &ok_card,
        r#"[workspace]
name = "ok"

[[service]]
name = "api"
argv = ["/bin/sh", "-c", "systemd-notify --ready; exec sleep 3600"]
ready = "notify"
"#,
    )
    .unwrap();

    let failed = d.shuma(&["ws", "create", card.to_str().unwrap(), "--wait-ready"]);
    let ok = d.shuma(&["ws", "create", ok_card.to_str().unwrap(), "--wait-ready"]);
    let ps = d.shuma(&["ps", "ok"]);

    assert_eq!(
        failed.status.code(),
        Some(4),
        "{}",
        arje_tests::host::err(&failed)
    );
    let why = arje_tests::host::err(&failed);
    assert!(why.contains("app/db"), "{why}");
    assert!(why.contains("wrong ownership"), "{why}");
    assert!(ok.status.success(), "{}", arje_tests::host::err(&ok));
    assert!(
        arje_tests::host::out(&ps).contains("yes"),
        "{}",
        arje_tests::host::out(&ps)
    );
}

#[test]
fn test_cli_dependency_cycle_is_refused_with_its_location() {
    let d = Daemon::start();
    let card = d.dir.path().join("loop.toml");
    std::fs::write(
        &card,
        r#"[workspace]
name = "loop"

[[service]]
name = "a"
argv = ["/bin/true"]
after = ["b"]

[[service]]
name = "b"
argv = ["/bin/true"]
after = ["a"]
"#,
    )
    .unwrap();

    let refused = d.shuma(&["ws", "create", card.to_str().unwrap()]);
    let ls = d.shuma(&["ws", "ls"]);

    let why = arje_tests::host::err(&refused);
    assert!(!refused.status.success());
    assert!(why.contains("loop.toml:"), "{why}");
    assert!(why.contains("cycle"), "{why}");
    assert!(!arje_tests::host::out(&ls).contains("loop"));
}

#[test]
fn test_s6_notification_fd_newline_makes_it_ready() {
    let d = Daemon::start();
    let mut s6 = service(
        "s6",
        "test -w /proc/self/fd/3 || exit 9; echo >&3; exec 3>&-; exec sleep 3600",
    );
    s6.ready = Readiness::Fd(3);
    s6.restart = RestartPolicy::Never;
    create(&d, "s6", vec![s6]);

    let ready = wait_ready(&d, "s6", None);
    let ps = d.client().ps(Some("s6".into()));

    assert_eq!(ready, Response::Ok);
    assert!(ps[0].ready && ps[0].pid.is_some(), "{ps:?}");
}

#[test]
fn test_health_check_failing_retries_times_restarts_the_service_with_the_reason() {
    let d = Daemon::start();
    let flag = d.dir.path().join("healthy");
    std::fs::write(&flag, "").unwrap();
    // Healthy while the file exists; the service removes it after its first start, so
    // the checks of that run fail; the next run is healthy again.
    let mut svc = service(
        "svc",
        &format!(
            "if [ -e {f}.once ]; then touch {f}; else touch {f}.once; rm -f {f}; fi; exec sleep 3600",
            f = flag.display()
        ),
    );
    svc.health = Some(shuma_card::HealthCheck {
        probe: Probe::Exec(vec![
            "/bin/test".into(),
            "-e".into(),
            flag.display().to_string(),
        ]),
        interval_ms: 50,
        timeout_ms: 2_000,
        retries: 3,
    });
    svc.restart = RestartPolicy::Always;
    svc.min_uptime_ms = 0;
    svc.backoff_initial_ms = 10;
    create(&d, "hc", vec![svc]);

    let events = d.events_until(1, |k| matches!(k, EventKind::CommandRestarting { .. }));
    let reason = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::CommandUnhealthy { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{events:#?}"));

    assert!(reason.contains("failed 3 times"), "{reason}");
    assert!(reason.contains("exit 1"), "{reason}");
}

#[test]
fn test_tcp_and_exec_probes_wait_for_the_listener_and_the_file() {
    let d = Daemon::start();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let file = d.dir.path().join("up");
    // The listener comes up a moment after the start: the probe is retried until then.
    let mut tcp = CommandSpec::new(
        "tcp",
        CommandKind::Service,
        vec![
            "/usr/bin/python3".into(),
            "-c".into(),
            format!(
                "import socket,time; time.sleep(0.3); s=socket.socket(); \
                 s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); \
                 s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(3600)"
            ),
        ],
    );
    tcp.ready = Readiness::Probe(Probe::Tcp(format!("127.0.0.1:{port}")));
    let mut exec = service(
        "exec",
        &format!("sleep 0.2; touch {}; exec sleep 3600", file.display()),
    );
    exec.ready = Readiness::Probe(Probe::Exec(vec![
        "/bin/test".into(),
        "-e".into(),
        file.display().to_string(),
    ]));
    create(&d, "probes", vec![tcp, exec]);

    let ready = wait_ready(&d, "probes", None);

    assert_eq!(ready, Response::Ok);
    assert!(file.exists());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
}

#[test]
fn test_after_a_reboot_the_order_is_applied_again() {
    let state = tempfile::tempdir().unwrap();
    let durable = state.path().join("durable");
    let args = ["--durable-dir", durable.to_str().unwrap()];
    let mut base = service("base", "sleep 0.2; echo up; exec sleep 3600");
    base.ready = Readiness::Line("up".into());
    let mut top = service("top", "exec sleep 3600");
    top.after = vec![dep("base")];
    let first = Daemon::start_with(&[], &args);
    create(&first, "order", vec![top, base]);
    assert_eq!(wait_ready(&first, "order", None), Response::Ok);
    assert_eq!(first.stop(), Some(0));

    // A fresh /run, as after a reboot, and the same durable copy.
    let second = Daemon::start_with(&[], &args);
    let ready = wait_ready(&second, "order", None);
    // The journal on disk holds the first daemon's events too (docs/STATE.md): the
    // second daemon's are those after the first start of top.
    let top =
        |k: &EventKind| matches!(k, EventKind::CommandStarted { command, .. } if command == "top");
    let events = second.events_until(2, top);
    let first_top = id_of(&events, top);
    let events: Vec<Event> = events.into_iter().filter(|e| e.id > first_top).collect();

    assert_eq!(ready, Response::Ok);
    let base_ready = id_of(
        &events,
        |k| matches!(k, EventKind::CommandReady { command, .. } if command == "base"),
    );
    let top_started = id_of(
        &events,
        |k| matches!(k, EventKind::CommandStarted { command, .. } if command == "top"),
    );
    assert!(base_ready < top_started, "{events:#?}");
}

#[test]
fn test_logger_message_lands_in_the_journal_with_facility_and_program() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let d = Daemon::start_with(&[], &["--syslog", log.to_str().unwrap()]);

    let sent = std::process::Command::new("logger")
        .args([
            "-u",
            log.to_str().unwrap(),
            "-p",
            "cron.info",
            "-t",
            "CRON",
            "--id=4242",
        ])
        .arg("(root) CMD (run-parts /etc/cron.hourly)")
        .status()
        .unwrap();
    let events = d.events_until(1, |k| matches!(k, EventKind::Syslog { .. }));

    assert!(sent.success());
    let got = events.iter().find_map(|e| match &e.kind {
        EventKind::Syslog {
            facility,
            severity,
            program,
            pid,
            message,
        } => Some((*facility, *severity, program.clone(), *pid, message.clone())),
        _ => None,
    });
    assert_eq!(
        got,
        Some((
            9,
            6,
            "CRON".to_string(),
            Some(4242),
            "(root) CMD (run-parts /etc/cron.hourly)".to_string()
        ))
    );
    let shown = arje_tests::host::out(&d.shuma(&["events"]));
    assert!(
        shown.contains("syslog cron.info CRON[4242]: (root) CMD"),
        "{shown}"
    );
}

#[test]
fn test_reexec_keeps_a_pending_s6_notification_fd() {
    let d = Daemon::start();
    let fifo = d.dir.path().join("go");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // Not ready until told through the fifo, after the re-exec.
    let mut s6 = service(
        "s6",
        &format!("read x < {}; echo >&3; exec sleep 3600", fifo.display()),
    );
    s6.ready = Readiness::Fd(3);
    create(&d, "late", vec![s6]);

    let reexec = d.shuma(&["daemon-reexec"]);
    let mut waiter = d.client();
    waiter.send(&Request::WaitReady {
        workspace: "late".into(),
        command: None,
        timeout_ms: Some(60_000),
    });
    std::fs::write(&fifo, "go\n").unwrap();
    let ready = waiter.recv();
    let ps = d.client().ps(Some("late".into()));

    assert!(
        reexec.status.success(),
        "{}",
        arje_tests::host::err(&reexec)
    );
    assert_eq!(ready, Some(Response::Ok));
    assert!(ps[0].ready, "{ps:?}");
}
