//! The disk spool: where an output's lines go when its memory buffer is full,
//! so an outage longer than memory can hold, or an agent restart during one,
//! loses nothing up to the spool's size bound.
//!
//! The spool is a directory of files `<sequence>.spool`, oldest first. Each
//! file holds records `[len: u32 LE][lines: u32 LE][crc32: u32 LE][payload]`,
//! where the payload is Graphite plaintext lines. Records are appended as
//! whole writes; a crash can leave at most a truncated last record, and a
//! damaged disk a record whose checksum does not match. Both are found when
//! the spool is opened: the readable part of the file is kept, the rest is
//! cut off and its lines are counted as lost.
//!
//! Delivery is at least once: a file is deleted only when all its records
//! were delivered, so records of a file that was being replayed when the
//! agent stopped are sent again on the next start (carbon overwrites the
//! same points).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const HEADER: usize = 12;
/// A file is closed for appending past this size, so delivered data can be
/// deleted in pieces and the size bound is kept in whole files.
const FILE_BYTES: u64 = 4 << 20;

#[derive(Debug)]
struct SpoolFile {
    path: PathBuf,
    bytes: u64,
    lines: usize,
}

/// What opening a spool found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Lines waiting from an earlier run.
    pub lines: usize,
    /// Lines in damaged or truncated records, cut off and lost.
    pub lost: usize,
}

/// A size-bounded, ordered store of line segments on disk.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    files: VecDeque<SpoolFile>,
    /// Read position in the oldest file.
    read_offset: u64,
    /// Lines of the oldest file already delivered.
    read_lines: usize,
    next_seq: u64,
    appender: Option<File>,
    lines: usize,
    /// Records read but not confirmed: (bytes, lines), oldest first.
    unconfirmed: VecDeque<(u64, usize)>,
    /// Where the next unread record is: file index and offset.
    cursor: (usize, u64),
}

