//! The commands of a unit in the order systemd runs them: `ExecStartPre=`, `ExecStart=`
//! (several for a oneshot) and `ExecStartPost=`. Each waits for the one before (`after`) and requires it, unless that
//! one had the `-` prefix, whose failure systemd ignores.

use std::collections::HashMap;

use super::exec::{self, CommandLine};
use super::plan::{resolve_program, PlanCmd, Planner, Src, RUNTIME_VARS, SPECIFIER};
use super::service::Type;
use super::specifier;
use super::ConvertError;
use crate::spec::{CommandKind, CommandSpec};

/// The unit's commands, and which stand for it.
pub struct Built {
    pub cmds: Vec<PlanCmd>,
    /// The main command: requires and wants point at it.
    pub main: usize,
    /// The last command of the start: after points at it.
    pub last: usize,
}

/// Build the chain from the unit's common settings `base`.
pub fn chain(p: &mut Planner, ty: Type, base: &CommandSpec) -> Result<Built, ConvertError> {
    let mut cmds: Vec<PlanCmd> = Vec::new();
    let pre = parse_lines(p, "ExecStartPre")?;
    let start = parse_lines(p, "ExecStart")?;
    let post = parse_lines(p, "ExecStartPost")?;
    if start.is_empty() {
        return Err(p.refuse(None, "no ExecStart=: nothing to run"));
    }
    if ty != Type::Oneshot && start.len() > 1 {
        return Err(p.refuse(
            Some(&start[1].0),
            "more than one command in ExecStart=, which only Type=oneshot allows",
        ));
    }

    // The chain: ExecStartPre=, ExecStart= and ExecStartPost= in order. Each waits for
    // the one before (after); it also requires it unless that one had the - prefix,
    // whose failure systemd ignores.
    let mut prev: Vec<(usize, bool)> = Vec::new();
    let restarts = matches!(
        ty,
        Type::Simple | Type::Exec | Type::Idle | Type::Notify | Type::NotifyReload | Type::Dbus
    ) && p.s.single.get("Restart").is_some_and(|s| s.value != "no");
    for (n, (src, line)) in pre.iter().enumerate() {
        let mut spec = match build(p, base, src, line) {
            Ok(s) => s,
            Err(e) => return Err(p.refuse(Some(src), format!("ExecStartPre: {e}"))),
        };
        spec.kind = CommandKind::Task;
        if restarts && n == 0 {
            p.note(src, "partly translated: runs once before the first start; systemd runs it again before every restart");
        }
        let suffix = numbered("-pre", n, pre.len());
        let i = link(&mut cmds, &prev, suffix, spec);
        prev = vec![(i, !line.prefixes.ignore_failure)];
    }
    let mut main = 0;
    for (n, (src, line)) in start.iter().enumerate() {
        let mut spec = match build(p, base, src, line) {
            Ok(s) => s,
            Err(e) => return Err(p.refuse(Some(src), format!("ExecStart: {e}"))),
        };
        let last = n + 1 == start.len();
        if line.prefixes.ignore_failure && last {
            p.note(src, "not translated: - makes systemd count a non-zero exit as success; arje counts it as a failure (for its restart policy and for what requires it)");
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
        let i = link(&mut cmds, &prev, suffix, spec);
        if n == 0 {
            main = i;
        }
        prev = vec![(i, !line.prefixes.ignore_failure)];
    }
    let mut last = cmds.len() - 1;
    for (n, (src, line)) in post.iter().enumerate() {
        let mut spec = match build(p, base, src, line) {
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
        let i = link(&mut cmds, &prev, suffix, spec);
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
    Ok(Built { cmds, main, last })
}

/// One command of the chain: the program found, the environment expanded, the prefixes
/// applied to a copy of the unit's common settings.
fn build(
    p: &mut Planner,
    base: &CommandSpec,
    src: &Src,
    line: &CommandLine,
) -> Result<CommandSpec, String> {
    let lookup: HashMap<String, String> = base.env.iter().cloned().collect();
    let unreadable_env = p.unreadable_env;
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
            p.note(
                src,
                "not translated: @ passes another argv[0]; a card's argv[0] is the program's path",
            );
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
        // arje would hand the unit's directories to the user the command runs as, root
        // here; systemd gives them to User= whichever command runs, so this one leaves
        // them to the commands that run as User=.
        spec.user = None;
        spec.group = None;
        if !spec.directories.is_empty() && (base.user.is_some() || base.group.is_some()) {
            spec.directories.clear();
            p.note(src, "partly translated: runs as root (+) without the unit's directories, which arje makes before the commands that run as User=; on a first start they may not exist yet when this one runs");
        }
    }
    Ok(spec)
}

/// The command lines of an `Exec*=` list, each with its assignment.
fn parse_lines(p: &mut Planner, key: &str) -> Result<Vec<(Src, CommandLine)>, ConvertError> {
    let mut out = Vec::new();
    for src in p.list(key) {
        let parsed = {
            let cx = p.cx();
            let expand = |w: &str| specifier::expand(w, &cx).map_err(|e| format!("{SPECIFIER}{e}"));
            exec::parse(&src.value, &expand)
        };
        match parsed {
            Ok(lines) => out.extend(lines.into_iter().map(|l| (src.clone(), l))),
            Err(e) if key == "ExecStart" => {
                let e = e.strip_prefix(SPECIFIER).unwrap_or(&e);
                return Err(p.refuse(Some(&src), format!("ExecStart: {e}")));
            }
            Err(e) => match e.strip_prefix(SPECIFIER) {
                Some(e) => p.note(&src, format!("not translated: {e}")),
                None => p.note(
                    &src,
                    format!("not translated: {e} (systemd ignores the line too)"),
                ),
            },
        }
    }
    Ok(out)
}

/// Append a command (`suffix`, `spec`) after each of `prev`, requiring those marked so;
/// its index.
fn link(
    cmds: &mut Vec<PlanCmd>,
    prev: &[(usize, bool)],
    suffix: String,
    spec: CommandSpec,
) -> usize {
    let i = cmds.len();
    let mut cmd = PlanCmd {
        suffix,
        spec,
        after: Vec::new(),
        requires: Vec::new(),
        comment: String::new(),
    };
    for &(j, strict) in prev {
        cmd.after.push(j);
        if strict {
            cmd.requires.push(j);
        }
    }
    cmds.push(cmd);
    i
}

/// "-pre" for the only one, "-pre1", "-pre2", ... for several.
fn numbered(base: &str, n: usize, count: usize) -> String {
    if count == 1 {
        base.to_string()
    } else {
        format!("{base}{}", n + 1)
    }
}
