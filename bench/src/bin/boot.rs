//! Boot benchmark: time from PID 1 exec to "ready" for arje-init against a busybox-sh
//! /init that does the same mounts, and against tini-static as PID 1 running that same
//! script; all on the same kernel and command line, interleaved in one run. Also the
//! stripped sizes of arje-init, tini-static and catatonit.
//!
//! Usage: `cargo run --release -p arje-bench --bin boot [ROUNDS]` (default 3 rounds).
//!
//! "ready" is arje's "control socket ready" line, and for the baselines the line the
//! script prints after its last mount. The start mark is arje's CLOCK_BOOTTIME at the
//! top of main, and for the shell /proc/uptime read right after mounting /proc (10 ms
//! resolution): compare the absolute ready boottimes first, the deltas second.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

const BASELINE_INIT: &str = r#"#!/bin/sh
# The mounts arje-init does as PID 1, in the same order, then a ready line.
mount -t proc -o nosuid,nodev,noexec proc /proc
read s _ </proc/uptime
echo "baseline: start at uptime $s"
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev
mkdir -p /dev/pts
mount -t devpts -o nosuid,noexec,gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run
mount -t cgroup2 -o nosuid,nodev,noexec,nsdelegate cgroup2 /sys/fs/cgroup
read r _ </proc/uptime
echo "baseline: ready at uptime $r"
poweroff -f
"#;

struct Variant {
    name: &'static str,
    initramfs: PathBuf,
    append: &'static str,
    start_key: &'static str,
    ready_key: &'static str,
}

#[derive(Default)]
struct Sample {
    start: Option<f64>,
    ready: Option<f64>,
    wall: f64,
    /// arje's own account of exec→ready: its `boot done in` and ready lines' steps,
    /// `(step, ms)` in order (docs/PID1.md, "Where boot's time goes").
    steps: Vec<(String, f64)>,
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let prep = Command::new("bash")
        .arg(root.join("scripts/prepare-boot-tests.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/prepare-boot-tests.sh");
    assert!(prep.status.success(), "prepare-boot-tests.sh failed");
    let text = String::from_utf8_lossy(&prep.stdout).into_owned();
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(PathBuf::from)
            .expect(k)
    };
    let (kernel, arje_img) = (get("KERNEL="), get("INITRAMFS="));

    let bench_dir = root.join("build/bench");
    std::fs::create_dir_all(&bench_dir).expect("mkdir build/bench");
    let script = bench_dir.join("baseline-init.sh");
    std::fs::write(&script, BASELINE_INIT).expect("write baseline init");
    let baseline_img = bench_dir.join("baseline.cpio.gz");
    let st = Command::new("bash")
        .arg(root.join("initramfs/build.sh"))
        .args([
            "--out".as_ref(),
            baseline_img.as_os_str(),
            "--init".as_ref(),
            script.as_os_str(),
        ])
        .args(["--no-modules", "--file", "/usr/bin/tini-static:/bin/tini"])
        .status()
        .expect("initramfs/build.sh");
    assert!(st.success(), "baseline initramfs build failed");

    let variants = [
        Variant {
            name: "arje-init",
            initramfs: arje_img,
            // No module loading: the baselines load none either.
            append: "arje.cards=/etc/arje/scenarios/ready arje.modules=/none",
            start_key: "PID 1 start at boottime ",
            ready_key: "(boottime ",
        },
        Variant {
            name: "busybox sh /init",
            initramfs: baseline_img.clone(),
            append: "",
            start_key: "baseline: start at uptime ",
            ready_key: "baseline: ready at uptime ",
        },
        Variant {
            name: "tini-static + sh",
            initramfs: baseline_img,
            append: "rdinit=/bin/tini -- /init",
            start_key: "baseline: start at uptime ",
            ready_key: "baseline: ready at uptime ",
        },
    ];

