//! `/dev/log`: the syslog datagram sink that cron, PAM, sshd, `logger` and friends write
//! to. Without it their messages are lost (a `send` to a missing socket fails silently
//! in most C libraries). Each message is parsed (RFC 3164 as glibc's syslog(3) writes
//! it: `<PRI>Mmm dd hh:mm:ss TAG[PID]: text`, the timestamp optional) and journalled as
//! a `Syslog` event with its facility, severity and program, which `shuma events` shows.
//!
//! Anyone may write to `/dev/log` (mode 0666), as on every Unix: so the sink is bounded.
//! Each message is cut to [`MAX_MESSAGE`] bytes, each turn reads at most [`PER_TURN`],
//! and a token bucket admits [`BURST`] at once and [`PER_SECOND`] after that; what is
//! refused is counted and journalled once as a Warning when messages flow again. A flood
//! still pushes the oldest lifecycle events out of the in-memory ring, but over minutes
//! (4,096 events at 20 a second), not at once, and they stay in the journal on disk
//! (docs/STATE.md), which a flood ages at the same pace; a journal of its own for syslog
//! is still the next step (docs/SECURITY.md).
//!
//! On arje's own log (the console as PID 1) a message shows at info only if its severity
//! is warning or worse ([`CONSOLE_MAX_SEVERITY`]); the rest at debug. All are journalled.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::Instant;

use rustix::net::{AddressFamily, RecvFlags, SocketAddrUnix, SocketFlags, SocketType};
use shuma_card::EventKind;

/// The least severe syslog message arje's log shows at info (RFC 3164: 4 = warning);
/// notice, info and debug are logged at debug, so a login's PAM lines do not flood the
/// console.
pub const CONSOLE_MAX_SEVERITY: u8 = 4;

/// Longest message text kept, in bytes.
pub const MAX_MESSAGE: usize = 1024;
/// Most datagrams read per readiness event.
const PER_TURN: usize = 64;
/// Messages admitted at once, then per second: a tenth of the journal at once, and
/// several minutes of a flood before it has pushed out every lifecycle event.
pub const BURST: u32 = 400;
pub const PER_SECOND: u32 = 20;

pub struct Syslog {
    pub fd: OwnedFd,
    tokens: f64,
    last: Instant,
    dropped: u64,
}

impl Syslog {
    /// Bind a datagram socket at `path` (a stale socket there is replaced; any other
    /// kind of file is left alone and the bind fails), mode 0666.
    ///
    /// The directory must be one only arje's user (or root) can change: the chmod after
    /// the bind goes by path, and someone who could swap the socket for a symlink there
    /// could have root make any file world-writable.
    pub fn bind(path: &Path) -> std::io::Result<Syslog> {
        use std::os::unix::fs::MetadataExt;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        let dir = std::fs::metadata(dir.unwrap_or(Path::new(".")))?;
        let me = rustix::process::geteuid().as_raw();
        if (dir.uid() != me && dir.uid() != 0) || dir.mode() & 0o022 != 0 {
            return Err(std::io::Error::other(format!(
                "its directory is owned by uid {} with mode {:04o}: others could swap the socket",
                dir.uid(),
                dir.mode() & 0o7777
            )));
        }
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            if meta.file_type().is_socket() {
                std::fs::remove_file(path)?;
            }
        }
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )?;
        rustix::net::bind(&fd, &SocketAddrUnix::new(path)?)?;
        rustix::fs::chmod(path, rustix::fs::Mode::from_raw_mode(0o666))?;
        Ok(Syslog {
            fd,
            tokens: f64::from(BURST),
            last: Instant::now(),
            dropped: 0,
        })
    }

    /// Read what waits: the events to journal (messages, and a Warning for what the
    /// bucket refused since the last one admitted).
    pub fn drain(&mut self, now: Instant) -> Vec<EventKind> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * f64::from(PER_SECOND)).min(f64::from(BURST));
        let mut out = Vec::new();
        let mut buf = [0u8; MAX_MESSAGE + 256];
        for _ in 0..PER_TURN {
            let n = match rustix::net::recv(self.fd.as_fd(), &mut buf, RecvFlags::DONTWAIT) {
                Ok((n, _)) => n.min(buf.len()),
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => break,
            };
            if self.tokens < 1.0 {
                self.dropped += 1;
                continue;
            }
            self.tokens -= 1.0;
            if self.dropped > 0 {
                out.push(EventKind::Warning {
                    message: format!(
                        "/dev/log: {} messages dropped (more than {PER_SECOND} per second)",
                        std::mem::take(&mut self.dropped)
                    ),
                });
            }
            out.push(parse(&buf[..n]));
        }
        out
    }
}

