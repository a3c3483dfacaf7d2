//! Signals sent to a subreaper arje-init: each has a decided disposition
//! (`arje-runtime/src/runtime/signals.rs`, docs/PID1.md), none but SIGTERM and SIGINT
//! ends it, none stops it, and its children still start with default dispositions and
//! an empty mask.

use std::sync::mpsc;

use arje_tests::host::{Daemon, Launch};
use shuma_card::protocol::CmdState;
use shuma_card::EventKind;

const SERVICE: &str = r#"
[workspace]
name = "w"

[[service]]
name = "svc"
argv = ["/bin/sleep", "1000000"]
"#;

/// Every signal but the two that stop a subreaper (TERM, INT), the faults left at their
/// default (ILL, TRAP, ABRT, BUS, FPE, SEGV), the job-control stops (their own test) and
/// the two that cannot be caught (KILL, STOP): 1..=64 minus those.
fn survivable() -> Vec<i32> {
    let skip = [
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGILL,
        libc::SIGTRAP,
        libc::SIGABRT,
        libc::SIGBUS,
        libc::SIGFPE,
        libc::SIGSEGV,
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
        libc::SIGKILL,
        libc::SIGSTOP,
    ];
    (1..=64).filter(|s| !skip.contains(s)).collect()
}

fn kill(pid: i32, sig: i32) {
    // SAFETY: signalling a process this test started.
    let r = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        r,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

/// A line of /proc/PID/status (`SigIgn`, `SigBlk`) as a mask.
fn status_mask(pid: i32, field: &str) -> u64 {
    status_mask_of(&format!("/proc/{pid}/status"), field)
}

/// A hex mask field of a /proc status file.
fn status_mask_of(path: &str, field: &str) -> u64 {
    let status = std::fs::read_to_string(path).unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:\t")))
        .unwrap_or_else(|| panic!("no {field} in {status}"));
    u64::from_str_radix(line.trim(), 16).unwrap()
}

/// The state letter of /proc/PID/stat (after the command's closing parenthesis).
fn proc_state(pid: i32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.chars().next().unwrap()
}

fn bit(sig: i32) -> u64 {
    1 << (sig - 1)
}

fn service_pid(d: &Daemon) -> i32 {
    let ps = d.client().ps(None);
    let svc = ps.iter().find(|c| c.name == "svc").expect("svc listed");
    assert_eq!(svc.state, CmdState::Running, "{svc:?}");
    svc.pid.expect("svc has a pid")
}

#[test]
fn test_subreaper_every_async_signal_survived_service_keeps_pid() {
    // Arrange
    let mut d = Daemon::start_with(&[("w.toml", SERVICE)], &[]);
    d.events_until(1, |k| matches!(k, EventKind::CommandStarted { .. }));
    let before = service_pid(&d);
    let pid = d.pid();

    // Act: one signal at a time, each followed by a request that proves the loop ran
    // after it (a default "terminate" is acted on before the daemon next runs).
    let mut casualty = None;
    for sig in survivable() {
        kill(pid, sig);
        if let Err(e) = d.ping() {
            casualty = Some((sig, e, d.child.try_wait()));
            break;
        }
    }

    // Assert
    assert!(
        casualty.is_none(),
        "arje-init did not survive (signal, ping error, exit): {casualty:?}"
    );
    assert_eq!(service_pid(&d), before, "the service was restarted or lost");
    // Its child still starts with nothing ignored and nothing blocked.
    assert_eq!(status_mask(before, "SigIgn"), 0, "child ignores signals");
    assert_eq!(status_mask(before, "SigBlk"), 0, "child blocks signals");
}

#[test]
fn test_subreaper_job_control_stops_ignored() {
    // Arrange: its own (not orphaned) process group, or the kernel would discard the
    // stops anyway. A watcher sees a stop (the parent is told) and continues the daemon,
    // so that a broken build fails here instead of hanging on the ping.
    let d = Daemon::launch(
        &[],
        &[],
        &Launch {
            own_group: true,
            ..Launch::default()
        },
    );
    let pid = d.pid();
    let (tx, stopped) = mpsc::channel();
    std::thread::spawn(move || loop {
        // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // WNOWAIT: the fixture still reaps the daemon at the end.
        let flags = libc::WSTOPPED | libc::WEXITED | libc::WNOWAIT;
        // SAFETY: waitid on our own child with a valid siginfo_t.
        let r = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) };
        if r != 0 || info.si_code != libc::CLD_STOPPED {
            return; // exited (or reaped by the fixture)
        }
        // SAFETY: the siginfo of a CLD_STOPPED report carries the stopping signal.
        let _ = tx.send(unsafe { info.si_status() });
        // SAFETY: continuing our own child.
        unsafe { libc::kill(pid, libc::SIGCONT) };
    });

    // Act
    let mut answers = Vec::new();
    for sig in [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU] {
        kill(pid, sig);
        answers.push((sig, d.ping()));
    }

    // Assert
    assert_eq!(stopped.try_recv().ok(), None, "a signal stopped arje-init");
    for (sig, answer) in answers {
        assert_eq!(answer, Ok(()), "no answer after signal {sig}");
    }
    assert_ne!(proc_state(pid), 'T');
}

