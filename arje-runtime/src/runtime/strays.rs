//! What a crash leaves in the cgroup tree that the snapshot does not hold, found by the
//! tree at start rather than by luck.
//!
//! The /run snapshot holds everything a client was told (docs/STATE.md, "What an answer
//! promises"), but arje may have done more before it died: restarted a service, started
//! a `run` or created a workspace whose answer never went out. Those processes live on in
//! `<root>/arje/<workspace>/<id>-<command>/`. At every start with cgroups except a
//! re-exec (whose snapshot is written last thing before the exec), after the snapshot is
//! restored and before any command is started:
//!
//! - a workspace directory the snapshot lacks is killed (`cgroup.kill`) and removed
//!   once empty, with a Warning naming it;
//! - a leaf of a command created after the snapshot was written (its id is at or above
//!   the snapshot's next command id: a `run`, whose `Started` does not wait for the
//!   snapshot) whose processes include exactly one session leader has it adopted as
//!   that ad-hoc command, so a `run` answered just before a crash is found again;
//! - any other leaf naming no command of its workspace is killed, with a Warning; an
//!   empty one is removed; command ids are never handed out at or below a leaf's;
//! - a leaf of a command about to be started whose processes include exactly one session
//!   leader (the spawner's child calls setsid, its descendants normally do not) has that
//!   process adopted as the command's run, instead of starting a second copy; with none
//!   or several the leaf is killed, with a Warning, and the command starts afresh;
//! - a leaf of a command that has finished but still has processes is killed;
//! - a leaf whose command's recorded process was adopted is left alone: what else lives
//!   there descends from that run.

use std::collections::BTreeSet;
use std::time::Instant;

use shuma_card::protocol::WsState;
use shuma_card::snapshot::LiveProcess;
use shuma_card::{CommandKind, CommandSpec, EventKind, WorkspaceSpec};

use super::commands::Command;
use super::sessions::{self, ProcStat};
use super::workspaces::{unix_ms, Workspace};
use super::Runtime;
use crate::cgroup::Leaf;
use crate::ids::{CommandId, WorkspaceId};

/// A restored workspace, before its commands are started (or it is stopped).
pub(crate) struct Pending {
    pub id: WorkspaceId,
    pub stopping: bool,
    pub to_start: Vec<CommandId>,
    /// Its pipelines that start a run once the sweep is done.
    pub pipelines: Vec<crate::ids::PipelineId>,
}

/// What the restored state says about the command a leaf names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Known {
    /// Its recorded process was adopted: the leaf's processes belong to that run.
    Running,
    /// It is about to be started (a service, a task not done).
    ToStart,
    /// It has finished or failed: nothing of it should run.
    Finished,
    /// Not in the snapshot, but created after it was written (a `run`).
    Unrecorded,
}

/// What one leaf holds.
#[derive(Debug, Clone)]
pub(crate) struct SeenLeaf {
    /// Any process in the leaf or below it.
    pub populated: bool,
    /// The processes of the leaf itself, as /proc shows them.
    pub procs: Vec<ProcStat>,
}

/// What to do with one leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Keep,
    /// Adopt this process as the command's run.
    Adopt(ProcStat),
    /// `cgroup.kill` the leaf, for this reason (the Warning's text).
    Kill(String),
    /// rmdir it: empty, and no command's.
    Remove,
}

/// A leaf's name, `<id>-<command>` (`commands::leaf_name`), split.
pub(crate) fn parse_leaf(name: &str) -> Option<(u64, &str)> {
    let (id, command) = name.split_once('-')?;
    Some((id.parse().ok()?, command))
}

/// The rule of the module doc for one leaf, given what the restored state knows of its
/// command (`None`: no command of this workspace has that id and name).
pub(crate) fn judge(seen: &SeenLeaf, known: Option<Known>) -> Verdict {
    match known {
        None if seen.populated => {
            Verdict::Kill("it is not in the snapshot (a start never acknowledged)".into())
        }
        None => Verdict::Remove,
        Some(Known::Running) => Verdict::Keep,
        Some(Known::Finished) if seen.populated => {
            Verdict::Kill("its command has finished, yet processes remain in it".into())
        }
        Some(Known::Finished) => Verdict::Keep,
        Some(Known::ToStart | Known::Unrecorded) => {
            let leaders: Vec<&ProcStat> = seen
                .procs
                .iter()
                .filter(|p| p.leads_session() && !p.is_zombie())
                .collect();
            match leaders.as_slice() {
                [main] => Verdict::Adopt(**main),
                [] if !seen.populated && known == Some(Known::Unrecorded) => Verdict::Remove,
                [] if !seen.populated => Verdict::Keep,
                others => Verdict::Kill(format!(
                    "its command was not running in the snapshot, and its {} process(es) \
                     include {} session leader(s), not one main process to adopt{}",
                    seen.procs.len(),
                    others.len(),
                    if known == Some(Known::ToStart) {
                        "; the command starts afresh"
                    } else {
                        ""
                    }
                )),
            }
        }
    }
}

