//! The types of collector (and agent) options that are more than a number,
//! a flag or a string, so that every collector reads them the same way and
//! refuses a bad value when the configuration is loaded, at its line:
//!
//! | type or function | an option that is… | written |
//! |---|---|---|
//! | [`string_list`] | a list of names | `["ext4", "xfs"]` or `"ext4, xfs"` |
//! | [`one_or_many`], [`comma_separated`] | a list of strings that may hold spaces | `["a b", "c"]` or `"a b"` |
//! | [`Patterns`] (with [`Search`], [`AtStart`], [`Whole`]) | regexes, compiled as they are read | `["^/mnt", "home"]` or `"^/mnt"` |
//! | [`Filter`] | an include/exclude pair of [`Patterns`] | two options |
//! | [`duration::deserialize`], [`SecondsRange`] | a duration | `10`, `0.5`, `"10s"`, `"500ms"`, `"1h30m"` |
//! | [`ByteUnit`], [`ByteUnits`] | Diamond's byte units | `"MB"`, `["byte", "kilobyte"]` |
//!
//! A complete example:
//!
//! ```
//! use std::time::Duration;
//!
//! use carat_collector::options::{self, AtStart, ByteUnits, Patterns, SecondsRange};
//! use carat_collector::CollectorError;
//! use serde::Deserialize;
//!
//! #[derive(Debug, Deserialize)]
//! #[serde(deny_unknown_fields, default)]
//! struct Config {
//!     #[serde(deserialize_with = "options::string_list")]
//!     filesystems: Vec<String>,
//!     devices: Patterns<AtStart>,
//!     byte_unit: ByteUnits,
//!     #[serde(deserialize_with = "options::duration::deserialize")]
//!     timeout: Duration,
//! }
//!
//! impl Default for Config {
//!     fn default() -> Self {
//!         Config {
//!             filesystems: vec!["ext4".into(), "xfs".into()],
//!             devices: Patterns::new(["sd[a-z]+$"]).unwrap(),
//!             byte_unit: options::ByteUnit::BYTE.into(),
//!             timeout: Duration::from_secs(5),
//!         }
//!     }
//! }
//!
//! /// What `new` checks: the bounds of the duration (at the option's line).
//! const TIMEOUT: SecondsRange = SecondsRange::above(0.0, 3600.0);
//!
//! fn new(config: Config) -> Result<Duration, CollectorError> {
//!     TIMEOUT.check_option("timeout", config.timeout)
//! }
//!
//! let config: Config = toml::from_str(r#"
//!     filesystems = "ext4, btrfs"
//!     devices = ["sd[a-z]+$", "nvme[0-9]+n[0-9]+$"]
//!     byte_unit = "byte kilobyte"
//!     timeout = "1m30s"
//! "#).unwrap();
//! assert_eq!(config.filesystems, ["ext4", "btrfs"]);
//! assert!(config.devices.is_match("nvme0n1"));
//! assert_eq!(config.byte_unit.len(), 2);
//! assert_eq!(new(config).unwrap(), Duration::from_secs(90));
//!
//! let e = toml::from_str::<Config>("timeout = \"soon\"").unwrap_err();
//! assert!(e.message().contains("expected a number of seconds (10, 0.5) or a string"), "{e}");
//! let e = new(toml::from_str("timeout = \"2h\"").unwrap()).unwrap_err();
//! assert_eq!(e.invalid_option(), Some("timeout"));
//! ```
//!
//! The secrets of URLs are hidden by [`crate::redact`], and blocking calls
//! that may hang run on [`crate::blocking`]'s bounded threads.

pub mod duration;
mod list;
mod patterns;
mod units;

pub use duration::SecondsRange;
pub use list::{comma_separated, one_or_many, string_list};
pub use patterns::{Anchoring, AtStart, Filter, Patterns, Search, Whole};
pub use units::{ByteUnit, ByteUnits};
