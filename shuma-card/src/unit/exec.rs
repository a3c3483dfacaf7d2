//! Command lines of `ExecStart=` and friends (systemd.service(5), "Command lines"):
//! the prefixes, the quoting and C escapes of `extract_first_word`, several commands
//! separated by a lone `;`, and the `$VAR`/`${VAR}` expansion systemd applies when it
//! spawns the command.

use std::collections::HashMap;

/// The executable search path for a bare program name, systemd's default for system
/// services (with /sbin and /bin, as Debian 12's split-usr build has it).
pub const SEARCH_PATH: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// The special prefixes of a command line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prefixes {
    /// `-`: a failure exit status is recorded but counts as success.
    pub ignore_failure: bool,
    /// `@`: the second word is argv[0], the first the program.
    pub argv0: bool,
    /// `:`: no environment variable substitution.
    pub no_env: bool,
    /// `+`: full privileges, User=/Group= and sandboxing not applied.
    pub full_privileges: bool,
    /// `!` (or `!!`): User=/Group= applied, other restrictions lifted.
    pub elevated: bool,
    /// `|` (systemd 257): run through the user's shell.
    pub shell: bool,
}

/// One command of a command line, before environment expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    pub prefixes: Prefixes,
    /// The program: absolute, or a bare name to look up in [`SEARCH_PATH`].
    pub path: String,
    /// argv as systemd passes it: argv[0] is the program's path as written, or the
    /// word after it with `@`.
    pub argv: Vec<String>,
}

/// Expands the specifiers of one word; its error is the reason.
pub type Expand<'a> = dyn Fn(&str) -> Result<String, String> + 'a;

/// Parse a command-line value into its commands. As systemd's `config_parse_exec`
/// does, each word is unquoted and unescaped first and its specifiers expanded after
/// (so a `%I` with a space in it stays one word, and an escape in it is not read).
pub fn parse(value: &str, expand: &Expand) -> Result<Vec<CommandLine>, String> {
    let mut rest = value;
    let mut out = Vec::new();
    loop {
        rest = rest.trim_start_matches(is_ws);
        if rest.is_empty() {
            break;
        }
        out.push(parse_one(&mut rest, expand)?);
    }
    if out.is_empty() {
        return Err("no command".into());
    }
    Ok(out)
}

fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// One command up to a lone `;` or the end.
fn parse_one(rest: &mut &str, expand: &Expand) -> Result<CommandLine, String> {
    let first = next_word(rest)?.ok_or("no command")?;
    let mut prefixes = Prefixes::default();
    let mut path = first.as_str();
    loop {
        if let Some(p) = path.strip_prefix("!!") {
            prefixes.elevated = true;
            path = p;
            continue;
        }
        let Some(c) = path.chars().next() else { break };
        match c {
            '-' => prefixes.ignore_failure = true,
            '@' => prefixes.argv0 = true,
            ':' => prefixes.no_env = true,
            '+' => prefixes.full_privileges = true,
            '!' => prefixes.elevated = true,
            '|' => prefixes.shell = true,
            _ => break,
        }
        path = &path[1..];
    }
    if prefixes.full_privileges && prefixes.elevated {
        return Err("the prefixes + and ! exclude each other".into());
    }
    let path = expand(path)?;
    let path = path.as_str();
    if path.is_empty() {
        return Err(format!("{first:?}: no program after the prefixes"));
    }
    if !path.starts_with('/') && path.contains('/') {
        return Err(format!(
            "{path:?} is neither an absolute path nor a bare program name"
        ));
    }
    let path = path.to_string();
    let mut argv = Vec::new();
    if prefixes.argv0 {
        match take_arg(rest)? {
            Some(a) => argv.push(expand(&a)?),
            None => return Err(format!("{first}: @ needs argv[0] after the program")),
        }
    } else {
        argv.push(path.clone());
    }
    while let Some(arg) = take_arg(rest)? {
        argv.push(expand(&arg)?);
    }
    Ok(CommandLine {
        prefixes,
        path,
        argv,
    })
}

/// The next argument, or `None` at the end of this command: the end of the text or a
/// lone `;` (consumed). `\;` alone is a literal `;`.
fn take_arg(rest: &mut &str) -> Result<Option<String>, String> {
    *rest = rest.trim_start_matches(is_ws);
    let lone = |s: &str, w: &str| {
        s.strip_prefix(w)
            .is_some_and(|t| t.is_empty() || t.starts_with(is_ws))
    };
    if lone(rest, ";") {
        *rest = &rest[1..];
        return Ok(None);
    }
    if lone(rest, "\\;") {
        *rest = &rest[2..];
        return Ok(Some(";".into()));
    }
    next_word(rest)
}

