//! The batch a collector fills on each run.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::error::CollectorError;
use crate::name;
use crate::rate::CounterWidth;

/// What kind of value a sample is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// A value published as it is (memory used, load average, a percentage).
    Gauge,
    /// An ever-growing count; the agent publishes its rate per second.
    Counter {
        /// The width at which the source wraps, when known.
        width: Option<CounterWidth>,
    },
}

/// The value of one sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SampleValue {
    /// A gauge's value.
    Gauge(f64),
    /// A counter's raw reading.
    Counter(u64, Option<CounterWidth>),
}

impl SampleValue {
    /// The kind of this value.
    pub fn kind(&self) -> MetricKind {
        match self {
            SampleValue::Gauge(_) => MetricKind::Gauge,
            SampleValue::Counter(_, width) => MetricKind::Counter { width: *width },
        }
    }
}

/// One sample in a batch, borrowed from it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample<'a> {
    /// The name below the collector's path, already sanitised (`total.user`).
    pub name: &'a str,
    /// The value.
    pub value: SampleValue,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    start: u32,
    end: u32,
    value: SampleValue,
}

/// The samples of one collector run.
///
/// Names are stored back to back in one string and the entries in one
/// vector; [`Batch::clear`] keeps both allocations, so a collector that
/// reuses its batch allocates nothing per cycle once warmed up.
///
/// Names are dotted paths relative to the collector's path. Each component is
/// sanitised on the way in (see [`crate::name`]); use
/// [`Batch::gauge_parts`] or [`crate::name::component`] for parts that come
/// from outside and may contain dots.
///
/// A batch holds at most [`Batch::max_samples`] samples (by default
/// [`Batch::DEFAULT_MAX_SAMPLES`]): once full, it refuses further samples
/// and counts them, so the memory of one run stays bounded however much a
/// source reports; [`Batch::check_limit`] then fails the run.
///
/// ```
/// let mut batch = carat_collector::Batch::new();
/// batch.set_max_samples(2);
/// for name in ["a", "b", "c"] {
///     batch.gauge(name, 1.0);
/// }
/// assert_eq!(batch.len(), 2);
/// assert_eq!(batch.refused(), 1);
/// assert!(batch.check_limit().is_err());
/// ```
#[derive(Debug)]
pub struct Batch {
    names: String,
    entries: Vec<Entry>,
    taken_at: Instant,
    unix_seconds: i64,
    max_samples: usize,
    refused: usize,
    failed_parts: Vec<PartFailure>,
}

/// A part of a run that failed while the rest of the run succeeded: one
/// query of several, one server of several. See [`Batch::fail_part`].
#[derive(Debug)]
pub struct PartFailure {
    /// Which part: a short, stable name that is the same at every run
    /// (`query jobs_by_status`), so that the agent can tell a part that
    /// keeps failing from one that failed again after recovering.
    pub part: String,
    /// Why it failed.
    pub error: CollectorError,
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    /// The samples a batch holds at most unless told otherwise: 2,000,000,
    /// twice what an HAProxy with 10,000 servers reports in one run (about
    /// 920,000 samples), and about 150 MB of batch.
    pub const DEFAULT_MAX_SAMPLES: usize = 2_000_000;

    /// An empty batch stamped with the current time, holding at most
    /// [`Batch::DEFAULT_MAX_SAMPLES`].
    pub fn new() -> Self {
        let mut b = Batch {
            names: String::new(),
            entries: Vec::new(),
            taken_at: Instant::now(),
            unix_seconds: 0,
            max_samples: Self::DEFAULT_MAX_SAMPLES,
            refused: 0,
            failed_parts: Vec::new(),
        };
        b.stamp_now();
        b
    }

    /// Empties the batch, keeping its allocations and its bound, and stamps
    /// it with the current time.
    pub fn clear(&mut self) {
        self.names.clear();
        self.entries.clear();
        self.refused = 0;
        self.failed_parts.clear();
        self.stamp_now();
    }

