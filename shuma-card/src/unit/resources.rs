//! What a unit asks of its surroundings: its environment (Environment=,
//! EnvironmentFile=, the user's variables), the directories systemd creates for it,
//! its dependencies on other units, and its cgroup limits.

use std::path::Path;

use super::directives;
use super::env::{self, Env};
use super::plan::{Dep, DepKind, Limit, Planner, Src};
use super::rlimits;
use super::specifier;
use super::values::{self, Size, Span};
use crate::spec::{DirKind, Rlimit, ServiceDir};
use crate::units;

/// systemd's default `PATH` for system services (Debian 12's split-usr build).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// PATH, then Environment=, then EnvironmentFile= (whose values override, as systemd
/// reads the files at start and applies them last).
pub fn environment(p: &mut Planner) -> Env {
    let mut env = Env::default();
    env.set("PATH", DEFAULT_PATH);
    for src in p.list("Environment") {
        // Words first, then the specifiers of each (config_parse_environ).
        let parsed = {
            let cx = p.cx();
            let expand = |w: &str| specifier::expand(w, &cx).map_err(|e| e.to_string());
            env::parse_assignments(&src.value, &expand)
        };
        match parsed {
            Ok((good, bad)) => {
                for (k, val) in good {
                    env.set(&k, &val);
                }
                for word in bad {
                    p.comments.push(format!(
                        "{}:{}: {word:?} is not NAME=VALUE: ignored (as systemd does)",
                        src.file, src.line
                    ));
                }
            }
            Err(e) => p.note(&src, format!("not translated: {e}")),
        }
    }
    for src in p.list("EnvironmentFile") {
        let Some(v) = p.value(&src) else { continue };
        let (path, optional) = match v.strip_prefix('-') {
            Some(rest) => (rest.to_string(), true),
            None => (v.clone(), false),
        };
        if !path.starts_with('/') {
            p.note(&src, "not translated: not an absolute path");
            continue;
        }
        if path.contains(['*', '?', '[']) {
            p.note(
                &src,
                "not translated: a wildcard is matched only when the service starts",
            );
            p.unreadable_env = true;
            continue;
        }
        match p.machine.read(Path::new(&path)) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let vars = env::parse_env_file(&text);
                p.comments.push(format!(
                    "{}:{}: {} variables read from {path} at conversion (edits made later need a new conversion)",
                    src.file,
                    src.line,
                    vars.len()
                ));
                for (k, val) in vars {
                    env.set(&k, &val);
                }
            }
            Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => {
                p.comments.push(format!(
                    "{}:{}: {path} is absent at conversion; skipped, as systemd skips a missing -{path}",
                    src.file, src.line
                ));
            }
            Err(e) => {
                p.note(&src, format!("not translated: {path} could not be read at conversion ({e}): its variables are not in the card"));
                p.unreadable_env = true;
            }
        }
    }
    env
}

/// The user's passwd entry on the machine: (name, home, shell).
pub fn passwd(p: &Planner, user: &str) -> Option<(String, String, String)> {
    let bytes = p.machine.read(Path::new("/etc/passwd")).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 7 && (f[0] == user || f[2] == user))
            .then(|| (f[0].to_string(), f[5].to_string(), f[6].to_string()))
    })
}

pub fn home_of(p: &Planner, user: Option<&str>) -> Option<String> {
    passwd(p, user.unwrap_or("root")).map(|(_, home, _)| home)
}

/// With User=, systemd sets USER, LOGNAME, HOME and SHELL from the user's entry.
pub fn user_env(p: &mut Planner, env: &mut Env, user: Option<&(Src, String)>) {
    let Some((src, user)) = user else { return };
    match passwd(p, user) {
        Some((name, home, shell)) => {
            for (k, v) in [
                ("USER", &name),
                ("LOGNAME", &name),
                ("HOME", &home),
                ("SHELL", &shell),
            ] {
                if env.get(k).is_none() {
                    env.set(k, v);
                }
            }
        }
        None => {
            let src = src.clone();
            p.note(&src, format!("partly translated: user = {user:?}; HOME, SHELL, USER and LOGNAME are not set: {user} is not in the machine's /etc/passwd at conversion"));
        }
    }
}

