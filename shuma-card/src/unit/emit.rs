//! The card's TOML text. Every field whose value matters to the translation is
//! written, even when it equals the card's default, so the card says what it means
//! without the reader (or a later default) having to supply it.

use std::fmt::Write;

use crate::spec::{
    CommandKind, CommandSpec, DepRef, DirKind, KillMode, LogTarget, Readiness, RestartPolicy,
    Rlimit, ServiceDir, WorkspaceSpec,
};
use crate::units;

/// One unit's part of the card.
pub struct Block {
    pub unit: String,
    pub description: Option<String>,
    pub comments: Vec<String>,
    pub notes: Vec<String>,
    pub cmds: Vec<(CommandSpec, String)>,
}

/// A TOML basic string.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A key: bare when TOML allows it, quoted otherwise.
fn key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        quote(k)
    }
}

/// A comment line: one line, no control characters.
fn comment(out: &mut String, prefix: &str, text: &str) {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let _ = writeln!(out, "#{prefix}{clean}");
}

fn list(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", inner.join(", "))
}

fn deps(d: &[DepRef]) -> String {
    list(&d.iter().map(ToString::to_string).collect::<Vec<_>>())
}

/// A limit as the card writes it: a number when soft and hard are the same and TOML's
/// integers hold it, else a string, `"infinity"` or `"SOFT:HARD"`.
fn rlimit(r: &Rlimit) -> String {
    let one = |v: Option<u64>| v.map_or("infinity".to_string(), |n| n.to_string());
    match (r.soft, r.hard) {
        (Some(n), Some(h)) if n == h && i64::try_from(n).is_ok() => n.to_string(),
        (s, h) if s == h => quote(&one(s)),
        (s, h) => quote(&format!("{}:{}", one(s), one(h))),
    }
}

fn duration(ms: u64) -> String {
    quote(&units::format_duration_ms(ms))
}

/// The whole card.
pub fn card(ws: &WorkspaceSpec, blocks: &[Block]) -> String {
    let mut out = String::new();
    out.push_str("# Converted from systemd units by `shuma card from-unit` (docs/UNITS.md).\n");
    let noted: usize = blocks.iter().map(|b| b.notes.len()).sum();
    if noted == 0 {
        out.push_str("# Every directive was translated.\n");
    } else {
        let _ = writeln!(
            out,
            "# {noted} directive(s) not translated, or only in part: see the notes of each unit."
        );
    }
    out.push_str("\n[workspace]\n");
    let _ = writeln!(out, "name = {}", quote(&ws.name));
    let l = &ws.limits;
    for (k, v) in [
        ("memory_max", l.memory_max),
        ("memory_high", l.memory_high),
        ("memory_swap_max", l.memory_swap_max),
    ] {
        if let Some(v) = v {
            let _ = writeln!(out, "{k} = {}", quote(&units::format_size(v)));
        }
    }
    if let Some(p) = l.pids_max {
        let _ = writeln!(out, "pids_max = {p}");
    }
    if let Some(c) = l.cpu_max {
        let _ = writeln!(out, "cpu_max = {}", quote(&units::format_cpu_max(c)));
    }
    if let Some(w) = l.cpu_weight {
        let _ = writeln!(out, "cpu_weight = {w}");
    }
    if let Some(w) = l.io_weight {
        let _ = writeln!(out, "io_weight = {w}");
    }
    for b in blocks {
        out.push('\n');
        let title = match &b.description {
            Some(d) => format!(" {}: {d}", b.unit),
            None => format!(" {}", b.unit),
        };
        comment(&mut out, "", &title);
        for c in &b.comments {
            comment(&mut out, "   ", c);
        }
        if !b.notes.is_empty() {
            comment(&mut out, "", " not translated, or only in part:");
            for n in &b.notes {
                comment(&mut out, "   ", n);
            }
        }
        for (cmd, note) in &b.cmds {
            out.push('\n');
            if !note.is_empty() {
                comment(&mut out, " ", note);
            }
            command(&mut out, cmd);
        }
    }
    out
}

