//! The kernel's root parameters, read by PID 1 of an initramfs to find the real root:
//! `root=`, `rootfstype=`, `rootflags=`, `ro`/`rw`, `rootwait`, `rootdelay=`, `init=`.
//!
//! With an initramfs the kernel mounts no root itself and runs `/init`: these words stay
//! on the command line for whoever does the mounting (here, arje-init; elsewhere, dracut
//! or initramfs-tools). The kernel consumes them as its own parameters, so they reach
//! neither init's argv nor its environment: they are read from /proc/cmdline.
//! docs/HOST.md tells what arje makes of each.

use std::path::PathBuf;
use std::time::Duration;

/// How the root device is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSpec {
    /// `root=/dev/vda1`: a device node path.
    Path(PathBuf),
    /// `root=UUID=...` or `root=/dev/disk/by-uuid/...`: a filesystem's UUID.
    Uuid(String),
    /// `root=LABEL=...` or `root=/dev/disk/by-label/...`: a filesystem's label.
    Label(String),
    /// `root=PARTUUID=...` or `root=/dev/disk/by-partuuid/...`: a GPT partition's unique
    /// GUID, or an MBR disk signature and partition number (`SSSSSSSS-PP`).
    PartUuid(String),
}

impl RootSpec {
    /// Parses the value of `root=`. The /dev/disk/by-* links are made by udev, which an
    /// initramfs without it does not run: they are read as the id they name.
    pub fn parse(value: &str) -> Option<RootSpec> {
        let by = |prefix: &str| value.strip_prefix(prefix).filter(|v| !v.is_empty());
        if let Some(v) = by("UUID=").or_else(|| by("/dev/disk/by-uuid/")) {
            Some(RootSpec::Uuid(v.to_ascii_lowercase()))
        } else if let Some(v) = by("LABEL=").or_else(|| by("/dev/disk/by-label/")) {
            Some(RootSpec::Label(unescape_label(v)))
        } else if let Some(v) = by("PARTUUID=").or_else(|| by("/dev/disk/by-partuuid/")) {
            Some(RootSpec::PartUuid(v.to_ascii_lowercase()))
        } else if value.starts_with('/') {
            Some(RootSpec::Path(value.into()))
        } else {
            // `root=fe01` (major:minor in hex) and `root=PARTUUID=.../PARTNROFF=n` are
            // kernel forms this parser does not take: named in docs/HOST.md.
            None
        }
    }
}

impl std::fmt::Display for RootSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RootSpec::Path(p) => write!(f, "{}", p.display()),
            RootSpec::Uuid(u) => write!(f, "UUID={u}"),
            RootSpec::Label(l) => write!(f, "LABEL={l}"),
            RootSpec::PartUuid(u) => write!(f, "PARTUUID={u}"),
        }
    }
}

/// udev writes a space in a by-label link as `\x20`; so do people on command lines.
fn unescape_label(s: &str) -> String {
    s.replace("\\x20", " ")
}

/// How long to wait for the root device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootWait {
    /// `rootwait`: as long as it takes, saying so on the console now and then.
    Forever,
    /// `rootdelay=N` (seconds), or [`DEFAULT_ROOT_WAIT`] when neither is given.
    Bounded(Duration),
}

/// The bound without `rootwait` or `rootdelay=`: a virtio or SATA disk shows up well
/// within a second of its driver loading; a USB disk can take several.
pub const DEFAULT_ROOT_WAIT: Duration = Duration::from_secs(30);

/// Every root parameter of the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootParams {
    /// `root=`; `None` when absent (arje then runs from the initramfs itself).
    pub root: Option<RootSpec>,
    /// `root=` values this parser does not take, for the log.
    pub rejected: Option<String>,
    /// `rootfstype=`: a comma-separated list of types to try, in order.
    pub fstypes: Vec<String>,
    /// `rootflags=`: the mount's data string (filesystem options).
    pub flags: Option<String>,
    /// `rw` (the last of `ro`/`rw` wins); read-only by default, as for the kernel.
    pub rw: bool,
    pub wait: RootWait,
    /// `init=`: the program to run on the real root instead of the search list.
    pub init: Option<PathBuf>,
}

