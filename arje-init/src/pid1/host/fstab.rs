//! /etc/fstab as mount(8) reads it (fstab(5)): six fields per line, separated by spaces
//! or tabs, `#` comments; a space or tab inside a field is written `\040` or `\011`.
//! The options field is split as mount(8) splits it: the flags the kernel takes as
//! mount(2)'s flag word, the options that only mount(8) itself reads (which never reach
//! the kernel), and the rest, the filesystem's own data string.

use rustix::mount::MountFlags;

use crate::pid1::mounts::unescape;

/// Where a host keeps its filesystem table.
pub const FSTAB: &str = "/etc/fstab";

/// One line of fstab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// What to mount: a device path, `UUID=`, `LABEL=`, `PARTUUID=`, or a name such
    /// as `tmpfs`.
    pub spec: String,
    /// Where (the mount point), or `none` for swap.
    pub file: String,
    pub vfstype: String,
    /// The options, split on commas; `defaults` when the field is missing.
    pub options: Vec<String>,
    /// fsck's order: 0 is never checked, 1 is the root, 2 the others.
    pub passno: u32,
    /// The line's number, for messages.
    pub line: usize,
}

/// Parses fstab's text; lines it cannot read are returned as messages, and skipped
/// (as mount(8) does), so one bad line costs one mount, not the boot.
pub fn parse(text: &str) -> (Vec<Entry>, Vec<String>) {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = trimmed
            .split([' ', '\t'])
            .filter(|s| !s.is_empty())
            .collect();
        if f.len() < 3 {
            problems.push(format!(
                "line {line_no}: {} field(s), at least 3 needed: {trimmed:?}",
                f.len()
            ));
            continue;
        }
        let number = |n: usize| f.get(n).map_or(Ok(0), |s| s.parse::<u32>());
        let (Ok(_freq), Ok(passno)) = (number(4), number(5)) else {
            problems.push(format!(
                "line {line_no}: the dump and pass fields must be numbers: {trimmed:?}"
            ));
            continue;
        };
        let options = f
            .get(3)
            .map(|o| unescape(o))
            .unwrap_or_else(|| "defaults".into())
            .split(',')
            .filter(|o| !o.is_empty())
            .map(str::to_string)
            .collect();
        entries.push(Entry {
            spec: unescape(f[0]),
            file: unescape(f[1]),
            vfstype: unescape(f[2]),
            options,
            passno,
            line: line_no,
        });
    }
    (entries, problems)
}

/// What the options field asks of a mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// mount(2)'s flag word.
    pub flags: MountFlags,
    /// The filesystem's own options (`errors=remount-ro`, `size=64m`, `mode=1777`),
    /// comma-joined as mount(2)'s data.
    pub data: String,
    /// `noauto`: not mounted at boot.
    pub noauto: bool,
    /// `nofail`: a failure is a warning.
    pub nofail: bool,
    /// `X-mount.mkdir`: the mount point is made if missing.
    pub mkdir: bool,
}

/// Options that set (or, as `no...`, clear) a flag of mount(2), as mount(8)'s table.
const FLAG_OPTIONS: &[(&str, &str, MountFlags)] = &[
    ("ro", "rw", MountFlags::RDONLY),
    ("nosuid", "suid", MountFlags::NOSUID),
    ("nodev", "dev", MountFlags::NODEV),
    ("noexec", "exec", MountFlags::NOEXEC),
    ("sync", "async", MountFlags::SYNCHRONOUS),
    ("dirsync", "", MountFlags::DIRSYNC),
    ("mand", "nomand", MountFlags::PERMIT_MANDATORY_FILE_LOCKING),
    ("noatime", "atime", MountFlags::NOATIME),
    ("nodiratime", "diratime", MountFlags::NODIRATIME),
    ("relatime", "norelatime", MountFlags::RELATIME),
    ("strictatime", "nostrictatime", MountFlags::STRICTATIME),
    ("lazytime", "nolazytime", MountFlags::LAZYTIME),
    ("silent", "loud", MountFlags::SILENT),
    ("nosymfollow", "symfollow", MountFlags::NOSYMFOLLOW),
    ("bind", "", MountFlags::BIND),
    ("rbind", "", MountFlags::BIND.union(MountFlags::REC)),
];