/// RuntimeDirectory= and friends onto the command's directory fields (arje makes them
/// before each start, as root, and hands them to the command's user and group), and
/// the variables systemd sets for them.
pub fn directories(p: &mut Planner, env: &mut Env, user: Option<&str>) -> Vec<ServiceDir> {
    let kinds = [
        ("RuntimeDirectory", DirKind::Runtime, "RUNTIME_DIRECTORY"),
        ("StateDirectory", DirKind::State, "STATE_DIRECTORY"),
        ("CacheDirectory", DirKind::Cache, "CACHE_DIRECTORY"),
        ("LogsDirectory", DirKind::Logs, "LOGS_DIRECTORY"),
        (
            "ConfigurationDirectory",
            DirKind::Configuration,
            "CONFIGURATION_DIRECTORY",
        ),
    ];
    let mut out = Vec::new();
    for (key, kind, var) in kinds {
        let mut paths: Vec<String> = Vec::new();
        let mut first: Option<Src> = None;
        for src in p.list(key) {
            let Some(v) = p.value(&src) else { continue };
            for word in v.split_whitespace() {
                match dir_path(word) {
                    Ok(path) => {
                        if !paths.contains(&path) {
                            paths.push(path);
                        }
                    }
                    Err(why) => p.note(&src, format!("not translated: {word:?}: {why}")),
                }
            }
            first.get_or_insert(src);
        }
        let Some(src) = first else { continue };
        if paths.is_empty() {
            continue;
        }
        let mode_key = format!("{key}Mode");
        let mut mode = 0o755;
        if let Some((msrc, m)) = p.single(&mode_key) {
            match u32::from_str_radix(m.trim(), 8) {
                Ok(n) if n <= 0o7777 => mode = n,
                _ => p.note(
                    &msrc,
                    "not translated: not an octal mode up to 7777 (systemd ignores it too): 0755",
                ),
            }
        }
        let base = kind.base();
        let full: Vec<String> = paths.iter().map(|d| format!("{base}/{d}")).collect();
        env.set(var, &full.join(":"));
        if kind == DirKind::Runtime {
            // systemd removes the runtime directory when the service stops (and, without
            // "restart", at a restart too); arje makes it again before each start but
            // never removes it, so what was left in it is still there.
            let preserve = p.single("RuntimeDirectoryPreserve").map(|(_, v)| v);
            let kept = preserve
                .as_deref()
                .is_some_and(|v| values::parse_bool(v) == Some(true));
            if !kept {
                let when = if preserve.as_deref() == Some("restart") {
                    "when the service stops"
                } else {
                    "when the service stops or restarts"
                };
                p.note(&src, format!("partly translated: arje makes it before each start and never removes it; systemd removes it {when}, so its old contents are not there at the next start"));
            }
        }
        if kind == DirKind::Configuration && user.is_some() {
            p.note(&src, "partly translated: arje gives it to the command's user and group; systemd leaves a configuration directory to root");
        }
        out.extend(
            paths
                .into_iter()
                .map(|path| ServiceDir { kind, path, mode }),
        );
    }
    out
}

/// A directory of RuntimeDirectory= and friends, simplified as systemd does (repeated
/// and trailing slashes, `.` components dropped), or why it is not one a card takes.
fn dir_path(word: &str) -> Result<String, &'static str> {
    if word.contains(':') {
        // "dir:symlink" also makes a symlink (systemd 250).
        return Err("a directory with a symlink to it is not translated; only plain relative directory names are");
    }
    if word.starts_with('/') {
        return Err("not a relative path (systemd ignores it too)");
    }
    let parts: Vec<&str> = word
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if parts.is_empty() || parts.contains(&"..") {
        return Err("not a plain relative path (systemd ignores it too)");
    }
    Ok(parts.join("/"))
}

