//! Host-mode fixture: the real `arje-init --subreaper` on a temporary socket, driven
//! by the real `shuma` binary and by [`Client`].

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, Once};

use shuma_card::protocol::{Request, Response};
use shuma_card::{Event, EventKind};

use crate::client::Client;

/// The workspace's target directory (`target/debug`), found from this test binary.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/debug/deps/<test> -> target/debug
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// Build arje-init and shuma once per test process (cargo only builds the binaries of
/// the package under test, so `cargo test -p arje-tests` alone would miss them).
pub fn ensure_binaries() {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let profile_release = bin_dir().ends_with("release");
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "arje-init",
            "-p",
            "shuma",
            "--manifest-path",
        ])
        .arg(&manifest);
        if profile_release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(
            status.success(),
            "cargo build of arje-init and shuma failed"
        );
    });
}

/// This build's arje-init with the `test-hooks` feature (test-only switches such as
/// `ARJE_TEST_FAIL_RESTORE`), built once per test process into a target directory of
/// its own (`<target>/hooks`): built in the shared one, it would replace the plain
/// arje-init other tests run. cargo's lock on that directory serializes test binaries
/// that build it at once.
pub fn hooks_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
            let target = bin_dir()
                .parent()
                .expect("the target directory")
                .join("hooks");
            let status = Command::new(cargo)
                .args([
                    "build",
                    "--quiet",
                    "-p",
                    "arje-init",
                    "--features",
                    "test-hooks",
                ])
                .arg("--manifest-path")
                .arg(&manifest)
                .arg("--target-dir")
                .arg(&target)
                .status()
                .expect("run cargo build");
            assert!(
                status.success(),
                "cargo build of the test-hooks arje-init failed"
            );
            target.join("debug").join("arje-init")
        })
        .clone()
}

pub struct Daemon {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    /// Everything arje-init logged to stderr.
    pub log: Arc<Mutex<Vec<String>>>,
}

/// How the test starts arje-init, beyond its cards and arguments: what a parent might
/// hand it (a low fd limit, inherited ignored signals) and its process group.
#[derive(Debug, Default, Clone)]
pub struct Launch {
    /// RLIMIT_NOFILE (soft, hard) set in the child before exec.
    pub nofile: Option<(u64, u64)>,
    /// Signals set to SIG_IGN before exec (as a non-interactive shell leaves SIGINT and
    /// SIGQUIT for a job started with `&`, or nohup SIGHUP).
    pub ignored: Vec<i32>,
    /// Its own process group, whose parent (the test) is in another group of the same
    /// session: the group is not orphaned, so the kernel does not discard a job-control
    /// stop (SIGTSTP, SIGTTIN, SIGTTOU) sent to it.
    pub own_group: bool,
}

impl Daemon {
    /// Start with no cards.
    pub fn start() -> Daemon {
        Daemon::start_with(&[], &[])
    }

    /// Start with these cards (file name, TOML) in the cards directory and extra args.
    pub fn start_with(cards: &[(&str, &str)], extra: &[&str]) -> Daemon {
        Daemon::start_binary(&bin_dir().join("arje-init"), cards, extra)
    }

    /// Start `binary` (this build's arje-init or another one, e.g. the previous
    /// release's) as [`Daemon::start_with`] does. Its readiness is the line
    /// `control socket ready` on stderr, which every release so far logs.
    pub fn start_binary(binary: &Path, cards: &[(&str, &str)], extra: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        Daemon::spawn(dir, Command::new(binary), cards, extra)
    }

