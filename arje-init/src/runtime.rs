//! Stand-in for `arje_runtime::Runtime` until it lands: same `new`/`run` shape, maps
//! signals to an [`Outcome`] the way the runtime will and reaps orphans, but serves no
//! socket and starts no cards.

use std::time::Duration;

use arje_runtime::{Config, Mode, Outcome, ShutdownKind};

use crate::pid1::reap::{drain, pid1_signals, reap_ready, signalfd, wait_readable};

pub struct Runtime {
    config: Config,
    sfd: nix::sys::signalfd::SignalFd,
}

impl Runtime {
    pub fn new(config: Config) -> Result<Runtime, nix::Error> {
        let sfd = signalfd(&pid1_signals())?;
        Ok(Runtime { config, sfd })
    }

    pub fn run(&mut self) -> Outcome {
        log::warn!(
            "runtime stub: no control socket, no cards (boottime {:.3}s)",
            crate::logger::boottime_secs()
        );
        loop {
            wait_readable(&self.sfd, Duration::from_secs(3600));
            for sig in drain(&self.sfd) {
                let pid1 = self.config.mode == Mode::Pid1;
                let outcome = match sig {
                    libc::SIGUSR1 if pid1 => Outcome::Shutdown(ShutdownKind::Halt),
                    libc::SIGUSR2 | libc::SIGPWR if pid1 => {
                        Outcome::Shutdown(ShutdownKind::Poweroff)
                    }
                    libc::SIGTERM | libc::SIGINT if pid1 => Outcome::Shutdown(ShutdownKind::Reboot),
                    libc::SIGTERM | libc::SIGINT => Outcome::Exit,
                    _ => continue,
                };
                return outcome;
            }
            reap_ready();
        }
    }
}
