//! Where a start's time goes: a lap per step, printed as one line (docs/PID1.md, "Where
//! boot's time goes"): the runtime's from `Runtime::new` to the ready line, and PID 1's
//! own from exec to the runtime. A boot's exec→ready is arje's to explain, as
//! `systemd-analyze` explains systemd's.

use std::time::{Duration, Instant};

/// At most this many steps are kept; a later one is folded into the last.
const STEPS: usize = 10;

pub struct Laps {
    began: Instant,
    last: Instant,
    steps: Vec<(&'static str, Duration)>,
}

impl Laps {
    /// Laps from now.
    pub fn start() -> Laps {
        Laps::since(Instant::now())
    }

    /// Laps from `began` (PID 1: its exec, read from CLOCK_BOOTTIME at the top of main).
    pub fn since(began: Instant) -> Laps {
        Laps {
            began,
            last: began,
            steps: Vec::with_capacity(STEPS),
        }
    }

    /// The step `name` ended now.
    pub fn lap(&mut self, name: &'static str) {
        let now = Instant::now();
        let took = now - self.last;
        self.last = now;
        match self.steps.len() {
            n if n < STEPS => self.steps.push((name, took)),
            _ => {
                if let Some(last) = self.steps.last_mut() {
                    last.1 += took;
                }
            }
        }
    }

    /// `12.3 ms (state 0.4, cgroups 3.1, ...)`: the whole, then each step in order.
    pub fn render(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let parts: Vec<String> = self
            .steps
            .iter()
            .map(|(name, d)| format!("{name} {:.1}", ms(*d)))
            .collect();
        format!(
            "{:.1} ms ({})",
            ms(self.last - self.began),
            parts.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_laps_render_names_every_step_in_order_and_folds_past_the_cap() {
        let mut laps = Laps::start();
        for _ in 0..STEPS + 2 {
            laps.lap("x");
        }
        laps.steps[0].0 = "first";
        let line = laps.render();
        assert!(line.contains(" ms (first "), "{line}");
        assert_eq!(line.matches(", x ").count(), STEPS - 1, "{line}");
    }
}
