//! Byte units: the names of Diamond's binary convertor
//! (`diamond.convertor.binary`), which `byte_unit` options accept.
//!
//! `bit`, `kilobit` … `yottabit` and `byte`, `kilobyte` … `yottabyte`,
//! with their short forms (`b`, `kbit`, `Kibit`, `B`, `kB`, `KiB`, `MB`,
//! `MiB`, `Mbyte`, `GB`, `Gbit`, …). Multiples are powers of 1024, as in
//! Diamond, whatever the name (`MB` is 1024² bytes). Names are
//! case-sensitive (`mb` is not a unit: millibit or megabyte?).
//!
//! A metric published in a unit carries the unit's name as written
//! (`reads_kilobyte`, `root.MB_used`), so [`ByteUnit::name`] is the
//! name the configuration used.

use std::fmt;
use std::ops::Deref;

use serde::de::{Deserialize, Deserializer, Error as _};

use super::list::string_list;

/// Every unit: its names (the long one first) and its size in bits.
const UNITS: [(&[&str], f64); 18] = [
    (&["bit", "b"], 1.0),
    (&["kilobit", "kbit", "Kibit"], K),
    (&["megabit", "Mbit", "Mibit"], K * K),
    (&["gigabit", "Gbit", "Gibit"], K * K * K),
    (&["terabit", "Tbit", "Tibit"], K * K * K * K),
    (&["petabit", "Pbit", "Pibit"], K * K * K * K * K),
    (&["exabit", "Ebit", "Eibit"], K * K * K * K * K * K),
    (&["zettabit", "Zbit", "Zibit"], K * K * K * K * K * K * K),
    (
        &["yottabit", "Ybit", "Yibit"],
        K * K * K * K * K * K * K * K,
    ),
    (&["byte", "B"], 8.0),
    (&["kilobyte", "kB", "KiB"], 8.0 * K),
    (&["megabyte", "MB", "MiB", "Mbyte"], 8.0 * K * K),
    (&["gigabyte", "GB", "GiB"], 8.0 * K * K * K),
    (&["terabyte", "TB", "TiB"], 8.0 * K * K * K * K),
    (&["petabyte", "PB", "PiB"], 8.0 * K * K * K * K * K),
    (&["exabyte", "EB", "EiB"], 8.0 * K * K * K * K * K * K),
    (&["zettabyte", "ZB", "ZiB"], 8.0 * K * K * K * K * K * K * K),
    (
        &["yottabyte", "YB", "YiB"],
        8.0 * K * K * K * K * K * K * K * K,
    ),
];
const K: f64 = 1024.0;

/// One of Diamond's byte units, by the name it was given.
///
/// ```
/// use carat_collector::options::ByteUnit;
///
/// let mb = ByteUnit::parse("MB").unwrap();
/// assert_eq!(mb.name(), "MB");
/// assert_eq!(mb.from_bytes(3.0 * 1024.0 * 1024.0), 3.0);
/// assert_eq!(ByteUnit::BIT.from_bytes(2.0), 16.0);
/// assert!(ByteUnit::parse("parsec").unwrap_err().starts_with("\"parsec\" is not one of Diamond's units"));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct ByteUnit {
    name: &'static str,
    bits: f64,
}

impl ByteUnit {
    /// `bit`.
    pub const BIT: ByteUnit = ByteUnit {
        name: "bit",
        bits: 1.0,
    };

    /// `byte`.
    pub const BYTE: ByteUnit = ByteUnit {
        name: "byte",
        bits: 8.0,
    };

    /// The unit called `name`, or why there is none (the message lists
    /// the names).
    pub fn parse(name: &str) -> Result<ByteUnit, String> {
        UNITS
            .iter()
            .find_map(|(names, bits)| {
                names.iter().find(|n| **n == name).map(|n| ByteUnit {
                    name: n,
                    bits: *bits,
                })
            })
            .ok_or_else(|| {
                format!(
                    "{name:?} is not one of Diamond's units: bit, kilobit, megabit, gigabit, \
                     terabit, petabit, exabit, zettabit, yottabit, byte, kilobyte, megabyte, \
                     gigabyte, terabyte, petabyte, exabyte, zettabyte, yottabyte, or a short \
                     form (b, kbit, Kibit, Mbit, …, B, kB, KiB, MB, MiB, Mbyte, GB, …)"
                )
            })
    }

    /// Every name a unit may be given, long names first.
    pub fn names() -> impl Iterator<Item = &'static str> {
        let long = UNITS.iter().map(|(names, _)| names[0]);
        let short = UNITS
            .iter()
            .flat_map(|(names, _)| names[1..].iter().copied());
        long.chain(short)
    }

    /// The name, as the configuration wrote it.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The size of one unit, in bits.
    pub fn bits(&self) -> f64 {
        self.bits
    }

    /// `bytes` in this unit.
    pub fn from_bytes(&self, bytes: f64) -> f64 {
        bytes * 8.0 / self.bits
    }
}

/// Equal when named alike: `MB` and `megabyte` are the same size but give
/// different metric names.
impl PartialEq for ByteUnit {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for ByteUnit {}

impl fmt::Display for ByteUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl<'de> Deserialize<'de> for ByteUnit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        ByteUnit::parse(&name).map_err(D::Error::custom)
    }
}

