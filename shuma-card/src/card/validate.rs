//! The semantic rules of a workspace spec, shared by the card loader (which maps a failure
//! back to the line and column of the card) and the daemon (which checks specs arriving
//! over the socket, where there are no spans).

use std::collections::HashSet;

use super::deps;
use crate::pipeline::MAX_PIPELINES_PER_WORKSPACE;
use crate::spec::{
    valid_name, CommandKind, CommandSpec, HealthCheck, Limits, LogTarget, Probe, Readiness,
    RestartPolicy, WorkspaceSpec,
};
use crate::spec::{MAX_COMMANDS_PER_WORKSPACE, MAX_NAME_LEN};
use crate::units::{check_cpu_max, MAX_DURATION_MS, MAX_SIGNAL, WEIGHT_RANGE};

/// Longest path of a unix socket: `sockaddr_un.sun_path` is 108 bytes, and a path that
/// fills it has no room for the terminating NUL that C callers and Rust's std
/// (`UnixStream::connect` refuses 108 bytes) both need.
const MAX_UNIX_PATH: usize = 107;

/// A rule a spec breaks. `field` uses the card's names ("memory_high", "argv[0]",
/// "backoff.initial", "env.PATH"), so the card loader can find the span it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// Index into `WorkspaceSpec::commands`, or `None` for a workspace-level field.
    pub command: Option<usize>,
    pub field: String,
    pub message: String,
}

/// Check every rule on a spec that came without a card (e.g. over the control socket).
/// The message names the workspace, the command and the field.
pub fn validate(spec: &WorkspaceSpec) -> Result<(), String> {
    check(spec).map_err(|e| match e.command {
        None => format!(
            "workspace {:?}: field {}: {}",
            spec.name, e.field, e.message
        ),
        Some(i) => {
            let name = spec.commands.get(i).map_or("", |c| c.name.as_str());
            format!(
                "workspace {:?}: command {i} ({name:?}): field {}: {}",
                spec.name, e.field, e.message
            )
        }
    })
}

/// Check a pipeline on its own, as `shuma pipeline save` sends it: its rules and its
/// nodes' as in a card.
pub fn validate_pipeline(p: &crate::pipeline::PipelineSpec) -> Result<(), String> {
    let spec = WorkspaceSpec {
        pipelines: vec![p.clone()],
        ..Default::default()
    };
    check_pipelines(&spec, &HashSet::new())
        .map_err(|e| format!("pipeline {:?}: field {}: {}", p.name, e.field, e.message))
}

/// Check one command on its own, as `shuma run` sends it.
pub fn validate_command(cmd: &CommandSpec) -> Result<(), String> {
    check_command(cmd)
        .map_err(|(field, msg)| format!("command {:?}: field {field}: {msg}", cmd.name))
}

/// Every rule, stopping at the first broken one (workspace fields first, then commands in
/// order).
pub fn check(spec: &WorkspaceSpec) -> Result<(), SpecError> {
    let ws = |field: &str, message: String| SpecError {
        command: None,
        field: field.into(),
        message,
    };
    if !valid_name(&spec.name) {
        return Err(ws("name", name_message(&spec.name)));
    }
    check_limits(&spec.limits).map_err(|(f, m)| ws(f, m))?;
    if let Some(ttl) = spec.ttl_ms {
        if ttl == 0 || ttl > MAX_DURATION_MS {
            return Err(ws("ttl", "must be more than 0 and at most 365 days".into()));
        }
    }
    if spec.commands.len() > MAX_COMMANDS_PER_WORKSPACE {
        let message =
            format!("a workspace may declare at most {MAX_COMMANDS_PER_WORKSPACE} commands");
        return Err(SpecError {
            command: Some(MAX_COMMANDS_PER_WORKSPACE),
            field: "name".into(),
            message,
        });
    }
    let mut names = HashSet::new();
    for (i, cmd) in spec.commands.iter().enumerate() {
        check_command(cmd).map_err(|(field, message)| SpecError {
            command: Some(i),
            field,
            message,
        })?;
        if !names.insert(cmd.name.as_str()) {
            let message = format!(
                "command name {:?} is already used by another command of this workspace",
                cmd.name
            );
            return Err(SpecError {
                command: Some(i),
                field: "name".into(),
                message,
            });
        }
    }
    check_pipelines(spec, &names)?;
    // Only now is every name known: a dependency may name a command declared after it.
    deps::check_graph(spec)
}

