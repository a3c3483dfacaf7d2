//! `shuma ws ...`: create, list, show, stop, change limits, read stats.

use anyhow::Result;
use serde::Serialize;
use shuma_card::card::load_file;
use shuma_card::protocol::{CommandInfo, Health, Request, Response, StatsSample, WorkspaceDetail};
use shuma_card::spec::Limits;
use shuma_card::units::{format_duration_ms, parse_limit};
use shuma_card::WorkspaceSpec;

use crate::cli::WsCommand;
use crate::client::{CliError, Client};
use crate::cmd_table;
use crate::commands::{expect_ok, json_or, Ctx};
use crate::output::{self, human_duration, Table};
use crate::ready::{self, ReadyWait};

pub fn ws(
    command: WsCommand,
    connect: impl FnOnce() -> Result<Client, CliError>,
    ctx: &mut Ctx,
) -> Result<u8> {
    match command {
        WsCommand::Create { card, wait_ready } => {
            let spec = load_file(&card).map_err(|e| CliError::Usage(e.to_string()))?;
            create(&mut connect()?, ctx, spec, wait_ready)
        }
        WsCommand::Ls => ls(&mut connect()?, ctx),
        WsCommand::Show { name } => show(&mut connect()?, ctx, name),
        WsCommand::Stop { name, grace, force } => {
            let req = Request::WsStop {
                name: name.clone(),
                grace_ms: grace,
            };
            let mut client = connect()?;
            if !force {
                refuse_own_session(&mut client, &name)?;
            }
            client.send(&req)?;
            // The answer comes once every command has stopped, each within its grace.
            client.wait_without_timeout()?;
            match client.recv_required()? {
                Response::Ok => {}
                Response::Error { code, message } => {
                    return Err(CliError::Refused { code, message }.into())
                }
                other => return Err(client.unexpected("Ok", &other).into()),
            }
            writeln!(ctx.out, "stopped workspace {name}")?;
            Ok(0)
        }
        WsCommand::Set { name, settings } => {
            // Each setting checked alone on empty limits: its syntax and range are the
            // user's to fix (exit 2); how it combines with the workspace's current
            // limits is the daemon's to judge.
            for (key, value) in &settings {
                parse_limit(key, value, &mut Limits::default()).map_err(CliError::Usage)?;
            }
            set(&mut connect()?, ctx, name, settings)
        }
        WsCommand::Stats { name } => stats(&mut connect()?, ctx, name),
    }
}

/// Refuses (exit 1, nothing sent) to stop the workspace this process runs in: over ssh
/// that is sshd's, and stopping it ends the session that asked (own_session.rs). A
/// workspace that does not exist is left to the stop request to report.
fn refuse_own_session(client: &mut Client, name: &str) -> Result<()> {
    let detail = match client.call(&Request::WsShow {
        name: name.to_string(),
    })? {
        Response::Workspace(detail) => detail,
        Response::Error { .. } => return Ok(()),
        other => return Err(client.unexpected("Workspace", &other).into()),
    };
    let commands = client.command_pages()?;
    match crate::own_session::why_inside(&detail, &commands) {
        None => Ok(()),
        Some(why) => Err(CliError::Refused {
            code: shuma_card::protocol::ErrorCode::Denied,
            message: format!(
                "not stopping workspace {name}: {why}, so stopping it would end this session too; \
                 run `shuma ws stop --force {name}` to stop it anyway"
            ),
        }
        .into()),
    }
}

