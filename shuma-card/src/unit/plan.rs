//! One unit's settings, merged from its files, turned into card commands: the main
//! command (a `[[service]]`, or a `[[task]]` for Type=oneshot and Type=forking), tasks
//! for `ExecStartPre=`, `ExecStartPost=` and the state directories, their order among
//! themselves, and the dependencies and limits that [`super::assemble`] resolves across
//! units. Whatever the card cannot express becomes a [`Note`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::directives;
use super::env::{self, Env};
use super::exec::{self, CommandLine, SEARCH_PATH};
use super::lookup::{LoadedUnit, Machine};
use super::name::UnitName;
use super::specifier::{self, Context};
use super::values::{self, Size, Span};
use super::{ConvertError, Note};
use crate::spec::{CommandKind, CommandSpec, LogTarget, Readiness, RestartPolicy};
use crate::units;

/// systemd's default `PATH` for system services (Debian 12's split-usr build).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The program that creates RuntimeDirectory= and friends (coreutils).
pub const INSTALL: &str = "/usr/bin/install";

/// One assignment, where it came from.
#[derive(Debug, Clone)]
pub struct Src {
    pub file: String,
    pub line: usize,
    pub key: String,
    pub value: String,
}

impl Src {
    pub(super) fn note(&self, text: impl Into<String>) -> Note {
        let mut directive = format!("{}={}", self.key, self.value);
        if directive.chars().count() > 100 {
            directive = directive.chars().take(99).collect::<String>() + "…";
        }
        Note {
            file: self.file.clone(),
            line: self.line,
            directive: directive.replace(|c: char| c.is_control(), "?"),
            text: text.into(),
        }
    }
}

/// Kinds of dependency between units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepKind {
    After,
    Before,
    Requires,
    Wants,
    BindsTo,
}

/// A dependency on another unit, resolved by `assemble`.
#[derive(Debug, Clone)]
pub struct Dep {
    pub kind: DepKind,
    pub target: String,
    pub src: Src,
}

/// A workspace limit a unit asks for.
#[derive(Debug, Clone)]
pub struct Limit {
    /// The card's key: memory_max, memory_high, ...
    pub key: &'static str,
    /// The value in the card's syntax ("512M", "max", "50%").
    pub value: String,
    pub src: Src,
}

/// A command of the unit, its place among the unit's other commands by index.
#[derive(Debug, Clone)]
pub struct PlanCmd {
    /// Appended to the unit's card name: "" for the main command, "-pre", ...
    pub suffix: String,
    pub spec: CommandSpec,
    pub after: Vec<usize>,
    pub requires: Vec<usize>,
    /// Said above the command in the card.
    pub comment: String,
}

/// One unit, planned.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: UnitName,
    pub requested: String,
    pub fragment: String,
    pub description: Option<String>,
    pub cmds: Vec<PlanCmd>,
    /// The command that stands for the unit (requires and wants point at it).
    pub main: usize,
    /// The last to be done when the unit has started (after points at it).
    pub last: usize,
    pub deps: Vec<Dep>,
    pub limits: Vec<Limit>,
    pub notes: Vec<Note>,
    pub comments: Vec<String>,
}

impl Plan {
    /// The commands that wait on nothing else of the unit: where an `After=` goes.
    pub fn entry(&self) -> Vec<usize> {
        (0..self.cmds.len())
            .filter(|&i| self.cmds[i].after.is_empty())
            .collect()
    }
}

/// Settings of the unit after merging its files: single values (the last wins, an
/// empty one resets) and lists (an empty assignment empties them).
#[derive(Default)]
struct Settings {
    single: HashMap<String, Src>,
    lists: BTreeMap<String, Vec<Src>>,
    /// Directives not translated, in file order.
    other: Vec<Src>,
}