/// One syslog datagram as an event. A message without `<PRI>` is user.notice, as
/// syslogd takes it.
pub fn parse(data: &[u8]) -> EventKind {
    let text = String::from_utf8_lossy(data);
    let mut rest: &str = text.trim_end_matches(['\n', '\0']);
    let mut pri = 13u32; // user.notice
    if let Some(after) = rest.strip_prefix('<') {
        if let Some((num, tail)) = after.split_once('>') {
            if let Ok(p) = num.parse::<u32>() {
                if p <= 191 {
                    pri = p;
                    rest = tail;
                }
            }
        }
    }
    // "Mmm dd hh:mm:ss " (15 characters and a space), as syslog(3) writes it.
    if rest.len() > 16 && is_timestamp(&rest.as_bytes()[..16]) {
        rest = &rest[16..];
    }
    let (program, pid, message) = split_tag(rest);
    EventKind::Syslog {
        facility: (pri >> 3) as u8,
        severity: (pri & 7) as u8,
        program: super::notify::clip(program, 64),
        pid,
        message: super::notify::clip(message, MAX_MESSAGE),
    }
}

fn is_timestamp(b: &[u8]) -> bool {
    b[3] == b' ' && b[6] == b' ' && b[9] == b':' && b[12] == b':' && b[15] == b' '
}

/// `TAG[PID]: text` or `TAG: text`; without a tag, the whole text.
fn split_tag(s: &str) -> (&str, Option<i32>, &str) {
    let Some((tag, text)) = s.split_once(": ") else {
        return ("", None, s);
    };
    if tag.is_empty() || tag.len() > 64 || tag.contains(' ') {
        return ("", None, s);
    }
    match tag.strip_suffix(']').and_then(|t| t.split_once('[')) {
        Some((name, pid)) => (name, pid.parse().ok(), text),
        None => (tag, None, text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_console_shows_syslog_at_info_only_from_warning_up() {
        let msg = |severity| EventKind::Syslog {
            facility: 10,
            severity,
            program: "sshd".into(),
            pid: Some(1),
            message: "m".into(),
        };
        let level = |sev| crate::runtime::log_level(&msg(sev));

        assert_eq!(level(7), log::Level::Debug, "debug");
        assert_eq!(level(6), log::Level::Debug, "info");
        assert_eq!(level(5), log::Level::Debug, "notice");
        assert_eq!(level(4), log::Level::Info, "warning");
        assert_eq!(level(2), log::Level::Info, "critical");
    }

    #[test]
    fn test_parse_glibc_format_with_pri_timestamp_tag_and_pid() {
        let e = parse(b"<86>Nov 27 14:40:01 CRON[4242]: pam_unix(cron:session): session opened\n");

        assert_eq!(
            e,
            EventKind::Syslog {
                facility: 10,
                severity: 6,
                program: "CRON".into(),
                pid: Some(4242),
                message: "pam_unix(cron:session): session opened".into(),
            }
        );
    }

    #[test]
    fn test_parse_without_pri_or_tag_is_user_notice_whole_text() {
        let e = parse(b"just words");

        assert_eq!(
            e,
            EventKind::Syslog {
                facility: 1,
                severity: 5,
                program: String::new(),
                pid: None,
                message: "just words".into(),
            }
        );
    }

    #[test]
    fn test_bucket_admits_the_burst_then_counts_the_rest_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut sink = Syslog::bind(&path).unwrap();
        let tx = std::os::unix::net::UnixDatagram::unbound().unwrap();
        let now = sink.last;

        // In rounds of 10: a unix datagram socket queues few messages before a
        // sender blocks.
        let mut events = Vec::new();
        for _ in 0..(BURST as usize + 50) / 10 {
            for _ in 0..10 {
                tx.send_to(b"<14>t: m", &path).unwrap();
            }
            events.extend(sink.drain(now));
        }
        // One second later the bucket has room again: the drop is reported first.
        tx.send_to(b"<14>t: later", &path).unwrap();
        let later = sink.drain(now + std::time::Duration::from_secs(1));

        assert_eq!(events.len(), BURST as usize);
        assert!(
            matches!(&later[0], EventKind::Warning { message } if message.contains("50 messages dropped"))
        );
        assert!(matches!(&later[1], EventKind::Syslog { message, .. } if message == "later"));
    }
}
