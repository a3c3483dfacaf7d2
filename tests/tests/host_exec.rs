//! A command's host fields (what systemd's units ask of a daemon): resource limits,
//! per-service directories made with owner and mode, and `kill_mode = "process"`, which
//! stops only the main process so what it started (an ssh session) outlives a restart.

use arje_tests::host::{alive, err, out, Daemon};
use shuma_card::EventKind;

fn exited(k: &EventKind, name: &str) -> bool {
    matches!(k, EventKind::CommandExited { command, .. } if command == name)
}

#[test]
fn test_rlimits_from_the_card_reach_the_program() {
    let d = Daemon::start();
    let card = r#"
[workspace]
name = "lim"

[[task]]
name = "show"
argv = ["/bin/sh", "-c", "ulimit -Sn; ulimit -Hn; ulimit -c"]
rlimits = { nofile = "1000:2000", core = "infinity" }
"#;

    let created = d.ws_create("lim.toml", card);
    assert!(created.status.success(), "{}", err(&created));
    d.events_until(1, |k| exited(k, "show"));

    let logs = d.shuma(&["logs", "lim", "show"]);
    assert_eq!(out(&logs), "1000\n2000\nunlimited\n");
}

#[test]
fn test_runtime_directory_made_for_the_user_with_its_mode_before_start() {
    // Arrange: a directory under /run that must not exist yet.
    let name = format!("arje-test-{}", std::process::id());
    let path = std::path::Path::new("/run").join(&name);
    let _ = std::fs::remove_dir_all(&path);
    let d = Daemon::start();
    let card = format!(
        "[workspace]\nname = \"dirs\"\n\n[[task]]\nname = \"look\"\nargv = [\"/usr/bin/stat\", \"-c\", \"%U %a\", \"/run/{name}/sub\"]\nuser = \"nobody\"\nruntime_directory = [\"{name}/sub\"]\nruntime_directory_mode = \"0710\"\n"
    );

    // Act
    let created = d.ws_create("dirs.toml", &card);
    assert!(created.status.success(), "{}", err(&created));
    d.events_until(1, |k| exited(k, "look"));

    // Assert: the program saw its directory, owned by its user, with the card's mode.
    let logs = d.shuma(&["logs", "dirs", "look"]);
    let _ = std::fs::remove_dir_all(&path);
    assert_eq!(out(&logs), "nobody 710\n", "{}", err(&logs));
}

#[test]
fn test_runtime_directory_through_a_symlink_is_refused() {
    let name = format!("arje-test-link-{}", std::process::id());
    let link = std::path::Path::new("/run").join(&name);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink("/etc", &link).unwrap();
    let d = Daemon::start();
    let card = format!(
        "[workspace]\nname = \"evil\"\n\n[[task]]\nname = \"t\"\nargv = [\"/bin/true\"]\nruntime_directory = [\"{name}/arje-owned\"]\n"
    );

    let created = d.ws_create("evil.toml", &card);

    let _ = std::fs::remove_file(&link);
    assert!(!std::path::Path::new("/etc/arje-owned").exists());
    assert!(
        err(&created).contains("symlink"),
        "{} / {}",
        out(&created),
        err(&created)
    );
}

#[test]
fn test_kill_mode_process_restart_leaves_what_the_service_started() {
    assert!(
        session_survives_restart("process", false),
        "kill_mode = \"process\" killed the session (no cgroups)"
    );
}

