//! The unit-file syntax of systemd.syntax(7): `[Section]` headers, `Key=Value`
//! assignments, comments, continuation lines. A pure function from bytes to directives,
//! each kept with the line it starts on.
//!
//! The rules, as systemd's `config_parse()` applies them:
//! - Leading and trailing whitespace of a line is ignored; so are empty lines.
//! - A line whose first non-blank character is `#` or `;` is a comment, also in the
//!   middle of a continued assignment (systemd.syntax(7): "comment lines ... are
//!   ignored" there too).
//! - A line ending in an unescaped backslash continues on the next line: the backslash
//!   becomes a space. `\\` at the end is an escaped backslash, not a continuation.
//! - `Key = Value`: whitespace around `=` is dropped; the value is kept verbatim
//!   otherwise (quotes and escapes mean something only to the setting that reads it).
//! - An assignment before any section, or a line without `=`, is ignored by systemd with
//!   a warning; here it becomes a [`SyntaxIssue`] so the converter can report it.

/// Longest logical line (after joining continuations), as systemd's `LONG_LINE_MAX`:
/// systemd refuses the whole file past it, and so does this parser.
pub const MAX_LINE: usize = 1024 * 1024;

/// One `Key=Value` assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub section: String,
    pub key: String,
    pub value: String,
    /// 1-based line of the assignment's first line.
    pub line: usize,
}

/// Something systemd would warn about and skip: the line, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxIssue {
    pub line: usize,
    pub message: String,
}

/// A parsed file: its directives in file order, and what was skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub directives: Vec<Directive>,
    pub issues: Vec<SyntaxIssue>,
}

/// Why a whole file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

/// Parse the text of a unit file or drop-in.
pub fn parse(bytes: &[u8]) -> Result<Parsed, SyntaxError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut out = Parsed::default();
    let mut section: Option<String> = None;
    // A continued assignment: its text so far and the line it started on.
    let mut pending: Option<(Vec<u8>, usize)> = None;
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if matches!(trim(raw).first(), Some(b'#' | b';')) {
            continue;
        }
        // The line is appended as it is, leading blanks included, as systemd does.
        let (mut text, start) = match pending.take() {
            Some((mut acc, start)) => {
                acc.extend_from_slice(raw);
                (acc, start)
            }
            None => (raw.to_vec(), line_no),
        };
        if text.len() > MAX_LINE {
            return Err(SyntaxError {
                line: start,
                message: format!("line longer than {MAX_LINE} bytes"),
            });
        }
        if ends_in_unescaped_backslash(&text) {
            // systemd replaces the backslash by a space and reads on.
            text.pop();
            text.push(b' ');
            pending = Some((text, start));
            continue;
        }
        logical_line(&text, start, &mut section, &mut out);
    }
    if let Some((text, start)) = pending {
        // The file ended inside a continuation: systemd parses what it has.
        logical_line(&text, start, &mut section, &mut out);
    }
    Ok(out)
}

fn logical_line(text: &[u8], line: usize, section: &mut Option<String>, out: &mut Parsed) {
    let text = trim(text);
    if text.is_empty() {
        return;
    }
    let issue = |out: &mut Parsed, message: String| out.issues.push(SyntaxIssue { line, message });
    if text.contains(&0) {
        issue(out, "contains a NUL byte: ignored".into());
        return;
    }
    let Ok(text) = std::str::from_utf8(text) else {
        // systemd: "... is not UTF-8 clean, ignoring assignment".
        issue(out, "not valid UTF-8: ignored (as systemd does)".into());
        return;
    };
    if let Some(rest) = text.strip_prefix('[') {
        match rest.strip_suffix(']') {
            Some(name) if !name.is_empty() && !name.contains(['[', ']']) => {
                *section = Some(name.to_string());
            }
            _ => {
                *section = None;
                issue(out, format!("invalid section header {text:?}: the lines up to the next section are ignored"));
            }
        }
        return;
    }
    if text.starts_with(".include ") {
        issue(
            out,
            ".include is no longer supported by systemd: ignored".into(),
        );
        return;
    }
    let Some(current) = section.as_ref() else {
        issue(
            out,
            format!("{text:?} is outside any section: ignored (as systemd does)"),
        );
        return;
    };
    let Some((key, value)) = text.split_once('=') else {
        issue(
            out,
            format!("{text:?} has no '=': ignored (as systemd does)"),
        );
        return;
    };
    let key = key.trim_end_matches(is_blank);
    if key.is_empty() {
        issue(out, format!("{text:?} has no key before '=': ignored"));
        return;
    }
    out.directives.push(Directive {
        section: current.clone(),
        key: key.to_string(),
        value: value.trim_start_matches(is_blank).to_string(),
        line,
    });
}

