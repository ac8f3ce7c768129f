//! Regex options: lists of regexes, compiled once, when the option is read,
//! so a regex that does not compile is an error at the option's line of
//! the configuration, and include/exclude pairs of them.
//!
//! Where a regex must match is part of the option's meaning, so it is part
//! of its type: [`Patterns<Search>`] (anywhere in the text, Python's
//! `re.search`, Diamond's `exclude_filters`), [`Patterns<AtStart>`] (at the
//! start, Python's `re.match`, Diamond's `metrics_whitelist` and device
//! filters), [`Patterns<Whole>`] (the whole text).
//!
//! Regexes are Rust [`regex`] syntax, matched against bytes, so a text that
//! is not UTF-8 (a process's command line) is matched too: its other bytes
//! as usual, a byte that is not UTF-8 by no `.` or class (as a character
//! it is not).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use regex::bytes::RegexSet;
use serde::de::{Deserialize, Deserializer, Error as _};

use super::list::{comma_separated, one_or_many};

/// Where the regexes of a [`Patterns`] must match. Implemented by
/// [`Search`], [`AtStart`] and [`Whole`] only.
pub trait Anchoring: sealed::Sealed {
    /// `pattern` as compiled for this anchoring.
    fn anchor(pattern: &str) -> Cow<'_, str>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Search {}
    impl Sealed for super::AtStart {}
    impl Sealed for super::Whole {}
}

/// A regex matches anywhere in the text (Python's `re.search`).
#[derive(Clone, Copy, Debug)]
pub enum Search {}

/// A regex matches at the start of the text (Python's `re.match`, which
/// Diamond's filters use): `total` matches `total.user`, not `cpu0.total`.
#[derive(Clone, Copy, Debug)]
pub enum AtStart {}

/// A regex matches the whole text: `eth0` matches `eth0`, not `eth0.100`.
#[derive(Clone, Copy, Debug)]
pub enum Whole {}

impl Anchoring for Search {
    fn anchor(pattern: &str) -> Cow<'_, str> {
        Cow::Borrowed(pattern)
    }
}

impl Anchoring for AtStart {
    fn anchor(pattern: &str) -> Cow<'_, str> {
        // A group of its own, so that a `|` in the pattern stays inside it.
        Cow::Owned(format!("^(?:{pattern})"))
    }
}

impl Anchoring for Whole {
    fn anchor(pattern: &str) -> Cow<'_, str> {
        Cow::Owned(format!("^(?:{pattern})$"))
    }
}

/// A list of regexes, compiled when the option is read. Written in the
/// configuration as one regex (a string, which is one regex even if it holds
/// commas) or as a list of them; empty strings are dropped, so `""` is no
/// regex at all. A regex that does not compile is an error naming it:
/// `invalid regex "(unclosed": unclosed group`.
///
/// ```
/// use carat_collector::options::{AtStart, Patterns, Search};
/// use serde::Deserialize;
///
/// #[derive(Debug, Deserialize)]
/// struct Options {
///     exclude: Patterns,
///     devices: Patterns<AtStart>,
/// }
///
/// let o: Options = toml::from_str("exclude = [\"^/mnt\", \"home\"]\ndevices = \"sd[a-z]$|nvme\"").unwrap();
/// assert!(o.exclude.is_match("/srv/home"));
/// assert!(!o.exclude.is_match("/srv"));
/// assert!(o.devices.is_match("nvme0n1"));
/// assert!(!o.devices.is_match("dm-nvme"));
/// assert_eq!(o.devices.sources(), ["sd[a-z]$|nvme"]);
///
/// let e = toml::from_str::<Options>("exclude = \"(\"\ndevices = []").unwrap_err();
/// assert_eq!(e.span(), Some(10..13));
/// assert!(e.message().starts_with("invalid regex \"(\": unclosed group"), "{e}");
/// ```
pub struct Patterns<A = Search> {
    /// The regexes as written.
    sources: Vec<String>,
    /// All of them, anchored as `A` says.
    set: RegexSet,
    anchoring: PhantomData<fn() -> A>,
}

