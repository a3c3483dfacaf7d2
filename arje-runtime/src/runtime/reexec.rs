//! Is this file something arje can re-exec into? Checked before `daemon-reexec` is
//! answered, because after the exec nothing of the old image is left to report a
//! failure: an exec that fails is survived (the runtime resumes, `lifecycle.rs`), but
//! a program that is not arje-init would run in arje's place, and the client would
//! already have been told "re-executed".
//!
//! What is checked: a regular file, executable by arje's effective ids (which also
//! catches a `noexec` mount), starting with an ELF header of the same class, byte order
//! and machine as the running image, and carrying an arje identity note
//! (`identity.rs`) that says it reads the snapshot and handover versions this image
//! writes. Scripts are refused: arje re-executes itself, and a `#!` file is never arje.
//! What cannot be checked without running it: that the note tells the truth (see
//! docs/STATE.md, "Re-exec into another binary").

use std::io::Read;
use std::path::Path;

use shuma_card::protocol::ErrorCode;

use super::identity::{read_identity, Identity, NoteError};

/// Bytes of an ELF header compared with our own: the class and byte order of `e_ident`,
/// and `e_machine`. Not the OS ABI byte (a glibc and a musl build of the same arje may
/// differ there) nor `e_type` (ET_EXEC, or ET_DYN for a static-pie).
const ELF_CLASS_DATA: std::ops::Range<usize> = 4..6;
const ELF_MACHINE: std::ops::Range<usize> = 18..20;

/// Why `binary` cannot be re-exec'd, if it cannot.
pub fn check_binary(binary: &Path) -> Result<(), (ErrorCode, String)> {
    let name = binary.display();
    let meta =
        std::fs::metadata(binary).map_err(|e| (ErrorCode::NotFound, format!("{name}: {e}")))?;
    if !meta.is_file() {
        return Err((ErrorCode::Invalid, format!("{name} is not a regular file")));
    }
    // EACCESS: the effective ids, the ones execve checks against.
    rustix::fs::accessat(
        rustix::fs::CWD,
        binary,
        rustix::fs::Access::EXEC_OK,
        rustix::fs::AtFlags::EACCESS,
    )
    .map_err(|e| {
        (
            ErrorCode::Invalid,
            format!("{name} is not executable by arje ({e})"),
        )
    })?;
    let file = open(binary).map_err(|e| (ErrorCode::Invalid, format!("{name}: {e}")))?;
    let theirs = header(&file).map_err(|e| (ErrorCode::Invalid, format!("{name}: {e}")))?;
    let not_arje = |what: &str| {
        Err((
            ErrorCode::Invalid,
            format!("{name} is not an ELF executable for this machine ({what}); arje re-executes itself and needs an arje-init binary"),
        ))
    };
    if theirs.get(..4) != Some(b"\x7fELF".as_slice()) {
        return not_arje(if theirs.starts_with(b"#!") {
            "a script"
        } else {
            "no ELF header"
        });
    }
    // Our own header, to compare class, byte order and machine with.
    if let Ok(ours) = open(Path::new("/proc/self/exe")).and_then(|f| header(&f)) {
        let same = |r: std::ops::Range<usize>| theirs.get(r.clone()) == ours.get(r);
        if !same(ELF_CLASS_DATA) || !same(ELF_MACHINE) {
            return not_arje("another class, byte order or machine");
        }
    }
    let identity = read_identity(&file).map_err(|e| match e {
        NoteError::Missing => (
            ErrorCode::Invalid,
            format!("{name} is not arje-init: {e}; arje re-executes itself and needs an arje-init binary (one built before the note existed is refused too)"),
        ),
        e => (ErrorCode::Invalid, format!("{name} is not arje-init: {e}")),
    })?;
    compatible(&identity, &Identity::this_build())
        .map_err(|why| (ErrorCode::Invalid, format!("{name} {why}")))?;
    log::info!(
        "re-exec: {name} is arje-init {} (snapshot versions {}..={}, handover {}..={})",
        identity.version,
        identity.snapshots.start(),
        identity.snapshots.end(),
        identity.handovers.start(),
        identity.handovers.end()
    );
    Ok(())
}

/// Can an image that is `theirs` read what `ours` writes just before the exec: the
/// snapshot in our newest version and the handover in ours?
fn compatible(theirs: &Identity, ours: &Identity) -> Result<(), String> {
    let (snapshot, handover) = (*ours.snapshots.end(), *ours.handovers.end());
    let range = |r: &std::ops::RangeInclusive<u32>| format!("{}..={}", r.start(), r.end());
    if !theirs.snapshots.contains(&snapshot) {
        return Err(format!(
            "is arje-init {}, which reads snapshot versions {}: this arje writes version {snapshot}",
            theirs.version,
            range(&theirs.snapshots)
        ));
    }
    if !theirs.handovers.contains(&handover) {
        return Err(format!(
            "is arje-init {}, which reads handover versions {}: this arje writes version {handover}",
            theirs.version,
            range(&theirs.handovers)
        ));
    }
    Ok(())
}

