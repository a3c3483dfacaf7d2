//! QEMU boot tests of `arje.exit-on=WORKSPACE/COMMAND` (docs/PID1.md, docs/QEMU.md): the
//! watched task's end powers the guest off in order, the last console line says how it
//! ended, the `arje.status` virtio-serial port gets the same line, and QEMU's exit code
//! (isa-debug-exit) carries the code: `2 * (code + 1) + 1`.

use arje_tests::vm::{Vm, VmOpts};

/// Boots scenario exit-on watching `command`, with the debug-exit device and the status
/// port; returns the guest once QEMU has exited, and what the port received.
fn boot_watching(test: &str, command: &str) -> (Vm, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let status_file = dir.path().join("status");
    let mut opts = VmOpts::scenario(test, "exit-on");
    opts.append.push_str(&format!(" arje.exit-on=ci/{command}"));
    opts.debug_exit = true;
    opts.status_port = Some(status_file.clone());
    let mut vm = Vm::boot(opts);
    let end = vm.wait_end();
    eprintln!(
        "figure: {test} end={end:?} qemu_exit={:?} wall={:.1}s",
        vm.qemu_exit_code(),
        vm.wall().as_secs_f64()
    );
    let status = std::fs::read_to_string(&status_file).unwrap_or_default();
    (vm, status)
}

/// The lines arje printed, in order.
fn arje_lines(vm: &Vm) -> Vec<String> {
    vm.lines_with("arje")
        .into_iter()
        .map(str::to_string)
        .collect()
}

#[test]
fn test_exit_on_task_exiting_3_ends_qemu_with_9() {
    // Arrange + Act
    let (vm, status) = boot_watching("boot_exit_on_3", "fail");

    // Assert
    let want = "arje: exit-on ci/fail status=exited:3 code=3";
    let lines = arje_lines(&vm);
    assert_eq!(
        lines.last().map(String::as_str),
        Some(want),
        "not the last line of arje; tail:\n{}",
        vm.tail(40)
    );
    assert_eq!(vm.lines_with("exit-on ci/fail status=").len(), 1);
    assert!(
        !vm.lines_with("unmounted; the root is read-only").is_empty(),
        "no orderly unmount before the report; tail:\n{}",
        vm.tail(40)
    );
    assert_eq!(status, format!("{want}\n"), "arje.status port");
    assert_eq!(
        vm.qemu_exit_code(),
        Some(2 * (3 + 1) + 1),
        "QEMU's exit code"
    );
}

#[test]
fn test_exit_on_task_exiting_0_ends_qemu_with_3() {
    // Arrange + Act
    let (vm, status) = boot_watching("boot_exit_on_0", "pass");

    // Assert
    let want = "arje: exit-on ci/pass status=exited:0 code=0";
    let lines = arje_lines(&vm);
    assert_eq!(
        lines.last().map(String::as_str),
        Some(want),
        "not the last line of arje; tail:\n{}",
        vm.tail(40)
    );
    assert_eq!(status, format!("{want}\n"), "arje.status port");
    assert_eq!(vm.qemu_exit_code(), Some(3), "QEMU's exit code");
}

#[test]
fn test_exit_on_command_that_never_appears_is_reported_absent_at_poweroff() {
    // Arrange: scenario poweroff calls busybox `poweroff`; nothing is named ci/nosuch.
    let mut opts = VmOpts::scenario("boot_exit_on_absent", "poweroff");
    opts.append.push_str(" arje.exit-on=ci/nosuch");
    opts.debug_exit = true;

    // Act
    let mut vm = Vm::boot(opts);
    vm.wait_end();

    // Assert
    assert_eq!(
        vm.lines_with("no such workspace or command appeared").len(),
        1,
        "tail:\n{}",
        vm.tail(40)
    );
    let lines = arje_lines(&vm);
    assert_eq!(
        lines.last().map(String::as_str),
        Some("arje: exit-on ci/nosuch status=absent code=126"),
        "tail:\n{}",
        vm.tail(40)
    );
    assert_eq!(vm.qemu_exit_code(), Some(2 * (126 + 1) + 1));
}
