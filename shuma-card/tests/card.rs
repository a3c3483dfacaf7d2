//! Card loading: a card using every field, and each class of bad card with the exact
//! line, column and field of the error.

use shuma_card::card::{load_file, load_str, CardError};
use shuma_card::spec::{
    CommandKind, CommandSpec, CpuMax, Limits, LogTarget, OomAction, RestartPolicy, WorkspaceSpec,
};

const FULL: &str = r#"[workspace]
name = "demo"
memory_max = "64M"
memory_high = "48MiB"
memory_swap_max = 0
pids_max = 32
cpu_max = "50%"
cpu_weight = 200
io_weight = 300
ttl = "10m"
on_oom = "stop-workspace"

[[task]]
name = "hello"
argv = ["/bin/echo", "hello"]
env = { Z = "1", A = "2" }

[[service]]
name = "ticker"
argv = ["/bin/sh", "-c", "echo tick"]
restart = "always"
backoff = { initial = "250ms", max = "1m" }
max_restarts = 5
restart_window = "2m"
min_uptime = "2s"
stop_signal = "SIGINT"
stop_grace = "1.5s"
env = { ZED = "z", ALPHA = "a" }
cwd = "/tmp"
user = "nobody"
group = 65534
log = "file:/var/log/ticker.log"
"#;

fn expected_full() -> WorkspaceSpec {
    let mut hello = CommandSpec::new(
        "hello",
        CommandKind::Task,
        vec!["/bin/echo".into(), "hello".into()],
    );
    hello.env = vec![("Z".into(), "1".into()), ("A".into(), "2".into())];
    let argv = vec!["/bin/sh".into(), "-c".into(), "echo tick".into()];
    let mut ticker = CommandSpec::new("ticker", CommandKind::Service, argv);
    ticker.restart = RestartPolicy::Always;
    ticker.backoff_initial_ms = 250;
    ticker.backoff_max_ms = 60_000;
    ticker.max_restarts = 5;
    ticker.restart_window_ms = 120_000;
    ticker.min_uptime_ms = 2_000;
    ticker.stop_signal = 2;
    ticker.stop_grace_ms = 1_500;
    ticker.env = vec![("ZED".into(), "z".into()), ("ALPHA".into(), "a".into())];
    ticker.cwd = Some("/tmp".into());
    ticker.user = Some("nobody".into());
    ticker.group = Some("65534".into());
    ticker.log = LogTarget::File("/var/log/ticker.log".into());
    WorkspaceSpec {
        name: "demo".into(),
        limits: Limits {
            memory_max: Some(64 << 20),
            memory_high: Some(48 << 20),
            memory_swap_max: Some(0),
            pids_max: Some(32),
            cpu_max: Some(CpuMax {
                quota_us: 50_000,
                period_us: 100_000,
            }),
            cpu_weight: Some(200),
            io_weight: Some(300),
        },
        ttl_ms: Some(600_000),
        on_oom: OomAction::StopWorkspace,
        commands: vec![hello, ticker],
    }
}

/// The error of a card that must fail, as (line, column, field).
fn fails(src: &str) -> (usize, usize, String) {
    let e = load_str(src, "t.toml").expect_err("the card should be refused");
    (e.line, e.column, e.field)
}

fn message(src: &str) -> String {
    load_str(src, "t.toml")
        .expect_err("the card should be refused")
        .message
}

const WS: &str = "[workspace]\nname = \"w\"\n";

#[test]
fn test_load_str_every_field_builds_the_full_spec() {
    let expected = expected_full();

    let spec = load_str(FULL, "full.toml").unwrap();

    assert_eq!(spec, expected);
}

#[test]
fn test_load_str_minimal_card_takes_command_defaults() {
    let src = format!("{WS}[[service]]\nname = \"s\"\nargv = [\"/bin/true\"]\n");

    let spec = load_str(&src, "t.toml").unwrap();

    let expected = CommandSpec::new("s", CommandKind::Service, vec!["/bin/true".into()]);
    assert_eq!(spec.commands, vec![expected]);
    assert_eq!(spec.commands[0].restart, RestartPolicy::OnFailure);
    assert_eq!(spec.limits, Limits::default());
}

#[test]
fn test_load_str_interleaved_commands_keep_card_order() {
    let src = format!(
        "{WS}[[service]]\nname = \"a\"\nargv = [\"/a\"]\n[[task]]\nname = \"b\"\nargv = [\"/b\"]\n\
         [[service]]\nname = \"c\"\nargv = [\"/c\"]\n"
    );

    let spec = load_str(&src, "t.toml").unwrap();

    let names: Vec<&str> = spec.commands.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(spec.commands[1].kind, CommandKind::Task);
}

