//! The memory controller: memory.max, memory.high, memory.swap.max (bytes or "max") and
//! memory.events.
//!
//! Kernel rules that bite here:
//! - Lowering memory.max below memory.current makes the write itself reclaim, and OOM-kill
//!   inside the workspace if reclaim fails; the write still succeeds. So a lowered limit is
//!   followed by a read of memory.events to report the kills it caused.
//! - `max`/`oom` are counted in the cgroup whose limit was hit (the workspace, where arje
//!   puts the limits). `oom_kill` is counted in the victim's cgroup (a command leaf) and,
//!   unless cgroup2 is mounted with `memory_localevents`, in each ancestor too.

use super::events::keyed_value;

/// memory.events. Keys a kernel does not have (oom_group_kill came in 5.17) read as 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryEvents {
    /// Reclaimed below memory.low.
    pub low: u64,
    /// Throttled at memory.high.
    pub high: u64,
    /// Usage hit memory.max.
    pub max: u64,
    /// The OOM killer was invoked (reclaim at memory.max failed).
    pub oom: u64,
    /// Processes the OOM killer killed.
    pub oom_kill: u64,
    /// Whole-cgroup kills (memory.oom.group).
    pub oom_group_kill: u64,
}

impl MemoryEvents {
    pub fn parse(text: &str) -> MemoryEvents {
        MemoryEvents {
            low: keyed_value(text, "low"),
            high: keyed_value(text, "high"),
            max: keyed_value(text, "max"),
            oom: keyed_value(text, "oom"),
            oom_kill: keyed_value(text, "oom_kill"),
            oom_group_kill: keyed_value(text, "oom_group_kill"),
        }
    }

    /// What happened between `earlier` and `self` (counters only grow; a cgroup that was
    /// recreated in between saturates to 0 rather than wrapping).
    pub fn since(&self, earlier: &MemoryEvents) -> MemoryEvents {
        MemoryEvents {
            low: self.low.saturating_sub(earlier.low),
            high: self.high.saturating_sub(earlier.high),
            max: self.max.saturating_sub(earlier.max),
            oom: self.oom.saturating_sub(earlier.oom),
            oom_kill: self.oom_kill.saturating_sub(earlier.oom_kill),
            oom_group_kill: self.oom_group_kill.saturating_sub(earlier.oom_group_kill),
        }
    }
}

/// A byte limit the kernel's way: decimal bytes, or "max" for none. The kernel rounds a
/// byte count down to a whole page.
pub(crate) fn bytes_value(limit: Option<u64>) -> String {
    limit.map_or_else(|| "max".to_string(), |b| b.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_memory_events_parse_all_keys_read() {
        // Arrange
        let text = "low 1\nhigh 2\nmax 3\noom 4\noom_kill 5\noom_group_kill 6\n";

        // Act
        let ev = MemoryEvents::parse(text);

        // Assert
        assert_eq!(
            ev,
            MemoryEvents {
                low: 1,
                high: 2,
                max: 3,
                oom: 4,
                oom_kill: 5,
                oom_group_kill: 6
            }
        );
    }

    #[test]
    fn test_memory_events_parse_old_kernel_missing_keys_zero() {
        // Arrange: a 5.4 kernel has no oom_group_kill.
        let text = "low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\n";

        // Act
        let ev = MemoryEvents::parse(text);

        // Assert
        assert_eq!(ev.max, 7);
        assert_eq!(ev.oom_kill, 1);
        assert_eq!(ev.oom_group_kill, 0);
    }

    #[test]
    fn test_memory_events_since_counts_difference() {
        // Arrange
        let before = MemoryEvents {
            oom: 1,
            oom_kill: 1,
            ..Default::default()
        };
        let after = MemoryEvents {
            oom: 3,
            oom_kill: 2,
            max: 9,
            ..Default::default()
        };

        // Act
        let delta = after.since(&before);

        // Assert
        assert_eq!(
            delta,
            MemoryEvents {
                oom: 2,
                oom_kill: 1,
                max: 9,
                ..Default::default()
            }
        );
    }

    #[test]
    fn test_bytes_value_none_is_max() {
        assert_eq!(bytes_value(None), "max");
        assert_eq!(bytes_value(Some(33_554_432)), "33554432");
    }
}
