//! The converter over the real unit files of Debian 12 (shuma-card/tests/units/debian,
//! fetched by fetch-debian-units.sh): every `.service` the packages ship is converted
//! on a root made of those packages' files, and every card made loads with the card
//! loader, the validation `shuma ws create` applies.
//!
//! The test also makes the table of docs/UNITS.md and checks that the document shows
//! it; after a change to the converter, refresh it with
//! `UPDATE_UNITS_TABLE=1 cargo test -p shuma-card --test unit_corpus`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use shuma_card::card;
use shuma_card::unit::{self, ConvertError, LoadError, Machine, Options, OsFs};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/units/debian")
}

/// Copy `src` into `dst`, symlinks as symlinks.
fn copy_tree(src: &Path, dst: &Path) {
    for entry in fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            fs::create_dir_all(&to).unwrap();
            copy_tree(&from, &to);
        } else if kind.is_symlink() {
            let _ = fs::remove_file(&to);
            std::os::unix::fs::symlink(fs::read_link(&from).unwrap(), &to).unwrap();
        } else {
            fs::copy(&from, &to).unwrap();
        }
    }
}

/// A root file system made of the packages' files, with every program they install
/// present as an empty executable.
fn build_root() -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("debian-units-root");
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).unwrap();
    for entry in fs::read_dir(corpus()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &root);
        }
    }
    let programs = fs::read_to_string(corpus().join("PROGRAMS")).unwrap();
    for program in programs.lines() {
        use std::os::unix::fs::PermissionsExt;
        let path = root.join(program.trim_start_matches('/'));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        if fs::symlink_metadata(&path).is_err() {
            fs::write(&path, b"").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    root
}

/// The instance a template is converted with: a plausible one where the template
/// needs a particular form, `example` otherwise.
fn instance(template: &str) -> &'static str {
    match template {
        "getty@.service" | "autovt@.service" | "container-getty@.service" => "tty1",
        "serial-getty@.service" => "ttyS0",
        "postgresql@.service"
        | "pg_basebackup@.service"
        | "pg_compresswal@.service"
        | "pg_dump@.service"
        | "pg_receivewal@.service" => "15-main",
        "ifup@.service" => "eth0",
        "modprobe@.service" => "loop",
        "systemd-fsck@.service" | "e2scrub@.service" | "e2scrub_fail@.service" => "dev-vda1",
        _ => "example",
    }
}

#[derive(Default)]
struct Tally {
    complete: Vec<String>,
    with_notes: Vec<String>,
    refused: BTreeMap<String, Vec<String>>,
    masked: Vec<String>,
    aliases: Vec<String>,
    /// Directive key -> units that have a note on it.
    directives: BTreeMap<String, BTreeSet<String>>,
    notes: usize,
    partly: usize,
}

