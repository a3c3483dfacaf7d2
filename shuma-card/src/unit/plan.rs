//! One unit's settings, merged from its files, turned into card commands: the main
//! command (a `[[service]]`, or a `[[task]]` for Type=oneshot and Type=forking), tasks
//! for `ExecStartPre=` and `ExecStartPost=`, their order among
//! themselves, and the dependencies and limits that [`super::assemble`] resolves across
//! units. Whatever the card cannot express becomes a [`Note`].

use std::path::Path;

use super::chain::{self, Built};
use super::directives;
use super::exec::SEARCH_PATH;
use super::lookup::{LoadedUnit, Machine};
use super::name::UnitName;
use super::resources;
use super::service::{self, Type};
pub use super::settings::Src;
use super::settings::{gather, Settings};
use super::specifier::{self, Context};
use super::values::{self, Span};
use super::{ConvertError, Note};
use crate::spec::{CommandKind, CommandSpec, KillMode, RestartPolicy};
use crate::units;

/// Kinds of dependency between units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// The socket units that would start this service under systemd: its `Sockets=`,
    /// and the socket of its own name. An `After=` one of them is kept as an `after`
    /// this service (which opens its sockets itself under arje).
    pub sockets: Vec<String>,
}

impl Plan {
    /// The commands that wait on nothing else of the unit: where an `After=` goes.
    pub fn entry(&self) -> Vec<usize> {
        (0..self.cmds.len())
            .filter(|&i| self.cmds[i].after.is_empty())
            .collect()
    }
}

/// The unit being planned: its settings, the machine, and what is found on the way.
pub struct Planner<'a> {
    pub(super) machine: &'a Machine<'a>,
    pub(super) name: UnitName,
    pub(super) fragment: String,
    pub(super) s: Settings,
    pub(super) notes: Vec<Note>,
    pub(super) comments: Vec<String>,
    /// An EnvironmentFile= could not be read: a variable unset here may be set there.
    pub(super) unreadable_env: bool,
}

