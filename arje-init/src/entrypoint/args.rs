//! Entrypoint mode's command line: `arje-init [-g] [-v...] [--log-level L] -- PROGRAM
//! ARGS...`. It is recognised before the normal parser runs (`args::parse`), and only
//! when a `--` ends a run of this mode's own options, so a machine's PID 1, whose
//! arguments are kernel command-line words without a `--`, never lands here.
//!
//! The words come as `OsString`s: PROGRAM and its arguments are passed on byte for byte,
//! and a word that is not UTF-8 must not make arje panic (`std::env::args` would).

use std::ffi::OsString;

/// What entrypoint mode was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `-g`, `--forward-to-group`: forward signals to the child's process group, not
    /// only to the child.
    pub to_group: bool,
    /// `-v` (info), `-vv` (debug), `-vvv` (trace), or `--log-level`. Warnings and
    /// errors only by default, as tini: an entrypoint's stderr belongs to its program.
    pub log_level: log::LevelFilter,
    /// PROGRAM and its arguments; never empty.
    pub program: Vec<OsString>,
}

/// How the command line reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detected {
    /// Not entrypoint mode: the normal parser takes the command line.
    No,
    /// Entrypoint mode, well formed.
    Run(Options),
    /// Entrypoint mode (a `--` was there), but malformed: the message says why.
    Usage(String),
}

/// Reads the arguments after argv[0].
pub fn detect<I: IntoIterator<Item = OsString>>(args: I) -> Detected {
    let mut it = args.into_iter();
    let mut to_group = false;
    let mut log_level = log::LevelFilter::Warn;
    let mut problem = None;
    while let Some(arg) = it.next() {
        if arg == "--" {
            let program: Vec<OsString> = it.collect();
            return match (problem, program.is_empty()) {
                (Some(p), _) => Detected::Usage(p),
                (None, true) => Detected::Usage("-- needs a PROGRAM to run".into()),
                (None, false) => Detected::Run(Options {
                    to_group,
                    log_level,
                    program,
                }),
            };
        }
        let Some(word) = arg.to_str() else {
            return Detected::No;
        };
        let (flag, inline) = match word.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (word, None),
        };
        match flag {
            "-g" | "--forward-to-group" => to_group = true,
            "--log-level" => {
                let value = inline.or_else(|| it.next().and_then(|v| v.into_string().ok()));
                match value.as_deref().map(str::parse) {
                    Some(Ok(level)) => log_level = level,
                    _ => problem = Some(format!("--log-level: bad value {value:?}")),
                }
            }
            v if v.len() > 1 && v.starts_with('-') && v[1..].bytes().all(|b| b == b'v') => {
                log_level = verbosity(v.len() - 1);
            }
            _ => return Detected::No,
        }
    }
    Detected::No
}

/// The level of `-v` repeated `n` times.
fn verbosity(n: usize) -> log::LevelFilter {
    match n {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        2 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect_strs(v: &[&str]) -> Detected {
        detect(v.iter().map(OsString::from))
    }

    fn program(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn test_detect_bare_dashes_runs_program() {
        // Arrange
        let argv = ["--", "sleep", "-g", "--", "1"];

        // Act
        let d = detect_strs(&argv);

        // Assert: everything after the first `--` is the program's, flags included.
        assert_eq!(
            d,
            Detected::Run(Options {
                to_group: false,
                log_level: log::LevelFilter::Warn,
                program: program(&["sleep", "-g", "--", "1"]),
            })
        );
    }

    #[test]
    fn test_detect_own_flags_before_dashes_are_read() {
        // Arrange
        let argv = ["-g", "-vv", "--", "true"];

        // Act
        let d = detect_strs(&argv);

        // Assert
        let Detected::Run(o) = d else { panic!("{d:?}") };
        assert!(o.to_group);
        assert_eq!(o.log_level, log::LevelFilter::Debug);
        assert_eq!(o.program, program(&["true"]));
    }

    #[test]
    fn test_detect_long_flags_inline_value_read() {
        // Arrange
        let argv = ["--forward-to-group", "--log-level=trace", "--", "x"];

        // Act
        let d = detect_strs(&argv);

        // Assert
        let Detected::Run(o) = d else { panic!("{d:?}") };
        assert!(o.to_group);
        assert_eq!(o.log_level, log::LevelFilter::Trace);
    }

    #[test]
    fn test_detect_no_dashes_is_not_entrypoint() {
        // Arrange: normal mode's flags, a kernel command-line word, or -g without `--`.
        let cases: [&[&str]; 4] = [
            &["--subreaper", "--socket", "/s"],
            &["single"],
            &["-g"],
            &[],
        ];

        // Act
        let got: Vec<_> = cases.iter().map(|c| detect_strs(c)).collect();

        // Assert
        assert!(got.iter().all(|d| *d == Detected::No), "{got:?}");
    }

    #[test]
    fn test_detect_other_flag_before_dashes_is_not_entrypoint() {
        // Arrange: `--` after a normal-mode flag is the normal parser's to refuse.
        let argv = ["--subreaper", "--", "true"];

        // Act
        let d = detect_strs(&argv);

        // Assert
        assert_eq!(d, Detected::No);
    }

    #[test]
    fn test_detect_dashes_without_program_is_usage() {
        // Arrange
        let argv = ["-g", "--"];

        // Act
        let d = detect_strs(&argv);

        // Assert
        assert!(matches!(d, Detected::Usage(_)), "{d:?}");
    }

    #[test]
    fn test_detect_bad_log_level_is_usage() {
        // Arrange
        let argv = ["--log-level", "loud", "--", "true"];

        // Act
        let d = detect_strs(&argv);

        // Assert
        assert!(
            matches!(d, Detected::Usage(ref m) if m.contains("loud")),
            "{d:?}"
        );
    }

    #[test]
    fn test_detect_non_utf8_program_passed_through() {
        // Arrange
        use std::os::unix::ffi::OsStringExt;
        let odd = OsString::from_vec(vec![0x66, 0xff, 0x6f]);
        let argv = vec![OsString::from("--"), odd.clone()];

        // Act
        let d = detect(argv);

        // Assert
        let Detected::Run(o) = d else { panic!("{d:?}") };
        assert_eq!(o.program, vec![odd]);
    }
}
