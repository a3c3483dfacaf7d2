//! What arje trusts on disk, on this host in subreaper mode (docs/SECURITY.md): a state
//! or durable directory another user controls is refused, a service that runs as another
//! user cannot point its log at a root-only file, a second arje-init on the same state
//! directory exits naming the first, and a FIFO where a file is expected never blocks
//! the start.
//!
//! These tests run as root and play the less privileged party with chown to uid 65534
//! (`nobody`).

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use arje_tests::host::{bin_dir, err, out, Daemon};
use shuma_card::protocol::{Request, Response, StatusInfo};
use shuma_card::{Event, EventKind};

/// The less privileged party.
const NOBODY: u32 = 65534;

/// Every event in the journal so far (no follow: the call returns).
fn journal(d: &Daemon) -> Vec<Event> {
    let mut c = d.client();
    c.send(&Request::Events {
        after: None,
        follow: false,
    });
    let mut all = Vec::new();
    loop {
        match c.recv() {
            Some(Response::Events(evs)) => all.extend(evs),
            Some(Response::End) => return all,
            other => panic!("unexpected {other:?} in the journal"),
        }
    }
}

fn warnings(d: &Daemon) -> Vec<String> {
    journal(d)
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Warning { message } => Some(message),
            _ => None,
        })
        .collect()
}

fn status(d: &Daemon) -> StatusInfo {
    match d.client().call(Request::Status) {
        Response::Status(info) => info,
        other => panic!("unexpected {other:?}"),
    }
}

/// A root-owned 0600 file holding `text`: what the less privileged party must not reach.
fn root_only_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn chown_to_nobody(path: &Path) {
    std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).unwrap();
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

const SLEEPER: &str = r#"
[workspace]
name = "app"

[[service]]
name = "sleeper"
argv = ["/bin/sleep", "3600"]
"#;

#[test]
fn test_state_dir_of_another_user_with_planted_symlinks_writes_nothing_through_them() {
    // Arrange: a state directory owned by nobody, and two root-only files.
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir(&state).unwrap();
    chown_to_nobody(&state);
    let (secret_tmp, secret_handover) = (tmp.path().join("secret-1"), tmp.path().join("secret-2"));
    root_only_file(&secret_tmp, "root only 1\n");
    root_only_file(&secret_handover, "root only 2\n");
    let d = Daemon::start_with(
        &[("app.toml", SLEEPER)],
        &["--state-dir", state.to_str().unwrap()],
    );
    let before = d.client().ps(None);
    // The owner plants links while arje runs (at start arje removes stale temp files).
    std::os::unix::fs::symlink(&secret_tmp, state.join(".snapshot.bin.tmp")).unwrap();
    std::os::unix::fs::symlink(&secret_handover, state.join("handover.bin")).unwrap();

    // Act: a re-exec writes the /run snapshot and handover.bin unconditionally.
    let r = d.shuma(&["daemon-reexec"]);
    let pong = d.shuma(&["ping"]);
    let after = d.client().ps(None);
    let warnings = warnings(&d);

    // Assert
    assert!(r.status.success(), "{}", err(&r));
    assert_eq!(out(&pong).trim(), "pong");
    assert_eq!(std::fs::read(&secret_tmp).unwrap(), b"root only 1\n");
    assert_eq!(std::fs::read(&secret_handover).unwrap(), b"root only 2\n");
    let state_name = state.display().to_string();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(&state_name) && w.contains("owned by uid 65534")),
        "{warnings:#?}"
    );
    // The private directory used instead is found again after the re-exec: the
    // service was adopted, not restarted.
    assert_eq!(before.len(), 1);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].pid, before[0].pid);
}

#[test]
fn test_group_writable_state_dir_is_refused_with_a_warning_and_left_unwritten() {
    // Arrange
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o770)).unwrap();

    // Act: start, then stop (a stop writes the /run copy unconditionally).
    let d = Daemon::start_with(&[], &["--state-dir", state.to_str().unwrap()]);
    let warnings = warnings(&d);
    let code = d.stop();

    // Assert
    assert_eq!(code, Some(0));
    let state_name = state.display().to_string();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(&state_name) && w.contains("writable by group or others")),
        "{warnings:#?}"
    );
    assert!(names_in(&state).is_empty(), "{:?}", names_in(&state));
}

