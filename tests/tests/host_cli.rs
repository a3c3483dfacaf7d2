//! The `shuma` binary's edges against a real daemon: a daemon that does not answer, and
//! a reader that goes away.

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

use arje_tests::host::{bin_dir, err, out, Daemon};

#[test]
fn test_stopped_daemon_times_out_with_exit_3() {
    let d = Daemon::start();
    let pid = d.child.id() as i32;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };

    let stuck = d.shuma(&["--timeout", "1s", "ping"]);
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let after = d.shuma(&["ping"]);

    assert_eq!(stuck.status.code(), Some(3), "{}", err(&stuck));
    assert!(
        err(&stuck).contains("no answer from the daemon within 1s"),
        "{}",
        err(&stuck)
    );
    assert_eq!(out(&after).trim(), "pong");
}

/// A pipe whose read end is already closed: every write to it fails with EPIPE.
fn closed_pipe() -> OwnedFd {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds we then own.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both fds were just created and are owned here alone.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    write
}

#[test]
fn test_output_into_closed_pipe_exits_0_quietly() {
    let d = Daemon::start();
    assert!(d
        .ws_create("w.toml", "[workspace]\nname = \"w\"\n")
        .status
        .success());

    let runs: Vec<_> = [
        &["--json", "ws", "show", "w"][..],
        &["ws", "show", "w"],
        &["--json", "ps"],
        &["--json", "ws", "ls"],
        &["events"],
    ]
    .iter()
    .map(|args| {
        let r = Command::new(bin_dir().join("shuma"))
            .arg("--socket")
            .arg(&d.socket)
            .args(*args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(closed_pipe()))
            .output()
            .expect("run shuma");
        (args.join(" "), r)
    })
    .collect();

    for (args, r) in runs {
        assert_eq!(r.status.code(), Some(0), "shuma {args}: {}", err(&r));
        assert_eq!(err(&r), "", "shuma {args}");
    }
}

#[test]
fn test_poweroff_of_a_subreaper_is_refused_with_exit_1_and_it_keeps_serving() {
    // Arrange: a subreaper with a workspace.
    let d = Daemon::start();
    assert!(d
        .ws_create("w.toml", "[workspace]\nname = \"keepme\"\n")
        .status
        .success());

    // Act
    let poweroff = d.shuma(&["poweroff"]);
    let after = d.shuma(&["ws", "ls"]);

    // Assert: refused as docs/CLI.md says, and nothing stopped.
    assert_eq!(poweroff.status.code(), Some(1), "{}", err(&poweroff));
    assert!(
        err(&poweroff).contains("need arje-init as PID 1"),
        "{}",
        err(&poweroff)
    );
    assert!(out(&after).contains("keepme"), "{}", out(&after));
}
