//! Runtime benchmark (issue 2): prints, from one run on one machine,
//! 1. spawn+exit+reap of a tiny static program through arje (over the control socket,
//!    `Run { wait: true }` like `shuma run --wait`, and `Run` answered `Started`) against
//!    a raw clone3+exec+wait loop;
//! 2. the cost of that with 10,000 live children under arje, and the raw cost of one
//!    reap among 10,000 live children with waitid(P_ALL) against waitid(P_PIDFD);
//! 3. the `Ping` round trip on a persistent connection against a raw framed echo.
//!
//! Run: `cargo build --release -p arje-init && cargo run --release -p arje-bench --bin runtime`

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use arje_bench::{percentile, tiny_static, us, Client, Daemon};
use arje_runtime::parts::{ExecPlan, Spawner};
use shuma_card::protocol::{encode_frame, Request, Response, HEADER_LEN};
use shuma_card::{CommandKind, CommandSpec, LogTarget};

const SPAWNS: usize = 2000;
const LIVE: usize = 10_000;

fn run_req(prog: &str, log: LogTarget) -> Request {
    let mut cmd = CommandSpec::new("b", CommandKind::Task, vec![prog.to_string()]);
    cmd.log = log;
    Request::Run {
        workspace: "bench".into(),
        command: cmd,
        wait: true,
    }
}

/// Sequential spawn+exit+reap through the socket; per-iteration durations.
fn through_arje(c: &mut Client, prog: &str, n: usize) -> Vec<Duration> {
    let req = run_req(prog, LogTarget::Ring);
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        match c.call(&req) {
            Response::Exited { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
        times.push(t.elapsed());
    }
    times
}

/// Sequential `run` without waiting: the time until `Started` (the process runs on, and
/// its exit is reaped in a later turn).
fn run_started(c: &mut Client, prog: &str, n: usize) -> Vec<Duration> {
    let mut req = run_req(prog, LogTarget::Ring);
    if let Request::Run { wait, .. } = &mut req {
        *wait = false;
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        match c.call(&req) {
            Response::Started { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
        times.push(t.elapsed());
    }
    times
}

/// The same without arje: clone3(CLONE_VM|CLONE_VFORK|CLONE_PIDFD)+exec, then waitpid.
fn raw_loop(prog: &str, n: usize) -> Vec<Duration> {
    let plan = ExecPlan::new(&[prog.to_string()], &[], None, None).unwrap();
    let null = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .unwrap();
    let mut spawner = Spawner::default();
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let child = spawner
            .spawn(&plan, [null.as_fd(), null.as_fd(), null.as_fd()], None)
            .unwrap();
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(child.pid, std::ptr::null_mut(), libc::__WALL) };
        times.push(t.elapsed());
    }
    times
}

fn std_command_loop(prog: &str, n: usize) -> Vec<Duration> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        std::process::Command::new(prog).status().unwrap();
        times.push(t.elapsed());
    }
    times
}

fn summary(name: &str, mut t: Vec<Duration>) -> f64 {
    t.sort();
    // Rates from the median, not the mean: on a shared 2-core machine a few
    // descheduled iterations would otherwise decide the ratio.
    let rate = 1.0 / percentile(&t, 0.5).as_secs_f64();
    println!(
        "{name:<48} {rate:>9.0}/s  median {:>7.1} us  p90 {:>7.1} us",
        us(percentile(&t, 0.5)),
        us(percentile(&t, 0.9))
    );
    rate
}

