//! systemd's readiness protocol, as the daemon sees it unchanged: a datagram socket whose
//! address is in `NOTIFY_SOCKET`, and `KEY=VALUE` lines in each datagram
//! (sd_notify(3)).
//!
//! One socket per command, made at its first start and kept for its life (restarts
//! included), so a message can only be about the command whose socket it arrived on.
//! The socket is in the abstract namespace under a random name: a path in arje's state
//! directory (mode 0700) would be out of reach of a service that runs as another user,
//! and a name nobody can guess cannot be taken first by someone else. Who may speak on
//! it is checked on every datagram with `SO_PASSCRED` ([`Sender`]): the kernel fills in
//! the sender's pid and uid, which a process cannot forge (only root may claim another
//! pid). docs/SECURITY.md has the rule.

use std::io::IoSliceMut;
use std::os::fd::OwnedFd;

use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

/// Largest datagram read; a longer one is dropped whole (systemd reads 4 KiB too, less
/// the ancillary data).
const MAX_MESSAGE: usize = 4096;
/// Most datagrams handled per readiness event: a service that floods its socket cannot
/// hold the loop; the rest wait for the next turn.
const MAX_PER_TURN: usize = 64;
/// Longest `STATUS=` text kept, in bytes.
pub const MAX_STATUS: usize = 256;

/// A command's notify socket.
pub struct NotifySocket {
    pub fd: OwnedFd,
    /// The value of `NOTIFY_SOCKET`: `@` and the abstract name.
    pub address: String,
}

impl NotifySocket {
    /// socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC), bound to a random
    /// abstract name, with `SO_PASSCRED` on.
    pub fn new() -> std::io::Result<NotifySocket> {
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )?;
        let name = format!("arje/notify/{}", random_hex()?);
        rustix::net::bind(&fd, &SocketAddrUnix::new_abstract_name(name.as_bytes())?)?;
        rustix::net::sockopt::set_socket_passcred(&fd, true)?;
        Ok(NotifySocket {
            fd,
            address: format!("@{name}"),
        })
    }

    /// An inherited socket (a re-exec): its name is read back from the socket itself.
    pub fn adopt(fd: OwnedFd) -> std::io::Result<NotifySocket> {
        let addr = rustix::net::getsockname(&fd)?;
        let unix = SocketAddrUnix::try_from(addr)
            .map_err(|_| std::io::Error::other("the notify socket is not a unix socket"))?;
        let name = unix
            .abstract_name()
            .ok_or_else(|| std::io::Error::other("the notify socket has no abstract name"))?;
        let address = format!("@{}", String::from_utf8_lossy(name));
        Ok(NotifySocket { fd, address })
    }

    /// Read what is waiting, up to [`MAX_PER_TURN`] datagrams: each with who sent it.
    /// Datagrams without credentials, truncated, or carrying fds (FDSTORE, which arje
    /// does not keep: the kernel closes fds that do not fit the ancillary buffer) are
    /// dropped.
    pub fn drain(&self) -> Vec<(Sender, Vec<u8>)> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixCredentials};
        use std::os::fd::AsRawFd;
        let mut out = Vec::new();
        let mut buf = vec![0u8; MAX_MESSAGE];
        // nix, not rustix, reads the credentials: the kernel reports pid 0 for a sender
        // outside arje's pid namespace, which rustix's non-zero `Pid` cannot hold.
        let mut space = nix::cmsg_space!(UnixCredentials);
        for _ in 0..MAX_PER_TURN {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC;
            let (bytes, sender, clipped) =
                match recvmsg::<()>(self.fd.as_raw_fd(), &mut iov, Some(&mut space), flags) {
                    Ok(msg) => {
                        let mut sender = None;
                        for c in msg.cmsgs().into_iter().flatten() {
                            if let ControlMessageOwned::ScmCredentials(c) = c {
                                sender = Some(Sender {
                                    pid: c.pid(),
                                    uid: c.uid(),
                                });
                            }
                        }
                        let clipped = msg
                            .flags
                            .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
                        (msg.bytes, sender, clipped)
                    }
                    Err(nix::Error::EINTR) => continue,
                    Err(_) => break, // EAGAIN: nothing more.
                };
            if let (Some(sender), false) = (sender, clipped) {
                out.push((sender, buf[..bytes].to_vec()));
            }
        }
        out
    }
}