/// One record read from the spool.
#[derive(Debug, PartialEq, Eq)]
pub struct Record {
    /// Plaintext lines.
    pub bytes: Vec<u8>,
    /// How many lines.
    pub lines: usize,
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir`, bounded to `max_bytes`,
    /// and checks what an earlier run left there.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<(Spool, OpenReport)> {
        fs::create_dir_all(dir)?;
        let mut names: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let seq = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".spool"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(seq) = seq {
                names.push((seq, path));
            }
        }
        names.sort();
        let mut report = OpenReport::default();
        let mut files = VecDeque::new();
        for (_, path) in &names {
            let (good_bytes, lines, lost) = check_file(path)?;
            report.lost += lost;
            if good_bytes == 0 {
                fs::remove_file(path)?;
                continue;
            }
            if lost > 0 || good_bytes < fs::metadata(path)?.len() {
                // Keep the readable part, cut the damaged tail.
                OpenOptions::new()
                    .write(true)
                    .open(path)?
                    .set_len(good_bytes)?;
            }
            report.lines += lines;
            files.push_back(SpoolFile {
                path: path.clone(),
                bytes: good_bytes,
                lines,
            });
        }
        let next_seq = names.last().map_or(0, |(s, _)| s + 1);
        let spool = Spool {
            dir: dir.to_owned(),
            max_bytes,
            lines: report.lines,
            files,
            read_offset: 0,
            read_lines: 0,
            next_seq,
            appender: None,
            unconfirmed: VecDeque::new(),
            cursor: (0, 0),
        };
        Ok((spool, report))
    }

    /// Lines waiting on disk.
    pub fn len(&self) -> usize {
        self.lines
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }

    /// Appends one segment of `lines` lines. Returns how many lines were
    /// dropped (oldest files first) to stay within the size bound.
    pub fn append(&mut self, payload: &[u8], lines: usize) -> io::Result<usize> {
        let record_bytes = (HEADER + payload.len()) as u64;
        let needs_new_file = match self.files.back() {
            None => true,
            Some(f) => self.appender.is_none() || f.bytes + record_bytes > FILE_BYTES,
        };
        if needs_new_file {
            let path = self.dir.join(format!("{:020}.spool", self.next_seq));
            self.next_seq += 1;
            let file = OpenOptions::new().create(true).append(true).open(&path)?;
            self.appender = Some(file);
            self.files.push_back(SpoolFile {
                path,
                bytes: 0,
                lines: 0,
            });
        }
        let mut record = Vec::with_capacity(HEADER + payload.len());
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&(lines as u32).to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        record.extend_from_slice(payload);
        if let Some(file) = self.appender.as_mut() {
            file.write_all(&record)?;
        }
        if let Some(last) = self.files.back_mut() {
            last.bytes += record_bytes;
            last.lines += lines;
        }
        self.lines += lines;
        let mut dropped = 0;
        while self.bytes() > self.max_bytes && self.files.len() > 1 {
            dropped += self.drop_oldest_file()?;
        }
        Ok(dropped)
    }

    fn drop_oldest_file(&mut self) -> io::Result<usize> {
        let Some(oldest) = self.files.pop_front() else {
            return Ok(0);
        };
        let undelivered = oldest.lines - self.read_lines;
        self.lines -= undelivered;
        self.read_offset = 0;
        self.read_lines = 0;
        if self.cursor.0 == 0 {
            self.cursor = (0, 0);
            self.unconfirmed.clear();
        } else {
            self.cursor.0 -= 1;
        }
        fs::remove_file(&oldest.path)?;
        if self.files.is_empty() {
            self.appender = None;
        }
        Ok(undelivered)
    }

    /// True when records exist after the read cursor.
    pub fn has_unread(&self) -> bool {
        let (file, offset) = self.cursor;
        self.files
            .iter()
            .enumerate()
            .any(|(i, f)| i > file || (i == file && offset < f.bytes))
    }

    /// The next unread record, advancing the read cursor.
    pub fn read_next(&mut self) -> io::Result<Option<Record>> {
        loop {
            let (index, offset) = self.cursor;
            let Some(file) = self.files.get(index) else {
                return Ok(None);
            };
            if offset >= file.bytes {
                if index + 1 >= self.files.len() {
                    return Ok(None);
                }
                self.cursor = (index + 1, 0);
                continue;
            }
            let mut f = File::open(&file.path)?;
            f.seek(SeekFrom::Start(offset))?;
            let mut header = [0u8; HEADER];
            f.read_exact(&mut header)?;
            let (len, lines, crc) = parse_header(&header);
            let mut bytes = vec![0u8; len];
            f.read_exact(&mut bytes)?;
            if crc32fast::hash(&bytes) != crc {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "spool file {} damaged after it was checked",
                        file.path.display()
                    ),
                ));
            }
            let size = (HEADER + len) as u64;
            self.cursor.1 += size;
            self.unconfirmed.push_back((size, lines));
            return Ok(Some(Record { bytes, lines }));
        }
    }

    /// The oldest read-but-unconfirmed record was delivered.
    pub fn confirm_oldest(&mut self) -> io::Result<()> {
        let Some((size, lines)) = self.unconfirmed.pop_front() else {
            return Ok(());
        };
        if self
            .files
            .front()
            .is_some_and(|f| self.read_offset >= f.bytes)
        {
            self.drop_oldest_file()?;
        }
        self.read_offset += size;
        self.read_lines += lines;
        self.lines -= lines;
        let done = self.files.len() > 1
            && self
                .files
                .front()
                .is_some_and(|f| self.read_offset >= f.bytes);
        if done {
            self.drop_oldest_file()?;
        }
        Ok(())
    }

    /// Every read-but-unconfirmed record becomes unread again.
    pub fn rewind(&mut self) {
        self.unconfirmed.clear();
        self.cursor = (0, self.read_offset);
    }

    /// Lines lost since the last call (none in this version).
    pub fn take_lost(&mut self) -> usize {
        0
    }

    /// Reads the oldest undelivered record, if any.
    pub fn front(&mut self) -> io::Result<Option<Record>> {
        loop {
            let Some(file) = self.files.front() else {
                return Ok(None);
            };
            if self.read_offset >= file.bytes {
                if self.files.len() == 1 {
                    return Ok(None);
                }
                // Fully delivered and no longer appended to.
                self.drop_oldest_file()?;
                continue;
            }
            let mut f = File::open(&file.path)?;
            f.seek(SeekFrom::Start(self.read_offset))?;
            let mut header = [0u8; HEADER];
            f.read_exact(&mut header)?;
            let (len, lines, crc) = parse_header(&header);
            let mut bytes = vec![0u8; len];
            f.read_exact(&mut bytes)?;
            if crc32fast::hash(&bytes) != crc {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "spool file {} damaged after it was checked",
                        file.path.display()
                    ),
                ));
            }
            return Ok(Some(Record { bytes, lines }));
        }
    }

    /// Marks the record returned by [`Spool::front`] as delivered.
    pub fn pop_front(&mut self, record: &Record) -> io::Result<()> {
        self.read_offset += (HEADER + record.bytes.len()) as u64;
        self.read_lines += record.lines;
        self.lines -= record.lines;
        let done = self
            .files
            .front()
            .is_some_and(|f| self.read_offset >= f.bytes);
        if done {
            self.drop_oldest_file()?;
        }
        Ok(())
    }
}

fn parse_header(h: &[u8; HEADER]) -> (usize, usize, u32) {
    let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    (word(0) as usize, word(4) as usize, word(8))
}

/// Walks a spool file's records: returns the length of its readable prefix,
/// the lines in it, and the lines lost after it (counted as newlines in the
/// unreadable rest, which is the best count available).
fn check_file(path: &Path) -> io::Result<(u64, usize, usize)> {
    let data = fs::read(path)?;
    let mut offset = 0usize;
    let mut lines = 0usize;
    while offset < data.len() {
        let Some(header) = data.get(offset..offset + HEADER) else {
            break;
        };
        let mut h = [0u8; HEADER];
        h.copy_from_slice(header);
        let (len, n, crc) = parse_header(&h);
        let Some(payload) = data.get(offset + HEADER..offset + HEADER + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        offset += HEADER + len;
        lines += n;
    }
    let lost = data
        .get(offset..)
        .map_or(0, |rest| rest.iter().filter(|&&b| b == b'\n').count());
    Ok((offset as u64, lines, lost))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(from: usize, n: usize) -> Vec<u8> {
        (from..from + n)
            .map(|i| format!("m {i} 1\n"))
            .collect::<String>()
            .into_bytes()
    }

    fn drain(spool: &mut Spool) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(r) = spool.front().unwrap() {
            out.extend_from_slice(&r.bytes);
            spool.pop_front(&r).unwrap();
        }
        out
    }

    #[test]
    fn replays_in_order_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, report) = Spool::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(report, OpenReport::default());
        s.append(&lines(0, 10), 10).unwrap();
        s.append(&lines(10, 5), 5).unwrap();
        // Deliver the first record, then "restart".
        let first = s.front().unwrap().unwrap();
        s.pop_front(&first).unwrap();
        drop(s);
        let (mut s, report) = Spool::open(dir.path(), 1 << 30).unwrap();
        // At least once: the undelivered file is replayed from its start.
        assert_eq!(report.lines, 15);
        assert_eq!(drain(&mut s), [lines(0, 10), lines(10, 5)].concat());
        assert!(s.is_empty());
    }

    #[test]
    fn truncated_and_corrupt_tails_are_cut_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(dir.path(), 1 << 30).unwrap();
        s.append(&lines(0, 3), 3).unwrap();
        s.append(&lines(3, 4), 4).unwrap();
        drop(s);
        let file = fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut data = fs::read(&file).unwrap();
        let full = data.len();
        // Flip a byte in the second record's payload: checksum mismatch.
        data[full - 3] ^= 0xff;
        fs::write(&file, &data).unwrap();
        let (mut s, report) = Spool::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(report, OpenReport { lines: 3, lost: 4 });
        assert_eq!(drain(&mut s), lines(0, 3));

        // A record cut in the middle (crash during a write).
        let (mut s, _) = Spool::open(dir.path(), 1 << 30).unwrap();
        s.append(&lines(10, 2), 2).unwrap();
        s.append(&lines(12, 6), 6).unwrap();
        drop(s);
        let mut newest: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        newest.sort();
        let file = newest.last().unwrap();
        let len = fs::metadata(file).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(file)
            .unwrap()
            .set_len(len - 20)
            .unwrap();
        let (mut s, report) = Spool::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(report.lines, 2);
        assert!(report.lost >= 3 && report.lost <= 6, "{report:?}");
        assert_eq!(drain(&mut s), lines(10, 2));
    }

    #[test]
    fn size_bound_drops_oldest_files_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        // Records of ~1 MiB; files close at 4 MiB; bound 9 MiB.
        let (mut s, _) = Spool::open(dir.path(), 9 << 20).unwrap();
        let big = vec![b'x'; (1 << 20) - 1]
            .into_iter()
            .chain(std::iter::once(b'\n'))
            .collect::<Vec<u8>>();
        let mut dropped = 0;
        for _ in 0..20 {
            dropped += s.append(&big, 1).unwrap();
        }
        assert!(s.bytes() <= 9 << 20, "{}", s.bytes());
        assert_eq!(dropped + s.len(), 20);
        assert!(dropped >= 8);
    }
}
