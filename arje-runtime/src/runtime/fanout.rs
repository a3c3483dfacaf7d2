//! Fan-out: one pipeline output copied to several readers.
//!
//! A node output with one edge is the reader's pipe itself, and the kernel moves the
//! bytes. An output with several edges cannot be: a pipe has one reader. So the node
//! writes into a pipe that arje reads (`Token::FanoutIn`), and arje writes each chunk to
//! every reader's pipe, never blocking: what a reader's pipe cannot take now waits in a
//! buffer of that edge (bounded by the pipeline's `fanout_buffer`), flushed when the pipe
//! has room (`Token::FanoutOut`). arje's memory per edge is that bound at most.
//!
//! The source goes at the pace of its fastest reader: arje stops reading it while every
//! reader has bytes waiting, so the kernel's backpressure reaches the writer as it would
//! through one pipe, and resumes when one of them has caught up. A reader slower than
//! that falls behind by up to its buffer; what does not fit is dropped and counted
//! (`PipelineDropped`), so one stuck reader stalls neither the loop nor the others.
//!
//! arje writes through its own open file description of each reader's pipe (opened from
//! `/proc/self/fd`, non-blocking), not through the descriptor its writer nodes share:
//! `O_NONBLOCK` is a property of the description, and setting it on a shared one would
//! make the nodes' own writes fail with EAGAIN.
//!
//! The copier owns its fds: it registers them, handles their events and closes them. At
//! the source's end of file it flushes what it can and closes each reader's pipe once its
//! buffer is empty (or the reader is gone), so the readers see their end of file.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::io::Errno;

use super::reactor::{Interest, Reactor};
use crate::ids::{FanoutId, IdGen, PipelineId};
use crate::token::Token;

/// Bytes read from a source per read.
const CHUNK: usize = 64 * 1024;
/// Reads per source per event: a fast writer cannot keep the loop to itself.
const READS_PER_EVENT: usize = 16;
/// At most one `PipelineDropped` event per edge this often; the rest are summed.
const DROP_REPORT_EVERY: Duration = Duration::from_secs(1);

/// One reader of a fan-out.
struct Dest {
    /// The edge, as the user wrote it (`a -> b`).
    edge: String,
    /// arje's non-blocking description of the reader's pipe; `None` once closed.
    fd: Option<OwnedFd>,
    /// Bytes the pipe could not take yet, oldest first.
    pending: Vec<u8>,
    /// Registered for writability (only while `pending` is not empty).
    watching: bool,
    /// Dropped since the last report, and when that report was.
    unreported: u64,
    reported_at: Option<Instant>,
}

struct Fanout {
    pipeline: PipelineId,
    src: Option<OwnedFd>,
    /// The source is out of epoll because every reader is behind.
    paused: bool,
    dests: Vec<Dest>,
    cap: usize,
}

/// What a fan-out event did, for the pipeline and the journal.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Moved {
    /// Drops to report now, as (pipeline, edge, bytes).
    pub dropped: Vec<(PipelineId, String, u64)>,
    /// Bytes dropped in this event, for the pipeline's running count.
    pub dropped_now: Vec<(PipelineId, u64)>,
}

#[derive(Default)]
pub struct Fanouts {
    map: BTreeMap<FanoutId, Fanout>,
    ids: IdGen<FanoutId>,
    buf: Vec<u8>,
}

impl Fanouts {
    /// Copy what `src` (a pipe's read end) brings to each of `dests` (the write ends of
    /// the readers' pipes, with their edge's text). Returns the copier's id.
    pub fn add(
        &mut self,
        reactor: &Reactor,
        pipeline: PipelineId,
        src: OwnedFd,
        dests: Vec<(String, OwnedFd)>,
        cap: u64,
    ) -> std::io::Result<FanoutId> {
        rustix::fs::fcntl_setfl(&src, rustix::fs::OFlags::NONBLOCK)?;
        let mut own = Vec::with_capacity(dests.len());
        for (edge, fd) in dests {
            own.push(Dest {
                edge,
                fd: Some(reopen_nonblocking(&fd)?),
                pending: Vec::new(),
                watching: false,
                unreported: 0,
                reported_at: None,
            });
        }
        let id = self.ids.next();
        reactor.add(src.as_fd(), Token::FanoutIn(id), Interest::Read)?;
        self.map.insert(
            id,
            Fanout {
                pipeline,
                src: Some(src),
                paused: false,
                dests: own,
                cap: usize::try_from(cap).unwrap_or(usize::MAX),
            },
        );
        Ok(id)
    }

