//! Honest degradation on this host: cgroup v2 is mounted (hybrid, at
//! /sys/fs/cgroup/unified) without the memory and pids controllers. A workspace with
//! limits still runs, with warnings naming each limit that is not enforced.

use arje_tests::host::{err, out, Daemon};

const LIMITED: &str = r#"
[workspace]
name = "limited"
memory_max = "64M"
pids_max = 32

[[task]]
name = "hello"
argv = ["/bin/echo", "hello"]
"#;

#[test]
fn test_subreaper_without_cgroup_root_warns_limits_not_enforced() {
    let d = Daemon::start();

    let created = d.ws_create("limited.toml", LIMITED);
    let caps = d.shuma(&["caps"]);

    assert!(created.status.success(), "{}", err(&created));
    let warnings = err(&created);
    assert!(warnings.contains("memory.max"), "{warnings}");
    assert!(warnings.contains("pids.max"), "{warnings}");
    assert!(out(&caps).contains("--cgroup-root"), "{}", out(&caps));
}

/// A delegated directory in this host's cgroup2 hierarchy, if there is one.
fn unified_root() -> Option<std::path::PathBuf> {
    let base = std::path::Path::new("/sys/fs/cgroup/unified");
    let base = if base.join("cgroup.procs").exists() {
        base.to_path_buf()
    } else {
        let fs = std::path::Path::new("/sys/fs/cgroup");
        fs.join("cgroup.controllers")
            .exists()
            .then(|| fs.to_path_buf())?
    };
    let dir = base.join(format!("arje-test-{}", std::process::id()));
    std::fs::create_dir(&dir).ok()?;
    Some(dir)
}

#[test]
fn test_subreaper_with_cgroup_root_runs_card_and_caps_say_why() {
    let Some(root) = unified_root() else {
        panic!("this host has no writable cgroup2 hierarchy; ENVIRONMENT.md says it has one at /sys/fs/cgroup/unified");
    };
    let d = Daemon::start_with(&[], &["--cgroup-root", root.to_str().unwrap()]);

    let created = d.ws_create("limited.toml", LIMITED);
    let run = d.shuma(&[
        "run",
        "limited",
        "--wait",
        "--name",
        "where",
        "--",
        "/bin/cat",
        "/proc/self/cgroup",
    ]);
    let logs = out(&d.shuma(&["logs", "limited", "where"]));
    let caps = out(&d.shuma(&["caps"]));
    let code = d.stop();

    assert!(created.status.success(), "{}", err(&created));
    let warnings = err(&created);
    assert!(warnings.contains("memory.max"), "{warnings}");
    assert!(warnings.contains("pids.max"), "{warnings}");
    assert_eq!(run.status.code(), Some(0));
    // Born in its leaf: the cgroup2 line of /proc/self/cgroup names the workspace.
    let v2 = logs
        .lines()
        .find(|l| l.starts_with("0::"))
        .unwrap_or_default();
    assert!(v2.contains("/arje/limited/"), "{logs}");
    assert!(caps.contains("memory.max"), "{caps}");
    assert_eq!(code, Some(0));
    // arje moved itself into <root>/arje-init; leave the host as we found it.
    let _ = std::fs::remove_dir(root.join("arje/limited"));
    let _ = std::fs::remove_dir(root.join("arje"));
    let _ = std::fs::remove_dir(root.join("arje-init"));
    let _ = std::fs::remove_dir(&root);
}
