//! Durations: a number of seconds, or a string with units.
//!
//! Every duration option of carat (the agent's `interval`, an output's
//! `reconnect_max`, a collector's `request_timeout`) accepts both:
//!
//! | written | means |
//! |---|---|
//! | `10`, `0.5`, `2.5e-1` (a TOML number) | seconds |
//! | `"10s"`, `"500ms"`, `"1m"`, `"1h30m"`, `"1h 30m"`, `"2.5s"`, `"10 s"` | as Telegraf (Go's `time.ParseDuration`) and systemd write them |
//! | `"10"`, `"0.5"` (a string holding only a number) | seconds, as a TOML number |
//!
//! Units: `ns` (`nsec`), `us` (`µs`, `μs`, `usec`), `ms` (`msec`), `s`
//! (`sec`, `second`, `seconds`), `m` (`min`, `minute`, `minutes`), `h`
//! (`hr`, `hour`, `hours`), `d` (`day`, `days`). Several parts add up
//! (`"1h30m"`); spaces may separate parts, and a number from its unit.
//!
//! Refused, with a message that names the value and shows the accepted
//! forms: an empty string, a sign (`"-5s"`, `"+5s"`: a duration is never
//! negative), a unit that is not one of the above (`"5 parsecs"`, and on
//! purpose weeks, months and years: `"1M"` is a month to systemd and a
//! minute to a tired operator), a part without a unit in a string of
//! several (`"1m30"`: seconds, or a forgotten unit?), a number without
//! digits (`"."`), exponents in a string (`"1e3s"`), and anything longer
//! than `Duration` holds. A TOML number that is negative, NaN or infinite
//! is refused too. Digits beyond the nanosecond are dropped.
//!
//! A string holding only a number is taken as seconds, not refused: carat
//! reads a TOML number as seconds, Telegraf and systemd read such a string
//! as seconds too, and it is what `interval = "${CARAT_INTERVAL}"` gives
//! (environment variables are substituted into strings).
//!
//! This is a small strict parser rather than a crate: `humantime`, the
//! well-kept one, does not take fractions (`"2.5s"`), and does take months
//! and years (`"1M"`, `"1y"`) that no carat duration has a use for.
//!
//! Where an option has bounds, a [`SecondsRange`] checks them and its error
//! names the range.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

use crate::CollectorError;

/// The forms a duration may be written in, for error messages.
pub const ACCEPTED_FORMS: &str = "a number of seconds (10, 0.5) or a string of numbers \
     with units (\"10s\", \"500ms\", \"1m\", \"1h30m\", \"2.5s\"; units ns, us, ms, s, m, h, d)";

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Parses a duration written as a string: see the [module documentation](self).
///
/// ```
/// use std::time::Duration;
/// use carat_collector::options::duration::parse;
///
/// assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
/// assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
/// assert_eq!(parse("2.5s"), Ok(Duration::from_millis(2500)));
/// assert_eq!(parse("10"), Ok(Duration::from_secs(10)));
/// assert!(parse("-5s").unwrap_err().contains("cannot be negative"));
/// ```
pub fn parse(text: &str) -> Result<Duration, String> {
    parse_parts(text)
        .map_err(|why| format!("{text:?} is not a duration ({why}): expected {ACCEPTED_FORMS}"))
}

/// `secs`, a number of seconds as written in the configuration, as a
/// duration: finite, not negative, and not beyond what `Duration` holds.
///
/// ```
/// use std::time::Duration;
/// use carat_collector::options::duration::from_secs;
///
/// assert_eq!(from_secs(0.25), Ok(Duration::from_millis(250)));
/// assert!(from_secs(-1.0).is_err());
/// assert!(from_secs(f64::NAN).is_err());
/// ```
pub fn from_secs(secs: f64) -> Result<Duration, String> {
    let why = if secs.is_nan() {
        "it is not a number"
    } else if secs < 0.0 {
        "a duration cannot be negative"
    } else {
        match Duration::try_from_secs_f64(secs) {
            Ok(d) => return Ok(d),
            Err(_) => "it is too long",
        }
    };
    Err(format!("{secs} is not a valid number of seconds ({why})"))
}

