//! The pids controller: pids.max (tasks or "max") and pids.events.
//!
//! Kernel rule that bites here: where a refused fork is counted in pids.events changed in
//! Linux 6.13. Before it (and since, with the `pids_localevents` mount option) `max` is
//! counted in the cgroup of the task that tried to fork, i.e. the command's leaf, not in
//! the workspace that holds pids.max. Since 6.13 it is counted in the cgroup whose limit
//! was hit (the workspace) and its ancestors, and no longer in the leaf. The two are
//! disjoint, so the workspace's count is its own file plus its leaves', and a watcher
//! registers both.

use super::events::keyed_value;

/// `max` of pids.events: forks refused because pids.max was reached.
pub fn parse_pids_events(text: &str) -> u64 {
    keyed_value(text, "max")
}

/// pids.max the kernel's way: a task count, or "max".
pub(crate) fn pids_value(limit: Option<u64>) -> String {
    limit.map_or_else(|| "max".to_string(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_pids_events_max_read() {
        assert_eq!(parse_pids_events("max 12\n"), 12);
    }

    #[test]
    fn test_parse_pids_events_6_13_local_key_ignored() {
        // Arrange: pids.events.local-style extra keys must not be mistaken for `max`.
        let text = "max 2\nmax_local 5\n";

        // Act
        let max = parse_pids_events(text);

        // Assert
        assert_eq!(max, 2);
    }

    #[test]
    fn test_pids_value_none_is_max() {
        assert_eq!(pids_value(None), "max");
        assert_eq!(pids_value(Some(64)), "64");
    }
}
