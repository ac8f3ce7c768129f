//! Carbon's pickle protocol (port 2004): frames of a 4-byte big-endian length
//! followed by a pickled list of `(path, (timestamp, value))` tuples.
//!
//! Only the handful of pickle opcodes carbon's safe unpickler needs are
//! written (protocol 2: lists, tuples, unicode strings, ints, floats).
//! Frames are cut at [`MAX_FRAME_PAYLOAD`], half of the 1 MiB carbon accepts.

/// Largest pickle payload carat writes in one frame (carbon refuses frames
/// over 1 MiB by default).
pub const MAX_FRAME_PAYLOAD: usize = 512 * 1024;

const PROTO: u8 = 0x80;
const EMPTY_LIST: u8 = b']';
const MARK: u8 = b'(';
const APPENDS: u8 = b'e';
const STOP: u8 = b'.';
const BINUNICODE: u8 = b'X';
const BININT: u8 = b'J';
const LONG1: u8 = 0x8a;
const BINFLOAT: u8 = b'G';
const TUPLE2: u8 = 0x86;

/// Re-encodes Graphite plaintext `lines` as pickle frames appended to `out`.
/// Returns how many lines were encoded; a line that is not `path value
/// timestamp` is skipped (the agent wrote the lines, so this only guards
/// against a damaged spool).
pub fn frames_from_lines(lines: &[u8], out: &mut Vec<u8>) -> usize {
    let mut encoded = 0;
    encode_frames(lines, out, |frame| encoded += frame.encoded);
    encoded
}

/// One pickle frame as [`encode_frames`] closes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Where the frame ends in the output.
    pub wire_end: usize,
    /// Where the plaintext lines it holds end in the input.
    pub text_end: usize,
    /// Plaintext lines it covers (skipped damaged lines included).
    pub lines: usize,
    /// Lines it encodes.
    pub encoded: usize,
}

