//! `shuma card from-unit`: systemd service units to a card, through
//! `shuma_card::unit`. Works offline: nothing is sent to the daemon.
//!
//! Exit codes (docs/CLI.md): 0 every directive translated; 5 the card was written but
//! some directives were not translated (each named on stderr), or, with `--strict`,
//! nothing was written because of them; 1 a unit was refused or could not be read
//! (nothing written); 2 usage.
//!
//! The converter is the feature `from-unit` (default on): the multi-call arje-init
//! builds the CLI without it, since it is about a sixth of that binary and a host
//! converts its units with the standalone `shuma` (docs/PID1.md, "One binary").

#[cfg(feature = "from-unit")]
use std::path::Path;

#[cfg(feature = "from-unit")]
use anyhow::Context as _;
use anyhow::Result;
#[cfg(feature = "from-unit")]
use shuma_card::unit::{self, ConvertError, Machine, Options, OsFs};

use crate::cli::CardCommand;
#[cfg(feature = "from-unit")]
use crate::cli::FromUnitArgs;
#[cfg(feature = "from-unit")]
use crate::client::CliError;
use crate::commands::Ctx;

/// Exit code of a conversion that left directives untranslated.
#[cfg(feature = "from-unit")]
pub const EXIT_INCOMPLETE: u8 = 5;

pub fn card(command: CardCommand, ctx: &mut Ctx) -> Result<u8> {
    match command {
        #[cfg(feature = "from-unit")]
        CardCommand::FromUnit(args) => from_unit(args, ctx),
        #[cfg(not(feature = "from-unit"))]
        CardCommand::FromUnit(_) => {
            writeln!(
                ctx.err,
                "shuma: card from-unit: this build has no unit converter (the multi-call \
                 arje-init leaves it out); use the standalone shuma"
            )?;
            Ok(1)
        }
    }
}

#[cfg(feature = "from-unit")]
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
#[cfg(feature = "from-unit")]
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{}.tmp", file_name.unwrap_or_default()));
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(all(test, feature = "from-unit"))]
mod tests {
    use std::path::PathBuf;

    use clap::Parser;

    use crate::cli::Cli;

    /// A root of the converter's golden tests (shuma-card/tests/units/golden).
    fn golden(case: &str) -> String {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../shuma-card/tests/units/golden")
            .join(case)
            .join("root");
        dir.to_str().unwrap().to_string()
    }

    struct Outcome {
        code: u8,
        message: Option<String>,
        out: String,
        err: String,
    }

    fn shuma(args: &[&str]) -> Outcome {
        let mut argv = vec!["shuma", "card", "from-unit"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).expect("arguments parse");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (code, message) = match crate::commands::run(cli, &mut out, &mut err) {
            Ok(code) => (code, None),
            Err(e) => (crate::exit_code(&e), Some(format!("{e:#}"))),
        };
        Outcome {
            code,
            message,
            out: String::from_utf8(out).unwrap(),
            err: String::from_utf8(err).unwrap(),
        }
    }

    #[test]
    fn test_from_unit_complete_prints_card_exit_0() {
        let root = golden("override");

        let o = shuma(&["--root", &root, "app.service"]);

        assert_eq!((o.code, o.err.as_str()), (0, ""), "{:?}", o.message);
        let spec = shuma_card::card::load_str(&o.out, "stdout").unwrap();
        assert_eq!(spec.commands[0].argv, ["/usr/local/bin/app", "--mine"]);
    }

    #[test]
    fn test_from_unit_incomplete_notes_on_stderr_card_written_exit_5() {
        let root = golden("settings");
        let dir = tempfile::tempdir().unwrap();
        let card = dir.path().join("api.toml");

        let o = shuma(&["--root", &root, "-o", card.to_str().unwrap(), "api.service"]);

        assert_eq!(o.code, super::EXIT_INCOMPLETE);
        assert!(o.out.is_empty());
        assert!(
            o.err
                .starts_with("api.service:9: Restart=on-abnormal: partly translated"),
            "{}",
            o.err
        );
        assert!(o.err.contains(
            "api.service:31: ProtectSystem=strict: not translated: arje has no sandboxing"
        ));
        let spec = shuma_card::card::load_file(&card).unwrap();
        assert_eq!(spec.name, "api");
    }

    #[test]
    fn test_from_unit_strict_with_notes_writes_nothing_exit_5() {
        let root = golden("settings");
        let dir = tempfile::tempdir().unwrap();
        let card = dir.path().join("api.toml");

        let o = shuma(&[
            "--strict",
            "--root",
            &root,
            "-o",
            card.to_str().unwrap(),
            "api.service",
        ]);

        assert_eq!(o.code, super::EXIT_INCOMPLETE);
        assert!(o.err.contains("--strict"), "{}", o.err);
        assert!(!card.exists());
    }

    #[test]
    fn test_from_unit_masked_unit_exit_1_says_masked() {
        let o = shuma(&["--root", &golden("masked"), "gone.service"]);

        assert_eq!(o.code, 1);
        assert_eq!(
            o.err,
            "shuma: gone.service: masked (/etc/systemd/system/gone.service -> /dev/null)\n"
        );
    }

    #[test]
    fn test_from_unit_bad_workspace_or_root_usage_exit_2() {
        let bad_ws = shuma(&[
            "--root",
            &golden("override"),
            "--workspace",
            "Bad",
            "app.service",
        ]);
        let bad_root = shuma(&["--root", "/nonexistent/root", "app.service"]);

        assert_eq!(bad_ws.code, 2);
        assert!(bad_ws
            .message
            .unwrap()
            .contains("not a valid workspace name"));
        assert_eq!(bad_root.code, 2);
    }

    #[test]
    fn test_from_unit_without_units_usage_error() {
        let err = Cli::try_parse_from(["shuma", "card", "from-unit"]).unwrap_err();

        assert_eq!(err.exit_code(), 2);
    }
}
