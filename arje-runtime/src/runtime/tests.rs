//! In-process tests of the runtime: a real epoll loop, real children, and a fake clock
//! ([`Runtime::fire_timers`] with a later instant) where time matters.

use std::time::{Duration, Instant};

use shuma_card::protocol::{ErrorCode, Mode, Request, Response, MAX_FRAME};
use shuma_card::{CommandKind, CommandSpec, EventKind, WorkspaceSpec};

use super::workspaces::MAX_SPEC;
use super::*;
use crate::cgroup::fake::FakeRoot;
use crate::cgroup::{Cgroups, Dir, HostInfo, Setup};

fn config(dir: &std::path::Path) -> Config {
    Config {
        mode: Mode::Subreaper,
        socket: dir.join("s.sock"),
        socket_group: None,
        cards_dir: None,
        state_dir: dir.join("run"),
        durable_dir: Some(dir.join("durable")),
        cgroup_root: None,
        shutdown_timeout: Duration::from_secs(5),
    }
}

fn runtime(dir: &std::path::Path) -> Runtime {
    Runtime::new(config(dir)).expect("runtime")
}

/// A runtime whose cgroup tree is a fake cgroupfs (the guest tests prove the real one).
fn runtime_with_fake_cgroups(dir: &std::path::Path, root: &FakeRoot) -> Runtime {
    let host = HostInfo {
        proc_cgroups: Some(
            "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t0\t1\t1\nmemory\t0\t1\t1\npids\t0\t1\t1\n"
                .into(),
        ),
        clone_into_cgroup: Ok(()),
    };
    let dir_fd = Dir::open(&root.path).expect("fake root");
    let tree = Cgroups::setup_in(dir_fd, std::process::id(), Setup::Subreaper, &host)
        .expect("fake cgroup setup");
    Runtime::with_cgroups(config(dir), tree).expect("runtime")
}

fn workspace(name: &str, ttl_ms: Option<u64>) -> WorkspaceSpec {
    WorkspaceSpec {
        name: name.into(),
        ttl_ms,
        ..Default::default()
    }
}

fn task(argv: &[&str]) -> CommandSpec {
    CommandSpec::new(
        "",
        CommandKind::Task,
        argv.iter().map(|s| s.to_string()).collect(),
    )
}

fn warnings(rt: &Runtime) -> Vec<(u64, String)> {
    rt.journal
        .after(0)
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Warning { message } => Some((e.id, message)),
            _ => None,
        })
        .collect()
}

#[test]
fn test_ttl_of_stopped_workspace_does_not_stop_its_recreated_namesake() {
    // Arrange: "a" with a one-hour TTL, stopped, then created again without one.
    let dir = tempfile::tempdir().unwrap();
    let mut rt = runtime(dir.path());
    rt.create_workspace(workspace("a", Some(3_600_000)))
        .unwrap();
    let first = rt.table.id_of("a").unwrap();
    rt.stop_workspace(first, None, false);
    assert!(
        rt.table.id_of("a").is_none(),
        "an empty workspace stops at once"
    );
    rt.create_workspace(workspace("a", None)).unwrap();

    // Act: the first one's TTL comes due (fake clock: two hours on).
    rt.fire_timers(Instant::now() + Duration::from_secs(7200));

    // Assert
    let again = rt.table.named("a").expect("the new \"a\" is still there");
    assert_ne!(again.id, first);
    assert_eq!(again.state, shuma_card::protocol::WsState::Running);
}

#[test]
fn test_ttl_set_before_the_first_turn_wakes_the_loop() {
    // Arrange: a TTL added outside any turn, with nothing else to wake the loop.
    let dir = tempfile::tempdir().unwrap();
    let mut rt = runtime(dir.path());
    rt.create_workspace(workspace("t", Some(1))).unwrap();

    // Act: turn until it is gone. A turn that times out means the timerfd was never
    // armed for the TTL (the 60 s bound only turns a hang into a failure).
    let mut timed_out = 0;
    for _ in 0..100 {
        rt.turn_within(Some(Duration::from_secs(60)));
        if rt.ready.is_empty() {
            timed_out += 1;
        }
        if rt.table.id_of("t").is_none() {
            break;
        }
    }

    // Assert
    assert_eq!(timed_out, 0, "a wait went by without the TTL's timer");
    assert!(
        rt.table.id_of("t").is_none(),
        "the TTL stopped the workspace"
    );
}