/// The settings this module reads; `true` for list settings.
const KNOWN: &[(&str, &str, bool)] = &[
    ("Unit", "After", true),
    ("Unit", "Before", true),
    ("Unit", "Requires", true),
    ("Unit", "Wants", true),
    ("Unit", "BindsTo", true),
    ("Unit", "Conflicts", true),
    ("Unit", "StartLimitIntervalSec", false),
    ("Unit", "StartLimitInterval", false),
    ("Unit", "StartLimitBurst", false),
    ("Unit", "Description", false),
    ("Service", "StartLimitInterval", false),
    ("Service", "StartLimitBurst", false),
    ("Service", "Type", false),
    ("Service", "ExecStart", true),
    ("Service", "ExecStartPre", true),
    ("Service", "ExecStartPost", true),
    ("Service", "Restart", false),
    ("Service", "RestartSec", false),
    ("Service", "TimeoutStartSec", false),
    ("Service", "TimeoutStopSec", false),
    ("Service", "TimeoutSec", false),
    ("Service", "WatchdogSec", false),
    ("Service", "User", false),
    ("Service", "Group", false),
    ("Service", "Environment", true),
    ("Service", "EnvironmentFile", true),
    ("Service", "WorkingDirectory", false),
    ("Service", "KillSignal", false),
    ("Service", "KillMode", false),
    ("Service", "StandardOutput", false),
    ("Service", "StandardError", false),
    ("Service", "StandardInput", false),
    ("Service", "RemainAfterExit", false),
    ("Service", "NotifyAccess", false),
    ("Service", "BusName", false),
    ("Service", "PIDFile", false),
    ("Service", "RuntimeDirectory", true),
    ("Service", "StateDirectory", true),
    ("Service", "CacheDirectory", true),
    ("Service", "LogsDirectory", true),
    ("Service", "ConfigurationDirectory", true),
    ("Service", "RuntimeDirectoryMode", false),
    ("Service", "StateDirectoryMode", false),
    ("Service", "CacheDirectoryMode", false),
    ("Service", "LogsDirectoryMode", false),
    ("Service", "ConfigurationDirectoryMode", false),
    ("Service", "RuntimeDirectoryPreserve", false),
    ("Service", "MemoryMax", false),
    ("Service", "MemoryLimit", false),
    ("Service", "MemoryHigh", false),
    ("Service", "MemorySwapMax", false),
    ("Service", "TasksMax", false),
    ("Service", "CPUQuota", false),
    ("Service", "CPUQuotaPeriodSec", false),
    ("Service", "CPUWeight", false),
    ("Service", "IOWeight", false),
];

fn gather(unit: &LoadedUnit, notes: &mut Vec<Note>, comments: &mut Vec<String>) -> Settings {
    let mut s = Settings::default();
    let mut install = false;
    for file in &unit.files {
        for issue in &file.parsed.issues {
            comments.push(format!("{}:{}: {}", file.label, issue.line, issue.message));
        }
        for d in &file.parsed.directives {
            let src = Src {
                file: file.label.clone(),
                line: d.line,
                key: d.key.clone(),
                value: d.value.clone(),
            };
            let section = d.section.as_str();
            if section == "Install" {
                install = true;
                continue;
            }
            if section.starts_with("X-")
                || directives::silent(section, &d.key) && d.key != "Description"
            {
                continue;
            }
            if section != "Unit" && section != "Service" {
                notes.push(src.note(format!(
                    "not translated: section [{section}] does not belong in a service unit"
                )));
                continue;
            }
            let known = KNOWN
                .iter()
                .find(|(sec, key, _)| *sec == section && *key == d.key);
            match known {
                Some((_, _, true)) => {
                    let list = s.lists.entry(d.key.clone()).or_default();
                    if d.value.is_empty() {
                        list.clear();
                    } else {
                        list.push(src);
                    }
                }
                Some((_, _, false)) => {
                    // Aliases of the same setting: the last assignment wins.
                    let keys: Vec<&str> = match d.key.as_str() {
                        "TimeoutSec" => vec!["TimeoutStartSec", "TimeoutStopSec"],
                        "StartLimitInterval" => vec!["StartLimitIntervalSec"],
                        "MemoryLimit" => vec!["MemoryMax"],
                        k => vec![k],
                    };
                    for k in keys {
                        if d.value.is_empty() {
                            s.single.remove(k);
                        } else {
                            s.single.insert(k.to_string(), src.clone());
                        }
                    }
                }
                None => {
                    // Unknown to the converter: an empty assignment resets, like a list.
                    if d.value.is_empty() {
                        s.other.retain(|o| o.key != d.key);
                    } else {
                        s.other.push(src);
                    }
                }
            }
        }
    }
    if install {
        comments.push(
            "[Install] is not translated: a card in arje's cards directory is started when arje starts"
                .into(),
        );
    }
    s
}

