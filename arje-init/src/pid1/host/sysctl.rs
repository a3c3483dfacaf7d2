//! Kernel settings from sysctl.d at boot, as systemd-sysctl and `sysctl --system` apply
//! them: every `*.conf` of /etc/sysctl.d, /run/sysctl.d, /usr/local/lib/sysctl.d,
//! /usr/lib/sysctl.d and /lib/sysctl.d, a file name in an earlier directory hiding the
//! same name in a later one (so /etc overrides what a package ships), all read in the
//! order of their file names, then /etc/sysctl.conf unless one of those files is it
//! (Debian's 99-sysctl.conf is a link to it). A later setting of a key wins.
//!
//! A line is `key = value`, `#` or `;` starts a comment, and a key starting with `-`
//! may fail quietly (a setting the running kernel lacks). A key written with dots has
//! them as separators (`net.ipv4.ip_forward`), one whose first separator is `/` keeps
//! its dots (`net/ipv4/conf/eth0.100/forwarding`), as sysctl.d(5) says. Keys with glob
//! characters (systemd expands them over /proc/sys) are skipped with a warning.
//!
//! The files are root's; the settings are written to /proc/sys/KEY, opened without
//! following a link and never above /proc/sys (a key with `..` is refused).

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

/// The directories, first wins for a file name.
const DIRS: [&str; 5] = [
    "etc/sysctl.d",
    "run/sysctl.d",
    "usr/local/lib/sysctl.d",
    "usr/lib/sysctl.d",
    "lib/sysctl.d",
];
const SYSCTL_CONF: &str = "etc/sysctl.conf";

/// One setting, where it was read.
#[derive(Debug, PartialEq, Eq)]
pub struct Setting {
    /// The path under /proc/sys (`net/ipv4/ip_forward`).
    pub key: String,
    pub value: String,
    /// The key had a leading `-`: a failure is not reported as one.
    pub may_fail: bool,
    /// `FILE:LINE`, for messages.
    pub origin: String,
}

/// The files to read under `root` (`/` at boot), in the order they apply.
pub fn files(root: &Path) -> Vec<PathBuf> {
    let mut by_name: Vec<(std::ffi::OsString, PathBuf)> = Vec::new();
    let mut seen = HashSet::new();
    for dir in DIRS {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut here: Vec<_> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .filter(|n| Path::new(n).extension().is_some_and(|x| x == "conf"))
            .collect();
        here.sort();
        for name in here {
            if seen.insert(name.clone()) {
                by_name.push((name.clone(), root.join(dir).join(&name)));
            }
        }
    }
    by_name.sort();
    let mut out: Vec<PathBuf> = by_name.into_iter().map(|(_, p)| p).collect();
    let conf = root.join(SYSCTL_CONF);
    let canonical = |p: &Path| std::fs::canonicalize(p).ok();
    if conf.is_file() {
        let c = canonical(&conf);
        if !out.iter().any(|p| canonical(p) == c) {
            out.push(conf);
        }
    }
    out
}

/// The settings of one file's text; lines that are not settings are returned as
/// problems (`FILE:LINE: what`).
pub fn parse(file: &str, text: &str) -> (Vec<Setting>, Vec<String>) {
    let mut settings = Vec::new();
    let mut problems = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let origin = format!("{file}:{}", i + 1);
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            problems.push(format!("{origin}: no '=' in {line:?}"));
            continue;
        };
        let (key, may_fail) = match key.trim().strip_prefix('-') {
            Some(k) => (k.trim(), true),
            None => (key.trim(), false),
        };
        match normalize(key) {
            Ok(key) => settings.push(Setting {
                key,
                value: value.trim().to_string(),
                may_fail,
                origin,
            }),
            Err(why) => problems.push(format!("{origin}: key {key:?}: {why}")),
        }
    }
    (settings, problems)
}

/// A key as its path under /proc/sys.
fn normalize(key: &str) -> Result<String, &'static str> {
    if key.is_empty() {
        return Err("empty");
    }
    if key.contains(['*', '?', '[']) {
        return Err("globs are not expanded");
    }
    let slash_first = match (key.find('/'), key.find('.')) {
        (Some(s), Some(d)) => s < d,
        (Some(_), None) => true,
        _ => false,
    };
    let path: String = if slash_first {
        key.trim_start_matches('/').to_string()
    } else {
        key.chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect()
    };
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err("not a path below /proc/sys");
    }
    Ok(path)
}

/// What applying came to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub set: usize,
    pub failed: usize,
    /// Failures of `-` keys, not reported one by one.
    pub quiet: usize,
}