/// Deserializes a duration written as a number of seconds or as a string
/// with units, with no bounds other than not being negative. For a
/// `Duration` option: `#[serde(deserialize_with = "carat_collector::options::duration::deserialize")]`;
/// check its bounds with a [`SecondsRange`] in the collector's `new`.
///
/// ```
/// use std::time::Duration;
/// use serde::Deserialize;
///
/// #[derive(Debug, Deserialize)]
/// struct Options {
///     #[serde(deserialize_with = "carat_collector::options::duration::deserialize")]
///     timeout: Duration,
/// }
///
/// let o: Options = toml::from_str("timeout = \"1m30s\"").unwrap();
/// assert_eq!(o.timeout, Duration::from_secs(90));
/// let o: Options = toml::from_str("timeout = 0.5").unwrap();
/// assert_eq!(o.timeout, Duration::from_millis(500));
/// let e = toml::from_str::<Options>("timeout = \"5 parsecs\"").unwrap_err();
/// assert!(e.message().contains("unknown unit \"parsecs\""), "{e}");
/// ```
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    match d.deserialize_any(Written)? {
        WrittenDuration::Seconds(secs) => from_secs(secs).map_err(de::Error::custom),
        WrittenDuration::Text(text) => parse(&text).map_err(de::Error::custom),
    }
}

/// As [`deserialize`], for an `Option<Duration>` option (absent: `None`,
/// with `#[serde(default)]`).
pub fn deserialize_optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    deserialize(d).map(Some)
}

/// The allowed range of a duration option, in seconds: from `min` (included,
/// or excluded when `min_exclusive`) to `max` (included).
///
/// Every duration is bounded: a typo such as `interval = 1e-9` would
/// otherwise spin the host's cores running collectors tens of thousands of
/// times a second, and `interval = 36000000` would silently never run.
///
/// ```
/// use std::time::Duration;
/// use carat_collector::options::SecondsRange;
///
/// const TIMEOUT: SecondsRange = SecondsRange::above(0.0, 3600.0);
/// assert_eq!(TIMEOUT.check_duration(Duration::from_secs(5)), Ok(Duration::from_secs(5)));
/// assert_eq!(
///     TIMEOUT.check_duration(Duration::ZERO).unwrap_err(),
///     "0 is not a valid number of seconds here: expected more than 0 and at most 3600 seconds",
/// );
/// let e = TIMEOUT.check_option("request_timeout", Duration::from_secs(7200)).unwrap_err();
/// assert_eq!(e.invalid_option(), Some("request_timeout"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SecondsRange {
    /// The shortest duration accepted (or the bound above which durations
    /// are accepted, with `min_exclusive`).
    pub min: f64,
    /// The longest duration accepted.
    pub max: f64,
    /// `min` itself is refused: "more than `min`".
    pub min_exclusive: bool,
}

impl SecondsRange {
    /// From `min` to `max` seconds, both included.
    pub const fn new(min: f64, max: f64) -> SecondsRange {
        SecondsRange {
            min,
            max,
            min_exclusive: false,
        }
    }

    /// More than `min` and at most `max` seconds (a timeout: `above(0.0, …)`).
    pub const fn above(min: f64, max: f64) -> SecondsRange {
        SecondsRange {
            min,
            max,
            min_exclusive: true,
        }
    }

    /// True when `secs` is in the range (never for NaN).
    pub fn contains_secs(&self, secs: f64) -> bool {
        let above_min = if self.min_exclusive {
            secs > self.min
        } else {
            secs >= self.min
        };
        above_min && secs <= self.max
    }

