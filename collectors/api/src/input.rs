//! Reading input with a bound on its size.
//!
//! A collector reads whole files into memory (a `/proc` file must be read in
//! one go to be consistent). A file that is far larger than it should be (a
//! broken FUSE `/proc`, a runaway device list, a file a container runtime
//! filled) would otherwise take as much memory as it holds: a 39 MB
//! `/proc/diskstats` once made an agent grow to 2.7 GB. Everything read
//! through here stops at a bound and fails with an error that names the
//! file and the bound, instead.

use std::io::{self, Read};
use std::path::Path;

use crate::error::CollectorError;

/// The most a collector reads from one file: 16 MiB.
///
/// No kernel file that a collector reads comes near it on a real host: a
/// line of `/proc/diskstats`, `/proc/net/dev` or `/proc/mounts` is 100 to
/// 200 bytes, so this is room for about 100,000 devices, interfaces or
/// mounts, and a process's `cmdline` is bounded by the kernel's argument
/// limit (a few MiB at most).
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;

/// Reads the whole of `path` into `buf` (cleared first; its allocation is
/// kept from one call to the next), at most [`MAX_FILE_BYTES`].
///
/// ```
/// let path = std::env::temp_dir().join(format!("carat-input-doc-{}", std::process::id()));
/// std::fs::write(&path, "1184\t0\t9223372036854775807\n").unwrap();
/// let mut buf = Vec::new();
/// carat_collector::input::read_file(&path, &mut buf).unwrap();
/// assert_eq!(buf, b"1184\t0\t9223372036854775807\n");
/// std::fs::remove_file(path).unwrap();
/// ```
pub fn read_file(path: &Path, buf: &mut Vec<u8>) -> Result<(), CollectorError> {
    read_file_capped(path, buf, MAX_FILE_BYTES)
}

/// [`read_file`] with another bound than [`MAX_FILE_BYTES`]: a file larger
/// than `limit` bytes is a [`CollectorError::Limit`] naming the file and the
/// bound.
pub fn read_file_capped(
    path: &Path,
    buf: &mut Vec<u8>,
    limit: usize,
) -> Result<(), CollectorError> {
    buf.clear();
    let file = std::fs::File::open(path).map_err(|e| CollectorError::io(path, e))?;
    match read_capped(file, buf, limit) {
        Ok(true) => Ok(()),
        Ok(false) => Err(CollectorError::too_large(path.display(), limit)),
        Err(e) => Err(CollectorError::io(path, e)),
    }
}

/// Appends what `reader` gives to `buf`, up to its end or `limit` bytes
/// (counted from what `buf` held before). Returns false when there was
/// more than `limit`: `buf` is then emptied and its memory given back, so
/// that one oversized input does not stay allocated in a buffer that is
/// reused from one run to the next.
pub fn read_capped(reader: impl Read, buf: &mut Vec<u8>, limit: usize) -> io::Result<bool> {
    let before = buf.len();
    let allowed = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(allowed).read_to_end(buf)?;
    if buf.len() - before > limit {
        *buf = Vec::new();
        return Ok(false);
    }
    Ok(true)
}

/// A piece of input quoted in a message: at most `max_chars` characters of
/// `text`, in quotes with its control characters escaped, and `…` after
/// the quotes when it was cut. So a message quoting a line a program or a
/// server sent stays one line of bounded length, whatever the line.
///
/// ```
/// use carat_collector::input::excerpt;
/// assert_eq!(excerpt("disk.used 12 x", 40), r#""disk.used 12 x""#);
/// assert_eq!(excerpt("a\tb", 40), r#""a\tb""#);
/// assert_eq!(excerpt(&"x".repeat(100), 3), r#""xxx"…"#);
/// ```
pub fn excerpt(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

/// `n` bytes for messages: `16 MiB`, `64 KiB` or `1000 bytes`.
pub fn show_bytes(n: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * KIB;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= KIB && n.is_multiple_of(KIB) {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_up_to_the_limit_and_refuses_more() {
        let mut buf = Vec::new();
        assert!(read_capped(&b"abcd"[..], &mut buf, 4).unwrap());
        assert_eq!(buf, b"abcd");
        buf.clear();
        assert!(!read_capped(&b"abcde"[..], &mut buf, 4).unwrap());
        assert!(buf.is_empty());
        assert_eq!(buf.capacity(), 0, "the memory is given back");
        assert!(read_capped(&b""[..], &mut buf, 0).unwrap());
    }

    #[test]
    fn the_bound_stops_the_read_of_an_endless_source() {
        // io::repeat never ends: without the bound this would not return.
        let mut buf = Vec::new();
        assert!(!read_capped(io::repeat(b'x'), &mut buf, 1 << 20).unwrap());
    }

    #[test]
    fn a_file_over_the_bound_is_a_limit_error_naming_it() {
        let dir = std::env::temp_dir().join(format!("carat-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("diskstats");
        std::fs::write(&path, vec![b'7'; 2048]).unwrap();
        let mut buf = Vec::new();
        read_file_capped(&path, &mut buf, 2048).unwrap();
        assert_eq!(buf.len(), 2048);
        let e = read_file_capped(&path, &mut buf, 1024).unwrap_err();
        assert_eq!(e.label(), "limit");
        let msg = e.to_string();
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains("larger than 1 KiB"),
            "{msg}"
        );
        let missing = read_file(&dir.join("nope"), &mut buf).unwrap_err();
        assert_eq!(missing.label(), "io");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn sizes_are_shown_in_the_largest_whole_unit() {
        assert_eq!(show_bytes(MAX_FILE_BYTES), "16 MiB");
        assert_eq!(show_bytes(64 * 1024), "64 KiB");
        assert_eq!(show_bytes(1000), "1000 bytes");
    }
}
