//! Would stopping a workspace end the caller's own session? A person logged in over ssh
//! runs in sshd's workspace: `shuma ws stop ssh` there cuts the very session typing it.
//! shuma checks before it asks, and refuses without `--force`.
//!
//! Two ways to be inside, either enough:
//! - **the cgroup**: this process's cgroup (`/proc/self/cgroup`, under the cgroup2
//!   mount found in `/proc/self/mountinfo`) lies in the workspace's cgroup. This holds
//!   for a session that outlived a restart of its sshd (`kill_mode = "process"`);
//! - **the ancestry**: one of this process's ancestors is one of the workspace's
//!   running commands (without cgroups).

use std::path::{Path, PathBuf};

use shuma_card::protocol::{CommandInfo, WorkspaceDetail};

/// Why stopping the workspace would end this process's session, or None.
pub fn why_inside(detail: &WorkspaceDetail, commands: &[CommandInfo]) -> Option<String> {
    if let Some(ws_cgroup) = &detail.info.cgroup {
        let mine = std::fs::read_to_string("/proc/self/cgroup").ok();
        let mount = std::fs::read_to_string("/proc/self/mountinfo")
            .ok()
            .and_then(|m| cgroup2_mount(&m));
        if let (Some(mine), Some(mount)) = (mine, mount) {
            if let Some(dir) = own_cgroup_dir(&mine, &mount) {
                if dir.starts_with(ws_cgroup) {
                    return Some(format!(
                        "this process runs in its cgroup ({})",
                        dir.display()
                    ));
                }
            }
        }
    }
    let ancestors = ancestors(std::process::id() as i32);
    commands
        .iter()
        .find(|c| c.pid.is_some_and(|p| ancestors.contains(&p)))
        .map(|c| {
            format!(
                "its command {}/{} (pid {}) is an ancestor of this process",
                c.workspace,
                c.name,
                c.pid.unwrap_or_default()
            )
        })
}

/// The mount point of the cgroup2 filesystem, from mountinfo's text.
fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        left.split_whitespace()
            .nth(4)
            .map(|p| PathBuf::from(unescape_octal(p)))
    })
}

/// mountinfo writes a space as `\040` (and a tab, newline and backslash likewise); the
/// bytes of a path are kept as they are otherwise (not necessarily UTF-8).
fn unescape_octal(s: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                let v = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(v as u8);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    std::ffi::OsString::from_vec(out)
}

/// This process's cgroup directory: the v2 line (`0::/PATH`) of /proc/self/cgroup under
/// the cgroup2 mount.
fn own_cgroup_dir(proc_cgroup: &str, mount: &Path) -> Option<PathBuf> {
    let rel = proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))?
        .trim_start_matches('/');
    Some(mount.join(rel))
}

/// The pids from `pid`'s parent up to (not including) 0, read from /proc/PID/stat.
fn ancestors(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut p = pid;
    while let Some(pp) = parent_of(p) {
        if pp <= 0 || out.contains(&pp) {
            break;
        }
        out.push(pp);
        p = pp;
    }
    out
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    ppid_from_stat(&stat)
}

/// The ppid field of /proc/PID/stat: the comm in parentheses may hold spaces and ')',
/// so the fields are counted after its last ')'.
fn ppid_from_stat(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cgroup2_mount_found_among_other_mounts_with_escapes() {
        let mi = "22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
                  30 25 0:26 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(cgroup2_mount(mi), Some(PathBuf::from("/sys/fs/cgroup")));
        let spaced = "30 25 0:26 / /mnt/c\\040g rw - cgroup2 none rw\n";
        assert_eq!(cgroup2_mount(spaced), Some(PathBuf::from("/mnt/c g")));
        assert_eq!(cgroup2_mount("22 1 0:21 / /proc rw - proc proc rw\n"), None);
    }

    #[test]
    fn test_own_cgroup_dir_is_the_v2_line_under_the_mount() {
        let dir = own_cgroup_dir("0::/arje/ssh/ssh\n", Path::new("/sys/fs/cgroup")).unwrap();
        assert_eq!(dir, PathBuf::from("/sys/fs/cgroup/arje/ssh/ssh"));
        assert!(dir.starts_with("/sys/fs/cgroup/arje/ssh"));
        assert!(!dir.starts_with("/sys/fs/cgroup/arje/ss"));
        assert_eq!(own_cgroup_dir("1:name=systemd:/\n", Path::new("/x")), None);
    }

    #[test]
    fn test_ppid_from_stat_with_a_paren_and_spaces_in_comm() {
        assert_eq!(ppid_from_stat("42 (a) b) c) S 17 42 42 0"), Some(17));
        assert_eq!(ppid_from_stat("garbage"), None);
    }

    #[test]
    fn test_ancestors_of_this_process_include_its_parent() {
        let parent = nix::unistd::getppid().as_raw();
        let got = ancestors(std::process::id() as i32);
        assert_eq!(got.first(), Some(&parent), "{got:?}");
    }
}
