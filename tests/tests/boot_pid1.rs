//! QEMU boot tests: arje-init as PID 1 of a Debian kernel under TCG, one scenario of
//! tests/scenarios per boot. Each boot is bounded (ARJE_BOOT_TIMEOUT, default 180 s);
//! consoles are kept in target/vm-logs/<test>.log. Figures (boottimes, wall time) are
//! printed as `figure:` lines (see them with --nocapture).

use arje_tests::vm::{make_ext4_image, number_after, End, Vm, VmOpts};

/// Boots `scenario`, waits for the end, and returns the guest for assertions.
fn boot_to_end(test: &str, scenario: &str) -> (Vm, End) {
    let mut vm = Vm::boot(VmOpts::scenario(test, scenario));
    let end = vm.wait_end();
    figures(&vm);
    (vm, end)
}

fn figures(vm: &Vm) {
    let start = vm
        .lines_with("PID 1 start at boottime")
        .first()
        .and_then(|l| number_after(l, "boottime "));
    let ready = vm
        .lines_with("control socket ready")
        .first()
        .and_then(|l| number_after(l, "(boottime "));
    eprintln!(
        "figure: {} pid1_start={:?}s ready={:?}s wall={:.1}s",
        vm.name(),
        start,
        ready,
        vm.wall().as_secs_f64()
    );
}

fn assert_line(vm: &Vm, needle: &str) {
    assert!(
        !vm.lines_with(needle).is_empty(),
        "no console line with {needle:?}; tail:\n{}",
        vm.tail(40)
    );
}

#[test]
fn test_boot_ready_prints_boottimes_and_powers_off() {
    // Arrange
    let mut vm = Vm::boot(VmOpts::scenario("boot_ready", "ready"));

    // Act
    let start = vm.wait_for("PID 1 start at boottime").unwrap();
    let ready = vm.wait_for("control socket ready").unwrap();
    let end = vm.wait_end();
    figures(&vm);

    // Assert
    let t0 = number_after(&start, "boottime ").expect("a boottime at PID 1 start");
    let t1 = number_after(&ready, "(boottime ").expect("a boottime at ready");
    assert!(t1 >= t0, "ready at {t1}s before PID 1 start at {t0}s");
    // Where the time went: PID 1's steps, then the runtime's, each named.
    let boot = vm.lines_with("boot done in").concat();
    for step in ["(mounts ", "console ", "power button "] {
        assert!(boot.contains(step), "no {step:?} in {boot:?}");
    }
    let (_, steps) = ready
        .split_once("runtime start ")
        .unwrap_or_else(|| panic!("no runtime steps in {ready:?}"));
    for step in ["(state lock ", "cgroups ", "socket ", "cards "] {
        assert!(steps.contains(step), "no {step:?} in {steps:?}");
    }
    assert_line(&vm, "SCENARIO ready: PASS");
    assert_line(&vm, "reboot(2) PowerOff");
    assert_eq!(end, End::Poweroff, "tail:\n{}", vm.tail(40));
}

#[test]
fn test_busybox_poweroff_powers_off() {
    // Arrange + Act
    let (vm, end) = boot_to_end("boot_poweroff", "poweroff");

    // Assert
    assert_line(&vm, "SCENARIO poweroff: calling poweroff");
    assert_eq!(end, End::Poweroff, "tail:\n{}", vm.tail(40));
}

#[test]
fn test_busybox_halt_halts() {
    // Arrange + Act
    let (vm, end) = boot_to_end("boot_halt", "halt");

    // Assert
    assert_line(&vm, "SCENARIO halt: calling halt");
    assert_eq!(end, End::Halt, "tail:\n{}", vm.tail(40));
}

#[test]
fn test_busybox_reboot_boots_again() {
    // Arrange
    let mut opts = VmOpts::scenario("boot_reboot", "reboot");
    opts.allow_reboot = true;
    let mut vm = Vm::boot(opts);

    // Act: the scenario reboots every boot; the second ready is enough.
    vm.wait_for("SCENARIO reboot: calling reboot").unwrap();
    vm.wait_for("reboot: Restarting system").unwrap();
    let second = vm.wait_for("control socket ready");
    figures(&vm);
    vm.kill();

    // Assert
    assert!(second.is_ok(), "{}", second.unwrap_err());
    assert_eq!(
        vm.lines_with("PID 1 start at boottime").len(),
        2,
        "tail:\n{}",
        vm.tail(40)
    );
}

#[test]
fn test_term_ignoring_service_does_not_hold_shutdown() {
    // Arrange: the service ignores TERM and asks for a 10-minute grace; the shutdown
    // bound is 3 s. Only the bound lets the guest power off before the boot's deadline.
    let mut opts = VmOpts::scenario("boot_term_ignore", "term-ignore");
    opts.append.push_str(" arje.shutdown_timeout=3s");
    let mut vm = Vm::boot(opts);

    // Act
    vm.wait_for("SCENARIO term-ignore: stubborn is running")
        .unwrap();
    let end = vm.wait_end();
    figures(&vm);

    // Assert
    assert_line(&vm, "reboot(2) PowerOff");
    assert_eq!(end, End::Poweroff, "tail:\n{}", vm.tail(60));
}

