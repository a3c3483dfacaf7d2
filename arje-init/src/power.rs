//! The machine's own commands: arje-init called as `poweroff`, `reboot`, `halt`,
//! `shutdown` or `telinit` (a symlink to it, installed ahead of the distribution's in
//! `PATH`; docs/HOST.md) asks PID 1 to stop the machine with systemd's signals:
//! SIGRTMIN+4 poweroff, +5 reboot, +3 halt, and +14, +15, +13 with `--force` (no orderly
//! stop of the services). arje as PID 1 understands them (docs/PID1.md), and so does
//! systemd, so the same command works whichever init runs. Debian's own `poweroff`
//! asks systemd over D-Bus and does nothing under another init.
//!
//! Only root may signal PID 1, so `sudo reboot` works and a user's `reboot` is refused
//! by the kernel, as elsewhere.

/// What was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    Poweroff,
    Reboot,
    Halt,
}

/// The parsed command: what, and whether immediately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub what: Power,
    pub force: bool,
}

/// systemd's numbers, by the kernel's count (glibc's SIGRTMIN is 34): arje is built
/// with musl, whose SIGRTMIN differs, so they are written out.
fn signal(r: Request) -> i32 {
    match (r.what, r.force) {
        (Power::Halt, false) => 37,
        (Power::Poweroff, false) => 38,
        (Power::Reboot, false) => 39,
        (Power::Halt, true) => 47,
        (Power::Poweroff, true) => 48,
        (Power::Reboot, true) => 49,
    }
}

/// Is `argv0` one of the machine's commands?
pub fn called_as(argv0: &str) -> bool {
    let name = argv0.rsplit('/').next().unwrap_or(argv0);
    matches!(
        name,
        "poweroff" | "reboot" | "halt" | "shutdown" | "telinit"
    )
}

/// Parse the command line as the command named by `argv0` takes it. `Ok(None)`: nothing
/// to do (`--help`, `-w`).
pub fn parse(argv0: &str, args: &[String]) -> Result<Option<Request>, String> {
    let name = argv0.rsplit('/').next().unwrap_or(argv0);
    let mut what = match name {
        "poweroff" => Power::Poweroff,
        "reboot" => Power::Reboot,
        "halt" => Power::Halt,
        // shutdown(8) powers off unless told otherwise (-h is poweroff on Debian too).
        "shutdown" => Power::Poweroff,
        "telinit" => return telinit(args),
        _ => return Err(format!("{name}: not a machine command")),
    };
    let mut force = false;
    let mut when_seen = false;
    for a in args {
        match a.as_str() {
            "-f" | "--force" => force = true,
            "-p" | "--poweroff" | "-P" | "-h" => what = Power::Poweroff,
            "-r" | "--reboot" => what = Power::Reboot,
            "-H" | "--halt" => what = Power::Halt,
            // Records in wtmp only / no wall message / no sync: nothing for arje to do
            // differently (it always syncs before reboot(2)).
            "--no-wall" | "-n" | "--no-sync" | "-d" | "--no-wtmp" | "-q" => {}
            "-w" | "--wtmp-only" => return Ok(None),
            "--help" => return Ok(None),
            "-c" => return Err(format!("{name}: no shutdown is scheduled: arje has none")),
            "now" | "+0" if name == "shutdown" && !when_seen => when_seen = true,
            time if name == "shutdown" && !when_seen && !time.starts_with('-') => {
                return Err(format!(
                    "{name}: {time}: arje stops the machine now or not at all (use 'now')"
                ))
            }
            // shutdown's trailing words are a wall message: not sent.
            _ if name == "shutdown" && when_seen => {}
            other => return Err(format!("{name}: unknown option {other}")),
        }
    }
    Ok(Some(Request { what, force }))
}

/// sysvinit's `telinit 0` (halt, poweroff) and `telinit 6` (reboot).
fn telinit(args: &[String]) -> Result<Option<Request>, String> {
    match args.first().map(String::as_str) {
        Some("0") => Ok(Some(Request {
            what: Power::Poweroff,
            force: false,
        })),
        Some("6") => Ok(Some(Request {
            what: Power::Reboot,
            force: false,
        })),
        Some(level) => Err(format!(
            "telinit: runlevel {level}: arje has no runlevels (0 and 6 stop the machine)"
        )),
        None => Err("telinit: which runlevel? (0 or 6)".into()),
    }
}

/// Run as a machine command: parse, signal PID 1 (or `ARJE_INIT_PID`, which the tests
/// point at a `--pid1` arje), and return the exit code.
pub fn main(argv0: &str, args: &[String]) -> i32 {
    let name = argv0.rsplit('/').next().unwrap_or(argv0).to_string();
    let request = match parse(argv0, args) {
        Ok(Some(r)) => r,
        Ok(None) => {
            if args.iter().any(|a| a == "--help") {
                println!("usage: {name} [-f|--force] (arje: asks PID 1 with systemd's signals)");
            }
            return 0;
        }
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let pid = std::env::var("ARJE_INIT_PID")
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
        .unwrap_or(1);
    match arje_runtime::kill_raw(pid, signal(request)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{name}: cannot signal PID {pid}: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn test_parse_names_and_force_map_to_systemds_signals() {
        let cases = [
            ("/sbin/poweroff", vec![], 38),
            ("reboot", vec![], 39),
            ("halt", vec![], 37),
            ("halt", vec!["-p"], 38),
            ("reboot", vec!["-f"], 49),
            ("shutdown", vec!["-r", "now"], 39),
            ("shutdown", vec!["-h", "now", "going", "down"], 38),
            ("shutdown", vec!["now"], 38),
            ("shutdown", vec!["-H", "+0"], 37),
            ("telinit", vec!["6"], 39),
        ];
        for (name, a, sig) in cases {
            let r = parse(name, &args(&a)).unwrap().unwrap();
            assert_eq!(signal(r), sig, "{name} {a:?}");
        }
    }

    #[test]
    fn test_parse_scheduled_cancel_unknown_and_runlevels_are_refused() {
        assert!(parse("shutdown", &args(&["+5"]))
            .unwrap_err()
            .contains("now"));
        assert!(parse("shutdown", &args(&["-c"])).is_err());
        assert!(parse("reboot", &args(&["--bogus"]))
            .unwrap_err()
            .contains("--bogus"));
        assert!(parse("telinit", &args(&["3"]))
            .unwrap_err()
            .contains("runlevel 3"));
        assert_eq!(parse("reboot", &args(&["-w"])), Ok(None));
    }

    #[test]
    fn test_called_as_only_the_machine_commands() {
        assert!(called_as("/usr/local/sbin/reboot"));
        assert!(!called_as("arje-init"));
        assert!(!called_as("init"));
    }
}
