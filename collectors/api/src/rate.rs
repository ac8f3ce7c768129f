//! Turning counters into rates.
//!
//! The rules (DESIGN.md, "Semantics that must hold"):
//!
//! - the rate divides by the *measured* time between the two samples, taken
//!   from a monotonic clock, not by the configured interval: a run that starts
//!   late or a host that was suspended would otherwise give a wrong rate;
//! - the first sample of a counter publishes nothing (no zero, no spike);
//! - a counter that goes backwards is a reset or a wrap. With a known width it
//!   is unwrapped when that gives a plausible increase (less than half the
//!   width's range); otherwise, or with no known width, the sample is skipped
//!   and the new value becomes the base for the next one.
//!
//! [`RateTracker`] holds the rules; [`crate::publish::Publisher`] applies
//! them to every counter of a batch, for the agent and the test harness.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The width of a counter that wraps, when the source says so (for example
/// the 32-bit counters of some network drivers in `/proc/net/dev`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CounterWidth {
    /// Wraps after 2³² − 1.
    Bits32,
    /// Wraps after 2⁶⁴ − 1.
    Bits64,
}

impl CounterWidth {
    fn modulus(self) -> u128 {
        match self {
            CounterWidth::Bits32 => 1u128 << 32,
            CounterWidth::Bits64 => 1u128 << 64,
        }
    }
}

/// How a counter moved between two samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CounterDelta {
    /// The increase, unwrapped if the counter wrapped.
    pub increase: u64,
    /// The measured time between the two samples.
    pub elapsed: Duration,
}

impl CounterDelta {
    /// The increase per second of measured time.
    pub fn per_second(&self) -> f64 {
        self.increase as f64 / self.elapsed.as_secs_f64()
    }
}

/// What [`RateTracker::update`] concluded about one sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CounterUpdate {
    /// The counter moved forward (or wrapped, and was unwrapped).
    Delta(CounterDelta),
    /// The first sample of this counter: nothing to publish yet.
    First,
    /// The counter went backwards and could not be unwrapped: a reset.
    Reset,
    /// No time passed since the previous sample (the same instant twice).
    NoTime,
}