/// Limit*= onto the command's rlimits.
pub fn rlimits(p: &mut Planner) -> Vec<Rlimit> {
    let mut out = Vec::new();
    for key in rlimits::keys() {
        let Some((src, v)) = p.single(key) else {
            continue;
        };
        match rlimits::parse(key, &v) {
            Ok(r) => out.push(r),
            Err(e) => p.note(&src, format!("not translated: {e}")),
        }
    }
    out
}

pub fn dependencies(p: &mut Planner) -> Vec<Dep> {
    let mut out = Vec::new();
    for (key, kind) in [
        ("After", DepKind::After),
        ("Before", DepKind::Before),
        ("Requires", DepKind::Requires),
        ("Wants", DepKind::Wants),
        ("BindsTo", DepKind::BindsTo),
    ] {
        for src in p.list(key) {
            let Some(v) = p.value(&src) else { continue };
            for target in v.split_whitespace() {
                out.push(Dep {
                    kind,
                    target: target.to_string(),
                    src: src.clone(),
                });
            }
        }
    }
    for src in p.list("Conflicts") {
        let Some(v) = p.value(&src) else { continue };
        for target in v.split_whitespace() {
            if !directives::implicit_unit(target) {
                p.note(
                    &src,
                    format!(
                        "not translated: {target}: {}",
                        directives::untranslated("Unit", "Conflicts")
                    ),
                );
            }
        }
    }
    out
}

pub fn limits(p: &mut Planner) -> Vec<Limit> {
    let mut out = Vec::new();
    for (key, card_key) in [
        ("MemoryMax", "memory_max"),
        ("MemoryHigh", "memory_high"),
        ("MemorySwapMax", "memory_swap_max"),
        ("TasksMax", "pids_max"),
    ] {
        let Some((src, v)) = p.single(key) else {
            continue;
        };
        let value = match values::parse_size(&v) {
            Some(Size::Infinity) => "max".to_string(),
            Some(Size::Bytes(0)) if key != "MemorySwapMax" => {
                p.note(
                    &src,
                    "not translated: a limit of 0 would stop the command from running",
                );
                continue;
            }
            Some(Size::Bytes(n)) if key == "TasksMax" => {
                if v.trim().bytes().all(|b| b.is_ascii_digit()) {
                    n.to_string()
                } else {
                    p.note(&src, "not translated: not a number of tasks");
                    continue;
                }
            }
            Some(Size::Bytes(n)) => units::format_size(n),
            Some(Size::Permyriad(_)) => {
                p.note(&src, "not translated: a share of the machine's memory or task limit depends on the machine; write a size");
                continue;
            }
            None => {
                p.note(&src, "not translated: not a size");
                continue;
            }
        };
        out.push(Limit {
            key: card_key,
            value,
            src,
        });
    }
    if let Some((src, v)) = p.single("CPUQuota") {
        let period_us = match p.single("CPUQuotaPeriodSec") {
            Some((_, pv)) => match values::parse_span(&pv) {
                Some(Span::Usec(us)) => us.clamp(1_000, 1_000_000),
                _ => units::CPU_PERIOD_DEFAULT_US,
            },
            None => units::CPU_PERIOD_DEFAULT_US,
        };
        let pct = v
            .trim()
            .strip_suffix('%')
            .and_then(|n| n.trim().parse::<u64>().ok());
        match pct
            .and_then(|pct| pct.checked_mul(period_us))
            .map(|q| q / 100)
        {
            Some(quota) if quota >= units::CPU_QUOTA_MIN_US => out.push(Limit {
                key: "cpu_max",
                value: format!("{quota} {period_us}"),
                src,
            }),
            _ => p.note(
                &src,
                "not translated: not a whole percentage the kernel's cpu.max accepts",
            ),
        }
    }
    for (key, card_key) in [("CPUWeight", "cpu_weight"), ("IOWeight", "io_weight")] {
        let Some((src, v)) = p.single(key) else {
            continue;
        };
        match v.trim().parse::<u16>() {
            Ok(n) if units::WEIGHT_RANGE.contains(&n) => out.push(Limit {
                key: card_key,
                value: n.to_string(),
                src,
            }),
            _ => p.note(&src, "not translated: a card's weight is 1..=10000"),
        }
    }
    out
}
