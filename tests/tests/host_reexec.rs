//! A re-exec that goes wrong after the binary passed every check, on this host in
//! subreaper mode: an exec that fails leaves the old image serving with every child,
//! and a new image that cannot take over gives the pid back to the previous one
//! (docs/STATE.md, "Re-exec into another binary").

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use arje_tests::host::{bin_dir, ensure_binaries, err, hooks_binary, out, Daemon};
use shuma_card::protocol::{CmdState, CommandInfo};
use shuma_card::EventKind;

const CARD: &str = r#"
[workspace]
name = "keep"

[[service]]
name = "idle"
argv = ["/bin/sleep", "3600"]

[[service]]
name = "printer"
argv = ["/bin/sh", "-c", "i=0; while :; do echo $i; i=$((i+1)); /bin/sleep 0.02; done"]
"#;

fn ps(d: &Daemon) -> Vec<CommandInfo> {
    let mut cmds = d.client().ps(None);
    cmds.sort_by_key(|c| c.id);
    cmds
}

/// What must not change across a re-exec that did not happen: ids, names, pids,
/// states and restart counters.
fn identity(cmds: &[CommandInfo]) -> Vec<(u64, String, Option<i32>, CmdState, u32)> {
    cmds.iter()
        .map(|c| (c.id, c.name.clone(), c.pid, c.state.clone(), c.restarts))
        .collect()
}

fn daemon_log(d: &Daemon) -> String {
    d.log.lock().unwrap().join("\n")
}

/// The first Warning in the journal whose text contains `needle` (followed: the daemon
/// pushes events as they happen, so this waits on the event, not on a clock).
fn warning(d: &Daemon, needle: &str) -> String {
    let is_it =
        |k: &EventKind| matches!(k, EventKind::Warning { message } if message.contains(needle));
    d.events_until(1, is_it)
        .into_iter()
        .find_map(|e| match e.kind {
            EventKind::Warning { message } if message.contains(needle) => Some(message),
            _ => None,
        })
        .expect("the awaited warning")
}

/// A copy of `from` at `to`, executable.
fn copy_exec(from: &Path, to: &Path) -> PathBuf {
    std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).unwrap();
    to.to_path_buf()
}

/// A copy of this build's arje-init whose ELF interpreter (`PT_INTERP`) names a file
/// that does not exist: it passes every check made before the exec (an executable ELF
/// for this machine with this build's arje note), and execve(2) fails with ENOENT while
/// the old image is still intact (the interpreter is opened before the point of no
/// return).
fn arje_init_with_missing_interpreter(to: &Path) -> PathBuf {
    let mut elf = std::fs::read(bin_dir().join("arje-init")).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF");
    assert_eq!(elf[4], 2, "ELF64");
    let u16_at = |b: &[u8], at: usize| u16::from_ne_bytes(b[at..at + 2].try_into().unwrap());
    let u64_at = |b: &[u8], at: usize| u64::from_ne_bytes(b[at..at + 8].try_into().unwrap());
    let (phoff, phentsize, phnum) = (
        u64_at(&elf, 32) as usize,
        u16_at(&elf, 54) as usize,
        u16_at(&elf, 56) as usize,
    );
    let interp = (0..phnum)
        .map(|i| phoff + i * phentsize)
        .find(|&ph| u32::from_ne_bytes(elf[ph..ph + 4].try_into().unwrap()) == 3)
        .map(|ph| {
            (
                u64_at(&elf, ph + 8) as usize,
                u64_at(&elf, ph + 32) as usize,
            )
        })
        .expect("this host's arje-init is dynamically linked (it has a PT_INTERP to patch)");
    let (offset, size) = interp;
    let missing = b"/nonexistent/ld.so";
    assert!(missing.len() < size);
    elf[offset..offset + size].fill(0);
    elf[offset..offset + missing.len()].copy_from_slice(missing);
    std::fs::write(to, &elf).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).unwrap();
    to.to_path_buf()
}

/// The daemon's fds above stderr that are open without close-on-exec (from
/// `/proc/PID/fdinfo`, whose `flags` are octal and include `O_CLOEXEC`, 02000000).
fn inheritable_fds(pid: i32) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // A client connection may close between the listing and this read.
        let Ok(info) = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")) else {
            continue;
        };
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            .expect("flags in fdinfo");
        if fd > 2 && flags & 0o2000000 == 0 {
            let target = std::fs::read_link(entry.path()).unwrap_or_default();
            found.push((fd, target.display().to_string()));
        }
    }
    found
}

