//! `shuma card from-unit`: systemd service units to a card, through
//! `shuma_card::unit`. Works offline: nothing is sent to the daemon.
//!
//! Exit codes (docs/CLI.md): 0 every directive translated; 5 the card was written but
//! some directives were not translated (each named on stderr), or, with `--strict`,
//! nothing was written because of them; 1 a unit was refused or could not be read
//! (nothing written); 2 usage.

use std::path::Path;

use anyhow::{Context as _, Result};
use shuma_card::unit::{self, ConvertError, Machine, Options, OsFs};

use crate::cli::{CardCommand, FromUnitArgs};
use crate::client::CliError;
use crate::commands::Ctx;

/// Exit code of a conversion that left directives untranslated.
pub const EXIT_INCOMPLETE: u8 = 5;

pub fn card(command: CardCommand, ctx: &mut Ctx) -> Result<u8> {
    match command {
        CardCommand::FromUnit(args) => from_unit(args, ctx),
    }
}

fn from_unit(args: FromUnitArgs, ctx: &mut Ctx) -> Result<u8> {
    if !args.root.is_dir() {
        let msg = format!("--root {}: not a directory", args.root.display());
        return Err(CliError::Usage(msg).into());
    }
    let machine = Machine {
        fs: &OsFs,
        root: args.root.clone(),
    };
    let options = Options {
        workspace: args.workspace.clone(),
    };
    let conversion = match unit::convert(&machine, &args.units, &options) {
        Ok(c) => c,
        Err(e @ ConvertError::Workspace(_)) => return Err(CliError::Usage(e.to_string()).into()),
        Err(e) => {
            writeln!(ctx.err, "shuma: {e}")?;
            return Ok(1);
        }
    };
    let notes = conversion.notes().count();
    for note in conversion.notes() {
        writeln!(ctx.err, "{note}")?;
    }
    if args.strict && notes > 0 {
        writeln!(
            ctx.err,
            "shuma: --strict: {notes} directive(s) not translated; no card written"
        )?;
        return Ok(EXIT_INCOMPLETE);
    }
    match &args.output {
        Some(path) => write_atomically(path, &conversion.card)?,
        None => ctx.out.write_all(conversion.card.as_bytes())?,
    }
    if notes > 0 {
        writeln!(
            ctx.err,
            "shuma: {notes} directive(s) not translated, or only in part (listed above and in the card)"
        )?;
        return Ok(EXIT_INCOMPLETE);
    }
    Ok(0)
}

/// Write through a temporary file beside `path` and rename it, so a reader (arje's
/// cards directory) never sees half a card.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{}.tmp", file_name.unwrap_or_default()));
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}