    /// Records that one part of this run failed while the others go on:
    /// a query of several on the same database, a server of several.
    ///
    /// The run itself still succeeds: the agent publishes the batch, counts
    /// `error` in the instance's self-metrics (`errors` and
    /// `errors_by_kind`), logs the part's failure once per burst (and its
    /// recovery), and marks the instance unhealthy while a part fails. The
    /// instance is not backed off, so one broken part never delays the
    /// others. Return an error from the run instead when nothing could be
    /// read (the server is down): then the whole instance backs off.
    ///
    /// ```
    /// use carat_collector::{Batch, CollectorError};
    ///
    /// let mut batch = Batch::new();
    /// batch.gauge("jobs.pending", 3.0);
    /// batch.fail_part("query stuck", CollectorError::parse("query stuck", "column 1 is text"));
    /// assert_eq!(batch.failed_parts()[0].part, "query stuck");
    /// batch.clear();
    /// assert!(batch.failed_parts().is_empty());
    /// ```
    pub fn fail_part(&mut self, part: impl Into<String>, error: CollectorError) {
        self.failed_parts.push(PartFailure {
            part: part.into(),
            error,
        });
    }

    /// The parts of this run that failed ([`Batch::fail_part`]), in the
    /// order they were recorded.
    pub fn failed_parts(&self) -> &[PartFailure] {
        &self.failed_parts
    }

    /// Sets the most samples the batch holds (the agent sets the instance's
    /// `max_metrics` before each run). Samples already in it stay.
    pub fn set_max_samples(&mut self, max: usize) {
        self.max_samples = max;
    }

    /// The most samples the batch holds.
    pub fn max_samples(&self) -> usize {
        self.max_samples
    }

    /// How many samples were refused since the batch was last cleared
    /// because it was full.
    pub fn refused(&self) -> usize {
        self.refused
    }

    /// Fails when samples were refused since the batch was last cleared:
    /// the run reported more than the batch may hold, and what it holds is
    /// only the first part. The agent and the test harness call this after
    /// every run, so such a run counts as failed.
    pub fn check_limit(&self) -> Result<(), CollectorError> {
        if self.refused == 0 {
            return Ok(());
        }
        Err(CollectorError::Limit(format!(
            "the run reported more than {} samples, the most one run may add (the collector's \
             max_metrics option); the first {} were kept, {} more were dropped",
            self.max_samples,
            self.entries.len(),
            self.refused
        )))
    }

    /// Sets the moment the samples were taken: the monotonic instant that
    /// rates divide by and the wall-clock second published with each value.
    /// The agent stamps each batch just before `collect`; a collector whose
    /// reading arrives much later (a slow HTTP endpoint) may stamp it again.
    pub fn stamp(&mut self, taken_at: Instant, wall: SystemTime) {
        self.taken_at = taken_at;
        self.unix_seconds = wall
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
    }

    /// Stamps the batch with the current time (see [`Batch::stamp`]).
    pub fn stamp_now(&mut self) {
        self.stamp(Instant::now(), SystemTime::now());
    }

    /// The monotonic instant the samples were taken.
    pub fn taken_at(&self) -> Instant {
        self.taken_at
    }

    /// The whole seconds since the Unix epoch when the samples were taken.
    pub fn unix_seconds(&self) -> i64 {
        self.unix_seconds
    }

    /// Adds a gauge named by a dotted path (`"total.user"`).
    pub fn gauge(&mut self, name: &str, value: f64) {
        self.push(name, SampleValue::Gauge(value));
    }

    /// Adds a counter whose width is unknown: a decrease is taken as a
    /// reset and publishes nothing for that cycle.
    pub fn counter(&mut self, name: &str, value: u64) {
        self.push(name, SampleValue::Counter(value, None));
    }

    /// Adds a counter that wraps at `width`.
    pub fn counter_with_width(&mut self, name: &str, value: u64, width: CounterWidth) {
        self.push(name, SampleValue::Counter(value, Some(width)));
    }

    /// Adds a gauge named by components, each sanitised as a single
    /// component: a dot inside one becomes `_`. Use this for names that come
    /// from outside (`["web.backend", "srv 1", "scur"]` → `web_backend.srv_1.scur`).
    pub fn gauge_parts(&mut self, parts: &[&str], value: f64) {
        self.push_parts(parts, SampleValue::Gauge(value));
    }

