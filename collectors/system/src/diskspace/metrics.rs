//! The metrics of one filesystem, from a `statvfs` result or from
//! `sysinfo`'s sizes.

use carat_collector::options::ByteUnit;
use carat_collector::Batch;

use super::statvfs::FsStats;

/// The metric names of one configured unit, built once.
#[derive(Debug)]
pub(super) struct Unit {
    percentfree: String,
    used: String,
    free: String,
    avail: String,
    factor: f64,
}

impl Unit {
    pub(super) fn new(unit: ByteUnit) -> Unit {
        Unit {
            percentfree: format!("{unit}_percentfree"),
            used: format!("{unit}_used"),
            free: format!("{unit}_free"),
            avail: format!("{unit}_avail"),
            factor: unit.from_bytes(1.0),
        }
    }
}

/// Adds the metrics of one filesystem, named `fs` (one path component), to
/// `batch`.
pub(super) fn publish_stats(batch: &mut Batch, fs: &str, s: &FsStats, units: &[Unit]) {
    let bytes = |blocks: u64| (u128::from(blocks) * u128::from(s.frsize)) as f64;
    let used = bytes(s.blocks.saturating_sub(s.bfree));
    let free = bytes(s.bfree);
    let avail = bytes(s.bavail);
    // Diamond: free / (free + used) blocks, i.e. free / total; 0 when the
    // filesystem reports no block at all (some pseudo filesystems).
    let percentfree = if s.blocks == 0 {
        0.0
    } else {
        100.0 * s.bfree as f64 / s.blocks as f64
    };
    for u in units {
        batch.gauge_parts(&[fs, &u.percentfree], percentfree);
        batch.gauge_parts(&[fs, &u.used], used * u.factor);
        batch.gauge_parts(&[fs, &u.free], free * u.factor);
        batch.gauge_parts(&[fs, &u.avail], avail * u.factor);
    }
    if s.files > 0 {
        batch.gauge_parts(
            &[fs, "inodes_percentfree"],
            100.0 * s.ffree as f64 / s.files as f64,
        );
    }
    batch.gauge_parts(&[fs, "inodes_used"], s.files.saturating_sub(s.ffree) as f64);
    batch.gauge_parts(&[fs, "inodes_free"], s.ffree as f64);
    batch.gauge_parts(&[fs, "inodes_avail"], s.favail as f64);
}

/// Adds the metrics `sysinfo` can give of one filesystem, named `fs`: see
/// the module documentation, "Other systems".
pub(super) fn publish_sizes(
    batch: &mut Batch,
    fs: &str,
    total: u64,
    available: u64,
    units: &[Unit],
) {
    let available = available.min(total);
    let used = (total - available) as f64;
    let available = available as f64;
    let percentfree = if total == 0 {
        0.0
    } else {
        100.0 * available / total as f64
    };
    for u in units {
        batch.gauge_parts(&[fs, &u.percentfree], percentfree);
        batch.gauge_parts(&[fs, &u.used], used * u.factor);
        batch.gauge_parts(&[fs, &u.free], available * u.factor);
        batch.gauge_parts(&[fs, &u.avail], available * u.factor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diskspace::testing::{close, published, units};

    /// The statvfs result of Diamond's own test of this collector.
    const DIAMOND_STATS: FsStats = FsStats {
        frsize: 4096,
        blocks: 360_540_255,
        bfree: 285_953_527,
        bavail: 267_639_130,
        files: 91_578_368,
        ffree: 91_229_495,
        favail: 91_229_495,
    };

    #[test]
    fn diamond_test_vector_in_gigabytes() {
        let mut batch = Batch::new();
        publish_stats(&mut batch, "root", &DIAMOND_STATS, &units(&["gigabyte"]));
        let p = published(&batch);
        // Diamond's expected values, rounded to 2 decimals there.
        close(&p, "root.gigabyte_used", 284.525, 0.005);
        close(&p, "root.gigabyte_free", 1090.826, 0.005);
        close(&p, "root.gigabyte_avail", 1020.962, 0.005);
        close(&p, "root.inodes_used", 348_873.0, 0.0);
        close(&p, "root.inodes_free", 91_229_495.0, 0.0);
        close(&p, "root.inodes_avail", 91_229_495.0, 0.0);
        close(
            &p,
            "root.gigabyte_percentfree",
            100.0 * 285_953_527.0 / 360_540_255.0,
            1e-9,
        );
        close(
            &p,
            "root.inodes_percentfree",
            100.0 * 91_229_495.0 / 91_578_368.0,
            1e-9,
        );
        assert_eq!(p.len(), 8, "{p:?}");
        let names: Vec<_> = batch.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "root.gigabyte_percentfree",
                "root.gigabyte_used",
                "root.gigabyte_free",
                "root.gigabyte_avail",
                "root.inodes_percentfree",
                "root.inodes_used",
                "root.inodes_free",
                "root.inodes_avail",
            ]
        );
    }

    #[test]
    fn bytes_bits_and_several_units() {
        let mut batch = Batch::new();
        publish_stats(
            &mut batch,
            "_data",
            &DIAMOND_STATS,
            &units(&["byte", "bit", "MB", "kilobit"]),
        );
        let p = published(&batch);
        let used = (360_540_255.0 - 285_953_527.0) * 4096.0;
        close(&p, "_data.byte_used", used, 0.0);
        close(&p, "_data.byte_free", 285_953_527.0 * 4096.0, 0.0);
        close(&p, "_data.byte_avail", 267_639_130.0 * 4096.0, 0.0);
        close(&p, "_data.bit_used", used * 8.0, 0.0);
        close(&p, "_data.MB_used", used / 1024.0 / 1024.0, 1e-9);
        close(
            &p,
            "_data.kilobit_free",
            285_953_527.0 * 4096.0 * 8.0 / 1024.0,
            1e-6,
        );
        assert_eq!(p["_data.byte_percentfree"], p["_data.MB_percentfree"]);
        assert_eq!(p.len(), 4 * 4 + 4);
    }

    #[test]
    fn empty_filesystems_do_not_divide_by_zero() {
        let mut batch = Batch::new();
        let s = FsStats {
            frsize: 4096,
            ..FsStats::default()
        };
        publish_stats(&mut batch, "x", &s, &units(&["byte"]));
        let p = published(&batch);
        // Diamond: percentfree 0 with no block; no inodes_percentfree
        // without inodes (btrfs reports f_files = 0).
        close(&p, "x.byte_percentfree", 0.0, 0.0);
        assert!(!p.contains_key("x.inodes_percentfree"));
        close(&p, "x.inodes_used", 0.0, 0.0);
        // Sizes beyond u64 when multiplied do not overflow.
        let huge = FsStats {
            frsize: 1 << 20,
            blocks: u64::MAX,
            bfree: 0,
            ..FsStats::default()
        };
        let mut batch = Batch::new();
        publish_stats(&mut batch, "x", &huge, &units(&["byte"]));
        close(
            &published(&batch),
            "x.byte_used",
            u64::MAX as f64 * 1048576.0,
            1e10,
        );
    }
}
