//! QEMU boot tests of state that survives (issue 5): a reboot restores workspaces with
//! their limits and restarts their services from the durable copy on the state disk; a
//! power cut during churn is followed by a boot that restores the last durable copy; a
//! live re-exec keeps PID 1, the children, their uptimes, their output and the clients.
//!
//! Scenarios: tests/scenarios/state-reboot, state-churn, state-reexec (what the first boot
//! does) and state-check (what a second boot prints about the restored state). Five boots
//! in all. Consoles are kept in target/vm-logs/<name>.log.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use arje_tests::vm::{make_ext4_image, number_after, End, Vm, VmOpts};
use shuma_card::snapshot::Snapshot;

/// A boot of `scenario` with the state disk `disk` as /dev/vda (mounted on
/// /var/lib/arje, the durable directory).
fn disk_opts(name: &str, scenario: &str, disk: &Path) -> VmOpts {
    let mut o = VmOpts::scenario(name, scenario);
    o.append.push_str(" arje.state=/dev/vda");
    o.disk = Some(disk.to_path_buf());
    o
}

/// The text after "SCENARIO `scenario`: " of every such console line.
fn said(vm: &Vm, scenario: &str) -> Vec<String> {
    let prefix = format!("SCENARIO {scenario}: ");
    vm.lines_with(&prefix)
        .iter()
        .filter_map(|l| l.split_once(&prefix).map(|(_, rest)| rest.to_string()))
        .collect()
}

/// The first said line starting with `head`, without it.
fn said_after(vm: &Vm, scenario: &str, head: &str) -> String {
    said(vm, scenario)
        .into_iter()
        .find_map(|l| l.strip_prefix(head).map(str::to_string))
        .unwrap_or_else(|| {
            panic!(
                "no \"SCENARIO {scenario}: {head}\" line; tail:\n{}",
                vm.tail(60)
            )
        })
}

/// A workspace as state-check printed it.
#[derive(Debug, PartialEq, Eq)]
struct WsLine {
    name: String,
    state: String,
    memory_max: String,
    pids_max: String,
}

/// A command as state-check printed it: workspace, name, pid, state and the cgroup the
/// pid is in according to /proc/PID/cgroup.
#[derive(Debug, PartialEq, Eq)]
struct CmdLine {
    ws: String,
    name: String,
    pid: String,
    state: String,
    cgroup: String,
}

fn check_lines(vm: &Vm) -> (Vec<WsLine>, Vec<CmdLine>) {
    let mut wss = Vec::new();
    let mut cmds = Vec::new();
    for line in said(vm, "state-check") {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["ws", name, state, mem, pids] => wss.push(WsLine {
                name: name.to_string(),
                state: state.to_string(),
                memory_max: mem.trim_start_matches("memory.max=").to_string(),
                pids_max: pids.trim_start_matches("pids.max=").to_string(),
            }),
            ["cmd", ws, name, pid, state, cgroup] => cmds.push(CmdLine {
                ws: ws.to_string(),
                name: name.to_string(),
                pid: pid.to_string(),
                state: state.to_string(),
                cgroup: cgroup.to_string(),
            }),
            _ => {}
        }
    }
    (wss, cmds)
}

fn assert_line(vm: &Vm, needle: &str) {
    assert!(
        !vm.lines_with(needle).is_empty(),
        "no console line with {needle:?}; tail:\n{}",
        vm.tail(60)
    );
}

fn assert_no_line(vm: &Vm, needle: &str) {
    let found = vm.lines_with(needle);
    assert!(found.is_empty(), "console has {needle:?}: {found:?}");
}

fn figure(vm: &Vm) {
    eprintln!("figure: {} wall={:.1}s", vm.name(), vm.wall().as_secs_f64());
}

