//! The semantic rules applied to specs that arrive without a card (over the socket).

use shuma_card::card::{check, validate, validate_command, SpecError};
use shuma_card::spec::{CommandKind, CommandSpec, CpuMax, LogTarget, RestartPolicy, WorkspaceSpec};

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
