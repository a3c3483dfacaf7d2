//! Property tests of the control protocol: decoding arbitrary bytes never panics, and
//! every request survives a trip through a frame.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use shuma_card::protocol::*;
use shuma_card::spec::*;

/// Counts the variants, with no wildcard arm: adding a `Request` variant fails to compile
/// here until `request()` below learns to generate it.
fn variant(req: &Request) -> usize {
    match req {
        Request::Hello { .. } => 0,
        Request::Ping => 1,
        Request::Status => 2,
        Request::WsCreate { .. } => 3,
        Request::WsList => 4,
        Request::WsShow { .. } => 5,
        Request::WsStop { .. } => 6,
        Request::WsSet { .. } => 7,
        Request::WsStats { .. } => 8,
        Request::Run { .. } => 9,
        Request::Ps { .. } => 10,
        Request::Logs { .. } => 11,
        Request::Events { .. } => 12,
        Request::Caps => 13,
        Request::Shutdown { .. } => 14,
        Request::DaemonReexec { .. } => 15,
        Request::TestPanic => 16,
        Request::WaitReady { .. } => 17,
        Request::Control { .. } => 18,
        Request::PipelineSave { .. } => 19,
        Request::PipelineList => 20,
        Request::PipelineShow { .. } => 21,
        Request::PipelineRemove { .. } => 22,
        Request::PipelineRun { .. } => 23,
        Request::PipelineStop { .. } => 24,
        Request::PipelinePs { .. } => 25,
    }
}
const VARIANTS: usize = 26;

/// A pipeline (version 6): nodes are commands, edges any text.
fn pipeline() -> impl Strategy<Value = shuma_card::PipelineSpec> {
    (
        text(),
        proptest::collection::vec(command(), 0..3),
        proptest::collection::vec((text(), any::<bool>(), text()), 0..3),
        any::<u32>(),
    )
        .prop_map(|(name, nodes, edges, restart_max)| {
            let mut p = shuma_card::PipelineSpec::new(name);
            p.nodes = nodes;
            p.edges = edges
                .into_iter()
                .map(|(from, err, to)| shuma_card::Edge {
                    from,
                    stream: if err {
                        shuma_card::OutStream::Stderr
                    } else {
                        shuma_card::OutStream::Stdout
                    },
                    to,
                })
                .collect();
            p.restart_max = restart_max;
            p
        })
}

fn cmd_action() -> impl Strategy<Value = CmdAction> {
    prop_oneof![
        Just(CmdAction::Start),
        Just(CmdAction::Stop),
        Just(CmdAction::Restart),
        Just(CmdAction::Reload),
        any::<i32>().prop_map(|signal| CmdAction::Kill { signal }),
    ]
}

fn text() -> impl Strategy<Value = String> {
    ".{0,24}"
}

fn probe() -> impl Strategy<Value = Probe> {
    prop_oneof![
        proptest::collection::vec(text(), 0..3).prop_map(Probe::Exec),
        text().prop_map(Probe::Tcp),
        text().prop_map(Probe::Unix)
    ]
}

/// The fields added in version 4: ready, ready_timeout_ms, watchdog_ms, after,
/// requires, wants, health.
#[allow(clippy::type_complexity)]
fn readiness() -> impl Strategy<
    Value = (
        Readiness,
        u64,
        Option<u64>,
        Vec<DepRef>,
        Vec<DepRef>,
        Vec<DepRef>,
        Option<HealthCheck>,
    ),
> {
    let ready = prop_oneof![
        Just(Readiness::Started),
        Just(Readiness::Notify),
        any::<u32>().prop_map(Readiness::Fd),
        text().prop_map(Readiness::Line),
        probe().prop_map(Readiness::Probe)
    ];
    let deps = || {
        proptest::collection::vec(
            (proptest::option::of(text()), text())
                .prop_map(|(workspace, name)| DepRef { workspace, name }),
            0..3,
        )
    };
    let health = proptest::option::of(
        (probe(), any::<u64>(), any::<u64>(), any::<u32>()).prop_map(
            |(probe, interval_ms, timeout_ms, retries)| HealthCheck {
                probe,
                interval_ms,
                timeout_ms,
                retries,
            },
        ),
    );
    (
        ready,
        any::<u64>(),
        proptest::option::of(any::<u64>()),
        deps(),
        deps(),
        deps(),
        health,
    )
}