/// Encodes `lines` as frames appended to `out`, telling `closed` about
/// each frame as it is finished.
fn encode_frames(lines: &[u8], out: &mut Vec<u8>, mut closed: impl FnMut(Frame)) {
    let mut frame_start = None;
    let (mut covered, mut encoded) = (0, 0);
    let mut at = 0;
    while at < lines.len() {
        let end = lines[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(lines.len(), |i| at + i + 1);
        let line = lines[at..end]
            .strip_suffix(b"\n")
            .unwrap_or(&lines[at..end]);
        at = end;
        if line.is_empty() {
            continue;
        }
        // A damaged line belongs to the frame around it, encoded or not.
        covered += 1;
        let Some((path, value, ts)) = parse_line(line) else {
            continue;
        };
        let start = *frame_start.get_or_insert_with(|| {
            let s = out.len();
            out.extend_from_slice(&[0, 0, 0, 0, PROTO, 2, EMPTY_LIST, MARK]);
            s
        });
        push_metric(out, path, ts, value);
        encoded += 1;
        if out.len() - start < MAX_FRAME_PAYLOAD {
            continue;
        }
        close_frame(out, start);
        frame_start = None;
        closed(Frame {
            wire_end: out.len(),
            text_end: at,
            lines: std::mem::take(&mut covered),
            encoded: std::mem::take(&mut encoded),
        });
    }
    if let Some(start) = frame_start {
        close_frame(out, start);
        closed(Frame {
            wire_end: out.len(),
            text_end: lines.len(),
            lines: covered,
            encoded,
        });
    }
}

/// How much of `lines` carbon has whole when the first `wire_bytes` bytes
/// of their frames arrived: the lines of the complete frames, and the byte
/// of `lines` where they end. Carbon unpickles whole frames only, so a
/// frame cut short counts for nothing.
pub fn acked_prefix(lines: &[u8], wire_bytes: u64) -> (usize, usize) {
    let mut scratch = Vec::new();
    let (mut whole_lines, mut text_end) = (0, 0);
    encode_frames(lines, &mut scratch, |frame| {
        if frame.wire_end as u64 <= wire_bytes {
            whole_lines += frame.lines;
            text_end = frame.text_end;
        }
    });
    (whole_lines, text_end)
}

fn parse_line(line: &[u8]) -> Option<(&[u8], f64, i64)> {
    let text = std::str::from_utf8(line).ok()?;
    let mut fields = text.split(' ');
    let (path, value, ts) = (fields.next()?, fields.next()?, fields.next()?);
    if fields.next().is_some() || path.is_empty() {
        return None;
    }
    Some((path.as_bytes(), value.parse().ok()?, ts.parse().ok()?))
}

fn push_metric(out: &mut Vec<u8>, path: &[u8], ts: i64, value: f64) {
    out.push(BINUNICODE);
    out.extend_from_slice(&(path.len() as u32).to_le_bytes());
    out.extend_from_slice(path);
    match i32::try_from(ts) {
        Ok(small) => {
            out.push(BININT);
            out.extend_from_slice(&small.to_le_bytes());
        }
        Err(_) => {
            out.push(LONG1);
            out.push(8);
            out.extend_from_slice(&ts.to_le_bytes());
        }
    }
    out.push(BINFLOAT);
    out.extend_from_slice(&value.to_be_bytes());
    out.push(TUPLE2);
    out.push(TUPLE2);
}

fn close_frame(out: &mut Vec<u8>, start: usize) {
    out.push(APPENDS);
    out.push(STOP);
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_documented_opcodes() {
        let mut out = Vec::new();
        assert_eq!(frames_from_lines(b"a.b 1.5 1700000000\n", &mut out), 1);
        let len = u32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
        assert_eq!(len, out.len() - 4);
        let mut expected = vec![
            PROTO, 2, EMPTY_LIST, MARK, BINUNICODE, 3, 0, 0, 0, b'a', b'.', b'b', BININT,
        ];
        expected.extend_from_slice(&1_700_000_000i32.to_le_bytes());
        expected.push(BINFLOAT);
        expected.extend_from_slice(&1.5f64.to_be_bytes());
        expected.extend_from_slice(&[TUPLE2, TUPLE2, APPENDS, STOP]);
        assert_eq!(&out[4..], &expected[..]);
    }

    #[test]
    fn splits_large_batches_into_bounded_frames() {
        let lines: String = (0..40_000)
            .map(|i| format!("servers.host.collector.metric_{i} {i}.25 1700000000\n"))
            .collect();
        let mut out = Vec::new();
        assert_eq!(frames_from_lines(lines.as_bytes(), &mut out), 40_000);
        let mut at = 0;
        let mut frames = 0;
        while at < out.len() {
            let len = u32::from_be_bytes(out[at..at + 4].try_into().unwrap()) as usize;
            assert!(len < 1 << 20, "frame of {len} bytes");
            assert_eq!(out[at + 4 + len - 1], STOP);
            at += 4 + len;
            frames += 1;
        }
        assert_eq!(at, out.len());
        assert!(frames > 1);
    }

    #[test]
    fn acked_prefix_counts_whole_frames_only() {
        let lines: String = (0..40_000)
            .map(|i| format!("servers.host.collector.metric_{i} {i}.25 1700000000\n"))
            .collect();
        let mut out = Vec::new();
        frames_from_lines(lines.as_bytes(), &mut out);
        let first_len = u32::from_be_bytes(out[0..4].try_into().unwrap()) as u64 + 4;
        assert_eq!(acked_prefix(lines.as_bytes(), first_len - 1), (0, 0));
        let (n, end) = acked_prefix(lines.as_bytes(), first_len);
        assert!(n > 0 && n < 40_000);
        assert_eq!(lines[..end].lines().count(), n);
        assert!(lines[..end].ends_with('\n'));
        assert_eq!(
            acked_prefix(lines.as_bytes(), out.len() as u64),
            (40_000, lines.len())
        );
    }

    #[test]
    fn skips_damaged_lines() {
        let mut out = Vec::new();
        assert_eq!(
            frames_from_lines(b"ok 1 2\nbroken line\nx y z\n\n", &mut out),
            1
        );
    }
}
