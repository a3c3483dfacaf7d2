//! arje-init: PID 1 of a VM or initramfs, or a child subreaper under another init.
//! A thin binary: it prepares the ground (mounts, console, modules, state disk as PID 1;
//! subreaper and OOM protection otherwise), hands over to `arje_runtime::Runtime`, and
//! acts on how the runtime ended (exit, shutdown and reboot(2), or re-exec). Or, given
//! `-- PROGRAM`, a container entrypoint (entrypoint/). One binary for several names, as
//! busybox is (multicall.rs): `shuma`, `poweroff`, `reboot`, `halt`, ...
#![deny(unsafe_code)]

mod args;
mod entrypoint;
mod limits;
mod logger;
mod multicall;
mod note;
mod pid1;
mod power;
mod reexec;
mod subreaper;

use std::time::Duration;

use arje_runtime::{Config, Mode, Outcome};

use args::Args;

fn main() {
    // Taken first, before any work: the boot benchmark's "PID 1 exec" mark.
    let start_boottime = logger::boottime_secs();
    // Called as `shuma` (a link to this binary): the CLI, before anything of an init's
    // (its `run WS -- CMD` would look like entrypoint mode).
    multicall::run_applet();
    // Entrypoint mode (`arje-init [-g] -- PROGRAM...`, entrypoint/) before anything
    // else: as PID 1 of a pid namespace getpid() is 1 too, and a container must not get
    // a machine's boot (mounts, console, modules).
    match entrypoint::detect(std::env::args_os().skip(1)) {
        entrypoint::Detected::No => {}
        entrypoint::Detected::Run(opts) => {
            logger::init_stderr(opts.log_level);
            std::process::exit(entrypoint::main(opts));
        }
        entrypoint::Detected::Usage(e) => {
            eprintln!("arje-init: {e}\n{}", args::USAGE);
            std::process::exit(2);
        }
    }
    let is_pid1 = std::process::id() == 1;
    let reexec = std::env::var_os(reexec::REEXEC_ENV).is_some();
    // Before any thread starts: it edits the environment.
    // Called as `reboot`, `poweroff`, `halt`, `shutdown` or `telinit` (a symlink): ask
    // PID 1 and leave (power.rs).
    let argv0 = std::env::args().next().unwrap_or_default();
    if !is_pid1 && power::called_as(&argv0) {
        let args: Vec<String> = std::env::args().skip(1).collect();
        std::process::exit(power::main(&argv0, &args));
    }
    let inherited = reexec::Inherited::take();
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
        pid1::boot(args, start_boottime, inherited);
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
    std::process::exit(run_under_another_init(args, inherited));
}

/// Subreaper mode, or `--pid1` off PID 1 (PID-1 signal mapping and outcomes, for tests;
/// without mounts, kill(-1) or reboot(2), which would hit the host).
fn run_under_another_init(args: Args, inherited: reexec::Inherited) -> i32 {
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
        syslog: args.syslog.clone(),
        journal_max: args
            .journal_max
            .unwrap_or(arje_runtime::JOURNAL_MAX_DEFAULT),
        journal_dir: None,
        log_dir: args.log_dir.clone(),
        log_file_max: args
            .log_file_max
            .unwrap_or(arje_runtime::LOG_FILE_MAX_DEFAULT),
        vsock_port: None,
    };
    let mut runtime = match reexec::start(config, inherited) {
        Ok(r) => r,
        Err(e) => {
            log::error!("{e}");
            return 1;
        }
    };
    match reexec::serve(&mut runtime, &mut |_| {}) {
        Outcome::Exit => {
            log::info!("stopped; exiting");
            0
        }
        Outcome::Shutdown(kind) => {
            log::info!("{kind:?} asked for, but this is not PID 1: exiting instead");
            0
        }
        // `serve` returns every other outcome itself.
        Outcome::Reexec { binary } => {
            log::error!("re-exec of {} not carried out", binary.display());
            1
        }
    }
}

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
