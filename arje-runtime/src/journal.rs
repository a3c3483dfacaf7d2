//! The event journal: a bounded ring of lifecycle events with strictly increasing ids.
//! When full, the oldest events are dropped and counted; ids are never reused.

use std::collections::VecDeque;

use shuma_card::{Event, EventKind};

pub const DEFAULT_JOURNAL: usize = 4096;

#[derive(Debug)]
pub struct Journal {
    events: VecDeque<Event>,
    cap: usize,
    next_id: u64,
    dropped: u64,
}

impl Journal {
    pub fn new(cap: usize, next_id: u64) -> Self {
        Journal {
            events: VecDeque::new(),
            cap,
            next_id: next_id.max(1),
            dropped: 0,
        }
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
        self.events.back().expect("just pushed")
    }

    /// Events with id > `after`, oldest first.
    pub fn after(&self, after: u64) -> Vec<Event> {
        let start = self.events.partition_point(|e| e.id <= after);
        self.events.range(start..).cloned().collect()
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
