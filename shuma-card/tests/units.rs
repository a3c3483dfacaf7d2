//! Human units: sizes, durations, signals, cpu.max and `ws set` limits.

use proptest::prelude::*;
use shuma_card::spec::{CpuMax, Limits};
use shuma_card::units::*;

#[test]
fn test_parse_size_units_are_powers_of_1024() {
    let cases = [
        ("1048576", 1 << 20),
        ("0", 0),
        ("512K", 512 << 10),
        ("4k", 4 << 10),
        ("64M", 64 << 20),
        ("64MiB", 64 << 20),
        ("64Mi", 64 << 20),
        ("1G", 1 << 30),
        ("1GiB", 1 << 30),
        ("1.5G", 3 << 29),
        ("2T", 2 << 40),
        (" 8M ", 8 << 20),
        ("100B", 100),
    ];

    let parsed: Vec<u64> = cases.iter().map(|(s, _)| parse_size(s).unwrap()).collect();

    let expected: Vec<u64> = cases.iter().map(|&(_, n)| n).collect();
    assert_eq!(parsed, expected);
}

#[test]
fn test_parse_size_bad_input_names_input_and_reason() {
    let unknown = parse_size("64X").unwrap_err();
    let ambiguous = parse_size("64MB").unwrap_err();
    let max = parse_size("max").unwrap_err();
    let fraction = parse_size("1.5").unwrap_err();

    assert_eq!(
        unknown.to_string(),
        "invalid size \"64X\": unknown unit: use K, M, G or T (powers of 1024), or none for bytes"
    );
    assert!(ambiguous.reason.starts_with("ambiguous unit"));
    assert_eq!(max.input, "max");
    assert_eq!(fraction.reason, "a number of bytes must be whole");
    assert!(parse_size("").is_err());
    assert!(parse_size("-1").is_err());
    assert!(parse_size("1..5M").is_err());
}

#[test]
fn test_parse_size_overflow_is_an_error() {
    let too_big = parse_size("16777216T").unwrap_err();

    assert_eq!(too_big.reason, "too large: does not fit in 64 bits");
    assert_eq!(parse_size("18446744073709551615").unwrap(), u64::MAX);
    assert!(parse_size("18446744073709551616").is_err());
}

#[test]
fn test_parse_duration_ms_units_and_sums() {
    let cases = [
        ("0", 0),
        ("100ms", 100),
        ("1s", 1_000),
        ("1.5s", 1_500),
        ("2m", 120_000),
        ("1h", 3_600_000),
        ("1d", 86_400_000),
        ("1m30s", 90_000),
        ("1h0m0.25s", 3_600_250),
    ];

    let parsed: Vec<u64> = cases
        .iter()
        .map(|(s, _)| parse_duration_ms(s).unwrap())
        .collect();

    let expected: Vec<u64> = cases.iter().map(|&(_, n)| n).collect();
    assert_eq!(parsed, expected);
}

#[test]
fn test_parse_duration_ms_bad_input_is_refused() {
    let bare = parse_duration_ms("5").unwrap_err();
    let fine = parse_duration_ms("0.5ms").unwrap_err();
    let long = parse_duration_ms("366d").unwrap_err();
    let huge = parse_duration_ms("99999999999999999999h").unwrap_err();

    assert!(bare.reason.starts_with("missing unit"));
    assert_eq!(fine.reason, "finer than a millisecond");
    assert_eq!(long.reason, "longer than the 365-day cap");
    assert!(huge.to_string().starts_with("invalid duration"));
    assert!(parse_duration_ms("").is_err());
    assert!(parse_duration_ms("5x").is_err());
    assert!(parse_duration_ms("s").is_err());
}

#[test]
fn test_parse_signal_names_and_numbers() {
    let names = [
        "TERM", "SIGTERM", "term", "KILL", "INT", "HUP", "QUIT", "USR1", "USR2", "15", "64",
    ];

    let nums: Vec<i32> = names.iter().map(|s| parse_signal(s).unwrap()).collect();

    assert_eq!(nums, [15, 15, 15, 9, 2, 1, 3, 10, 12, 15, 64]);
    assert!(parse_signal("0").is_err());
    assert!(parse_signal("65").is_err());
    assert!(parse_signal("NOPE")
        .unwrap_err()
        .to_string()
        .contains("unknown signal name"));
    assert_eq!(format_signal(15), "SIGTERM");
    assert_eq!(format_signal(40), "40");
}

