//! The QEMU boot-test fixture: boots the test initramfs under a Debian kernel, reads the
//! serial console line by line, and tells how the guest ended.
//!
//! Prerequisites (packages, kernel, static test build, the one initramfs holding every
//! scenario) are made by `scripts/prepare-boot-tests.sh`, run once per test process and
//! under a file lock, so parallel test binaries neither race nor repeat the work. A test
//! picks its scenario on the kernel command line: `arje.cards=/etc/arje/scenarios/NAME`.
//!
//! Waiting is driven by the console: a reader thread sends each line down a channel and
//! waits block on it, bounded by the boot's deadline. A deadline that passes is a failure
//! carrying the console's tail, never a sleep.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How a guest ended, read from the kernel's last words on the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// "reboot: Power down"
    Poweroff,
    /// "reboot: Restarting system"
    Reboot,
    /// "reboot: System halted" (QEMU keeps running a stopped CPU: the fixture kills it)
    Halt,
    /// "Kernel panic"
    Panic,
    /// The deadline passed first.
    Timeout,
    /// QEMU exited without any of the above.
    Unknown,
}

/// What to boot.
#[derive(Debug, Clone)]
pub struct VmOpts {
    /// Names the console log: `target/vm-logs/<name>.log`.
    pub name: String,
    /// Appended to `console=ttyS0 quiet panic=-1 no_timer_check`.
    pub append: String,
    /// A raw disk image attached as virtio (/dev/vda in the guest).
    pub disk: Option<PathBuf>,
    /// Without it, QEMU runs with -no-reboot and a guest reboot ends QEMU.
    pub allow_reboot: bool,
    /// Bound on the whole boot, from QEMU's start to its end.
    pub timeout: Duration,
    /// QEMU's `-nic` value (e.g. user-mode networking with `hostfwd` rules); `None` is
    /// `-nic none`.
    pub nic: Option<String>,
    /// More QEMU arguments (devices), appended as they are.
    pub qemu_args: Vec<String>,
    /// Adds QEMU's isa-debug-exit device at 0xf4 (`arje.exit-on` writes the status
    /// there: QEMU's exit code, [`Vm::qemu_exit_code`]).
    pub debug_exit: bool,
    /// Adds a virtio-serial port named `arje.status` whose output QEMU writes to this
    /// file.
    pub status_port: Option<PathBuf>,
    /// Another initramfs than arje's (a distribution's own, with `init=` in `append`);
    /// `None` is the test initramfs.
    pub initrd: Option<PathBuf>,
}

impl VmOpts {
    /// Boots scenario `scenario` of tests/scenarios, logging as `name`.
    pub fn scenario(name: &str, scenario: &str) -> VmOpts {
        VmOpts {
            name: name.to_string(),
            append: format!("arje.cards=/etc/arje/scenarios/{scenario}"),
            disk: None,
            allow_reboot: false,
            timeout: Duration::from_secs(boot_timeout_secs()),
            nic: None,
            qemu_args: Vec::new(),
            debug_exit: false,
            status_port: None,
            initrd: None,
        }
    }
}

/// The per-boot bound: `ARJE_BOOT_TIMEOUT` seconds, default 180 (a TCG boot takes a few
/// seconds alone, but two parallel guests on two cores under load take longer).
pub fn boot_timeout_secs() -> u64 {
    std::env::var("ARJE_BOOT_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180)
}

#[derive(Debug)]
pub enum VmError {
    /// The deadline passed before `waiting_for` showed.
    Timeout { waiting_for: String, tail: String },
    /// QEMU exited before `waiting_for` showed.
    Ended { waiting_for: String, tail: String },
}

impl std::fmt::Display for VmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VmError::Timeout { waiting_for, tail } => {
                write!(
                    f,
                    "timed out waiting for {waiting_for:?}; console tail:\n{tail}"
                )
            }
            VmError::Ended { waiting_for, tail } => {
                write!(
                    f,
                    "guest ended before {waiting_for:?}; console tail:\n{tail}"
                )
            }
        }
    }
}

impl std::error::Error for VmError {}

/// Paths made by the prepare script.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
}

/// The workspace root (the tests crate's parent).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// Runs the prepare script once per process, under an exclusive lock on
/// build/prepare.lock so that parallel test binaries wait for one another.
pub fn prepare() -> &'static Prepared {
    static PREPARED: OnceLock<Result<Prepared, String>> = OnceLock::new();
    match PREPARED.get_or_init(run_prepare) {
        Ok(p) => p,
        Err(e) => panic!("boot-test prerequisites: {e}"),
    }
}

fn run_prepare() -> Result<Prepared, String> {
    let root = repo_root();
    let build = root.join("build");
    std::fs::create_dir_all(&build).map_err(|e| format!("mkdir {}: {e}", build.display()))?;
    let lock_path = build.join("prepare.lock");
    let lock = File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    // SAFETY: flock on an fd we own for the duration of the call; no memory is shared.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    if rc != 0 {
        return Err(format!(
            "flock {}: {}",
            lock_path.display(),
            std::io::Error::last_os_error()
        ));
    }
    let script = root.join("scripts/prepare-boot-tests.sh");
    let out = Command::new("bash")
        .arg(&script)
        .current_dir(&root)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    // The lock is released when `lock` is dropped, after the script is done.
    drop(lock);
    if !out.status.success() {
        return Err(format!("{} failed: {}", script.display(), out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).map(PathBuf::from))
            .ok_or_else(|| format!("{} printed no {key}", script.display()))
    };
    Ok(Prepared {
        kernel: get("KERNEL=")?,
        initramfs: get("INITRAMFS=")?,
    })
}

