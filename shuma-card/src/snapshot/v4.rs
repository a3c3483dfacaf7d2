//! Format version 4, the current format: the payload is the postcard encoding of
//! [`Snapshot`] as declared in `snapshot.rs`, with the saved types of `saved.rs` and
//! `saved_pipeline.rs`.
//!
//! v4 differs from v3 by pipelines (issue 13): [`SavedWorkspaceSpec`](super::SavedWorkspaceSpec)
//! holds the workspace's `pipelines`, [`WorkspaceState`](super::WorkspaceState) the restart
//! record of each ([`PipelineState`](super::PipelineState)), and
//! [`Snapshot::saved_pipelines`] the pipelines saved by name. When v5 ships, the v4 types
//! are frozen in this file, as `v3.rs` froze v3's, and this function migrates them.

use super::{decode_exact, Snapshot, SnapshotError};

/// Decodes a v4 payload strictly (leftover bytes are an error).
pub(super) fn decode(payload: &[u8]) -> Result<Snapshot, SnapshotError> {
    decode_exact(payload)
}
