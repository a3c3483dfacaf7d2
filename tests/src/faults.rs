//! Fault injection for host tests, shared by every test that needs a fault at a point it
//! chooses rather than one that happens to come:
//!
//! - [`KillAtReply`]: SIGKILL the daemon right after the N-th reply that acknowledged
//!   work, so a crash lands after something the daemon said was done;
//! - [`Tmpfs`]: a directory on a tmpfs of a given size, to give the daemon a state
//!   directory that fills up, or one made read-only under it ([`Tmpfs::read_only`]);
//! - [`limit_fds`]: an RLIMIT_NOFILE set in the child between fork and exec, so the
//!   daemon starts with few file descriptors.
//!
//! The tmpfs needs root (mount(8)); the tests that use it say so when it fails.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::host::Daemon;

/// SIGKILL the daemon and reap it: a crash, with no chance to flush anything.
pub fn kill9(daemon: &mut Daemon) {
    let _ = daemon.child.kill();
    let _ = daemon.child.wait();
}

/// Counts acknowledged replies and kills the daemon at the N-th.
pub struct KillAtReply {
    left: usize,
}

impl KillAtReply {
    /// Kill at the `n`-th acknowledged reply (`n` >= 1).
    pub fn new(n: usize) -> KillAtReply {
        assert!(n >= 1, "the first reply is number 1");
        KillAtReply { left: n }
    }

    /// One more acknowledged reply came in. At the N-th the daemon is SIGKILLed and
    /// reaped before this returns true; the caller stops its churn there.
    pub fn ack(&mut self, daemon: &mut Daemon) -> bool {
        self.left = self.left.saturating_sub(1);
        if self.left == 0 {
            kill9(daemon);
            return true;
        }
        false
    }
}

/// A tmpfs mounted on a fresh temporary directory, unmounted when dropped.
pub struct Tmpfs {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl Tmpfs {
    /// Mount a tmpfs of `size` (as mount(8) takes it: "64k", "1m") with mode 0700.
    pub fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0700"))
            .arg("tmpfs")
            .arg(dir.path())
            .status()
            .expect("run mount(8)");
        assert!(status.success(), "mount tmpfs (needs root): {status}");
        Tmpfs { dir, mounted: true }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A directory below the mount (the state directory a test hands the daemon).
    pub fn join(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Remount read-only: every write below fails with EROFS from now on.
    pub fn read_only(&self) {
        let status = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.dir.path())
            .status()
            .expect("run mount(8)");
        assert!(status.success(), "remount read-only: {status}");
    }

    /// Fill the filesystem: every further write fails with ENOSPC.
    pub fn fill(&self) {
        let mut f = std::fs::File::create(self.dir.path().join(".filler")).expect("filler");
        let block = vec![0u8; 64 * 1024];
        loop {
            match std::io::Write::write(&mut f, &block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("fill tmpfs: {e}"),
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if self.mounted {
            // Lazy: a daemon that still has the directory open does not keep the
            // mount (or the test) alive.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

/// Give the child of `cmd` at most `n` open file descriptors (soft and hard limit).
pub fn limit_fds(cmd: &mut Command, n: u64) -> &mut Command {
    let limit = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: setrlimit is async-signal-safe and touches only the child's own limits;
    // nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        })
    }
}
