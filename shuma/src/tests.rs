//! End-to-end tests of the CLI against a fake daemon: parse, connect, handshake, request,
//! output and exit code, everything `main` does but the process exit.

use std::path::Path;

use clap::Parser;
use shuma_card::protocol::{
    CmdState, CommandInfo, ErrorCode, Health, Mode, Request, Response, StatusInfo, Stream,
    WorkspaceDetail, WorkspaceInfo, WsState, MAX_FRAME, PROTOCOL_VERSION,
};
use shuma_card::spec::Limits;
use shuma_card::{CommandKind, Event, EventKind, ExitStatus};

use crate::fake::{Answer, FakeDaemon};

struct Outcome {
    code: u8,
    /// What main would print on stderr for the error, if any.
    message: Option<String>,
    out: String,
    err: String,
}

/// Run `shuma ARGS --socket SOCKET` in-process.
fn shuma(socket: &Path, args: &[&str]) -> Outcome {
    let mut argv = vec!["shuma", "--socket", socket.to_str().unwrap()];
    argv.extend_from_slice(args);
    let cli = crate::cli::Cli::try_parse_from(argv).expect("arguments parse");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let result = crate::commands::run(cli, &mut out, &mut err);
    let (code, message) = match result {
        Ok(code) => (code, None),
        Err(e) => (crate::exit_code(&e), Some(format!("{e:#}"))),
    };
    Outcome {
        code,
        message,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    }
}

fn refused(code: ErrorCode, message: &str) -> Answer {
    Answer::Frames(vec![Response::Error {
        code,
        message: message.into(),
    }])
}

fn command_info(
    id: u64,
    name: &str,
    state: CmdState,
    last_exit: Option<ExitStatus>,
) -> CommandInfo {
    CommandInfo {
        id,
        workspace: "demo".into(),
        name: name.into(),
        service: true,
        pid: Some(4242),
        state,
        restarts: 2,
        last_exit,
        reason: None,
        uptime_ms: Some(61_000),
        ready: false,
        status: None,
        health: None,
        waiting_for: Vec::new(),
        pipeline: None,
    }
}

fn workspace_info(name: &str) -> WorkspaceInfo {
    WorkspaceInfo {
        name: name.into(),
        state: WsState::Running,
        commands: 2,
        running: 1,
        limits: Limits {
            memory_max: Some(64 << 20),
            pids_max: Some(32),
            ..Limits::default()
        },
        cgroup: Some(format!("arje/{name}")),
        created_unix_ms: 0,
    }
}

#[test]
fn test_ping_daemon_answers_prints_pong_exit_0() {
    let daemon = FakeDaemon::with(|_| Answer::Frames(vec![Response::Pong]));

    let outcome = shuma(&daemon.socket.clone(), &["ping"]);

    assert_eq!(outcome.code, 0, "{:?}", outcome.message);
    assert_eq!(outcome.out, "pong\n");
    let requests = daemon.requests();
    assert_eq!(
        requests,
        vec![
            Request::Hello {
                version: PROTOCOL_VERSION,
                client: format!("shuma {}", env!("CARGO_PKG_VERSION"))
            },
            Request::Ping
        ]
    );
}

#[test]
fn test_connect_no_socket_exit_3_names_socket_and_os_error() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("absent.sock");

    let outcome = shuma(&socket, &["ping"]);

    assert_eq!(outcome.code, 3);
    assert_eq!(
        outcome.message.unwrap(),
        format!(
            "cannot connect to {}: No such file or directory (is arje-init running?)",
            socket.display()
        )
    );
}

#[test]
fn test_hello_version_mismatch_prints_daemon_message_exit_1() {
    let daemon = FakeDaemon::start(|_| {
        Answer::FramesThenClose(vec![Response::Error {
            code: ErrorCode::Version,
            message: "arje speaks control protocol 2, the client sent 1".into(),
        }])
    });

    let outcome = shuma(&daemon.socket.clone(), &["ping"]);

    assert_eq!(outcome.code, 1);
    assert_eq!(
        outcome.message.unwrap(),
        "arje speaks control protocol 2, the client sent 1"
    );
    assert_eq!(
        daemon.requests().len(),
        1,
        "nothing is sent after a refused Hello"
    );
}

#[test]
fn test_hello_answered_with_other_version_exit_1_names_both() {
    let daemon = FakeDaemon::start(|_| {
        Answer::Frames(vec![Response::Hello {
            version: 99,
            server: "arje 9.0".into(),
        }])
    });

    let outcome = shuma(&daemon.socket.clone(), &["ping"]);

    assert_eq!(outcome.code, 1);
    let message = outcome.message.unwrap();
    assert!(
        message.contains("arje 9.0 speaks control protocol 99"),
        "{message}"
    );
}

#[test]
fn test_refused_request_prints_daemon_message_verbatim_exit_1() {
    let daemon = FakeDaemon::with(|_| refused(ErrorCode::NotFound, "no workspace named `demo`"));

    let outcome = shuma(
        &daemon.socket.clone(),
        &["ws", "stop", "demo", "--grace", "2s", "--force"],
    );

    assert_eq!(outcome.code, 1);
    assert_eq!(outcome.message.unwrap(), "no workspace named `demo`");
    assert_eq!(
        daemon.requests()[1],
        Request::WsStop {
            name: "demo".into(),
            grace_ms: Some(2000)
        }
    );
}

#[test]
fn test_daemon_closes_without_answer_exit_1() {
    let daemon = FakeDaemon::with(|_| Answer::FramesThenClose(vec![]));

    let outcome = shuma(&daemon.socket.clone(), &["status"]);

    assert_eq!(outcome.code, 1);
    assert!(outcome
        .message
        .unwrap()
        .contains("closed the connection without answering"));
}

