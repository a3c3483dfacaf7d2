//! The programs the benchmark's services run, and their cost measured without arje.

use std::os::fd::AsFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use arje_runtime::parts::{ExecPlan, Spawner};

/// The first argument that makes this binary the Rust helper.
pub const HELPER_ARG: &str = "--notify-helper";

/// CLOCK_MONOTONIC in microseconds: the clock of the journal's `mono_us`.
pub fn mono_us() -> u64 {
    // SAFETY: zeroed timespec is a valid out-parameter.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// The service: sleep, then `READY=1` with the times it started and sent, then wait
/// for the stop signal (SIGTERM's default action ends it).
pub fn helper(delay_us: u64) -> ! {
    let t0 = mono_us();
    std::thread::sleep(Duration::from_micros(delay_us));
    if let Some(target) = std::env::var_os("NOTIFY_SOCKET") {
        let target = target.as_bytes();
        // A leading '@' names the abstract namespace (sd_notify(3)).
        let addr = match target.strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name),
            None => SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(target)),
        }
        .expect("NOTIFY_SOCKET address");
        let sock = UnixDatagram::unbound().expect("datagram socket");
        let t1 = mono_us();
        sock.send_to_addr(format!("READY=1\nSTATUS=t0={t0} t1={t1}").as_bytes(), &addr)
            .expect("send READY=1");
    }
    loop {
        std::thread::park();
    }
}

#[derive(Clone, Copy, PartialEq)]
pub enum Program {
    /// This binary as `--notify-helper`.
    Helper,
    /// `sh -c 'sleep D; systemd-notify --ready; exec sleep 3600'`.
    Shell,
    /// The same as the helper in C, static (glibc): a notifier that costs little to
    /// start, so that its start takes less CPU from arje on a small machine.
    StaticC,
    /// A tiny static program that only calls pause(2): a spawn with no startup cost.
    Pause,
}

/// The C notifier: what the Rust helper does, in a static binary.
const NOTIFY_C: &str = include_str!("notify.c");

/// Compile [`NOTIFY_C`] with `cc -static`; returns its path.
pub fn build_notify_c(dir: &Path) -> String {
    let src = dir.join("notify.c");
    let out = dir.join("notify-c");
    std::fs::write(&src, NOTIFY_C).unwrap();
    let status = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("run cc");
    assert!(status.success(), "cc -static failed for the C notifier");
    out.to_str().unwrap().to_string()
}

/// The programs a service runs: this binary (the helper) and the static pause program.
pub struct Programs {
    pub helper: String,
    pub notify_c: String,
    pub pause: String,
}

pub fn argv(program: Program, p: &Programs, delay_us: u64) -> Vec<String> {
    let helper = &p.helper;
    match program {
        Program::Pause => vec![p.pause.clone()],
        Program::StaticC => vec![p.notify_c.clone(), delay_us.to_string()],
        Program::Helper => vec![helper.into(), HELPER_ARG.into(), delay_us.to_string()],
        Program::Shell => vec![
            "/bin/sh".into(),
            "-c".into(),
            format!(
                "/bin/sleep {}; /usr/bin/systemd-notify --ready; exec /bin/sleep 3600",
                delay_us as f64 / 1e6
            ),
        ],
    }
}

/// The notifier alone, outside arje: spawn it with `NOTIFY_SOCKET` pointing at a socket
/// of ours, and time until its `READY=1` arrives, from the spawn's return (as arje's
/// `CommandStarted` is stamped). Returns the samples in microseconds.
pub fn notifier_alone(
    program: Program,
    programs: &Programs,
    delay_us: u64,
    reps: usize,
) -> Vec<f64> {
    let name = format!("arje-bench/ready-chain/{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).expect("bind our notify socket");
    let argv = argv(program, programs, delay_us);
    let mut out = Vec::with_capacity(reps);
    let mut buf = [0u8; 512];
    for _ in 0..reps {
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .env_clear()
            .env("NOTIFY_SOCKET", format!("@{name}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the notifier");
        let t = mono_us();
        loop {
            let n = sock.recv(&mut buf).expect("recv READY=1");
            if buf[..n].split(|b| *b == b'\n').any(|l| l == b"READY=1") {
                break;
            }
        }
        out.push((mono_us() - t) as f64);
        let _ = child.kill();
        let _ = child.wait();
    }
    out
}

/// `count` raw spawns in a row of `program`, kept running (clone3 CLONE_VM|CLONE_VFORK
/// with a pidfd, as arje spawns, stdio on /dev/null, no arje): from the first spawn's
/// return to the last's, as arje's figures run from the first `CommandStarted`. Then
/// they are killed and reaped. Returns microseconds.
pub fn raw_spawns(program: Program, programs: &Programs, delay_us: u64, count: usize) -> f64 {
    let plan = ExecPlan::new(&argv(program, programs, delay_us), &[], None, None).unwrap();
    let null = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .unwrap();
    let mut spawner = Spawner::default();
    let mut children = Vec::with_capacity(count);
    let mut first = 0;
    for i in 0..count {
        let child = spawner
            .spawn(&plan, [null.as_fd(), null.as_fd(), null.as_fd()], None)
            .expect("spawn");
        if i == 0 {
            first = mono_us();
        }
        children.push(child);
    }
    let took = (mono_us() - first) as f64;
    for c in &children {
        // SAFETY: killing and reaping our own children.
        unsafe {
            libc::kill(c.pid, libc::SIGKILL);
            libc::waitpid(c.pid, std::ptr::null_mut(), libc::__WALL);
        }
    }
    took
}
