//! Golden frames: the protocol's version rule, held by the bytes.
//!
//! - `Hello` and the `Version` error are frozen across every version: an old client's
//!   Hello must still decode, so it gets a clear "version N is not supported" instead of
//!   a garbled decode. Their bytes are written out here and never change.
//! - Everything else belongs to one version: the frames of `PROTOCOL_VERSION` are pinned
//!   in `tests/golden/protocol-v<N>-*.bin`. Changing a wire type (a card type included,
//!   since `WsCreate` and `Run` carry them) fails this test; the fix is to bump
//!   `PROTOCOL_VERSION` and write the new version's files, never to regenerate the files
//!   of a version that shipped:
//!
//! ```text
//! ARJE_REGENERATE_GOLDEN=1 cargo test -p shuma-card --test protocol_golden
//! ```

use std::path::PathBuf;

use shuma_card::protocol::{
    decode_payload, encode_frame, ErrorCode, Request, Response, PROTOCOL_VERSION,
};
use shuma_card::{CommandKind, CommandSpec, LogTarget, RestartPolicy, WorkspaceSpec};

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/golden")
        .join(format!("protocol-v{PROTOCOL_VERSION}-{name}.bin"))
}

fn card() -> WorkspaceSpec {
    let mut svc = CommandSpec::new("web", CommandKind::Service, vec!["/bin/httpd".into()]);
    svc.env = vec![("PORT".into(), "80".into())];
    svc.cwd = Some("/srv".into());
    svc.user = Some("www".into());
    svc.group = Some("www".into());
    svc.log = LogTarget::File("/var/log/web".into());
    svc.restart = RestartPolicy::Always;
    let mut spec = WorkspaceSpec {
        name: "site".into(),
        ttl_ms: Some(60_000),
        ..Default::default()
    };
    spec.limits.memory_max = Some(64 << 20);
    spec.limits.pids_max = Some(32);
    spec.commands.push(svc);
    spec
}

fn frames() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "wscreate",
            encode_frame(&Request::WsCreate { spec: card() }),
        ),
        (
            "run",
            encode_frame(&Request::Run {
                workspace: "site".into(),
                command: card().commands.remove(0),
                wait: true,
            }),
        ),
    ]
}

#[test]
fn test_hello_of_every_version_keeps_its_bytes() {
    // Variant 0, the version as a varint, the client's name as a length and bytes.
    for version in [1u32, 2, PROTOCOL_VERSION] {
        let frame = encode_frame(&Request::Hello {
            version,
            client: "x".into(),
        });
        assert_eq!(frame, [0, 0, 0, 4, 0, version as u8, 1, b'x'], "v{version}");
        assert_eq!(
            decode_payload::<Request>(&frame[4..]).unwrap(),
            Request::Hello {
                version,
                client: "x".into()
            }
        );
    }
}

#[test]
fn test_version_error_keeps_its_bytes() {
    let frame = encode_frame(&Response::Error {
        code: ErrorCode::Version,
        message: "m".into(),
    });
    // Response variant 3 (Error), ErrorCode variant 0 (Version), then the message.
    assert_eq!(frame, [0, 0, 0, 4, 3, 0, 1, b'm']);
}

#[test]
fn test_frames_of_this_version_match_the_golden_files() {
    let regenerate = std::env::var_os("ARJE_REGENERATE_GOLDEN").is_some();
    for (name, bytes) in frames() {
        let path = golden(name);
        if regenerate {
            std::fs::write(&path, &bytes).unwrap();
            continue;
        }
        let want = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}: a new PROTOCOL_VERSION needs its golden frames (ARJE_REGENERATE_GOLDEN=1)",
                path.display()
            )
        });
        assert_eq!(
            bytes,
            want,
            "the {name} frame changed under protocol version {PROTOCOL_VERSION}: bump PROTOCOL_VERSION (shuma-card/src/protocol.rs) and write the new version's golden frames"
        );
    }
}