fn command() -> impl Strategy<Value = CommandSpec> {
    let log = prop_oneof![
        Just(LogTarget::Ring),
        Just(LogTarget::Console),
        text().prop_map(LogTarget::File)
    ];
    let kind = prop_oneof![Just(CommandKind::Task), Just(CommandKind::Service)];
    let restart = prop_oneof![
        Just(RestartPolicy::Never),
        Just(RestartPolicy::OnFailure),
        Just(RestartPolicy::Always)
    ];
    let strings = (
        text(),
        proptest::collection::vec(text(), 0..4),
        proptest::collection::vec((text(), text()), 0..3),
    );
    let opts = (
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(text()),
    );
    let nums = (
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        any::<i32>(),
        any::<u64>(),
    );
    (strings, kind, opts, log, restart, nums, readiness()).prop_map(
        |((name, argv, env), kind, (cwd, user, group), log, restart, n, r)| {
            let mut c = CommandSpec::new(name, kind, argv);
            c.env = env;
            (c.cwd, c.user, c.group, c.log, c.restart) = (cwd, user, group, log, restart);
            (
                c.backoff_initial_ms,
                c.backoff_max_ms,
                c.max_restarts,
                c.restart_window_ms,
            ) = (n.0, n.1, n.2, n.3);
            (c.min_uptime_ms, c.stop_signal, c.stop_grace_ms) = (n.4, n.5, n.6);
            (c.ready, c.ready_timeout_ms, c.watchdog_ms) = (r.0, r.1, r.2);
            (c.after, c.requires, c.wants, c.health) = (r.3, r.4, r.5, r.6);
            c
        },
    )
}

fn workspace() -> impl Strategy<Value = WorkspaceSpec> {
    let opt = || proptest::option::of(any::<u64>());
    let cpu = proptest::option::of((any::<u64>(), any::<u64>()).prop_map(|(q, p)| CpuMax {
        quota_us: q,
        period_us: p,
    }));
    let weights = (
        proptest::option::of(any::<u16>()),
        proptest::option::of(any::<u16>()),
    );
    let limits =
        (opt(), opt(), opt(), opt(), cpu, weights).prop_map(|(a, b, c, d, cpu_max, (cw, iw))| {
            Limits {
                memory_max: a,
                memory_high: b,
                memory_swap_max: c,
                pids_max: d,
                cpu_max,
                cpu_weight: cw,
                io_weight: iw,
            }
        });
    let oom = prop_oneof![Just(OomAction::Restart), Just(OomAction::StopWorkspace)];
    (
        text(),
        limits,
        opt(),
        oom,
        proptest::collection::vec(command(), 0..3),
        proptest::collection::vec(pipeline(), 0..2),
    )
        .prop_map(
            |(name, limits, ttl_ms, on_oom, commands, pipelines)| WorkspaceSpec {
                name,
                limits,
                ttl_ms,
                on_oom,
                commands,
                pipelines,
            },
        )
}

