//! Upgrading across releases, on this host in subreaper mode: the previous release's
//! arje-init (the commit in `tests/prev-release`, built from git by
//! `arje_tests::prev`) re-executes live into this build's, and every child is kept.
//!
//! Until the snapshot, the handover or the control protocol changes, both sides speak
//! the same format and this passes trivially. It is here for the day they change: the
//! new image must still read the previous release's snapshot and inherit its fds.
//!
//! Each side is driven only by its own `shuma` (the previous release's before the exec,
//! this build's after it), so a protocol version bump never makes the test talk to a
//! daemon in a language it does not know.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use arje_tests::host::{bin_dir, ensure_binaries, err, out, Daemon};
use arje_tests::prev::previous_release;
use rustix::process::{kill_process, Pid, Signal};
use serde_json::Value;
use shuma_card::ExitStatus;

/// Two services, one idle and one numbering its lines, and a task that has finished by
/// the time of the exec.
const CARD: &str = r#"
[workspace]
name = "up"

[[service]]
name = "idle"
argv = ["/bin/sleep", "3600"]

[[service]]
name = "printer"
argv = ["/bin/sh", "-c", "i=0; while :; do echo $i; i=$((i+1)); /bin/sleep 0.02; done"]

[[task]]
name = "setup"
argv = ["/bin/sh", "-c", "exit 0"]
"#;

/// How long the whole scenario may take once the daemon runs (it takes under a second).
const LIMIT: Duration = Duration::from_secs(30);

/// SIGKILLs the daemon if the test is still running at its deadline, so that a new
/// image that never answers fails the test instead of hanging CI: every `shuma` then sees
/// its connection close and fails with the daemon's log. (Seen when the new image could
/// not read the old snapshot: it bound a fresh socket and left the inherited listener,
/// with a client in its backlog, unserved.) It waits on a channel with a timeout, it
/// does not poll. The pid cannot be another process's: the daemon is our child and is
/// not reaped before the watchdog is dropped.
struct Watchdog {
    done: mpsc::Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    fn arm(d: &Daemon, limit: Duration) -> Watchdog {
        let pid = Pid::from_raw(d.child.id() as i32).expect("a child's pid is positive");
        let (done, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                eprintln!("watchdog: still running after {limit:?}: SIGKILL to arje-init {pid:?}");
                let _ = kill_process(pid, Signal::KILL);
            }
        });
        Watchdog {
            done,
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    /// Disarm: tell the thread the test is over and wait until it cannot kill any more.
    fn drop(&mut self) {
        let _ = self.done.send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What arje-init has logged so far, copied out (formatting it under the lock in a
/// failing assertion would poison the lock for the thread that reads the log).
fn daemon_log(d: &Daemon) -> String {
    d.log.lock().unwrap().join("\n")
}

/// A `shuma` run that must succeed; its stdout.
fn shuma_ok(d: &Daemon, shuma: &Path, args: &[&str]) -> String {
    let o: Output = d.shuma_binary(shuma, args);
    assert!(
        o.status.success(),
        "{} {args:?}: {}\ndaemon log:\n{}",
        shuma.display(),
        err(&o),
        daemon_log(d)
    );
    out(&o)
}

/// Run a following `shuma` (`logs -f`, `events -f`) until one of its lines matches
/// `pred`, then end it. The daemon pushes lines as they happen: this waits on events.
fn follow_until(d: &Daemon, shuma: &Path, args: &[&str], pred: impl Fn(&str) -> bool) {
    let mut child = Command::new(shuma)
        .arg("--socket")
        .arg(&d.socket)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", shuma.display()));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut seen = Vec::new();
    let found = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| {
            let hit = pred(&line);
            seen.push(line);
            hit
        });
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        found,
        "{} {args:?} ended before the line awaited; saw {seen:#?}\ndaemon log:\n{}",
        shuma.display(),
        daemon_log(d)
    );
}

/// `shuma ps --json`, as JSON values: the fields compared are read by name, so a field
/// added to the listing in a later release changes nothing here.
fn ps(d: &Daemon, shuma: &Path) -> Vec<Value> {
    let text = shuma_ok(d, shuma, &["ps", "--json"]);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("ps --json: {e}: {text}"))
}

fn find<'a>(cmds: &'a [Value], name: &str) -> &'a Value {
    cmds.iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no command {name} in {cmds:#?}"))
}

fn daemon_pid(d: &Daemon, shuma: &Path) -> i64 {
    let text = shuma_ok(d, shuma, &["status", "--json"]);
    let status: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("status --json: {e}: {text}"));
    status["pid"].as_i64().expect("status has a pid")
}

/// The parent of a live process, from `/proc/PID/status`.
fn ppid(pid: i64) -> i64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("pid {pid} is gone: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no PPid in /proc/{pid}/status"))
}

/// The program a process runs now.
fn exe(pid: i64) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/exe")).expect("read /proc/PID/exe")
}

/// The printer's numbers, one per line of its output.
fn numbers(text: &str) -> Vec<u64> {
    text.lines()
        .map(|l| l.trim().parse().expect("a number per line"))
        .collect()
}

