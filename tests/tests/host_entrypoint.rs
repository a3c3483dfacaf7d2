//! Entrypoint mode, `arje-init [-g] -- PROGRAM` (arje-init/src/entrypoint/,
//! docs/ENTRYPOINT.md): the real binary, mostly as PID 1 of a pid namespace of its own
//! (`unshare --pid --fork --mount-proc`, as a container runtime starts it), once as a
//! subreaper under the test. The list follows what tini's own suite checks: signals
//! reach the child, `-g` reaches its group, orphans are reaped, exit codes come back,
//! and a failed exec is told apart.
//!
//! The programs are small perl scripts that print a line once their handlers are in
//! place; the tests wait for that line, never for time.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdout, Command, Stdio};

use arje_tests::host::{bin_dir, ensure_binaries};

/// A running `arje-init -- PROGRAM`, its stdout read line by line (PROGRAM's lines),
/// its stderr collected by a thread (arje's log).
struct Entry {
    /// arje-init itself, or unshare(1) around it.
    child: Child,
    /// arje-init's pid as the test sees it (inside the namespace it is 1).
    arje: i32,
    in_namespace: bool,
    stdout: BufReader<ChildStdout>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// Where arje-init runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// PID 1 of a new pid namespace (with its own /proc).
    Pid1,
    /// A plain child of the test: arje makes itself a subreaper.
    Subreaper,
}

impl Entry {
    fn start(place: Place, flags: &[&str], program: &[&str]) -> Entry {
        Entry::start_on(place, flags, program, None)
    }

