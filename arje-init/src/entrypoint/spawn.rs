//! Starting the main child: std's `Command` (fork, exec, and exec's error reported back
//! through its close-on-exec pipe), plus what tini's `isolate_child` does between fork
//! and exec: a process group of its own, and the terminal's foreground for that group.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};

/// Starts `program` (PROGRAM and its arguments; a name without a slash is looked up in
/// PATH, as execvp(3) does) and returns its pid. Returns the error of fork or exec:
/// std waits for the exec before returning, so an `Ok` means PROGRAM is running.
///
/// The child inherits arje's environment, fds 0-2 and signal dispositions (a SIG_IGN
/// arje inherited stays, as if PROGRAM were exec'd directly; SIGPIPE is reset to its
/// default, since Rust's runtime ignored it for arje alone), and an empty signal mask.
pub fn spawn(program: &[OsString]) -> io::Result<i32> {
    let Some((name, args)) = program.split_first() else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    let mut cmd = Command::new(name);
    cmd.args(args);
    // SAFETY: `isolate` runs in the child between fork and exec. arje is single-threaded
    // in this mode (no lock can be held by a thread that does not exist in the child),
    // and `isolate` allocates nothing and makes only async-signal-safe calls: setpgid,
    // getpgrp, tcsetpgrp and pthread_sigmask on sets built on its stack.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(isolate);
    }
    let child = cmd.spawn()?;
    i32::try_from(child.id()).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
    // Dropping std's `Child` neither kills nor waits: arje reaps it with waitpid(-1).
}

/// In the child: a new process group led by the child, made the terminal's foreground
/// group if fd 0 is arje's controlling terminal (otherwise tcsetpgrp fails with ENOTTY
/// and nothing changes, as for a container without `-t`). Done here rather than in arje
/// so that PROGRAM never runs a moment in the background, where its first read of the
/// terminal would stop it with SIGTTIN, and so that an arje under another arje (or
/// tini) cannot have its child's foreground taken back by a slower grandparent.
fn isolate() -> io::Result<()> {
    rustix::process::setpgid(None, None)?;
    // A background process's tcsetpgrp raises SIGTTOU unless SIGTTOU is blocked or
    // ignored (tcsetpgrp(3)); the child is in the background until the call succeeds.
    let mut ttou = SigSet::empty();
    ttou.add(Signal::SIGTTOU);
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttou), None)?;
    // No terminal (ENOTTY), a terminal that is not ours, or a hung-up one (ENXIO, EIO):
    // the child runs without the foreground, as under tini.
    let _ = rustix::termios::tcsetpgrp(rustix::stdio::stdin(), rustix::process::getpgrp());
    // PROGRAM starts with nothing blocked, whatever arje blocks for itself.
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
    Ok(())
}