#[test]
fn test_oversized_frame_from_daemon_rejected_exit_1() {
    let daemon =
        FakeDaemon::with(|_| Answer::RawThenClose(((MAX_FRAME + 1) as u32).to_be_bytes().to_vec()));

    let outcome = shuma(&daemon.socket.clone(), &["ping"]);

    assert_eq!(outcome.code, 1);
    assert!(outcome
        .message
        .unwrap()
        .contains("over the 1048576-byte limit"));
}

#[test]
fn test_garbage_payload_from_daemon_exit_1() {
    let daemon = FakeDaemon::with(|_| Answer::RawThenClose(vec![0, 0, 0, 2, 0xff, 0xff]));

    let outcome = shuma(&daemon.socket.clone(), &["ping"]);

    assert_eq!(outcome.code, 1);
    assert!(outcome
        .message
        .unwrap()
        .contains("bad answer from the daemon"));
}

#[test]
fn test_run_wait_exits_with_command_exit_code() {
    let daemon = FakeDaemon::with(|_| {
        Answer::Frames(vec![Response::Exited {
            id: 7,
            status: ExitStatus::Code(3),
        }])
    });

    let outcome = shuma(
        &daemon.socket.clone(),
        &[
            "run", "demo", "--wait", "--env", "A=1", "--cwd", "/tmp", "--", "/bin/sh", "-c",
            "exit 3",
        ],
    );

    assert_eq!(outcome.code, 3, "{:?}", outcome.message);
    let Request::Run {
        workspace,
        command,
        wait,
    } = &daemon.requests()[1]
    else {
        panic!("not a Run request")
    };
    assert_eq!(workspace, "demo");
    assert!(wait);
    assert_eq!(command.name, "sh");
    assert_eq!(command.kind, CommandKind::Task);
    assert_eq!(command.argv, vec!["/bin/sh", "-c", "exit 3"]);
    assert_eq!(command.env, vec![("A".to_string(), "1".to_string())]);
    assert_eq!(command.cwd.as_deref(), Some("/tmp"));
}

#[test]
fn test_run_wait_killed_by_signal_exit_128_plus_signal() {
    let daemon = FakeDaemon::with(|_| {
        Answer::Frames(vec![
            Response::Started { id: 7, pid: 99 },
            Response::Exited {
                id: 7,
                status: ExitStatus::Signal(9),
            },
        ])
    });

    let outcome = shuma(
        &daemon.socket.clone(),
        &["run", "demo", "--wait", "--", "/bin/x"],
    );

    assert_eq!(outcome.code, 137);
}

#[test]
fn test_run_no_wait_prints_id_and_pid() {
    let daemon = FakeDaemon::with(|_| Answer::Frames(vec![Response::Started { id: 7, pid: 99 }]));

    let outcome = shuma(
        &daemon.socket.clone(),
        &["run", "demo", "--name", "job", "--", "/bin/x"],
    );

    assert_eq!(outcome.code, 0);
    assert_eq!(outcome.out, "7 99\n");
}

#[test]
fn test_run_invalid_name_usage_exit_2_without_connecting() {
    let dir = tempfile::tempdir().unwrap();

    let outcome = shuma(
        &dir.path().join("absent"),
        &["run", "demo", "--name", "Bad/Name", "--", "x"],
    );

    assert_eq!(outcome.code, 2);
    assert!(outcome.message.unwrap().contains("`Bad/Name` is not valid"));
}

#[test]
fn test_logs_both_streams_split_and_dropped_noted() {
    let daemon = FakeDaemon::with(|_| {
        Answer::Frames(vec![
            Response::Log {
                stream: Stream::Stdout,
                data: b"tick\n".to_vec(),
                dropped: 0,
            },
            Response::Log {
                stream: Stream::Stderr,
                data: b"oops\n".to_vec(),
                dropped: 12,
            },
            Response::End,
        ])
    });

    let outcome = shuma(&daemon.socket.clone(), &["logs", "demo", "ticker"]);

    assert_eq!(outcome.code, 0, "{:?}", outcome.message);
    assert_eq!(outcome.out, "tick\n");
    assert_eq!(outcome.err, "[12 bytes dropped]\noops\n");
    assert_eq!(
        daemon.requests()[1],
        Request::Logs {
            workspace: "demo".into(),
            command: "ticker".into(),
            stream: Stream::Both,
            follow: false
        }
    );
}

#[test]
fn test_logs_follow_daemon_closes_exit_0() {
    let daemon = FakeDaemon::with(|_| {
        Answer::FramesThenClose(vec![Response::Log {
            stream: Stream::Stderr,
            data: b"err only\n".to_vec(),
            dropped: 0,
        }])
    });

    let outcome = shuma(
        &daemon.socket.clone(),
        &["logs", "-f", "--stream", "err", "demo", "x"],
    );

    assert_eq!(outcome.code, 0, "{:?}", outcome.message);
    assert_eq!(
        outcome.out, "err only\n",
        "a single requested stream goes to stdout"
    );
}

#[test]
fn test_logs_non_follow_closed_before_end_exit_1() {
    let daemon = FakeDaemon::with(|_| {
        Answer::FramesThenClose(vec![Response::Log {
            stream: Stream::Stdout,
            data: b"partial".to_vec(),
            dropped: 0,
        }])
    });

    let outcome = shuma(&daemon.socket.clone(), &["logs", "demo", "x"]);

    assert_eq!(outcome.code, 1);
    assert_eq!(outcome.out, "partial");
}

