//! Damaged snapshot bytes are always refused with the error that names the damage; none
//! decodes to a state and none panics.

use shuma_card::snapshot::{
    decode, encode, CommandState, SavedWorkspaceSpec, Snapshot, SnapshotError, WorkspaceState,
    HEADER_LEN, MAX_SNAPSHOT, SNAPSHOT_VERSION,
};
use shuma_card::{CommandKind, CommandSpec, WorkspaceSpec};

/// A small but non-trivial snapshot: one workspace with one service.
fn small() -> Vec<u8> {
    let cmd = CommandSpec::new("svc", CommandKind::Service, vec!["/bin/true".into()]);
    let ws = WorkspaceState {
        id: 1,
        spec: SavedWorkspaceSpec::from(&WorkspaceSpec {
            name: "demo".into(),
            commands: vec![cmd],
            ..Default::default()
        }),
        created_unix_ms: 5,
        stopping: false,
        commands: vec![CommandState {
            id: 1,
            name: "svc".into(),
            restarts: 2,
            recent_restarts_unix_ms: vec![3, 4],
            last_exit: None,
            done: false,
            failed: None,
            live: None,
            ready: false,
            status: None,
            notify_fd: None,
        }],
        stats: vec![],
        pipelines: vec![],
    };
    encode(&Snapshot {
        next_event_id: 9,
        next_workspace_id: 2,
        boot_id: "b".into(),
        workspaces: vec![ws],
        ..Snapshot::default()
    })
}

#[test]
fn test_decode_zero_length_is_too_short() {
    // Arrange
    let bytes: &[u8] = &[];

    // Act
    let result = decode(bytes);

    // Assert
    assert_eq!(result, Err(SnapshotError::TooShort { len: 0 }));
}

#[test]
fn test_decode_every_truncation_is_refused() {
    // Arrange
    let bytes = small();

    for len in 0..bytes.len() {
        // Act
        let result = decode(&bytes[..len]);

        // Assert: inside the header too short, after it the length no longer matches.
        let expected = if len < HEADER_LEN {
            SnapshotError::TooShort { len }
        } else {
            SnapshotError::LengthMismatch {
                header: bytes.len() - HEADER_LEN,
                actual: len - HEADER_LEN,
            }
        };
        assert_eq!(result, Err(expected), "truncated to {len} bytes");
    }
}

#[test]
fn test_decode_every_single_bit_flip_is_refused_by_its_field() {
    // Arrange
    let bytes = small();

    for pos in 0..bytes.len() {
        for bit in 0..8 {
            let mut damaged = bytes.clone();
            damaged[pos] ^= 1 << bit;

            // Act
            let result = decode(&damaged);

            // Assert: each header field catches its own damage; the CRC catches the rest.
            // The CRC covers the payload only, so a version flipped to another known one
            // (3 to 2 or 1) reaches that version's decoder, which must refuse the payload.
            let version = u32::from_le_bytes(damaged[8..12].try_into().unwrap());
            let known = (1..=SNAPSHOT_VERSION).contains(&version);
            let ok = match (pos, &result) {
                (0..=7, Err(SnapshotError::BadMagic)) => true,
                (8..=11, Err(SnapshotError::UnknownVersion(_))) => !known,
                (8..=11, Err(SnapshotError::Decode(_))) => known,
                (
                    12..=15,
                    Err(SnapshotError::TooLarge { .. } | SnapshotError::LengthMismatch { .. }),
                ) => true,
                (16.., Err(SnapshotError::Checksum { .. })) => true,
                _ => false,
            };
            assert!(ok, "bit {bit} of byte {pos} flipped: {result:?}");
        }
    }
}

#[test]
fn test_decode_wrong_magic_is_bad_magic() {
    // Arrange
    let mut bytes = small();
    bytes[0..8].copy_from_slice(b"NOTASNAP");

    // Act
    let result = decode(&bytes);

    // Assert
    assert_eq!(result, Err(SnapshotError::BadMagic));
}

#[test]
fn test_decode_future_version_is_unknown_version() {
    // Arrange
    let mut bytes = small();
    bytes[8..12].copy_from_slice(&(SNAPSHOT_VERSION + 1).to_le_bytes());

    // Act
    let result = decode(&bytes);

    // Assert
    assert_eq!(
        result,
        Err(SnapshotError::UnknownVersion(SNAPSHOT_VERSION + 1))
    );
}

#[test]
fn test_decode_announced_length_above_cap_is_too_large() {
    // Arrange
    let mut bytes = small();
    bytes[12..16].copy_from_slice(&((MAX_SNAPSHOT + 1) as u32).to_le_bytes());

    // Act
    let result = decode(&bytes);

    // Assert
    assert_eq!(
        result,
        Err(SnapshotError::TooLarge {
            announced: MAX_SNAPSHOT + 1
        })
    );
}

#[test]
fn test_decode_trailing_garbage_is_length_mismatch() {
    // Arrange
    let mut bytes = small();
    let payload = bytes.len() - HEADER_LEN;
    bytes.extend_from_slice(b"junk");

    // Act
    let result = decode(&bytes);

    // Assert
    assert_eq!(
        result,
        Err(SnapshotError::LengthMismatch {
            header: payload,
            actual: payload + 4
        })
    );
}

#[test]
fn test_snapshot_error_display_names_the_damage() {
    // Arrange
    let err = SnapshotError::Checksum {
        expected: 1,
        actual: 2,
    };

    // Act
    let text = err.to_string();

    // Assert
    assert!(text.contains("checksum"), "{text}");
}