    let mut samples: Vec<Vec<Sample>> = variants.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (i, v) in variants.iter().enumerate() {
            let s = boot(&kernel, v);
            eprintln!(
                "round {round} {:<18} start {:?} ready {:?} wall {:.1}s",
                v.name, s.start, s.ready, s.wall
            );
            samples[i].push(s);
        }
    }

    println!("boot to ready, same kernel, TCG, {rounds} rounds interleaved (medians)");
    println!(
        "{:<18} {:>14} {:>14} {:>16} {:>10}",
        "init", "start boottime", "ready boottime", "exec->ready ms", "wall s"
    );
    for (v, s) in variants.iter().zip(&samples) {
        let start = median(s.iter().filter_map(|x| x.start));
        let ready = median(s.iter().filter_map(|x| x.ready));
        let delta = median(
            s.iter()
                .filter_map(|x| Some((x.ready? - x.start?) * 1000.0)),
        );
        let wall = median(s.iter().map(|x| x.wall));
        println!(
            "{:<18} {:>13.3}s {:>13.3}s {:>16.0} {:>10.1}",
            v.name, start, ready, delta, wall
        );
    }

    // arje's steps, median of the rounds, in the order it took them.
    let arje = &samples[0];
    let mut names: Vec<String> = Vec::new();
    for (name, _) in arje.iter().flat_map(|s| &s.steps) {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    if !names.is_empty() {
        println!("\narje-init's exec->ready by step (its console lines; ms, median of the rounds [min-max])");
        for name in &names {
            let all: Vec<f64> = arje
                .iter()
                .flat_map(|s| s.steps.iter().filter(|(n, _)| n == name).map(|(_, ms)| *ms))
                .collect();
            let lo = all.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = all.iter().copied().fold(0.0, f64::max);
            println!(
                "  {name:<24} {:>7.1}  [{lo:.1}-{hi:.1}]",
                median(all.iter().copied())
            );
        }
    }

    println!("\nstripped static binaries (bytes)");
    let arje = root.join("build/bin/test/arje-init");
    for (name, path) in [
        ("arje-init", arje.as_path()),
        ("tini-static", Path::new("/usr/bin/tini-static")),
        ("catatonit", Path::new("/usr/bin/catatonit")),
    ] {
        let size = std::fs::metadata(path)
            .map(|m| m.len().to_string())
            .unwrap_or_else(|e| e.to_string());
        println!("{name:<12} {size:>10}  {}", path.display());
    }
}

fn median(it: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = it.collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `51.5 ms (mounts 37.2, console 5.3)` → `[(PREFIX total, 51.5), (PREFIX: mounts, 37.2),
/// (PREFIX: console, 5.3)]`.
fn steps(text: &str, prefix: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    if let Some(total) = number_after(text, "") {
        out.push((format!("{prefix} total"), total));
    }
    let Some(inner) = text.split_once('(').and_then(|(_, r)| r.split_once(')')) else {
        return out;
    };
    for part in inner.0.split(", ") {
        if let Some((name, ms)) = part.rsplit_once(' ') {
            if let Ok(ms) = ms.parse() {
                out.push((format!("{prefix}: {name}"), ms));
            }
        }
    }
    out
}

fn number_after(line: &str, key: &str) -> Option<f64> {
    let rest = &line[line.find(key)? + key.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// One boot, bounded at 120 s; reads the console until QEMU exits.
fn boot(kernel: &Path, v: &Variant) -> Sample {
    let accel = std::env::var("ARJE_ACCEL").unwrap_or_else(|_| "tcg".into());
    let started = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", &accel, "-m", "512M", "-smp", "1", "-no-reboot"])
        .args([
            "-display", "none", "-serial", "stdio", "-monitor", "none", "-nic", "none",
        ])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(&v.initramfs)
        .arg("-append")
        .arg(format!(
            "console=ttyS0 quiet panic=-1 no_timer_check {}",
            v.append
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn qemu-system-x86_64");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
            if tx
                .send(String::from_utf8_lossy(&line).into_owned())
                .is_err()
            {
                break;
            }
        }
    });
    let deadline = started + Duration::from_secs(120);
    let mut s = Sample::default();
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                if line.contains(v.start_key) && s.start.is_none() {
                    s.start = number_after(&line, v.start_key);
                }
                if line.contains(v.ready_key) && s.ready.is_none() && !line.contains(v.start_key) {
                    s.ready = number_after(&line, v.ready_key);
                }
                for (key, prefix) in [("boot done in ", "pid1"), ("runtime start ", "runtime")] {
                    if let Some(at) = line.find(key) {
                        s.steps.extend(steps(&line[at + key.len()..], prefix));
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                eprintln!("{}: boot timed out", v.name);
                let _ = child.kill();
                break;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = child.wait();
    s.wall = started.elapsed().as_secs_f64();
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_steps_reads_the_total_and_each_named_step() {
        let got = steps(
            "51.5 ms (mounts 37.2, power button 3.1); starting the runtime",
            "pid1",
        );
        assert_eq!(
            got,
            [
                ("pid1 total".to_string(), 51.5),
                ("pid1: mounts".to_string(), 37.2),
                ("pid1: power button".to_string(), 3.1)
            ]
        );
    }
}
