//! Configuration errors that say where the problem is.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A configuration problem, with the file, line and key it was found at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problem is in (`<built-in>` for the built-in default).
    pub file: PathBuf,
    /// 1-based line and column, when the problem has a place in the file.
    pub position: Option<(usize, usize)>,
    /// The dotted key the problem is at (`collector.cpu.percore`), if any.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// A problem with the file as a whole (unreadable, no outputs…).
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_owned(),
            position: None,
            key: None,
            message: message.into(),
        }
    }

    /// A problem at byte range `span` of `source`.
    pub fn at(
        file: &Path,
        source: &str,
        span: Option<Range<usize>>,
        key: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError::at_position(
            file,
            span.map(|s| line_and_column(source, s.start)),
            key,
            message,
        )
    }

    /// A problem at a known 1-based line and column (see [`LineIndex`]).
    pub fn at_position(
        file: &Path,
        position: Option<(usize, usize)>,
        key: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            file: file.to_owned(),
            position,
            key,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// 1-based line and column of byte `offset` in `source`. Scans `source`
/// from its start: for many look-ups in one text, build a [`LineIndex`].
pub fn line_and_column(source: &str, offset: usize) -> (usize, usize) {
    LineIndex::new(source).position(source, offset)
}

/// Where each line of a text starts, so that the line and column of a byte
/// offset are found by a binary search instead of a scan from the start of
/// the text. The loader asks for a position for every table of a file
/// (where each instance was defined); with a scan each, a file of 200,000
/// tables took minutes.
#[derive(Debug, Clone)]
pub struct LineIndex {
    /// Byte offset of the start of each line; the first is 0.
    starts: Vec<usize>,
}

impl LineIndex {
    /// Indexes the lines of `source`.
    pub fn new(source: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(source.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { starts }
    }

    /// 1-based line and column of byte `offset` in `source`, the text this
    /// index was built from. The column counts characters, not bytes; an
    /// offset past the end is the end.
    pub fn position(&self, source: &str, offset: usize) -> (usize, usize) {
        let offset = offset.min(source.len());
        // The number of lines starting at or before `offset` is its line.
        let line = self.starts.partition_point(|&start| start <= offset);
        let line_start = self.starts.get(line.wrapping_sub(1)).copied().unwrap_or(0);
        let column = source
            .get(line_start..offset)
            .map_or(1, |s| s.chars().count() + 1);
        (line.max(1), column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let src = "a = 1\nb = 2\n  c = 3\n";
        assert_eq!(line_and_column(src, 0), (1, 1));
        assert_eq!(line_and_column(src, 6), (2, 1));
        assert_eq!(line_and_column(src, 14), (3, 3));
        assert_eq!(line_and_column(src, 999), (4, 1));
    }

    #[test]
    fn the_index_agrees_with_a_scan() {
        let src = "a = 1\n\nbé = \"ü\"\n  c = 3";
        let index = LineIndex::new(src);
        for offset in 0..=src.len() + 2 {
            let offset = if src.is_char_boundary(offset.min(src.len())) {
                offset
            } else {
                continue;
            };
            let clamped = offset.min(src.len());
            let before = &src[..clamped];
            let line = before.matches('\n').count() + 1;
            let start = before.rfind('\n').map_or(0, |i| i + 1);
            let column = before[start..].chars().count() + 1;
            assert_eq!(index.position(src, offset), (line, column), "{offset}");
        }
        assert_eq!(LineIndex::new("").position("", 0), (1, 1));
    }

    #[test]
    fn display_names_file_line_and_key() {
        let e = ConfigError::at(
            Path::new("/etc/carat/carat.toml"),
            "x\ny = 1\n",
            Some(2..3),
            Some("agent.y".into()),
            "bad",
        );
        assert_eq!(
            e.to_string(),
            "/etc/carat/carat.toml:2:1: key `agent.y`: bad"
        );
    }
}
