//! The semantic rules applied to specs that arrive without a card (over the socket).

use shuma_card::card::{check, validate, validate_command, SpecError};
use shuma_card::spec::{
    CommandKind, CommandSpec, CpuMax, DepRef, HealthCheck, LogTarget, Probe, Readiness,
    RestartPolicy, WorkspaceSpec,
};

fn task(name: &str) -> CommandSpec {
    CommandSpec::new(name, CommandKind::Task, vec!["/bin/true".into()])
}

fn workspace(commands: Vec<CommandSpec>) -> WorkspaceSpec {
    WorkspaceSpec {
        name: "w".into(),
        commands,
        ..WorkspaceSpec::default()
    }
}

#[test]
fn test_validate_good_spec_is_accepted() {
    let spec = workspace(vec![
        task("a"),
        CommandSpec::new("b", CommandKind::Service, vec!["/b".into()]),
    ]);

    let result = validate(&spec);

    assert_eq!(result, Ok(()));
}

#[test]
fn test_validate_message_names_workspace_command_and_field() {
    let mut bad = task("t");
    bad.restart = RestartPolicy::Always;
    let spec = workspace(vec![task("a"), bad]);

    let message = validate(&spec).unwrap_err();

    assert_eq!(
        message,
        "workspace \"w\": command 1 (\"t\"): field restart: a task runs once: its restart policy must be never"
    );
}

#[test]
fn test_check_reports_index_and_card_field_name() {
    let mut bad = task("t");
    bad.backoff_initial_ms = 60_000;
    bad.backoff_max_ms = 1_000;
    let spec = workspace(vec![bad]);

    let err = check(&spec).unwrap_err();

    assert_eq!(
        err,
        SpecError {
            command: Some(0),
            field: "backoff.initial".into(),
            message: "is above backoff.max".into()
        }
    );
}

#[test]
fn test_validate_command_rejects_each_broken_rule() {
    let mut env_key = task("t");
    env_key.env = vec![("A=B".into(), "1".into())];
    let mut env_twice = task("t");
    env_twice.env = vec![("A".into(), "1".into()), ("A".into(), "2".into())];
    let mut nul = task("t");
    nul.argv.push("a\0b".into());
    let mut cwd = task("t");
    cwd.cwd = Some("tmp".into());
    let mut log = task("t");
    log.log = LogTarget::File("out.log".into());
    let mut signal = task("t");
    signal.stop_signal = 0;
    let mut user = task("t");
    user.user = Some("no body".into());
    let mut window = task("t");
    window.restart_window_ms = 0;

    let fields: Vec<String> = [env_key, env_twice, nul, cwd, log, signal, user, window]
        .iter()
        .map(|c| validate_command(c).unwrap_err())
        .collect();

    let expected = [
        "field env.A=B:",
        "field env.A: set twice",
        "field argv[1]: contains a NUL byte",
        "field cwd:",
        "field log:",
        "field stop_signal:",
        "field user:",
        "field restart_window:",
    ];
    for (got, want) in fields.iter().zip(expected) {
        assert!(
            got.starts_with(&format!("command \"t\": {want}")),
            "{got:?} should start with {want:?}"
        );
    }
}

#[test]
fn test_check_limits_rules_apply_to_specs_too() {
    let mut spec = workspace(vec![]);
    spec.limits.cpu_max = Some(CpuMax {
        quota_us: 10,
        period_us: 100_000,
    });
    let mut zero_ttl = workspace(vec![]);
    zero_ttl.ttl_ms = Some(0);
    let mut bad_name = workspace(vec![]);
    bad_name.name = "-w".into();

    let cpu = check(&spec).unwrap_err();
    let ttl = check(&zero_ttl).unwrap_err();
    let name = check(&bad_name).unwrap_err();

    assert_eq!((cpu.command, cpu.field.as_str()), (None, "cpu_max"));
    assert_eq!(ttl.field, "ttl");
    assert_eq!(name.field, "name");
}

fn service(name: &str) -> CommandSpec {
    CommandSpec::new(name, CommandKind::Service, vec!["/bin/true".into()])
}

fn health(probe: Probe) -> HealthCheck {
    HealthCheck {
        probe,
        interval_ms: 1_000,
        timeout_ms: 1_000,
        retries: 1,
    }
}

fn local(name: &str) -> DepRef {
    DepRef {
        workspace: None,
        name: name.into(),
    }
}

