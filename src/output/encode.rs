//! Graphite's plaintext protocol: `path value timestamp\n`.

use crate::metrics::{Metric, MetricBatch};

/// Appends one line for `metric` to `out`. Paths were sanitised when they
/// were built, so a line always has exactly three fields.
pub fn encode_line(out: &mut Vec<u8>, metric: &Metric<'_>) {
    out.extend_from_slice(metric.path.as_bytes());
    out.push(b' ');
    encode_value(out, metric.value);
    out.push(b' ');
    out.extend_from_slice(itoa::Buffer::new().format(metric.timestamp).as_bytes());
    out.push(b'\n');
}

/// Appends every metric of `batch`.
pub fn encode_batch(out: &mut Vec<u8>, batch: &MetricBatch) {
    for m in batch.iter() {
        encode_line(out, &m);
    }
}

/// Integers exactly representable in an f64 are written without a
/// fraction (`1048576`, not `1048576.0`); other values in the shortest form
/// that reads back to the same f64 (`1.53`, `1e-7`), which carbon parses.
pub fn encode_value(out: &mut Vec<u8>, value: f64) {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if value.fract() == 0.0 && value.abs() < EXACT {
        out.extend_from_slice(itoa::Buffer::new().format(value as i64).as_bytes());
    } else {
        out.extend_from_slice(ryu::Buffer::new().format(value).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(path: &str, value: f64, ts: i64) -> String {
        let mut out = Vec::new();
        encode_line(
            &mut out,
            &Metric {
                path,
                value,
                increase: None,
                timestamp: ts,
            },
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn formats_values_compactly_and_exactly() {
        assert_eq!(line("a.b", 1.53, 1_763_880_000), "a.b 1.53 1763880000\n");
        assert_eq!(line("a", 1_048_576.0, 1), "a 1048576 1\n");
        assert_eq!(line("a", -3.0, 1), "a -3 1\n");
        assert_eq!(line("a", 0.0, 1), "a 0 1\n");
        assert_eq!(line("a", 1e-7, 1), "a 1e-7 1\n");
        let big = line("a", 1e300, 1);
        let v: f64 = big.split(' ').nth(1).unwrap().parse().unwrap();
        assert_eq!(v, 1e300);
        let third: f64 = line("a", 1.0 / 3.0, 1)
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(third, 1.0 / 3.0);
    }
}