    /// Adds a counter named by components (see [`Batch::gauge_parts`]).
    pub fn counter_parts(&mut self, parts: &[&str], value: u64, width: Option<CounterWidth>) {
        self.push_parts(parts, SampleValue::Counter(value, width));
    }

    /// Adds a sample named by a dotted path. A name with no component at all
    /// is recorded as `_` so that the sample is visible rather than lost.
    pub fn push(&mut self, name: &str, value: SampleValue) {
        if self.is_full() {
            return;
        }
        let start = self.names.len();
        // `push_path` writes a leading dot when the string is not empty;
        // names are stored back to back, so write into a fresh tail instead.
        let mut wrote = false;
        for part in name.split('.').filter(|p| !p.is_empty()) {
            if wrote {
                self.names.push('.');
            }
            name::push_component(&mut self.names, part);
            wrote = true;
        }
        if !wrote {
            self.names.push('_');
        }
        self.finish_entry(start, value);
    }

    fn push_parts(&mut self, parts: &[&str], value: SampleValue) {
        if self.is_full() {
            return;
        }
        let start = self.names.len();
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                self.names.push('.');
            }
            name::push_component(&mut self.names, part);
        }
        if parts.is_empty() {
            self.names.push('_');
        }
        self.finish_entry(start, value);
    }

    /// True, counting the sample refused, when the batch holds as many
    /// samples as it may.
    fn is_full(&mut self) -> bool {
        if self.entries.len() < self.max_samples {
            return false;
        }
        self.refused = self.refused.saturating_add(1);
        true
    }

    fn finish_entry(&mut self, start: usize, value: SampleValue) {
        // Entries address names with 32-bit offsets: a sample whose name
        // would end beyond 4 GiB of names is refused like one beyond
        // `max_samples` (only a batch far over any sane bound gets there).
        let (Ok(start32), Ok(end)) = (u32::try_from(start), u32::try_from(self.names.len())) else {
            self.names.truncate(start);
            self.refused = self.refused.saturating_add(1);
            return;
        };
        self.entries.push(Entry {
            start: start32,
            end,
            value,
        });
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the batch holds no sample.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The samples in the order they were added.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Sample<'_>> + '_ {
        self.entries.iter().map(move |e| Sample {
            name: self
                .names
                .get(e.start as usize..e.end as usize)
                .unwrap_or(""),
            value: e.value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitised_per_component() {
        let mut b = Batch::new();
        b.gauge("total.user", 1.0);
        b.gauge("..a b\n.c..", 2.0);
        b.gauge_parts(&["web.example", "srv 1\r\n", ""], 3.0);
        b.counter("", 4);
        let names: Vec<_> = b.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            ["total.user", "a_b_.c", "web_example.srv_1__._", "_"]
        );
    }

    #[test]
    fn a_full_batch_stops_growing_and_fails_the_run() {
        let mut b = Batch::new();
        assert_eq!(b.max_samples(), Batch::DEFAULT_MAX_SAMPLES);
        b.set_max_samples(3);
        for i in 0..1000 {
            b.gauge(&format!("m{i}"), 1.0);
            b.counter_parts(&["x", "y"], i, None);
        }
        assert_eq!(b.len(), 3);
        assert_eq!(b.refused(), 1997);
        let names: Vec<_> = b.iter().map(|s| s.name).collect();
        assert_eq!(names, ["m0", "x.y", "m1"]);
        // The names of refused samples take no memory either.
        assert_eq!(b.names.len(), "m0x.ym1".len());
        let e = b.check_limit().unwrap_err();
        assert_eq!(e.label(), "limit");
        let msg = e.to_string();
        assert!(
            msg.contains("more than 3 samples") && msg.contains("max_metrics"),
            "{msg}"
        );
        b.clear();
        assert!(b.check_limit().is_ok(), "clear starts a new run");
        assert_eq!(b.max_samples(), 3, "and keeps the bound");
    }

    #[test]
    fn clear_keeps_capacity() {
        let mut b = Batch::new();
        for i in 0..100 {
            b.gauge(&format!("m{i}"), 1.0);
        }
        let cap = (b.names.capacity(), b.entries.capacity());
        b.clear();
        assert!(b.is_empty());
        assert_eq!(cap, (b.names.capacity(), b.entries.capacity()));
    }
}
