//! The runtime's side of cgroups: choosing the tree at start, and turning the kernel's
//! event files into journal events.
//!
//! Watched files (EPOLLPRI: the kernel notifies a modified cgroup file that way):
//! - each workspace's `cgroup.events`, for `populated 0` once it is being stopped;
//! - each workspace's `memory.events`: hierarchical, so it counts OOM kills and
//!   memory.max / memory.high hits of every leaf below;
//! - each run's leaf `pids.events`: before Linux 6.13 a refused fork is counted in the
//!   forking task's cgroup, not where pids.max is set.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use shuma_card::protocol::Mode;
use shuma_card::EventKind;

use super::Runtime;
use crate::cgroup::{read_events, Cgroups, EventsFile, MemoryEvents, Setup};
use crate::timers::TimerAction;
use crate::token::Token;

/// Choose and set up the cgroup tree for the mode. Never fails: without a usable tree
/// every limit is reported as not enforced, with the reason.
pub fn setup(cfg: &crate::Config) -> Cgroups {
    let (root, mode) = match (&cfg.mode, &cfg.cgroup_root) {
        (_, Some(root)) => (root.clone(), if cfg.mode == Mode::Pid1 { Setup::Pid1 } else { Setup::Subreaper }),
        (Mode::Pid1, None) => (PathBuf::from("/sys/fs/cgroup"), Setup::Pid1),
        (Mode::Subreaper, None) => {
            return Cgroups::disabled(
                "no cgroup root given: start arje-init with --cgroup-root PATH on a delegated cgroup v2 directory".into(),
            )
        }
    };
    match Cgroups::setup(&root, std::process::id(), mode) {
        Ok(cg) => {
            log::info!(
                "cgroups: workspaces under {} with controllers {:?}",
                cg.subtree()
                    .map_or_else(|| root.display().to_string(), |p| p.display().to_string()),
                cg.enabled_controllers()
            );
            for cap in cg.capabilities().iter().filter(|c| !c.enforced) {
                log::warn!("cgroups: {} not enforced: {}", cap.name, cap.detail);
            }
            cg
        }
        Err(e) => {
            log::warn!("cgroups: {e}; no limit will be enforced");
            Cgroups::disabled(e.to_string())
        }
    }
}

/// One watched cgroup event file.
pub struct Watch {
    pub workspace: String,
    pub which: EventsFile,
    pub fd: OwnedFd,
    /// Counters last reported in the journal: memory.events, or pids.events `max` in
    /// `.max`.
    pub last: MemoryEvents,
    /// Counters as last read.
    pub current: MemoryEvents,
    /// When this watch last put an event in the journal.
    pub last_report: Option<Instant>,
    /// A flush timer is armed for the counts not yet reported.
    pub flush_armed: bool,
}

/// At most one journal event per watched file in this interval. A fork bomb held at
/// pids.max makes the kernel notify about every 10 ms; one event a second with the
/// running count says the same without pushing everything else out of the journal.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

impl Runtime {
    pub(crate) fn add_watch(
        &mut self,
        workspace: &str,
        which: EventsFile,
        fd: OwnedFd,
    ) -> Option<u64> {
        let id = self.next_watch;
        self.next_watch += 1;
        let text = read_events(fd.as_fd()).unwrap_or_default();
        let last = match which {
            EventsFile::Memory => MemoryEvents::parse(&text),
            EventsFile::Pids => MemoryEvents {
                max: crate::cgroup::parse_pids_events(&text),
                ..Default::default()
            },
            EventsFile::Cgroup => MemoryEvents::default(),
        };
        if self.register(fd.as_fd(), Token::Cgroup(id), true).is_ok() {
            self.watches.insert(
                id,
                Watch {
                    workspace: workspace.to_string(),
                    which,
                    fd,
                    last,
                    current: last,
                    last_report: None,
                    flush_armed: false,
                },
            );
            return Some(id);
        }
        None
    }

    pub(crate) fn drop_watch(&mut self, id: u64) {
        // Counts still waiting for their report go into the journal first.
        if self.watches.get(&id).is_some_and(|w| w.flush_armed) {
            self.report_watch(id, Instant::now());
        }
        if let Some(w) = self.watches.remove(&id) {
            self.unregister(w.fd.as_fd());
        }
    }