/// MS_I_VERSION, which rustix does not name.
const I_VERSION: MountFlags = MountFlags::from_bits_retain(libc::MS_I_VERSION as _);

/// Options only mount(8) reads; they never reach the kernel. (`x-`, `X-` and
/// `comment=` options are for other programs and are ignored the same way.)
const USERSPACE: &[&str] = &[
    "defaults", "auto", "noauto", "nofail", "_netdev", "nouser", "user", "users", "owner", "group",
    "loop",
];

/// Splits the options of one entry, in order, so a later option overrides an earlier
/// one (`ro,rw` is read-write), as mount(8) does.
pub fn split_options(options: &[String]) -> Options {
    let mut o = Options {
        flags: MountFlags::empty(),
        data: String::new(),
        noauto: false,
        nofail: false,
        mkdir: false,
    };
    let mut data: Vec<&str> = Vec::new();
    for opt in options {
        let opt = opt.as_str();
        let name = opt.split_once('=').map_or(opt, |(n, _)| n);
        if let Some((_, _, f)) = FLAG_OPTIONS.iter().find(|(set, _, _)| *set == opt) {
            o.flags |= *f;
        } else if let Some((_, _, f)) = FLAG_OPTIONS
            .iter()
            .find(|(_, clear, _)| !clear.is_empty() && *clear == opt)
        {
            o.flags.remove(*f);
        } else if opt == "iversion" {
            o.flags |= I_VERSION;
        } else if opt == "noiversion" {
            o.flags.remove(I_VERSION);
        } else if name == "X-mount.mkdir" || name == "x-mount.mkdir" {
            o.mkdir = true;
        } else if opt.starts_with("x-") || opt.starts_with("X-") || name == "comment" {
            // For other programs (systemd's x-systemd.*, and the like).
        } else if USERSPACE.contains(&opt) {
            match opt {
                "noauto" => o.noauto = true,
                "auto" => o.noauto = false,
                "nofail" => o.nofail = true,
                // mount(8): a user-mountable filesystem is also nosuid, nodev and
                // (for user and users) noexec, unless a later option says otherwise.
                "user" | "users" => {
                    o.flags |= MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC
                }
                "owner" | "group" => o.flags |= MountFlags::NOSUID | MountFlags::NODEV,
                _ => {}
            }
        } else {
            data.push(opt);
        }
    }
    o.data = data.join(",");
    o
}

/// swapon(2)'s flags (linux/swap.h): a priority, and discard.
const SWAP_FLAG_PREFER: i32 = 0x8000;
const SWAP_FLAG_PRIO_MASK: i32 = 0x7fff;
const SWAP_FLAG_DISCARD: i32 = 0x10000;
const SWAP_FLAG_DISCARD_ONCE: i32 = 0x20000;
const SWAP_FLAG_DISCARD_PAGES: i32 = 0x40000;

/// The swapon(2) flags of a swap entry's options, as swapon(8) makes them: `pri=N`
/// and `discard[=once|pages]`; the rest (`sw`, `defaults`) mean nothing to the kernel.
pub fn swap_flags(options: &[String]) -> i32 {
    let mut flags = 0;
    for opt in options {
        match opt.split_once('=') {
            Some(("pri", n)) => {
                if let Ok(n) = n.parse::<i32>() {
                    flags |= SWAP_FLAG_PREFER | (n & SWAP_FLAG_PRIO_MASK);
                }
            }
            Some(("discard", "once")) => flags |= SWAP_FLAG_DISCARD | SWAP_FLAG_DISCARD_ONCE,
            Some(("discard", "pages")) => flags |= SWAP_FLAG_DISCARD | SWAP_FLAG_DISCARD_PAGES,
            None if opt == "discard" => flags |= SWAP_FLAG_DISCARD,
            _ => {}
        }
    }
    flags
}