#[test]
fn test_thousand_orphans_leave_no_zombies() {
    // Arrange + Act
    let (vm, end) = boot_to_end("boot_orphans", "orphans");

    // Assert
    assert_line(&vm, "SCENARIO orphans: spawned 1000");
    assert_line(&vm, "SCENARIO orphans: zombies=0 ");
    let reaped = vm
        .lines_with("SCENARIO orphans: orphans reaped")
        .first()
        .and_then(|l| number_after(l, "reaped: "));
    assert!(
        reaped.is_some_and(|n| n >= 1000.0),
        "orphans reaped {reaped:?}; tail:\n{}",
        vm.tail(40)
    );
    assert_eq!(end, End::Poweroff, "tail:\n{}", vm.tail(40));
}

#[test]
fn test_panic_trigger_keeps_serving_ping() {
    // Arrange + Act
    let (vm, end) = boot_to_end("boot_panic", "panic");

    // Assert
    assert_line(&vm, "arje-guest: test-panic answered");
    assert_line(&vm, "SCENARIO panic: PASS");
    assert!(
        vm.lines_with("Kernel panic").is_empty(),
        "tail:\n{}",
        vm.tail(40)
    );
    assert_eq!(end, End::Poweroff, "tail:\n{}", vm.tail(40));
}

#[test]
fn test_scenario_drives_shuma_over_the_socket() {
    // Arrange + Act
    let (vm, end) = boot_to_end("boot_drive", "drive");

    // Assert
    for step in [
        "create",
        "list",
        "oneshot-exit",
        "oneshot-exit-code",
        "ps",
        "logs",
        "events",
        "stop",
        "gone",
    ] {
        assert_line(&vm, &format!("SCENARIO drive: ok {step}"));
    }
    assert_line(&vm, "SCENARIO drive: PASS");
    assert_eq!(end, End::Poweroff, "tail:\n{}", vm.tail(40));
}

#[test]
fn test_state_disk_file_written_in_one_boot_is_read_in_the_next() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("state.img");
    make_ext4_image(&disk, 64);
    let token = format!("tok{}", std::process::id());
    let opts = |name: &str| {
        let mut o = VmOpts::scenario(name, "state");
        o.append
            .push_str(&format!(" arje.state=/dev/vda scenario.token={token}"));
        o.disk = Some(disk.clone());
        o
    };

    // Act
    let mut first = Vm::boot(opts("boot_state_1"));
    let end1 = first.wait_end();
    figures(&first);
    let mut second = Vm::boot(opts("boot_state_2"));
    let end2 = second.wait_end();
    figures(&second);

    // Assert
    let modules = first
        .lines_with("arje: INFO  modules: ")
        .first()
        .map(|l| l.to_string())
        .unwrap_or_default();
    let loaded = number_after(&modules, "modules: ");
    let listed = number_after(&modules, " of ");
    assert!(
        loaded.is_some() && loaded == listed,
        "modules line {modules:?}"
    );
    assert_line(&first, "mounted on /var/lib/arje (ext4)");
    assert_line(&first, "SCENARIO state: /var/lib/arje is ext4");
    assert_line(&first, &format!("SCENARIO state: wrote {token}"));
    assert_line(&second, &format!("SCENARIO state: read {token}"));
    assert_eq!(
        (end1, end2),
        (End::Poweroff, End::Poweroff),
        "tail:\n{}",
        second.tail(40)
    );
}

#[test]
fn test_pid1_under_pressure_fd_limit_bad_reexec_stray_signals() {
    // Arrange + Act: 400 services under init's default fd limit, re-execs into files
    // that are not arje, a re-exec whose exec fails, and signals nobody means for init
    // (tests/scenarios/harden).
    let (vm, end) = boot_to_end("boot_harden", "harden");

    // Assert
    for needle in [
        "SCENARIO harden: ok 400 services under the default fd limit",
        "SCENARIO harden: ok bad re-exec binaries refused, children kept",
        "SCENARIO harden: ok failed exec survived by PID 1, children kept",
        "SCENARIO harden: ok still answering after stray signals",
        "SCENARIO harden: PASS",
    ] {
        assert_line(&vm, needle);
    }
    // Children get back the limit init had, not arje's raised one.
    assert_line(&vm, "SCENARIO harden: child-nofile=1024");
    assert_eq!(end, End::Poweroff, "tail:\n{}", vm.tail(40));
}

#[test]
fn test_acpi_power_button_powers_off_in_order() {
    // Arrange: a guest up and ready (the scenario waits and does nothing).
    let mut vm = Vm::boot(VmOpts::scenario("boot_power_button", "power-button"));
    vm.wait_for("power button: watching").unwrap();
    vm.wait_for("SCENARIO power-button: waiting").unwrap();

    // Act: what a hypervisor's "shut down" sends.
    vm.monitor("system_powerdown");
    let end = vm.wait_end();

    // Assert: the press was seen, and the shutdown was the orderly one.
    assert!(
        !vm.lines_with("power button pressed: powering off")
            .is_empty(),
        "tail:\n{}",
        vm.tail(40)
    );
    assert!(
        !vm.lines_with("stopping every workspace").is_empty()
            || !vm.lines_with("every workspace stopped").is_empty(),
        "tail:\n{}",
        vm.tail(40)
    );
    assert_eq!(end, End::Poweroff, "tail:\n{}", vm.tail(40));
}
