//! PID-1 duties: the boot (early mounts, console, kernel command line, modules, state
//! disk), handing over to the runtime, and the end (shutdown, reboot(2)). Read
//! [`boot`] top to bottom for the story.

pub mod blockdev;
pub mod cmdline;
pub mod console;
pub mod emergency;
pub mod exit_on;
pub mod exit_report;
pub mod host;
pub mod modules;
pub mod mounts;
pub mod power_button;
pub mod reap;
pub mod root;
pub mod shutdown;
pub mod state_disk;
pub mod switch_root;
pub mod unmount;

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use arje_runtime::{Config, Laps, Mode, Outcome, ShutdownKind};

use crate::args::Args;
use crate::logger;
use cmdline::BootParams;

/// Where the control socket and the /run snapshot live as PID 1.
const RUN_DIR: &str = "/run/arje";

/// Boots the system and never returns: PID 1 exiting is a kernel panic.
pub fn boot(args: Args, start_boottime: f64, inherited: crate::reexec::Inherited) -> ! {
    // A re-exec (`shuma daemon-reexec`) finds the system booted: mounts, modules and the
    // state disk are in place, and doing them again would stack a second mount.
    let reexec = std::env::var_os(crate::reexec::REEXEC_ENV).is_some();
    std::env::remove_var(crate::reexec::REEXEC_ENV);
    // The initramfs's arje-init switched to this root and exec'd us: a fresh boot whose
    // early mounts are in place (moved, not remounted).
    let switched_from = std::env::var_os(switch_root::SWITCHED_ENV);
    std::env::remove_var(switch_root::SWITCHED_ENV);

    // Where PID 1's own part of boot goes, from exec (the top of main) to the runtime.
    let since_exec = Duration::from_secs_f64((logger::boottime_secs() - start_boottime).max(0.0));
    let now = Instant::now();
    let mut laps = Laps::since(now.checked_sub(since_exec).unwrap_or(now));

    // 1. Filesystems the rest needs: /proc to read the command line, /dev for the
    //    console, kmsg and the disk, /run for the socket, cgroup2 for workspaces.
    if !reexec {
        mounts::mount_early();
    }
    laps.lap("mounts");
    console::attach_stdio();
    logger::attach_pid1();
    laps.lap("console");
    log::info!(
        "arje-init {} as PID 1 (started at boottime {start_boottime:.3}s)",
        env!("CARGO_PKG_VERSION")
    );
    if let Some(dev) = &switched_from {
        log::info!(
            "on the real root {} (switched from the initramfs)",
            dev.to_string_lossy()
        );
    }

    // 2. Ctrl-Alt-Del becomes SIGINT to us (a clean reboot) instead of an instant reset.
    if let Err(e) = rustix::system::reboot(rustix::system::RebootCommand::CadOff) {
        log::warn!("reboot(CAD_OFF): {e}; Ctrl-Alt-Del resets without a clean shutdown");
    }

    // 3. The kernel command line's arje.* parameters; flags given to /init win.
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let params = BootParams::parse(&cmdline);
    logger::set_level(args.log_level.unwrap_or(params.log));
    for word in &params.rejected {
        log::warn!("kernel command line: ignored {word:?} (unknown key or bad value)");
    }
    let etc_hostname = std::fs::read_to_string("/etc/hostname").ok();
    console::set_hostname(&console::hostname(
        params.hostname.as_deref(),
        etc_hostname.as_deref(),
    ));
    laps.lap("cmdline");

    // 4. Modules (the state disk's driver and filesystem), then the state disk.
    let mut durable = params.durable.clone();
    if reexec {
        log::info!("re-exec: mounts, modules and the state disk are already in place");
        if params.state_dev.is_some() && mounts::is_mounted(&params.state_mount.to_string_lossy()) {
            durable = durable.or_else(|| Some(params.state_mount.clone()));
        }
    } else {
        modules::load_listed(&params.modules);
        laps.lap("modules");
        // 4b. The real root, when root= names one and / is still the initramfs: before
        //     the state disk and the runtime, so nothing started here needs handing over.
        real_root(&cmdline);
        laps.lap("root");
    }
    // 4c. On a real root: fsck and remount of /, /etc/fstab, /run, /dev/pts, the
    //     loopback, the machine id, the random seed (host/), before the cards.
    let host = host::boot(&cmdline, reexec);
    laps.lap("host");
    if let (Some(dev), false) = (&params.state_dev, reexec) {
        match state_disk::mount_state(
            dev,
            &params.state_mount,
            &params.state_fs,
            params.state_timeout,
        ) {
            Ok(()) => durable = durable.or_else(|| Some(params.state_mount.clone())),
            Err(e) => log::error!("state disk: {e}; booting without durable state"),
        }
    }
    // A real root is itself a disk: the event journal outlives a reboot there. (Not the
    // snapshot: a host's cards say what runs at every boot, as a systemd host's units.)
    let journal_dir = if durable.is_none() {
        host.disk_dir(host::JOURNAL_DIR, 0o700)
    } else {
        None
    };
    // Services' output, kept as files where an operator looks after a reboot.
    let log_dir = match &args.log_dir {
        Some(_) => None,
        None => host.disk_dir(host::LOG_DIR, 0o755),
    };
    laps.lap("state disk");
    if params.shell && !reexec {
        emergency::spawn_shell();
    }

    // The power button (ACPI, a hypervisor's "shut down"): a thread per button device
    // asks for a poweroff with systemd's signal. Started again after a re-exec (exec
    // ends threads); before the runtime, which blocks every signal again as it starts.
    power_button::watch();
    laps.lap("power button");

    // 5. The runtime: boot cards, workspaces, the control socket, reaping.
    let config = Config {
        mode: Mode::Pid1,
        socket: args
            .socket
            .clone()
            .unwrap_or_else(|| PathBuf::from(RUN_DIR).join("control.sock")),
        socket_group: None,
        cards_dir: Some(args.cards.clone().unwrap_or(params.cards.clone())),
        state_dir: args.state_dir.clone().unwrap_or_else(|| RUN_DIR.into()),
        durable_dir: args.durable_dir.clone().or(durable),
        cgroup_root: args.cgroup_root.clone().or_else(|| {
            mounts::is_mounted("/sys/fs/cgroup").then(|| PathBuf::from("/sys/fs/cgroup"))
        }),
        shutdown_timeout: args.shutdown_timeout.unwrap_or(params.shutdown_timeout),
        child_nofile: crate::limits::child_nofile(),
        // cron, PAM, sshd and `logger` write here; nothing else listens in an arje boot.
        syslog: Some(args.syslog.clone().unwrap_or_else(|| "/dev/log".into())),
        journal_max: args
            .journal_max
            .unwrap_or(arje_runtime::JOURNAL_MAX_DEFAULT),
        journal_dir,
        log_dir: args.log_dir.clone().or(log_dir),
        log_file_max: args
            .log_file_max
            .unwrap_or(arje_runtime::LOG_FILE_MAX_DEFAULT),
        vsock_port: params.vsock,
    };
    log::info!("boot done in {}; starting the runtime", laps.render());
    // `arje.exit-on`: the command whose end ends the machine (exit_on.rs).
    let exit_on = exit_on::target_from(params.exit_on.as_deref());
    let outcome = run_contained(config, inherited, exit_on);

    // 6. The end.
    host.at_shutdown();
    match outcome {
        Ok((Outcome::Shutdown(kind), watch)) => {
            let report = exit_report(watch.as_ref(), kind);
            shutdown::finish(kind, Instant::now(), report)
        }
        Ok((Outcome::Exit, watch)) => {
            log::warn!("the runtime asked to exit, which PID 1 cannot: powering off");
            let report = exit_report(watch.as_ref(), ShutdownKind::Poweroff);
            shutdown::finish(ShutdownKind::Poweroff, Instant::now(), report)
        }
        // `run_contained` carries out every re-exec itself, and survives a failed one.
        Ok((Outcome::Reexec { binary }, _)) => {
            emergency::emergency(&format!("re-exec of {} not carried out", binary.display()))
        }
        Err(why) => emergency::emergency(&why),
    }
}

