//! One function per request-and-answer command. Streaming commands (`logs`, `events`)
//! live in `stream.rs`, the refreshing `top` in `top.rs`.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;
use shuma_card::card::load_file;
use shuma_card::protocol::{Request, Response, ShutdownKind};
use shuma_card::spec::valid_name;
use shuma_card::spec::Limits;
use shuma_card::units::{format_duration_ms, parse_limit};
use shuma_card::{CommandKind, CommandSpec, ExitStatus};

use crate::cli::{Cli, Command, RunArgs, WsCommand};
use crate::client::{CliError, Client};
use crate::output::{self, human_duration, Table};
use crate::{stream, top};

/// Where a command writes, and how.
pub struct Ctx<'a> {
    pub json: bool,
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
}

/// Run the parsed command line; returns the process exit code on success.
pub fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> Result<u8> {
    let mut ctx = Ctx {
        json: cli.json,
        out,
        err,
    };
    // A bad card is the user's input at fault: rejected before any connection is made,
    // so the card's error wins over a daemon that is not running.
    if let Command::Ws(WsCommand::Create { card }) = &cli.command {
        let spec = load_file(card).map_err(|e| CliError::Usage(e.to_string()))?;
        let mut client = Client::connect(&cli.socket)?;
        return ws_create(&mut client, &mut ctx, spec);
    }
    if let Command::Ws(WsCommand::Set { settings, .. }) = &cli.command {
        // Each setting checked alone on an empty set of limits: the syntax and range are
        // the user's to fix (exit 2); how it combines with the workspace's current limits
        // is the daemon's to judge.
        for (key, value) in settings {
            parse_limit(key, value, &mut Limits::default()).map_err(CliError::Usage)?;
        }
    }
    if let Command::Run(args) = &cli.command {
        // Validated before connecting for the same reason as the card.
        let spec = command_spec(args)?;
        let mut client = Client::connect(&cli.socket)?;
        return run_command(&mut client, &mut ctx, &args.workspace, spec, args.wait);
    }
    let mut client = Client::connect(&cli.socket)?;
    dispatch(&mut client, &mut ctx, cli.command, &cli.socket)
}

fn dispatch(client: &mut Client, ctx: &mut Ctx, command: Command, socket: &Path) -> Result<u8> {
    match command {
        Command::Ping => ping(client, ctx),
        Command::Status => status(client, ctx),
        Command::Ws(WsCommand::Ls) => ws_ls(client, ctx),
        Command::Ws(WsCommand::Show { name }) => ws_show(client, ctx, name),
        Command::Ws(WsCommand::Stop { name, grace }) => {
            expect_ok(
                client,
                &Request::WsStop {
                    name: name.clone(),
                    grace_ms: grace,
                },
            )?;
            writeln!(ctx.out, "stopped workspace {name}")?;
            Ok(0)
        }
        Command::Ws(WsCommand::Set { name, settings }) => {
            // One request per setting, in order, stopping at the first refusal so the
            // message names the setting at fault.
            for (key, value) in settings {
                let req = Request::WsSet {
                    name: name.clone(),
                    key: key.clone(),
                    value: value.clone(),
                };
                expect_ok(client, &req)?;
                writeln!(ctx.out, "{name}: {key} set to {value}")?;
            }
            Ok(0)
        }
        Command::Ws(WsCommand::Stats { name }) => ws_stats(client, ctx, name),
        Command::Ps { workspace } => ps(client, ctx, workspace),
        Command::Logs(args) => stream::logs(client, ctx, args),
        Command::Events { follow, after } => stream::events(client, ctx, after, follow),
        Command::Caps => caps(client, ctx),
        Command::Top { once, interval } => top::top(client, ctx, once, interval),
        Command::Poweroff => shutdown(client, ShutdownKind::Poweroff),
        Command::Reboot => shutdown(client, ShutdownKind::Reboot),
        Command::Halt => shutdown(client, ShutdownKind::Halt),
        Command::DaemonReexec { binary } => {
            ok_or_closed(client, &Request::DaemonReexec { binary })?;
            writeln!(ctx.out, "daemon re-executed ({})", socket.display())?;
            Ok(0)
        }
        Command::Ws(WsCommand::Create { .. }) | Command::Run(_) => {
            unreachable!("handled in run() before connecting")
        }
    }
}

/// Send `req` and require `Response::Ok`.
fn expect_ok(client: &mut Client, req: &Request) -> Result<(), CliError> {
    match client.call(req)? {
        Response::Ok => Ok(()),
        other => Err(client.unexpected("Ok", &other)),
    }
}

/// Like [`expect_ok`], but the daemon closing the connection without an answer also
/// counts as done: shutting down or re-executing may close it before the Ok is written.
fn ok_or_closed(client: &mut Client, req: &Request) -> Result<(), CliError> {
    client.send(req)?;
    match client.recv()? {
        None | Some(Response::Ok) => Ok(()),
        Some(Response::Error { code, message }) => Err(CliError::Refused { code, message }),
        Some(other) => Err(client.unexpected("Ok", &other)),
    }
}

