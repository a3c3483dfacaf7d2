//! The service the benchmarks that compare supervisors run under each of them, and the
//! FIFO through which it says it started.
//!
//! The program is tiny and static (no libc, see [`SERVICE_C`]). As it starts it reads
//! CLOCK_MONOTONIC and writes that time and its pid (24 bytes, less than `PIPE_BUF`, so
//! one atomic write) into the FIFO `started` in its working directory; then it says it
//! is ready in both ways a supervisor may ask for (a newline on fd 3 if fd 3 is a pipe,
//! s6's notification fd; `READY=1` to `$NOTIFY_SOCKET` if set, systemd's sd_notify), and
//! pauses. Under a supervisor that asks for neither, the two steps do nothing.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The service's source. `_start` hands the initial stack pointer to `start_c`, which
/// finds the environment after argv's NULL (the System V x86-64 process start).
pub const SERVICE_C: &str = r#"
__asm__(".globl _start\n_start:\n\tmov %rsp, %rdi\n\tcall start_c\n\thlt\n");

static long sys6(long n, long a, long b, long c, long d, long e, long f) {
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long r;
    __asm__ volatile ("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9) : "rcx", "r11", "memory");
    return r;
}
#define sys3(n, a, b, c) sys6(n, (long)(a), (long)(b), (long)(c), 0, 0, 0)

void start_c(long *sp) {
    long t[3];
    sys3(228, 1, t, 0);                         /* clock_gettime(CLOCK_MONOTONIC) */
    t[2] = sys3(39, 0, 0, 0);                   /* getpid */
    long fd = sys3(2, "started", 1, 0);         /* open O_WRONLY */
    sys3(1, fd, t, 24);
    sys3(3, fd, 0, 0);

    /* s6's notification fd: fd 3, when it is a pipe (st_mode is at offset 24). */
    unsigned long st[18];
    if (sys3(5, 3, st, 0) == 0 && ((unsigned)(st[3]) & 0170000) == 0010000)
        sys3(1, 3, "\n", 1);

    /* sd_notify: READY=1 to the datagram socket named by NOTIFY_SOCKET. */
    char **envp = (char **)(sp + sp[0] + 2);
    for (; *envp; envp++) {
        const char *e = *envp, *k = "NOTIFY_SOCKET=";
        while (*k && *e == *k) { e++; k++; }
        if (*k) continue;
        struct { unsigned short family; char path[108]; } a;
        long n = 0;
        a.family = 1;                           /* AF_UNIX */
        for (; e[n] && n < 107; n++) a.path[n] = e[n];
        if (a.path[0] == '@') a.path[0] = 0;    /* the abstract namespace */
        long s = sys3(41, 1, 2 | 02000000, 0);  /* socket(AF_UNIX, SOCK_DGRAM|CLOEXEC) */
        sys6(44, s, (long)"READY=1", 7, 0, (long)&a, 2 + n);
        sys3(3, s, 0, 0);
        break;
    }
    for (;;) sys3(34, 0, 0, 0);                 /* pause */
}
"#;

/// Compile [`SERVICE_C`] as `dir/name`; returns its path.
pub fn build_service(dir: &Path, name: &str) -> PathBuf {
    crate::compile_static(dir, name, SERVICE_C)
}

/// One start of the service: when (CLOCK_MONOTONIC, ns) and which pid.
#[derive(Clone, Copy, Debug)]
pub struct Stamp {
    pub mono_ns: i128,
    pub pid: i32,
}

/// The FIFO the services write their [`Stamp`]s into, opened read-write so that it never
/// sees EOF and a service's open never blocks.
pub struct Stamps(File);

impl Stamps {
    /// Make the FIFO at `path` and open it.
    pub fn create(path: &Path) -> Stamps {
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid C string.
        let made = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
        assert_eq!(made, 0, "mkfifo {path:?}");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .unwrap();
        Stamps(f)
    }

    /// Throw away the stamps already written (a service that started while its
    /// supervisor was being ended).
    pub fn drain(&mut self) {
        use std::os::fd::AsRawFd;
        let fd = self.0.as_raw_fd();
        // SAFETY: fcntl on an fd this struct owns, flags only.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        // SAFETY: as above.
        unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) };
        let mut buf = [0u8; 4096];
        while self.0.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
        // SAFETY: as above.
        unsafe { libc::fcntl(fd, libc::F_SETFL, flags) };
    }

    /// The next stamp, blocking until a service writes one.
    pub fn read(&mut self) -> Stamp {
        let mut b = [0u8; 24];
        self.0.read_exact(&mut b).unwrap();
        let word = |i: usize| i64::from_ne_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
        Stamp {
            mono_ns: word(0) as i128 * 1_000_000_000 + word(1) as i128,
            pid: word(2) as i32,
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds, the clock of [`Stamp::mono_ns`].
pub fn monotonic_ns() -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime into a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}
