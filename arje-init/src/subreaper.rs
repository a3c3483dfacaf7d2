//! Subreaper mode: under another init (a container, a desktop, a test), arje becomes
//! the reaper of everything it starts.

/// PR_SET_CHILD_SUBREAPER: orphans among our descendants are reparented to us, not to
/// the real PID 1, so arje can reap them and account for them.
pub fn become_subreaper() {
    if let Err(e) = rustix::process::set_child_subreaper(Some(rustix::process::getpid())) {
        log::warn!("PR_SET_CHILD_SUBREAPER: {e}; orphans will go to the system's init");
    }
}

/// Asks the kernel's OOM killer to spare arje (-1000 = never pick). Needs
/// CAP_SYS_RESOURCE; without it the refusal is logged and arje runs unprotected.
pub fn protect_from_oom() {
    match std::fs::write("/proc/self/oom_score_adj", "-1000\n") {
        Ok(()) => log::debug!("oom_score_adj set to -1000"),
        Err(e) => log::info!("oom_score_adj -1000 refused ({e}); arje may be OOM-killed"),
    }
}