#[test]
fn test_restore_of_many_cgroup_workspaces_starts_one_stats_sampler() {
    // Arrange: a durable snapshot of three workspaces, restored onto a (fake) cgroup tree.
    let dir = tempfile::tempdir().unwrap();
    {
        let root = FakeRoot::new("cpu memory pids", false);
        let mut rt = runtime_with_fake_cgroups(dir.path(), &root);
        for name in ["a", "b", "c"] {
            rt.create_workspace(workspace(name, None)).unwrap();
        }
        assert_eq!(rt.timers.pending(TimerAction::Stats), 1);
        rt.flush_state();
    }
    std::fs::remove_file(dir.path().join("run").join(crate::persist::SNAPSHOT_FILE)).unwrap();

    // Act: a reboot, so a fresh cgroup tree.
    let root = FakeRoot::new("cpu memory pids", false);
    let rt = runtime_with_fake_cgroups(dir.path(), &root);

    // Assert
    assert_eq!(rt.table.workspaces.len(), 3);
    assert!(rt.table.workspaces.values().all(|w| w.cgroup.is_some()));
    assert_eq!(rt.timers.pending(TimerAction::Stats), 1);
}

#[test]
fn test_set_aside_warning_survives_restore_from_the_durable_copy() {
    // Arrange: a durable copy with a journal far along, and a damaged /run copy.
    let dir = tempfile::tempdir().unwrap();
    let next_event_id = {
        let mut rt = runtime(dir.path());
        rt.create_workspace(workspace("w", None)).unwrap();
        rt.flush_state();
        rt.journal.next_id()
    };
    let run_file = dir.path().join("run").join(crate::persist::SNAPSHOT_FILE);
    std::fs::write(&run_file, b"not a snapshot at all").unwrap();

    // Act
    let rt = runtime(dir.path());

    // Assert: the workspace came back from the durable copy and the warning is in the
    // journal, numbered after everything the old journal held.
    assert!(rt.table.id_of("w").is_some());
    let warnings = warnings(&rt);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].1.contains("set aside"), "{warnings:?}");
    assert!(warnings[0].0 >= next_event_id);
}

#[test]
fn test_run_request_breaking_card_rules_is_refused() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let mut rt = runtime(dir.path());
    rt.create_workspace(workspace("w", None)).unwrap();
    let mut cases: Vec<(&str, CommandSpec)> = Vec::new();
    let mut c = task(&["/bin/true"]);
    c.env = vec![("A=B".into(), "1".into())];
    cases.push(("env name with =", c));
    let mut c = task(&["/bin/true"]);
    c.env = vec![("A".into(), "1".into()), ("A".into(), "2".into())];
    cases.push(("duplicate env", c));
    for name in ["a/b", "a\nb", "\u{1b}[31mred"] {
        let mut c = task(&["/bin/true"]);
        c.name = name.into();
        cases.push(("bad name", c));
    }
    for sig in [0, 999] {
        let mut c = task(&["/bin/true"]);
        c.stop_signal = sig;
        cases.push(("bad stop signal", c));
    }
    let mut c = task(&["/bin/true"]);
    c.stop_grace_ms = 1 << 63;
    cases.push(("huge grace", c));
    cases.push(("relative argv[0]", task(&["true"])));

    // Act
    let results: Vec<_> = cases
        .into_iter()
        .map(|(what, spec)| (what, rt.run_in_workspace("w", spec)))
        .collect();

    // Assert
    for (what, r) in &results {
        assert!(
            matches!(r, Err((ErrorCode::Invalid, _))),
            "{what}: {r:?} (should be refused as Invalid)"
        );
    }
    assert_eq!(rt.table.named("w").unwrap().commands.len(), 0);
}

