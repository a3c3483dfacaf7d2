//! `shuma pipeline`: save, list, show, remove, run and stop pipelines (protocol 6).

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use shuma_card::protocol::{PipeState, PipelineInfo, Request, Response};
use shuma_card::PipelineSpec;

use crate::cli::PipelineCommand;
use crate::client::{CliError, Client};
use crate::commands::{expect_ok, json_or, Ctx};
use crate::output::Table;

pub fn pipeline(
    command: PipelineCommand,
    connect: impl FnOnce() -> Result<Client, CliError>,
    ctx: &mut Ctx,
) -> Result<u8> {
    match command {
        PipelineCommand::Save { name, file } => {
            let spec = from_file(&name, &file)?;
            expect_ok(&mut connect()?, &Request::PipelineSave { spec })?;
            writeln!(ctx.out, "saved pipeline {name}")?;
            Ok(0)
        }
        PipelineCommand::Ls { workspace } => {
            let mut client = connect()?;
            let mut list = match &workspace {
                Some(_) => Vec::new(),
                None => match client.call(&Request::PipelineList)? {
                    Response::Pipelines(l) => l,
                    other => return Err(client.unexpected("Pipelines", &other).into()),
                },
            };
            client.send(&Request::PipelinePs { workspace })?;
            loop {
                match client.recv_required()? {
                    Response::Pipelines(page) => list.extend(page),
                    Response::End => break,
                    Response::Error { code, message } => {
                        return Err(CliError::Refused { code, message }.into())
                    }
                    other => return Err(client.unexpected("Pipelines", &other).into()),
                }
            }
            json_or(ctx, &list, |out| table(&list).write(out))
        }
        PipelineCommand::Show { name } => {
            let mut client = connect()?;
            let spec = match client.call(&Request::PipelineShow { name })? {
                Response::Pipeline(spec) => spec,
                other => return Err(client.unexpected("Pipeline", &other).into()),
            };
            json_or(ctx, &spec, |out| show(out, &spec))
        }
        PipelineCommand::Rm { name } => {
            expect_ok(&mut connect()?, &Request::PipelineRemove { name })?;
            Ok(0)
        }
        PipelineCommand::Run { workspace, name } => {
            expect_ok(
                &mut connect()?,
                &Request::PipelineRun {
                    workspace: workspace.clone(),
                    name: name.clone(),
                },
            )?;
            writeln!(ctx.out, "started pipeline {name} in workspace {workspace}")?;
            Ok(0)
        }
        PipelineCommand::Stop { workspace, name } => {
            expect_ok(&mut connect()?, &Request::PipelineStop { workspace, name })?;
            Ok(0)
        }
    }
}

/// The pipeline called `name` among the `[[pipeline]]` tables of `file`; one table of
/// another name is taken under `name`.
fn from_file(name: &str, file: &Path) -> Result<PipelineSpec, CliError> {
    let mut all =
        shuma_card::card::load_pipelines_file(file).map_err(|e| CliError::Usage(e.to_string()))?;
    if let Some(i) = all.iter().position(|p| p.name == name) {
        return Ok(all.swap_remove(i));
    }
    match all.as_mut_slice() {
        [one] => {
            one.name = name.to_string();
            shuma_card::card::validate_pipeline(one).map_err(CliError::Usage)?;
            Ok(one.clone())
        }
        _ => {
            let names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
            Err(CliError::Usage(format!(
                "{}: no pipeline called {name} (it has {})",
                file.display(),
                names.join(", ")
            )))
        }
    }
}

fn state_name(s: PipeState) -> &'static str {
    match s {
        PipeState::Saved => "saved",
        PipeState::Running => "running",
        PipeState::Backoff => "backoff",
        PipeState::Stopping => "stopping",
        PipeState::Done => "done",
        PipeState::Failed => "failed",
    }
}

/// WORKSPACE NAME STATE RESTARTS DROPPED NODES REASON; a saved pipeline's workspace is `-`.
fn table(list: &[PipelineInfo]) -> Table {
    let mut t = Table::new(&[
        "WORKSPACE",
        "NAME",
        "STATE",
        "RESTARTS",
        "DROPPED",
        "NODES",
        "REASON",
    ]);
    for p in list {
        t.row(vec![
            p.workspace.clone().unwrap_or_else(|| "-".into()),
            p.name.clone(),
            state_name(p.state).into(),
            p.restarts.to_string(),
            p.dropped.to_string(),
            p.nodes.join(","),
            p.reason
                .as_deref()
                .map(crate::output::one_line)
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    t
}

fn show(out: &mut dyn Write, p: &PipelineSpec) -> std::io::Result<()> {
    writeln!(out, "pipeline:    {}", p.name)?;
    writeln!(
        out,
        "restart:     {:?}, at most {} in a row (0: no limit), backoff {}ms..{}ms",
        p.restart, p.restart_max, p.backoff_initial_ms, p.backoff_max_ms
    )?;
    writeln!(out, "nodes:")?;
    for n in &p.nodes {
        writeln!(out, "  {}: {}", n.name, n.argv.join(" "))?;
    }
    writeln!(out, "edges:")?;
    for e in &p.edges {
        writeln!(out, "  {e}")?;
    }
    Ok(())
}
