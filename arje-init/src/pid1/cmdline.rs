//! The `arje.*` parameters of the kernel command line (/proc/cmdline).
//!
//! The kernel treats `arje.x=y` as a parameter of a module named "arje", which does not
//! exist, so it neither passes them to init's environment nor complains: they are read
//! from /proc/cmdline instead. docs/PID1.md lists them.

use std::path::PathBuf;
use std::time::Duration;

use crate::args::parse_duration;

/// Every `arje.*` parameter with its default applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootParams {
    /// `arje.cards=DIR`: the boot cards (default /etc/arje/cards).
    pub cards: PathBuf,
    /// `arje.modules=FILE`: module paths in load order (default /etc/arje/modules.order).
    pub modules: PathBuf,
    /// `arje.state=DEV`: the state device (e.g. /dev/vda); none by default.
    pub state_dev: Option<PathBuf>,
    /// `arje.state_mount=DIR` (default /var/lib/arje).
    pub state_mount: PathBuf,
    /// `arje.state_fs=TYPE` (default ext4).
    pub state_fs: String,
    /// `arje.state_timeout=DUR`: how long to wait for the device node (default 10s).
    pub state_timeout: Duration,
    /// `arje.durable=DIR`: the durable snapshot's directory (default: the state mount
    /// when a state device is mounted, else none).
    pub durable: Option<PathBuf>,
    /// `arje.log=LEVEL` (default info).
    pub log: log::LevelFilter,
    /// `arje.shutdown_timeout=DUR` (default 10s).
    pub shutdown_timeout: Duration,
    /// `arje.hostname=NAME`; without it, the root's `/etc/hostname`, else "arje"
    /// (`console::hostname`).
    pub hostname: Option<String>,
    /// `arje.shell=1`: start an emergency-style shell on the console next to the
    /// runtime (default 0). For debugging a boot; the demo uses a console card instead.
    pub shell: bool,
    /// `arje.vsock=PORT`: serve the control protocol on this AF_VSOCK port too, for
    /// the VM's host (`shuma --vsock`); none by default.
    pub vsock: Option<u32>,
    /// `arje.exit-on=WORKSPACE/COMMAND` (or `arje.exit_on`): power off when it ends and
    /// report how (`exit_on.rs`, which checks the value).
    pub exit_on: Option<String>,
    /// Parameters that looked like ours but did not parse, for the log.
    pub rejected: Vec<String>,
}

impl Default for BootParams {
    fn default() -> Self {
        BootParams {
            cards: "/etc/arje/cards".into(),
            modules: "/etc/arje/modules.order".into(),
            state_dev: None,
            state_mount: "/var/lib/arje".into(),
            state_fs: "ext4".into(),
            state_timeout: Duration::from_secs(10),
            durable: None,
            log: log::LevelFilter::Info,
            shutdown_timeout: Duration::from_secs(10),
            hostname: None,
            shell: false,
            vsock: None,
            exit_on: None,
            rejected: Vec::new(),
        }
    }
}

impl BootParams {
    /// Parses the text of /proc/cmdline. Unknown `arje.*` keys and bad values are kept
    /// in `rejected` (and logged by the caller); boot goes on with the default.
    pub fn parse(cmdline: &str) -> BootParams {
        let mut p = BootParams::default();
        for word in cmdline.split_ascii_whitespace() {
            let Some(rest) = word.strip_prefix("arje.") else {
                continue;
            };
            let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
            let ok = match key {
                "cards" if !value.is_empty() => set(&mut p.cards, value.into()),
                "modules" if !value.is_empty() => set(&mut p.modules, value.into()),
                "state" if !value.is_empty() => set(&mut p.state_dev, Some(value.into())),
                "state_mount" if !value.is_empty() => set(&mut p.state_mount, value.into()),
                "state_fs" if !value.is_empty() => set(&mut p.state_fs, value.into()),
                "durable" if !value.is_empty() => set(&mut p.durable, Some(value.into())),
                "hostname" if !value.is_empty() => set(&mut p.hostname, Some(value.into())),
                "state_timeout" => parse_duration(value).map(|d| p.state_timeout = d).is_some(),
                "shutdown_timeout" => parse_duration(value)
                    .map(|d| p.shutdown_timeout = d)
                    .is_some(),
                "log" => value.parse().map(|l| p.log = l).is_ok(),
                "vsock" => value.parse().map(|v| p.vsock = Some(v)).is_ok(),
                // The kernel treats '-' and '_' in a parameter's name alike; so does arje.
                "exit-on" | "exit_on" => set(&mut p.exit_on, Some(value.into())),
                "shell" => match value {
                    "1" | "" => set(&mut p.shell, true),
                    "0" => set(&mut p.shell, false),
                    _ => false,
                },
                _ => false,
            };
            if !ok {
                p.rejected.push(word.to_string());
            }
        }
        p
    }
}

fn set<T>(slot: &mut T, value: T) -> bool {
    *slot = value;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_empty_cmdline_gives_defaults() {
        // Arrange
        let cmdline = "console=ttyS0 quiet panic=-1\n";

        // Act
        let p = BootParams::parse(cmdline);

        // Assert
        assert_eq!(p, BootParams::default());
    }

    #[test]
    fn test_parse_all_keys_are_applied() {
        // Arrange
        let cmdline = "quiet arje.cards=/etc/arje/scenarios/x arje.modules=/m arje.state=/dev/vda \
                       arje.state_mount=/s arje.state_fs=ext2 arje.log=debug \
                       arje.shutdown_timeout=3s arje.durable=/d arje.hostname=vm1 arje.shell=1 \
                       arje.state_timeout=500ms";

        // Act
        let p = BootParams::parse(cmdline);

        // Assert
        assert_eq!(p.cards, PathBuf::from("/etc/arje/scenarios/x"));
        assert_eq!(p.modules, PathBuf::from("/m"));
        assert_eq!(p.state_dev, Some(PathBuf::from("/dev/vda")));
        assert_eq!(p.state_mount, PathBuf::from("/s"));
        assert_eq!(p.state_fs, "ext2");
        assert_eq!(p.log, log::LevelFilter::Debug);
        assert_eq!(p.shutdown_timeout, Duration::from_secs(3));
        assert_eq!(p.state_timeout, Duration::from_millis(500));
        assert_eq!(p.durable, Some(PathBuf::from("/d")));
        assert_eq!(p.hostname.as_deref(), Some("vm1"));
        assert!(p.shell);
        assert!(p.rejected.is_empty(), "{:?}", p.rejected);
    }

    #[test]
    fn test_parse_bad_values_are_rejected_and_defaulted() {
        // Arrange
        let cmdline = "arje.log=loud arje.shutdown_timeout=soon arje.nope=1 arje.cards=";

        // Act
        let p = BootParams::parse(cmdline);

        // Assert
        assert_eq!(p.log, log::LevelFilter::Info);
        assert_eq!(p.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(p.cards, PathBuf::from("/etc/arje/cards"));
        assert_eq!(p.rejected.len(), 4, "{:?}", p.rejected);
    }
}
