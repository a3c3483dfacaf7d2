//! systemd as a user manager: `systemd --user` with a template unit `peer@.service` and
//! N instances wanted by `default.target`, driven with `systemctl --user` and
//! `systemd-run --user` over its private socket in `$XDG_RUNTIME_DIR`.
//!
//! Where systemd is not the init (a container), `systemd --user` refuses to start
//! unless `/run/systemd/system` exists ("Trying to run as user instance, but the system
//! has not been booted with systemd"). The manager is started in a mount namespace of its
//! own where a tmpfs on `/run/systemd` holds that directory, so the host sees nothing.
//! It also needs a cgroup it may write to, as `user@.service` delegates one: the
//! benchmark makes `arje-peers-systemd` in each cgroup hierarchy systemd uses (the v2
//! one and, on a hybrid host, v1 `name=systemd`), and the manager enters them before it
//! execs. Its log goes to stderr (`/dev/null`), not to a journal.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::peer::{cgroup_roots, end_tree, remove_cgroup, run, timed, Ctx, Peer};

const CGROUP: &str = "arje-peers-systemd";

pub struct Systemd {
    child: Option<Child>,
    runtime_dir: PathBuf,
    config_dir: PathBuf,
    ready: Option<UnixDatagram>,
    cgroups: Vec<PathBuf>,
}

/// Why `systemd --user` cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    for prog in ["systemd-run", "systemctl"] {
        if !arje_bench::on_path(prog) {
            return Some(format!("{prog} is not installed"));
        }
    }
    if !Path::new("/usr/lib/systemd/systemd").exists() {
        return Some("/usr/lib/systemd/systemd is not installed".into());
    }
    // SAFETY: getuid has no failure and no memory effects.
    if unsafe { libc::getuid() } != 0 {
        return Some("the mount namespace and the cgroups need root".into());
    }
    if cgroup_roots().is_empty() {
        return Some("no cgroup v2 or name=systemd hierarchy is mounted".into());
    }
    None
}

impl Systemd {
    pub fn new() -> Systemd {
        Systemd {
            child: None,
            runtime_dir: PathBuf::new(),
            config_dir: PathBuf::new(),
            ready: None,
            cgroups: Vec::new(),
        }
    }

    fn env(&self, cmd: &mut Command) {
        cmd.env("XDG_RUNTIME_DIR", &self.runtime_dir)
            .env("XDG_CONFIG_HOME", &self.config_dir);
    }
}

const UNIT: &str = "[Unit]\nDescription=peer %i\nStartLimitIntervalSec=0\n\n\
                    [Service]\nType=notify\nExecStart=SVC\nWorkingDirectory=WORK\n\
                    Restart=always\nRestartSec=0\n";

/// The manager's start, in a namespace where `/run/systemd/system` exists (see the
/// module docs) and in the benchmark's cgroups: `$0` is the manager, the rest the
/// cgroup directories.
const LAUNCH: &str = r#"
if [ ! -d /run/systemd/system ]; then
    mount -t tmpfs -o mode=755 arje-peers /run/systemd && mkdir /run/systemd/system || exit 1
fi
for cg in "$@"; do echo $$ > "$cg/cgroup.procs" || exit 1; done
exec "$0" --user
"#;

impl Peer for Systemd {
    fn label(&self) -> String {
        format!("systemd {} --user", arje_bench::dpkg_version("systemd"))
    }

    fn config(&self) -> String {
        "`systemd --user` (see the notes on running it here), a template `peer@.service`: \
         `Type=notify`, `Restart=always`, `RestartSec=0`, `StartLimitIntervalSec=0`, N \
         instances in `default.target.wants/`; ready = the manager's own `READY=1` (startup \
         finished: every start job done, each job ending at the service's `READY=1`); stop: \
         `systemctl --user stop 'peer@*'`"
            .into()
    }

    fn start(&mut self, ctx: &Ctx) -> i32 {
        self.runtime_dir = ctx.dir.join("xdg-runtime");
        self.config_dir = ctx.dir.join("xdg-config");
        std::fs::create_dir_all(&self.runtime_dir).unwrap();
        std::fs::set_permissions(
            &self.runtime_dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let units = self.config_dir.join("systemd/user");
        let wants = units.join("default.target.wants");
        std::fs::create_dir_all(&wants).unwrap();
        let unit = UNIT
            .replace("SVC", ctx.svc.to_str().unwrap())
            .replace("WORK", ctx.work.to_str().unwrap());
        std::fs::write(units.join("peer@.service"), unit).unwrap();
        for i in 0..ctx.n {
            std::os::unix::fs::symlink(
                units.join("peer@.service"),
                wants.join(format!("peer@{i:05}.service")),
            )
            .unwrap();
        }
        self.cgroups = cgroup_roots().iter().map(|r| r.join(CGROUP)).collect();
        for cg in &self.cgroups {
            std::fs::create_dir_all(cg).unwrap_or_else(|e| panic!("mkdir {cg:?}: {e}"));
        }
        let notify = ctx.dir.join("manager-notify");
        self.ready = Some(UnixDatagram::bind(&notify).unwrap());
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-c", LAUNCH])
            .arg("/usr/lib/systemd/systemd")
            .args(&self.cgroups)
            .env("NOTIFY_SOCKET", &notify)
            .env("SYSTEMD_LOG_TARGET", "console")
            .current_dir(&ctx.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.env(&mut cmd);
        let child = cmd.spawn().expect("start systemd --user");
        let pid = child.id() as i32;
        self.child = Some(child);
        pid
    }

    fn wait_ready(&mut self, _ctx: &Ctx) -> bool {
        let sock = self.ready.as_ref().expect("started");
        let mut buf = [0u8; 4096];
        loop {
            let n = sock.recv(&mut buf).expect("the manager's notification");
            if buf[..n].split(|&b| b == b'\n').any(|l| l == b"READY=1") {
                return true;
            }
        }
    }

    fn stop_all(&mut self, _ctx: &Ctx) {
        let mut cmd = Command::new("systemctl");
        cmd.args(["--user", "stop", "peer@*.service"]);
        self.env(&mut cmd);
        run(&mut cmd);
    }

    fn run_true(&mut self, _ctx: &Ctx) -> Option<Duration> {
        let mut cmd = Command::new("systemd-run");
        cmd.args(["--user", "--wait", "--quiet", "/bin/true"]);
        self.env(&mut cmd);
        Some(timed(&mut cmd))
    }

    fn finish(&mut self, _ctx: &Ctx) {
        let mut child = self.child.take().expect("started");
        end_tree(child.id() as i32, &mut child);
        self.ready = None;
        // The manager removes the cgroups it made below ours as it exits; ours go last,
        // the deepest first.
        for cg in &self.cgroups {
            remove_cgroup(cg);
        }
    }
}
