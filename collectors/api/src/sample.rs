//! Commented sample configurations: each collector crate carries its own
//! (`sample.toml`, given to the agent as [`crate::Collector::SAMPLE`]), and
//! the agent assembles `carat sample-config` and the shipped
//! `conf/carat.toml` from the sections of the kinds it registers.
//!
//! A sample is TOML with a section per kind. A section starts at its marker
//! line, `## --- <kind>` (then anything, usually `: what it does ---`), and
//! runs to the next marker or the end. Within it:
//!
//! - `## ` starts a line of prose;
//! - `# ` starts a line of TOML left commented out (an option at its
//!   default, a kind that is off by default), which works as it is once
//!   the `# ` is taken away;
//! - every option of the kind appears, as `option = <default>` (or as the
//!   header of a table or list of tables, `[[collector.<kind>.<option>]]`),
//!   with a comment saying what it does.
//!
//! ```
//! let a = "## --- a: first ---\n[collector.a]\nx = 1  # what x does\n\n";
//! let b = "## --- b: second ---\n# [collector.b]\n";
//! let sample = format!("{a}{b}");
//! let sample = sample.as_str();
//! assert_eq!(carat_collector::sample::kinds(sample).collect::<Vec<_>>(), ["a", "b"]);
//! assert_eq!(
//!     carat_collector::sample::section(sample, "b"),
//!     Some("## --- b: second ---\n# [collector.b]\n")
//! );
//! assert_eq!(carat_collector::sample::section(sample, "c"), None);
//! ```

/// What a section's marker line starts with: `## --- <kind>`.
pub const MARKER: &str = "## --- ";

/// The kind named by `line` when it is a marker line.
fn marker_kind(line: &str) -> Option<&str> {
    let rest = line.strip_prefix(MARKER)?;
    let end = rest.find([':', ' ']).unwrap_or(rest.len());
    Some(&rest[..end]).filter(|k| !k.is_empty())
}

/// The kinds that have a section in `sample`, in order.
pub fn kinds(sample: &str) -> impl Iterator<Item = &str> {
    sample.lines().filter_map(marker_kind)
}

/// The section of `sample` for `kind`, from its marker line to the next
/// marker (or the end), with its line ends.
pub fn section<'a>(sample: &'a str, kind: &str) -> Option<&'a str> {
    let mut start = None;
    let mut offset = 0;
    for line in sample.split_inclusive('\n') {
        if let Some(k) = marker_kind(line.trim_end()) {
            if let Some(s) = start {
                return sample.get(s..offset);
            }
            if k == kind {
                start = Some(offset);
            }
        }
        offset += line.len();
    }
    start.and_then(|s| sample.get(s..))
}

/// `section` with the TOML that is commented out (`# key = value`, `#
/// [table]`) put back, prose (`## …`) left as it is: what the section
/// configures when everything it shows is switched on. Tests load it to
/// check that every line of a sample works.
pub fn uncommented(section: &str) -> String {
    section
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(toml) => toml,
            None => line,
        })
        .fold(String::new(), |mut out, line| {
            out.push_str(line);
            out.push('\n');
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "## --- one: the first\n[collector.one]\na = 1\n\n\
                          ## --- two ---\n## prose\n# [collector.two]\n# b = \"x\"  # why\n";

    #[test]
    fn sections_run_from_their_marker_to_the_next() {
        assert_eq!(kinds(SAMPLE).collect::<Vec<_>>(), ["one", "two"]);
        assert_eq!(
            section(SAMPLE, "one"),
            Some("## --- one: the first\n[collector.one]\na = 1\n\n")
        );
        assert_eq!(
            uncommented(section(SAMPLE, "two").unwrap()),
            "## --- two ---\n## prose\n[collector.two]\nb = \"x\"  # why\n"
        );
        assert_eq!(section(SAMPLE, "on"), None);
        assert_eq!(kinds("## ---\n## --- :x\n").count(), 0);
    }
}
