//! Shared by the snapshot tests: encoding a [`Snapshot`] through the parts encoder, the
//! way the runtime does (specs pre-encoded, everything else borrowed).

use shuma_card::protocol::StatsSample;
use shuma_card::snapshot::{
    encode_parts, encode_spec, CommandParts, SavedExitStatus, SavedStatsSample, Snapshot,
    SnapshotHead, WorkspaceParts,
};

/// `s` encoded by [`encode_parts`] from borrowed views of its fields.
pub fn encode_via_parts(s: &Snapshot) -> Vec<u8> {
    // The runtime holds the card's spec and the protocol's stats samples, not their saved
    // forms: convert them first, as the runtime's live state would hold them, then borrow.
    let specs: Vec<Vec<u8>> = s
        .workspaces
        .iter()
        .map(|w| encode_spec(&w.spec.clone().into_card()))
        .collect();
    let stats: Vec<Vec<StatsSample>> = s
        .workspaces
        .iter()
        .map(|w| {
            w.stats
                .iter()
                .cloned()
                .map(SavedStatsSample::into_protocol)
                .collect()
        })
        .collect();
    let head = SnapshotHead {
        written_unix_ms: s.written_unix_ms,
        boot_id: &s.boot_id,
        arje_pid: s.arje_pid,
        next_event_id: s.next_event_id,
        next_command_id: s.next_command_id,
        next_workspace_id: s.next_workspace_id,
        listener_fd: s.listener_fd,
        saved_pipelines: &s.saved_pipelines,
    };
    let workspaces = s
        .workspaces
        .iter()
        .zip(&specs)
        .zip(&stats)
        .map(|((w, spec_bytes), stats)| WorkspaceParts {
            id: w.id,
            spec_bytes,
            created_unix_ms: w.created_unix_ms,
            stopping: w.stopping,
            pipelines: &w.pipelines,
            commands: w.commands.iter().map(|c| CommandParts {
                id: c.id,
                name: &c.name,
                restarts: c.restarts,
                recent_restarts_unix_ms: c.recent_restarts_unix_ms.iter().copied(),
                last_exit: c.last_exit.map(SavedExitStatus::into_event),
                done: c.done,
                failed: c.failed.as_deref(),
                live: c.live,
                ready: c.ready,
                status: c.status.as_deref(),
                notify_fd: c.notify_fd,
            }),
            stats,
        });
    let mut out = Vec::new();
    encode_parts(&head, workspaces, &mut out);
    out
}
