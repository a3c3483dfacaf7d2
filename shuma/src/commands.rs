//! Dispatch, and one function per request-and-answer command. Workspace commands live
//! in `ws.rs`, streaming ones (`logs`, `events`) in `stream.rs`, `top` in `top.rs`,
//! readiness waits in `ready.rs`.
//!
//! Input the user can get wrong (a card, a limit value, a command name) is checked
//! before connecting, so its error (exit 2) wins over a daemon that is not running.

use std::io::Write;

use anyhow::Result;
use serde::Serialize;
use shuma_card::protocol::{CmdAction, Request, Response, ShutdownKind};
use shuma_card::spec::valid_name;
use shuma_card::{CommandKind, CommandSpec, ExitStatus};

use crate::cli::{Cli, Command, RunArgs, DEFAULT_TIMEOUT_MS};
use crate::client::{CliError, Client};
use crate::output::{self, human_duration, Table};
use crate::ready::{self, ReadyWait};
use crate::{card, cmd_table, pipeline, stream, top, ws};

/// Where a command writes, and how.
pub struct Ctx<'a> {
    pub json: bool,
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    /// The deadline of a readiness wait ([`ready::ready_timeout`]).
    pub ready_timeout_ms: Option<u64>,
}

/// Run the parsed command line; returns the process exit code on success.
pub fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> Result<u8> {
    let ctx = &mut Ctx {
        json: cli.json,
        out,
        err,
        ready_timeout_ms: ready::ready_timeout(cli.timeout),
    };
    let answer_ms = cli.timeout.unwrap_or(DEFAULT_TIMEOUT_MS);
    let timeout = (answer_ms > 0).then(|| std::time::Duration::from_millis(answer_ms));
    let connect = || match &cli.vsock {
        Some(to) => Client::connect_vsock(to, timeout),
        None => Client::connect(&cli.socket, timeout),
    };
    match cli.command {
        Command::Ping => ping(&mut connect()?, ctx),
        Command::Status => status(&mut connect()?, ctx),
        Command::Ws(command) => ws::ws(command, connect, ctx),
        Command::Run(args) => {
            let spec = command_spec(&args)?;
            run_command(&mut connect()?, ctx, &args, spec)
        }
        Command::WaitReady { workspace, command } => {
            let wait = ReadyWait {
                workspace,
                command,
                timeout_ms: ctx.ready_timeout_ms,
            };
            // Nothing is printed when ready: the exit code says it, as `wait` does.
            ready::wait_ready(&mut connect()?, wait)?;
            Ok(0)
        }
        Command::Ps { workspace } => ps(&mut connect()?, ctx, workspace),
        Command::Logs(args) => stream::logs(&mut connect()?, ctx, args),
        Command::Events {
            follow,
            after,
            since,
            workspace,
        } => {
            let filter = stream::EventFilter::new(since, workspace);
            stream::events(&mut connect()?, ctx, after, follow, &filter)
        }
        Command::Caps => caps(&mut connect()?, ctx),
        Command::Top { once, interval } => top::top(&mut connect()?, ctx, once, interval),
        Command::Start { target } => control(&mut connect()?, target, CmdAction::Start),
        Command::Stop { target } => control(&mut connect()?, target, CmdAction::Stop),
        Command::Restart { target } => control(&mut connect()?, target, CmdAction::Restart),
        Command::Reload { target } => control(&mut connect()?, target, CmdAction::Reload),
        Command::Kill { signal, target } => {
            control(&mut connect()?, target, CmdAction::Kill { signal })
        }
        Command::Poweroff => shutdown(&mut connect()?, ShutdownKind::Poweroff),
        Command::Reboot => shutdown(&mut connect()?, ShutdownKind::Reboot),
        Command::Halt => shutdown(&mut connect()?, ShutdownKind::Halt),
        Command::Card(command) => card::card(command, ctx),
        Command::Pipeline(command) => pipeline::pipeline(command, connect, ctx),
        Command::DaemonReexec { binary } => {
            ok_or_closed(&mut connect()?, &Request::DaemonReexec { binary })?;
            writeln!(ctx.out, "daemon re-executed")?;
            Ok(0)
        }
    }
}

/// Send `req` and require `Response::Ok`.
pub fn expect_ok(client: &mut Client, req: &Request) -> Result<(), CliError> {
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

/// `start`, `stop`, `restart`, `reload`, `kill`: one command; silent on success, as
/// `systemctl` is.
fn control(
    client: &mut Client,
    (workspace, command): (String, String),
    action: CmdAction,
) -> Result<u8> {
    let req = Request::Control {
        workspace,
        command,
        action,
    };
    expect_ok(client, &req)?;
    Ok(0)
}

fn shutdown(client: &mut Client, kind: ShutdownKind) -> Result<u8> {
    ok_or_closed(client, &Request::Shutdown { kind })?;
    Ok(0)
}

pub fn json_or<T: Serialize + ?Sized>(
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
        writeln!(out, "orphans reaped: {}", info.orphans_reaped)?;
        match &info.state_not_saved {
            None => writeln!(out, "state:          saved"),
            Some(why) => writeln!(out, "state:          NOT SAVED: {why}"),
        }
    })
}

fn ps(client: &mut Client, ctx: &mut Ctx, workspace: Option<String>) -> Result<u8> {
    client.send(&Request::Ps { workspace })?;
    let list = client.command_pages()?;
    json_or(ctx, &list, |out| {
        cmd_table::commands_table(&list).write(out)
    })
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

/// Start the task; with `--wait`, wait for its end; with `--wait-ready`, print its id
/// and pid, then wait until it is ready (it exited 0).
fn run_command(
    client: &mut Client,
    ctx: &mut Ctx,
    args: &RunArgs,
    command: CommandSpec,
) -> Result<u8> {
    let wait = args.wait;
    let req = Request::Run {
        workspace: args.workspace.clone(),
        command,
        wait,
    };
    client.send(&req)?;
    if wait {
        client.wait_without_timeout()?;
    }
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
                json_or(ctx, &Started { id, pid }, |out| writeln!(out, "{id} {pid}"))?;
                if !args.wait_ready {
                    return Ok(0);
                }
                // The id and pid are the caller's before a wait that may take long.
                ctx.out.flush()?;
                let wait = ReadyWait {
                    workspace: args.workspace.clone(),
                    command: Some(id.to_string()),
                    timeout_ms: ctx.ready_timeout_ms,
                };
                ready::wait_ready(client, wait)?;
                return Ok(0);
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
