//! The `uptime` collector: how long the host has been up, from
//! `/proc/uptime`.
//!
//! `/proc/uptime` reads `1493.66 2234.97`: the seconds since boot and the
//! seconds all CPUs together spent idle. The first is published as a gauge
//! converted to the unit named by `metric_name`, which is also the metric's
//! name (Diamond's option, default `minutes`: `uptime.minutes`).
//!
//! A file whose first field is not a finite, non-negative number of seconds
//! is a [`CollectorError::Parse`] naming the file and line.

use std::path::PathBuf;

use carat_collector::{Batch, Collector, CollectorError, Environment};
use serde::Deserialize;

use crate::procfile::{
    cut_short, parse_error, read_complete, unterminated_last_line, whole_fields,
};

/// The units `metric_name` may name (Diamond's `convertor.time`, matched
/// without regard to case), and their length in seconds.
const UNITS: &[(&[&str], f64)] = &[
    (&["nanosecond", "nanoseconds", "ns"], 1e-9),
    (&["microsecond", "microseconds", "us"], 1e-6),
    (&["millisecond", "milliseconds", "ms"], 1e-3),
    (&["second", "seconds", "s"], 1.0),
    (&["minute", "minutes", "m"], 60.0),
    (&["hour", "hours", "h"], 3600.0),
    (&["day", "days", "d"], 86400.0),
    (&["year", "years", "y"], 365.0 * 86400.0),
];

/// Options of the `uptime` collector.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct UptimeConfig {
    /// The unit of the uptime, which is also the metric's name: `seconds`,
    /// `minutes`, `hours`, `days`, … (see the README for the full list).
    pub metric_name: String,
}

impl Default for UptimeConfig {
    fn default() -> Self {
        UptimeConfig {
            metric_name: "minutes".to_owned(),
        }
    }
}

/// The `uptime` collector. See the [module documentation](self).
pub struct Uptime {
    path: PathBuf,
    metric_name: String,
    /// Seconds per unit of `metric_name`.
    seconds_per_unit: f64,
    buf: Vec<u8>,
}

impl Collector for Uptime {
    type Config = UptimeConfig;
    const KIND: &'static str = "uptime";
    const DESCRIPTION: &'static str = "Time since boot (in minutes by default), from /proc/uptime";
    const DEFAULT_PATH: &'static str = "uptime";
    const SAMPLE: &'static str = crate::SAMPLE;

    fn new(config: UptimeConfig, env: &Environment) -> Result<Self, CollectorError> {
        // Only /proc has these numbers: elsewhere, say so when built.
        crate::source::linux_only(Self::KIND)?;
        let lower = config.metric_name.to_ascii_lowercase();
        let Some((_, seconds_per_unit)) = UNITS.iter().find(|(names, _)| names.contains(&&*lower))
        else {
            return Err(CollectorError::option(
                "metric_name",
                format!(
                    "{:?} is not a unit of time (seconds, minutes, hours, days, years, \
                     milliseconds, microseconds, nanoseconds, or s, m, h, d, y, ms, us, ns)",
                    config.metric_name
                ),
            ));
        };
        Ok(Uptime {
            path: env.proc_path("uptime"),
            metric_name: config.metric_name,
            seconds_per_unit: *seconds_per_unit,
            buf: Vec::new(),
        })
    }

