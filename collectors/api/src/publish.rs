//! From a collector's batch to the values that are published: the one
//! function the agent and the test harness share.
//!
//! [`Publisher::publish`] is the only place where a batch's samples become
//! published values, for the agent (which adds the host prefix and hands the
//! result to its outputs) and for [`crate::testing::Harness`] alike, so a
//! collector's tests see exactly what the agent would publish:
//!
//! 1. the instance's whitelist and blacklist ([`NameFilter`]) leave out the
//!    names they exclude;
//! 2. counters become rates per second over the measured time between two
//!    samples (the rules are [`crate::rate`]'s): the first sample of a
//!    counter, a reset and a sample taken at the same instant as the
//!    previous one publish nothing;
//! 3. a value that is NaN or infinite is dropped (Graphite cannot store it);
//! 4. every value carries the batch's stamp: the whole second of
//!    [`Batch::unix_seconds`], and rates divide by the time between the
//!    [`Batch::taken_at`] instants, so a collector that re-stamps its batch
//!    ([`Batch::stamp_now`], after a slow fetch) is published as of then;
//! 5. counters not seen for [`FORGET_AFTER_RUNS`] runs are forgotten.
//!
//! ```
//! use std::time::{Duration, Instant, SystemTime};
//! use carat_collector::publish::{NameFilter, Publisher};
//! use carat_collector::Batch;
//!
//! let mut publisher = Publisher::new(NameFilter::default());
//! let t0 = Instant::now();
//! let mut batch = Batch::new();
//! let mut published = Vec::new();
//! for (step, rx) in [(0, 1_000), (2, 3_000)] {
//!     batch.clear();
//!     batch.stamp(t0 + Duration::from_secs(step), SystemTime::now());
//!     batch.counter("rx", rx);
//!     batch.gauge("broken", f64::NAN);
//!     batch.gauge("up", 1.0);
//!     let report = publisher.publish(&batch, |m| published.push((m.name.to_owned(), m.value)));
//!     assert_eq!(report.non_finite, 1);
//! }
//! // The first run has no rate yet; NaN is never published.
//! assert_eq!(published, [("up".into(), 1.0), ("rx".into(), 1_000.0), ("up".into(), 1.0)]);
//! ```

use regex::RegexSet;

use crate::batch::{Batch, SampleValue};
use crate::rate::{CounterUpdate, RateTracker};

/// Counters not seen for this many runs are forgotten (a deleted queue, an
/// interface that went away), so rate state cannot grow without bound.
pub const FORGET_AFTER_RUNS: u64 = 10;

/// Which metric names an instance publishes: its `metrics_whitelist` and
/// `metrics_blacklist`.
#[derive(Clone, Debug, Default)]
pub struct NameFilter {
    whitelist: Option<RegexSet>,
    blacklist: Option<RegexSet>,
}

impl NameFilter {
    /// Builds a filter. Patterns are anchored at the start of the name, as
    /// Diamond's `re.match` is: `total` matches `total.user`, not `cpu0.total`.
    /// An empty whitelist allows every name.
    ///
    /// ```
    /// let f = carat_collector::publish::NameFilter::new(&["total".into()], &["total\\.guest".into()]).unwrap();
    /// assert!(f.allows("total.user"));
    /// assert!(!f.allows("cpu0.total"));
    /// assert!(!f.allows("total.guest_nice"));
    /// ```
    pub fn new(whitelist: &[String], blacklist: &[String]) -> Result<Self, regex::Error> {
        let set = |patterns: &[String]| -> Result<Option<RegexSet>, regex::Error> {
            if patterns.is_empty() {
                return Ok(None);
            }
            RegexSet::new(patterns.iter().map(|p| format!("^(?:{p})"))).map(Some)
        };
        Ok(NameFilter {
            whitelist: set(whitelist)?,
            blacklist: set(blacklist)?,
        })
    }

    /// True when `name` is to be published.
    pub fn allows(&self, name: &str) -> bool {
        self.whitelist.as_ref().is_none_or(|w| w.is_match(name))
            && !self.blacklist.as_ref().is_some_and(|b| b.is_match(name))
    }
}

/// One published value, borrowed from the batch it came from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metric<'a> {
    /// The name below the collector's path (`total.user`).
    pub name: &'a str,
    /// The value: a gauge as it was added, a counter as its rate per second.
    pub value: f64,
    /// For a rate: the counter's increase since the previous sample (what
    /// StatsD sends as a count).
    pub increase: Option<u64>,
    /// Whole seconds since the Unix epoch when the batch was stamped.
    pub timestamp: i64,
}

