//! Followers that never read cannot make the daemon hold unbounded memory: all
//! connections' write buffers together are bounded (`control::WRITE_BUDGET`), the
//! client with the most queued bytes is dropped when the bound is hit, and everyone else
//! is still served.

use std::io::Write;

use arje_tests::client::Client;
use arje_tests::host::{out, Daemon};
use shuma_card::protocol::{Request, Response, Stream};

/// Followers that never read after their first frame.
const STALLED: usize = 120;

/// Bytes the service prints once released: enough that each stalled follower would
/// queue well over a MiB if nothing bounded the total.
const CHATTER: usize = 3_000_000;

/// A service that prints `ready`, waits until the FIFO is opened and closed, prints
/// `CHATTER` bytes and a `DONE` line, then idles.
fn chatty_card(fifo: &std::path::Path) -> String {
    format!(
        r#"
[workspace]
name = "chatty"

[[service]]
name = "svc"
argv = ["/bin/sh", "-c", "echo ready; cat {fifo} > /dev/null; head -c {CHATTER} /dev/zero; echo; echo DONE; exec /bin/sleep 3600"]
"#,
        fifo = fifo.display()
    )
}

/// Peak resident memory of `pid` in KiB (VmHWM of /proc/PID/status).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

fn follow(d: &Daemon) -> Client {
    let mut c = d.client();
    c.send(&Request::Logs {
        workspace: "chatty".into(),
        command: "svc".into(),
        stream: Stream::Stdout,
        follow: true,
    });
    c
}

#[test]
fn test_followers_that_never_read_stay_within_the_write_budget() {
    // Arrange: the service has printed `ready`; STALLED followers each read that first
    // frame (so each is registered as a follower) and then never read again.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("go");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let d = Daemon::start_with(&[("chatty.toml", &chatty_card(&fifo))], &[]);
    d.wait_output("chatty", "svc", "ready");
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        let mut c = follow(&d);
        assert!(matches!(c.recv(), Some(Response::Log { .. })));
        stalled.push(c);
    }
    // One follower that keeps reading: when it has seen DONE, the daemon has pushed all
    // the output to every follower.
    let mut reader = follow(&d);
    let before_kib = peak_rss_kib(d.child.id());

    // Act: release the chatter, and read it all on the one reading follower.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .unwrap()
        .write_all(b"go")
        .unwrap();
    let mut tail = Vec::new();
    loop {
        match reader.recv() {
            Some(Response::Log { data, .. }) => {
                tail.extend_from_slice(&data);
                let keep = tail.len().saturating_sub(16);
                tail.drain(..keep);
                if tail.ends_with(b"DONE\n") {
                    break;
                }
            }
            other => panic!("the reading follower got {other:?}"),
        }
    }
    let peak_kib = peak_rss_kib(d.child.id());
    eprintln!("daemon peak RSS {peak_kib} KiB ({before_kib} KiB before the chatter)");
    let ping = d.shuma(&["ping"]);

    // Assert. The bound is generous on purpose: the write budget is 64 MiB, and the
    // daemon's own memory, the allocator's slack and the frames being encoded come on
    // top. Without a budget the stalled followers alone queue about 120 x 2.8 MiB.
    assert!(
        peak_kib < before_kib + 128 * 1024,
        "peak RSS {peak_kib} KiB, {before_kib} KiB before the chatter"
    );
    assert_eq!(out(&ping).trim(), "pong");
    drop(stalled);
}
