//! Rollback by the new image: after a re-exec, a new image that cannot take over what
//! the previous one handed over execs the previous image back, under the same pid, with
//! the same snapshot, handover and inherited fds (docs/STATE.md, "Re-exec into another
//! binary").
//!
//! The old image opens its own binary (`/proc/self/exe`) with `O_PATH` and without
//! close-on-exec just before the exec, and names the fd in the new image's environment
//! ([`PREVIOUS_ENV`]). The new image takes the fd ([`Previous::take_from_env`]) and
//! starts with [`Runtime::new_with_rollback`], which checks that this build can read the
//! handed-over snapshot and handover file *before* anything is taken over: no file set
//! aside, no fd adopted. If it cannot, or if the start fails or panics, the caller execs
//! the previous image back ([`Previous::exec`]: `execveat(fd, "", AT_EMPTY_PATH)`, which
//! needs no path, so a binary replaced or removed on disk since is still the one that
//! ran). The previous image gets no [`PREVIOUS_ENV`] itself, so a failure there cannot
//! bounce back and forth; it is told why in [`ROLLED_BACK_ENV`] and journals it.
//!
//! An fd rather than a path: the path may have been replaced by the upgrade (a package
//! manager renames the new binary over the old one), and `/proc/self/exe` in the new
//! image names the new binary.

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsRawFd, OwnedFd};

use shuma_card::snapshot::{decode, HEADER_LEN, MAX_SNAPSHOT};
use shuma_card::EventKind;

use super::{claim_state, handover, store, watches, Runtime, RuntimeError};
use crate::persist::SNAPSHOT_FILE;
use crate::Config;

/// The fd of the previous image's binary, in the environment of a re-exec'd image.
pub const PREVIOUS_ENV: &str = "ARJE_REEXEC_PREVIOUS";
/// Why the new image gave the pid back, in the environment of the previous image it
/// exec'd back.
pub const ROLLED_BACK_ENV: &str = "ARJE_REEXEC_ROLLED_BACK";
#[cfg(feature = "test-hooks")]
/// A `test-hooks` build started with this set fails [`Runtime::new_with_rollback`] as
/// if the handed-over state could not be read: the host test of the rollback.
pub const TEST_FAIL_RESTORE_ENV: &str = "ARJE_TEST_FAIL_RESTORE";

/// The binary of the image that exec'd this one, kept open to exec back into it.
#[derive(Debug)]
pub struct Previous {
    fd: OwnedFd,
}

impl Previous {
    /// The old image's side: `open("/proc/self/exe", O_PATH)` without `O_CLOEXEC`, so
    /// the fd survives the exec. Dropped (closed) if the exec fails.
    pub fn open_own() -> std::io::Result<Previous> {
        use rustix::fs::{Mode, OFlags};
        let fd = rustix::fs::open("/proc/self/exe", OFlags::PATH, Mode::empty())?;
        Ok(Previous { fd })
    }

    /// `ARJE_REEXEC_PREVIOUS=<fd>`, for the new image's environment.
    pub fn env_entry(&self) -> String {
        format!("{PREVIOUS_ENV}={}", self.fd.as_raw_fd())
    }

    /// The new image's side: the fd [`PREVIOUS_ENV`] names, if it is open on a regular
    /// file; marked close-on-exec again (it is exec'd by fd, which does not need it
    /// inherited), and the variable removed from the environment so a later re-exec
    /// does not pass it on. Call it before any thread starts (it changes the
    /// environment).
    pub fn take_from_env() -> Option<Previous> {
        let value = std::env::var_os(PREVIOUS_ENV)?;
        std::env::remove_var(PREVIOUS_ENV);
        let fd = parse_fd(&value)?;
        let fd = crate::sys::fd::adopt(fd)?;
        match rustix::fs::fstat(&fd) {
            Ok(st) if rustix::fs::FileType::from_raw_mode(st.st_mode).is_file() => {
                Some(Previous { fd })
            }
            _ => {
                log::warn!("{PREVIOUS_ENV}={value:?} is not an open regular file; no rollback");
                None
            }
        }
    }

