//! Rendering: aligned tables, human-readable values, JSON.

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use shuma_card::protocol::{CmdState, Mode, WsState};
use shuma_card::spec::Limits;
use shuma_card::ExitStatus;

use shuma_card::units::{format_cpu_max, format_signal, format_size};

/// A table printed with columns padded to their widest cell; the last column is not
/// padded so lines carry no trailing spaces.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Table {
        Table {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    pub fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.header.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let pad = w - cell.chars().count();
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad + 2));
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// Pretty JSON of `value` followed by a newline.
///
/// serde_json's error converts back into the io error it wraps (`From`), so a closed
/// pipe stays a BrokenPipe the caller can recognise; `io::Error::other` would hide it.
pub fn write_json<T: Serialize + ?Sized>(out: &mut dyn Write, value: &T) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(io::Error::from)?;
    writeln!(out)
}

/// One line of compact JSON, for streams (`events`, `logs -f`).
pub fn write_json_line<T: Serialize + ?Sized>(out: &mut dyn Write, value: &T) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(io::Error::from)?;
    writeln!(out)
}

pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A wall-clock instant as UTC `YYYY-MM-DDTHH:MM:SS.mmmZ`. UTC because the CLI has no
/// time zone database and the daemon's clock is often UTC anyway (as PID 1 in a VM).
pub fn format_unix_ms(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        unix_ms % 1000
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), by counting
/// 400-year eras of 146,097 days with years starting in March, so the leap day is last.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

pub fn dash() -> String {
    "-".to_string()
}

pub fn opt_size(v: Option<u64>) -> String {
    v.map(human_size).unwrap_or_else(dash)
}

pub fn opt_count(v: Option<u64>) -> String {
    v.map(|n| n.to_string()).unwrap_or_else(dash)
}

pub fn opt_duration(v: Option<u64>) -> String {
    v.map(human_duration).unwrap_or_else(dash)
}

/// Hundredths of a percent as "12.34%".
pub fn percent_x100(v: Option<u32>) -> String {
    v.map(|p| format!("{}.{:02}%", p / 100, p % 100))
        .unwrap_or_else(dash)
}

pub fn mode_name(mode: &Mode) -> &'static str {
    match mode {
        Mode::Pid1 => "pid1",
        Mode::Subreaper => "subreaper",
    }
}

pub fn ws_state_name(state: &WsState) -> &'static str {
    match state {
        WsState::Running => "running",
        WsState::Stopping => "stopping",
        WsState::Stopped => "stopped",
    }
}

pub fn cmd_state_name(state: &CmdState) -> &'static str {
    match state {
        CmdState::Waiting => "waiting",
        CmdState::Running => "running",
        CmdState::Stopping => "stopping",
        CmdState::Exited => "exited",
        CmdState::Failed => "failed",
    }
}

/// A short exit status for tables: "0", "1", "SIGKILL", "OOM".
pub fn exit_short(status: Option<ExitStatus>) -> String {
    match status {
        None => dash(),
        Some(ExitStatus::Code(c)) => c.to_string(),
        Some(ExitStatus::Signal(s)) => signal_name(s),
        Some(ExitStatus::OomKilled) => "OOM".to_string(),
    }
}

/// "SIGTERM", or "SIG<n>" for a signal without a name, so a number in a LAST-EXIT
/// column is always an exit code.
pub fn signal_name(sig: i32) -> String {
    let name = format_signal(sig);
    if name.starts_with("SIG") {
        name
    } else {
        format!("SIG{sig}")
    }
}

/// A measured size, rounded for reading: "512B", "3.0M", "1.5G". Limits use the card's
/// exact spelling instead ([`format_size`]), since a user compares them with the card.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["K", "M", "G", "T", "P"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

/// A measured duration, rounded for reading: "250ms", "3.2s", "5m12s", "2h05m", "3d04h".
pub fn human_duration(ms: u64) -> String {
    let s = ms / 1000;
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{}.{}s", s, (ms % 1000) / 100),
        60_000..=3_599_999 => format!("{}m{:02}s", s / 60, s % 60),
        3_600_000..=86_399_999 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// The limits a workspace sets, as `key=value` pairs in card spelling; "-" when none.
pub fn limits_summary(limits: &Limits) -> String {
    let mut parts = Vec::new();
    if let Some(v) = limits.memory_max {
        parts.push(format!("memory_max={}", format_size(v)));
    }
    if let Some(v) = limits.memory_high {
        parts.push(format!("memory_high={}", format_size(v)));
    }
    if let Some(v) = limits.memory_swap_max {
        parts.push(format!("memory_swap_max={}", format_size(v)));
    }
    if let Some(v) = limits.pids_max {
        parts.push(format!("pids_max={v}"));
    }
    if let Some(c) = limits.cpu_max {
        parts.push(format!("cpu_max=\"{}\"", format_cpu_max(c)));
    }
    if let Some(v) = limits.cpu_weight {
        parts.push(format!("cpu_weight={v}"));
    }
    if let Some(v) = limits.io_weight {
        parts.push(format!("io_weight={v}"));
    }
    if parts.is_empty() {
        dash()
    } else {
        parts.join(" ")
    }
}

/// `text` cut to at most `max` characters, the last being "…" when it was cut.
pub fn elide(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max.saturating_sub(1)).collect();
    // "stderr:…", not "stderr: …": the mark sits against the last word kept.
    format!("{}…", cut.trim_end())
}

