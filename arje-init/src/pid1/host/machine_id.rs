//! /etc/machine-id (machine-id(5)): 32 lowercase hex digits naming this installation,
//! read by journald, D-Bus and DHCP clients. An image ships it empty so that every
//! machine made from it gets its own; the first boot writes one, as
//! systemd-machine-id-setup does.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

const MACHINE_ID: &str = "/etc/machine-id";

/// What /etc/machine-id holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// A valid id: kept.
    Set(String),
    /// Missing, empty, or systemd's first-boot marker `uninitialized`: one is made.
    Unset,
    /// Something else: left alone (someone wrote it), and said.
    Invalid(String),
}

pub fn state(content: Option<&str>) -> State {
    let Some(text) = content else {
        return State::Unset;
    };
    let id = text.trim();
    if id.is_empty() || id == "uninitialized" {
        State::Unset
    } else if id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        State::Set(id.to_string())
    } else {
        State::Invalid(id.chars().take(40).collect())
    }
}

/// 128 random bits as an id, marked as a version-4 UUID the way systemd makes ids (so
/// tools that read it as a UUID see a well-formed one).
pub fn format_id(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn ensure() {
    let content = std::fs::read_to_string(MACHINE_ID).ok();
    match state(content.as_deref()) {
        State::Set(id) => log::info!("machine id {id} (from {MACHINE_ID})"),
        State::Invalid(text) => {
            log::warn!("{MACHINE_ID} holds {text:?}, not a machine id; left alone")
        }
        State::Unset => {
            let mut b = [0u8; 16];
            // Waits for the kernel's generator (a second under TCG, once per machine):
            // an id made before it is seeded could repeat on a clone of this image.
            let made = arje_runtime::getrandom(&mut b, true)
                .map_err(|e| Failed::Other(format!("getrandom: {e}")))
                .and_then(|()| {
                    let id = format_id(b);
                    write(&id).map(|()| id)
                });
            match made {
                Ok(id) => log::info!("machine id {id} made (first boot: {MACHINE_ID} was empty)"),
                Err(Failed::ReadOnly) => {
                    log::info!("machine id: none made, the root is read-only")
                }
                Err(Failed::Other(e)) => log::error!("machine id: {e}"),
            }
        }
    }
}

/// Why no id was written: a read-only root (booted `ro` with no fstab to remount it,
/// or a failed fsck) is said plainly, not as an error.
enum Failed {
    ReadOnly,
    Other(String),
}

/// Written beside the file and renamed over it, so a power cut leaves the old (empty)
/// file or the new one, never half an id.
fn write(id: &str) -> Result<(), Failed> {
    let tmp = format!("{MACHINE_ID}.arje-new");
    let r = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o444)
            .open(&tmp)?;
        f.write_all(format!("{id}\n").as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, MACHINE_ID)
    })();
    r.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        if e.raw_os_error() == Some(libc::EROFS) {
            Failed::ReadOnly
        } else {
            Failed::Other(format!("write {MACHINE_ID}: {e}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_state_missing_empty_and_marker_are_unset() {
        // Arrange + Act + Assert
        assert_eq!(state(None), State::Unset);
        assert_eq!(state(Some("")), State::Unset);
        assert_eq!(state(Some("\n")), State::Unset);
        assert_eq!(state(Some("uninitialized\n")), State::Unset);
    }

    #[test]
    fn test_state_valid_id_is_kept_and_junk_is_invalid() {
        // Arrange
        let id = "0123456789abcdef0123456789abcdef";

        // Act + Assert
        assert_eq!(state(Some(&format!("{id}\n"))), State::Set(id.into()));
        assert_eq!(
            state(Some("0123456789ABCDEF0123456789ABCDEF")),
            State::Invalid("0123456789ABCDEF0123456789ABCDEF".into())
        );
        assert_eq!(state(Some("hello")), State::Invalid("hello".into()));
    }

    #[test]
    fn test_format_id_is_32_hex_with_uuid_v4_bits() {
        // Arrange
        let bytes = [0xff; 16];

        // Act
        let id = format_id(bytes);

        // Assert
        assert_eq!(id, "ffffffffffff4fffbfffffffffffffff");
        assert!(matches!(state(Some(&id)), State::Set(_)));
    }
}
