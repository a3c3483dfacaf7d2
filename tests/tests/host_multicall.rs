//! The multi-call arje-init (docs/PID1.md, "One binary"): linked as `shuma`, it is the
//! CLI, against a real daemon; under its own name it is still arje-init.

use std::process::Command;

use arje_tests::host::{bin_dir, ensure_binaries, err, out, Daemon};

/// A directory holding `shuma`, a symbolic link to target/*/arje-init.
fn shuma_link() -> (tempfile::TempDir, std::path::PathBuf) {
    ensure_binaries();
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("shuma");
    std::os::unix::fs::symlink(bin_dir().join("arje-init"), &link).expect("symlink");
    (dir, link)
}

#[test]
fn test_arje_init_linked_as_shuma_runs_the_cli_against_the_daemon() {
    // Arrange
    let d = Daemon::start();
    let (_dir, shuma) = shuma_link();

    // Act: `run --wait ... -- CMD` has a `--`, which arje-init alone reads as
    // entrypoint mode; the name must win.
    let ping = d.shuma_binary(&shuma, &["ping"]);
    let created = d.ws_create("mc.toml", "[workspace]\nname = \"mc\"\n");
    let run = d.shuma_binary(
        &shuma,
        &["run", "mc", "--wait", "--", "/bin/sh", "-c", "exit 7"],
    );

    // Assert
    assert_eq!(out(&ping).trim(), "pong", "{}", err(&ping));
    assert_eq!(created.status.code(), Some(0), "{}", err(&created));
    assert_eq!(run.status.code(), Some(7), "{}", err(&run));
}

#[test]
fn test_arje_init_linked_as_shuma_answers_as_shuma() {
    // Arrange
    let (_dir, shuma) = shuma_link();

    // Act
    let o = Command::new(&shuma)
        .arg("--version")
        .output()
        .expect("run the link");

    // Assert
    assert_eq!(
        out(&o).trim(),
        format!("shuma {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn test_arje_init_under_its_own_name_is_arje_init() {
    // Arrange
    ensure_binaries();
    let binary = bin_dir().join("arje-init");

    // Act
    let o = Command::new(binary)
        .arg("--version")
        .output()
        .expect("run arje-init");

    // Assert
    assert_eq!(
        out(&o).trim(),
        format!("arje-init {}", env!("CARGO_PKG_VERSION"))
    );
}