#[test]
fn test_events_lines_id_time_text() {
    let daemon = FakeDaemon::with(|_| {
        Answer::Frames(vec![
            Response::Events(vec![Event {
                id: 5,
                mono_us: 1,
                unix_ms: 1_709_210_096_789,
                kind: EventKind::WorkspaceCreated {
                    workspace: "demo".into(),
                },
            }]),
            Response::End,
        ])
    });

    let outcome = shuma(&daemon.socket.clone(), &["events", "--after", "4"]);

    assert_eq!(outcome.code, 0, "{:?}", outcome.message);
    assert_eq!(
        outcome.out,
        "5  2024-02-29T12:34:56.789Z  workspace demo created\n"
    );
    assert_eq!(
        daemon.requests()[1],
        Request::Events {
            after: Some(4),
            follow: false
        }
    );
}

#[test]
fn test_events_since_and_workspace_filter_what_the_daemon_sends() {
    // Arrange: an old event of `demo`, a recent one of `demo`, a recent one of `other`,
    // and a recent Warning (about no workspace).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let ev = |id, unix_ms, kind| Event {
        id,
        mono_us: 1,
        unix_ms,
        kind,
    };
    let created = |w: &str| EventKind::WorkspaceCreated {
        workspace: w.into(),
    };
    let daemon = || {
        FakeDaemon::with(move |_| {
            Answer::Frames(vec![
                Response::Events(vec![
                    ev(1, now - 3_600_000, created("demo")),
                    ev(2, now - 1_000, created("demo")),
                    ev(3, now - 1_000, created("other")),
                    ev(
                        4,
                        now - 1_000,
                        EventKind::Warning {
                            message: "w".into(),
                        },
                    ),
                ]),
                Response::End,
            ])
        })
    };
    let ids = |out: &str| -> Vec<String> {
        out.lines()
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .collect()
    };

    // Act
    let since = shuma(&daemon().socket.clone(), &["events", "--since", "10m"]);
    let demo = shuma(&daemon().socket.clone(), &["events", "--workspace", "demo"]);
    let both = shuma(
        &daemon().socket.clone(),
        &["events", "--since", "10m", "--workspace", "demo"],
    );

    // Assert
    assert_eq!(ids(&since.out), ["2", "3", "4"]);
    assert_eq!(ids(&demo.out), ["1", "2"]);
    assert_eq!(ids(&both.out), ["2"]);
}

#[test]
fn test_ps_table_columns() {
    let daemon = FakeDaemon::with(|_| {
        Answer::Frames(vec![
            Response::Commands(vec![command_info(
                3,
                "ticker",
                CmdState::Running,
                Some(ExitStatus::Signal(15)),
            )]),
            Response::End,
        ])
    });

    let outcome = shuma(&daemon.socket.clone(), &["ps", "demo"]);

    assert_eq!(outcome.code, 0, "{:?}", outcome.message);
    let lines: Vec<&str> = outcome.out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "ID",
            "WORKSPACE",
            "NAME",
            "PID",
            "STATE",
            "RESTARTS",
            "LAST-EXIT",
            "UPTIME",
            "READY",
            "HEALTH",
            "STATUS",
            "PIPELINE"
        ]
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["3", "demo", "ticker", "4242", "running", "2", "SIGTERM", "1m01s", "no", "-", "-", "-"]
    );
}

#[test]
fn test_ws_ls_json_is_the_response_data() {
    let daemon = FakeDaemon::with(|_| {
        Answer::Frames(vec![Response::Workspaces(vec![workspace_info("demo")])])
    });

    let outcome = shuma(&daemon.socket.clone(), &["ws", "ls", "--json"]);

    assert_eq!(outcome.code, 0, "{:?}", outcome.message);
    let value: serde_json::Value = serde_json::from_str(&outcome.out).unwrap();
    assert_eq!(value[0]["name"], "demo");
    assert_eq!(value[0]["limits"]["pids_max"], 32);
}

#[test]
fn test_status_human_readable() {
    let daemon = FakeDaemon::with(|_| {
        Answer::Frames(vec![Response::Status(StatusInfo {
            version: "0.1.0".into(),
            pid: 321,
            mode: Mode::Subreaper,
            uptime_ms: 3_723_000,
            workspaces: 2,
            commands: 5,
            running: 3,
            connections: 1,
            last_event_id: 42,
            orphans_reaped: 0,
            state_not_saved: None,
        })])
    });

    let outcome = shuma(&daemon.socket.clone(), &["status"]);

    assert_eq!(outcome.code, 0, "{:?}", outcome.message);
    assert!(
        outcome.out.contains("mode:           subreaper\n"),
        "{}",
        outcome.out
    );
    assert!(
        outcome.out.contains("uptime:         1h02m\n"),
        "{}",
        outcome.out
    );
    assert!(
        outcome.out.contains("commands:       5 (3 running)\n"),
        "{}",
        outcome.out
    );
    assert!(
        outcome.out.contains("state:          saved\n"),
        "{}",
        outcome.out
    );
}

#[test]
fn test_status_state_not_saved_says_so_with_the_reason() {
    let daemon = || {
        FakeDaemon::with(|_| {
            Answer::Frames(vec![Response::Status(StatusInfo {
                version: "0.1.0".into(),
                pid: 1,
                mode: Mode::Pid1,
                uptime_ms: 0,
                workspaces: 0,
                commands: 0,
                running: 0,
                connections: 1,
                last_event_id: 0,
                orphans_reaped: 0,
                state_not_saved: Some("cannot write snapshot temp file /run/arje/x: ENOSPC".into()),
            })])
        })
    };

    let outcome = shuma(&daemon().socket.clone(), &["status"]);
    let json = shuma(&daemon().socket.clone(), &["status", "--json"]);

    assert_eq!(outcome.code, 0, "{:?}", outcome.message);
    assert!(
        outcome.out.contains(
            "state:          NOT SAVED: cannot write snapshot temp file /run/arje/x: ENOSPC\n"
        ),
        "{}",
        outcome.out
    );
    assert!(
        json.out.contains("\"state_not_saved\": \"cannot write"),
        "{}",
        json.out
    );
}