#[test]
fn test_reexec_whose_exec_fails_resumes_and_keeps_every_child() {
    let d = Daemon::start_with(&[("keep.toml", CARD)], &[]);
    d.wait_output("keep", "printer", "\n3\n");
    let before = ps(&d);
    let bad = arje_init_with_missing_interpreter(&d.dir.path().join("arje-init-no-interp"));
    let exe_before = std::fs::read_link(format!("/proc/{}/exe", d.pid())).unwrap();
    // Whatever arje-init inherited without close-on-exec from this test (cargo's
    // jobserver pipe, say) was so before the re-exec too, and stays so.
    let inherited = inheritable_fds(d.pid());

    let answer = d.shuma(&["daemon-reexec", "--binary", bad.to_str().unwrap()]);
    let message = warning(&d, "re-exec of");
    let after = ps(&d);
    let ping = d.shuma(&["ping"]);
    let kept = inheritable_fds(d.pid());
    let exe_after = std::fs::read_link(format!("/proc/{}/exe", d.pid())).unwrap();
    // The printer's pipe is still read: its output goes on past what there was.
    let seen = out(&d.shuma(&["logs", "keep", "printer"])).lines().count();
    d.wait_output("keep", "printer", &format!("\n{}\n", seen + 3));
    let log = daemon_log(&d);

    assert!(answer.status.success(), "{}", err(&answer));
    assert!(
        message.contains("failed") && message.contains("No such file"),
        "{message}"
    );
    assert_eq!(identity(&after), identity(&before), "{log}");
    assert!(after.iter().all(|c| c.state == CmdState::Running));
    assert_eq!(out(&ping).trim(), "pong", "{}", err(&ping));
    assert_eq!(exe_after, exe_before, "still the same image");
    assert_eq!(
        kept, inherited,
        "every fd the hand-over kept open is close-on-exec again\n{log}"
    );
    assert!(
        !d.dir.path().join("run/handover.bin").exists(),
        "the handover file is removed"
    );
    assert!(log.contains("re-exec undone"), "{log}");
}

#[test]
fn test_reexec_after_a_failed_exec_still_hands_everything_over() {
    let d = Daemon::start_with(&[("keep.toml", CARD)], &[]);
    d.wait_output("keep", "printer", "\n3\n");
    let before = ps(&d);
    let bad = arje_init_with_missing_interpreter(&d.dir.path().join("arje-init-no-interp"));
    let failed = d.shuma(&["daemon-reexec", "--binary", bad.to_str().unwrap()]);
    warning(&d, "re-exec of");

    // The undone hand-over must leave a state a real re-exec can hand over again.
    let again = d.shuma(&["daemon-reexec"]);
    let after = ps(&d);
    let log = daemon_log(&d);

    assert!(failed.status.success(), "{}", err(&failed));
    assert!(again.status.success(), "{}", err(&again));
    assert_eq!(identity(&after), identity(&before), "{log}");
    assert!(log.contains("adopted keep/idle"), "{log}");
    assert!(
        log.contains("kept the control socket across the re-exec"),
        "{log}"
    );
}

#[test]
fn test_reexec_into_an_image_that_cannot_restore_gives_the_pid_back() {
    ensure_binaries();
    // A test-hooks build fails its start after a re-exec when ARJE_TEST_FAIL_RESTORE is
    // set, as if it could not read the snapshot. The daemon runs one copy of it and is
    // asked to re-exec into another, so /proc/PID/exe tells the two images apart.
    let hooks = hooks_binary();
    let scratch = tempfile::tempdir().unwrap();
    let old = copy_exec(&hooks, &scratch.path().join("arje-init-old"));
    let new = copy_exec(&hooks, &scratch.path().join("arje-init-new"));
    let mut cmd = Command::new(&old);
    cmd.env("ARJE_TEST_FAIL_RESTORE", "1");
    let d = Daemon::start_command(cmd, &[("keep.toml", CARD)], &[]);
    d.wait_output("keep", "printer", "\n3\n");
    let before = ps(&d);

    let answer = d.shuma(&["daemon-reexec", "--binary", new.to_str().unwrap()]);
    let message = warning(&d, "rolled back");
    let after = ps(&d);
    let ping = d.shuma(&["ping"]);
    let exe = std::fs::read_link(format!("/proc/{}/exe", d.pid())).unwrap();
    let seen = out(&d.shuma(&["logs", "keep", "printer"])).lines().count();
    d.wait_output("keep", "printer", &format!("\n{}\n", seen + 3));
    let printed: Vec<u64> = out(&d.shuma(&["logs", "keep", "printer"]))
        .lines()
        .map(|l| l.trim().parse().expect("a number per line"))
        .collect();
    let log = daemon_log(&d);

    assert!(answer.status.success(), "{}", err(&answer));
    assert!(message.contains("ARJE_TEST_FAIL_RESTORE"), "{message}");
    assert_eq!(exe, old, "the previous image runs again\n{log}");
    assert_eq!(identity(&after), identity(&before), "{log}");
    assert_eq!(out(&ping).trim(), "pong", "{}", err(&ping));
    assert!(log.contains("giving the pid back"), "{log}");
    assert!(
        log.contains("kept the control socket across the re-exec"),
        "{log}"
    );
    // The previous image took its own handover back: the output it had captured, and
    // the pipe read on from where it stopped.
    let expected: Vec<u64> = (0..printed.len() as u64).collect();
    assert_eq!(printed, expected, "output lost across the rollback\n{log}");
}