/// A booted guest. Dropping it kills QEMU.
pub struct Vm {
    child: Child,
    lines: Receiver<String>,
    /// Every console line so far.
    seen: Vec<String>,
    started: Instant,
    deadline: Instant,
    name: String,
    ended: Option<End>,
    /// QEMU's human monitor socket ([`Vm::monitor`]).
    monitor: PathBuf,
    /// QEMU's exit status, once it has ended ([`Vm::wait_end`]).
    exit: Option<std::process::ExitStatus>,
}

impl Vm {
    /// Boots a guest; panics if the prerequisites cannot be made or QEMU cannot start.
    pub fn boot(opts: VmOpts) -> Vm {
        let p = prepare();
        let accel = std::env::var("ARJE_ACCEL").unwrap_or_else(|_| "tcg".to_string());
        let log_dir = target_dir().join("vm-logs");
        let _ = std::fs::create_dir_all(&log_dir);
        // The monitor, for what a hypervisor does to a running guest (system_powerdown).
        let monitor = log_dir.join(format!("{}.mon", opts.name));
        let _ = std::fs::remove_file(&monitor);
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-accel", &accel, "-m", "512M", "-smp", "1"])
            .args(["-display", "none", "-serial", "stdio", "-monitor"])
            .arg(format!("unix:{},server=on,wait=off", monitor.display()))
            .arg("-nic")
            .arg(opts.nic.as_deref().unwrap_or("none"))
            .arg("-kernel")
            .arg(&p.kernel)
            .arg("-initrd")
            .arg(opts.initrd.as_ref().unwrap_or(&p.initramfs))
            .arg("-append")
            // no_timer_check: under TCG on a loaded host the kernel's IO-APIC timer check
            // can fail and panic the boot ("IO-APIC + timer doesn't work").
            .arg(format!(
                "console=ttyS0 quiet panic=-1 no_timer_check {}",
                opts.append
            ));
        if !opts.allow_reboot {
            cmd.arg("-no-reboot");
        }
        if opts.debug_exit {
            cmd.args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
        }
        if let Some(path) = &opts.status_port {
            cmd.args(["-device", "virtio-serial-pci", "-chardev"])
                .arg(format!("file,id=arjestatus,path={}", path.display()))
                .args([
                    "-device",
                    "virtserialport,chardev=arjestatus,name=arje.status",
                ]);
        }
        if let Some(disk) = &opts.disk {
            cmd.arg("-drive")
                .arg(format!("file={},format=raw,if=virtio", disk.display()));
        }
        cmd.args(&opts.qemu_args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn qemu-system-x86_64: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");

        let log_path = log_dir.join(format!("{}.log", opts.name));
        let mut log = File::create(&log_path).ok();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).split(b'\n') {
                let Ok(line) = line else { break };
                let text = String::from_utf8_lossy(&line)
                    .trim_end_matches('\r')
                    .to_string();
                if let Some(log) = log.as_mut() {
                    let _ = writeln!(log, "{text}");
                }
                if tx.send(text).is_err() {
                    break;
                }
            }
        });
        Vm {
            child,
            lines: rx,
            seen: Vec::new(),
            started,
            deadline: started + opts.timeout,
            name: opts.name,
            ended: None,
            monitor,
            exit: None,
        }
    }

    /// Sends `command` (e.g. `system_powerdown`, the ACPI power button) to QEMU's human
    /// monitor, as a hypervisor's "shut down" does.
    pub fn monitor(&self, command: &str) {
        let mut s = std::os::unix::net::UnixStream::connect(&self.monitor)
            .unwrap_or_else(|e| panic!("QEMU monitor {}: {e}", self.monitor.display()));
        writeln!(s, "{command}").expect("write to the QEMU monitor");
        // QEMU acts on the line as it reads it; closing the connection is harmless.
        let _ = s.shutdown(std::net::Shutdown::Write);
        let _ = std::io::Read::read_to_end(&mut s, &mut Vec::new());
    }

    /// Waits for the next line (from now on) containing `needle`; returns that line.
    pub fn wait_for(&mut self, needle: &str) -> Result<String, VmError> {
        loop {
            match self.next_line() {
                Ok(line) if line.contains(needle) => return Ok(line),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    self.kill();
                    return Err(VmError::Timeout {
                        waiting_for: needle.into(),
                        tail: self.tail(40),
                    });
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(VmError::Ended {
                        waiting_for: needle.into(),
                        tail: self.tail(40),
                    })
                }
            }
        }
    }

    /// Reads the console until QEMU exits or the deadline passes; returns how it ended.
    pub fn wait_end(&mut self) -> End {
        if let Some(end) = self.ended {
            return end;
        }
        let end = loop {
            match self.next_line() {
                Ok(line) if line.contains("reboot: System halted") => {
                    // A halted guest keeps QEMU running; nothing more will come.
                    self.kill();
                    break End::Halt;
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    self.kill();
                    break End::Timeout;
                }
                Err(RecvTimeoutError::Disconnected) => break self.classify(),
            }
        };
        self.exit = self.child.wait().ok();
        self.ended = Some(end);
        end
    }

    /// QEMU's exit code once [`Vm::wait_end`] has seen it exit by itself (`None` if it
    /// was killed, or has not ended).
    pub fn qemu_exit_code(&self) -> Option<i32> {
        self.exit.and_then(|s| s.code())
    }

    fn classify(&self) -> End {
        let any = |s: &str| self.seen.iter().any(|l| l.contains(s));
        if any("Kernel panic") {
            End::Panic
        } else if any("reboot: Power down") {
            End::Poweroff
        } else if any("reboot: Restarting system") {
            End::Reboot
        } else if any("reboot: System halted") {
            End::Halt
        } else {
            End::Unknown
        }
    }

    fn next_line(&mut self) -> Result<String, RecvTimeoutError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        let line = self.lines.recv_timeout(left)?;
        self.seen.push(line.clone());
        Ok(line)
    }

    /// Kills QEMU (a second boot the test does not need, a halt, a timeout).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Every console line read so far, joined.
    pub fn console(&self) -> String {
        self.seen.join("\n")
    }

    /// Lines read so far that contain `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<&str> {
        self.lines_with_since(0, needle)
    }

    /// How many lines have been read: a mark for [`Vm::lines_with_since`] (the lines of
    /// a second boot in the same QEMU, say).
    pub fn mark(&self) -> usize {
        self.seen.len()
    }

    /// Lines read after `mark` that contain `needle`.
    pub fn lines_with_since(&self, mark: usize, needle: &str) -> Vec<&str> {
        self.seen
            .iter()
            .skip(mark)
            .filter(|l| l.contains(needle))
            .map(String::as_str)
            .collect()
    }

    /// The last `n` lines, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let from = self.seen.len().saturating_sub(n);
        self.seen[from..].join("\n")
    }

    /// Wall time since QEMU started.
    pub fn wall(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if self.ended.is_none() {
            self.kill();
        }
    }
}