/// One request per setting, in order, stopping at the first refusal so the message
/// names the setting at fault.
fn set(
    client: &mut Client,
    ctx: &mut Ctx,
    name: String,
    settings: Vec<(String, String)>,
) -> Result<u8> {
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

/// Create the workspace; with `wait_ready`, then wait until all of it is ready.
fn create(client: &mut Client, ctx: &mut Ctx, spec: WorkspaceSpec, wait_ready: bool) -> Result<u8> {
    let (name, warnings, failed) = match client.call(&Request::WsCreate { spec })? {
        Response::Created {
            name,
            warnings,
            failed,
        } => (name, warnings, failed),
        other => return Err(client.unexpected("Created", &other).into()),
    };
    for w in &warnings {
        writeln!(ctx.err, "warning: {w}")?;
    }
    for f in &failed {
        writeln!(ctx.err, "error: did not start: {f}")?;
    }
    #[derive(Serialize)]
    struct Created<'a> {
        name: &'a str,
        warnings: &'a [String],
        failed: &'a [String],
    }
    let code = json_or(
        ctx,
        &Created {
            name: &name,
            warnings: &warnings,
            failed: &failed,
        },
        |out| writeln!(out, "created workspace {name}"),
    )?;
    if !failed.is_empty() {
        // The workspace exists, but not all of it runs: the daemon refused part of the
        // job. Not worth a readiness wait: a command that could not start (no such
        // program, no such user) would hold it up to its deadline for nothing.
        return Ok(1);
    }
    if !wait_ready {
        return Ok(code);
    }
    // The creation is reported before a wait that may take long.
    ctx.out.flush()?;
    let wait = ReadyWait {
        workspace: name,
        command: None,
        timeout_ms: ctx.ready_timeout_ms,
    };
    ready::wait_ready(client, wait)?;
    Ok(0)
}

fn ls(client: &mut Client, ctx: &mut Ctx) -> Result<u8> {
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

fn show(client: &mut Client, ctx: &mut Ctx, name: String) -> Result<u8> {
    let detail = match client.call(&Request::WsShow { name })? {
        Response::Workspace(detail) => detail,
        other => return Err(client.unexpected("Workspace", &other).into()),
    };
    let commands = client.command_pages()?;
    #[derive(Serialize)]
    struct Shown<'a> {
        #[serde(flatten)]
        detail: &'a WorkspaceDetail,
        commands: &'a [CommandInfo],
    }
    let shown = Shown {
        detail: &detail,
        commands: &commands,
    };
    let now = output::now_unix_ms();
    json_or(ctx, &shown, |out| {
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
        if !commands.is_empty() {
            writeln!(out)?;
            cmd_table::commands_table(&commands).write(out)?;
            for c in &commands {
                show_notes(out, c)?;
            }
        }
        Ok(())
    })
}

/// What the table leaves out or cuts short about `c`, in full below it: why it failed,
/// why its health check fails, a STATUS cell that was cut. A text of several lines
/// (a stderr tail) continues indented under its first line.
fn show_notes(out: &mut dyn std::io::Write, c: &CommandInfo) -> std::io::Result<()> {
    let indent = c.name.chars().count() + 2;
    if let Some(reason) = &c.reason {
        writeln!(out, "{}: {}", c.name, output::continued(reason, indent))?;
    }
    if let Some(Health::Failing { failures, last }) = &c.health {
        let times = match failures {
            1 => "once".to_string(),
            n => format!("{n} times in a row"),
        };
        let last = output::continued(last, indent);
        writeln!(out, "{}: health check failed {times}: {last}", c.name)?;
    }
    if cmd_table::status_elided(c) {
        let text = cmd_table::status_text(c).unwrap_or_default();
        // A reason in the cell was printed whole just above.
        if c.reason.as_ref() != Some(&text) {
            writeln!(out, "{}: {}", c.name, output::continued(&text, indent))?;
        }
    }
    Ok(())
}

fn stats(client: &mut Client, ctx: &mut Ctx, name: String) -> Result<u8> {
    let (name, samples) = match client.call(&Request::WsStats { name })? {
        Response::Stats { name, samples } => (name, samples),
        other => return Err(client.unexpected("Stats", &other).into()),
    };
    #[derive(Serialize)]
    struct Stats<'a> {
        name: &'a str,
        samples: &'a [StatsSample],
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