/// The unit being planned: its settings, the machine, and what is found on the way.
struct Planner<'a> {
    machine: &'a Machine<'a>,
    name: UnitName,
    fragment: String,
    s: Settings,
    notes: Vec<Note>,
    comments: Vec<String>,
    /// An EnvironmentFile= could not be read: a variable unset here may be set there.
    unreadable_env: bool,
}

impl<'a> Planner<'a> {
    fn cx(&self) -> Context<'_> {
        Context {
            name: &self.name,
            fragment: &self.fragment,
        }
    }

    fn refuse(&self, src: Option<&Src>, reason: impl Into<String>) -> ConvertError {
        ConvertError::Refused {
            unit: self.name.full.clone(),
            at: src.map(|s| (s.file.clone(), s.line)),
            reason: reason.into(),
        }
    }

    /// A setting's value with its specifiers expanded; a note and `None` when one of
    /// them cannot be.
    fn value(&mut self, src: &Src) -> Option<String> {
        match specifier::expand(&src.value, &self.cx()) {
            Ok(v) => Some(v),
            Err(e) => {
                self.notes.push(src.note(format!("not translated: {e}")));
                None
            }
        }
    }

    fn single(&mut self, key: &str) -> Option<(Src, String)> {
        let src = self.s.single.get(key)?.clone();
        let v = self.value(&src)?;
        Some((src, v))
    }

    fn list(&self, key: &str) -> Vec<Src> {
        self.s.lists.get(key).cloned().unwrap_or_default()
    }

    fn note(&mut self, src: &Src, text: impl Into<String>) {
        self.notes.push(src.note(text));
    }
}

/// The service type, as systemd.service(5) defines the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Simple,
    Exec,
    Idle,
    Notify,
    NotifyReload,
    Forking,
    Oneshot,
    Dbus,
}

