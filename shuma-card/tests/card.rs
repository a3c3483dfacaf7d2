//! Card loading: a card using every field, and each class of bad card with the exact
//! line, column and field of the error.

use shuma_card::card::{load_file, load_str, CardError};
use shuma_card::spec::{
    CommandKind, CommandSpec, CpuMax, DepRef, HealthCheck, Limits, LogTarget, OomAction, Probe,
    Readiness, RestartPolicy, WorkspaceSpec, HEALTH_INTERVAL_MS, HEALTH_RETRIES, HEALTH_TIMEOUT_MS,
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
ready = "notify"
ready_timeout = "45s"
watchdog = "10s"
after = ["hello"]
requires = ["hello", "net/up"]
wants = ["other/metrics"]
health = { tcp = "127.0.0.1:8080", interval = "15s", timeout = "2s", retries = 4 }
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
    ticker.ready = Readiness::Notify;
    ticker.ready_timeout_ms = 45_000;
    ticker.watchdog_ms = Some(10_000);
    ticker.after = vec![dep("hello")];
    ticker.requires = vec![dep("hello"), dep("net/up")];
    ticker.wants = vec![dep("other/metrics")];
    ticker.health = Some(HealthCheck {
        probe: Probe::Tcp("127.0.0.1:8080".into()),
        interval_ms: 15_000,
        timeout_ms: 2_000,
        retries: 4,
    });
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
        pipelines: vec![],
    }
}

