//! Readiness and dependencies (issue 10): the time from the first spawn to "all ready"
//! for 100 services in 10 levels of 10, each level `after` the one before, against the
//! critical path of the services' own readiness times. The difference is what arje adds:
//! noticing a dependency settled, and spawning what waited for it.
//!
//! The services (`notifier.rs`): this binary again, as `ready_chain --notify-helper
//! DELAY_US`, sleeps DELAY_US from the top of its `main`, sends `READY=1` (and a
//! `STATUS=` with its CLOCK_MONOTONIC marks) to `NOTIFY_SOCKET`, then waits for its stop
//! signal. Other variants run the same in a static C program (`notify.c`, cheap to
//! start), `sh -c 'sleep D; systemd-notify --ready; exec sleep 3600'` (the way a card
//! usually does it), or, with `ready = "started"`, a static program that only pauses.
//! Each notifier is first timed alone, outside arje, and 100 raw spawns in a row are
//! timed without arje, as baselines.
//!
//! Times come from the journal: `mono_us` of `CommandStarted` (stamped right after the
//! spawn returned, the program exec'd) and `CommandReady` (stamped when arje handled the
//! `READY=1`), on the same CLOCK_MONOTONIC as this process's own marks. Per round
//! (`figures.rs`):
//! - total: first `CommandStarted` to last `CommandReady`;
//! - critical path: the longest path through the `after` graph where each service
//!   weighs its own readiness time (its `CommandStarted` to its `CommandReady`);
//! - overhead = total - critical path: what the ordering costs, i.e. the time from a
//!   service's last dependency being ready to its own spawn, summed along the path;
//! - arje's own CPU time (its threads' schedstat), which the machine's load does not
//!   inflate the way it inflates wall times.
//!
//! Rounds interleave the variants so that load hits them alike.
//!
//! Run: `cargo build --release -p arje-init && cargo run --release -p arje-bench --bin
//! ready_chain [ROUNDS] [DELAY_MS] [LEVELS] [WIDTH]` (default 5 rounds, 20 ms, 10 levels
//! of 10; a workspace holds at most 256 commands).

mod figures;
mod notifier;

use std::collections::HashMap;

use arje_bench::{Client, Daemon};
use shuma_card::protocol::{Request, Response};
use shuma_card::{
    CommandKind, CommandSpec, DepRef, Event, EventKind, Readiness, RestartPolicy, WorkspaceSpec,
};

use figures::{figures, parse_marks, pick, row_pool, row_rounds, sorted, Figures, Pool, Round};
use notifier::{
    argv, build_notify_c, helper, mono_us, notifier_alone, raw_spawns, Program, Programs,
    HELPER_ARG,
};

/// Levels of the chain, and services per level (default 10 and 10).
#[derive(Clone, Copy)]
struct Shape {
    levels: usize,
    width: usize,
}

impl Shape {
    fn services(self) -> usize {
        self.levels * self.width
    }
}