/// The entry for `/`, if fstab has one (the last, as mount(8) takes the last match).
pub fn root_entry(entries: &[Entry]) -> Option<&Entry> {
    entries.iter().rev().find(|e| e.file == "/")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN: &str = "\
# /etc/fstab: static file system information.
# <file system>  <mount point>  <type>  <options>  <dump>  <pass>
LABEL=arje-debian /  ext4  errors=remount-ro  0  1
tmpfs\t/dev/shm\ttmpfs\tnosuid,nodev,mode=1777,X-mount.mkdir\t0\t0
UUID=0b4d3c9e-1f2a-4b5c-8d6e-7f8091a2b3c4 /srv/with\\040space ext4 defaults,nofail 0 2
/swapfile none swap sw,pri=5 0 0
proc /proc proc
";

    fn opts(s: &str) -> Vec<String> {
        s.split(',').map(str::to_string).collect()
    }

    #[test]
    fn test_parse_debian_fstab_reads_every_entry() {
        // Arrange
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fstab");
        std::fs::write(&path, DEBIAN).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();

        // Act
        let (entries, problems) = parse(&text);

        // Assert
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(entries.len(), 5);
        assert_eq!(entries[0].spec, "LABEL=arje-debian");
        assert_eq!(entries[0].file, "/");
        assert_eq!(entries[0].passno, 1);
        assert_eq!(
            entries[1].options,
            opts("nosuid,nodev,mode=1777,X-mount.mkdir")
        );
        assert_eq!(entries[2].file, "/srv/with space");
        assert_eq!(entries[2].passno, 2);
        assert_eq!(entries[2].line, 5);
        assert_eq!(entries[3].vfstype, "swap");
        assert_eq!(entries[4].options, opts("defaults"));
        assert_eq!(entries[4].passno, 0);
    }

    #[test]
    fn test_parse_bad_lines_are_reported_and_skipped() {
        // Arrange
        let text = "tmpfs /tmp\n/dev/vdb /data ext4 defaults 0 x\ntmpfs /run tmpfs defaults 0 0\n";

        // Act
        let (entries, problems) = parse(text);

        // Assert
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].file, "/run");
        assert_eq!(problems.len(), 2);
        assert!(
            problems[0].starts_with("line 1: 2 field(s)"),
            "{problems:?}"
        );
        assert!(problems[1].starts_with("line 2: "), "{problems:?}");
    }

    #[test]
    fn test_split_options_separates_flags_userspace_and_data() {
        // Arrange
        let o = opts("defaults,nosuid,nodev,noatime,mode=1777,size=64m,x-systemd.automount,X-mount.mkdir,comment=x,nofail,_netdev");

        // Act
        let s = split_options(&o);

        // Assert
        assert_eq!(
            s.flags,
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOATIME
        );
        assert_eq!(s.data, "mode=1777,size=64m");
        assert!(s.nofail && s.mkdir && !s.noauto);
    }

    #[test]
    fn test_split_options_later_option_wins() {
        // Arrange
        let o = opts("ro,noexec,rw,exec,noauto,user,exec,errors=remount-ro");

        // Act
        let s = split_options(&o);

        // Assert: user adds nosuid, nodev and noexec; the exec after it clears noexec.
        assert_eq!(s.flags, MountFlags::NOSUID | MountFlags::NODEV);
        assert!(s.noauto);
        assert_eq!(s.data, "errors=remount-ro");
    }

    #[test]
    fn test_split_options_defaults_is_rw_with_no_data() {
        // Arrange
        let o = opts("defaults");

        // Act
        let s = split_options(&o);

        // Assert
        assert_eq!(s.flags, MountFlags::empty());
        assert_eq!(s.data, "");
    }

    #[test]
    fn test_swap_flags_priority_and_discard() {
        // Arrange + Act
        let plain = swap_flags(&opts("sw"));
        let pri = swap_flags(&opts("sw,pri=5"));
        let once = swap_flags(&opts("defaults,discard=once"));

        // Assert
        assert_eq!(plain, 0);
        assert_eq!(pri, 0x8000 | 5);
        assert_eq!(once, 0x10000 | 0x20000);
    }

    #[test]
    fn test_root_entry_is_the_last_for_slash() {
        // Arrange
        let text = "/dev/vda / ext4 defaults 0 1\n/dev/vdb / ext4 ro 0 0\n";
        let (entries, _) = parse(text);

        // Act
        let root = root_entry(&entries).unwrap();

        // Assert
        assert_eq!(root.spec, "/dev/vdb");
        assert_eq!(root.passno, 0);
    }
}
