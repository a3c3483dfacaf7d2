//! PID 1's terminal: stdin, stdout and stderr on /dev/console, and its hostname.

use std::fs::OpenOptions;

/// Points fds 0, 1 and 2 at /dev/console. The kernel opened the initramfs's own
/// /dev/console node (if the cpio has one) before exec; after devtmpfs is mounted over
/// /dev that is reopened from the real device so every child inherits a live console.
pub fn attach_stdio() {
    let console = match OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
    {
        Ok(f) => f,
        Err(e) => {
            log::error!("open /dev/console: {e}; keeping the stdio the kernel gave");
            return;
        }
    };
    for (n, r) in [
        (0, rustix::stdio::dup2_stdin(&console)),
        (1, rustix::stdio::dup2_stdout(&console)),
        (2, rustix::stdio::dup2_stderr(&console)),
    ] {
        if let Err(e) = r {
            log::error!("dup2 /dev/console onto fd {n}: {e}");
        }
    }
}

/// Sets the hostname (from `arje.hostname=`, "arje" by default).
pub fn set_hostname(name: &str) {
    match rustix::system::sethostname(name.as_bytes()) {
        Ok(()) => log::debug!("hostname {name}"),
        Err(e) => log::warn!("sethostname {name:?}: {e}"),
    }
}
