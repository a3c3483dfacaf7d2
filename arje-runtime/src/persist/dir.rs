//! The directories arje keeps state in, held as directory fds and trusted only if arje
//! owns them.
//!
//! arje runs as root and writes every service's environment (passwords included) into
//! these directories, and reads back from them the commands it will run as root. So a
//! directory another user owns, or may write to, is never used: that user could plant a
//! symlink at a name arje writes (making root write the snapshot into a file the user
//! reads, or over a root-only file) or a snapshot of their own (commands run as root). A
//! directory that passes is then only ever used through its fd: every file is opened
//! relative to it, with `O_NOFOLLOW`, and created with `O_EXCL`, so neither a rename of
//! the directory nor a symlink inside it redirects a write. docs/SECURITY.md has the rules.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

/// A directory arje owns and no one else may write, open as an fd. Every file operation
/// goes through the fd; `path` is only for messages.
#[derive(Debug)]
pub struct StateDir {
    fd: OwnedFd,
    path: PathBuf,
}

/// Why a directory is not trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untrusted {
    /// Owned by another user, who could put anything in it.
    Owner {
        uid: u32,
        euid: u32,
    },
    /// Group or others may create, rename and remove names in it.
    Writable {
        mode: u32,
    },
    /// The last component is a symlink (which another user may have made or may swap).
    Symlink,
    NotADirectory,
}

impl std::fmt::Display for Untrusted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Untrusted::Owner { uid, euid } => {
                write!(f, "owned by uid {uid}, not by arje's uid {euid}")
            }
            Untrusted::Writable { mode } => {
                write!(f, "writable by group or others (mode {mode:04o})")
            }
            Untrusted::Symlink => f.write_str("a symlink"),
            Untrusted::NotADirectory => f.write_str("not a directory"),
        }
    }
}

/// A state directory could not be opened, or is not trusted.
#[derive(Debug)]
pub enum DirError {
    Create { path: PathBuf, source: io::Error },
    Open { path: PathBuf, source: io::Error },
    Untrusted { path: PathBuf, why: Untrusted },
}

impl std::fmt::Display for DirError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DirError::Create { path, source } => {
                write!(f, "cannot create {}: {source}", path.display())
            }
            DirError::Open { path, source } => {
                write!(f, "cannot open {}: {source}", path.display())
            }
            DirError::Untrusted { path, why } => {
                write!(f, "{} is {why}", path.display())
            }
        }
    }
}

impl std::error::Error for DirError {}