fn shutdown(client: &mut Client, kind: ShutdownKind) -> Result<u8> {
    ok_or_closed(client, &Request::Shutdown { kind })?;
    Ok(0)
}

fn json_or<T: Serialize + ?Sized>(
    ctx: &mut Ctx,
    value: &T,
    text: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<u8> {
    if ctx.json {
        output::write_json(ctx.out, value)?;
    } else {
        text(ctx.out)?;
    }
    Ok(0)
}

fn ping(client: &mut Client, ctx: &mut Ctx) -> Result<u8> {
    match client.call(&Request::Ping)? {
        Response::Pong => {
            writeln!(ctx.out, "pong")?;
            Ok(0)
        }
        other => Err(client.unexpected("Pong", &other).into()),
    }
}

fn status(client: &mut Client, ctx: &mut Ctx) -> Result<u8> {
    let info = match client.call(&Request::Status)? {
        Response::Status(info) => info,
        other => return Err(client.unexpected("Status", &other).into()),
    };
    json_or(ctx, &info, |out| {
        writeln!(out, "version:        {}", info.version)?;
        writeln!(out, "pid:            {}", info.pid)?;
        writeln!(out, "mode:           {}", output::mode_name(&info.mode))?;
        writeln!(out, "uptime:         {}", human_duration(info.uptime_ms))?;
        writeln!(out, "workspaces:     {}", info.workspaces)?;
        writeln!(
            out,
            "commands:       {} ({} running)",
            info.commands, info.running
        )?;
        writeln!(out, "connections:    {}", info.connections)?;
        writeln!(out, "last event:     {}", info.last_event_id)?;
        writeln!(out, "orphans reaped: {}", info.orphans_reaped)
    })
}

fn ws_create(client: &mut Client, ctx: &mut Ctx, spec: shuma_card::WorkspaceSpec) -> Result<u8> {
    let (name, warnings) = match client.call(&Request::WsCreate { spec })? {
        Response::Created { name, warnings } => (name, warnings),
        other => return Err(client.unexpected("Created", &other).into()),
    };
    for w in &warnings {
        writeln!(ctx.err, "warning: {w}")?;
    }
    #[derive(Serialize)]
    struct Created<'a> {
        name: &'a str,
        warnings: &'a [String],
    }
    json_or(
        ctx,
        &Created {
            name: &name,
            warnings: &warnings,
        },
        |out| writeln!(out, "created workspace {name}"),
    )
}

fn ws_ls(client: &mut Client, ctx: &mut Ctx) -> Result<u8> {
    let list = match client.call(&Request::WsList)? {
        Response::Workspaces(list) => list,
        other => return Err(client.unexpected("Workspaces", &other).into()),
    };
    let now = output::now_unix_ms();
    json_or(ctx, &list, |out| {
        let mut table = Table::new(&["NAME", "STATE", "COMMANDS", "RUNNING", "AGE", "LIMITS"]);
        for ws in &list {
            table.row(vec![
                ws.name.clone(),
                output::ws_state_name(&ws.state).to_string(),
                ws.commands.to_string(),
                ws.running.to_string(),
                human_duration(now.saturating_sub(ws.created_unix_ms)),
                output::limits_summary(&ws.limits),
            ]);
        }
        table.write(out)
    })
}

fn ws_show(client: &mut Client, ctx: &mut Ctx, name: String) -> Result<u8> {
    let detail = match client.call(&Request::WsShow { name })? {
        Response::Workspace(detail) => detail,
        other => return Err(client.unexpected("Workspace", &other).into()),
    };
    let now = output::now_unix_ms();
    json_or(ctx, &detail, |out| {
        let info = &detail.info;
        writeln!(out, "name:      {}", info.name)?;
        writeln!(out, "state:     {}", output::ws_state_name(&info.state))?;
        writeln!(
            out,
            "created:   {} ({} ago)",
            output::format_unix_ms(info.created_unix_ms),
            human_duration(now.saturating_sub(info.created_unix_ms))
        )?;
        writeln!(out, "cgroup:    {}", info.cgroup.as_deref().unwrap_or("-"))?;
        writeln!(out, "limits:    {}", output::limits_summary(&info.limits))?;
        writeln!(
            out,
            "ttl:       {}",
            detail
                .spec
                .ttl_ms
                .map(format_duration_ms)
                .unwrap_or_else(output::dash)
        )?;
        for u in &detail.unenforced {
            writeln!(out, "not enforced: {u}")?;
        }
        writeln!(
            out,
            "commands:  {} ({} running)",
            info.commands, info.running
        )?;
        if !detail.commands.is_empty() {
            writeln!(out)?;
            output::commands_table(&detail.commands).write(out)?;
        }
        for c in detail.commands.iter().filter(|c| c.reason.is_some()) {
            writeln!(
                out,
                "{}: {}",
                c.name,
                c.reason.as_deref().unwrap_or_default()
            )?;
        }
        Ok(())
    })
}