fn dep(text: &str) -> DepRef {
    DepRef::parse(text).unwrap()
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

/// A card of one service `s` (lines 3-5) with `extra` appended to its table from line 6.
fn service_with(extra: &str) -> String {
    format!("{WS}[[service]]\nname = \"s\"\nargv = [\"/x\"]\n{extra}\n")
}

/// The spec of the one service of [`service_with`].
fn load_service(extra: &str) -> CommandSpec {
    load_str(&service_with(extra), "t.toml")
        .unwrap()
        .commands
        .remove(0)
}

#[test]
fn test_load_str_ready_every_form_builds_its_readiness() {
    let cases = [
        ("ready = \"started\"", Readiness::Started),
        ("ready = \"notify\"", Readiness::Notify),
        ("ready = { fd = 3 }", Readiness::Fd(3)),
        (
            "ready = { line = \"READY\" }",
            Readiness::Line("READY".into()),
        ),
        (
            "ready = { exec = [\"/usr/bin/pg_isready\", \"-q\"] }",
            Readiness::Probe(Probe::Exec(vec!["/usr/bin/pg_isready".into(), "-q".into()])),
        ),
        (
            "ready = { tcp = \"127.0.0.1:5432\" }",
            Readiness::Probe(Probe::Tcp("127.0.0.1:5432".into())),
        ),
        (
            "ready = { tcp = \"[::1]:5432\" }",
            Readiness::Probe(Probe::Tcp("[::1]:5432".into())),
        ),
        (
            "ready = { unix = \"/run/db.sock\" }",
            Readiness::Probe(Probe::Unix("/run/db.sock".into())),
        ),
    ];

    for (line, expected) in cases {
        let ready = load_service(line).ready;

        assert_eq!(ready, expected, "{line}");
    }
}

#[test]
fn test_load_str_no_readiness_keys_take_the_defaults() {
    let spec = load_service("");

    assert_eq!(spec.ready, Readiness::Started);
    assert_eq!(spec.ready_timeout_ms, shuma_card::spec::READY_TIMEOUT_MS);
    assert_eq!((spec.watchdog_ms, spec.health), (None, None));
    assert!(spec.after.is_empty() && spec.requires.is_empty() && spec.wants.is_empty());
}

#[test]
fn test_load_str_ready_timeout_zero_means_no_timeout() {
    let spec = load_service("ready_timeout = 0");

    assert_eq!(spec.ready_timeout_ms, 0);
}

#[test]
fn test_load_str_ready_unknown_word_is_refused() {
    let src = service_with("ready = \"listening\"");

    assert_eq!(fails(&src), (6, 9, "service[0].ready".into()));
    assert_eq!(
        message(&src),
        "expected one of started, notify, got \"listening\""
    );
}

#[test]
fn test_load_str_ready_fd_below_three_points_at_the_fd() {
    let src = service_with("ready = { fd = 2 }");

    assert_eq!(fails(&src), (6, 16, "service[0].ready.fd".into()));
    assert!(message(&src).starts_with("must be 3 or above"));
}

#[test]
fn test_load_str_ready_two_keys_points_at_the_second() {
    let src = service_with("ready = { fd = 3, line = \"up\" }");

    assert_eq!(fails(&src), (6, 19, "service[0].ready.line".into()));
    assert!(message(&src).starts_with("\"fd\" and \"line\" are both set"));
}

#[test]
fn test_load_str_ready_empty_table_points_at_the_table() {
    let src = service_with("ready = {}");

    assert_eq!(fails(&src), (6, 9, "service[0].ready".into()));
    assert_eq!(
        message(&src),
        "needs exactly one of fd, line, exec, tcp, unix"
    );
}

#[test]
fn test_load_str_ready_unknown_key_names_it() {
    let src = service_with("ready = { http = \"/health\" }");

    assert_eq!(fails(&src), (6, 11, "service[0].ready.http".into()));
}

#[test]
fn test_load_str_ready_empty_line_is_refused() {
    let src = service_with("ready = { line = \"\" }");

    assert_eq!(fails(&src), (6, 18, "service[0].ready.line".into()));
}

#[test]
fn test_load_str_ready_exec_empty_or_relative_is_refused() {
    let empty = service_with("ready = { exec = [] }");
    let relative = service_with("ready = { exec = [\"pg_isready\"] }");

    assert_eq!(fails(&empty), (6, 18, "service[0].ready.exec".into()));
    assert_eq!(fails(&relative), (6, 19, "service[0].ready.exec[0]".into()));
    assert!(message(&relative).contains("does not search PATH"));
}

#[test]
fn test_load_str_ready_tcp_without_valid_port_is_refused() {
    for addr in [
        "127.0.0.1",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:x",
        ":80",
        "::1:80",
        "[::1:80",
        "[zz]:80",
        "a b:80",
        "db.local:5432",
    ] {
        let src = service_with(&format!("ready = {{ tcp = \"{addr}\" }}"));

        assert_eq!(
            fails(&src),
            (6, 17, "service[0].ready.tcp".into()),
            "{addr}"
        );
    }
}

#[test]
fn test_load_str_ready_tcp_port_bounds_are_accepted() {
    for addr in [
        "localhost:1",
        "127.0.0.1:65535",
        "[::1]:80",
        "10.0.0.1:5432",
    ] {
        let spec = load_service(&format!("ready = {{ tcp = \"{addr}\" }}"));

        assert_eq!(spec.ready, Readiness::Probe(Probe::Tcp(addr.into())));
    }
}

#[test]
fn test_load_str_ready_unix_empty_or_relative_is_refused() {
    let empty = service_with("ready = { unix = \"\" }");
    let relative = service_with("ready = { unix = \"db.sock\" }");

    assert_eq!(fails(&empty), (6, 18, "service[0].ready.unix".into()));
    assert_eq!(fails(&relative), (6, 18, "service[0].ready.unix".into()));
}

#[test]
fn test_load_str_ready_unix_longer_than_sun_path_is_refused() {
    let path = format!("/{}", "s".repeat(107));
    let src = service_with(&format!("ready = {{ unix = \"{path}\" }}"));

    assert_eq!(fails(&src), (6, 18, "service[0].ready.unix".into()));
    assert!(message(&src).contains("at most 107"));
}

#[test]
fn test_load_str_watchdog_with_notify_is_accepted() {
    let spec = load_service("ready = \"notify\"\nwatchdog = \"10s\"");

    assert_eq!(spec.watchdog_ms, Some(10_000));
}

#[test]
fn test_load_str_watchdog_without_notify_names_the_field() {
    let src = service_with("ready = { fd = 3 }\nwatchdog = \"10s\"");

    assert_eq!(fails(&src), (7, 12, "service[0].watchdog".into()));
    assert!(message(&src).starts_with("needs ready = \"notify\""));
}

#[test]
fn test_load_str_watchdog_zero_is_refused() {
    let src = service_with("ready = \"notify\"\nwatchdog = 0");

    assert_eq!(fails(&src), (7, 12, "service[0].watchdog".into()));
}

#[test]
fn test_load_str_health_sub_table_takes_the_defaults() {
    let spec = load_service("[service.health]\nexec = [\"/bin/check\"]");

    assert_eq!(
        spec.health,
        Some(HealthCheck {
            probe: Probe::Exec(vec!["/bin/check".into()]),
            interval_ms: HEALTH_INTERVAL_MS,
            timeout_ms: HEALTH_TIMEOUT_MS,
            retries: HEALTH_RETRIES,
        })
    );
}

#[test]
fn test_load_str_health_inline_sets_every_key() {
    let spec = load_service(
        "health = { unix = \"/run/s.sock\", interval = \"10s\", timeout = \"2s\", retries = 3 }",
    );

    assert_eq!(
        spec.health,
        Some(HealthCheck {
            probe: Probe::Unix("/run/s.sock".into()),
            interval_ms: 10_000,
            timeout_ms: 2_000,
            retries: 3,
        })
    );
}

#[test]
fn test_load_str_health_without_probe_points_at_the_table() {
    let src = service_with("[service.health]\ninterval = \"1s\"");

    assert_eq!(fails(&src), (6, 1, "service[0].health".into()));
    assert_eq!(message(&src), "needs exactly one of exec, tcp, unix");
}

#[test]
fn test_load_str_health_two_probes_points_at_the_second() {
    let src = service_with("health = { tcp = \"127.0.0.1:1\", unix = \"/s\" }");

    assert_eq!(fails(&src), (6, 33, "service[0].health.unix".into()));
}

#[test]
fn test_load_str_health_zero_interval_timeout_or_retries_is_refused() {
    let cases = [
        ("interval = 0", "service[0].health.interval"),
        ("timeout = 0", "service[0].health.timeout"),
        ("retries = 0", "service[0].health.retries"),
    ];

    for (key, field) in cases {
        let src = service_with(&format!("[service.health]\ntcp = \"127.0.0.1:1\"\n{key}"));

        assert_eq!(fails(&src), (8, key.find('0').unwrap() + 1, field.into()));
    }
}

#[test]
fn test_load_str_health_bad_probe_points_into_it() {
    let src = service_with("[service.health]\nexec = [\"/bin/check\", 3]");

    assert_eq!(fails(&src), (7, 23, "service[0].health.exec[1]".into()));
}

#[test]
fn test_load_str_task_with_readiness_field_is_refused() {
    for (key, value) in [
        ("ready", "\"notify\""),
        ("ready_timeout", "\"1s\""),
        ("watchdog", "\"1s\""),
        ("health", "{ tcp = \"127.0.0.1:1\" }"),
    ] {
        let src = format!("{WS}[[task]]\nname = \"t\"\nargv = [\"/x\"]\n{key} = {value}\n");

        assert_eq!(fails(&src), (6, 1, format!("task[0].{key}")));
        assert!(message(&src).starts_with("a task is ready when it exits 0"));
    }
}

/// A card of services `a` (line 3), `b` (line 7) and `c` (line 11), each followed on its
/// fourth line by the given dependency line.
fn chain(a: &str, b: &str, c: &str) -> String {
    let mut src = WS.to_string();
    for (name, extra) in [("a", a), ("b", b), ("c", c)] {
        src.push_str(&format!(
            "[[service]]\nname = \"{name}\"\nargv = [\"/x\"]\n{extra}\n"
        ));
    }
    src
}

#[test]
fn test_load_str_dependencies_of_services_and_tasks_are_parsed() {
    let src = format!(
        "{WS}[[service]]\nname = \"db\"\nargv = [\"/db\"]\n\
         [[task]]\nname = \"migrate\"\nargv = [\"/m\"]\nafter = [\"db\"]\nrequires = [\"db\"]\n\
         [[service]]\nname = \"web\"\nargv = [\"/w\"]\nafter = [\"migrate\"]\nwants = [\"cache/redis\"]\n"
    );

    let spec = load_str(&src, "t.toml").unwrap();

    assert_eq!(spec.commands[1].after, vec![dep("db")]);
    assert_eq!(spec.commands[1].requires, vec![dep("db")]);
    assert_eq!(spec.commands[2].after, vec![dep("migrate")]);
    assert_eq!(
        spec.commands[2].wants,
        vec![DepRef {
            workspace: Some("cache".into()),
            name: "redis".into()
        }]
    );
}

#[test]
fn test_load_str_dependency_on_unknown_name_points_at_the_element() {
    let src = chain("", "after = [\"a\", \"nope\"]", "");

    assert_eq!(fails(&src), (10, 15, "service[1].after[1]".into()));
    assert!(message(&src).starts_with("no command \"nope\" in this workspace"));
}

#[test]
fn test_load_str_dependency_on_itself_is_refused() {
    let src = chain("", "", "wants = [\"c\"]");

    assert_eq!(fails(&src), (14, 10, "service[2].wants[0]".into()));
    assert!(message(&src).contains("cannot depend on itself"));
}

#[test]
fn test_load_str_dependency_listed_twice_is_accepted() {
    let src = chain("", "after = [\"a\", \"a\"]\nrequires = [\"a\"]", "");

    let spec = load_str(&src, "t.toml").unwrap();

    assert_eq!(spec.commands[1].after, vec![dep("a"), dep("a")]);
}

#[test]
fn test_load_str_dependency_on_a_later_command_is_accepted() {
    let src = chain("after = [\"c\"]", "", "");

    let spec = load_str(&src, "t.toml").unwrap();

    assert_eq!(spec.commands[0].after, vec![dep("c")]);
}

#[test]
fn test_load_str_dependency_of_another_workspace_is_only_syntax_checked() {
    let src = chain("requires = [\"other/nowhere\"]", "", "");

    let spec = load_str(&src, "t.toml").unwrap();

    assert_eq!(spec.commands[0].requires, vec![dep("other/nowhere")]);
}

#[test]
fn test_load_str_dependency_with_own_workspace_name_is_checked_as_local() {
    let src = chain("after = [\"w/nope\"]", "", "");

    assert_eq!(fails(&src), (6, 10, "service[0].after[0]".into()));
}

#[test]
fn test_load_str_dependency_bad_syntax_points_at_the_element() {
    for text in ["Db", "a/b/c", "/b", "a/", ""] {
        let src = chain(&format!("requires = [\"b\", \"{text}\"]"), "", "");

        assert_eq!(
            fails(&src),
            (6, 18, "service[0].requires[1]".into()),
            "{text}"
        );
        assert!(
            message(&src).contains("is not name or workspace/name"),
            "{text}"
        );
    }
}

#[test]
fn test_load_str_dependency_not_a_string_is_refused() {
    let src = chain("after = \"b\"", "", "");

    assert_eq!(fails(&src), (6, 9, "service[0].after".into()));
}

#[test]
fn test_load_str_after_cycle_is_named_at_the_first_command_on_it() {
    let src = chain("", "after = [\"c\"]", "after = [\"b\"]");

    let e = load_str(&src, "cards/loop.toml").unwrap_err();

    assert_eq!(
        e.to_string(),
        "cards/loop.toml:10:9: field service[1].after: dependency cycle b -> c -> b: no command on it could ever start"
    );
}

#[test]
fn test_load_str_after_cycle_of_three_is_named_in_edge_order() {
    let src = chain("after = [\"c\"]", "after = [\"a\"]", "after = [\"b\"]");

    let e = load_str(&src, "t.toml").unwrap_err();

    assert_eq!(
        (e.line, e.column, e.field.as_str()),
        (6, 9, "service[0].after")
    );
    assert!(
        e.message.starts_with("dependency cycle a -> c -> b -> a"),
        "{}",
        e.message
    );
}

#[test]
fn test_load_str_requires_cycle_without_after_is_accepted() {
    // `requires` does not order starts (systemd's Requires=), so a requires loop is no
    // deadlock: both start at once, and each stops if the other fails for good.
    let src = chain(
        "requires = [\"b\"]",
        "requires = [\"a\"]\nafter = [\"c\"]",
        "",
    );

    let spec = load_str(&src, "t.toml").unwrap();

    assert_eq!(spec.commands[0].requires, vec![dep("b")]);
}

#[test]
fn test_cards_doc_dependency_chain_example_loads() {
    let doc = include_str!("../../docs/CARDS.md");
    let marker = "```toml\n# chain\n";
    let start = doc.find(marker).expect("CARDS.md has the chain example") + "```toml\n".len();
    let example = &doc[start..start + doc[start..].find("```").unwrap()];

    let spec = load_str(example, "docs/CARDS.md").unwrap();

    let after: Vec<(&str, Vec<String>)> = spec
        .commands
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                c.after.iter().map(|d| d.to_string()).collect(),
            )
        })
        .collect();
    assert_eq!(
        after,
        vec![
            ("db", vec![]),
            ("migrate", vec!["db".to_string()]),
            ("web", vec!["migrate".to_string()]),
        ]
    );
}

