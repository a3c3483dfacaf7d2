//! Re-exec: this process becomes another arje-init image, same pid and arguments, so
//! PID 1 stays PID 1 and the children stay ours. Three ways it can go wrong, and what
//! each does instead of losing the supervisor (docs/STATE.md, "Re-exec into another
//! binary"):
//!
//! - the exec fails (`serve`): the runtime takes back what it handed over and goes on;
//! - the new image cannot take over (`start`): it execs the previous image back, from
//!   the fd of its binary that the old image left open across the exec;
//! - the binary is not arje-init, or cannot read what the old image writes: refused
//!   before the exec, by its ELF note (arje-runtime's `reexec.rs`).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use arje_runtime::{Config, Outcome, Previous, Runtime};

use crate::limits;

/// Set in the environment of a re-exec'd image.
pub const REEXEC_ENV: &str = "ARJE_REEXEC";

/// What a re-exec'd image finds in its environment: the previous image's binary (to
/// give the pid back to), or why a newer image gave the pid back to this one. Taken
/// first thing in `main`, before any thread starts, since it edits the environment.
#[derive(Debug, Default)]
pub struct Inherited {
    pub previous: Option<Previous>,
    pub rolled_back: Option<String>,
}

impl Inherited {
    pub fn take() -> Inherited {
        Inherited {
            previous: Previous::take_from_env(),
            rolled_back: Previous::take_rolled_back(),
        }
    }
}

/// Start the runtime. In a re-exec'd image whose previous image is known, a start that
/// fails (this build cannot read the handed-over state, or a start error) or panics
/// gives the pid back: the previous image is exec'd in place of this one. `Err` only
/// when that was not possible, with why.
pub fn start(config: Config, inherited: Inherited) -> Result<Runtime, String> {
    let mut runtime = match inherited.previous {
        None => Runtime::new(config).map_err(|e| format!("the runtime failed to start: {e}"))?,
        // Serving once started: the previous image is let go then (its fd closed).
        Some(previous) => {
            match catch_unwind(AssertUnwindSafe(|| Runtime::new_with_rollback(config))) {
                Ok(Ok(runtime)) => runtime,
                Ok(Err(e)) => return Err(roll_back(&previous, &e.to_string())),
                Err(p) => {
                    let why = format!("the runtime panicked: {}", crate::panic_message(&p));
                    return Err(roll_back(&previous, &why));
                }
            }
        }
    };
    if let Some(why) = inherited.rolled_back {
        runtime.rolled_back(&why);
    }
    Ok(runtime)
}

/// Exec the previous image back in place of this one; returns only if that failed,
/// with the whole story.
fn roll_back(previous: &Previous, why: &str) -> String {
    log::error!("this image cannot take over ({why}); giving the pid back to the previous image");
    let (argv, env) = exec_vectors(Some(Previous::rolled_back_entry(why)));
    let err = previous.exec(&argv, &env);
    format!("the new image cannot take over ({why}), and the previous one could not be exec'd back: {err}")
}

/// Run until an outcome other than a re-exec. A re-exec whose exec fails is survived:
/// the runtime takes back what it handed over and goes on serving, with every child.
/// `observe` is called between turns (`Runtime::run_observed`: PID 1's `arje.exit-on`).
pub fn serve(runtime: &mut Runtime, observe: &mut dyn FnMut(&mut Runtime)) -> Outcome {
    let mut outcome = runtime.run_observed(observe);
    while let Outcome::Reexec { binary } = &outcome {
        // Exec while `runtime` is alive: dropping it would close the listener, the log
        // pipes and the client connections that the snapshot hands to the new image.
        let err = exec(binary);
        runtime.reexec_failed(&err);
        outcome = runtime.resume_observed(observe);
    }
    outcome
}

/// Replaces this process with `binary` (empty: this binary), same arguments and pid.
/// The fd of this image's own binary goes along, for a rollback. Returns only on
/// failure.
fn exec(binary: &Path) -> std::io::Error {
    let binary: PathBuf = if binary.as_os_str().is_empty() {
        "/proc/self/exe".into()
    } else {
        binary.into()
    };
    log::info!("re-exec {}", binary.display());
    let Ok(path) = CString::new(binary.as_os_str().as_bytes()) else {
        return std::io::Error::from(std::io::ErrorKind::InvalidInput);
    };
    // Kept open across the exec, closed again (dropped) if the exec fails.
    let previous = match Previous::open_own() {
        Ok(p) => Some(p),
        Err(e) => {
            log::warn!(
                "open /proc/self/exe: {e}; the new image will have no image to roll back to"
            );
            None
        }
    };
    let (argv, env) = exec_vectors(previous.as_ref().map(Previous::env_entry));
    // Not std's Command::exec: it resets the signal mask before exec, and a signal that
    // arrives between the exec and the new image's sigprocmask would then be lost
    // (SIGCHLD of an orphan) or fatal (SIGTERM to a subreaper). execve keeps the mask,
    // so such a signal waits, pending, for the new image's signalfd.
    match nix::unistd::execve(&path, &argv, &env) {
        Err(e) => std::io::Error::from(e),
        Ok(never) => match never {},
    }
}

/// The arguments (this process's own) and the environment of a re-exec: this one's,
/// with `ARJE_REEXEC=1` (the new image then skips what a boot does once: early mounts,
/// modules, the state disk), the fd limit children get (arje runs under a raised one
/// itself), and `extra`.
fn exec_vectors(extra: Option<String>) -> (Vec<CString>, Vec<CString>) {
    let argv = std::env::args_os()
        .filter_map(|a| CString::new(a.as_bytes()).ok())
        .collect();
    let child_nofile = limits::child_nofile().map(|n| format!("{}={n}", limits::CHILD_NOFILE_ENV));
    let ours = [REEXEC_ENV, limits::CHILD_NOFILE_ENV];
    let env = std::env::vars_os()
        .filter(|(k, _)| !ours.iter().any(|o| k == o))
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            kv
        })
        .chain(
            [Some(format!("{REEXEC_ENV}=1")), child_nofile, extra]
                .into_iter()
                .flatten()
                .map(String::into_bytes),
        )
        .filter_map(|kv| CString::new(kv).ok())
        .collect();
    (argv, env)
}
