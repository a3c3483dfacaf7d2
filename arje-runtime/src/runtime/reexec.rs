//! Is this file something arje can re-exec into? Checked before `daemon-reexec` is
//! answered, because after the exec nothing of the old image is left to report a
//! failure: an exec that fails takes a subreaper down (PID 1 falls back to its emergency
//! loop), and the client would already have been told "re-executed".
//!
//! What is checked: a regular file, executable by arje's effective ids (which also
//! catches a `noexec` mount), starting with an ELF header of the same class, byte order
//! and machine as the running image. Scripts are refused: arje re-executes itself, and a
//! `#!` file is never arje. What cannot be checked without running it: that the ELF is
//! an arje-init that adopts the snapshot (see docs/STATE.md, "Re-exec into another
//! binary").

use std::io::Read;
use std::path::Path;

use shuma_card::protocol::ErrorCode;

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
    let theirs = header(binary).map_err(|e| (ErrorCode::Invalid, format!("{name}: {e}")))?;
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
    if let Ok(ours) = header(Path::new("/proc/self/exe")) {
        let same = |r: std::ops::Range<usize>| theirs.get(r.clone()) == ours.get(r);
        if !same(ELF_CLASS_DATA) || !same(ELF_MACHINE) {
            return not_arje("another class, byte order or machine");
        }
    }
    Ok(())
}

/// The first 20 bytes of a file (fewer if it is shorter). Opened non-blocking: were
/// the checked regular file swapped for a FIFO in between, the loop must not wait on it.
fn header(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut buf = Vec::with_capacity(ELF_MACHINE.end);
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?
        .take(ELF_MACHINE.end as u64)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn test_check_binary_own_image_accepted() {
        let own = std::fs::read_link("/proc/self/exe").unwrap();

        assert_eq!(check_binary(&own), Ok(()));
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