/// Text from a service (a `STATUS=` line, a stderr tail) made safe to print on a
/// terminal: control characters other than newline and tab become `?`, so an escape
/// sequence cannot move the cursor or recolour the operator's screen; carriage returns
/// are dropped, so a line cannot overwrite itself.
pub fn printable(text: &str) -> String {
    text.chars()
        .filter(|&c| c != '\r')
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '?'
            } else {
                c
            }
        })
        .collect()
}

/// [`printable`] on one line, for a table cell: every run of whitespace, line breaks
/// included, becomes one space.
pub fn one_line(text: &str) -> String {
    printable(text)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// [`printable`] with each line after the first indented by `indent` spaces, as
/// journalctl shows a message of several lines: the continuation stays under the text
/// it belongs to, and no line of it can pass for a record of its own.
pub fn continued(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let lines: Vec<String> = printable(text.trim_end())
        .lines()
        .enumerate()
        .map(|(i, line)| match (i, line.is_empty()) {
            (0, _) | (_, true) => line.to_string(),
            _ => format!("{pad}{line}"),
        })
        .collect();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_table_columns_aligned_without_trailing_spaces() {
        let mut table = Table::new(&["A", "LONGER", "C"]);
        table.row(vec!["wide-cell".into(), "x".into(), "".into()]);
        let mut out = Vec::new();

        table.write(&mut out).unwrap();

        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "A          LONGER  C\nwide-cell  x\n");
    }

    #[test]
    fn test_format_unix_ms_known_instants() {
        assert_eq!(format_unix_ms(0), "1970-01-01T00:00:00.000Z");
        // 2024-02-29 12:34:56.789 UTC, a leap day.
        assert_eq!(
            format_unix_ms(1_709_210_096_789),
            "2024-02-29T12:34:56.789Z"
        );
        assert_eq!(format_unix_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn test_exit_short_signal_and_oom_named() {
        assert_eq!(exit_short(Some(ExitStatus::Signal(9))), "SIGKILL");
        assert_eq!(exit_short(Some(ExitStatus::Signal(64))), "SIG64");
        assert_eq!(exit_short(Some(ExitStatus::OomKilled)), "OOM");
        assert_eq!(exit_short(Some(ExitStatus::Code(3))), "3");
        assert_eq!(exit_short(None), "-");
    }

    #[test]
    fn test_human_size_and_duration_rounded() {
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(3 * 1024 * 1024 + 1), "3.0M");
        assert_eq!(human_size(1536 << 20), "1.5G");
        assert_eq!(human_duration(250), "250ms");
        assert_eq!(human_duration(3_250), "3.2s");
        assert_eq!(human_duration(312_000), "5m12s");
        assert_eq!(human_duration(3_723_000), "1h02m");
        assert_eq!(human_duration(273_600_000), "3d04h");
    }

    #[test]
    fn test_percent_x100_two_decimals() {
        assert_eq!(percent_x100(Some(1234)), "12.34%");
        assert_eq!(percent_x100(Some(5)), "0.05%");
        assert_eq!(percent_x100(None), "-");
    }

    #[test]
    fn test_limits_summary_card_spelling() {
        let limits = Limits {
            pids_max: Some(32),
            cpu_weight: Some(50),
            ..Limits::default()
        };

        assert_eq!(limits_summary(&limits), "pids_max=32 cpu_weight=50");
        assert_eq!(limits_summary(&Limits::default()), "-");
    }

    #[test]
    fn test_elide_cuts_at_max_chars_with_mark() {
        assert_eq!(elide("short", 10), "short");
        assert_eq!(elide("exactly10!", 10), "exactly10!");
        assert_eq!(elide("abcdefghijkl", 5), "abcd…");
        assert_eq!(elide("abc defgh", 5), "abc…", "no space before the mark");
        assert_eq!(elide("ééééééé", 4), "ééé…", "characters, not bytes");
    }

    #[test]
    fn test_printable_neutralises_terminal_controls_keeps_lines() {
        assert_eq!(printable("a\x1b[31mred\r\nb\tc\x07"), "a?[31mred\nb\tc?");
        assert_eq!(printable("\u{9b}2J"), "?2J", "C1 CSI too");
    }

    #[test]
    fn test_one_line_collapses_breaks_and_runs_of_space() {
        assert_eq!(
            one_line("  exited 1\nstderr:\n  boom \n"),
            "exited 1 stderr: boom"
        );
    }

    #[test]
    fn test_continued_indents_following_lines_only() {
        assert_eq!(continued("a\nb\n\nc\n", 3), "a\n   b\n\n   c");
        assert_eq!(continued("one line", 3), "one line");
    }
}
