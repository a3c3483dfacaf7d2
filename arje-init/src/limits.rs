//! The fd limit. arje raises its own soft RLIMIT_NOFILE to the hard limit at start, and
//! its children get the soft limit back.
//!
//! arje holds about 3 fds per live command (the read ends of its stdout and stderr pipes,
//! and its pidfd): under the common soft limit of 1024, services from about the 338th on
//! failed to start with EMFILE. Its children keep the limit they would have had, since
//! programs assume it (select(2)'s FD_SETSIZE is 1024; some close every possible fd at
//! start, which takes long under a limit of a million).
//!
//! A re-exec inherits the raised limit, so the limit the children get travels in the
//! environment of the exec ([`CHILD_NOFILE_ENV`]), like `ARJE_REEXEC`.

use std::sync::OnceLock;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Set in the environment of a re-exec'd image: the soft limit children get.
pub const CHILD_NOFILE_ENV: &str = "ARJE_CHILD_NOFILE";

static CHILD_NOFILE: OnceLock<Option<u64>> = OnceLock::new();

/// Raise the soft RLIMIT_NOFILE to the hard one (never needs a privilege) and remember
/// the limit children get: the soft limit found, or after a re-exec the one the first
/// image found.
pub fn raise_nofile(reexec: bool) {
    let found = getrlimit(Resource::Nofile);
    let inherited = reexec
        .then(|| std::env::var(CHILD_NOFILE_ENV).ok()?.parse::<u64>().ok())
        .flatten();
    let child = inherited.or(found.current);
    if found.current != found.maximum {
        let raised = Rlimit {
            current: found.maximum,
            maximum: found.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => log::info!(
                "RLIMIT_NOFILE raised from {} to {} (children get {})",
                show(found.current),
                show(found.maximum),
                show(child)
            ),
            Err(e) => log::warn!("RLIMIT_NOFILE stays at {}: {e}", show(found.current)),
        }
    }
    // Children need a reset only below the hard limit (what arje now runs under).
    let child = child.filter(|&c| !matches!(found.maximum, Some(max) if c >= max));
    let _ = CHILD_NOFILE.set(child);
}

/// The soft limit children get, if it is not arje's own (see [`raise_nofile`]).
pub fn child_nofile() -> Option<u64> {
    CHILD_NOFILE.get().copied().flatten()
}

fn show(limit: Option<u64>) -> String {
    limit.map_or("unlimited".into(), |l| l.to_string())
}