#[test]
fn test_ws_set_stops_at_first_refusal() {
    let daemon = FakeDaemon::with(|req| match req {
        Request::WsSet { key, .. } if key == "memory_high" => refused(
            ErrorCode::Invalid,
            "demo: memory_high 128M is above memory_max 64M",
        ),
        _ => Answer::Frames(vec![Response::Ok]),
    });

    let outcome = shuma(
        &daemon.socket.clone(),
        &[
            "ws",
            "set",
            "demo",
            "memory_max=64M",
            "memory_high=128M",
            "cpu_weight=50",
        ],
    );

    assert_eq!(outcome.code, 1);
    assert_eq!(outcome.out, "demo: memory_max set to 64M\n");
    assert_eq!(
        outcome.message.unwrap(),
        "demo: memory_high 128M is above memory_max 64M"
    );
    assert_eq!(
        daemon.requests().len(),
        3,
        "Hello and two WsSet; the third is never sent"
    );
}

#[test]
fn test_ws_set_bad_value_usage_exit_2_without_connecting() {
    let dir = tempfile::tempdir().unwrap();

    let outcome = shuma(
        &dir.path().join("absent.sock"),
        &["ws", "set", "demo", "pids_max=lots"],
    );

    assert_eq!(outcome.code, 2);
    assert!(outcome.message.unwrap().starts_with("pids_max:"));
}

#[test]
fn test_poweroff_daemon_closes_without_answer_exit_0() {
    let daemon = FakeDaemon::with(|_| Answer::FramesThenClose(vec![]));

    let outcome = shuma(&daemon.socket.clone(), &["poweroff"]);

    assert_eq!(outcome.code, 0, "{:?}", outcome.message);
    assert_eq!(
        daemon.requests()[1],
        Request::Shutdown {
            kind: shuma_card::protocol::ShutdownKind::Poweroff
        }
    );
}

#[test]
fn test_top_once_skips_workspace_gone_between_requests() {
    let daemon = FakeDaemon::with(|req| match req {
        Request::WsList => Answer::Frames(vec![Response::Workspaces(vec![
            workspace_info("alpha"),
            workspace_info("gone"),
        ])]),
        Request::WsStats { name } if name == "gone" => refused(ErrorCode::NotFound, "no gone"),
        Request::WsStats { name } => Answer::Frames(vec![Response::Stats {
            name: name.clone(),
            samples: vec![shuma_card::protocol::StatsSample {
                memory_current: Some(3 << 20),
                pids_current: Some(4),
                cpu_percent_x100: Some(1250),
                ..Default::default()
            }],
        }]),
        _ => panic!("unexpected request {req:?}"),
    });

    let outcome = shuma(&daemon.socket.clone(), &["top", "--once"]);

    assert_eq!(outcome.code, 0, "{:?}", outcome.message);
    assert!(
        !outcome.out.contains('\x1b'),
        "--once does not clear the screen"
    );
    let alpha = outcome
        .out
        .lines()
        .find(|l| l.starts_with("alpha"))
        .unwrap();
    assert_eq!(
        alpha.split_whitespace().collect::<Vec<_>>(),
        ["alpha", "running", "2", "1", "3.0M", "64M", "4", "32", "12.50%"]
    );
    assert!(outcome.out.lines().any(|l| l.starts_with("gone")));
}

#[test]
fn test_ws_create_prints_warnings_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let card = dir.path().join("demo.toml");
    std::fs::write(
        &card,
        "[workspace]\nname = \"demo\"\nmemory_max = \"64M\"\n",
    )
    .unwrap();
    let daemon = FakeDaemon::with(|_| {
        Answer::Frames(vec![Response::Created {
            name: "demo".into(),
            warnings: vec!["memory_max is not enforced: no memory controller".into()],
            failed: vec![],
        }])
    });

    let outcome = shuma(
        &daemon.socket.clone(),
        &["ws", "create", card.to_str().unwrap()],
    );

    assert_eq!(outcome.code, 0, "{:?}", outcome.message);
    assert_eq!(outcome.out, "created workspace demo\n");
    assert_eq!(
        outcome.err,
        "warning: memory_max is not enforced: no memory controller\n"
    );
    let Request::WsCreate { spec } = &daemon.requests()[1] else {
        panic!("not WsCreate")
    };
    assert_eq!(spec.name, "demo");
    assert_eq!(spec.limits.memory_max, Some(64 << 20));
}

#[test]
fn test_ws_create_with_a_command_that_did_not_start_exits_1_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let card = dir.path().join("demo.toml");
    std::fs::write(&card, "[workspace]\nname = \"demo\"\n").unwrap();
    let daemon = FakeDaemon::with(|_| {
        Answer::Frames(vec![Response::Created {
            name: "demo".into(),
            warnings: vec![],
            failed: vec!["web: /bin/web execve: No such file or directory".into()],
        }])
    });

    let outcome = shuma(
        &daemon.socket.clone(),
        &["ws", "create", card.to_str().unwrap()],
    );

    assert_eq!(outcome.code, 1, "{:?}", outcome.message);
    assert_eq!(outcome.out, "created workspace demo\n");
    assert_eq!(
        outcome.err,
        "error: did not start: web: /bin/web execve: No such file or directory\n"
    );
}

