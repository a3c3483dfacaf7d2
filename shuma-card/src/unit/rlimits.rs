//! `Limit*=` (systemd.exec(5), "Process properties") as the card's `rlimits`: each
//! resource's value read the way systemd's `rlimit_parse` reads it, `SOFT:HARD` or one
//! value for both, `infinity` for no limit.

use super::values::{self, Size, Span};
use crate::spec::Rlimit;

/// How a resource's values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Syntax {
    /// A plain number (files, processes, locks, signals, a priority).
    Count,
    /// Bytes, with systemd's base-1024 suffixes (`parse_size(..., 1024)`).
    Bytes,
    /// A time span whose bare number is seconds, rounded up to whole seconds
    /// (`LimitCPU=`, `parse_sec`).
    Seconds,
    /// A time span whose bare number is microseconds (`LimitRTTIME=`, `parse_time(.., 1)`).
    Micros,
    /// `LimitNICE=`: `+N`/`-N` nice levels, or the raw limit 0..=40.
    Nice,
}

/// The `Limit*=` settings: systemd's key, the card's resource, the value syntax.
const RESOURCES: [(&str, &str, Syntax); 16] = [
    ("LimitCPU", "cpu", Syntax::Seconds),
    ("LimitFSIZE", "fsize", Syntax::Bytes),
    ("LimitDATA", "data", Syntax::Bytes),
    ("LimitSTACK", "stack", Syntax::Bytes),
    ("LimitCORE", "core", Syntax::Bytes),
    ("LimitRSS", "rss", Syntax::Bytes),
    ("LimitNOFILE", "nofile", Syntax::Count),
    ("LimitAS", "as", Syntax::Bytes),
    ("LimitNPROC", "nproc", Syntax::Count),
    ("LimitMEMLOCK", "memlock", Syntax::Bytes),
    ("LimitLOCKS", "locks", Syntax::Count),
    ("LimitSIGPENDING", "sigpending", Syntax::Count),
    ("LimitMSGQUEUE", "msgqueue", Syntax::Bytes),
    ("LimitNICE", "nice", Syntax::Nice),
    ("LimitRTPRIO", "rtprio", Syntax::Count),
    ("LimitRTTIME", "rttime", Syntax::Micros),
];

/// The unit keys of every resource, for the settings reader.
pub fn keys() -> impl Iterator<Item = &'static str> {
    RESOURCES.iter().map(|(k, ..)| *k)
}

/// `LimitNOFILE=...` as a card's rlimit, or why it cannot be one.
pub fn parse(key: &str, value: &str) -> Result<Rlimit, String> {
    let (_, resource, syntax) = RESOURCES
        .iter()
        .find(|(k, ..)| *k == key)
        .ok_or_else(|| format!("{key} is not a resource limit"))?;
    // One ':' at most: "SOFT:HARD"; "SOFT:" is SOFT for both, as systemd reads it.
    let (soft, hard) = match value.split_once(':') {
        None => (value, None),
        Some((_, h)) if h.contains(':') => return Err("more than one ':'".into()),
        Some((s, "")) => (s, None),
        Some((s, h)) => (s, Some(h)),
    };
    let soft = one(*syntax, soft.trim())?;
    let hard = match hard {
        Some(h) => one(*syntax, h.trim())?,
        None => soft,
    };
    let above = match (soft, hard) {
        (Some(s), Some(h)) => s > h,
        (None, Some(_)) => true,
        _ => false,
    };
    if above {
        return Err("the soft limit is above the hard one (systemd ignores it too)".into());
    }
    if *resource == "nofile" && hard.is_none() {
        // systemd lowers a limit the kernel refuses to the nearest it accepts
        // (setrlimit_closest); arje sets it as written, and the kernel never takes an
        // unlimited RLIMIT_NOFILE (it is bounded by fs.nr_open), so every start would fail.
        return Err(
            "an unlimited nofile is above fs.nr_open, which the kernel refuses; write a number"
                .into(),
        );
    }
    Ok(Rlimit {
        resource: resource.to_string(),
        soft,
        hard,
    })
}

