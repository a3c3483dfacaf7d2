//! cgroup benchmark (issue 4), run inside the QEMU guest where every controller is
//! enabled. Prints, from one guest run:
//! 1. create+destroy of 1,000 workspaces (memory_max and pids_max set): through PID 1's
//!    control socket (`WsCreate` then `WsStop`, what `shuma ws create`/`ws stop` do), and
//!    through the cgroup module alone (`create_workspace` + `remove`);
//! 2. spawn+exit+reap of a tiny static program with and without cgroups, interleaved in
//!    rounds: raw clone3 with CLONE_INTO_CGROUP into a leaf against raw clone3, and the
//!    in-process runtime (`start_oneshot` + `turn()` until the exit is recorded) with a
//!    cgroup tree (a leaf made, watched and removed per run) against one without.
//!
//! Run on the host: `cargo run --release -p arje-bench --bin cgroups`. It builds itself
//! static, puts itself and a tiny `exit0` into an initramfs beside the test build of
//! arje-init, boots it under QEMU (TCG unless `ARJE_ACCEL` says otherwise), and prints the
//! guest's figures. In the guest it runs as `arje-bench-cgroups --guest`, a task of a boot
//! card, so PID 1 is arje-init with its workspaces under /sys/fs/cgroup/arje.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arje_bench::{percentile, tiny_static, us};
use arje_runtime::parts::{CgroupTarget, ExecPlan, Spawner};
use arje_runtime::parts::{Cgroups, Setup};
use shuma_card::protocol::{
    decode_payload, encode_frame, Request, Response, HEADER_LEN, PROTOCOL_VERSION,
};
use shuma_card::{CommandKind, CommandSpec, Limits, WorkspaceSpec};

const WORKSPACES: usize = 1000;
/// Spawns per variant: `ROUNDS` rounds of `BATCH`, the variants alternating per round so
/// that drift in the guest (TCG on a shared host) hits both alike.
const ROUNDS: usize = 10;
const BATCH: usize = 200;
/// Every guest line of this benchmark starts with this, so the host can pick them out.
const MARK: &str = "cgbench: ";
/// A cgroup of its own beside arje's, for the in-process runtime and the module API.
const BENCH_ROOT: &str = "/sys/fs/cgroup/cgbench";
const EXIT0: &str = "/bin/exit0";
const PAUSE: &str = "/bin/pause";

fn main() {
    if std::env::args().any(|a| a == "--guest") {
        guest();
    } else {
        host();
    }
}

// ---------------------------------------------------------------------------------------
// Host side: build, boot, relay.