#[test]
fn test_ws_create_bad_card_exit_2_with_position_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let card = dir.path().join("bad.toml");
    std::fs::write(
        &card,
        "[workspace]\nname = \"demo\"\nmemory_mux = \"64M\"\n",
    )
    .unwrap();

    // No daemon: a bad card is reported before connecting.
    let outcome = shuma(
        &dir.path().join("absent.sock"),
        &["ws", "create", card.to_str().unwrap()],
    );

    assert_eq!(outcome.code, 2);
    let message = outcome.message.unwrap();
    assert!(
        message.starts_with(&format!("{}:3:", card.display())),
        "{message}"
    );
    assert!(message.contains("memory_mux"), "{message}");
}

fn event(id: u64, workspace: &str) -> Event {
    Event {
        id,
        mono_us: id,
        unix_ms: 0,
        kind: EventKind::WorkspaceCreated {
            workspace: workspace.into(),
        },
    }
}

#[test]
fn test_events_follow_json_lines_until_daemon_closes_exit_0() {
    let daemon = FakeDaemon::with(|_| {
        Answer::FramesThenClose(vec![
            Response::Events(vec![event(1, "a"), event(2, "b")]),
            Response::Events(vec![event(3, "c")]),
        ])
    });

    let outcome = shuma(&daemon.socket.clone(), &["events", "-f", "--json"]);

    assert_eq!(outcome.code, 0, "{:?}", outcome.message);
    let ids: Vec<u64> = outcome
        .out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(ids, [1, 2, 3]);
    assert_eq!(
        daemon.requests()[1],
        Request::Events {
            after: None,
            follow: true
        }
    );
}

#[test]
fn test_logs_refused_mid_stream_exit_1_with_daemon_message() {
    let daemon = FakeDaemon::with(|_| refused(ErrorCode::NotFound, "demo has no command `nope`"));

    let outcome = shuma(&daemon.socket.clone(), &["logs", "-f", "demo", "nope"]);

    assert_eq!(outcome.code, 1);
    assert_eq!(outcome.message.unwrap(), "demo has no command `nope`");
}

#[test]
fn test_caps_table_yes_no() {
    let daemon = FakeDaemon::with(|_| {
        Answer::Frames(vec![Response::Caps(vec![
            shuma_card::protocol::Capability {
                name: "memory_max".into(),
                enforced: false,
                detail: "no memory controller in cgroup v2 here".into(),
            },
        ])])
    });

    let outcome = shuma(&daemon.socket.clone(), &["caps"]);

    assert_eq!(outcome.code, 0, "{:?}", outcome.message);
    assert_eq!(
        outcome.out.lines().nth(1).unwrap(),
        "memory_max  no        no memory controller in cgroup v2 here"
    );
}

#[test]
fn test_daemon_refuses_before_reading_hello_message_shown_exit_1() {
    let daemon = FakeDaemon::refuse_on_accept(Response::Error {
        code: ErrorCode::Limit,
        message: "too many connections (64)".into(),
    });

    let outcome = shuma(&daemon.socket.clone(), &["ping"]);

    // Whether the Hello was written before or after the daemon closed, the daemon's own
    // explanation is what the user sees.
    assert_eq!(outcome.code, 1);
    assert_eq!(outcome.message.unwrap(), "too many connections (64)");
    assert!(daemon.requests().is_empty());
}

#[test]
fn test_exit_code_broken_pipe_is_quiet_success() {
    let err = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));

    assert_eq!(crate::exit_code(&err), 0);
}

#[test]
fn test_exit_code_other_io_error_is_1() {
    let err = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::PermissionDenied));

    assert_eq!(crate::exit_code(&err), 1);
}

/// A stdout whose reader has gone.
struct ClosedPipe;

impl std::io::Write for ClosedPipe {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::BrokenPipe.into())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn test_exit_code_broken_pipe_under_json_output_is_quiet_success() {
    // `shuma ws show --json | head -c 10`: the closed pipe comes back through serde_json.
    let write = crate::output::write_json(&mut ClosedPipe, &vec!["a"; 1000]);
    let line = crate::output::write_json_line(&mut ClosedPipe, &vec!["a"; 1000]);

    for result in [write, line] {
        let err = anyhow::Error::from(result.unwrap_err());
        assert_eq!(crate::exit_code(&err), 0, "{err:#}");
    }
}

#[test]
fn test_exit_code_broken_pipe_inside_json_error_is_quiet_success() {
    let io = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
    let err = anyhow::Error::from(serde_json::Error::io(io));

    assert_eq!(crate::exit_code(&err), 0);
}

#[test]
fn test_daemon_silent_after_hello_times_out_exit_3() {
    let daemon = FakeDaemon::with(|_| Answer::Nothing);

    let outcome = shuma(&daemon.socket.clone(), &["--timeout", "100ms", "ping"]);

    assert_eq!(outcome.code, 3);
    let message = outcome.message.unwrap();
    assert!(
        message.contains("no answer from the daemon within 100ms"),
        "{message}"
    );
    assert_eq!(daemon.requests().len(), 2);
}

#[test]
fn test_daemon_silent_at_hello_times_out_exit_3() {
    let daemon = FakeDaemon::start(|_| Answer::Nothing);

    let outcome = shuma(
        &daemon.socket.clone(),
        &["--timeout", "100ms", "logs", "-f", "w", "c"],
    );

    assert_eq!(outcome.code, 3);
    assert!(outcome.message.unwrap().contains("no answer"));
}

// Protocol 4: readiness, health, STATUS= text, and the readiness waits.

