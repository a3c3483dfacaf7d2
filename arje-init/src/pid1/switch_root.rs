//! From the initramfs to the real root, as util-linux's switch_root does it: wait for
//! the root device, mount it, move /dev, /proc, /sys and /run into it, make it `/`,
//! delete the initramfs's files (its memory is freed only then: rootfs cannot be
//! unmounted), and exec the real root's init. The sequence is [`to_real_root`].
//!
//! This runs before the runtime exists, so no workspace has started: there is no
//! runtime state to hand over, only the mounts. The root's own arje-init then boots as a
//! fresh PID 1 that finds its early mounts in place (docs/HOST.md).

use std::ffi::{CString, OsString};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};
use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
use rustix::fs::{AtFlags, FileType, FsWord, Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{mount, mount_move, unmount, MountFlags, UnmountFlags};

use super::blockdev;
use super::root::{RootParams, RootSpec, RootWait};

/// Where the real root is mounted before it becomes `/`.
const NEW_ROOT: &str = "/newroot";
/// The mounts that move into the real root. Their submounts (/dev/pts, /sys/fs/cgroup)
/// move with them.
const MOVED: &[&str] = &["/dev", "/proc", "/sys", "/run"];
/// How often a long wait for the root device says what it is waiting for.
const WAIT_TICK: Duration = Duration::from_secs(5);
/// Set for the real root's init: the device it came from, for its log.
pub const SWITCHED_ENV: &str = "ARJE_SWITCHED_ROOT";

/// statfs(2) f_type of ramfs and tmpfs: the kernel's rootfs is one of them.
const RAMFS_MAGIC: FsWord = 0x8584_58f6;
const TMPFS_MAGIC: FsWord = 0x0102_1994;

#[derive(Debug)]
pub enum SwitchError {
    /// The device did not appear in time.
    Missing {
        spec: RootSpec,
        waited: Duration,
        devices: String,
    },
    Watch(Errno),
    /// Every filesystem type tried failed; each with its error.
    Mount {
        dev: PathBuf,
        tried: Vec<(String, Errno)>,
    },
    Step {
        what: String,
        err: Errno,
    },
    /// No init could be executed on the new root.
    Exec(Vec<(PathBuf, Errno)>),
}

impl std::fmt::Display for SwitchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SwitchError::Missing {
                spec,
                waited,
                devices,
            } => write!(
                f,
                "root device {spec} did not appear within {} ms; block devices: {devices}",
                waited.as_millis()
            ),
            SwitchError::Watch(e) => write!(f, "inotify watch on /dev: {e}"),
            SwitchError::Mount { dev, tried } => {
                let t: Vec<String> = tried.iter().map(|(t, e)| format!("{t}: {e}")).collect();
                write!(f, "mount root {}: {}", dev.display(), t.join("; "))
            }
            SwitchError::Step { what, err } => write!(f, "{what}: {err}"),
            SwitchError::Exec(tried) => {
                let t: Vec<String> = tried
                    .iter()
                    .map(|(p, e)| format!("{}: {e}", p.display()))
                    .collect();
                write!(f, "no init on the real root ({})", t.join("; "))
            }
        }
    }
}

fn step(what: impl Into<String>) -> impl FnOnce(Errno) -> SwitchError {
    let what = what.into();
    move |err| SwitchError::Step { what, err }
}

/// Is `/` the kernel's rootfs (an unpacked initramfs)? Only then is there a root to
/// switch to, and only then may its files be deleted.
pub fn root_is_initramfs() -> bool {
    rustix::fs::statfs("/").is_ok_and(|s| is_ram(s.f_type))
}

fn is_ram(f_type: FsWord) -> bool {
    f_type == RAMFS_MAGIC || f_type == TMPFS_MAGIC
}

/// Waits for the root device, mounts it, makes it `/` and execs its init. Returns only
/// on failure; after the root has moved, a failure leaves PID 1 on the new root.
pub fn to_real_root(p: &RootParams, spec: &RootSpec, args: &[OsString]) -> SwitchError {
    let (dev, waited) = match wait_for(spec, p.wait) {
        Ok(found) => found,
        Err(e) => return e,
    };
    log::info!(
        "root device {spec} is {} (after {} ms)",
        dev.display(),
        waited.as_millis()
    );
    let fstype = match mount_root(&dev, p) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let mode = if p.rw { "rw" } else { "ro" };
    log::info!(
        "root {} mounted ({fstype}, {mode}) on {NEW_ROOT}",
        dev.display()
    );
    if let Err(e) = switch_to(Path::new(NEW_ROOT)) {
        return e;
    }
    exec_init(&p.init_candidates(), args, &dev)
}

