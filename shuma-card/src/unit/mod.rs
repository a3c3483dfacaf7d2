//! systemd units to cards: `shuma card from-unit`.
//!
//! A pure converter (no syscalls of its own: the file system is reached through
//! [`UnitFs`]) from systemd service units to one card, written against systemd's
//! documented syntax and meanings (systemd.syntax(7), systemd.unit(5),
//! systemd.service(5), systemd.exec(5), systemd.kill(5), systemd.resource-control(5)):
//!
//! - [`syntax`]: the unit-file syntax (sections, continuation lines, comments);
//! - [`lookup`]: finding a unit on a machine (search path, drop-ins, aliases, masks,
//!   templates);
//! - [`specifier`], [`exec`], [`env`], [`values`]: specifiers, command lines,
//!   environment, and systemd's value syntaxes;
//! - `plan`: one unit's settings to commands, with a note for each directive the card
//!   cannot express; `assemble`: the units into one workspace (names, dependencies,
//!   limits); `emit`: the card's TOML text.
//!
//! Honesty is the rule: a directive is either translated to what it means, or listed
//! in a [`Note`] with its file, line and the reason; the card's text carries the same
//! notes as comments. docs/UNITS.md describes every mapping.

mod assemble;
mod chain;
pub mod directives;
mod emit;
pub mod env;
pub mod exec;
mod fs;
pub mod lookup;
pub mod name;
mod plan;
mod resources;
mod rlimits;
mod service;
mod settings;
pub mod specifier;
pub mod syntax;
pub mod values;

use std::fmt;

use crate::card::CardError;
use crate::spec::WorkspaceSpec;
pub use lookup::{LoadError, LoadedUnit, Machine, MemFs, OsFs, UnitFs};

/// How to convert.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The workspace's name; by default the card name of the first unit.
    pub workspace: Option<String>,
}

/// A directive the card does not express, or expresses only in part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The file, as notes name it: `ssh.service` or `ssh.service.d/override.conf`.
    pub file: String,
    pub line: usize,
    /// `Key=Value` as written (cut to 100 characters).
    pub directive: String,
    /// "not translated: ..." or "partly translated: ...".
    pub text: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.line, self.directive, self.text
        )
    }
}

/// What became of one unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitReport {
    /// The unit's name (an alias resolved).
    pub unit: String,
    /// Its unit file.
    pub fragment: String,
    /// The card commands made from it, in card order.
    pub commands: Vec<String>,
    /// Directives not translated, or only in part.
    pub notes: Vec<Note>,
    /// What the card says about the unit besides the notes (drop-ins read, variables
    /// read from files, lines systemd itself ignores).
    pub comments: Vec<String>,
}

/// A finished conversion: the card's text, the spec it loads to, and a report per unit.
#[derive(Debug, Clone)]
pub struct Conversion {
    pub card: String,
    pub spec: WorkspaceSpec,
    pub units: Vec<UnitReport>,
}

impl Conversion {
    /// Was every directive translated?
    pub fn complete(&self) -> bool {
        self.units.iter().all(|u| u.notes.is_empty())
    }

    /// Every note of every unit, in unit order.
    pub fn notes(&self) -> impl Iterator<Item = &Note> {
        self.units.iter().flat_map(|u| u.notes.iter())
    }
}

/// Why nothing was converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConvertError {
    /// A unit could not be found or read.
    Load(LoadError),
    /// A unit the card cannot run at all (not a service, nothing to start, a command
    /// line that cannot be read).
    Refused {
        unit: String,
        /// The file and line of the directive at fault, when one is.
        at: Option<(String, usize)>,
        reason: String,
    },
    /// No unit was named.
    NoUnits,
    /// The `--workspace` name is not a valid name.
    Workspace(String),
    /// More commands than a workspace holds.
    TooMany(usize),
    /// The card made does not load (a dependency cycle among the units).
    Card(CardError),
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvertError::Load(e) => e.fmt(f),
            ConvertError::Refused {
                unit,
                at: Some((file, line)),
                reason,
            } => write!(f, "{file}:{line}: {unit} refused: {reason}"),
            ConvertError::Refused { unit, reason, .. } => write!(f, "{unit} refused: {reason}"),
            ConvertError::NoUnits => f.write_str("no unit to convert"),
            ConvertError::Workspace(n) => write!(
                f,
                "{n:?} is not a valid workspace name: [a-z0-9][a-z0-9._-]{{0,62}}"
            ),
            ConvertError::TooMany(n) => write!(
                f,
                "the units make {n} commands, more than a workspace holds ({})",
                crate::spec::MAX_COMMANDS_PER_WORKSPACE
            ),
            ConvertError::Card(e) => write!(f, "the converted card does not load: {e}"),
        }
    }
}

impl std::error::Error for ConvertError {}

impl From<LoadError> for ConvertError {
    fn from(e: LoadError) -> Self {
        ConvertError::Load(e)
    }
}

/// Convert the units named in `args` (unit names looked up on `machine`, or paths)
/// into one card.
pub fn convert(
    machine: &Machine,
    args: &[String],
    options: &Options,
) -> Result<Conversion, ConvertError> {
    if args.is_empty() {
        return Err(ConvertError::NoUnits);
    }
    let mut plans = Vec::new();
    for arg in args {
        let unit = lookup::load(machine, arg)?;
        plans.push(plan::plan(machine, unit)?);
    }
    assemble::assemble(plans, options)
}