fn command(out: &mut String, c: &CommandSpec) {
    let table = match c.kind {
        CommandKind::Service => "service",
        CommandKind::Task => "task",
    };
    let _ = writeln!(out, "[[{table}]]");
    let _ = writeln!(out, "name = {}", quote(&c.name));
    let _ = writeln!(out, "argv = {}", list(&c.argv));
    if c.kind == CommandKind::Service {
        let restart = match c.restart {
            RestartPolicy::Never => "never",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Always => "always",
        };
        let _ = writeln!(out, "restart = {}", quote(restart));
        if c.restart != RestartPolicy::Never {
            let _ = writeln!(
                out,
                "backoff = {{ initial = {}, max = {} }}",
                duration(c.backoff_initial_ms),
                duration(c.backoff_max_ms)
            );
            let _ = writeln!(out, "max_restarts = {}", c.max_restarts);
            if c.max_restarts > 0 {
                let _ = writeln!(out, "restart_window = {}", duration(c.restart_window_ms));
            }
        }
        let _ = writeln!(out, "min_uptime = {}", duration(c.min_uptime_ms));
        let ready = match &c.ready {
            Readiness::Notify => "\"notify\"",
            _ => "\"started\"",
        };
        let _ = writeln!(out, "ready = {ready}");
        let _ = writeln!(out, "ready_timeout = {}", duration(c.ready_timeout_ms));
        if let Some(w) = c.watchdog_ms {
            let _ = writeln!(out, "watchdog = {}", duration(w));
        }
    }
    if c.stop_signal != 15 {
        let _ = writeln!(
            out,
            "stop_signal = {}",
            quote(&units::format_signal(c.stop_signal))
        );
    }
    let _ = writeln!(out, "stop_grace = {}", duration(c.stop_grace_ms));
    if let Some(cwd) = &c.cwd {
        let _ = writeln!(out, "cwd = {}", quote(cwd));
    }
    if let Some(u) = &c.user {
        let _ = writeln!(out, "user = {}", quote(u));
    }
    if let Some(g) = &c.group {
        let _ = writeln!(out, "group = {}", quote(g));
    }
    if c.kill_mode == KillMode::Process {
        out.push_str("kill_mode = \"process\"\n");
    }
    for (kind, stem, _) in DirKind::ALL {
        let dirs: Vec<&ServiceDir> = c.directories.iter().filter(|d| d.kind == kind).collect();
        let Some(first) = dirs.first() else { continue };
        let paths: Vec<String> = dirs.iter().map(|d| d.path.clone()).collect();
        let _ = writeln!(out, "{stem}_directory = {}", list(&paths));
        // One mode per kind, as systemd has one *DirectoryMode= per kind; written as
        // systemd writes modes, with a leading 0 ("0755", "02750").
        let _ = writeln!(
            out,
            "{stem}_directory_mode = {}",
            quote(&format!("0{:03o}", first.mode))
        );
    }
    if !c.rlimits.is_empty() {
        let items: Vec<String> = c
            .rlimits
            .iter()
            .map(|r| format!("{} = {}", r.resource, rlimit(r)))
            .collect();
        let _ = writeln!(out, "rlimits = {{ {} }}", items.join(", "));
    }
    match &c.log {
        LogTarget::Ring => {}
        LogTarget::Console => out.push_str("log = \"console\"\n"),
        LogTarget::File(p) => {
            let _ = writeln!(out, "log = {}", quote(&format!("file:{p}")));
        }
    }
    for (k, d) in [
        ("after", &c.after),
        ("requires", &c.requires),
        ("wants", &c.wants),
    ] {
        if !d.is_empty() {
            let _ = writeln!(out, "{k} = {}", deps(d));
        }
    }
    if !c.env.is_empty() {
        let _ = writeln!(out, "[{table}.env]");
        for (k, v) in &c.env {
            let _ = writeln!(out, "{} = {}", key(k), quote(v));
        }
    }
}
