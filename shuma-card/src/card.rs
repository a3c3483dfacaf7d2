//! Cards: TOML files that declare a workspace and its commands, in human units.
//!
//! Loading is a pure function from text to a [`WorkspaceSpec`]: a card with any fault
//! yields one [`CardError`] pointing at the faulty key or value, and nothing else.
//! The loader parses the document into a span-keeping tree ([`tree`]), walks it by hand
//! with the schema below (unknown keys are errors), then applies the semantic rules of
//! [`validate`], the same ones the daemon applies to specs that arrive over the socket.
//! The field reference is docs/CARDS.md.

mod deps;
mod exec;
mod fields;
mod tree;
mod validate;

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::ops::Range;
use std::path::Path;

use toml::Spanned;

use crate::spec::{
    CommandKind, CommandSpec, Limits, LogTarget, OomAction, RestartPolicy, WorkspaceSpec,
};
use crate::units;

mod pipeline;
use fields::{get, join};
use tree::{line_col, Node};
pub use validate::{
    check, check_command, check_limits, validate, validate_command, validate_pipeline, SpecError,
};

/// Largest card file read, in bytes. A spec travels in one control frame (1 MiB), so a
/// larger card could never be sent anyway.
pub const MAX_CARD_BYTES: u64 = 1 << 20;

/// Why a card was refused: where (1-based line and column of the faulty key or value),
/// which field (`service[0].restart`; empty for a TOML syntax error) and what is wrong.
/// `line` and `column` are 0 when the file could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub field: String,
    pub message: String,
}

impl fmt::Display for CardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            return write!(f, "{}: {}", self.file, self.message);
        }
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "field {}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for CardError {}

/// Read and load the card at `path`; errors name the path as given.
pub fn load_file(path: &Path) -> Result<WorkspaceSpec, CardError> {
    let (src, file) = read_capped(path)?;
    load_str(&src, &file)
}

/// The text of the file at `path` (at most [`MAX_CARD_BYTES`]) and its name as given.
fn read_capped(path: &Path) -> Result<(String, String), CardError> {
    let file = path.display().to_string();
    let io_err = |message: String| CardError {
        file: file.clone(),
        line: 0,
        column: 0,
        field: String::new(),
        message,
    };
    let f = std::fs::File::open(path).map_err(|e| io_err(format!("cannot open card: {e}")))?;
    let mut src = String::new();
    // Read one byte past the cap so that an oversized card is detected, not truncated.
    f.take(MAX_CARD_BYTES + 1)
        .read_to_string(&mut src)
        .map_err(|e| io_err(format!("cannot read card: {e}")))?;
    if src.len() as u64 > MAX_CARD_BYTES {
        return Err(io_err(format!(
            "card is larger than {MAX_CARD_BYTES} bytes"
        )));
    }
    Ok((src, file))
}

/// Read the `[[pipeline]]` tables of a file (and nothing else), as `shuma pipeline save`
/// does; errors name the path as given.
pub fn load_pipelines_file(path: &Path) -> Result<Vec<crate::PipelineSpec>, CardError> {
    let (src, file) = read_capped(path)?;
    load_pipelines_str(&src, &file)
}

/// The `[[pipeline]]` tables of a text, each checked as a card's would be.
pub fn load_pipelines_str(src: &str, file: &str) -> Result<Vec<crate::PipelineSpec>, CardError> {
    let loader = Loader {
        src,
        file,
        spans: HashMap::new(),
        paths: Vec::new(),
    };
    loader.load_pipelines()
}

/// Load a card from its text; `file` is only used in error messages.
pub fn load_str(src: &str, file: &str) -> Result<WorkspaceSpec, CardError> {
    let loader = Loader {
        src,
        file,
        spans: HashMap::new(),
        paths: Vec::new(),
    };
    loader.load()
}

