//! The batch of fully named metrics handed from the collectors to outputs.

/// One published metric, borrowed from a [`MetricBatch`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metric<'a> {
    /// The full path: `servers.web01.cpu.total.user`.
    pub path: &'a str,
    /// The value (a counter's rate per second).
    pub value: f64,
    /// For a rate: the counter's increase over the interval, which StatsD
    /// sends as a count.
    pub increase: Option<u64>,
    /// Whole seconds since the Unix epoch when the sample was taken.
    pub timestamp: i64,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    start: u32,
    end: u32,
    value: f64,
    increase: Option<u64>,
}

/// The metrics of one collector run, ready for outputs. Paths are stored
/// back to back in one string: one allocation per batch, not per metric.
#[derive(Clone, Debug, Default)]
pub struct MetricBatch {
    paths: String,
    entries: Vec<Entry>,
    timestamp: i64,
}

impl MetricBatch {
    /// An empty batch for samples taken at `timestamp`.
    pub fn new(timestamp: i64) -> Self {
        MetricBatch {
            timestamp,
            ..MetricBatch::default()
        }
    }

    /// An empty batch with room for `metrics` metrics of about `path_bytes`
    /// bytes of path each.
    pub fn with_capacity(timestamp: i64, metrics: usize, path_bytes: usize) -> Self {
        MetricBatch {
            paths: String::with_capacity(metrics * path_bytes),
            entries: Vec::with_capacity(metrics),
            timestamp,
        }
    }

    /// Adds a metric whose full path is `prefix` + `.` + `name` (both already
    /// sanitised). An empty prefix gives just `name`.
    pub fn push(&mut self, prefix: &str, name: &str, value: f64, increase: Option<u64>) {
        let start = self.paths.len();
        if !prefix.is_empty() {
            self.paths.push_str(prefix);
            self.paths.push('.');
        }
        self.paths.push_str(name);
        let to_u32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        self.entries.push(Entry {
            start: to_u32(start),
            end: to_u32(self.paths.len()),
            value,
            increase,
        });
    }

    /// The number of metrics.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there is no metric.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The sampling time shared by every metric of the batch.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// The metrics in the order they were added.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Metric<'_>> + '_ {
        self.iter_from(0)
    }

    /// The metrics from the `start`th on (none if there are fewer).
    pub fn iter_from(&self, start: usize) -> impl ExactSizeIterator<Item = Metric<'_>> + '_ {
        let rest = self.entries.get(start..).unwrap_or_default();
        rest.iter().map(move |e| Metric {
            path: self
                .paths
                .get(e.start as usize..e.end as usize)
                .unwrap_or(""),
            value: e.value,
            increase: e.increase,
            timestamp: self.timestamp,
        })
    }
}