/// What `arje.exit-on` reports at the end of a shutdown of `kind`, opened now (before
/// the unmounts). A reboot before the command ended is not its end: the next boot
/// watches again, so nothing is reported.
fn exit_report(watch: Option<&exit_on::Watch>, kind: ShutdownKind) -> Option<exit_report::Report> {
    let watch = watch?;
    if kind == ShutdownKind::Reboot && !watch.ended() {
        log::info!(
            "exit-on {}: rebooting before it ended; the next boot watches again",
            watch.target()
        );
        return None;
    }
    let status = watch.verdict();
    match status {
        exit_on::Status::Absent => log::warn!(
            "exit-on {}: no such workspace or command appeared in this boot",
            watch.target()
        ),
        exit_on::Status::Unfinished => log::warn!(
            "exit-on {}: had not ended when the machine shut down",
            watch.target()
        ),
        exit_on::Status::Failed(ref why) => {
            log::warn!("exit-on {}: failed: {why}", watch.target())
        }
        _ => {}
    }
    Some(exit_report::Report::prepare(watch.target(), &status))
}

/// Switches to the root that `root=` names, if there is one and `/` is the initramfs;
/// returns when there is nothing to switch to. A root that cannot be reached is an
/// emergency (a shell on the console, naming what is missing), as for an initramfs
/// that cannot find its root.
fn real_root(cmdline: &str) {
    let p = root::RootParams::parse(cmdline);
    if let Some(word) = &p.rejected {
        log::warn!("kernel command line: {word}: not a root= form arje reads (docs/HOST.md)");
    }
    let Some(spec) = p.root.clone() else {
        return;
    };
    if !switch_root::root_is_initramfs() {
        log::info!("root={spec}: / is already a mounted root, nothing to switch");
        return;
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let err = switch_root::to_real_root(&p, &spec, &args);
    emergency::emergency(&err.to_string())
}

/// Runs the runtime with a last-resort catch: the runtime contains panics per event
/// itself, so one reaching here means its loop is broken, and PID 1 falls back to the
/// emergency loop rather than exit. A re-exec whose exec fails does not end up here:
/// the runtime takes back what it handed over and goes on (`reexec::serve`); nor does
/// a new image that cannot take over, when the previous one can be exec'd back
/// (`reexec::start`).
///
/// With `exit_on`, a watch reads the journal between turns (`exit_on::observe`) from
/// this start on; it comes back with the outcome, for the report.
fn run_contained(
    config: Config,
    inherited: crate::reexec::Inherited,
    exit_on: Option<exit_on::Target>,
) -> Result<(Outcome, Option<exit_on::Watch>), String> {
    let mut runtime = crate::reexec::start(config, inherited)?;
    let mut watch = exit_on.map(|t| exit_on::Watch::new(t, runtime.journal_start_cursor()));
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        crate::reexec::serve(&mut runtime, &mut |rt| {
            if let Some(w) = watch.as_mut() {
                exit_on::observe(w, rt);
            }
        })
    }))
    .map_err(|p| format!("the runtime panicked: {}", crate::panic_message(&p)))?;
    Ok((outcome, watch))
}