#[test]
fn test_parse_cpu_max_forms() {
    let half = parse_cpu_max("50%").unwrap();
    let two = parse_cpu_max("200%").unwrap();
    let raw = parse_cpu_max("50000 100000").unwrap();
    let unlimited = parse_cpu_max("max 100000").unwrap();
    let lone_max = parse_cpu_max("max").unwrap();

    assert_eq!(
        half,
        CpuMax {
            quota_us: 50_000,
            period_us: 100_000
        }
    );
    assert_eq!(
        two,
        CpuMax {
            quota_us: 200_000,
            period_us: 100_000
        }
    );
    assert_eq!(raw, half);
    assert_eq!(
        unlimited,
        CpuMax {
            quota_us: CPU_QUOTA_MAX,
            period_us: 100_000
        }
    );
    assert_eq!(lone_max, unlimited);
    assert_eq!(format_cpu_max(unlimited), "max 100000");
    assert_eq!(format_cpu_max(half), "50000 100000");
}

#[test]
fn test_parse_cpu_max_kernel_bounds_are_enforced() {
    let short_period = parse_cpu_max("50000 999").unwrap_err();
    let tiny_quota = parse_cpu_max("999 100000").unwrap_err();

    assert!(short_period.reason.contains("period 999"));
    assert!(tiny_quota.reason.contains("quota 999"));
    assert!(parse_cpu_max("0.5%").is_err());
    assert!(parse_cpu_max("1 2 3").is_err());
    assert!(parse_cpu_max("").is_err());
}

#[test]
fn test_format_size_and_duration_pick_exact_units() {
    assert_eq!(format_size(64 << 20), "64M");
    assert_eq!(format_size(1536), "1536");
    assert_eq!(format_size(0), "0");
    assert_eq!(format_size(3 << 40), "3T");
    assert_eq!(format_duration_ms(0), "0");
    assert_eq!(format_duration_ms(1_500), "1500ms");
    assert_eq!(format_duration_ms(90_000), "1m30s");
    assert_eq!(format_duration_ms(90_000_000), "1d1h");
}

proptest! {
    #[test]
    fn test_format_size_round_trips(n in any::<u64>()) {
        prop_assert_eq!(parse_size(&format_size(n)).unwrap(), n);
    }

    #[test]
    fn test_format_duration_round_trips(ms in 0..=MAX_DURATION_MS) {
        prop_assert_eq!(parse_duration_ms(&format_duration_ms(ms)).unwrap(), ms);
    }

    #[test]
    fn test_unit_parsers_never_panic(s in ".{0,40}") {
        let _ = parse_size(&s);
        let _ = parse_duration_ms(&s);
        let _ = parse_signal(&s);
        let _ = parse_cpu_max(&s);
    }
}

#[test]
fn test_parse_limit_sets_and_clears() {
    let mut limits = Limits::default();

    parse_limit("memory_max", "64M", &mut limits).unwrap();
    parse_limit("pids_max", "32", &mut limits).unwrap();
    parse_limit("cpu_max", "50%", &mut limits).unwrap();
    parse_limit("cpu_weight", "200", &mut limits).unwrap();
    parse_limit("io_weight", "10000", &mut limits).unwrap();
    parse_limit("memory_swap_max", "0", &mut limits).unwrap();
    parse_limit("memory_high", "32M", &mut limits).unwrap();
    parse_limit("pids_max", "max", &mut limits).unwrap();

    let expected = Limits {
        memory_max: Some(64 << 20),
        memory_high: Some(32 << 20),
        memory_swap_max: Some(0),
        pids_max: None,
        cpu_max: Some(CpuMax {
            quota_us: 50_000,
            period_us: 100_000,
        }),
        cpu_weight: Some(200),
        io_weight: Some(10_000),
    };
    assert_eq!(limits, expected);
}

#[test]
fn test_parse_limit_error_leaves_limits_unchanged() {
    let mut limits = Limits {
        memory_max: Some(64 << 20),
        ..Limits::default()
    };
    let before = limits.clone();

    let above = parse_limit("memory_high", "128M", &mut limits).unwrap_err();
    let unknown = parse_limit("memory", "1G", &mut limits).unwrap_err();
    let weight = parse_limit("cpu_weight", "0", &mut limits).unwrap_err();
    let pids = parse_limit("pids_max", "0", &mut limits).unwrap_err();
    let size = parse_limit("memory_max", "lots", &mut limits).unwrap_err();

    assert_eq!(limits, before);
    assert!(above.starts_with("memory_high: "), "{above}");
    assert!(unknown.starts_with("unknown limit \"memory\""), "{unknown}");
    assert!(weight.contains("1..=10000"), "{weight}");
    assert!(pids.starts_with("pids_max"), "{pids}");
    assert!(size.starts_with("invalid size \"lots\""), "{size}");
}