#[test]
fn test_load_str_ready_line_without_ring_log_is_refused() {
    let src = service_with("log = \"console\"\nready = { line = \"up\" }");

    assert_eq!(fails(&src), (7, 18, "service[0].ready.line".into()));
    assert!(message(&src).starts_with("needs log = \"ring\""));
}

const PIPELINE: &str = r#"
[[pipeline]]
name = "etl"
restart = "always"
restart_max = 3
backoff = { initial = "50ms", max = "2s" }
fanout_buffer = "64K"
edges = ["extract -> transform", "extract -> load", "transform:stderr -> load"]

[[pipeline.node]]
name = "extract"
argv = ["/bin/extract"]

[[pipeline.node]]
name = "transform"
argv = ["/bin/transform"]
env = { MODE = "fast" }

[[pipeline.node]]
name = "load"
argv = ["/bin/load"]
"#;

#[test]
fn test_load_str_pipeline_takes_nodes_edges_and_settings() {
    let spec = load_str(&format!("{WS}{PIPELINE}"), "t.toml").unwrap();

    let p = &spec.pipelines[0];
    assert_eq!(p.name, "etl");
    assert_eq!(p.restart, RestartPolicy::Always);
    assert_eq!(
        (p.restart_max, p.backoff_initial_ms, p.backoff_max_ms),
        (3, 50, 2_000)
    );
    assert_eq!(p.fanout_buffer, 64 << 10);
    let names: Vec<&str> = p.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["extract", "transform", "load"]);
    assert_eq!(
        p.nodes[1].env,
        vec![("MODE".to_string(), "fast".to_string())]
    );
    let edges: Vec<String> = p.edges.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        edges,
        [
            "extract -> transform",
            "extract -> load",
            "transform:stderr -> load"
        ]
    );
}

