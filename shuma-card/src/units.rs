//! Human units for cards and `shuma ws set`: sizes ("64M"), durations ("1.5s"), signals
//! ("TERM") and cpu.max ("50%"), parsed into the plain numbers the specs carry.
//!
//! Every parser is overflow-safe (checked arithmetic, no `as` truncation) and every error
//! names the text it could not read. "max" is deliberately not a size: the callers decide
//! what "no limit" means (a `None` in [`Limits`]).

use std::fmt;

use crate::spec::{CpuMax, Limits};

/// Durations longer than this are refused. A year is far beyond any sensible grace period,
/// backoff or TTL, so a longer one is surely a typo, and the cap keeps the runtime's
/// `Instant + Duration` arithmetic far away from overflow.
pub const MAX_DURATION_MS: u64 = 365 * 24 * 3600 * 1000;
/// cpu.max quota meaning "no limit" (the kernel's `max`).
pub const CPU_QUOTA_MAX: u64 = u64::MAX;
/// The kernel's default cpu.max period, in microseconds.
pub const CPU_PERIOD_DEFAULT_US: u64 = 100_000;
/// The kernel accepts cpu.max periods from 1 ms to 1 s, and quotas of at least 1 ms.
pub const CPU_PERIOD_RANGE_US: std::ops::RangeInclusive<u64> = 1_000..=1_000_000;
pub const CPU_QUOTA_MIN_US: u64 = 1_000;
/// cpu.weight and io.weight accept 1..=10000 (the kernel's range; default 100).
pub const WEIGHT_RANGE: std::ops::RangeInclusive<u16> = 1..=10_000;

/// A value that could not be read: what kind of value, the text, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitError {
    /// "size", "duration", "signal" or "cpu.max".
    pub kind: &'static str,
    pub input: String,
    pub reason: String,
}

impl UnitError {
    fn new(kind: &'static str, input: &str, reason: impl Into<String>) -> Self {
        UnitError {
            kind,
            input: input.to_owned(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for UnitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {} {:?}: {}", self.kind, self.input, self.reason)
    }
}

impl std::error::Error for UnitError {}

/// A decimal number split into its integer part and its fraction (numerator over
/// 10^digits), so "1.5" scales exactly without floating point.
struct Decimal {
    int: u64,
    frac: u64,
    frac_digits: u32,
}

impl Decimal {
    /// `self * unit`, exact when the result is whole; `None` on overflow. The second value
    /// is true when a fraction of the base unit was dropped.
    fn scale(&self, unit: u64) -> Option<(u64, bool)> {
        let whole = self.int.checked_mul(unit)?;
        let denom = 10u128.pow(self.frac_digits);
        let frac = u128::from(self.frac) * u128::from(unit);
        let extra = u64::try_from(frac / denom).ok()?;
        Some((whole.checked_add(extra)?, frac % denom != 0))
    }
}

/// Split "1.5ms" into the number "1.5" and the rest "ms".
fn split_number(s: &str) -> (&str, &str) {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    s.split_at(end)
}

fn parse_decimal(num: &str) -> Option<Decimal> {
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    // At most 9 fraction digits: finer than any unit here resolves, and 10^9 * u64::MAX
    // still fits the u128 used by `scale`.
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 9 {
        return None;
    }
    if num.contains('.') && (frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    Some(Decimal {
        int: int.parse().ok()?,
        frac: if frac.is_empty() {
            0
        } else {
            frac.parse().ok()?
        },
        frac_digits: frac.len() as u32,
    })
}

/// Bytes from "1048576", "512K", "64M", "1.5G", "1T", "64MiB", "4k". Binary units only:
/// K, M, G, T (any case, optionally followed by "i" or "iB") are powers of 1024. "KB"/"MB"
/// are refused because half the world reads them as powers of 1000.
pub fn parse_size(s: &str) -> Result<u64, UnitError> {
    let err = |reason: &str| UnitError::new("size", s, reason);
    let t = s.trim();
    let (num, unit) = split_number(t);
    let dec = parse_decimal(num)
        .ok_or_else(|| err("expected a number of bytes with an optional unit, e.g. 64M"))?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "ki" | "kib" => 10,
        "m" | "mi" | "mib" => 20,
        "g" | "gi" | "gib" => 30,
        "t" | "ti" | "tib" => 40,
        "kb" | "mb" | "gb" | "tb" => {
            return Err(err(
                "ambiguous unit: write K, M, G or T (powers of 1024) or KiB, MiB, GiB, TiB",
            ))
        }
        _ => {
            return Err(err(
                "unknown unit: use K, M, G or T (powers of 1024), or none for bytes",
            ))
        }
    };
    match dec.scale(1u64 << shift) {
        None => Err(err("too large: does not fit in 64 bits")),
        Some((_, true)) if shift == 0 => Err(err("a number of bytes must be whole")),
        Some((bytes, _)) => Ok(bytes),
    }
}

/// Milliseconds from "0", "100ms", "1s", "1.5s", "2m", "1h", "1d" or a sum such as "1m30s".
/// A bare number other than 0 is refused: seconds or milliseconds would be a guess.
pub fn parse_duration_ms(s: &str) -> Result<u64, UnitError> {
    let err = |reason: &str| UnitError::new("duration", s, reason);
    let t = s.trim();
    if t == "0" {
        return Ok(0);
    }
    if t.is_empty() {
        return Err(err("empty; write e.g. 100ms, 5s, 2m, 1h"));
    }
    let mut rest = t;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let (num, tail) = split_number(rest);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let dec = parse_decimal(num)
            .ok_or_else(|| err("expected a number followed by a unit (ms, s, m, h, d)"))?;
        let unit_ms = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" | "min" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => {
                return Err(err(
                    "missing unit: write ms, s, m, h or d (only 0 may stand alone)",
                ))
            }
            _ => return Err(err("unknown unit: use ms, s, m, h or d")),
        };
        let (ms, lost) = dec.scale(unit_ms).ok_or_else(|| err("too large"))?;
        if lost {
            return Err(err("finer than a millisecond"));
        }
        total = total.checked_add(ms).ok_or_else(|| err("too large"))?;
        rest = next;
    }
    if total > MAX_DURATION_MS {
        return Err(err("longer than the 365-day cap"));
    }
    Ok(total)
}