/// Plan one unit.
pub fn plan(machine: &Machine, unit: LoadedUnit) -> Result<Plan, ConvertError> {
    if unit.name.kind != "service" {
        return Err(ConvertError::Refused {
            unit: unit.name.full.clone(),
            at: None,
            reason: format!(
                "a {} unit, not a service: only services are converted{}",
                unit.name.kind,
                if unit.name.kind == "socket" {
                    " (socket activation is not supported)"
                } else {
                    ""
                }
            ),
        });
    }
    let mut notes = Vec::new();
    let mut comments = unit.comments.clone();
    comments.insert(0, format!("from {}", unit.fragment));
    for f in unit.files.iter().skip(1) {
        comments.push(format!("drop-in {}", f.path));
    }
    let s = gather(&unit, &mut notes, &mut comments);
    let mut p = Planner {
        machine,
        name: unit.name.clone(),
        fragment: unit.fragment.clone(),
        s,
        notes,
        comments,
        unreadable_env: false,
    };
    let description = p.single("Description").map(|(_, v)| v);
    let ty = service_type(&mut p);
    let env = environment(&mut p);
    let user = p.single("User");
    let group = p.single("Group").map(|(_, v)| v);
    let mut base = CommandSpec::new("", CommandKind::Task, Vec::new());
    base.user = user.as_ref().map(|(_, v)| v.clone());
    base.group = group;
    base.stop_grace_ms = 90_000;
    base.log = log_target(&mut p);
    if let Some((src, sig)) = p.single("KillSignal") {
        match units::parse_signal(&sig) {
            Ok(n) => base.stop_signal = n,
            Err(e) => p.note(&src, format!("not translated: {e}")),
        }
    }
    if let Some((src, mode)) = p.single("KillMode") {
        if mode != "control-group" {
            p.note(&src, "not translated: arje stops every process of the command (the stop signal to its process group, then all of its cgroup), not the main process alone");
        }
    }
    if let Some((src, v)) = p.single("TimeoutStopSec") {
        match values::parse_span(&v) {
            // 0 and infinity both disable the timeout (config_parse_sec_fix_0); the
            // card's longest grace stands for it.
            Some(Span::Usec(0) | Span::Infinity) => base.stop_grace_ms = units::MAX_DURATION_MS,
            Some(Span::Usec(us)) => {
                base.stop_grace_ms = values::usec_to_ms(us).min(units::MAX_DURATION_MS)
            }
            None => p.note(&src, "not translated: not a time span"),
        }
    }
    if let Some((src, v)) = p.single("StandardInput") {
        if v != "null" {
            p.note(&src, "not translated: a card's command reads /dev/null");
        }
    }
    if let Some((src, dir)) = p.single("WorkingDirectory") {
        let (dir, optional) = match dir.strip_prefix('-') {
            Some(d) => (d.to_string(), true),
            None => (dir, false),
        };
        let dir = if dir == "~" {
            home_of(&p, base.user.as_deref())
        } else {
            Some(dir)
        };
        match dir {
            Some(d) if d.starts_with('/') => base.cwd = Some(d),
            Some(d) => p.note(
                &src,
                format!("not translated: {d:?} is not an absolute path"),
            ),
            None => p.note(
                &src,
                "not translated: ~ needs the user's home, not found in the machine's /etc/passwd",
            ),
        }
        if optional {
            p.note(&src, "partly translated: arje fails the start when the directory is missing; the - prefix let systemd go on");
        }
    }
    let mut base_env = env;
    let dirs = directories(
        &mut p,
        &mut base_env,
        base.user.as_deref(),
        base.group.as_deref(),
    );
    user_env(&mut p, &mut base_env, user.as_ref());
    base.env = base_env.vars.clone();
    let lookup: HashMap<String, String> = base.env.iter().cloned().collect();
    let unreadable_env = p.unreadable_env;

    let mut cmds: Vec<PlanCmd> = Vec::new();
    for (suffix, argv, comment) in dirs {
        let mut spec = base.clone();
        spec.argv = argv;
        // Directories are made by root, as systemd does before it drops privileges.
        spec.user = None;
        spec.group = None;
        cmds.push(PlanCmd {
            suffix,
            spec,
            after: Vec::new(),
            requires: Vec::new(),
            comment,
        });
    }
    let dir_tasks: Vec<usize> = (0..cmds.len()).collect();

    let build = |p: &mut Planner, src: &Src, line: &CommandLine| -> Result<CommandSpec, String> {
        let path = resolve_program(p.machine, &line.path)?;
        let mut argv = line.argv.clone();
        if !line.prefixes.no_env {
            let e = exec::expand_env(&argv, &lookup);
            for var in e.unset {
                let why = if RUNTIME_VARS.contains(&var.as_str()) {
                    format!("not translated: ${var} is set by systemd when it runs the command; arje does not set it, so it expands to nothing")
                } else if unreadable_env {
                    format!("partly translated: ${var} is not set here and expands to nothing; an EnvironmentFile= that could not be read may set it")
                } else {
                    continue;
                };
                p.note(src, why);
            }
            argv = e.argv;
        }
        if line.prefixes.argv0 {
            if argv.first() != Some(&line.path) {
                p.note(src, "not translated: @ passes another argv[0]; a card's argv[0] is the program's path");
            }
            argv[0] = path.clone();
        } else {
            argv[0] = path.clone();
        }
        if line.prefixes.shell {
            p.note(
                src,
                "not translated: | (run through the user's shell) is not supported",
            );
        }
        let mut spec = base.clone();
        spec.argv = argv;
        if line.prefixes.full_privileges {
            // + : without the User=/Group= switch; arje has no other restriction to lift.
            spec.user = None;
            spec.group = None;
        }
        Ok(spec)
    };

    let parse_lines =
        |p: &mut Planner, key: &str| -> Result<Vec<(Src, CommandLine)>, ConvertError> {
            let mut out = Vec::new();
            for src in p.list(key) {
                let Some(v) = p.value(&src) else {
                    if key == "ExecStart" {
                        return Err(p.refuse(
                            Some(&src),
                            "its specifiers cannot be expanded at conversion",
                        ));
                    }
                    continue;
                };
                match exec::parse(&v) {
                    Ok(lines) => out.extend(lines.into_iter().map(|l| (src.clone(), l))),
                    Err(e) if key == "ExecStart" => {
                        return Err(p.refuse(Some(&src), format!("ExecStart: {e}")))
                    }
                    Err(e) => p.note(
                        &src,
                        format!("not translated: {e} (systemd ignores the line too)"),
                    ),
                }
            }
            Ok(out)
        };

    let pre = parse_lines(&mut p, "ExecStartPre")?;
    let start = parse_lines(&mut p, "ExecStart")?;
    let post = parse_lines(&mut p, "ExecStartPost")?;
    if start.is_empty() {
        return Err(p.refuse(None, "no ExecStart=: nothing to run"));
    }
    if ty != Type::Oneshot && start.len() > 1 {
        return Err(p.refuse(
            Some(&start[1].0),
            "more than one command in ExecStart=, which only Type=oneshot allows",
        ));
    }

    // The chain: directory tasks, then ExecStartPre=, ExecStart= and ExecStartPost=
    // in order. Each waits for the one before (after); it also requires it unless that
    // one had the - prefix, whose failure systemd ignores.
    let mut prev: Vec<(usize, bool)> = dir_tasks.iter().map(|&i| (i, true)).collect();
    let link = |cmds: &mut Vec<PlanCmd>, prev: &[(usize, bool)], cmd: PlanCmd| -> usize {
        let i = cmds.len();
        let mut cmd = cmd;
        for &(j, strict) in prev {
            cmd.after.push(j);
            if strict {
                cmd.requires.push(j);
            }
        }
        cmds.push(cmd);
        i
    };
    let restarts = matches!(
        ty,
        Type::Simple | Type::Exec | Type::Idle | Type::Notify | Type::NotifyReload | Type::Dbus
    ) && p.s.single.get("Restart").is_some_and(|s| s.value != "no");
    for (n, (src, line)) in pre.iter().enumerate() {
        let mut spec = match build(&mut p, src, line) {
            Ok(s) => s,
            Err(e) => return Err(p.refuse(Some(src), format!("ExecStartPre: {e}"))),
        };
        spec.kind = CommandKind::Task;
        if restarts && n == 0 {
            p.note(src, "partly translated: runs once before the first start; systemd runs it again before every restart");
        }
        let suffix = numbered("-pre", n, pre.len());
        let i = link(
            &mut cmds,
            &prev,
            PlanCmd {
                suffix,
                spec,
                after: vec![],
                requires: vec![],
                comment: String::new(),
            },
        );
        prev = vec![(i, !line.prefixes.ignore_failure)];
    }
    let mut main = 0;
    for (n, (src, line)) in start.iter().enumerate() {
        let mut spec = match build(&mut p, src, line) {
            Ok(s) => s,
            Err(e) => return Err(p.refuse(Some(src), format!("ExecStart: {e}"))),
        };
        let last = n + 1 == start.len();
        if line.prefixes.ignore_failure && last {
            p.note(src, "not translated: - (a failure counts as success): arje counts a non-zero exit as a failure");
        }
        spec.kind = match ty {
            Type::Oneshot | Type::Forking => CommandKind::Task,
            _ => CommandKind::Service,
        };
        let suffix = if n == 0 {
            String::new()
        } else {
            format!("-{}", n + 1)
        };
        let i = link(
            &mut cmds,
            &prev,
            PlanCmd {
                suffix,
                spec,
                after: vec![],
                requires: vec![],
                comment: String::new(),
            },
        );
        if n == 0 {
            main = i;
        }
        prev = vec![(i, !line.prefixes.ignore_failure)];
    }
    let mut last = cmds.len() - 1;
    for (n, (src, line)) in post.iter().enumerate() {
        let mut spec = match build(&mut p, src, line) {
            Ok(s) => s,
            Err(e) => return Err(p.refuse(Some(src), format!("ExecStartPost: {e}"))),
        };
        spec.kind = CommandKind::Task;
        if restarts && n == 0 {
            p.note(src, "partly translated: runs once after the first start; systemd runs it again after every restart");
        }
        let suffix = numbered("-post", n, post.len());
        // Every post command requires what came before it; a failing one (without -)
        // fails the unit, so the main service requires it in turn.
        let i = link(
            &mut cmds,
            &prev,
            PlanCmd {
                suffix,
                spec,
                after: vec![],
                requires: vec![],
                comment: String::new(),
            },
        );
        if !line.prefixes.ignore_failure && cmds[main].spec.kind == CommandKind::Service {
            cmds[main].requires.push(i);
        }
        prev = vec![(i, !line.prefixes.ignore_failure)];
        last = i;
    }
    // ExecStart= of a oneshot: the unit is up when the last one is done.
    if ty == Type::Oneshot && post.is_empty() {
        last = cmds.len() - 1;
    }
    service_settings(&mut p, ty, &mut cmds[main].spec);
    let main_spec = cmds[main].spec.clone();
    for c in cmds.iter_mut() {
        if c.spec.kind == CommandKind::Task {
            c.spec.restart = RestartPolicy::Never;
            c.spec.stop_signal = main_spec.stop_signal;
        }
    }
    if ty == Type::Oneshot {
        // Every command of a oneshot chain is one of its ExecStart=.
        if let Some((src, _)) = p.single("TimeoutStartSec") {
            p.note(&src, "not translated: a task has no start timeout");
        }
    }
    let deps = dependencies(&mut p);
    let limits = limits(&mut p);
    for src in std::mem::take(&mut p.s.other) {
        let section = if src.key.starts_with("Condition") || src.key.starts_with("Assert") {
            "Unit"
        } else {
            "Service"
        };
        let reason = directives::untranslated(section, &src.key);
        p.note(&src, format!("not translated: {reason}"));
    }
    p.notes.sort_by(|a, b| {
        (a.file != p.name.full, &a.file, a.line).cmp(&(b.file != p.name.full, &b.file, b.line))
    });
    Ok(Plan {
        name: p.name,
        requested: unit.requested,
        fragment: unit.fragment,
        description,
        cmds,
        main,
        last,
        deps,
        limits,
        notes: p.notes,
        comments: p.comments,
    })
}