/// Waits until the device `spec` names exists, bounded unless `rootwait`. An inotify
/// watch on /dev wakes the wait whenever devtmpfs adds a node; the check runs after the
/// watch is in place, so a node made in between is not missed.
pub fn wait_for(spec: &RootSpec, wait: RootWait) -> Result<(PathBuf, Duration), SwitchError> {
    let start = Instant::now();
    let fd =
        inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK).map_err(SwitchError::Watch)?;
    // Nodes in subdirectories (/dev/mapper/x) are not watched: a tick re-checks them.
    inotify::add_watch(&fd, "/dev", WatchFlags::CREATE | WatchFlags::MOVED_TO)
        .map_err(SwitchError::Watch)?;
    let mut buf = [MaybeUninit::<u8>::uninit(); 1024];
    let mut next_tick = start + WAIT_TICK;
    loop {
        if let Some(dev) = blockdev::find(spec) {
            return Ok((dev, start.elapsed()));
        }
        let now = Instant::now();
        let left = match wait {
            RootWait::Forever => None,
            RootWait::Bounded(bound) => Some(bound.saturating_sub(start.elapsed())),
        };
        if left.is_some_and(|l| l.is_zero()) {
            return Err(SwitchError::Missing {
                spec: spec.clone(),
                waited: start.elapsed(),
                devices: blockdev::describe_all(),
            });
        }
        if now >= next_tick {
            let bound = match left {
                None => "rootwait: no bound".to_string(),
                Some(l) => format!("{} s left", l.as_secs()),
            };
            log::warn!(
                "waiting for root device {spec} ({bound}); block devices: {}",
                blockdev::describe_all()
            );
            next_tick = now + WAIT_TICK;
        }
        let until_tick = next_tick.saturating_duration_since(now);
        let timeout = left.map_or(until_tick, |l| l.min(until_tick));
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut fds, Some(&super::reap::timespec(timeout))) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(SwitchError::Watch(e)),
        }
        // Which node arrived does not matter: find() looks at them all.
        let mut reader = inotify::Reader::new(&fd, &mut buf);
        while reader.next().is_ok() {}
    }
}

/// Mounts `dev` on [`NEW_ROOT`]: read-only unless `rw`, with `rootflags=` as data,
/// as each type of `rootfstype=` in turn, else as the type its superblock shows, else
/// ext4. Returns the type that worked.
fn mount_root(dev: &Path, p: &RootParams) -> Result<String, SwitchError> {
    let types: Vec<String> = if !p.fstypes.is_empty() {
        p.fstypes.clone()
    } else {
        let probed = blockdev::probe_node(dev).map_or("ext4", |id| id.fstype);
        vec![probed.to_string()]
    };
    match rustix::fs::mkdir(NEW_ROOT, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(step(format!("mkdir {NEW_ROOT}"))(e)),
    }
    let flags = if p.rw {
        MountFlags::empty()
    } else {
        MountFlags::RDONLY
    };
    let data = p.flags.as_deref().and_then(|f| CString::new(f).ok());
    let mut tried = Vec::new();
    for t in types {
        match mount(dev, NEW_ROOT, t.as_str(), flags, data.as_deref()) {
            Ok(()) => return Ok(t),
            Err(e) => tried.push((t, e)),
        }
    }
    Err(SwitchError::Mount {
        dev: dev.into(),
        tried,
    })
}

