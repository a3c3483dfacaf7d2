//! arje: `arje-init --subreaper --cards DIR`, the N services in cards of at most 256
//! (a workspace's cap), driven over its control socket; `shuma` for `run --wait`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use arje_bench::{Client, Daemon};
use shuma_card::protocol::{Request, Response};
use shuma_card::spec::MAX_COMMANDS_PER_WORKSPACE;

use crate::peer::{remove_cgroup, timed, Ctx, Peer};

pub struct Arje {
    /// Which build: "glibc", "static musl", or a label given with `--arje-bin`.
    build: String,
    /// A cgroup2 directory under which each round's `--cgroup-root` is made; `None`:
    /// no cgroups (a subreaper's default).
    cgroups: Option<PathBuf>,
    cgroup_root: Option<PathBuf>,
    init: PathBuf,
    shuma: PathBuf,
    daemon: Option<Daemon>,
    workspaces: Vec<String>,
}

impl Arje {
    pub fn new(build: &str, init: PathBuf, shuma: PathBuf) -> Arje {
        Arje {
            build: build.to_string(),
            cgroups: None,
            cgroup_root: None,
            init,
            shuma,
            daemon: None,
            workspaces: Vec::new(),
        }
    }

    /// The same with `--cgroup-root`, a new directory under `base` each round: every
    /// command in a leaf cgroup of its own, stopped with `cgroup.kill`.
    pub fn with_cgroups(mut self, base: PathBuf) -> Arje {
        self.cgroups = Some(base);
        self
    }

    fn socket(&self) -> PathBuf {
        self.daemon.as_ref().expect("started").socket.clone()
    }
}

/// A card of `count` services named from `first`.
fn card(ws: &str, first: usize, count: usize, ctx: &Ctx) -> String {
    let mut s = format!("[workspace]\nname = \"{ws}\"\n");
    for i in first..first + count {
        s += &format!(
            "\n[[service]]\nname = \"s{i:05}\"\nargv = [\"{}\"]\ncwd = \"{}\"\n\
             restart = \"always\"\nbackoff = {{ initial = \"1ms\" }}\nmax_restarts = 0\n\
             ready = \"notify\"\n",
            ctx.svc.display(),
            ctx.work.display()
        );
    }
    s
}

impl Peer for Arje {
    fn label(&self) -> String {
        let cgroups = if self.cgroups.is_some() {
            ", cgroups"
        } else {
            ""
        };
        format!(
            "arje {} ({}{cgroups})",
            env!("CARGO_PKG_VERSION"),
            self.build
        )
    }

    fn config(&self) -> String {
        format!(
            "`{} --subreaper --cards DIR --state-dir /dev/shm/...{}`, cards of {MAX_COMMANDS_PER_WORKSPACE} \
             services at most, each `restart = \"always\"`, `backoff = {{ initial = \"1ms\" }}`, \
             `max_restarts = 0`, `ready = \"notify\"`, `log` the default ring; driven over the \
             control socket (WsStop per workspace, WaitReady per workspace)",
            self.init.display(),
            match &self.cgroups {
                Some(base) => format!(" --cgroup-root {}/arje-peers-...", base.display()),
                None => String::new(),
            }
        )
    }

    fn start(&mut self, ctx: &Ctx) -> i32 {
        let cards = ctx.dir.join("cards");
        std::fs::create_dir_all(&cards).unwrap();
        self.workspaces.clear();
        let mut first = 0;
        while first < ctx.n {
            let count = (ctx.n - first).min(MAX_COMMANDS_PER_WORKSPACE);
            let ws = format!("peers-{}", self.workspaces.len());
            std::fs::write(
                cards.join(format!("{ws}.toml")),
                card(&ws, first, count, ctx),
            )
            .unwrap();
            self.workspaces.push(ws);
            first += count;
        }
        let mut args = vec!["--cards".to_string(), cards.to_str().unwrap().to_string()];
        if let Some(base) = &self.cgroups {
            let root = base.join(format!(
                "arje-peers-{}-{}",
                std::process::id(),
                ctx.dir.file_name().unwrap().to_str().unwrap()
            ));
            std::fs::create_dir(&root).unwrap_or_else(|e| panic!("mkdir {root:?}: {e}"));
            args.extend([
                "--cgroup-root".to_string(),
                root.to_str().unwrap().to_string(),
            ]);
            self.cgroup_root = Some(root);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let daemon = Daemon::start_bin(&self.init, &ctx.dir, &args);
        let pid = daemon.child.id() as i32;
        self.daemon = Some(daemon);
        pid
    }

    fn wait_ready(&mut self, _ctx: &Ctx) -> bool {
        let mut c = Client::connect(&self.socket());
        for ws in &self.workspaces {
            let req = Request::WaitReady {
                workspace: ws.clone(),
                command: None,
                timeout_ms: Some(120_000),
            };
            match c.call(&req) {
                Response::Ok => {}
                other => panic!("WaitReady {ws}: {other:?}"),
            }
        }
        true
    }

    fn stop_all(&mut self, _ctx: &Ctx) {
        // One connection per workspace, all asked before any answer is read, so that
        // the workspaces stop together as the other supervisors' services do. All are
        // connected first: a connection made while arje is busy with a stop can be
        // closed with "no Hello" although its Hello was sent (see docs/BENCHMARKS.md).
        let socket = self.socket();
        let mut conns: Vec<Client> = self
            .workspaces
            .iter()
            .map(|_| Client::connect(&socket))
            .collect();
        for (c, ws) in conns.iter_mut().zip(&self.workspaces) {
            c.send(&Request::WsStop {
                name: ws.clone(),
                grace_ms: None,
            });
        }
        for (c, ws) in conns.iter_mut().zip(&self.workspaces) {
            match c.recv() {
                Response::Ok => {}
                other => panic!("WsStop {ws}: {other:?}"),
            }
        }
    }

    fn run_true(&mut self, _ctx: &Ctx) -> Option<Duration> {
        let mut cmd = Command::new(&self.shuma);
        cmd.arg("--socket").arg(self.socket()).args([
            "run",
            &self.workspaces[0],
            "--wait",
            "--",
            "/bin/true",
        ]);
        Some(timed(&mut cmd))
    }

    fn finish(&mut self, _ctx: &Ctx) {
        // Dropping the daemon sends SIGTERM and reaps it.
        self.daemon = None;
        if let Some(root) = self.cgroup_root.take() {
            remove_cgroup(&root);
        }
    }
}
