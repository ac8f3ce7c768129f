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

/// Reads `path` like [`read_text`] and checks that it looks complete: not
/// empty, and its last line ends with a newline. The kernel ends every line
/// of `/proc/stat`, `/proc/meminfo` and `/proc/loadavg` with one, so a last
/// line without it was cut short (a truncated copy, a broken FUSE `/proc`),
/// and its last number cannot be trusted.
pub(crate) fn read_complete<'b>(
    path: &Path,
    buf: &'b mut Vec<u8>,
) -> Result<&'b str, CollectorError> {
    let text = read_text(path, buf)?;
    if text.trim().is_empty() {
        return Err(parse_error(path, 1, "empty file"));
    }
    if !text.ends_with('\n') {
        let last = text.lines().count();
        return Err(parse_error(
            path,
            last,
            "truncated: the last line does not end with a newline",
        ));
    }
    Ok(text)
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
    fn empty_and_unterminated_files_are_incomplete() {
        let dir = ProcDir::new("procfile-complete");
        let mut buf = Vec::new();
        dir.write("empty", "");
        let msg = read_complete(&dir.path.join("empty"), &mut buf)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("empty line 1: empty file"), "{msg}");
        dir.write("cut", "a 1\nb 2\nc 3");
        let msg = read_complete(&dir.path.join("cut"), &mut buf)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("cut line 3: truncated"), "{msg}");
        dir.write("ok", "a 1\n");
        assert_eq!(
            read_complete(&dir.path.join("ok"), &mut buf).unwrap(),
            "a 1\n"
        );
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
