//! The limits a card may set, the interface file each is written to, and the value the
//! kernel expects. Limits are written to the workspace cgroup (the parent of the command
//! leaves), so they bound the commands together.

use shuma_card::spec::Limits;

use super::caps::Feature;
use super::cpu::{cpu_max_value, cpu_weight_value};
use super::io::io_weight_value;
use super::memory::bytes_value;
use super::pids::pids_value;
use super::{CPU_MAX, CPU_WEIGHT, IO_WEIGHT, MEMORY_HIGH, MEMORY_MAX, MEMORY_SWAP_MAX, PIDS_MAX};

/// One limit of [`Limits`], named as in `shuma ws set KEY=VALUE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKey {
    MemoryMax,
    MemoryHigh,
    MemorySwapMax,
    PidsMax,
    CpuMax,
    CpuWeight,
    IoWeight,
}

impl LimitKey {
    /// In the order they are written when a workspace is created.
    pub const ALL: [LimitKey; 7] = [
        LimitKey::MemoryMax,
        LimitKey::MemoryHigh,
        LimitKey::MemorySwapMax,
        LimitKey::PidsMax,
        LimitKey::CpuMax,
        LimitKey::CpuWeight,
        LimitKey::IoWeight,
    ];

    /// Parse a protocol key ("memory_max").
    pub fn from_key(key: &str) -> Option<LimitKey> {
        LimitKey::ALL.into_iter().find(|k| k.key() == key)
    }

    /// The protocol key ("memory_max").
    pub fn key(self) -> &'static str {
        match self {
            LimitKey::MemoryMax => "memory_max",
            LimitKey::MemoryHigh => "memory_high",
            LimitKey::MemorySwapMax => "memory_swap_max",
            LimitKey::PidsMax => "pids_max",
            LimitKey::CpuMax => "cpu_max",
            LimitKey::CpuWeight => "cpu_weight",
            LimitKey::IoWeight => "io_weight",
        }
    }

    /// The interface file ("memory.max").
    pub fn file(self) -> &'static str {
        match self {
            LimitKey::MemoryMax => MEMORY_MAX,
            LimitKey::MemoryHigh => MEMORY_HIGH,
            LimitKey::MemorySwapMax => MEMORY_SWAP_MAX,
            LimitKey::PidsMax => PIDS_MAX,
            LimitKey::CpuMax => CPU_MAX,
            LimitKey::CpuWeight => CPU_WEIGHT,
            LimitKey::IoWeight => IO_WEIGHT,
        }
    }

    pub fn feature(self) -> Feature {
        match self {
            LimitKey::MemoryMax => Feature::MemoryMax,
            LimitKey::MemoryHigh => Feature::MemoryHigh,
            LimitKey::MemorySwapMax => Feature::MemorySwapMax,
            LimitKey::PidsMax => Feature::PidsMax,
            LimitKey::CpuMax => Feature::CpuMax,
            LimitKey::CpuWeight => Feature::CpuWeight,
            LimitKey::IoWeight => Feature::IoWeight,
        }
    }

    /// Does the card set this limit (as opposed to leaving the kernel's default)?
    pub fn is_set(self, limits: &Limits) -> bool {
        match self {
            LimitKey::MemoryMax => limits.memory_max.is_some(),
            LimitKey::MemoryHigh => limits.memory_high.is_some(),
            LimitKey::MemorySwapMax => limits.memory_swap_max.is_some(),
            LimitKey::PidsMax => limits.pids_max.is_some(),
            LimitKey::CpuMax => limits.cpu_max.is_some(),
            LimitKey::CpuWeight => limits.cpu_weight.is_some(),
            LimitKey::IoWeight => limits.io_weight.is_some(),
        }
    }

    /// What to write for this limit of `limits`; an unset limit writes the kernel's
    /// default ("max", weight 100), so `shuma ws set KEY=max` clears it.
    pub fn value(self, limits: &Limits) -> String {
        match self {
            LimitKey::MemoryMax => bytes_value(limits.memory_max),
            LimitKey::MemoryHigh => bytes_value(limits.memory_high),
            LimitKey::MemorySwapMax => bytes_value(limits.memory_swap_max),
            LimitKey::PidsMax => pids_value(limits.pids_max),
            LimitKey::CpuMax => cpu_max_value(limits.cpu_max),
            LimitKey::CpuWeight => cpu_weight_value(limits.cpu_weight),
            LimitKey::IoWeight => io_weight_value(limits.io_weight),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shuma_card::spec::CpuMax;

    #[test]
    fn test_limit_key_from_key_round_trips() {
        for key in LimitKey::ALL {
            assert_eq!(LimitKey::from_key(key.key()), Some(key));
        }
        assert_eq!(LimitKey::from_key("memory.max"), None);
    }

    #[test]
    fn test_limit_values_kernel_format() {
        // Arrange
        let limits = Limits {
            memory_max: Some(32 << 20),
            pids_max: Some(64),
            cpu_max: Some(CpuMax {
                quota_us: 50_000,
                period_us: 100_000,
            }),
            cpu_weight: Some(200),
            ..Default::default()
        };

        // Act
        let values: Vec<String> = LimitKey::ALL.iter().map(|k| k.value(&limits)).collect();

        // Assert
        assert_eq!(
            values,
            [
                "33554432",
                "max",
                "max",
                "64",
                "50000 100000",
                "200",
                "default 100"
            ]
        );
    }
}