/// The frames a request's reply would send.
fn frames(rt: &mut Runtime, req: Request) -> Vec<Response> {
    match rt.handle(req) {
        Ok(Reply::Frames(f)) => f,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn test_ps_of_22000_commands_comes_in_frames_under_the_cap() {
    // Arrange: 22,000 one-shots, not started (their infos are what `ps` pages).
    let dir = tempfile::tempdir().unwrap();
    let mut rt = runtime(dir.path());
    rt.create_workspace(workspace("w", None)).unwrap();
    for i in 0..22_000 {
        // Long names, as a real machine's might be: the listing is then about 2 MB.
        let mut t = task(&["/bin/true"]);
        t.name = format!("{i:0>63}");
        rt.run_in_workspace("w", t).unwrap();
    }

    // Act
    let frames = frames(&mut rt, Request::Ps { workspace: None });

    // Assert
    let mut listed = 0;
    for f in &frames[..frames.len() - 1] {
        let Response::Commands(page) = f else {
            panic!("expected Commands, got {f:?}")
        };
        listed += page.len();
        assert!(postcard::to_allocvec(f).unwrap().len() <= MAX_FRAME);
    }
    assert!(frames.len() > 2, "paged: {} frames", frames.len());
    assert_eq!(frames.last(), Some(&Response::End));
    assert_eq!(listed, 22_000);
}

#[test]
fn test_ws_show_of_the_largest_card_fits_its_frames() {
    // Arrange: a card whose encoding is just under the spec cap, and one just over.
    let dir = tempfile::tempdir().unwrap();
    let mut rt = runtime(dir.path());
    let mut big = workspace("big", None);
    let mut cmd = CommandSpec::new("c", CommandKind::Task, vec!["/bin/true".into()]);
    cmd.env = vec![("X".into(), "x".repeat(MAX_SPEC - 200))];
    big.commands.push(cmd.clone());
    let mut too_big = workspace("toobig", None);
    cmd.env = vec![("X".into(), "x".repeat(MAX_SPEC + 1))];
    too_big.commands.push(cmd);

    // Act
    let refused = rt.create_workspace(too_big);
    rt.create_workspace(big).unwrap();
    let frames = frames(&mut rt, Request::WsShow { name: "big".into() });

    // Assert
    assert!(
        matches!(&refused, Err((ErrorCode::Invalid, m)) if m.contains("bytes")),
        "{refused:?}"
    );
    assert!(matches!(frames[0], Response::Workspace(_)));
    assert_eq!(frames.last(), Some(&Response::End));
    for f in &frames {
        assert!(postcard::to_allocvec(f).unwrap().len() <= MAX_FRAME);
    }
}

#[test]
fn test_run_wait_answers_with_exit_status_from_the_loop() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let mut rt = runtime(dir.path());
    rt.create_workspace(workspace("w", None)).unwrap();

    // Act
    let id = rt
        .start_oneshot("w", task(&["/bin/sh", "-c", "echo hi; exit 7"]))
        .unwrap();
    while rt.exit_status(id).is_none() {
        rt.turn();
    }

    // Assert: the status, and the output read before the exit was reported.
    assert_eq!(rt.exit_status(id), Some(shuma_card::ExitStatus::Code(7)));
    assert_eq!(rt.table.commands[&id].out.contents(), b"hi\n");
}

#[test]
fn test_encode_snapshot_records_state_and_reexec_fds() {
    use shuma_card::snapshot::SavedExitStatus;
    // Arrange: a workspace with a finished task, a running service and a failed run.
    let dir = tempfile::tempdir().unwrap();
    let mut rt = runtime(dir.path());
    let mut spec = workspace("w", None);
    spec.limits.memory_max = Some(64 << 20);
    spec.commands.push(CommandSpec::new(
        "t",
        CommandKind::Task,
        vec!["/bin/true".into()],
    ));
    spec.commands.push(CommandSpec::new(
        "s",
        CommandKind::Service,
        vec!["/bin/sleep".into(), "60".into()],
    ));
    rt.create_workspace(spec.clone()).unwrap();
    let id = rt.start_oneshot("w", task(&["/bin/false"])).unwrap();
    while rt.exit_status(id).is_none() {
        rt.turn();
    }

    // Act
    rt.encode_snapshot(false);
    let plain = shuma_card::snapshot::decode(&rt.store.buf).unwrap();
    rt.encode_snapshot(true);
    let reexec = shuma_card::snapshot::decode(&rt.store.buf).unwrap();

    // Assert
    assert_eq!(plain.workspaces.len(), 1);
    assert_eq!(plain.workspaces[0].spec.clone().into_card(), spec);
    assert_eq!(plain.workspaces[0].id, rt.table.id_of("w").unwrap().raw());
    assert!(plain.next_workspace_id > plain.workspaces[0].id);
    let cmds = &plain.workspaces[0].commands;
    assert_eq!(cmds.len(), 3);
    assert_eq!(cmds[2].last_exit, Some(SavedExitStatus::Code(1)));
    let live = cmds[1].live.expect("the service runs");
    assert_eq!(
        (live.stdout_fd, live.stderr_fd, plain.listener_fd),
        (None, None, None)
    );
    let live = reexec.workspaces[0].commands[1].live.unwrap();
    assert!(live.stdout_fd.is_some() && live.stderr_fd.is_some() && reexec.listener_fd.is_some());
    assert_ne!(live.stdout_fd, live.stderr_fd);
    rt.begin_shutdown(Outcome::Exit);
    while rt.turn().is_none() {}
}

#[test]
fn test_workspace_ids_survive_a_restore_and_are_not_reused() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let (kept, gone) = {
        let mut rt = runtime(dir.path());
        rt.create_workspace(workspace("kept", None)).unwrap();
        rt.create_workspace(workspace("gone", None)).unwrap();
        let gone = rt.table.id_of("gone").unwrap();
        rt.stop_workspace(gone, None, false);
        rt.flush_state();
        (rt.table.id_of("kept").unwrap(), gone)
    };

    // Act
    let mut rt = runtime(dir.path());
    rt.create_workspace(workspace("new", None)).unwrap();

    // Assert
    assert_eq!(rt.table.id_of("kept"), Some(kept));
    let new = rt.table.id_of("new").unwrap();
    assert!(new > gone, "{new:?} reuses an id at or below {gone:?}");
}