/// A `byte_unit` option of several units: a list, or one string of names
/// separated by commas or spaces (`"byte, kilobyte"`, `"byte kilobyte"`).
/// A unit named twice is kept once (it would publish every metric twice).
///
/// ```
/// use carat_collector::options::ByteUnits;
/// use serde::Deserialize;
///
/// #[derive(Debug, Deserialize)]
/// struct Options {
///     byte_unit: ByteUnits,
/// }
///
/// let o: Options = toml::from_str("byte_unit = \"byte, MiB byte\"").unwrap();
/// let names: Vec<_> = o.byte_unit.iter().map(|u| u.name()).collect();
/// assert_eq!(names, ["byte", "MiB"]);
/// let e = toml::from_str::<Options>("byte_unit = [\"byte\", \"parsec\"]").unwrap_err();
/// assert!(e.message().starts_with("\"parsec\" is not one of Diamond's units"), "{e}");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ByteUnits(Vec<ByteUnit>);

impl ByteUnits {
    /// The units named by `names`, duplicates dropped; the error names the
    /// first that is not a unit.
    pub fn parse<I, S>(names: I) -> Result<ByteUnits, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut units: Vec<ByteUnit> = Vec::new();
        for name in names {
            let unit = ByteUnit::parse(name.as_ref())?;
            if !units.contains(&unit) {
                units.push(unit);
            }
        }
        Ok(ByteUnits(units))
    }
}

impl Deref for ByteUnits {
    type Target = [ByteUnit];

    fn deref(&self) -> &[ByteUnit] {
        &self.0
    }
}

impl From<ByteUnit> for ByteUnits {
    fn from(unit: ByteUnit) -> Self {
        ByteUnits(vec![unit])
    }
}

impl<'de> Deserialize<'de> for ByteUnits {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = string_list(d)?;
        ByteUnits::parse(names).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_diamond_unit_name() {
        let k = 1024f64;
        // (name, what one byte is in it)
        for (unit, per_byte) in [
            ("bit", 8.0),
            ("b", 8.0),
            ("kilobit", 8.0 / k),
            ("kbit", 8.0 / k),
            ("Kibit", 8.0 / k),
            ("megabit", 8.0 / k.powi(2)),
            ("Mbit", 8.0 / k.powi(2)),
            ("gigabit", 8.0 / k.powi(3)),
            ("Gibit", 8.0 / k.powi(3)),
            ("terabit", 8.0 / k.powi(4)),
            ("petabit", 8.0 / k.powi(5)),
            ("exabit", 8.0 / k.powi(6)),
            ("zettabit", 8.0 / k.powi(7)),
            ("yottabit", 8.0 / k.powi(8)),
            ("Yibit", 8.0 / k.powi(8)),
            ("byte", 1.0),
            ("B", 1.0),
            ("kilobyte", 1.0 / k),
            ("kB", 1.0 / k),
            ("KiB", 1.0 / k),
            ("megabyte", 1.0 / k.powi(2)),
            ("MB", 1.0 / k.powi(2)),
            ("MiB", 1.0 / k.powi(2)),
            ("Mbyte", 1.0 / k.powi(2)),
            ("gigabyte", 1.0 / k.powi(3)),
            ("GiB", 1.0 / k.powi(3)),
            ("terabyte", 1.0 / k.powi(4)),
            ("TB", 1.0 / k.powi(4)),
            ("petabyte", 1.0 / k.powi(5)),
            ("exabyte", 1.0 / k.powi(6)),
            ("zettabyte", 1.0 / k.powi(7)),
            ("yottabyte", 1.0 / k.powi(8)),
            ("YiB", 1.0 / k.powi(8)),
        ] {
            let u = ByteUnit::parse(unit).unwrap();
            assert_eq!(u.name(), unit);
            assert_eq!(u.from_bytes(1.0), per_byte, "{unit}");
        }
        for bad in [
            "", "bytes", "Byte", "kb", "mb", "kibibyte", "parsec", " byte",
        ] {
            let e = ByteUnit::parse(bad).unwrap_err();
            assert!(
                e.starts_with(&format!(
                    "{bad:?} is not one of Diamond's units: bit, kilobit"
                )),
                "{e}"
            );
        }
        assert_eq!(ByteUnit::names().count(), 18 + 35);
        assert_eq!(ByteUnit::names().next(), Some("bit"));
        assert_eq!(ByteUnit::BYTE, ByteUnit::parse("byte").unwrap());
        assert_eq!(ByteUnit::BIT.to_string(), "bit");
    }

    #[test]
    fn lists_of_units() {
        let units = ByteUnits::parse(["kilobyte", "bit", "MiB", "bit"]).unwrap();
        let names: Vec<_> = units.iter().map(ByteUnit::name).collect();
        assert_eq!(names, ["kilobyte", "bit", "MiB"]);
        assert_eq!(ByteUnits::from(ByteUnit::BYTE).len(), 1);
        assert!(ByteUnits::parse(["byte", "furlong"])
            .unwrap_err()
            .starts_with("\"furlong\""));
        assert!(ByteUnits::parse(Vec::<String>::new()).unwrap().is_empty());
    }
}