/// Who sent a datagram, as the kernel says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sender {
    pub pid: i32,
    pub uid: u32,
}

/// 128 random bits in hex, from the kernel's random uuid (no extra crate, no syscall
/// wrapper needed).
fn random_hex() -> std::io::Result<String> {
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid")?;
    Ok(uuid.trim().replace('-', ""))
}

/// What one datagram says, in the order systemd applies it. Unknown assignments are
/// ignored, as systemd does.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Message {
    pub ready: bool,
    pub reloading: bool,
    pub stopping: bool,
    pub status: Option<String>,
    pub errno: Option<i32>,
    pub main_pid: Option<i32>,
    pub watchdog: bool,
    /// `WATCHDOG=trigger`: act as if the watchdog had run out.
    pub watchdog_trigger: bool,
    pub watchdog_usec: Option<u64>,
    pub extend_timeout_usec: Option<u64>,
}

/// Parse a datagram: newline-separated `KEY=VALUE` assignments (sd_notify(3)).
pub fn parse(data: &[u8]) -> Message {
    let mut m = Message::default();
    for line in data.split(|b| *b == b'\n') {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key {
            "READY" => m.ready |= value == "1",
            "RELOADING" => m.reloading |= value == "1",
            "STOPPING" => m.stopping |= value == "1",
            "STATUS" => m.status = Some(clip(value, MAX_STATUS)),
            "ERRNO" => m.errno = value.parse().ok(),
            "MAINPID" => m.main_pid = value.parse().ok().filter(|p: &i32| *p > 0),
            "WATCHDOG" if value == "1" => m.watchdog = true,
            "WATCHDOG" if value == "trigger" => m.watchdog_trigger = true,
            "WATCHDOG_USEC" => m.watchdog_usec = value.parse().ok().filter(|u: &u64| *u > 0),
            "EXTEND_TIMEOUT_USEC" => m.extend_timeout_usec = value.parse().ok(),
            _ => {}
        }
    }
    m
}

/// `text` cut to at most `max` bytes on a character boundary.
pub fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_assignments_known_kept_unknown_ignored() {
        let m = parse(b"READY=1\nSTATUS=Accepting connections\nMAINPID=4242\nFDSTORE=1\nX\n");

        assert!(m.ready);
        assert_eq!(m.status.as_deref(), Some("Accepting connections"));
        assert_eq!(m.main_pid, Some(4242));
        assert!(!m.watchdog && !m.stopping && !m.reloading);
    }

    #[test]
    fn test_parse_watchdog_trigger_extend_errno() {
        let m = parse(b"WATCHDOG=trigger\nEXTEND_TIMEOUT_USEC=5000000\nERRNO=2\nREADY=0");

        assert!(m.watchdog_trigger && !m.watchdog && !m.ready);
        assert_eq!(m.extend_timeout_usec, Some(5_000_000));
        assert_eq!(m.errno, Some(2));
    }

    #[test]
    fn test_parse_long_status_clipped_on_a_char_boundary() {
        let long = format!("STATUS={}", "é".repeat(400));

        let m = parse(long.as_bytes());

        let status = m.status.unwrap();
        assert!(status.len() <= MAX_STATUS && status.len() >= MAX_STATUS - 1);
    }

    #[test]
    fn test_socket_receives_a_datagram_with_the_senders_credentials() {
        let sock = NotifySocket::new().unwrap();
        assert!(sock.address.starts_with("@arje/notify/"));
        let tx = std::os::unix::net::UnixDatagram::unbound().unwrap();
        let name = &sock.address.as_bytes()[1..];
        let addr =
            <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(name)
                .unwrap();

        tx.send_to_addr(b"READY=1", &addr).unwrap();
        let got = sock.drain();

        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.pid, std::process::id() as i32);
        assert_eq!(got[0].0.uid, rustix::process::getuid().as_raw());
        assert_eq!(got[0].1, b"READY=1");
        let again = NotifySocket::adopt(sock.fd.try_clone().unwrap()).unwrap();
        assert_eq!(again.address, sock.address);
    }
}
