//! Pipeline throughput through arje's pipes against a shell pipeline of the same
//! programs, rounds interleaved (issue 13):
//!
//! - chain: `head -c N /dev/zero | tr '\0' a | wc -c`. arje only wires the pipes, so
//!   the two should be the same;
//! - fan-out: `head -c N /dev/zero` read by two `wc -c`. arje copies every chunk to both
//!   readers; the shell's peer is `tee` with a process substitution (bash), which copies
//!   in user space too.
//!
//! arje's time runs from the `WsCreate` request to the `PipelineFinished` event; the
//! shell's from spawn to exit. Both include starting the processes.
//!
//! Usage: `cargo build --release -p arje-init && cargo run --release -p arje-bench --bin
//! pipeline [BYTES] [ROUNDS]` (default 1 GiB, 5 rounds).

use std::process::Command;
use std::time::{Duration, Instant};

use arje_bench::{Client, Daemon};
use shuma_card::pipeline::{Edge, PipelineSpec};
use shuma_card::protocol::{Request, Response};
use shuma_card::{CommandKind, CommandSpec, EventKind, WorkspaceSpec};

fn node(name: &str, argv: &[&str]) -> CommandSpec {
    CommandSpec::new(
        name,
        CommandKind::Task,
        argv.iter().map(|s| s.to_string()).collect(),
    )
}

fn chain(bytes: u64) -> PipelineSpec {
    let mut p = PipelineSpec::new("chain");
    let n = bytes.to_string();
    p.nodes = vec![
        node("zeros", &["/usr/bin/head", "-c", &n, "/dev/zero"]),
        node("as", &["/usr/bin/tr", "\\000", "a"]),
        node("count", &["/usr/bin/wc", "-c"]),
    ];
    p.edges = p.chain();
    p
}

fn fanout(bytes: u64) -> PipelineSpec {
    let mut p = PipelineSpec::new("fan");
    let n = bytes.to_string();
    p.nodes = vec![
        node("zeros", &["/usr/bin/head", "-c", &n, "/dev/zero"]),
        node("one", &["/usr/bin/wc", "-c"]),
        node("two", &["/usr/bin/wc", "-c"]),
    ];
    p.edges = ["zeros -> one", "zeros -> two"]
        .iter()
        .map(|e| Edge::parse(e).unwrap())
        .collect();
    p
}

/// One run of `p` in a new workspace: from the request to its `PipelineFinished`.
fn through_arje(d: &Daemon, round: usize, p: PipelineSpec) -> Duration {
    let name = format!("b{round}-{}", p.name);
    let pipeline = p.name.clone();
    let mut events = Client::connect(&d.socket);
    events.send(&Request::Events {
        after: Some(u64::MAX >> 1),
        follow: true,
    });
    // Everything before now: the follow starts at the journal's end.
    let mut c = Client::connect(&d.socket);
    let spec = WorkspaceSpec {
        name: name.clone(),
        pipelines: vec![p],
        ..Default::default()
    };
    let start = Instant::now();
    match c.call(&Request::WsCreate { spec }) {
        Response::Created { .. } => {}
        other => panic!("create: {other:?}"),
    }
    'wait: loop {
        match events.recv() {
            Response::Events(evs) => {
                for e in evs {
                    if let EventKind::PipelineFinished {
                        workspace,
                        pipeline: p,
                    } = &e.kind
                    {
                        if *workspace == name && *p == pipeline {
                            break 'wait;
                        }
                    }
                    if let EventKind::PipelineFailed { reason, .. } = &e.kind {
                        panic!("pipeline failed: {reason}");
                    }
                }
            }
            other => panic!("events: {other:?}"),
        }
    }
    let took = start.elapsed();
    c.send(&Request::WsStop {
        name,
        grace_ms: None,
    });
    loop {
        if matches!(c.recv(), Response::Ok) {
            break;
        }
    }
    took
}

fn through_shell(shell: &str, script: &str) -> Duration {
    let start = Instant::now();
    let status = Command::new(shell)
        .arg("-c")
        .arg(script)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run the shell");
    assert!(status.success(), "{script}");
    start.elapsed()
}

fn stats(v: &mut [Duration]) -> (f64, f64, f64) {
    v.sort();
    let s = |d: Duration| d.as_secs_f64();
    (s(v[0]), s(v[v.len() / 2]), s(v[v.len() - 1]))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bytes: u64 = args.first().map_or(1 << 30, |a| a.parse().expect("BYTES"));
    let rounds: usize = args.get(1).map_or(5, |a| a.parse().expect("ROUNDS"));
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let chain_sh = format!("head -c {bytes} /dev/zero | tr '\\000' a | wc -c");
    let fan_sh = format!("head -c {bytes} /dev/zero | tee >(wc -c >/dev/null) | wc -c");
    let (mut a_chain, mut s_chain, mut a_fan, mut s_fan) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        a_chain.push(through_arje(&d, round, chain(bytes)));
        s_chain.push(through_shell("/bin/sh", &chain_sh));
        a_fan.push(through_arje(&d, round, fanout(bytes)));
        s_fan.push(through_shell("/bin/bash", &fan_sh));
    }
    let mib = bytes as f64 / (1 << 20) as f64;
    println!("== pipeline throughput: {mib:.0} MiB, {rounds} interleaved rounds (seconds min / median / max, MiB/s at the median) ==");
    for (what, v) in [
        ("chain, arje's pipes         ", &mut a_chain),
        ("chain, sh pipeline          ", &mut s_chain),
        ("fan-out x2, arje copies     ", &mut a_fan),
        ("fan-out x2, bash tee >(...) ", &mut s_fan),
    ] {
        let (lo, med, hi) = stats(v);
        println!(
            "{what} {lo:7.3} / {med:7.3} / {hi:7.3} s   {:7.0} MiB/s",
            mib / med
        );
    }
    let (_, a, _) = stats(&mut a_chain);
    let (_, s, _) = stats(&mut s_chain);
    let (_, af, _) = stats(&mut a_fan);
    let (_, sf, _) = stats(&mut s_fan);
    println!("ratio arje/sh: chain {:.2}, fan-out {:.2}", a / s, af / sf);
}