    /// [`Daemon::start_with`], launched as `how` says.
    pub fn launch(cards: &[(&str, &str)], extra: &[&str], how: &Launch) -> Daemon {
        let mut cmd = Command::new(bin_dir().join("arje-init"));
        if how.own_group {
            cmd.process_group(0);
        }
        let (nofile, ignored) = (how.nofile, how.ignored.clone());
        if nofile.is_some() || !ignored.is_empty() {
            // SAFETY: between fork and exec only async-signal-safe calls are made
            // (setrlimit, signal); `ignored` was allocated before the fork.
            unsafe {
                cmd.pre_exec(move || {
                    if let Some((soft, hard)) = nofile {
                        let lim = libc::rlimit {
                            rlim_cur: soft,
                            rlim_max: hard,
                        };
                        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    for &sig in &ignored {
                        libc::signal(sig, libc::SIG_IGN);
                    }
                    Ok(())
                });
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        Daemon::spawn(dir, cmd, cards, extra)
    }

    /// Start in a mount namespace of its own in which `/etc/passwd` and `/etc/group` are
    /// the machine's plus these lines: users and groups for one test, without touching
    /// the machine's files (the bind mounts vanish with the namespace).
    pub fn start_with_users(
        passwd: &str,
        group: &str,
        cards: &[(&str, &str)],
        extra: &[&str],
    ) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        for (file, lines) in [("passwd", passwd), ("group", group)] {
            let mut text = std::fs::read_to_string(format!("/etc/{file}")).unwrap_or_default();
            text.push_str(lines);
            std::fs::write(dir.path().join(file), text).unwrap();
        }
        // unshare(1) makes the new namespace's mounts private, and without --fork it
        // execs: sh, then arje-init, keep the pid this fixture signals.
        let mut cmd = Command::new("/usr/bin/unshare");
        cmd.args(["--mount", "--", "/bin/sh", "-c"])
            .arg(r#"mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/group && shift 2 && exec "$@""#)
            .arg("sh")
            .arg(dir.path().join("passwd"))
            .arg(dir.path().join("group"))
            .arg(bin_dir().join("arje-init"));
        Daemon::spawn(dir, cmd, cards, extra)
    }

    /// Start `cmd` (an arje-init command the caller prepared, e.g. with an fd limit from
    /// [`crate::faults::limit_fds`]) as [`Daemon::start_with`] does.
    pub fn start_command(cmd: Command, cards: &[(&str, &str)], extra: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        Daemon::spawn(dir, cmd, cards, extra)
    }

    fn spawn(
        dir: tempfile::TempDir,
        mut cmd: Command,
        cards: &[(&str, &str)],
        extra: &[&str],
    ) -> Daemon {
        ensure_binaries();
        let cards_dir = dir.path().join("cards");
        std::fs::create_dir(&cards_dir).unwrap();
        for (name, toml) in cards {
            std::fs::write(cards_dir.join(name), toml).unwrap();
        }
        let socket = dir.path().join("control.sock");
        // Subreaper mode unless the test asks for the PID-1 mapping off PID 1.
        if !extra.contains(&"--pid1") {
            cmd.arg("--subreaper");
        }
        let mut child = cmd
            .arg("--socket")
            .arg(&socket)
            .arg("--cards")
            .arg(&cards_dir)
            .arg("--state-dir")
            .arg(dir.path().join("run"))
            // Bounds how long a Drop (SIGTERM) can take, whatever the test left running.
            .args(["--shutdown-timeout", "3s"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn arje-init");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        // Readiness is an event: the line arje-init logs once it listens.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("control socket ready") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                }
                sink.lock().unwrap().push(line);
            }
        });
        if rx.recv().is_err() {
            let status = child.wait();
            panic!(
                "arje-init exited before ready ({status:?}): {:#?}",
                log.lock().unwrap()
            );
        }
        Daemon {
            child,
            dir,
            socket,
            log,
        }
    }

    /// arje-init's pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// How many lines arje-init has logged so far (read by a thread: lines still in the
    /// pipe are not counted yet).
    pub fn log_len(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// Connect, Hello, Ping: whether a Pong came back. Unlike [`Daemon::client`] it does
    /// not panic, so a test can say what happened instead (the daemon exited, say).
    pub fn ping(&self) -> Result<(), String> {
        let mut c = Client::try_connect(&self.socket)?;
        match c.call_checked(Request::Ping) {
            Some(Response::Pong) => Ok(()),
            other => Err(format!("ping answered {other:?}")),
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.socket)
    }

    /// Run the real `shuma` binary against this daemon.
    /// Write `toml` as `file` in the test's directory and `shuma ws create` it.
    pub fn ws_create(&self, file: &str, toml: &str) -> Output {
        let card = self.dir.path().join(file);
        std::fs::write(&card, toml).unwrap();
        self.shuma(&["ws", "create", card.to_str().unwrap()])
    }

    pub fn shuma(&self, args: &[&str]) -> Output {
        self.shuma_binary(&bin_dir().join("shuma"), args)
    }

    /// Run the `shuma` at `binary` (e.g. the previous release's) against this daemon.
    pub fn shuma_binary(&self, binary: &Path, args: &[&str]) -> Output {
        Command::new(binary)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run shuma")
    }

    /// Follow the journal from the start until `pred` has matched `n` events; returns
    /// every event seen. Blocks on the socket: the daemon pushes events as they happen.
    /// A daemon started on the state of an earlier one reads that one's events from the
    /// journal on disk first.
    pub fn events_until(&self, n: usize, pred: impl Fn(&EventKind) -> bool) -> Vec<Event> {
        let mut c = self.client();
        c.send(&Request::Events {
            after: None,
            follow: true,
        });
        let mut seen = Vec::new();
        let mut matched = 0;
        while matched < n {
            match c.recv() {
                Some(Response::Events(evs)) => {
                    for e in evs {
                        if pred(&e.kind) {
                            matched += 1;
                        }
                        seen.push(e);
                    }
                }
                Some(other) => panic!("unexpected {other:?}"),
                None => panic!("daemon closed the events stream; saw {seen:#?}"),
            }
        }
        seen
    }

    /// Follow a command's stdout (the daemon pushes output as it reads it: an event,
    /// not a poll) until `done` says what came is enough; return it.
    fn follow_stdout(&self, workspace: &str, command: &str, done: impl Fn(&str) -> bool) -> String {
        let mut c = self.client();
        c.send(&Request::Logs {
            workspace: workspace.into(),
            command: command.into(),
            stream: shuma_card::protocol::Stream::Stdout,
            follow: true,
        });
        let mut text = String::new();
        while !done(&text) {
            match c.recv() {
                Some(Response::Log { data, .. }) => text.push_str(&String::from_utf8_lossy(&data)),
                other => {
                    panic!("unexpected {other:?} while following {workspace}/{command}: {text:?}")
                }
            }
        }
        text
    }

    /// Follow a command's stdout until it has printed `n` lines; return them.
    pub fn wait_lines(&self, workspace: &str, command: &str, n: usize) -> Vec<String> {
        self.follow_stdout(workspace, command, |t| t.matches('\n').count() >= n)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Follow a command's stdout until `needle` appears in it.
    pub fn wait_output(&self, workspace: &str, command: &str, needle: &str) {
        self.follow_stdout(workspace, command, |t| t.contains(needle));
    }

    /// Wait for it to exit (a test sent the signal): returns the exit code.
    pub fn wait_exit(mut self) -> Option<i32> {
        self.child.wait().expect("wait arje-init").code()
    }

    /// SIGTERM and wait: returns the exit code.
    pub fn stop(mut self) -> Option<i32> {
        let pid = self.child.id() as i32;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = self.child.wait().expect("wait arje-init");
        status.code()
    }
}

impl Drop for Daemon {
    /// Stop it the way an operator would: SIGTERM stops every workspace (within the
    /// shutdown bound this fixture sets) before arje exits, so no service outlives the
    /// test. A daemon a test already killed is only reaped.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: signalling our own child, not yet reaped.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        }
        let _ = self.child.wait();
    }
}

/// stdout of a command as text.
pub fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr of a command as text.
pub fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Is `pid` a live process? A zombie is not: it has exited, and the one left to reap it
/// may be arje itself (an orphan of the service reparented to it), which need not have
/// done so by the time `ws stop` answers.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(s.get(s.rfind(')')? + 2..)?.starts_with('Z')))
        .is_some_and(|zombie| !zombie)
}