/// Each pipeline's own rules, its nodes' as commands' (a node runs as a task), and names:
/// no two pipelines alike, no node's `pipeline.node` taken by a command.
fn check_pipelines(spec: &WorkspaceSpec, commands: &HashSet<&str>) -> Result<(), SpecError> {
    let at = |i: usize, field: String, message: String| SpecError {
        command: None,
        field: format!("pipeline[{i}].{field}"),
        message,
    };
    if spec.pipelines.len() > MAX_PIPELINES_PER_WORKSPACE {
        let message =
            format!("a workspace may declare at most {MAX_PIPELINES_PER_WORKSPACE} pipelines");
        return Err(at(MAX_PIPELINES_PER_WORKSPACE, "name".into(), message));
    }
    let nodes: usize = spec.pipelines.iter().map(|p| p.nodes.len()).sum();
    if spec.commands.len() + nodes > MAX_COMMANDS_PER_WORKSPACE {
        let message = format!(
            "a workspace may declare at most {MAX_COMMANDS_PER_WORKSPACE} commands, pipeline nodes included"
        );
        return Err(at(0, "node".into(), message));
    }
    let mut names = HashSet::new();
    for (i, p) in spec.pipelines.iter().enumerate() {
        crate::pipeline::check(p).map_err(|(f, m)| at(i, f, m))?;
        for (j, node) in p.nodes.iter().enumerate() {
            if node.kind != CommandKind::Task || node.restart != RestartPolicy::Never {
                let message = "a node is run once per run of its pipeline: restart settings belong to the [[pipeline]]".to_string();
                return Err(at(i, format!("node[{j}].restart"), message));
            }
            check_command(node).map_err(|(f, m)| at(i, format!("node[{j}].{f}"), m))?;
            let full = p.command_name(&node.name);
            if commands.contains(full.as_str()) {
                let message = format!("{full:?} is the name of a command of this workspace");
                return Err(at(i, format!("node[{j}].name"), message));
            }
        }
        if !names.insert(p.name.as_str()) {
            let message = format!("two pipelines are called {:?}", p.name);
            return Err(at(i, "name".into(), message));
        }
    }
    Ok(())
}

pub(super) fn name_message(name: &str) -> String {
    format!("{name:?} is not a valid name: 1 to {MAX_NAME_LEN} characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit")
}

/// The limits' own rules: ranges, and memory_high not above memory_max.
pub fn check_limits(l: &Limits) -> Result<(), (&'static str, String)> {
    if l.memory_max == Some(0) {
        return Err((
            "memory_max",
            "0 bytes would leave no room for any process; use \"max\" for no limit".into(),
        ));
    }
    if l.pids_max == Some(0) {
        return Err((
            "pids_max",
            "0 would forbid every process; use \"max\" for no limit".into(),
        ));
    }
    if let (Some(high), Some(max)) = (l.memory_high, l.memory_max) {
        if high > max {
            return Err((
                "memory_high",
                format!("memory_high ({high} bytes) is above memory_max ({max} bytes)"),
            ));
        }
    }
    if let Some(cpu) = l.cpu_max {
        check_cpu_max(cpu).map_err(|m| ("cpu_max", m))?;
    }
    for (field, w) in [("cpu_weight", l.cpu_weight), ("io_weight", l.io_weight)] {
        if let Some(w) = w {
            if !WEIGHT_RANGE.contains(&w) {
                return Err((field, format!("{w} is outside 1..=10000")));
            }
        }
    }
    Ok(())
}

/// A string that reaches exec, a path or the environment cannot hold a NUL byte.
fn no_nul(field: &str, s: &str) -> Result<(), (String, String)> {
    if s.contains('\0') {
        return Err((field.into(), "contains a NUL byte".into()));
    }
    Ok(())
}

