//! `cg-probe`: a tiny static program the cgroup boot scenarios run inside workspaces.
//!
//! - `cg-probe self WS CMD`: prints this process's `/proc/self/cgroup` as read at the top
//!   of `main`, before argument parsing, allocation or any other syscall of ours, and
//!   exits 0 if it is the run leaf `0::/arje/WS/CMD.<id>`, 1 if not. A child that ran
//!   outside its cgroup even for a moment and was moved later would still pass here only
//!   if the move happened before exec; arje never writes `cgroup.procs` on the spawn path,
//!   so a pass means the kernel placed it there at clone (CLONE_INTO_CGROUP).
//! - `cg-probe hog`: allocates and touches memory 1 MiB at a time, printing its total
//!   every 4 MiB; exits 3 at 256 MiB, so a limit that is not enforced fails the scenario
//!   instead of exhausting the guest.
//! - `cg-probe bomb`: a fork bomb: every process forks forever; a refused fork waits
//!   50 ms before trying again, so a bomb held at pids.max does not starve a one-CPU
//!   guest.

use std::io::Write;

fn main() {
    // First: read our own cgroup before anything else happens in this process.
    let mut buf = [0u8; 512];
    let n = read_self_cgroup(&mut buf);
    let args: Vec<String> = std::env::args().collect();
    let code = match args.get(1).map(String::as_str) {
        Some("self") if args.len() == 4 => {
            check_self(&buf[..n.max(0) as usize], &args[2], &args[3])
        }
        Some("hog") => hog(),
        Some("bomb") => bomb(),
        _ => {
            eprintln!("usage: cg-probe self WS CMD | hog | bomb");
            2
        }
    };
    std::process::exit(code);
}

/// open+read of /proc/self/cgroup into a stack buffer: no allocation, no std machinery.
fn read_self_cgroup(buf: &mut [u8]) -> isize {
    // SAFETY: a NUL-terminated literal path; the fd is closed below.
    let fd = unsafe {
        libc::open(
            c"/proc/self/cgroup".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return -1;
    }
    // SAFETY: reading into a buffer we own, bounded by its length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    // SAFETY: closing the fd opened above.
    unsafe { libc::close(fd) };
    n
}

/// Is `seen` exactly `0::/arje/<ws>/<digits>-<cmd>\n` (the run's leaf)?
fn check_self(seen: &[u8], ws: &str, cmd: &str) -> i32 {
    let text = String::from_utf8_lossy(seen);
    let line = text.trim_end();
    let prefix = format!("0::/arje/{ws}/");
    let suffix = format!("-{cmd}");
    let ok = line
        .strip_prefix(&prefix)
        .and_then(|leaf| leaf.strip_suffix(&suffix))
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()));
    println!(
        "cg-probe: first read of /proc/self/cgroup: {line:?}: {}",
        if ok {
            "in its run leaf"
        } else {
            "NOT in its run leaf"
        }
    );
    if ok {
        0
    } else {
        1
    }
}

fn hog() -> i32 {
    const MIB: usize = 1 << 20;
    let mut kept: Vec<Vec<u8>> = Vec::new();
    let mut out = std::io::stdout();
    while kept.len() < 256 {
        // Touch every page so the memory is charged, not just reserved.
        let mut chunk = vec![0u8; MIB];
        for i in (0..MIB).step_by(4096) {
            chunk[i] = 1;
        }
        kept.push(chunk);
        if kept.len().is_multiple_of(4) {
            let _ = writeln!(out, "cg-probe hog: {} MiB", kept.len());
        }
    }
    println!("cg-probe hog: reached 256 MiB: no memory limit stopped me");
    3
}

fn bomb() -> i32 {
    let pause = libc::timespec {
        tv_sec: 0,
        tv_nsec: 50_000_000,
    };
    loop {
        // SAFETY: the child only loops on fork and nanosleep, both async-signal-safe.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            // SAFETY: sleeping on a valid timespec.
            unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
        }
    }
}