/// The next word of a list setting (`Environment=`): quotes and C escapes as in a
/// command line.
pub fn word(rest: &mut &str) -> Result<Option<String>, String> {
    next_word(rest)
}

/// systemd's `extract_first_word_and_warn` with EXTRACT_UNQUOTE | EXTRACT_CUNESCAPE:
/// an unknown escape is kept as written (it retries with EXTRACT_CUNESCAPE_RELAX, and
/// only warns).
fn next_word(rest: &mut &str) -> Result<Option<String>, String> {
    let s = rest.trim_start_matches(is_ws);
    if s.is_empty() {
        *rest = s;
        return Ok(None);
    }
    let mut word: Vec<u8> = Vec::new();
    let mut quote: Option<char> = None;
    let mut chars = s.char_indices().peekable();
    let mut end = s.len();
    while let Some((i, c)) = chars.next() {
        match (quote, c) {
            (None, c) if is_ws(c) => {
                end = i;
                break;
            }
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (_, '\\') => {
                let tail = &s[i + 1..];
                if tail.is_empty() {
                    return Err("a backslash at the end of the line".into());
                }
                let (bytes, used) = match unescape_one(tail) {
                    Some(r) => r,
                    None => {
                        // Unknown escape: keep the backslash and the character.
                        let c = tail.chars().next().unwrap_or('\\');
                        let mut b = vec![b'\\'];
                        b.extend_from_slice(c.to_string().as_bytes());
                        (b, c.len_utf8())
                    }
                };
                word.extend_from_slice(&bytes);
                // Skip the characters the escape used.
                let stop = i + 1 + used;
                while chars.peek().is_some_and(|&(j, _)| j < stop) {
                    chars.next();
                }
            }
            (_, c) => {
                let mut buf = [0u8; 4];
                word.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    if let Some(q) = quote {
        return Err(format!("unterminated {q}quote"));
    }
    *rest = &s[end..];
    String::from_utf8(word)
        .map(Some)
        .map_err(|_| "an escape makes the word invalid UTF-8".to_string())
}

/// systemd's `cunescape_one`: the bytes of one escape after its backslash, and how many
/// bytes of `s` it used. `None` for an unknown or invalid escape (a NUL is invalid).
fn unescape_one(s: &str) -> Option<(Vec<u8>, usize)> {
    let b = s.as_bytes();
    let simple = match b[0] {
        b'a' => Some(7),
        b'b' => Some(8),
        b'f' => Some(12),
        b'n' => Some(b'\n'),
        b'r' => Some(b'\r'),
        b't' => Some(b'\t'),
        b'v' => Some(11),
        b'\\' => Some(b'\\'),
        b'"' => Some(b'"'),
        b'\'' => Some(b'\''),
        b's' => Some(b' '),
        _ => None,
    };
    if let Some(c) = simple {
        return Some((vec![c], 1));
    }
    let hex = |digits: &[u8]| -> Option<u32> {
        u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    };
    match b[0] {
        b'x' => {
            let v = hex(b.get(1..3)?)?;
            (v != 0).then(|| (vec![v as u8], 3))
        }
        b'u' | b'U' => {
            let n = if b[0] == b'u' { 4 } else { 8 };
            let v = hex(b.get(1..1 + n)?)?;
            let c = char::from_u32(v).filter(|&c| c != '\0')?;
            Some((c.to_string().into_bytes(), 1 + n))
        }
        b'0'..=b'7' => {
            let d = b.get(0..3)?;
            if !d.iter().all(|c| (b'0'..=b'7').contains(c)) {
                return None;
            }
            let v =
                u32::from(d[0] - b'0') * 64 + u32::from(d[1] - b'0') * 8 + u32::from(d[2] - b'0');
            (v != 0 && v < 256).then(|| (vec![v as u8], 3))
        }
        _ => None,
    }
}

/// What environment expansion found: names it used that have no value here.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Expansion {
    pub argv: Vec<String>,
    /// Variables referenced but not set in `env` (they expanded to nothing).
    pub unset: Vec<String>,
}

/// systemd's `replace_env_argv`: a word that is exactly `$NAME` becomes the value split
/// at whitespace (with quotes honoured), zero words when unset; elsewhere `${NAME}` is
/// replaced in place (`${NAME:-default}`, `${NAME:+alternate}` too), `$$` is `$`, and a
/// `$` followed by anything else stays as written.
pub fn expand_env(argv: &[String], env: &HashMap<String, String>) -> Expansion {
    let mut out = Expansion::default();
    for word in argv {
        let b = word.as_bytes();
        if b.first() == Some(&b'$') && !matches!(b.get(1), Some(b'{' | b'$')) {
            let name = &word[1..];
            match env.get(name) {
                Some(value) => out.argv.extend(split_value(value)),
                None => out.unset.push(name.to_string()),
            }
            continue;
        }
        out.argv.push(replace_in_word(word, env, &mut out.unset));
    }
    out
}

/// The words of a variable's value: whitespace-separated, quotes removed
/// (`strv_split_full` with EXTRACT_RELAX | EXTRACT_UNQUOTE: an unfinished quote runs to
/// the end).
fn split_value(value: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if is_ws(c) => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (_, '\\') => {
                in_word = true;
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            (_, c) => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

fn replace_in_word(word: &str, env: &HashMap<String, String>, unset: &mut Vec<String>) -> String {
    let mut out = String::with_capacity(word.len());
    let mut rest = word;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 1..];
        if let Some(t) = tail.strip_prefix('$') {
            out.push('$');
            rest = t;
        } else if let Some(t) = tail.strip_prefix('{') {
            let Some(close) = t.find('}') else {
                // Unterminated: kept as written.
                out.push_str(&rest[at..]);
                return out;
            };
            let inner = &t[..close];
            let (name, op) = match inner.find(":-").or_else(|| inner.find(":+")) {
                Some(i) => (&inner[..i], Some((&inner[i..i + 2], &inner[i + 2..]))),
                None => (inner, None),
            };
            let value = env.get(name).filter(|v| !v.is_empty());
            if env.get(name).is_none() {
                unset.push(name.to_string());
            }
            match (op, value) {
                (None, v) => out.push_str(v.map_or("", String::as_str)),
                (Some((":-", default)), None) => out.push_str(default),
                (Some((":-", _)), Some(v)) => out.push_str(v),
                (Some((_, alt)), Some(_)) => out.push_str(alt),
                (Some(_), None) => {}
            }
            rest = &t[close + 1..];
        } else {
            out.push('$');
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(s: &str) -> Result<String, String> {
        Ok(s.to_string())
    }

    fn parse(s: &str) -> Result<Vec<CommandLine>, String> {
        super::parse(s, &same)
    }

    fn one(s: &str) -> CommandLine {
        let mut v = parse(s).unwrap();
        assert_eq!(v.len(), 1, "{v:?}");
        v.remove(0)
    }

    #[test]
    fn test_parse_quotes_and_escapes() {
        let c = one(r#"/sbin/agetty -o '-p -- \\u' --noclear "a b"c\x41 \s x\.y"#);

        assert_eq!(
            c.argv,
            [
                "/sbin/agetty",
                "-o",
                "-p -- \\u",
                "--noclear",
                "a bcA",
                " ",
                "x\\.y"
            ]
        );
    }

    #[test]
    fn test_parse_prefixes() {
        let c = one("-@:/bin/sh sh -c true");
        assert!(c.prefixes.ignore_failure && c.prefixes.argv0 && c.prefixes.no_env);
        assert_eq!(c.path, "/bin/sh");
        assert_eq!(c.argv, ["sh", "-c", "true"]);

        let c = one("!!/usr/bin/x");
        assert!(c.prefixes.elevated);
        assert!(parse("+!/bin/x").is_err());
        assert!(parse("-").is_err());
    }

    #[test]
    fn test_parse_semicolon_separates_and_escaped_one_is_literal() {
        let v = parse("/bin/a x ; /bin/b \\; y").unwrap();

        assert_eq!(v.len(), 2);
        assert_eq!(v[0].argv, ["/bin/a", "x"]);
        assert_eq!(v[1].argv, ["/bin/b", ";", "y"]);
    }

    #[test]
    fn test_parse_refuses_unterminated_quote_and_bad_paths() {
        assert!(parse("/bin/echo 'abc").is_err());
        assert!(parse("/bin/echo \\").is_err());
        assert!(parse("bin/echo x").is_err());
        assert!(parse("/bin/echo \\x00").unwrap()[0].argv[1] == "\\x00");
    }

    #[test]
    fn test_expand_env_split_and_single() {
        let env: HashMap<String, String> = [
            ("OPTS".to_string(), "-a  'b c'".to_string()),
            ("E".to_string(), String::new()),
        ]
        .into();
        let argv: Vec<String> = [
            "/bin/x",
            "$OPTS",
            "${OPTS}",
            "p${NOPE}q",
            "$$HOME",
            "a$b",
            "$NONE",
            "${E:-d}",
            "${OPTS:+y}",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();

        let e = expand_env(&argv, &env);

        assert_eq!(
            e.argv,
            [
                "/bin/x",
                "-a",
                "b c",
                "-a  'b c'",
                "pq",
                "$HOME",
                "a$b",
                "d",
                "y"
            ]
        );
        assert_eq!(e.unset, ["NOPE", "NONE"]);
    }
}
