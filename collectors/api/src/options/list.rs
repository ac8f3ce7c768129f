//! "One string or a list of strings", as Diamond's configuration files
//! wrote lists.
//!
//! Diamond read its options with `configobj`, where `interfaces = eth, bond`
//! is a list of two. carat's options accept a TOML list, and one string
//! for the same, in one of two ways:
//!
//! - [`string_list`]: items of a name-like kind (units, filesystem types,
//!   counter names): one string is split at commas and whitespace
//!   (`"byte, kilobyte"`, `"byte kilobyte"`);
//! - [`one_or_many`]: items that may hold commas or spaces themselves
//!   (regexes): one string is one item.
//!
//! Either way items are trimmed, and empty ones dropped, so `""` is an
//! empty list.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};

/// Deserializes a `Vec<String>` of names, written as a TOML list or as one
/// string of items separated by commas and/or whitespace. Items are
/// trimmed; empty ones are dropped.
///
/// ```
/// use serde::Deserialize;
///
/// #[derive(Debug, Deserialize)]
/// struct Options {
///     #[serde(deserialize_with = "carat_collector::options::string_list")]
///     filesystems: Vec<String>,
/// }
///
/// let o: Options = toml::from_str("filesystems = \"ext4, xfs btrfs\"").unwrap();
/// assert_eq!(o.filesystems, ["ext4", "xfs", "btrfs"]);
/// let o: Options = toml::from_str("filesystems = [\"ext4\", \" xfs \", \"\"]").unwrap();
/// assert_eq!(o.filesystems, ["ext4", "xfs"]);
/// ```
pub fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    d.deserialize_any(ListVisitor {
        split: Split::CommasAndWhitespace,
        expecting: "a list of strings, or one string of items separated by commas or spaces",
    })
}

/// Deserializes a `Vec<String>` written as a TOML list or as one string,
/// which is one item (it may hold commas and spaces: a regex). Items are
/// kept as written except that empty (or blank) ones are dropped, so `""`
/// is an empty list.
///
/// ```
/// use serde::Deserialize;
///
/// #[derive(Debug, Deserialize)]
/// struct Options {
///     #[serde(deserialize_with = "carat_collector::options::one_or_many")]
///     queries: Vec<String>,
/// }
///
/// let o: Options = toml::from_str("queries = \"SELECT 1, 2\"").unwrap();
/// assert_eq!(o.queries, ["SELECT 1, 2"]);
/// let o: Options = toml::from_str("queries = [\"a\", \"\", \"b\"]").unwrap();
/// assert_eq!(o.queries, ["a", "b"]);
/// ```
pub fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    d.deserialize_any(ListVisitor {
        split: Split::Never,
        expecting: "a string or a list of strings",
    })
}

/// As [`one_or_many`], but one string is split at commas (and each item
/// trimmed): Diamond's form for a list of items that may hold spaces but
/// not commas.
pub fn comma_separated<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    d.deserialize_any(ListVisitor {
        split: Split::Commas,
        expecting: "a list of strings, or one string of comma-separated items",
    })
}

/// How one string is made a list.
#[derive(Clone, Copy)]
enum Split {
    /// One item.
    Never,
    /// At commas.
    Commas,
    /// At commas and whitespace.
    CommasAndWhitespace,
}

struct ListVisitor {
    split: Split,
    expecting: &'static str,
}

impl<'de> Visitor<'de> for ListVisitor {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Vec<String>, E> {
        let items: Vec<&str> = match self.split {
            Split::Never => vec![s],
            Split::Commas => s.split(',').map(str::trim).collect(),
            Split::CommasAndWhitespace => {
                s.split(|c: char| c == ',' || c.is_whitespace()).collect()
            }
        };
        Ok(items
            .into_iter()
            .filter(|item| !item.trim().is_empty())
            .map(str::to_owned)
            .collect())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        // The hint comes from outside: do not let it reserve much.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element::<String>()? {
            let item = match self.split {
                Split::Never => item,
                Split::Commas | Split::CommasAndWhitespace => item.trim().to_owned(),
            };
            if !item.trim().is_empty() {
                out.push(item);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde::de::value::{Error, MapDeserializer};
    use serde::Deserialize;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Options {
        #[serde(deserialize_with = "string_list")]
        names: Vec<String>,
        #[serde(deserialize_with = "one_or_many")]
        regexes: Vec<String>,
        #[serde(deserialize_with = "comma_separated")]
        entries: Vec<String>,
    }

    impl Default for Options {
        fn default() -> Self {
            Options {
                names: vec!["byte".into()],
                regexes: Vec::new(),
                entries: Vec::new(),
            }
        }
    }

    fn from_str(key: &'static str, value: &'static str) -> Result<Options, Error> {
        Options::deserialize(MapDeserializer::new(vec![(key, value)].into_iter()))
    }

    fn from_list(key: &'static str, value: Vec<&'static str>) -> Result<Options, Error> {
        Options::deserialize(MapDeserializer::new(vec![(key, value)].into_iter()))
    }

    #[test]
    fn one_string_is_split_by_kind() {
        let o = from_str("names", " ext4,xfs , ,zfs").unwrap();
        assert_eq!(o.names, ["ext4", "xfs", "zfs"]);
        let o = from_str("names", "byte  kilobyte\tMB").unwrap();
        assert_eq!(o.names, ["byte", "kilobyte", "MB"]);
        let o = from_str("names", "").unwrap();
        assert!(o.names.is_empty());
        let o = from_str("regexes", "^/mnt/x{1,3} y").unwrap();
        assert_eq!(o.regexes, ["^/mnt/x{1,3} y"]);
        let o = from_str("regexes", "  ").unwrap();
        assert!(o.regexes.is_empty());
        let o = from_str("entries", "eth, bond ,,veth.*").unwrap();
        assert_eq!(o.entries, ["eth", "bond", "veth.*"]);
    }

    #[test]
    fn lists_are_trimmed_by_kind_and_empty_items_dropped() {
        let o = from_list("names", vec!["ext4", " overlay ", ""]).unwrap();
        assert_eq!(o.names, ["ext4", "overlay"]);
        let o = from_list("regexes", vec!["^/boot", "", " ", "a b "]).unwrap();
        assert_eq!(o.regexes, ["^/boot", "a b "]);
        let o = from_list("entries", vec![" eth ", "a,b"]).unwrap();
        assert_eq!(o.entries, ["eth", "a,b"]);
    }

    #[test]
    fn other_types_are_refused_with_what_is_expected() {
        let e = Options::deserialize(MapDeserializer::<_, Error>::new(
            vec![("names", 5)].into_iter(),
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("a list of strings, or one string of items separated by commas or spaces"),
            "{e}"
        );
        let e = Options::deserialize(MapDeserializer::<_, Error>::new(
            vec![("regexes", 5)].into_iter(),
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("a string or a list of strings"), "{e}");
    }
}
