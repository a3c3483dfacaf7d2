//! arje-init: PID 1 of a VM or initramfs, or a child subreaper under another init.
//! A thin binary: it prepares the ground (mounts, console, modules, state disk as PID 1;
//! subreaper and OOM protection otherwise), hands over to `arje_runtime::Runtime`, and
//! acts on how the runtime ended (exit, shutdown and reboot(2), or re-exec).
#![deny(unsafe_code)]

mod args;
mod limits;
mod logger;
mod note;
mod pid1;
mod subreaper;

use std::path::{Path, PathBuf};
use std::time::Duration;

use arje_runtime::{Config, Mode, Outcome};

use args::Args;

fn main() {
    // Taken first, before any work: the boot benchmark's "PID 1 exec" mark.
    let start_boottime = logger::boottime_secs();
    let is_pid1 = std::process::id() == 1;
    let reexec = std::env::var_os(REEXEC_ENV).is_some();
    if is_pid1 {
        eprintln!("arje-init: PID 1 start at boottime {start_boottime:.3}s");
        logger::init_pid1(log::LevelFilter::Info);
        limits::raise_nofile(reexec);
        // The kernel hands init every unknown word of its command line as an argument;
        // a PID 1 that refused to boot over one would panic the kernel.
        let args = args::parse(std::env::args().skip(1)).unwrap_or_else(|e| {
            log::warn!("arguments: {e}; ignoring them all");
            Args::default()
        });
        pid1::boot(args, start_boottime);
    }

    let args = match args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("arje-init: {e}\n{}", args::USAGE);
            std::process::exit(2);
        }
    };
    if args.help {
        print!("{}", args::USAGE);
        return;
    }
    if args.version {
        println!("arje-init {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    logger::init_stderr(args.log_level.unwrap_or(log::LevelFilter::Info));
    limits::raise_nofile(reexec);
    std::process::exit(run_under_another_init(args));
}

/// Subreaper mode, or `--pid1` off PID 1 (PID-1 signal mapping and outcomes, for tests;
/// without mounts, kill(-1) or reboot(2), which would hit the host).
fn run_under_another_init(args: Args) -> i32 {
    subreaper::become_subreaper();
    subreaper::protect_from_oom();
    let mode = if args.pid1 {
        Mode::Pid1
    } else {
        Mode::Subreaper
    };
    let config = Config {
        mode,
        socket: args
            .socket
            .unwrap_or_else(|| "/run/arje/control.sock".into()),
        socket_group: args.socket_group,
        cards_dir: args.cards,
        state_dir: args.state_dir.unwrap_or_else(|| "/run/arje".into()),
        durable_dir: args.durable_dir,
        cgroup_root: args.cgroup_root,
        shutdown_timeout: args.shutdown_timeout.unwrap_or(Duration::from_secs(10)),
        child_nofile: limits::child_nofile(),
    };
    let mut runtime = match arje_runtime::Runtime::new(config) {
        Ok(r) => r,
        Err(e) => {
            log::error!("the runtime failed to start: {e}");
            return 1;
        }
    };
    match runtime.run() {
        Outcome::Exit => {
            log::info!("stopped; exiting");
            0
        }
        Outcome::Shutdown(kind) => {
            log::info!("{kind:?} asked for, but this is not PID 1: exiting instead");
            0
        }
        Outcome::Reexec { binary } => {
            let err = reexec(&binary);
            log::error!("re-exec of {}: {err}", binary.display());
            1
        }
    }
}

/// Replaces this process with `binary`, same arguments and pid (so PID 1 stays PID 1 and
/// children stay ours). Returns only on failure.
pub fn reexec(binary: &Path) -> std::io::Error {
    let binary: PathBuf = if binary.as_os_str().is_empty() {
        "/proc/self/exe".into()
    } else {
        binary.into()
    };
    log::info!("re-exec {}", binary.display());
    // Not std's Command::exec: it resets the signal mask before exec, and a signal that
    // arrives between the exec and the new image's sigprocmask would then be lost
    // (SIGCHLD of an orphan) or fatal (SIGTERM to a subreaper). execv keeps the mask,
    // so such a signal waits, pending, for the new image's signalfd.
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(binary.as_os_str().as_bytes()) else {
        return std::io::Error::from(std::io::ErrorKind::InvalidInput);
    };
    let args: Vec<std::ffi::CString> = std::env::args_os()
        .filter_map(|a| std::ffi::CString::new(a.as_bytes()).ok())
        .collect();
    // The new image learns it is a re-exec (PID 1 then skips the early mounts, module
    // loading and the state disk, all done already) from REEXEC_ENV.
    // So does the fd limit its children get (it runs under a raised one itself).
    let child_nofile = limits::child_nofile()
        .and_then(|n| std::ffi::CString::new(format!("{}={n}", limits::CHILD_NOFILE_ENV)).ok());
    let env: Vec<std::ffi::CString> = std::env::vars_os()
        .filter(|(k, _)| k != REEXEC_ENV && k != limits::CHILD_NOFILE_ENV)
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            std::ffi::CString::new(kv).ok()
        })
        .chain(std::ffi::CString::new(format!("{REEXEC_ENV}=1")).ok())
        .chain(child_nofile)
        .collect();
    match nix::unistd::execve(&path, &args, &env) {
        Err(e) => std::io::Error::from(e),
        Ok(never) => match never {},
    }
}

/// Set in the environment of a re-exec'd image.
pub const REEXEC_ENV: &str = "ARJE_REEXEC";

/// The text of a panic payload, for the log.
pub fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string payload)".to_string()
    }
}