    /// `secs` as a duration, or why it is not in this range:
    /// `"0.000000001 is not a valid number of seconds here: expected 0.01 to 86400 seconds"`.
    pub fn check(&self, secs: f64) -> Result<Duration, String> {
        if secs.is_finite() && self.contains_secs(secs) {
            if let Ok(d) = Duration::try_from_secs_f64(secs) {
                return Ok(d);
            }
        }
        Err(format!(
            "{secs} is not a valid number of seconds here: {}",
            self.expected()
        ))
    }

    /// `d` itself, or why it is not in this range (as [`check`](Self::check)).
    pub fn check_duration(&self, d: Duration) -> Result<Duration, String> {
        self.check(d.as_secs_f64()).map(|_| d)
    }

    /// As [`check_duration`](Self::check_duration), as the error a
    /// collector's `new` returns for its option `option`, so the agent
    /// reports it at that option's line.
    pub fn check_option(&self, option: &str, d: Duration) -> Result<Duration, CollectorError> {
        self.check_duration(d)
            .map_err(|message| CollectorError::option(option, message))
    }

    /// `expected 0.01 to 86400 seconds`, or `expected more than 0 and at
    /// most 3600 seconds`.
    pub fn expected(&self) -> String {
        if self.min_exclusive {
            format!(
                "expected more than {} and at most {} seconds",
                self.min, self.max
            )
        } else {
            format!("expected {} to {} seconds", self.min, self.max)
        }
    }

    /// Deserializes a duration (a number of seconds or a string with units)
    /// in this range; the error names the range. For options whose bounds
    /// are checked as they are read, through a function of the option:
    ///
    /// ```
    /// use std::time::Duration;
    /// use carat_collector::options::SecondsRange;
    /// use serde::{Deserialize, Deserializer};
    ///
    /// const INTERVAL: SecondsRange = SecondsRange::new(0.01, 86_400.0);
    ///
    /// fn interval<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    ///     INTERVAL.deserialize(d)
    /// }
    ///
    /// #[derive(Debug, Deserialize)]
    /// struct Options {
    ///     #[serde(deserialize_with = "interval")]
    ///     interval: Duration,
    /// }
    ///
    /// let o: Options = toml::from_str("interval = \"10s\"").unwrap();
    /// assert_eq!(o.interval, Duration::from_secs(10));
    /// let e = toml::from_str::<Options>("interval = \"1ms\"").unwrap_err();
    /// assert!(e.message().starts_with("\"1ms\" (0.001 s) is not a valid duration here: expected 0.01 to 86400 seconds"), "{e}");
    /// ```
    pub fn deserialize<'de, D: Deserializer<'de>>(&self, d: D) -> Result<Duration, D::Error> {
        match d.deserialize_any(Written)? {
            WrittenDuration::Seconds(secs) => self.check(secs).map_err(de::Error::custom),
            WrittenDuration::Text(text) => {
                let duration = parse(&text).map_err(de::Error::custom)?;
                if self.contains_secs(duration.as_secs_f64()) {
                    Ok(duration)
                } else {
                    Err(de::Error::custom(format!(
                        "{text:?} ({} s) is not a valid duration here: {}",
                        duration.as_secs_f64(),
                        self.expected()
                    )))
                }
            }
        }
    }
}

/// A duration as written: a number, or a string.
enum WrittenDuration {
    Seconds(f64),
    Text(String),
}

struct Written;