fn host() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let prep = Command::new("bash")
        .arg(root.join("scripts/prepare-boot-tests.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/prepare-boot-tests.sh");
    assert!(prep.status.success(), "prepare-boot-tests.sh failed");
    let text = String::from_utf8_lossy(&prep.stdout).into_owned();
    let kernel = text
        .lines()
        .find_map(|l| l.strip_prefix("KERNEL="))
        .map(PathBuf::from)
        .expect("KERNEL= from prepare-boot-tests.sh");
    let bins = root.join("build/bin/test");
    let dir = root.join("build/bench/cgroups");
    std::fs::create_dir_all(dir.join("cards")).expect("mkdir build/bench/cgroups");

    let me = build_static_self(&root);
    let exit0 = tiny_static(&dir, "exit0", "");
    let pause = tiny_static(&dir, "pause", "for (;;) sys1(34, 0);");
    std::fs::write(
        dir.join("cards/bench.toml"),
        "[workspace]\nname = \"bench\"\n\n[[task]]\nname = \"run\"\n\
         argv = [\"/bin/sh\", \"-c\", \"/bin/arje-bench-cgroups --guest; poweroff\"]\n\
         log = \"console\"\nenv = { PATH = \"/bin\" }\n",
    )
    .expect("write bench card");
    let img = dir.join("cgroups.cpio.gz");
    let st = Command::new("bash")
        .arg(root.join("initramfs/build.sh"))
        .arg("--out")
        .arg(&img)
        .arg("--init")
        .arg(bins.join("arje-init"))
        .arg("--shuma")
        .arg(bins.join("shuma"))
        .arg("--cards")
        .arg(dir.join("cards"))
        .arg("--no-modules")
        .arg("--file")
        .arg(format!("{}:/bin/arje-bench-cgroups", me.display()))
        .arg("--file")
        .arg(format!("{}:{EXIT0}", exit0.display()))
        .arg("--file")
        .arg(format!("{}:{PAUSE}", pause.display()))
        .status()
        .expect("initramfs/build.sh");
    assert!(st.success(), "initramfs build failed");

    let accel = std::env::var("ARJE_ACCEL").unwrap_or_else(|_| "tcg".into());
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-accel", &accel, "-m", "1G", "-smp", "1", "-no-reboot"])
        .args([
            "-display", "none", "-serial", "stdio", "-monitor", "none", "-nic", "none",
        ])
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&img)
        // no_timer_check: a loaded host can make TCG fail the kernel's IO-APIC timer test.
        .args(["-append", "console=ttyS0 quiet panic=-1 no_timer_check"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn qemu-system-x86_64");
    let out = qemu.stdout.take().expect("piped stdout");
    let started = Instant::now();
    let mut saw_end = false;
    for line in BufReader::new(out).lines() {
        let Ok(line) = line else { break };
        if let Some(rest) = line.find(MARK).map(|i| &line[i + MARK.len()..]) {
            println!("{}", rest.trim_end());
            saw_end |= rest.starts_with("done");
        }
        if line.contains("Kernel panic") || line.contains("reboot: Power down") {
            break;
        }
    }
    let _ = qemu.kill();
    let _ = qemu.wait();
    eprintln!("guest wall time {:.1}s", started.elapsed().as_secs_f64());
    assert!(saw_end, "the guest benchmark did not finish");
}

/// Builds this benchmark static (musl if installed, else glibc crt-static); its path.
fn build_static_self(root: &Path) -> PathBuf {
    let musl = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("x86_64-unknown-linux-musl"));
    let (target, flags) = if musl {
        ("x86_64-unknown-linux-musl", "")
    } else {
        ("x86_64-unknown-linux-gnu", "-C target-feature=+crt-static")
    };
    let tdir = root.join("target/static-bench");
    let st = Command::new("cargo")
        .args([
            "build",
            "-q",
            "--release",
            "--target",
            target,
            "--target-dir",
        ])
        .arg(&tdir)
        .args(["-p", "arje-bench", "--bin", "cgroups"])
        .env("RUSTFLAGS", flags)
        .status()
        .expect("cargo build");
    assert!(st.success(), "static build of the cgroups benchmark failed");
    tdir.join(target).join("release/cgroups")
}

// ---------------------------------------------------------------------------------------
// Guest side.

macro_rules! say {
    ($($arg:tt)*) => {{
        println!("{MARK}{}", format!($($arg)*));
        let _ = std::io::stdout().flush();
    }};
}

fn limits() -> Limits {
    Limits {
        memory_max: Some(64 << 20),
        pids_max: Some(64),
        ..Default::default()
    }
}

