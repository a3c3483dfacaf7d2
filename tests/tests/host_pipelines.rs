//! Pipelines (issue 13), through the real binary: bytes move through the pipes arje
//! wires without passing through arje, a failing node restarts the whole pipeline with a
//! growing backoff until `restart_max`, fan-out and fan-in keep every source's bytes in
//! order, a stop goes source first so a sink drains, a reader that falls behind loses
//! bytes that are counted, and saved pipelines survive a restart of the daemon.

use arje_tests::host::{err, out, Daemon};
use shuma_card::{EventKind, ExitStatus};

/// `/proc/PID/status` field `key` in kB.
fn status_kb(pid: i32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} in /proc/{pid}/status"))
}

/// The stdout ring of `ws/command`, whole.
fn stdout_of(d: &Daemon, ws: &str, command: &str) -> String {
    let o = d.shuma(&["logs", ws, command, "--stream", "out"]);
    assert!(o.status.success(), "{}", err(&o));
    out(&o)
}

fn finished(k: &EventKind, name: &str) -> bool {
    matches!(k, EventKind::PipelineFinished { pipeline, .. } if pipeline == name)
}

#[test]
fn test_pipeline_three_stages_move_1gib_with_arje_rss_flat() {
    // Arrange: zeros, turned into 'a's, counted. Every byte goes through two pipes that
    // connect the nodes directly; arje only wired them.
    let d = Daemon::start();
    let card = r#"
[workspace]
name = "big"

[[pipeline]]
name = "gib"

[[pipeline.node]]
name = "zeros"
argv = ["/usr/bin/head", "-c", "1073741824", "/dev/zero"]

[[pipeline.node]]
name = "as"
argv = ["/usr/bin/tr", "\\000", "a"]

[[pipeline.node]]
name = "count"
argv = ["/usr/bin/wc", "-c"]
"#;
    let before = status_kb(d.pid(), "VmHWM:");

    // Act
    let created = d.ws_create("big.toml", card);
    assert!(created.status.success(), "{}", err(&created));
    d.events_until(1, |k| finished(k, "gib"));

    // Assert: every byte arrived, and arje's peak RSS did not grow with the data.
    assert_eq!(stdout_of(&d, "big", "gib.count").trim(), "1073741824");
    let after = status_kb(d.pid(), "VmHWM:");
    assert!(
        after < before + 4 * 1024,
        "arje's peak RSS grew from {before} kB to {after} kB moving 1 GiB"
    );
}

