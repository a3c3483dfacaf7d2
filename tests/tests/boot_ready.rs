//! QEMU boot test of readiness and dependencies (issue 10): arje-init as PID 1 boots
//! scenario `readiness` (tests/scenarios/readiness), whose run.sh creates two workspaces
//! with `shuma ws create --wait-ready` and prints what happened as `SCENARIO readiness:
//! TAG: ...` lines: `ps`, logs, shuma's stderr and the whole journal (`event`). The order
//! of starts and readiness is read here from the journal's event ids, never from time.
//!
//! The console is kept in target/vm-logs/boot_readiness.log.

use arje_tests::vm::{End, Vm, VmOpts};

const SCENARIO: &str = "readiness";

/// The line the stuck service writes to its stderr before it hangs (extra/stuck.toml).
const MUTE_STDERR: &str = "mute: cannot open /var/lib/mute/db: No such file or directory";

/// What the scenario printed under `tag`, prefix removed, in console order.
fn tagged<'a>(vm: &'a Vm, tag: &str) -> Vec<&'a str> {
    let prefix = format!("SCENARIO {SCENARIO}: {tag}: ");
    vm.lines_with(&prefix)
        .into_iter()
        .filter_map(|l| l.split_once(&prefix).map(|(_, rest)| rest))
        .collect()
}

/// The scenario printed a line ending with exactly `text`.
fn assert_said(vm: &Vm, text: &str) {
    let line = format!("SCENARIO {SCENARIO}: {text}");
    assert!(
        vm.lines_with(&line)
            .iter()
            .any(|l| l.trim_end().ends_with(&line)),
        "no console line {line:?}; tail:\n{}",
        vm.tail(80)
    );
}

/// The journal as `shuma events` printed it: (id, text) per event. A text of several
/// lines continues on indented lines, which are joined to it with newlines.
fn events(vm: &Vm) -> Vec<(u64, String)> {
    let mut out: Vec<(u64, String)> = Vec::new();
    for line in tagged(vm, "event") {
        // "ID  TIME  TEXT"
        let event = line.split_once(char::is_whitespace).and_then(|(id, rest)| {
            let (_time, text) = rest.trim_start().split_once(char::is_whitespace)?;
            Some((id.parse().ok()?, text.trim_start().to_string()))
        });
        match (event, out.last_mut()) {
            (Some(event), _) => out.push(event),
            (None, Some((_, text))) => {
                text.push('\n');
                text.push_str(line.trim_start());
            }
            (None, None) => {}
        }
    }
    out
}

/// The id of the first event whose text contains `needle`.
fn id_of(events: &[(u64, String)], needle: &str) -> u64 {
    events
        .iter()
        .find(|(_, text)| text.contains(needle))
        .map(|(id, _)| *id)
        .unwrap_or_else(|| panic!("no event with {needle:?} in {events:#?}"))
}

/// `shuma ps` rows under `tag`: (NAME, STATE, READY) per command.
fn ps_rows(vm: &Vm, tag: &str) -> Vec<(String, String, String)> {
    let lines = tagged(vm, tag);
    let header: Vec<&str> = lines
        .first()
        .unwrap_or_else(|| panic!("no {tag} lines; tail:\n{}", vm.tail(80)))
        .split_whitespace()
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no {name} column in {header:?}"))
    };
    let (name, state, ready) = (col("NAME"), col("STATE"), col("READY"));
    // Every column before READY is a single word, so splitting on blanks finds it.
    lines[1..]
        .iter()
        .map(|row| {
            let cells: Vec<&str> = row.split_whitespace().collect();
            (
                cells[name].to_string(),
                cells[state].to_string(),
                cells[ready].to_string(),
            )
        })
        .collect()
}

