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
        child_nofile: None,
        syslog: None,
        journal_max: crate::JOURNAL_MAX_DEFAULT,
        journal_dir: None,
        log_dir: None,
        log_file_max: crate::LOG_FILE_MAX_DEFAULT,
        vsock_port: None,
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

/// A runtime whose cards directory holds, per `(file, workspace, service, extra)`, a
/// card of one `sleep 30` service with `extra` lines.
fn runtime_with_cards(dir: &std::path::Path, cards: &[(&str, &str, &str, &str)]) -> Runtime {
    let cards_dir = dir.join("cards");
    std::fs::create_dir(&cards_dir).unwrap();
    for (file, ws, svc, extra) in cards {
        let text = format!(
            "[workspace]\nname = \"{ws}\"\n\n[[service]]\nname = \"{svc}\"\nargv = [\"/bin/sleep\", \"30\"]\n{extra}"
        );
        std::fs::write(cards_dir.join(file), text).unwrap();
    }
    let mut cfg = config(dir);
    cfg.cards_dir = Some(cards_dir);
    Runtime::new(cfg).expect("runtime")
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
fn test_restore_of_many_cgroup_workspaces_starts_no_stats_sampler_until_asked_then_one() {
    // Arrange: a durable snapshot of three workspaces, restored onto a (fake) cgroup tree.
    // Statistics are sampled only while someone asks for them, and by one sampler.
    let dir = tempfile::tempdir().unwrap();
    {
        let root = FakeRoot::new("cpu memory pids", false);
        let mut rt = runtime_with_fake_cgroups(dir.path(), &root);
        for name in ["a", "b", "c"] {
            rt.create_workspace(workspace(name, None)).unwrap();
        }
        assert_eq!(rt.timers.pending(TimerAction::Stats), 0);
        for name in ["a", "b"] {
            rt.handle(Request::WsStats { name: name.into() }).unwrap();
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
    assert_eq!(rt.timers.pending(TimerAction::Stats), 0);
}

#[test]
fn test_stats_sampling_stops_once_no_one_has_asked_for_a_while() {
    // Arrange: a workspace whose statistics were asked for once.
    let dir = tempfile::tempdir().unwrap();
    let root = FakeRoot::new("cpu memory pids", false);
    let mut rt = runtime_with_fake_cgroups(dir.path(), &root);
    rt.create_workspace(workspace("a", None)).unwrap();
    let asked = Instant::now();
    rt.handle(Request::WsStats { name: "a".into() }).unwrap();

    // Act: the fake clock past the watch, sampling as the timer fires.
    let mut now = asked;
    let mut samples = 0;
    while rt.timers.pending(TimerAction::Stats) == 1 && samples < 1_000 {
        now += super::workspaces::STATS_EVERY;
        rt.fire_timers(now);
        samples += 1;
    }

    // Assert: it sampled for the watch and then stopped re-arming.
    let expected = (super::workspaces::STATS_WATCH.as_secs()
        / super::workspaces::STATS_EVERY.as_secs()) as usize;
    assert!(
        (expected - 1..=expected + 1).contains(&samples),
        "{samples} samples"
    );
    assert_eq!(rt.timers.pending(TimerAction::Stats), 0);
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

/// A root-owned 0600 file holding `text`, for the log-file tests.
fn root_only_file(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn test_log_file_of_nobody_through_a_symlinked_directory_is_refused_a_plain_path_opens() {
    // Arrange: the last component is a plain name, but a directory above it is a
    // symlink nobody could have swapped in, leading to a root-only file of that name.
    // Beside it, the same name under the real directory (a new file) and a file nobody
    // owns, which are fine.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("real")).unwrap();
    let secret = tmp.path().join("real/app.log");
    root_only_file(&secret, "root only\n");
    std::os::unix::fs::symlink(tmp.path().join("real"), tmp.path().join("logs")).unwrap();
    let through_link = tmp.path().join("logs/app.log");
    let fresh = tmp.path().join("real/fresh.log");
    let owned = tmp.path().join("real/owned.log");
    std::fs::write(&owned, b"old\n").unwrap();
    std::os::unix::fs::chown(&owned, Some(65534), Some(65534)).unwrap();

    // Act
    let refused = commands::open_log_file(through_link.to_str().unwrap(), Some(65534));
    let fresh_fd = commands::open_log_file(fresh.to_str().unwrap(), Some(65534)).unwrap();
    let owned_fd = commands::open_log_file(owned.to_str().unwrap(), Some(65534)).unwrap();
    std::io::Write::write_all(
        &mut std::fs::File::from(owned_fd.try_clone().unwrap()),
        b"new\n",
    )
    .unwrap();

    // Assert
    let err = refused.map(|_| ()).unwrap_err();
    assert!(
        err.contains("symlink") && err.contains("logs/app.log"),
        "{err}"
    );
    assert_eq!(std::fs::read(&secret).unwrap(), b"root only\n");
    // The child gets blocking fds that append: only the open was non-blocking.
    for fd in [&fresh_fd, &owned_fd] {
        let fl = rustix::fs::fcntl_getfl(fd).unwrap();
        assert!(fl.contains(rustix::fs::OFlags::APPEND));
        assert!(!fl.contains(rustix::fs::OFlags::NONBLOCK));
    }
    assert!(fresh.exists());
    assert_eq!(std::fs::read(&owned).unwrap(), b"old\nnew\n");
}

#[test]
fn test_log_file_of_nobody_hard_linked_to_a_root_file_is_refused() {
    // Arrange
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("secret");
    root_only_file(&secret, "root only\n");
    let link = tmp.path().join("app.log");
    std::fs::hard_link(&secret, &link).unwrap();

    // Act
    let result = commands::open_log_file(link.to_str().unwrap(), Some(65534));

    // Assert
    let err = result.map(|_| ()).unwrap_err();
    assert!(err.contains("2 links"), "{err}");
}

#[test]
fn test_log_file_of_nobody_owned_by_a_third_user_is_refused() {
    // Arrange
    let tmp = tempfile::tempdir().unwrap();
    let other = tmp.path().join("app.log");
    std::fs::write(&other, b"").unwrap();
    std::os::unix::fs::chown(&other, Some(1234), Some(1234)).unwrap();

    // Act
    let result = commands::open_log_file(other.to_str().unwrap(), Some(65534));

    // Assert
    let err = result.map(|_| ()).unwrap_err();
    assert!(err.contains("owned by uid 1234"), "{err}");
}

#[test]
fn test_log_file_fifo_without_reader_fails_at_once() {
    // Arrange: a FIFO nobody reads; a blocking open for writing would never return.
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("log.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();

    // Act
    let result = commands::open_log_file(fifo.to_str().unwrap(), None);

    // Assert
    let err = result.map(|_| ()).unwrap_err();
    assert!(err.contains("log.fifo"), "{err}");
}

#[test]
fn test_failing_run_write_warns_once_per_burst_and_status_says_why() {
    // Arrange: a directory where the /run copy's temp file goes, so every write fails
    // (as root, a read-only mode would not stop the write; this does).
    let dir = tempfile::tempdir().unwrap();
    let mut rt = runtime(dir.path());
    let t0 = Instant::now();
    rt.persist_if_due(t0);
    let blocker = dir.path().join("run").join(".snapshot.bin.tmp");
    std::fs::create_dir_all(blocker.join("x")).unwrap();
    let not_saved = |rt: &Runtime| {
        warnings(rt)
            .into_iter()
            .filter(|(_, m)| m.contains("state is not being saved"))
            .count()
    };
    let status = |rt: &mut Runtime| match &frames(rt, Request::Status)[..] {
        [Response::Status(info)] => info.state_not_saved.clone(),
        other => panic!("unexpected {other:?}"),
    };
    // Each change comes after the debounce interval, so each one is a write attempt.
    let mut at = t0;
    let mut change = |rt: &mut Runtime, name: &str| {
        rt.create_workspace(workspace(name, None)).unwrap();
        at += store::RUN_EVERY * 2;
        rt.persist_if_due(at);
    };

    // Act: many changes while the write fails, then one after the blocker is gone, then
    // the blocker comes back.
    for i in 0..20 {
        change(&mut rt, &format!("a{i}"));
    }
    let during = (not_saved(&rt), status(&mut rt));
    std::fs::remove_dir_all(&blocker).unwrap();
    change(&mut rt, "b");
    let after = (not_saved(&rt), status(&mut rt));
    std::fs::create_dir_all(blocker.join("x")).unwrap();
    change(&mut rt, "c");
    change(&mut rt, "d");
    let again = not_saved(&rt);

    // Assert
    assert_eq!(during.0, 1, "{:?}", warnings(&rt));
    let why = during.1.expect("status says the state is not saved");
    assert!(why.contains(".snapshot.bin.tmp"), "{why}");
    assert_eq!(after, (1, None));
    assert_eq!(again, 2, "a new burst is reported again");
}

#[test]
fn test_ws_create_with_a_command_that_cannot_start_says_which() {
    // Arrange: one command that runs, one whose program does not exist.
    let dir = tempfile::tempdir().unwrap();
    let mut rt = runtime(dir.path());
    let mut spec = workspace("w", None);
    spec.commands.push(CommandSpec::new(
        "ok",
        CommandKind::Task,
        vec!["/bin/true".into()],
    ));
    spec.commands.push(CommandSpec::new(
        "missing",
        CommandKind::Task,
        vec!["/nonexistent/program".into()],
    ));

    // Act
    let created = rt.create_workspace(spec).unwrap();

    // Assert: the workspace exists, and the reply names the one that did not start.
    assert!(rt.table.id_of("w").is_some());
    assert_eq!(created.failed.len(), 1, "{created:?}");
    assert!(created.failed[0].starts_with("missing: "), "{created:?}");
    assert!(
        created.failed[0].contains("/nonexistent/program"),
        "{created:?}"
    );
}

/// Turn the loop until `done` holds (each wait bounded: a hang becomes a failure).
fn turn_until(rt: &mut Runtime, mut done: impl FnMut(&mut Runtime) -> bool) {
    for _ in 0..200 {
        if done(rt) {
            return;
        }
        rt.turn_within(Some(Duration::from_secs(60)));
    }
    panic!("the loop never got there");
}

/// Read one frame from a blocking client, or `None` once the server closed it.
fn read_frame(client: &mut std::os::unix::net::UnixStream) -> Option<Response> {
    use std::io::Read;
    let mut len = [0u8; shuma_card::protocol::HEADER_LEN];
    client.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    client.read_exact(&mut body).ok()?;
    shuma_card::protocol::decode_payload(&body).ok()
}

fn send_frame(client: &mut std::os::unix::net::UnixStream, req: &Request) {
    use std::io::Write;
    client
        .write_all(&shuma_card::protocol::encode_frame(req))
        .unwrap();
}

/// A client that said Hello and got the answer.
fn greeted(rt: &mut Runtime, socket: &std::path::Path) -> std::os::unix::net::UnixStream {
    let mut c = std::os::unix::net::UnixStream::connect(socket).unwrap();
    send_frame(
        &mut c,
        &Request::Hello {
            version: shuma_card::protocol::PROTOCOL_VERSION,
            client: "test".into(),
        },
    );
    let mut first = [0u8; 1];
    let flags = rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT;
    turn_until(rt, |_| rustix::net::recv(&c, &mut first, flags).is_ok());
    assert!(matches!(read_frame(&mut c), Some(Response::Hello { .. })));
    c
}

#[test]
fn test_hello_waiting_unread_at_the_deadline_is_not_closed() {
    // Arrange: a client that sent its Hello while the loop was busy: the bytes wait in
    // the socket, unread, when the deadline comes (a turn that stopped 1,000 services
    // took longer than the 5 s a Hello may take).
    let dir = tempfile::tempdir().unwrap();
    let mut rt = runtime(dir.path());
    let mut c = std::os::unix::net::UnixStream::connect(dir.path().join("s.sock")).unwrap();
    turn_until(&mut rt, |rt| rt.server.len() == 1);
    send_frame(
        &mut c,
        &Request::Hello {
            version: shuma_card::protocol::PROTOCOL_VERSION,
            client: "late".into(),
        },
    );

    // Act: the deadline fires before the connection's event is handled.
    rt.fire_timers(Instant::now() + Duration::from_secs(6));

    // Assert: still open, and the Hello is answered once read.
    assert_eq!(rt.server.len(), 1, "a client that spoke in time was closed");
    let mut first = [0u8; 1];
    let flags = rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT;
    turn_until(&mut rt, |_| {
        rustix::net::recv(&c, &mut first, flags).is_ok()
    });
    assert!(matches!(read_frame(&mut c), Some(Response::Hello { .. })));
}

#[test]
fn test_silent_connection_closed_at_the_hello_deadline() {
    // Arrange: a client that connects and says nothing.
    let dir = tempfile::tempdir().unwrap();
    let mut rt = runtime(dir.path());
    let mut silent = std::os::unix::net::UnixStream::connect(dir.path().join("s.sock")).unwrap();
    turn_until(&mut rt, |rt| rt.server.len() == 1);

    // Act: the fake clock an hour on.
    rt.fire_timers(Instant::now() + Duration::from_secs(3600));

    // Assert: gone, with an error saying why, or closed.
    assert_eq!(rt.server.len(), 0, "the silent connection is still open");
    match read_frame(&mut silent) {
        Some(Response::Error { code, .. }) => assert_eq!(code, ErrorCode::Limit),
        None => {}
        Some(other) => panic!("unexpected {other:?}"),
    }
}

#[test]
fn test_idle_connection_closed_at_its_deadline_follower_kept() {
    // Arrange: two clients past Hello; one follows the journal.
    let dir = tempfile::tempdir().unwrap();
    let mut rt = runtime(dir.path());
    let socket = dir.path().join("s.sock");
    let mut idle = greeted(&mut rt, &socket);
    let mut follower = greeted(&mut rt, &socket);
    send_frame(
        &mut follower,
        &Request::Events {
            after: None,
            follow: true,
        },
    );
    turn_until(&mut rt, |rt| {
        !rt.server
            .followers(|f| matches!(f, crate::control::Follow::Events(_)))
            .is_empty()
    });

    // Act
    rt.fire_timers(Instant::now() + Duration::from_secs(3600));

    // Assert
    assert_eq!(rt.server.len(), 1, "the idle one closed, the follower kept");
    assert!(!rt
        .server
        .followers(|f| matches!(f, crate::control::Follow::Events(_)))
        .is_empty());
    while let Some(frame) = read_frame(&mut idle) {
        assert!(matches!(frame, Response::Error { .. }), "{frame:?}");
    }
    drop(follower);
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
    assert!(
        warnings
            .iter()
            .any(|(_, m)| m.contains("998-run-998") && m.contains("removed once empty")),
        "{warnings:?}"
    );
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

#[test]
fn test_boot_cards_make_workspaces_before_ready_and_spawn_after() {
    // Arrange: two cards, the first's command after the second's (a later file).
    let dir = tempfile::tempdir().unwrap();
    let mut rt = runtime_with_cards(
        dir.path(),
        &[
            ("a.toml", "a", "web", "after = [\"b/db\"]\n"),
            ("b.toml", "b", "db", ""),
        ],
    );

    // Act 1: what is done before the ready line.
    let held = rt.load_cards();

    // Assert 1: both workspaces exist, nothing runs yet.
    assert!(rt.table.named("a").is_some() && rt.table.named("b").is_some());
    assert!(rt.table.commands.values().all(|c| c.run.is_none()));

    // Act 2: after the ready line.
    rt.start_cards(held);

    // Assert 2: both run, the dependency first (ready when started, the default).
    let started: Vec<String> = rt
        .journal
        .after(0)
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::CommandStarted { command, .. } => Some(command),
            _ => None,
        })
        .collect();
    assert_eq!(started, ["db", "web"]);
    assert!(rt.table.commands.values().all(|c| c.run.is_some()));
    rt.begin_shutdown(Outcome::Exit);
    while rt.turn().is_none() {}
}

#[test]
fn test_boot_events_reach_the_journal_writer_before_the_first_turn() {
    // Arrange: a card, and a journal on disk (the state directories of `config`).
    let dir = tempfile::tempdir().unwrap();
    let mut rt = runtime_with_cards(dir.path(), &[("a.toml", "a", "s", "")]);
    assert_eq!(rt.journal.unsent(), Some(0), "a journal on disk, all sent");
    let run = dir.path().join("run");

    // Act: what `run` does before its first wait, which may last hours.
    rt.begin_serving();

    // Assert: the workspace's and the command's events are with the writer already,
    // and the snapshot is written, with no event needed to wake the loop.
    assert!(rt.journal.last_id() >= 2);
    assert_eq!(rt.journal.unsent(), Some(0));
    let dir_fd = crate::persist::StateDir::open(&run, None).unwrap();
    let saved = crate::persist::load(Some(&dir_fd), None)
        .snapshot
        .expect("a snapshot");
    assert_eq!(
        saved.workspaces.len(),
        1,
        "the boot card's workspace is saved"
    );
    rt.begin_shutdown(Outcome::Exit);
    while rt.turn().is_none() {}
}

#[test]
fn test_zero_delay_restart_is_spawned_in_the_exit_turn() {
    // Arrange: a service that restarts at once (any run lasts its `min_uptime` of 0).
    let dir = tempfile::tempdir().unwrap();
    let mut rt = runtime(dir.path());
    let mut svc = CommandSpec::new(
        "svc",
        CommandKind::Service,
        vec!["/bin/sleep".into(), "30".into()],
    );
    svc.restart = shuma_card::RestartPolicy::Always;
    svc.min_uptime_ms = 0;
    let mut ws = workspace("w", None);
    ws.commands.push(svc);
    rt.create_workspace(ws).unwrap();
    let first = rt
        .table
        .commands
        .values()
        .next()
        .unwrap()
        .run
        .as_ref()
        .unwrap()
        .pid;
    let count = |rt: &Runtime, pick: fn(&EventKind) -> bool| {
        rt.journal.after(0).iter().filter(|e| pick(&e.kind)).count()
    };
    let started = |k: &EventKind| matches!(k, EventKind::CommandStarted { .. });
    let exited = |k: &EventKind| matches!(k, EventKind::CommandExited { .. });

    // Act: kill it, and turn until a turn has handled its exit.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first), nix::sys::signal::SIGKILL).unwrap();
    while count(&rt, exited) == 0 {
        rt.turn();
    }

    // Assert: that same turn spawned its successor.
    assert_eq!(count(&rt, started), 2);
    let next = rt
        .table
        .commands
        .values()
        .next()
        .unwrap()
        .run
        .as_ref()
        .map(|r| r.pid);
    assert!(next.is_some_and(|p| p != first), "{next:?}");
    rt.begin_shutdown(Outcome::Exit);
    while rt.turn().is_none() {}
}

#[test]
fn test_after_the_hello_no_timer_is_due_before_the_idle_deadline() {
    // Arrange: a client that said Hello and then nothing (a follower-to-be, a CLI
    // between commands).
    let dir = tempfile::tempdir().unwrap();
    let mut rt = runtime(dir.path());
    let _c = greeted(&mut rt, &dir.path().join("s.sock"));

    // Act + Assert: nothing is due at the Hello's deadline (no wake-up to find it
    // met); the idle deadline still closes the connection.
    let t0 = Instant::now();
    assert!(!rt.timers.any_due(t0 + Duration::from_secs(30)));
    rt.fire_timers(t0 + Duration::from_secs(3600));
    assert_eq!(rt.server.len(), 0, "the idle connection is still open");
}

#[test]
fn test_a_boot_card_that_cannot_start_is_named_with_its_workspace() {
    // Arrange: two cards with a command of the same name; one cannot be spawned.
    let dir = tempfile::tempdir().unwrap();
    let mut rt = runtime_with_cards(
        dir.path(),
        &[("a.toml", "a", "s", ""), ("b.toml", "b", "s", "")],
    );
    let held = rt.load_cards();
    let b = rt.table.named("b").unwrap().by_name["s"];
    rt.table.commands.get_mut(&b).unwrap().spec.argv = vec!["/nonexistent/program".into()];

    // Act
    let failed = rt.start_pending(held.0);

    // Assert: the failure is b's, and its label tells the two apart.
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, b);
    assert_eq!(rt.command_label(b, true), "b/s");
    assert_eq!(rt.command_label(b, false), "s");
    rt.begin_shutdown(Outcome::Exit);
    while rt.turn().is_none() {}
}
