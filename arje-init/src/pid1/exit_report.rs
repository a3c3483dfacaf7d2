//! The last word of a guest booted with `arje.exit-on` (`exit_on.rs`), said after the
//! orderly shutdown has synced and unmounted, right before reboot(2):
//!
//! 1. the line on the virtio-serial port named `arje.status`, if the VM has one;
//! 2. the same line on the console, the last one arje prints;
//! 3. QEMU's isa-debug-exit port (0xf4): writing `code + 1` makes QEMU exit at once
//!    with `2 * (code + 1) + 1`. Without the device the write does nothing, and
//!    reboot(2) powers off as usual.
//!
//! What these go through is opened before the unmounts (`prepare`): /dev may be gone
//! by the time they are written.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::exit_on::{line, Status, Target};

/// The virtio-serial port's name (QEMU: `-device virtserialport,name=arje.status`).
pub const STATUS_PORT: &str = "arje.status";
/// QEMU's isa-debug-exit device, at its usual address (`iobase=0xf4`).
pub const DEBUG_EXIT_IOBASE: u64 = 0xf4;

/// The line and the open files it goes to.
pub struct Report {
    line: String,
    code: u8,
    serial: Option<File>,
    debug_exit: Option<File>,
}

impl Report {
    /// Opens the status port and /dev/port (only on QEMU: an I/O port write is nothing
    /// to try on a machine whose devices are unknown). Logs what it found, since
    /// nothing may be logged after the last line.
    pub fn prepare(target: &Target, status: &Status) -> Report {
        let serial = status_port().and_then(|path| {
            // Non-blocking: a port whose host side is not connected would block the
            // write, and with it the power-off, for ever.
            match OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&path)
            {
                Ok(f) => Some(f),
                Err(e) => {
                    log::warn!("exit-on: open {}: {e}", path.display());
                    None
                }
            }
        });
        let debug_exit = if is_qemu() {
            // /dev/port writes each byte with outb at its offset (CONFIG_DEVPORT).
            match OpenOptions::new().write(true).open("/dev/port") {
                Ok(f) => Some(f),
                Err(e) => {
                    log::warn!(
                        "exit-on: open /dev/port: {e}; QEMU's exit code will not carry the status"
                    );
                    None
                }
            }
        } else {
            log::info!("exit-on: not a QEMU machine (DMI); no isa-debug-exit write");
            None
        };
        log::info!(
            "exit-on {target}: reporting {} through the console{}{}",
            status.word(),
            if serial.is_some() {
                ", the arje.status port"
            } else {
                ""
            },
            if debug_exit.is_some() {
                ", isa-debug-exit"
            } else {
                ""
            },
        );
        Report {
            line: line(target, status),
            code: status.code(),
            serial,
            debug_exit,
        }
    }

    /// Says it. Returns if QEMU did not exit (no isa-debug-exit device, or not QEMU).
    pub fn send(self) {
        let text = format!("{}\n", self.line);
        if let Some(mut f) = self.serial {
            // Best effort: the console line below carries the same.
            let _ = f.write_all(text.as_bytes());
        }
        let mut err = std::io::stderr();
        let _ = err.write_all(text.as_bytes());
        // The tty hands bytes to the UART from an interrupt: wait until they are out,
        // or QEMU exits (below) before the line reaches the host.
        let _ = rustix::termios::tcdrain(&err);
        if let Some(port) = self.debug_exit {
            // QEMU exits inside this write when the device is there.
            let _ = port.write_at(&[self.code + 1], DEBUG_EXIT_IOBASE);
        }
    }
}

/// The port named [`STATUS_PORT`]: udev's /dev/virtio-ports/NAME link if something made
/// it, else the vportNpM whose sysfs `name` says so (an initramfs has no udev).
fn status_port() -> Option<PathBuf> {
    let link = Path::new("/dev/virtio-ports").join(STATUS_PORT);
    if link.exists() {
        return Some(link);
    }
    let ports = std::fs::read_dir("/sys/class/virtio-ports").ok()?;
    ports.flatten().find_map(|e| {
        let name = std::fs::read_to_string(e.path().join("name")).ok()?;
        (name.trim() == STATUS_PORT).then(|| Path::new("/dev").join(e.file_name()))
    })
}

/// Does the firmware say QEMU (SMBIOS system vendor, as QEMU's pc and q35 machines set
/// it)?
fn is_qemu() -> bool {
    std::fs::read_to_string("/sys/class/dmi/id/sys_vendor").is_ok_and(|v| v.trim() == "QEMU")
}
