//! The event journal: a bounded ring of lifecycle events with strictly increasing ids.
//! When full, the oldest events are dropped and counted; ids are never reused. With an
//! on-disk log ([`EventLog`], `persist/eventlog.rs`) every event is also appended there,
//! and a cursor older than the ring is served from the disk.

use std::collections::VecDeque;
use std::time::Duration;

use shuma_card::{Event, EventKind};

use crate::persist::EventLog;

pub const DEFAULT_JOURNAL: usize = 4096;
/// At most this many events are read from disk for one request; a client pages on with
/// `--after` the last id it got.
pub const MAX_FROM_DISK: usize = 20_000;

#[derive(Debug)]
pub struct Journal {
    events: VecDeque<Event>,
    cap: usize,
    next_id: u64,
    dropped: u64,
    disk: Option<EventLog>,
    disk_losses_reported: u64,
}

impl Journal {
    pub fn new(cap: usize, next_id: u64) -> Self {
        Journal {
            events: VecDeque::new(),
            cap,
            next_id: next_id.max(1),
            dropped: 0,
            disk: None,
            disk_losses_reported: 0,
        }
    }

    /// Append every event to `disk` too; ids continue after the newest one it holds,
    /// when that is past the snapshot's (written later than the last snapshot).
    pub fn with_disk(mut self, disk: EventLog, last_on_disk: Option<u64>) -> Self {
        if let Some(last) = last_on_disk {
            self.next_id = self.next_id.max(last + 1);
        }
        self.disk = Some(disk);
        self
    }

    /// Hand this turn's events to the disk's writer (one wakeup of its thread a turn).
    pub fn end_turn(&mut self) {
        if let Some(d) = &mut self.disk {
            d.send_pending();
        }
    }

    /// Events kept for the disk and not yet handed to its writer (tests).
    #[cfg(test)]
    pub fn unsent(&self) -> Option<usize> {
        self.disk.as_ref().map(EventLog::unsent)
    }

    /// Wait (at most `bound`) until the disk has every event so far.
    pub fn flush_disk(&mut self, bound: Duration) {
        if let Some(d) = &mut self.disk {
            if !d.flush(bound) {
                log::warn!("event journal: not all events reached the disk within {bound:?}");
            }
        }
    }

    /// How many more events the disk log could not take (its writer was behind) since
    /// the last call, if any.
    pub fn new_disk_losses(&mut self) -> Option<u64> {
        let lost = self.disk.as_ref().map_or(0, EventLog::lost);
        let new = lost - self.disk_losses_reported;
        self.disk_losses_reported = lost;
        (new > 0).then_some(new)
    }

    /// Record `kind` now; returns the stored event.
    pub fn push(&mut self, kind: EventKind, mono_us: u64, unix_ms: u64) -> &Event {
        if self.events.len() == self.cap {
            self.events.pop_front();
            self.dropped += 1;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.events.push_back(Event {
            id,
            mono_us,
            unix_ms,
            kind,
        });
        let ev = self.events.back().expect("just pushed");
        if let Some(d) = &mut self.disk {
            d.append(ev);
        }
        ev
    }

    /// Events with id > `after`, oldest first: from the disk those older than the ring
    /// (at most [`MAX_FROM_DISK`]), then the ring's.
    pub fn after(&self, after: u64) -> Vec<Event> {
        let ring_first = self.events.front().map_or(self.next_id, |e| e.id);
        let mut out = match &self.disk {
            Some(d) if after.saturating_add(1) < ring_first => {
                d.read_between(after, ring_first, MAX_FROM_DISK)
            }
            _ => Vec::new(),
        };
        if out.len() == MAX_FROM_DISK {
            return out;
        }
        let start = self.events.partition_point(|e| e.id <= after);
        out.extend(self.events.range(start..).cloned());
        out
    }

    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    pub fn last_id(&self) -> u64 {
        self.next_id - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warn(n: u32) -> EventKind {
        EventKind::Warning {
            message: n.to_string(),
        }
    }

    #[test]
    fn test_journal_full_drops_oldest_keeps_ids_increasing() {
        let mut j = Journal::new(3, 1);
        for n in 0..5 {
            j.push(warn(n), 0, 0);
        }
        let ids: Vec<u64> = j.after(0).iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![3, 4, 5]);
        assert_eq!(j.dropped, 2);
    }

    #[test]
    fn test_journal_after_cursor_returns_newer_only() {
        let mut j = Journal::new(10, 41);
        for n in 0..3 {
            j.push(warn(n), 0, 0);
        }
        let ids: Vec<u64> = j.after(41).iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![42, 43]);
        assert_eq!(j.last_id(), 43);
    }
}
