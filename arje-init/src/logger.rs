//! The `log` backends: stderr in subreaper mode; /dev/kmsg and the console as PID 1.
//!
//! Every line is built in memory first and written with one `write(2)`, so that lines
//! from arje and the kernel may interleave on the console but never mix mid-line.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;

/// Seconds since boot, CLOCK_BOOTTIME (counts suspend; the same clock as the kernel's
/// timestamps and /proc/uptime).
pub fn boottime_secs() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// Where PID 1's lines go. Either may be missing (no /dev/kmsg before devtmpfs).
struct Sinks {
    kmsg: Option<File>,
    console: Option<File>,
    /// The kernel's console_loglevel: it prints kmsg records whose priority is below
    /// it on the console itself, so arje writes only the others there (no duplicates).
    console_loglevel: u8,
}

pub struct Logger {
    pid1: bool,
    sinks: Mutex<Sinks>,
}

static LOGGER: std::sync::OnceLock<Logger> = std::sync::OnceLock::new();

/// Installs the stderr logger (subreaper mode). Lines: `arje: LEVEL message`.
pub fn init_stderr(level: log::LevelFilter) {
    install(
        Logger {
            pid1: false,
            sinks: Mutex::new(Sinks {
                kmsg: None,
                console: None,
                console_loglevel: 0,
            }),
        },
        level,
    );
}

/// Installs the PID-1 logger. It writes to stderr (the console) until [`attach_pid1`]
/// opens /dev/kmsg and /dev/console once devtmpfs is mounted.
pub fn init_pid1(level: log::LevelFilter) {
    install(
        Logger {
            pid1: true,
            sinks: Mutex::new(Sinks {
                kmsg: None,
                console: None,
                console_loglevel: 0,
            }),
        },
        level,
    );
}

/// Opens /dev/kmsg and /dev/console for the PID-1 logger; a failure leaves stderr.
pub fn attach_pid1() {
    let Some(logger) = LOGGER.get() else { return };
    // The kernel rate-limits writes to /dev/kmsg by default (printk.devkmsg=ratelimit:
    // ten lines, then drops); a boot's worth of arje lines would be cut. "on" lifts it;
    // a kernel command line that locked the setting makes this fail, which is fine.
    let _ = std::fs::write("/proc/sys/kernel/printk_devkmsg", "on\n");
    let kmsg = OpenOptions::new().write(true).open("/dev/kmsg").ok();
    let console = OpenOptions::new().write(true).open("/dev/console").ok();
    let mut sinks = logger.sinks.lock().unwrap_or_else(|e| e.into_inner());
    sinks.kmsg = kmsg;
    sinks.console = console;
    sinks.console_loglevel = std::fs::read_to_string("/proc/sys/kernel/printk")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0);
}

/// Changes the level once the kernel command line has been read.
pub fn set_level(level: log::LevelFilter) {
    log::set_max_level(level);
}

fn install(logger: Logger, level: log::LevelFilter) {
    if LOGGER.set(logger).is_ok() {
        if let Some(l) = LOGGER.get() {
            // A second logger cannot have been set: this is the only caller.
            let _ = log::set_logger(l);
        }
    }
    log::set_max_level(level);
}

/// The kmsg priority of a level (syslog's: 3 err, 4 warning, 6 info, 7 debug).
fn kmsg_priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = record.level();
        let line = format!("arje: {:<5} {}\n", level, record.args());
        let mut sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        if self.pid1 {
            let prio = kmsg_priority(level);
            let mut kernel_prints = false;
            if let Some(kmsg) = sinks.kmsg.as_mut() {
                // /dev/kmsg takes one record per write; the <N> prefix sets its priority.
                let rec = format!("<{prio}>{line}");
                kernel_prints = kmsg.write_all(rec.as_bytes()).is_ok();
            }
            let kernel_prints = kernel_prints && prio < sinks.console_loglevel;
            if let Some(console) = sinks.console.as_mut() {
                if kernel_prints {
                    return;
                }
                let _ = console.write_all(line.as_bytes());
                return;
            }
        }
        let _ = std::io::stderr().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}
