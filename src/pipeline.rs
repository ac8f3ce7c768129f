//! From a collector's batch to published metrics: full names, the
//! whitelist and blacklist, and counters turned into rates.

use std::time::Duration;

use carat_collector::rate::CounterUpdate;
use carat_collector::{name, Batch, RateTracker, SampleValue};
use regex::RegexSet;

use crate::metrics::MetricBatch;

/// Counters not seen for this many runs are forgotten (a deleted queue, an
/// interface that went away), so rate state cannot grow without bound.
const FORGET_AFTER_RUNS: u64 = 10;

/// `<prefix>.<host>[.<suffix>].<collector path>`, each component sanitised.
pub fn metric_prefix(
    path_prefix: &str,
    host: &str,
    path_suffix: &str,
    collector_path: &str,
) -> String {
    let mut out = String::new();
    for part in [path_prefix, host, path_suffix, collector_path] {
        name::push_path(&mut out, part);
    }
    out
}

/// Which metric names an instance publishes.
#[derive(Clone, Debug, Default)]
pub struct NameFilter {
    whitelist: Option<RegexSet>,
    blacklist: Option<RegexSet>,
}

impl NameFilter {
    /// Builds a filter. Patterns are anchored at the start of the name, as
    /// Diamond's `re.match` is: `total` matches `total.user`, not `cpu0.total`.
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

/// What one run of the pipeline produced besides the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublishReport {
    /// Samples dropped because their value was NaN or infinite.
    pub non_finite: usize,
    /// Samples dropped by the whitelist or blacklist.
    pub filtered: usize,
}

/// Turns the batches of one collector instance into named metrics. Holds the
/// instance's rate state, which outlives the collector itself (a collector
/// rebuilt after a panic keeps its rates).
#[derive(Debug)]
pub struct Publisher {
    prefix: String,
    filter: NameFilter,
    rates: RateTracker,
}

impl Publisher {
    /// A publisher for metrics under `prefix` (see [`metric_prefix`]).
    pub fn new(prefix: String, filter: NameFilter) -> Self {
        Publisher {
            prefix,
            filter,
            rates: RateTracker::default(),
        }
    }

    /// The prefix of every path this publisher writes.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Names, filters and rate-converts `batch`.
    pub fn publish(&mut self, batch: &Batch) -> (MetricBatch, PublishReport) {
        let at = batch.taken_at();
        let mut out =
            MetricBatch::with_capacity(batch.unix_seconds(), batch.len(), self.prefix.len() + 24);
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
                        _ => continue,
                    }
                }
            };
            if !value.is_finite() {
                report.non_finite += 1;
                continue;
            }
            out.push(&self.prefix, sample.name, value, increase);
        }
        self.rates.end_cycle(FORGET_AFTER_RUNS);
        (out, report)
    }
}

/// The elapsed time of a run, in milliseconds, for self-metrics.
pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Instant, SystemTime};

    #[test]
    fn prefix_is_sanitised_and_skips_empty_parts() {
        assert_eq!(
            metric_prefix("servers", "web 01\n", "", "cpu"),
            "servers.web_01_.cpu"
        );
        assert_eq!(
            metric_prefix("servers", "a.b", "dc1", "haproxy.edge"),
            "servers.a.b.dc1.haproxy.edge"
        );
        assert_eq!(metric_prefix("", "h", "", "x"), "h.x");
    }

    #[test]
    fn filters_are_anchored_like_diamond() {
        let f = NameFilter::new(&["total".into()], &["total\\.guest".into()]).unwrap();
        assert!(f.allows("total.user"));
        assert!(!f.allows("cpu0.total"));
        assert!(!f.allows("total.guest_nice"));
        assert!(NameFilter::default().allows("anything"));
    }

    #[test]
    fn counters_become_rates_and_gauges_pass() {
        let mut p = Publisher::new("servers.h.net".into(), NameFilter::default());
        let t0 = Instant::now();
        let mut b = Batch::new();
        b.stamp(t0, SystemTime::UNIX_EPOCH + Duration::from_secs(1_000));
        b.counter("rx", 100);
        b.gauge("up", 1.0);
        b.gauge("bad", f64::NAN);
        let (m, report) = p.publish(&b);
        let lines: Vec<_> = m
            .iter()
            .map(|m| (m.path.to_owned(), m.value, m.timestamp))
            .collect();
        assert_eq!(lines, [("servers.h.net.up".to_owned(), 1.0, 1_000)]);
        assert_eq!(report.non_finite, 1);

        b.clear();
        b.stamp(
            t0 + Duration::from_secs(4),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_004),
        );
        b.counter("rx", 500);
        let (m, _) = p.publish(&b);
        let got: Vec<_> = m.iter().map(|m| (m.path, m.value, m.increase)).collect();
        assert_eq!(got, [("servers.h.net.rx", 100.0, Some(400))]);
    }
}