impl RootParams {
    pub fn parse(cmdline: &str) -> RootParams {
        let mut p = RootParams {
            root: None,
            rejected: None,
            fstypes: Vec::new(),
            flags: None,
            rw: false,
            wait: RootWait::Bounded(DEFAULT_ROOT_WAIT),
            init: None,
        };
        let mut rootwait = false;
        let mut delay = None;
        for word in cmdline.split_ascii_whitespace() {
            let (key, value) = word.split_once('=').unwrap_or((word, ""));
            match key {
                "root" => {
                    p.root = RootSpec::parse(value);
                    p.rejected = p.root.is_none().then(|| word.to_string());
                }
                "rootfstype" => {
                    p.fstypes = value
                        .split(',')
                        .filter(|t| !t.is_empty())
                        .map(str::to_string)
                        .collect();
                }
                "rootflags" if !value.is_empty() => p.flags = Some(value.to_string()),
                "ro" if value.is_empty() => p.rw = false,
                "rw" if value.is_empty() => p.rw = true,
                "rootwait" if value.is_empty() => rootwait = true,
                "rootdelay" => delay = value.parse::<u64>().ok().map(Duration::from_secs),
                "init" if value.starts_with('/') => p.init = Some(value.into()),
                _ => {}
            }
        }
        p.wait = match (rootwait, delay) {
            (true, _) => RootWait::Forever,
            (false, Some(d)) => RootWait::Bounded(d),
            (false, None) => RootWait::Bounded(DEFAULT_ROOT_WAIT),
        };
        p
    }

    /// The programs to exec on the real root, in order: `init=` alone if given (as the
    /// kernel, which panics when it fails; arje falls back to its emergency loop); else
    /// the root's own arje-init, then the kernel's own search list.
    pub fn init_candidates(&self) -> Vec<PathBuf> {
        match &self.init {
            Some(init) => vec![init.clone()],
            None => INIT_SEARCH.iter().map(PathBuf::from).collect(),
        }
    }
}

/// Where an init is looked for on the real root when `init=` is not given: arje's own
/// install paths first, then the kernel's list (init/main.c, `kernel_init`).
pub const INIT_SEARCH: &[&str] = &[
    "/sbin/arje-init",
    "/usr/sbin/arje-init",
    "/sbin/init",
    "/etc/init",
    "/bin/init",
    "/bin/sh",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_no_root_gives_none_and_defaults() {
        // Arrange
        let cmdline = "console=ttyS0 quiet panic=-1 arje.log=debug\n";

        // Act
        let p = RootParams::parse(cmdline);

        // Assert
        assert_eq!(p.root, None);
        assert!(!p.rw);
        assert_eq!(p.wait, RootWait::Bounded(DEFAULT_ROOT_WAIT));
        assert_eq!(p.init_candidates()[0], PathBuf::from("/sbin/arje-init"));
    }

    #[test]
    fn test_parse_every_root_key_is_applied() {
        // Arrange
        let cmdline = "root=/dev/vda1 rootfstype=ext4,xfs rootflags=data=journal,noatime \
                       ro rw rootdelay=5 init=/usr/lib/systemd/systemd";

        // Act
        let p = RootParams::parse(cmdline);

        // Assert
        assert_eq!(p.root, Some(RootSpec::Path("/dev/vda1".into())));
        assert_eq!(p.fstypes, vec!["ext4".to_string(), "xfs".to_string()]);
        assert_eq!(p.flags.as_deref(), Some("data=journal,noatime"));
        assert!(p.rw, "the last of ro/rw wins");
        assert_eq!(p.wait, RootWait::Bounded(Duration::from_secs(5)));
        assert_eq!(
            p.init_candidates(),
            vec![PathBuf::from("/usr/lib/systemd/systemd")]
        );
    }

    #[test]
    fn test_parse_rootwait_wins_over_rootdelay() {
        // Arrange
        let cmdline = "root=LABEL=root rootdelay=3 rootwait";

        // Act
        let p = RootParams::parse(cmdline);

        // Assert
        assert_eq!(p.wait, RootWait::Forever);
        assert_eq!(p.root, Some(RootSpec::Label("root".into())));
    }

    #[test]
    fn test_root_spec_id_forms_and_by_links_are_the_same() {
        // Arrange
        let u = "0B4D3C9E-1f2a-4b5c-8d6e-7f8091a2b3c4";

        // Act
        let forms = [
            RootSpec::parse(&format!("UUID={u}")),
            RootSpec::parse(&format!("/dev/disk/by-uuid/{u}")),
        ];

        // Assert
        let want = Some(RootSpec::Uuid(u.to_ascii_lowercase()));
        assert_eq!(forms, [want.clone(), want]);
        assert_eq!(
            RootSpec::parse("/dev/disk/by-label/my\\x20root"),
            Some(RootSpec::Label("my root".into()))
        );
        assert_eq!(
            RootSpec::parse("PARTUUID=ABCD0123-02"),
            Some(RootSpec::PartUuid("abcd0123-02".into()))
        );
    }

    #[test]
    fn test_root_spec_unsupported_forms_are_rejected() {
        // Arrange
        let cmdline = "root=fe01 rootfstype= init=relative";

        // Act
        let p = RootParams::parse(cmdline);

        // Assert
        assert_eq!(p.root, None);
        assert_eq!(p.rejected.as_deref(), Some("root=fe01"));
        assert!(p.fstypes.is_empty());
        assert_eq!(p.init, None);
    }
}