/// "-pre" for the only one, "-pre1", "-pre2", ... for several.
fn numbered(base: &str, n: usize, count: usize) -> String {
    if count == 1 {
        base.to_string()
    } else {
        format!("{base}{}", n + 1)
    }
}

/// Variables systemd sets in a command's environment at run time, which a card cannot
/// know at conversion.
const RUNTIME_VARS: &[&str] = &[
    "MAINPID",
    "TERM",
    "INVOCATION_ID",
    "JOURNAL_STREAM",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "MANAGERPID",
    "SYSTEMD_EXEC_PID",
    "MONITOR_SERVICE_RESULT",
    "MONITOR_EXIT_CODE",
    "MONITOR_EXIT_STATUS",
    "MONITOR_INVOCATION_ID",
    "MONITOR_UNIT",
    "SERVICE_RESULT",
    "EXIT_CODE",
    "EXIT_STATUS",
    "CREDENTIALS_DIRECTORY",
    "TRIGGER_UNIT",
    "PIDFILE",
];

/// A program path: absolute as written, or a bare name found in systemd's search path
/// on the machine.
fn resolve_program(machine: &Machine, path: &str) -> Result<String, String> {
    if path.starts_with('/') {
        return Ok(path.to_string());
    }
    for dir in SEARCH_PATH {
        let candidate = format!("{dir}/{path}");
        if machine.executable(Path::new(&candidate)) {
            return Ok(candidate);
        }
    }
    Err(format!(
        "{path:?} is not in the executable search path ({}) under {}",
        SEARCH_PATH.join(":"),
        machine.root.display()
    ))
}

