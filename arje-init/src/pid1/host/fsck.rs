//! Checking a filesystem with the distribution's `fsck -a` (fsck(8): util-linux's
//! front end, which runs `fsck.ext4` and the like). A checker is the filesystem's own
//! program, so arje runs it rather than reimplement one; arje decides when, and what
//! its exit code means for the boot.

use std::path::Path;
use std::process::Command;

/// Where Debian and most distributions keep fsck (bookworm's /sbin is a link to
/// /usr/sbin; older roots have both).
const FSCK: &[&str] = &["/usr/sbin/fsck", "/sbin/fsck"];

/// What the kernel command line asks of fsck (systemd-fsck's words, and the older
/// `fastboot`/`forcefsck`); the last one given wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Check what fstab's pass field says.
    Auto,
    /// `fsck.mode=skip` or `fastboot`: check nothing.
    Skip,
    /// `fsck.mode=force` or `forcefsck`: check even a clean filesystem (`-f`), and
    /// the root even with pass 0.
    Force,
}

impl Mode {
    pub fn from_cmdline(cmdline: &str) -> Mode {
        let mut mode = Mode::Auto;
        for word in cmdline.split_ascii_whitespace() {
            mode = match word {
                "fsck.mode=auto" => Mode::Auto,
                "fsck.mode=skip" | "fastboot" => Mode::Skip,
                "fsck.mode=force" | "forcefsck" => Mode::Force,
                _ => mode,
            };
        }
        mode
    }
}

/// What an fsck exit code means (fsck(8): a sum of these bits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// 0: no errors.
    Clean,
    /// 1: errors corrected; the filesystem may be used.
    Corrected,
    /// 2 and above: not fit to be written (the text says which bits were set).
    Failed(String),
}

pub fn verdict(code: i32) -> Verdict {
    const BITS: &[(i32, &str)] = &[
        (2, "corrected, the system should be rebooted"),
        (4, "errors left uncorrected"),
        (8, "operational error"),
        (16, "usage or syntax error"),
        (32, "cancelled"),
        (128, "shared-library error"),
    ];
    match code {
        0 => Verdict::Clean,
        1 => Verdict::Corrected,
        _ => {
            let said: Vec<&str> = BITS
                .iter()
                .filter(|(bit, _)| code & bit != 0)
                .map(|(_, s)| *s)
                .collect();
            let said = if said.is_empty() {
                "unknown exit code".to_string()
            } else {
                said.join(", ")
            };
            Verdict::Failed(format!("exit {code}: {said}"))
        }
    }
}

/// Runs `fsck -a [-f] DEVICE` with its output on the console (PID 1's stdio), and
/// waits: nothing should write to the filesystem while it is checked. Returns the exit
/// code (128 + the signal if it was killed), or why it could not run.
pub fn run(device: &str, force: bool) -> Result<i32, String> {
    let Some(fsck) = FSCK.iter().find(|p| Path::new(p).exists()) else {
        return Err(format!("no fsck program ({})", FSCK.join(", ")));
    };
    let mut cmd = Command::new(fsck);
    // -a repairs what is safe to repair without asking; -T leaves out fsck's title.
    cmd.args(["-a", "-T"]);
    if force {
        cmd.arg("-f");
    }
    cmd.arg(device);
    // fsck finds fsck.<type> through PATH.
    cmd.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    let status = cmd.status().map_err(|e| format!("{fsck}: {e}"))?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_mode_from_cmdline_last_word_wins() {
        // Arrange + Act + Assert
        assert_eq!(Mode::from_cmdline("root=/dev/vda ro"), Mode::Auto);
        assert_eq!(Mode::from_cmdline("fsck.mode=skip"), Mode::Skip);
        assert_eq!(Mode::from_cmdline("fastboot forcefsck"), Mode::Force);
        assert_eq!(
            Mode::from_cmdline("fsck.mode=force fsck.mode=auto"),
            Mode::Auto
        );
    }

    #[test]
    fn test_verdict_zero_and_one_are_usable_two_and_up_fail() {
        // Arrange + Act + Assert
        assert_eq!(verdict(0), Verdict::Clean);
        assert_eq!(verdict(1), Verdict::Corrected);
        assert_eq!(
            verdict(2),
            Verdict::Failed("exit 2: corrected, the system should be rebooted".into())
        );
        assert_eq!(
            verdict(12),
            Verdict::Failed("exit 12: errors left uncorrected, operational error".into())
        );
    }
}
