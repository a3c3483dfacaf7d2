//! Across a re-exec: what the next image takes over besides the snapshot. The fds (the
//! listener, the output pipes, the client connections, the state lock) stay open across
//! exec with close-on-exec cleared; the client connections' buffers and the output rings
//! go in `<state-dir>/handover.bin`.
//!
//! The file is transient (written just before exec, deleted when read) but read by a
//! possibly newer binary, so it carries its own version: a version this build does not
//! know is ignored, and those clients see their connection closed. Its layout is frozen
//! per version like the snapshot's: version 1 is what every release so far writes.

use std::os::unix::net::UnixStream;
use std::time::Instant;

use super::server::Inherited;
use super::Runtime;
use crate::control::Follow;
use crate::ids::CommandId;
use crate::ring::{Ring, DEFAULT_RING};

#[derive(serde::Serialize, serde::Deserialize, Debug, Default)]
struct Handover {
    version: u32,
    conns: Vec<HandoverConn>,
    /// Captured output, so `shuma logs` shows the same before and after.
    rings: Vec<HandoverRing>,
}

#[derive(serde::Serialize, serde::Deserialize, Debug)]
struct HandoverRing {
    command: u64,
    /// stdout and stderr: bytes held, bytes ever written, bytes dropped.
    out: (Vec<u8>, u64, u64),
    err: (Vec<u8>, u64, u64),
}

#[derive(serde::Serialize, serde::Deserialize, Debug)]
struct HandoverConn {
    fd: i32,
    hello_done: bool,
    /// Read, not yet a whole frame.
    inbox: Vec<u8>,
    /// Not yet written to the client.
    outbox: Vec<u8>,
    /// A `run --wait` client: the command whose exit it waits for.
    waiting_for: Option<u64>,
}

/// The version this build writes and the only one it reads; its arje note says so
/// (`identity.rs`), and an image refuses to re-exec into a binary that cannot read it.
pub(super) const HANDOVER_VERSION: u32 = 1;
const HANDOVER_FILE: &str = "handover.bin";