    /// `execveat(fd, "", argv, env, AT_EMPTY_PATH)`: the previous image, in place of
    /// this one. Returns only on failure.
    pub fn exec(&self, argv: &[CString], env: &[CString]) -> std::io::Error {
        let empty: &CStr = c"";
        match nix::unistd::execveat(
            Some(self.fd.as_raw_fd()),
            empty,
            argv,
            env,
            nix::fcntl::AtFlags::AT_EMPTY_PATH,
        ) {
            Err(e) => e.into(),
            Ok(never) => match never {},
        }
    }
}

fn parse_fd(value: &OsStr) -> Option<i32> {
    value.to_str()?.parse().ok()
}

impl Previous {
    /// `ARJE_REEXEC_ROLLED_BACK=<why>`, for the previous image's environment: one line,
    /// at most 1000 bytes.
    pub fn rolled_back_entry(why: &str) -> String {
        let mut why: String = why
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if why.len() > 1000 {
            let mut cut = 1000;
            while !why.is_char_boundary(cut) {
                cut -= 1;
            }
            why.truncate(cut);
        }
        format!("{ROLLED_BACK_ENV}={why}")
    }

    /// Why the new image gave the pid back to this one, if it did: read once, at start,
    /// and removed from the environment (call it before any thread starts).
    pub fn take_rolled_back() -> Option<String> {
        let why = std::env::var_os(ROLLED_BACK_ENV)?;
        std::env::remove_var(ROLLED_BACK_ENV);
        Some(why.to_string_lossy().into_owned())
    }
}

impl Runtime {
    /// [`Runtime::new`] for a new image whose previous one can take the pid back. The
    /// state directories are claimed as usual; then, before the snapshot is loaded (a
    /// file this build cannot decode would be set aside) and before any inherited fd is
    /// adopted, the handed-over snapshot and handover file must be readable by this
    /// build. If not: [`RuntimeError::Restore`], with nothing changed but the state
    /// lock's fd (taken over by the claim and closed again: the previous image takes the
    /// lock anew).
    pub fn new_with_rollback(cfg: Config) -> Result<Runtime, RuntimeError> {
        let claim = claim_state(&cfg)?;
        restorable(&claim).map_err(RuntimeError::Restore)?;
        let cgroups = watches::setup(&cfg);
        Runtime::start(cfg, claim, cgroups, super::laps::Laps::start())
    }

    /// The new image gave the pid back to this one (`why`, from
    /// [`Previous::take_rolled_back`]):
    /// a Warning in the journal, so the operator who asked for the re-exec sees it.
    pub fn rolled_back(&mut self, why: &str) {
        let message = format!("re-exec rolled back: the new image gave the pid back: {why}");
        log::error!("{message}");
        self.event(EventKind::Warning { message });
    }
}

/// Can this build read the state in the claimed run directory? Only failures that are
/// this build's count: a snapshot or handover file that does not decode (a format this
/// build does not know). A missing or unreadable file would fail the previous image
/// the same way, so it passes, and the start goes on as it would have.
fn restorable(claim: &store::Claim) -> Result<(), String> {
    #[cfg(feature = "test-hooks")]
    if std::env::var_os(TEST_FAIL_RESTORE_ENV).is_some() {
        return Err(format!(
            "{TEST_FAIL_RESTORE_ENV} is set (a test-hooks build)"
        ));
    }
    let Some(dir) = claim.run_dir() else {
        return Ok(());
    };
    let cap = (HEADER_LEN + MAX_SNAPSHOT) as u64;
    if let Ok(Some(bytes)) = dir.read_capped(SNAPSHOT_FILE, cap) {
        decode(&bytes).map_err(|e| format!("{}: {e}", dir.join(SNAPSHOT_FILE).display()))?;
    }
    handover::readable(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_previous_open_own_is_inheritable_o_path() {
        let prev = Previous::open_own().unwrap();

        let fd_flags = rustix::io::fcntl_getfd(&prev.fd).unwrap();
        let fl = rustix::fs::fcntl_getfl(&prev.fd).unwrap();
        assert!(!fd_flags.contains(rustix::io::FdFlags::CLOEXEC));
        assert!(fl.contains(rustix::fs::OFlags::PATH));
        assert_eq!(
            prev.env_entry(),
            format!("{PREVIOUS_ENV}={}", prev.fd.as_raw_fd())
        );
    }
}