/// Moves the early mounts into `new_root`, makes it `/` (chdir, mount --move, chroot .)
/// and deletes the initramfs's files.
fn switch_to(new_root: &Path) -> Result<(), SwitchError> {
    for m in MOVED {
        let target = new_root.join(m.trim_start_matches('/'));
        if !super::mounts::is_mounted(m) {
            continue;
        }
        if target.is_dir() {
            mount_move(*m, &target).map_err(step(format!("mount --move {m}")))?;
        } else {
            // As switch_root: a root without the directory does not get the mount.
            log::warn!("{} is missing: {m} is detached", target.display());
            let _ = unmount(*m, UnmountFlags::DETACH);
        }
    }
    let old_root = rustix::fs::open(
        "/",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(step("open /"))?;
    rustix::process::chdir(new_root).map_err(step("chdir to the new root"))?;
    mount_move(new_root, "/").map_err(step("mount --move the new root to /"))?;
    rustix::process::chroot(".").map_err(step("chroot ."))?;
    rustix::process::chdir("/").map_err(step("chdir /"))?;

    // Only ever on a ramfs or tmpfs: never delete the files of a real disk.
    let start = Instant::now();
    match rustix::fs::fstatfs(&old_root) {
        Ok(s) if is_ram(s.f_type) => {
            let dev = rustix::fs::fstat(&old_root).map(|s| s.st_dev).unwrap_or(0);
            let mut freed = Freed::default();
            remove_tree(&old_root, dev, &mut freed);
            log::info!(
                "initramfs deleted: {} files, {} KiB freed, {} left in {} ms",
                freed.files,
                freed.bytes >> 10,
                freed.failed,
                start.elapsed().as_millis()
            );
        }
        Ok(_) => log::warn!("the old root is not a ramfs or tmpfs: its files are kept"),
        Err(e) => log::warn!("fstatfs of the old root: {e}; its files are kept"),
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Freed {
    files: u64,
    bytes: u64,
    failed: u64,
}

/// Deletes what is under `dir` on device `dev`, depth first, through directory fds
/// (never a path that a mount could redirect); entries on another device (a mount
/// point) are left alone, so no mount is ever crossed.
fn remove_tree(dir: &OwnedFd, dev: u64, freed: &mut Freed) {
    let Ok(entries) = rustix::fs::Dir::read_from(dir) else {
        freed.failed += 1;
        return;
    };
    let names: Vec<CString> = entries
        .flatten()
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect();
    for name in names {
        let Ok(st) = rustix::fs::statat(dir, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) else {
            freed.failed += 1;
            continue;
        };
        if st.st_dev != dev {
            continue;
        }
        let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
        if is_dir {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match rustix::fs::openat(dir, name.as_c_str(), flags, Mode::empty()) {
                Ok(sub) => remove_tree(&sub, dev, freed),
                Err(_) => freed.failed += 1,
            }
        }
        let flag = if is_dir {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        match rustix::fs::unlinkat(dir.as_fd(), name.as_c_str(), flag) {
            Ok(()) => {
                freed.files += 1;
                freed.bytes += st.st_size as u64;
            }
            Err(_) => freed.failed += 1,
        }
    }
}

/// Execs the first candidate that runs, with the arguments the kernel gave /init and
/// the environment minus arje's own. Returns only if none did.
fn exec_init(candidates: &[PathBuf], args: &[OsString], dev: &Path) -> SwitchError {
    // The new init starts under the fd limit the kernel gave PID 1, as a fresh boot
    // would, not the one this image raised for itself.
    if let Some(soft) = crate::limits::child_nofile() {
        let max = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
        let limit = rustix::process::Rlimit {
            current: Some(soft),
            maximum: max,
        };
        let _ = rustix::process::setrlimit(rustix::process::Resource::Nofile, limit);
    }
    let env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| !k.as_bytes().starts_with(b"ARJE_"))
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .chain(CString::new(format!("{SWITCHED_ENV}={}", dev.display())).ok())
        .collect();
    let mut tried = Vec::new();
    for init in candidates {
        let Ok(path) = CString::new(init.as_os_str().as_bytes()) else {
            continue;
        };
        let argv: Vec<CString> = std::iter::once(path.clone())
            .chain(args.iter().filter_map(|a| CString::new(a.as_bytes()).ok()))
            .collect();
        log::info!("exec {} on the real root", init.display());
        match nix::unistd::execve(&path, &argv, &env) {
            Err(e) => tried.push((init.clone(), Errno::from_raw_os_error(e as i32))),
            Ok(never) => match never {},
        }
    }
    SwitchError::Exec(tried)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_remove_tree_deletes_files_and_dirs_on_the_device() {
        // Arrange
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc/arje/cards")).unwrap();
        std::fs::write(root.join("etc/arje/cards/a.toml"), b"x = 1").unwrap();
        std::fs::write(root.join("init"), b"12345").unwrap();
        std::os::unix::fs::symlink("busybox", root.join("sh")).unwrap();
        let fd = rustix::fs::open(root, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let dev = rustix::fs::fstat(&fd).unwrap().st_dev;
        let mut freed = Freed::default();

        // Act
        remove_tree(&fd, dev, &mut freed);

        // Assert
        assert_eq!(std::fs::read_dir(root).unwrap().count(), 0);
        assert_eq!((freed.files, freed.failed), (6, 0), "{freed:?}");
    }

    #[test]
    fn test_remove_tree_never_crosses_to_another_device() {
        // Arrange: every entry is on a device other than the one given.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep"), b"x").unwrap();
        let fd = rustix::fs::open(dir.path(), OFlags::RDONLY, Mode::empty()).unwrap();
        let other = rustix::fs::fstat(&fd).unwrap().st_dev + 1;
        let mut freed = Freed::default();

        // Act
        remove_tree(&fd, other, &mut freed);

        // Assert
        assert!(dir.path().join("keep").exists());
        assert_eq!(freed.files, 0);
    }

    #[test]
    fn test_missing_error_names_device_and_what_exists() {
        // Arrange
        let e = SwitchError::Missing {
            spec: RootSpec::Path("/dev/vdz".into()),
            waited: Duration::from_millis(1000),
            devices: "vda (64 MiB, ext4)".into(),
        };

        // Act
        let msg = e.to_string();

        // Assert
        assert_eq!(
            msg,
            "root device /dev/vdz did not appear within 1000 ms; block devices: vda (64 MiB, ext4)"
        );
    }
}