/// The commands of a workspace in every readiness situation `ps` must tell apart.
fn readiness_commands() -> Vec<CommandInfo> {
    vec![
        CommandInfo {
            ready: true,
            health: Some(Health::Healthy),
            status: Some("serving 12 clients".into()),
            ..command_info(1, "web", CmdState::Running, None)
        },
        CommandInfo {
            ready: true,
            health: Some(Health::Failing {
                failures: 3,
                last: "connect 127.0.0.1:5432: Connection refused".into(),
            }),
            status: Some("replaying the write-ahead log, segment 000000010000000000000042".into()),
            ..command_info(2, "db", CmdState::Running, None)
        },
        CommandInfo {
            pid: None,
            restarts: 0,
            uptime_ms: None,
            waiting_for: vec!["db".into(), "net/up".into()],
            ..command_info(3, "migrate", CmdState::Waiting, None)
        },
        CommandInfo {
            pid: None,
            uptime_ms: None,
            reason: Some("not ready within 1m30s\nstderr: listen: address in use".into()),
            ..command_info(4, "api", CmdState::Failed, Some(ExitStatus::Code(1)))
        },
    ]
}

/// The cells of one row of a table as `shuma` printed it, cut at the header's columns.
fn cells(header: &str, line: &str) -> Vec<String> {
    let starts: Vec<usize> = header
        .char_indices()
        .filter(|&(i, c)| c != ' ' && (i == 0 || header.as_bytes()[i - 1] == b' '))
        .map(|(i, _)| i)
        .collect();
    let chars: Vec<char> = line.chars().collect();
    starts
        .iter()
        .enumerate()
        .map(|(n, &from)| {
            let to = starts
                .get(n + 1)
                .copied()
                .unwrap_or(chars.len())
                .min(chars.len());
            chars[from.min(to)..to]
                .iter()
                .collect::<String>()
                .trim()
                .to_string()
        })
        .collect()
}

#[test]
fn test_ps_ready_health_and_status_columns_render_each_situation() {
    let daemon = FakeDaemon::with(|_| {
        Answer::Frames(vec![
            Response::Commands(readiness_commands()),
            Response::End,
        ])
    });

    let outcome = shuma(&daemon.socket.clone(), &["ps", "demo"]);

    assert_eq!(outcome.code, 0, "{:?}", outcome.message);
    let lines: Vec<&str> = outcome.out.lines().collect();
    let row = |n: usize| cells(lines[0], lines[n])[8..11].to_vec();
    assert_eq!(row(1), ["yes", "healthy", "\"serving 12 clients\""]);
    assert_eq!(row(2), ["yes", "unhealthy(3)", "\"replaying the write-ah…"]);
    assert_eq!(row(3), ["-", "-", "waiting for db, net/up"]);
    assert_eq!(row(4), ["no", "-", "not ready within 1m30s…"]);
    let longest = lines
        .iter()
        .map(|l| cells(lines[0], l)[10].chars().count())
        .max();
    assert_eq!(longest, Some(crate::cmd_table::STATUS_CELL_MAX));
}

#[test]
fn test_ps_long_status_cut_to_the_cell_max_with_mark() {
    let daemon = FakeDaemon::with(|_| {
        Answer::Frames(vec![
            Response::Commands(vec![CommandInfo {
                ready: true,
                status: Some("x".repeat(200)),
                ..command_info(1, "web", CmdState::Running, None)
            }]),
            Response::End,
        ])
    });

    let outcome = shuma(&daemon.socket.clone(), &["ps"]);

    assert_eq!(outcome.code, 0, "{:?}", outcome.message);
    let row = outcome.out.lines().nth(1).unwrap();
    assert!(row.contains(&format!("  \"{}…  ", "x".repeat(22))), "{row}");
}

#[test]
fn test_ps_status_from_service_with_escape_sequence_printed_harmless() {
    let daemon = FakeDaemon::with(|_| {
        Answer::Frames(vec![
            Response::Commands(vec![CommandInfo {
                status: Some("ok\x1b[2J\r\nnext".into()),
                ..command_info(1, "web", CmdState::Running, None)
            }]),
            Response::End,
        ])
    });

    let outcome = shuma(&daemon.socket.clone(), &["ps"]);

    assert_eq!(outcome.code, 0, "{:?}", outcome.message);
    assert!(!outcome.out.contains('\x1b'), "{:?}", outcome.out);
    assert!(outcome.out.contains("\"ok?[2J next\""), "{:?}", outcome.out);
}

#[test]
fn test_ps_json_carries_readiness_fields_as_sent() {
    let daemon = FakeDaemon::with(|_| {
        Answer::Frames(vec![
            Response::Commands(readiness_commands()),
            Response::End,
        ])
    });

    let outcome = shuma(&daemon.socket.clone(), &["ps", "--json"]);

    assert_eq!(outcome.code, 0, "{:?}", outcome.message);
    let value: serde_json::Value = serde_json::from_str(&outcome.out).unwrap();
    assert_eq!(value[0]["ready"], true);
    assert_eq!(value[0]["status"], "serving 12 clients");
    assert_eq!(value[1]["health"]["Failing"]["failures"], 3);
    assert_eq!(value[2]["waiting_for"], serde_json::json!(["db", "net/up"]));
}

/// A fake daemon for `ws stop`: its workspace `demo` has one command whose pid is
/// `pid` and no cgroup; it answers the stop with Ok.
fn ws_stop_daemon(pid: i32) -> FakeDaemon {
    FakeDaemon::with(move |req| match req {
        Request::WsShow { name } => Answer::Frames(vec![
            Response::Workspace(Box::new(WorkspaceDetail {
                info: WorkspaceInfo {
                    cgroup: None,
                    ..workspace_info(name)
                },
                spec: shuma_card::WorkspaceSpec {
                    name: name.clone(),
                    ..Default::default()
                },
                unenforced: vec![],
            })),
            Response::Commands(vec![CommandInfo {
                pid: Some(pid),
                ..command_info(1, "sshd", CmdState::Running, None)
            }]),
            Response::End,
        ]),
        Request::WsStop { .. } => Answer::Frames(vec![Response::Ok]),
        _ => panic!("unexpected request {req:?}"),
    })
}

