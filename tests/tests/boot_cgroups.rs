//! QEMU boot tests of cgroup v2 workspaces: arje-init as PID 1 with every controller, and
//! limits the kernel enforces. Two boots, each a scenario that runs many checks and prints
//! `SCENARIO <name>: ok CHECK` or `FAILED CHECK` per check (tests/scenarios/cg-*/run.sh):
//! - cg-memory: OOM kill at memory.max with a neighbour workspace and `shuma ping`
//!   unaffected, the probe's own cgroup, `shuma ws set memory_max`;
//! - cg-procs: a fork bomb held at pids.max and stopped without a trace, a double-forked
//!   daemon killed with its workspace.
//!
//! Consoles are kept in target/vm-logs/<test>.log.

use arje_tests::vm::{number_after, End, Vm, VmOpts};

/// Boots `scenario` to its end; returns the guest and how it ended.
fn boot_to_end(test: &str, scenario: &str) -> (Vm, End) {
    let mut opts = VmOpts::scenario(test, scenario);
    // Under TCG on a loaded host the kernel's IO-APIC timer check can fail and panic
    // ("IO-APIC + timer doesn't work"): skip that check, it tests the emulator's speed.
    opts.append.push_str(" no_timer_check");
    let mut vm = Vm::boot(opts);
    let end = vm.wait_end();
    eprintln!("figure: {} wall={:.1}s", vm.name(), vm.wall().as_secs_f64());
    (vm, end)
}

/// Every check named passed, none failed.
fn assert_checks(vm: &Vm, scenario: &str, checks: &[&str]) {
    let failed = vm.lines_with(&format!("SCENARIO {scenario}: FAILED"));
    assert!(
        failed.is_empty(),
        "failed checks {failed:?}; console:\n{}",
        vm.console()
    );
    for check in checks {
        let line = format!("SCENARIO {scenario}: ok {check}");
        assert!(
            seen_line(vm, &line),
            "check {check} did not pass (no line {line:?}); tail:\n{}",
            vm.tail(60)
        );
    }
}

/// A console line ends with exactly `line` (so "ok ws-set" is not "ok ws-set-file").
fn seen_line(vm: &Vm, line: &str) -> bool {
    vm.lines_with(line)
        .iter()
        .any(|l| l.trim_end().ends_with(line))
}

/// The first console line containing `needle`.
fn line_with<'a>(vm: &'a Vm, needle: &str) -> &'a str {
    vm.lines_with(needle)
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no console line with {needle:?}; tail:\n{}", vm.tail(60)))
}

#[test]
fn test_cgroup_memory_hog_oom_killed_neighbours_and_pid1_unaffected() {
    // Arrange + Act
    let (vm, end) = boot_to_end("boot_cg_memory", "cg-memory");

    // Assert
    assert_checks(
        &vm,
        "cg-memory",
        &[
            "create-calm",
            "create-hog",
            "hog-memory-max",
            "calm-memory-max",
            "probe-in-leaf",
            "hog-killed",
            "ticker-alive",
            "ticker-still-listed",
            "ticker-never-exited",
            "ws-set",
            "ws-set-file",
            "caps-memory-max",
            "caps-clone-into-cgroup",
            "ping-throughout",
            "ping-now",
        ],
    );
    let probe = line_with(&vm, "cg-probe: first read of /proc/self/cgroup");
    assert!(
        probe.contains("\"0::/arje/calm/")
            && probe.contains("-probe\"")
            && probe.contains("in its run leaf"),
        "{probe}"
    );
    // The exit names workspace and command and says OOM, not "signal 9".
    let exit = line_with(&vm, "SCENARIO cg-memory: exit event:");
    assert!(
        exit.contains("hog/eater") && exit.contains("killed by the kernel's OOM killer"),
        "{exit}"
    );
    let oom = line_with(&vm, "SCENARIO cg-memory: oom event:");
    assert!(oom.contains("hog") && oom.contains("OOM"), "{oom}");
    let pings = line_with(&vm, "pings answered=");
    assert!(
        number_after(pings, "answered=").is_some_and(|n| n >= 1.0),
        "{pings}"
    );
    assert!(
        seen_line(&vm, "SCENARIO cg-memory: PASS"),
        "tail:\n{}",
        vm.tail(60)
    );
    assert_eq!(end, End::Poweroff, "tail:\n{}", vm.tail(40));
}

#[test]
fn test_cgroup_fork_bomb_held_at_pids_max_and_double_forked_daemon_stopped() {
    // Arrange + Act
    let (vm, end) = boot_to_end("boot_cg_procs", "cg-procs");

    // Assert
    assert_checks(
        &vm,
        "cg-procs",
        &[
            "create-bomb",
            "bomb-pids-max",
            "bomb-started",
            "bomb-current-bounded",
            "bomb-peak-bounded",
            "bomb-tasks-bounded",
            "bomb-ping-during",
            "bomb-stop",
            "bomb-cgroup-gone",
            "bomb-nothing-left",
            "bomb-no-probe",
            "create-svc",
            "daemon-alive",
            "daemon-in-leaf",
            "svc-stop",
            "daemon-gone",
            "svc-cgroup-gone",
            "ping-throughout",
            "ping-now",
        ],
    );
    let event = line_with(&vm, "SCENARIO cg-procs: pids event:");
    assert!(event.contains("bomb hit pids.max"), "{event}");
    let counts = line_with(&vm, "bomb pids.current=");
    let current = number_after(counts, "pids.current=");
    assert!(current.is_some_and(|n| n <= 64.0), "{counts}");
    // A bomb that never filled its workspace would pass "at most 64" trivially.
    let tasks = number_after(counts, "tasks=");
    assert!(tasks.is_some_and(|n| n >= 32.0), "{counts}");
    assert!(
        seen_line(&vm, "SCENARIO cg-procs: PASS"),
        "tail:\n{}",
        vm.tail(60)
    );
    assert_eq!(end, End::Poweroff, "tail:\n{}", vm.tail(40));
}