/// The durable snapshot as the guest left it on `disk`: read from a copy of the image
/// whose ext4 journal e2fsck has replayed (as the guest kernel does at its next mount),
/// so the original stays exactly as the power cut left it for the next boot.
fn durable_on_disk(disk: &Path) -> Snapshot {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.img");
    std::fs::copy(disk, &copy).unwrap_or_else(|e| panic!("copy {}: {e}", disk.display()));
    let fsck = Command::new("e2fsck")
        .args(["-f", "-y"])
        .arg(&copy)
        .output()
        .expect("run e2fsck");
    // 0: clean, 1: errors corrected (a replayed journal counts); 4 and up: not fixed.
    assert!(
        fsck.status.code().is_some_and(|c| c < 4),
        "e2fsck {}: {}\n{}",
        copy.display(),
        fsck.status,
        String::from_utf8_lossy(&fsck.stdout)
    );
    let out = dir.path().join("snapshot.bin");
    let dump = Command::new("debugfs")
        .arg("-R")
        .arg(format!("dump /snapshot.bin {}", out.display()))
        .arg(&copy)
        .output()
        .expect("run debugfs");
    let bytes = std::fs::read(&out).unwrap_or_else(|e| {
        panic!(
            "no snapshot.bin on {} ({e}); debugfs: {}",
            disk.display(),
            String::from_utf8_lossy(&dump.stderr)
        )
    });
    shuma_card::snapshot::decode(&bytes)
        .unwrap_or_else(|e| panic!("durable snapshot on {}: {e}", disk.display()))
}

/// The `"key":value` of a one-line JSON object (shuma's output squeezed by the guest);
/// strings without their quotes. Enough for the flat fields of `CommandInfo` and
/// `StatusInfo`.
fn json_field<'a>(obj: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":");
    let rest = &obj[obj.find(&pat)? + pat.len()..];
    if let Some(s) = rest.strip_prefix('"') {
        return s.split('"').next();
    }
    rest.split([',', '}']).next()
}

/// The objects of a JSON array of `CommandInfo` (each starts with its `"id"`).
fn json_commands(array: &str) -> Vec<&str> {
    array.split("{\"id\":").skip(1).collect()
}