/// CPU time of every thread of process `pid` so far, in microseconds, from
/// `/proc/PID/task/*/schedstat` (its first field: nanoseconds on a CPU). The spawned
/// children are other tasks: what this counts is arje's own work.
fn cpu_us(pid: u32) -> u64 {
    let mut ns = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("read /proc/PID/task") {
        let path = task.unwrap().path().join("schedstat");
        if let Ok(text) = std::fs::read_to_string(path) {
            ns += text
                .split(' ')
                .next()
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    ns / 1000
}

#[derive(Clone, Copy, PartialEq)]
enum Topology {
    /// Each service of level k is after all of level k-1 (900 edges for 10 x 10).
    FanIn,
    /// Service j of level k is after service j of level k-1: parallel chains.
    Chains,
    /// No `after` at all.
    Flat,
}

impl Topology {
    /// The services of level `k - 1` that service `j` of level `k` is after.
    fn deps(self, shape: Shape, k: usize, j: usize) -> Vec<usize> {
        match (self, k) {
            (_, 0) | (Topology::Flat, _) => Vec::new(),
            (Topology::FanIn, _) => (0..shape.width).collect(),
            (Topology::Chains, _) => vec![j],
        }
    }
}

struct Variant {
    label: &'static str,
    /// For the summary table.
    short: &'static str,
    ready: Readiness,
    topology: Topology,
    program: Program,
}

fn name(k: usize, j: usize) -> String {
    format!("l{k}s{j}")
}

fn spec(ws: &str, v: &Variant, shape: Shape, programs: &Programs, delay_us: u64) -> WorkspaceSpec {
    let mut commands = Vec::new();
    for k in 0..shape.levels {
        for j in 0..shape.width {
            let mut c = CommandSpec::new(
                name(k, j),
                CommandKind::Service,
                argv(v.program, programs, delay_us),
            );
            c.ready = v.ready.clone();
            c.restart = RestartPolicy::Never;
            c.after = v
                .topology
                .deps(shape, k, j)
                .into_iter()
                .map(|d| DepRef::parse(&name(k - 1, d)).unwrap())
                .collect();
            commands.push(c);
        }
    }
    WorkspaceSpec {
        name: ws.into(),
        commands,
        ..Default::default()
    }
}

/// Create the workspace, wait for it to be ready, read its journal, stop it.
fn round(daemon: &Daemon, ws: &str, spec: WorkspaceSpec) -> Round {
    let services = spec.commands.len();
    let socket = &daemon.socket;
    let pid = daemon.child.id();
    let mut ctl = Client::connect(socket);
    let Response::Status(status) = ctl.call(&Request::Status) else {
        panic!("Status");
    };
    // Follow the journal from here; what the create journals reaches this connection
    // whenever it subscribes, since `after` replays anything newer.
    let mut events = Client::connect(socket);
    events.send(&Request::Events {
        after: Some(status.last_event_id),
        follow: true,
    });
    let cpu_before = cpu_us(pid);
    let sent = mono_us();
    match ctl.call(&Request::WsCreate { spec }) {
        Response::Created { failed, .. } => assert!(failed.is_empty(), "{failed:?}"),
        other => panic!("ws create: {other:?}"),
    }
    let answer = ctl.call(&Request::WaitReady {
        workspace: ws.into(),
        command: None,
        timeout_ms: Some(60_000),
    });
    let answered = mono_us();
    let cpu = cpu_us(pid) - cpu_before;
    assert_eq!(answer, Response::Ok, "WaitReady");

    let mut started = HashMap::new();
    let mut ready = HashMap::new();
    while ready.len() < services {
        let Response::Events(evs) = events.recv() else {
            panic!("expected events");
        };
        for Event {
            mono_us: at, kind, ..
        } in evs
        {
            match kind {
                EventKind::CommandStarted {
                    workspace, command, ..
                } if workspace == ws => {
                    assert!(started.insert(command, at).is_none(), "started twice");
                }
                EventKind::CommandReady {
                    workspace, command, ..
                } if workspace == ws => {
                    ready.insert(command, at);
                }
                EventKind::CommandExited { ref workspace, .. }
                | EventKind::CommandNotReady { ref workspace, .. }
                | EventKind::SpawnFailed { ref workspace, .. }
                    if workspace == ws =>
                {
                    panic!("a service did not come up: {kind:?}")
                }
                _ => {}
            }
        }
    }
    drop(events);

    let mut marks = HashMap::new();
    ctl.send(&Request::Ps {
        workspace: Some(ws.into()),
    });
    loop {
        match ctl.recv() {
            Response::Commands(page) => {
                for c in page {
                    if let Some(m) = c.status.as_deref().and_then(parse_marks) {
                        marks.insert(c.name, m);
                    }
                }
            }
            Response::End => break,
            other => panic!("ps: {other:?}"),
        }
    }
    let stop = ctl.call(&Request::WsStop {
        name: ws.into(),
        grace_ms: Some(2000),
    });
    assert_eq!(stop, Response::Ok, "ws stop");
    Round {
        sent,
        answered,
        cpu,
        started,
        ready,
        marks,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(HELPER_ARG) {
        helper(args[2].parse().expect("DELAY_US"));
    }
    let rounds: usize = args.get(1).map_or(5, |a| a.parse().expect("ROUNDS"));
    let delay_ms: u64 = args.get(2).map_or(20, |a| a.parse().expect("DELAY_MS"));
    let delay_us = delay_ms * 1000;
    let shape = Shape {
        levels: args.get(3).map_or(10, |a| a.parse().expect("LEVELS")),
        width: args.get(4).map_or(10, |a| a.parse().expect("WIDTH")),
    };
    assert!(
        shape.services() <= 256,
        "a workspace holds at most 256 commands"
    );
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let pause = arje_bench::tiny_static(dir.path(), "pause", "for (;;) sys1(34, 0);");
    let programs = Programs {
        helper: exe.to_str().unwrap().to_string(),
        notify_c: build_notify_c(dir.path()),
        pause: pause.to_str().unwrap().to_string(),
    };

    let variants = [
        Variant {
            label: "notify, each after all of the level before, Rust helper",
            short: "notify after-all helper",
            ready: Readiness::Notify,
            topology: Topology::FanIn,
            program: Program::Helper,
        },
        Variant {
            label: "notify, parallel chains (each after one), Rust helper",
            short: "notify chains helper",
            ready: Readiness::Notify,
            topology: Topology::Chains,
            program: Program::Helper,
        },
        Variant {
            label: "notify, each after all, static C notifier",
            short: "notify after-all C",
            ready: Readiness::Notify,
            topology: Topology::FanIn,
            program: Program::StaticC,
        },
        Variant {
            label: "notify, each after all, sh + systemd-notify",
            short: "notify after-all sh",
            ready: Readiness::Notify,
            topology: Topology::FanIn,
            program: Program::Shell,
        },
        Variant {
            label: "started, each after all, Rust helper",
            short: "started after-all helper",
            ready: Readiness::Started,
            topology: Topology::FanIn,
            program: Program::Helper,
        },
        Variant {
            label: "started, no after (all at once), Rust helper",
            short: "started no-after helper",
            ready: Readiness::Started,
            topology: Topology::Flat,
            program: Program::Helper,
        },
        Variant {
            label: "started, each after all, static pause(2) program",
            short: "started after-all pause",
            ready: Readiness::Started,
            topology: Topology::FanIn,
            program: Program::Pause,
        },
        Variant {
            label: "started, no after, static pause(2) program",
            short: "started no-after pause",
            ready: Readiness::Started,
            topology: Topology::Flat,
            program: Program::Pause,
        },
    ];

    let load = || {
        let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        l.split(' ').take(3).collect::<Vec<_>>().join(" ")
    };
    println!(
        "{} levels of {} services, D = {delay_ms} ms, {rounds} rounds; load average at start: {}",
        shape.levels,
        shape.width,
        load()
    );

    println!(
        "\n== the notifier alone, outside arje: spawn returned -> READY=1 received (20 reps) =="
    );
    println!("  {:<44} {:>9} {:>9} {:>9}", "us", "median", "p90", "max");
    for (label, program) in [
        ("Rust helper (sleep D, send)", Program::Helper),
        ("static C notifier (sleep D, send)", Program::StaticC),
        ("sh: sleep D; systemd-notify --ready", Program::Shell),
    ] {
        notifier_alone(program, &programs, delay_us, 3);
        let s = notifier_alone(program, &programs, delay_us, 20);
        row_pool(label, &s);
        let less_d: Vec<f64> = s.iter().map(|x| x - delay_us as f64).collect();
        row_pool("  the same less D", &less_d);
    }

    let daemon = Daemon::start(dir.path(), &[]);
    // Warm-up: one round of the first variant, not recorded.
    round(
        &daemon,
        "warm",
        spec("warm", &variants[0], shape, &programs, delay_us),
    );
    // Rounds interleave the variants, so that the machine's load hits them alike.
    let mut results: Vec<Vec<Figures>> = variants.iter().map(|_| Vec::new()).collect();
    let mut pools: Vec<Pool> = variants.iter().map(|_| Pool::default()).collect();
    // The raw spawns are measured in each round too, beside arje under the same load.
    let raw_programs = [
        ("the Rust helper", Program::Helper),
        ("the static C notifier", Program::StaticC),
        ("a static pause(2) program", Program::Pause),
    ];
    let mut raw: Vec<Vec<f64>> = raw_programs.iter().map(|_| Vec::new()).collect();
    for (_, program) in raw_programs {
        raw_spawns(program, &programs, delay_us, shape.services());
    }
    for i in 0..rounds {
        for (n, v) in variants.iter().enumerate() {
            let ws = format!("v{n}-r{i}");
            let r = round(&daemon, &ws, spec(&ws, v, shape, &programs, delay_us));
            results[n].push(figures(&r, v.topology, shape, &mut pools[n]));
        }
        for (n, (_, program)) in raw_programs.iter().enumerate() {
            raw[n].push(raw_spawns(*program, &programs, delay_us, shape.services()));
        }
    }

    println!(
        "\n== {} raw spawns in a row, kept running, no arje (clone3 as arje does; once per round) ==",
        shape.services()
    );
    println!("  {:<44} {:>9} {:>9} {:>9}", "ms", "min", "median", "max");
    for (n, (label, _)) in raw_programs.iter().enumerate() {
        row_rounds(label, &raw[n]);
    }

    let mut summary = Vec::new();
    for (n, v) in variants.iter().enumerate() {
        let f = &results[n];
        let p = &pools[n];
        let get = |g: fn(&Figures) -> f64| f.iter().map(g).collect::<Vec<f64>>();
        let total = get(|f| f.total);
        let critical = get(|f| f.critical);
        let overhead: Vec<f64> = f.iter().map(|f| f.total - f.critical).collect();
        let per_level: Vec<f64> = overhead.iter().map(|o| o / shape.levels as f64).collect();
        let sent: Vec<f64> = f.iter().filter_map(|f| f.critical_sent).collect();
        let over_sent: Vec<f64> = f
            .iter()
            .filter_map(|f| Some(f.total - f.critical_sent?))
            .collect();
        let answer = get(|f| f.create_to_answer);
        let cpu = get(|f| f.cpu);
        println!("\n== {} ==", v.label);
        println!(
            "  {:<44} {:>9} {:>9} {:>9}",
            "per round, ms", "min", "median", "max"
        );
        row_rounds("first start -> last ready (total)", &total);
        row_rounds("critical path of own readiness (journal)", &critical);
        row_rounds("overhead = total - critical path", &overhead);
        row_rounds("overhead per level", &per_level);
        if !sent.is_empty() {
            row_rounds("critical path to READY=1 sent (marks)", &sent);
            row_rounds("overhead = total - that", &over_sent);
        }
        row_rounds(
            "WsCreate sent -> first CommandStarted",
            &get(|f| f.create_to_first_start),
        );
        row_rounds("WsCreate sent -> WaitReady answered", &answer);
        row_rounds("arje's CPU time, WsCreate -> WaitReady", &cpu);
        println!(
            "  {:<44} {:>9} {:>9} {:>9}",
            "per service, all rounds, us", "median", "p90", "max"
        );
        row_pool("own readiness (Started -> Ready)", &p.own);
        row_pool("  Started -> notifier's main", &p.exec);
        row_pool("  notifier sent READY=1 -> CommandReady", &p.notice);
        row_pool("last dependency ready -> Started", &p.dispatch);
        row_pool("  per level: the first of the level", &p.handoff);
        row_pool("per level: first Started -> last Started", &p.spread);
        let med = |v: &[f64]| {
            if v.is_empty() {
                f64::NAN
            } else {
                pick(&sorted(v), 0.5)
            }
        };
        summary.push((
            v.short,
            [
                med(&total) / 1e3,
                med(&critical) / 1e3,
                med(&overhead) / 1e3,
                med(&per_level) / 1e3,
                med(&over_sent) / 1e3,
                med(&cpu) / 1e3,
                med(&p.handoff),
                med(&p.spread) / 1e3,
            ],
        ));
    }

    println!("\n== summary: medians over {rounds} rounds ==");
    let header = [
        ("total", "ms"),
        ("crit.", "ms"),
        ("overh.", "ms"),
        ("/level", "ms"),
        ("ovh.sent", "ms"),
        ("arje CPU", "ms"),
        ("handoff", "us"),
        ("spread", "ms"),
    ];
    for line in 0..2 {
        let cells: String = header
            .iter()
            .map(|(name, unit)| format!("{:>9}", if line == 0 { name } else { unit }))
            .collect();
        println!("{:<25}{cells}", if line == 0 { "variant" } else { "" });
    }
    for (short, f) in summary {
        let cells: String = f
            .iter()
            .enumerate()
            .map(|(i, x)| match (x.is_nan(), i) {
                (true, _) => format!("{:>9}", "-"),
                (false, 3) => format!("{x:>9.2}"),
                (false, 6) => format!("{x:>9.0}"),
                (false, _) => format!("{x:>9.1}"),
            })
            .collect();
        println!("{short:<25}{cells}");
    }
    println!("\nload average at the end: {}", load());
}