/// One command's rules. The error carries the card field name and the message.
pub fn check_command(c: &CommandSpec) -> Result<(), (String, String)> {
    let err = |field: &str, message: &str| Err((field.to_string(), message.to_string()));
    if !valid_name(&c.name) {
        return Err(("name".into(), name_message(&c.name)));
    }
    let Some(arg0) = c.argv.first() else {
        return err("argv", "must name a program: at least one element");
    };
    // arje never searches PATH: the environment is the card's alone, so a bare name would
    // resolve differently on every host. The program is named by its absolute path.
    if !arg0.starts_with('/') {
        return Err((
            "argv[0]".into(),
            format!("{arg0:?} is not an absolute path (arje does not search PATH)"),
        ));
    }
    for (i, arg) in c.argv.iter().enumerate() {
        no_nul(&format!("argv[{i}]"), arg)?;
    }
    let mut keys = HashSet::new();
    for (key, value) in &c.env {
        let field = format!("env.{key}");
        if key.is_empty() || key.contains('=') {
            return err(
                &field,
                "an environment variable name must be non-empty and contain no '='",
            );
        }
        no_nul(&field, key)?;
        no_nul(&field, value)?;
        if !keys.insert(key.as_str()) {
            return err(&field, "set twice");
        }
    }
    if let Some(cwd) = &c.cwd {
        if !cwd.starts_with('/') {
            return err("cwd", "must be an absolute path");
        }
        no_nul("cwd", cwd)?;
    }
    for (field, id) in [("user", &c.user), ("group", &c.group)] {
        if let Some(id) = id {
            if id.is_empty()
                || id.contains(|ch: char| ch == '\0' || ch == ':' || ch.is_whitespace())
            {
                return err(
                    field,
                    "must be a name or a numeric id, without spaces or ':'",
                );
            }
        }
    }
    if let LogTarget::File(path) = &c.log {
        if !path.starts_with('/') {
            return err("log", "the file of file:PATH must be an absolute path");
        }
        no_nul("log", path)?;
    }
    if c.kind == CommandKind::Task && c.restart != RestartPolicy::Never {
        return err(
            "restart",
            "a task runs once: its restart policy must be never",
        );
    }
    if c.backoff_initial_ms == 0 {
        return err(
            "backoff.initial",
            "must be at least 1ms, or a crashing service would spin",
        );
    }
    if c.backoff_initial_ms > c.backoff_max_ms {
        return err("backoff.initial", "is above backoff.max");
    }
    for (field, ms) in [
        ("backoff.max", c.backoff_max_ms),
        ("restart_window", c.restart_window_ms),
        ("min_uptime", c.min_uptime_ms),
        ("stop_grace", c.stop_grace_ms),
    ] {
        if ms > MAX_DURATION_MS {
            return err(field, "is longer than the 365-day cap");
        }
    }
    if c.max_restarts > 0 && c.restart_window_ms == 0 {
        return err(
            "restart_window",
            "must be more than 0 when max_restarts is set",
        );
    }
    if !(1..=MAX_SIGNAL).contains(&c.stop_signal) {
        return err("stop_signal", "must be a signal number in 1..=64");
    }
    check_readiness(c)?;
    check_host_fields(c)?;
    deps::check_refs(c)
}

/// Directories and resource limits: a directory is a relative path of plain components
/// (no `..`, no empty or absolute part: root makes it under a fixed base), a mode fits in
/// 0o7777; a resource is named once, and its soft limit is not above its hard one.
fn check_host_fields(c: &CommandSpec) -> Result<(), (String, String)> {
    for d in &c.directories {
        let (_, stem, _) = crate::spec::DirKind::ALL
            .into_iter()
            .find(|(k, ..)| *k == d.kind)
            .expect("every kind is listed");
        let field = format!("{stem}_directory");
        let plain = |part: &str| !part.is_empty() && part != "." && part != "..";
        if d.path.len() > 255 || d.path.contains('\0') || !d.path.split('/').all(plain) {
            return Err((
                field,
                format!(
                    "{:?} is not a relative path of plain names (no '..', no leading '/')",
                    d.path
                ),
            ));
        }
        if d.mode > 0o7777 {
            return Err((
                format!("{field}_mode"),
                format!("{:o} is above 7777", d.mode),
            ));
        }
    }
    let mut seen = HashSet::new();
    for r in &c.rlimits {
        let field = format!("rlimits.{}", r.resource);
        if !crate::spec::RLIMIT_NAMES.contains(&r.resource.as_str()) {
            return Err((field, "not a resource setrlimit(2) knows".into()));
        }
        if !seen.insert(r.resource.as_str()) {
            return Err((field, "named twice".into()));
        }
        let above = match (r.soft, r.hard) {
            (None, Some(_)) => true,
            (Some(s), Some(h)) => s > h,
            _ => false,
        };
        if above {
            return Err((field, "the soft limit is above the hard one".into()));
        }
    }
    Ok(())
}