#[test]
fn test_durable_dir_of_another_user_is_neither_restored_nor_written() {
    // Arrange: a durable copy holding workspace "planted"; then the directory passes to
    // nobody, who could have written any snapshot there (commands that run as root).
    let tmp = tempfile::tempdir().unwrap();
    let durable = tmp.path().join("durable");
    let durable_arg = ["--durable-dir", durable.to_str().unwrap()];
    let first = Daemon::start_with(&[], &durable_arg);
    let created = first.client().call(Request::WsCreate {
        spec: shuma_card::WorkspaceSpec {
            name: "planted".into(),
            ..Default::default()
        },
    });
    assert!(matches!(created, Response::Created { .. }), "{created:?}");
    assert_eq!(first.stop(), Some(0));
    chown_to_nobody(&durable);
    let planted = std::fs::read(durable.join("snapshot.bin")).unwrap();

    // Act
    let second = Daemon::start_with(&[], &durable_arg);
    let listed = out(&second.shuma(&["ws", "ls"]));
    let warnings = warnings(&second);
    let code = second.stop();

    // Assert
    assert_eq!(code, Some(0));
    assert!(!listed.contains("planted"), "{listed}");
    let durable_name = durable.display().to_string();
    assert!(
        warnings.iter().any(|w| w.contains(&durable_name)),
        "{warnings:#?}"
    );
    assert_eq!(
        std::fs::read(durable.join("snapshot.bin")).unwrap(),
        planted
    );
}

#[test]
fn test_log_file_symlink_of_a_service_run_as_nobody_is_refused_naming_the_path() {
    // Arrange: nobody owns the log directory and points app.log at a root-only file.
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    chown_to_nobody(&logs);
    let secret = tmp.path().join("secret");
    root_only_file(&secret, "root only\n");
    let log = logs.join("app.log");
    std::os::unix::fs::symlink(&secret, &log).unwrap();
    let card = format!(
        r#"
[workspace]
name = "svc"

[[service]]
name = "talker"
argv = ["/bin/echo", "written as root"]
user = "nobody"
log = "file:{}"
"#,
        log.display()
    );

    // Act
    let d = Daemon::start_with(&[("svc.toml", &card)], &[]);
    let events = d.events_until(1, |k| {
        matches!(k, EventKind::SpawnFailed { command, .. } | EventKind::CommandExited { command, .. } if command == "talker")
    });

    // Assert
    let failed = events.iter().find_map(|e| match &e.kind {
        EventKind::SpawnFailed { error, .. } => Some(error.clone()),
        _ => None,
    });
    let error = failed.unwrap_or_else(|| panic!("the spawn did not fail: {events:#?}"));
    assert!(error.contains(&log.display().to_string()), "{error}");
    assert!(error.contains("symlink"), "{error}");
    assert_eq!(std::fs::read(&secret).unwrap(), b"root only\n");
}

/// Start a second arje-init on `socket` and `state`; read its stderr until it exits or
/// says it serves. Returns (exited non-zero, took over the socket, its stderr).
fn second_daemon(socket: &Path, state: &Path, cards: &Path) -> (bool, bool, String) {
    let mut child = Command::new(bin_dir().join("arje-init"))
        .arg("--subreaper")
        .arg("--socket")
        .arg(socket)
        .arg("--state-dir")
        .arg(state)
        .arg("--cards")
        .arg(cards)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the second arje-init");
    let mut text = String::new();
    let mut took_over = false;
    for line in BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        text.push_str(&line);
        text.push('\n');
        if line.contains("control socket ready") {
            took_over = true;
            let _ = child.kill();
            break;
        }
    }
    let status = child.wait().unwrap();
    (!status.success() && !took_over, took_over, text)
}

#[test]
fn test_second_daemon_on_the_same_state_dir_exits_naming_the_first_pid() {
    // Arrange
    let first = Daemon::start();
    let pid = first.child.id() as i32;

    // Act
    let (failed, took_over, text) = second_daemon(
        &first.socket,
        &first.dir.path().join("run"),
        &first.dir.path().join("cards"),
    );

    // Assert
    assert!(
        !took_over,
        "the second daemon took the socket over:\n{text}"
    );
    assert!(failed, "{text}");
    assert!(text.contains(&format!("pid {pid}")), "{text}");
    assert_eq!(status(&first).pid, pid, "the first daemon keeps serving");
}

/// The fds of `pid` open on a file named `lock`, each with whether it is close-on-exec.
fn lock_fds(pid: i32) -> Vec<(String, bool)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let entry = entry.unwrap();
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if target.file_name().is_some_and(|n| n == "lock") {
            let fd = entry.file_name().to_string_lossy().into_owned();
            let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap();
            let flags = info
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .map(|f| u32::from_str_radix(f.trim(), 8).unwrap())
                .unwrap();
            found.push((fd, flags & libc::O_CLOEXEC as u32 != 0));
        }
    }
    found
}

