//! Supervision as a pure state machine: `(state, event, now) -> action`.
//!
//! Nothing here makes a syscall or reads a clock: the loop passes `now` in and carries
//! out the returned [`Action`], so restart policies, backoff, the restart limit and the
//! minimum uptime are unit-tested with a fake clock and scripted exits.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use shuma_card::{CommandKind, CommandSpec, ExitStatus, RestartPolicy};

/// Where one command is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Created, not started yet.
    Idle,
    Running {
        since: Instant,
    },
    /// Exited; a restart is due at `until`.
    Backoff {
        until: Instant,
    },
    /// The stop signal was sent; SIGKILL follows at `deadline`. `then` says what the
    /// exit means.
    Stopping {
        deadline: Instant,
        then: Then,
    },
    /// Ended for good: a task that finished, a service that was stopped or that exited
    /// successfully under `on-failure`.
    Exited,
    /// A service that gave up.
    Failed {
        reason: String,
    },
}

/// What a stop leads to once the process has exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Then {
    /// A stop that was asked for: the command is done.
    Exit,
    /// The command failed for a reason of arje's (not ready in time, unhealthy, watchdog
    /// missed, a required dependency failed): restart by the policy if `restart`, else
    /// give up with `reason`.
    Fail { reason: String, restart: bool },
}

/// What happened to the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Start it (card loaded, `shuma run`, restored after a reboot).
    Start,
    /// The process could not be started. `transient`: for want of a resource that may
    /// come back (EMFILE, ENFILE, ENOMEM, EAGAIN), not a mistake in the spec.
    SpawnFailed { error: String, transient: bool },
    /// The process exited and was reaped.
    Exited { status: ExitStatus },
    /// The timer armed by a previous action fired.
    Timer,
    /// Stop it: the workspace is stopping. `grace` overrides the spec's stop grace.
    Stop { grace: Option<Duration> },
    /// It failed in arje's eyes while it runs, or must not start (see [`Then::Fail`]):
    /// stop it with `signal` (the stop grace applies), then restart by the policy if
    /// `restart`, else give up.
    Fail {
        reason: String,
        signal: i32,
        restart: bool,
    },
}

/// What the loop must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    None,
    /// Spawn the process now.
    Spawn,
    /// Arm a timer for `delay`, then deliver [`Event::Timer`]. `restarts` counts this one.
    ScheduleRestart {
        delay: Duration,
        restarts: u32,
    },
    /// Send the stop signal and arm a timer for the grace period.
    SendStop {
        signal: i32,
        grace: Duration,
    },
    /// Grace is over: SIGKILL (and cgroup.kill).
    Kill,
    /// The service gave up; record why.
    GiveUp {
        reason: String,
    },
    /// Nothing more will happen to this command.
    Finished,
}

/// The supervision state of one command.
#[derive(Debug, Clone)]
pub struct Supervisor {
    pub state: State,
    /// Restarts since the command was created.
    pub restarts: u32,
    /// Failed starts in a row: runs shorter than `min_uptime` (whatever their exit) and
    /// spawns that failed. They drive the backoff, and past `max_restarts` the service
    /// gives up, however slowly the backoff spaced them (see [`Supervisor::restart`]).
    pub failed_starts: u32,
    /// When the current (or last) run started: how long a run stopped for a failure of
    /// arje's lasted.
    last_start: Option<Instant>,
    /// When recent restarts happened, for the restart limit in a window.
    pub recent_restarts: VecDeque<Instant>,
    pub last_exit: Option<ExitStatus>,
    kind: CommandKind,
    policy: RestartPolicy,
    backoff_initial: Duration,
    backoff_max: Duration,
    max_restarts: u32,
    restart_window: Duration,
    min_uptime: Duration,
    stop_signal: i32,
    stop_grace: Duration,
}

