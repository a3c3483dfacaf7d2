//! The event journal on disk: the in-memory ring's events, appended to segment files in
//! the durable directory (or the /run one without it), so that why things happened
//! survives a crash, a re-exec and a reboot. The cursor is the event id, which the
//! journal never reuses: `shuma events --after ID` means the same before and after.
//!
//! Layout, in the directory `events/`: segments `events-<first id, 20 digits>.log`, each
//! a 12-byte header (`ARJEEVT1` and the protocol version whose `Event` encoding the
//! records use, u32 little-endian), then records: payload length (u32 LE), CRC-32C of the
//! payload (u32 LE), the payload (postcard of [`Event`]). A record never spans segments;
//! a segment is closed once it reaches [`Limits::segment`], and the oldest segments are
//! deleted whole while the total is above [`Limits::total`].
//!
//! Damage, found when the log is opened at start:
//! - the last segment's tail after its last whole record (a write torn by a power cut,
//!   or blocks the filesystem allocated but never filled) is truncated, with a Warning
//!   naming the segment, the offset and the bytes dropped;
//! - a bad record in any other segment, or a header that is not this format, sets the
//!   segment aside (renamed `<name>.corrupt`), with a Warning naming it and the offset;
//!   the events in it are lost, the rest is read and boot goes on.
//!
//! Writing happens off the loop: [`EventLog::append`] keeps a copy of the event, and
//! [`EventLog::send_pending`] (at the end of each turn of the loop, or as soon as
//! [`BATCH`] events wait) hands them to a thread through a bounded channel as one
//! message; the thread writes what has queued up in one `write` and one `fdatasync`, so
//! a burst costs a few syncs, not one per event. One message a turn, not one an event:
//! each message wakes the thread (a futex call on the loop's side), which was 11% of an
//! in-process spawn's samples with three events per spawn (docs/BENCHMARKS.md). If the
//! thread falls behind by about [`QUEUE`] events, the next ones are counted as lost
//! ([`EventLog::lost`]) rather than making the loop wait.

use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use shuma_card::protocol::PROTOCOL_VERSION;

/// The oldest protocol version whose `Event` encoding this build reads unchanged.
const EVENTS_SINCE: u32 = 5;
use shuma_card::Event;

use super::dir::{read_regular_at, StateDir};

const MAGIC: &[u8; 8] = b"ARJEEVT1";
const HEADER_LEN: usize = 12;
const RECORD_HEADER: usize = 8;
/// A record larger than this is damage, not an event (an event is at most a few KiB).
const MAX_RECORD: usize = 1 << 20;
/// Events queued for the writer before further ones are counted as lost. The channel
/// allocates (and touches) every slot when it is made: 16,384 slots cost PID 1 about
/// 450 kB of resident memory, 1,024 cost 30 kB and still hold far more than a real
/// burst brings in the time of one fdatasync.
pub const QUEUE: usize = 1024;
/// Most events handed over in one message; the channel holds `QUEUE / BATCH` messages.
pub const BATCH: usize = 256;
const CHECKSUM: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

/// How much of the log is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// All segments together; the oldest go whole past this.
    pub total: u64,
    /// A segment is closed once it holds this much.
    pub segment: u64,
}

impl Limits {
    /// `total` bytes in eight segments (at least 64 KiB each).
    pub fn with_total(total: u64) -> Limits {
        Limits {
            total,
            segment: (total / 8).max(64 * 1024),
        }
    }
}

fn segment_name(first_id: u64) -> String {
    format!("events-{first_id:020}.log")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    name.strip_prefix("events-")?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

fn header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    h
}

/// Append one record's bytes to `out`, encoding through `scratch` (both reused, so no
/// allocation once they have grown).
fn encode(ev: &Event, out: &mut Vec<u8>, scratch: &mut Vec<u8>) {
    scratch.clear();
    *scratch = match postcard::to_extend(ev, std::mem::take(scratch)) {
        Ok(payload) => payload,
        Err(e) => {
            log::warn!("event {} not written to the on-disk journal: {e}", ev.id);
            return;
        }
    };
    out.extend_from_slice(&(scratch.len() as u32).to_le_bytes());
    out.extend_from_slice(&CHECKSUM.checksum(scratch).to_le_bytes());
    out.extend_from_slice(scratch);
}

