//! Reading `/proc/mounts`: six fields a line, the kernel's octal escapes
//! decoded.

use std::borrow::Cow;
use std::path::Path;

use carat_collector::CollectorError;

use crate::procfile::parse_error;

/// One line of `/proc/mounts`, its fields decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct MountLine<'a> {
    pub(super) device: Cow<'a, [u8]>,
    pub(super) mount_point: Cow<'a, [u8]>,
    pub(super) fs_type: Cow<'a, [u8]>,
}

/// Decodes the kernel's octal escapes (`\040` space, `\011` tab, `\012`
/// newline, `\134` backslash, …): a backslash followed by three octal
/// digits of a value below 256. Any other backslash is kept as it is.
fn decode_octal(field: &[u8]) -> Cow<'_, [u8]> {
    if !field.contains(&b'\\') {
        return Cow::Borrowed(field);
    }
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if let [b'\\', a @ b'0'..=b'3', b @ b'0'..=b'7', c @ b'0'..=b'7', ..] = field[i..] {
            out.push((a - b'0') << 6 | (b - b'0') << 3 | (c - b'0'));
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    Cow::Owned(out)
}

/// At most `max` characters of `bytes`, lossily decoded, with control
/// characters escaped: safe to put in an error message.
pub(super) fn shown(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len().min(max));
    for (n, c) in text.chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses `text`, the content of `path` (`/proc/mounts`), into `out`.
///
/// The kernel writes six fields separated by single spaces: device, mount
/// point, type, options, and two zeros (dump and pass, from fstab's
/// format). Anything else is a parse error naming the file and line, as is
/// an empty file or one whose last line lacks its newline (cut short).
/// Blank lines are ignored.
pub(super) fn parse_mounts<'a>(
    path: &Path,
    text: &'a [u8],
    out: &mut Vec<MountLine<'a>>,
) -> Result<(), CollectorError> {
    out.clear();
    if text.iter().all(u8::is_ascii_whitespace) {
        return Err(parse_error(path, 1, "empty file"));
    }
    let lines = text.split(|&b| b == b'\n');
    let count = text.iter().filter(|&&b| b == b'\n').count();
    if !text.ends_with(b"\n") {
        return Err(parse_error(
            path,
            count + 1,
            "truncated: the last line does not end with a newline",
        ));
    }
    for (i, line) in lines.take(count).enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let bad = |why: &str| parse_error(path, i + 1, format!("{why}: {:?}", shown(line, 120)));
        let mut fields = line.split(|&b| b == b' ');
        let (
            Some(device),
            Some(mount_point),
            Some(fs_type),
            Some(_options),
            Some(dump),
            Some(pass),
            None,
        ) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        )
        else {
            return Err(bad(
                "expected 6 fields separated by single spaces (device, mount point, type, options, dump, pass)",
            ));
        };
        let number = |f: &[u8]| !f.is_empty() && f.iter().all(u8::is_ascii_digit);
        if !number(dump) || !number(pass) {
            return Err(bad("the last two fields (dump, pass) are not numbers"));
        }
        if mount_point.is_empty() || fs_type.is_empty() {
            return Err(bad("empty mount point or type"));
        }
        out.push(MountLine {
            device: decode_octal(device),
            mount_point: decode_octal(mount_point),
            fs_type: decode_octal(fs_type),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diskspace::testing::fixture;
    use crate::test_support::fixture_path;

    #[test]
    fn octal_escapes_are_decoded() {
        assert_eq!(&*decode_octal(b"/mnt/my\\040disk"), b"/mnt/my disk");
        assert_eq!(&*decode_octal(b"a\\011b\\012c\\134d"), b"a\tb\nc\\d");
        assert_eq!(&*decode_octal(b"\\303\\251"), "é".as_bytes());
        // Not an escape: kept as it is.
        assert_eq!(&*decode_octal(b"a\\9b\\08\\400\\"), b"a\\9b\\08\\400\\");
        assert!(matches!(decode_octal(b"/plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn garbage_line_is_a_parse_error_naming_file_and_line() {
        let path = fixture_path("diskspace/mounts-garbage");
        let mut lines = Vec::new();
        let text = fixture("mounts-garbage");
        let err = parse_mounts(&path, &text, &mut lines).unwrap_err();
        assert_eq!(err.label(), "parse");
        let msg = err.to_string();
        assert!(msg.contains(&format!("{} line 3", path.display())), "{msg}");
        assert!(msg.contains("this line is garbage"), "{msg}");

        let cases: [(&[u8], &str); 5] = [
            (b"", "line 1: empty file"),
            (
                b"/dev/sda1 / ext4 rw 0 0\n/dev/sdb1 /x ext4",
                "line 2: truncated",
            ),
            (b"/dev/sda1 / ext4 rw 0 x\n", "line 1: the last two fields"),
            (
                b"/dev/sda1 / ext4 rw 0 0 extra\n",
                "line 1: expected 6 fields",
            ),
            (b"/dev/sda1  ext4 rw 0 0\n", "line 1: empty mount point"),
        ];
        for (text, expected) in cases {
            let msg = parse_mounts(Path::new("m"), text, &mut lines)
                .unwrap_err()
                .to_string();
            assert!(msg.contains(expected), "{text:?}: {msg}");
        }
        // An empty source (mount("", …)) is still six fields; blank lines
        // are ignored.
        parse_mounts(Path::new("m"), b" /mnt/x tmpfs rw 0 0\n\n", &mut lines).unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(&*lines[0].device, b"");
    }
}
