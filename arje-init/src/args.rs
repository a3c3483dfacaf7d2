//! Command-line arguments, parsed by hand: arje-init is PID 1 and carries no parser crate.

use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "\
usage: arje-init [--subreaper | --pid1] [options]
       arje-init [-g] [-v...] [--log-level LEVEL] -- PROGRAM [ARGS...]

Runs as PID 1 when its pid is 1 (a VM or initramfs), otherwise as a child subreaper.

With `--`, a container entrypoint (docs/ENTRYPOINT.md): runs PROGRAM as its only child,
forwards every signal to it, reaps every zombie, and exits with PROGRAM's status (128+N
if signal N killed it; 127 not found, 126 not executable, 2 usage). No socket, no state.

  -g, --forward-to-group   forward signals to PROGRAM's process group, not only PROGRAM
  -v, -vv, -vvv            log info, debug, trace (default: warnings and errors only)

Runtime options:
  --subreaper              run as a child subreaper (the default when pid != 1)
  --pid1                   PID-1 signal mapping and shutdown outcome even if pid != 1;
                           mounts, module loading, kill(-1) and reboot(2) still happen only
                           when the pid really is 1 (see docs/PID1.md)
  --socket PATH            control socket (default /run/arje/control.sock)
  --socket-group GROUP     make the socket 0660 and let GROUP (name or gid) read through it
  --cards DIR              load every *.toml in DIR at start
  --state-dir DIR          the /run snapshot's directory (default /run/arje)
  --durable-dir DIR        the durable snapshot's directory (default: none off PID 1)
  --cgroup-root PATH       cgroup v2 directory for workspaces (default: none off PID 1)
  --syslog PATH            receive syslog(3) messages at PATH (PID 1: /dev/log)
  --journal-max SIZE       bound on the event journal on disk, e.g. 32M (default 32M in
                           the durable directory, at most 4M in the state directory
                           without one); 0 keeps events in memory only
  --log-dir DIR            also write ring-logged commands' output to
                           DIR/WORKSPACE/COMMAND.log (PID 1 on a real root: /var/log/arje)
  --log-file-max SIZE      rotate a log file past SIZE, e.g. 8M (default 8M; 3 files kept)
  --shutdown-timeout DUR   bound on stopping everything, e.g. 10s, 500ms (default 10s)
  --log-level LEVEL        error, warn, info, debug or trace (default info)
  --version                print the version and exit
  --help                   print this help and exit
";

/// What the command line asked for. `None` means "not given": PID 1 fills it from the
/// kernel command line, subreaper mode from its defaults.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Args {
    pub subreaper: bool,
    pub pid1: bool,
    pub socket: Option<PathBuf>,
    pub socket_group: Option<u32>,
    pub cards: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub durable_dir: Option<PathBuf>,
    pub cgroup_root: Option<PathBuf>,
    pub syslog: Option<PathBuf>,
    pub journal_max: Option<u64>,
    pub log_dir: Option<PathBuf>,
    pub log_file_max: Option<u64>,
    pub shutdown_timeout: Option<Duration>,
    pub log_level: Option<log::LevelFilter>,
    pub version: bool,
    pub help: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgsError {
    Unknown(String),
    MissingValue(String),
    BadValue { flag: String, value: String },
    Conflict,
}

impl std::fmt::Display for ArgsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArgsError::Unknown(a) => write!(f, "unknown argument {a:?}"),
            ArgsError::MissingValue(a) => write!(f, "{a} needs a value"),
            ArgsError::BadValue { flag, value } => write!(f, "{flag}: bad value {value:?}"),
            ArgsError::Conflict => write!(f, "--subreaper and --pid1 exclude each other"),
        }
    }
}

/// A size (`32M`) given to `flag`.
fn size(v: String, flag: String) -> Result<u64, ArgsError> {
    shuma_card::units::parse_size(&v).map_err(|_| ArgsError::BadValue { flag, value: v })
}