impl Runtime {
    /// Sweep `<root>/arje` for what the restored state lacks (see the module doc).
    /// `pending` are the restored workspaces; an adopted command leaves its `to_start`.
    /// `recorded` is the snapshot's next command id (0 without a snapshot).
    pub(crate) fn sweep_strays(&mut self, pending: &mut [Pending], recorded: u64, now: Instant) {
        let names = match self.cgroups.tree.workspace_names() {
            Ok(names) => names,
            Err(e) => {
                log::warn!("crash sweep: {e}");
                return;
            }
        };
        for name in names {
            match self.table.id_of(&name) {
                Some(id) => {
                    let to_start = pending
                        .iter_mut()
                        .find(|p| p.id == id)
                        .map(|p| &mut p.to_start);
                    let mut none = Vec::new();
                    self.sweep_workspace(id, to_start.unwrap_or(&mut none), recorded, now);
                }
                None => self.stop_unknown_workspace(&name),
            }
        }
    }

    fn sweep_workspace(
        &mut self,
        ws: WorkspaceId,
        to_start: &mut Vec<CommandId>,
        recorded: u64,
        now: Instant,
    ) {
        let Some(w) = self.table.workspaces.get(&ws) else {
            return;
        };
        let Some(cg) = &w.cgroup else { return };
        let name = w.spec.name.clone();
        let leaves = match cg.leaves() {
            Ok(leaves) => leaves,
            Err(e) => {
                log::warn!("crash sweep of workspace {name}: {e}");
                return;
            }
        };
        let starting: BTreeSet<CommandId> = to_start.iter().copied().collect();
        let mut verdicts: Vec<(String, Leaf, Option<CommandId>, Verdict)> = Vec::new();
        for leaf_name in leaves {
            let leaf = match cg.open_leaf(&leaf_name) {
                Ok(leaf) => leaf,
                Err(e) => {
                    log::warn!("crash sweep of workspace {name}: {e}");
                    continue;
                }
            };
            let seen = SeenLeaf {
                // Unreadable counts as populated: a kill of an empty leaf costs nothing.
                populated: leaf.populated().unwrap_or(true),
                procs: leaf
                    .procs()
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(sessions::stat)
                    .collect(),
            };
            let parsed = parse_leaf(&leaf_name);
            let command = parsed.and_then(|(id, command)| {
                let id = CommandId::from(id);
                let c = self.table.commands.get(&id)?;
                (c.ws == ws && c.spec.name == command).then_some(id)
            });
            let known = match (command, parsed) {
                (Some(id), _) => Some(match &self.table.commands[&id].run {
                    Some(_) => Known::Running,
                    None if starting.contains(&id) => Known::ToStart,
                    None => Known::Finished,
                }),
                // No command had this id when the snapshot was written, and none has it
                // now (ids are never reused): one created after the write.
                (None, Some((id, _)))
                    if id >= recorded && !self.table.commands.contains_key(&id.into()) =>
                {
                    Some(Known::Unrecorded)
                }
                (None, _) => None,
            };
            verdicts.push((leaf_name, leaf, command, judge(&seen, known)));
        }
        for (leaf_name, _, _, _) in &verdicts {
            if let Some((id, _)) = parse_leaf(leaf_name) {
                self.table.command_ids.skip_past(id);
            }
        }
        for (leaf_name, leaf, command, verdict) in verdicts {
            match (verdict, command) {
                (Verdict::Keep, _) => {}
                (Verdict::Adopt(p), Some(id)) => {
                    if self.adopt_stray(id, leaf, p, now) {
                        to_start.retain(|c| *c != id);
                    }
                }
                (Verdict::Adopt(p), None) => {
                    if let Some((id, command)) = parse_leaf(&leaf_name) {
                        self.adopt_unrecorded(ws, CommandId::from(id), command, leaf, p, now);
                    }
                }
                (Verdict::Kill(why), command) => {
                    if let Err(e) = leaf.kill() {
                        log::warn!("{e}");
                    }
                    // A leaf of a command stays for its next run, as every leaf does;
                    // one that names no command would stay empty until its workspace
                    // goes, so it goes once the kill has emptied it.
                    let then = if command.is_none() {
                        "; the cgroup is removed once empty"
                    } else {
                        ""
                    };
                    self.event(EventKind::Warning {
                        message: format!(
                            "workspace {name}: killed what ran in cgroup {leaf_name}: {why}{then}"
                        ),
                    });
                    if command.is_none() {
                        self.remove_when_empty(ws, &leaf_name, &leaf);
                    }
                }
                (Verdict::Remove, _) => {
                    let removed = self.table.workspaces[&ws]
                        .cgroup
                        .as_ref()
                        .map(|cg| cg.remove_leaf(&leaf_name));
                    if let Some(Err(e)) = removed {
                        log::warn!("{e}");
                    }
                }
            }
        }
    }