#[test]
fn test_reboot_restores_workspace_limits_and_restarts_service() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("state.img");
    make_ext4_image(&disk, 64);

    // Act: boot 1 creates `keep` (memory_max 64M, then set to 96M; pids_max 32) with the
    // service `svc`, and reboots (QEMU runs with -no-reboot, so the reboot ends it).
    let mut first = Vm::boot(disk_opts("boot_state_reboot_1", "state-reboot", &disk));
    let end1 = first.wait_end();
    figure(&first);
    let mut second = Vm::boot(disk_opts("boot_state_reboot_2", "state-check", &disk));
    let end2 = second.wait_end();
    figure(&second);

    // Assert: boot 1 did its part and rebooted.
    for step in [
        "created keep",
        "set memory_max=96M",
        "svc printed",
        "calling reboot",
    ] {
        assert_line(&first, &format!("SCENARIO state-reboot: {step}"));
    }
    // The pipelines: `chain` ran, `flaky` had been restarted at least three times.
    for step in ["created flow", "chain flowed", "flaky restarted"] {
        assert_line(&first, &format!("SCENARIO state-reboot: {step}"));
    }
    assert_eq!(
        said_after(&first, "state-reboot", "pipe flow chain "),
        "running 0"
    );
    let restarts = |vm: &Vm, scenario: &str| -> u32 {
        let line = said_after(vm, scenario, "pipe flow flaky ");
        let n = line.split_whitespace().nth(1).and_then(|n| n.parse().ok());
        n.unwrap_or_else(|| panic!("flaky: {line:?}"))
    };
    let flaky1 = restarts(&first, "state-reboot");
    assert!(flaky1 >= 3, "flaky restarts before the reboot: {flaky1}");
    let svc1 = said_after(&first, "state-reboot", "cmd keep svc ");
    assert!(svc1.ends_with(" running"), "boot 1 svc: {svc1:?}");
    assert_eq!(end1, End::Reboot, "tail:\n{}", first.tail(40));

    // Boot 2 restored from the durable copy, with the live limits in the cgroup files.
    assert_line(&second, "from the durable copy");
    assert_line(&second, "reboot: starting afresh");
    assert_no_line(&second, "set aside");
    assert_line(&second, "SCENARIO state-check: done");
    let (wss, cmds) = check_lines(&second);
    let keep = wss.iter().find(|w| w.name == "keep");
    assert_eq!(
        keep,
        Some(&WsLine {
            name: "keep".into(),
            state: "running".into(),
            memory_max: (96u64 << 20).to_string(),
            pids_max: "32".into(),
        }),
        "workspaces in boot 2: {wss:?}"
    );
    // The service runs again: a process of this boot (its /proc entry exists), running,
    // in the restored workspace's cgroup.
    let svc = cmds
        .iter()
        .find(|c| c.ws == "keep" && c.name == "svc")
        .unwrap_or_else(|| panic!("no keep/svc in boot 2: {cmds:?}"));
    assert_eq!(svc.state, "running", "{svc:?}");
    assert!(svc.pid.parse::<i32>().is_ok(), "{svc:?}");
    assert!(
        svc.cgroup.starts_with("/arje/keep/"),
        "svc pid {} is in cgroup {:?}",
        svc.pid,
        svc.cgroup
    );
    eprintln!("figure: svc pid boot1 {svc1:?}, boot2 {}", svc.pid);
    // The supervised pipelines came back: `chain` runs and moves lines in this boot;
    // `flaky`'s restart count went on from where it was, not from 0.
    assert_line(&second, "SCENARIO state-check: chain flows again");
    assert_eq!(
        said_after(&second, "state-check", "pipe flow chain "),
        "running 0"
    );
    let flaky2 = restarts(&second, "state-check");
    assert!(
        flaky2 >= flaky1,
        "flaky restarts: {flaky1} before the reboot, {flaky2} after"
    );
    eprintln!("figure: flaky restarts {flaky1} before the reboot, {flaky2} after");
    // The event journal outlived the reboot: boot 2 reads boot 1's event, same id, same
    // time, by cursor from the disk.
    let created = said_after(&first, "state-reboot", "journal ");
    assert!(created.contains("workspace keep created"), "{created:?}");
    assert_line(&second, &format!("SCENARIO state-check: journal {created}"));
    assert_eq!(end2, End::Poweroff, "tail:\n{}", second.tail(40));
}

/// The churn workspaces `w<N>` of a set of names, as numbers, sorted.
fn churn_numbers<'a>(names: impl Iterator<Item = &'a str>) -> Vec<u64> {
    let mut n: Vec<u64> = names
        .filter_map(|name| name.strip_prefix('w')?.parse().ok())
        .collect();
    n.sort_unstable();
    n
}

