//! The main command's service settings: the type, restarts, readiness, timeouts, the
//! watchdog, and where its output goes (systemd.service(5), systemd.exec(5)).

use super::plan::{Planner, Src};
use super::values::{self, Span};
use crate::spec::{CommandKind, CommandSpec, LogTarget, Readiness, RestartPolicy};
use crate::units;

/// The service type, as systemd.service(5) defines the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Simple,
    Exec,
    Idle,
    Notify,
    NotifyReload,
    Forking,
    Oneshot,
    Dbus,
}

pub fn service_type(p: &mut Planner) -> Type {
    let explicit = p.single("Type");
    let ty = match explicit.as_ref().map(|(_, v)| v.as_str()) {
        Some("simple") => Type::Simple,
        Some("exec") => Type::Exec,
        Some("idle") => Type::Idle,
        Some("notify") => Type::Notify,
        Some("notify-reload") => Type::NotifyReload,
        Some("forking") => Type::Forking,
        Some("oneshot") => Type::Oneshot,
        Some("dbus") => Type::Dbus,
        other => {
            if let (Some((src, _)), Some(v)) = (&explicit, other) {
                let src = src.clone();
                p.note(
                    &src,
                    format!("not translated: {v:?} is not a service type (systemd ignores it)"),
                );
            }
            if p.s.single.contains_key("BusName") {
                Type::Dbus
            } else if p.s.lists.get("ExecStart").is_some_and(|l| !l.is_empty()) {
                Type::Simple
            } else {
                Type::Oneshot
            }
        }
    };
    let src = explicit
        .map(|(s, _)| s)
        .or_else(|| p.s.single.get("BusName").cloned());
    if let Some(src) = src {
        match ty {
            Type::Forking => p.note(&src, "partly translated: run as a [[task]], ready when it exits 0 as systemd's start is; the daemon it leaves running is stopped with the workspace but not supervised or restarted (arje has no PIDFile= tracking)"),
            Type::Dbus => p.note(&src, "partly translated: ready as soon as started; arje cannot watch for the D-Bus name"),
            Type::NotifyReload => p.note(&src, "partly translated: ready = \"notify\"; arje's reload (`shuma reload`) sends SIGHUP and does not wait for RELOADING=1/READY=1"),
            _ => {}
        }
    }
    ty
}

/// Restart, readiness, timeouts and the watchdog of the main command.
pub fn service_settings(p: &mut Planner, ty: Type, spec: &mut CommandSpec) {
    let restart = p.single("Restart");
    if spec.kind == CommandKind::Task {
        if let Some((src, v)) = &restart {
            if v != "no" {
                let why = if ty == Type::Forking {
                    "not translated: a Type=forking unit runs as a task, which is never restarted"
                } else {
                    "not translated: a Type=oneshot unit runs as a task, which is never restarted"
                };
                p.note(src, why);
            }
        }
        for key in ["RestartSec", "WatchdogSec"] {
            if let Some(src) = p.s.single.get(key).cloned() {
                p.note(
                    &src,
                    "not translated: a task is never restarted nor watched",
                );
            }
        }
        if let Some(src) = p.s.single.get("RemainAfterExit").cloned() {
            if ty != Type::Oneshot {
                p.note(
                    &src,
                    "not translated: a task stays done after its exit anyway",
                );
            }
        }
        return;
    }
    spec.min_uptime_ms = 0;
    spec.restart = match &restart {
        None => RestartPolicy::Never,
        Some((src, v)) => match v.as_str() {
            "no" => RestartPolicy::Never,
            "always" => RestartPolicy::Always,
            "on-failure" => RestartPolicy::OnFailure,
            "on-abnormal" | "on-abort" | "on-watchdog" => {
                p.note(src, format!("partly translated: restart = \"on-failure\", which also restarts after a non-zero exit that {v} does not"));
                RestartPolicy::OnFailure
            }
            "on-success" => {
                p.note(
                    src,
                    "partly translated: restart = \"always\", which also restarts after a failure",
                );
                RestartPolicy::Always
            }
            _ => {
                p.note(
                    src,
                    format!("not translated: {v:?} is not a restart setting (systemd ignores it)"),
                );
                RestartPolicy::Never
            }
        },
    };
    // RestartSec= (default 100ms) is a fixed delay: the backoff starts and stays there.
    let mut delay_ms = 100;
    if let Some((src, v)) = p.single("RestartSec") {
        match values::parse_span(&v) {
            Some(Span::Usec(us)) => {
                delay_ms = values::usec_to_ms(us).clamp(1, units::MAX_DURATION_MS)
            }
            _ => p.note(&src, "not translated: not a finite time span"),
        }
    }
    spec.backoff_initial_ms = delay_ms;
    spec.backoff_max_ms = delay_ms;
    // StartLimitIntervalSec= (10s) and StartLimitBurst= (5): systemd's defaults.
    let mut interval_ms = 10_000;
    let mut burst = 5;
    if let Some((src, v)) = p.single("StartLimitIntervalSec") {
        match values::parse_span(&v) {
            Some(Span::Usec(us)) => {
                interval_ms = values::usec_to_ms(us).min(units::MAX_DURATION_MS)
            }
            Some(Span::Infinity) => interval_ms = units::MAX_DURATION_MS,
            None => p.note(&src, "not translated: not a time span"),
        }
    }
    if let Some((src, v)) = p.single("StartLimitBurst") {
        match v.parse::<u32>() {
            Ok(n) => burst = n,
            Err(_) => p.note(&src, "not translated: not a number"),
        }
    }
    if interval_ms == 0 || burst == 0 {
        spec.max_restarts = 0;
    } else {
        spec.max_restarts = burst;
        spec.restart_window_ms = interval_ms;
    }
    match ty {
        Type::Notify | Type::NotifyReload => spec.ready = Readiness::Notify,
        _ => spec.ready = Readiness::Started,
    }
    if let Some((src, v)) = p.single("TimeoutStartSec") {
        match values::parse_span(&v) {
            Some(Span::Usec(0) | Span::Infinity) => spec.ready_timeout_ms = 0,
            Some(Span::Usec(us)) => {
                spec.ready_timeout_ms = values::usec_to_ms(us).min(units::MAX_DURATION_MS)
            }
            None => p.note(&src, "not translated: not a time span"),
        }
    }
    if let Some((src, v)) = p.single("WatchdogSec") {
        match values::parse_span(&v) {
            Some(Span::Usec(0) | Span::Infinity) => {}
            Some(Span::Usec(_)) if spec.ready != Readiness::Notify => p.note(
                &src,
                "not translated: arje's watchdog needs ready = \"notify\" (Type=notify)",
            ),
            Some(Span::Usec(us)) => {
                spec.watchdog_ms = Some(values::usec_to_ms(us).min(units::MAX_DURATION_MS))
            }
            None => p.note(&src, "not translated: not a time span"),
        }
    }
    if let Some((src, v)) = p.single("NotifyAccess") {
        if v != "main" && !(v == "none" && spec.ready != Readiness::Notify) {
            p.note(
                &src,
                "not translated: arje accepts notifications from the service's main process only",
            );
        }
    }
    if let Some((src, v)) = p.single("RemainAfterExit") {
        if values::parse_bool(&v) == Some(true) {
            p.note(
                &src,
                "not translated: a service that exited counts as stopped in arje",
            );
        }
    }
}