/// Linux signal numbers by name (x86, arm and most architectures agree on these).
const SIGNALS: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
    ("SYS", 31),
];
/// Highest signal number Linux delivers (SIGRTMAX).
pub const MAX_SIGNAL: i32 = 64;

/// A signal number from "TERM", "SIGTERM", "term" or "15" (1..=64).
pub fn parse_signal(s: &str) -> Result<i32, UnitError> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return match t.parse::<i32>() {
            Ok(n) if (1..=MAX_SIGNAL).contains(&n) => Ok(n),
            _ => Err(UnitError::new(
                "signal",
                s,
                format!("number out of range 1..={MAX_SIGNAL}"),
            )),
        };
    }
    let upper = t.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNALS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, num)| num)
        .ok_or_else(|| {
            UnitError::new(
                "signal",
                s,
                "unknown signal name (e.g. TERM, INT, HUP, KILL, USR1)",
            )
        })
}

/// "SIGTERM" for 15; the number for signals without a name here.
pub fn format_signal(sig: i32) -> String {
    match SIGNALS.iter().find(|&&(_, n)| n == sig) {
        Some((name, _)) => format!("SIG{name}"),
        None => sig.to_string(),
    }
}

/// cpu.max from the kernel's own form "QUOTA PERIOD" or "max PERIOD" (microseconds), a
/// lone "max", or a percentage of one CPU, "50%" (= "50000 100000"; "200%" is two CPUs).
/// "max" yields a quota of [`CPU_QUOTA_MAX`].
pub fn parse_cpu_max(s: &str) -> Result<CpuMax, UnitError> {
    let err = |reason: String| UnitError::new("cpu.max", s, reason);
    let t = s.trim();
    let cpu = if let Some(pct) = t.strip_suffix('%') {
        let dec = parse_decimal(pct.trim())
            .ok_or_else(|| err("expected a percentage such as 50%".into()))?;
        // One percent of the default 100 ms period is 1000 us.
        let (quota, _) = dec
            .scale(CPU_PERIOD_DEFAULT_US / 100)
            .ok_or_else(|| err("too large".into()))?;
        CpuMax {
            quota_us: quota,
            period_us: CPU_PERIOD_DEFAULT_US,
        }
    } else {
        let mut words = t.split_whitespace();
        let quota = words
            .next()
            .ok_or_else(|| err("empty; write \"QUOTA PERIOD\", \"max\" or \"50%\"".into()))?;
        let period_us = match words.next() {
            None => CPU_PERIOD_DEFAULT_US,
            Some(p) => p
                .parse()
                .map_err(|_| err(format!("period {p:?} is not a number of microseconds")))?,
        };
        if words.next().is_some() {
            return Err(err("expected at most two words, QUOTA and PERIOD".into()));
        }
        let quota_us = match quota {
            "max" => CPU_QUOTA_MAX,
            q => q.parse().map_err(|_| {
                err(format!(
                    "quota {q:?} is not \"max\" or a number of microseconds"
                ))
            })?,
        };
        CpuMax {
            quota_us,
            period_us,
        }
    };
    check_cpu_max(cpu).map_err(err)?;
    Ok(cpu)
}