    /// Watch the `cgroup.events` of a leaf the sweep killed and rmdir it once empty
    /// ([`Runtime::remove_swept_leaf`]): `cgroup.kill` only sends SIGKILL, and the
    /// processes leave the leaf when they have exited, later. Checked once more after
    /// the watch exists, since an emptying before it would never be announced. Without
    /// a watch, one rmdir is tried now; a leaf still busy then is removed by the next
    /// sweep or with its workspace.
    fn remove_when_empty(&mut self, ws: WorkspaceId, leaf_name: &str, leaf: &Leaf) {
        let watch = leaf
            .open_events_file(crate::cgroup::EventsFile::Cgroup)
            .ok()
            .and_then(|fd| self.cgroups.add_leaf(&self.reactor, ws, leaf_name, fd));
        match watch {
            Some(id) if matches!(leaf.populated(), Ok(false)) => self.remove_swept_leaf(id),
            Some(_) => {}
            None => {
                self.rmdir_swept_leaf(ws, leaf_name);
            }
        }
    }

    /// The leaf a [`Runtime::remove_when_empty`] watch names has emptied: rmdir it, with
    /// a Warning that closes the one of its kill.
    pub(crate) fn remove_swept_leaf(&mut self, watch: crate::ids::WatchId) {
        let Some((ws, leaf)) = self
            .cgroups
            .leaf_of(watch)
            .map(|(ws, leaf)| (ws, leaf.to_string()))
        else {
            return;
        };
        self.cgroups.remove(&self.reactor, watch);
        self.rmdir_swept_leaf(ws, &leaf);
    }

    fn rmdir_swept_leaf(&mut self, ws: WorkspaceId, leaf: &str) {
        let Some(w) = self.table.workspaces.get(&ws) else {
            return;
        };
        let Some(cg) = &w.cgroup else { return };
        let name = w.spec.name.clone();
        match cg.remove_leaf(leaf) {
            Ok(()) => self.event(EventKind::Warning {
                message: format!(
                    "workspace {name}: removed cgroup {leaf}, emptied by the crash sweep"
                ),
            }),
            Err(e) => log::warn!("crash sweep: {e}"),
        }
    }

    /// Take `p`, found in `leaf`, as the run of command `id`.
    fn adopt_stray(&mut self, id: CommandId, leaf: Leaf, p: ProcStat, now: Instant) -> bool {
        let Some(mut cmd) = self.table.commands.remove(&id) else {
            return false;
        };
        let now_unix = unix_ms();
        let hz = crate::persist::clock_ticks_per_second();
        let age_ms = crate::persist::boottime_ticks().saturating_sub(p.start_ticks) * 1000 / hz;
        let live = LiveProcess {
            pid: p.pid,
            start_time_ticks: p.start_ticks,
            started_unix_ms: now_unix.saturating_sub(age_ms),
            stdout_fd: None,
            stderr_fd: None,
        };
        let ws = cmd.ws;
        let adopted = self.adopt_process(&mut cmd, ws, Some(leaf), live, now, now_unix);
        if adopted {
            let message = format!(
                "workspace {}: {} (pid {}) was running but not in the snapshot; adopted \
                 (its output before the crash is lost)",
                cmd.workspace, cmd.spec.name, p.pid
            );
            log::warn!("{message}");
            self.table.commands.insert(id, cmd);
            self.event(EventKind::Warning { message });
        } else {
            self.table.commands.insert(id, cmd);
        }
        adopted
    }

    /// A `run` started after the snapshot was written: it joins its workspace as the
    /// ad-hoc command its leaf names (its argv was never stored, as for every `run`
    /// restored from a snapshot), with `p` as its run.
    fn adopt_unrecorded(
        &mut self,
        ws: WorkspaceId,
        id: CommandId,
        name: &str,
        leaf: Leaf,
        p: ProcStat,
        now: Instant,
    ) {
        let Some(w) = self.table.workspaces.get_mut(&ws) else {
            return;
        };
        let spec = CommandSpec::new(name, CommandKind::Task, Vec::new());
        let mut cmd = Command::new(id, ws, &w.spec.name, spec);
        cmd.adhoc = true;
        w.commands.insert(id);
        self.table.commands.insert(id, cmd);
        if !self.adopt_stray(id, leaf, p, now) {
            // It exited meanwhile: remembered as finished, like any restored `run`.
            if let Some(cmd) = self.table.commands.get_mut(&id) {
                cmd.sup.state = crate::supervise::State::Exited;
            }
        }
    }