    /// Stop watching every file of a workspace (when it is removed).
    pub(crate) fn drop_watches(&mut self, workspace: &str) {
        let ids: Vec<u64> = self
            .watches
            .iter()
            .filter(|(_, w)| w.workspace == workspace)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.drop_watch(id);
        }
    }

    /// Register the workspace's cgroup event files with epoll.
    pub(crate) fn watch_workspace(&mut self, name: &str) {
        let Some(cg) = self.workspaces.get(name).and_then(|w| w.cgroup.as_ref()) else {
            return;
        };
        let files: Vec<(EventsFile, OwnedFd)> = [EventsFile::Cgroup, EventsFile::Memory]
            .into_iter()
            .filter_map(|which| cg.open_events_file(which).ok().map(|fd| (which, fd)))
            .collect();
        for (which, fd) in files {
            self.add_watch(name, which, fd);
        }
    }

    /// A watched file changed.
    pub(crate) fn on_cgroup_event(&mut self, id: u64) {
        let Some(w) = self.watches.get_mut(&id) else {
            return;
        };
        // Reading from offset 0 also re-arms the notification.
        let text = match read_events(w.fd.as_fd()) {
            Ok(t) => t,
            Err(_) => return, // The cgroup was removed under us; its watch goes soon.
        };
        match w.which {
            EventsFile::Cgroup => {
                let ws = w.workspace.clone();
                if crate::cgroup::parse_populated(&text) == Some(false) {
                    self.workspace_progress(&ws);
                }
                return;
            }
            EventsFile::Memory => w.current = MemoryEvents::parse(&text),
            EventsFile::Pids => w.current.max = crate::cgroup::parse_pids_events(&text),
        }
        let now = Instant::now();
        match w.last_report {
            Some(t) if now.saturating_duration_since(t) < REPORT_EVERY => {
                if !w.flush_armed {
                    w.flush_armed = true;
                    self.timers
                        .add(t + REPORT_EVERY, TimerAction::CgroupReport(id));
                }
            }
            _ => self.report_watch(id, now),
        }
    }

    /// Put what a watched file counted since the last report into the journal.
    pub(crate) fn report_watch(&mut self, id: u64, now: Instant) {
        let Some(w) = self.watches.get_mut(&id) else {
            return;
        };
        w.flush_armed = false;
        let (cur, delta) = (w.current, w.current.since(&w.last));
        w.last = cur;
        let ws = w.workspace.clone();
        let which = w.which;
        let mut reported = false;
        if which == EventsFile::Pids {
            if delta.max > 0 {
                self.event(EventKind::PidsMax {
                    workspace: ws,
                    count: cur.max,
                });
                reported = true;
            }
        } else {
            if delta.oom_kill > 0 {
                let command = self.oom_victims(&ws);
                self.event(EventKind::OomKill {
                    workspace: ws.clone(),
                    command,
                    count: cur.oom_kill,
                });
                reported = true;
            }
            if delta.max > 0 {
                self.event(EventKind::MemoryLimit {
                    workspace: ws.clone(),
                    which: "memory.max".into(),
                    count: cur.max,
                });
                reported = true;
            }
            if delta.high > 0 {
                self.event(EventKind::MemoryLimit {
                    workspace: ws,
                    which: "memory.high".into(),
                    count: cur.high,
                });
                reported = true;
            }
        }
        if reported {
            if let Some(w) = self.watches.get_mut(&id) {
                w.last_report = Some(now);
            }
        }
    }

    /// Which running commands of the workspace had a task OOM-killed since last asked:
    /// their leaves' memory.events say so. Names joined with commas.
    fn oom_victims(&mut self, ws: &str) -> Option<String> {
        let ids: Vec<u64> = self.workspaces.get(ws)?.commands.iter().copied().collect();
        let mut names = Vec::new();
        for id in ids {
            let Some(cmd) = self.commands.get_mut(&id) else {
                continue;
            };
            let Some(run) = cmd.run.as_mut() else {
                continue;
            };
            let Some(leaf) = run.leaf.as_ref() else {
                continue;
            };
            let kills = leaf.memory_events().map_or(0, |m| m.oom_kill);
            if kills > run.oom_kills_seen {
                run.oom_kills_seen = kills;
                names.push(cmd.spec.name.clone());
            }
        }
        (!names.is_empty()).then(|| names.join(","))
    }
}