/// The number after `key` in `line`, e.g. `boottime_after(l, "boottime ")` on
/// "... (boottime 3.059s)" gives 3.059.
pub fn number_after(line: &str, key: &str) -> Option<f64> {
    let rest = &line[line.find(key)? + key.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Makes an empty ext4 image of `size_mb` MiB at `path` (truncate + mkfs.ext4). Its root
/// directory is owned by root whoever runs this (mke2fs gives it to the caller by
/// default): in the guest it is arje's durable directory, which arje refuses if another
/// user owns it (docs/SECURITY.md).
pub fn make_ext4_image(path: &Path, size_mb: u64) {
    let f = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.set_len(size_mb << 20)
        .unwrap_or_else(|e| panic!("truncate {}: {e}", path.display()));
    let st = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E", "root_owner=0:0"])
        .arg(path)
        .status()
        .unwrap_or_else(|e| panic!("mkfs.ext4 {}: {e}", path.display()));
    assert!(st.success(), "mkfs.ext4 {} failed: {st}", path.display());
}

/// `e2fsck FLAGS IMG`: whether it exited 0, and what it printed.
pub fn e2fsck(flags: &str, disk: &Path) -> (bool, String) {
    let out = Command::new("e2fsck")
        .arg(flags)
        .arg(disk)
        .output()
        .expect("run e2fsck");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `e2fsck -n` (the clean flag) and `e2fsck -fn` (a full read-only check) on the image:
/// both exit 0, neither has a journal to replay, and `-n` says clean.
pub fn assert_fsck_clean(disk: &Path, after: &str) {
    for flags in ["-n", "-fn"] {
        let (ok, text) = e2fsck(flags, disk);
        eprintln!("figure: e2fsck {flags} after {after}: {}", text.trim());
        assert!(ok, "e2fsck {flags} after {after} failed:\n{text}");
        // `e2fsck -n` prints "clean" and exits 0 even for a journal that needs replaying
        // (it skips the replay, with a warning): the warning is the tell.
        assert!(
            !text.contains("journal recovery"),
            "journal needs recovery after {after}: {text}"
        );
        if flags == "-n" {
            assert!(text.contains(": clean,"), "not clean after {after}: {text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_number_after_boottime_line_parses() {
        // Arrange
        let line = "arje: INFO  control socket ready at /run/arje/control.sock (boottime 3.059s); runtime start 98.1 ms (cards 1.2)";

        // Act
        let n = number_after(line, "(boottime ");

        // Assert
        assert_eq!(n, Some(3.059));
    }

    #[test]
    fn test_number_after_missing_key_is_none() {
        // Arrange
        let line = "nothing here";

        // Act
        let n = number_after(line, "boottime ");

        // Assert
        assert_eq!(n, None);
    }
}
