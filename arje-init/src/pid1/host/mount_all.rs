//! The rest of /etc/fstab, in the file's order (as `mount -a` and `swapon -a` do):
//! each entry checked first if its pass field asks, then mounted, or swapped on. A
//! failure is an error on the console, or a warning for `nofail`; either way the boot
//! goes on, since a machine up without /srv is better than no machine.
//!
//! A mount point reached through a symlink is refused (mount(8) would follow it): a
//! user could have planted one under a directory of theirs in an earlier session, and
//! root must not mount where a less privileged party points. No unprivileged process
//! runs yet, so the check cannot race.

use std::ffi::CString;
use std::path::Path;

use rustix::mount::mount;

use super::fsck::{self, Mode, Verdict};
use super::fstab::{self, Entry, Options};
use super::source;
use crate::pid1::blockdev;

/// What to do with one entry, decided from the entry and what is mounted now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing; the text says why.
    Skip(&'static str),
    /// swapon(2) with these flags.
    Swap { flags: i32 },
    /// mount(2), after fsck if `check`.
    Mount { options: Options, check: bool },
}

pub fn plan(e: &Entry, mounted: &[String], mode: Mode) -> Action {
    let options = fstab::split_options(&e.options);
    if e.file == "/" {
        return Action::Skip("the root, checked and remounted above");
    }
    if options.noauto {
        return Action::Skip("noauto");
    }
    if e.vfstype == "swap" {
        return Action::Swap {
            flags: fstab::swap_flags(&e.options),
        };
    }
    if mounted.contains(&e.file) {
        return Action::Skip("already mounted");
    }
    Action::Mount {
        options,
        check: e.passno > 0 && mode != Mode::Skip,
    }
}

/// Mounts every entry of `entries` but the root; one console line each.
pub fn mount_all(entries: &[Entry], mode: Mode) {
    for e in entries {
        let mounted = crate::pid1::mounts::mount_points();
        let what = if e.vfstype == "swap" {
            format!("fstab line {}: {} (swap)", e.line, e.spec)
        } else {
            format!("fstab line {}: {} on {}", e.line, e.spec, e.file)
        };
        let nofail = fstab::split_options(&e.options).nofail;
        let result = match plan(e, &mounted, mode) {
            Action::Skip(why) => {
                log::info!("{what}: skipped ({why})");
                continue;
            }
            Action::Swap { flags } => super::swap::on(&e.spec, flags),
            Action::Mount { options, check } => mount_entry(e, &options, check, mode),
        };
        match result {
            Ok(done) => log::info!("{what}: {done}"),
            Err(why) if nofail => log::warn!("{what}: {why} (nofail: the boot goes on)"),
            Err(why) => log::error!("{what}: FAILED: {why}"),
        }
    }
}

fn mount_entry(e: &Entry, o: &Options, check: bool, mode: Mode) -> Result<String, String> {
    let src = source::resolve(&e.spec)?;
    let target = Path::new(&e.file);
    if o.mkdir && !target.exists() {
        std::fs::create_dir_all(target).map_err(|err| format!("mkdir {}: {err}", e.file))?;
    }
    if !reached_directly(target) {
        return Err(format!(
            "{} is reached through a symlink; not mounted there",
            e.file
        ));
    }
    let mut checked = String::new();
    if check && source::is_block_device(&src) {
        match fsck::run(&src, mode == Mode::Force).map(fsck::verdict) {
            Ok(Verdict::Clean) => checked = ", fsck clean".into(),
            Ok(Verdict::Corrected) => checked = ", fsck corrected errors".into(),
            Ok(Verdict::Failed(why)) => return Err(format!("fsck {src}: {why}; not mounted")),
            Err(why) => checked = format!(", not checked: {why}"),
        }
    }
    let data = CString::new(o.data.clone()).map_err(|_| "a NUL in the options".to_string())?;
    let data = (!o.data.is_empty()).then_some(data.as_c_str());
    let mut tried = Vec::new();
    for fstype in fstypes(&e.vfstype, &src) {
        match mount(src.as_str(), target, fstype.as_str(), o.flags, data) {
            Ok(()) => {
                let ty = if src == fstype {
                    String::new()
                } else {
                    format!(" ({fstype})")
                };
                let opts = if o.data.is_empty() {
                    String::new()
                } else {
                    format!(", {}", o.data)
                };
                return Ok(format!("mounted {src}{ty}{opts}{checked}"));
            }
            Err(err) => tried.push(format!("{fstype}: {err}")),
        }
    }
    Err(format!("mount {src} on {}: {}", e.file, tried.join("; ")))
}

/// Is `target` its own canonical path (no symlink on the way, no `..`)? A missing
/// target is left for mount(2) to refuse.
fn reached_directly(target: &Path) -> bool {
    match std::fs::canonicalize(target) {
        Ok(real) => real == target,
        Err(_) => true,
    }
}

/// The types to try: fstab's comma list, or for `auto` what the superblock says.
fn fstypes(vfstype: &str, src: &str) -> Vec<String> {
    if vfstype == "auto" {
        return blockdev::probe_node(Path::new(src))
            .map(|id| vec![id.fstype.to_string()])
            .unwrap_or_else(|| vec!["auto".into()]);
    }
    vfstype.split(',').map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::mount::MountFlags;

    fn entry(line: &str) -> Entry {
        fstab::parse(line).0.remove(0)
    }

    #[test]
    fn test_plan_root_noauto_and_mounted_are_skipped() {
        // Arrange
        let root = entry("LABEL=r / ext4 defaults 0 1");
        let noauto = entry("/dev/vdb /mnt ext4 noauto 0 2");
        let shm = entry("tmpfs /dev/shm tmpfs mode=1777 0 0");
        let mounted = vec!["/".to_string(), "/dev/shm".to_string()];

        // Act
        let plans: Vec<Action> = [&root, &noauto, &shm]
            .iter()
            .map(|e| plan(e, &mounted, Mode::Auto))
            .collect();

        // Assert
        assert_eq!(
            plans,
            vec![
                Action::Skip("the root, checked and remounted above"),
                Action::Skip("noauto"),
                Action::Skip("already mounted"),
            ]
        );
    }

    #[test]
    fn test_plan_swap_and_mount_carry_their_flags_and_check() {
        // Arrange
        let swap = entry("/swapfile none swap sw,pri=3 0 0");
        let data = entry("UUID=ab /srv ext4 noatime,nofail 0 2");

        // Act
        let s = plan(&swap, &[], Mode::Auto);
        let d = plan(&data, &[], Mode::Auto);
        let skipped = plan(&data, &[], Mode::Skip);

        // Assert
        assert_eq!(s, Action::Swap { flags: 0x8003 });
        let Action::Mount { options, check } = d else {
            panic!("{d:?}");
        };
        assert_eq!(options.flags, MountFlags::NOATIME);
        assert!(options.nofail && check);
        assert!(matches!(skipped, Action::Mount { check: false, .. }));
    }

    #[test]
    fn test_reached_directly_refuses_a_symlinked_mount_point() {
        // Arrange
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = real.with_file_name("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();

        // Act + Assert
        assert!(reached_directly(&real));
        assert!(!reached_directly(&link));
        assert!(!reached_directly(&link.join("..").join("real")));
    }

    #[test]
    fn test_fstypes_list_is_split() {
        // Arrange + Act + Assert
        assert_eq!(fstypes("ext4,ext3", "/dev/x"), vec!["ext4", "ext3"]);
        assert_eq!(fstypes("tmpfs", "tmpfs"), vec!["tmpfs"]);
    }
}