/// One child among `live` others of this process exits: time to reap it with
/// waitid(P_ALL, WNOHANG) (the scan the kernel does over all children) against
/// waitid(P_PIDFD) on its pidfd.
fn raw_reap_among(live: usize, quick: &str, pause: &str) {
    let null = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .unwrap();
    let mut spawner = Spawner::default();
    let plan_pause = ExecPlan::new(&[pause.to_string()], &[], None, None).unwrap();
    let plan_quick = ExecPlan::new(&[quick.to_string()], &[], None, None).unwrap();
    let stdio = [null.as_fd(), null.as_fd(), null.as_fd()];
    let sleepers: Vec<_> = (0..live)
        .map(|_| spawner.spawn(&plan_pause, stdio, None).unwrap())
        .collect();
    let mut p_all = Vec::new();
    let mut p_pidfd = Vec::new();
    for round in 0..400 {
        let child = spawner.spawn(&plan_quick, stdio, None).unwrap();
        // Wait until it has exited (pidfd readable), then time only the reap.
        let mut pfd = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&child.pidfd),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on a valid fd.
        unsafe { libc::poll(&mut pfd, 1, -1) };
        let t = Instant::now();
        if round % 2 == 0 {
            // SAFETY: zeroed siginfo is a valid out-parameter.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // The way a SIGCHLD handler must reap when it cannot know which child
            // exited: loop until WNOHANG finds nothing.
            // SAFETY: plain waitid calls.
            unsafe {
                while libc::waitid(
                    libc::P_ALL,
                    0,
                    &mut info,
                    libc::WEXITED | libc::WNOHANG | libc::__WALL,
                ) == 0
                    && info.si_pid() != 0
                {
                    info = std::mem::zeroed();
                }
            }
            p_all.push(t.elapsed());
        } else {
            // SAFETY: as above.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: waitid on our child's pidfd.
            unsafe {
                libc::waitid(
                    libc::P_PIDFD,
                    std::os::fd::AsRawFd::as_raw_fd(&child.pidfd) as u32,
                    &mut info,
                    libc::WEXITED | libc::__WALL,
                )
            };
            p_pidfd.push(t.elapsed());
        }
    }
    // The whole raw spawn+exit+reap with those children alive, for comparison with
    // arje's figure under the same load.
    let mut full = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        let child = spawner.spawn(&plan_quick, stdio, None).unwrap();
        // SAFETY: zeroed siginfo is a valid out-parameter; waitid on our child's pidfd.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        unsafe {
            libc::waitid(
                libc::P_PIDFD,
                std::os::fd::AsRawFd::as_raw_fd(&child.pidfd) as u32,
                &mut info,
                libc::WEXITED | libc::__WALL,
            )
        };
        full.push(t.elapsed());
    }
    full.sort();
    println!(
        "raw spawn+exit+reap (P_PIDFD) among {live} live: median {:.1} us",
        us(percentile(&full, 0.5))
    );
    for s in &sleepers {
        // SAFETY: killing and reaping our own children.
        unsafe {
            libc::kill(s.pid, libc::SIGKILL);
            libc::waitpid(s.pid, std::ptr::null_mut(), libc::__WALL);
        }
    }
    p_all.sort();
    p_pidfd.sort();
    println!(
        "raw reap among {live} live: waitid(P_ALL) loop median {:.1} us, waitid(P_PIDFD) median {:.1} us",
        us(percentile(&p_all, 0.5)),
        us(percentile(&p_pidfd, 0.5))
    );
}

fn ping_rtt(c: &mut Client, n: usize) -> Vec<Duration> {
    let mut t = Vec::with_capacity(n);
    for _ in 0..n {
        let s = Instant::now();
        assert_eq!(c.call(&Request::Ping), Response::Pong);
        t.push(s.elapsed());
    }
    t
}

/// A raw framed echo over a unix socket: the floor a control round trip can reach.
fn echo_rtt(dir: &std::path::Path, n: usize) -> Vec<Duration> {
    let path = dir.join("echo.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut len = [0u8; HEADER_LEN];
        while s.read_exact(&mut len).is_ok() {
            let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&len).unwrap();
            s.write_all(&buf).unwrap();
        }
    });
    let mut c = UnixStream::connect(&path).unwrap();
    let frame = encode_frame(&Request::Ping);
    let mut back = vec![0u8; frame.len()];
    let mut t = Vec::with_capacity(n);
    for _ in 0..n {
        let s = Instant::now();
        c.write_all(&frame).unwrap();
        c.read_exact(&mut back).unwrap();
        t.push(s.elapsed());
    }
    t
}

fn median_us(mut t: Vec<Duration>) -> f64 {
    t.sort();
    us(percentile(&t, 0.5))
}

