//! What entrypoint mode does with each signal and with the main child's end: pure
//! functions, so the rules are unit-tested without processes.

use std::ffi::c_int;

/// What to do with a signal read from the signalfd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// SIGCHLD: reap every child that has ended. Never forwarded: it tells arje about
    /// its own children, and the program has its own.
    Reap,
    /// Send the signal on with kill(2) to this pid (negative: a process group).
    Forward(i32),
}

/// Where `sig` goes, for a main child `child` (which leads its own process group).
///
/// - SIGCHLD is arje's.
/// - SIGCONT goes to the child's whole group whatever `-g` says: a job-control stop
///   (Ctrl-Z on the terminal sends SIGTSTP to the foreground group) stops every member,
///   and continuing only the leader would leave the rest stopped, so arje does what a
///   shell's `fg` does.
/// - Everything else, SIGTSTP, SIGTTIN and SIGTTOU included, goes to the child, or to
///   its group with `-g`. arje itself never stops: they are blocked in arje, and the
///   kernel sends none of them to a process that blocks them (a background read or
///   write on the terminal by arje proceeds instead).
pub fn route(sig: c_int, child: i32, to_group: bool) -> Action {
    match sig {
        libc::SIGCHLD => Action::Reap,
        libc::SIGCONT => Action::Forward(-child),
        _ if to_group => Action::Forward(-child),
        _ => Action::Forward(child),
    }
}

/// How the main child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// exit(2) with this status.
    Exited(i32),
    /// Killed by this signal.
    Killed(i32),
}

/// arje's exit status for the main child's end: its exit status, or 128+N for signal
/// N, as a shell reports it (`$?`).
pub fn exit_code(ended: Ended) -> i32 {
    match ended {
        Ended::Exited(code) => code & 0xff,
        Ended::Killed(sig) => (128 + sig) & 0xff,
    }
}

/// The exit status for a PROGRAM that could not be started, as a shell gives: 127 when
/// it was not found, 126 when it was found but could not be executed (no permission, a
/// directory, not an executable format, ...).
pub fn exec_failure_code(errno: Option<i32>) -> i32 {
    match errno {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => 127,
        _ => 126,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_route_sigchld_is_reaped_never_forwarded() {
        // Arrange
        let (child, to_group) = (42, true);

        // Act
        let a = route(libc::SIGCHLD, child, to_group);

        // Assert
        assert_eq!(a, Action::Reap);
    }

    #[test]
    fn test_route_default_goes_to_child_group_flag_to_group() {
        // Arrange
        let sigs = [
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGUSR1,
            libc::SIGTSTP,
            libc::SIGTTIN,
            libc::SIGWINCH,
            40,
        ];

        // Act
        let alone: Vec<_> = sigs.iter().map(|&s| route(s, 42, false)).collect();
        let group: Vec<_> = sigs.iter().map(|&s| route(s, 42, true)).collect();

        // Assert
        assert!(alone.iter().all(|a| *a == Action::Forward(42)), "{alone:?}");
        assert!(
            group.iter().all(|a| *a == Action::Forward(-42)),
            "{group:?}"
        );
    }

    #[test]
    fn test_route_sigcont_goes_to_group_always() {
        // Arrange
        let child = 42;

        // Act
        let a = route(libc::SIGCONT, child, false);

        // Assert
        assert_eq!(a, Action::Forward(-42));
    }

    #[test]
    fn test_exit_code_exit_and_signal_map_like_a_shell() {
        // Arrange
        let ends = [
            Ended::Exited(0),
            Ended::Exited(1),
            Ended::Exited(255),
            Ended::Killed(libc::SIGKILL),
            Ended::Killed(libc::SIGTERM),
            Ended::Killed(64),
        ];

        // Act
        let codes: Vec<_> = ends.iter().map(|&e| exit_code(e)).collect();

        // Assert
        assert_eq!(codes, [0, 1, 255, 137, 143, 192]);
    }

    #[test]
    fn test_exec_failure_code_not_found_127_else_126() {
        // Arrange
        let errnos = [
            Some(libc::ENOENT),
            Some(libc::ENOTDIR),
            Some(libc::EACCES),
            Some(libc::ENOEXEC),
            None,
        ];

        // Act
        let codes: Vec<_> = errnos.iter().map(|&e| exec_failure_code(e)).collect();

        // Assert
        assert_eq!(codes, [127, 127, 126, 126, 126]);
    }
}