/// What a segment's bytes hold.
#[derive(Debug)]
struct Scan {
    events: Vec<Event>,
    /// The end of the last whole record.
    valid_end: usize,
    /// Where reading stopped before the end, and why.
    bad: Option<(usize, String)>,
}

/// Read a segment: `Err` if its header is not this format.
fn scan(bytes: &[u8]) -> Result<Scan, String> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return Err("not an arje event log (bad header)".into());
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    // Protocol 6 only appended `EventKind` variants: a version 5 segment reads the same.
    if !(EVENTS_SINCE..=PROTOCOL_VERSION).contains(&version) {
        return Err(format!(
            "written with protocol version {version}, this arje reads {PROTOCOL_VERSION}"
        ));
    }
    let mut at = HEADER_LEN;
    let mut events = Vec::new();
    let bad = loop {
        if at == bytes.len() {
            break None;
        }
        let Some(head) = bytes.get(at..at + RECORD_HEADER) else {
            break Some((at, "a record header cut short".to_string()));
        };
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
        if len == 0 || len > MAX_RECORD {
            break Some((at, format!("a record length of {len}")));
        }
        let Some(payload) = bytes.get(at + RECORD_HEADER..at + RECORD_HEADER + len) else {
            break Some((at, format!("a record of {len} bytes cut short")));
        };
        if CHECKSUM.checksum(payload) != crc {
            break Some((at, "a checksum mismatch".to_string()));
        }
        match postcard::from_bytes::<Event>(payload) {
            Ok(ev) => events.push(ev),
            Err(e) => break Some((at, format!("an undecodable event ({e})"))),
        }
        at += RECORD_HEADER + len;
    };
    Ok(Scan {
        events,
        valid_end: at,
        bad,
    })
}

/// The segments in `dir`, oldest first, as (first id, name).
fn segments(dir: &StateDir) -> Vec<(u64, String)> {
    let mut list: Vec<(u64, String)> = dir
        .names()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| {
            let n = n.into_string().ok()?;
            Some((parse_segment_name(&n)?, n))
        })
        .collect();
    list.sort();
    list
}

/// What opening the log found.
#[derive(Debug, Default)]
pub struct Opened {
    /// The id of the newest event on disk.
    pub last_id: Option<u64>,
    /// Damage found and dealt with, one sentence each (for the journal).
    pub warnings: Vec<String>,
}

/// The on-disk journal of one directory.
pub struct EventLog {
    tx: Option<SyncSender<Msg>>,
    thread: Option<JoinHandle<()>>,
    /// The loop's own handle on the directory, for reading.
    dir: StateDir,
    lost: Arc<AtomicU64>,
    /// Appended, not yet handed to the writer (at most [`BATCH`]).
    pending: Vec<Event>,
}