/// The same spawn+exit+reap through the runtime's in-process API: no socket, the
/// loop driven by `turn()` until the command's exit is recorded.
fn in_process(dir: &std::path::Path, prog: &str, n: usize) -> Vec<Duration> {
    let run = arje_bench::run_dir();
    let cfg = arje_runtime::Config {
        mode: arje_runtime::Mode::Subreaper,
        socket: dir.join("inproc.sock"),
        socket_group: None,
        cards_dir: None,
        state_dir: run.path().to_path_buf(),
        durable_dir: None,
        cgroup_root: None,
        shutdown_timeout: Duration::from_secs(5),
        child_nofile: None,
        syslog: None,
        journal_max: arje_runtime::JOURNAL_MAX_DEFAULT,
        journal_dir: None,
        log_dir: None,
        log_file_max: arje_runtime::LOG_FILE_MAX_DEFAULT,
        vsock_port: None,
    };
    let mut rt = arje_runtime::Runtime::new(cfg).expect("runtime");
    let spec = shuma_card::WorkspaceSpec {
        name: "bench".into(),
        ..Default::default()
    };
    rt.create_workspace(spec).expect("workspace");
    let cmd = CommandSpec::new("b", CommandKind::Task, vec![prog.to_string()]);
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let id = rt.start_oneshot("bench", cmd.clone()).expect("start");
        while rt.exit_status(id).is_none() {
            rt.turn();
        }
        times.push(t.elapsed());
    }
    times
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    // `runtime inproc`: only the in-process spawn loop (for profiling).
    if std::env::args().nth(1).as_deref() == Some("inproc") {
        let quick = tiny_static(dir.path(), "exit0", "");
        let quick = quick.to_str().unwrap().to_string();
        let raw = summary(
            "raw clone3(VM|VFORK|PIDFD)+exec+waitpid",
            raw_loop(&quick, SPAWNS),
        );
        let inproc = summary(
            "arje in-process API",
            in_process(dir.path(), &quick, SPAWNS * 5),
        );
        println!("arje in-process / raw = {:.2}", inproc / raw);
        return;
    }
    let quick = tiny_static(dir.path(), "exit0", "");
    let pause = tiny_static(dir.path(), "pause", "for (;;) sys1(34, 0);");
    let (quick, pause) = (
        quick.to_str().unwrap().to_string(),
        pause.to_str().unwrap().to_string(),
    );
    let cards = dir.path().join("cards");
    std::fs::create_dir(&cards).unwrap();
    std::fs::write(cards.join("bench.toml"), "[workspace]\nname = \"bench\"\n").unwrap();
    let daemon = Daemon::start(dir.path(), &["--cards", cards.to_str().unwrap()]);
    let mut c = Client::connect(&daemon.socket);

    println!("== spawn+exit+reap of a tiny static program ({SPAWNS} sequential) ==");
    through_arje(&mut c, &quick, 200); // warm-up
    raw_loop(&quick, 200);
    let raw = summary(
        "raw clone3(VM|VFORK|PIDFD)+exec+waitpid",
        raw_loop(&quick, SPAWNS),
    );
    summary(
        "std::process::Command (posix_spawn)",
        std_command_loop(&quick, SPAWNS),
    );
    let arje = summary(
        "arje over the socket (run --wait, ring logs)",
        through_arje(&mut c, &quick, SPAWNS),
    );
    println!("arje over the socket / raw = {:.2}", arje / raw);
    let started = summary(
        "arje over the socket (run, until Started)",
        run_started(&mut c, &quick, SPAWNS),
    );
    println!("arje run until Started / raw = {:.2}", started / raw);
    in_process(&dir.path().join("warm"), &quick, 200);
    let inproc = summary(
        "arje in-process API (turn() until exit, ring logs)",
        in_process(dir.path(), &quick, SPAWNS),
    );
    println!("arje in-process / raw = {:.2} (goal >= 0.80)", inproc / raw);

    println!("\n== with {LIVE} live children under arje ==");
    let req = {
        let mut cmd = CommandSpec::new("sleeper", CommandKind::Task, vec![pause.clone()]);
        cmd.log = LogTarget::File("/dev/null".into());
        Request::Run {
            workspace: "bench".into(),
            command: cmd,
            wait: false,
        }
    };
    for _ in 0..LIVE {
        c.send(&req);
    }
    for _ in 0..LIVE {
        assert!(matches!(c.recv(), Response::Started { .. }));
    }
    let loaded = summary(
        &format!("arje run --wait among {LIVE} live"),
        through_arje(&mut c, &quick, 500),
    );
    println!("arje with {LIVE} live / idle arje = {:.2}", loaded / arje);
    drop(c);
    drop(daemon);
    raw_reap_among(LIVE, &quick, &pause);
    raw_reap_among(0, &quick, &pause);

    println!("\n== control round trip (persistent connection, 20000 sequential) ==");
    let daemon = Daemon::start(&dir.path().join("d2"), &[]);
    let mut c = Client::connect(&daemon.socket);
    ping_rtt(&mut c, 2000);
    let arje_rtt = median_us(ping_rtt(&mut c, 20_000));
    let echo = median_us(echo_rtt(dir.path(), 20_000));
    println!("raw framed echo: median {echo:.1} us");
    println!("arje Ping/Pong:  median {arje_rtt:.1} us");
    println!("arje / echo = {:.2} (goal <= 1.50)", arje_rtt / echo);
}
