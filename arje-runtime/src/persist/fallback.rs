//! Where the run and durable state go when the configured directories cannot be
//! trusted ([`StateDir::open`] refused them).
//!
//! As PID 1 boot must go on, so a refused run directory is replaced rather than fatal;
//! a refused durable directory is simply not used. Either way the directory is never
//! read: a snapshot in it could name any command to run as root. docs/SECURITY.md has
//! the rules.

use std::path::{Path, PathBuf};

use super::dir::{DirError, StateDir};

/// What [`open_run_dir`] and [`open_durable_dir`] found: the directory to use, if any,
/// and what to tell the operator (each becomes a Warning in the journal).
#[derive(Debug)]
pub struct Opened {
    pub dir: Option<StateDir>,
    pub warnings: Vec<String>,
}

/// The run (/run) state directory: `path` if it can be trusted, else a private one:
/// first `<path>.private-<euid>` beside it (created 0700 if absent, held to the same
/// rules if present, so after a re-exec or a restart the same directory is found again
/// and the children adopted), then a fresh `mkdtemp` beside it, then one under
/// the temporary directory (/tmp). A refused directory is never read: a snapshot in it
/// could name any command to run as root. Each step taken is a warning.
pub fn open_run_dir(path: &Path, traverse_group: Option<u32>) -> Opened {
    let refused = match StateDir::open(path, traverse_group) {
        Ok(dir) => {
            return Opened {
                dir: Some(dir),
                warnings: Vec::new(),
            }
        }
        Err(e) => e,
    };
    let euid = rustix::process::geteuid().as_raw();
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(|| "arje".into(), |n| n.to_string_lossy().into_owned());
    let private = parent.join(format!("{name}.private-{euid}"));
    // Tried in order, each made only if the ones before failed: a mkdtemp leaves a
    // directory behind.
    let candidates: [&dyn Fn() -> Result<PathBuf, DirError>; 3] = [
        &|| Ok(private.clone()),
        &|| mkdtemp(&parent.join(format!("{name}.private-{euid}.XXXXXX"))),
        &|| mkdtemp(&std::env::temp_dir().join(format!("arje-state-{euid}.XXXXXX"))),
    ];
    let mut tried = Vec::new();
    for candidate in candidates {
        match candidate().and_then(|p| StateDir::open(&p, None)) {
            Ok(dir) => {
                let mut message = format!(
                    "state directory refused: {refused}; using {} instead",
                    dir.path().display()
                );
                for e in &tried {
                    message.push_str(&format!(" ({e})"));
                }
                return Opened {
                    dir: Some(dir),
                    warnings: vec![message],
                };
            }
            Err(e) => tried.push(e.to_string()),
        }
    }
    Opened {
        dir: None,
        warnings: vec![format!(
            "state directory refused: {refused}; no private directory could replace it ({}): the state is not saved",
            tried.join("; ")
        )],
    }
}

/// `mkdtemp(template)`: a new directory, 0700, with a name nobody could have planted.
fn mkdtemp(template: &Path) -> Result<PathBuf, DirError> {
    nix::unistd::mkdtemp(template).map_err(|e| DirError::Create {
        path: template.to_path_buf(),
        source: e.into(),
    })
}

/// The durable state directory, if it can be trusted. A refused one is neither read nor
/// written: a copy elsewhere would not be found at the next boot, and what is in it may
/// have been planted. The warning says so.
pub fn open_durable_dir(path: &Path) -> Opened {
    match StateDir::open(path, None) {
        Ok(dir) => Opened {
            dir: Some(dir),
            warnings: Vec::new(),
        },
        Err(e) => Opened {
            dir: None,
            warnings: vec![format!(
                "durable state directory refused: {e}; no durable copy is read or written this time"
            )],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const NOBODY: u32 = 65534;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn test_open_run_dir_owned_by_another_user_with_temp_symlink_leaves_target_unchanged() {
        // Arrange: nobody owns the state directory and has put a symlink at the name of
        // the /run copy's temp file, pointing at a root-only file.
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::os::unix::fs::chown(&state, Some(NOBODY), Some(NOBODY)).unwrap();
        let secret = tmp.path().join("root-only");
        std::fs::write(&secret, b"root only\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&secret, state.join(".snapshot.bin.tmp")).unwrap();

        // Act
        let opened = open_run_dir(&state, None);
        let dir = opened.dir.expect("a private directory instead");
        crate::persist::write_run(&dir, b"every service's environment").unwrap();

        // Assert
        assert_eq!(std::fs::read(&secret).unwrap(), b"root only\n");
        assert_ne!(dir.path(), state);
        assert_eq!(mode(dir.path()), 0o700);
        assert_eq!(
            std::fs::read(dir.join("snapshot.bin")).unwrap(),
            b"every service's environment"
        );
        assert_eq!(opened.warnings.len(), 1);
        assert!(
            opened.warnings[0].contains("owned by uid 65534"),
            "{:?}",
            opened.warnings
        );
    }

    #[test]
    fn test_open_run_dir_refused_twice_finds_the_same_private_dir() {
        // Arrange: what a re-exec does: the next image opens the same configured path.
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();

        // Act
        let first = open_run_dir(&state, None).dir.unwrap();
        let second = open_run_dir(&state, None).dir.unwrap();

        // Assert: the same one, and no other made on the way.
        assert_eq!(first.path(), second.path());
        let mut names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        let euid = rustix::process::geteuid().as_raw();
        assert_eq!(
            names,
            ["state".to_string(), format!("state.private-{euid}")]
        );
    }

    #[test]
    fn test_open_run_dir_squatted_private_name_falls_back_to_a_fresh_one() {
        // Arrange: the refused directory's private sibling exists, owned by nobody.
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::os::unix::fs::chown(&state, Some(NOBODY), Some(NOBODY)).unwrap();
        let euid = rustix::process::geteuid().as_raw();
        let squatted = tmp.path().join(format!("state.private-{euid}"));
        std::fs::create_dir(&squatted).unwrap();
        std::os::unix::fs::chown(&squatted, Some(NOBODY), Some(NOBODY)).unwrap();

        // Act
        let opened = open_run_dir(&state, None);

        // Assert
        let dir = opened.dir.unwrap();
        assert_ne!(dir.path(), squatted);
        assert_eq!(dir.path().parent(), Some(tmp.path()));
        assert_eq!(mode(dir.path()), 0o700);
    }

    #[test]
    fn test_open_durable_dir_through_a_file_is_refused_with_a_warning_naming_it() {
        // Arrange
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("blocker"), b"").unwrap();

        // Act
        let opened = open_durable_dir(&tmp.path().join("blocker/arje"));

        // Assert
        assert!(opened.dir.is_none());
        assert!(
            opened.warnings[0].contains("blocker/arje"),
            "{:?}",
            opened.warnings
        );
    }
}
