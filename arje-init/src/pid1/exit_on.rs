//! `arje.exit-on=WORKSPACE/COMMAND`: PID 1 of a CI guest watches one command and, once
//! it has ended, powers the machine off and tells the host how it ended
//! (`exit_report.rs`: the last console line, a virtio-serial port, QEMU's exit code).
//! docs/PID1.md gives the format and the codes.
//!
//! This part is pure: the watch reads the runtime's journal by cursor (between turns,
//! `Runtime::run_observed`) and decides from the entries alone, so it is unit-tested
//! with made-up journals.

use shuma_card::spec::valid_name;
use shuma_card::{Event, EventKind, ExitStatus};

/// The command to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub workspace: String,
    pub command: String,
}

impl Target {
    /// Parses `WORKSPACE/COMMAND`, each a valid name (`[a-z0-9][a-z0-9._-]{0,62}`).
    pub fn parse(value: &str) -> Result<Target, String> {
        let Some((workspace, command)) = value.split_once('/') else {
            return Err("expected WORKSPACE/COMMAND".into());
        };
        for (what, name) in [("workspace", workspace), ("command", command)] {
            if !valid_name(name) {
                return Err(format!(
                    "{what} {name:?} is not a valid name ([a-z0-9][a-z0-9._-]{{0,62}})"
                ));
            }
        }
        Ok(Target {
            workspace: workspace.into(),
            command: command.into(),
        })
    }

    fn is(&self, workspace: &str, command: &str) -> bool {
        self.workspace == workspace && self.command == command
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.workspace, self.command)
    }
}

/// How the watched command ended, or why it has no end to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Its process ended: a code, a signal, or the OOM killer.
    Exited(ExitStatus),
    /// It ended for good without a process to wait for: it could not start, or a
    /// dependency it requires went down (the journal's reason).
    Failed(String),
    /// Its workspace was stopped before the command ended (it never started).
    Stopped,
    /// It was seen, but had not ended when the machine shut down.
    Unfinished,
    /// Neither it nor its workspace ever appeared in the journal.
    Absent,
}

/// Codes 0..=122 are the command's own exit code; the rest say what else happened.
/// QEMU's exit code is `2 * (code + 1) + 1` (`exit_report.rs`).
pub const CODE_LARGE: u8 = 123;
pub const CODE_SIGNAL: u8 = 124;
pub const CODE_FAILED: u8 = 125;
pub const CODE_NO_END: u8 = 126;

impl Status {
    /// The word after `status=` in the last console line.
    pub fn word(&self) -> String {
        match self {
            Status::Exited(ExitStatus::Code(c)) => format!("exited:{c}"),
            Status::Exited(ExitStatus::Signal(s)) => format!("signal:{s}"),
            Status::Exited(ExitStatus::OomKilled) => "oom".into(),
            Status::Failed(_) => "failed".into(),
            Status::Stopped => "stopped".into(),
            Status::Unfinished => "unfinished".into(),
            Status::Absent => "absent".into(),
        }
    }

    /// One number for the host, 0..=126 (docs/PID1.md): 7 bits, as QEMU's
    /// isa-debug-exit carries them.
    pub fn code(&self) -> u8 {
        match self {
            Status::Exited(ExitStatus::Code(c)) if (0..i32::from(CODE_LARGE)).contains(c) => {
                *c as u8
            }
            Status::Exited(ExitStatus::Code(_)) => CODE_LARGE,
            Status::Exited(ExitStatus::Signal(_) | ExitStatus::OomKilled) => CODE_SIGNAL,
            Status::Failed(_) | Status::Stopped => CODE_FAILED,
            Status::Unfinished | Status::Absent => CODE_NO_END,
        }
    }
}

/// The last console line: `arje: exit-on WORKSPACE/COMMAND status=WORD code=N`, fixed so
/// that a CI script can grep it.
pub fn line(target: &Target, status: &Status) -> String {
    format!(
        "arje: exit-on {target} status={} code={}",
        status.word(),
        status.code()
    )
}