impl Supervisor {
    pub fn new(spec: &CommandSpec) -> Self {
        Supervisor {
            state: State::Idle,
            restarts: 0,
            failed_starts: 0,
            last_start: None,
            recent_restarts: VecDeque::new(),
            last_exit: None,
            kind: spec.kind,
            policy: spec.restart,
            backoff_initial: Duration::from_millis(spec.backoff_initial_ms),
            backoff_max: Duration::from_millis(spec.backoff_max_ms.max(spec.backoff_initial_ms)),
            max_restarts: spec.max_restarts,
            restart_window: Duration::from_millis(spec.restart_window_ms),
            min_uptime: Duration::from_millis(spec.min_uptime_ms),
            stop_signal: spec.stop_signal,
            stop_grace: Duration::from_millis(spec.stop_grace_ms),
        }
    }

    /// Is a process of this command alive (running or being stopped)?
    pub fn is_live(&self) -> bool {
        matches!(self.state, State::Running { .. } | State::Stopping { .. })
    }

    /// Has this command ended for good?
    pub fn is_final(&self) -> bool {
        matches!(self.state, State::Exited | State::Failed { .. })
    }

    /// Feed one event; returns what the loop must do. The loop calls [`Self::started`]
    /// after a successful spawn.
    pub fn handle(&mut self, event: Event, now: Instant) -> Action {
        match (&self.state, event) {
            (State::Idle, Event::Start) | (State::Exited, Event::Start) => Action::Spawn,
            // A start asked for by hand (`shuma start`) of a service that gave up: like
            // `systemctl start` of a failed unit, it begins with a clean record.
            (State::Failed { .. }, Event::Start) => {
                self.reset_failures();
                Action::Spawn
            }
            // A start by hand while a restart waits out its backoff: now, from scratch.
            // The backoff's timer then finds it running and does nothing.
            (State::Backoff { .. }, Event::Start) => {
                self.reset_failures();
                Action::Spawn
            }
            (State::Backoff { until }, Event::Timer) if now >= *until => Action::Spawn,
            (State::Backoff { .. }, Event::Timer) => Action::None,
            (State::Running { since }, Event::Exited { status }) => {
                let ran = now.saturating_duration_since(*since);
                self.on_exit(status, ran, now)
            }
            (State::Stopping { then, .. }, Event::Exited { status }) => {
                self.last_exit = Some(status);
                match then.clone() {
                    Then::Exit => {
                        self.state = State::Exited;
                        Action::Finished
                    }
                    Then::Fail { reason, restart } => {
                        let restart = restart
                            && self.kind == CommandKind::Service
                            && self.policy != RestartPolicy::Never;
                        if restart {
                            let ran = self
                                .last_start
                                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
                            return self.restart(ran < self.min_uptime, &reason, now);
                        }
                        self.state = State::Failed {
                            reason: reason.clone(),
                        };
                        Action::GiveUp { reason }
                    }
                }
            }
            (State::Stopping { deadline, .. }, Event::Timer) if now >= *deadline => Action::Kill,
            (State::Running { .. }, Event::Stop { grace }) => {
                let grace = grace.unwrap_or(self.stop_grace);
                self.state = State::Stopping {
                    deadline: now + grace,
                    then: Then::Exit,
                };
                Action::SendStop {
                    signal: self.stop_signal,
                    grace,
                }
            }
            // A stop asked for while a failure's stop is under way only makes it final.
            (State::Stopping { deadline, .. }, Event::Stop { .. }) => {
                self.state = State::Stopping {
                    deadline: *deadline,
                    then: Then::Exit,
                };
                Action::None
            }
            (
                State::Running { .. },
                Event::Fail {
                    reason,
                    signal,
                    restart,
                },
            ) => {
                let grace = self.stop_grace;
                self.state = State::Stopping {
                    deadline: now + grace,
                    then: Then::Fail { reason, restart },
                };
                Action::SendStop { signal, grace }
            }
            (State::Idle | State::Backoff { .. }, Event::Fail { reason, .. }) => {
                self.state = State::Failed {
                    reason: reason.clone(),
                };
                Action::GiveUp { reason }
            }
            (State::Idle | State::Backoff { .. }, Event::Stop { .. }) => {
                self.state = State::Exited;
                Action::Finished
            }
            (
                State::Idle | State::Backoff { .. } | State::Exited,
                Event::SpawnFailed { error, transient },
            ) => {
                let reason = format!("could not start: {error}");
                // A service that could not start for want of fds, memory or a pid follows
                // its restart policy like one that failed at once: the resource may come
                // back. Any other failed start (no such binary, unknown user) is not
                // worth retrying in a loop: a configuration error until proven otherwise.
                let retry = transient
                    && self.kind == CommandKind::Service
                    && self.policy != RestartPolicy::Never;
                if retry {
                    return self.restart(true, &reason, now);
                }
                self.state = State::Failed {
                    reason: reason.clone(),
                };
                Action::GiveUp { reason }
            }
            _ => Action::None,
        }
    }

