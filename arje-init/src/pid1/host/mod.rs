//! A host's duties, done by PID 1 itself once it runs on a real root and before it
//! reads the machine's cards (systemd does these in its own early units):
//!
//! 1. the root checked with fsck while read-only, then remounted as /etc/fstab says
//!    (`rootfs.rs`, `fsck.rs`);
//! 2. the rest of /etc/fstab mounted in order, swap included (`mount_all.rs`,
//!    `swap.rs`, with `fstab.rs` the parser and `source.rs` the UUID=/LABEL=/PARTUUID=
//!    lookup);
//! 3. /run, /run/lock, /dev/shm, /dev/pts and /dev/ptmx (`dirs.rs`);
//! 4. the loopback interface up (`loopback.rs`);
//! 5. /etc/machine-id if empty (`machine_id.rs`);
//! 6. a random seed carried over from the last boot (`random_seed.rs`);
//! 7. kernel settings from sysctl.d and /etc/sysctl.conf (`sysctl.rs`).
//!
//! At shutdown, once the workspaces have stopped: a fresh random seed saved, the
//! kernel's messages saved (`kmsg.rs`), and every swap area off, before
//! pid1/shutdown.rs unmounts.
//!
//! The hostname from /etc/hostname is set earlier, with the console (pid1/console.rs);
//! this only reports it. Each duty says on the console what it did.

mod dirs;
mod fsck;
mod fstab;
mod kmsg;
mod loopback;
mod machine_id;
mod mount_all;
mod random_seed;
mod rootfs;
mod source;
mod swap;
mod sysctl;

use super::switch_root::root_is_initramfs;

/// What the boot found, for the shutdown.
pub struct Host {
    /// `/` is a real root (not an initramfs): the host's duties apply.
    real_root: bool,
}

/// Does the host's duties if `/` is a real root and this is a boot (not a re-exec,
/// which finds them done). On an initramfs root (arje as a VM's or an initramfs's
/// init) there is no host to set up and nothing is done.
pub fn boot(cmdline: &str, reexec: bool) -> Host {
    let real_root = !root_is_initramfs();
    if !real_root || reexec {
        return Host { real_root };
    }
    let t0 = std::time::Instant::now();
    log::info!("host: on a real root: its duties before its cards");
    report_hostname();

    let entries = match std::fs::read_to_string(fstab::FSTAB) {
        Ok(text) => {
            let (entries, problems) = fstab::parse(&text);
            for p in problems {
                log::warn!("{}: {p}; the line is skipped", fstab::FSTAB);
            }
            entries
        }
        Err(e) => {
            log::info!("{}: {e}; no filesystem table", fstab::FSTAB);
            Vec::new()
        }
    };
    let mode = fsck::Mode::from_cmdline(cmdline);
    let mut took = Vec::new();
    let mut timed = |name: &str, duty: &mut dyn FnMut()| {
        let t = std::time::Instant::now();
        duty();
        took.push(format!("{name} {}", t.elapsed().as_millis()));
    };
    timed("root", &mut || rootfs::check_and_remount(&entries, mode));
    timed("fstab", &mut || mount_all::mount_all(&entries, mode));
    timed("dirs", &mut dirs::ensure);
    timed("loopback", &mut loopback::up);
    timed("machine-id", &mut machine_id::ensure);
    timed("random-seed", &mut random_seed::carry_over);
    timed("sysctl", &mut sysctl::apply_all);
    log::info!(
        "host: duties done in {} ms ({} ms)",
        t0.elapsed().as_millis(),
        took.join(", ")
    );
    Host { real_root }
}

/// Where a host keeps arje's event journal (in `events/`).
pub const JOURNAL_DIR: &str = "/var/lib/arje";
/// Where a host keeps its services' output (`WORKSPACE/COMMAND.log`).
pub const LOG_DIR: &str = "/var/log/arje";

impl Host {
    /// `path` on the root (made with `mode` if missing), for what a machine booted on a
    /// real root keeps across a reboot as /run does not: the event journal
    /// ([`JOURNAL_DIR`], when no durable directory was named), the services' log files
    /// ([`LOG_DIR`]). None on an initramfs root, or while `/` is read-only (fsck failed).
    pub fn disk_dir(&self, path: &str, mode: u32) -> Option<std::path::PathBuf> {
        if !self.real_root {
            return None;
        }
        match rustix::fs::statvfs("/") {
            Ok(st) if !st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY) => {}
            Ok(_) => {
                log::warn!("/ is read-only: {path} is not used this boot");
                return None;
            }
            Err(e) => {
                log::warn!("statvfs /: {e}: {path} is not used this boot");
                return None;
            }
        }
        use std::os::unix::fs::DirBuilderExt;
        match std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(path)
        {
            Ok(()) => Some(path.into()),
            Err(e) => {
                log::warn!("{path}: {e}: not used this boot");
                None
            }
        }
    }

    /// Once the workspaces have stopped, before the last unmount: a seed kept for the
    /// next boot, the kernel's messages kept in /var/log/arje-kernel.log, and swap off
    /// (a swap file would keep its filesystem busy).
    pub fn at_shutdown(&self) {
        if self.real_root {
            random_seed::save_at_shutdown();
            if let Some(dir) = self.disk_dir("/var/log", 0o755) {
                kmsg::save(std::path::Path::new("/dev/kmsg"), &dir);
            }
            swap::off_all();
        }
    }
}

fn report_hostname() {
    let uname = rustix::system::uname();
    log::info!(
        "hostname {} (arje.hostname= or /etc/hostname)",
        uname.nodename().to_string_lossy()
    );
}