fn guest() {
    say!(
        "kernel {}",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    workspaces_over_socket();
    let _ = std::fs::create_dir(BENCH_ROOT);
    let cg = Cgroups::setup(Path::new(BENCH_ROOT), std::process::id(), Setup::Subreaper)
        .expect("cgroup setup under /sys/fs/cgroup/cgbench");
    say!("bench cgroups: controllers {:?}", cg.enabled_controllers());
    workspaces_module(&cg);
    raw_spawns(&cg);
    runtime_spawns();
    say!("done");
}

struct Client(UnixStream);

impl Client {
    fn connect(path: &str) -> Client {
        let mut c = Client(UnixStream::connect(path).expect("connect to PID 1"));
        let hello = Request::Hello {
            version: PROTOCOL_VERSION,
            client: "bench-cgroups".into(),
        };
        assert!(matches!(c.call(&hello), Response::Hello { .. }));
        c
    }
    fn call(&mut self, req: &Request) -> Response {
        self.0.write_all(&encode_frame(req)).expect("send");
        let mut len = [0u8; HEADER_LEN];
        self.0.read_exact(&mut len).expect("recv header");
        let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
        self.0.read_exact(&mut buf).expect("recv payload");
        decode_payload(&buf).expect("decode")
    }
}

fn stat_line(name: &str, mut t: Vec<Duration>) -> f64 {
    t.sort();
    let total: Duration = t.iter().sum();
    let mean = us(total) / t.len() as f64;
    say!(
        "{name:<52} mean {mean:>8.1} us  median {:>8.1} us  p90 {:>8.1} us  (n={})",
        us(percentile(&t, 0.5)),
        us(percentile(&t, 0.9)),
        t.len()
    );
    us(percentile(&t, 0.5))
}

/// `WsCreate` + `WsStop` through PID 1's socket: the whole runtime path (mkdir, limits,
/// watches, journal, stop, populated 0, rmdir).
fn workspaces_over_socket() {
    let mut c = Client::connect("/run/arje/control.sock");
    let mut create = Vec::with_capacity(WORKSPACES);
    let mut stop = Vec::with_capacity(WORKSPACES);
    let mut both = Vec::with_capacity(WORKSPACES);
    for i in 0..WORKSPACES + 50 {
        let spec = WorkspaceSpec {
            name: format!("b{i}"),
            limits: limits(),
            ..Default::default()
        };
        let t0 = Instant::now();
        let r = c.call(&Request::WsCreate { spec });
        assert!(matches!(r, Response::Created { .. }), "create b{i}: {r:?}");
        let t1 = Instant::now();
        let r = c.call(&Request::WsStop {
            name: format!("b{i}"),
            grace_ms: Some(0),
        });
        assert!(matches!(r, Response::Ok), "stop b{i}: {r:?}");
        let t2 = Instant::now();
        // The first 50 warm up caches and the journal.
        if i >= 50 {
            create.push(t1 - t0);
            stop.push(t2 - t1);
            both.push(t2 - t0);
        }
    }
    say!("== {WORKSPACES} workspaces (memory_max=64M pids_max=64), create then destroy ==");
    let total: Duration = both.iter().sum();
    stat_line("PID 1 over the socket: WsCreate", create);
    stat_line("PID 1 over the socket: WsStop (empty workspace)", stop);
    stat_line("PID 1 over the socket: create+destroy", both);
    say!(
        "PID 1 over the socket: {WORKSPACES} create+destroy in {:.0} ms = {:.0} us per workspace",
        total.as_secs_f64() * 1e3,
        us(total) / WORKSPACES as f64
    );
}

/// `create_workspace` + `remove` of the cgroup module alone.
fn workspaces_module(cg: &Cgroups) {
    let lim = limits();
    let mut both = Vec::with_capacity(WORKSPACES);
    for i in 0..WORKSPACES + 50 {
        let t = Instant::now();
        let (ws, warnings) = cg
            .create_workspace(&format!("m{i}"), &lim)
            .expect("create_workspace");
        ws.remove().expect("remove");
        if i >= 50 {
            both.push(t.elapsed());
        }
        assert!(warnings.is_empty(), "unenforced: {warnings:?}");
    }
    let total: Duration = both.iter().sum();
    stat_line("cgroup module: create_workspace+remove", both);
    say!(
        "cgroup module: {WORKSPACES} create+destroy in {:.0} ms = {:.0} us per workspace",
        total.as_secs_f64() * 1e3,
        us(total) / WORKSPACES as f64
    );
}

fn devnull() -> std::fs::File {
    std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .expect("/dev/null")
}

fn wait_pid(pid: i32) {
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::__WALL) };
}