impl<'a> Planner<'a> {
    pub(super) fn cx(&self) -> Context<'_> {
        Context {
            name: &self.name,
            fragment: &self.fragment,
        }
    }

    pub(super) fn refuse(&self, src: Option<&Src>, reason: impl Into<String>) -> ConvertError {
        ConvertError::Refused {
            unit: self.name.full.clone(),
            at: src.map(|s| (s.file.clone(), s.line)),
            reason: reason.into(),
        }
    }

    /// A setting's value with its specifiers expanded; a note and `None` when one of
    /// them cannot be.
    pub(super) fn value(&mut self, src: &Src) -> Option<String> {
        match specifier::expand(&src.value, &self.cx()) {
            Ok(v) => Some(v),
            Err(e) => {
                self.notes.push(src.note(format!("not translated: {e}")));
                None
            }
        }
    }

    /// A single-valued setting, its specifiers expanded where systemd expands them
    /// (names, paths, users; not types, numbers, time spans or sizes, where a `%` is a
    /// percentage: `CPUQuota=50%`).
    pub(super) fn single(&mut self, key: &str) -> Option<(Src, String)> {
        let src = self.s.single.get(key)?.clone();
        if !EXPANDED.contains(&key) {
            let v = src.value.clone();
            return Some((src, v));
        }
        let v = self.value(&src)?;
        Some((src, v))
    }

    pub(super) fn list(&self, key: &str) -> Vec<Src> {
        self.s.lists.get(key).cloned().unwrap_or_default()
    }

    pub(super) fn note(&mut self, src: &Src, text: impl Into<String>) {
        self.notes.push(src.note(text));
    }
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
    // `Sockets=` stays among the directives not translated (and noted as such); it is
    // read here only for the order.
    let mut sockets: Vec<String> =
        p.s.other
            .iter()
            .filter(|src| src.key == "Sockets")
            .flat_map(|src| {
                src.value
                    .split_whitespace()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
    let own = match &p.name.instance {
        Some(i) => format!("{}@{i}.socket", p.name.prefix),
        None => format!("{}.socket", p.name.prefix),
    };
    if !sockets.contains(&own) {
        sockets.push(own);
    }
    let description = p.single("Description").map(|(_, v)| v);
    let ty = service::service_type(&mut p);
    let env = resources::environment(&mut p);
    let user = valid_id(&mut p, "User");
    let group = valid_id(&mut p, "Group").map(|(_, v)| v);
    let mut base = CommandSpec::new("", CommandKind::Task, Vec::new());
    base.user = user.as_ref().map(|(_, v)| v.clone());
    base.group = group;
    base.stop_grace_ms = 90_000;
    base.log = service::log_target(&mut p);
    if let Some((src, sig)) = p.single("KillSignal") {
        match units::parse_signal(&sig) {
            Ok(n) => base.stop_signal = n,
            Err(e) => p.note(&src, format!("not translated: {e}")),
        }
    }
    if let Some((src, mode)) = p.single("KillMode") {
        match mode.as_str() {
            "control-group" => base.kill_mode = KillMode::ControlGroup,
            "process" => base.kill_mode = KillMode::Process,
            "mixed" => p.note(&src, "not translated: kill_mode = \"control-group\": arje sends the stop signal to every process of the command; systemd sends it to the main process alone, and SIGKILL to all after the timeout"),
            "none" => p.note(&src, "not translated: kill_mode = \"control-group\": arje signals every process of the command at a stop; systemd signals none (only ExecStop= runs)"),
            other => p.note(&src, format!("not translated: {other:?} is not a kill mode (systemd ignores it)")),
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
            resources::home_of(&p, base.user.as_deref())
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
    // Every command of the unit gets its directories, limits and kill mode, as systemd
    // applies them to each of the unit's processes: arje makes the directories before
    // each start, so ExecStartPre= finds them (sshd -t needs /run/sshd) and so does the
    // main command after a restart.
    base.directories = resources::directories(&mut p, &mut base_env, base.user.as_deref());
    base.rlimits = resources::rlimits(&mut p);
    resources::user_env(&mut p, &mut base_env, user.as_ref());
    base.env = base_env.vars.clone();
    let Built {
        mut cmds,
        main,
        last,
    } = chain::chain(&mut p, ty, &base)?;
    service::service_settings(&mut p, ty, &mut cmds[main].spec);
    let main_spec = cmds[main].spec.clone();
    for c in cmds.iter_mut() {
        if c.spec.kind == CommandKind::Task {
            c.spec.restart = RestartPolicy::Never;
            c.spec.stop_signal = main_spec.stop_signal;
        }
    }
    if matches!(ty, Type::Oneshot | Type::Forking) {
        // A task has no start timeout: what a oneshot has by default (infinity), and
        // what 0 asks for; a finite one is lost.
        if let Some((src, v)) = p.single("TimeoutStartSec") {
            if !matches!(values::parse_span(&v), Some(Span::Usec(0) | Span::Infinity)) {
                p.note(&src, "not translated: a task has no start timeout");
            }
        }
    }
    if let Some((src, v)) = p.single("IgnoreSIGPIPE") {
        // arje's children start with every signal at SIG_DFL: IgnoreSIGPIPE=no.
        if values::parse_bool(&v) != Some(false) {
            p.note(&src, "not translated: a card's command starts with SIGPIPE at its default action (IgnoreSIGPIPE=no)");
        }
    }
    let deps = resources::dependencies(&mut p);
    let limits = resources::limits(&mut p);
    for src in std::mem::take(&mut p.s.other) {
        if src.key == "ExecReload"
            && directives::is_sighup_to_main(&src.value)
            && !matches!(ty, Type::Oneshot | Type::Forking)
        {
            // What `shuma reload` does to the service: nothing to note. (A forking or
            // oneshot unit is a task here, with no main process left to signal.)
            continue;
        }
        let section = if src.key.starts_with("Condition") || src.key.starts_with("Assert") {
            "Unit"
        } else {
            "Service"
        };
        let reason = directives::untranslated(section, &src.key);
        p.note(&src, format!("not translated: {reason}"));
    }
    Ok(Plan {
        sockets,
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

/// The single-valued settings whose specifiers systemd expands (`unit_full_printf`,
/// `unit_path_printf` in its parsers); list settings are expanded word by word.
const EXPANDED: &[&str] = &[
    "Description",
    "User",
    "Group",
    "WorkingDirectory",
    "StandardOutput",
    "StandardError",
];

/// Marks an error of specifier expansion among those of a command line's syntax.
pub(super) const SPECIFIER: &str = "specifier: ";

/// User= or Group=, if it is a name or number systemd accepts (it ignores others).
fn valid_id(p: &mut Planner, key: &str) -> Option<(Src, String)> {
    let (src, v) = p.single(key)?;
    let ok = !v.is_empty()
        && v.len() <= 256
        && !v.starts_with(['-', '.'])
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.@$".contains(c) || !c.is_ascii());
    if ok {
        Some((src, v))
    } else {
        p.note(
            &src,
            "not translated: not a valid user or group name (systemd ignores it too)",
        );
        None
    }
}

/// Variables systemd sets in a command's environment at run time, which a card cannot
/// know at conversion.
pub(super) const RUNTIME_VARS: &[&str] = &[
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
pub(super) fn resolve_program(machine: &Machine, path: &str) -> Result<String, String> {
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