/// `ready`, `ready_timeout`, `watchdog` and `health`: a service's alone, since a task is
/// ready when it exits 0 and is never restarted, so neither a readiness signal nor a
/// health check means anything for it.
fn check_readiness(c: &CommandSpec) -> Result<(), (String, String)> {
    let err = |field: &str, message: &str| Err((field.to_string(), message.to_string()));
    if c.kind == CommandKind::Task {
        let service_only =
            "a task is ready when it exits 0; readiness and health belong to a [[service]]";
        if c.ready != Readiness::Started {
            return err("ready", service_only);
        }
        if c.watchdog_ms.is_some() {
            return err("watchdog", service_only);
        }
        if c.health.is_some() {
            return err("health", service_only);
        }
    }
    match &c.ready {
        Readiness::Started | Readiness::Notify => {}
        // The fd the service writes to is one arje opens in the child; 0, 1 and 2 are
        // already its stdin, stdout and stderr, so a lower number would clobber one.
        Readiness::Fd(fd) if *fd < 3 => {
            return err(
                "ready.fd",
                "must be 3 or above: 0, 1 and 2 are stdin, stdout and stderr",
            )
        }
        Readiness::Fd(_) => {}
        Readiness::Line(text) if text.is_empty() => {
            return err("ready.line", "must not be empty: it would match any line")
        }
        // With log = console or file:PATH the command writes straight to the console or
        // the file: arje never reads its output, so no line could ever match.
        Readiness::Line(_) if c.log != LogTarget::Ring => {
            return err(
                "ready.line",
                "needs log = \"ring\": arje sees a command's output only when it captures it",
            )
        }
        Readiness::Line(text) => no_nul("ready.line", text)?,
        Readiness::Probe(probe) => check_probe("ready", probe)?,
    }
    if c.ready_timeout_ms > MAX_DURATION_MS {
        return err("ready_timeout", "is longer than the 365-day cap");
    }
    if let Some(ms) = c.watchdog_ms {
        // systemd's rule: WATCHDOG=1 is part of the sd_notify protocol, so a service that
        // does not speak it could never keep the watchdog fed.
        if c.ready != Readiness::Notify {
            return err(
                "watchdog",
                "needs ready = \"notify\": the service feeds the watchdog with WATCHDOG=1 on NOTIFY_SOCKET",
            );
        }
        if ms == 0 || ms > MAX_DURATION_MS {
            return err(
                "watchdog",
                "must be more than 0 and at most 365 days; leave it out for no watchdog",
            );
        }
    }
    if let Some(health) = &c.health {
        check_health(health)?;
    }
    Ok(())
}

fn check_health(h: &HealthCheck) -> Result<(), (String, String)> {
    let HealthCheck {
        probe,
        interval_ms,
        timeout_ms,
        retries,
    } = h;
    check_probe("health", probe)?;
    for (field, ms) in [
        ("health.interval", *interval_ms),
        ("health.timeout", *timeout_ms),
    ] {
        if ms == 0 || ms > MAX_DURATION_MS {
            return Err((
                field.into(),
                "must be more than 0 and at most 365 days".into(),
            ));
        }
    }
    if *retries == 0 {
        return Err((
            "health.retries".into(),
            "must be at least 1: the failures in a row that make the service unhealthy".into(),
        ));
    }
    Ok(())
}

/// A probe under `prefix` ("ready" or "health"): its field is `prefix.exec` and so on.
fn check_probe(prefix: &str, probe: &Probe) -> Result<(), (String, String)> {
    match probe {
        Probe::Exec(argv) => {
            let field = format!("{prefix}.exec");
            let Some(arg0) = argv.first() else {
                return Err((field, "must name a program: at least one element".into()));
            };
            // As for argv: arje never searches PATH.
            if !arg0.starts_with('/') {
                return Err((
                    format!("{field}[0]"),
                    format!("{arg0:?} is not an absolute path (arje does not search PATH)"),
                ));
            }
            for (i, arg) in argv.iter().enumerate() {
                no_nul(&format!("{field}[{i}]"), arg)?;
            }
        }
        Probe::Tcp(addr) => {
            check_tcp(addr).map_err(|m| (format!("{prefix}.tcp"), m))?;
        }
        Probe::Unix(path) => {
            let field = format!("{prefix}.unix");
            if !path.starts_with('/') {
                return Err((field, "must be an absolute path".into()));
            }
            no_nul(&field, path)?;
            if path.len() > MAX_UNIX_PATH {
                return Err((
                    field,
                    format!(
                        "is {} bytes; a unix socket path holds at most {MAX_UNIX_PATH}",
                        path.len()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `host:port`, the host an IPv4 address, `localhost`, or an IPv6 address in brackets.
/// Not a name: resolving one could block the loop of PID 1 (getaddrinfo), and a
/// readiness or health probe nearly always checks this machine.
fn check_tcp(addr: &str) -> Result<(), String> {
    let usage = || format!("{addr:?} is not host:port (e.g. \"127.0.0.1:5432\" or \"[::1]:5432\")");
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(usage());
    };
    let port_ok = !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p != 0);
    if !port_ok {
        return Err(format!("{addr:?}: the port must be a number in 1..=65535"));
    }
    if let Some(inner) = host.strip_prefix('[') {
        let Some(ip) = inner.strip_suffix(']') else {
            return Err(usage());
        };
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{addr:?}: {ip:?} is not an IPv6 address"));
        }
        return Ok(());
    }
    if host.contains(':') {
        return Err(format!(
            "{addr:?}: an IPv6 address is written in brackets, as [::1]:5432"
        ));
    }
    if host != "localhost" && host.parse::<std::net::Ipv4Addr>().is_err() {
        return Err(format!(
            "{addr:?}: the host must be an IP address or localhost (a name is not resolved: that could block arje)"
        ));
    }
    Ok(())
}