/// Opened non-blocking: were the checked regular file swapped for a FIFO in between,
/// the loop must not wait on it.
fn open(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// The first 20 bytes of a file (fewer if it is shorter).
fn header(file: &std::fs::File) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(ELF_MACHINE.end);
    file.take(ELF_MACHINE.end as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::identity::fixture::elf_with_notes;
    use crate::runtime::identity::{note_bytes, ArjeNote};
    use std::os::unix::fs::PermissionsExt;

    fn file(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn test_check_binary_with_this_builds_note_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let note = note_bytes(&ArjeNote::THIS_BUILD);
        let arje = file(dir.path(), "arje", &elf_with_notes(&note, 4), 0o755);

        assert_eq!(check_binary(&arje), Ok(()));
    }

    #[test]
    fn test_check_binary_elf_without_note_not_arje_init() {
        // This test binary is a valid ELF for this machine, but not arje-init.
        let own = std::fs::read_link("/proc/self/exe").unwrap();

        let refused = check_binary(&own);

        assert!(
            matches!(&refused, Err((ErrorCode::Invalid, m)) if m.contains("is not arje-init") && m.contains("no arje identity note")),
            "{refused:?}"
        );
    }

    #[test]
    fn test_check_binary_older_snapshot_or_handover_reader_refused() {
        let dir = tempfile::tempdir().unwrap();
        let current = shuma_card::snapshot::SNAPSHOT_VERSION;
        let mut old = ArjeNote::THIS_BUILD;
        old.desc.snapshot_max = current - 1;
        old.desc.version = *b"0.0.9\0\0\0\0\0\0\0\0\0\0\0";
        let mut other_handover = ArjeNote::THIS_BUILD;
        other_handover.desc.handover_min += 1;
        other_handover.desc.handover_max += 1;
        let old = file(
            dir.path(),
            "old",
            &elf_with_notes(&note_bytes(&old), 4),
            0o755,
        );
        let other = file(
            dir.path(),
            "other",
            &elf_with_notes(&note_bytes(&other_handover), 4),
            0o755,
        );

        let (old, other) = (check_binary(&old), check_binary(&other));

        let want = format!(
            "is arje-init 0.0.9, which reads snapshot versions 1..={}: this arje writes version {current}",
            current - 1
        );
        assert!(
            matches!(&old, Err((ErrorCode::Invalid, m)) if m.contains(&want)),
            "{old:?}"
        );
        assert!(
            matches!(&other, Err((ErrorCode::Invalid, m)) if m.contains("reads handover versions")),
            "{other:?}"
        );
    }

    #[test]
    fn test_check_binary_script_text_dir_missing_refused() {
        let dir = tempfile::tempdir().unwrap();
        let script = file(dir.path(), "s", b"#!/bin/sh\n", 0o755);
        let text = file(dir.path(), "t", b"hello\n", 0o755);
        let empty = file(dir.path(), "e", b"", 0o755);

        let refusals = [
            check_binary(&script),
            check_binary(&text),
            check_binary(&empty),
            check_binary(dir.path()),
            check_binary(&dir.path().join("missing")),
        ];

        let messages: Vec<String> = refusals
            .into_iter()
            .map(|r| r.expect_err("refused").1)
            .collect();
        assert!(messages[0].contains("a script"), "{}", messages[0]);
        assert!(messages[1].contains("no ELF header"), "{}", messages[1]);
        assert!(messages[2].contains("no ELF header"), "{}", messages[2]);
        assert!(
            messages[3].contains("not a regular file"),
            "{}",
            messages[3]
        );
        assert!(messages[4].contains("No such file"), "{}", messages[4]);
    }

    #[test]
    fn test_check_binary_foreign_machine_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut elf = std::fs::read("/proc/self/exe").unwrap();
        elf.truncate(64);
        // e_machine 183: aarch64 (or, on aarch64, x86_64's 62).
        let machine: u16 = if cfg!(target_arch = "aarch64") {
            62
        } else {
            183
        };
        elf[ELF_MACHINE].copy_from_slice(&machine.to_le_bytes());
        let foreign = file(dir.path(), "arm", &elf, 0o755);

        let refused = check_binary(&foreign);

        assert!(
            matches!(&refused, Err((ErrorCode::Invalid, m)) if m.contains("machine")),
            "{refused:?}"
        );
    }
}
