//! Shared helpers of the benchmark programs.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use shuma_card::protocol::{
    decode_payload, encode_frame, Request, Response, HEADER_LEN, PROTOCOL_VERSION,
};

/// The directory of this benchmark's binary (`target/release`), where the workspace's
/// other binaries are built too.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent().expect("bin dir").to_path_buf()
}

pub mod procfs;
pub mod stamp;

/// Compile a whole C `source` into a static program without libc, `dir/name`, with the
/// system C compiler; returns its path. The flags keep the compiler from calling
/// library functions on its own (memcpy for a copy loop, the stack protector).
pub fn compile_static(dir: &Path, name: &str, source: &str) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    let out = dir.join(name);
    std::fs::write(&src, source).unwrap();
    let status = Command::new("cc")
        .args([
            "-static",
            "-nostdlib",
            "-O2",
            "-fno-stack-protector",
            "-fno-builtin",
            "-fno-tree-loop-distribute-patterns",
            "-o",
        ])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("run cc");
    assert!(status.success(), "cc failed for {name}");
    out
}

/// Compile a tiny static program (no libc: one syscall in `_start`) with the system C
/// compiler; returns its path. `body` is the C statements of `_start`, which may call
/// `sys1(n, a)` and `sys3(n, a, b, c)`.
pub fn tiny_static(dir: &Path, name: &str, body: &str) -> PathBuf {
    compile_static(
        dir,
        name,
        &format!(
            "static long sys1(long n, long a) {{ long r; __asm__ volatile (\"syscall\" : \"=a\"(r) : \"a\"(n), \"D\"(a) : \"rcx\", \"r11\", \"memory\"); return r; }}\n\
             static long sys3(long n, long a, long b, long c) {{ long r; __asm__ volatile (\"syscall\" : \"=a\"(r) : \"a\"(n), \"D\"(a), \"S\"(b), \"d\"(c) : \"rcx\", \"r11\", \"memory\"); return r; }}\n\
             void _start(void) {{ {body} for (;;) sys1(60, 0); }}\n"
        ),
    )
}

/// Whether `prog` is in a directory of `$PATH`.
pub fn on_path(prog: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).exists()))
        .unwrap_or(false)
}

/// The installed version of the Debian package `package` (`dpkg-query -W`), or "?".
pub fn dpkg_version(package: &str) -> String {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", package])
        .stderr(Stdio::null())
        .output();
    out.ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "?".into())
}

/// The median of `v` (sorted in place); 0 for none.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// arje-init in subreaper mode on a socket in `dir`, started and ready.
pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
    _run: tempfile::TempDir,
}

/// A directory on tmpfs, as /run is on a real system (here /tmp and /run are on ext4,
/// where every snapshot rename would cost a journal write).
pub fn run_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("arje-bench-run")
        .tempdir_in("/dev/shm")
        .expect("tempdir in /dev/shm")
}

impl Daemon {
    pub fn start(dir: &Path, extra: &[&str]) -> Daemon {
        Daemon::start_bin(&bin_dir().join("arje-init"), dir, extra)
    }

    /// [`Daemon::start`] with the arje-init at `bin` (e.g. a static build).
    pub fn start_bin(bin: &Path, dir: &Path, extra: &[&str]) -> Daemon {
        let socket = dir.join("control.sock");
        let run = run_dir();
        let mut child = Command::new(bin)
            .arg("--subreaper")
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(run.path())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn arje-init (build it: cargo build --release -p arje-init)");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        for line in lines.by_ref() {
            if line
                .expect("read arje-init log")
                .contains("control socket ready")
            {
                break;
            }
        }
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Daemon {
            child,
            socket,
            _run: run,
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// A blocking client of the control socket, shared by the benchmarks: `Hello` on
/// connect, then one framed request and answer at a time (or a followed stream).
pub struct Client(pub UnixStream);

impl Client {
    pub fn connect(path: &Path) -> Client {
        let mut c = Client(UnixStream::connect(path).expect("connect"));
        let hello = Request::Hello {
            version: PROTOCOL_VERSION,
            client: "bench".into(),
        };
        let answer = c.call(&hello);
        assert!(
            matches!(answer, Response::Hello { .. }),
            "Hello answered with {answer:?}"
        );
        c
    }
    pub fn send(&mut self, req: &Request) {
        self.0.write_all(&encode_frame(req)).unwrap();
    }
    pub fn recv(&mut self) -> Response {
        let mut len = [0u8; HEADER_LEN];
        self.0.read_exact(&mut len).unwrap();
        let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
        self.0.read_exact(&mut buf).unwrap();
        decode_payload(&buf).unwrap()
    }
    pub fn call(&mut self, req: &Request) -> Response {
        self.send(req);
        self.recv()
    }
}