    /// The source is readable (or at its end): copy to every reader.
    pub fn on_source(&mut self, reactor: &Reactor, id: FanoutId, now: Instant) -> Moved {
        let mut moved = Moved::default();
        let Some(f) = self.map.get_mut(&id) else {
            return moved;
        };
        if self.buf.len() < CHUNK {
            self.buf.resize(CHUNK, 0);
        }
        let mut dropped = 0;
        for _ in 0..READS_PER_EVENT {
            if f.all_behind() {
                break; // `settle` pauses the source until a reader catches up.
            }
            let Some(src) = &f.src else { break };
            match rustix::io::read(src, &mut self.buf[..CHUNK]) {
                Ok(0) => {
                    reactor.remove(src.as_fd());
                    f.src = None;
                }
                Ok(n) => {
                    for d in &mut f.dests {
                        dropped += d.offer(&self.buf[..n], f.cap);
                    }
                }
                Err(Errno::AGAIN) => break,
                Err(Errno::INTR) => continue,
                Err(e) => {
                    log::warn!("fan-out source: read: {e}");
                    reactor.remove(src.as_fd());
                    f.src = None;
                }
            }
        }
        if dropped > 0 {
            moved.dropped_now.push((f.pipeline, dropped));
        }
        f.settle(reactor, id, now, &mut moved);
        if f.finished() {
            self.map.remove(&id);
        }
        moved
    }

    /// A reader's pipe has room: flush what waits for it.
    pub fn on_dest(&mut self, reactor: &Reactor, id: FanoutId, now: Instant) -> Moved {
        let mut moved = Moved::default();
        let Some(f) = self.map.get_mut(&id) else {
            return moved;
        };
        f.settle(reactor, id, now, &mut moved);
        if f.finished() {
            self.map.remove(&id);
        }
        moved
    }

    /// Close a copier now (its pipeline is gone), reporting what it dropped unreported.
    pub fn remove(&mut self, reactor: &Reactor, id: FanoutId) -> Vec<(PipelineId, String, u64)> {
        let Some(f) = self.map.remove(&id) else {
            return Vec::new();
        };
        if let (Some(src), false) = (&f.src, f.paused) {
            reactor.remove(src.as_fd());
        }
        f.dests
            .into_iter()
            .filter(|d| d.unreported > 0)
            .map(|d| (f.pipeline, d.edge, d.unreported))
            .collect()
    }
}

impl Dest {
    /// Take `data` for the reader: straight into its pipe if nothing waits before it,
    /// else (and for what the pipe cannot take) into the buffer, up to `cap`. Returns the
    /// bytes dropped.
    fn offer(&mut self, data: &[u8], cap: usize) -> u64 {
        let Some(fd) = &self.fd else {
            return 0; // The reader is gone: nothing to keep for it.
        };
        let mut rest = data;
        if self.pending.is_empty() {
            match rustix::io::write(fd, rest) {
                Ok(n) => rest = &rest[n..],
                Err(Errno::AGAIN) => {}
                Err(_) => {
                    // EPIPE: every reader of the pipe has gone; stop copying to it.
                    self.fd = None;
                    return 0;
                }
            }
        }
        let room = cap.saturating_sub(self.pending.len());
        let keep = rest.len().min(room);
        self.pending.extend_from_slice(&rest[..keep]);
        let dropped = (rest.len() - keep) as u64;
        self.unreported += dropped;
        dropped
    }

    /// Write what waits, as far as the pipe takes it.
    fn flush(&mut self) {
        let Some(fd) = &self.fd else {
            self.pending = Vec::new();
            return;
        };
        while !self.pending.is_empty() {
            match rustix::io::write(fd, &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => return,
                Err(_) => {
                    self.fd = None;
                    self.pending = Vec::new();
                    return;
                }
            }
        }
        // Give the memory of a burst back once it is written.
        self.pending = Vec::new();
    }
}