const WORKSPACE_KEYS: &[&str] = &[
    "name",
    "memory_max",
    "memory_high",
    "memory_swap_max",
    "pids_max",
    "cpu_max",
    "cpu_weight",
    "io_weight",
    "ttl",
    "on_oom",
];
const COMMAND_KEYS: &[&str] = &[
    "name",
    "argv",
    "stop_signal",
    "stop_grace",
    "env",
    "cwd",
    "user",
    "group",
    "log",
    "after",
    "requires",
    "wants",
    "runtime_directory",
    "runtime_directory_mode",
    "state_directory",
    "state_directory_mode",
    "cache_directory",
    "cache_directory_mode",
    "logs_directory",
    "logs_directory_mode",
    "configuration_directory",
    "configuration_directory_mode",
    "rlimits",
    "kill_mode",
];
/// Keys only a `[[service]]` may have: a task runs once.
const SERVICE_KEYS: &[&str] = &[
    "restart",
    "backoff",
    "max_restarts",
    "restart_window",
    "min_uptime",
];
/// Keys only a `[[service]]` may have: a task is ready when it exits 0, and a health
/// check or a watchdog acts through restarts, which a task never has.
const SERVICE_READY_KEYS: &[&str] = &["ready", "ready_timeout", "watchdog", "health"];

/// Walks one card. `spans` remembers where every field came from, keyed like
/// [`SpecError`] (command index, card field name), so a semantic error found after the
/// walk still points into the card.
struct Loader<'a> {
    src: &'a str,
    file: &'a str,
    spans: HashMap<(Option<usize>, String), Range<usize>>,
    /// The card path of each command ("service[0]", "task[1]"), by index in the spec.
    paths: Vec<String>,
}

