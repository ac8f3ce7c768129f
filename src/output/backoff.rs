//! Exponential backoff with jitter, bounded: used for reconnecting outputs
//! and for collectors that keep failing.

use std::time::Duration;

/// Delays that double from `min` up to `max`, each one shortened by a random
/// amount of up to half so that many agents restarted together (after a
/// carbon restart, say) do not reconnect in lockstep.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Option<Duration>,
    failures: u32,
}

impl Backoff {
    /// Backoff between `min` and `max` (`max` is raised to `min` if lower).
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            current: None,
            failures: 0,
        }
    }

    /// The delay before the next attempt, after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let base = match self.current {
            None => self.min,
            Some(c) => c.saturating_mul(2).min(self.max),
        };
        self.current = Some(base);
        self.failures = self.failures.saturating_add(1);
        base.mul_f64(0.5 + fastrand::f64() * 0.5)
    }

    /// Failures since the last [`Backoff::reset`].
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Back to the shortest delay, after a success.
    pub fn reset(&mut self) {
        self.current = None;
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_bound_with_jitter() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let bases = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0];
        for base in bases {
            let d = b.next_delay().as_secs_f64();
            assert!(
                d >= base * 0.5 && d <= base,
                "{d} outside [{}, {base}]",
                base * 0.5
            );
        }
        assert_eq!(b.failures(), 6);
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }
}