fn refusal_kind(e: &ConvertError) -> String {
    match e {
        ConvertError::Load(LoadError::Masked { .. }) => "masked".into(),
        ConvertError::Refused { reason, .. } if reason.starts_with("no ExecStart") => {
            "no ExecStart= (nothing to run)".into()
        }
        ConvertError::Refused { reason, .. } if reason.contains("executable search path") => {
            "a program not found in the search path".into()
        }
        ConvertError::Refused { reason, .. } if reason.contains("specifiers") => {
            "a specifier known only at run time in ExecStart=".into()
        }
        ConvertError::Refused { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

fn convert_all(root: &Path) -> Tally {
    let machine = Machine {
        fs: &OsFs,
        root: root.to_path_buf(),
    };
    let mut names = BTreeSet::new();
    for dir in ["lib/systemd/system", "usr/lib/systemd/system"] {
        let Ok(entries) = fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            if name.ends_with(".service") && !e.file_type().unwrap().is_dir() {
                names.insert((name, e.path()));
            }
        }
    }
    let mut t = Tally::default();
    for (name, path) in names {
        if let Ok(target) = fs::read_link(&path) {
            if target == Path::new("/dev/null") {
                t.masked.push(name);
            } else {
                t.aliases.push(name);
            }
            continue;
        }
        let arg = match name.strip_suffix("@.service") {
            Some(prefix) => format!("{prefix}@{}.service", instance(&name)),
            None => name.clone(),
        };
        match unit::convert(&machine, std::slice::from_ref(&arg), &Options::default()) {
            Ok(c) => {
                let loaded = card::load_str(&c.card, &arg)
                    .unwrap_or_else(|e| panic!("{arg}: the card does not load: {e}\n{}", c.card));
                assert_eq!(loaded, c.spec, "{arg}");
                assert!(!loaded.commands.is_empty(), "{arg}");
                for n in c.notes() {
                    t.notes += 1;
                    if n.text.starts_with("partly") {
                        t.partly += 1;
                    }
                    let key = n.directive.split('=').next().unwrap_or("").to_string();
                    t.directives.entry(key).or_default().insert(arg.clone());
                }
                if c.complete() {
                    t.complete.push(arg);
                } else {
                    t.with_notes.push(arg);
                }
            }
            Err(ConvertError::Load(LoadError::Masked { .. })) => t.masked.push(name),
            Err(e) => t.refused.entry(refusal_kind(&e)).or_default().push(arg),
        }
    }
    t
}

fn table(t: &Tally) -> String {
    let refused: usize = t.refused.values().map(Vec::len).sum();
    let total = t.complete.len() + t.with_notes.len() + refused;
    let mut s = String::new();
    s.push_str(&format!(
        "{total} services of {} Debian 12 packages (templates with an instance: `getty@tty1`, `postgresql@15-main`, ...):\n\n",
        fs::read_dir(corpus()).unwrap().filter(|e| e.as_ref().unwrap().file_type().unwrap().is_dir()).count()
    ));
    s.push_str("| outcome | units |\n| --- | --- |\n");
    s.push_str(&format!(
        "| converted completely | {} |\n",
        t.complete.len()
    ));
    s.push_str(&format!(
        "| converted, with notes | {} |\n",
        t.with_notes.len()
    ));
    s.push_str(&format!("| refused | {refused} |\n"));
    s.push_str(&format!(
        "\nNot counted: {} aliases (symlinks to another unit file, converted as it) and {} units the packages ship masked (symlinks to /dev/null).\n",
        t.aliases.len(),
        t.masked.len()
    ));
    s.push_str(&format!(
        "\nConverted completely: {}.\n",
        t.complete
            .iter()
            .map(|u| format!("`{u}`"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    s.push_str("\n| refused because | units |\n| --- | --- |\n");
    for (why, units) in &t.refused {
        s.push_str(&format!(
            "| {why} | {} ({}) |\n",
            units.len(),
            units
                .iter()
                .map(|u| format!("`{u}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    s.push_str(&format!(
        "\n{} notes in all, {} of them \"partly translated\". The directives most often not translated, by the number of units with a note on them:\n\n",
        t.notes, t.partly
    ));
    s.push_str("| directive | units |\n| --- | --- |\n");
    let mut by_count: Vec<(&String, usize)> =
        t.directives.iter().map(|(k, v)| (k, v.len())).collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    for (key, n) in by_count.iter().take(30) {
        s.push_str(&format!("| `{key}=` | {n} |\n"));
    }
    s
}

const BEGIN: &str = "<!-- corpus-table: generated by shuma-card/tests/unit_corpus.rs -->\n";
const END: &str = "<!-- /corpus-table -->";

#[test]
fn test_debian_corpus_every_service_converts_or_is_refused_and_every_card_loads() {
    // Arrange
    let root = build_root();

    // Act
    let t = convert_all(&root);

    // Assert
    for core in [
        "ssh.service",
        "nginx.service",
        "cron.service",
        "rsyslog.service",
        "dbus.service",
        "getty@tty1.service",
        "postgresql@15-main.service",
    ] {
        assert!(
            t.complete.iter().chain(&t.with_notes).any(|u| u == core),
            "{core} was not converted: refused {:?}",
            t.refused
        );
    }
    assert!(t.complete.len() + t.with_notes.len() > 100);
    let table = table(&t);
    println!("{table}");
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/UNITS.md");
    let text = fs::read_to_string(&docs).unwrap_or_default();
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        panic!("docs/UNITS.md has no corpus table between {BEGIN:?} and {END:?}");
    };
    let shown = &text[b + BEGIN.len()..e];
    if std::env::var_os("UPDATE_UNITS_TABLE").is_some() {
        let updated = format!("{}{BEGIN}{table}{}", &text[..b], &text[e..]);
        fs::write(&docs, updated).unwrap();
    } else {
        assert_eq!(shown, table, "docs/UNITS.md shows another table: refresh it with UPDATE_UNITS_TABLE=1 cargo test -p shuma-card --test unit_corpus");
    }
}