#[test]
fn test_pipeline_failing_middle_node_restarts_whole_with_growing_backoff_until_restart_max() {
    // Arrange: the middle node reads its input, complains and fails every time.
    let d = Daemon::start();
    let card = r#"
[workspace]
name = "w"

[[pipeline]]
name = "p"
restart_max = 3
backoff = { initial = "50ms", max = "1s" }

[[pipeline.node]]
name = "src"
argv = ["/usr/bin/seq", "1", "100"]

[[pipeline.node]]
name = "mid"
argv = ["/bin/sh", "-c", "cat >/dev/null; echo bad row >&2; exit 3"]

[[pipeline.node]]
name = "sink"
argv = ["/bin/cat"]
"#;

    // Act
    let created = d.ws_create("w.toml", card);
    assert!(created.status.success(), "{}", err(&created));
    let events = d.events_until(1, |k| matches!(k, EventKind::PipelineFailed { .. }));

    // Assert: three restarts, each delay double the last, then failed naming `mid` and
    // its stderr; each run started every node again.
    let restarts: Vec<(u64, u32, String)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::PipelineRestarting {
                delay_ms,
                restarts,
                node,
                ..
            } => Some((*delay_ms, *restarts, node.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        restarts,
        [
            (50, 1, "mid".to_string()),
            (100, 2, "mid".to_string()),
            (200, 3, "mid".to_string())
        ]
    );
    let failed = events.last().unwrap();
    match &failed.kind {
        EventKind::PipelineFailed { node, reason, .. } => {
            assert_eq!(node, "mid");
            assert!(
                reason.contains("exit 3") && reason.contains("bad row"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    for node in ["p.src", "p.mid", "p.sink"] {
        let starts = events
            .iter()
            .filter(
                |e| matches!(&e.kind, EventKind::CommandStarted { command, .. } if command == node),
            )
            .count();
        assert_eq!(starts, 4, "{node} started {starts} times");
    }
    let ls = d.shuma(&["pipeline", "ls", "--workspace", "w"]);
    assert!(out(&ls).contains("failed"), "{}", out(&ls));
}

/// A node that writes `N` numbered lines, `PREFIX0` to `PREFIX{N-1}`, one write each.
fn lines_node(name: &str, prefix: &str, n: u32) -> String {
    format!(
        "[[pipeline.node]]\nname = \"{name}\"\nargv = [\"/bin/sh\", \"-c\", \"i=0; while [ $i -lt {n} ]; do echo {prefix}$i; i=$((i+1)); done\"]\n"
    )
}

#[test]
fn test_pipeline_fan_out_and_fan_in_deliver_every_byte_in_order_per_source() {
    // Arrange: `a` feeds two readers (fan-out through arje); `a` and `b` both feed
    // `merge` (fan-in on one pipe).
    let d = Daemon::start();
    let card = format!(
        "[workspace]\nname = \"f\"\n\n[[pipeline]]\nname = \"g\"\nedges = [\"a -> copy1\", \"a -> copy2\", \"a -> merge\", \"b -> merge\"]\n{}{}\n[[pipeline.node]]\nname = \"copy1\"\nargv = [\"/bin/cat\"]\n\n[[pipeline.node]]\nname = \"copy2\"\nargv = [\"/bin/cat\"]\n\n[[pipeline.node]]\nname = \"merge\"\nargv = [\"/bin/cat\"]\n",
        lines_node("a", "a", 2000),
        lines_node("b", "b", 2000),
    );

    // Act
    let created = d.ws_create("f.toml", &card);
    assert!(created.status.success(), "{}", err(&created));
    d.events_until(1, |k| finished(k, "g"));

    // Assert: both copies hold all of a, in order; the merge holds all of a and all of
    // b, each in its own order, interleaved.
    let a: Vec<String> = (0..2000).map(|i| format!("a{i}")).collect();
    let b: Vec<String> = (0..2000).map(|i| format!("b{i}")).collect();
    for copy in ["g.copy1", "g.copy2"] {
        let got: Vec<String> = stdout_of(&d, "f", copy).lines().map(String::from).collect();
        assert_eq!(got, a, "{copy}");
    }
    let merged: Vec<String> = stdout_of(&d, "f", "g.merge")
        .lines()
        .map(String::from)
        .collect();
    let only = |p: &str| -> Vec<String> {
        merged
            .iter()
            .filter(|l| l.starts_with(p))
            .cloned()
            .collect()
    };
    assert_eq!(merged.len(), 4000);
    assert_eq!(only("a"), a);
    assert_eq!(only("b"), b);
    let ls = d.shuma(&["pipeline", "ls", "--workspace", "f"]);
    assert!(out(&ls).contains("done"), "{}", out(&ls));
}

#[test]
fn test_pipeline_stop_goes_source_first_and_the_sink_drains() {
    // Arrange: an endless source and a sink that reports how much it read at its end of
    // file. A stop signal sent to the sink as well would end it without the report.
    let d = Daemon::start();
    let card = r#"
[workspace]
name = "s"

[[pipeline]]
name = "p"

[[pipeline.node]]
name = "src"
argv = ["/bin/sh", "-c", "while :; do echo x; done"]

[[pipeline.node]]
name = "sink"
argv = ["/bin/sh", "-c", "n=0; while read l; do n=$((n+1)); done; echo drained $n"]
"#;
    let created = d.ws_create("s.toml", card);
    assert!(created.status.success(), "{}", err(&created));
    d.events_until(
        1,
        |k| matches!(k, EventKind::CommandStarted { command, .. } if command == "p.src"),
    );

    // Act
    let stopped = d.shuma(&["pipeline", "stop", "s", "p"]);
    assert!(stopped.status.success(), "{}", err(&stopped));
    let events = d.events_until(1, |k| finished(k, "p"));

    // Assert: the source died of its stop signal, the sink exited 0 after draining.
    let exit_of = |name: &str| {
        events.iter().find_map(|e| match &e.kind {
            EventKind::CommandExited {
                command, status, ..
            } if command == name => Some(*status),
            _ => None,
        })
    };
    assert_eq!(exit_of("p.src"), Some(ExitStatus::Signal(15)));
    assert_eq!(exit_of("p.sink"), Some(ExitStatus::Code(0)));
    assert!(stdout_of(&d, "s", "p.sink").starts_with("drained "));
}

#[test]
fn test_pipeline_fan_out_reader_that_falls_behind_loses_counted_bytes_others_get_all() {
    // Arrange: 4 MiB fanned out to a counter and to a reader that never reads, with
    // 64 KiB of buffer per edge.
    let d = Daemon::start();
    let card = r#"
[workspace]
name = "d"

[[pipeline]]
name = "p"
fanout_buffer = "64K"
edges = ["src -> fast", "src -> stuck"]

[[pipeline.node]]
name = "src"
argv = ["/usr/bin/head", "-c", "4194304", "/dev/zero"]

[[pipeline.node]]
name = "fast"
argv = ["/usr/bin/wc", "-c"]

[[pipeline.node]]
name = "stuck"
argv = ["/bin/sh", "-c", "exec sleep 3600"]
"#;

    // Act: the source ends; the counter gets everything; the stuck reader's bytes past
    // its pipe and buffer are dropped and reported.
    let created = d.ws_create("d.toml", card);
    assert!(created.status.success(), "{}", err(&created));
    d.events_until(
        1,
        |k| matches!(k, EventKind::CommandExited { command, .. } if command == "p.fast"),
    );
    let stopped = d.shuma(&["pipeline", "stop", "d", "p"]);
    assert!(stopped.status.success(), "{}", err(&stopped));
    let later = d.events_until(1, |k| finished(k, "p"));

    // Assert
    assert_eq!(stdout_of(&d, "d", "p.fast").trim(), "4194304");
    // Drops are reported once a second per edge at most, so a burst may take several
    // events: their sum is what was dropped. (`later` is the whole journal up to the
    // pipeline's end, the last report included.)
    let dropped: u64 = later
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::PipelineDropped { edge, bytes, .. } if edge == "src -> stuck" => {
                Some(*bytes)
            }
            _ => None,
        })
        .sum();
    assert!(
        (4_194_304 - 1024 * 1024..=4_194_304 - 64 * 1024).contains(&dropped),
        "dropped {dropped}"
    );
}

#[test]
fn test_saved_pipeline_survives_a_restart_of_the_daemon_and_runs() {
    // Arrange: a pipeline saved with the first daemon.
    let state = tempfile::tempdir().unwrap();
    let durable = state.path().join("durable");
    let durable = durable.to_str().unwrap();
    let file = state.path().join("p.toml");
    std::fs::write(
        &file,
        "[[pipeline]]\nname = \"hello\"\n\n[[pipeline.node]]\nname = \"say\"\nargv = [\"/bin/echo\", \"hi there\"]\n\n[[pipeline.node]]\nname = \"up\"\nargv = [\"/usr/bin/tr\", \"a-z\", \"A-Z\"]\n",
    )
    .unwrap();
    let first = Daemon::start_with(&[], &["--durable-dir", durable]);
    let saved = first.shuma(&["pipeline", "save", "nightly", file.to_str().unwrap()]);
    assert!(saved.status.success(), "{}", err(&saved));
    assert_eq!(first.stop(), Some(0));

    // Act: a new daemon on the same durable copy runs it.
    let second = Daemon::start_with(&[], &["--durable-dir", durable]);
    let ls = second.shuma(&["pipeline", "ls"]);
    let created = second.ws_create("w.toml", "[workspace]\nname = \"w\"\n");
    assert!(created.status.success(), "{}", err(&created));
    let run = second.shuma(&["pipeline", "run", "w", "nightly"]);
    assert!(run.status.success(), "{}", err(&run));
    second.events_until(1, |k| finished(k, "nightly"));

    // Assert
    assert!(
        out(&ls).contains("nightly") && out(&ls).contains("saved"),
        "{}",
        out(&ls)
    );
    assert_eq!(stdout_of(&second, "w", "nightly.up"), "HI THERE\n");
}

#[test]
fn test_pipeline_card_with_a_cycle_is_refused_with_line_and_field() {
    let d = Daemon::start();
    let card = "[workspace]\nname = \"c\"\n\n[[pipeline]]\nname = \"p\"\nedges = [\"a -> b\", \"b -> a\"]\n\n[[pipeline.node]]\nname = \"a\"\nargv = [\"/bin/cat\"]\n\n[[pipeline.node]]\nname = \"b\"\nargv = [\"/bin/cat\"]\n";

    let created = d.ws_create("c.toml", card);

    assert_eq!(created.status.code(), Some(2));
    let e = err(&created);
    assert!(
        e.contains("c.toml:6:") && e.contains("pipeline[0].edges") && e.contains("cycle"),
        "{e}"
    );
}

#[test]
fn test_pipeline_chain_keeps_its_nodes_and_flows_across_a_daemon_reexec() {
    // Arrange: an endless numbered source into a sink, running.
    let d = Daemon::start();
    let card = r#"
[workspace]
name = "rx"

[[pipeline]]
name = "p"

[[pipeline.node]]
name = "src"
argv = ["/bin/sh", "-c", "i=0; while :; do i=$((i+1)); echo n $i; sleep 0.05; done"]
env = { PATH = "/bin:/usr/bin" }

[[pipeline.node]]
name = "sink"
argv = ["/bin/cat"]
"#;
    let created = d.ws_create("rx.toml", card);
    assert!(created.status.success(), "{}", err(&created));
    d.wait_output("rx", "p.sink", "n 2\n");
    let pids = |d: &Daemon| -> Vec<Option<i32>> {
        let mut c = d.client();
        let mut ps = c.ps(Some("rx".into()));
        ps.sort_by_key(|c| c.id);
        ps.iter().map(|c| c.pid).collect()
    };
    let before = pids(&d);

    // Act
    let reexec = d.shuma(&["daemon-reexec"]);
    assert!(reexec.status.success(), "{}", err(&reexec));

    // Assert: same processes, the pipeline still running, and lines still arrive: the
    // sink's ring is new after the exec, so a line read now was written after it.
    assert_eq!(pids(&d), before);
    assert!(before.iter().all(Option::is_some), "{before:?}");
    let ls = d.shuma(&["pipeline", "ls", "--workspace", "rx"]);
    assert!(out(&ls).contains("running"), "{}", out(&ls));
    d.wait_output("rx", "p.sink", "n ");
}

#[test]
fn test_pipeline_node_that_cannot_start_is_blamed_not_the_writer_it_cut_off() {
    // Arrange: a writer whose reader cannot start; the writer dies of SIGPIPE (its shell
    // says 141), which is the reader's fault, not its own.
    let d = Daemon::start();
    let card = r#"
[workspace]
name = "sf"

[[pipeline]]
name = "p"
restart_max = 1
backoff = { initial = "10ms", max = "10ms" }

[[pipeline.node]]
name = "a"
argv = ["/bin/sh", "-c", "yes | head -c 1000000"]

[[pipeline.node]]
name = "b"
argv = ["/nonexistent/prog"]
"#;

    // Act
    let created = d.ws_create("sf.toml", card);
    let events = d.events_until(1, |k| matches!(k, EventKind::PipelineFailed { .. }));

    // Assert: the creator heard of it (as of a command that cannot start: exit 1)...
    assert!(
        err(&created).contains("did not start: p.b:"),
        "{}",
        err(&created)
    );

    // Assert
    match &events.last().unwrap().kind {
        EventKind::PipelineFailed { node, reason, .. } => {
            assert_eq!(node, "b", "{reason}");
            assert!(reason.contains("/nonexistent/prog"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}
