//! Environment for a converted unit: `Environment=` assignments (quoted words of
//! `NAME=VALUE`) and `EnvironmentFile=` files in systemd's env-file syntax
//! (`parse_env_file`: comments, quotes, escapes, continuation lines).

/// An ordered environment: a later assignment of a name replaces the earlier value in
/// place, as `strv_env_merge` does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    pub vars: Vec<(String, String)>,
}

impl Env {
    pub fn set(&mut self, name: &str, value: &str) {
        match self.vars.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value.to_string(),
            None => self.vars.push((name.to_string(), value.to_string())),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// systemd's `env_name_is_valid`: letters, digits and `_`, not starting with a digit.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Assignments `NAME=VALUE`, in order.
pub type Assignments = Vec<(String, String)>;

/// The assignments of one `Environment=` value: words (quotes and C escapes as in a
/// command line) of `NAME=VALUE`. Words that are not valid assignments are returned
/// apart; systemd ignores them with a warning.
pub fn parse_assignments(
    value: &str,
    expand: &super::exec::Expand,
) -> Result<(Assignments, Vec<String>), String> {
    let mut rest = value;
    let mut good = Vec::new();
    let mut bad = Vec::new();
    while let Some(word) = super::exec::word(&mut rest)? {
        let word = expand(&word)?;
        match word.split_once('=') {
            Some((k, v)) if valid_name(k) => good.push((k.to_string(), v.to_string())),
            _ => bad.push(word),
        }
    }
    Ok((good, bad))
}

/// The assignments of an environment file, in order; invalid names are skipped.
pub fn parse_env_file(text: &str) -> Vec<(String, String)> {
    #[derive(Clone, Copy, PartialEq)]
    enum S {
        PreKey,
        Key,
        PreValue,
        Value,
        ValueEscape,
        Single,
        Double,
        DoubleEscape,
        Comment,
        CommentEscape,
    }
    let mut out = Vec::new();
    let mut state = S::PreKey;
    let mut key = String::new();
    let mut value = String::new();
    // Length of `value` up to its last non-blank character outside quotes, so trailing
    // blanks of an unquoted value are dropped.
    let mut keep = 0;
    let mut finish = |key: &mut String, value: &mut String, keep: usize| {
        let k = key.trim_end().to_string();
        value.truncate(keep);
        // A NUL cannot be in an environment variable.
        if valid_name(&k) && !value.contains('\0') {
            out.push((k, std::mem::take(value)));
        }
        key.clear();
        value.clear();
    };
    for c in text.chars() {
        match state {
            S::PreKey => match c {
                '#' | ';' => state = S::Comment,
                c if c.is_whitespace() => {}
                c => {
                    key.push(c);
                    state = S::Key;
                }
            },
            S::Key => match c {
                '\n' | '\r' => {
                    key.clear();
                    state = S::PreKey;
                }
                '=' => state = S::PreValue,
                c => key.push(c),
            },
            S::PreValue => match c {
                '\n' | '\r' => {
                    let quoted = value.len();
                    finish(&mut key, &mut value, quoted);
                    state = S::PreKey;
                }
                '\'' => state = S::Single,
                '"' => state = S::Double,
                '\\' => state = S::ValueEscape,
                c if c.is_whitespace() => {}
                c => {
                    value.push(c);
                    keep = value.len();
                    state = S::Value;
                }
            },
            S::Value => match c {
                '\n' | '\r' => {
                    finish(&mut key, &mut value, keep);
                    state = S::PreKey;
                }
                '\\' => state = S::ValueEscape,
                c => {
                    value.push(c);
                    if !c.is_whitespace() {
                        keep = value.len();
                    }
                }
            },
            S::ValueEscape => {
                // A backslash-newline continues the value on the next line.
                if c != '\n' {
                    value.push(c);
                    keep = value.len();
                }
                state = S::Value;
            }
            // After a closing quote systemd goes back to before-the-value: blanks are
            // skipped and another part may follow ('a' b is "ab").
            S::Single => match c {
                '\'' => {
                    keep = value.len();
                    state = S::PreValue;
                }
                c => value.push(c),
            },
            S::Double => match c {
                '"' => {
                    keep = value.len();
                    state = S::PreValue;
                }
                '\\' => state = S::DoubleEscape,
                c => value.push(c),
            },
            S::DoubleEscape => {
                match c {
                    '\n' => {}
                    '"' | '\\' | '`' | '$' => value.push(c),
                    c => {
                        value.push('\\');
                        value.push(c);
                    }
                }
                state = S::Double;
            }
            S::Comment => match c {
                '\\' => state = S::CommentEscape,
                '\n' | '\r' => state = S::PreKey,
                _ => {}
            },
            S::CommentEscape => state = S::Comment,
        }
    }
    match state {
        S::PreValue => {
            let quoted = value.len();
            finish(&mut key, &mut value, quoted)
        }
        S::Value | S::ValueEscape | S::Single | S::Double | S::DoubleEscape => {
            let keep = if matches!(state, S::Value | S::ValueEscape) {
                keep
            } else {
                value.len()
            };
            finish(&mut key, &mut value, keep)
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_assignments_quotes_and_invalid_words() {
        let same = |s: &str| Ok(s.to_string());
        let (good, bad) =
            parse_assignments(r#"A=1 "B=two words" C='x y' 9X=no junk"#, &same).unwrap();

        assert_eq!(
            good,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "x y".into())
            ]
        );
        assert_eq!(bad, ["9X=no", "junk"]);
    }

    #[test]
    fn test_parse_env_file_forms() {
        let text = "# comment\n; also\nA=1\n  B = spaced value   \nC=\"quoted \\\"x\\\" \\$y\"\nD='single \\n'\nE=line\\\ncontinued\nbad-name=x\nF=\nG=a\"b c\"d\n";

        let vars = parse_env_file(text);

        assert_eq!(
            vars,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "spaced value".into()),
                ("C".into(), "quoted \"x\" $y".into()),
                ("D".into(), "single \\n".into()),
                ("E".into(), "linecontinued".into()),
                ("F".into(), String::new()),
                ("G".into(), "a\"b c\"d".into()),
            ]
        );
    }

    #[test]
    fn test_env_set_replaces_in_place() {
        let mut e = Env::default();
        e.set("A", "1");
        e.set("B", "2");
        e.set("A", "3");

        assert_eq!(
            e.vars,
            vec![("A".into(), "3".into()), ("B".into(), "2".into())]
        );
    }
}
