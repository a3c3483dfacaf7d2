//! The root filesystem: checked while it is still read-only (systemd-fsck-root), then
//! remounted as /etc/fstab says (systemd-remount-fs). The initramfs mounts the root
//! read-only unless the kernel command line says `rw`, precisely so that this check
//! can run before anything writes.

use std::ffi::CString;

use rustix::mount::{mount_remount, MountFlags};

use super::fsck::{self, Mode, Verdict};
use super::fstab::{self, Entry};
use super::source;

/// What /proc/self/mountinfo says about `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootMount {
    pub source: String,
    pub fstype: String,
    /// The filesystem itself (the superblock) is read-only: nothing can write to it
    /// through any mount, so it is safe to check.
    pub read_only: bool,
}

/// The mount of `/` on top (the last line for `/`), from mountinfo's text: `id parent
/// maj:min root target options [optional...] - fstype source superoptions`.
pub fn root_mount(mountinfo: &str) -> Option<RootMount> {
    mountinfo.lines().rev().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        if left.split(' ').nth(4)? != "/" {
            return None;
        }
        let mut r = right.split(' ');
        let fstype = r.next()?.to_string();
        let source = crate::pid1::mounts::unescape(r.next()?);
        let read_only = r.next()?.split(',').any(|o| o == "ro");
        Some(RootMount {
            source,
            fstype,
            read_only,
        })
    })
}

/// Whether to check the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsckPlan {
    /// Check it (`force`: even if it looks clean).
    Check { force: bool },
    /// Leave it; the text says why.
    Skip(String),
}

pub fn plan_fsck(entry: Option<&Entry>, root: &RootMount, mode: Mode) -> FsckPlan {
    let skip = |why: &str| FsckPlan::Skip(why.to_string());
    match (entry, mode) {
        (_, Mode::Skip) => skip("fsck.mode=skip on the kernel command line"),
        (None, Mode::Auto) => skip("no / in /etc/fstab"),
        (Some(e), Mode::Auto) if e.passno == 0 => skip("pass 0 for / in /etc/fstab"),
        _ if !root.read_only => {
            skip("mounted read-write, so it cannot be checked (boot with ro to check it)")
        }
        _ => FsckPlan::Check {
            force: mode == Mode::Force,
        },
    }
}

/// What to do with `/` once it is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemountPlan {
    /// Remount with fstab's flags and data (read-only if they say `ro`).
    Remount { flags: MountFlags, data: String },
    /// Leave it as it is; the text says why.
    Keep(String),
}

pub fn plan_remount(entry: Option<&Entry>, fsck_failed: bool) -> RemountPlan {
    let Some(e) = entry else {
        return RemountPlan::Keep(
            "no / in /etc/fstab: left as the kernel command line mounted it".into(),
        );
    };
    if fsck_failed {
        return RemountPlan::Keep("fsck failed: / stays read-only".into());
    }
    let o = fstab::split_options(&e.options);
    RemountPlan::Remount {
        flags: o.flags,
        data: o.data,
    }
}

/// Checks and remounts the root; one console line for each step.
pub fn check_and_remount(entries: &[Entry], mode: Mode) {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let Some(root) = root_mount(&text) else {
        log::error!("fsck: no / in /proc/self/mountinfo; the root is left as it is");
        return;
    };
    let entry = fstab::root_entry(entries);
    let failed = match plan_fsck(entry, &root, mode) {
        FsckPlan::Skip(why) => {
            log::info!("fsck of / ({}): not run: {why}", root.source);
            false
        }
        FsckPlan::Check { force } => !check(&root, entry, force),
    };
    match plan_remount(entry, failed) {
        RemountPlan::Keep(why) => log::info!("remount of /: none: {why}"),
        RemountPlan::Remount { flags, data } => remount(flags, &data),
    }
}

/// Runs fsck on the root's device; returns whether the root may be written.
fn check(root: &RootMount, entry: Option<&Entry>, force: bool) -> bool {
    // The source in mountinfo is the node the initramfs mounted; a root the kernel
    // mounted itself shows as /dev/root, which exists nowhere: then fstab's spec.
    let device = if source::is_block_device(&root.source) {
        Ok(root.source.clone())
    } else {
        entry
            .ok_or_else(|| format!("{} is not a device node", root.source))
            .and_then(|e| source::resolve(&e.spec))
    };
    let device = match device {
        Ok(d) => d,
        Err(e) => {
            log::warn!("fsck of /: not run: {e}");
            return true;
        }
    };
    match fsck::run(&device, force).map(fsck::verdict) {
        Ok(Verdict::Clean) => {
            log::info!("fsck of / ({device}, {}): clean", root.fstype);
            true
        }
        Ok(Verdict::Corrected) => {
            log::warn!(
                "fsck of / ({device}, {}): errors were corrected",
                root.fstype
            );
            true
        }
        Ok(Verdict::Failed(why)) => {
            log::error!(
                "!!! fsck of / ({device}, {}) FAILED ({why}): / STAYS READ-ONLY; \
                 repair it by hand (fsck {device}) and reboot !!!",
                root.fstype
            );
            false
        }
        // Without a checker the root cannot be checked, which is no reason to keep it
        // read-only: the machine would be unusable for want of a package.
        Err(e) => {
            log::warn!("fsck of / ({device}): not run: {e}");
            true
        }
    }
}

