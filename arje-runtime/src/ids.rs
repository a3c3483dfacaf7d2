//! Typed ids. Each kind of thing the loop names gets its own newtype, handed out by an
//! [`IdGen`] that only counts up: an id is never reused, so a timer, an epoll token or a
//! follower that outlives its subject finds nothing instead of finding a newcomer that
//! happens to share a name or a number (a TTL keyed by a workspace's name once stopped a
//! re-created workspace of the same name).

use std::marker::PhantomData;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(u64);

        impl $name {
            /// The number on the wire, in the snapshot and in epoll's data (not every
            /// kind goes to each of them).
            #[allow(dead_code)]
            pub fn raw(self) -> u64 {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id_type!(
    /// A workspace. Saved in the snapshot, so never reused across a re-exec either.
    WorkspaceId
);
id_type!(
    /// A command instance: a card's service or task, or one `shuma run`. Saved in the
    /// snapshot and shown on the wire (`shuma ps`, `run --wait`).
    CommandId
);
id_type!(
    /// A control connection.
    ConnId
);
id_type!(
    /// A watched cgroup event file.
    WatchId
);
id_type!(
    /// A captured output pipe.
    PipeId
);
id_type!(
    /// A live pipeline (a card's `[[pipeline]]` or one `shuma pipeline run`). Not saved:
    /// a restore numbers them afresh, and nothing outside the loop names one.
    PipelineId
);
id_type!(
    /// A fan-out copier: one pipeline output that arje copies to several readers.
    FanoutId
);

/// Hands out ids of one kind in increasing order, starting after those already used.
#[derive(Debug)]
pub struct IdGen<T> {
    next: u64,
    kind: PhantomData<T>,
}

impl<T: From<u64>> IdGen<T> {
    /// The first id handed out is `next` (at least 1: 0 is never an id).
    pub fn starting_at(next: u64) -> Self {
        IdGen {
            next: next.max(1),
            kind: PhantomData,
        }
    }

    pub fn next(&mut self) -> T {
        let id = self.next;
        self.next += 1;
        T::from(id)
    }

    /// The id the next call returns: what the snapshot records.
    pub fn peek(&self) -> u64 {
        self.next
    }

    /// Never hand out `used` or anything below it (restored state).
    pub fn skip_past(&mut self, used: u64) {
        self.next = self.next.max(used.saturating_add(1));
    }
}

impl<T: From<u64>> Default for IdGen<T> {
    fn default() -> Self {
        IdGen::starting_at(1)
    }
}

// An id read back from the wire, the snapshot or epoll's data: only ids this runtime
// handed out can match anything it holds.
macro_rules! from_u64 {
    ($($name:ident),*) => {$(
        impl From<u64> for $name {
            fn from(raw: u64) -> Self {
                $name(raw)
            }
        }
    )*};
}
from_u64!(
    WorkspaceId,
    CommandId,
    ConnId,
    WatchId,
    PipeId,
    PipelineId,
    FanoutId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_idgen_never_reuses_after_skip_past() {
        // Arrange
        let mut ids: IdGen<WorkspaceId> = IdGen::default();
        let first = ids.next();

        // Act
        ids.skip_past(10);
        let later = ids.next();
        ids.skip_past(3);

        // Assert
        assert_eq!(first.raw(), 1);
        assert_eq!(later.raw(), 11);
        assert_eq!(ids.next().raw(), 12);
    }
}
