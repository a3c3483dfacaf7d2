//! systemd's value syntaxes, as its parsers read them: booleans (`parse_boolean`), time
//! spans (`parse_sec`, systemd.time(7)), sizes with base-1024 suffixes (`parse_size`),
//! and whitespace-separated lists.

/// systemd's `parse_boolean`: 1/yes/y/true/t/on and 0/no/n/false/f/off, any case.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "true" | "t" | "on" => Some(true),
        "0" | "no" | "n" | "false" | "f" | "off" => Some(false),
        _ => None,
    }
}

/// A time span: a number of microseconds, or infinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    Usec(u64),
    Infinity,
}

/// systemd.time(7) time spans: "5min 20s", "1h30m", "2.5", "100ms", "infinity". A bare
/// number is seconds (`parse_sec`; `parse_time` with another default unit is not used by
/// the settings converted here).
pub fn parse_span(s: &str) -> Option<Span> {
    let t = s.trim();
    if t == "infinity" {
        return Some(Span::Infinity);
    }
    if t.is_empty() {
        return None;
    }
    let mut rest = t;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        if num.is_empty() || num.matches('.').count() > 1 {
            return None;
        }
        let tail = tail.trim_start();
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let mult: u128 = match unit {
            "" | "s" | "sec" | "second" | "seconds" => 1_000_000,
            "us" | "usec" | "µs" | "μs" => 1,
            "ms" | "msec" => 1_000,
            "m" | "min" | "minute" | "minutes" => 60_000_000,
            "h" | "hr" | "hour" | "hours" => 3_600_000_000,
            "d" | "day" | "days" => 86_400_000_000,
            "w" | "week" | "weeks" => 604_800_000_000,
            "M" | "month" | "months" => 2_629_800_000_000,
            "y" | "year" | "years" => 31_557_600_000_000,
            _ => return None,
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let int: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
        total = total.checked_add(int.checked_mul(mult)?)?;
        if !frac.is_empty() {
            let digits = frac.len().min(18) as u32;
            let f: u128 = frac[..digits as usize].parse().ok()?;
            total = total.checked_add(f * mult / 10u128.pow(digits))?;
        }
        rest = next.trim_start();
    }
    u64::try_from(total).ok().map(Span::Usec)
}

/// A size: bytes, a share of something (per ten thousand, from "50%" or "5‰"), or
/// infinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Bytes(u64),
    Permyriad(u32),
    Infinity,
}

/// systemd's memory and task values: "512M", "1.5G", "1048576", "infinity", "40%".
/// Suffixes K, M, G, T, P, E are powers of 1024 (`parse_size(..., 1024)`), B or none is
/// bytes.
pub fn parse_size(s: &str) -> Option<Size> {
    let t = s.trim();
    if t == "infinity" {
        return Some(Size::Infinity);
    }
    if let Some(p) = t.strip_suffix('%') {
        return permyriad(p, 100);
    }
    if let Some(p) = t.strip_suffix('‰') {
        return permyriad(p, 10);
    }
    if let Some(p) = t.strip_suffix('‱') {
        return permyriad(p, 1);
    }
    let num_len = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(num_len);
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        "P" => 50,
        "E" => 60,
        _ => return None,
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let int: u128 = int.parse().ok()?;
    let mut bytes = int.checked_mul(1u128 << shift)?;
    if !frac.is_empty() {
        let digits = frac.len().min(18) as u32;
        let f: u128 = frac[..digits as usize].parse().ok()?;
        bytes += (f << shift) / 10u128.pow(digits);
    }
    u64::try_from(bytes).ok().map(Size::Bytes)
}

fn permyriad(num: &str, scale: u32) -> Option<Size> {
    let (int, frac) = num.trim().split_once('.').unwrap_or((num.trim(), ""));
    let int: u32 = int.parse().ok()?;
    let mut v = int.checked_mul(scale)?;
    if !frac.is_empty() && scale > 1 {
        // One decimal is as fine as a per-ten-thousand of a percent goes.
        let digit = frac.chars().next()?.to_digit(10)?;
        v += digit * scale / 10;
    }
    (v <= 10_000).then_some(Size::Permyriad(v))
}

/// Milliseconds from microseconds, rounded up: a sub-millisecond remainder becomes one
/// millisecond more, the card's resolution (never 0 for a non-zero span).
pub fn usec_to_ms(usec: u64) -> u64 {
    usec.div_ceil(1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_span_forms() {
        assert_eq!(parse_span("90"), Some(Span::Usec(90_000_000)));
        assert_eq!(parse_span("5min 20s"), Some(Span::Usec(320_000_000)));
        assert_eq!(parse_span("1h30m"), Some(Span::Usec(5_400_000_000)));
        assert_eq!(parse_span("100ms"), Some(Span::Usec(100_000)));
        assert_eq!(parse_span("2.5"), Some(Span::Usec(2_500_000)));
        assert_eq!(parse_span("0"), Some(Span::Usec(0)));
        assert_eq!(parse_span("infinity"), Some(Span::Infinity));
        assert_eq!(parse_span("5 fortnights"), None);
        assert_eq!(parse_span(""), None);
        assert_eq!(parse_span("99999999999999999999y"), None);
    }

    #[test]
    fn test_parse_size_forms() {
        assert_eq!(parse_size("512M"), Some(Size::Bytes(512 << 20)));
        assert_eq!(parse_size("1.5G"), Some(Size::Bytes(3 << 29)));
        assert_eq!(parse_size("4096"), Some(Size::Bytes(4096)));
        assert_eq!(parse_size("infinity"), Some(Size::Infinity));
        assert_eq!(parse_size("40%"), Some(Size::Permyriad(4000)));
        assert_eq!(parse_size("12X"), None);
        assert_eq!(parse_size("20E"), None);
    }

    #[test]
    fn test_parse_bool_forms() {
        assert_eq!(parse_bool("Yes"), Some(true));
        assert_eq!(parse_bool("off"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
    }
}