    async fn collect(&mut self, batch: &mut Batch) -> Result<(), CollectorError> {
        let text = read_complete(&self.path, &mut self.buf)?;
        let (lineno, first) = text
            .lines()
            .enumerate()
            .find_map(|(i, l)| l.split_ascii_whitespace().next().map(|f| (i + 1, f)))
            .unwrap_or((1, ""));
        // Without its newline, the line is whole when something follows the
        // first field (the idle time, not used); alone, it may be cut short.
        let line = text.lines().nth(lineno - 1).unwrap_or_default();
        if unterminated_last_line(text) == Some(lineno) && whole_fields(line) < 1 {
            return Err(cut_short(
                &self.path,
                lineno,
                "its uptime ends it, with nothing after it, so it may be cut short",
            ));
        }
        let seconds = first
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .ok_or_else(|| {
                parse_error(
                    &self.path,
                    lineno,
                    format!("{first:?} is not a number of seconds"),
                )
            })?;
        batch.gauge(&self.metric_name, seconds / self.seconds_per_unit);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{assert_metric, fixture_env, ProcDir};
    use carat_collector::testing::Harness;

    fn config(metric_name: &str) -> UptimeConfig {
        UptimeConfig {
            metric_name: metric_name.to_owned(),
        }
    }

    // tests/fixtures/uptime/uptime, recorded from this machine: "1498.39 2244.35".
    #[tokio::test]
    async fn recorded_fixture_in_minutes() {
        let mut h = Harness::<Uptime>::new(UptimeConfig::default(), fixture_env("uptime")).unwrap();
        let p = h.collect().await.unwrap();
        assert_metric(&p, "minutes", 1498.39 / 60.0);
        assert_eq!(p.metrics.len(), 1);
        // A gauge: the same on every run, from the first one.
        let p = h.collect().await.unwrap();
        assert_metric(&p, "minutes", 24.973166666666668);
    }

    #[tokio::test]
    async fn units_and_their_names() {
        let dir = ProcDir::new("uptime-units");
        dir.write("uptime", "3600.00 100.00\n");
        for (name, expected) in [
            ("seconds", 3600.0),
            ("s", 3600.0),
            ("minutes", 60.0),
            ("minute", 60.0),
            ("hours", 1.0),
            ("days", 1.0 / 24.0),
            ("years", 1.0 / (24.0 * 365.0)),
            ("milliseconds", 3_600_000.0),
            ("us", 3_600_000_000.0),
            ("ns", 3_600_000_000_000.0),
            // Matched without case, published as written (as Diamond).
            ("Minutes", 60.0),
        ] {
            let mut h = Harness::<Uptime>::new(config(name), dir.env()).unwrap();
            let p = h.collect().await.unwrap();
            let value = p
                .get(name)
                .unwrap_or_else(|| panic!("{name}: {:?}", p.metrics));
            assert!(
                (value - expected).abs() <= expected * 1e-12,
                "{name} = {value}, expected {expected}"
            );
            assert_eq!(p.metrics.len(), 1);
        }
        for bad in ["", "fortnights", "minutes.total", "m s"] {
            let err = Uptime::new(config(bad), &Environment::default())
                .err()
                .unwrap();
            assert_eq!(err.label(), "config");
            assert!(err.to_string().contains("metric_name"), "{err}");
        }
    }

    #[tokio::test]
    async fn only_the_first_field_is_needed() {
        let dir = ProcDir::new("uptime-one-field");
        dir.write("uptime", "120\n");
        let mut h = Harness::<Uptime>::new(UptimeConfig::default(), dir.env()).unwrap();
        assert_metric(&h.collect().await.unwrap(), "minutes", 2.0);
        dir.write("uptime", "0.00 0.00 extra\n");
        assert_metric(&h.collect().await.unwrap(), "minutes", 0.0);
    }

    #[tokio::test]
    async fn a_recorded_uptime_without_its_final_newline_is_read_whole() {
        crate::test_support::same_without_final_newline::<Uptime>(
            UptimeConfig::default(),
            &[&[("uptime/uptime", "uptime")]],
        )
        .await;
        // The first field, followed by a space, is whole.
        let dir = ProcDir::new("uptime-unterminated");
        dir.write("uptime", "120 ");
        let mut h = Harness::<Uptime>::new(UptimeConfig::default(), dir.env()).unwrap();
        assert_metric(&h.collect().await.unwrap(), "minutes", 2.0);
    }

    #[tokio::test]
    async fn garbage_is_a_parse_error_naming_file_and_line() {
        let cases: &[(&str, &str)] = &[
            ("", "line 1: empty file"),
            ("\n\n", "line 1: empty file"),
            ("1493.66", "line 1: truncated"),
            ("\n1493.66", "line 2: truncated"),
            (
                "wrtwtwt 10036802.26\n",
                "line 1: \"wrtwtwt\" is not a number of seconds",
            ),
            ("-5.00 1.00\n", "line 1: \"-5.00\" is not a number"),
            ("NaN 1.00\n", "line 1: \"NaN\" is not a number"),
            ("inf 1.00\n", "line 1: \"inf\" is not a number"),
            ("1e400 1.00\n", "line 1: \"1e400\" is not a number"),
            ("\n12,5 1\n", "line 2: \"12,5\" is not a number"),
        ];
        for (uptime, expected) in cases {
            let dir = ProcDir::new("uptime-garbage");
            dir.write("uptime", uptime);
            let mut h = Harness::<Uptime>::new(UptimeConfig::default(), dir.env()).unwrap();
            let err = h.collect().await.unwrap_err();
            assert_eq!(err.label(), "parse", "{uptime:?}: {err}");
            let msg = err.to_string();
            let file = dir.path.join("uptime").display().to_string();
            assert!(msg.contains(&file), "{msg}");
            assert!(
                msg.contains(expected),
                "{uptime:?}: {msg:?} lacks {expected:?}"
            );
        }
    }

    #[tokio::test]
    async fn real_proc() {
        let mut h = Harness::<Uptime>::new(config("seconds"), Environment::default()).unwrap();
        let p = h.collect().await.unwrap();
        let up = p.get("seconds").expect("seconds");
        assert!(up > 0.0 && up.is_finite(), "{up}");
    }

    #[test]
    fn metadata_and_config() {
        assert_eq!((Uptime::KIND, Uptime::DEFAULT_PATH), ("uptime", "uptime"));
        assert!(!Uptime::DESCRIPTION.contains('\n'));
        use serde::de::value::{Error, MapDeserializer};
        let empty: MapDeserializer<'_, std::vec::IntoIter<(&str, &str)>, Error> =
            MapDeserializer::new(Vec::new().into_iter());
        let c = UptimeConfig::deserialize(empty).unwrap();
        assert_eq!(c, UptimeConfig::default());
        assert_eq!(c.metric_name, "minutes");
        let set: MapDeserializer<'_, _, Error> =
            MapDeserializer::new(vec![("metric_name", "hours")].into_iter());
        assert_eq!(UptimeConfig::deserialize(set).unwrap().metric_name, "hours");
        let typo: MapDeserializer<'_, _, Error> =
            MapDeserializer::new(vec![("unit", "hours")].into_iter());
        let err = UptimeConfig::deserialize(typo).unwrap_err().to_string();
        assert!(err.contains("unit"), "{err}");
    }
}
