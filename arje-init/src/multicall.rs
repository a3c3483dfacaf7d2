//! One binary, several programs, chosen by the name it is called by (argv[0]), as
//! busybox does: `shuma` is the CLI (the `shuma` crate, built in with the default
//! feature `shuma`); `poweroff`, `reboot`, `halt`, `shutdown` and `telinit` ask PID 1
//! to stop the machine (power.rs, dispatched in main); any other name is arje-init.
//! An initramfs or a host then carries one file and links to it (docs/PID1.md).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// The program a name stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applet {
    Init,
    Shuma,
}

/// The applet `argv0` names: its last path component (`/bin/shuma`, `./shuma`).
pub fn applet(argv0: &OsStr) -> Applet {
    let name = argv0
        .as_bytes()
        .rsplit(|b| *b == b'/')
        .next()
        .unwrap_or_default();
    match name {
        b"shuma" => Applet::Shuma,
        _ => Applet::Init,
    }
}

/// Runs the applet argv[0] names and exits, or returns for arje-init. Never as PID 1:
/// a CLI that exits there would panic the kernel.
pub fn run_applet() {
    let Some(argv0) = std::env::args_os().next() else {
        return;
    };
    if std::process::id() == 1 {
        return;
    }
    match applet(&argv0) {
        Applet::Init => {}
        Applet::Shuma => shuma_main(),
    }
}

#[cfg(feature = "shuma")]
fn shuma_main() {
    std::process::exit(i32::from(shuma::run(std::env::args_os())));
}

#[cfg(not(feature = "shuma"))]
fn shuma_main() {
    eprintln!("shuma: this arje-init was built without the CLI (feature \"shuma\")");
    std::process::exit(3);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_applet_shuma_by_any_path_is_the_cli() {
        // Arrange
        let names = ["shuma", "/bin/shuma", "./shuma", "/usr/local/sbin/shuma"];

        // Act
        let applets: Vec<Applet> = names.iter().map(|n| applet(OsStr::new(n))).collect();

        // Assert
        assert!(applets.iter().all(|a| *a == Applet::Shuma), "{applets:?}");
    }

    #[test]
    fn test_applet_other_names_are_the_init() {
        // Arrange
        let names = ["/init", "arje-init", "/sbin/arje-init", "shuma-x", "", "/"];

        // Act
        let applets: Vec<Applet> = names.iter().map(|n| applet(OsStr::new(n))).collect();

        // Assert
        assert!(applets.iter().all(|a| *a == Applet::Init), "{applets:?}");
    }
}