/// Sleeps started for a test, killed and reaped when it ends (also when it fails).
struct Sleepers(Vec<std::process::Child>);

impl Sleepers {
    /// Start a sleep, optionally in a session of its own (setsid(1) execs in place when
    /// it is not a process group leader, so the pid is the sleep's). Returns its pid.
    fn start(&mut self, own_session: bool) -> u32 {
        let mut cmd = if own_session {
            let mut c = std::process::Command::new("/usr/bin/setsid");
            c.arg("/bin/sleep");
            c
        } else {
            std::process::Command::new("/bin/sleep")
        };
        let child = cmd
            .arg("3600")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn a sleep");
        self.0.push(child);
        self.0.last().unwrap().id()
    }
}

impl Drop for Sleepers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Play the kernel: `pids` live in the fake cgroup `dir` (created if missing below
/// `parent`), which is populated, as is `parent`.
fn fake_populate(parent: &std::path::Path, name: &str, pids: &[u32]) {
    use crate::cgroup::fake;
    let dir = parent.join(name);
    if !dir.exists() {
        std::fs::create_dir(&dir).unwrap();
        fake::on_mkdir(parent, name);
    }
    let procs: String = pids.iter().map(|p| format!("{p}\n")).collect();
    fake::write(&dir.join(crate::cgroup::CGROUP_PROCS), &procs);
    for d in [&dir, parent] {
        fake::write(
            &d.join(crate::cgroup::CGROUP_EVENTS),
            "populated 1\nfrozen 0\n",
        );
    }
}

#[test]
fn test_crash_restart_with_cgroups_adopts_or_kills_what_the_snapshot_lacks() {
    use crate::cgroup::{fake, CGROUP_EVENTS, CGROUP_KILL};
    // Arrange: a crashed arje's state. Its snapshot has workspace "w" whose service "s"
    // was between runs (no process recorded; on this fake tree its spawn fails, which
    // the snapshot is edited to forget). Its cgroup tree has what the snapshot lacks: a
    // run of "s" (the main process, a session leader), the leaf of a `run` answered
    // after the snapshot was written (id 999, a session leader in it), a leaf of
    // another (id 998) with only a stray in it, and a whole workspace "ghost".
    let dir = tempfile::tempdir().unwrap();
    let root = FakeRoot::new("cpu memory pids", false);
    let arje = root.path.join(crate::cgroup::ARJE_SUBTREE);
    let svc = {
        let mut rt = runtime_with_fake_cgroups(dir.path(), &root);
        let mut spec = workspace("w", None);
        spec.commands.push(CommandSpec::new(
            "s",
            CommandKind::Service,
            vec!["/bin/sleep".into(), "3600".into()],
        ));
        rt.create_workspace(spec).unwrap();
        rt.flush_state();
        let svc = *rt.table.named("w").unwrap().commands.first().unwrap();
        assert!(
            rt.table.commands[&svc].run.is_none(),
            "no spawn on a fake tree"
        );
        svc
    };
    let mut sleepers = Sleepers(Vec::new());
    let main = sleepers.start(true);
    fake_populate(&arje.join("w"), &format!("{svc}-s"), &[main]);
    let run = sleepers.start(true);
    fake_populate(&arje.join("w"), "999-run-999", &[run]);
    fake_populate(&arje.join("w"), "998-run-998", &[sleepers.start(false)]);
    fake_populate(&arje, "ghost", &[]);
    fake_populate(&arje.join("ghost"), "5-x", &[sleepers.start(false)]);
    // Another arje wrote the snapshot (a crash restart, not a re-exec of this process).
    let file = dir.path().join("run").join(crate::persist::SNAPSHOT_FILE);
    let mut snap = shuma_card::snapshot::decode(&std::fs::read(&file).unwrap()).unwrap();
    snap.arje_pid = i32::MAX;
    let saved = &mut snap.workspaces[0].commands[0];
    assert_eq!(saved.live, None);
    saved.failed = None;
    std::fs::write(&file, shuma_card::snapshot::encode(&snap)).unwrap();

    // Act
    let mut rt = runtime_with_fake_cgroups(dir.path(), &root);

    // Assert: the service's main process is adopted, not started again, and so is the
    // `run` the snapshot did not have yet, as the ad-hoc command its leaf names.
    let adopted = rt.table.commands[&svc].run.as_ref().map(|r| r.pid);
    assert_eq!(adopted, Some(main as i32));
    let late = rt.table.commands.get(&crate::ids::CommandId::from(999));
    assert_eq!(late.map(|c| c.spec.name.as_str()), Some("run-999"));
    assert_eq!(
        late.and_then(|c| c.run.as_ref()).map(|r| r.pid),
        Some(run as i32)
    );
    // The leaf with no main process and the unknown workspace are killed through
    // cgroup.kill...
    let killed = |d: &std::path::Path| std::fs::read_to_string(d.join(CGROUP_KILL)).unwrap();
    assert_eq!(killed(&arje.join("w").join("998-run-998")), "1");
    assert_eq!(killed(&arje.join("w").join("999-run-999")), "");
    assert_eq!(killed(&arje.join("ghost")), "1");
    // ...each with a Warning naming it, and no id at or below a leaf's is handed out.
    let warnings = warnings(&rt);
    for name in ["998-run-998", "ghost"] {
        assert!(
            warnings.iter().any(|(_, m)| m.contains(name)),
            "no warning names {name}: {warnings:?}"
        );
    }
    assert!(rt.table.command_ids.peek() > 999);
    // The workspace "ghost" is removed once its cgroup is empty.
    let ghost = rt.table.id_of("ghost").expect("ghost is being stopped");
    for d in [arje.join("ghost").join("5-x"), arje.join("ghost")] {
        fake::write(&d.join(CGROUP_EVENTS), "populated 0\nfrozen 0\n");
    }
    rt.on_cgroup_news(watches::News::Emptied(ghost));
    assert!(rt.table.id_of("ghost").is_none());
    assert!(!arje.join("ghost").exists());
    drop(rt);
    drop(sleepers);
}