/// The kernel's bounds on cpu.max, shared by the parser and spec validation.
pub fn check_cpu_max(cpu: CpuMax) -> Result<(), String> {
    if !CPU_PERIOD_RANGE_US.contains(&cpu.period_us) {
        return Err(format!(
            "period {} us is outside the kernel's 1000..=1000000",
            cpu.period_us
        ));
    }
    if cpu.quota_us < CPU_QUOTA_MIN_US {
        return Err(format!(
            "quota {} us is below the kernel's minimum of 1000 (1 ms)",
            cpu.quota_us
        ));
    }
    Ok(())
}

/// The text the kernel's cpu.max file takes: "50000 100000" or "max 100000".
pub fn format_cpu_max(cpu: CpuMax) -> String {
    match cpu.quota_us {
        CPU_QUOTA_MAX => format!("max {}", cpu.period_us),
        q => format!("{q} {}", cpu.period_us),
    }
}

/// "64M" for 67108864: the largest binary unit that divides the size exactly, so the text
/// parses back to the same number.
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        // A power of two divides `bytes` exactly when `bytes` has that many low zero bits.
        if bytes != 0 && bytes.trailing_zeros() >= shift {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// "1m30s" for 90000, "1500ms" for 1500: exact, and parses back to the same number.
pub fn format_duration_ms(ms: u64) -> String {
    if ms == 0 {
        return "0".into();
    }
    let (mut secs, millis) = (ms / 1_000, ms % 1_000);
    if millis > 0 {
        return format!("{ms}ms");
    }
    let mut out = String::new();
    for (unit_secs, unit) in [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")] {
        if secs >= unit_secs {
            out.push_str(&format!("{}{unit}", secs / unit_secs));
            secs %= unit_secs;
        }
    }
    out
}

/// Apply `KEY=VALUE` from `shuma ws set` to `limits`. "max" clears a limit (the kernel's
/// default). On error `limits` is left exactly as it was.
pub fn parse_limit(key: &str, value: &str, limits: &mut Limits) -> Result<(), String> {
    let v = value.trim();
    let unset = v == "max";
    let mut next = limits.clone();
    let size = || parse_size(v).map(Some).map_err(|e| e.to_string());
    let weight = || match v.parse::<u16>() {
        Ok(w) if WEIGHT_RANGE.contains(&w) => Ok(Some(w)),
        _ => Err(format!("{key}: {v:?} is not an integer in 1..=10000")),
    };
    match key {
        "memory_max" => next.memory_max = if unset { None } else { size()? },
        "memory_high" => next.memory_high = if unset { None } else { size()? },
        "memory_swap_max" => next.memory_swap_max = if unset { None } else { size()? },
        "pids_max" => {
            next.pids_max = match v.parse::<u64>() {
                _ if unset => None,
                Ok(n) if n >= 1 => Some(n),
                _ => {
                    return Err(format!(
                        "pids_max: {v:?} is not \"max\" or an integer of at least 1"
                    ))
                }
            }
        }
        "cpu_max" => {
            next.cpu_max = if unset {
                None
            } else {
                Some(parse_cpu_max(v).map_err(|e| e.to_string())?)
            }
        }
        "cpu_weight" => next.cpu_weight = if unset { None } else { weight()? },
        "io_weight" => next.io_weight = if unset { None } else { weight()? },
        _ => {
            return Err(format!(
                "unknown limit {key:?}: expected one of memory_max, memory_high, memory_swap_max, \
                 pids_max, cpu_max, cpu_weight, io_weight"
            ))
        }
    }
    crate::card::check_limits(&next).map_err(|(field, msg)| format!("{field}: {msg}"))?;
    *limits = next;
    Ok(())
}