#[test]
fn test_readiness_chain_starts_in_dependency_order_and_a_never_ready_service_is_named_with_its_stderr(
) {
    // Arrange
    let mut vm = Vm::boot(VmOpts::scenario("boot_readiness", SCENARIO));

    // Act
    let end = vm.wait_end();
    eprintln!("figure: {} wall={:.1}s", vm.name(), vm.wall().as_secs_f64());

    // Assert: every in-guest check passed, and the guest powered off.
    let failed = vm.lines_with(&format!("SCENARIO {SCENARIO}: FAILED"));
    assert!(
        failed.is_empty(),
        "failed checks {failed:?}; console:\n{}",
        vm.console()
    );
    for check in [
        "wait-ready-web",
        "probe-in-service-leaf",
        "probe-leaf-is-cache",
        "stop-chain",
        "stop-stuck",
    ] {
        assert_said(&vm, &format!("ok {check}"));
    }
    assert_said(&vm, "PASS");
    assert_eq!(end, End::Poweroff, "tail:\n{}", vm.tail(60));

    // The chain: --wait-ready returned 0 with every command ready.
    assert_said(&vm, "chain --wait-ready exit 0");
    let ps = ps_rows(&vm, "ps");
    let expected = [
        ("web", "running"),
        ("cache", "running"),
        ("db", "running"),
        ("net", "exited"),
    ];
    for (name, state) in expected {
        assert!(
            ps.iter()
                .any(|(n, s, r)| n == name && s == state && r == "yes"),
            "{name} is not {state} and ready in {ps:#?}"
        );
    }
    // web fetched its page from db: db was serving when web started.
    let web_log = tagged(&vm, "web-log").join("\n");
    assert!(
        web_log.contains("web: listening, db said db-says-hello"),
        "web said {web_log:?}"
    );

    // Start order from the journal. The card lists web first and net last, so only the
    // dependencies can give this order.
    let ev = events(&vm);
    let net_exited = id_of(&ev, "chain/net pid");
    let db_started = id_of(&ev, "chain/db started pid");
    let db_ready = id_of(&ev, "chain/db ready after");
    let cache_ready = id_of(&ev, "chain/cache ready after");
    let web_started = id_of(&ev, "chain/web started pid");
    let web_ready = id_of(&ev, "chain/web ready after");
    assert!(
        ev.iter()
            .any(|(id, t)| *id == net_exited && t.ends_with("exited: exit 0")),
        "net did not exit 0: {ev:#?}"
    );
    assert!(
        net_exited < db_started,
        "db started before net ended: {ev:#?}"
    );
    assert!(db_started < db_ready, "{ev:#?}");
    assert!(
        db_ready < web_started,
        "web started before db was ready: {ev:#?}"
    );
    assert!(
        cache_ready < web_started,
        "web started before cache was ready: {ev:#?}"
    );
    assert!(web_started < web_ready, "{ev:#?}");

    // Stop order is the reverse: web goes before what it is after.
    let web_exited = id_of(&ev, "chain/web pid");
    assert!(web_exited < id_of(&ev, "chain/db pid"), "{ev:#?}");
    assert!(web_exited < id_of(&ev, "chain/cache pid"), "{ev:#?}");

    // The stuck workspace: --wait-ready exits 4 naming the service, ending with its stderr;
    // a second wait-ready on it gives the same verdict.
    assert_said(&vm, "stuck --wait-ready exit 4");
    let verdict = tagged(&vm, "stuck-stderr").join("\n");
    assert!(verdict.contains("stuck/mute"), "verdict {verdict:?}");
    assert!(verdict.contains(MUTE_STDERR), "verdict {verdict:?}");
    assert_said(&vm, "stuck wait-ready exit 4");
    let again = tagged(&vm, "stuck-again-stderr").join("\n");
    assert!(
        again.contains("stuck/mute") && again.contains(MUTE_STDERR),
        "second verdict {again:?}"
    );
    let not_ready = id_of(&ev, "stuck/mute not ready:");
    assert!(
        ev.iter()
            .any(|(id, t)| *id == not_ready && t.contains(MUTE_STDERR)),
        "the not-ready event has no stderr: {ev:#?}"
    );
    // ps shows it not ready; what requires it never started.
    let stuck = ps_rows(&vm, "stuck-ps");
    assert!(
        stuck.iter().any(|(n, _, r)| n == "mute" && r == "no"),
        "{stuck:#?}"
    );
    assert!(
        !ev.iter().any(|(_, t)| t.contains("stuck/client started")),
        "client started without the service it requires: {ev:#?}"
    );
}