/// StandardOutput= and StandardError= onto the card's one `log`.
pub fn log_target(p: &mut Planner) -> LogTarget {
    let out = p.single("StandardOutput");
    let err = p.single("StandardError");
    let map = |p: &mut Planner, s: &Option<(Src, String)>, stdout: bool| -> Option<LogTarget> {
        let (src, v) = s.as_ref()?;
        let (t, note): (LogTarget, Option<&str>) = match v.as_str() {
            "journal" | "syslog" | "kmsg" => (LogTarget::Ring, None),
            "journal+console" | "syslog+console" | "kmsg+console" => (
                LogTarget::Ring,
                Some("partly translated: kept in the command's log ring; the console copy is not"),
            ),
            "inherit" if stdout => (LogTarget::File("/dev/null".into()), None),
            "inherit" => return None,
            "null" => (LogTarget::File("/dev/null".into()), None),
            // TTYPath= defaults to /dev/console, which is arje's console as PID 1.
            "tty" => match p.s.other.iter().rev().find(|s| s.key == "TTYPath").map(|s| s.value.as_str()) {
                None | Some("/dev/console") => (LogTarget::Console, None),
                Some(_) => (
                    LogTarget::Console,
                    Some("partly translated: log = \"console\", arje's console, not the unit's TTYPath="),
                ),
            },
            v => {
                if let Some(path) = v.strip_prefix("append:") {
                    (LogTarget::File(path.into()), None)
                } else if let Some(path) = v.strip_prefix("file:") {
                    (LogTarget::File(path.into()), Some("partly translated: arje appends to the file; systemd writes it from its start without truncating"))
                } else if let Some(path) = v.strip_prefix("truncate:") {
                    (
                        LogTarget::File(path.into()),
                        Some(
                            "partly translated: arje appends to the file instead of truncating it",
                        ),
                    )
                } else {
                    (
                        LogTarget::Ring,
                        Some("not translated: kept in the command's log ring"),
                    )
                }
            }
        };
        if let LogTarget::File(path) = &t {
            if !path.starts_with('/') {
                p.note(src, "not translated: not an absolute path");
                return Some(LogTarget::Ring);
            }
        }
        if let Some(n) = note {
            p.note(src, n);
        }
        Some(t)
    };
    let o = map(p, &out, true).unwrap_or(LogTarget::Ring);
    match map(p, &err, false) {
        Some(e) if e != o => {
            if let Some((src, _)) = &err {
                let src = src.clone();
                p.note(
                    &src,
                    "not translated: a card has one log for both streams: the StandardOutput= one",
                );
            }
            o
        }
        _ => o,
    }
}
