//! QEMU boot tests of the way to a real root (issue 11): arje's initramfs finds the
//! device `root=` names (a path, a LABEL, a UUID), mounts it, moves its mounts in,
//! deletes itself and execs the root's own arje-init; the shutdown then leaves the disk
//! clean, which the host checks with `e2fsck -n` and the next boot with the kernel's
//! ext4 messages. A root that never shows is an emergency naming it.
//!
//! The root image is made by qemu/make-root.sh (busybox, arje-init at /sbin, the
//! scenarios); the scenario is tests/scenarios/root. Consoles: target/vm-logs/<name>.log.

use std::path::{Path, PathBuf};
use std::process::Command;

use arje_tests::vm::{
    assert_fsck_clean, e2fsck, number_after, prepare, repo_root, End, Vm, VmOpts,
};

const LABEL: &str = "arje-root";
const UUID: &str = "5f1c2b3a-9d8e-4f70-a1b2-c3d4e5f60718";

/// A root image at `path` made from the static test build.
fn make_root(path: &Path) {
    prepare();
    let root = repo_root();
    let st = Command::new("bash")
        .arg(root.join("qemu/make-root.sh"))
        .arg("--out")
        .arg(path)
        .arg("--bin")
        .arg(root.join("build/bin/test"))
        .arg("--scenarios")
        .arg(root.join("tests/scenarios"))
        .args(["--label", LABEL, "--uuid", UUID])
        .status()
        .expect("run qemu/make-root.sh");
    assert!(st.success(), "qemu/make-root.sh failed: {st}");
}

fn root_opts(name: &str, root_args: &str, disk: &Path) -> VmOpts {
    let mut o = VmOpts::scenario(name, "root");
    o.append.push(' ');
    o.append.push_str(root_args);
    o.disk = Some(disk.to_path_buf());
    o
}

/// The text after "SCENARIO root: " of every such line.
fn said(vm: &Vm) -> Vec<String> {
    vm.lines_with("SCENARIO root: ")
        .iter()
        .filter_map(|l| l.split_once("SCENARIO root: ").map(|(_, r)| r.to_string()))
        .collect()
}

fn said_after(vm: &Vm, head: &str) -> String {
    said(vm)
        .into_iter()
        .find_map(|l| l.strip_prefix(head).map(str::to_string))
        .unwrap_or_else(|| panic!("no \"SCENARIO root: {head}\" line; tail:\n{}", vm.tail(60)))
}

fn assert_line(vm: &Vm, needle: &str) {
    assert!(
        !vm.lines_with(needle).is_empty(),
        "no console line with {needle:?}; tail:\n{}",
        vm.tail(60)
    );
}

/// Boots to the scenario's poweroff and checks what every boot through the initramfs
/// must show: PID 1 exec'd from the root's /sbin/arje-init, / is the ext4 device, the
/// initramfs deleted, and the kernel's ext4 messages for vda free of journal recovery
/// and orphan cleanup. Returns the guest for the boot's own checks.
fn boot_to_poweroff(name: &str, root_args: &str, disk: &Path) -> Vm {
    let mut vm = Vm::boot(root_opts(name, root_args, disk));
    vm.wait_for("SCENARIO root: powering off")
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let end = vm.wait_end();
    eprintln!("figure: {name} wall={:.1}s", vm.wall().as_secs_f64());
    assert_eq!(end, End::Poweroff, "{name}; tail:\n{}", vm.tail(60));

    assert_line(
        &vm,
        "on the real root /dev/vda (switched from the initramfs)",
    );
    let deleted = vm
        .lines_with("initramfs deleted: ")
        .first()
        .map(|l| l.to_string())
        .unwrap_or_else(|| panic!("no 'initramfs deleted' line; tail:\n{}", vm.tail(60)));
    let files = number_after(&deleted, "initramfs deleted: ").unwrap_or(0.0);
    assert!(files > 100.0, "{deleted}");
    assert!(deleted.contains(", 0 left"), "{deleted}");
    assert_eq!(said_after(&vm, "pid1 exe "), "/sbin/arje-init");
    let mount = said_after(&vm, "root mount ");
    assert!(mount.contains(" ext4 /dev/vda "), "{mount}");
    assert_eq!(said_after(&vm, "no initramfs /init"), "");
    assert_eq!(
        said_after(&vm, "shuma "),
        "pong",
        "the root's /bin/shuma link"
    );

    let dirty = dirty_kmsg(&vm);
    assert!(
        dirty.is_empty(),
        "{name}: the root was not clean: {dirty:?}"
    );
    assert_line(&vm, "root /dev/vda (ext4) remounted read-only");
    vm
}