fn remount(flags: MountFlags, data: &str) {
    let mode = if flags.contains(MountFlags::RDONLY) {
        "ro"
    } else {
        "rw"
    };
    let c_data = CString::new(data).unwrap_or_default();
    match mount_remount("/", flags, c_data.as_c_str()) {
        Ok(()) if data.is_empty() => log::info!("remounted / {mode} (as /etc/fstab says)"),
        Ok(()) => log::info!("remounted / {mode},{data} (as /etc/fstab says)"),
        // Some filesystem options cannot change on a remount (ext4's data=, for one):
        // the root then gets the flags alone rather than stay read-only.
        Err(e) if !data.is_empty() => match mount_remount("/", flags, c"") {
            Ok(()) => log::warn!(
                "remounted / {mode}, without /etc/fstab's options {data:?} (refused: {e})"
            ),
            Err(e2) => {
                log::error!("remount of / {mode}: {e2} (with {data:?}: {e}); / is left as it was")
            }
        },
        Err(e) => log::error!("remount of / {mode}: {e}; / is left as it was"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
1 1 0:2 / / rw - rootfs rootfs rw
21 1 254:0 / / ro,relatime - ext4 /dev/vda ro
22 21 0:5 / /dev rw,nosuid - devtmpfs devtmpfs rw,mode=755
";

    fn root_ro() -> RootMount {
        root_mount(MOUNTINFO).unwrap()
    }

    fn entry(line: &str) -> Entry {
        fstab::parse(line).0.remove(0)
    }

    #[test]
    fn test_root_mount_is_the_top_mount_of_slash() {
        // Arrange + Act
        let r = root_ro();

        // Assert
        assert_eq!(
            r,
            RootMount {
                source: "/dev/vda".into(),
                fstype: "ext4".into(),
                read_only: true,
            }
        );
    }

    #[test]
    fn test_plan_fsck_read_only_root_with_pass_is_checked() {
        // Arrange
        let e = entry("LABEL=r / ext4 errors=remount-ro 0 1");

        // Act
        let plan = plan_fsck(Some(&e), &root_ro(), Mode::Auto);

        // Assert
        assert_eq!(plan, FsckPlan::Check { force: false });
    }

    #[test]
    fn test_plan_fsck_pass_zero_missing_entry_or_rw_root_are_skipped() {
        // Arrange
        let pass0 = entry("LABEL=r / ext4 defaults 0 0");
        let pass1 = entry("LABEL=r / ext4 defaults 0 1");
        let rw = RootMount {
            read_only: false,
            ..root_ro()
        };

        // Act
        let a = plan_fsck(Some(&pass0), &root_ro(), Mode::Auto);
        let b = plan_fsck(None, &root_ro(), Mode::Auto);
        let c = plan_fsck(Some(&pass1), &rw, Mode::Auto);
        let d = plan_fsck(Some(&pass1), &root_ro(), Mode::Skip);

        // Assert
        assert_eq!(a, FsckPlan::Skip("pass 0 for / in /etc/fstab".into()));
        assert_eq!(b, FsckPlan::Skip("no / in /etc/fstab".into()));
        assert!(
            matches!(c, FsckPlan::Skip(ref w) if w.contains("read-write")),
            "{c:?}"
        );
        assert!(
            matches!(d, FsckPlan::Skip(ref w) if w.contains("skip")),
            "{d:?}"
        );
    }

    #[test]
    fn test_plan_fsck_force_checks_even_pass_zero() {
        // Arrange
        let pass0 = entry("LABEL=r / ext4 defaults 0 0");

        // Act
        let plan = plan_fsck(Some(&pass0), &root_ro(), Mode::Force);

        // Assert
        assert_eq!(plan, FsckPlan::Check { force: true });
    }

    #[test]
    fn test_plan_remount_follows_fstab_and_a_failed_fsck_keeps_ro() {
        // Arrange
        let rw = entry("LABEL=r / ext4 errors=remount-ro,noatime 0 1");
        let ro = entry("LABEL=r / ext4 ro 0 1");

        // Act
        let a = plan_remount(Some(&rw), false);
        let b = plan_remount(Some(&ro), false);
        let c = plan_remount(Some(&rw), true);
        let d = plan_remount(None, false);

        // Assert
        assert_eq!(
            a,
            RemountPlan::Remount {
                flags: MountFlags::NOATIME,
                data: "errors=remount-ro".into()
            }
        );
        assert_eq!(
            b,
            RemountPlan::Remount {
                flags: MountFlags::RDONLY,
                data: String::new()
            }
        );
        assert!(matches!(c, RemountPlan::Keep(ref w) if w.contains("fsck failed")));
        assert!(matches!(d, RemountPlan::Keep(ref w) if w.contains("no / in")));
    }
}