    /// The process is running from `now`.
    pub fn started(&mut self, now: Instant) {
        self.state = State::Running { since: now };
        self.last_start = Some(now);
    }

    /// Make a command that ended for good (`Exited`, `Failed`) startable again, as if
    /// just created, with its failures forgotten (`shuma start`): it then waits for its
    /// dependencies like a new command. Returns false, changing nothing, for a command
    /// that has not ended.
    pub fn rearm(&mut self) -> bool {
        if !self.is_final() {
            return false;
        }
        self.state = State::Idle;
        self.reset_failures();
        true
    }

    /// Forget past failures: the backoff, the failed starts in a row and the restarts
    /// in the window. `restarts`, the count shown by `shuma ps`, keeps counting.
    pub fn reset_failures(&mut self) {
        self.failed_starts = 0;
        self.recent_restarts.clear();
    }

    fn on_exit(&mut self, status: ExitStatus, ran: Duration, now: Instant) -> Action {
        self.last_exit = Some(status);
        let quick = ran < self.min_uptime;
        let failed = !status.success() || quick;
        if self.kind == CommandKind::Task {
            self.state = State::Exited;
            return Action::Finished;
        }
        let restart = match self.policy {
            RestartPolicy::Never => false,
            RestartPolicy::OnFailure => failed,
            RestartPolicy::Always => true,
        };
        if !restart {
            self.state = State::Exited;
            return Action::Finished;
        }
        self.restart(quick, &status.to_string(), now)
    }

    /// Schedule a restart with backoff, or give up past the restart limit.
    /// `failed_start`: the run did not last `min_uptime`, or never spawned. `last` says how the last run ended, for the reason.
    ///
    /// Two limits, either gives up (docs/CARDS.md, `max_restarts`):
    /// - more than `max_restarts` restarts within `restart_window`: a service that keeps
    ///   dying, however long each run;
    /// - more than `max_restarts` failed starts in a row: a service that never works. The
    ///   window alone cannot catch it, since the backoff spreads its restarts out (at the
    ///   default 100 ms doubling to 30 s, ten restarts take 81 s, past the 60 s window),
    ///   so it would retry forever. Any run that lasts `min_uptime` ends the streak, so a
    ///   long-running service that crashes now and then is restarted forever.
    fn restart(&mut self, failed_start: bool, last: &str, now: Instant) -> Action {
        if failed_start {
            self.failed_starts += 1;
        } else {
            // The run lasted `min_uptime`: it worked, so the backoff starts over.
            self.failed_starts = 0;
        }
        while let Some(&t) = self.recent_restarts.front() {
            if now.saturating_duration_since(t) >= self.restart_window {
                self.recent_restarts.pop_front();
            } else {
                break;
            }
        }
        if self.max_restarts > 0 && self.recent_restarts.len() as u32 >= self.max_restarts {
            let reason = format!(
                "restarted {} times within {} ms; last {last}",
                self.recent_restarts.len(),
                self.restart_window.as_millis(),
            );
            self.state = State::Failed {
                reason: reason.clone(),
            };
            return Action::GiveUp { reason };
        }
        if self.max_restarts > 0 && self.failed_starts > self.max_restarts {
            let reason = format!(
                "failed to start {} times in a row (no run lasted min_uptime, {} ms); last {last}",
                self.failed_starts,
                self.min_uptime.as_millis(),
            );
            self.state = State::Failed {
                reason: reason.clone(),
            };
            return Action::GiveUp { reason };
        }
        let delay = self.backoff_delay();
        self.recent_restarts.push_back(now);
        self.restarts += 1;
        self.state = State::Backoff { until: now + delay };
        Action::ScheduleRestart {
            delay,
            restarts: self.restarts,
        }
    }

