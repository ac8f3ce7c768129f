//! The options of the `diskspace` collector.

use std::time::Duration;

use carat_collector::options::{self, ByteUnit, ByteUnits, Patterns, SecondsRange};
use serde::Deserialize;

use crate::source::Source;

/// Diamond's default `filesystems`.
pub const DEFAULT_FILESYSTEMS: [&str; 12] = [
    "ext2",
    "ext3",
    "ext4",
    "xfs",
    "glusterfs",
    "nfs",
    "nfs4",
    "ntfs",
    "hfs",
    "fat32",
    "fat16",
    "btrfs",
];

/// Diamond's default `exclude_filters`.
pub const DEFAULT_EXCLUDE_FILTERS: [&str; 1] = ["^/export/home"];

/// The `statvfs_timeout` accepted: more than 0, at most an hour.
pub const STATVFS_TIMEOUT_RANGE: SecondsRange = SecondsRange::above(0.0, 3600.0);

/// Options of the `diskspace` collector.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DiskSpaceConfig {
    /// Filesystem types to measure, as the third column of `/proc/mounts`
    /// names them. A list, or one string of types separated by commas or
    /// spaces.
    #[serde(deserialize_with = "options::string_list")]
    pub filesystems: Vec<String>,
    /// Regexes; a mount point in which any of them matches is not measured.
    /// A list, or one string holding one regex (empty: none).
    pub exclude_filters: Patterns,
    /// Units to publish sizes in, Diamond's names ([`ByteUnit`]). A list, or
    /// one string of units separated by commas or spaces.
    pub byte_unit: ByteUnits,
    /// How long to wait for the `statvfs` calls of one run: seconds, or a
    /// string with units (`"500ms"`), more than 0 and at most an hour.
    #[serde(deserialize_with = "options::duration::deserialize")]
    pub statvfs_timeout: Duration,
    /// Name a filesystem by its label in `/dev/disk/by-label`, when it has
    /// one, instead of by its mount point (Diamond does).
    pub use_labels: bool,
    /// Where the filesystems and their sizes come from (`auto`:
    /// `/proc/mounts` and `statvfs` on Linux, the `sysinfo` crate
    /// elsewhere, which has no inode counts).
    pub source: Source,
}