fn ws_stats(client: &mut Client, ctx: &mut Ctx, name: String) -> Result<u8> {
    let (name, samples) = match client.call(&Request::WsStats { name })? {
        Response::Stats { name, samples } => (name, samples),
        other => return Err(client.unexpected("Stats", &other).into()),
    };
    #[derive(Serialize)]
    struct Stats<'a> {
        name: &'a str,
        samples: &'a [shuma_card::protocol::StatsSample],
    }
    json_or(
        ctx,
        &Stats {
            name: &name,
            samples: &samples,
        },
        |out| {
            let mut table = Table::new(&["TIME", "MEMORY", "PEAK", "PIDS", "CPU-TIME", "CPU"]);
            for s in &samples {
                table.row(vec![
                    output::format_unix_ms(s.unix_ms),
                    output::opt_size(s.memory_current),
                    output::opt_size(s.memory_peak),
                    output::opt_count(s.pids_current),
                    output::opt_duration(s.cpu_usage_us.map(|us| us / 1000)),
                    output::percent_x100(s.cpu_percent_x100),
                ]);
            }
            table.write(out)
        },
    )
}

fn ps(client: &mut Client, ctx: &mut Ctx, workspace: Option<String>) -> Result<u8> {
    let list = match client.call(&Request::Ps { workspace })? {
        Response::Commands(list) => list,
        other => return Err(client.unexpected("Commands", &other).into()),
    };
    json_or(ctx, &list, |out| output::commands_table(&list).write(out))
}

fn caps(client: &mut Client, ctx: &mut Ctx) -> Result<u8> {
    let caps = match client.call(&Request::Caps)? {
        Response::Caps(caps) => caps,
        other => return Err(client.unexpected("Caps", &other).into()),
    };
    json_or(ctx, &caps, |out| {
        let mut table = Table::new(&["CAPABILITY", "ENFORCED", "DETAIL"]);
        for c in &caps {
            let enforced = if c.enforced { "yes" } else { "no" };
            table.row(vec![c.name.clone(), enforced.to_string(), c.detail.clone()]);
        }
        table.write(out)
    })
}

/// The command spec `run` sends: a task with the given argv, env and cwd.
fn command_spec(args: &RunArgs) -> Result<CommandSpec, CliError> {
    let name = match &args.name {
        Some(name) if valid_name(name) => name.clone(),
        Some(name) => {
            return Err(CliError::Usage(format!(
                "command name `{name}` is not valid: [a-z0-9][a-z0-9._-]{{0,62}}"
            )))
        }
        None => default_command_name(&args.argv[0]),
    };
    let mut spec = CommandSpec::new(name, CommandKind::Task, args.argv.clone());
    spec.env = args.env.clone();
    spec.cwd = args.cwd.clone();
    Ok(spec)
}

/// A valid command name from a program path: its file name, lower-cased, with every
/// character outside `[a-z0-9._-]` replaced by `-`; "run" if nothing usable is left.
pub fn default_command_name(program: &str) -> String {
    let base = program.rsplit('/').next().unwrap_or(program);
    let mapped: String = base
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = mapped.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    let name: String = trimmed
        .chars()
        .take(shuma_card::spec::MAX_NAME_LEN)
        .collect();
    if valid_name(&name) {
        name
    } else {
        "run".to_string()
    }
}

fn run_command(
    client: &mut Client,
    ctx: &mut Ctx,
    workspace: &str,
    command: CommandSpec,
    wait: bool,
) -> Result<u8> {
    let req = Request::Run {
        workspace: workspace.to_string(),
        command,
        wait,
    };
    client.send(&req)?;
    loop {
        match client.recv_required()? {
            Response::Error { code, message } => {
                return Err(CliError::Refused { code, message }.into())
            }
            // Tolerated while waiting: a daemon may announce the start before the exit.
            Response::Started { id, pid } if !wait => {
                #[derive(Serialize)]
                struct Started {
                    id: u64,
                    pid: i32,
                }
                return json_or(ctx, &Started { id, pid }, |out| writeln!(out, "{id} {pid}"));
            }
            Response::Started { .. } => continue,
            Response::Exited { id, status } if wait => {
                if ctx.json {
                    #[derive(Serialize)]
                    struct Exited {
                        id: u64,
                        status: ExitStatus,
                        code: i32,
                    }
                    let code = status.shell_code();
                    output::write_json(ctx.out, &Exited { id, status, code })?;
                }
                // Exit statuses are 8 bits; a signal death becomes 128 + N as in a shell.
                return Ok((status.shell_code() & 0xff) as u8);
            }
            other => {
                return Err(client
                    .unexpected(if wait { "Exited" } else { "Started" }, &other)
                    .into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_default_command_name_from_path_sanitised() {
        assert_eq!(default_command_name("/usr/bin/Python3.11"), "python3.11");
        assert_eq!(default_command_name("./my tool"), "my-tool");
        assert_eq!(default_command_name("/bin/__x"), "x");
        assert_eq!(default_command_name("/"), "run");
        assert_eq!(default_command_name(&"a".repeat(100)).len(), 63);
    }
}