/// What one [`Publisher::publish`] left out, besides counters with no rate
/// yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublishReport {
    /// Samples dropped because their value was NaN or infinite.
    pub non_finite: usize,
    /// Samples dropped by the whitelist or blacklist.
    pub filtered: usize,
}

/// Turns the batches of one collector instance into published values. Holds
/// the instance's rate state, which outlives the collector itself (the agent
/// keeps it when it rebuilds a collector that panicked).
#[derive(Debug, Default)]
pub struct Publisher {
    filter: NameFilter,
    rates: RateTracker,
}

impl Publisher {
    /// A publisher that leaves out the names `filter` excludes.
    pub fn new(filter: NameFilter) -> Self {
        Publisher {
            filter,
            rates: RateTracker::default(),
        }
    }

    /// Filters and rate-converts `batch` (see the [module
    /// documentation](self)), handing each value to publish to `emit` in
    /// the batch's order.
    pub fn publish(&mut self, batch: &Batch, mut emit: impl FnMut(Metric<'_>)) -> PublishReport {
        let at = batch.taken_at();
        let timestamp = batch.unix_seconds();
        let mut report = PublishReport::default();
        for sample in batch.iter() {
            if !self.filter.allows(sample.name) {
                report.filtered += 1;
                continue;
            }
            let (value, increase) = match sample.value {
                SampleValue::Gauge(v) => (v, None),
                SampleValue::Counter(v, width) => {
                    match self.rates.update(sample.name, v, at, width) {
                        CounterUpdate::Delta(d) => (d.per_second(), Some(d.increase)),
                        CounterUpdate::First | CounterUpdate::Reset | CounterUpdate::NoTime => {
                            continue
                        }
                    }
                }
            };
            if !value.is_finite() {
                report.non_finite += 1;
                continue;
            }
            emit(Metric {
                name: sample.name,
                value,
                increase,
                timestamp,
            });
        }
        self.rates.end_cycle(FORGET_AFTER_RUNS);
        report
    }

    /// How many counters the publisher remembers.
    pub fn counters(&self) -> usize {
        self.rates.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    /// Name, value, increase and timestamp of a published value.
    type Row = (String, f64, Option<u64>, i64);

    fn collect(p: &mut Publisher, b: &Batch) -> (Vec<Row>, PublishReport) {
        let mut out = Vec::new();
        let report = p.publish(b, |m| {
            out.push((m.name.to_owned(), m.value, m.increase, m.timestamp))
        });
        (out, report)
    }

    #[test]
    fn counters_become_rates_and_non_finite_values_are_dropped() {
        let mut p = Publisher::default();
        let t0 = Instant::now();
        let mut b = Batch::new();
        b.stamp(t0, UNIX_EPOCH + Duration::from_secs(1_000));
        b.counter("rx", 100);
        b.gauge("up", 1.0);
        b.gauge("bad", f64::NAN);
        b.gauge("worse", f64::NEG_INFINITY);
        let (got, report) = collect(&mut p, &b);
        assert_eq!(got, [("up".to_owned(), 1.0, None, 1_000)]);
        assert_eq!(
            report,
            PublishReport {
                non_finite: 2,
                filtered: 0
            }
        );

        b.clear();
        b.stamp(
            t0 + Duration::from_secs(4),
            UNIX_EPOCH + Duration::from_secs(1_004),
        );
        b.counter("rx", 500);
        let (got, _) = collect(&mut p, &b);
        assert_eq!(got, [("rx".to_owned(), 100.0, Some(400), 1_004)]);
    }

    #[test]
    fn filters_apply_before_rates() {
        let filter = NameFilter::new(&["a".into()], &["a\\.secret".into()]).unwrap();
        let mut p = Publisher::new(filter);
        let mut b = Batch::new();
        b.stamp(Instant::now(), SystemTime::now());
        b.counter("a.count", 1);
        b.gauge("a.secret", 1.0);
        b.gauge("b", 1.0);
        let (got, report) = collect(&mut p, &b);
        assert!(got.is_empty());
        assert_eq!(report.filtered, 2);
        assert_eq!(p.counters(), 1, "only the allowed counter is remembered");
    }

    #[test]
    fn counters_that_stop_appearing_are_forgotten() {
        let mut p = Publisher::default();
        let t0 = Instant::now();
        let mut b = Batch::new();
        b.stamp(t0, SystemTime::now());
        b.counter("gone", 1);
        collect(&mut p, &b);
        for i in 1..=FORGET_AFTER_RUNS {
            b.clear();
            b.stamp(t0 + Duration::from_secs(i), SystemTime::now());
            collect(&mut p, &b);
        }
        assert_eq!(p.counters(), 0);
    }
}