/// The watch: a cursor into the journal and what it has learnt.
#[derive(Debug)]
pub struct Watch {
    target: Target,
    cursor: u64,
    /// The command or its workspace showed up in the journal.
    appeared: bool,
    end: Option<Status>,
}

impl Watch {
    /// Reads entries after `cursor` (`Runtime::journal_start_cursor`).
    pub fn new(target: Target, cursor: u64) -> Watch {
        Watch {
            target,
            cursor,
            appeared: false,
            end: None,
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    pub fn ended(&self) -> bool {
        self.end.is_some()
    }

    /// Feeds the entries after the cursor, oldest first: every entry journalled since
    /// the last call, never a part of a turn's. Returns the status the first time the
    /// command is seen to have ended.
    ///
    /// An exit is final unless a restart follows it, and a restart is journalled in
    /// the same turn as the exit it follows (the supervisor decides at once), so a
    /// `CommandExited` without a `CommandRestarting` after it in the same batch is the
    /// end. A task is never restarted; a service may be, and is then watched on.
    pub fn observe(&mut self, events: &[Event]) -> Option<&Status> {
        if self.end.is_some() {
            return None;
        }
        let mut exit = None;
        for ev in events {
            self.cursor = self.cursor.max(ev.id);
            if self.end.is_some() {
                continue;
            }
            self.end = self.step(&ev.kind, &mut exit);
        }
        if self.end.is_none() {
            self.end = exit.map(Status::Exited);
        }
        self.end.as_ref()
    }

    /// One entry: the end it makes, if any; `exit` holds an exit seen in this batch
    /// that a restart may still take back.
    fn step(&mut self, kind: &EventKind, exit: &mut Option<ExitStatus>) -> Option<Status> {
        let t = &self.target;
        match kind {
            EventKind::WorkspaceCreated { workspace } if *workspace == t.workspace => {
                self.appeared = true;
            }
            EventKind::CommandStarted {
                workspace, command, ..
            }
            | EventKind::SpawnFailed {
                workspace, command, ..
            } if t.is(workspace, command) => {
                self.appeared = true;
            }
            EventKind::CommandExited {
                workspace,
                command,
                status,
                ..
            } if t.is(workspace, command) => {
                self.appeared = true;
                *exit = Some(*status);
            }
            EventKind::CommandRestarting {
                workspace, command, ..
            } if t.is(workspace, command) => {
                *exit = None;
            }
            EventKind::CommandFailed {
                workspace,
                command,
                reason,
            } if t.is(workspace, command) => {
                // A service that gave up after an exit ended with that exit.
                return Some(match exit.take() {
                    Some(status) => Status::Exited(status),
                    None => Status::Failed(reason.clone()),
                });
            }
            EventKind::WorkspaceStopped { workspace } if *workspace == t.workspace => {
                return Some(match exit.take() {
                    Some(status) => Status::Exited(status),
                    None => Status::Stopped,
                });
            }
            _ => {}
        }
        None
    }

    /// What to report: the end, or, at a shutdown before it, whether the command was
    /// ever seen.
    pub fn verdict(&self) -> Status {
        match &self.end {
            Some(s) => s.clone(),
            None if self.appeared => Status::Unfinished,
            None => Status::Absent,
        }
    }
}

/// The watch `arje.exit-on=VALUE` asks for, if VALUE parses; a bad one is a warning on
/// the console and the boot goes on without a watch.
pub fn target_from(value: Option<&str>) -> Option<Target> {
    let value = value?;
    match Target::parse(value) {
        Ok(t) => {
            log::info!("exit-on {t}: the machine powers off when it ends");
            Some(t)
        }
        Err(e) => {
            log::warn!("arje.exit-on={value:?}: {e}; watching nothing, the machine stays up");
            None
        }
    }
}

/// Between two turns of the runtime: read what it journalled and, the first time the
/// command is seen to have ended, ask for a poweroff.
pub fn observe(watch: &mut Watch, rt: &mut arje_runtime::Runtime) {
    if watch.ended() {
        return;
    }
    let events = rt.events_after(watch.cursor());
    if let Some(word) = watch.observe(&events).map(Status::word) {
        log::info!("exit-on {}: ended ({word}); powering off", watch.target());
        rt.request_shutdown(arje_runtime::ShutdownKind::Poweroff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target::parse("ci/check").unwrap()
    }

    fn ev(id: u64, kind: EventKind) -> Event {
        Event {
            id,
            mono_us: 0,
            unix_ms: 0,
            kind,
        }
    }

    fn exited(id: u64, command: &str, status: ExitStatus) -> Event {
        ev(
            id,
            EventKind::CommandExited {
                workspace: "ci".into(),
                command: command.into(),
                pid: 7,
                status,
            },
        )
    }

    fn started(id: u64, command: &str) -> Event {
        ev(
            id,
            EventKind::CommandStarted {
                workspace: "ci".into(),
                command: command.into(),
                pid: 7,
            },
        )
    }

    #[test]
    fn test_target_parse_workspace_and_command_splits() {
        // Arrange
        let value = "ci/check-1";

        // Act
        let t = Target::parse(value);

        // Assert
        assert_eq!(
            t,
            Ok(Target {
                workspace: "ci".into(),
                command: "check-1".into()
            })
        );
    }

    #[test]
    fn test_target_parse_bad_values_are_refused() {
        // Arrange
        let bad = [
            "",
            "ci",
            "/check",
            "ci/",
            "CI/check",
            "ci/check/x",
            "ci/a b",
        ];

        // Act
        let results: Vec<_> = bad.iter().map(|v| Target::parse(v)).collect();

        // Assert
        for (v, r) in bad.iter().zip(&results) {
            assert!(r.is_err(), "{v:?} accepted: {r:?}");
        }
    }

    #[test]
    fn test_cmdline_exit_on_both_spellings_are_read() {
        // Arrange
        let dash = "quiet arje.exit-on=ci/check";
        let underscore = "arje.exit_on=ci/other";

        // Act
        let a = crate::pid1::cmdline::BootParams::parse(dash);
        let b = crate::pid1::cmdline::BootParams::parse(underscore);

        // Assert
        assert_eq!(a.exit_on.as_deref(), Some("ci/check"));
        assert_eq!(b.exit_on.as_deref(), Some("ci/other"));
        assert!(a.rejected.is_empty() && b.rejected.is_empty());
    }

    #[test]
    fn test_target_from_bad_value_watches_nothing() {
        // Arrange
        let value = Some("no-slash");

        // Act
        let t = target_from(value);

        // Assert
        assert_eq!(t, None);
    }

    #[test]
    fn test_status_code_maps_exits_signals_and_failures() {
        // Arrange
        let cases = [
            (Status::Exited(ExitStatus::Code(0)), 0),
            (Status::Exited(ExitStatus::Code(3)), 3),
            (Status::Exited(ExitStatus::Code(122)), 122),
            (Status::Exited(ExitStatus::Code(123)), CODE_LARGE),
            (Status::Exited(ExitStatus::Code(255)), CODE_LARGE),
            (Status::Exited(ExitStatus::Code(-1)), CODE_LARGE),
            (Status::Exited(ExitStatus::Signal(15)), CODE_SIGNAL),
            (Status::Exited(ExitStatus::OomKilled), CODE_SIGNAL),
            (Status::Failed("x".into()), CODE_FAILED),
            (Status::Stopped, CODE_FAILED),
            (Status::Unfinished, CODE_NO_END),
            (Status::Absent, CODE_NO_END),
        ];

        // Act
        let codes: Vec<u8> = cases.iter().map(|(s, _)| s.code()).collect();

        // Assert
        let want: Vec<u8> = cases.iter().map(|(_, c)| *c).collect();
        assert_eq!(codes, want);
        assert!(codes.iter().all(|c| *c <= 126), "7 bits with room for +1");
    }

    #[test]
    fn test_line_exit_3_has_the_documented_format() {
        // Arrange
        let status = Status::Exited(ExitStatus::Code(3));

        // Act
        let l = line(&target(), &status);

        // Assert
        assert_eq!(l, "arje: exit-on ci/check status=exited:3 code=3");
    }

    #[test]
    fn test_watch_task_exit_ends_with_its_status() {
        // Arrange
        let mut w = Watch::new(target(), 10);
        let events = [
            started(11, "other"),
            started(12, "check"),
            exited(13, "other", ExitStatus::Code(0)),
        ];
        let later = [exited(14, "check", ExitStatus::Code(3))];

        // Act
        let first = w.observe(&events).cloned();
        let second = w.observe(&later).cloned();

        // Assert
        assert_eq!(first, None);
        assert_eq!(second, Some(Status::Exited(ExitStatus::Code(3))));
        assert_eq!(w.cursor(), 14);
        assert_eq!(w.verdict(), Status::Exited(ExitStatus::Code(3)));
    }

    #[test]
    fn test_watch_exit_followed_by_restart_is_not_the_end() {
        // Arrange
        let mut w = Watch::new(target(), 0);
        let restart = ev(
            3,
            EventKind::CommandRestarting {
                workspace: "ci".into(),
                command: "check".into(),
                delay_ms: 100,
                restarts: 1,
            },
        );
        let events = [
            started(1, "check"),
            exited(2, "check", ExitStatus::Code(1)),
            restart,
        ];

        // Act
        let end = w.observe(&events).cloned();

        // Assert
        assert_eq!(end, None);
        assert_eq!(w.verdict(), Status::Unfinished);
    }

    #[test]
    fn test_watch_spawn_failure_given_up_is_failed() {
        // Arrange
        let mut w = Watch::new(target(), 0);
        let events = [
            ev(
                1,
                EventKind::SpawnFailed {
                    workspace: "ci".into(),
                    command: "check".into(),
                    error: "execve: ENOENT".into(),
                },
            ),
            ev(
                2,
                EventKind::CommandFailed {
                    workspace: "ci".into(),
                    command: "check".into(),
                    reason: "could not start: execve: ENOENT".into(),
                },
            ),
        ];

        // Act
        let end = w.observe(&events).cloned();

        // Assert
        assert_eq!(
            end,
            Some(Status::Failed("could not start: execve: ENOENT".into()))
        );
        assert_eq!(end.map(|s| s.code()), Some(CODE_FAILED));
    }

    #[test]
    fn test_watch_workspace_stopped_before_start_is_stopped() {
        // Arrange
        let mut w = Watch::new(target(), 0);
        let events = [
            ev(
                1,
                EventKind::WorkspaceCreated {
                    workspace: "ci".into(),
                },
            ),
            ev(
                2,
                EventKind::WorkspaceStopped {
                    workspace: "ci".into(),
                },
            ),
        ];

        // Act
        let end = w.observe(&events).cloned();

        // Assert
        assert_eq!(end, Some(Status::Stopped));
    }

    #[test]
    fn test_watch_nothing_seen_is_absent() {
        // Arrange
        let mut w = Watch::new(target(), 0);
        let events = [started(1, "other"), exited(2, "other", ExitStatus::Code(0))];

        // Act
        let end = w.observe(&events).cloned();

        // Assert
        assert_eq!(end, None);
        assert_eq!(w.verdict(), Status::Absent);
    }

    #[test]
    fn test_watch_first_end_wins() {
        // Arrange
        let mut w = Watch::new(target(), 0);
        let events = [
            exited(1, "check", ExitStatus::Code(0)),
            ev(
                2,
                EventKind::WorkspaceStopped {
                    workspace: "ci".into(),
                },
            ),
        ];
        let later = [exited(3, "check", ExitStatus::Code(9))];

        // Act
        let first = w.observe(&events).cloned();
        let again = w.observe(&later).cloned();

        // Assert
        assert_eq!(first, Some(Status::Exited(ExitStatus::Code(0))));
        assert_eq!(again, None);
        assert_eq!(w.verdict(), Status::Exited(ExitStatus::Code(0)));
    }
}
