//! The kernel's messages kept across a reboot: at shutdown, once the workspaces have
//! stopped and while the root is still writable, the kernel's log buffer (which holds
//! arje-init's own lines too: PID 1 logs through /dev/kmsg) is written to
//! /var/log/arje-kernel.log, the previous boot's becoming arje-kernel.log.1, as
//! `[seconds.micros] message` lines, `dmesg`'s format. (Beside /var/log/arje, not in
//! it: a workspace may be named `kernel.log`.) A crash or a power cut loses the
//! boot's buffer, as it does under any init that reads the kernel only at the end.

use std::io::Write;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

const KERNEL_LOG: &str = "arje-kernel.log";

/// One /dev/kmsg record as a dmesg line: `PRIO,SEQ,USEC,FLAGS;TEXT` (continuation lines,
/// ` KEY=VALUE`, are left out). None for what is not a record.
pub fn format_record(record: &str) -> Option<String> {
    let (head, text) = record.split_once(';')?;
    let usec: u64 = head.split(',').nth(2)?.parse().ok()?;
    let text = text.lines().next().unwrap_or("");
    Some(format!(
        "[{:5}.{:06}] {text}\n",
        usec / 1_000_000,
        usec % 1_000_000
    ))
}

/// Every record the kernel still holds, read from `kmsg` (/dev/kmsg) without blocking.
fn read_all(kmsg: &Path) -> std::io::Result<String> {
    let fd = rustix::fs::open(
        kmsg,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut out = String::new();
    let mut buf = vec![0u8; 8192];
    loop {
        match rustix::io::read(&fd, &mut buf) {
            Ok(0) | Err(rustix::io::Errno::AGAIN) => break,
            Ok(n) => {
                if let Some(line) = format_record(&String::from_utf8_lossy(&buf[..n])) {
                    out.push_str(&line);
                }
            }
            // Records overwritten while reading: the next read goes on with the oldest.
            Err(rustix::io::Errno::PIPE) | Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// Save the kernel's buffer into `dir` (/var/log), keeping the last boot's as
/// `arje-kernel.log.1`.
pub fn save(kmsg: &Path, dir: &Path) {
    let text = match read_all(kmsg) {
        Ok(t) => t,
        Err(e) => {
            log::warn!("kernel messages: {}: {e}; not saved", kmsg.display());
            return;
        }
    };
    let path = dir.join(KERNEL_LOG);
    let _ = std::fs::rename(&path, dir.join(format!("{KERNEL_LOG}.1")));
    let written = rustix::fs::open(
        &path,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o640),
    )
    .map_err(std::io::Error::from)
    .map(std::fs::File::from)
    .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()));
    match written {
        Ok(()) => log::info!(
            "kernel messages saved to {} ({} lines)",
            path.display(),
            text.lines().count()
        ),
        Err(e) => log::warn!("kernel messages: {}: {e}; not saved", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_record_formatted_as_dmesg_without_continuation_lines() {
        assert_eq!(
            format_record("6,339,5140900,-;arje: INFO  boot done\n SUBSYSTEM=x\n").as_deref(),
            Some("[    5.140900] arje: INFO  boot done\n")
        );
        assert_eq!(format_record("garbage"), None);
        assert_eq!(format_record("6,1,x,-;a"), None);
    }

    #[test]
    fn test_save_keeps_the_previous_file_and_reads_a_file_to_its_end() {
        // Arrange: a stand-in for /dev/kmsg (a regular file reads as one record).
        let t = tempfile::tempdir().unwrap();
        let kmsg = t.path().join("kmsg");
        std::fs::write(&kmsg, "6,1,1000000,-;Linux version 6.1\n").unwrap();
        std::fs::write(t.path().join(KERNEL_LOG), "last boot\n").unwrap();

        // Act
        save(&kmsg, t.path());

        // Assert
        let now = std::fs::read_to_string(t.path().join(KERNEL_LOG)).unwrap();
        assert_eq!(now, "[    1.000000] Linux version 6.1\n");
        let before = std::fs::read_to_string(t.path().join("arje-kernel.log.1")).unwrap();
        assert_eq!(before, "last boot\n");
    }
}
