//! The runtime directories every daemon and login expects, made after fstab so that an
//! fstab entry for one of them (a sized /dev/shm) wins: `/run` (a tmpfs), `/run/lock`
//! (1777, the lock files of serial tools and old daemons), `/dev/shm` (a 1777 tmpfs for
//! POSIX shared memory), and `/dev/pts` with `/dev/ptmx`, without which sshd cannot
//! give a session a terminal. Usually /run and /dev/pts came from the initramfs (moved
//! with /dev), and this only says so.

use std::ffi::CStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{FileType, Mode};
use rustix::mount::{mount, MountFlags};

use crate::pid1::mounts::is_mounted;

/// Debian's `tty` group, the owner systemd and util-linux give devpts nodes too.
const TTY_GID: u32 = 5;
/// /dev/ptmx is the kernel's pty multiplexer, character device 5:2.
const PTMX_MAJOR: u32 = 5;
const PTMX_MINOR: u32 = 2;

/// One tmpfs or devpts this duty makes if nothing is mounted there.
struct Api {
    target: &'static str,
    fstype: &'static str,
    flags: MountFlags,
    data: &'static CStr,
    /// The mode of the mount point when this duty makes it.
    dir_mode: u32,
}

const NOSUID_NODEV: MountFlags = MountFlags::NOSUID.union(MountFlags::NODEV);

const RUN: Api = Api {
    target: "/run",
    fstype: "tmpfs",
    flags: NOSUID_NODEV,
    data: c"mode=0755",
    dir_mode: 0o755,
};
const SHM: Api = Api {
    target: "/dev/shm",
    fstype: "tmpfs",
    flags: NOSUID_NODEV,
    data: c"mode=1777",
    dir_mode: 0o1777,
};
/// ptmxmode=000: the multiplexer is reached through /dev/ptmx (a node of its own, mode
/// 0666), not through /dev/pts/ptmx; mode=620 and the tty group let `write` and
/// `wall` reach a session, as on Debian under systemd.
const PTS: Api = Api {
    target: "/dev/pts",
    fstype: "devpts",
    flags: MountFlags::NOSUID.union(MountFlags::NOEXEC),
    data: c"gid=5,mode=620,ptmxmode=000",
    dir_mode: 0o755,
};

pub fn ensure() {
    ensure_mount(&RUN);
    ensure_dir("/run/lock", 0o1777);
    ensure_mount(&SHM);
    ensure_mount(&PTS);
    ensure_ptmx();
}

fn ensure_mount(a: &Api) {
    if is_mounted(a.target) {
        log::info!("{}: {} already mounted", a.target, fstype_of(a.target));
        return;
    }
    if let Err(e) = std::fs::create_dir(a.target) {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            log::error!("{}: mkdir: {e}", a.target);
            return;
        }
    } else {
        let _ = std::fs::set_permissions(a.target, PermissionsExt::from_mode(a.dir_mode));
    }
    match mount(a.fstype, a.target, a.fstype, a.flags, Some(a.data)) {
        Ok(()) => log::info!(
            "{}: mounted {} ({})",
            a.target,
            a.fstype,
            a.data.to_string_lossy()
        ),
        Err(e) => log::error!("{}: mount {}: {e}", a.target, a.fstype),
    }
}

/// The type of the filesystem mounted on `target`, for the console line.
fn fstype_of(target: &str) -> String {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .rev()
        .find_map(|l| {
            let mut f = l.split(' ');
            let (_, t, ty) = (f.next()?, f.next()?, f.next()?);
            (crate::pid1::mounts::unescape(t) == target).then(|| ty.to_string())
        })
        .unwrap_or_else(|| "something".into())
}

/// A directory with `mode`, owned by root; an existing one gets the mode too (as
/// tmpfiles' `d` does), but only if it is a real directory: a symlink is left alone.
fn ensure_dir(path: &str, mode: u32) {
    let made = match std::fs::create_dir(path) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) => {
            log::error!("{path}: mkdir: {e}");
            return;
        }
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() && m.uid() == 0 => {
            // mkdir(2) applies the umask, so the mode is set afterwards.
            if let Err(e) = std::fs::set_permissions(path, PermissionsExt::from_mode(mode)) {
                log::error!("{path}: chmod {mode:o}: {e}");
                return;
            }
            let how = if made { "made" } else { "there" };
            log::info!("{path}: directory {how}, mode {mode:o}");
        }
        Ok(_) => log::warn!("{path}: not a directory of root's; left alone"),
        Err(e) => log::error!("{path}: {e}"),
    }
}

/// /dev/ptmx: devtmpfs makes it; a /dev without it (a static /dev) gets the node.
fn ensure_ptmx() {
    let path = Path::new("/dev/ptmx");
    if path.symlink_metadata().is_ok() {
        log::info!("/dev/ptmx: there");
        return;
    }
    let dev = rustix::fs::makedev(PTMX_MAJOR, PTMX_MINOR);
    let made = rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o666),
        dev,
    )
    .and_then(|()| rustix::fs::chmod(path, Mode::from_raw_mode(0o666)))
    .and_then(|()| rustix::fs::chown(path, None, Some(gid(TTY_GID))));
    match made {
        Ok(()) => log::info!("/dev/ptmx: made (character device 5:2, 0666)"),
        Err(e) => log::error!("/dev/ptmx: mknod: {e}; sessions get no terminal"),
    }
}

fn gid(raw: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(raw)
}