    /// Zero after a run that lasted `min_uptime` (it worked: restart at once, as runit
    /// does); after a failed start, `initial * 2^(n-1)` for the n-th in a row, capped at
    /// `max`.
    fn backoff_delay(&self) -> Duration {
        if self.failed_starts == 0 {
            return Duration::ZERO;
        }
        let exp = self.failed_starts.saturating_sub(1).min(32);
        let factor = 1u64 << exp;
        let ms = (self.backoff_initial.as_millis() as u64).saturating_mul(factor);
        Duration::from_millis(ms).min(self.backoff_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(policy: RestartPolicy) -> CommandSpec {
        let mut spec = CommandSpec::new("svc", CommandKind::Service, vec!["/bin/true".into()]);
        spec.restart = policy;
        spec.backoff_initial_ms = 100;
        spec.backoff_max_ms = 1_000;
        spec.max_restarts = 5;
        spec.restart_window_ms = 60_000;
        spec.min_uptime_ms = 1_000;
        spec
    }

    fn run_and_exit(
        sup: &mut Supervisor,
        t: &mut Instant,
        ran_ms: u64,
        status: ExitStatus,
    ) -> Action {
        assert_eq!(sup.handle(Event::Start, *t).clone(), Action::Spawn);
        sup.started(*t);
        *t += Duration::from_millis(ran_ms);
        sup.handle(Event::Exited { status }, *t)
    }

    #[test]
    fn test_backoff_quick_failures_doubles_and_caps() {
        let mut sup = Supervisor::new(&service(RestartPolicy::Always));
        let mut now = Instant::now();
        let mut delays = Vec::new();
        sup.handle(Event::Start, now);
        sup.started(now);
        for _ in 0..5 {
            now += Duration::from_millis(10);
            match sup.handle(
                Event::Exited {
                    status: ExitStatus::Code(1),
                },
                now,
            ) {
                Action::ScheduleRestart { delay, .. } => delays.push(delay.as_millis()),
                other => panic!("unexpected {other:?}"),
            }
            now += Duration::from_secs(2);
            assert_eq!(sup.handle(Event::Timer, now), Action::Spawn);
            sup.started(now);
        }
        assert_eq!(delays, vec![100, 200, 400, 800, 1000]);
    }

    #[test]
    fn test_restart_limit_exceeded_gives_up_with_reason() {
        let mut sup = Supervisor::new(&service(RestartPolicy::Always));
        let mut now = Instant::now();
        sup.handle(Event::Start, now);
        sup.started(now);
        let mut last = Action::None;
        for _ in 0..6 {
            now += Duration::from_millis(5);
            last = sup.handle(
                Event::Exited {
                    status: ExitStatus::Code(3),
                },
                now,
            );
            if let Action::ScheduleRestart { delay, .. } = last {
                now += delay;
                assert_eq!(sup.handle(Event::Timer, now), Action::Spawn);
                sup.started(now);
            }
        }
        assert!(
            matches!(last, Action::GiveUp { ref reason } if reason.contains("restarted 5 times"))
        );
        assert!(matches!(sup.state, State::Failed { .. }));
        assert_eq!(sup.last_exit, Some(ExitStatus::Code(3)));
    }

    #[test]
    fn test_on_failure_clean_exit_after_min_uptime_finishes() {
        let mut sup = Supervisor::new(&service(RestartPolicy::OnFailure));
        let mut now = Instant::now();
        let action = run_and_exit(&mut sup, &mut now, 5_000, ExitStatus::Code(0));
        assert_eq!(action, Action::Finished);
        assert_eq!(sup.state, State::Exited);
    }

    #[test]
    fn test_on_failure_clean_exit_before_min_uptime_restarts() {
        let mut sup = Supervisor::new(&service(RestartPolicy::OnFailure));
        let mut now = Instant::now();
        let action = run_and_exit(&mut sup, &mut now, 10, ExitStatus::Code(0));
        assert!(matches!(
            action,
            Action::ScheduleRestart { restarts: 1, .. }
        ));
    }

    #[test]
    fn test_always_long_run_resets_backoff_and_restarts_at_once() {
        let mut sup = Supervisor::new(&service(RestartPolicy::Always));
        let mut now = Instant::now();
        sup.failed_starts = 4;
        let action = run_and_exit(&mut sup, &mut now, 5_000, ExitStatus::Code(0));
        assert_eq!(
            action,
            Action::ScheduleRestart {
                delay: Duration::ZERO,
                restarts: 1
            }
        );
        // A quick failure after it backs off from `initial` again.
        let quick = run_and_exit(&mut sup, &mut now, 10, ExitStatus::Code(1));
        assert!(
            matches!(quick, Action::ScheduleRestart { delay, .. } if delay.as_millis() == 100),
            "{quick:?}"
        );
    }

    #[test]
    fn test_stop_running_sends_signal_then_kills_after_grace() {
        let mut sup = Supervisor::new(&service(RestartPolicy::Always));
        let mut now = Instant::now();
        sup.handle(Event::Start, now);
        sup.started(now);
        let action = sup.handle(
            Event::Stop {
                grace: Some(Duration::from_millis(300)),
            },
            now,
        );
        assert_eq!(
            action,
            Action::SendStop {
                signal: 15,
                grace: Duration::from_millis(300)
            }
        );
        now += Duration::from_millis(299);
        assert_eq!(sup.handle(Event::Timer, now), Action::None);
        now += Duration::from_millis(1);
        assert_eq!(sup.handle(Event::Timer, now), Action::Kill);
        let end = sup.handle(
            Event::Exited {
                status: ExitStatus::Signal(9),
            },
            now,
        );
        assert_eq!(end, Action::Finished);
        assert_eq!(sup.state, State::Exited);
    }

    #[test]
    fn test_task_exit_never_restarts() {
        let spec = CommandSpec::new("t", CommandKind::Task, vec!["/bin/false".into()]);
        let mut sup = Supervisor::new(&spec);
        let mut now = Instant::now();
        let action = run_and_exit(&mut sup, &mut now, 1, ExitStatus::Code(1));
        assert_eq!(action, Action::Finished);
    }

    #[test]
    fn test_spawn_failure_fails_without_retry() {
        let mut sup = Supervisor::new(&service(RestartPolicy::Always));
        let action = sup.handle(
            Event::SpawnFailed {
                error: "ENOENT".into(),
                transient: false,
            },
            Instant::now(),
        );
        assert!(matches!(action, Action::GiveUp { .. }));
        assert!(sup.is_final());
    }

    fn spawn_failed(error: &str) -> Event {
        Event::SpawnFailed {
            error: error.into(),
            transient: true,
        }
    }

    #[test]
    fn test_transient_spawn_failure_backs_off_then_gives_up_at_the_limit() {
        // Arrange: a service under `always`, its spawns failing for want of fds.
        let mut sup = Supervisor::new(&service(RestartPolicy::Always));
        let mut now = Instant::now();
        assert_eq!(sup.handle(Event::Start, now), Action::Spawn);

        // Act: every attempt fails the same way; each retry comes when its timer fires.
        let mut delays = Vec::new();
        let last = loop {
            match sup.handle(spawn_failed("pipe: Too many open files"), now) {
                Action::ScheduleRestart { delay, .. } => {
                    delays.push(delay.as_millis());
                    now += delay;
                    assert_eq!(sup.handle(Event::Timer, now), Action::Spawn);
                }
                other => break other,
            }
        };

        // Assert: the policy's backoff, then its restart limit (5 in the window).
        assert_eq!(delays, vec![100, 200, 400, 800, 1000]);
        assert!(
            matches!(&last, Action::GiveUp { reason } if reason.contains("Too many open files")),
            "{last:?}"
        );
        assert!(matches!(sup.state, State::Failed { .. }));
    }

    #[test]
    fn test_transient_spawn_failure_then_success_runs() {
        // Arrange
        let mut sup = Supervisor::new(&service(RestartPolicy::OnFailure));
        let now = Instant::now();
        sup.handle(Event::Start, now);

        // Act
        let first = sup.handle(
            spawn_failed("clone3: Resource temporarily unavailable"),
            now,
        );
        let retry = sup.handle(Event::Timer, now + Duration::from_millis(100));
        sup.started(now + Duration::from_millis(100));

        // Assert
        assert!(
            matches!(first, Action::ScheduleRestart { restarts: 1, .. }),
            "{first:?}"
        );
        assert_eq!(retry, Action::Spawn);
        assert!(sup.is_live());
    }

    #[test]
    fn test_transient_spawn_failure_never_policy_or_task_gives_up() {
        // Arrange
        let mut never = Supervisor::new(&service(RestartPolicy::Never));
        let task = CommandSpec::new("t", CommandKind::Task, vec!["/bin/true".into()]);
        let mut task = Supervisor::new(&task);
        let now = Instant::now();
        never.handle(Event::Start, now);
        task.handle(Event::Start, now);

        // Act
        let never = never.handle(spawn_failed("pipe: Too many open files"), now);
        let task = task.handle(spawn_failed("pipe: Too many open files"), now);

        // Assert
        assert!(matches!(never, Action::GiveUp { .. }), "{never:?}");
        assert!(matches!(task, Action::GiveUp { .. }), "{task:?}");
    }

    #[test]
    fn test_fail_running_stops_then_restarts_by_policy_or_gives_up() {
        let now = Instant::now();
        let fail = |restart| Event::Fail {
            reason: "not ready within 1s".into(),
            signal: 6,
            restart,
        };
        let exited = Event::Exited {
            status: ExitStatus::Signal(6),
        };
        let mut always = Supervisor::new(&service(RestartPolicy::Always));
        always.handle(Event::Start, now);
        always.started(now);
        let mut never = Supervisor::new(&service(RestartPolicy::Never));
        never.handle(Event::Start, now);
        never.started(now);

        let stop = always.handle(fail(true), now);
        let restart = always.handle(exited.clone(), now);
        never.handle(fail(true), now);
        let given_up = never.handle(exited, now);

        assert!(
            matches!(stop, Action::SendStop { signal: 6, .. }),
            "{stop:?}"
        );
        assert!(
            matches!(restart, Action::ScheduleRestart { .. }),
            "{restart:?}"
        );
        assert_eq!(
            given_up,
            Action::GiveUp {
                reason: "not ready within 1s".into()
            }
        );
        assert!(matches!(never.state, State::Failed { .. }));
    }

    #[test]
    fn test_fail_before_start_gives_up_a_stop_during_a_fail_only_finishes() {
        let now = Instant::now();
        let mut waiting = Supervisor::new(&service(RestartPolicy::Always));
        let mut running = Supervisor::new(&service(RestartPolicy::Always));
        running.handle(Event::Start, now);
        running.started(now);

        let gave_up = waiting.handle(
            Event::Fail {
                reason: "required db failed".into(),
                signal: 15,
                restart: false,
            },
            now,
        );
        running.handle(
            Event::Fail {
                reason: "unhealthy".into(),
                signal: 15,
                restart: true,
            },
            now,
        );
        running.handle(Event::Stop { grace: None }, now);
        let end = running.handle(
            Event::Exited {
                status: ExitStatus::Signal(15),
            },
            now,
        );

        assert_eq!(
            gave_up,
            Action::GiveUp {
                reason: "required db failed".into()
            }
        );
        assert_eq!(end, Action::Finished);
        assert_eq!(running.state, State::Exited);
    }

    #[test]
    fn test_stop_during_backoff_finishes_without_spawn() {
        let mut sup = Supervisor::new(&service(RestartPolicy::Always));
        let mut now = Instant::now();
        run_and_exit(&mut sup, &mut now, 10, ExitStatus::Code(1));
        assert_eq!(
            sup.handle(Event::Stop { grace: None }, now),
            Action::Finished
        );
        assert_eq!(
            sup.handle(Event::Timer, now + Duration::from_secs(9)),
            Action::None
        );
    }

    /// Run `sup` through `runs` runs of `ran_ms` each that exit 1, each restart when its
    /// timer fires; the actions of their exits.
    fn crash_loop(
        sup: &mut Supervisor,
        now: &mut Instant,
        runs: usize,
        ran_ms: u64,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        assert_eq!(sup.handle(Event::Start, *now), Action::Spawn);
        sup.started(*now);
        for _ in 0..runs {
            *now += Duration::from_millis(ran_ms);
            let action = sup.handle(
                Event::Exited {
                    status: ExitStatus::Code(1),
                },
                *now,
            );
            actions.push(action.clone());
            let Action::ScheduleRestart { delay, .. } = action else {
                break;
            };
            *now += delay;
            assert_eq!(sup.handle(Event::Timer, *now), Action::Spawn);
            sup.started(*now);
        }
        actions
    }

    #[test]
    fn test_never_working_service_defaults_reaches_failed_despite_backoff() {
        // Arrange: the card's defaults (10 restarts in 60 s, backoff 100 ms to 30 s,
        // min_uptime 1 s); ten restarts take 81 s of backoff, past the window.
        let spec = CommandSpec::new("svc", CommandKind::Service, vec!["/bin/false".into()]);
        let mut sup = Supervisor::new(&spec);
        let mut now = Instant::now();

        // Act: every run exits 1 after 10 ms.
        let actions = crash_loop(&mut sup, &mut now, 50, 10);

        // Assert: ten restarts, then failed, naming the rule.
        assert_eq!(actions.len(), 11, "{actions:?}");
        assert!(
            matches!(actions.last(), Some(Action::GiveUp { reason }) if reason.contains("failed to start 11 times in a row")),
            "{actions:?}"
        );
        assert!(matches!(sup.state, State::Failed { .. }));
        assert_eq!(sup.restarts, 10);
    }

    #[test]
    fn test_service_crashing_after_min_uptime_restarts_at_once_then_hits_window() {
        // Arrange: defaults; each run lasts 2 s (past min_uptime) and exits 1.
        let spec = CommandSpec::new("svc", CommandKind::Service, vec!["/bin/false".into()]);
        let mut sup = Supervisor::new(&spec);
        let mut now = Instant::now();

        // Act
        let actions = crash_loop(&mut sup, &mut now, 50, 2_000);

        // Assert: each run worked for a while, so it restarts at once (no backoff) and
        // ten restarts fall within the 60 s window: the window limit gives up.
        for a in &actions[..actions.len() - 1] {
            assert!(
                matches!(a, Action::ScheduleRestart { delay, .. } if delay.is_zero()),
                "{a:?}"
            );
        }
        assert!(
            matches!(actions.last(), Some(Action::GiveUp { reason }) if reason.contains("restarted 10 times within 60000 ms")),
            "{actions:?}"
        );
    }

    #[test]
    fn test_long_running_service_crashing_rarely_restarts_forever() {
        // Arrange: defaults; each run lasts an hour, then crashes.
        let spec = CommandSpec::new("svc", CommandKind::Service, vec!["/bin/daemon".into()]);
        let mut sup = Supervisor::new(&spec);
        let mut now = Instant::now();

        // Act
        let actions = crash_loop(&mut sup, &mut now, 200, 3_600_000);

        // Assert
        assert_eq!(actions.len(), 200);
        assert!(actions.iter().all(|a| matches!(
            a,
            Action::ScheduleRestart { delay, .. } if delay.is_zero()
        )));
        assert_eq!(sup.restarts, 200);
    }

    #[test]
    fn test_failed_service_started_by_hand_begins_with_clean_record() {
        // Arrange: a service that gave up.
        let mut sup = Supervisor::new(&service(RestartPolicy::Always));
        let mut now = Instant::now();
        crash_loop(&mut sup, &mut now, 50, 10);
        assert!(matches!(sup.state, State::Failed { .. }));

        // Act
        let start = sup.handle(Event::Start, now);
        sup.started(now);
        now += Duration::from_millis(10);
        let again = sup.handle(
            Event::Exited {
                status: ExitStatus::Code(1),
            },
            now,
        );

        // Assert: spawned, and its next failure backs off from the start again.
        assert_eq!(start, Action::Spawn);
        assert!(
            matches!(again, Action::ScheduleRestart { delay, .. } if delay.as_millis() == 100),
            "{again:?}"
        );
        assert_eq!(sup.failed_starts, 1);
    }

    #[test]
    fn test_not_ready_restarts_count_as_failed_starts() {
        // Arrange: max_restarts 5, a window so short the window rule never bites.
        let mut spec = service(RestartPolicy::Always);
        spec.restart_window_ms = 1;
        let mut sup = Supervisor::new(&spec);
        let mut now = Instant::now();
        sup.handle(Event::Start, now);
        sup.started(now);

        // Act: each run is failed by arje (not ready within 500 ms), then exits.
        let mut last = Action::None;
        for _ in 0..10 {
            now += Duration::from_millis(500);
            sup.handle(
                Event::Fail {
                    reason: "not ready within 500ms".into(),
                    signal: 15,
                    restart: true,
                },
                now,
            );
            last = sup.handle(
                Event::Exited {
                    status: ExitStatus::Signal(15),
                },
                now,
            );
            let Action::ScheduleRestart { delay, .. } = last else {
                break;
            };
            now += delay;
            sup.handle(Event::Timer, now);
            sup.started(now);
        }

        // Assert
        assert!(
            matches!(&last, Action::GiveUp { reason } if reason.contains("failed to start 6 times")),
            "{last:?}"
        );
    }

    #[test]
    fn test_rearm_final_command_idles_with_clean_record_live_one_unchanged() {
        // Arrange
        let mut failed = Supervisor::new(&service(RestartPolicy::Always));
        let mut now = Instant::now();
        crash_loop(&mut failed, &mut now, 50, 10);
        let mut running = Supervisor::new(&service(RestartPolicy::Always));
        running.handle(Event::Start, now);
        running.started(now);

        // Act
        let rearmed = failed.rearm();
        let not = running.rearm();

        // Assert
        assert!(rearmed);
        assert_eq!(failed.state, State::Idle);
        assert_eq!(failed.failed_starts, 0);
        assert!(failed.recent_restarts.is_empty());
        assert_eq!(failed.handle(Event::Start, now), Action::Spawn);
        assert!(!not);
        assert!(running.is_live());
    }

    #[test]
    fn test_start_during_backoff_spawns_now_and_stale_timer_does_nothing() {
        // Arrange
        let mut sup = Supervisor::new(&service(RestartPolicy::Always));
        let mut now = Instant::now();
        run_and_exit(&mut sup, &mut now, 10, ExitStatus::Code(1));

        // Act
        let start = sup.handle(Event::Start, now);
        sup.started(now);
        let timer = sup.handle(Event::Timer, now + Duration::from_secs(1));

        // Assert
        assert_eq!(start, Action::Spawn);
        assert_eq!(timer, Action::None);
        assert!(sup.is_live());
    }
}
