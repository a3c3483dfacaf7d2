//! What a unit asks of its surroundings: its environment (Environment=,
//! EnvironmentFile=, the user's variables), the directories systemd creates for it,
//! its dependencies on other units, and its cgroup limits.

use std::path::Path;

use super::directives;
use super::env::{self, Env};
use super::plan::{Dep, DepKind, Limit, Planner, Src};
use super::specifier;
use super::values::{self, Size, Span};
use crate::units;

/// systemd's default `PATH` for system services (Debian 12's split-usr build).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The program that creates RuntimeDirectory= and friends (coreutils).
pub const INSTALL: &str = "/usr/bin/install";

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

/// RuntimeDirectory= and friends: a task per kind that creates the directories with
/// their mode and owner (`install -d`), and the variables systemd sets for them.
pub fn directories(
    p: &mut Planner,
    env: &mut Env,
    user: Option<&str>,
    group: Option<&str>,
) -> Vec<(String, Vec<String>, String)> {
    let kinds = [
        (
            "RuntimeDirectory",
            "/run",
            "RUNTIME_DIRECTORY",
            "-runtime-dir",
            true,
        ),
        (
            "StateDirectory",
            "/var/lib",
            "STATE_DIRECTORY",
            "-state-dir",
            true,
        ),
        (
            "CacheDirectory",
            "/var/cache",
            "CACHE_DIRECTORY",
            "-cache-dir",
            true,
        ),
        (
            "LogsDirectory",
            "/var/log",
            "LOGS_DIRECTORY",
            "-logs-dir",
            true,
        ),
        (
            "ConfigurationDirectory",
            "/etc",
            "CONFIGURATION_DIRECTORY",
            "-config-dir",
            false,
        ),
    ];
    let mut out = Vec::new();
    for (key, root, var, suffix, owned) in kinds {
        let mut paths = Vec::new();
        let mut first: Option<Src> = None;
        for src in p.list(key) {
            let Some(v) = p.value(&src) else { continue };
            for word in v.split_whitespace() {
                // "dir:symlink" makes a symlink too (systemd 250).
                if word.contains(':') || word.starts_with('/') || word.contains("..") {
                    p.note(
                        &src,
                        format!(
                            "not translated: {word:?}: only plain relative directory names are"
                        ),
                    );
                    continue;
                }
                paths.push(format!("{root}/{word}"));
            }
            first.get_or_insert(src);
        }
        let Some(src) = first else { continue };
        if paths.is_empty() {
            continue;
        }
        let mode_key = format!("{key}Mode");
        let mode = match p.single(&mode_key) {
            Some((_, m)) => m,
            None => "0755".into(),
        };
        let mut argv = vec![INSTALL.to_string(), "-d".into(), "-m".into(), mode];
        if owned {
            if let Some(u) = user {
                argv.extend(["-o".into(), u.to_string()]);
            }
            if let Some(g) = group {
                argv.extend(["-g".into(), g.to_string()]);
            }
        }
        argv.extend(paths.iter().cloned());
        env.set(var, &paths.join(":"));
        if key == "RuntimeDirectory" {
            // "restart" keeps it across restarts only; it is still removed at the stop.
            let preserve = p
                .single("RuntimeDirectoryPreserve")
                .is_some_and(|(_, v)| values::parse_bool(&v) == Some(true));
            if !preserve {
                p.note(&src, "partly translated: created by a task before the start; systemd also removes it when the service stops, arje leaves it");
            }
        }
        let comment = format!(
            "{}:{}: {key}= (systemd creates it before the start)",
            src.file, src.line
        );
        out.push((suffix.to_string(), argv, comment));
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