#[test]
fn test_load_str_max_values_leave_limits_unset() {
    let src =
        "[workspace]\nname = \"w\"\nmemory_max = \"max\"\npids_max = \"max\"\ncpu_max = \"max\"\n";

    let spec = load_str(src, "t.toml").unwrap();

    assert_eq!(spec.limits, Limits::default());
}

#[test]
fn test_card_error_display_names_file_position_and_field() {
    let src = format!("{WS}[[service]]\nname = \"s\"\nargv = [\"/x\"]\nrestart = \"sometimes\"\n");

    let e = load_str(&src, "cards/demo.toml").unwrap_err();

    assert_eq!(
        e.to_string(),
        "cards/demo.toml:6:11: field service[0].restart: expected one of never, on-failure, always, got \"sometimes\""
    );
}

#[test]
fn test_load_str_syntax_error_points_at_the_fault() {
    let src = "[workspace]\nname = \"w\n";

    let (line, column, field) = fails(src);

    assert_eq!((line, column, field.as_str()), (2, 10, ""));
}

#[test]
fn test_load_str_unknown_field_names_it_at_its_key() {
    let src = format!("{WS}[[service]]\nname = \"s\"\nargv = [\"/x\"]\n  restrat = \"always\"\n");

    assert_eq!(fails(&src), (6, 3, "service[0].restrat".into()));
    assert!(message(&src).contains("unknown field \"restrat\""));
}

#[test]
fn test_load_str_unknown_table_is_refused() {
    let src = format!("{WS}[extra]\nx = 1\n");

    assert_eq!(fails(&src), (3, 2, "extra".into()));
}

#[test]
fn test_load_str_missing_workspace_points_at_start() {
    let src = "[[task]]\nname = \"t\"\nargv = [\"/x\"]\n";

    assert_eq!(fails(src), (1, 1, "workspace".into()));
}

#[test]
fn test_load_str_missing_argv_points_at_the_table_header() {
    let src = format!("{WS}\n[[task]]\nname = \"t\"\n");

    assert_eq!(fails(&src), (4, 1, "task[0].argv".into()));
    assert_eq!(message(&src), "missing required field");
}

#[test]
fn test_load_str_wrong_type_names_expected_and_got() {
    let src = format!("{WS}[[task]]\nname = \"t\"\nargv = \"/bin/true\"\n");

    assert_eq!(fails(&src), (5, 8, "task[0].argv".into()));
    assert_eq!(message(&src), "expected an array of strings, got a string");
}

#[test]
fn test_load_str_wrong_argv_element_type_names_the_index() {
    let src = format!("{WS}[[task]]\nname = \"t\"\nargv = [\"/bin/x\", 3]\n");

    assert_eq!(fails(&src), (5, 19, "task[0].argv[1]".into()));
}

#[test]
fn test_load_str_bad_size_unit_points_at_the_value() {
    let src = "[workspace]\nname = \"w\"\nmemory_max =   \"64X\"\n";

    assert_eq!(fails(src), (3, 16, "workspace.memory_max".into()));
    assert!(message(src).starts_with("invalid size \"64X\": unknown unit"));
}

#[test]
fn test_load_str_duration_without_unit_is_refused() {
    let src = format!("{WS}[[service]]\nname = \"s\"\nargv = [\"/x\"]\nstop_grace = 5\n");

    assert_eq!(fails(&src), (6, 14, "service[0].stop_grace".into()));
    assert_eq!(
        message(&src),
        "a duration needs a unit: write \"5s\" or \"5ms\""
    );
}

#[test]
fn test_load_str_bad_backoff_points_into_the_inline_table() {
    let src = format!(
        "{WS}[[service]]\nname = \"s\"\nargv = [\"/x\"]\nbackoff = {{ initial = \"1x\" }}\n"
    );

    assert_eq!(fails(&src), (6, 23, "service[0].backoff.initial".into()));
}

#[test]
fn test_load_str_invalid_workspace_name_points_at_the_name() {
    let src = "[workspace]\nname = \"Demo\"\n";

    assert_eq!(fails(src), (2, 8, "workspace.name".into()));
}