fn request() -> impl Strategy<Value = Request> {
    let stream = prop_oneof![
        Just(Stream::Stdout),
        Just(Stream::Stderr),
        Just(Stream::Both)
    ];
    let shutdown = prop_oneof![
        Just(ShutdownKind::Poweroff),
        Just(ShutdownKind::Reboot),
        Just(ShutdownKind::Halt)
    ];
    prop_oneof![
        (any::<u32>(), text()).prop_map(|(version, client)| Request::Hello { version, client }),
        Just(Request::Ping),
        Just(Request::Status),
        workspace().prop_map(|spec| Request::WsCreate { spec }),
        Just(Request::WsList),
        text().prop_map(|name| Request::WsShow { name }),
        (text(), proptest::option::of(any::<u64>()))
            .prop_map(|(name, grace_ms)| Request::WsStop { name, grace_ms }),
        (text(), text(), text()).prop_map(|(name, key, value)| Request::WsSet { name, key, value }),
        text().prop_map(|name| Request::WsStats { name }),
        (text(), command(), any::<bool>()).prop_map(|(workspace, command, wait)| Request::Run {
            workspace,
            command,
            wait
        }),
        proptest::option::of(text()).prop_map(|workspace| Request::Ps { workspace }),
        (text(), text(), stream, any::<bool>()).prop_map(|(workspace, command, stream, follow)| {
            Request::Logs {
                workspace,
                command,
                stream,
                follow,
            }
        }),
        (proptest::option::of(any::<u64>()), any::<bool>())
            .prop_map(|(after, follow)| Request::Events { after, follow }),
        Just(Request::Caps),
        shutdown.prop_map(|kind| Request::Shutdown { kind }),
        proptest::option::of(text()).prop_map(|binary| Request::DaemonReexec { binary }),
        Just(Request::TestPanic),
        (
            text(),
            proptest::option::of(text()),
            proptest::option::of(any::<u64>())
        )
            .prop_map(|(workspace, command, timeout_ms)| Request::WaitReady {
                workspace,
                command,
                timeout_ms
            }),
        (text(), text(), cmd_action()).prop_map(|(workspace, command, action)| {
            Request::Control {
                workspace,
                command,
                action,
            }
        }),
        pipeline().prop_map(|spec| Request::PipelineSave { spec }),
        Just(Request::PipelineList),
        text().prop_map(|name| Request::PipelineShow { name }),
        text().prop_map(|name| Request::PipelineRemove { name }),
        (text(), text()).prop_map(|(workspace, name)| Request::PipelineRun { workspace, name }),
        (text(), text()).prop_map(|(workspace, name)| Request::PipelineStop { workspace, name }),
        proptest::option::of(text()).prop_map(|workspace| Request::PipelinePs { workspace }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn test_decode_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        // Only the absence of a panic is under test; any Ok or Err is acceptable.
        let _ = decode_payload::<Request>(&bytes);
        let _ = decode_payload::<Response>(&bytes);
        let _ = split_frame(&bytes);
    }

    #[test]
    fn test_split_frame_never_reads_past_its_input(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        match split_frame(&bytes) {
            Ok(Some((used, payload))) => {
                prop_assert!(used <= bytes.len());
                prop_assert_eq!(payload.len() + HEADER_LEN, used);
            }
            Ok(None) => {
                let short = bytes.len() < HEADER_LEN
                    || bytes.len() < HEADER_LEN + u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
                prop_assert!(short);
            }
            Err(FrameError::TooLarge(n)) => prop_assert!(n > MAX_FRAME),
            Err(e) => prop_assert!(false, "split_frame only reports TooLarge, got {:?}", e),
        }
    }

    #[test]
    fn test_request_round_trips_through_a_frame(req in request()) {
        let frame = encode_frame(&req);

        let (used, payload) = split_frame(&frame).unwrap().unwrap();
        let back: Request = decode_payload(payload).unwrap();

        prop_assert_eq!(used, frame.len());
        prop_assert_eq!(back, req);
    }

    #[test]
    fn test_truncated_request_frame_needs_more_or_fails_cleanly(req in request(), cut in any::<prop::sample::Index>()) {
        let frame = encode_frame(&req);
        let at = cut.index(frame.len());

        let split = split_frame(&frame[..at]);
        let payload_cut = &frame[HEADER_LEN.min(at)..at];

        prop_assert_eq!(split, Ok(None));
        prop_assert!(at == frame.len() || decode_payload::<Request>(payload_cut) != Ok(req));
    }
}

#[test]
fn test_request_strategy_generates_every_variant() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = request();
    let mut seen = [false; VARIANTS];

    for _ in 0..5_000 {
        let req = strategy.new_tree(&mut runner).unwrap().current();
        seen[variant(&req)] = true;
    }

    let missing: Vec<usize> = (0..VARIANTS).filter(|&i| !seen[i]).collect();
    assert!(missing.is_empty(), "variants never generated: {missing:?}");
}
