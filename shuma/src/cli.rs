//! The command line: what `shuma` accepts, as clap derive types.
//!
//! Parsing errors are clap's own and exit with code 2, the same code a bad card gets.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use shuma_card::spec::valid_name;

/// The default control socket of arje-init.
pub const DEFAULT_SOCKET: &str = "/run/arje/control.sock";

/// How long the daemon may take to answer when `--timeout` is not given.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;

const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  the daemon refused the request (its message is printed as it said it),
     or the conversation with it broke off
  2  usage: a bad argument or a bad card
  3  cannot connect to the control socket, or no answer within --timeout
  4  not ready: what `wait-ready` or `--wait-ready` waited for failed, exited
     before it was ready, or was not ready within --timeout
  5  `card from-unit`: some directives were not translated
  `run --wait` exits with the command's own exit code (128 + N for signal N).";

/// Control arje: workspaces, commands, logs and events over arje's unix socket.
#[derive(Parser, Debug)]
#[command(name = "shuma", version, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// The control socket of arje-init.
    #[arg(long, global = true, env = "ARJE_SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Reach a VM's arje (booted with `arje.vsock=PORT`) instead of the socket: `CID:PORT`
    /// over AF_VSOCK, or `unix:PATH:PORT` through a hybrid vsock device's unix socket.
    #[arg(long, global = true, env = "ARJE_VSOCK", value_name = "CID:PORT", value_parser = crate::vsock::parse)]
    pub vsock: Option<crate::vsock::Vsock>,
    /// Print listings as JSON: one document, or one per line for `events` and `top`.
    #[arg(long, global = true)]
    pub json: bool,
    /// Give up (exit 3) when the daemon does not answer within this long, e.g. 30s,
    /// 500ms; 0 waits forever. Following commands (`run --wait`, `logs -f`,
    /// `events -f`, `ws stop`) wait without limit once their request is taken. Given,
    /// it also bounds a readiness wait (`wait-ready`, `--wait-ready`: exit 4 past it)
    /// [default: 30s].
    // No clap default: whether the user gave it decides whether a readiness wait is
    // bounded (`None` there leaves it to each command's own `ready_timeout`).
    #[arg(long, global = true, value_name = "DUR", value_parser = parse_duration)]
    pub timeout: Option<u64>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check that the daemon answers: prints `pong`.
    Ping,
    /// The daemon's version, pid, mode, uptime and counts.
    Status,
    /// Workspaces: create, list, show, stop, change limits, read stats.
    #[command(subcommand)]
    Ws(WsCommand),
    /// Start a one-shot command in a workspace.
    Run(RunArgs),
    /// Wait until a workspace's commands, or one of them, are ready (exit 4: not ready).
    WaitReady {
        /// The workspace.
        workspace: String,
        /// Only this command: its name, or the id `run` printed.
        command: Option<String>,
    },
    /// Commands of one workspace, or of all.
    Ps {
        /// Only this workspace.
        workspace: Option<String>,
    },
    /// Captured output of a command.
    Logs(LogsArgs),
    /// The event journal.
    Events {
        /// Keep printing new events until interrupted.
        #[arg(short, long)]
        follow: bool,
        /// Only events with an id greater than this.
        #[arg(long, value_name = "ID")]
        after: Option<u64>,
        /// Only events of the last DURATION (e.g. 10m, 2h, 1d30m).
        #[arg(long, value_name = "DURATION", value_parser = parse_since)]
        since: Option<u64>,
        /// Only events about this workspace.
        #[arg(long, value_name = "NAME")]
        workspace: Option<String>,
    },
    /// What arje can enforce on this machine.
    Caps,
    /// A refreshing view of workspaces and their resource use.
    Top {
        /// Print one frame and exit.
        #[arg(long)]
        once: bool,
        /// Time between frames.
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        interval: u64,
    },
    /// Start one command of a workspace's card that is stopped, exited or failed (its
    /// failure record cleared); it waits for its `after` dependencies first.
    Start {
        #[arg(value_name = "WORKSPACE/NAME", value_parser = parse_target)]
        target: (String, String),
    },
    /// Stop one command with its stop signal and grace; it stays stopped, and what
    /// `requires` it stops too.
    Stop {
        #[arg(value_name = "WORKSPACE/NAME", value_parser = parse_target)]
        target: (String, String),
    },
    /// Stop one command, then start it again.
    Restart {
        #[arg(value_name = "WORKSPACE/NAME", value_parser = parse_target)]
        target: (String, String),
    },
    /// Send one running command SIGHUP (cards have no reload command yet).
    Reload {
        #[arg(value_name = "WORKSPACE/NAME", value_parser = parse_target)]
        target: (String, String),
    },
    /// Send a signal to one running command's process group and main process.
    Kill {
        /// The signal: a name (USR1, SIGUSR1) or a number 1..64.
        #[arg(short, long, value_name = "SIG", default_value = "TERM", value_parser = parse_signal)]
        signal: i32,
        #[arg(value_name = "WORKSPACE/NAME", value_parser = parse_target)]
        target: (String, String),
    },
    /// Stop every workspace and power the machine off (as PID 1), or exit (as subreaper).
    Poweroff,
    /// Stop every workspace and reboot the machine (as PID 1).
    Reboot,
    /// Stop every workspace and halt the machine (as PID 1).
    Halt,
    /// Cards: convert systemd units (offline, no daemon needed).
    #[command(subcommand)]
    Card(CardCommand),
    /// Pipelines: save, list, show, remove, run in a workspace, stop.
    #[command(subcommand)]
    Pipeline(PipelineCommand),
    /// Save state and re-execute the daemon in place, keeping its children.
    DaemonReexec {
        /// Execute this binary instead of the running one.
        #[arg(long, value_name = "PATH")]
        binary: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum WsCommand {
    /// Load a card and create its workspace.
    Create {
        /// The card, a TOML file.
        card: PathBuf,
        /// Then wait until every command is ready (exit 0), or one failed before it
        /// was (exit 4); `--timeout` bounds the wait.
        #[arg(long)]
        wait_ready: bool,
    },
    /// List workspaces.
    Ls,
    /// One workspace: limits, unenforced limits and commands.
    Show { name: String },
    /// Stop every command of a workspace and remove it.
    Stop {
        name: String,
        /// Grace before SIGKILL for every command, e.g. `2s` (default: each command's own).
        #[arg(long, value_name = "DUR", value_parser = parse_duration)]
        grace: Option<u64>,
        /// Stop it even if this shell runs inside it (an ssh session in sshd's
        /// workspace), which ends this session too.
        #[arg(long)]
        force: bool,
    },
    /// Change limits of a running workspace, e.g. `memory_max=64M pids_max=32`.
    Set {
        name: String,
        #[arg(required = true, value_name = "KEY=VALUE", value_parser = parse_key_value)]
        settings: Vec<(String, String)>,
    },
    /// Resource use samples of a workspace.
    Stats { name: String },
}

#[derive(Subcommand, Debug)]
pub enum PipelineCommand {
    /// Save the pipeline called NAME from FILE's `[[pipeline]]` tables (a file with one
    /// table saves it under NAME), replacing a saved one of that name.
    Save { name: String, file: PathBuf },
    /// Saved pipelines and live ones (of one workspace only, given).
    Ls {
        #[arg(long, value_name = "NAME")]
        workspace: Option<String>,
    },
    /// A saved pipeline's nodes and edges.
    Show { name: String },
    /// Forget a saved pipeline (its live runs go on).
    Rm { name: String },
    /// Start the saved pipeline NAME in WORKSPACE, supervised as a card's.
    Run { workspace: String, name: String },
    /// Stop a live pipeline, source nodes first, and leave it stopped.
    Stop { workspace: String, name: String },
}

#[derive(Subcommand, Debug)]
pub enum CardCommand {
    /// Convert systemd service units into one card (docs/UNITS.md). Exit 0: complete;
    /// 5: some directives not translated (listed on stderr and in the card); 1: a unit
    /// refused or unreadable.
    FromUnit(FromUnitArgs),
}

#[derive(Args, Debug)]
pub struct FromUnitArgs {
    /// Units: names looked up in the unit directories under --root (`ssh.service`,
    /// `getty@ttyS0.service`), or paths to unit files (anything with a `/`).
    #[arg(required = true, value_name = "UNIT")]
    pub units: Vec<String>,
    /// The workspace's name (default: the first unit's name).
    #[arg(long, value_name = "NAME")]
    pub workspace: Option<String>,
    /// Write the card to this file instead of stdout.
    #[arg(short, long, value_name = "CARD.toml")]
    pub output: Option<PathBuf>,
    /// The root of the machine whose units, environment files, users and programs are
    /// read.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Refuse (exit 5, nothing written) when any directive is not translated.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The workspace to run in.
    pub workspace: String,
    /// Wait for the command to end and exit with its exit code.
    #[arg(long)]
    pub wait: bool,
    /// Wait until the command is ready (a task: it exited 0), exit 0; or 4 when it
    /// failed first. `--timeout` bounds the wait.
    #[arg(long, conflicts_with = "wait")]
    pub wait_ready: bool,
    /// The command's name (default: derived from the program's file name).
    #[arg(long, value_name = "CMDNAME")]
    pub name: Option<String>,
    /// An environment variable; nothing else is passed on.
    #[arg(long, value_name = "K=V", value_parser = parse_key_value)]
    pub env: Vec<(String, String)>,
    /// Working directory of the command.
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,
    /// The program and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "ARGV")]
    pub argv: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    pub workspace: String,
    pub command: String,
    /// Keep printing new output until interrupted or the daemon closes the connection.
    #[arg(short, long)]
    pub follow: bool,
    /// Which stream to read.
    #[arg(long, value_enum, default_value_t = StreamArg::Both)]
    pub stream: StreamArg,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamArg {
    Out,
    Err,
    Both,
}

fn parse_duration(s: &str) -> Result<u64, String> {
    shuma_card::units::parse_duration_ms(s).map_err(|e| e.to_string())
}

/// Split `KEY=VALUE`; the key must not be empty, the value may be.
/// `WORKSPACE/NAME`, both parts valid names.
fn parse_target(s: &str) -> Result<(String, String), String> {
    match s.split_once('/') {
        Some((w, c)) if valid_name(w) && valid_name(c) => Ok((w.to_string(), c.to_string())),
        _ => Err(format!("`{s}` is not WORKSPACE/NAME")),
    }
}

fn parse_signal(s: &str) -> Result<i32, String> {
    shuma_card::units::parse_signal(s).map_err(|e| e.to_string())
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// `--since DURATION`: milliseconds.
fn parse_since(s: &str) -> Result<u64, String> {
    shuma_card::units::parse_duration_ms(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cli_definition_is_consistent() {
        // Arrange / Act / Assert: clap's own self-check of the derive attributes.
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn test_parse_run_argv_after_double_dash_kept_verbatim() {
        let cli = Cli::try_parse_from([
            "shuma", "run", "demo", "--wait", "--env", "A=1", "--", "/bin/sh", "-c", "exit 3",
        ])
        .unwrap();

        let Command::Run(args) = cli.command else {
            panic!("not run: {:?}", cli.command)
        };
        assert!(args.wait);
        assert_eq!(args.env, vec![("A".to_string(), "1".to_string())]);
        assert_eq!(args.argv, vec!["/bin/sh", "-c", "exit 3"]);
    }

    #[test]
    fn test_parse_run_without_argv_usage_error_exit_2() {
        let err = Cli::try_parse_from(["shuma", "run", "demo"]).unwrap_err();

        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn test_parse_ws_set_without_equals_usage_error_exit_2() {
        let err = Cli::try_parse_from(["shuma", "ws", "set", "demo", "memory_max"]).unwrap_err();

        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("is not KEY=VALUE"), "{err}");
    }

    #[test]
    fn test_parse_ws_stop_grace_in_milliseconds() {
        let cli = Cli::try_parse_from(["shuma", "ws", "stop", "demo", "--grace", "2s"]).unwrap();

        let Command::Ws(WsCommand::Stop { grace, .. }) = cli.command else {
            panic!()
        };
        assert_eq!(grace, Some(2000));
    }

    #[test]
    fn test_parse_bad_grace_usage_error_exit_2() {
        let err =
            Cli::try_parse_from(["shuma", "ws", "stop", "demo", "--grace", "soon"]).unwrap_err();

        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn test_parse_ws_create_wait_ready_with_timeout_after_it() {
        let cli = Cli::try_parse_from([
            "shuma",
            "ws",
            "create",
            "demo.toml",
            "--wait-ready",
            "--timeout",
            "1m30s",
        ])
        .unwrap();

        let Command::Ws(WsCommand::Create { card, wait_ready }) = cli.command else {
            panic!("not ws create: {:?}", cli.command)
        };
        assert_eq!(card, PathBuf::from("demo.toml"));
        assert!(wait_ready);
        assert_eq!(cli.timeout, Some(90_000));
    }

    #[test]
    fn test_parse_timeout_not_given_is_none() {
        let cli = Cli::try_parse_from(["shuma", "ws", "create", "demo.toml"]).unwrap();

        let Command::Ws(WsCommand::Create { wait_ready, .. }) = cli.command else {
            panic!()
        };
        assert!(!wait_ready);
        assert_eq!(
            cli.timeout, None,
            "the 30s default is applied when connecting"
        );
    }

    #[test]
    fn test_parse_run_wait_ready_before_double_dash() {
        let cli = Cli::try_parse_from([
            "shuma",
            "run",
            "demo",
            "--wait-ready",
            "--",
            "/bin/x",
            "--wait-ready",
        ])
        .unwrap();

        let Command::Run(args) = cli.command else {
            panic!()
        };
        assert!(args.wait_ready);
        assert!(!args.wait);
        assert_eq!(args.argv, vec!["/bin/x", "--wait-ready"]);
    }

    #[test]
    fn test_parse_run_wait_and_wait_ready_together_usage_error_exit_2() {
        let err =
            Cli::try_parse_from(["shuma", "run", "demo", "--wait", "--wait-ready", "--", "x"])
                .unwrap_err();

        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn test_parse_wait_ready_workspace_and_optional_command() {
        let all = Cli::try_parse_from(["shuma", "wait-ready", "demo"]).unwrap();
        let one =
            Cli::try_parse_from(["shuma", "wait-ready", "demo", "7", "--timeout", "0"]).unwrap();

        let Command::WaitReady { workspace, command } = all.command else {
            panic!()
        };
        assert_eq!((workspace.as_str(), command), ("demo", None));
        let Command::WaitReady { command, .. } = one.command else {
            panic!()
        };
        assert_eq!(command.as_deref(), Some("7"));
        assert_eq!(one.timeout, Some(0));
    }

    #[test]
    fn test_parse_wait_ready_bad_timeout_usage_error_exit_2() {
        let err =
            Cli::try_parse_from(["shuma", "wait-ready", "demo", "--timeout", "soon"]).unwrap_err();

        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn test_parse_socket_flag_after_subcommand_accepted() {
        let cli = Cli::try_parse_from(["shuma", "ping", "--socket", "/tmp/x.sock"]).unwrap();

        assert_eq!(cli.socket, PathBuf::from("/tmp/x.sock"));
    }
}
