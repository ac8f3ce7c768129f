//! Reading small `/proc` files into a reused buffer, and the parse errors
//! that name the file and line.

use std::path::Path;

pub(crate) use carat_collector::input::read_file;
use carat_collector::CollectorError;

/// Reads the whole of `path` into `buf` (cleared first, its allocation kept
/// from one cycle to the next) and returns it as text. A file larger than
/// [`carat_collector::input::MAX_FILE_BYTES`] is an error naming it: every file a system collector
/// reads goes through [`read_file`], so none can take more memory than that.
///
/// A file that is not UTF-8 is a parse error naming the first bad line, not
/// an I/O error: the file was read, its content is wrong.
pub(crate) fn read_text<'b>(path: &Path, buf: &'b mut Vec<u8>) -> Result<&'b str, CollectorError> {
    read_file(path, buf)?;
    match std::str::from_utf8(buf) {
        Ok(text) => Ok(text),
        Err(e) => {
            let line = line_of_offset(buf, e.valid_up_to());
            Err(parse_error(path, line, "not UTF-8 text"))
        }
    }
}

/// Reads `path` like [`read_text`] and checks that it is not empty.
///
/// A last line without its newline is not refused here: the kernel ends
/// every line with one, but a copy of the file, a test fixture or a FUSE
/// `/proc` (lxcfs) may leave the last one out. Each parser judges that line
/// by its fields instead ([`unterminated_last_line`], [`cut_short`]).
pub(crate) fn read_complete<'b>(
    path: &Path,
    buf: &'b mut Vec<u8>,
) -> Result<&'b str, CollectorError> {
    let text = read_text(path, buf)?;
    if text.trim().is_empty() {
        return Err(parse_error(path, 1, "empty file"));
    }
    Ok(text)
}

/// The 1-based number of the last line of `text` when the text does not end
/// with a newline (and is not empty).
///
/// A short read (a truncated copy, a broken FUSE `/proc`) cuts a file at
/// any byte, so only the last field of such a line may have been cut: a
/// field that something follows (a space, another field, a unit) is whole.
/// A parser accepts the line when its fields show it whole for what the
/// collector uses (the fields it needs are all there, and the last one is
/// not one it publishes, or is followed by a unit), and refuses it with
/// [`cut_short`] otherwise: the newline was then the only proof that the
/// last value is complete.
pub(crate) fn unterminated_last_line(text: &str) -> Option<usize> {
    if text.is_empty() || text.ends_with('\n') {
        return None;
    }
    Some(text.lines().count())
}

/// How many fields of `line` are whole if the line was cut at its end: all
/// of them when whitespace ends it, else all but the last.
pub(crate) fn whole_fields(line: &str) -> usize {
    let fields = line.split_ascii_whitespace().count();
    if line.ends_with(|c: char| c.is_ascii_whitespace()) {
        fields
    } else {
        fields.saturating_sub(1)
    }
}

/// The error for line `lineno`, the last of the file, without a newline:
/// `why` it cannot be told whole by its fields.
pub(crate) fn cut_short(path: &Path, lineno: usize, why: &str) -> CollectorError {
    parse_error(
        path,
        lineno,
        format!("truncated: the last line has no newline, and {why}"),
    )
}

/// A parse error whose origin is `<path> line <line>` (lines count from 1).
pub(crate) fn parse_error(path: &Path, line: usize, message: impl Into<String>) -> CollectorError {
    CollectorError::parse(format!("{} line {line}", path.display()), message)
}

/// A parse error about the file as a whole (something missing from it).
pub(crate) fn file_error(path: &Path, message: impl Into<String>) -> CollectorError {
    CollectorError::parse(path.display().to_string(), message)
}

/// The 1-based line number holding byte `offset` of `bytes`.
fn line_of_offset(bytes: &[u8], offset: usize) -> usize {
    let end = offset.min(bytes.len());
    bytes[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::ProcDir;
    use carat_collector::input::MAX_FILE_BYTES;

    #[test]
    fn non_utf8_is_a_parse_error_naming_the_line() {
        let dir = ProcDir::new("procfile-utf8");
        dir.write_bytes("stat", b"cpu  1 2 3 4\ncpu0 \xff\xfe 2 3 4\n");
        let mut buf = Vec::new();
        let err = read_text(&dir.path.join("stat"), &mut buf).unwrap_err();
        assert_eq!(err.label(), "parse");
        let msg = err.to_string();
        assert!(msg.contains("stat line 2"), "{msg}");
    }

    #[test]
    fn empty_files_are_refused_unterminated_ones_are_for_their_parser() {
        let dir = ProcDir::new("procfile-complete");
        let mut buf = Vec::new();
        dir.write("empty", "");
        let msg = read_complete(&dir.path.join("empty"), &mut buf)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("empty line 1: empty file"), "{msg}");
        dir.write("cut", "a 1\nb 2\nc 3");
        let text = read_complete(&dir.path.join("cut"), &mut buf).unwrap();
        assert_eq!(unterminated_last_line(text), Some(3));
        let msg = cut_short(&dir.path.join("cut"), 3, "its value may be cut").to_string();
        assert!(
            msg.contains("cut line 3: truncated: the last line has no newline"),
            "{msg}"
        );
        dir.write("ok", "a 1\n");
        let text = read_complete(&dir.path.join("ok"), &mut buf).unwrap();
        assert_eq!(text, "a 1\n");
        assert_eq!(unterminated_last_line(text), None);
        assert_eq!(unterminated_last_line(""), None);
        assert_eq!(whole_fields("a b c"), 2);
        assert_eq!(whole_fields("a b c "), 3);
        assert_eq!(whole_fields(""), 0);
        assert_eq!(unterminated_last_line("x"), Some(1));
    }

    #[test]
    fn a_file_over_the_bound_is_refused_without_reading_it_all() {
        let dir = ProcDir::new("procfile-huge");
        // A plausible diskstats line, repeated past the bound.
        let line = "   8       0 sda 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n";
        let big = line.repeat(MAX_FILE_BYTES / line.len() + 1);
        dir.write("diskstats", &big);
        let mut buf = Vec::new();
        let err = read_text(&dir.path.join("diskstats"), &mut buf).unwrap_err();
        assert_eq!(err.label(), "limit");
        let msg = err.to_string();
        assert!(msg.contains("diskstats") && msg.contains("16 MiB"), "{msg}");
        assert_eq!(buf.capacity(), 0, "the memory is given back");
    }

    #[test]
    fn a_missing_file_is_an_io_error() {
        let dir = ProcDir::new("procfile-missing");
        let mut buf = Vec::new();
        let err = read_text(&dir.path.join("nope"), &mut buf).unwrap_err();
        assert_eq!(err.label(), "io");
        assert!(err.to_string().contains("nope"));
    }
}
