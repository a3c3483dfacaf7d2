//! What was acknowledged is never lost, and nothing runs unmanaged: a client churns
//! (creates workspaces, runs commands in them, stops older ones) and the daemon is
//! SIGKILLed right after the N-th acknowledged reply, for several N; restarted on the
//! same state directory, it has every workspace and command it acknowledged.
//!
//! This host has no usable cgroup v2 tree, so the other half of the crash guarantee
//! (processes started but never acknowledged are found again in the cgroup tree and
//! adopted or killed) is proven by the fake-cgroupfs unit test in
//! `arje-runtime/src/runtime/tests.rs`, not here.

use std::collections::BTreeSet;

use arje_tests::faults::KillAtReply;
use arje_tests::host::Daemon;
use shuma_card::protocol::{Request, Response};
use shuma_card::{CommandKind, CommandSpec, WorkspaceSpec};

/// What the daemon acknowledged before it was killed.
#[derive(Debug, Default)]
struct Acked {
    created: BTreeSet<String>,
    stopped: BTreeSet<String>,
    /// (workspace, command id) of each `run` answered with `Started`.
    started: Vec<(String, u64)>,
}

/// Churn until the `n`-th acknowledged reply, then SIGKILL the daemon: in round `i`,
/// create `w<i>`, run a short sleep in it, and every third round stop `w<i-2>`.
fn churn_until_killed(d: &mut Daemon, n: usize) -> Acked {
    let mut c = d.client();
    let mut kill = KillAtReply::new(n);
    let mut acked = Acked::default();
    for i in 0.. {
        let name = format!("w{i}");
        let spec = WorkspaceSpec {
            name: name.clone(),
            ..Default::default()
        };
        match c.call(Request::WsCreate { spec }) {
            Response::Created { .. } => acked.created.insert(name.clone()),
            other => panic!("create {name}: {other:?}"),
        };
        if kill.ack(d) {
            return acked;
        }
        let command =
            CommandSpec::new("", CommandKind::Task, vec!["/bin/sleep".into(), "2".into()]);
        let run = Request::Run {
            workspace: name.clone(),
            command,
            wait: false,
        };
        match c.call(run) {
            Response::Started { id, .. } => acked.started.push((name.clone(), id)),
            other => panic!("run in {name}: {other:?}"),
        }
        if kill.ack(d) {
            return acked;
        }
        if i % 3 == 2 {
            let old = format!("w{}", i - 2);
            let stop = Request::WsStop {
                name: old.clone(),
                grace_ms: Some(0),
            };
            match c.call(stop) {
                Response::Ok => acked.stopped.insert(old),
                other => panic!("stop {old}: {other:?}"),
            };
            if kill.ack(d) {
                return acked;
            }
        }
    }
    unreachable!()
}

#[test]
fn test_kill9_after_nth_acknowledged_reply_loses_nothing_acknowledged() {
    // The points: early, inside the first bursts, and deep in the churn, landing on
    // each kind of reply (create, run, stop).
    for n in [2, 6, 9, 20, 31, 44] {
        // Arrange
        let state = tempfile::tempdir().unwrap();
        let run = state.path().join("run");
        let args = ["--state-dir", run.to_str().unwrap()];
        let mut first = Daemon::start_with(&[], &args);

        // Act
        let acked = churn_until_killed(&mut first, n);
        let second = Daemon::start_with(&[], &args);
        let mut c = second.client();
        let listed: BTreeSet<String> = match c.call(Request::WsList) {
            Response::Workspaces(list) => list.into_iter().map(|w| w.name).collect(),
            other => panic!("ws ls: {other:?}"),
        };
        let commands: BTreeSet<(String, u64)> = c
            .ps(None)
            .into_iter()
            .map(|cmd| (cmd.workspace, cmd.id))
            .collect();

        // Assert
        for name in acked.created.difference(&acked.stopped) {
            assert!(
                listed.contains(name),
                "kill after reply {n}: workspace {name} was acknowledged but is gone; \
                 listed {listed:?}"
            );
        }
        for name in &acked.stopped {
            assert!(
                !listed.contains(name),
                "kill after reply {n}: the stop of {name} was acknowledged but it is back"
            );
        }
        for started in acked
            .started
            .iter()
            .filter(|(ws, _)| !acked.stopped.contains(ws))
        {
            assert!(
                commands.contains(started),
                "kill after reply {n}: run {started:?} was acknowledged but is gone"
            );
        }
        drop(c);
        drop(second);
    }
}