/// systemd's WHITESPACE: space, tab, newline, carriage return.
fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn trim(b: &[u8]) -> &[u8] {
    let blank = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r');
    let start = b.iter().position(|c| !blank(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !blank(c)).map_or(start, |e| e + 1);
    &b[start..end]
}

/// Does `text` end in a backslash that is not itself escaped (an odd run of them)?
fn ends_in_unescaped_backslash(text: &[u8]) -> bool {
    text.iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(p: &Parsed) -> Vec<(String, String, String, usize)> {
        p.directives
            .iter()
            .map(|d| (d.section.clone(), d.key.clone(), d.value.clone(), d.line))
            .collect()
    }

    #[test]
    fn test_parse_sections_keys_and_lines() {
        let p =
            parse(b"# head\n[Unit]\nDescription = A b \n\n[Service]\nExecStart=/bin/x\n").unwrap();

        assert_eq!(
            keys(&p),
            vec![
                ("Unit".into(), "Description".into(), "A b".into(), 3),
                ("Service".into(), "ExecStart".into(), "/bin/x".into(), 6),
            ]
        );
        assert!(p.issues.is_empty());
    }

    #[test]
    fn test_parse_continuation_skips_comments_and_keeps_first_line() {
        let p = parse(b"[Service]\nExecStart=/bin/x \\\n # c\n  -a \\\n; d\n -b\nX=1\n").unwrap();

        // Each continued line is appended with its leading blanks, the backslash as a space.
        assert_eq!(p.directives[0].value, "/bin/x    -a   -b");
        assert_eq!(p.directives[0].line, 2);
        assert_eq!(p.directives[1].line, 7);
    }

    #[test]
    fn test_parse_escaped_backslash_at_end_is_not_continuation() {
        let p = parse(b"[S]\nA=x\\\\\nB=y\n").unwrap();

        assert_eq!(p.directives[0].value, "x\\\\");
        assert_eq!(p.directives[1].key, "B");
    }

    #[test]
    fn test_parse_outside_section_and_missing_equals_are_issues() {
        let p = parse(b"A=1\n[S]\nnoequals\n=v\n").unwrap();

        assert!(p.directives.is_empty());
        assert_eq!(
            p.issues.iter().map(|i| i.line).collect::<Vec<_>>(),
            [1, 3, 4]
        );
    }

    #[test]
    fn test_parse_invalid_utf8_line_is_skipped_not_fatal() {
        let p = parse(b"[S]\nA=\xff\xfe\nB=2\n").unwrap();

        assert_eq!(p.directives.len(), 1);
        assert_eq!(p.issues[0].line, 2);
    }

    #[test]
    fn test_parse_crlf_and_bom() {
        let p = parse(b"\xEF\xBB\xBF[S]\r\nA=1\r\n").unwrap();

        assert_eq!(keys(&p), vec![("S".into(), "A".into(), "1".into(), 2)]);
    }

    #[test]
    fn test_parse_endless_continuation_is_refused_past_the_cap() {
        let mut text = b"[S]\nA=".to_vec();
        for _ in 0..(MAX_LINE / 8 + 10) {
            text.extend_from_slice(b"abcdefg\\\n");
        }

        let err = parse(&text).unwrap_err();

        assert_eq!(err.line, 2);
    }
}