#[test]
fn test_validate_command_rejects_each_readiness_rule() {
    let with = |f: &dyn Fn(&mut CommandSpec)| {
        let mut c = service("s");
        f(&mut c);
        c
    };
    let cases: Vec<(CommandSpec, &str)> = vec![
        (with(&|c| c.ready = Readiness::Fd(2)), "ready.fd"),
        (
            with(&|c| c.ready = Readiness::Line(String::new())),
            "ready.line",
        ),
        (
            with(&|c| c.ready = Readiness::Probe(Probe::Exec(vec![]))),
            "ready.exec",
        ),
        (
            with(&|c| c.ready = Readiness::Probe(Probe::Exec(vec!["/a".into(), "\0".into()]))),
            "ready.exec[1]",
        ),
        (
            with(&|c| c.ready = Readiness::Probe(Probe::Tcp("h:0".into()))),
            "ready.tcp",
        ),
        (
            with(&|c| c.ready = Readiness::Probe(Probe::Unix(String::new()))),
            "ready.unix",
        ),
        (with(&|c| c.ready_timeout_ms = u64::MAX), "ready_timeout"),
        (with(&|c| c.watchdog_ms = Some(1_000)), "watchdog"),
        (
            with(&|c| {
                c.ready = Readiness::Notify;
                c.watchdog_ms = Some(0);
            }),
            "watchdog",
        ),
        (
            with(&|c| c.health = Some(health(Probe::Tcp("nohost".into())))),
            "health.tcp",
        ),
        (
            with(&|c| {
                let mut h = health(Probe::Tcp("127.0.0.1:1".into()));
                h.interval_ms = 0;
                c.health = Some(h);
            }),
            "health.interval",
        ),
        (
            with(&|c| {
                let mut h = health(Probe::Tcp("127.0.0.1:1".into()));
                h.timeout_ms = 0;
                c.health = Some(h);
            }),
            "health.timeout",
        ),
        (
            with(&|c| {
                let mut h = health(Probe::Tcp("127.0.0.1:1".into()));
                h.retries = 0;
                c.health = Some(h);
            }),
            "health.retries",
        ),
        (
            with(&|c| {
                c.kind = CommandKind::Task;
                c.restart = RestartPolicy::Never;
                c.ready = Readiness::Notify;
            }),
            "ready",
        ),
        (
            with(&|c| {
                c.kind = CommandKind::Task;
                c.restart = RestartPolicy::Never;
                c.health = Some(health(Probe::Tcp("127.0.0.1:1".into())));
            }),
            "health",
        ),
    ];

    for (cmd, field) in cases {
        let message = validate_command(&cmd).unwrap_err();

        assert!(
            message.starts_with(&format!("command \"s\": field {field}: ")),
            "{message:?} should name field {field}"
        );
    }
}

#[test]
fn test_validate_command_every_readiness_form_is_accepted() {
    let forms = [
        Readiness::Started,
        Readiness::Notify,
        Readiness::Fd(3),
        Readiness::Line("ready".into()),
        Readiness::Probe(Probe::Exec(vec!["/bin/check".into()])),
        Readiness::Probe(Probe::Tcp("[::1]:80".into())),
        Readiness::Probe(Probe::Unix("/run/s.sock".into())),
    ];

    for ready in forms {
        let mut c = service("s");
        c.ready = ready.clone();
        c.health = Some(health(Probe::Unix("/run/s.sock".into())));

        assert_eq!(validate_command(&c), Ok(()), "{ready:?}");
    }
}

#[test]
fn test_validate_command_dependency_with_invalid_name_is_refused() {
    let mut c = task("t");
    c.wants = vec![
        local("ok"),
        DepRef {
            workspace: Some("Bad".into()),
            name: "x".into(),
        },
    ];

    let message = validate_command(&c).unwrap_err();

    assert!(
        message.starts_with("command \"t\": field wants[1]: \"Bad\" is not a valid name"),
        "{message}"
    );
}

#[test]
fn test_check_dependency_on_unknown_name_reports_index_and_element() {
    let mut b = task("b");
    b.requires = vec![local("a"), local("zz")];
    let spec = workspace(vec![task("a"), b]);

    let err = check(&spec).unwrap_err();

    assert_eq!((err.command, err.field.as_str()), (Some(1), "requires[1]"));
}

#[test]
fn test_check_dependency_on_itself_is_refused() {
    let mut a = task("a");
    a.after = vec![DepRef {
        workspace: Some("w".into()),
        name: "a".into(),
    }];
    let spec = workspace(vec![a]);

    let err = check(&spec).unwrap_err();

    assert_eq!((err.command, err.field.as_str()), (Some(0), "after[0]"));
    assert!(err.message.contains("cannot depend on itself"));
}

#[test]
fn test_check_dependency_of_another_workspace_is_accepted() {
    let mut a = task("a");
    a.after = vec![DepRef {
        workspace: Some("elsewhere".into()),
        name: "a".into(),
    }];
    let spec = workspace(vec![a]);

    let result = check(&spec);

    assert_eq!(result, Ok(()));
}

#[test]
fn test_validate_after_cycle_names_it() {
    let mut a = service("a");
    a.after = vec![local("b")];
    let mut b = service("b");
    b.after = vec![local("a")];
    let spec = workspace(vec![task("first"), a, b]);

    let message = validate(&spec).unwrap_err();

    assert_eq!(
        message,
        "workspace \"w\": command 1 (\"a\"): field after: dependency cycle a -> b -> a: no command on it could ever start"
    );
}