#[test]
fn test_load_str_pipeline_without_edges_is_a_chain() {
    let src = format!(
        "{WS}[[pipeline]]\nname = \"p\"\n[[pipeline.node]]\nname = \"a\"\nargv = [\"/bin/a\"]\n[[pipeline.node]]\nname = \"b\"\nargv = [\"/bin/b\"]\n"
    );

    let spec = load_str(&src, "t.toml").unwrap();

    let edges: Vec<String> = spec.pipelines[0]
        .edges
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(edges, ["a -> b"]);
}

#[test]
fn test_load_str_pipeline_cycle_names_the_edges_line() {
    let src = format!("{WS}{PIPELINE}").replace(
        "\"transform:stderr -> load\"]",
        "\"transform:stderr -> load\", \"load -> extract\"]",
    );

    let (line, _, field) = fails(&src);

    assert_eq!(field, "pipeline[0].edges");
    assert_eq!(line, 10);
    assert!(message(&src).contains("cycle"));
}

#[test]
fn test_load_str_pipeline_node_refuses_restart_and_unknown_node_in_edge() {
    let restart = format!("{WS}{PIPELINE}").replace(
        "name = \"load\"\n",
        "name = \"load\"\nrestart = \"always\"\n",
    );
    assert!(message(&restart).contains("restart"));
    let unknown = format!("{WS}{PIPELINE}").replace("-> load\"]", "-> sink\"]");
    assert!(message(&unknown).contains("no node called \"sink\""));
    let (line, _, field) = fails(&unknown);
    assert_eq!((line, field.as_str()), (10, "pipeline[0].edges"));
}