impl CounterUpdate {
    /// The rate per second, when there is one to publish.
    pub fn per_second(&self) -> Option<f64> {
        match self {
            CounterUpdate::Delta(d) => Some(d.per_second()),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct LastSample {
    value: u64,
    at: Instant,
    /// Cycle number of the last update, so counters that disappear can be
    /// forgotten instead of growing the map forever.
    seen: u64,
}

/// Remembers the last value of each counter, keyed by name, and computes the
/// change since then.
///
/// ```
/// use std::time::{Duration, Instant};
/// use carat_collector::rate::{RateTracker, CounterUpdate};
///
/// let mut rates = RateTracker::default();
/// let t0 = Instant::now();
/// assert_eq!(rates.update("rx_bytes", 1_000, t0, None), CounterUpdate::First);
/// let later = t0 + Duration::from_secs(2);
/// assert_eq!(rates.update("rx_bytes", 3_000, later, None).per_second(), Some(1_000.0));
/// ```
#[derive(Debug, Default)]
pub struct RateTracker {
    last: HashMap<String, LastSample>,
    cycle: u64,
}

impl RateTracker {
    /// Records `value` for counter `key`, sampled at `at`, and says how it
    /// moved since the previous sample of that key.
    pub fn update(
        &mut self,
        key: &str,
        value: u64,
        at: Instant,
        width: Option<CounterWidth>,
    ) -> CounterUpdate {
        let cycle = self.cycle;
        let Some(prev) = self.last.get_mut(key) else {
            self.last.insert(
                key.to_owned(),
                LastSample {
                    value,
                    at,
                    seen: cycle,
                },
            );
            return CounterUpdate::First;
        };
        let Some(elapsed) = at.checked_duration_since(prev.at).filter(|d| !d.is_zero()) else {
            prev.seen = cycle;
            return CounterUpdate::NoTime;
        };
        let previous = prev.value;
        *prev = LastSample {
            value,
            at,
            seen: cycle,
        };
        match delta(previous, value, width) {
            Some(increase) => CounterUpdate::Delta(CounterDelta { increase, elapsed }),
            None => CounterUpdate::Reset,
        }
    }

    /// Marks the end of one collection cycle and forgets counters that were
    /// not updated in the last `keep_cycles` cycles (a network interface that
    /// went away, a queue that was deleted), so the map cannot grow without
    /// bound on a host whose names churn.
    pub fn end_cycle(&mut self, keep_cycles: u64) {
        let cycle = self.cycle;
        self.last
            .retain(|_, s| cycle.saturating_sub(s.seen) < keep_cycles);
        self.cycle += 1;
    }

    /// How many counters are remembered.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// True when no counter is remembered.
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

/// The increase from `previous` to `current`, unwrapping a wrap of a known
/// width when the result is plausible (under half the width's range: a real
/// wrap happens near the top of the range, while a reset to a small value
/// would unwrap to an enormous increase). A previous value that does not
/// fit the width (a counter said to be 32-bit that was larger) cannot have
/// wrapped at it: that is a reset.
fn delta(previous: u64, current: u64, width: Option<CounterWidth>) -> Option<u64> {
    if current >= previous {
        return Some(current - previous);
    }
    let modulus = width?.modulus();
    let unwrapped = modulus.checked_sub(u128::from(previous))? + u128::from(current);
    if unwrapped < modulus / 2 {
        u64::try_from(unwrapped).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn first_sample_publishes_nothing() {
        let mut r = RateTracker::default();
        assert_eq!(r.update("a", 5, Instant::now(), None), CounterUpdate::First);
    }

    #[test]
    fn divides_by_measured_elapsed_time() {
        let mut r = RateTracker::default();
        let t0 = Instant::now();
        r.update("a", 100, t0, None);
        // Configured interval might be 10 s; the run came 12.5 s later.
        let u = r.update("a", 1_100, t0 + secs(12.5), None);
        assert_eq!(u.per_second(), Some(80.0));
        let u = r.update("a", 1_100, t0 + secs(13.5), None);
        assert_eq!(u.per_second(), Some(0.0));
    }

    #[test]
    fn reset_without_width_is_skipped_then_resumes() {
        let mut r = RateTracker::default();
        let t0 = Instant::now();
        r.update("a", 1_000, t0, None);
        assert_eq!(
            r.update("a", 10, t0 + secs(1.0), None),
            CounterUpdate::Reset
        );
        assert_eq!(
            r.update("a", 30, t0 + secs(2.0), None).per_second(),
            Some(20.0)
        );
    }

    #[test]
    fn wraps_32_bit() {
        let mut r = RateTracker::default();
        let t0 = Instant::now();
        let max = u64::from(u32::MAX);
        r.update("a", max - 9, t0, Some(CounterWidth::Bits32));
        // 10 to reach 2^32 (which reads as 0), then 5 more.
        let u = r.update("a", 5, t0 + secs(1.0), Some(CounterWidth::Bits32));
        assert_eq!(u.per_second(), Some(15.0));
    }

    #[test]
    fn wraps_64_bit() {
        let mut r = RateTracker::default();
        let t0 = Instant::now();
        r.update("a", u64::MAX - 1, t0, Some(CounterWidth::Bits64));
        let u = r.update("a", 3, t0 + secs(2.0), Some(CounterWidth::Bits64));
        assert_eq!(u.per_second(), Some(2.5));
    }

    #[test]
    fn reset_of_a_wrapping_counter_is_not_a_spike() {
        let mut r = RateTracker::default();
        let t0 = Instant::now();
        r.update("a", 5_000, t0, Some(CounterWidth::Bits32));
        assert_eq!(
            r.update("a", 10, t0 + secs(1.0), Some(CounterWidth::Bits32)),
            CounterUpdate::Reset
        );
        r.update("b", 5_000, t0, Some(CounterWidth::Bits64));
        assert_eq!(
            r.update("b", 10, t0 + secs(1.0), Some(CounterWidth::Bits64)),
            CounterUpdate::Reset
        );
    }

    #[test]
    fn a_32_bit_counter_above_32_bits_is_a_reset_not_a_panic() {
        // Found by the publish-path property test: the previous value was
        // larger than the width the sample declares.
        let mut r = RateTracker::default();
        let t0 = Instant::now();
        r.update("a", 1 << 40, t0, None);
        assert_eq!(
            r.update("a", 5, t0 + secs(1.0), Some(CounterWidth::Bits32)),
            CounterUpdate::Reset
        );
    }

    #[test]
    fn same_instant_twice_publishes_nothing() {
        let mut r = RateTracker::default();
        let t0 = Instant::now();
        r.update("a", 1, t0, None);
        assert_eq!(r.update("a", 2, t0, None), CounterUpdate::NoTime);
    }

    #[test]
    fn forgets_counters_that_stop_appearing() {
        let mut r = RateTracker::default();
        let t0 = Instant::now();
        r.update("gone", 1, t0, None);
        r.update("stays", 1, t0, None);
        r.end_cycle(3);
        for i in 1..=3 {
            r.update("stays", 1 + i, t0 + secs(i as f64), None);
            r.end_cycle(3);
        }
        assert_eq!(r.len(), 1);
        assert_eq!(
            r.update("gone", 50, t0 + secs(9.0), None),
            CounterUpdate::First
        );
    }
}
