//! QEMU boot test of the crash sweep through cgroups (issue 9): inside the guest, PID 1
//! arje runs a second arje-init in subreaper mode with its own state directory and
//! cgroup subtree, which is killed with SIGKILL after its cgroup tree was given what its
//! snapshot cannot know, and started again (tests/scenarios/sweep). On the host the
//! sweep can only be played on a fake cgroupfs (`runtime/tests.rs`): here the kernel's
//! own cgroup.kill, cgroup.events and rmdir rules decide.
//!
//! The console is kept in target/vm-logs/boot_sweep.log.

use arje_tests::vm::{End, Vm, VmOpts};

#[test]
fn test_nested_arje_killed_then_restarted_adopts_known_and_sweeps_unknown() {
    // Arrange + Act
    let mut vm = Vm::boot(VmOpts::scenario("boot_sweep", "sweep"));
    let end = vm.wait_end();
    eprintln!("figure: {} wall={:.1}s", vm.name(), vm.wall().as_secs_f64());

    // Assert
    let failed = vm.lines_with("SCENARIO sweep: FAILED");
    assert!(
        failed.is_empty(),
        "failed checks {failed:?}; console:\n{}",
        vm.console()
    );
    for check in [
        // The nested arje runs with a cgroup tree of its own.
        "nested-started",
        "nested-cgroups",
        "app-created",
        "svc-running",
        "intruder-planted",
        "late-planted",
        "ghost-planted",
        "nested-killed",
        "svc-outlived-the-crash",
        "nested-restarted",
        // What the snapshot knew is adopted, not started a second time.
        "svc-adopted-same-pid",
        "svc-adopted-logged",
        "svc-one-process",
        "svc-listed-once",
        // A `run` created after the snapshot was written is found by its leaf.
        "late-adopted",
        // What it did not know is killed, and its cgroup removed, with Warnings.
        "intruder-killed",
        "intruder-leaf-removed",
        "ghost-killed",
        "ghost-removed",
        "ping-after",
        "nested-stopped",
    ] {
        let line = format!("SCENARIO sweep: ok {check}");
        assert!(
            vm.lines_with(&line)
                .iter()
                .any(|l| l.trim_end().ends_with(&line)),
            "check {check} did not pass (no line {line:?}); tail:\n{}",
            vm.tail(80)
        );
    }
    let said = |head: &str| {
        vm.lines_with(&format!("SCENARIO sweep: {head}"))
            .first()
            .map(|l| l.to_string())
            .unwrap_or_else(|| panic!("no {head:?} line; tail:\n{}", vm.tail(80)))
    };
    let intruder = said("intruder warning:");
    assert!(
        intruder.contains("workspace app: killed what ran in cgroup intruder")
            && intruder.contains("not in the snapshot"),
        "{intruder}"
    );
    let removed = said("intruder removed:");
    assert!(
        removed.contains("workspace app: removed cgroup intruder"),
        "{removed}"
    );
    let ghost = said("ghost warning:");
    assert!(
        ghost.contains("warning:") && ghost.contains("ghost"),
        "{ghost}"
    );
    assert!(
        vm.lines_with("SCENARIO sweep: PASS").len() == 1,
        "tail:\n{}",
        vm.tail(80)
    );
    assert_eq!(end, End::Poweroff, "tail:\n{}", vm.tail(40));
}
