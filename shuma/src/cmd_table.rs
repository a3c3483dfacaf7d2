//! The commands table of `ps` and `ws show`: one row per command, its readiness, health
//! and status (protocol 4) in the last three columns.

use shuma_card::protocol::{CmdState, CommandInfo, Health};

use crate::output::{cmd_state_name, dash, elide, exit_short, one_line, opt_duration, Table};

/// Longest STATUS cell of the commands table, in characters; a longer text is cut with
/// "…", and `ws show` prints it whole below the table. The other columns take about 80
/// characters with ordinary names, so a row stays near 100 (past it with long names or
/// `unhealthy(N)`); 24 keeps `waiting for db, net/up` or a short `STATUS=` line whole.
pub const STATUS_CELL_MAX: usize = 24;

/// The `ps` table: ID WORKSPACE NAME PID STATE RESTARTS LAST-EXIT UPTIME READY HEALTH
/// STATUS PIPELINE. The protocol 4 and 6 columns come last so the earlier ones keep
/// their positions for scripts that cut them out.
pub fn commands_table(commands: &[CommandInfo]) -> Table {
    let mut table = Table::new(&[
        "ID",
        "WORKSPACE",
        "NAME",
        "PID",
        "STATE",
        "RESTARTS",
        "LAST-EXIT",
        "UPTIME",
        "READY",
        "HEALTH",
        "STATUS",
        "PIPELINE",
    ]);
    for c in commands {
        table.row(vec![
            c.id.to_string(),
            c.workspace.clone(),
            c.name.clone(),
            c.pid.map(|p| p.to_string()).unwrap_or_else(dash),
            cmd_state_name(&c.state).to_string(),
            c.restarts.to_string(),
            exit_short(c.last_exit),
            opt_duration(c.uptime_ms),
            ready_cell(c).to_string(),
            health_cell(c.health.as_ref()),
            status_cell(c),
            c.pipeline.clone().unwrap_or_else(dash),
        ]);
    }
    table
}

/// READY: `yes` when its ready condition holds (a task: it exited 0), `-` when it has
/// not started yet (nothing to judge), `no` otherwise.
fn ready_cell(c: &CommandInfo) -> &'static str {
    let never_started =
        c.state == CmdState::Waiting && c.pid.is_none() && c.last_exit.is_none() && c.restarts == 0;
    if c.ready {
        "yes"
    } else if never_started {
        "-"
    } else {
        "no"
    }
}

/// HEALTH: `-` without a health check, `starting`, `healthy`, or `unhealthy(N)` after
/// N failed probes in a row.
fn health_cell(health: Option<&Health>) -> String {
    match health {
        None => dash(),
        Some(Health::Starting) => "starting".to_string(),
        Some(Health::Healthy) => "healthy".to_string(),
        Some(Health::Failing { failures, .. }) => format!("unhealthy({failures})"),
    }
}

/// The whole text of a command's STATUS cell, the first that applies: what a waiting
/// command waits for, why it failed, or the `STATUS=` text it sent, in quotes because
/// those are the service's words, not arje's.
pub fn status_text(c: &CommandInfo) -> Option<String> {
    if c.state == CmdState::Waiting && !c.waiting_for.is_empty() {
        return Some(format!("waiting for {}", c.waiting_for.join(", ")));
    }
    if let Some(reason) = &c.reason {
        return Some(reason.clone());
    }
    c.status.as_ref().map(|s| format!("\"{s}\""))
}

/// The STATUS cell: [`status_text`] on one line, cut at [`STATUS_CELL_MAX`]; "-".
fn status_cell(c: &CommandInfo) -> String {
    match status_text(c) {
        Some(text) => elide(&one_line(&text), STATUS_CELL_MAX),
        None => dash(),
    }
}

/// Is the STATUS cell of `c` cut short, so that `ws show` should print it whole?
pub fn status_elided(c: &CommandInfo) -> bool {
    status_text(c).is_some_and(|text| one_line(&text).chars().count() > STATUS_CELL_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shuma_card::ExitStatus;

    fn info(state: CmdState) -> CommandInfo {
        CommandInfo {
            id: 1,
            workspace: "demo".into(),
            name: "web".into(),
            service: true,
            pid: None,
            state,
            restarts: 0,
            last_exit: None,
            reason: None,
            uptime_ms: None,
            ready: false,
            status: None,
            health: None,
            waiting_for: Vec::new(),
            pipeline: None,
        }
    }

    #[test]
    fn test_ready_cell_yes_no_and_dash_before_the_first_start() {
        let ready = CommandInfo {
            ready: true,
            ..info(CmdState::Exited)
        };
        let running = CommandInfo {
            pid: Some(7),
            ..info(CmdState::Running)
        };
        let backoff = CommandInfo {
            last_exit: Some(ExitStatus::Code(1)),
            restarts: 1,
            ..info(CmdState::Waiting)
        };

        assert_eq!(ready_cell(&ready), "yes");
        assert_eq!(ready_cell(&running), "no");
        assert_eq!(ready_cell(&backoff), "no");
        assert_eq!(ready_cell(&info(CmdState::Failed)), "no");
        assert_eq!(ready_cell(&info(CmdState::Waiting)), "-");
    }

    #[test]
    fn test_health_cell_each_verdict() {
        let failing = Health::Failing {
            failures: 3,
            last: "refused".into(),
        };

        assert_eq!(health_cell(None), "-");
        assert_eq!(health_cell(Some(&Health::Starting)), "starting");
        assert_eq!(health_cell(Some(&Health::Healthy)), "healthy");
        assert_eq!(health_cell(Some(&failing)), "unhealthy(3)");
    }

    #[test]
    fn test_status_text_waiting_before_reason_before_status() {
        let waiting = CommandInfo {
            waiting_for: vec!["db".into(), "net/up".into()],
            status: Some("old".into()),
            ..info(CmdState::Waiting)
        };
        // The list names the dependencies of a command that has not started; once it
        // runs, it is not what the command is doing.
        let running = CommandInfo {
            status: Some("serving".into()),
            ..waiting.clone()
        };
        let running = CommandInfo {
            state: CmdState::Running,
            ..running
        };
        let failed = CommandInfo {
            reason: Some("gave up".into()),
            status: Some("serving".into()),
            ..info(CmdState::Failed)
        };

        assert_eq!(
            status_text(&waiting).as_deref(),
            Some("waiting for db, net/up")
        );
        assert_eq!(status_text(&running).as_deref(), Some("\"serving\""));
        assert_eq!(status_text(&failed).as_deref(), Some("gave up"));
        assert_eq!(status_text(&info(CmdState::Running)), None);
    }
}