impl<A: Anchoring> Patterns<A> {
    /// Compiles `patterns`; the error names the first that does not compile.
    ///
    /// ```
    /// use carat_collector::options::{Patterns, Whole};
    ///
    /// let p = Patterns::<Whole>::new(["eth[0-9]+", "lo"]).unwrap();
    /// assert!(p.is_match("eth0") && !p.is_match("eth0.100"));
    /// assert_eq!(
    ///     Patterns::<Whole>::new(["ok", "[z-a]"]).err().unwrap(),
    ///     "invalid regex \"[z-a]\": invalid character class range, the start must be <= the end",
    /// );
    /// ```
    pub fn new<I, S>(patterns: I) -> Result<Self, String>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let sources: Vec<String> = patterns.into_iter().map(Into::into).collect();
        // Each regex is parsed alone first: anchoring wraps it in a group,
        // and a stray `)(` in it would otherwise close that group and
        // compile into something else than what was written.
        for p in &sources {
            if let Err(e) = regex_syntax::ast::parse::Parser::new().parse(p) {
                return Err(format!("invalid regex {p:?}: {}", e.kind()));
            }
        }
        let anchored: Vec<Cow<'_, str>> = sources.iter().map(|p| A::anchor(p)).collect();
        match RegexSet::new(&anchored) {
            Ok(set) => Ok(Patterns {
                sources,
                set,
                anchoring: PhantomData,
            }),
            Err(e) => Err(Self::culprit(&sources).unwrap_or_else(|| describe("", &e))),
        }
    }

    /// The error of the first of `sources` that does not compile alone (one
    /// that parses but is refused later: an unknown Unicode class, a regex
    /// too large).
    fn culprit(sources: &[String]) -> Option<String> {
        sources.iter().find_map(|p| {
            regex::bytes::Regex::new(&A::anchor(p))
                .err()
                .map(|e| describe(p, &e))
        })
    }

    /// The same regexes, anchored as `B` says (compiled again).
    ///
    /// ```
    /// use carat_collector::options::{AtStart, Patterns, Whole};
    ///
    /// let prefix = Patterns::<AtStart>::new(["eth"]).unwrap();
    /// assert!(prefix.is_match("eth0"));
    /// let whole: Patterns<Whole> = prefix.anchored().unwrap();
    /// assert!(!whole.is_match("eth0") && whole.is_match("eth"));
    /// ```
    pub fn anchored<B: Anchoring>(&self) -> Result<Patterns<B>, String> {
        Patterns::new(self.sources.iter().cloned())
    }

    /// Deserializes patterns written as a TOML list or as one string of
    /// comma-separated regexes (Diamond's form for `interfaces = eth, bond`),
    /// for `#[serde(deserialize_with = "Patterns::comma_separated")]`.
    pub fn comma_separated<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let sources = comma_separated(d)?;
        Patterns::new(sources).map_err(D::Error::custom)
    }

    /// True when one of the regexes matches `text`.
    pub fn is_match(&self, text: &str) -> bool {
        self.set.is_match(text.as_bytes())
    }

    /// True when one of the regexes matches `bytes`.
    pub fn is_match_bytes(&self, bytes: &[u8]) -> bool {
        self.set.is_match(bytes)
    }
}

impl<A> Patterns<A> {
    /// The regexes as written, without anchoring.
    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    /// True when there is no regex (nothing matches).
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// How many regexes there are.
    pub fn len(&self) -> usize {
        self.sources.len()
    }
}

/// `invalid regex "<pattern>": <why>`, on one line.
fn describe(pattern: &str, e: &regex::Error) -> String {
    let why = match e {
        // The syntax error is several lines (the pattern, a caret under the
        // fault); its last line says what is wrong.
        regex::Error::Syntax(text) => {
            let last = text.lines().last().unwrap_or_default();
            last.strip_prefix("error: ").unwrap_or(last).to_owned()
        }
        other => other.to_string(),
    };
    format!("invalid regex {pattern:?}: {why}")
}

