//! Every cgroupfs access of this module goes through here: open a cgroup directory,
//! write or read one interface file, mkdir and rmdir a cgroup. Files are opened relative
//! to the directory's fd (`openat`), so a path walk happens once per cgroup, not once per
//! write, and a renamed parent cannot redirect a write.
//!
//! Under `cfg(test)` each operation is also recorded in a per-thread journal, and the
//! fake kernel of `fake.rs` may populate or clear a directory the way cgroupfs would.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, CWD};

use super::error::CgroupError;

/// Largest interface file this module reads: cgroup.procs of a fork-bombed cgroup is the
/// biggest one (about 8 bytes per pid), so a cap keeps a read bounded.
const MAX_READ: usize = 1 << 20;

/// An open cgroup directory: the path for messages, the fd for every access.
#[derive(Debug)]
pub(crate) struct Dir {
    pub(crate) path: PathBuf,
    pub(crate) fd: OwnedFd,
}

impl Dir {
    /// open(2) `path` with O_RDONLY|O_DIRECTORY|O_CLOEXEC.
    pub(crate) fn open(path: &Path) -> io::Result<Dir> {
        let fd = rustix::fs::openat(CWD, path, dir_flags(), Mode::empty())?;
        Ok(Dir {
            path: path.to_path_buf(),
            fd,
        })
    }

    /// openat(2) the child cgroup `name`.
    pub(crate) fn open_child(&self, name: &str) -> io::Result<Dir> {
        let fd = rustix::fs::openat(&self.fd, name, dir_flags(), Mode::empty())?;
        Ok(Dir {
            path: self.path.join(name),
            fd,
        })
    }

    pub(crate) fn file_path(&self, file: &str) -> PathBuf {
        self.path.join(file)
    }

    /// Does the interface file `file` exist here? Controllers' files appear in a cgroup
    /// only while its parent enables the controller, so this is how support is probed.
    pub(crate) fn has_file(&self, file: &str) -> bool {
        rustix::fs::statat(&self.fd, file, AtFlags::empty()).is_ok()
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC
}

/// Write `data` to `dir/file` in one write(2): the kernel parses each write of an
/// interface file on its own, so a value split over two writes would be two values.
/// Every write of this module goes through here.
pub(crate) fn write_cgroup_file(dir: &Dir, file: &str, data: &str) -> Result<(), CgroupError> {
    #[cfg(test)]
    journal::record(journal::Op::Write(dir.file_path(file), data.to_string()));
    let err = |source: io::Error| CgroupError::WriteFile {
        path: dir.file_path(file),
        value: data.to_string(),
        source,
    };
    // No O_CREAT: a missing file means a controller is not enabled, and that must surface
    // as ENOENT, not as an attempt to create a regular file.
    let fd = rustix::fs::openat(
        &dir.fd,
        file,
        OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err(e.into()))?;
    let written = rustix::io::write(&fd, data.as_bytes()).map_err(|e| err(e.into()))?;
    if written != data.len() {
        return Err(err(io::Error::new(io::ErrorKind::WriteZero, "short write")));
    }
    Ok(())
}

/// Read the whole of `dir/file` (at most [`MAX_READ`] bytes).
pub(crate) fn read_cgroup_file(dir: &Dir, file: &str) -> Result<String, CgroupError> {
    let err = |source: io::Error| CgroupError::ReadFile {
        path: dir.file_path(file),
        source,
    };
    let fd = rustix::fs::openat(
        &dir.fd,
        file,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err(e.into()))?;
    read_fd_from_start(fd.as_fd()).map_err(err)
}

/// Like [`read_cgroup_file`], but a missing file is `Ok(None)`: used for files that exist
/// only with a controller or a newer kernel (memory.peak came in 5.19).
pub(crate) fn read_optional(dir: &Dir, file: &str) -> Result<Option<String>, CgroupError> {
    match read_cgroup_file(dir, file) {
        Ok(text) => Ok(Some(text)),
        Err(CgroupError::ReadFile { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// pread(2) from offset 0 until end of file. Reading an events file through the fd that
/// epoll watches is also what re-arms its EPOLLPRI (see `events.rs`).
pub fn read_fd_from_start(fd: BorrowedFd<'_>) -> io::Result<String> {
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        if len == buf.len() {
            if buf.len() >= MAX_READ {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "file larger than 1 MiB",
                ));
            }
            buf.resize(buf.len() * 2, 0);
        }
        let n = rustix::io::pread(fd, &mut buf[len..], len as u64)?;
        if n == 0 {
            break;
        }
        len += n;
    }
    buf.truncate(len);
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// mkdir(2) the cgroup `name` below `parent`. The kernel fills it with interface files.
pub(crate) fn mkdir_cgroup(parent: &Dir, name: &str) -> io::Result<()> {
    #[cfg(test)]
    journal::record(journal::Op::Mkdir(parent.path.join(name)));
    rustix::fs::mkdirat(&parent.fd, name, Mode::from_raw_mode(0o755))?;
    #[cfg(test)]
    super::fake::on_mkdir(&parent.path, name);
    Ok(())
}

/// rmdir(2) the cgroup `name` below `parent`. cgroupfs removes a cgroup directory with
/// its interface files in it, but refuses (EBUSY) while it has processes or children.
pub(crate) fn rmdir_cgroup(parent: &Dir, name: &str) -> io::Result<()> {
    #[cfg(test)]
    journal::record(journal::Op::Rmdir(parent.path.join(name)));
    #[cfg(test)]
    super::fake::before_rmdir(&parent.path.join(name))?;
    rustix::fs::unlinkat(&parent.fd, name, AtFlags::REMOVEDIR)?;
    Ok(())
}

/// Names of the child cgroups of `dir` (its subdirectories).
pub(crate) fn child_cgroups(dir: &Dir) -> Result<Vec<String>, CgroupError> {
    let err = |source: io::Error| CgroupError::ReadFile {
        path: dir.path.clone(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir.path).map_err(err)? {
        let entry = entry.map_err(err)?;
        if entry.file_type().map_err(err)?.is_dir() {
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// The operations a test can assert on, in the order they happened on this thread.
#[cfg(test)]
pub(crate) mod journal {
    use std::cell::RefCell;
    use std::path::PathBuf;

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) enum Op {
        Mkdir(PathBuf),
        Write(PathBuf, String),
        Rmdir(PathBuf),
    }

    thread_local! {
        static OPS: RefCell<Vec<Op>> = const { RefCell::new(Vec::new()) };
    }

    pub(crate) fn record(op: Op) {
        OPS.with(|ops| ops.borrow_mut().push(op));
    }

    /// Everything recorded so far on this thread; the journal starts over.
    pub(crate) fn take() -> Vec<Op> {
        OPS.with(|ops| std::mem::take(&mut *ops.borrow_mut()))
    }
}