enum Msg {
    Events(Vec<Event>),
    /// Answered once everything sent before is written and synced.
    Flush(SyncSender<()>),
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog")
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl EventLog {
    /// Open (creating) the log in `dir`, repair what a crash left, and start the writer.
    ///
    /// Start it *after* the loop blocked its signals: the thread inherits the mask.
    pub fn open(dir: StateDir, limits: Limits) -> std::io::Result<(EventLog, Opened)> {
        let mut opened = Opened::default();
        let list = segments(&dir);
        let cap = limits.total.max(limits.segment) * 2 + MAX_RECORD as u64;
        let mut tail: Option<(String, u64)> = None;
        for (i, (_, name)) in list.iter().enumerate() {
            let last = i + 1 == list.len();
            let bytes = match read_regular_at(dir.fd(), name, cap) {
                Ok(Some(b)) => b,
                Ok(None) => continue,
                Err(e) => {
                    set_aside(&dir, name, &format!("cannot be read ({e})"), &mut opened);
                    continue;
                }
            };
            if last && bytes.len() < HEADER_LEN && header().starts_with(&bytes) {
                // Made, and cut before its header was whole: a crash between the
                // segment's creation and its first write. Nothing was in it.
                let _ = dir.remove(name);
                opened.warnings.push(format!(
                    "event journal {}: a segment cut before its header was written (a \
                     crash as it was made) removed; it held no event",
                    dir.join(name).display()
                ));
                continue;
            }
            let scan = match scan(&bytes) {
                Ok(s) => s,
                Err(why) => {
                    set_aside(&dir, name, &why, &mut opened);
                    continue;
                }
            };
            if let Some(ev) = scan.events.last() {
                opened.last_id = Some(opened.last_id.map_or(ev.id, |l| l.max(ev.id)));
            }
            match (scan.bad, last) {
                (Some((at, why)), true) => {
                    let dropped = bytes.len() - scan.valid_end;
                    let truncated = dir
                        .open_append(name)
                        .and_then(|f| f.set_len(scan.valid_end as u64).map(|()| f))
                        .and_then(|f| f.sync_all());
                    match truncated {
                        Ok(()) => opened.warnings.push(format!(
                            "event journal {}: torn tail at offset {at} ({why}): {dropped} \
                             bytes after the last whole record truncated",
                            dir.join(name).display()
                        )),
                        Err(e) => {
                            set_aside(
                                &dir,
                                name,
                                &format!("{why} at offset {at}, and truncating failed ({e})"),
                                &mut opened,
                            );
                            continue;
                        }
                    }
                }
                (Some((at, why)), false) => {
                    set_aside(&dir, name, &format!("{why} at offset {at}"), &mut opened);
                    continue;
                }
                (None, _) => {}
            }
            if last {
                tail = Some((name.clone(), scan.valid_end as u64));
            }
        }
        let (tx, rx) = sync_channel(QUEUE / BATCH);
        let writer = Writer {
            dir: dir.try_clone()?,
            limits,
            file: None,
            size: 0,
            tail,
        };
        let thread = crate::runtime::signals::spawn_blocked("arje-events", move || writer.run(rx))?;
        Ok((
            EventLog {
                tx: Some(tx),
                thread: Some(thread),
                dir,
                lost: Arc::new(AtomicU64::new(0)),
                pending: Vec::new(),
            },
            opened,
        ))
    }

    /// Queue `ev` for the disk; never blocks. Handed to the writer with the others of
    /// this turn ([`EventLog::send_pending`]), or at once when [`BATCH`] wait.
    pub fn append(&mut self, ev: &Event) {
        if self.tx.is_none() {
            return;
        }
        self.pending.push(ev.clone());
        if self.pending.len() >= BATCH {
            self.send_pending();
        }
    }

    /// Events kept and not yet handed to the writer thread (tests).
    #[cfg(test)]
    pub fn unsent(&self) -> usize {
        self.pending.len()
    }

    /// Hand what was appended to the writer, as one message; never blocks. With
    /// `QUEUE / BATCH` messages already waiting, these events are counted lost.
    pub fn send_pending(&mut self) {
        let Some(tx) = &self.tx else { return };
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        let n = batch.len() as u64;
        match tx.try_send(Msg::Events(batch)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.lost.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Events not written because the writer was behind (or gone).
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// Wait (at most `bound`) until everything appended so far is written and synced:
    /// before a re-exec (exec ends the thread) and at shutdown.
    pub fn flush(&mut self, bound: Duration) -> bool {
        self.send_pending();
        let Some(tx) = &self.tx else { return false };
        let (ack_tx, ack_rx) = sync_channel(1);
        if tx.send(Msg::Flush(ack_tx)).is_err() {
            return false;
        }
        ack_rx.recv_timeout(bound).is_ok()
    }

    /// Events on disk with `after < id < before`, oldest first, at most `cap` of them.
    /// Read on the caller's thread; a segment deleted meanwhile is skipped.
    pub fn read_between(&self, after: u64, before: u64, cap: usize) -> Vec<Event> {
        let list = segments(&self.dir);
        // The segment holding `after + 1` is the last one starting at or before it.
        let from = list
            .iter()
            .rposition(|(first, _)| *first <= after.saturating_add(1))
            .unwrap_or(0);
        let mut out = Vec::new();
        for (first, name) in &list[from..] {
            if *first >= before || out.len() >= cap {
                break;
            }
            let Ok(Some(bytes)) = read_regular_at(self.dir.fd(), name, u64::MAX) else {
                continue;
            };
            let Ok(scan) = scan(&bytes) else { continue };
            out.extend(
                scan.events
                    .into_iter()
                    .filter(|e| e.id > after && e.id < before)
                    .take(cap - out.len()),
            );
        }
        out
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        // Closing the channel ends the thread after it wrote what was queued.
        self.send_pending();
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn set_aside(dir: &StateDir, name: &str, why: &str, opened: &mut Opened) {
    let to = format!("{name}.corrupt");
    let done = dir.rename(name, &to);
    opened.warnings.push(match done {
        Ok(()) => format!(
            "event journal {}: {why}; set aside as {to}, its events are lost",
            dir.join(name).display()
        ),
        Err(e) => format!(
            "event journal {}: {why}; could not set it aside ({e})",
            dir.join(name).display()
        ),
    });
}

/// The writer thread's state.
struct Writer {
    dir: StateDir,
    limits: Limits,
    file: Option<File>,
    /// Bytes in the open segment.
    size: u64,
    /// The last segment found at open and its length, appended to first.
    tail: Option<(String, u64)>,
}

impl Writer {
    /// Encode `ev` onto `batch`; a new segment before its record if it would overflow
    /// the open one, what precedes it written there first. Returns `failing` as
    /// [`Writer::report`] leaves it.
    fn add(
        &mut self,
        ev: &Event,
        batch: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
        mut failing: bool,
    ) -> bool {
        let start = batch.len();
        encode(ev, batch, scratch);
        let len = (batch.len() - start) as u64;
        if self.size > HEADER_LEN as u64 && self.size + len > self.limits.segment {
            let record = batch.split_off(start);
            let r = self.write(batch);
            failing = self.report(r, failing);
            batch.clear();
            self.file = None;
            let r = self.start_segment(ev.id);
            failing = self.report(r, failing);
            batch.extend_from_slice(&record);
        } else if self.file.is_none() {
            let r = self.start_segment(ev.id);
            failing = self.report(r, failing);
        }
        self.size += len;
        failing
    }

    fn run(mut self, rx: Receiver<Msg>) {
        let mut batch = Vec::with_capacity(4096);
        let mut scratch = Vec::with_capacity(512);
        let mut acks = Vec::new();
        let mut failing = false;
        while let Ok(first) = rx.recv() {
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Events(events) => {
                        for ev in &events {
                            failing = self.add(ev, &mut batch, &mut scratch, failing);
                        }
                    }
                    Msg::Flush(ack) => acks.push(ack),
                }
                if batch.len() < (1 << 20) {
                    next = rx.try_recv().ok();
                }
            }
            let r = self.write(&batch);
            failing = self.report(r, failing);
            batch.clear();
            for ack in acks.drain(..) {
                let _ = ack.send(());
            }
        }
        if let Some(f) = &self.file {
            let _ = f.sync_data();
        }
    }

    /// Log a failure once per run of failures.
    fn report(&self, r: std::io::Result<()>, failing: bool) -> bool {
        match r {
            Ok(()) => false,
            Err(e) => {
                if !failing {
                    log::error!(
                        "event journal {}: {e}; events are kept in memory only until it works",
                        self.dir.path().display()
                    );
                }
                true
            }
        }
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let Some(f) = self.file.as_mut() else {
            return Err(std::io::Error::other("no open segment"));
        };
        f.write_all(bytes)?;
        f.sync_data()
    }

    /// Open the segment to append to: the tail found at open if it has room, else a new
    /// one named after `first_id`; then drop the oldest segments past the total.
    fn start_segment(&mut self, first_id: u64) -> std::io::Result<()> {
        if let Some((name, len)) = self.tail.take() {
            if len < self.limits.segment {
                self.file = Some(self.dir.open_append(&name)?);
                self.size = len;
                return Ok(());
            }
        }
        let name = segment_name(first_id);
        let mut f = self.dir.open_append(&name)?;
        f.write_all(&header())?;
        self.dir.sync()?;
        self.file = Some(f);
        self.size = HEADER_LEN as u64;
        self.prune(&name);
        Ok(())
    }

    /// Delete the oldest segments (never `current`) while all of them exceed the total.
    fn prune(&self, current: &str) {
        let sizes: Vec<(String, u64)> = segments(&self.dir)
            .into_iter()
            .map(|(_, n)| {
                let len = rustix::fs::statat(
                    self.dir.fd(),
                    n.as_str(),
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_or(0, |st| st.st_size as u64);
                (n, len)
            })
            .collect();
        let mut total: u64 = sizes.iter().map(|(_, l)| l).sum();
        for (name, len) in &sizes {
            if total <= self.limits.total || name == current {
                break;
            }
            if self.dir.remove(name).is_ok() {
                total -= len;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shuma_card::EventKind;

    fn dir() -> (tempfile::TempDir, StateDir) {
        let t = tempfile::tempdir().unwrap();
        let d = StateDir::open(&t.path().join("events"), None).unwrap();
        (t, d)
    }

    fn ev(id: u64) -> Event {
        Event {
            id,
            mono_us: id * 10,
            unix_ms: 1_700_000_000_000 + id,
            kind: EventKind::Warning {
                message: format!("event number {id}"),
            },
        }
    }

    /// Append `ids`, waiting for the writer every half queue so that none is lost.
    fn write_all(log: &mut EventLog, ids: std::ops::RangeInclusive<u64>) {
        for id in ids {
            log.append(&ev(id));
            if id % (QUEUE as u64 / 2) == 0 {
                assert!(log.flush(Duration::from_secs(10)));
            }
        }
        assert!(log.flush(Duration::from_secs(10)));
        assert_eq!(log.lost(), 0);
    }

    fn ids(events: &[Event]) -> Vec<u64> {
        events.iter().map(|e| e.id).collect()
    }

    #[test]
    fn test_events_written_are_read_back_after_reopen_by_cursor() {
        // Arrange
        let (t, d) = dir();
        let (mut log, opened) =
            EventLog::open(d, Limits::with_total(crate::JOURNAL_MAX_DEFAULT)).unwrap();
        assert_eq!(opened.last_id, None);
        write_all(&mut log, 1..=100);
        drop(log);

        // Act
        let d = StateDir::open(&t.path().join("events"), None).unwrap();
        let (log, opened) =
            EventLog::open(d, Limits::with_total(crate::JOURNAL_MAX_DEFAULT)).unwrap();
        let after_40 = log.read_between(40, u64::MAX, 1000);
        let capped = log.read_between(0, 50, 5);

        // Assert
        assert_eq!(opened.last_id, Some(100));
        assert!(opened.warnings.is_empty(), "{:?}", opened.warnings);
        assert_eq!(ids(&after_40), (41..=100).collect::<Vec<_>>());
        assert_eq!(after_40[0], ev(41));
        assert_eq!(ids(&capped), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn test_torn_tail_is_truncated_at_the_last_whole_record_with_a_warning() {
        // Arrange: 10 events, then half a record appended, as a power cut leaves it.
        let (t, d) = dir();
        let (mut log, _) =
            EventLog::open(d, Limits::with_total(crate::JOURNAL_MAX_DEFAULT)).unwrap();
        write_all(&mut log, 1..=10);
        drop(log);
        let seg = t.path().join("events").join(segment_name(1));
        let whole = std::fs::metadata(&seg).unwrap().len();
        let mut torn = Vec::new();
        encode(&ev(11), &mut torn, &mut Vec::new());
        torn.truncate(torn.len() / 2);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&seg)
            .unwrap()
            .write_all(&torn)
            .unwrap();

        // Act
        let d = StateDir::open(&t.path().join("events"), None).unwrap();
        let (mut log, opened) =
            EventLog::open(d, Limits::with_total(crate::JOURNAL_MAX_DEFAULT)).unwrap();
        write_all(&mut log, 11..=12);

        // Assert: the tail is gone, the warning says where, and appending goes on.
        assert_eq!(opened.last_id, Some(10));
        assert_eq!(opened.warnings.len(), 1, "{:?}", opened.warnings);
        let w = &opened.warnings[0];
        assert!(w.contains(&format!("torn tail at offset {whole}")), "{w}");
        assert!(w.contains(&segment_name(1)), "{w}");
        assert_eq!(
            ids(&log.read_between(0, u64::MAX, 100)),
            (1..=12).collect::<Vec<_>>()
        );
    }

    #[test]
    fn test_corrupt_record_in_an_older_segment_sets_it_aside_and_the_rest_reads() {
        // Arrange: small segments, so 200 events fill several; flip a byte in the first.
        let (t, d) = dir();
        let limits = Limits {
            total: 1 << 30,
            segment: 2048,
        };
        let (mut log, _) = EventLog::open(d, limits).unwrap();
        write_all(&mut log, 1..=200);
        drop(log);
        let names = segments(&StateDir::open(&t.path().join("events"), None).unwrap());
        assert!(names.len() >= 3, "{names:?}");
        let first = t.path().join("events").join(&names[0].1);
        let mut bytes = std::fs::read(&first).unwrap();
        bytes[HEADER_LEN + RECORD_HEADER + 3] ^= 0xff;
        std::fs::write(&first, &bytes).unwrap();

        // Act
        let d = StateDir::open(&t.path().join("events"), None).unwrap();
        let (log, opened) = EventLog::open(d, limits).unwrap();
        let read = log.read_between(0, u64::MAX, 1000);

        // Assert
        assert_eq!(opened.warnings.len(), 1, "{:?}", opened.warnings);
        let w = &opened.warnings[0];
        assert!(w.contains("checksum mismatch at offset 12"), "{w}");
        assert!(w.contains("set aside"), "{w}");
        assert!(t
            .path()
            .join("events")
            .join(format!("{}.corrupt", names[0].1))
            .exists());
        assert_eq!(read.last().map(|e| e.id), Some(200));
        assert_eq!(read.first().map(|e| e.id), Some(names[1].0));
        assert_eq!(opened.last_id, Some(200));
    }

    #[test]
    fn test_log_past_its_total_drops_oldest_segments_whole() {
        // Arrange
        let (_t, d) = dir();
        let limits = Limits {
            total: 8 * 1024,
            segment: 2048,
        };
        let (mut log, _) = EventLog::open(d, limits).unwrap();

        // Act
        write_all(&mut log, 1..=2000);
        let on_disk: u64 = segments(&log.dir)
            .iter()
            .map(|(_, n)| std::fs::metadata(log.dir.join(n)).unwrap().len())
            .sum();
        let read = log.read_between(0, u64::MAX, 10_000);

        // Assert: bounded, the newest kept, and what is kept is contiguous.
        assert!(on_disk <= limits.total + limits.segment, "{on_disk} bytes");
        assert_eq!(read.last().map(|e| e.id), Some(2000));
        let first = read[0].id;
        assert!(first > 1);
        assert_eq!(ids(&read), (first..=2000).collect::<Vec<_>>());
    }

    #[test]
    fn test_newest_segment_cut_before_its_header_is_removed_not_set_aside() {
        // Arrange: a log, then a newer segment holding 5 bytes of a header (a crash just
        // after the segment was created).
        let (t, d) = dir();
        let (mut log, _) =
            EventLog::open(d, Limits::with_total(crate::JOURNAL_MAX_DEFAULT)).unwrap();
        write_all(&mut log, 1..=3);
        drop(log);
        let cut = t.path().join("events").join(segment_name(4));
        std::fs::write(&cut, &header()[..5]).unwrap();

        // Act
        let d = StateDir::open(&t.path().join("events"), None).unwrap();
        let (mut log, opened) =
            EventLog::open(d, Limits::with_total(crate::JOURNAL_MAX_DEFAULT)).unwrap();
        write_all(&mut log, 4..=5);

        // Assert
        assert_eq!(opened.warnings.len(), 1, "{:?}", opened.warnings);
        assert!(
            opened.warnings[0].contains("removed"),
            "{:?}",
            opened.warnings
        );
        assert!(!opened.warnings[0].contains("set aside"));
        assert_eq!(opened.last_id, Some(3));
        assert_eq!(ids(&log.read_between(0, u64::MAX, 10)), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn test_segment_of_another_format_is_set_aside_naming_why() {
        // Arrange
        let (t, d) = dir();
        std::fs::write(t.path().join("events").join(segment_name(1)), b"garbage!").unwrap();

        // Act
        let (mut log, opened) =
            EventLog::open(d, Limits::with_total(crate::JOURNAL_MAX_DEFAULT)).unwrap();
        write_all(&mut log, 1..=3);

        // Assert
        assert_eq!(opened.warnings.len(), 1);
        assert!(
            opened.warnings[0].contains("not an arje event log"),
            "{:?}",
            opened.warnings
        );
        assert_eq!(ids(&log.read_between(0, u64::MAX, 10)), vec![1, 2, 3]);
    }
}
