//! Format version 3, the current format: the payload is the postcard encoding of
//! [`Snapshot`] as declared in `snapshot.rs`, with the saved types of `saved.rs`.
//!
//! v3 differs from v2 in two ways, both for readiness, dependencies and health (issue
//! 10). A saved command spec holds the card's new fields (`ready`, `ready_timeout_ms`,
//! `watchdog_ms`, `after`, `requires`, `wants`, `health`) as the saved types
//! [`SavedReadiness`](super::SavedReadiness), [`SavedProbe`](super::SavedProbe),
//! [`SavedHealthCheck`](super::SavedHealthCheck) and [`SavedDepRef`](super::SavedDepRef).
//! And [`CommandState`](super::CommandState) records whether the current run was ready,
//! the last `STATUS=` text, and (for a re-exec) the notify socket's fd.
//!
//! When v4 ships, the v3 types are frozen in this file as `SnapshotV3`,
//! `SavedWorkspaceSpecV3` and so on, as `v2.rs` froze v2's, and this function migrates
//! them (`docs/STATE.md`).

use super::{decode_exact, Snapshot, SnapshotError};

/// Decodes a v3 payload strictly (leftover bytes are an error).
pub(super) fn decode(payload: &[u8]) -> Result<Snapshot, SnapshotError> {
    decode_exact(payload)
}
