//! The cgroup tree and the watches on its event files. Owns the watched fds (registered
//! under `Token::Cgroup` with EPOLLPRI, how the kernel notifies a modified cgroup file)
//! and the rule that coalesces their reports.
//!
//! Watched files:
//! - each workspace's `cgroup.events`, for `populated 0` once it is being stopped;
//! - each workspace's `memory.events`: hierarchical, so it counts OOM kills and
//!   memory.max / memory.high hits of every leaf below;
//! - each run's leaf `pids.events`: before Linux 6.13 a refused fork is counted in the
//!   forking task's cgroup, not where pids.max is set.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use shuma_card::protocol::Mode;

use super::reactor::{Interest, Reactor};
use crate::cgroup::{read_events, Cgroups, EventsFile, MemoryEvents, Setup};
use crate::ids::{IdGen, WatchId, WorkspaceId};
use crate::timers::{TimerAction, Timers};
use crate::token::Token;

/// At most one journal event per watched file in this interval. A fork bomb held at
/// pids.max makes the kernel notify about every 10 ms; one event a second with the
/// running count says the same without pushing everything else out of the journal.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Choose and set up the cgroup tree for the mode. Never fails: without a usable tree
/// every limit is reported as not enforced, with the reason.
pub fn setup(cfg: &crate::Config) -> Cgroups {
    let (root, mode) = match (&cfg.mode, &cfg.cgroup_root) {
        (_, Some(root)) => (
            root.clone(),
            if cfg.mode == Mode::Pid1 {
                Setup::Pid1
            } else {
                Setup::Subreaper
            },
        ),
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
struct Watch {
    workspace: WorkspaceId,
    which: EventsFile,
    fd: OwnedFd,
    /// Counters last reported in the journal: memory.events, or pids.events `max` in
    /// `.max`.
    last: MemoryEvents,
    /// Counters as last read.
    current: MemoryEvents,
    /// When this watch last put an event in the journal.
    last_report: Option<Instant>,
    /// For a `cgroup.events` watch: the leaf of the workspace it watches (a leaf the
    /// crash sweep killed, removed once empty), rather than the workspace itself.
    leaf: Option<String>,
}

/// What a watched file has to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum News {
    Nothing,
    /// `cgroup.events` says the workspace's cgroup is empty.
    Emptied(WorkspaceId),
    /// `cgroup.events` says the leaf this watch names ([`Watches::leaf_of`]) is empty.
    LeafEmptied(WatchId),
    /// Counts to put in the journal now.
    Report(Report),
}

/// What a file counted since its last report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub workspace: WorkspaceId,
    pub which: EventsFile,
    pub current: MemoryEvents,
    pub delta: MemoryEvents,
}

pub struct Watches {
    pub tree: Cgroups,
    watches: HashMap<WatchId, Watch>,
    ids: IdGen<WatchId>,
}

impl Watches {
    pub fn new(tree: Cgroups) -> Watches {
        Watches {
            tree,
            watches: HashMap::new(),
            ids: IdGen::default(),
        }
    }

    pub fn add(
        &mut self,
        reactor: &Reactor,
        workspace: WorkspaceId,
        which: EventsFile,
        fd: OwnedFd,
    ) -> Option<WatchId> {
        let text = read_events(fd.as_fd()).unwrap_or_default();
        let last = match which {
            EventsFile::Memory => MemoryEvents::parse(&text),
            EventsFile::Pids => MemoryEvents {
                max: crate::cgroup::parse_pids_events(&text),
                ..Default::default()
            },
            EventsFile::Cgroup => MemoryEvents::default(),
        };
        let id = self.ids.next();
        reactor
            .add(fd.as_fd(), Token::Cgroup(id), Interest::Priority)
            .ok()?;
        self.watches.insert(
            id,
            Watch {
                workspace,
                which,
                fd,
                last,
                current: last,
                last_report: None,
                leaf: None,
            },
        );
        Some(id)
    }

    /// Watch the `cgroup.events` (`fd`) of the leaf `leaf` of `workspace`: its emptying
    /// comes back as [`News::LeafEmptied`].
    pub fn add_leaf(
        &mut self,
        reactor: &Reactor,
        workspace: WorkspaceId,
        leaf: &str,
        fd: OwnedFd,
    ) -> Option<WatchId> {
        let id = self.add(reactor, workspace, EventsFile::Cgroup, fd)?;
        if let Some(w) = self.watches.get_mut(&id) {
            w.leaf = Some(leaf.to_string());
        }
        Some(id)
    }

    /// The workspace and leaf a [`Watches::add_leaf`] watch names.
    pub fn leaf_of(&self, id: WatchId) -> Option<(WorkspaceId, &str)> {
        let w = self.watches.get(&id)?;
        Some((w.workspace, w.leaf.as_deref()?))
    }

    /// Stop watching; counts still waiting for their report come back to be journalled.
    pub fn remove(&mut self, reactor: &Reactor, id: WatchId) -> Option<Report> {
        let report = self.report(id, Instant::now());
        let w = self.watches.remove(&id)?;
        reactor.remove(w.fd.as_fd());
        report
    }

    /// Stop watching every file of a workspace (when it is removed).
    pub fn remove_workspace(&mut self, reactor: &Reactor, ws: WorkspaceId) -> Vec<Report> {
        let ids: Vec<WatchId> = self
            .watches
            .iter()
            .filter(|(_, w)| w.workspace == ws)
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter()
            .filter_map(|id| self.remove(reactor, id))
            .collect()
    }

    /// A watched file changed. A report within [`REPORT_EVERY`] of the last one is put
    /// off to a timer (one per watch), which then reports the sum.
    pub fn on_event(&mut self, id: WatchId, now: Instant, timers: &mut Timers) -> News {
        let Some(w) = self.watches.get_mut(&id) else {
            return News::Nothing;
        };
        // Reading from offset 0 also re-arms the notification.
        let Ok(text) = read_events(w.fd.as_fd()) else {
            return News::Nothing; // The cgroup was removed under us; its watch goes soon.
        };
        match w.which {
            EventsFile::Cgroup => {
                return match crate::cgroup::parse_populated(&text) {
                    Some(false) if w.leaf.is_some() => News::LeafEmptied(id),
                    Some(false) => News::Emptied(w.workspace),
                    _ => News::Nothing,
                };
            }
            EventsFile::Memory => w.current = MemoryEvents::parse(&text),
            EventsFile::Pids => w.current.max = crate::cgroup::parse_pids_events(&text),
        }
        match w.last_report {
            Some(t) if now.saturating_duration_since(t) < REPORT_EVERY => {
                timers.add_once(t + REPORT_EVERY, TimerAction::CgroupReport(id));
                News::Nothing
            }
            _ => self.report(id, now).map_or(News::Nothing, News::Report),
        }
    }

    /// What a watched file counted since its last report, if anything worth one.
    pub fn report(&mut self, id: WatchId, now: Instant) -> Option<Report> {
        let w = self.watches.get_mut(&id)?;
        let delta = w.current.since(&w.last);
        w.last = w.current;
        let worth = match w.which {
            EventsFile::Pids => delta.max > 0,
            EventsFile::Memory => delta.oom_kill > 0 || delta.max > 0 || delta.high > 0,
            EventsFile::Cgroup => false,
        };
        if !worth {
            return None;
        }
        w.last_report = Some(now);
        Some(Report {
            workspace: w.workspace,
            which: w.which,
            current: w.current,
            delta,
        })
    }
}
