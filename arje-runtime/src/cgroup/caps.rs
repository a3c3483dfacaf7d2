//! What arje can enforce on this host, and why not where it cannot. Decided once, at
//! setup, from what the kernel shows: the spawner's clone3 probe, cgroup.controllers, the
//! result of each cgroup.subtree_control write, and which interface files exist.

use std::collections::BTreeMap;

use shuma_card::protocol::Capability;
use shuma_card::spec::Limits;

use super::limits::LimitKey;
use super::Controller;

/// A limit kind or mechanism `shuma caps` reports on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Feature {
    MemoryMax,
    MemoryHigh,
    MemorySwapMax,
    PidsMax,
    CpuMax,
    CpuWeight,
    IoWeight,
    /// Killing a whole cgroup in one write (Linux 5.14).
    CgroupKill,
    /// clone3 with CLONE_INTO_CGROUP (Linux 5.7): children born in their cgroup. It is
    /// the spawner's only way to place a child, so setup refuses a kernel without it and
    /// this is enforced exactly when cgroups are.
    CloneIntoCgroup,
    /// memory.events: OOM kills attributed to a workspace and command.
    OomEvents,
    /// pids.events: forks refused at pids.max.
    PidsEvents,
}

impl Feature {
    pub const ALL: [Feature; 11] = [
        Feature::MemoryMax,
        Feature::MemoryHigh,
        Feature::MemorySwapMax,
        Feature::PidsMax,
        Feature::CpuMax,
        Feature::CpuWeight,
        Feature::IoWeight,
        Feature::CgroupKill,
        Feature::CloneIntoCgroup,
        Feature::OomEvents,
        Feature::PidsEvents,
    ];

    /// The name `shuma caps` prints.
    pub fn name(self) -> &'static str {
        match self {
            Feature::MemoryMax => "memory.max",
            Feature::MemoryHigh => "memory.high",
            Feature::MemorySwapMax => "memory.swap.max",
            Feature::PidsMax => "pids.max",
            Feature::CpuMax => "cpu.max",
            Feature::CpuWeight => "cpu.weight",
            Feature::IoWeight => "io.weight",
            Feature::CgroupKill => "cgroup.kill",
            Feature::CloneIntoCgroup => "clone-into-cgroup",
            Feature::OomEvents => "oom events",
            Feature::PidsEvents => "pids events",
        }
    }

    pub(crate) fn controller(self) -> Option<Controller> {
        match self {
            Feature::MemoryMax
            | Feature::MemoryHigh
            | Feature::MemorySwapMax
            | Feature::OomEvents => Some(Controller::Memory),
            Feature::PidsMax | Feature::PidsEvents => Some(Controller::Pids),
            Feature::CpuMax | Feature::CpuWeight => Some(Controller::Cpu),
            Feature::IoWeight => Some(Controller::Io),
            Feature::CgroupKill | Feature::CloneIntoCgroup => None,
        }
    }

    /// The interface file whose presence proves support, and what its absence means.
    pub(crate) fn probe(self) -> Option<(&'static str, &'static str)> {
        Some(match self {
            Feature::MemoryMax => (super::MEMORY_MAX, "no memory.max"),
            Feature::MemoryHigh => (super::MEMORY_HIGH, "no memory.high"),
            Feature::MemorySwapMax => (
                super::MEMORY_SWAP_MAX,
                "swap accounting is off (CONFIG_MEMCG_SWAP, swapaccount=0)",
            ),
            Feature::PidsMax => (super::PIDS_MAX, "no pids.max"),
            Feature::CpuMax => (
                super::CPU_MAX,
                "no CFS bandwidth control (CONFIG_CFS_BANDWIDTH)",
            ),
            Feature::CpuWeight => (super::CPU_WEIGHT, "no cpu.weight"),
            Feature::IoWeight => (
                super::IO_WEIGHT,
                "no iocost controller (CONFIG_BLK_CGROUP_IOCOST)",
            ),
            Feature::CgroupKill => (
                super::CGROUP_KILL,
                "kernel older than 5.14; stop falls back to freezing and SIGKILLing each pid",
            ),
            Feature::OomEvents => (super::MEMORY_EVENTS, "no memory.events"),
            Feature::PidsEvents => (super::PIDS_EVENTS, "no pids.events (kernel older than 4.8)"),
            Feature::CloneIntoCgroup => return None,
        })
    }
}

/// `Ok(where it is enforced)` or `Err(why it is not)`.
pub type Support = Result<String, String>;

/// The support of every feature.
#[derive(Debug, Clone, Default)]
pub(crate) struct Caps {
    pub(crate) by_feature: BTreeMap<Feature, Support>,
}

impl Caps {
    /// Everything unsupported for one reason (no cgroup2 at all).
    pub(crate) fn none(reason: &str) -> Caps {
        let by_feature = Feature::ALL
            .iter()
            .map(|&f| (f, Err(reason.to_string())))
            .collect();
        Caps { by_feature }
    }

    pub(crate) fn get(&self, feature: Feature) -> Support {
        self.by_feature
            .get(&feature)
            .cloned()
            .unwrap_or_else(|| Err("not probed".to_string()))
    }

    pub(crate) fn capabilities(&self) -> Vec<Capability> {
        Feature::ALL
            .iter()
            .map(|&f| {
                let (enforced, detail) = match self.get(f) {
                    Ok(detail) => (true, detail),
                    Err(detail) => (false, detail),
                };
                Capability {
                    name: f.name().to_string(),
                    enforced,
                    detail,
                }
            })
            .collect()
    }

    /// One line per limit of `limits` that is set and cannot be enforced.
    pub(crate) fn unenforced(&self, limits: &Limits) -> Vec<String> {
        LimitKey::ALL
            .iter()
            .filter(|k| k.is_set(limits))
            .filter_map(|&k| match self.get(k.feature()) {
                Ok(_) => None,
                Err(why) => Some(format!(
                    "{}={}: not enforced: {why}",
                    k.file(),
                    k.value(limits)
                )),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_caps_none_every_feature_unenforced_with_reason() {
        // Arrange
        let caps = Caps::none("no cgroup2 mounted");

        // Act
        let list = caps.capabilities();

        // Assert
        assert_eq!(list.len(), Feature::ALL.len());
        assert!(list
            .iter()
            .all(|c| !c.enforced && c.detail == "no cgroup2 mounted"));
    }

    #[test]
    fn test_unenforced_names_only_set_limits() {
        // Arrange
        let caps = Caps::none("no cgroup2 mounted");
        let limits = Limits {
            memory_max: Some(1 << 20),
            pids_max: Some(8),
            ..Default::default()
        };

        // Act
        let lines = caps.unenforced(&limits);

        // Assert
        assert_eq!(
            lines,
            [
                "memory.max=1048576: not enforced: no cgroup2 mounted",
                "pids.max=8: not enforced: no cgroup2 mounted",
            ]
        );
    }
}
