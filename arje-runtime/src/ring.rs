//! Bounded byte rings for captured output: a full ring drops the oldest bytes and
//! counts them, it never blocks the writer (dinit's log buffers do the same).

use std::collections::VecDeque;

/// Default capacity of one stream's ring.
pub const DEFAULT_RING: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct Ring {
    buf: VecDeque<u8>,
    cap: usize,
    /// Bytes dropped from the front since the ring was created.
    dropped: u64,
    /// Bytes ever written: `written - buf.len()` is the offset of the oldest byte kept.
    written: u64,
}

impl Ring {
    pub fn new(cap: usize) -> Self {
        Ring {
            buf: VecDeque::new(),
            cap,
            dropped: 0,
            written: 0,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.written += data.len() as u64;
        let data = if data.len() > self.cap {
            self.dropped += (data.len() - self.cap) as u64;
            &data[data.len() - self.cap..]
        } else {
            data
        };
        let over = (self.buf.len() + data.len()).saturating_sub(self.cap);
        if over > 0 {
            self.buf.drain(..over);
            self.dropped += over as u64;
        }
        self.buf.extend(data);
    }

    /// A ring carried across a re-exec: its bytes and counters.
    pub fn restore(cap: usize, data: &[u8], written: u64, dropped: u64) -> Self {
        let mut ring = Ring::new(cap);
        ring.push(data);
        ring.written = written.max(data.len() as u64);
        ring.dropped = dropped;
        ring
    }

    /// Total bytes ever written: a follower's cursor.
    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Bytes from absolute offset `from` on, and how many bytes before them were lost
    /// (dropped from the ring before the reader got to them).
    pub fn read_from(&self, from: u64) -> (Vec<u8>, u64) {
        let oldest = self.written - self.buf.len() as u64;
        let start = from.max(oldest);
        let lost = start - from.min(start);
        let skip = (start - oldest) as usize;
        (self.buf.iter().skip(skip).copied().collect(), lost)
    }

    pub fn contents(&self) -> Vec<u8> {
        self.buf.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_ring_overflow_drops_oldest_and_counts() {
        let mut ring = Ring::new(8);
        ring.push(b"12345");
        ring.push(b"6789AB");
        assert_eq!(ring.contents(), b"456789AB");
        assert_eq!(ring.dropped(), 3);
        assert_eq!(ring.written(), 11);
    }

    #[test]
    fn test_ring_huge_write_keeps_tail() {
        let mut ring = Ring::new(4);
        ring.push(b"abcdefgh");
        assert_eq!(ring.contents(), b"efgh");
        assert_eq!(ring.dropped(), 4);
    }

    #[test]
    fn test_ring_read_from_cursor_reports_lost_bytes() {
        let mut ring = Ring::new(4);
        ring.push(b"ab");
        let (data, lost) = ring.read_from(0);
        assert_eq!((data.as_slice(), lost), (&b"ab"[..], 0));
        ring.push(b"cdefg");
        let (data, lost) = ring.read_from(2);
        assert_eq!((data.as_slice(), lost), (&b"defg"[..], 1));
    }
}
