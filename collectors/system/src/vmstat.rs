//! The `vmstat` collector: paging and swapping rates from `/proc/vmstat`.
//!
//! `/proc/vmstat` holds one `name value` line per virtual memory statistic.
//! The collector publishes Diamond's six ([`KEYS`]), all counters since
//! boot, as counters: the agent turns them into rates per second over the
//! measured time between two runs (nothing on the first run, nothing for a
//! counter that went backwards).
//!
//! | key | rate of |
//! |-----|---------|
//! | `pgfault` | page faults, minor and major |
//! | `pgmajfault` | major page faults (needing I/O) |
//! | `pgpgin` | KiB paged in from block devices |
//! | `pgpgout` | KiB paged out to block devices |
//! | `pswpin` | pages swapped in |
//! | `pswpout` | pages swapped out |
//!
//! The counters are `unsigned long` in the kernel, whose width (32 or 64
//! bits) depends on the kernel's architecture, so they are added without a
//! width: a decrease skips that counter for one cycle.
//!
//! A key the kernel does not print is not published. Every line must be
//! `name value` (the kernel's format since 2.6); the values of the six keys
//! must be counters. A file that is not in that format, or that has none of
//! the six keys, is a [`CollectorError::Parse`] naming the file (and line).

use std::path::{Path, PathBuf};

use carat_collector::{Batch, Collector, CollectorError, Environment};
use serde::Deserialize;

use crate::procfile::{
    cut_short, file_error, parse_error, read_complete, unterminated_last_line, whole_fields,
};

/// The keys of `/proc/vmstat` that are published, under the same names.
pub const KEYS: [&str; 6] = [
    "pgfault",
    "pgmajfault",
    "pgpgin",
    "pgpgout",
    "pswpin",
    "pswpout",
];

/// Options of the `vmstat` collector: it has none of its own.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct VmStatConfig {}

/// The `vmstat` collector. See the [module documentation](self).
pub struct VmStat {
    path: PathBuf,
    buf: Vec<u8>,
}

impl Collector for VmStat {
    type Config = VmStatConfig;
    const KIND: &'static str = "vmstat";
    const DESCRIPTION: &'static str =
        "Page faults, paging and swapping per second, from /proc/vmstat";
    const DEFAULT_PATH: &'static str = "vmstat";
    const SAMPLE: &'static str = crate::SAMPLE;

    fn new(_config: VmStatConfig, env: &Environment) -> Result<Self, CollectorError> {
        // Only /proc has these numbers: elsewhere, say so when built.
        crate::source::linux_only(Self::KIND)?;
        Ok(VmStat {
            path: env.proc_path("vmstat"),
            buf: Vec::new(),
        })
    }

    async fn collect(&mut self, batch: &mut Batch) -> Result<(), CollectorError> {
        let text = read_complete(&self.path, &mut self.buf)?;
        let found = parse_vmstat(&self.path, text)?;
        for (key, value) in KEYS.iter().zip(found) {
            if let Some(value) = value {
                batch.counter(key, value);
            }
        }
        Ok(())
    }
}