/// Parses the arguments after argv[0]. Accepts `--flag VALUE` and `--flag=VALUE`.
///
/// The kernel passes init every command-line word it does not understand and that has no
/// `=` or `.` in it (e.g. `single`); as PID 1 those are ignored with a warning by the
/// caller, so this parser is only strict about words that start with `--`.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Args, ArgsError> {
    let mut out = Args::default();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |flag: &str| -> Result<String, ArgsError> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it
                    .next()
                    .ok_or_else(|| ArgsError::MissingValue(flag.to_string())),
            }
        };
        match flag.as_str() {
            "--subreaper" => out.subreaper = true,
            "--pid1" => out.pid1 = true,
            "--version" | "-V" => out.version = true,
            "--help" | "-h" => out.help = true,
            "--socket" => out.socket = Some(value(&flag)?.into()),
            "--socket-group" => {
                let v = value(&flag)?;
                let gid = resolve_group(&v).ok_or(ArgsError::BadValue { flag, value: v })?;
                out.socket_group = Some(gid);
            }
            "--cards" => out.cards = Some(value(&flag)?.into()),
            "--state-dir" => out.state_dir = Some(value(&flag)?.into()),
            "--durable-dir" => out.durable_dir = Some(value(&flag)?.into()),
            "--cgroup-root" => out.cgroup_root = Some(value(&flag)?.into()),
            "--syslog" => out.syslog = Some(value(&flag)?.into()),
            "--journal-max" => out.journal_max = Some(size(value(&flag)?, flag)?),
            "--log-dir" => out.log_dir = Some(value(&flag)?.into()),
            "--log-file-max" => out.log_file_max = Some(size(value(&flag)?, flag)?),
            "--shutdown-timeout" => {
                let v = value(&flag)?;
                let d = parse_duration(&v).ok_or(ArgsError::BadValue { flag, value: v })?;
                out.shutdown_timeout = Some(d);
            }
            "--log-level" => {
                let v = value(&flag)?;
                let l = v
                    .parse()
                    .map_err(|_| ArgsError::BadValue { flag, value: v })?;
                out.log_level = Some(l);
            }
            _ => return Err(ArgsError::Unknown(arg)),
        }
    }
    if out.subreaper && out.pid1 {
        return Err(ArgsError::Conflict);
    }
    Ok(out)
}

/// A group name from /etc/group, or a numeric gid.
fn resolve_group(name: &str) -> Option<u32> {
    if let Ok(gid) = name.parse() {
        return Some(gid);
    }
    arje_runtime::userdb::group_by_name(name).ok().flatten()
}

/// Parses a duration the way cards do (`10s`, `500ms`, `2m`, `1h`, `1.5s`:
/// `shuma_card::units`), and also a bare number as seconds, which the kernel command
/// line's `arje.shutdown_timeout=10` has always meant.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return secs.checked_mul(1000).map(Duration::from_millis);
    }
    shuma_card::units::parse_duration_ms(s)
        .ok()
        .map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Result<Args, ArgsError> {
        parse(v.iter().map(|s| s.to_string()))
    }

    #[test]
    fn test_parse_subreaper_flags_fills_fields() {
        // Arrange
        let argv = [
            "--subreaper",
            "--socket",
            "/tmp/s",
            "--cards=/c",
            "--log-level",
            "debug",
        ];

        // Act
        let a = args(&argv).unwrap();

        // Assert
        assert!(a.subreaper);
        assert_eq!(a.socket, Some(PathBuf::from("/tmp/s")));
        assert_eq!(a.cards, Some(PathBuf::from("/c")));
        assert_eq!(a.log_level, Some(log::LevelFilter::Debug));
    }

    #[test]
    fn test_parse_missing_value_is_error() {
        // Arrange
        let argv = ["--socket"];

        // Act
        let r = args(&argv);

        // Assert
        assert_eq!(r, Err(ArgsError::MissingValue("--socket".into())));
    }

    #[test]
    fn test_parse_unknown_flag_is_error() {
        // Arrange
        let argv = ["--frobnicate"];

        // Act
        let r = args(&argv);

        // Assert
        assert_eq!(r, Err(ArgsError::Unknown("--frobnicate".into())));
    }

    #[test]
    fn test_parse_subreaper_and_pid1_conflict() {
        // Arrange
        let argv = ["--subreaper", "--pid1"];

        // Act
        let r = args(&argv);

        // Assert
        assert_eq!(r, Err(ArgsError::Conflict));
    }

    #[test]
    fn test_parse_duration_units_convert() {
        // Arrange
        let inputs = ["10s", "500ms", "2m", "3", "1h"];

        // Act
        let got: Vec<_> = inputs.iter().map(|s| parse_duration(s)).collect();

        // Assert
        let want =
            [10_000, 500, 120_000, 3_000, 3_600_000].map(|ms| Some(Duration::from_millis(ms)));
        assert_eq!(got, want);
    }

    #[test]
    fn test_parse_duration_garbage_is_none() {
        // Arrange
        let inputs = ["", "s", "10x", "-1s", "99999999999999999999s"];

        // Act
        let got: Vec<_> = inputs.iter().map(|s| parse_duration(s)).collect();

        // Assert
        assert!(got.iter().all(Option::is_none), "{got:?}");
    }
}
