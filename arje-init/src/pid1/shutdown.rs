//! The last steps of PID 1 once the runtime has stopped every workspace: TERM whatever
//! is left, a grace, KILL, sync, unmount (the root read-only last), sync, reboot(2). Each step is logged with the time
//! since shutdown began, and whatever blocked a step is named.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rustix::system::RebootCommand;
use shuma_card::protocol::ShutdownKind;

use super::reap::{pid1_signals, reap_until_empty, signalfd, survivors};
use super::unmount::unmount_all;

/// How long processes outside any workspace get between TERM and KILL.
pub const TERM_GRACE: Duration = Duration::from_secs(2);
/// How long to wait for the kernel to deliver SIGKILLs and for the exits to be reaped.
pub const KILL_WAIT: Duration = Duration::from_secs(1);

fn step(start: Instant, what: &str) {
    log::info!("shutdown +{} ms: {what}", start.elapsed().as_millis());
}

/// Ends the system. Never returns: if reboot(2) fails there is nothing left to do but
/// keep reaping, since PID 1 exiting is a kernel panic. `report` (`arje.exit-on`) is
/// sent last, once everything is synced and unmounted.
pub fn finish(kind: ShutdownKind, start: Instant, report: Option<super::exit_report::Report>) -> ! {
    step(start, &format!("{kind:?}: workspaces stopped"));
    let sfd = signalfd(&pid1_signals());
    if let Err(e) = &sfd {
        log::error!("signalfd for the final reap: {e}; waits become bounded sleeps");
    }

    // kill(-1) reaches every process but PID 1 and kernel threads.
    let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
    step(start, "sent SIGTERM to every remaining process");
    let deadline = Instant::now() + TERM_GRACE;
    let gone = match &sfd {
        Ok(sfd) => reap_until_empty(sfd, deadline),
        Err(_) => false,
    };
    if !gone {
        let left = survivors(10);
        if left.is_empty() {
            step(start, "TERM grace over, nothing left but unreaped exits");
        } else {
            log::warn!(
                "still running after {} ms of TERM grace: {}",
                TERM_GRACE.as_millis(),
                left.join(", ")
            );
        }
        let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
        step(start, "sent SIGKILL to every remaining process");
        let deadline = Instant::now() + KILL_WAIT;
        let gone = match &sfd {
            Ok(sfd) => reap_until_empty(sfd, deadline),
            Err(_) => false,
        };
        if !gone {
            let left = survivors(10);
            if !left.is_empty() {
                // Uninterruptible sleep (D) ignores SIGKILL: usually a stuck device.
                log::warn!("survived SIGKILL: {}", left.join(", "));
            }
        }
    } else {
        step(start, "every process exited");
    }

    rustix::fs::sync();
    step(start, "synced");
    // Every filesystem unmounted or read-only, the root last: the next boot then finds
    // clean journals (no recovery, no orphan cleanup).
    let blocked = unmount_all();
    if blocked.is_empty() {
        step(start, "unmounted; the root is read-only");
    } else {
        log::warn!("still writable after unmount: {}", blocked.join(", "));
    }
    rustix::fs::sync();
    step(start, "synced");

    if let Some(report) = report {
        report.send();
    }
    let cmd = match kind {
        ShutdownKind::Poweroff => RebootCommand::PowerOff,
        ShutdownKind::Reboot => RebootCommand::Restart,
        ShutdownKind::Halt => RebootCommand::Halt,
    };
    step(start, &format!("reboot(2) {cmd:?}"));
    let err = rustix::system::reboot(cmd);
    log::error!("reboot(2) {cmd:?} returned: {err:?}; staying up as a reaper");
    super::emergency::reaper_loop(None)
}