/// Writes each key's last setting into `proc_sys` (`/proc/sys` at boot), in the order
/// of those last settings (a key set by two files is written once, the later value).
pub fn apply(proc_sys: &Path, settings: &[Setting]) -> Applied {
    let mut done = Applied::default();
    let last = |i: usize, s: &Setting| !settings[i + 1..].iter().any(|t| t.key == s.key);
    for (_, s) in settings.iter().enumerate().filter(|(i, s)| last(*i, s)) {
        let path = proc_sys.join(&s.key);
        let written = rustix::fs::open(
            &path,
            OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(std::io::Error::from)
        .and_then(|fd| std::fs::File::from(fd).write_all(format!("{}\n", s.value).as_bytes()));
        match written {
            Ok(()) => done.set += 1,
            Err(_) if s.may_fail => done.quiet += 1,
            Err(e) => {
                done.failed += 1;
                log::warn!("sysctl: {}: {} = {}: {e}", s.origin, s.key, s.value);
            }
        }
    }
    done
}

/// The boot's duty: every file under `/`, applied to /proc/sys.
pub fn apply_all() {
    let mut settings = Vec::new();
    let files = files(Path::new("/"));
    for f in &files {
        let name = f.display().to_string();
        // Only regular files (a FIFO would hold the boot), at most 1 MiB each.
        match std::fs::metadata(f) {
            Ok(m) if m.is_file() && m.len() <= 1 << 20 => {}
            Ok(_) => {
                log::warn!("sysctl: {name}: not a regular file of at most 1 MiB; skipped");
                continue;
            }
            Err(e) => {
                log::warn!("sysctl: {name}: {e}");
                continue;
            }
        }
        match std::fs::read_to_string(f) {
            Ok(text) => {
                let (mut s, problems) = parse(&name, &text);
                for p in problems {
                    log::warn!("sysctl: {p}; the line is skipped");
                }
                settings.append(&mut s);
            }
            Err(e) => log::warn!("sysctl: {name}: {e}"),
        }
    }
    let done = apply(Path::new("/proc/sys"), &settings);
    log::info!(
        "sysctl: {} of {} settings applied from {} files ({} failed, {} allowed to fail)",
        done.set,
        settings.len(),
        files.len(),
        done.failed,
        done.quiet
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn test_files_etc_hides_the_same_name_in_usr_lib_and_order_is_by_name() {
        // Arrange
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(r, "usr/lib/sysctl.d/50-default.conf", "a = 1\n");
        write(r, "etc/sysctl.d/50-default.conf", "a = 2\n");
        write(r, "usr/lib/sysctl.d/10-early.conf", "b = 1\n");
        write(r, "etc/sysctl.d/99-late.conf", "c = 1\n");
        write(r, "etc/sysctl.d/README", "not a conf\n");
        write(r, "etc/sysctl.conf", "d = 1\n");

        // Act
        let got = files(r);

        // Assert
        let rel: Vec<_> = got
            .iter()
            .map(|p| p.strip_prefix(r).unwrap().display().to_string())
            .collect();
        assert_eq!(
            rel,
            [
                "usr/lib/sysctl.d/10-early.conf",
                "etc/sysctl.d/50-default.conf",
                "etc/sysctl.d/99-late.conf",
                "etc/sysctl.conf",
            ]
        );
    }

    #[test]
    fn test_files_sysctl_conf_linked_from_sysctl_d_is_read_once() {
        // Arrange: Debian's /etc/sysctl.d/99-sysctl.conf -> ../sysctl.conf.
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(r, "etc/sysctl.conf", "d = 1\n");
        std::fs::create_dir_all(r.join("etc/sysctl.d")).unwrap();
        std::os::unix::fs::symlink("../sysctl.conf", r.join("etc/sysctl.d/99-sysctl.conf"))
            .unwrap();

        // Act
        let got = files(r);

        // Assert
        assert_eq!(got, [r.join("etc/sysctl.d/99-sysctl.conf")]);
    }

    #[test]
    fn test_parse_dots_slashes_comments_and_dash() {
        // Act
        let (s, problems) = parse(
            "f.conf",
            "# c\n; c\n\nnet.ipv4.ip_forward = 1\nnet/ipv4/conf/eth0.100/forwarding=0\n\
             -kernel.no_such = 3 \nkernel.domainname = a b\nno equals\nnet.*.x = 1\na..b = 1\n",
        );

        // Assert
        let keys: Vec<_> = s
            .iter()
            .map(|s| (s.key.as_str(), s.value.as_str(), s.may_fail))
            .collect();
        assert_eq!(
            keys,
            [
                ("net/ipv4/ip_forward", "1", false),
                ("net/ipv4/conf/eth0.100/forwarding", "0", false),
                ("kernel/no_such", "3", true),
                ("kernel/domainname", "a b", false),
            ]
        );
        assert_eq!(s[0].origin, "f.conf:4");
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("f.conf:8: no '='"), "{problems:?}");
        assert!(problems[1].contains("globs"), "{problems:?}");
        assert!(problems[2].contains("not a path"), "{problems:?}");
    }

    #[test]
    fn test_apply_writes_values_counts_failures_and_follows_no_link() {
        // Arrange: a stand-in /proc/sys (the boot test checks the real one).
        let t = tempfile::tempdir().unwrap();
        let ps = t.path();
        write(ps, "fs/protected_regular", "0\n");
        std::fs::create_dir_all(ps.join("kernel")).unwrap();
        std::os::unix::fs::symlink(ps.join("fs/protected_regular"), ps.join("kernel/link"))
            .unwrap();
        let (settings, _) = parse(
            "t.conf",
            "fs.protected_regular = 1\nfs.protected_regular = 2\nkernel.link = 9\n-kernel.no.such = 1\nno.dir.here = 1\n",
        );

        // Act
        let done = apply(ps, &settings);

        // Assert
        assert_eq!(
            std::fs::read_to_string(ps.join("fs/protected_regular")).unwrap(),
            "2\n"
        );
        assert_eq!(
            done,
            Applied {
                set: 1,
                failed: 2,
                quiet: 1
            }
        );
    }
}
