//! The VM's host drives the guest's arje over vsock (issue 14): `arje.vsock=1024` on the
//! guest's command line, `shuma --vsock` on the host. This machine's kernel has no
//! vhost_vsock, so the guest's vsock device is QEMU's vhost-user-vsock-pci backed by
//! rust-vmm's `vhost-device-vsock` (installed by scripts/setup.sh), which gives the host a
//! unix socket that speaks the hybrid vsock handshake (`CONNECT PORT`): `shuma --vsock
//! unix:PATH:1024`. The guest side is a real AF_VSOCK listener on a real virtio-vsock
//! transport either way.
//!
//! Over that one channel the host creates a workspace from a card read on the host,
//! follows a service's logs, runs a task with `--wait` and gets its exit code, and powers
//! the guest off.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use arje_tests::host::bin_dir;
use arje_tests::vm::{End, Vm, VmOpts};

const PORT: u32 = 1024;

/// The device built by scripts/setup.sh.
fn device_binary() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache"));
    let bin = cache.join("arje/vhost-device-vsock-0.3.0/bin/vhost-device-vsock");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/setup.sh",
        bin.display()
    );
    bin
}

/// The device, serving QEMU on `control` and the host on `uds`; ready once it listens.
struct Device(Child);

impl Device {
    fn start(control: &Path, uds: &Path) -> Device {
        let mut child = Command::new(device_binary())
            .args(["--guest-cid", "3", "--socket"])
            .arg(control)
            .arg("--uds-path")
            .arg(uds)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vhost-device-vsock");
        // It creates the control socket before it waits for QEMU: wait for the socket's
        // inode (an inotify-free wait: the device reports nothing else; bounded).
        let mut tries = 0;
        while !control.exists() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "vhost-device-vsock exited: {}",
                read_all(child.stderr.take())
            );
            tries += 1;
            assert!(tries < 500, "vhost-device-vsock made no socket in 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        Device(child)
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn read_all(r: Option<impl std::io::Read>) -> String {
    let mut s = String::new();
    if let Some(mut r) = r {
        let _ = r.read_to_string(&mut s);
    }
    s
}

fn shuma(uds: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin_dir().join("shuma"))
        .arg("--vsock")
        .arg(format!("unix:{}:{PORT}", uds.display()))
        .args(args)
        .output()
        .expect("run shuma")
}

#[test]
fn test_host_drives_the_guest_over_vsock_create_logs_run_wait_poweroff() {
    // Arrange: the host's shuma, the device, then the guest with a vsock device and
    // arje.vsock=1024.
    arje_tests::host::ensure_binaries();
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("vhost.sock");
    let uds = dir.path().join("vm.vsock");
    let _device = Device::start(&control, &uds);
    let mut o = VmOpts::scenario("boot_vsock", "vsock");
    o.append.push_str(&format!(" arje.vsock={PORT}"));
    o.qemu_args = [
        "-object",
        "memory-backend-memfd,id=mem,size=512M,share=on",
        "-numa",
        "node,memdev=mem",
        "-chardev",
        &format!("socket,id=vsk,path={}", control.display()),
        "-device",
        "vhost-user-vsock-pci,chardev=vsk",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut vm = Vm::boot(o);
    vm.wait_for(&format!("listening on vsock port {PORT}"))
        .unwrap_or_else(|e| panic!("{e}"));
    vm.wait_for("SCENARIO vsock: up")
        .unwrap_or_else(|e| panic!("{e}"));

    // Act 1: a workspace from a card on the host.
    let card = dir.path().join("tick.toml");
    std::fs::write(
        &card,
        "[workspace]\nname = \"tick\"\n\n[[service]]\nname = \"svc\"\nargv = [\"/bin/sh\", \"-c\", \"i=0; while :; do i=$((i+1)); echo tick $i; sleep 1; done\"]\nenv = { PATH = \"/bin\" }\n",
    )
    .unwrap();
    let created = shuma(&uds, &["ws", "create", card.to_str().unwrap()]);

    // Act 2: follow its logs until a line comes.
    let mut follow = Command::new(bin_dir().join("shuma"))
        .arg("--vsock")
        .arg(format!("unix:{}:{PORT}", uds.display()))
        .args(["logs", "-f", "tick", "svc"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(follow.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let _ = follow.kill();
    let _ = follow.wait();

    // Act 3: a task with --wait; then poweroff.
    let ran = shuma(
        &uds,
        &["run", "--wait", "tick", "--", "/bin/sh", "-c", "exit 7"],
    );
    let ps = shuma(&uds, &["ps", "tick"]);
    let off = shuma(&uds, &["poweroff"]);
    let end = vm.wait_end();

    // Assert
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    assert!(first.starts_with("tick "), "{first:?}");
    assert_eq!(
        ran.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert!(String::from_utf8_lossy(&ps.stdout).contains("svc"));
    assert!(
        off.status.success(),
        "{}",
        String::from_utf8_lossy(&off.stderr)
    );
    assert_eq!(end, End::Poweroff, "tail:\n{}", vm.tail(30));
}
