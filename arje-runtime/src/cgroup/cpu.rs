//! The cpu controller: cpu.max ("$QUOTA $PERIOD" or "max"), cpu.weight (1..=10000), and
//! cpu.stat, which every cgroup has even without the controller (usage_usec is core
//! accounting), so CPU use is reported on hosts where cpu.max cannot be enforced.

use shuma_card::protocol::StatsSample;
use shuma_card::spec::CpuMax;

use super::events::flat_keyed;

/// The kernel's default cpu.weight, written when a weight is cleared.
pub(crate) const DEFAULT_WEIGHT: u16 = 100;

/// cpu.max the kernel's way. Clearing writes "max" alone, which keeps the period.
pub(crate) fn cpu_max_value(limit: Option<CpuMax>) -> String {
    match limit {
        Some(c) => format!("{} {}", c.quota_us, c.period_us),
        None => "max".to_string(),
    }
}

pub(crate) fn cpu_weight_value(weight: Option<u16>) -> String {
    weight.unwrap_or(DEFAULT_WEIGHT).to_string()
}

/// `usage_usec` of cpu.stat, if present.
pub fn parse_cpu_usage_usec(cpu_stat: &str) -> Option<u64> {
    flat_keyed(cpu_stat)
        .find(|(k, _)| *k == "usage_usec")
        .map(|(_, v)| v)
}

/// CPU use between two samples, in hundredths of a percent of one CPU (a cgroup using two
/// CPUs fully reads 20000). `None` when either sample lacks a usage or the clock did not
/// advance.
pub fn cpu_percent_x100(prev: &StatsSample, cur: &StatsSample) -> Option<u32> {
    let used_us = cur.cpu_usage_us?.checked_sub(prev.cpu_usage_us?)?;
    let wall_ms = cur.unix_ms.checked_sub(prev.unix_ms).filter(|&ms| ms > 0)?;
    // used_us / (wall_ms * 1000) is the fraction of one CPU; x 100 x 100 for the unit.
    let x100 = used_us.saturating_mul(10) / wall_ms;
    Some(u32::try_from(x100).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(unix_ms: u64, cpu_usage_us: u64) -> StatsSample {
        StatsSample {
            unix_ms,
            cpu_usage_us: Some(cpu_usage_us),
            ..Default::default()
        }
    }

    #[test]
    fn test_parse_cpu_stat_usage_read() {
        // Arrange
        let text = "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\nnr_periods 0\n";

        // Act
        let usage = parse_cpu_usage_usec(text);

        // Assert
        assert_eq!(usage, Some(123_456));
    }

    #[test]
    fn test_cpu_percent_half_a_cpu_is_5000() {
        // Arrange: 500 ms of CPU over one second of wall time.
        let (prev, cur) = (sample(10_000, 1_000_000), sample(11_000, 1_500_000));

        // Act
        let pct = cpu_percent_x100(&prev, &cur);

        // Assert
        assert_eq!(pct, Some(5_000));
    }

    #[test]
    fn test_cpu_percent_same_instant_none() {
        assert_eq!(cpu_percent_x100(&sample(5, 0), &sample(5, 10)), None);
    }

    #[test]
    fn test_cpu_max_value_kernel_format() {
        // Arrange
        let half = CpuMax {
            quota_us: 50_000,
            period_us: 100_000,
        };

        // Act
        let (set, cleared) = (cpu_max_value(Some(half)), cpu_max_value(None));

        // Assert
        assert_eq!(set, "50000 100000");
        assert_eq!(cleared, "max");
    }
}