#[test]
fn test_state_lock_survives_reexec_and_is_close_on_exec_again() {
    // Arrange
    let first = Daemon::start();
    let pid = first.child.id() as i32;

    // Act
    let r = first.shuma(&["daemon-reexec"]);
    assert_eq!(out(&first.shuma(&["ping"])).trim(), "pong");
    let (failed, took_over, text) = second_daemon(
        &first.socket,
        &first.dir.path().join("run"),
        &first.dir.path().join("cards"),
    );
    let fds = lock_fds(pid);

    // Assert
    assert!(r.status.success(), "{}", err(&r));
    assert!(
        !took_over,
        "the second daemon took the socket over:\n{text}"
    );
    assert!(failed && text.contains(&format!("pid {pid}")), "{text}");
    // One fd holds the lock (the one inherited across exec, adopted), and it is
    // close-on-exec again, so no child arje starts inherits it.
    assert_eq!(fds.len(), 1, "{fds:?}");
    assert!(fds[0].1, "{fds:?}");
}

/// A FIFO at `path` and a thread that opens its write end: the open returns only once
/// someone opens it for reading, and the thread then records that.
struct FifoWatch {
    opened: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

fn fifo_at(path: &Path) -> FifoWatch {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let opened = Arc::new(AtomicBool::new(false));
    let flag = opened.clone();
    let path = path.to_path_buf();
    // A reader that opened the FIFO (the code before this fix, which then blocked until
    // this writer came) sees end of file at once: the daemon goes on and the test fails
    // on `opened` instead of hanging.
    let thread = std::thread::spawn(move || {
        let f = std::fs::OpenOptions::new().write(true).open(&path);
        flag.store(true, Ordering::SeqCst);
        drop(f);
    });
    FifoWatch { opened, thread }
}

impl FifoWatch {
    /// Did anyone open the FIFO for reading so far? Then lets the thread go (opens the
    /// FIFO found in `dir`, wherever it was moved, for reading) and joins it.
    fn was_opened(self, dir: &Path) -> bool {
        let opened = self.opened.load(Ordering::SeqCst);
        let fifo: PathBuf = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.file_type().unwrap().is_fifo())
            .expect("the FIFO is still in its directory")
            .path();
        let _reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(fifo)
            .unwrap();
        self.thread.join().unwrap();
        opened
    }
}

#[test]
fn test_fifo_as_run_snapshot_is_set_aside_unopened_and_start_goes_on() {
    // Arrange
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("run");
    std::fs::create_dir(&state).unwrap();
    let watch = fifo_at(&state.join("snapshot.bin"));

    // Act
    let d = Daemon::start_with(&[], &["--state-dir", state.to_str().unwrap()]);
    let pong = d.shuma(&["ping"]);
    let warnings = warnings(&d);

    // Assert
    assert_eq!(out(&pong).trim(), "pong");
    assert!(!watch.was_opened(&state), "arje opened the FIFO");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("set aside") && w.contains("not a regular file")),
        "{warnings:#?}"
    );
}

#[test]
fn test_fifo_as_durable_snapshot_is_set_aside_unopened_and_start_goes_on() {
    // Arrange
    let tmp = tempfile::tempdir().unwrap();
    let durable = tmp.path().join("durable");
    std::fs::create_dir(&durable).unwrap();
    let watch = fifo_at(&durable.join("snapshot.bin"));

    // Act
    let d = Daemon::start_with(&[], &["--durable-dir", durable.to_str().unwrap()]);
    let pong = d.shuma(&["ping"]);
    let warnings = warnings(&d);

    // Assert
    assert_eq!(out(&pong).trim(), "pong");
    assert!(!watch.was_opened(&durable), "arje opened the FIFO");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("set aside") && w.contains("not a regular file")),
        "{warnings:#?}"
    );
}

#[test]
fn test_fifo_as_card_is_skipped_unopened_and_the_other_cards_load() {
    // Arrange: the fixture's cards directory gets a real card and, beside it, a FIFO
    // named like one. The fixture creates the directory, so the FIFO goes in a cards
    // directory of our own.
    let tmp = tempfile::tempdir().unwrap();
    let cards = tmp.path().join("cards");
    std::fs::create_dir(&cards).unwrap();
    std::fs::write(cards.join("app.toml"), SLEEPER).unwrap();
    let watch = fifo_at(&cards.join("x.toml"));

    // Act
    let d = Daemon::start_with(&[], &["--cards", cards.to_str().unwrap()]);
    let pong = d.shuma(&["ping"]);
    let listed = out(&d.shuma(&["ws", "ls"]));

    // Assert
    assert_eq!(out(&pong).trim(), "pong");
    assert!(!watch.was_opened(&cards), "arje opened the FIFO");
    assert!(listed.contains("app"), "{listed}");
    let log = d.log.lock().unwrap().join("\n");
    assert!(
        log.lines()
            .any(|l| l.contains("x.toml") && l.contains("not a regular file")),
        "{log}"
    );
}