impl Visitor<'_> for Written {
    type Value = WrittenDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(ACCEPTED_FORMS)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<WrittenDuration, E> {
        Ok(WrittenDuration::Seconds(v as f64))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<WrittenDuration, E> {
        Ok(WrittenDuration::Seconds(v as f64))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<WrittenDuration, E> {
        Ok(WrittenDuration::Seconds(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<WrittenDuration, E> {
        Ok(WrittenDuration::Text(v.to_owned()))
    }
}

/// Nanoseconds per unit, for each accepted unit name.
fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" | "nsec" => 1,
        "us" | "µs" | "μs" | "usec" => 1_000,
        "ms" | "msec" => 1_000_000,
        "s" | "sec" | "second" | "seconds" => NANOS_PER_SEC,
        "m" | "min" | "minute" | "minutes" => 60 * NANOS_PER_SEC,
        "h" | "hr" | "hour" | "hours" => 3_600 * NANOS_PER_SEC,
        "d" | "day" | "days" => 86_400 * NANOS_PER_SEC,
        _ => return None,
    })
}

/// The duration of `text`, or why it is not one (without the value).
fn parse_parts(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    match s.chars().next() {
        None => return Err("it is empty".into()),
        Some('-') => return Err("a duration cannot be negative".into()),
        Some('+') => return Err("a sign is not accepted".into()),
        Some(_) => {}
    }
    let is_number = |t: &str| t.chars().all(|c| c.is_ascii_digit() || c == '.');
    if is_number(s) {
        return nanos_to_duration(decimal(s, NANOS_PER_SEC)?);
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        rest = rest[number_len..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        if number.is_empty() {
            return Err(match rest.chars().next() {
                Some(c) if unit.is_empty() => format!("unexpected {c:?}"),
                _ => format!("no number before {unit:?}"),
            });
        }
        if unit.is_empty() {
            return Err(match rest.chars().next() {
                None => format!("{number:?} has no unit"),
                Some(c) => format!("unexpected {c:?} after {number:?}"),
            });
        }
        let per_unit = unit_nanos(unit).ok_or_else(|| format!("unknown unit {unit:?}"))?;
        total = total
            .checked_add(decimal(number, per_unit)?)
            .ok_or("it is too long")?;
        rest = rest[unit_len..].trim_start();
    }
    nanos_to_duration(total)
}

/// `number` (digits with at most one `.`) times `per_unit` nanoseconds.
/// Digits below the nanosecond are dropped.
fn decimal(number: &str, per_unit: u128) -> Result<u128, String> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if fraction.contains('.') || (whole.is_empty() && fraction.is_empty()) {
        return Err(format!("{number:?} is not a number"));
    }
    let mut nanos: u128 = 0;
    for digit in whole.bytes() {
        nanos = nanos
            .checked_mul(10)
            .and_then(|n| n.checked_add(u128::from(digit - b'0')))
            .ok_or("it is too long")?;
    }
    nanos = nanos.checked_mul(per_unit).ok_or("it is too long")?;
    // 20 digits of fraction times the largest unit stay far below u128::MAX.
    let fraction = &fraction[..fraction.len().min(20)];
    let mut numerator: u128 = 0;
    let mut denominator: u128 = 1;
    for digit in fraction.bytes() {
        numerator = numerator * 10 + u128::from(digit - b'0');
        denominator *= 10;
    }
    nanos
        .checked_add(numerator * per_unit / denominator)
        .ok_or_else(|| "it is too long".to_owned())
}

fn nanos_to_duration(nanos: u128) -> Result<Duration, String> {
    let secs = u64::try_from(nanos / NANOS_PER_SEC).map_err(|_| "it is too long".to_owned())?;
    // The remainder is below 10⁹.
    Ok(Duration::new(secs, (nanos % NANOS_PER_SEC) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde::de::value::{Error, F64Deserializer, I64Deserializer, StrDeserializer};
    use serde::de::IntoDeserializer;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn telegraf_and_systemd_forms() {
        for (text, expected) in [
            ("10s", Duration::from_secs(10)),
            ("500ms", ms(500)),
            ("1m", Duration::from_secs(60)),
            ("1h30m", Duration::from_secs(5_400)),
            ("1h 30m", Duration::from_secs(5_400)),
            ("2h45m10s", Duration::from_secs(9_910)),
            ("2.5s", ms(2_500)),
            (".5s", ms(500)),
            ("5.s", Duration::from_secs(5)),
            ("1.5h", Duration::from_secs(5_400)),
            ("10 s", Duration::from_secs(10)),
            ("  10s  ", Duration::from_secs(10)),
            ("1d", Duration::from_secs(86_400)),
            ("2 days", Duration::from_secs(172_800)),
            ("5min", Duration::from_secs(300)),
            ("3 hours", Duration::from_secs(10_800)),
            ("1 second", Duration::from_secs(1)),
            ("30sec", Duration::from_secs(30)),
            ("250msec", ms(250)),
            ("1500us", Duration::from_micros(1_500)),
            ("1500µs", Duration::from_micros(1_500)),
            ("1500μs", Duration::from_micros(1_500)),
            ("7usec", Duration::from_micros(7)),
            ("42ns", Duration::from_nanos(42)),
            ("42nsec", Duration::from_nanos(42)),
            ("1m1m", Duration::from_secs(120)),
            ("0s", Duration::ZERO),
            ("0", Duration::ZERO),
            ("10", Duration::from_secs(10)),
            ("0.25", ms(250)),
            ("0.0000000015s", Duration::from_nanos(1)),
            (
                "0.123456789123456789123456789s",
                Duration::from_nanos(123_456_789),
            ),
        ] {
            assert_eq!(parse(text), Ok(expected), "{text:?}");
        }
    }

    #[test]
    fn refused_forms_say_why_and_what_is_accepted() {
        for (text, why) in [
            ("", "it is empty"),
            ("   ", "it is empty"),
            ("-5s", "a duration cannot be negative"),
            ("-5", "a duration cannot be negative"),
            ("+5s", "a sign is not accepted"),
            ("5 parsecs", "unknown unit \"parsecs\""),
            ("1M", "unknown unit \"M\""),
            ("1w", "unknown unit \"w\""),
            ("1y", "unknown unit \"y\""),
            ("10S", "unknown unit \"S\""),
            ("1m30", "\"30\" has no unit"),
            ("s", "no number before \"s\""),
            ("1h m", "no number before \"m\""),
            (".", "\".\" is not a number"),
            (".s", "\".\" is not a number"),
            ("1.2.3s", "\"1.2.3\" is not a number"),
            ("1e3s", "unknown unit \"e\""),
            ("1e3", "unknown unit \"e\""),
            ("10s!", "unexpected '!'"),
            ("10s, 5s", "unexpected ','"),
            ("5_000ms", "unexpected '_' after \"5\""),
            ("nan", "no number before \"nan\""),
            ("inf", "no number before \"inf\""),
            (
                "99999999999999999999999999999999999999999s",
                "it is too long",
            ),
            ("18446744073709551616s", "it is too long"),
            ("300000000000000000000d", "it is too long"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(
                e,
                format!("{text:?} is not a duration ({why}): expected {ACCEPTED_FORMS}"),
                "{text:?}"
            );
        }
        assert!(ACCEPTED_FORMS.contains("\"10s\", \"500ms\", \"1m\""));
    }

    #[test]
    fn numbers_of_seconds() {
        assert_eq!(from_secs(10.0), Ok(Duration::from_secs(10)));
        assert_eq!(from_secs(0.0), Ok(Duration::ZERO));
        assert_eq!(
            from_secs(-1.0).unwrap_err(),
            "-1 is not a valid number of seconds (a duration cannot be negative)"
        );
        assert_eq!(
            from_secs(f64::NAN).unwrap_err(),
            "NaN is not a valid number of seconds (it is not a number)"
        );
        assert_eq!(
            from_secs(f64::INFINITY).unwrap_err(),
            "inf is not a valid number of seconds (it is too long)"
        );
        assert_eq!(
            from_secs(1e30).unwrap_err(),
            "1000000000000000000000000000000 is not a valid number of seconds (it is too long)"
        );
    }

    #[test]
    fn deserialized_from_numbers_and_strings() {
        let text: StrDeserializer<'_, Error> = "1m30s".into_deserializer();
        assert_eq!(deserialize(text), Ok(Duration::from_secs(90)));
        let int: I64Deserializer<Error> = 5i64.into_deserializer();
        assert_eq!(deserialize(int), Ok(Duration::from_secs(5)));
        let float: F64Deserializer<Error> = 0.5f64.into_deserializer();
        assert_eq!(deserialize_optional(float), Ok(Some(ms(500))));
        let negative: I64Deserializer<Error> = (-5i64).into_deserializer();
        assert!(deserialize(negative)
            .unwrap_err()
            .to_string()
            .contains("cannot be negative"));
        let bad: StrDeserializer<'_, Error> = "often".into_deserializer();
        let e = deserialize(bad).unwrap_err().to_string();
        assert!(
            e.starts_with("\"often\" is not a duration (no number before \"often\")"),
            "{e}"
        );
        let wrong_type: serde::de::value::BoolDeserializer<Error> = true.into_deserializer();
        let e = deserialize(wrong_type).unwrap_err().to_string();
        assert!(e.contains(ACCEPTED_FORMS), "{e}");
    }

    #[test]
    fn ranges_check_numbers_and_strings_and_name_their_bounds() {
        let range = SecondsRange::new(0.01, 86_400.0);
        assert_eq!(range.check(0.01), Ok(ms(10)));
        assert_eq!(range.check(86_400.0), Ok(Duration::from_secs(86_400)));
        assert_eq!(
            range.check(1e-9).unwrap_err(),
            "0.000000001 is not a valid number of seconds here: expected 0.01 to 86400 seconds"
        );
        for bad in [0.009, 86_400.001, f64::NAN, f64::INFINITY, -1.0] {
            assert!(range.check(bad).is_err(), "{bad}");
        }
        let text: StrDeserializer<'_, Error> = "10s".into_deserializer();
        assert_eq!(range.deserialize(text), Ok(Duration::from_secs(10)));
        let text: StrDeserializer<'_, Error> = "1ms".into_deserializer();
        assert_eq!(
            range.deserialize(text).unwrap_err().to_string(),
            "\"1ms\" (0.001 s) is not a valid duration here: expected 0.01 to 86400 seconds"
        );
        let text: StrDeserializer<'_, Error> = "2d".into_deserializer();
        assert_eq!(
            range.deserialize(text).unwrap_err().to_string(),
            "\"2d\" (172800 s) is not a valid duration here: expected 0.01 to 86400 seconds"
        );
        let number: F64Deserializer<Error> = 0.001f64.into_deserializer();
        assert_eq!(
            range.deserialize(number).unwrap_err().to_string(),
            "0.001 is not a valid number of seconds here: expected 0.01 to 86400 seconds"
        );
        let text: StrDeserializer<'_, Error> = "soon".into_deserializer();
        assert!(range
            .deserialize(text)
            .unwrap_err()
            .to_string()
            .contains(ACCEPTED_FORMS));

        let timeout = SecondsRange::above(0.0, 3_600.0);
        assert!(timeout.check(0.0).is_err());
        assert_eq!(timeout.check(1e-9), Ok(Duration::from_nanos(1)));
        assert_eq!(timeout.check(3_600.0), Ok(Duration::from_secs(3_600)));
        assert_eq!(
            timeout.check_duration(Duration::from_secs(3_601)).unwrap_err(),
            "3601 is not a valid number of seconds here: expected more than 0 and at most 3600 seconds"
        );
        let e = timeout
            .check_option("statvfs_timeout", Duration::ZERO)
            .unwrap_err();
        assert_eq!(e.invalid_option(), Some("statvfs_timeout"));
        assert_eq!(
            e.to_string(),
            "configuration: option `statvfs_timeout`: 0 is not a valid number of seconds here: \
             expected more than 0 and at most 3600 seconds"
        );
    }
}