/// A file in a state directory could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// Larger than the cap allowed: its length.
    TooLarge(u64),
    /// Not a regular file: what it is ("a FIFO", "a directory", ...). A FIFO would block
    /// the read forever and a device may do anything on open, so it is never opened.
    NotRegular(&'static str),
    Io(io::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::TooLarge(len) => write!(f, "too large ({len} bytes)"),
            ReadError::NotRegular(kind) => write!(f, "not a regular file ({kind})"),
            ReadError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// The mode of every file arje creates in a state directory: the snapshot holds the
/// commands' environment, which may carry secrets.
const FILE_MODE: u32 = 0o600;

/// The mode of a state directory arje creates.
const DIR_MODE: u32 = 0o700;

impl StateDir {
    /// `open(path, O_DIRECTORY | O_NOFOLLOW)` after `mkdir(path, 0700)` if it is absent,
    /// then `fstat`: the directory must be owned by arje's effective uid and not writable
    /// by group or others ([`Untrusted`]), whoever created it.
    ///
    /// `traverse_group`: a directory this call creates is made 0710 and given this group,
    /// so the group's members reach a control socket inside it (`--socket-group`) without
    /// being able to list or write it.
    pub fn open(path: &Path, traverse_group: Option<u32>) -> Result<StateDir, DirError> {
        let created = create_if_absent(path)?;
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match rustix::fs::open(path, flags, Mode::empty()) {
            Ok(fd) => fd,
            // With O_DIRECTORY a symlink fails as ENOTDIR, not ELOOP: look which it is.
            Err(Errno::LOOP | Errno::NOTDIR) => {
                let symlink = rustix::fs::lstat(path)
                    .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink);
                let why = if symlink {
                    Untrusted::Symlink
                } else {
                    Untrusted::NotADirectory
                };
                return Err(untrusted(path, why));
            }
            Err(e) => {
                return Err(DirError::Open {
                    path: path.to_path_buf(),
                    source: e.into(),
                })
            }
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| DirError::Open {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        let euid = rustix::process::geteuid().as_raw();
        if st.st_uid != euid {
            return Err(untrusted(
                path,
                Untrusted::Owner {
                    uid: st.st_uid,
                    euid,
                },
            ));
        }
        if st.st_mode & 0o022 != 0 {
            return Err(untrusted(
                path,
                Untrusted::Writable {
                    mode: st.st_mode & 0o7777,
                },
            ));
        }
        let dir = StateDir {
            fd,
            path: path.to_path_buf(),
        };
        if let (true, Some(gid)) = (created, traverse_group) {
            dir.let_group_traverse(gid);
        }
        Ok(dir)
    }

    fn let_group_traverse(&self, gid: u32) {
        let gid = rustix::fs::Gid::from_raw(gid);
        let done = rustix::fs::fchown(&self.fd, None, Some(gid))
            .and_then(|()| rustix::fs::fchmod(&self.fd, Mode::from_raw_mode(0o710)));
        if let Err(e) = done {
            log::warn!(
                "{}: cannot let the socket group through ({e}); it stays 0700",
                self.path.display()
            );
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` in this directory, for messages.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// `openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600)`: a new file,
    /// never one that exists, and never through a symlink (O_EXCL fails on one).
    pub fn create_new(&self, name: &str) -> io::Result<File> {
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(FILE_MODE))?;
        Ok(File::from(fd))
    }

    /// `openat(dir, name, O_RDWR | O_CREAT | O_NOFOLLOW, 0600)`, refusing anything but a
    /// regular file: a file kept across runs (the lock).
    pub fn open_or_create(&self, name: &str) -> io::Result<File> {
        self.open_regular(name, OFlags::RDWR)
    }

    /// `openat(dir, name, access | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600)`, refusing
    /// anything but a regular file.
    fn open_regular(&self, name: &str, access: OFlags) -> io::Result<File> {
        let flags = access | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(FILE_MODE))?;
        let st = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a regular file",
            ));
        }
        Ok(File::from(fd))
    }

    /// `openat(dir, name, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW, 0600)`, refusing
    /// anything but a regular file: a log appended to across runs (the event log).
    pub fn open_append(&self, name: &str) -> io::Result<File> {
        self.open_regular(name, OFlags::WRONLY | OFlags::APPEND)
    }

    /// A second handle on the same directory (its fd duplicated), for another thread.
    pub fn try_clone(&self) -> io::Result<StateDir> {
        Ok(StateDir {
            fd: rustix::io::fcntl_dupfd_cloexec(&self.fd, 0)?,
            path: self.path.clone(),
        })
    }

    /// Replaces `name` with a new file holding `bytes`: the old name is unlinked (whatever
    /// it was), then [`StateDir::create_new`].
    pub fn replace(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.remove(name)?;
        self.create_new(name)?.write_all(bytes)
    }

    /// Reads `name` if it is a regular file of at most `cap` bytes ([`read_regular_at`]).
    /// `Ok(None)`: no such file.
    pub fn read_capped(&self, name: &str, cap: u64) -> Result<Option<Vec<u8>>, ReadError> {
        read_regular_at(self.fd(), name, cap)
    }

    /// `renameat(dir, from, dir, to)`: replaces `to` atomically. A symlink at `to` is
    /// replaced, not followed.
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        rustix::fs::renameat(&self.fd, from, &self.fd, to)?;
        Ok(())
    }

    /// `renameat2(dir, from, dir, to, RENAME_NOREPLACE)`: fails with `AlreadyExists` if
    /// `to` exists. On a filesystem without RENAME_NOREPLACE (EINVAL), checks first and
    /// renames: nobody else writes in this directory, so the check holds.
    pub fn rename_noreplace(&self, from: &str, to: &str) -> io::Result<()> {
        match rustix::fs::renameat_with(&self.fd, from, &self.fd, to, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(()),
            Err(Errno::INVAL) => {
                if rustix::fs::statat(&self.fd, to, AtFlags::SYMLINK_NOFOLLOW).is_ok() {
                    return Err(io::ErrorKind::AlreadyExists.into());
                }
                self.rename(from, to)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `unlinkat(dir, name)`; a missing name is not an error.
    pub fn remove(&self, name: &str) -> io::Result<()> {
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The names in the directory (without `.` and `..`).
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        names_at(self.fd())
    }

    /// `fsync(dir)`: makes the renames and creations in it durable.
    pub fn sync(&self) -> io::Result<()> {
        rustix::fs::fsync(&self.fd)?;
        Ok(())
    }
}

/// The names in the directory `dirfd` (without `.` and `..`).
pub fn names_at(dirfd: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dirfd)? {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(&name).to_os_string());
        }
    }
    Ok(names)
}

/// Reads `dirfd/name` if it is a regular file of at most `cap` bytes. `Ok(None)`: no
/// such file.
///
/// The type is checked with `fstatat(AT_SYMLINK_NOFOLLOW)` before any open (a FIFO
/// would block `open` until a writer came; a device's open may have effects), then the
/// file is opened with `O_NOFOLLOW | O_NONBLOCK` and checked again with `fstat`, in case
/// the name changed in between. At most `cap + 1` bytes are read, so a file that grows
/// while being read never makes arje allocate more than the cap.
pub fn read_regular_at(
    dirfd: BorrowedFd<'_>,
    name: &str,
    cap: u64,
) -> Result<Option<Vec<u8>>, ReadError> {
    match rustix::fs::statat(dirfd, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => regular(&st)?,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(ReadError::Io(e.into())),
    }
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(dirfd, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(Errno::LOOP) => return Err(ReadError::NotRegular("a symlink")),
        Err(e) => return Err(ReadError::Io(e.into())),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| ReadError::Io(e.into()))?;
    regular(&st)?;
    let len = st.st_size as u64;
    if len > cap {
        return Err(ReadError::TooLarge(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    File::from(fd)
        .take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > cap {
        return Err(ReadError::TooLarge(bytes.len() as u64));
    }
    Ok(Some(bytes))
}

fn untrusted(path: &Path, why: Untrusted) -> DirError {
    DirError::Untrusted {
        path: path.to_path_buf(),
        why,
    }
}

/// `mkdir(path, 0700)`, creating missing parents (with the default mode: they are
/// directories like /run or /var/lib, not arje's). True if this call created `path`.
fn create_if_absent(path: &Path) -> Result<bool, DirError> {
    let mkdir = || rustix::fs::mkdir(path, Mode::from_raw_mode(DIR_MODE));
    let first = match mkdir() {
        Err(Errno::NOENT) => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|source| DirError::Create {
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
            mkdir()
        }
        other => other,
    };
    match first {
        Ok(()) => Ok(true),
        Err(Errno::EXIST) => Ok(false),
        Err(e) => Err(DirError::Create {
            path: path.to_path_buf(),
            source: e.into(),
        }),
    }
}

fn regular(st: &rustix::fs::Stat) -> Result<(), ReadError> {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => Ok(()),
        other => Err(ReadError::NotRegular(kind_name(other))),
    }
}

/// "a FIFO", "a directory", ...: for messages.
fn kind_name(kind: FileType) -> &'static str {
    match kind {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symlink",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "of an unknown type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const NOBODY: u32 = 65534;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn test_open_group_writable_dir_is_refused() {
        // Arrange
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o770)).unwrap();

        // Act
        let result = StateDir::open(&state, None);

        // Assert
        assert!(
            matches!(
                result,
                Err(DirError::Untrusted {
                    why: Untrusted::Writable { mode: 0o770 },
                    ..
                })
            ),
            "{result:?}"
        );
    }

    #[test]
    fn test_open_symlink_to_own_dir_is_refused() {
        // Arrange
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("real")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("real"), tmp.path().join("link")).unwrap();

        // Act
        let result = StateDir::open(&tmp.path().join("link"), None);

        // Assert
        assert!(
            matches!(
                result,
                Err(DirError::Untrusted {
                    why: Untrusted::Symlink,
                    ..
                })
            ),
            "{result:?}"
        );
    }

    #[test]
    fn test_open_absent_dir_is_created_0700_with_its_parents() {
        // Arrange
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("run/arje");

        // Act
        let dir = StateDir::open(&state, None).unwrap();

        // Assert
        assert_eq!(dir.path(), state);
        assert_eq!(mode(&state), 0o700);
    }

    #[test]
    fn test_open_absent_dir_with_traverse_group_is_0710_and_that_group() {
        use std::os::unix::fs::MetadataExt;
        // Arrange
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("arje");

        // Act
        StateDir::open(&state, Some(NOBODY)).unwrap();

        // Assert
        assert_eq!(mode(&state), 0o710);
        assert_eq!(std::fs::metadata(&state).unwrap().gid(), NOBODY);
    }

    #[test]
    fn test_read_capped_fifo_is_refused_unopened() {
        // Arrange: a FIFO that no one writes; opening it for reading without O_NONBLOCK
        // would block forever.
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path(), None).unwrap();
        nix::unistd::mkfifo(
            &tmp.path().join("snapshot.bin"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();

        // Act
        let result = dir.read_capped("snapshot.bin", 1024);

        // Assert
        assert!(
            matches!(result, Err(ReadError::NotRegular("a FIFO"))),
            "{result:?}"
        );
    }

    #[test]
    fn test_create_new_over_a_symlink_fails_and_leaves_its_target() {
        // Arrange
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(&tmp.path().join("d"), None).unwrap();
        let target = tmp.path().join("target");
        std::fs::write(&target, b"keep").unwrap();
        std::os::unix::fs::symlink(&target, dir.join("handover.bin")).unwrap();

        // Act
        let created = dir.create_new("handover.bin");
        let replaced = dir.replace("handover.bin", b"new");

        // Assert
        assert_eq!(
            created.map(|_| ()).map_err(|e| e.kind()),
            Err(io::ErrorKind::AlreadyExists)
        );
        assert!(replaced.is_ok(), "{replaced:?}");
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert_eq!(std::fs::read(dir.join("handover.bin")).unwrap(), b"new");
    }
}