fn service_type(p: &mut Planner) -> Type {
    let explicit = p.single("Type");
    let ty = match explicit.as_ref().map(|(_, v)| v.as_str()) {
        Some("simple") => Type::Simple,
        Some("exec") => Type::Exec,
        Some("idle") => Type::Idle,
        Some("notify") => Type::Notify,
        Some("notify-reload") => Type::NotifyReload,
        Some("forking") => Type::Forking,
        Some("oneshot") => Type::Oneshot,
        Some("dbus") => Type::Dbus,
        other => {
            if let (Some((src, _)), Some(v)) = (&explicit, other) {
                let src = src.clone();
                p.note(
                    &src,
                    format!("not translated: {v:?} is not a service type (systemd ignores it)"),
                );
            }
            if p.s.single.contains_key("BusName") {
                Type::Dbus
            } else if p.s.lists.get("ExecStart").is_some_and(|l| !l.is_empty()) {
                Type::Simple
            } else {
                Type::Oneshot
            }
        }
    };
    let src = explicit
        .map(|(s, _)| s)
        .or_else(|| p.s.single.get("BusName").cloned());
    if let Some(src) = src {
        match ty {
            Type::Forking => p.note(&src, "partly translated: run as a [[task]], ready when it exits 0 as systemd's start is; the daemon it leaves running is stopped with the workspace but not supervised or restarted (arje has no PIDFile= tracking)"),
            Type::Dbus => p.note(&src, "partly translated: ready as soon as started; arje cannot watch for the D-Bus name"),
            Type::NotifyReload => p.note(&src, "partly translated: ready = \"notify\"; arje has no reload"),
            _ => {}
        }
    }
    ty
}

