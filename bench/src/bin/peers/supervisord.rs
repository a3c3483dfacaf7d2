//! supervisord: one `[program:svc]` with `numprocs = N`, started with the daemon
//! (`autostart`), driven with `supervisorctl`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::peer::{end_tree, run, Ctx, Peer};

#[derive(Default)]
pub struct Supervisord {
    child: Option<Child>,
    conf: PathBuf,
}

impl Supervisord {
    pub fn new() -> Supervisord {
        Supervisord::default()
    }
}

fn conf(ctx: &Ctx) -> String {
    let d = ctx.dir.display();
    // supervisord raises its soft fd limit to `minfds` and refuses to start below it;
    // each process holds a few (its output pipes and log files).
    let minfds = 1024 + 8 * ctx.n;
    format!(
        "[supervisord]\nnodaemon=true\nlogfile={d}/supervisord.log\npidfile={d}/supervisord.pid\n\
         childlogdir={d}/logs\nminfds={minfds}\nminprocs={}\n\n\
         [unix_http_server]\nfile={d}/supervisor.sock\n\n\
         [rpcinterface:supervisor]\n\
         supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n\
         [supervisorctl]\nserverurl=unix://{d}/supervisor.sock\n\n\
         [program:svc]\ncommand={}\nprocess_name=%(program_name)s_%(process_num)05d\n\
         numprocs={}\ndirectory={}\nautostart=true\nautorestart=true\nstartsecs=0\n\
         startretries=1000000\n",
        200 + 2 * ctx.n,
        ctx.svc.display(),
        ctx.n,
        ctx.work.display()
    )
}

impl Peer for Supervisord {
    fn label(&self) -> String {
        format!("supervisord {}", arje_bench::dpkg_version("supervisor"))
    }

    fn config(&self) -> String {
        "`supervisord -n -c CONF`: one `[program:svc]` with `numprocs = N`, `autostart`, \
         `autorestart = true`, `startsecs = 0` (running at once, restarted at once), output \
         to its default per-process log files (`childlogdir`); no readiness; stop: \
         `supervisorctl stop all`"
            .into()
    }

    fn start(&mut self, ctx: &Ctx) -> i32 {
        std::fs::create_dir_all(ctx.dir.join("logs")).unwrap();
        self.conf = ctx.dir.join("supervisord.conf");
        std::fs::write(&self.conf, conf(ctx)).unwrap();
        let child = Command::new("supervisord")
            .arg("-n")
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start supervisord: {e}"));
        let pid = child.id() as i32;
        self.child = Some(child);
        pid
    }

    fn wait_ready(&mut self, _ctx: &Ctx) -> bool {
        false
    }

    fn stop_all(&mut self, _ctx: &Ctx) {
        run(Command::new("supervisorctl")
            .arg("-c")
            .arg(&self.conf)
            .args(["stop", "all"]));
    }

    fn run_true(&mut self, _ctx: &Ctx) -> Option<Duration> {
        None
    }

    fn finish(&mut self, _ctx: &Ctx) {
        let mut child = self.child.take().expect("started");
        end_tree(child.id() as i32, &mut child);
    }
}