#[test]
fn test_power_cut_during_churn_restores_last_durable_copy() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("state.img");
    make_ext4_image(&disk, 64);
    const STEPS: u64 = 20;
    const DURABLE_CHANGES: u64 = 3;

    // Act: churn until the console shows STEPS steps and DURABLE_CHANGES changes of the
    // durable file; then kill QEMU (no shutdown, no sync). With three changes seen, the
    // writer has completed at least two whole durable writes (each starts after the
    // previous one's directory fsync).
    let mut first = Vm::boot(disk_opts("boot_state_churn_1", "state-churn", &disk));
    let (mut steps, mut changes) = (0, 0);
    while steps < STEPS || changes < DURABLE_CHANGES {
        let line = first
            .wait_for("SCENARIO state-churn: ")
            .unwrap_or_else(|e| panic!("{e}"));
        if let Some(n) = number_after(&line, "step ") {
            steps = n as u64;
        }
        if let Some(n) = number_after(&line, "durable write seen ") {
            changes = n as u64;
        }
    }
    first.kill();
    figure(&first);
    let on_disk = durable_on_disk(&disk);
    let mut second = Vm::boot(disk_opts("boot_state_churn_2", "state-check", &disk));
    let end2 = second.wait_end();
    figure(&second);

    // Assert: the churn itself had no failure.
    assert_no_line(&first, "FAILED");
    // The durable copy on the cut disk decodes (durable_on_disk) and is a state the churn
    // really passed through: consecutive names, at most three (w(i-2), w(i-1), wi),
    // and only the oldest of three may be stopping.
    let numbers = churn_numbers(on_disk.workspaces.iter().map(|w| w.spec.name.as_str()));
    assert!(
        !numbers.is_empty(),
        "no churn workspace in the durable copy"
    );
    let (lo, hi) = (numbers[0], numbers[numbers.len() - 1]);
    assert_eq!(
        numbers,
        (lo..=hi).collect::<Vec<_>>(),
        "durable copy has a torn set of workspaces"
    );
    assert!(numbers.len() <= 3, "durable copy: {numbers:?}");
    for w in &on_disk.workspaces {
        let n = churn_numbers(std::iter::once(w.spec.name.as_str()));
        let oldest_of_three = numbers.len() == 3 && n == [lo];
        assert!(
            !w.stopping || oldest_of_three,
            "{} is stopping in the durable copy {numbers:?}",
            w.spec.name
        );
    }
    eprintln!(
        "figure: power cut after {steps} steps; durable copy holds w{lo}..=w{hi}, {} workspaces",
        on_disk.workspaces.len()
    );

    // Boot 2 restored exactly that copy: no file set aside, the same number of
    // workspaces, the same running churn workspaces, with their limits.
    assert_no_line(&second, "set aside");
    let restored = second
        .lines_with("from the durable copy")
        .first()
        .and_then(|l| number_after(l, "state: "));
    assert_eq!(
        restored,
        Some(on_disk.workspaces.len() as f64),
        "restore line; tail:\n{}",
        second.tail(60)
    );
    assert_line(&second, "SCENARIO state-check: done");
    let (wss, _) = check_lines(&second);
    let running: BTreeSet<&str> = wss
        .iter()
        .filter(|w| w.name.starts_with('w') && w.state == "running")
        .map(|w| w.name.as_str())
        .collect();
    let expected: BTreeSet<&str> = on_disk
        .workspaces
        .iter()
        .filter(|w| w.spec.name.starts_with('w') && !w.stopping)
        .map(|w| w.spec.name.as_str())
        .collect();
    assert_eq!(running, expected, "workspaces in boot 2: {wss:?}");
    // The event journal, cut in the middle of the churn's burst of events, reads to its
    // last whole record: boot 2 reads boot 1's first churn event from the disk (and
    // nothing was set aside, above; a torn tail is truncated with a Warning).
    assert_line(&second, "SCENARIO state-check: journal ");
    let w1 = second.lines_with("SCENARIO state-check: journal ");
    assert!(
        w1.iter().any(|l| l.contains("workspace w1 created")),
        "boot 2 does not read boot 1's events: {w1:?}"
    );
    for w in wss.iter().filter(|w| running.contains(w.name.as_str())) {
        assert_eq!(
            (w.memory_max.as_str(), w.pids_max.as_str()),
            ("33554432", "8"),
            "{w:?}"
        );
    }
    assert_eq!(end2, End::Poweroff, "tail:\n{}", second.tail(40));
}