/// The values of [`KEYS`] in `text` (read from `path`), checking that every
/// line is `name value`.
fn parse_vmstat(path: &Path, text: &str) -> Result<[Option<u64>; KEYS.len()], CollectorError> {
    let mut found = [None; KEYS.len()];
    let unterminated = unterminated_last_line(text);
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        let mut fields = line.split_ascii_whitespace();
        let Some(name) = fields.next() else {
            continue; // blank line
        };
        // The last line without its newline: its value is whole when
        // something follows it; else it may be cut short, which matters only
        // for a value that is published.
        if unterminated == Some(lineno) && whole_fields(line) < 2 {
            if KEYS.contains(&name) {
                return Err(cut_short(
                    path,
                    lineno,
                    &format!("the value of {name}, which ends it, may be cut short"),
                ));
            }
            continue;
        }
        let Some(value) = fields.next() else {
            return Err(parse_error(path, lineno, format!("{name} has no value")));
        };
        if fields.next().is_some() {
            return Err(parse_error(
                path,
                lineno,
                format!("{name}: more than one value"),
            ));
        }
        let Some(k) = KEYS.iter().position(|key| *key == name) else {
            continue;
        };
        let value = value.parse::<u64>().map_err(|e| {
            parse_error(
                path,
                lineno,
                format!("{name}: {value:?} is not a counter: {e}"),
            )
        })?;
        if found[k].is_some() {
            return Err(parse_error(path, lineno, format!("{name} appears twice")));
        }
        found[k] = Some(value);
    }
    if found.iter().all(Option::is_none) {
        return Err(file_error(
            path,
            format!("none of {} found", KEYS.join(", ")),
        ));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{assert_metric, ProcDir};
    use carat_collector::testing::Harness;
    use std::time::Duration;

    // Recorded from this machine (Linux 6.18) before and after writing and
    // reading back 16 MiB:
    //
    //            pgpgin   pgpgout  pswpin pswpout  pgfault   pgmajfault
    //   a:      4655113   4719796       0       0  26130110        5077
    //   b:      4671713   4738832       0       0  26131992        5080
    //   Δ:        16600     19036       0       0      1882           3
    #[tokio::test]
    async fn recorded_fixtures() {
        let dir = ProcDir::new("vmstat-recorded");
        let mut h = Harness::<VmStat>::new(VmStatConfig::default(), dir.env()).unwrap();
        dir.copy_fixture("vmstat/vmstat-a", "vmstat");
        let first = h.collect().await.unwrap();
        assert!(first.metrics.is_empty(), "{:?}", first.metrics);
        assert_eq!(first.samples, 6);
        dir.copy_fixture("vmstat/vmstat-b", "vmstat");
        let p = h.collect_after(Duration::from_secs(2)).await.unwrap();
        assert_metric(&p, "pgpgin", 8300.0);
        assert_metric(&p, "pgpgout", 9518.0);
        assert_metric(&p, "pswpin", 0.0);
        assert_metric(&p, "pswpout", 0.0);
        assert_metric(&p, "pgfault", 941.0);
        assert_metric(&p, "pgmajfault", 1.5);
        assert_eq!(p.metrics.len(), 6, "{:?}", p.metrics);
    }

    #[tokio::test]
    async fn a_recorded_vmstat_without_its_final_newline_is_read_whole() {
        // Its last line (nr_unstable) is not published.
        crate::test_support::same_without_final_newline::<VmStat>(
            VmStatConfig::default(),
            &[
                &[("vmstat/vmstat-a", "vmstat")],
                &[("vmstat/vmstat-b", "vmstat")],
            ],
        )
        .await;
        // A published value followed by a space is whole; a cut unused
        // line is not an error.
        let dir = ProcDir::new("vmstat-unterminated");
        let mut h = Harness::<VmStat>::new(VmStatConfig::default(), dir.env()).unwrap();
        dir.write("vmstat", "pgfault 10 ");
        h.collect().await.unwrap();
        dir.write("vmstat", "pgfault 20\nnr_unst");
        let p = h.collect_after(Duration::from_secs(1)).await.unwrap();
        assert_metric(&p, "pgfault", 10.0);
    }

    #[tokio::test]
    async fn rates_follow_the_measured_time() {
        let dir = ProcDir::new("vmstat-rates");
        let mut h = Harness::<VmStat>::new(VmStatConfig::default(), dir.env()).unwrap();
        dir.write("vmstat", "nr_free_pages 12\npgfault 1000\npswpin 50\n");
        h.collect().await.unwrap();
        dir.write("vmstat", "nr_free_pages 9\npgfault 1600\npswpin 50\n");
        let p = h.collect_after(Duration::from_secs(12)).await.unwrap();
        assert_metric(&p, "pgfault", 50.0);
        assert_metric(&p, "pswpin", 0.0);
        // Keys the file lacks are not published; others are ignored.
        assert_eq!(p.metrics.len(), 2, "{:?}", p.metrics);

        // pgfault went backwards (a checkpoint/restore, a broken /proc):
        // skipped once, then rated from the new base.
        dir.write("vmstat", "pgfault 100\npswpin 60\n");
        let p = h.collect_after(Duration::from_secs(10)).await.unwrap();
        assert!(p.get("pgfault").is_none());
        assert_metric(&p, "pswpin", 1.0);
        dir.write("vmstat", "pgfault 400\npswpin 60\n");
        let p = h.collect_after(Duration::from_secs(10)).await.unwrap();
        assert_metric(&p, "pgfault", 30.0);

        // The same instant twice publishes nothing.
        let p = h.collect_after(Duration::ZERO).await.unwrap();
        assert!(p.metrics.is_empty(), "{:?}", p.metrics);
    }

    #[tokio::test]
    async fn garbage_is_a_parse_error_naming_file_and_line() {
        let cases: &[(&str, &str)] = &[
            ("", "line 1: empty file"),
            ("pgfault 1\npgpgin 12", "line 2: truncated"),
            (
                "pgfault 1\npgpgin lots\n",
                "line 2: pgpgin: \"lots\" is not a counter",
            ),
            ("pgfault -1\n", "line 1: pgfault: \"-1\" is not a counter"),
            ("pgfault 1\nnr_dirty\n", "line 2: nr_dirty has no value"),
            ("pgfault 1 2\n", "line 1: pgfault: more than one value"),
            ("pgfault 1\npgfault 2\n", "line 2: pgfault appears twice"),
            ("hello world\n", "none of pgfault, pgmajfault"),
            ("nr_free_pages 5\n", "none of pgfault, pgmajfault"),
        ];
        for (vmstat, expected) in cases {
            let dir = ProcDir::new("vmstat-garbage");
            dir.write("vmstat", vmstat);
            let mut h = Harness::<VmStat>::new(VmStatConfig::default(), dir.env()).unwrap();
            let err = h.collect().await.unwrap_err();
            assert_eq!(err.label(), "parse", "{vmstat:?}: {err}");
            let msg = err.to_string();
            let file = dir.path.join("vmstat").display().to_string();
            assert!(msg.contains(&file), "{msg}");
            assert!(
                msg.contains(expected),
                "{vmstat:?}: {msg:?} lacks {expected:?}"
            );
        }
    }

    #[tokio::test]
    async fn real_proc() {
        let mut h =
            Harness::<VmStat>::new(VmStatConfig::default(), Environment::default()).unwrap();
        let first = h.collect().await.unwrap();
        assert!(first.metrics.is_empty());
        assert_eq!(first.samples, 6, "every kernel since 2.6 has all six");
        std::thread::sleep(Duration::from_millis(20));
        let p = h.collect().await.unwrap();
        assert_eq!(p.names().collect::<Vec<_>>().len(), 6, "{:?}", p.metrics);
        for (name, value) in &p.metrics {
            assert!(value.is_finite() && *value >= 0.0, "{name} = {value}");
        }
    }

    #[test]
    fn metadata_and_config() {
        assert_eq!((VmStat::KIND, VmStat::DEFAULT_PATH), ("vmstat", "vmstat"));
        assert!(!VmStat::DESCRIPTION.contains('\n'));
        use serde::de::value::{Error, MapDeserializer};
        let empty: MapDeserializer<'_, std::vec::IntoIter<(&str, &str)>, Error> =
            MapDeserializer::new(Vec::new().into_iter());
        assert_eq!(
            VmStatConfig::deserialize(empty).unwrap(),
            VmStatConfig::default()
        );
        let typo: MapDeserializer<'_, _, Error> =
            MapDeserializer::new(vec![("keys", "pgfault")].into_iter());
        assert!(VmStatConfig::deserialize(typo).is_err());
    }
}
