//! systemd's readiness protocol, as the daemon sees it unchanged: a datagram socket whose
//! address is in `NOTIFY_SOCKET`, and `KEY=VALUE` lines in each datagram
//! (sd_notify(3)).
//!
//! One socket per command, made at its first start and kept for its life (restarts
//! included), so a message can only be about the command whose socket it arrived on.
//! The socket is in the abstract namespace under a random name: a path in arje's state
//! directory (mode 0700) would be out of reach of a service that runs as another user,
//! and a name drawn at random cannot be taken first by someone else (once bound it is
//! listed in /proc/net/unix, but it is arje's by then). Who may speak on it is checked on
//! every datagram with `SO_PASSCRED` ([`Sender`]): the kernel fills in the sender's pid
//! and uid, which a process cannot forge (only root may claim another pid).
//! docs/SECURITY.md has the rule.
//!
//! Here too is what a datagram does once accepted (`READY=1`, `STATUS=`, `MAINPID=`,
//! the watchdog); `ready.rs` holds the readiness state it changes.

use std::io::IoSliceMut;
use std::os::fd::OwnedFd;

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use super::ready::arm;
use super::Runtime;
use crate::ids::CommandId;
use crate::token::Token;

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

/// 128 random bits in hex. getrandom(2) with `GRND_INSECURE` (Linux 5.6): one syscall,
/// and it never waits for the entropy pool, as PID 1 early in a boot must not; the
/// kernel's random uuid file (the same generator, five syscalls through a procfs file)
/// where that flag is refused.
fn random_hex() -> std::io::Result<String> {
    use rustix::rand::{getrandom, GetRandomFlags};
    use std::fmt::Write;
    let mut bits = [0u8; 16];
    match getrandom(&mut bits, GetRandomFlags::INSECURE) {
        Ok(16) => {
            let mut hex = String::with_capacity(32);
            for b in bits {
                let _ = write!(hex, "{b:02x}");
            }
            Ok(hex)
        }
        _ => {
            let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid")?;
            Ok(uuid.trim().replace('-', ""))
        }
    }
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

/// What the datagrams do: who may send them, and what each assignment changes.
impl Runtime {
    /// The command's notify socket is readable.
    pub(crate) fn on_notify(&mut self, id: CommandId) {
        self.read_notify(id, false);
    }

    /// What a run that has just been reaped sent before it died: only `MAINPID=` (a
    /// forking parent naming its successor) and `STATUS=` are applied. Anything that
    /// would signal the run (`WATCHDOG=trigger`) must not: its pid is free again.
    pub(crate) fn on_notify_final(&mut self, id: CommandId) {
        self.read_notify(id, true);
    }

    fn read_notify(&mut self, id: CommandId, reaped: bool) {
        let Some(sock) = self
            .table
            .commands
            .get(&id)
            .and_then(|c| c.ready.notify.as_ref())
        else {
            return;
        };
        let now = Instant::now();
        for (sender, data) in sock.drain() {
            if let Err(why) = self.may_notify(id, sender) {
                log::warn!("notify message for command {id} ignored: {why}");
                continue;
            }
            let mut m = parse(&data);
            if reaped {
                m = Message {
                    main_pid: m.main_pid,
                    status: m.status,
                    ..Default::default()
                };
            }
            self.apply_notify(id, sender, m, now);
        }
    }

    /// Only the service's own processes may speak for it: the sender must run as the
    /// service's uid (or root), and, while it still exists, be in the run's leaf
    /// cgroup. A sender that has already exited (`systemd-notify` often has by the time
    /// the datagram is read) is judged by its uid alone, which the kernel recorded.
    fn may_notify(&self, id: CommandId, sender: Sender) -> Result<(), String> {
        let cmd = self.table.commands.get(&id).ok_or("no such command")?;
        let run = cmd.run.as_ref().ok_or("the command is not running")?;
        if sender.uid != cmd.ready.uid && sender.uid != 0 {
            return Err(format!(
                "sent by uid {}, the command runs as uid {}",
                sender.uid, cmd.ready.uid
            ));
        }
        if sender.pid == run.pid {
            return Ok(());
        }
        if let Some(leaf) = &run.leaf {
            let alive = super::sessions::stat(sender.pid).is_some();
            let inside = leaf.procs().is_ok_and(|p| p.contains(&sender.pid));
            if alive && !inside {
                return Err(format!(
                    "sent by pid {}, which is not in the command's cgroup",
                    sender.pid
                ));
            }
        }
        Ok(())
    }

    fn apply_notify(&mut self, id: CommandId, sender: Sender, m: Message, now: Instant) {
        let Some(cmd) = self.table.commands.get_mut(&id) else {
            return;
        };
        if let Some(status) = m.status {
            cmd.ready.status = Some(status);
            self.store.mark_dirty();
        }
        if let Some(errno) = m.errno {
            let text = std::io::Error::from_raw_os_error(errno);
            cmd.ready.status = Some(clip(&format!("errno {errno}: {text}"), MAX_STATUS));
        }
        if let Some(usec) = m.watchdog_usec {
            cmd.ready.watchdog = Some(capped_micros(usec));
        }
        if let Some(usec) = m.extend_timeout_usec {
            if let Some(d) = cmd.ready.deadline {
                let at = d.max(now + capped_micros(usec));
                cmd.ready.deadline = Some(at);
                arm(&mut cmd.ready, &mut self.timers, id, at);
            }
        }
        if m.reloading {
            // Not ready again until the next READY=1, like systemd's "reloading".
            cmd.ready.ready = false;
        }
        if let Some(pid) = m.main_pid {
            self.adopt_main_pid(id, sender, pid);
        }
        if m.watchdog {
            self.watchdog_ping(id, now);
        }
        if m.ready {
            self.mark_ready(id, now);
        }
        if m.watchdog_trigger {
            let why = "watchdog: the service triggered it (WATCHDOG=trigger)".to_string();
            self.unhealthy(id, why, libc::SIGABRT, now);
        }
    }

    /// `MAINPID=`: a daemon that forked names the process to supervise from now on. It
    /// must be alive, never init, arje itself or a process arje already holds for
    /// something else (another command's run, a probe, a straggler), and the service's
    /// own: in the run's leaf cgroup, whoever sent it; without cgroups, owned by the
    /// service's uid unless root sent it. A stop signals the new main process's group
    /// and, through its pidfd, the process itself.
    fn adopt_main_pid(&mut self, id: CommandId, sender: Sender, pid: i32) {
        if pid <= 1 || pid == std::process::id() as i32 || self.procs.holds(pid) {
            log::warn!("MAINPID={pid} for command {id} ignored: not a process it may name");
            return;
        }
        let Some(run) = self.table.commands.get(&id).and_then(|c| c.run.as_ref()) else {
            return;
        };
        if run.pid == pid {
            return;
        }
        let uid = self.table.commands.get(&id).map_or(0, |c| c.ready.uid);
        let Some(stat) = super::sessions::stat(pid).filter(|s| !s.is_zombie()) else {
            log::warn!("MAINPID={pid} for command {id} ignored: no such process");
            return;
        };
        let owned = match &run.leaf {
            Some(leaf) => leaf.procs().is_ok_and(|p| p.contains(&pid)),
            None => proc_uid(pid) == Some(uid) || sender.uid == 0,
        };
        if !owned {
            log::warn!("MAINPID={pid} for command {id} ignored: not the service's process");
            return;
        }
        let Some(raw) = rustix::process::Pid::from_raw(pid) else {
            return;
        };
        let pidfd = match rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty()) {
            Ok(fd) => fd,
            Err(e) => {
                log::warn!("MAINPID={pid} for command {id} ignored: pidfd_open: {e}");
                return;
            }
        };
        if let Err(e) = self.reactor.add(
            pidfd.as_fd(),
            Token::Child(id),
            super::reactor::Interest::Read,
        ) {
            log::warn!("MAINPID={pid} for command {id} ignored: epoll_ctl: {e}");
            return;
        }
        let Some(run) = self
            .table
            .commands
            .get_mut(&id)
            .and_then(|c| c.run.as_mut())
        else {
            return;
        };
        // The old main process is no longer the command: its exit (the forking parent's,
        // usually at once) is reaped as an orphan's. Dropping its pidfd takes it out of
        // epoll.
        let old = std::mem::replace(&mut run.pid, pid);
        run.pidfd = pidfd;
        run.start_time_ticks = stat.start_ticks;
        self.procs.forget(old);
        self.procs.track(pid, id);
        self.store.mark_dirty();
        log::info!("command {id}: main pid {old} -> {pid} (MAINPID)");
    }

    fn watchdog_ping(&mut self, id: CommandId, now: Instant) {
        let Some(cmd) = self.table.commands.get_mut(&id) else {
            return;
        };
        if let (true, Some(every)) = (cmd.ready.ready, cmd.ready.watchdog) {
            let due = now + every;
            cmd.ready.watchdog_due = Some(due);
            arm(&mut cmd.ready, &mut self.timers, id, due);
        }
    }
}

/// The longest interval a service may ask for (`WATCHDOG_USEC=`,
/// `EXTEND_TIMEOUT_USEC=`): a day. Larger values would overflow an `Instant`.
const MAX_ASKED: Duration = Duration::from_secs(24 * 3600);

fn capped_micros(usec: u64) -> Duration {
    Duration::from_micros(usec).min(MAX_ASKED)
}

/// The uid that owns `/proc/PID` (the process's effective uid).
fn proc_uid(pid: i32) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}"))
        .ok()
        .map(|m| m.uid())
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
    fn test_random_hex_is_128_bits_in_hex_and_differs_each_time() {
        // Act
        let (a, b) = (random_hex().unwrap(), random_hex().unwrap());
        // Assert
        assert_eq!(a.len(), 32, "{a}");
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_ne!(a, b);
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