#[test]
fn test_daemon_reexec_keeps_pid1_children_output_and_clients() {
    // Arrange + Act: state-reexec creates `app` (a printer numbering lines every 10 ms,
    // an idle sleeper), re-execs arje while a client pings in a loop, and reports.
    let mut vm = Vm::boot(VmOpts::scenario("boot_state_reexec", "state-reexec"));
    let end = vm.wait_end();
    figure(&vm);

    // Assert: the re-exec answered, and the new image took over (same boot, /run copy).
    let sc = "state-reexec";
    let reexec = said_after(&vm, sc, "reexec ");
    assert!(reexec.starts_with("rc=0 "), "re-exec: {reexec:?}");
    assert_line(&vm, "kept the control socket across the re-exec");
    assert_line(&vm, "re-exec: adopting children");
    assert_no_line(&vm, "set aside");
    assert_no_line(&vm, "EMERGENCY");

    // PID 1 before and after.
    for when in ["status-before ", "status-after "] {
        let status = said_after(&vm, sc, when);
        assert_eq!(json_field(&status, "pid"), Some("1"), "{when}{status}");
    }

    // Same pids, same restart counters, still running, and uptimes that kept counting:
    // each grew by no more than the guest time around the two readings (/proc/uptime has
    // 10 ms resolution) and did not go back.
    let before = said_after(&vm, sc, "ps-before ");
    let after = said_after(&vm, sc, "ps-after ");
    let window = said_after(&vm, sc, "uptime-window ");
    let secs: Vec<f64> = window
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    let window_ms = ((secs[1] - secs[0]) * 1000.0).round() as u64 + 10;
    let (b, a) = (json_commands(&before), json_commands(&after));
    assert_eq!(b.len(), 2, "ps before: {before}");
    assert_eq!(a.len(), b.len(), "ps after: {after}");
    for (cb, ca) in b.iter().zip(&a) {
        let name = json_field(cb, "name").unwrap_or_default();
        for key in ["name", "pid", "restarts"] {
            assert_eq!(json_field(cb, key), json_field(ca, key), "{name}: {key}");
        }
        assert_eq!(json_field(ca, "state"), Some("Running"), "{name}: {ca}");
        let ub: u64 = json_field(cb, "uptime_ms").unwrap().parse().unwrap();
        let ua: u64 = json_field(ca, "uptime_ms").unwrap().parse().unwrap();
        assert!(
            ua >= ub && ua - ub <= window_ms,
            "{name}: uptime {ub} ms before, {ua} ms after, readings {window_ms} ms apart"
        );
    }

    // Every numbered line, across the re-exec.
    let at: u64 = number_after(&reexec, "at-line=").expect("at-line") as u64;
    let lines = said_after(&vm, sc, "lines ");
    assert!(lines.contains(" gaps=0 "), "printer lines: {lines}");
    let first = number_after(&lines, "first=").unwrap() as u64;
    let last = number_after(&lines, "last=").unwrap() as u64;
    assert!(
        first <= at && last >= at + 100,
        "lines {first}..={last} do not span the re-exec at line {at}"
    );

    // The pinging client never saw an error.
    let pings = said_after(&vm, sc, "pings=");
    assert!(pings.contains(" failures=0 "), "pinger: pings={pings}");
    assert_no_line(&vm, "ping failed");
    eprintln!("figure: reexec pings={pings}; printer lines {first}..={last}, re-exec at {at}");
    assert_eq!(end, End::Poweroff, "tail:\n{}", vm.tail(40));
}

#[test]
fn test_fifo_as_the_durable_snapshot_does_not_block_boot() {
    // Arrange: the state disk's snapshot.bin is a FIFO: opening it for reading would
    // block until a writer comes, which at boot is never.
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("state.img");
    make_ext4_image(&disk, 64);
    let mknod = Command::new("debugfs")
        .args(["-w", "-R", "mknod snapshot.bin p"])
        .arg(&disk)
        .output()
        .expect("run debugfs");
    assert!(
        mknod.status.success(),
        "debugfs mknod: {}",
        String::from_utf8_lossy(&mknod.stderr)
    );

    // Act
    let mut vm = Vm::boot(disk_opts("boot_state_fifo", "ready", &disk));
    let end = vm.wait_end();

    // Assert: the boot went on past the FIFO to the scenario and a clean poweroff.
    assert!(
        !vm.lines_with("SCENARIO ready: PASS").is_empty(),
        "tail:\n{}",
        vm.tail(40)
    );
    assert_eq!(end, End::Poweroff, "tail:\n{}", vm.tail(40));
}