/// The kernel's messages about vda that say its last shutdown left it dirty (journal
/// recovery, orphan cleanup), after checking that the mount message itself is there.
fn dirty_kmsg(vm: &Vm) -> Vec<String> {
    let kmsg: Vec<String> = said(vm)
        .into_iter()
        .filter(|l| l.starts_with("kmsg "))
        .collect();
    assert!(
        kmsg.iter().any(|l| l.contains("mounted filesystem")),
        "no ext4 mount message for vda: {kmsg:?}"
    );
    kmsg.into_iter()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("recover") || l.contains("orphan")
        })
        .collect()
}

#[test]
fn test_root_by_path_label_uuid_switches_and_leaves_disk_clean() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let disk: PathBuf = dir.path().join("root.img");
    make_root(&disk);

    // Act + Assert: boot 1 by path, read-write; the counter is written without a sync.
    let vm = boot_to_poweroff("root-path", "root=/dev/vda rw", &disk);
    assert_line(&vm, "root device /dev/vda is /dev/vda");
    assert!(said_after(&vm, "root mount ").starts_with("rw,"));
    assert_eq!(said_after(&vm, "boots before "), "0");
    assert_eq!(said_after(&vm, "wrote boots "), "1");
    drop(vm);
    assert_fsck_clean(&disk, "boot 1 (root=/dev/vda rw)");

    // Boot 2 by label: the unsynced counter of boot 1 is there, no recovery was needed.
    let vm = boot_to_poweroff("root-label", &format!("root=LABEL={LABEL} rw"), &disk);
    assert_line(&vm, &format!("root device LABEL={LABEL} is /dev/vda"));
    assert_eq!(said_after(&vm, "boots before "), "1");
    assert_eq!(said_after(&vm, "wrote boots "), "2");
    drop(vm);
    assert_fsck_clean(&disk, "boot 2 (root=LABEL=...)");

    // Boot 3 by UUID, read-only (the default without rw).
    let vm = boot_to_poweroff("root-uuid", &format!("root=UUID={UUID}"), &disk);
    assert_line(&vm, &format!("root device UUID={UUID} is /dev/vda"));
    assert!(said_after(&vm, "root mount ").starts_with("ro,"));
    assert_eq!(said_after(&vm, "boots before "), "2");
    assert_eq!(said_after(&vm, "root is read-only"), "");
    drop(vm);
    assert_fsck_clean(&disk, "boot 3 (root=UUID=... ro)");
}

#[test]
fn test_missing_root_device_is_named_in_the_emergency() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("root.img");
    make_root(&disk);
    let opts = root_opts("root-missing", "root=/dev/vdz rootdelay=1", &disk);

    // Act
    let mut vm = Vm::boot(opts);
    let line = vm
        .wait_for("EMERGENCY: root device")
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("figure: root-missing wall={:.1}s", vm.wall().as_secs_f64());
    vm.kill();

    // Assert: the missing device is named, and so is the disk that does exist.
    assert!(line.contains("/dev/vdz did not appear within"), "{line}");
    assert!(
        line.contains(&format!("vda (64 MiB, ext4 LABEL={LABEL} UUID={UUID})")),
        "{line}"
    );
    assert!(vm.lines_with("SCENARIO root:").is_empty());
}

/// The control: the same checks see a root that was NOT shut down cleanly. QEMU is
/// killed while the root is mounted read-write (a power cut); `e2fsck -n` must then warn
/// that it skips a journal replay, and the next boot's kernel log must show the
/// journal recovery.
#[test]
fn test_power_cut_root_is_seen_dirty_by_the_same_checks() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("root.img");
    make_root(&disk);

    // Act: cut the power once the scenario has written to the root.
    let mut vm = Vm::boot(root_opts("root-cut", "root=/dev/vda rw", &disk));
    vm.wait_for("SCENARIO root: wrote boots 1")
        .unwrap_or_else(|e| panic!("{e}"));
    vm.kill();
    let (ok, fsck) = e2fsck("-n", &disk);
    eprintln!("figure: e2fsck -n after a power cut: {}", fsck.trim());
    let mut next = Vm::boot(root_opts("root-after-cut", "root=/dev/vda rw", &disk));
    next.wait_for("SCENARIO root: powering off")
        .unwrap_or_else(|e| panic!("{e}"));
    let end = next.wait_end();

    // Assert
    // e2fsck -n exits 0 and says "clean" here too (ok is true): only its warning about
    // the skipped journal replay tells the cut root apart.
    eprintln!("figure: e2fsck -n after a power cut exited 0: {ok}");
    assert!(
        fsck.contains("skipping journal recovery"),
        "e2fsck -n saw no journal to replay after a power cut: {fsck}"
    );
    assert_eq!(end, End::Poweroff);
    let dirty = dirty_kmsg(&next);
    assert!(
        dirty.iter().any(|l| l.contains("recovery complete")),
        "no journal recovery after a power cut: {dirty:?}"
    );
}