/// Can this build read the handover file in `dir`, if there is one? Read and decoded,
/// never removed: a new image that cannot read it leaves it for the previous image, which
/// it execs back (`rollback.rs`). A file that cannot be read at all is not this build's
/// failure (the previous image would fail the same way) and passes.
pub(super) fn readable(dir: &crate::persist::StateDir) -> Result<(), String> {
    let Ok(Some(bytes)) = dir.read_capped(HANDOVER_FILE, u64::MAX) else {
        return Ok(());
    };
    let path = dir.join(HANDOVER_FILE);
    let version = postcard::from_bytes::<Handover>(&bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .version;
    if version != HANDOVER_VERSION {
        return Err(format!(
            "{}: handover version {version}, this build reads {HANDOVER_VERSION}",
            path.display()
        ));
    }
    Ok(())
}

impl Runtime {
    /// After a re-exec: take over the client connections and output rings the previous
    /// image left.
    pub(crate) fn adopt_handover(&mut self) {
        let Some(dir) = self.store.state_dir() else {
            return;
        };
        let path = dir.join(HANDOVER_FILE);
        // Read like a snapshot (no symlink followed, nothing but a regular file opened),
        // without a cap: the previous image wrote it for us, in our own directory.
        let bytes = match dir.read_capped(HANDOVER_FILE, u64::MAX) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return,
            Err(e) => {
                log::warn!("{}: {e}; its clients' connections are lost", path.display());
                let _ = dir.remove(HANDOVER_FILE);
                return;
            }
        };
        let _ = dir.remove(HANDOVER_FILE);
        let handover: Handover = match postcard::from_bytes(&bytes) {
            Ok(h) => h,
            Err(e) => {
                log::warn!("{}: {e}; its clients' connections are lost", path.display());
                return;
            }
        };
        if handover.version != HANDOVER_VERSION {
            log::warn!(
                "{}: version {} unknown; its clients' connections are lost",
                path.display(),
                handover.version
            );
            return;
        }
        for hr in handover.rings {
            let Some(cmd) = self.table.commands.get_mut(&CommandId::from(hr.command)) else {
                continue;
            };
            // What the new image already read from the pipe comes after it.
            for (ring, (held, written, dropped)) in [(&mut cmd.out, hr.out), (&mut cmd.err, hr.err)]
            {
                let newer = ring.contents();
                *ring = Ring::restore(DEFAULT_RING, &held, written, dropped);
                ring.push(&newer);
            }
        }
        for hc in handover.conns {
            let Some(fd) = crate::sys::fd::adopt(hc.fd) else {
                continue;
            };
            let inherited = Inherited {
                stream: UnixStream::from(fd),
                hello_done: hc.hello_done,
                inbox: hc.inbox,
                outbox: hc.outbox,
                follow: hc
                    .waiting_for
                    .map_or(Follow::None, |id| Follow::Exit(id.into())),
            };
            self.server
                .adopt(&self.reactor, &mut self.timers, Instant::now(), inherited);
        }
    }

    /// The exec after [`Runtime::prepare_reexec`] failed and this image carries on: every
    /// fd it left open across exec is close-on-exec again (those in `inheritable`, open
    /// without the flag before it ran, are left as they were), the handover file no next
    /// image will read is removed, and the /run snapshot, which names those fds, is
    /// written again without them at the end of this turn. The connections, pipes, notify
    /// sockets, listener and lock were only marked, never closed or moved: nothing else
    /// needs undoing.
    pub(crate) fn take_back(&mut self, inheritable: &[std::os::fd::RawFd]) {
        let marked = crate::sys::fd::close_on_exec_again(inheritable);
        if let Some(dir) = self.store.state_dir() {
            if let Err(e) = dir.remove(HANDOVER_FILE) {
                log::warn!("{}: {e}", dir.join(HANDOVER_FILE).display());
            }
        }
        self.store.mark_dirty();
        log::info!("re-exec undone: {marked} fd(s) close-on-exec again");
    }

    /// Before exec'ing a new image: keep the fds it needs open across exec and write a
    /// snapshot that names them.
    pub(crate) fn prepare_reexec(&mut self) {
        self.capture.hand_over();
        // Notify sockets stay open across exec: services keep their NOTIFY_SOCKET.
        for c in self.table.commands.values() {
            // A service not yet ready keeps the pipe it will write its newline to.
            let channel = c
                .ready
                .notify
                .as_ref()
                .map(|n| &n.fd)
                .or(c.ready.fd.as_ref());
            if let Some(fd) = channel {
                let _ = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty());
            }
        }
        self.store.hand_over();
        let ring = |r: &Ring| (r.contents(), r.written(), r.dropped());
        let handover = Handover {
            version: HANDOVER_VERSION,
            conns: self
                .server
                .hand_over()
                .into_iter()
                .map(|(fd, conn)| {
                    let (inbox, outbox) = conn.buffers();
                    HandoverConn {
                        fd,
                        hello_done: conn.hello_done,
                        inbox: inbox.to_vec(),
                        outbox: outbox.to_vec(),
                        waiting_for: match conn.follow {
                            Follow::Exit(id) => Some(id.raw()),
                            _ => None,
                        },
                    }
                })
                .collect(),
            rings: self
                .table
                .commands
                .values()
                .filter(|c| c.out.written() > 0 || c.err.written() > 0)
                .map(|c| HandoverRing {
                    command: c.id.raw(),
                    out: ring(&c.out),
                    err: ring(&c.err),
                })
                .collect(),
        };
        // Written relative to the state directory's fd, unlinked and created anew with
        // O_EXCL: never through a symlink someone put at the name.
        match (self.store.state_dir(), postcard::to_allocvec(&handover)) {
            (Some(dir), Ok(bytes)) => {
                if let Err(e) = dir.replace(HANDOVER_FILE, &bytes) {
                    log::warn!(
                        "re-exec: could not hand over client connections ({}): {e}",
                        dir.join(HANDOVER_FILE).display()
                    );
                }
            }
            (None, _) => log::warn!("re-exec: no state directory; client connections are lost"),
            (_, Err(e)) => log::warn!("re-exec: could not encode the handover: {e}"),
        }
        // The durable copy never names fds: they mean nothing after a reboot.
        let durable_bytes = self.store.has_durable().then(|| {
            self.encode_snapshot(false);
            self.store.buf.clone()
        });
        self.encode_snapshot(true);
        // exec ends the journal's writer thread: what it has queued goes to disk first.
        self.journal.flush_disk(super::JOURNAL_FLUSH_BOUND);
        self.store.flush(durable_bytes);
    }
}