impl<'a> Loader<'a> {
    fn error(&self, span: Range<usize>, field: &str, message: impl Into<String>) -> CardError {
        let (line, column) = line_col(self.src, span.start);
        CardError {
            file: self.file.into(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        }
    }

    /// The document's top-level table.
    fn parse_root(&self) -> Result<tree::Entries, CardError> {
        let root: Node = toml::from_str(self.src).map_err(|e| {
            let message = if e.message().contains("$__toml_private_datetime") {
                "dates and times are not valid for any card field".to_string()
            } else {
                e.message().to_string()
            };
            self.error(e.span().unwrap_or(0..0), "", message)
        })?;
        let Node::Table(root) = root else {
            return Err(self.error(0..0, "", "a card is a TOML table"));
        };
        Ok(root)
    }

    fn load(mut self) -> Result<WorkspaceSpec, CardError> {
        let root = self.parse_root()?;
        self.check_keys(&root, &["workspace", "service", "task", "pipeline"], "")?;
        let Some(ws) = get(&root, "workspace") else {
            return Err(self.error(0..0, "workspace", "missing the [workspace] table"));
        };
        let mut spec = self.workspace(ws)?;
        // Commands in card order: the order of their [[service]] / [[task]] headers.
        let mut tables = Vec::new();
        for (key, kind) in [
            ("service", CommandKind::Service),
            ("task", CommandKind::Task),
        ] {
            if let Some(node) = get(&root, key) {
                let Node::Array(items) = node.get_ref() else {
                    let msg = format!(
                        "expected an array of tables ([[{key}]]), got {}",
                        node.get_ref().type_name()
                    );
                    return Err(self.error(node.span(), key, msg));
                };
                tables.extend(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, t)| (t.span().start, format!("{key}[{i}]"), kind, t)),
                );
            }
        }
        tables.sort_by_key(|t| t.0);
        for (index, (_, path, kind, table)) in tables.into_iter().enumerate() {
            self.paths.push(path.clone());
            spec.commands.push(self.command(table, &path, index, kind)?);
        }
        if let Some(node) = get(&root, "pipeline") {
            spec.pipelines = self.pipelines(node)?;
        }
        validate::check(&spec).map_err(|e| self.spec_error(e))?;
        Ok(spec)
    }

    /// Place a semantic error at the span its field was read from.
    fn spec_error(&self, e: SpecError) -> CardError {
        if e.command.is_none() && e.field.starts_with("pipeline[") {
            return self.pipeline_error(e);
        }
        let path = match e.command {
            None => format!("workspace.{}", e.field),
            Some(i) => format!(
                "{}.{}",
                self.paths.get(i).map_or("command", String::as_str),
                e.field
            ),
        };
        let span = self
            .spans
            .get(&(e.command, e.field.clone()))
            .or_else(|| self.spans.get(&(e.command, String::new())));
        self.error(span.cloned().unwrap_or(0..0), &path, e.message)
    }

    fn record(&mut self, command: Option<usize>, field: &str, span: Range<usize>) {
        self.spans.insert((command, field.to_string()), span);
    }

    fn workspace(&mut self, node: &Spanned<Node>) -> Result<WorkspaceSpec, CardError> {
        let table = self.table(node, "workspace")?;
        self.check_keys(table, WORKSPACE_KEYS, "workspace")?;
        self.record(None, "", node.span());
        let mut spec = WorkspaceSpec::default();
        let mut limits = Limits::default();
        let Some(name) = get(table, "name") else {
            return Err(self.error(node.span(), "workspace.name", "missing required field"));
        };
        for (key, value) in table {
            let key = key.get_ref().as_str();
            let field = format!("workspace.{key}");
            let f = field.as_str();
            self.record(None, key, value.span());
            match key {
                "name" => spec.name = self.string(name, f)?,
                "memory_max" => limits.memory_max = self.size(value, f)?,
                "memory_high" => limits.memory_high = self.size(value, f)?,
                "memory_swap_max" => limits.memory_swap_max = self.size(value, f)?,
                "pids_max" => {
                    limits.pids_max = match value.get_ref() {
                        Node::Str(s) if s == "max" => None,
                        Node::Int(_) => Some(self.int(value, f, u64::MAX)?),
                        other => {
                            return Err(self.type_error(value, f, other, "an integer or \"max\""))
                        }
                    }
                }
                "cpu_max" => {
                    let s = self.string(value, f)?;
                    limits.cpu_max = match s.as_str() {
                        "max" => None,
                        s => Some(
                            units::parse_cpu_max(s)
                                .map_err(|e| self.error(value.span(), f, e.to_string()))?,
                        ),
                    }
                }
                "cpu_weight" => limits.cpu_weight = Some(self.int(value, f, 10_000)? as u16),
                "io_weight" => limits.io_weight = Some(self.int(value, f, 10_000)? as u16),
                "ttl" => spec.ttl_ms = Some(self.duration(value, f)?),
                _ => {
                    spec.on_oom = match self.choice(value, f, &["restart", "stop-workspace"])? {
                        0 => OomAction::Restart,
                        _ => OomAction::StopWorkspace,
                    }
                }
            }
        }
        spec.limits = limits;
        Ok(spec)
    }

    /// `restart`: "never", "on-failure" or "always" (a service's and a pipeline's).
    fn restart_policy(
        &self,
        value: &Spanned<Node>,
        field: &str,
    ) -> Result<RestartPolicy, CardError> {
        let policies = [
            RestartPolicy::Never,
            RestartPolicy::OnFailure,
            RestartPolicy::Always,
        ];
        Ok(policies[self.choice(value, field, &["never", "on-failure", "always"])?])
    }

    fn command(
        &mut self,
        node: &Spanned<Node>,
        path: &str,
        idx: usize,
        kind: CommandKind,
    ) -> Result<CommandSpec, CardError> {
        let table = self.table(node, path)?;
        let at = Some(idx);
        self.record(at, "", node.span());
        if kind == CommandKind::Task {
            for (key, _) in table {
                let name = key.get_ref().as_str();
                let msg = if SERVICE_KEYS.contains(&name) {
                    "a task runs once and is never restarted; restart settings belong to a [[service]]"
                } else if SERVICE_READY_KEYS.contains(&name) {
                    "a task is ready when it exits 0; ready, ready_timeout, watchdog and health belong to a [[service]]"
                } else {
                    continue;
                };
                return Err(self.error(key.span(), &join(path, name), msg));
            }
            self.check_keys(table, COMMAND_KEYS, path)?;
        } else {
            let all: Vec<&str> = COMMAND_KEYS
                .iter()
                .chain(SERVICE_KEYS)
                .chain(SERVICE_READY_KEYS)
                .copied()
                .collect();
            self.check_keys(table, &all, path)?;
        }
        let missing =
            |field: &str| self.error(node.span(), &join(path, field), "missing required field");
        let name = self.string(
            get(table, "name").ok_or_else(|| missing("name"))?,
            &join(path, "name"),
        )?;
        let argv_node = get(table, "argv").ok_or_else(|| missing("argv"))?;
        let mut cmd = CommandSpec::new(name, kind, Vec::new());
        for (key, value) in table {
            let key = key.get_ref().as_str();
            let field = join(path, key);
            let f = field.as_str();
            self.record(at, key, value.span());
            match key {
                "name" => {}
                "argv" => cmd.argv = self.strings(argv_node, path, "argv", at)?,
                "restart" => cmd.restart = self.restart_policy(value, f)?,
                "backoff" => {
                    let backoff = self.table(value, f)?;
                    self.check_keys(backoff, &["initial", "max"], f)?;
                    for (k, v) in backoff {
                        let sub = format!("backoff.{}", k.get_ref());
                        self.record(at, &sub, v.span());
                        let ms = self.duration(v, &join(path, &sub))?;
                        match k.get_ref().as_str() {
                            "initial" => cmd.backoff_initial_ms = ms,
                            _ => cmd.backoff_max_ms = ms,
                        }
                    }
                }
                "max_restarts" => {
                    cmd.max_restarts = self.int(value, f, u64::from(u32::MAX))? as u32
                }
                "restart_window" => cmd.restart_window_ms = self.duration(value, f)?,
                "min_uptime" => cmd.min_uptime_ms = self.duration(value, f)?,
                "stop_signal" => {
                    let text = match value.get_ref() {
                        Node::Int(n) => n.to_string(),
                        _ => self.string(value, f)?,
                    };
                    cmd.stop_signal = units::parse_signal(&text)
                        .map_err(|e| self.error(value.span(), f, e.to_string()))?;
                }
                "stop_grace" => cmd.stop_grace_ms = self.duration(value, f)?,
                "env" => {
                    for (k, v) in self.table(value, f)? {
                        let sub = format!("env.{}", k.get_ref());
                        self.record(at, &sub, k.span());
                        let text = self.string(v, &join(path, &sub))?;
                        cmd.env.push((k.get_ref().clone(), text));
                    }
                }
                "cwd" => cmd.cwd = Some(self.string(value, f)?),
                "user" => cmd.user = Some(self.id(value, f)?),
                "group" => cmd.group = Some(self.id(value, f)?),
                "ready" => cmd.ready = self.readiness(value, path, at)?,
                "ready_timeout" => cmd.ready_timeout_ms = self.duration(value, f)?,
                "watchdog" => cmd.watchdog_ms = Some(self.duration(value, f)?),
                "health" => cmd.health = Some(self.health(value, path, at)?),
                "kill_mode" => {
                    cmd.kill_mode = [
                        crate::spec::KillMode::ControlGroup,
                        crate::spec::KillMode::Process,
                    ][self.choice(value, f, &["control-group", "process"])?]
                }
                "rlimits" => cmd.rlimits = self.rlimits(value, f)?,
                k if k.ends_with("_directory") => {
                    let mode_key = format!("{k}_mode");
                    let mode = match get(table, &mode_key) {
                        Some(m) => self.mode(m, &join(path, &mode_key))?,
                        None => 0o755,
                    };
                    let stem = k.trim_end_matches("_directory");
                    let (kind, ..) = crate::spec::DirKind::ALL
                        .into_iter()
                        .find(|(_, s, _)| *s == stem)
                        .expect("a key of COMMAND_KEYS");
                    for p in self.strings(value, path, key, at)? {
                        cmd.directories.push(crate::spec::ServiceDir {
                            kind,
                            path: p,
                            mode,
                        });
                    }
                }
                k if k.ends_with("_directory_mode") => {}
                "after" => cmd.after = self.deps(value, path, key, at)?,
                "requires" => cmd.requires = self.deps(value, path, key, at)?,
                "wants" => cmd.wants = self.deps(value, path, key, at)?,
                _ => {
                    let s = self.string(value, f)?;
                    cmd.log = match s.as_str() {
                        "ring" => LogTarget::Ring,
                        "console" => LogTarget::Console,
                        _ => match s.strip_prefix("file:") {
                            Some(p) => LogTarget::File(p.to_string()),
                            None => {
                                let msg =
                                    format!("expected one of ring, console, file:PATH, got {s:?}");
                                return Err(self.error(value.span(), f, msg));
                            }
                        },
                    }
                }
            }
        }
        Ok(cmd)
    }
}
