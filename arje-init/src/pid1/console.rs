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

/// The hostname to set: `arje.hostname=` if given, else the first line of the root's
/// `/etc/hostname` (as systemd does; a Debian root's own name), else "arje".
pub fn hostname(from_cmdline: Option<&str>, etc_hostname: Option<&str>) -> String {
    let from_file = etc_hostname
        .and_then(|t| {
            t.lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'))
        })
        .filter(|n| valid_hostname(n));
    from_cmdline.or(from_file).unwrap_or("arje").to_string()
}

/// A name the kernel takes and a resolver accepts: 1 to 64 bytes of letters, digits,
/// `-` and `.`.
fn valid_hostname(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Sets the hostname ([`hostname`] chooses it).
pub fn set_hostname(name: &str) {
    match rustix::system::sethostname(name.as_bytes()) {
        Ok(()) => log::debug!("hostname {name}"),
        Err(e) => log::warn!("sethostname {name:?}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_hostname_cmdline_then_etc_hostname_then_arje() {
        assert_eq!(hostname(Some("vm1"), Some("deb\n")), "vm1");
        assert_eq!(
            hostname(None, Some("# comment\n\n  debian-host \n")),
            "debian-host"
        );
        assert_eq!(hostname(None, Some("bad name!\n")), "arje");
        assert_eq!(hostname(None, Some("")), "arje");
        assert_eq!(hostname(None, None), "arje");
    }
}
