//! Format version 2, the current format: the payload is the postcard encoding of
//! [`Snapshot`] as declared in `snapshot.rs`, with the saved types of `saved.rs`.
//!
//! v2 differs from v1 in two ways. The snapshot stores its own copies of the card, event
//! and protocol types (`saved.rs`), so a card field added for a new feature no longer
//! changes the format unnoticed. And workspaces carry ids: [`Snapshot::next_workspace_id`]
//! and [`WorkspaceState::id`](super::WorkspaceState::id), so that an id is never reused,
//! even across a re-exec or a reboot.
//!
//! When v3 ships, the v2 types are frozen here as `SnapshotV2`, `SavedWorkspaceSpecV2` and
//! so on, as `v1.rs` froze v1's, and this function migrates them (`docs/STATE.md`).

use super::{decode_exact, Snapshot, SnapshotError};

/// Decodes a v2 payload strictly (leftover bytes are an error).
pub(super) fn decode(payload: &[u8]) -> Result<Snapshot, SnapshotError> {
    decode_exact(payload)
}
