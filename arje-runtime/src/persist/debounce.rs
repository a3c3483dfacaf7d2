//! When to write the durable copy: at most once per interval, as soon as allowed.
//!
//! Pure and clock-driven: the caller passes `now` and arms its own timer (a timerfd in the
//! event loop) from [`Debounce::next_deadline`], so this is unit-tested with made-up
//! instants and never sleeps.

use std::time::{Duration, Instant};

/// Rate-limits durable writes.
///
/// A change after a quiet period is written at once (leading edge: a lone change is
/// durable with no delay); changes that follow within `min_interval` of the last write
/// are coalesced into one write when the interval ends (trailing edge: the newest state is
/// never left unwritten). Shutdown ignores the debouncer and writes unconditionally.
#[derive(Debug, Clone)]
pub struct Debounce {
    min_interval: Duration,
    /// When the oldest unwritten change happened; `None` if everything is written.
    dirty_since: Option<Instant>,
    /// When the last write was started.
    last_write: Option<Instant>,
}

impl Debounce {
    /// At most one write per `min_interval` (the design's default is one second).
    pub fn new(min_interval: Duration) -> Self {
        Debounce {
            min_interval,
            dirty_since: None,
            last_write: None,
        }
    }

    /// Records a change at `now`. Repeated calls before a write keep the first time.
    pub fn mark_dirty(&mut self, now: Instant) {
        self.dirty_since.get_or_insert(now);
    }

    /// Is there an unwritten change?
    pub fn is_dirty(&self) -> bool {
        self.dirty_since.is_some()
    }

    /// The instant at which the pending change may be written, or `None` if nothing is
    /// pending. It may be in the past: then a write is due now.
    pub fn next_deadline(&self) -> Option<Instant> {
        let dirty = self.dirty_since?;
        Some(match self.last_write {
            Some(last) => dirty.max(last + self.min_interval),
            None => dirty,
        })
    }

    /// Should the caller write now?
    pub fn due(&self, now: Instant) -> bool {
        self.next_deadline().is_some_and(|deadline| now >= deadline)
    }

    /// Records that a write of the current state was started at `now` (or handed to the
    /// [`super::DurableWriter`]). If that write then fails, call [`Debounce::mark_dirty`]
    /// again: the retry comes one interval later, not in a tight loop.
    pub fn written(&mut self, now: Instant) {
        self.last_write = Some(now);
        self.dirty_since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn test_debounce_clean_has_no_deadline_and_is_not_due() {
        // Arrange
        let t0 = Instant::now();
        let d = Debounce::new(SEC);

        // Act
        let (deadline, due) = (d.next_deadline(), d.due(t0 + 10 * SEC));

        // Assert
        assert_eq!(deadline, None);
        assert!(!due);
    }

    #[test]
    fn test_debounce_first_change_is_due_immediately() {
        // Arrange
        let t0 = Instant::now();
        let mut d = Debounce::new(SEC);

        // Act
        d.mark_dirty(t0);

        // Assert
        assert_eq!(d.next_deadline(), Some(t0));
        assert!(d.due(t0));
    }

    #[test]
    fn test_debounce_changes_within_interval_coalesce_at_interval_end() {
        // Arrange
        let t0 = Instant::now();
        let mut d = Debounce::new(SEC);
        d.mark_dirty(t0);
        d.written(t0);

        // Act: three changes inside the interval.
        for ms in [10, 200, 900] {
            d.mark_dirty(t0 + Duration::from_millis(ms));
        }

        // Assert: one write, due when the interval after the last write ends.
        assert_eq!(d.next_deadline(), Some(t0 + SEC));
        assert!(!d.due(t0 + Duration::from_millis(999)));
        assert!(d.due(t0 + SEC));
    }

    #[test]
    fn test_debounce_change_after_quiet_period_is_due_at_once() {
        // Arrange
        let t0 = Instant::now();
        let mut d = Debounce::new(SEC);
        d.mark_dirty(t0);
        d.written(t0);
        let later = t0 + 5 * SEC;

        // Act
        d.mark_dirty(later);

        // Assert
        assert_eq!(d.next_deadline(), Some(later));
        assert!(d.due(later));
    }

    #[test]
    fn test_debounce_written_clears_dirty() {
        // Arrange
        let t0 = Instant::now();
        let mut d = Debounce::new(SEC);
        d.mark_dirty(t0);

        // Act
        d.written(t0);

        // Assert
        assert!(!d.is_dirty());
        assert_eq!(d.next_deadline(), None);
        assert!(!d.due(t0 + 10 * SEC));
    }
}
