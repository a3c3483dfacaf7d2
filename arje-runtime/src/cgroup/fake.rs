//! A fake kernel for unit tests: a temporary directory standing in for cgroupfs.
//!
//! While a [`FakeRoot`] lives on a test's thread, every `mkdir_cgroup` there fills the new
//! directory with the interface files the kernel would create (the core `cgroup.*` files,
//! plus each controller's files when the parent's `cgroup.subtree_control` enables it),
//! and every `rmdir_cgroup` refuses with EBUSY while `cgroup.events` says `populated 1`,
//! else deletes the files first (cgroupfs removes them with the directory).

use std::cell::Cell;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::*;

thread_local! {
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
}

/// The files every non-root cgroup has, with a fresh cgroup's content.
const CORE_FILES: &[(&str, &str)] = &[
    (CGROUP_PROCS, ""),
    (CGROUP_EVENTS, "populated 0\nfrozen 0\n"),
    (CGROUP_SUBTREE_CONTROL, ""),
    (CGROUP_TYPE, "domain\n"),
    (CGROUP_KILL, ""),
    (CGROUP_FREEZE, "0\n"),
    (CPU_STAT, "usage_usec 0\nuser_usec 0\nsystem_usec 0\n"),
];

fn controller_files(controller: &str) -> &'static [(&'static str, &'static str)] {
    match controller {
        "memory" => &[
            (MEMORY_MAX, "max\n"),
            (MEMORY_HIGH, "max\n"),
            (MEMORY_SWAP_MAX, "max\n"),
            (MEMORY_CURRENT, "0\n"),
            (MEMORY_PEAK, "0\n"),
            (
                MEMORY_EVENTS,
                "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
            ),
        ],
        "pids" => &[
            (PIDS_MAX, "max\n"),
            (PIDS_CURRENT, "0\n"),
            (PIDS_EVENTS, "max 0\n"),
        ],
        "cpu" => &[(CPU_MAX, "max 100000\n"), (CPU_WEIGHT, "100\n")],
        "io" => &[(IO_WEIGHT, "default 100\n")],
        _ => &[],
    }
}

/// A fake cgroup2 root in a temporary directory. The fake kernel is active on the
/// creating thread until it is dropped.
pub(crate) struct FakeRoot {
    _tmp: tempfile::TempDir,
    pub(crate) path: PathBuf,
}

impl FakeRoot {
    /// `controllers` is the root's cgroup.controllers ("cpu io memory pids"). A real root
    /// has no cgroup.type; a delegated subtree (`real_root == false`) has one.
    pub(crate) fn new(controllers: &str, real_root: bool) -> FakeRoot {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("cgroup");
        fs::create_dir(&path).expect("mkdir fake root");
        write(&path.join(CGROUP_CONTROLLERS), &format!("{controllers}\n"));
        write(&path.join(CGROUP_SUBTREE_CONTROL), "");
        write(&path.join(CGROUP_PROCS), "");
        write(&path.join(CPU_STAT), "usage_usec 0\n");
        if !real_root {
            write(&path.join(CGROUP_TYPE), "domain\n");
            write(&path.join(CGROUP_EVENTS), "populated 1\nfrozen 0\n");
            write(&path.join(CGROUP_KILL), "");
        }
        ACTIVE.with(|a| a.set(true));
        FakeRoot { _tmp: tmp, path }
    }
}

impl Drop for FakeRoot {
    fn drop(&mut self) {
        ACTIVE.with(|a| a.set(false));
    }
}

/// Overwrite a fake file (a test playing the kernel: "an OOM kill happened").
pub(crate) fn write(path: &Path, content: &str) {
    fs::write(path, content).unwrap_or_else(|e| panic!("fake write {}: {e}", path.display()));
}

pub(crate) fn on_mkdir(parent: &Path, name: &str) {
    if !ACTIVE.with(Cell::get) {
        return;
    }
    let dir = parent.join(name);
    let enabled: Vec<String> = fs::read_to_string(parent.join(CGROUP_SUBTREE_CONTROL))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|t| t.strip_prefix('+'))
        .map(str::to_string)
        .collect();
    write(
        &dir.join(CGROUP_CONTROLLERS),
        &format!("{}\n", enabled.join(" ")),
    );
    for (file, content) in CORE_FILES {
        write(&dir.join(file), content);
    }
    for controller in &enabled {
        for (file, content) in controller_files(controller) {
            write(&dir.join(file), content);
        }
    }
}

pub(crate) fn before_rmdir(dir: &Path) -> io::Result<()> {
    if !ACTIVE.with(Cell::get) {
        return Ok(());
    }
    let events = fs::read_to_string(dir.join(CGROUP_EVENTS)).unwrap_or_default();
    if events.lines().any(|l| l == "populated 1") {
        return Err(io::Error::from_raw_os_error(libc::EBUSY));
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}