/// Restart, readiness, timeouts and the watchdog of the main command.
fn service_settings(p: &mut Planner, ty: Type, spec: &mut CommandSpec) {
    let restart = p.single("Restart");
    if spec.kind == CommandKind::Task {
        if let Some((src, v)) = &restart {
            if v != "no" {
                let why = if ty == Type::Forking {
                    "not translated: a Type=forking unit runs as a task, which is never restarted"
                } else {
                    "not translated: a Type=oneshot unit runs as a task, which is never restarted"
                };
                p.note(src, why);
            }
        }
        for key in ["RestartSec", "WatchdogSec"] {
            if let Some(src) = p.s.single.get(key).cloned() {
                p.note(
                    &src,
                    "not translated: a task is never restarted nor watched",
                );
            }
        }
        if ty == Type::Forking {
            if let Some(src) = p.s.single.get("TimeoutStartSec").cloned() {
                p.note(&src, "not translated: a task has no start timeout");
            }
        }
        if let Some(src) = p.s.single.get("RemainAfterExit").cloned() {
            if ty != Type::Oneshot {
                p.note(
                    &src,
                    "not translated: a task stays done after its exit anyway",
                );
            }
        }
        return;
    }
    spec.min_uptime_ms = 0;
    spec.restart = match &restart {
        None => RestartPolicy::Never,
        Some((src, v)) => match v.as_str() {
            "no" => RestartPolicy::Never,
            "always" => RestartPolicy::Always,
            "on-failure" => RestartPolicy::OnFailure,
            "on-abnormal" | "on-abort" | "on-watchdog" => {
                p.note(src, format!("partly translated: restart = \"on-failure\", which also restarts after a non-zero exit that {v} does not"));
                RestartPolicy::OnFailure
            }
            "on-success" => {
                p.note(
                    src,
                    "partly translated: restart = \"always\", which also restarts after a failure",
                );
                RestartPolicy::Always
            }
            _ => {
                p.note(
                    src,
                    format!("not translated: {v:?} is not a restart setting (systemd ignores it)"),
                );
                RestartPolicy::Never
            }
        },
    };
    // RestartSec= (default 100ms) is a fixed delay: the backoff starts and stays there.
    let mut delay_ms = 100;
    if let Some((src, v)) = p.single("RestartSec") {
        match values::parse_span(&v) {
            Some(Span::Usec(us)) => {
                delay_ms = values::usec_to_ms(us).clamp(1, units::MAX_DURATION_MS)
            }
            _ => p.note(&src, "not translated: not a finite time span"),
        }
    }
    spec.backoff_initial_ms = delay_ms;
    spec.backoff_max_ms = delay_ms;
    // StartLimitIntervalSec= (10s) and StartLimitBurst= (5): systemd's defaults.
    let mut interval_ms = 10_000;
    let mut burst = 5;
    if let Some((src, v)) = p.single("StartLimitIntervalSec") {
        match values::parse_span(&v) {
            Some(Span::Usec(us)) => {
                interval_ms = values::usec_to_ms(us).min(units::MAX_DURATION_MS)
            }
            Some(Span::Infinity) => interval_ms = units::MAX_DURATION_MS,
            None => p.note(&src, "not translated: not a time span"),
        }
    }
    if let Some((src, v)) = p.single("StartLimitBurst") {
        match v.parse::<u32>() {
            Ok(n) => burst = n,
            Err(_) => p.note(&src, "not translated: not a number"),
        }
    }
    if interval_ms == 0 || burst == 0 {
        spec.max_restarts = 0;
    } else {
        spec.max_restarts = burst;
        spec.restart_window_ms = interval_ms;
    }
    match ty {
        Type::Notify | Type::NotifyReload => spec.ready = Readiness::Notify,
        _ => spec.ready = Readiness::Started,
    }
    if let Some((src, v)) = p.single("TimeoutStartSec") {
        match values::parse_span(&v) {
            Some(Span::Usec(0) | Span::Infinity) => spec.ready_timeout_ms = 0,
            Some(Span::Usec(us)) => {
                spec.ready_timeout_ms = values::usec_to_ms(us).min(units::MAX_DURATION_MS)
            }
            None => p.note(&src, "not translated: not a time span"),
        }
    }
    if let Some((src, v)) = p.single("WatchdogSec") {
        match values::parse_span(&v) {
            Some(Span::Usec(0) | Span::Infinity) => {}
            Some(Span::Usec(_)) if spec.ready != Readiness::Notify => p.note(
                &src,
                "not translated: arje's watchdog needs ready = \"notify\" (Type=notify)",
            ),
            Some(Span::Usec(us)) => {
                spec.watchdog_ms = Some(values::usec_to_ms(us).min(units::MAX_DURATION_MS))
            }
            None => p.note(&src, "not translated: not a time span"),
        }
    }
    if let Some((src, v)) = p.single("NotifyAccess") {
        if v != "main" && !(v == "none" && spec.ready != Readiness::Notify) {
            p.note(
                &src,
                "not translated: arje accepts notifications from the service's main process only",
            );
        }
    }
    if let Some((src, v)) = p.single("RemainAfterExit") {
        if values::parse_bool(&v) == Some(true) {
            p.note(
                &src,
                "not translated: a service that exited counts as stopped in arje",
            );
        }
    }
}