/// A delegated directory in this host's cgroup2 hierarchy (as host_cgroups.rs finds it).
fn cgroup_root(tag: &str) -> std::path::PathBuf {
    let unified = std::path::Path::new("/sys/fs/cgroup/unified");
    let base = if unified.join("cgroup.procs").exists() {
        unified.to_path_buf()
    } else {
        std::path::PathBuf::from("/sys/fs/cgroup")
    };
    let dir = base.join(format!("arje-test-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a writable cgroup2 hierarchy (ENVIRONMENT.md)");
    dir
}

/// Restart `km/daemon` (whose card sets `kill_mode` as `mode`; in a leaf cgroup with
/// `cgroups`) and say whether the session it started (setsid: out of its process group)
/// survived.
fn session_survives_restart(mode: &str, cgroups: bool) -> bool {
    let root = cgroups.then(|| cgroup_root(mode));
    let extra: Vec<&str> = match &root {
        Some(r) => vec!["--cgroup-root", r.to_str().unwrap()],
        None => Vec::new(),
    };
    let d = Daemon::start_with(&[], &extra);
    let card = format!(
        "[workspace]\nname = \"km\"\n\n[[service]]\nname = \"daemon\"\nargv = [\"/bin/sh\", \"-c\", \"setsid sleep 1000 & echo session $!; exec sleep 1000\"]\nenv = {{ PATH = \"/bin:/usr/bin\" }}\nkill_mode = \"{mode}\"\nstop_grace = \"2s\"\n"
    );
    let created = d.ws_create("km.toml", &card);
    assert!(created.status.success(), "{}", err(&created));
    let line = d.wait_lines("km", "daemon", 1).remove(0);
    let session: i32 = line
        .strip_prefix("session ")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let restarted = d.shuma(&["restart", "km/daemon"]);
    assert!(restarted.status.success(), "{}", err(&restarted));
    d.events_until(
        2,
        |k| matches!(k, EventKind::CommandStarted { command, .. } if command == "daemon"),
    );
    let survived = alive(session);
    // SAFETY: signalling a process this test's service started.
    unsafe { libc::kill(session, libc::SIGKILL) };
    assert_eq!(d.stop(), Some(0));
    if let Some(root) = &root {
        for sub in ["arje/km", "arje", "arje-init", ""] {
            let _ = std::fs::remove_dir(root.join(sub));
        }
    }
    survived
}

#[test]
fn test_kill_mode_control_group_restart_ends_what_left_the_process_group() {
    assert!(
        !session_survives_restart("control-group", true),
        "a control-group stop left a setsid'd process of the run alive"
    );
}

#[test]
fn test_kill_mode_process_with_cgroups_restart_keeps_the_session() {
    assert!(
        session_survives_restart("process", true),
        "kill_mode = \"process\" killed the session"
    );
}

/// `--log-dir` (a host's /var/log/arje): a ring-logged command's output is also appended
/// to `DIR/WORKSPACE/COMMAND.log`, rotated by size with two older files kept. Each run
/// of the service prints one 39-byte line, more than half the 64-byte bound, so every
/// run after the first rotates: after four runs the three files hold the last three.
#[test]
fn test_log_dir_files_rotated_by_size_keep_the_last_three() {
    // Arrange
    let logs = tempfile::tempdir().unwrap();
    let dir = logs.path().to_str().unwrap();
    let d = arje_tests::host::Daemon::start_with(&[], &["--log-dir", dir, "--log-file-max", "64"]);
    let card = r#"
[workspace]
name = "files"

[[service]]
name = "say"
argv = ["/bin/sh", "-c", "printf 'run %07d xxxxxxxxxxxxxxxxxxxxxxxxxx\n' $$"]
restart = "always"
backoff = { initial = "1ms", max = "1ms" }
max_restarts = 3
"#;

    // Act
    let created = d.ws_create("files.toml", card);
    assert!(created.status.success(), "{}", err(&created));
    d.events_until(
        1,
        |k| matches!(k, EventKind::CommandFailed { command, .. } if command == "say"),
    );

    // Assert
    let read = |suffix: &str| {
        std::fs::read_to_string(logs.path().join(format!("files/say.log{suffix}")))
            .unwrap_or_else(|e| panic!("say.log{suffix}: {e}"))
    };
    let files = [read(".2"), read(".1"), read("")];
    for f in &files {
        assert_eq!(f.len(), 39, "{files:?}");
        assert!(f.starts_with("run "), "{files:?}");
    }
    assert!(files[0] != files[1] && files[1] != files[2], "{files:?}");
    assert!(!logs.path().join("files/say.log.3").exists());
    // The ring has every run, the files the last three of them, in order.
    let ring = out(&d.shuma(&["logs", "files", "say"]));
    assert!(
        ring.ends_with(&files.concat()),
        "ring:\n{ring}\nfiles: {files:?}"
    );
}
