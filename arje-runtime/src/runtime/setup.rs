//! What a command's host fields ask for before its program runs: the directories it
//! needs (systemd's `RuntimeDirectory=` and siblings) and its resource limits' numbers.
//!
//! arje makes the directories as root, under bases only root controls (`/run`,
//! `/var/lib`, `/var/cache`, `/var/log`, `/etc`), and hands the last one to the command's
//! user and group. A directory it made before may since belong to that user, who could
//! replace a component with a symlink to a root-only place; so the walk opens each
//! component relative to the one before with `O_NOFOLLOW | O_DIRECTORY` and changes
//! owner and mode through the opened fd, never through a path (docs/SECURITY.md).

use std::os::fd::OwnedFd;

use rustix::fs::{Gid, Mode, OFlags, Uid};
use rustix::io::Errno;
use shuma_card::ServiceDir;

/// The setrlimit(2) resource called `name` (`nofile`...), as the card names it.
pub fn rlimit_resource(name: &str) -> Option<libc::c_int> {
    let r = match name {
        "as" => libc::RLIMIT_AS,
        "core" => libc::RLIMIT_CORE,
        "cpu" => libc::RLIMIT_CPU,
        "data" => libc::RLIMIT_DATA,
        "fsize" => libc::RLIMIT_FSIZE,
        "locks" => libc::RLIMIT_LOCKS,
        "memlock" => libc::RLIMIT_MEMLOCK,
        "msgqueue" => libc::RLIMIT_MSGQUEUE,
        "nice" => libc::RLIMIT_NICE,
        "nofile" => libc::RLIMIT_NOFILE,
        "nproc" => libc::RLIMIT_NPROC,
        "rss" => libc::RLIMIT_RSS,
        "rtprio" => libc::RLIMIT_RTPRIO,
        "rttime" => libc::RLIMIT_RTTIME,
        "sigpending" => libc::RLIMIT_SIGPENDING,
        "stack" => libc::RLIMIT_STACK,
        _ => return None,
    };
    Some(r as libc::c_int)
}

/// Make each of `dirs` (and the components leading to it), then give the last
/// component to `owner` (uid, gid; `None`: arje's own) with the directory's mode.
pub fn make_directories(dirs: &[ServiceDir], owner: Option<(u32, u32)>) -> Result<(), String> {
    for d in dirs {
        make_under(d.kind.base(), &d.path, d.mode, owner)
            .map_err(|e| format!("{}/{}: {e}", d.kind.base(), d.path))?;
    }
    Ok(())
}

/// Make `path` (relative, checked by the card rules) under `base`, component by
/// component without following a symlink, and set the last one's owner and `mode`.
fn make_under(base: &str, path: &str, mode: u32, owner: Option<(u32, u32)>) -> Result<(), String> {
    let flags = OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::RDONLY;
    let mut dir: OwnedFd =
        rustix::fs::open(base, flags, Mode::empty()).map_err(|e| e.to_string())?;
    let parts: Vec<&str> = path.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let mode = if last { mode } else { 0o755 };
        match rustix::fs::mkdirat(&dir, *part, Mode::from_raw_mode(mode)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(format!("mkdir {part}: {e}")),
        }
        dir = match rustix::fs::openat(&dir, *part, flags | OFlags::NOFOLLOW, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::LOOP | Errno::NOTDIR) => {
                return Err(format!("{part} is a symlink or not a directory: refused"))
            }
            Err(e) => return Err(format!("open {part}: {e}")),
        };
    }
    if let Some((uid, gid)) = owner {
        rustix::fs::fchown(&dir, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
            .map_err(|e| format!("chown: {e}"))?;
    }
    // After the chown, which clears set-id bits.
    rustix::fs::fchmod(&dir, Mode::from_raw_mode(mode)).map_err(|e| format!("chmod: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_rlimit_resource_knows_every_card_name() {
        for name in shuma_card::spec::RLIMIT_NAMES {
            assert!(rlimit_resource(name).is_some(), "{name}");
        }
        assert_eq!(rlimit_resource("files"), None);
    }

    #[test]
    fn test_make_under_creates_nested_with_mode_and_refuses_a_symlink() {
        use std::os::unix::fs::PermissionsExt;
        let base = tempfile::tempdir().unwrap();
        let b = base.path().to_str().unwrap();

        make_under(b, "svc/data", 0o710, None).unwrap();
        std::os::unix::fs::symlink("/etc", base.path().join("evil")).unwrap();
        let refused = make_under(b, "evil/x", 0o755, None).unwrap_err();

        let meta = std::fs::metadata(base.path().join("svc/data")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o710);
        assert!(refused.contains("symlink"), "{refused}");
        assert!(!std::path::Path::new("/etc/x").exists());
    }
}
