//! The power button: what a hypervisor's "shut down" (QEMU's `system_powerdown`, a
//! cloud's ACPI shutdown) and a machine's own button send. The kernel's ACPI button
//! driver turns it into a key press, `KEY_POWER`, on an input device named "Power Button"
//! (evdev: `/dev/input/eventN`). systemd-logind reads it and powers off; here one small
//! thread per such device reads it and asks PID 1 for a poweroff with systemd's own
//! signal, SIGRTMIN+4, so the runtime's orderly shutdown runs as for `poweroff`.
//!
//! The modules (`button`, `evdev`) are in the initramfs's list (initramfs/modules.sh).
//! Without them, or without ACPI, there is no such device and nothing is started.

use std::io::Read;
use std::path::{Path, PathBuf};

/// `EV_KEY` and `KEY_POWER` from linux/input-event-codes.h.
const EV_KEY: u16 = 1;
const KEY_POWER: u16 = 116;
/// `struct input_event` on x86_64: a `struct timeval` (16 bytes), type, code, value.
const EVENT_LEN: usize = 24;
/// SIGRTMIN+4: systemd's "poweroff", which PID 1 maps to an orderly poweroff.
const POWEROFF_SIGNAL: i32 = 38;

/// Start a reader for every power button the kernel lists. Returns how many.
pub fn watch() -> usize {
    let buttons = find(Path::new("/sys/class/input"), Path::new("/dev/input"));
    for dev in &buttons {
        let path = dev.clone();
        let started = std::thread::Builder::new()
            .name("arje-power-button".into())
            .spawn(move || read_presses(&path));
        match started {
            Ok(_) => log::info!("power button: watching {}", dev.display()),
            Err(e) => log::warn!("power button {}: no thread ({e}); ignored", dev.display()),
        }
    }
    buttons.len()
}

/// The event devices under `dev` whose input device in `sys` is named "Power Button".
fn find(sys: &Path, dev: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(sys) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if !name.starts_with("event") {
                return None;
            }
            let label = std::fs::read_to_string(e.path().join("device/name")).ok()?;
            (label.trim() == "Power Button").then(|| dev.join(name))
        })
        .collect();
    found.sort();
    found
}

/// Is this `struct input_event` a press of the power key?
fn is_power_press(ev: &[u8; EVENT_LEN]) -> bool {
    let kind = u16::from_ne_bytes([ev[16], ev[17]]);
    let code = u16::from_ne_bytes([ev[18], ev[19]]);
    let value = i32::from_ne_bytes([ev[20], ev[21], ev[22], ev[23]]);
    kind == EV_KEY && code == KEY_POWER && value == 1
}

/// Read events from `dev` until it fails; on a press, ask PID 1 for a poweroff.
fn read_presses(dev: &Path) {
    // Every signal blocked in this thread, with the raw call (the C library's own
    // real-time ones included): they are the loop's, read from its signalfd.
    if let Err(e) = arje_runtime::block_signals_raw(u64::MAX) {
        log::warn!("power button: blocking signals in its thread: {e}");
    }
    let mut file = match std::fs::File::open(dev) {
        Ok(f) => f,
        Err(e) => {
            log::warn!("power button {}: {e}; the button is ignored", dev.display());
            return;
        }
    };
    let mut ev = [0u8; EVENT_LEN];
    loop {
        if let Err(e) = file.read_exact(&mut ev) {
            log::warn!(
                "power button {}: {e}; the button is ignored from now",
                dev.display()
            );
            return;
        }
        if is_power_press(&ev) {
            log::info!("power button pressed: powering off");
            let pid1 = rustix::process::getpid().as_raw_nonzero().get();
            if let Err(e) = arje_runtime::kill_raw(pid1, POWEROFF_SIGNAL) {
                log::error!("power button: cannot signal PID 1: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: u16, code: u16, value: i32) -> [u8; EVENT_LEN] {
        let mut ev = [0u8; EVENT_LEN];
        ev[16..18].copy_from_slice(&kind.to_ne_bytes());
        ev[18..20].copy_from_slice(&code.to_ne_bytes());
        ev[20..24].copy_from_slice(&value.to_ne_bytes());
        ev
    }

    #[test]
    fn test_only_a_press_of_the_power_key_counts() {
        assert!(is_power_press(&event(EV_KEY, KEY_POWER, 1)));
        assert!(!is_power_press(&event(EV_KEY, KEY_POWER, 0)), "release");
        assert!(!is_power_press(&event(EV_KEY, KEY_POWER, 2)), "autorepeat");
        assert!(!is_power_press(&event(EV_KEY, 30, 1)), "another key");
        assert!(!is_power_press(&event(0, 0, 0)), "a sync event");
    }

    #[test]
    fn test_find_lists_the_event_devices_named_power_button() {
        // Arrange: a fake /sys/class/input with a power button, a keyboard, and an
        // input node that is not an event device.
        let t = tempfile::tempdir().unwrap();
        let sys = t.path().join("sys");
        for (node, name) in [
            ("event0", "Power Button"),
            ("event1", "AT Translated Set 2 keyboard"),
            ("event2", "Power Button"),
            ("input3", "Power Button"),
        ] {
            std::fs::create_dir_all(sys.join(node).join("device")).unwrap();
            std::fs::write(sys.join(node).join("device/name"), format!("{name}\n")).unwrap();
        }

        // Act
        let found = find(&sys, Path::new("/dev/input"));

        // Assert
        assert_eq!(
            found,
            [
                PathBuf::from("/dev/input/event0"),
                PathBuf::from("/dev/input/event2")
            ]
        );
    }
}