#[test]
fn test_ws_stop_of_the_workspace_this_shell_runs_in_is_refused_without_force() {
    // Arrange: the workspace's command is this process's parent, as sshd is an ssh
    // session's.
    let daemon = ws_stop_daemon(nix::unistd::getppid().as_raw());

    // Act
    let outcome = shuma(&daemon.socket.clone(), &["ws", "stop", "demo"]);

    // Assert
    assert_eq!(outcome.code, 1);
    let message = outcome.message.unwrap();
    assert!(
        message.starts_with("not stopping workspace demo: its command demo/sshd (pid "),
        "{message}"
    );
    assert!(
        message.contains("would end this session too; run `shuma ws stop --force demo`"),
        "{message}"
    );
    assert!(
        !daemon
            .requests()
            .iter()
            .any(|r| matches!(r, Request::WsStop { .. })),
        "the stop was sent"
    );
}

#[test]
fn test_ws_stop_force_and_ws_stop_from_outside_are_sent() {
    for (args, pid) in [
        (
            &["ws", "stop", "demo", "--force"][..],
            nix::unistd::getppid().as_raw(),
        ),
        (&["ws", "stop", "demo"][..], i32::MAX),
    ] {
        // Arrange
        let daemon = ws_stop_daemon(pid);

        // Act
        let outcome = shuma(&daemon.socket.clone(), args);

        // Assert
        assert_eq!(outcome.code, 0, "{args:?}: {:?}", outcome.message);
        assert_eq!(outcome.out, "stopped workspace demo\n");
        assert!(daemon
            .requests()
            .iter()
            .any(|r| matches!(r, Request::WsStop { .. })));
    }
}

#[test]
fn test_ws_show_prints_what_the_table_cut_short_below_it() {
    let daemon = FakeDaemon::with(|req| match req {
        Request::WsShow { name } => Answer::Frames(vec![
            Response::Workspace(Box::new(WorkspaceDetail {
                info: workspace_info(name),
                spec: shuma_card::WorkspaceSpec {
                    name: name.clone(),
                    ..Default::default()
                },
                unenforced: vec![],
            })),
            Response::Commands(readiness_commands()),
            Response::End,
        ]),
        _ => panic!("unexpected request {req:?}"),
    });

    let outcome = shuma(&daemon.socket.clone(), &["ws", "show", "demo"]);

    assert_eq!(outcome.code, 0, "{:?}", outcome.message);
    let notes: Vec<&str> = outcome
        .out
        .lines()
        .skip_while(|l| !l.starts_with("ID "))
        .skip(5)
        .collect();
    assert_eq!(
        notes,
        [
            "db: health check failed 3 times in a row: connect 127.0.0.1:5432: Connection refused",
            "db: \"replaying the write-ahead log, segment 000000010000000000000042\"",
            "api: not ready within 1m30s",
            "     stderr: listen: address in use",
        ]
    );
}

/// A card of one workspace named `demo`, written into `dir`.
fn demo_card(dir: &Path) -> String {
    let card = dir.join("demo.toml");
    std::fs::write(&card, "[workspace]\nname = \"demo\"\n").unwrap();
    card.to_str().unwrap().to_string()
}

fn created(failed: &[&str]) -> Answer {
    Answer::Frames(vec![Response::Created {
        name: "demo".into(),
        warnings: vec![],
        failed: failed.iter().map(|f| f.to_string()).collect(),
    }])
}

#[test]
fn test_ws_create_wait_ready_waits_on_the_same_connection_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let card = demo_card(dir.path());
    let daemon = FakeDaemon::with(|req| match req {
        Request::WsCreate { .. } => created(&[]),
        Request::WaitReady { .. } => Answer::Frames(vec![Response::Ok]),
        _ => panic!("unexpected request {req:?}"),
    });

    let outcome = shuma(
        &daemon.socket.clone(),
        &["ws", "create", &card, "--wait-ready"],
    );

    assert_eq!(outcome.code, 0, "{:?}", outcome.message);
    assert_eq!(outcome.out, "created workspace demo\n");
    assert_eq!(
        daemon.requests()[2],
        Request::WaitReady {
            workspace: "demo".into(),
            command: None,
            timeout_ms: None
        },
        "without --timeout the cards' ready_timeouts bound the wait"
    );
}

#[test]
fn test_ws_create_wait_ready_not_ready_exit_4_with_daemon_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let card = demo_card(dir.path());
    let daemon = FakeDaemon::with(|req| match req {
        Request::WsCreate { .. } => created(&[]),
        _ => refused(
            ErrorCode::NotReady,
            "demo/api exited 1 before it was ready\nstderr: listen: address in use\n",
        ),
    });

    let outcome = shuma(
        &daemon.socket.clone(),
        &["ws", "create", &card, "--wait-ready", "--timeout", "1m"],
    );

    assert_eq!(outcome.code, 4);
    assert_eq!(
        outcome.message.unwrap(),
        "demo/api exited 1 before it was ready\nstderr: listen: address in use"
    );
    let Request::WaitReady { timeout_ms, .. } = &daemon.requests()[2] else {
        panic!("not WaitReady")
    };
    assert_eq!(*timeout_ms, Some(60_000));
}

#[test]
fn test_ws_create_wait_ready_command_did_not_start_exit_1_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let card = demo_card(dir.path());
    let daemon = FakeDaemon::with(|req| match req {
        Request::WsCreate { .. } => created(&["web: /bin/web execve: No such file or directory"]),
        _ => panic!("unexpected request {req:?}"),
    });

    let outcome = shuma(
        &daemon.socket.clone(),
        &["ws", "create", &card, "--wait-ready"],
    );

    assert_eq!(outcome.code, 1, "{:?}", outcome.message);
    assert!(outcome.err.contains("error: did not start: web:"));
    assert_eq!(daemon.requests().len(), 2, "Hello and WsCreate only");
}