/// PATH, then Environment=, then EnvironmentFile= (whose values override, as systemd
/// reads the files at start and applies them last).
fn environment(p: &mut Planner) -> Env {
    let mut env = Env::default();
    env.set("PATH", DEFAULT_PATH);
    for src in p.list("Environment") {
        let Some(v) = p.value(&src) else { continue };
        match env::parse_assignments(&v) {
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
fn passwd(p: &Planner, user: &str) -> Option<(String, String, String)> {
    let bytes = p.machine.read(Path::new("/etc/passwd")).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 7 && (f[0] == user || f[2] == user))
            .then(|| (f[0].to_string(), f[5].to_string(), f[6].to_string()))
    })
}

fn home_of(p: &Planner, user: Option<&str>) -> Option<String> {
    passwd(p, user.unwrap_or("root")).map(|(_, home, _)| home)
}

/// With User=, systemd sets USER, LOGNAME, HOME and SHELL from the user's entry.
fn user_env(p: &mut Planner, env: &mut Env, user: Option<&(Src, String)>) {
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
fn directories(
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

/// StandardOutput= and StandardError= onto the card's one `log`.
fn log_target(p: &mut Planner) -> LogTarget {
    let out = p.single("StandardOutput");
    let err = p.single("StandardError");
    let map = |p: &mut Planner, s: &Option<(Src, String)>, stdout: bool| -> Option<LogTarget> {
        let (src, v) = s.as_ref()?;
        let (t, note): (LogTarget, Option<&str>) = match v.as_str() {
            "journal" | "syslog" | "kmsg" => (LogTarget::Ring, None),
            "journal+console" | "syslog+console" | "kmsg+console" => (
                LogTarget::Ring,
                Some("partly translated: kept in the command's log ring; the console copy is not"),
            ),
            "inherit" if stdout => (LogTarget::File("/dev/null".into()), None),
            "inherit" => return None,
            "null" => (LogTarget::File("/dev/null".into()), None),
            "tty" => (LogTarget::Console, None),
            v => {
                if let Some(path) = v.strip_prefix("append:") {
                    (LogTarget::File(path.into()), None)
                } else if let Some(path) = v.strip_prefix("file:") {
                    (LogTarget::File(path.into()), Some("partly translated: arje appends to the file; systemd writes it from its start without truncating"))
                } else if let Some(path) = v.strip_prefix("truncate:") {
                    (
                        LogTarget::File(path.into()),
                        Some(
                            "partly translated: arje appends to the file instead of truncating it",
                        ),
                    )
                } else {
                    (
                        LogTarget::Ring,
                        Some("not translated: kept in the command's log ring"),
                    )
                }
            }
        };
        if let LogTarget::File(path) = &t {
            if !path.starts_with('/') {
                p.note(src, "not translated: not an absolute path");
                return Some(LogTarget::Ring);
            }
        }
        if let Some(n) = note {
            p.note(src, n);
        }
        Some(t)
    };
    let o = map(p, &out, true).unwrap_or(LogTarget::Ring);
    match map(p, &err, false) {
        Some(e) if e != o => {
            if let Some((src, _)) = &err {
                let src = src.clone();
                p.note(
                    &src,
                    "not translated: a card has one log for both streams: the StandardOutput= one",
                );
            }
            o
        }
        _ => o,
    }
}

fn dependencies(p: &mut Planner) -> Vec<Dep> {
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

fn limits(p: &mut Planner) -> Vec<Limit> {
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
