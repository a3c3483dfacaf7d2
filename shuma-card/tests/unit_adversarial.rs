//! Odd and hostile unit files: the converter refuses them with the file and line, or
//! converts what systemd would, and never panics.

use proptest::prelude::*;
use shuma_card::card;
use shuma_card::unit::{self, syntax, ConvertError, Machine, MemFs, Options};

const DIR: &str = "/lib/systemd/system";

fn convert(fs: &MemFs, units: &[&str]) -> Result<unit::Conversion, ConvertError> {
    let machine = Machine {
        fs,
        root: "/".into(),
    };
    let args: Vec<String> = units.iter().map(|s| s.to_string()).collect();
    unit::convert(&machine, &args, &Options::default())
}

fn one(text: &str) -> Result<unit::Conversion, ConvertError> {
    convert(
        &MemFs::new().file(&format!("{DIR}/x.service"), text),
        &["x.service"],
    )
}

#[test]
fn test_unterminated_quote_in_execstart_refused_with_line() {
    let err = one("[Unit]\nDescription=q\n[Service]\nExecStart=/bin/echo 'abc\n").unwrap_err();

    let text = err.to_string();
    assert!(
        text.starts_with("x.service:4: x.service refused: ExecStart: unterminated"),
        "{text}"
    );
}

#[test]
fn test_unterminated_quote_in_execstartpre_is_a_note() {
    let c = one("[Service]\nExecStartPre=/bin/echo \"abc\nExecStart=/bin/true\n").unwrap();

    let notes: Vec<String> = c.notes().map(ToString::to_string).collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with("x.service:2: ExecStartPre="),
        "{notes:?}"
    );
}

#[test]
fn test_huge_continuation_refused_with_its_first_line() {
    let mut text = String::from("[Service]\nExecStart=/bin/echo \\\n");
    for _ in 0..200_000 {
        text.push_str("  abcdefgh \\\n");
    }
    text.push_str("end\n");

    let err = one(&text).unwrap_err();

    assert!(err.to_string().contains(":2: line longer than"), "{err}");
}

#[test]
fn test_binary_bytes_ignored_line_by_line() {
    let mut bytes = b"[Service]\nExecStart=/bin/true\n".to_vec();
    bytes.extend_from_slice(b"Environment=A=\xff\xfe\x00\n\x00\x01\x02[\n");
    let fs = MemFs::new().bytes(&format!("{DIR}/x.service"), &bytes);

    let c = convert(&fs, &["x.service"]).unwrap();

    card::load_str(&c.card, "x").unwrap();
    assert!(
        c.units[0]
            .comments
            .iter()
            .any(|l| l.contains("NUL byte: ignored")),
        "{:?}",
        c.units[0].comments
    );
}

#[test]
fn test_nul_escape_in_argument_kept_literally_not_a_nul() {
    let c = one("[Service]\nExecStart=/bin/echo \\x00 \\0 \\000\n").unwrap();

    assert_eq!(
        c.spec.commands[0].argv,
        ["/bin/echo", "\\x00", "\\0", "\\000"]
    );
}

#[test]
fn test_symlink_loop_is_an_error_not_a_hang() {
    let fs = MemFs::new()
        .symlink(&format!("{DIR}/a.service"), "b.service")
        .symlink(&format!("{DIR}/b.service"), "a.service");

    let err = convert(&fs, &["a.service"]).unwrap_err();

    assert!(err.to_string().contains("symbolic links"), "{err}");
}

#[test]
fn test_bad_unit_names_and_templates_refused() {
    let fs = MemFs::new().file(
        &format!("{DIR}/t@.service"),
        "[Service]\nExecStart=/bin/true\n",
    );

    assert!(matches!(
        convert(&fs, &["../../etc/passwd"]),
        Err(ConvertError::Load(_))
    ));
    assert!(convert(&fs, &["no-type"]).is_err());
    assert!(convert(&fs, &["t@.service"])
        .unwrap_err()
        .to_string()
        .contains("INSTANCE"));
    assert!(convert(&fs, &["t@a.service"]).is_ok());
}

#[test]
fn test_strange_values_never_reach_the_card_invalid() {
    // Values the card would refuse: a relative working directory, a user with a
    // colon, a log file that is not absolute, a zero memory limit.
    let c = one(
        "[Service]\nExecStart=/bin/true\nWorkingDirectory=relative\nUser=a:b\nStandardOutput=append:rel.log\nMemoryMax=0\nCPUWeight=0\nKillSignal=SIGNOPE\nRestartSec=forever\n",
    );

    let c = c.unwrap();
    card::load_str(&c.card, "x").unwrap();
    let keys: Vec<&str> = c
        .notes()
        .map(|n| n.directive.split('=').next().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "WorkingDirectory",
            "User",
            "StandardOutput",
            "MemoryMax",
            "CPUWeight",
            "KillSignal",
            "RestartSec"
        ]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn test_syntax_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = syntax::parse(&bytes);
    }

    #[test]
    fn test_command_line_parse_never_panics(s in "\\PC{0,200}") {
        let same = |w: &str| Ok(w.to_string());
        let _ = unit::exec::parse(&s, &same);
    }

    #[test]
    fn test_convert_never_panics_and_every_card_loads(
        lines in proptest::collection::vec(
            prop_oneof![
                Just("[Service]".to_string()),
                Just("[Unit]".to_string()),
                "(ExecStart|ExecStartPre|ExecStartPost|Environment|User|Type|Restart|RestartSec|TimeoutStopSec|MemoryMax|CPUQuota|StandardOutput|WorkingDirectory|After|Requires|KillSignal|WatchdogSec|RuntimeDirectory)=[ -~]{0,40}",
                "[ -~]{0,40}",
            ],
            0..20,
        )
    ) {
        let mut text = String::from("[Service]\nExecStart=/bin/true\n");
        for l in lines {
            text.push_str(&l);
            text.push('\n');
        }
        if let Ok(c) = one(&text) {
            prop_assert!(card::load_str(&c.card, "x").is_ok(), "{}", c.card);
        }
    }
}
