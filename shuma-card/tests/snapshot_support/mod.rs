//! Shared by the snapshot tests: encoding a [`Snapshot`] through the parts encoder, the
//! way the runtime does (specs pre-encoded, everything else borrowed).

use shuma_card::snapshot::{
    encode_parts, encode_spec, CommandParts, Snapshot, SnapshotHead, WorkspaceParts,
};

/// `s` encoded by [`encode_parts`] from borrowed views of its fields.
pub fn encode_via_parts(s: &Snapshot) -> Vec<u8> {
    let specs: Vec<Vec<u8>> = s.workspaces.iter().map(|w| encode_spec(&w.spec)).collect();
    let head = SnapshotHead {
        written_unix_ms: s.written_unix_ms,
        boot_id: &s.boot_id,
        arje_pid: s.arje_pid,
        next_event_id: s.next_event_id,
        next_command_id: s.next_command_id,
        listener_fd: s.listener_fd,
    };
    let workspaces = s
        .workspaces
        .iter()
        .zip(&specs)
        .map(|(w, spec_bytes)| WorkspaceParts {
            spec_bytes,
            created_unix_ms: w.created_unix_ms,
            stopping: w.stopping,
            commands: w.commands.iter().map(|c| CommandParts {
                id: c.id,
                name: &c.name,
                restarts: c.restarts,
                recent_restarts_unix_ms: c.recent_restarts_unix_ms.iter().copied(),
                last_exit: c.last_exit,
                done: c.done,
                failed: c.failed.as_deref(),
                live: c.live,
            }),
            stats: &w.stats,
        });
    let mut out = Vec::new();
    encode_parts(&head, workspaces, &mut out);
    out
}