impl Default for DiskSpaceConfig {
    fn default() -> Self {
        DiskSpaceConfig {
            filesystems: DEFAULT_FILESYSTEMS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            // A constant, checked by a test: it compiles.
            exclude_filters: Patterns::new(DEFAULT_EXCLUDE_FILTERS).unwrap_or_default(),
            byte_unit: ByteUnit::BYTE.into(),
            statvfs_timeout: Duration::from_secs(2),
            use_labels: true,
            source: Source::Auto,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diskspace::testing::build;
    use crate::test_support::{byte_units, config_from, unit_names};

    #[test]
    fn bad_options_are_refused() {
        // When read: the loader reports them at the option's line.
        for (option, value, expected) in [
            (
                "byte_unit",
                vec!["byte", "furlong"],
                "\"furlong\" is not one of Diamond's units",
            ),
            (
                "exclude_filters",
                vec!["^/ok", "(unclosed"],
                "invalid regex \"(unclosed\": unclosed group",
            ),
        ] {
            let err = config_from::<DiskSpaceConfig, _>(vec![(option, value)])
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(expected), "{option}: {err}");
        }
        for secs in ["-1", "NaN", "soon", "-0.5s"] {
            let err = config_from::<DiskSpaceConfig, _>(vec![("statvfs_timeout", secs)])
                .unwrap_err()
                .to_string();
            assert!(err.contains("is not a duration"), "{secs}: {err}");
        }
        let err = config_from::<DiskSpaceConfig, _>(vec![("statvfs_timeout", f64::NAN)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a valid number of seconds"), "{err}");
        // When built: what cannot work.
        let cases = [
            (
                DiskSpaceConfig {
                    filesystems: Vec::new(),
                    ..DiskSpaceConfig::default()
                },
                ("filesystems", "is empty"),
            ),
            (
                DiskSpaceConfig {
                    statvfs_timeout: Duration::ZERO,
                    ..DiskSpaceConfig::default()
                },
                (
                    "statvfs_timeout",
                    "expected more than 0 and at most 3600 seconds",
                ),
            ),
            (
                DiskSpaceConfig {
                    statvfs_timeout: Duration::from_secs(1_000_000_000),
                    ..DiskSpaceConfig::default()
                },
                (
                    "statvfs_timeout",
                    "expected more than 0 and at most 3600 seconds",
                ),
            ),
        ];
        for (config, (option, expected)) in cases {
            let err = build(config).err().unwrap();
            assert_eq!(err.label(), "config");
            assert_eq!(err.invalid_option(), Some(option), "{err}");
            assert!(err.to_string().contains(expected), "{err}");
        }
        let ok = build(DiskSpaceConfig {
            byte_unit: byte_units(&["byte", "gigabyte", "byte"]),
            statvfs_timeout: Duration::from_millis(250),
            ..DiskSpaceConfig::default()
        })
        .unwrap();
        assert_eq!(ok.units.len(), 2);
        assert_eq!(ok.timeout, Duration::from_millis(250));
        let config: DiskSpaceConfig = config_from(vec![("statvfs_timeout", "1.5s")]).unwrap();
        assert_eq!(config.statvfs_timeout, Duration::from_millis(1_500));
    }

    #[test]
    fn config_defaults_lists_and_unknown_keys() {
        use serde::de::value::{Error, MapDeserializer};
        let empty: MapDeserializer<'_, std::vec::IntoIter<(&str, &str)>, Error> =
            MapDeserializer::new(Vec::new().into_iter());
        let config = DiskSpaceConfig::deserialize(empty).unwrap();
        assert_eq!(config, DiskSpaceConfig::default());
        assert_eq!(config.filesystems.len(), 12);
        assert!(config.filesystems.iter().any(|f| f == "nfs4"));
        assert_eq!(config.exclude_filters.sources(), ["^/export/home"]);
        assert_eq!(unit_names(&config.byte_unit), ["byte"]);
        assert_eq!(config.statvfs_timeout, Duration::from_secs(2));
        assert!(config.use_labels);

        // Strings: separated by commas or spaces for filesystems and
        // byte_unit, one regex (which may hold a comma) for exclude_filters.
        let strings: MapDeserializer<'_, _, Error> = MapDeserializer::new(
            vec![
                ("filesystems", " ext4,xfs , ,zfs"),
                ("byte_unit", "byte, gigabyte"),
                ("exclude_filters", "^/mnt/x{1,3}"),
            ]
            .into_iter(),
        );
        let config = DiskSpaceConfig::deserialize(strings).unwrap();
        assert_eq!(config.filesystems, ["ext4", "xfs", "zfs"]);
        assert_eq!(unit_names(&config.byte_unit), ["byte", "gigabyte"]);
        assert_eq!(config.exclude_filters.sources(), ["^/mnt/x{1,3}"]);

        let lists: MapDeserializer<'_, _, Error> = MapDeserializer::new(
            vec![
                ("filesystems", vec!["ext4", " overlay "]),
                ("exclude_filters", vec!["^/boot", "", "^/mnt"]),
            ]
            .into_iter(),
        );
        let config = DiskSpaceConfig::deserialize(lists).unwrap();
        assert_eq!(config.filesystems, ["ext4", "overlay"]);
        assert_eq!(config.exclude_filters.sources(), ["^/boot", "^/mnt"]);

        let none: MapDeserializer<'_, _, Error> =
            MapDeserializer::new(vec![("exclude_filters", "")].into_iter());
        assert!(DiskSpaceConfig::deserialize(none)
            .unwrap()
            .exclude_filters
            .is_empty());

        let typo: MapDeserializer<'_, _, Error> =
            MapDeserializer::new(vec![("filesystem", "ext4")].into_iter());
        let err = DiskSpaceConfig::deserialize(typo).unwrap_err().to_string();
        assert!(err.contains("filesystem"), "{err}");
    }
}