impl<A> Default for Patterns<A> {
    fn default() -> Self {
        Patterns {
            sources: Vec::new(),
            set: RegexSet::empty(),
            anchoring: PhantomData,
        }
    }
}

impl<A> Clone for Patterns<A> {
    fn clone(&self) -> Self {
        Patterns {
            sources: self.sources.clone(),
            set: self.set.clone(),
            anchoring: PhantomData,
        }
    }
}

/// Equal when the same regexes are written, in the same order.
impl<A> PartialEq for Patterns<A> {
    fn eq(&self, other: &Self) -> bool {
        self.sources == other.sources
    }
}

impl<A> Eq for Patterns<A> {}

/// The regexes as written.
impl<A> fmt::Debug for Patterns<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.sources).finish()
    }
}

impl<'de, A: Anchoring> Deserialize<'de> for Patterns<A> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let sources = one_or_many(d)?;
        Patterns::new(sources).map_err(D::Error::custom)
    }
}

/// An include/exclude pair: a text passes when it matches one of `include`
/// (or `include` is empty) and none of `exclude`.
///
/// ```
/// use carat_collector::options::{Filter, Patterns, Search};
///
/// let f = Filter::<Search>::new(
///     Patterns::new(["^app", "^tcp"]).unwrap(),
///     Patterns::new(["pool"]).unwrap(),
/// );
/// assert!(f.allows("app1") && !f.allows("app_pool") && !f.allows("web"));
/// assert!(Filter::<Search>::default().allows("anything"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter<A = Search> {
    /// When not empty, only what matches one of these passes.
    pub include: Patterns<A>,
    /// What matches one of these does not pass.
    pub exclude: Patterns<A>,
}

impl<A> Default for Filter<A> {
    fn default() -> Self {
        Filter {
            include: Patterns::default(),
            exclude: Patterns::default(),
        }
    }
}

impl<A: Anchoring> Filter<A> {
    /// The pair.
    pub fn new(include: Patterns<A>, exclude: Patterns<A>) -> Self {
        Filter { include, exclude }
    }

    /// True when `text` passes.
    pub fn allows(&self, text: &str) -> bool {
        self.allows_bytes(text.as_bytes())
    }

    /// True when `bytes` pass.
    pub fn allows_bytes(&self, bytes: &[u8]) -> bool {
        (self.include.is_empty() || self.include.is_match_bytes(bytes))
            && !self.exclude.is_match_bytes(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde::de::value::{Error, MapDeserializer};

    #[derive(Debug, Default, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Options {
        search: Patterns,
        start: Patterns<AtStart>,
        whole: Patterns<Whole>,
        #[serde(deserialize_with = "Patterns::comma_separated")]
        commas: Patterns<AtStart>,
    }

    fn from<V: serde::de::IntoDeserializer<'static, Error>>(
        key: &'static str,
        value: V,
    ) -> Result<Options, Error> {
        Options::deserialize(MapDeserializer::new(vec![(key, value)].into_iter()))
    }

    #[test]
    fn anchoring_is_part_of_the_type() {
        let o = from("search", vec!["total", "^cpu[0-9]"]).unwrap();
        assert!(o.search.is_match("cpu.total.user"));
        assert!(o.search.is_match("cpu1.idle"));
        assert!(!o.search.is_match("memory"));
        let o = from("start", vec!["total", "cpu[0-9]"]).unwrap();
        assert!(o.start.is_match("total.user"));
        assert!(!o.start.is_match("cpu.total"));
        assert!(o.start.is_match("cpu1.idle"));
        // A `|` stays inside its pattern's anchoring.
        let o = from("start", "a|b").unwrap();
        assert!(o.start.is_match("b.x") && !o.start.is_match("x.b"));
        let o = from("whole", "eth[0-9]|lo").unwrap();
        assert!(o.whole.is_match("eth0") && o.whole.is_match("lo"));
        assert!(!o.whole.is_match("eth0.100") && !o.whole.is_match("lo0"));
        // Leftmost-first alternation does not hide a whole match.
        let p = Patterns::<Whole>::new(["eth|eth0"]).unwrap();
        assert!(p.is_match("eth0"));
    }