impl Fanout {
    /// Flush each reader, watch the ones still behind, close the ones done after the
    /// source's end, and collect the drops due for a report.
    fn settle(&mut self, reactor: &Reactor, id: FanoutId, now: Instant, moved: &mut Moved) {
        let ended = self.src.is_none();
        for d in &mut self.dests {
            d.flush();
            let behind = !d.pending.is_empty();
            if let Some(fd) = &d.fd {
                if behind && !d.watching {
                    d.watching = reactor
                        .add(fd.as_fd(), Token::FanoutOut(id), Interest::Write)
                        .is_ok();
                } else if !behind && d.watching {
                    reactor.remove(fd.as_fd());
                    d.watching = false;
                }
            }
            if ended && !behind {
                if let Some(fd) = d.fd.take() {
                    if d.watching {
                        reactor.remove(fd.as_fd());
                        d.watching = false;
                    }
                }
            }
            // At most one report per edge every DROP_REPORT_EVERY.
            let due = match d.reported_at {
                None => true,
                Some(t) => now.saturating_duration_since(t) >= DROP_REPORT_EVERY,
            };
            if d.unreported > 0 && (due || ended) {
                moved
                    .dropped
                    .push((self.pipeline, d.edge.clone(), d.unreported));
                d.unreported = 0;
                d.reported_at = Some(now);
            }
        }
        let Some(src) = &self.src else { return };
        if self.dests.iter().all(|d| d.fd.is_none()) {
            // Every reader is gone: so is the pipe's, and the writer learns it (EPIPE).
            reactor.remove(src.as_fd());
            self.src = None;
            self.paused = false;
        } else if self.all_behind() && !self.paused {
            reactor.remove(src.as_fd());
            self.paused = true;
        } else if !self.all_behind() && self.paused {
            self.paused = reactor
                .add(src.as_fd(), Token::FanoutIn(id), Interest::Read)
                .is_err();
        }
    }

    /// Does every reader still open have bytes waiting (or is none open)?
    fn all_behind(&self) -> bool {
        self.dests
            .iter()
            .filter(|d| d.fd.is_some())
            .all(|d| !d.pending.is_empty())
    }

    fn finished(&self) -> bool {
        self.src.is_none() && self.dests.iter().all(|d| d.fd.is_none())
    }
}

/// A new open file description of the pipe `fd` refers to, write-only and non-blocking.
/// Opening a pipe through `/proc/self/fd` opens it anew, as a FIFO's path would, so the
/// flag does not reach the description the nodes share.
fn reopen_nonblocking(fd: &OwnedFd) -> std::io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    use std::os::fd::AsRawFd;
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let flags = OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    Ok(rustix::fs::open(path.as_str(), flags, Mode::empty())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(cap_pending: &[u8]) -> (Dest, OwnedFd) {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let mut d = Dest {
            edge: "a -> b".into(),
            fd: Some(reopen_nonblocking(&w).unwrap()),
            pending: cap_pending.to_vec(),
            watching: false,
            unreported: 0,
            reported_at: None,
        };
        d.flush();
        (d, r)
    }

    #[test]
    fn test_offer_to_a_full_pipe_buffers_to_the_cap_and_counts_the_rest() {
        // Arrange: a reader that never reads; fill its pipe (64 KiB by default).
        let (mut d, _r) = dest(b"");
        let fill = vec![7u8; 1 << 20];
        d.offer(&fill, 0);

        // Act: 1,000 more bytes with room for 100.
        let dropped = d.offer(&[1u8; 1000], 100);

        // Assert
        assert_eq!(dropped, 900);
        assert_eq!(d.pending.len(), 100);
        assert!(d.unreported >= 900);
    }

    #[test]
    fn test_offer_to_a_reader_that_keeps_up_passes_every_byte_in_order() {
        let (mut d, r) = dest(b"");

        let dropped = d.offer(b"hello ", 16) + d.offer(b"world", 16);

        assert_eq!(dropped, 0);
        let mut buf = [0u8; 32];
        let n = rustix::io::read(&r, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello world");
    }

    #[test]
    fn test_offer_after_the_reader_went_drops_nothing_and_closes() {
        let (mut d, r) = dest(b"");
        drop(r);

        let dropped = d.offer(b"x", 16);

        assert_eq!(dropped, 0);
        assert!(d.fd.is_none());
    }
}
