//! Golden tests of the unit converter, one directory per directive family under
//! tests/units/golden/: `root/` is the machine (its /etc/systemd/system,
//! /lib/systemd/system, /etc/default, /etc/passwd, programs), `args` the units to
//! convert (one per line; a line `--workspace NAME` names the workspace), and the
//! expected outcome is `card.toml` plus `notes.txt` (one note a line), or `error.txt`
//! when the conversion is refused. `UPDATE_GOLDEN=1 cargo test -p shuma-card --test
//! unit_golden` rewrites them; review the diff.

use std::fs;
use std::path::Path;

use shuma_card::card;
use shuma_card::unit::{self, Machine, Options, OsFs};

fn check(case: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/units/golden")
        .join(case);
    let args_text = fs::read_to_string(dir.join("args")).unwrap();
    let mut options = Options::default();
    let mut args = Vec::new();
    for line in args_text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match line.strip_prefix("--workspace ") {
            Some(w) => options.workspace = Some(w.to_string()),
            None => args.push(line.to_string()),
        }
    }
    let machine = Machine {
        fs: &OsFs,
        root: dir.join("root"),
    };
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let expect = |file: &str, got: &str| {
        let path = dir.join(file);
        if update {
            fs::write(&path, got).unwrap();
            return;
        }
        let want = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
        assert_eq!(
            got, want,
            "{case}/{file} differs (UPDATE_GOLDEN=1 rewrites it)"
        );
    };
    match unit::convert(&machine, &args, &options) {
        Ok(c) => {
            let loaded = card::load_str(&c.card, "card.toml").expect("the card loads");
            assert_eq!(loaded, c.spec);
            expect("card.toml", &c.card);
            let notes: String = c.notes().map(|n| format!("{n}\n")).collect();
            expect("notes.txt", &notes);
            assert!(!dir.join("error.txt").exists() || update);
        }
        Err(e) => expect("error.txt", &format!("{e}\n")),
    }
}

#[test]
fn test_golden_quoting_and_prefixes() {
    check("quoting");
}

#[test]
fn test_golden_specifiers_of_an_instance() {
    check("specifiers");
}

#[test]
fn test_golden_dropins_merged_in_order_etc_masks_lib() {
    check("dropins");
}

#[test]
fn test_golden_unit_masked_in_etc_is_refused() {
    check("masked");
}

#[test]
fn test_golden_unit_in_etc_replaces_lib() {
    check("override");
}

#[test]
fn test_golden_template_instance_and_alias() {
    check("templates");
}

#[test]
fn test_golden_units_ordered_among_themselves() {
    check("deps");
}

#[test]
fn test_golden_service_settings_and_limits() {
    check("settings");
}

#[test]
fn test_golden_directories_rlimits_and_kill_mode() {
    check("host");
}

#[test]
fn test_golden_oneshot_chain_is_tasks() {
    check("oneshot");
}

#[test]
fn test_golden_socket_unit_refused() {
    check("socket");
}

#[test]
fn test_golden_target_between_converted_units_kept_as_order() {
    check("targets");
}

#[test]
fn test_golden_after_a_converted_services_socket_is_after_the_service() {
    check("socket-order");
}