    /// [`Entry::start`], with `tty` (a pty's slave) as stdin and as the controlling
    /// terminal of a new session that arje-init (or unshare) leads.
    fn start_on(
        place: Place,
        flags: &[&str],
        program: &[&str],
        tty: Option<std::os::fd::OwnedFd>,
    ) -> Entry {
        ensure_binaries();
        let arje_bin = bin_dir().join("arje-init");
        let mut cmd = match place {
            Place::Pid1 => {
                let mut c = Command::new("/usr/bin/unshare");
                c.args(["--pid", "--fork", "--mount-proc"]).arg(&arje_bin);
                c
            }
            Place::Subreaper => Command::new(&arje_bin),
        };
        match tty {
            Some(slave) => {
                cmd.stdin(Stdio::from(slave));
                // SAFETY: between fork and exec only async-signal-safe calls (setsid,
                // ioctl) on fd 0, which the child already has.
                unsafe {
                    cmd.pre_exec(|| {
                        if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
            }
            None => {
                cmd.stdin(Stdio::piped());
            }
        }
        // As a shell would start it: glibc's posix_spawn (std's Command without a
        // pre_exec) leaves the C library's signals 32 and 33 ignored in the child, which
        // a shell does not. Reset them with the raw call (glibc's sigaction refuses them).
        // SAFETY: only rt_sigaction(2), async-signal-safe, on a zeroed (SIG_DFL) action.
        unsafe {
            cmd.pre_exec(|| {
                let default = [0u64; 4]; // handler SIG_DFL, flags, restorer, mask
                for sig in [32, 33] {
                    libc::syscall(
                        libc::SYS_rt_sigaction,
                        sig,
                        default.as_ptr(),
                        std::ptr::null_mut::<u64>(),
                        8,
                    );
                }
                Ok(())
            });
        }
        let mut child = cmd
            .args(flags)
            .arg("--")
            .args(program)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn arje-init");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let arje = child.id() as i32;
        Entry {
            child,
            arje,
            in_namespace: place == Place::Pid1,
            stdout,
            stderr: Some(stderr),
        }
    }

    /// The next line PROGRAM printed (without its newline); panics at EOF with arje's
    /// log.
    fn line(&mut self) -> String {
        let mut s = String::new();
        let n = self.stdout.read_line(&mut s).expect("read stdout");
        if n == 0 {
            let status = self.child.wait();
            let log = self.stderr.take().map(|h| h.join().unwrap());
            panic!("PROGRAM's stdout ended early; arje exited {status:?}; log: {log:?}");
        }
        s.trim_end().to_string()
    }

    /// Reads lines until one equals `want`; returns the lines before it.
    fn until(&mut self, want: &str) -> Vec<String> {
        let mut before = Vec::new();
        loop {
            let l = self.line();
            if l == want {
                return before;
            }
            before.push(l);
        }
    }

    /// arje's pid as seen from here. Under unshare it is unshare's only child; call
    /// this once PROGRAM has printed a line, so that arje surely exists.
    fn arje_pid(&mut self) -> i32 {
        if self.in_namespace {
            let unshare = self.child.id();
            let children =
                std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
                    .expect("unshare's children");
            self.arje = children
                .split_whitespace()
                .next()
                .and_then(|p| p.parse().ok())
                .expect("arje-init under unshare");
            self.in_namespace = false;
        }
        self.arje
    }

    fn signal(&mut self, sig: i32) {
        let pid = self.arje_pid();
        // SAFETY: kill(2) on a process this test started; no memory is involved.
        let r = unsafe { libc::kill(pid, sig) };
        assert_eq!(r, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Sends PROGRAM a line on its stdin.
    fn say(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("write PROGRAM's stdin");
    }

    /// Waits for arje (or unshare, which exits with arje's status) to end; returns the
    /// exit code, the rest of PROGRAM's output and arje's log.
    fn finish(mut self) -> (i32, Vec<String>, String) {
        self.child.stdin.take();
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).expect("read stdout");
        let status = self.child.wait().expect("wait arje-init");
        let log = self.stderr.take().unwrap().join().unwrap();
        let code = status
            .code()
            .unwrap_or_else(|| panic!("arje-init ended by a signal: {status:?}; log: {log}"));
        (code, rest.lines().map(str::to_string).collect(), log)
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        // A failed test must not leave arje (which forwards SIGTERM rather than dying)
        // or its namespace behind: SIGKILL ends both.
        if self.stderr.is_some() {
            if let Ok(None) = self.child.try_wait() {
                let _ = self.arje_pid_quiet().map(|p| {
                    // SAFETY: kill(2) on a process this test started.
                    unsafe { libc::kill(p, libc::SIGKILL) }
                });
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

impl Entry {
    fn arje_pid_quiet(&mut self) -> Option<i32> {
        if !self.in_namespace {
            return Some(self.arje);
        }
        let unshare = self.child.id();
        std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }
}

/// A perl program: `$| = 1` (every print is a line on the pipe at once) and `body`.
fn perl(body: &str) -> Vec<String> {
    vec![
        "/usr/bin/perl".to_string(),
        "-e".to_string(),
        format!("$| = 1; {body}"),
    ]
}

fn run(place: Place, flags: &[&str], program: &[String]) -> Entry {
    let program: Vec<&str> = program.iter().map(String::as_str).collect();
    Entry::start(place, flags, &program)
}

/// PROGRAM traps TERM, INT, HUP and USR1, prints which one came and exits 10. The
/// alarm bounds a broken forward (PROGRAM then dies of SIGALRM, 142): a failure, not a
/// hang, and never reached when the signal comes.
const TRAP_FOUR: &str = r#"
alarm 120;
for my $s (qw(TERM INT HUP USR1)) { $SIG{$s} = sub { print "got $_[0]\n"; exit 10 } }
print "ready\n";
sleep;
exit 1;
"#;

fn signal_reaches_child(sig: i32, name: &str) {
    // Arrange
    let mut e = run(Place::Pid1, &[], &perl(TRAP_FOUR));
    e.until("ready");

    // Act
    e.signal(sig);
    let (code, lines, log) = e.finish();

    // Assert
    assert_eq!(lines, [format!("got {name}")], "log: {log}");
    assert_eq!(code, 10, "log: {log}");
}

#[test]
fn test_entrypoint_pid1_sigterm_forwarded_child_exit_code() {
    signal_reaches_child(libc::SIGTERM, "TERM");
}

#[test]
fn test_entrypoint_pid1_sigint_forwarded_child_exit_code() {
    signal_reaches_child(libc::SIGINT, "INT");
}

#[test]
fn test_entrypoint_pid1_sighup_forwarded_child_exit_code() {
    signal_reaches_child(libc::SIGHUP, "HUP");
}

#[test]
fn test_entrypoint_pid1_sigusr1_forwarded_child_exit_code() {
    signal_reaches_child(libc::SIGUSR1, "USR1");
}

#[test]
fn test_entrypoint_subreaper_sigterm_forwarded_child_exit_code() {
    // Arrange
    let mut e = run(Place::Subreaper, &[], &perl(TRAP_FOUR));
    e.until("ready");

    // Act
    e.signal(libc::SIGTERM);
    let (code, lines, log) = e.finish();

    // Assert
    assert_eq!(lines, ["got TERM"], "log: {log}");
    assert_eq!(code, 10, "log: {log}");
}

#[test]
fn test_entrypoint_subreaper_c_library_realtime_signal_forwarded_not_fatal() {
    // Arrange: PROGRAM leaves signal 32 (glibc's SIGCANCEL, musl's too) at its default,
    // which ends a process; so would it arje, were it not blocked with the raw calls.
    let mut e = run(
        Place::Subreaper,
        &[],
        &perl("alarm 120; print \"ready\\n\"; sleep; exit 1;"),
    );
    e.until("ready");

    // Act
    e.signal(32);
    let (code, _, log) = e.finish();

    // Assert: arje lived to report PROGRAM's death by signal 32.
    assert_eq!(code, 128 + 32, "log: {log}");
}

/// PROGRAM forks a grandchild (same process group); both trap `sig`, and the grandchild
/// exits 7 on it (8 on SIGTERM). PROGRAM waits for the grandchild and exits with its
/// status. With `term_grandchild`, PROGRAM's USR1 handler also sends the grandchild a
/// SIGTERM: without `-g` that is the only signal the grandchild gets, so the test ends
/// instead of waiting for a `sig` that must not come. (With `-g` it would race: kill(2)
/// of a group signals one member after the other, and PROGRAM may handle its USR1 and
/// send the TERM before the grandchild has its USR1.) The alarm bounds a broken `-g`.
fn group_program(sig: &str, term_grandchild: bool) -> Vec<String> {
    let term = if term_grandchild {
        r#"kill "TERM", $pid;"#
    } else {
        ""
    };
    perl(&format!(
        r#"
alarm 120;
my $pid = fork // die "fork: $!";
if ($pid == 0) {{
    $SIG{{{sig}}} = sub {{ print "grandchild got {sig}\n"; exit 7 }};
    $SIG{{TERM}} = sub {{ print "grandchild got TERM\n"; exit 8 }};
    print "grandchild ready\n";
    sleep;
    exit 1;
}}
$SIG{{{sig}}} = sub {{ print "child got {sig}\n"; {term} }};
print "child ready\n";
waitpid($pid, 0);
exit($? >> 8);
"#
    ))
}

/// Run [`group_program`] for `sig` under arje with `flags` at `place`, wait for both
/// processes to be ready, send `signal` to arje; the exit code and the lines printed
/// after the readiness lines, sorted.
fn group_case(
    place: Place,
    flags: &[&str],
    sig: &str,
    term_grandchild: bool,
    signal: i32,
) -> (i32, Vec<String>, String) {
    // Arrange
    let mut e = run(place, flags, &group_program(sig, term_grandchild));
    let mut ready = vec![e.line(), e.line()];
    ready.sort();
    assert_eq!(ready, ["child ready", "grandchild ready"]);

    // Act
    e.signal(signal);
    let (code, mut lines, log) = e.finish();
    lines.sort();
    (code, lines, log)
}

#[test]
fn test_entrypoint_forward_to_group_grandchild_gets_signal() {
    let (code, lines, log) = group_case(Place::Pid1, &["-g"], "USR1", false, libc::SIGUSR1);

    // Assert: both got it, and PROGRAM's status is the grandchild's 7.
    assert_eq!(
        lines,
        ["child got USR1", "grandchild got USR1"],
        "log: {log}"
    );
    assert_eq!(code, 7, "log: {log}");
}

#[test]
fn test_entrypoint_without_g_only_child_gets_signal() {
    let (code, lines, log) = group_case(Place::Pid1, &[], "USR1", true, libc::SIGUSR1);

    // Assert: the grandchild heard only PROGRAM's SIGTERM.
    assert_eq!(
        lines,
        ["child got USR1", "grandchild got TERM"],
        "log: {log}"
    );
    assert_eq!(code, 8, "log: {log}");
}

#[test]
fn test_entrypoint_sigcont_reaches_whole_group_without_g() {
    // As after a job-control stop, which stops every member of the group.
    let (code, lines, log) = group_case(Place::Pid1, &[], "CONT", false, libc::SIGCONT);

    assert_eq!(
        lines,
        ["child got CONT", "grandchild got CONT"],
        "log: {log}"
    );
    assert_eq!(code, 7, "log: {log}");
}

#[test]
fn test_entrypoint_long_forward_to_group_flag_same_as_g() {
    let (code, lines, log) = group_case(
        Place::Subreaper,
        &["--forward-to-group"],
        "USR1",
        false,
        libc::SIGUSR1,
    );

    assert_eq!(
        lines,
        ["child got USR1", "grandchild got USR1"],
        "log: {log}"
    );
    assert_eq!(code, 7, "log: {log}");
}

/// PROGRAM makes 1,000 orphans: each of 1,000 short-lived middles forks a grandchild
/// and exits at once, PROGRAM reaps the middle, the grandchild (holding the write end
/// of a pipe) exits, and arje, PID 1 of the namespace, must reap it. PROGRAM reads the
/// pipe to EOF (every orphan has closed its files, a step of exit(2) before it
/// becomes a zombie), then scans its namespace's /proc until no process but arje and
/// itself is left, zombie or not, bounded by a deadline that only a broken reaper
/// reaches, and prints how many zombies and other processes are left.
const ORPHANS: &str = r#"
use POSIX ();
pipe(my $r, my $w) or die "pipe: $!";
for (1 .. 1000) {
    my $mid = fork // die "fork: $!";
    if ($mid == 0) {
        my $g = fork // POSIX::_exit(1);
        if ($g == 0) { close $r; POSIX::_exit(0) }
        POSIX::_exit(0);
    }
    waitpid($mid, 0);
}
close $w;
my $buf;
1 while sysread($r, $buf, 4096);
print "orphans exited\n";
my ($zombies, $others);
my $deadline = time + 60;
do {
    ($zombies, $others) = (0, 0);
    opendir(my $d, "/proc") or die "/proc: $!";
    for my $p (grep { /^\d+$/ } readdir $d) {
        next if $p == 1 || $p == $$;
        open(my $f, "<", "/proc/$p/stat") or next;
        my $stat = <$f>;
        $stat =~ /\)\s+(\S)/ or next;
        if ($1 eq "Z") { $zombies++ } else { $others++ }
    }
    select(undef, undef, undef, 0.002) if $zombies || $others;
} while (($zombies || $others) && time < $deadline);
print "zombies $zombies others $others\n";
exit 0;
"#;

#[test]
fn test_entrypoint_pid1_thousand_orphans_no_zombie_left() {
    // Arrange
    let mut e = run(Place::Pid1, &["-vv"], &perl(ORPHANS));
    e.until("orphans exited");

    // Act
    let (code, lines, log) = e.finish();

    // Assert: none left, and arje counted PROGRAM plus the 1,000 orphans (PROGRAM
    // reaped the middles itself).
    assert_eq!(lines, ["zombies 0 others 0"], "log: {log}");
    assert_eq!(code, 0, "log: {log}");
    assert!(
        log.contains("reaped 1001 processes in all"),
        "arje's count: {log}"
    );
}

#[test]
fn test_entrypoint_pid1_exit_codes_come_back() {
    // Arrange: exit 0, exit 1, killed by SIGKILL, killed by SIGTERM (no handler).
    let cases = [
        ("exit 0", 0),
        ("exit 1", 1),
        ("kill -KILL $$", 137),
        ("kill -TERM $$", 143),
    ];

    // Act
    let got: Vec<(i32, i32)> = cases
        .iter()
        .map(|&(script, want)| {
            let e = Entry::start(Place::Pid1, &[], &["/bin/sh", "-c", script]);
            (e.finish().0, want)
        })
        .collect();

    // Assert
    for (code, want) in got {
        assert_eq!(code, want);
    }
}

#[test]
fn test_entrypoint_missing_program_exits_127() {
    // Arrange: a path that does not exist, and a bare name PATH does not have.
    let programs = ["/nonexistent/arje-test-prog", "arje-test-no-such-program"];

    // Act
    let got: Vec<(i32, String)> = programs
        .iter()
        .map(|p| {
            let (code, _, log) = Entry::start(Place::Subreaper, &[], &[p]).finish();
            (code, log)
        })
        .collect();

    // Assert
    for ((code, log), p) in got.iter().zip(programs) {
        assert_eq!(*code, 127, "{p}: {log}");
        assert!(log.contains(p), "the message names {p}: {log}");
    }
}

#[test]
fn test_entrypoint_non_executable_file_exits_126() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-executable");
    std::fs::write(&file, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();

    // Act
    let (code, _, log) = Entry::start(Place::Pid1, &[], &[file.to_str().unwrap()]).finish();

    // Assert
    assert_eq!(code, 126, "{log}");
    assert!(log.contains("Permission denied"), "{log}");
}

/// PROGRAM forks a middle that forks a grandchild and exits; PROGRAM reaps the middle
/// (by then the grandchild is an orphan), prints the grandchild's pid, and on a line
/// from the test lets the grandchild go and exits.
const ORPHAN_PARENT: &str = r#"
pipe(my $r, my $w) or die "pipe: $!";
my $mid = fork // die "fork: $!";
if ($mid == 0) {
    my $g = fork // exit 1;
    if ($g == 0) { close $w; my $b; sysread($r, $b, 1); exit 0 }
    print "orphan $g\n";
    exit 0;
}
close $r;
waitpid($mid, 0);
print "middle reaped\n";
my $line = <STDIN>;
close $w;
exit 0;
"#;

#[test]
fn test_entrypoint_subreaper_orphan_reparented_to_arje() {
    // Arrange
    let mut e = run(Place::Subreaper, &[], &perl(ORPHAN_PARENT));
    let orphan = e.line();
    let orphan: i32 = orphan
        .strip_prefix("orphan ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{orphan:?}"));
    e.until("middle reaped");

    // Act: the middle is gone, so the orphan has its new parent.
    let status = std::fs::read_to_string(format!("/proc/{orphan}/status")).unwrap();
    let ppid: i32 = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|p| p.trim().parse().ok())
        .unwrap();
    let arje = e.arje_pid();
    e.say("done");
    let (code, _, log) = e.finish();

    // Assert
    assert_eq!(ppid, arje, "the orphan went to {ppid}, not arje {arje}");
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("zombies will not be reaped"), "{log}");
}

#[test]
fn test_entrypoint_pid1_child_own_group_empty_mask() {
    // Arrange: PROGRAM reports its pid, its group and its blocked signals; then grep,
    // as PROGRAM itself, its ignored ones (perl ignores a few of its own at start).
    let program = perl(
        r#"open(my $f, "<", "/proc/self/status") or die;
           my %s = map { /^(\w+):\s*(\S*)/ ? ($1, $2) : () } <$f>;
           print "$$ ", getpgrp(), " $s{SigBlk}\n";"#,
    );
    let grep = ["/bin/grep", "^SigIgn", "/proc/self/status"];

    // Act
    let (code, lines, log) = run(Place::Pid1, &[], &program).finish();
    let (grep_code, ignored, grep_log) = Entry::start(Place::Pid1, &[], &grep).finish();

    // Assert: PID 2 of the namespace, leading group 2, nothing blocked although arje
    // blocks nearly everything. Ignored among the standard signals 1-31: what this test
    // process ignores (inherited through unshare and arje, as if PROGRAM were exec'd
    // directly) but SIGPIPE, which std resets in a child and arje's runtime ignores for
    // itself alone. (The C library's own real-time signals, 32 and 33, are left out:
    // glibc's posix_spawn, through which std starts unshare here, sets them to SIG_IGN
    // in its child; arje's spawn is a fork, which leaves them as they were.)
    assert_eq!(lines, ["2 2 0000000000000000"], "{log}");
    assert_eq!(code, 0, "{log}");
    let ours = std::fs::read_to_string("/proc/self/status").unwrap();
    let ours = ours.lines().find(|l| l.starts_with("SigIgn:")).unwrap();
    let ours = u64::from_str_radix(ours["SigIgn:".len()..].trim(), 16).unwrap();
    let standard = |mask: u64| mask & 0x7fff_ffff;
    let want = standard(ours) & !(1 << (libc::SIGPIPE - 1));
    let [line] = ignored.as_slice() else {
        panic!("{ignored:?} {grep_log}")
    };
    let got = u64::from_str_radix(line["SigIgn:".len()..].trim(), 16).unwrap();
    assert_eq!(standard(got), want, "{line} {grep_log}");
    assert_eq!(grep_code, 0, "{grep_log}");
}

#[test]
fn test_entrypoint_pid1_tty_child_gets_foreground_ctrl_c_reaches_it() {
    // Arrange: a pty whose slave is the session's controlling terminal and fd 0.
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let program = perl(
        r#"use POSIX ();
           alarm 120;
           $SIG{INT} = sub { print "got INT\n"; exit 3 };
           print "pgrp ", getpgrp(), " pid $$ fg ", POSIX::tcgetpgrp(0), "\n";
           sleep;
           exit 1;"#,
    );
    let program: Vec<&str> = program.iter().map(String::as_str).collect();
    let mut e = Entry::start_on(Place::Pid1, &["-vv"], &program, Some(pty.slave));
    let fg = e.line();

    // Act: Ctrl-C on the terminal; the line discipline signals the foreground group.
    let mut master = std::fs::File::from(pty.master);
    std::io::Write::write_all(&mut master, b"\x03").expect("write the pty");
    let (code, lines, log) = e.finish();

    // Assert: PROGRAM leads its group and holds the foreground; the SIGINT came from
    // the terminal straight to it, not through arje (which is not in that group).
    assert_eq!(fg, "pgrp 2 pid 2 fg 2", "{log}");
    assert_eq!(lines, ["got INT"], "{log}");
    assert_eq!(code, 3, "{log}");
    assert!(!log.contains("forwarded SIGINT"), "{log}");
}

#[test]
fn test_entrypoint_subreaper_tty_ctrl_z_stops_job_fg_resumes_it() {
    // Arrange: arje leads a session on a pty, as a job of an interactive shell would be
    // on its terminal; PROGRAM reports, when continued, whether it has the foreground.
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let program = perl(
        r#"use POSIX ();
           alarm 120;
           $SIG{CONT} = sub {
               my $fg = POSIX::tcgetpgrp(0) == getpgrp() ? "yes" : "no";
               print "continued fg=$fg\n";
               exit 0;
           };
           print "ready\n";
           sleep;
           exit 1;"#,
    );
    let program: Vec<&str> = program.iter().map(String::as_str).collect();
    let mut e = Entry::start_on(Place::Subreaper, &["-vv"], &program, Some(pty.slave));
    e.until("ready");
    let arje = rustix::process::Pid::from_raw(e.arje_pid()).unwrap();
    let mut master = std::fs::File::from(pty.master);

    // Act: Ctrl-Z stops PROGRAM's group; arje must stop too, as a job does, with the
    // terminal back in its own group. Then what a shell's `fg` does: SIGCONT to arje,
    // whose group has the foreground.
    std::io::Write::write_all(&mut master, b"\x1a").expect("write the pty");
    let stop = rustix::process::waitid(
        rustix::process::WaitId::Pid(arje),
        rustix::process::WaitIdOptions::STOPPED,
    )
    .expect("waitid for arje's stop")
    .expect("a status");
    let fg_while_stopped = rustix::termios::tcgetpgrp(&master).expect("tcgetpgrp");
    // SAFETY: kill(2) on a process this test started.
    let sent = unsafe { libc::kill(arje.as_raw_nonzero().get(), libc::SIGCONT) };
    assert_eq!(sent, 0, "SIGCONT to arje");
    let (code, lines, log) = e.finish();

    // Assert
    assert!(stop.stopped(), "{log}");
    assert_eq!(
        fg_while_stopped, arje,
        "the terminal went back to arje's group: {log}"
    );
    assert_eq!(lines, ["continued fg=yes"], "{log}");
    assert_eq!(code, 0, "{log}");
}