#[test]
fn test_subreaper_inherited_ignored_signals_reset_and_sigint_still_stops() {
    // Arrange: started as a shell's background job would be (SIGINT and SIGQUIT
    // ignored) under nohup (SIGHUP ignored), with a durable directory so that both
    // helper threads (the durable copy's and the event journal's writers) run.
    let durable = tempfile::tempdir().unwrap();
    let d = Daemon::launch(
        &[],
        &["--durable-dir", durable.path().to_str().unwrap()],
        &Launch {
            ignored: vec![libc::SIGINT, libc::SIGQUIT, libc::SIGHUP],
            ..Launch::default()
        },
    );
    let pid = d.pid();

    // Act
    let ignored = status_mask(pid, "SigIgn");
    let blocked = status_mask(pid, "SigBlk");
    let threads: Vec<(String, u64)> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|t| {
            let tid = t.unwrap().file_name().to_string_lossy().into_owned();
            let mask = status_mask_of(&format!("/proc/{pid}/task/{tid}/status"), "SigBlk");
            (tid, mask)
        })
        .collect();

    // Assert: only SIGPIPE is ignored; every signal read from the signalfd is blocked,
    // the real-time ones included; the faults are not.
    assert_eq!(ignored, bit(libc::SIGPIPE), "SigIgn {ignored:#x}");
    for sig in [
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGALRM,
        libc::SIGSYS,
        32,
        33,
        64,
    ] {
        assert_ne!(
            blocked & bit(sig),
            0,
            "signal {sig} not blocked: {blocked:#x}"
        );
        // In every thread: a signal any thread leaves unblocked may be delivered there.
        for (tid, mask) in &threads {
            assert_ne!(
                mask & bit(sig),
                0,
                "signal {sig} not blocked in thread {tid}: {mask:#x}"
            );
        }
    }
    assert!(threads.len() >= 3, "the helper threads run: {threads:?}");
    for sig in [libc::SIGSEGV, libc::SIGBUS, libc::SIGABRT, libc::SIGPIPE] {
        assert_eq!(blocked & bit(sig), 0, "signal {sig} blocked: {blocked:#x}");
    }
    kill(pid, libc::SIGINT);
    assert_eq!(d.wait_exit(), Some(0));
}

#[test]
fn test_pid1_mode_systemd_rtmin_poweroff_and_immediate_poweroff_shut_down() {
    // systemd's SIGRTMIN+4 and +14 by the kernel's numbers (glibc's SIGRTMIN is 34):
    // what systemctl and Debian's own poweroff send PID 1.
    for (sig, what) in [(38, "SIGRTMIN+4, poweroff"), (48, "SIGRTMIN+14, immediate")] {
        // Arrange
        let d = Daemon::start_with(&[("w.toml", SERVICE)], &["--pid1"]);
        d.events_until(1, |k| matches!(k, EventKind::CommandStarted { .. }));
        let log = d.log.clone();

        // Act
        kill(d.pid(), sig);
        let code = d.wait_exit();

        // Assert: the shutdown ran (off PID 1 it ends in an exit 0 saying so).
        let log = log.lock().unwrap().join("\n");
        assert_eq!(code, Some(0), "{sig}: {log}");
        assert!(log.contains(what), "{sig}: {log}");
        assert!(log.contains("Poweroff asked for"), "{sig}: {log}");
    }
}

#[test]
fn test_machine_commands_reboot_and_shutdown_now_reach_pid1_a_scheduled_one_is_refused() {
    // arje-init called as `reboot` or `shutdown` (a symlink, as docs/HOST.md installs
    // them), pointed at a `--pid1` arje instead of this machine's PID 1.
    for (name, args, what) in [
        ("reboot", vec![], "Reboot asked for"),
        ("shutdown", vec!["-h", "now"], "Poweroff asked for"),
    ] {
        // Arrange
        let d = Daemon::start_with(&[("w.toml", SERVICE)], &["--pid1"]);
        d.events_until(1, |k| matches!(k, EventKind::CommandStarted { .. }));
        let link = d.dir.path().join(name);
        std::os::unix::fs::symlink(arje_tests::host::bin_dir().join("arje-init"), &link).unwrap();
        let log = d.log.clone();
        let later = d.dir.path().join("shutdown");
        if !later.exists() {
            std::os::unix::fs::symlink(arje_tests::host::bin_dir().join("arje-init"), &later)
                .unwrap();
        }
        let scheduled = std::process::Command::new(&later)
            .args(["-r", "+5"])
            .env("ARJE_INIT_PID", d.pid().to_string())
            .output()
            .unwrap();
        let still = d.ping();

        // Act
        let asked = std::process::Command::new(&link)
            .args(&args)
            .env("ARJE_INIT_PID", d.pid().to_string())
            .status()
            .unwrap();
        let code = d.wait_exit();

        // Assert
        assert_eq!(scheduled.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&scheduled.stderr).contains("now"));
        assert_eq!(still, Ok(()), "a refused command must not stop anything");
        assert!(asked.success(), "{name}");
        let log = log.lock().unwrap().join("\n");
        assert_eq!(code, Some(0), "{name}: {log}");
        assert!(log.contains(what), "{name}: {log}");
    }
}