#[test]
fn test_load_str_pipeline_node_name_taken_by_a_command_is_refused() {
    let src = format!("{WS}[[task]]\nname = \"etl.load\"\nargv = [\"/bin/x\"]\n{PIPELINE}");

    assert!(message(&src).contains("\"etl.load\" is the name of a command"));
}

#[test]
fn test_load_str_host_fields_directories_rlimits_and_kill_mode() {
    let src = format!(
        "{WS}[[service]]\nname = \"sshd\"\nargv = [\"/usr/sbin/sshd\", \"-D\"]\nruntime_directory = [\"sshd\"]\nruntime_directory_mode = \"0711\"\nstate_directory = [\"ssh/keys\"]\nrlimits = {{ nofile = 65536, core = \"infinity\", nproc = \"1024:4096\" }}\nkill_mode = \"process\"\n"
    );

    let spec = load_str(&src, "t.toml").unwrap();

    let c = &spec.commands[0];
    assert_eq!(
        c.directories,
        [
            shuma_card::ServiceDir {
                kind: shuma_card::DirKind::Runtime,
                path: "sshd".into(),
                mode: 0o711
            },
            shuma_card::ServiceDir {
                kind: shuma_card::DirKind::State,
                path: "ssh/keys".into(),
                mode: 0o755
            },
        ]
    );
    let limits: Vec<(&str, Option<u64>, Option<u64>)> = c
        .rlimits
        .iter()
        .map(|r| (r.resource.as_str(), r.soft, r.hard))
        .collect();
    assert_eq!(
        limits,
        [
            ("nofile", Some(65536), Some(65536)),
            ("core", None, None),
            ("nproc", Some(1024), Some(4096))
        ]
    );
    assert_eq!(c.kill_mode, shuma_card::KillMode::Process);
}

#[test]
fn test_load_str_host_fields_refuse_escaping_path_and_inverted_limits() {
    let task =
        |extra: &str| format!("{WS}[[task]]\nname = \"t\"\nargv = [\"/bin/true\"]\n{extra}\n");

    let up = message(&task("runtime_directory = [\"../etc\"]"));
    let abs = message(&task("logs_directory = [\"/var/log/x\"]"));
    let inverted = message(&task("rlimits = { nofile = \"4096:1024\" }"));
    let unknown = message(&task("rlimits = { files = 10 }"));
    let (line, _, field) = fails(&task("rlimits = { nofile = \"4096:1024\" }"));

    assert!(up.contains("relative path"), "{up}");
    assert!(abs.contains("relative path"), "{abs}");
    assert!(inverted.contains("soft limit is above"), "{inverted}");
    assert!(unknown.contains("unknown resource"), "{unknown}");
    assert_eq!((line, field.as_str()), (6, "task[0].rlimits.nofile"));
}