#[test]
fn test_load_str_duplicate_command_name_points_at_the_second() {
    let src = format!(
        "{WS}[[service]]\nname = \"a\"\nargv = [\"/x\"]\n[[task]]\nname = \"a\"\nargv = [\"/y\"]\n"
    );

    assert_eq!(fails(&src), (7, 8, "task[0].name".into()));
}

#[test]
fn test_load_str_empty_argv_is_refused() {
    let src = format!("{WS}[[task]]\nname = \"t\"\nargv = []\n");

    assert_eq!(fails(&src), (5, 8, "task[0].argv".into()));
}

#[test]
fn test_load_str_relative_program_is_refused() {
    let src = format!("{WS}[[task]]\nname = \"t\"\nargv = [\"echo\", \"hi\"]\n");

    assert_eq!(fails(&src), (5, 9, "task[0].argv[0]".into()));
    assert!(message(&src).contains("does not search PATH"));
}

#[test]
fn test_load_str_memory_high_above_max_points_at_memory_high() {
    let src = "[workspace]\nname = \"w\"\nmemory_high = \"2G\"\nmemory_max = \"1G\"\n";

    assert_eq!(fails(src), (3, 15, "workspace.memory_high".into()));
}

#[test]
fn test_load_str_cpu_weight_out_of_range_is_refused() {
    let zero = "[workspace]\nname = \"w\"\ncpu_weight = 0\n";
    let huge = "[workspace]\nname = \"w\"\nio_weight = 10001\n";

    assert_eq!(fails(zero), (3, 14, "workspace.cpu_weight".into()));
    assert_eq!(fails(huge), (3, 13, "workspace.io_weight".into()));
}

#[test]
fn test_load_str_too_many_commands_points_at_the_first_excess() {
    let mut src = WS.to_string();
    for i in 0..=shuma_card::spec::MAX_COMMANDS_PER_WORKSPACE {
        src.push_str(&format!("[[task]]\nname = \"t{i}\"\nargv = [\"/x\"]\n"));
    }

    let (line, column, field) = fails(&src);

    // Each task is three lines after the two of [workspace]; the 257th's name is line 2 of it.
    assert_eq!(
        (line, column, field.as_str()),
        (2 + 256 * 3 + 2, 8, "task[256].name")
    );
}

#[test]
fn test_load_str_task_with_restart_field_is_refused() {
    let src = format!("{WS}[[task]]\nname = \"t\"\nargv = [\"/x\"]\nmax_restarts = 3\n");

    assert_eq!(fails(&src), (6, 1, "task[0].max_restarts".into()));
    assert!(message(&src).contains("belong to a [[service]]"));
}

#[test]
fn test_load_str_datetime_value_is_refused_with_position() {
    let src = "[workspace]\nname = \"w\"\nttl = 1979-05-27\n";

    let (line, column, _) = fails(src);

    assert_eq!((line, column), (3, 7));
    assert!(message(src).contains("dates and times"));
}

#[test]
fn test_load_str_column_counts_characters_not_bytes() {
    let src =
        format!("{WS}[[task]]\nname = \"t\"\nargv = [\"/x\"]\nenv = {{ \"é\" = \"x\", B = 1 }}\n");

    // "é" is two bytes: the faulty 1 is character 24 of its line, byte 25.
    assert_eq!(fails(&src), (6, 24, "task[0].env.B".into()));
}

#[test]
fn test_load_file_missing_file_names_the_path() {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-such-card.toml");

    let e: CardError = load_file(&path).unwrap_err();

    assert_eq!((e.line, e.column), (0, 0));
    assert!(e
        .to_string()
        .starts_with(&format!("{}: cannot open card", path.display())));
}

#[test]
fn test_load_file_reads_a_card_from_disk() {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("shuma-card-full.toml");
    std::fs::write(&path, FULL).unwrap();

    let spec = load_file(&path).unwrap();

    assert_eq!(spec, expected_full());
}

#[test]
fn test_cards_doc_example_loads() {
    let doc = include_str!("../../docs/CARDS.md");
    let start = doc.find("```toml\n").expect("CARDS.md has a toml example") + "```toml\n".len();
    let example = &doc[start..start + doc[start..].find("```").unwrap()];

    let spec = load_str(example, "docs/CARDS.md").unwrap();

    let names: Vec<&str> = spec.commands.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        (spec.name.as_str(), names),
        ("demo", vec!["ticker", "hello"])
    );
    assert_eq!(
        spec.commands[0].env[0],
        ("PATH".to_string(), "/usr/bin:/bin".to_string())
    );
}