#[test]
fn test_run_wait_ready_prints_id_then_waits_for_that_id() {
    let daemon = FakeDaemon::with(|req| match req {
        Request::Run { .. } => Answer::Frames(vec![Response::Started { id: 7, pid: 99 }]),
        Request::WaitReady { .. } => Answer::Frames(vec![Response::Ok]),
        _ => panic!("unexpected request {req:?}"),
    });

    let outcome = shuma(
        &daemon.socket.clone(),
        &[
            "run",
            "demo",
            "--wait-ready",
            "--timeout",
            "5s",
            "--",
            "/bin/x",
        ],
    );

    assert_eq!(outcome.code, 0, "{:?}", outcome.message);
    assert_eq!(outcome.out, "7 99\n");
    let requests = daemon.requests();
    let Request::Run { wait, .. } = &requests[1] else {
        panic!("not Run")
    };
    assert!(!wait);
    assert_eq!(
        requests[2],
        Request::WaitReady {
            workspace: "demo".into(),
            command: Some("7".into()),
            timeout_ms: Some(5_000)
        }
    );
}

#[test]
fn test_run_wait_ready_task_failed_exit_4() {
    let daemon = FakeDaemon::with(|req| match req {
        Request::Run { .. } => Answer::Frames(vec![Response::Started { id: 7, pid: 99 }]),
        _ => refused(ErrorCode::NotReady, "demo/x exited 2 before it was ready"),
    });

    let outcome = shuma(
        &daemon.socket.clone(),
        &["run", "demo", "--wait-ready", "--", "/bin/x"],
    );

    assert_eq!(outcome.code, 4);
    assert_eq!(
        outcome.message.unwrap(),
        "demo/x exited 2 before it was ready"
    );
}

#[test]
fn test_wait_ready_one_command_ready_exit_0_prints_nothing() {
    let daemon = FakeDaemon::with(|_| Answer::Frames(vec![Response::Ok]));

    let outcome = shuma(
        &daemon.socket.clone(),
        &["wait-ready", "demo", "web", "--timeout", "2m"],
    );

    assert_eq!(outcome.code, 0, "{:?}", outcome.message);
    assert_eq!(outcome.out, "");
    assert_eq!(
        daemon.requests()[1],
        Request::WaitReady {
            workspace: "demo".into(),
            command: Some("web".into()),
            timeout_ms: Some(120_000)
        }
    );
}

#[test]
fn test_wait_ready_timeout_0_waits_without_deadline() {
    let daemon = FakeDaemon::with(|_| Answer::Frames(vec![Response::Ok]));

    let outcome = shuma(
        &daemon.socket.clone(),
        &["--timeout", "0", "wait-ready", "demo"],
    );

    assert_eq!(outcome.code, 0, "{:?}", outcome.message);
    let Request::WaitReady { timeout_ms, .. } = &daemon.requests()[1] else {
        panic!("not WaitReady")
    };
    assert_eq!(*timeout_ms, None);
}

#[test]
fn test_wait_ready_verdict_with_escape_sequence_printed_harmless_exit_4() {
    let daemon = FakeDaemon::with(|_| {
        refused(
            ErrorCode::NotReady,
            "not ready within 10s: demo/web\nstderr: \x1b]0;pwned\x07boom",
        )
    });

    let outcome = shuma(&daemon.socket.clone(), &["wait-ready", "demo"]);

    assert_eq!(outcome.code, 4);
    assert_eq!(
        outcome.message.unwrap(),
        "not ready within 10s: demo/web\nstderr: ?]0;pwned?boom"
    );
}

#[test]
fn test_wait_ready_refused_otherwise_exit_1() {
    let daemon = FakeDaemon::with(|_| refused(ErrorCode::Unsupported, "WaitReady: unsupported"));

    let outcome = shuma(&daemon.socket.clone(), &["wait-ready", "demo"]);

    assert_eq!(outcome.code, 1);
    assert_eq!(outcome.message.unwrap(), "WaitReady: unsupported");
}

fn at(id: u64, kind: EventKind) -> Event {
    Event {
        id,
        mono_us: id,
        unix_ms: 1_709_210_096_789,
        kind,
    }
}

#[test]
fn test_events_readiness_lines_and_stderr_tail_continues_under_the_text() {
    let daemon = FakeDaemon::with(|_| {
        Answer::Frames(vec![
            Response::Events(vec![
                at(
                    8,
                    EventKind::CommandReady {
                        workspace: "demo".into(),
                        command: "web".into(),
                        after_ms: 1_250,
                    },
                ),
                at(
                    9,
                    EventKind::CommandNotReady {
                        workspace: "demo".into(),
                        command: "api".into(),
                        reason: "exited 1 before it was ready\nstderr: address in use\n".into(),
                    },
                ),
                at(
                    10,
                    EventKind::CommandUnhealthy {
                        workspace: "demo".into(),
                        command: "db".into(),
                        reason: "3 failed checks: connection refused".into(),
                    },
                ),
            ]),
            Response::End,
        ])
    });

    let outcome = shuma(&daemon.socket.clone(), &["events"]);

    assert_eq!(outcome.code, 0, "{:?}", outcome.message);
    assert_eq!(
        outcome.out,
        "8  2024-02-29T12:34:56.789Z  demo/web ready after 1250ms\n\
         9  2024-02-29T12:34:56.789Z  demo/api not ready: exited 1 before it was ready\n\
         \x20                            stderr: address in use\n\
         10  2024-02-29T12:34:56.789Z  demo/db unhealthy: 3 failed checks: connection refused\n"
    );
}