    /// A workspace cgroup the snapshot does not have (a creation never acknowledged, or
    /// a state directory that lost its snapshot): it joins the table as a stopping
    /// workspace, so the usual stop kills what runs there (`cgroup.kill`), waits for
    /// `populated 0` and removes the directory.
    fn stop_unknown_workspace(&mut self, name: &str) {
        let cgroup = match self.cgroups.tree.open_workspace(name) {
            Ok(cg) => cg,
            Err(e) => {
                let message = format!(
                    "cgroup {name} in arje's subtree is not in the snapshot and cannot be \
                     opened as a workspace: {e}; left alone"
                );
                log::warn!("{message}");
                self.event(EventKind::Warning { message });
                return;
            }
        };
        let spec = WorkspaceSpec {
            name: name.to_string(),
            ..Default::default()
        };
        let id = self.table.workspace_ids.next();
        let mut ws = Workspace::new(id, spec, unix_ms(), Some(cgroup), Vec::new());
        ws.state = WsState::Stopping;
        self.insert_workspace(ws);
        let message = format!(
            "workspace {name}: its cgroup was not in the snapshot (created before a crash \
             and never acknowledged); killing what runs there and removing it"
        );
        log::warn!("{message}");
        self.event(EventKind::Warning { message });
        self.stop_workspace(id, None, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: i32, sid: i32) -> ProcStat {
        ProcStat {
            pid,
            state: 'S',
            ppid: 1,
            pgid: sid,
            sid,
            start_ticks: 100,
        }
    }

    fn seen(procs: Vec<ProcStat>) -> SeenLeaf {
        SeenLeaf {
            populated: !procs.is_empty(),
            procs,
        }
    }

    #[test]
    fn test_judge_command_to_start_with_one_session_leader_adopts_it() {
        let leaf = seen(vec![proc(10, 10), proc(11, 10), proc(12, 10)]);

        assert_eq!(
            judge(&leaf, Some(Known::ToStart)),
            Verdict::Adopt(proc(10, 10))
        );
    }

    #[test]
    fn test_judge_command_to_start_with_two_session_leaders_kills_the_leaf() {
        // A descendant that called setsid again: which one is the main process is not
        // known, so neither is adopted.
        let leaf = seen(vec![proc(10, 10), proc(11, 11)]);

        assert!(matches!(
            judge(&leaf, Some(Known::ToStart)),
            Verdict::Kill(_)
        ));
        assert!(matches!(
            judge(&seen(vec![proc(11, 10)]), Some(Known::ToStart)),
            Verdict::Kill(_)
        ));
    }

    #[test]
    fn test_judge_run_after_the_snapshot_adopted_by_its_session_leader() {
        let run = seen(vec![proc(10, 10), proc(11, 10)]);
        let strays = seen(vec![proc(11, 10)]);

        assert_eq!(
            judge(&run, Some(Known::Unrecorded)),
            Verdict::Adopt(proc(10, 10))
        );
        assert!(matches!(
            judge(&strays, Some(Known::Unrecorded)),
            Verdict::Kill(_)
        ));
        assert_eq!(
            judge(&seen(vec![]), Some(Known::Unrecorded)),
            Verdict::Remove
        );
    }

    #[test]
    fn test_judge_unknown_leaf_killed_when_populated_else_removed() {
        assert!(matches!(
            judge(&seen(vec![proc(10, 10)]), None),
            Verdict::Kill(_)
        ));
        assert_eq!(judge(&seen(vec![]), None), Verdict::Remove);
    }

    #[test]
    fn test_judge_adopted_or_finished_command() {
        let busy = seen(vec![proc(10, 10)]);

        assert_eq!(judge(&busy, Some(Known::Running)), Verdict::Keep);
        assert!(matches!(
            judge(&busy, Some(Known::Finished)),
            Verdict::Kill(_)
        ));
        assert_eq!(judge(&seen(vec![]), Some(Known::Finished)), Verdict::Keep);
    }

    #[test]
    fn test_parse_leaf_splits_id_and_command() {
        assert_eq!(parse_leaf("12-run-12"), Some((12, "run-12")));
        assert_eq!(parse_leaf("web"), None);
        assert_eq!(parse_leaf("x-web"), None);
    }
}