/// One limit: `None` is infinity.
fn one(syntax: Syntax, v: &str) -> Result<Option<u64>, String> {
    if v == "infinity" {
        return Ok(None);
    }
    let n = match syntax {
        Syntax::Count => v.parse::<u64>().ok(),
        Syntax::Bytes => match values::parse_size(v) {
            Some(Size::Bytes(n)) => Some(n),
            _ => None,
        },
        Syntax::Seconds => match values::parse_span(v) {
            Some(Span::Usec(us)) => Some(us.div_ceil(1_000_000)),
            Some(Span::Infinity) => return Ok(None),
            None => None,
        },
        Syntax::Micros if v.bytes().all(|b| b.is_ascii_digit()) => v.parse::<u64>().ok(),
        // A span with units; a bare number among them would be microseconds to
        // systemd and seconds to parse_span, so that form is not read.
        Syntax::Micros if v.ends_with(|c: char| c.is_ascii_digit()) => None,
        Syntax::Micros => match values::parse_span(v) {
            Some(Span::Usec(us)) => Some(us),
            Some(Span::Infinity) => return Ok(None),
            None => None,
        },
        Syntax::Nice => nice(v),
    };
    match n {
        // RLIM_INFINITY itself is out of range as a number (systemd: ERANGE).
        Some(n) if n < u64::MAX => Ok(Some(n)),
        _ => Err(format!("{v:?} is not a value of this limit")),
    }
}

/// `LimitNICE=`: `+N` (0..=19) and `-N` (0..=20) are nice levels, mapped to the kernel's
/// 20 - level; a bare number is the raw limit, 0..=40.
fn nice(v: &str) -> Option<u64> {
    if let Some(n) = v.strip_prefix('+') {
        let n: u64 = n.parse().ok()?;
        (n < 20).then(|| 20 - n)
    } else if let Some(n) = v.strip_prefix('-') {
        let n: u64 = n.parse().ok()?;
        (n <= 20).then(|| 20 + n)
    } else {
        let n: u64 = v.parse().ok()?;
        (n <= 40).then_some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(key: &str, v: &str) -> Result<(String, Option<u64>, Option<u64>), String> {
        parse(key, v).map(|r| (r.resource, r.soft, r.hard))
    }

    #[test]
    fn test_parse_counts_sizes_and_soft_hard() {
        assert_eq!(
            limit("LimitNOFILE", "65536"),
            Ok(("nofile".into(), Some(65536), Some(65536)))
        );
        assert_eq!(
            limit("LimitNPROC", "1024:4096"),
            Ok(("nproc".into(), Some(1024), Some(4096)))
        );
        assert_eq!(
            limit("LimitCORE", "infinity"),
            Ok(("core".into(), None, None))
        );
        assert_eq!(
            limit("LimitMEMLOCK", "64K:infinity"),
            Ok(("memlock".into(), Some(65536), None))
        );
        assert_eq!(
            limit("LimitNPROC", "7:"),
            Ok(("nproc".into(), Some(7), Some(7)))
        );
    }

    #[test]
    fn test_parse_times_and_nice() {
        assert_eq!(
            limit("LimitCPU", "90"),
            Ok(("cpu".into(), Some(90), Some(90)))
        );
        assert_eq!(
            limit("LimitCPU", "1min 0.5s"),
            Ok(("cpu".into(), Some(61), Some(61)))
        );
        assert_eq!(
            limit("LimitRTTIME", "2500"),
            Ok(("rttime".into(), Some(2500), Some(2500)))
        );
        assert_eq!(
            limit("LimitRTTIME", "2ms"),
            Ok(("rttime".into(), Some(2000), Some(2000)))
        );
        assert_eq!(
            limit("LimitNICE", "+5"),
            Ok(("nice".into(), Some(15), Some(15)))
        );
        assert_eq!(
            limit("LimitNICE", "-20"),
            Ok(("nice".into(), Some(40), Some(40)))
        );
        assert_eq!(
            limit("LimitNICE", "0"),
            Ok(("nice".into(), Some(0), Some(0)))
        );
    }

    #[test]
    fn test_parse_refuses_what_systemd_or_the_kernel_refuses() {
        assert!(limit("LimitNOFILE", "4096:1024").is_err());
        assert!(limit("LimitNOFILE", "infinity").is_err());
        assert!(limit("LimitNOFILE", "1:2:3").is_err());
        assert!(limit("LimitNOFILE", "64K").is_err());
        assert!(limit("LimitNICE", "+20").is_err());
        assert!(limit("LimitNICE", "41").is_err());
        assert!(limit("LimitRTTIME", "1s 500").is_err());
        assert!(limit("LimitAS", "50%").is_err());
        assert!(limit("LimitNOFILE", "18446744073709551615").is_err());
        assert!(limit("LimitFOO", "1").is_err());
    }
}