    #[test]
    fn one_string_is_one_regex_and_empty_ones_are_dropped() {
        let o = from("search", "x{1,3}, y").unwrap();
        assert_eq!(o.search.sources(), ["x{1,3}, y"]);
        assert_eq!(o.search.len(), 1);
        let o = from("search", "").unwrap();
        assert!(o.search.is_empty());
        assert!(!o.search.is_match(""));
        let o = from("search", vec!["", "a"]).unwrap();
        assert_eq!(o.search.sources(), ["a"]);
        let o = from("commas", "eth, bond ,").unwrap();
        assert_eq!(o.commas.sources(), ["eth", "bond"]);
        assert!(o.commas.is_match("bond0") && !o.commas.is_match("veth"));
    }

    #[test]
    fn a_bad_regex_is_refused_when_read_naming_it() {
        for (key, value, expected) in [
            (
                "search",
                vec!["ok", "(unclosed"],
                "invalid regex \"(unclosed\": unclosed group",
            ),
            ("start", vec!["(a"], "invalid regex \"(a\": unclosed group"),
            // Anchoring cannot make a bad regex look good: `)(` would
            // otherwise close the anchoring group.
            (
                "start",
                vec!["a)(b"],
                "invalid regex \"a)(b\": unopened group",
            ),
            (
                "whole",
                vec!["[z-a]"],
                "invalid regex \"[z-a]\": invalid character class range",
            ),
            (
                "commas",
                vec!["eth", "bond("],
                "invalid regex \"bond(\": unclosed group",
            ),
        ] {
            let e = from(key, value).unwrap_err().to_string();
            assert!(e.starts_with(expected), "{key}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
        let e = from("commas", "eth, bond(").unwrap_err().to_string();
        assert_eq!(e, "invalid regex \"bond(\": unclosed group");
        let e = from("search", 5).unwrap_err().to_string();
        assert!(e.contains("a string or a list of strings"), "{e}");
        // Too big a regex: the library's own words.
        let e = Patterns::<Search>::new(["a{1000}{1000}"]).err().unwrap();
        assert!(e.starts_with("invalid regex \"a{1000}{1000}\": "), "{e}");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_matched() {
        let p = Patterns::<Search>::new(["^/mnt/caf", "^/usr/bin/.$"]).unwrap();
        assert!(p.is_match_bytes(b"/mnt/caf\xe9"));
        // A byte that is not UTF-8 is no character: `.` does not match it.
        assert!(!p.is_match_bytes(b"/usr/bin/\xff"));
        assert!(p.is_match_bytes("/usr/bin/é".as_bytes()));
    }

    #[test]
    fn equality_clone_and_debug_follow_the_sources() {
        let a = Patterns::<Search>::new(["a", "b"]).unwrap();
        let b = a.clone();
        assert_eq!(a, b);
        assert_ne!(a, Patterns::new(["a"]).unwrap());
        assert_eq!(format!("{a:?}"), "[\"a\", \"b\"]");
        assert_eq!(
            Patterns::<AtStart>::default(),
            Patterns::new(Vec::<String>::new()).unwrap()
        );
    }

    #[test]
    fn filters_include_then_exclude() {
        let f = Filter::<AtStart>::new(
            Patterns::new(["web[0-9]$"]).unwrap(),
            Patterns::new(["web[23]$"]).unwrap(),
        );
        let kept: Vec<_> = ["web1", "web2", "web3", "web4", "db1", "xweb1"]
            .into_iter()
            .filter(|n| f.allows(n))
            .collect();
        assert_eq!(kept, ["web1", "web4"]);
        let only_exclude =
            Filter::<Search>::new(Patterns::default(), Patterns::new(["x"]).unwrap());
        assert!(only_exclude.allows("a") && !only_exclude.allows("axb"));
    }
}