#[test]
fn test_reexec_from_previous_release_keeps_every_child() {
    let prev = previous_release();
    ensure_binaries();
    let (old_shuma, new_shuma) = (&prev.shuma, &bin_dir().join("shuma"));
    let new_init = bin_dir().join("arje-init");
    let d = Daemon::start_binary(&prev.arje_init, &[], &[]);
    // Declared after `d`, so dropped (disarmed) before it on a panic too.
    let watchdog = Watchdog::arm(&d, LIMIT);
    let card = d.dir.path().join("up.toml");
    std::fs::write(&card, CARD).unwrap();
    shuma_ok(&d, old_shuma, &["ws", "create", card.to_str().unwrap()]);
    follow_until(&d, old_shuma, &["events", "-f"], |l| {
        l.contains("up/setup pid ") && l.contains(" exited")
    });
    // A task started over the socket rather than declared by the card, ended with a
    // status worth keeping; `--wait` returns when it has exited.
    let late = d.shuma_binary(
        old_shuma,
        &[
            "run", "up", "--wait", "--name", "late", "--", "/bin/sh", "-c", "exit 7",
        ],
    );
    assert_eq!(late.status.code(), Some(7), "{}", err(&late));
    follow_until(
        &d,
        old_shuma,
        &["logs", "up", "printer", "-f", "--stream", "out"],
        |l| l == "3",
    );
    let before = ps(&d, old_shuma);
    let pid = daemon_pid(&d, old_shuma);
    let old_exe = exe(pid);

    // The old shuma asks the old daemon, which answers and then execs this build.
    shuma_ok(
        &d,
        old_shuma,
        &["daemon-reexec", "--binary", new_init.to_str().unwrap()],
    );
    // No wait for the new image is needed: the listener is inherited, so this
    // connection waits in its backlog until the new image serves.
    let pong = shuma_ok(&d, new_shuma, &["ping"]);
    let after = ps(&d, new_shuma);
    let pid_after = daemon_pid(&d, new_shuma);
    let new_exe = exe(pid_after);
    // Output written across the exec and after it: five lines past what is there now.
    let printed_args = ["logs", "up", "printer", "--stream", "out"];
    let seen = numbers(&shuma_ok(&d, new_shuma, &printed_args)).len();
    let awaited = (seen + 5).to_string();
    follow_until(
        &d,
        new_shuma,
        &["logs", "up", "printer", "-f", "--stream", "out"],
        |l| l == awaited,
    );
    let printed = numbers(&shuma_ok(&d, new_shuma, &printed_args));
    let log = daemon_log(&d);

    assert_eq!(pong.trim(), "pong");
    assert_eq!(pid, i64::from(d.child.id()));
    assert_eq!(pid_after, pid, "the daemon kept its pid");
    assert_eq!(old_exe, prev.arje_init.canonicalize().unwrap());
    assert_eq!(
        new_exe,
        new_init.canonicalize().unwrap(),
        "the daemon runs this build's arje-init after the exec"
    );
    let names = |cmds: &[Value]| -> Vec<(Value, Value)> {
        let mut v: Vec<_> = cmds
            .iter()
            .map(|c| (c["id"].clone(), c["name"].clone()))
            .collect();
        v.sort_by_key(|(id, _)| id.as_u64());
        v
    };
    assert_eq!(names(&before).len(), 4, "{before:#?}");
    assert_eq!(
        names(&after),
        names(&before),
        "the same command ids and names\n{log}"
    );
    for service in ["idle", "printer"] {
        let (b, a) = (find(&before, service), find(&after, service));
        let child = a["pid"].as_i64().expect("a running service has a pid");
        assert_eq!(b["state"], "Running", "{b:#}");
        assert_eq!(a["state"], "Running", "{a:#}\n{log}");
        assert_eq!(a["pid"], b["pid"], "{service} kept its pid\n{log}");
        assert_eq!(
            a["restarts"], b["restarts"],
            "{service} was not restarted\n{log}"
        );
        assert_eq!(
            ppid(child),
            pid,
            "{service} (pid {child}) is still the daemon's child"
        );
    }
    for (task, status) in [
        ("setup", ExitStatus::Code(0)),
        ("late", ExitStatus::Code(7)),
    ] {
        let (b, a) = (find(&before, task), find(&after, task));
        assert_eq!(b["state"], "Exited", "{b:#}");
        assert_eq!(a["state"], "Exited", "{a:#}");
        assert_eq!(a["pid"], Value::Null, "{a:#}");
        assert_eq!(
            a["last_exit"],
            serde_json::to_value(status).unwrap(),
            "{task} kept its exit status"
        );
    }
    // The new image kept what the old one had captured and read the printer's pipe
    // where the old one stopped: the numbers run from 0, across the exec, with none lost
    // or repeated, past what was there just after it.
    let expected: Vec<u64> = (0..printed.len() as u64).collect();
    assert_eq!(
        printed, expected,
        "the printer's output is not contiguous from 0 across the re-exec\n{log}"
    );
    assert!(printed.len() > seen + 5, "{printed:?}");
    drop(watchdog);
    assert_eq!(
        d.stop(),
        Some(0),
        "SIGTERM stops the upgraded daemon cleanly"
    );
}
