//! `shuma top`: every interval, list workspaces and read the newest stats sample of each,
//! then redraw the screen.

use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;
use shuma_card::protocol::{ErrorCode, Request, Response, StatsSample, WorkspaceInfo};
use shuma_card::units::format_size;

use crate::client::{CliError, Client};
use crate::commands::Ctx;
use crate::output::{self, Table};

/// Home the cursor and clear the screen, so a frame replaces the last one in place.
const CLEAR: &str = "\x1b[H\x1b[2J";

#[derive(Serialize)]
pub struct Row {
    pub workspace: WorkspaceInfo,
    /// The newest sample, if the daemon has one.
    pub sample: Option<StatsSample>,
}

pub fn top(client: &mut Client, ctx: &mut Ctx, once: bool, interval_ms: u64) -> Result<u8> {
    loop {
        let rows = collect(client)?;
        if ctx.json {
            // One document per frame, one per line, so a reader can take them as a stream.
            output::write_json_line(ctx.out, &rows)?;
        } else {
            if !once {
                write!(ctx.out, "{CLEAR}")?;
            }
            render(ctx.out, &rows, output::now_unix_ms())?;
        }
        ctx.out.flush()?;
        if once {
            return Ok(0);
        }
        // A display refresh period, not synchronisation: nothing waits on this.
        std::thread::sleep(Duration::from_millis(interval_ms.max(100)));
    }
}

fn collect(client: &mut Client) -> Result<Vec<Row>, CliError> {
    let list = match client.call(&Request::WsList)? {
        Response::Workspaces(list) => list,
        other => return Err(client.unexpected("Workspaces", &other)),
    };
    let mut rows = Vec::with_capacity(list.len());
    for workspace in list {
        let sample = match client.call(&Request::WsStats {
            name: workspace.name.clone(),
        }) {
            Ok(Response::Stats { samples, .. }) => samples.into_iter().last(),
            Ok(other) => return Err(client.unexpected("Stats", &other)),
            // Stopped between the list and this request: show it without numbers
            // rather than abort the whole view.
            Err(CliError::Refused {
                code: ErrorCode::NotFound,
                ..
            }) => None,
            Err(e) => return Err(e),
        };
        rows.push(Row { workspace, sample });
    }
    Ok(rows)
}

pub fn render(out: &mut dyn Write, rows: &[Row], now_unix_ms: u64) -> std::io::Result<()> {
    let running: u32 = rows.iter().map(|r| r.workspace.running).sum();
    writeln!(
        out,
        "arje top - {}  {} workspaces, {} commands running",
        output::format_unix_ms(now_unix_ms),
        rows.len(),
        running
    )?;
    writeln!(out)?;
    let mut table = Table::new(&[
        "WORKSPACE",
        "STATE",
        "CMDS",
        "RUN",
        "MEMORY",
        "MEM-MAX",
        "PIDS",
        "PIDS-MAX",
        "CPU",
    ]);
    for r in rows {
        let ws = &r.workspace;
        let s = r.sample.clone().unwrap_or_default();
        table.row(vec![
            ws.name.clone(),
            output::ws_state_name(&ws.state).to_string(),
            ws.commands.to_string(),
            ws.running.to_string(),
            output::opt_size(s.memory_current),
            ws.limits
                .memory_max
                .map(format_size)
                .unwrap_or_else(output::dash),
            output::opt_count(s.pids_current),
            output::opt_count(ws.limits.pids_max),
            output::percent_x100(s.cpu_percent_x100),
        ]);
    }
    table.write(out)
}