/// Raw clone3+exec+wait, into a leaf (CLONE_INTO_CGROUP) or not.
fn raw_spawns(cg: &Cgroups) {
    let (ws, _) = cg.create_workspace("raw", &limits()).expect("raw ws");
    let leaf = ws.create_leaf("exit0").expect("leaf");
    let plan = ExecPlan::new(&[EXIT0.to_string()], &[], None, None).expect("plan");
    let null = devnull();
    let stdio = [null.as_fd(), null.as_fd(), null.as_fd()];
    let target = CgroupTarget { dir: leaf.fd() };
    // A leaf with a resident task: the kernel keeps its css_set, so a child born there
    // reuses it instead of allocating one (what an empty leaf costs at each spawn).
    let warm = ws.create_leaf("warm").expect("warm leaf");
    let warm_target = CgroupTarget { dir: warm.fd() };
    let pause_plan = ExecPlan::new(&[PAUSE.to_string()], &[], None, None).expect("plan");
    let mut spawner = Spawner::default();
    let resident = spawner
        .spawn(&pause_plan, stdio, Some(&warm_target))
        .expect("spawn pause");
    let mut with = Vec::new();
    let mut without = Vec::new();
    let mut warm_times = Vec::new();
    for round in 0..=ROUNDS {
        for variant in 0..3 {
            for _ in 0..BATCH {
                let into = [Some(&target), None, Some(&warm_target)][variant];
                let t = Instant::now();
                let child = spawner.spawn(&plan, stdio, into).expect("spawn exit0");
                wait_pid(child.pid);
                // Round 0 warms up.
                if round > 0 {
                    [&mut with, &mut without, &mut warm_times][variant].push(t.elapsed());
                }
            }
        }
    }
    // SAFETY: killing and reaping our own child.
    unsafe { libc::kill(resident.pid, libc::SIGKILL) };
    wait_pid(resident.pid);
    say!(
        "== spawn+exit+reap of a tiny static program ({} per variant, interleaved) ==",
        ROUNDS * BATCH
    );
    let w = stat_line("raw clone3 CLONE_INTO_CGROUP (a leaf)", with);
    let wo = stat_line("raw clone3 (no cgroup target)", without);
    let ww = stat_line(
        "raw clone3 CLONE_INTO_CGROUP (a leaf with a resident)",
        warm_times,
    );
    say!(
        "raw: cgroup placement costs {:+.1}% of a spawn into an empty leaf (median {:+.1} us), {:+.1}% into a populated one",
        (w / wo - 1.0) * 100.0,
        w - wo,
        (ww / wo - 1.0) * 100.0
    );
    drop(leaf);
    drop(warm);
    ws.remove_leaf("warm").expect("remove warm leaf");
    ws.remove_leaf("exit0").expect("remove leaf");
    ws.remove().expect("remove raw ws");
}

fn runtime(dir: &Path, cgroups: bool) -> arje_runtime::Runtime {
    let cfg = arje_runtime::Config {
        mode: arje_runtime::Mode::Subreaper,
        socket: dir.join("control.sock"),
        socket_group: None,
        cards_dir: None,
        state_dir: dir.join("run"),
        durable_dir: None,
        cgroup_root: cgroups.then(|| PathBuf::from(BENCH_ROOT)),
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
    let spec = WorkspaceSpec {
        name: "bench".into(),
        limits: limits(),
        ..Default::default()
    };
    let warnings = rt.create_workspace(spec).expect("workspace");
    if cgroups {
        assert!(
            warnings.warnings.is_empty() && warnings.failed.is_empty(),
            "unenforced or not started: {warnings:?}"
        );
    }
    rt
}

/// The runtime in-process, with and without a cgroup tree: each run with cgroups gets a
/// leaf (mkdir), is born in it, has its pids.events watched, and the leaf is removed at
/// exit; without, none of that.
fn runtime_spawns() {
    let dir = std::env::temp_dir().join("cgbench");
    let _ = std::fs::create_dir_all(dir.join("cg"));
    let _ = std::fs::create_dir_all(dir.join("plain"));
    let mut with_cg = runtime(&dir.join("cg"), true);
    let mut plain = runtime(&dir.join("plain"), false);
    let cmd = CommandSpec::new("b", CommandKind::Task, vec![EXIT0.to_string()]);
    let mut with = Vec::new();
    let mut without = Vec::new();
    for round in 0..=ROUNDS {
        for into in [true, false] {
            let rt = if into { &mut with_cg } else { &mut plain };
            for _ in 0..BATCH {
                let t = Instant::now();
                let id = rt.start_oneshot("bench", cmd.clone()).expect("start");
                while rt.exit_status(id).is_none() {
                    rt.turn();
                }
                if round > 0 {
                    if into { &mut with } else { &mut without }.push(t.elapsed());
                }
            }
        }
    }
    let w = stat_line("arje in-process, workspace with a cgroup", with);
    let wo = stat_line("arje in-process, workspace without cgroups", without);
    say!(
        "arje: the cgroup (leaf mkdir + CLONE_INTO_CGROUP + watch + rmdir) costs {:+.1}% of a spawn (median {:+.1} us; goal < 5%)",
        (w / wo - 1.0) * 100.0,
        w - wo
    );
}
