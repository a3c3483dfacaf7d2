//! runit (`runsvdir` and one `runsv` per service) and s6 (`s6-svscan` and one
//! `s6-supervise` per service): a scan directory of N service directories, each with
//! `run`, a symlink to the service program, and `started`, one to the shared FIFO.
//! Both keep a `supervise/control` FIFO per service that takes one-letter commands
//! (`d`: down, and stay down), which is what `sv down` and `s6-svc -d` write.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::peer::{end_tree, run, Ctx, Peer};

#[derive(Clone, Copy, PartialEq)]
pub enum Kind {
    Runit,
    S6,
    /// s6 without `notification-fd`: s6-supervise then waits 1 s before it restarts a
    /// service, however long that ran (measured; with the fd and a service that said it
    /// was ready, the restart is immediate).
    S6WithoutReadiness,
}

pub struct SvDir {
    kind: Kind,
    child: Option<Child>,
    dirs: Vec<PathBuf>,
}

impl SvDir {
    pub fn new(kind: Kind) -> SvDir {
        SvDir {
            kind,
            child: None,
            dirs: Vec::new(),
        }
    }

    /// The scanner program and the Debian package.
    fn names(&self) -> (&'static str, &'static str) {
        match self.kind {
            Kind::Runit => ("runsvdir", "runit"),
            Kind::S6 | Kind::S6WithoutReadiness => ("s6-svscan", "s6"),
        }
    }
}

impl Peer for SvDir {
    fn label(&self) -> String {
        let (_, package) = self.names();
        let without = match self.kind {
            Kind::S6WithoutReadiness => " (no notif. fd)",
            _ => "",
        };
        format!("{package} {}{without}", arje_bench::dpkg_version(package))
    }

    fn config(&self) -> String {
        match self.kind {
            Kind::Runit => "`runsvdir SCANDIR`, one `runsv` per service directory (`run` only, no \
                            `log/`); restarts at once a service that ran 1 s or more (not \
                            configurable); no readiness; stop: `d` into each `supervise/control`"
                .into(),
            Kind::S6 => {
                "`s6-svscan -c N+16 SCANDIR`, one `s6-supervise` per service directory (`run`, \
                         `notification-fd` = 3, no `log/`); readiness through the notification \
                         fd, waited for with `s6-svwait -U -a` over all directories; stop: `d` \
                         into each `supervise/control`"
                    .into()
            }
            Kind::S6WithoutReadiness => "as s6, without `notification-fd`".into(),
        }
    }

    fn start(&mut self, ctx: &Ctx) -> i32 {
        let scan = ctx.dir.join("scan");
        self.dirs.clear();
        for i in 0..ctx.n {
            let d = scan.join(format!("s{i:05}"));
            std::fs::create_dir_all(&d).unwrap();
            std::os::unix::fs::symlink(&ctx.svc, d.join("run")).unwrap();
            std::os::unix::fs::symlink(ctx.work.join("started"), d.join("started")).unwrap();
            if self.kind == Kind::S6 {
                std::fs::write(d.join("notification-fd"), "3\n").unwrap();
            }
            self.dirs.push(d);
        }
        let (prog, _) = self.names();
        let mut cmd = Command::new(prog);
        if self.kind != Kind::Runit {
            // s6-svscan keeps at most `-c` services (its own default below N = 1000).
            cmd.arg("-c").arg((ctx.n + 16).to_string());
        }
        let child = cmd
            .arg(&scan)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {prog}: {e}"));
        let pid = child.id() as i32;
        self.child = Some(child);
        pid
    }

    fn wait_ready(&mut self, _ctx: &Ctx) -> bool {
        if self.kind != Kind::S6 {
            return false;
        }
        run(Command::new("s6-svwait")
            .args(["-U", "-a", "-t", "120000"])
            .args(&self.dirs));
        true
    }

    fn stop_all(&mut self, _ctx: &Ctx) {
        for d in &self.dirs {
            let mut control = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(d.join("supervise/control"))
                .unwrap_or_else(|e| panic!("open {d:?}/supervise/control: {e}"));
            control.write_all(b"d").unwrap();
        }
    }

    fn run_true(&mut self, _ctx: &Ctx) -> Option<Duration> {
        None
    }

    fn finish(&mut self, _ctx: &Ctx) {
        let mut child = self.child.take().expect("started");
        end_tree(child.id() as i32, &mut child);
    }
}
