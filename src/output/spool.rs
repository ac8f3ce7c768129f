//! The disk spool: where an output's lines go when its memory buffer is full,
//! so an outage longer than memory can hold, or an agent restart during one,
//! loses nothing up to the spool's size bound.
//!
//! # On disk
//!
//! The spool is a directory of files `<sequence>.spool` (the sequence number
//! zero-padded to 20 digits), oldest first. Each file is a run of records:
//!
//! | bytes    | field                                                        |
//! |----------|--------------------------------------------------------------|
//! | 0..4     | magic `F9 43 53 50` (`\xF9CSP`)                              |
//! | 4..8     | `len`: payload bytes, u32 little-endian, 1 to [`MAX_PAYLOAD`] |
//! | 8..12    | `lines`: lines in the payload, u32 little-endian             |
//! | 12..16   | CRC-32 (IEEE) of bytes 0..12 followed by the payload, u32 LE |
//! | 16..16+len | payload: Graphite plaintext lines, each ending in `\n`     |
//!
//! A record is valid when its magic is there, `len` is within bounds, the
//! checksum (which covers `len` and `lines` as well as the payload) matches,
//! the payload ends in `\n` and `lines` is the number of `\n` in it. The
//! magic's first byte, 0xF9, is not ASCII (nor anywhere in UTF-8), so it
//! never occurs in a payload: after a damaged record the spool resynchronises
//! at the next magic that starts a valid record, and only the damaged record
//! is lost. Records are appended as whole writes; a crash can leave at most
//! a truncated last record.
//!
//! Damage is found both when the spool is opened and when a record is read
//! later. When opening, a damaged record's lines are counted as the newlines
//! in the skipped bytes (the best count available; the header fields of
//! recognisable records are left out), its bytes are overwritten with zeros
//! (so the next start does not count them again) and a damaged tail is cut
//! off. While running the count is exact: the spool knows how many lines each
//! file holds, and what was not read from a file when its end is reached was
//! in damaged records ([`Spool::take_lost`]).
//!
//! Files of the first format (records without the magic and with a checksum
//! of the payload only) are found damaged and counted as lost: carat was not
//! released with that format.
//!
//! # Delivery
//!
//! Reading and confirming are separate, so a record can stay *in flight*
//! (read, not yet acknowledged by the receiver): [`Spool::read_next`] returns
//! the next unread record and advances the read cursor,
//! [`Spool::confirm_oldest`] marks the oldest in-flight record delivered, and
//! [`Spool::rewind`] makes every in-flight record unread again after a
//! connection failed. A file is deleted once all its records are confirmed
//! and it is no longer appended to.
//!
//! Delivery is at least once: records of a file that was being replayed when
//! the agent stopped (confirmed or not) are sent again on the next start,
//! at most one file ([`FILE_BYTES`]) of them; carbon overwrites the same
//! points.
//!
//! # Accounting
//!
//! Every line appended (or found at open) is, at any time, exactly one of:
//! confirmed; returned as dropped by [`Spool::append`] (the size bound);
//! returned by [`Spool::take_lost`] (or counted in [`OpenReport::lost`]); or
//! still counted in [`Spool::len`], which includes the in-flight lines.
//!
//! The size bound drops the oldest files, whatever their state. Their unread
//! lines are returned as dropped by `append`; their in-flight lines stay
//! counted in `len` until confirmed (then they were delivered) or rewound
//! (then they cannot be read again and are counted by `take_lost`).
//!
//! # Faults
//!
//! A spool file deleted while the agent runs (an operator cleaning up, a
//! tmpfiles rule, the whole directory removed) is noticed before the next
//! append to it (its link count is zero) and before the next read of it (it
//! cannot be opened, or its link count is zero): its lines that were neither
//! confirmed nor in flight are counted by `take_lost`, an error naming the
//! file and the count is logged, and appends go on in a new file (the
//! directory is created again if needed). A file that cannot be read for
//! another reason is given up the same way.
//!
//! Sequence numbers never wrap: when the newest file found at open is past
//! half the range, the files are renumbered from 0 in order.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The first bytes of every record. 0xF9 is not ASCII, so the magic never
/// occurs in a payload of Graphite plaintext lines.
pub const MAGIC: [u8; 4] = [0xF9, b'C', b'S', b'P'];
/// Bytes of a record's header: magic, `len`, `lines`, checksum.
pub const HEADER_BYTES: usize = 16;
/// The largest payload of one record; longer appends are split at line
/// boundaries, and a longer `len` marks a record as damaged.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// A file is closed for appending past this size (or an eighth of the size
/// bound, when that is smaller), so delivered data is deleted in pieces and
/// the size bound is kept in whole files.
pub const FILE_BYTES: u64 = 4 << 20;
/// The smallest size at which a file is closed for appending.
const MIN_FILE_BYTES: u64 = 64 << 10;
/// Files are renumbered at open when the newest number is above this.
const RENUMBER_ABOVE: u64 = u64::MAX / 2;
/// The read buffer.
const READ_BUFFER: usize = 64 << 10;

/// What opening a spool found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Lines waiting from an earlier run.
    pub lines: usize,
    /// Lines in damaged or truncated records, skipped and lost.
    pub lost: usize,
}

/// One record read from the spool.
#[derive(Debug, PartialEq, Eq)]
pub struct Record {
    /// Plaintext lines, each ending in `\n`.
    pub bytes: Vec<u8>,
    /// How many lines.
    pub lines: usize,
}

#[derive(Debug)]
struct SpoolFile {
    seq: u64,
    path: PathBuf,
    /// Bytes of the records written to it: the reader stops here.
    bytes: u64,
    /// Its lines still counted in [`Spool::len`]: neither confirmed nor lost.
    lines: usize,
    /// Of those, the lines in flight (read, not confirmed).
    in_flight: usize,
}

impl SpoolFile {
    fn unread(&self) -> usize {
        self.lines - self.in_flight
    }
}

/// A record read and not yet confirmed.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    seq: u64,
    start: u64,
    lines: usize,
}

/// The open handle of the file being appended to.
#[derive(Debug)]
struct Appender {
    seq: u64,
    file: File,
}

/// The open handle of the file being read, and where it stands.
#[derive(Debug)]
struct Reader {
    seq: u64,
    file: BufReader<File>,
    pos: u64,
}

/// What the reader found at the cursor.
enum Step {
    /// A valid record, and where the next one starts.
    Record(Record, u64),
    /// A damaged region: reading resumes at `to`; the first `zero` bytes
    /// from the cursor are not yet zeros on disk.
    Skip { to: u64, zero: u64 },
}

/// A size-bounded, ordered store of line segments on disk.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    file_limit: u64,
    /// Oldest first, by sequence number.
    files: VecDeque<SpoolFile>,
    /// Sum of the files' `bytes`.
    bytes: u64,
    /// Lines neither confirmed, dropped nor lost (in flight included).
    lines: usize,
    /// Read, not confirmed, oldest first.
    in_flight: VecDeque<InFlight>,
    in_flight_lines: usize,
    /// Sequence number and offset of the next read. When no file has that
    /// number, reading goes on at the start of the next file.
    cursor: (u64, u64),
    reader: Option<Reader>,
    appender: Option<Appender>,
    next_seq: u64,
    /// Lines lost since the last [`Spool::take_lost`].
    lost: usize,
    scratch: Vec<u8>,
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir`, bounded to `max_bytes`,
    /// and checks what an earlier run left there: damaged records are
    /// skipped, zeroed and counted as lost, a damaged tail is cut, files
    /// without a valid record are deleted.
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
        let duplicate = names.windows(2).any(|w| w[0].0 == w[1].0);
        if duplicate || names.last().is_some_and(|(s, _)| *s > RENUMBER_ABOVE) {
            renumber(dir, &mut names)?;
        }
        let mut report = OpenReport::default();
        let mut files = VecDeque::new();
        let mut bytes = 0;
        for (seq, path) in &names {
            let data = match fs::read(path) {
                Ok(data) => data,
                Err(e) => {
                    // Left in place for the next start; its lines are unknown.
                    tracing::error!(
                        "cannot read the spool file {}: {e}; skipped",
                        path.display()
                    );
                    continue;
                }
            };
            let scan = scan(&data);
            report.lost += scan.lost;
            if scan.lost > 0 {
                tracing::error!(
                    "spool file {}: {} damaged region(s) skipped, {} metrics in them lost",
                    path.display(),
                    scan.damaged.len(),
                    scan.lost
                );
            }
            if scan.lines == 0 {
                delete(path);
                continue;
            }
            if let Err(e) = repair(path, &data, &scan) {
                // Readers skip the damage all the same; only a later start
                // would count it again.
                tracing::warn!("cannot repair the spool file {}: {e}", path.display());
            }
            report.lines += scan.lines;
            bytes += scan.valid_end as u64;
            files.push_back(SpoolFile {
                seq: *seq,
                path: path.clone(),
                bytes: scan.valid_end as u64,
                lines: scan.lines,
                in_flight: 0,
            });
        }
        let next_seq = names.last().map_or(0, |(s, _)| s.saturating_add(1));
        let spool = Spool {
            dir: dir.to_owned(),
            max_bytes,
            file_limit: (max_bytes / 8).clamp(MIN_FILE_BYTES, FILE_BYTES),
            cursor: (files.front().map_or(0, |f| f.seq), 0),
            files,
            bytes,
            lines: report.lines,
            in_flight: VecDeque::new(),
            in_flight_lines: 0,
            reader: None,
            appender: None,
            next_seq,
            lost: 0,
            scratch: Vec::new(),
        };
        Ok((spool, report))
    }

    /// Lines on disk not yet confirmed delivered (in flight included).
    pub fn len(&self) -> usize {
        self.lines
    }

    /// True when nothing waits, in flight or not.
    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// Bytes of the spool files.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// True when lines wait after the read cursor ([`Spool::read_next`] has
    /// something to return, or damage or a deleted file to count).
    pub fn has_unread(&self) -> bool {
        self.lines > self.in_flight_lines
    }

    /// Lines lost since the last call: in damaged records found while
    /// reading, in files deleted underneath the spool, or in flight when
    /// [`Spool::rewind`] found their file gone. The caller counts them as
    /// dropped.
    pub fn take_lost(&mut self) -> usize {
        std::mem::take(&mut self.lost)
    }

    /// Appends `payload`, `lines` Graphite lines each ending in `\n`, as one
    /// or more records (a record holds at most [`MAX_PAYLOAD`] bytes). Returns
    /// how many unread lines were dropped, oldest files first, to stay within
    /// the size bound. When the file being appended to was deleted, a new one
    /// is started and the deleted file's lines are counted by
    /// [`Spool::take_lost`].
    ///
    /// On an error nothing of `payload` is counted in the spool (a partly
    /// written record is skipped as damage when read) and the next append
    /// starts a new file.
    pub fn append(&mut self, payload: &[u8], lines: usize) -> io::Result<usize> {
        if payload.is_empty() && lines == 0 {
            return Ok(0);
        }
        self.scratch.clear();
        let mut rest = payload;
        let mut counted = 0;
        while !rest.is_empty() {
            let cut = if rest.len() <= MAX_PAYLOAD {
                rest.len()
            } else {
                match rest[..MAX_PAYLOAD].iter().rposition(|&b| b == b'\n') {
                    Some(i) => i + 1,
                    None => return Err(invalid("a line is longer than a spool record")),
                }
            };
            let (chunk, tail) = rest.split_at(cut);
            let n = count_lines(chunk);
            encode_record(&mut self.scratch, chunk, n);
            counted += n;
            rest = tail;
        }
        if counted != lines || payload.last() != Some(&b'\n') {
            return Err(invalid(
                "a spool payload must be whole lines, as many as counted",
            ));
        }
        let size = self.scratch.len() as u64;
        let seq = self.prepare_target(size)?;
        let written = match self.appender.as_mut() {
            Some(a) => a
                .file
                .write_all(&self.scratch)
                .map_err(|e| (e, a.file.metadata())),
            None => return Err(io::Error::other("no spool file to append to")),
        };
        let Some(idx) = self.index_of(seq) else {
            return Err(io::Error::other(
                "the spool file being appended to is not known",
            ));
        };
        if let Err((e, metadata)) = written {
            // Readers must see whatever part was written, to skip it.
            if let Ok(m) = metadata {
                let f = &mut self.files[idx];
                if m.len() > f.bytes {
                    self.bytes += m.len() - f.bytes;
                    f.bytes = m.len();
                }
            }
            self.appender = None;
            self.retire_if_done(seq);
            return Err(e);
        }
        let f = &mut self.files[idx];
        f.bytes += size;
        f.lines += lines;
        self.bytes += size;
        self.lines += lines;
        let mut dropped = 0;
        while self.bytes > self.max_bytes && self.files.len() > 1 {
            dropped += self.drop_oldest();
        }
        Ok(dropped)
    }

    /// The next unread record, oldest first, advancing the read cursor; the
    /// record is then in flight until [`Spool::confirm_oldest`] or
    /// [`Spool::rewind`]. Damaged records are skipped, and files deleted
    /// underneath (or unreadable) are given up; their lines are counted by
    /// [`Spool::take_lost`]. `None` when nothing is unread.
    pub fn read_next(&mut self) -> io::Result<Option<Record>> {
        loop {
            let Some(idx) = self.cursor_index() else {
                return Ok(None);
            };
            let (seq, end) = (self.files[idx].seq, self.files[idx].bytes);
            if self.cursor.1 >= end {
                self.settle(idx);
                if self.is_target(seq) {
                    return Ok(None);
                }
                self.retire_if_done(seq);
                match seq.checked_add(1) {
                    Some(next) => self.cursor = (next, 0),
                    None => return Ok(None),
                }
                continue;
            }
            match self.read_step(idx) {
                Ok(Step::Record(record, next)) => {
                    let f = &mut self.files[idx];
                    if record.lines > f.unread() {
                        // Lines the spool did not know of (someone wrote
                        // into the file): count them as found.
                        let extra = record.lines - f.unread();
                        f.lines += extra;
                        self.lines += extra;
                    }
                    f.in_flight += record.lines;
                    self.in_flight_lines += record.lines;
                    self.in_flight.push_back(InFlight {
                        seq,
                        start: self.cursor.1,
                        lines: record.lines,
                    });
                    self.cursor.1 = next;
                    return Ok(Some(record));
                }
                Ok(Step::Skip { to, zero }) => {
                    let from = self.cursor.1;
                    if zero > 0 {
                        // So that the next start does not count it again.
                        let _ = zero_region(&self.files[idx].path, from, zero);
                    }
                    self.cursor.1 = to;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.give_up(idx, "was deleted");
                }
                Err(e) => {
                    let path = self.files[idx].path.clone();
                    self.give_up(idx, &format!("cannot be read ({e})"));
                    let _ = fs::remove_file(path);
                }
            }
        }
    }

    /// The oldest in-flight record was delivered. Its file is deleted once
    /// all its records are confirmed and it is no longer appended to.
    pub fn confirm_oldest(&mut self) -> io::Result<()> {
        let Some(done) = self.in_flight.pop_front() else {
            return Ok(());
        };
        self.in_flight_lines -= done.lines;
        self.lines -= done.lines;
        if let Some(idx) = self.index_of(done.seq) {
            let f = &mut self.files[idx];
            f.in_flight -= done.lines;
            f.lines -= done.lines;
            self.retire_if_done(done.seq);
        }
        Ok(())
    }

    /// The connection failed: every in-flight record becomes unread again,
    /// to be returned by [`Spool::read_next`] in the same order. In-flight
    /// records whose file is gone (dropped by the size bound, or deleted)
    /// cannot be read again: their lines are counted by
    /// [`Spool::take_lost`].
    pub fn rewind(&mut self) {
        let Some(oldest) = self.in_flight.front() else {
            return;
        };
        self.cursor = (oldest.seq, oldest.start);
        let mut gone = 0;
        while let Some(record) = self.in_flight.pop_front() {
            self.in_flight_lines -= record.lines;
            match self.index_of(record.seq) {
                Some(idx) => self.files[idx].in_flight -= record.lines,
                None => gone += record.lines,
            }
        }
        if gone > 0 {
            self.lines -= gone;
            self.lost += gone;
            tracing::error!(
                "{gone} metrics read from the spool {} were not delivered and their file is gone \
                 (size bound or deleted): counted as dropped",
                self.dir.display()
            );
        }
    }

    /// The file to append `size` bytes to (a new one when the current one
    /// was deleted or is full); returns its sequence number.
    fn prepare_target(&mut self, size: u64) -> io::Result<u64> {
        if let Some(a) = &self.appender {
            let seq = a.seq;
            let deleted = a.file.metadata().is_ok_and(|m| m.nlink() == 0);
            match self.index_of(seq) {
                Some(idx) if deleted => self.give_up(idx, "was deleted while being appended to"),
                Some(idx) => {
                    let f = &self.files[idx];
                    if f.bytes > 0 && f.bytes + size > self.file_limit {
                        self.appender = None;
                        self.retire_if_done(seq);
                    }
                }
                None => self.appender = None,
            }
        }
        if let Some(a) = &self.appender {
            return Ok(a.seq);
        }
        // The directory may have been removed with the files.
        fs::create_dir_all(&self.dir)?;
        loop {
            let seq = self.next_seq;
            self.next_seq = seq
                .checked_add(1)
                .ok_or_else(|| io::Error::other("spool file numbers exhausted"))?;
            let path = self.dir.join(format!("{seq:020}.spool"));
            match OpenOptions::new().append(true).create_new(true).open(&path) {
                Ok(file) => {
                    self.files.push_back(SpoolFile {
                        seq,
                        path,
                        bytes: 0,
                        lines: 0,
                        in_flight: 0,
                    });
                    self.appender = Some(Appender { seq, file });
                    return Ok(seq);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads at the cursor in file `idx`, through the kept read handle.
    fn read_step(&mut self, idx: usize) -> io::Result<Step> {
        let f = &self.files[idx];
        let mut reader = match self.reader.take() {
            Some(r) if r.seq == f.seq => r,
            _ => Reader {
                seq: f.seq,
                file: BufReader::with_capacity(READ_BUFFER, File::open(&f.path)?),
                pos: 0,
            },
        };
        if reader.file.get_ref().metadata()?.nlink() == 0 {
            return Err(io::Error::new(io::ErrorKind::NotFound, "deleted"));
        }
        let step = reader.step(self.cursor.1, f.bytes)?;
        self.reader = Some(reader);
        Ok(step)
    }

    /// The cursor's file, moving the cursor to the start of the next file
    /// when its own is gone.
    fn cursor_index(&mut self) -> Option<usize> {
        let idx = self.files.partition_point(|f| f.seq < self.cursor.0);
        let f = self.files.get(idx)?;
        if f.seq != self.cursor.0 {
            self.cursor = (f.seq, 0);
        }
        Some(idx)
    }

    /// The reader reached the end of file `idx`: what it did not read from
    /// it (neither in flight nor confirmed) was in damaged records.
    fn settle(&mut self, idx: usize) {
        let f = &mut self.files[idx];
        let lost = f.unread();
        if lost > 0 {
            f.lines -= lost;
            self.lines -= lost;
            self.lost += lost;
            tracing::error!(
                "spool file {}: {lost} metrics in damaged records lost",
                f.path.display()
            );
        }
    }

    /// File `idx` is gone or unreadable: its unread lines are lost; its
    /// in-flight ones stay counted until confirmed or rewound.
    fn give_up(&mut self, idx: usize, why: &str) {
        let Some(f) = self.remove_at(idx) else {
            return;
        };
        let lost = f.unread();
        self.lines -= lost;
        self.lost += lost;
        tracing::error!(
            "spool file {} {why}: {lost} metrics in it not delivered, counted as dropped",
            f.path.display()
        );
    }

    /// Drops the oldest file for the size bound; returns its unread lines.
    fn drop_oldest(&mut self) -> usize {
        let Some(f) = self.remove_at(0) else {
            return 0;
        };
        let dropped = f.unread();
        self.lines -= dropped;
        delete(&f.path);
        dropped
    }

    /// Deletes file `seq` when nothing in it waits and it is not appended to.
    fn retire_if_done(&mut self, seq: u64) {
        if self.is_target(seq) {
            return;
        }
        if let Some(idx) = self.index_of(seq) {
            if self.files[idx].lines == 0 {
                if let Some(f) = self.remove_at(idx) {
                    delete(&f.path);
                }
            }
        }
    }

    /// Forgets file `idx` and the handles on it.
    fn remove_at(&mut self, idx: usize) -> Option<SpoolFile> {
        let f = self.files.remove(idx)?;
        self.bytes -= f.bytes;
        if self.reader.as_ref().is_some_and(|r| r.seq == f.seq) {
            self.reader = None;
        }
        if self.is_target(f.seq) {
            self.appender = None;
        }
        Some(f)
    }

    fn index_of(&self, seq: u64) -> Option<usize> {
        self.files.binary_search_by_key(&seq, |f| f.seq).ok()
    }

    fn is_target(&self, seq: u64) -> bool {
        self.appender.as_ref().is_some_and(|a| a.seq == seq)
    }
}

impl Reader {
    /// The record at `offset`, or the damaged region there; `end` is where
    /// the file's records end.
    fn step(&mut self, offset: u64, end: u64) -> io::Result<Step> {
        self.seek(offset)?;
        let mut head = [0u8; HEADER_BYTES];
        if end - offset < HEADER_BYTES as u64 || !self.read_exact(&mut head)? {
            return self.resync(offset, end);
        }
        let Some(header) = decode_header(&head) else {
            return self.resync(offset, end);
        };
        let next = offset + (HEADER_BYTES + header.len) as u64;
        if next > end {
            return self.resync(offset, end);
        }
        let mut payload = vec![0u8; header.len];
        if !self.read_exact(&mut payload)? || !payload_matches(&head, &header, &payload) {
            return self.resync(offset, end);
        }
        Ok(Step::Record(
            Record {
                bytes: payload,
                lines: header.lines,
            },
            next,
        ))
    }

    /// Finds the next valid record after the damaged one at `offset`.
    fn resync(&mut self, offset: u64, end: u64) -> io::Result<Step> {
        self.seek(offset)?;
        let mut data = Vec::new();
        let read = Read::by_ref(&mut self.file)
            .take(end - offset)
            .read_to_end(&mut data);
        self.pos = offset + data.len() as u64;
        read?;
        let skip = find_record(&data, 1).unwrap_or(data.len());
        let zero = if data[..skip].iter().all(|&b| b == 0) {
            0
        } else {
            skip as u64
        };
        let to = if skip < data.len() {
            offset + skip as u64
        } else {
            end
        };
        Ok(Step::Skip { to, zero })
    }

    fn seek(&mut self, pos: u64) -> io::Result<()> {
        if self.pos != pos {
            self.pos = u64::MAX;
            self.file.seek(SeekFrom::Start(pos))?;
            self.pos = pos;
        }
        Ok(())
    }

    /// Fills `buf`; false when the file ends first.
    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        match self.file.read_exact(buf) {
            Ok(()) => {
                self.pos += buf.len() as u64;
                Ok(true)
            }
            Err(e) => {
                self.pos = u64::MAX;
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what)
}

/// Deletes a file the spool is done with; one already gone is fine.
fn delete(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!("cannot delete the spool file {}: {e}", path.display());
        }
    }
}

/// Renames the files to 0, 1, … in their order. Never collides: the n-th
/// file's number is at least n, and the files before it already moved below.
fn renumber(dir: &Path, names: &mut [(u64, PathBuf)]) -> io::Result<()> {
    tracing::info!("renumbering the spool files in {} from 0", dir.display());
    for (i, (seq, path)) in names.iter_mut().enumerate() {
        let i = i as u64;
        let to = dir.join(format!("{i:020}.spool"));
        if *path != to {
            fs::rename(&*path, &to)?;
        }
        *seq = i;
        *path = to;
    }
    Ok(())
}

struct Header {
    len: usize,
    lines: usize,
    crc: u32,
}

/// Appends a record of `payload` to `out`.
fn encode_record(out: &mut Vec<u8>, payload: &[u8], lines: usize) {
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&(lines as u32).to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out[start..]);
    crc.update(payload);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(payload);
}

/// The header at the start of `head`, if it can be one: the magic, a length
/// within bounds, at least one line and no more lines than bytes.
fn decode_header(head: &[u8]) -> Option<Header> {
    let h = head.get(..HEADER_BYTES)?;
    if h[..4] != MAGIC {
        return None;
    }
    let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let (len, lines) = (word(4) as usize, word(8) as usize);
    ((1..=MAX_PAYLOAD).contains(&len) && (1..=len).contains(&lines)).then_some(Header {
        len,
        lines,
        crc: word(12),
    })
}

/// True when `payload` is what the header `head` describes.
fn payload_matches(head: &[u8], header: &Header, payload: &[u8]) -> bool {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head[..12]);
    crc.update(payload);
    crc.finalize() == header.crc
        && payload.last() == Some(&b'\n')
        && count_lines(payload) == header.lines
}

fn count_lines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b == b'\n').count()
}

/// The valid record starting at `pos` in `data`: its end and lines.
fn record_at(data: &[u8], pos: usize) -> Option<(usize, usize)> {
    let head = data.get(pos..)?;
    let header = decode_header(head)?;
    let end = pos + HEADER_BYTES + header.len;
    let payload = data.get(pos + HEADER_BYTES..end)?;
    payload_matches(head, &header, payload).then_some((end, header.lines))
}

/// Where the first valid record at or after `from` starts.
fn find_record(data: &[u8], from: usize) -> Option<usize> {
    let mut pos = from;
    loop {
        let at = pos + data.get(pos..)?.iter().position(|&b| b == MAGIC[0])?;
        if record_at(data, at).is_some() {
            return Some(at);
        }
        pos = at + 1;
    }
}

/// The lines a damaged region held, as well as can be told: its newlines,
/// leaving out the header fields after any magic in it.
fn estimate_lines(region: &[u8]) -> usize {
    let (mut lines, mut i) = (0, 0);
    while let Some(rest) = region.get(i..).filter(|r| !r.is_empty()) {
        if rest.starts_with(&MAGIC) {
            i += HEADER_BYTES;
            continue;
        }
        if rest[0] == b'\n' {
            lines += 1;
        }
        i += 1;
    }
    lines
}

/// What a file holds, as found at open.
#[derive(Debug, Default)]
struct Scan {
    /// Lines in valid records.
    lines: usize,
    /// End of the last valid record.
    valid_end: usize,
    /// Damaged regions, start and end.
    damaged: Vec<(usize, usize)>,
    /// Lines estimated in the damaged regions.
    lost: usize,
}

fn scan(data: &[u8]) -> Scan {
    let mut s = Scan::default();
    let mut pos = 0;
    while pos < data.len() {
        if let Some((end, lines)) = record_at(data, pos) {
            s.lines += lines;
            s.valid_end = end;
            pos = end;
            continue;
        }
        let next = find_record(data, pos + 1).unwrap_or(data.len());
        s.lost += data.get(pos..next).map_or(0, estimate_lines);
        s.damaged.push((pos, next));
        pos = next;
    }
    s
}

/// Zeroes the damaged regions between valid records and cuts a damaged tail,
/// so that the next open finds no damage to count again.
fn repair(path: &Path, data: &[u8], scan: &Scan) -> io::Result<()> {
    if scan.damaged.is_empty() {
        return Ok(());
    }
    let file = OpenOptions::new().write(true).open(path)?;
    for &(start, end) in &scan.damaged {
        let zeroed = data
            .get(start..end)
            .is_none_or(|r| r.iter().all(|&b| b == 0));
        if end <= scan.valid_end && !zeroed {
            file.write_all_at(&vec![0; end - start], start as u64)?;
        }
    }
    if scan.valid_end < data.len() {
        file.set_len(scan.valid_end as u64)?;
    }
    Ok(())
}

/// Overwrites `len` bytes at `offset` with zeros.
fn zero_region(path: &Path, offset: u64, len: u64) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    let zeros = vec![0u8; usize::try_from(len).map_err(io::Error::other)?];
    file.write_all_at(&zeros, offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` lines numbered from `from`.
    fn lines(from: usize, n: usize) -> Vec<u8> {
        (from..from + n)
            .map(|i| format!("m.{i} 1 1\n"))
            .collect::<String>()
            .into_bytes()
    }

    /// Reads and confirms everything.
    fn drain(spool: &mut Spool) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(r) = spool.read_next().unwrap() {
            out.extend_from_slice(&r.bytes);
            spool.confirm_oldest().unwrap();
        }
        out
    }

    fn open(dir: &Path) -> (Spool, OpenReport) {
        Spool::open(dir, 1 << 30).unwrap()
    }

    /// The files in `dir`, sorted; none when it does not exist.
    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .into_iter()
            .flatten()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        names
    }

    /// Appends records `0..count`, record `i` of `sizes(i)` lines, numbered
    /// on; returns each record's offset and lines (one file).
    fn append_records(
        s: &mut Spool,
        count: usize,
        sizes: impl Fn(usize) -> usize,
    ) -> Vec<(u64, Vec<u8>)> {
        let mut next = 0;
        (0..count)
            .map(|i| {
                let at = s.bytes();
                let payload = lines(next, sizes(i));
                next += sizes(i);
                assert_eq!(s.append(&payload, sizes(i)).unwrap(), 0);
                (at, payload)
            })
            .collect()
    }

    fn xor_at(path: &Path, offset: u64, mask: u8) {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let mut b = [0u8];
        file.read_exact_at(&mut b, offset).unwrap();
        file.write_all_at(&[b[0] ^ mask], offset).unwrap();
    }

    fn write_u32_at(path: &Path, offset: u64, value: u32) {
        let file = OpenOptions::new().write(true).open(path).unwrap();
        file.write_all_at(&value.to_le_bytes(), offset).unwrap();
    }

    /// Every record's payload but those listed.
    fn all_but(records: &[(u64, Vec<u8>)], skip: &[usize]) -> Vec<u8> {
        records
            .iter()
            .enumerate()
            .filter(|(i, _)| !skip.contains(i))
            .flat_map(|(_, (_, p))| p.clone())
            .collect()
    }

    #[test]
    fn replays_in_order_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, report) = open(dir.path());
        assert_eq!(report, OpenReport::default());
        s.append(&lines(0, 10), 10).unwrap();
        s.append(&lines(10, 5), 5).unwrap();
        // Deliver the first record, then "restart".
        assert_eq!(s.read_next().unwrap().unwrap().bytes, lines(0, 10));
        s.confirm_oldest().unwrap();
        assert_eq!(s.len(), 5);
        drop(s);
        let (mut s, report) = open(dir.path());
        // At least once: the file not wholly delivered is replayed from its
        // start.
        assert_eq!(report, OpenReport { lines: 15, lost: 0 });
        assert_eq!(drain(&mut s), lines(0, 15));
        assert!(s.is_empty());
        assert!(files(dir.path()).is_empty(), "delivered files are deleted");
    }

    #[test]
    fn a_damaged_record_at_open_loses_only_itself_and_only_once() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = open(dir.path());
        let records = append_records(&mut s, 47, |i| i % 5 + 1);
        drop(s);
        let file = &files(dir.path())[0];
        // Two flipped bytes in the payload of record 10 (the 10th, index 9).
        let (at, payload) = &records[9];
        xor_at(file, at + HEADER_BYTES as u64 + 1, 0x20);
        xor_at(file, at + HEADER_BYTES as u64 + 5, 0x01);
        let total: usize = (0..47).map(|i| i % 5 + 1).sum();
        let lost = count_lines(payload);
        let (s, report) = open(dir.path());
        assert_eq!(
            report,
            OpenReport {
                lines: total - lost,
                lost
            }
        );
        assert_eq!(s.len(), total - lost);
        drop(s);
        // The damaged bytes were zeroed: not counted again.
        let (mut s, report) = open(dir.path());
        assert_eq!(
            report,
            OpenReport {
                lines: total - lost,
                lost: 0
            }
        );
        assert_eq!(drain(&mut s), all_but(&records, &[9]));
        assert_eq!(s.take_lost(), 0);
    }

    #[test]
    fn header_fields_are_checked_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = open(dir.path());
        let records = append_records(&mut s, 8, |i| i + 1);
        drop(s);
        let file = &files(dir.path())[0];
        // A tampered line count (covered by the checksum), a length past
        // the maximum, a flipped magic.
        write_u32_at(file, records[2].0 + 8, 0x7fff_ffff);
        write_u32_at(file, records[4].0 + 4, 0xffff_fff0);
        xor_at(file, records[6].0, 0xff);
        let (mut s, report) = open(dir.path());
        let lost = 3 + 5 + 7;
        assert_eq!(
            report,
            OpenReport {
                lines: 36 - lost,
                lost
            }
        );
        assert_eq!(s.len(), 36 - lost);
        assert_eq!(drain(&mut s), all_but(&records, &[2, 4, 6]));
    }

    #[test]
    fn a_truncated_tail_is_cut_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = open(dir.path());
        let records = append_records(&mut s, 3, |_| 4);
        drop(s);
        let file = &files(dir.path())[0];
        let len = fs::metadata(file).unwrap().len();
        // A crash in the middle of the last write: 2 of its lines remain.
        let cut = len - 2 * lines(0, 1).len() as u64;
        OpenOptions::new()
            .write(true)
            .open(file)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let (mut s, report) = open(dir.path());
        assert_eq!(report, OpenReport { lines: 8, lost: 2 });
        assert_eq!(fs::metadata(file).unwrap().len(), records[2].0);
        s.append(&lines(100, 1), 1).unwrap();
        assert_eq!(
            drain(&mut s),
            [all_but(&records, &[2]), lines(100, 1)].concat()
        );
    }

    #[test]
    fn files_of_the_first_format_are_counted_lost() {
        let dir = tempfile::tempdir().unwrap();
        let payload = lines(0, 6);
        let mut old = Vec::new();
        old.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        old.extend_from_slice(&6u32.to_le_bytes());
        old.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        old.extend_from_slice(&payload);
        fs::write(dir.path().join(format!("{:020}.spool", 0)), &old).unwrap();
        let (s, report) = open(dir.path());
        assert_eq!(report, OpenReport { lines: 0, lost: 6 });
        assert!(s.is_empty());
        assert!(files(dir.path()).is_empty());
    }

    #[test]
    fn damage_found_while_reading_is_skipped_and_counted_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = open(dir.path());
        let records = append_records(&mut s, 20, |i| i % 4 + 1);
        let file = &files(dir.path())[0];
        // Damaged after the spool checked the file: a payload byte, a
        // tampered line count, a length past the maximum, and the last
        // record cut short.
        xor_at(file, records[5].0 + HEADER_BYTES as u64 + 3, 0x04);
        write_u32_at(file, records[12].0 + 8, 0x7fff_ffff);
        write_u32_at(file, records[15].0 + 4, MAX_PAYLOAD as u32 + 1);
        let lost: usize = [5, 12, 15].iter().map(|&i| i % 4 + 1).sum();
        let total: usize = (0..20).map(|i| i % 4 + 1).sum();
        assert_eq!(drain(&mut s), all_but(&records, &[5, 12, 15]));
        assert_eq!(s.take_lost(), lost);
        assert!(s.is_empty() && !s.has_unread());
        // More appends after the damage are read as usual.
        s.append(&lines(500, 2), 2).unwrap();
        assert_eq!(drain(&mut s), lines(500, 2));
        drop(s);
        // Still appended to when dropped, so kept: a restart replays it
        // (at least once) and does not count the damage again.
        let (_, report) = open(dir.path());
        assert_eq!(
            report,
            OpenReport {
                lines: total - lost + 2,
                lost: 0
            }
        );
    }

    #[test]
    fn a_file_deleted_while_appended_to_is_replaced_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = open(dir.path());
        s.append(&lines(0, 2), 2).unwrap();
        s.append(&lines(2, 3), 3).unwrap();
        s.append(&lines(5, 4), 4).unwrap();
        assert_eq!(s.read_next().unwrap().unwrap().lines, 2);
        let first = files(dir.path());
        fs::remove_file(&first[0]).unwrap();
        // The next append notices, starts a new file, counts the unread 7.
        assert_eq!(s.append(&lines(9, 5), 5).unwrap(), 0);
        assert_eq!(s.take_lost(), 7);
        let now = files(dir.path());
        assert_eq!(now.len(), 1);
        assert_ne!(now, first);
        // The record in flight was read before: it can still be confirmed.
        assert_eq!(s.len(), 2 + 5);
        s.confirm_oldest().unwrap();
        assert_eq!(drain(&mut s), lines(9, 5));
        assert_eq!((s.len(), s.take_lost()), (0, 0));

        // Rewound instead of confirmed, the in-flight lines are lost too.
        s.append(&lines(20, 3), 3).unwrap();
        assert!(s.read_next().unwrap().is_some());
        fs::remove_file(&files(dir.path())[0]).unwrap();
        s.append(&lines(23, 1), 1).unwrap();
        assert_eq!(s.take_lost(), 0, "nothing unread was in it");
        s.rewind();
        assert_eq!(s.take_lost(), 3);
        assert_eq!(drain(&mut s), lines(23, 1));
        assert!(s.is_empty());
    }

    #[test]
    fn a_file_deleted_before_or_while_it_is_read_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = open(dir.path());
        // Three files of one record, then one of two.
        s.file_limit = 1;
        for i in 0..4 {
            s.append(&lines(10 * i, i + 1), i + 1).unwrap();
        }
        s.file_limit = 1 << 20;
        s.append(&lines(40, 5), 5).unwrap();
        let names = files(dir.path());
        assert_eq!(names.len(), 4);
        // The second file before it is read.
        fs::remove_file(&names[1]).unwrap();
        assert_eq!(s.read_next().unwrap().unwrap().bytes, lines(0, 1));
        s.confirm_oldest().unwrap();
        assert_eq!(s.read_next().unwrap().unwrap().bytes, lines(20, 3));
        assert_eq!(s.take_lost(), 2);
        // The third while its record is in flight: confirmed, delivered.
        fs::remove_file(&names[2]).unwrap();
        s.confirm_oldest().unwrap();
        assert_eq!(s.take_lost(), 0);
        // The fourth while it is read: its unread record is lost, the one
        // in flight can still be confirmed.
        assert_eq!(s.read_next().unwrap().unwrap().bytes, lines(30, 4));
        fs::remove_file(&names[3]).unwrap();
        assert_eq!(s.read_next().unwrap(), None);
        assert_eq!(s.take_lost(), 5);
        s.confirm_oldest().unwrap();
        assert!(s.is_empty());
        // Appends go to a new file.
        s.append(&lines(50, 1), 1).unwrap();
        assert_eq!(drain(&mut s), lines(50, 1));
        assert_eq!((s.len(), s.take_lost()), (0, 0));
    }

    #[test]
    fn a_removed_directory_is_created_again() {
        let dir = tempfile::tempdir().unwrap();
        let spool_dir = dir.path().join("spool");
        let (mut s, _) = Spool::open(&spool_dir, 1 << 30).unwrap();
        s.file_limit = 1;
        s.append(&lines(0, 3), 3).unwrap();
        s.append(&lines(3, 4), 4).unwrap();
        fs::remove_dir_all(&spool_dir).unwrap();
        s.append(&lines(7, 2), 2).unwrap();
        assert!(spool_dir.is_dir());
        assert_eq!(s.take_lost(), 4, "the file appended to");
        assert_eq!(drain(&mut s), lines(7, 2));
        assert_eq!(s.take_lost(), 3, "the older file, when reached");
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn file_numbers_at_the_top_of_the_range_do_not_wrap() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = open(dir.path());
        s.file_limit = 1;
        s.append(&lines(0, 2), 2).unwrap();
        s.append(&lines(2, 2), 2).unwrap();
        drop(s);
        let names = files(dir.path());
        fs::rename(&names[0], dir.path().join("18446744073709551614.spool")).unwrap();
        fs::rename(&names[1], dir.path().join("18446744073709551615.spool")).unwrap();
        let (mut s, report) = open(dir.path());
        assert_eq!(report.lines, 4);
        let renamed: Vec<_> = files(dir.path())
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            renamed,
            [format!("{:020}.spool", 0), format!("{:020}.spool", 1)]
        );
        s.append(&lines(4, 1), 1).unwrap();
        drop(s);
        let (mut s, _) = open(dir.path());
        assert_eq!(drain(&mut s), lines(0, 5), "order kept");
        // Numbers run out with an error, never wrap.
        s.next_seq = u64::MAX;
        s.appender = None;
        assert!(s.append(&lines(9, 1), 1).is_err());
    }

    /// A spool of `count` records of 5 lines (ids `10 * i`…), two a file.
    fn two_records_a_file(dir: &Path, count: usize) -> Spool {
        let (mut s, _) = open(dir);
        // Records are 56 to 61 bytes.
        s.file_limit = 150;
        for i in 0..count {
            s.append(&lines(10 * i, 5), 5).unwrap();
        }
        s
    }

    #[test]
    fn rewind_and_confirm_across_file_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = two_records_a_file(dir.path(), 6);
        assert_eq!(files(dir.path()).len(), 3);
        let read = |s: &mut Spool| s.read_next().unwrap().unwrap().bytes;
        assert_eq!(read(&mut s), lines(0, 5));
        assert_eq!(read(&mut s), lines(10, 5));
        assert_eq!(read(&mut s), lines(20, 5));
        assert!(s.has_unread());
        s.confirm_oldest().unwrap();
        assert_eq!(files(dir.path()).len(), 3, "file 1 is not wholly confirmed");
        s.rewind();
        assert_eq!(s.len(), 25);
        assert_eq!(read(&mut s), lines(10, 5));
        s.confirm_oldest().unwrap();
        assert_eq!(files(dir.path()).len(), 2, "file 1 confirmed and deleted");
        assert_eq!(read(&mut s), lines(20, 5));
        assert_eq!(read(&mut s), lines(30, 5));
        assert_eq!(read(&mut s), lines(40, 5));
        s.rewind();
        assert_eq!(
            drain(&mut s),
            lines(20, 5)
                .into_iter()
                .chain(lines(30, 5))
                .chain(lines(40, 5))
                .chain(lines(50, 5))
                .collect::<Vec<_>>()
        );
        assert!(s.is_empty());
        assert_eq!(files(dir.path()).len(), 1, "the file appended to stays");
    }

    #[test]
    fn unconfirmed_records_are_replayed_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = two_records_a_file(dir.path(), 4);
        for _ in 0..3 {
            s.read_next().unwrap();
        }
        s.confirm_oldest().unwrap();
        s.confirm_oldest().unwrap();
        drop(s);
        // File 1 was confirmed and deleted; file 2 (one record confirmed,
        // one in flight) is replayed whole.
        let (mut s, report) = open(dir.path());
        assert_eq!(report.lines, 10);
        assert_eq!(drain(&mut s), [lines(20, 5), lines(30, 5)].concat());
    }

    #[test]
    fn the_size_bound_and_records_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let one = lines(30, 10).len() as u64 + HEADER_BYTES as u64;
        // Three one-record files fit.
        let (mut s, _) = Spool::open(dir.path(), 3 * one).unwrap();
        s.file_limit = 1;
        for i in 0..3 {
            s.append(&lines(10 * i, 10), 10).unwrap();
        }
        // Records 0 and 1 in flight; appending a fourth drops file 0: its
        // lines are in flight, so not dropped now.
        s.read_next().unwrap();
        s.read_next().unwrap();
        assert_eq!(s.append(&lines(30, 10), 10).unwrap(), 0);
        assert_eq!(s.len(), 40);
        assert!(s.bytes() <= 3 * one);
        // Confirmed: delivered, nothing lost.
        s.confirm_oldest().unwrap();
        assert_eq!((s.len(), s.take_lost()), (30, 0));
        // A fifth drops file 1 (in flight) and, rewound, its lines are lost.
        assert_eq!(s.append(&lines(40, 10), 10).unwrap(), 0);
        s.rewind();
        assert_eq!(s.take_lost(), 10);
        // A sixth drops file 2, unread: dropped by the append.
        assert_eq!(s.append(&lines(50, 10), 10).unwrap(), 10);
        assert_eq!(drain(&mut s), lines(30, 30));
        assert_eq!((s.len(), s.take_lost()), (0, 0));
    }

    #[test]
    fn size_bound_drops_oldest_files_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        // Records of ~1 MiB less the header; bound 9 MiB.
        let (mut s, _) = Spool::open(dir.path(), 9 << 20).unwrap();
        let big = vec![b'x'; MAX_PAYLOAD - 1]
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
        let on_disk: u64 = files(dir.path())
            .iter()
            .map(|p| fs::metadata(p).unwrap().len())
            .sum();
        assert_eq!(on_disk, s.bytes());
    }

    #[test]
    fn appends_are_checked_and_split() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = open(dir.path());
        for (payload, n) in [
            (lines(0, 3), 2),
            (b"a 1 1".to_vec(), 0),
            (b"a 1 1\nb".to_vec(), 1),
        ] {
            let e = s.append(&payload, n).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        }
        assert_eq!(s.append(b"", 0).unwrap(), 0);
        assert!(s.is_empty() && s.bytes() == 0);
        // Over 2 MiB: split in records.
        let n = (2 * MAX_PAYLOAD) / lines(0, 1).len() + 10;
        let big = lines(0, n);
        s.append(&big, n).unwrap();
        let mut got = Vec::new();
        let mut records = 0;
        while let Some(r) = s.read_next().unwrap() {
            assert!(r.bytes.len() <= MAX_PAYLOAD);
            assert_eq!(r.lines, count_lines(&r.bytes));
            got.extend_from_slice(&r.bytes);
            records += 1;
            s.confirm_oldest().unwrap();
        }
        assert!(records > 2, "{records}");
        assert_eq!(got, big);
    }

    /// The ids of a record's lines, checked to be whole and consecutive.
    fn ids(record: &Record) -> std::ops::Range<usize> {
        let text = std::str::from_utf8(&record.bytes).unwrap();
        let ids: Vec<usize> = text
            .lines()
            .map(|l| {
                l.strip_prefix("m.")
                    .and_then(|l| l.strip_suffix(" 1 1"))
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert_eq!(ids.len(), record.lines);
        assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
        ids[0]..ids[0] + ids.len()
    }

    /// What a session of random operations did with its lines.
    #[derive(Debug, Default)]
    struct Tally {
        /// Found at open, plus appended.
        came: usize,
        confirmed: usize,
        dropped: usize,
        lost: usize,
    }

    impl Tally {
        fn check(&self, s: &Spool, step: &str) {
            assert_eq!(
                self.came,
                self.confirmed + self.dropped + self.lost + s.len(),
                "{step}: {self:?}, len {}",
                s.len()
            );
        }
    }

    /// Operations of the random test.
    #[derive(Clone, Copy, Debug)]
    enum Op {
        Append,
        Read,
        Confirm,
        Rewind,
        DeleteFile,
        Damage,
        RemoveDir,
        Restart,
    }

    /// Weights of the operations: no faults, rare faults, frequent faults.
    const PROFILES: [[(Op, u32); 8]; 3] = {
        use Op::*;
        [
            [
                (Append, 40),
                (Read, 30),
                (Confirm, 20),
                (Rewind, 8),
                (DeleteFile, 0),
                (Damage, 0),
                (RemoveDir, 0),
                (Restart, 2),
            ],
            [
                (Append, 40),
                (Read, 30),
                (Confirm, 20),
                (Rewind, 6),
                (DeleteFile, 1),
                (Damage, 1),
                (RemoveDir, 0),
                (Restart, 2),
            ],
            [
                (Append, 35),
                (Read, 25),
                (Confirm, 20),
                (Rewind, 8),
                (DeleteFile, 4),
                (Damage, 5),
                (RemoveDir, 1),
                (Restart, 2),
            ],
        ]
    };

    fn pick(rng: &mut fastrand::Rng, weights: &[(Op, u32)]) -> Op {
        let mut n = rng.u32(0..weights.iter().map(|w| w.1).sum());
        for &(op, w) in weights {
            if n < w {
                return op;
            }
            n -= w;
        }
        weights[0].0
    }

    /// Random appends, reads, confirmations, rewinds, deletions, damage and
    /// restarts: every line is, at every step, exactly one of confirmed,
    /// dropped, lost or waiting; reads come in order, and a confirmed line
    /// is never read again in the same run. Without faults, nothing is lost
    /// but what a rewind finds dropped by the size bound.
    #[test]
    fn every_line_is_accounted_for_exactly_once() {
        for seed in 0..60 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let profile = &PROFILES[seed as usize % 3];
            let dir = tempfile::tempdir().unwrap();
            let spool_dir = dir.path().join("spool");
            let max_bytes = 2000;
            let (mut s, _) = Spool::open(&spool_dir, max_bytes).unwrap();
            s.file_limit = 400;
            let mut t = Tally::default();
            let mut next_id = 0;
            // Ids read since the last rewind, oldest first, per record.
            let mut in_flight: VecDeque<std::ops::Range<usize>> = VecDeque::new();
            let mut confirmed_up_to = 0;
            for step in 0..500 {
                let op = pick(&mut rng, profile);
                match op {
                    Op::Append => {
                        let n = rng.usize(1..=8);
                        t.dropped += s.append(&lines(next_id, n), n).unwrap();
                        t.came += n;
                        next_id += n;
                    }
                    Op::Read => {
                        if let Some(r) = s.read_next().unwrap() {
                            let range = ids(&r);
                            let after = in_flight.back().map_or(confirmed_up_to, |r| r.end);
                            assert!(range.start >= after, "seed {seed}: {range:?} after {after}");
                            in_flight.push_back(range);
                        }
                    }
                    Op::Confirm => {
                        if let Some(r) = in_flight.pop_front() {
                            t.confirmed += r.len();
                            confirmed_up_to = r.end;
                        }
                        s.confirm_oldest().unwrap();
                    }
                    Op::Rewind => {
                        s.rewind();
                        in_flight.clear();
                    }
                    Op::DeleteFile => {
                        let names = files(&spool_dir);
                        if !names.is_empty() {
                            fs::remove_file(&names[rng.usize(..names.len())]).unwrap();
                        }
                    }
                    Op::Damage => {
                        let names = files(&spool_dir);
                        if let Some(p) = names.get(rng.usize(..names.len().max(1))) {
                            let len = fs::metadata(p).unwrap().len();
                            if len > 0 {
                                xor_at(p, rng.u64(..len), 0xff);
                            }
                        }
                    }
                    Op::RemoveDir => {
                        let _ = fs::remove_dir_all(&spool_dir);
                    }
                    Op::Restart => {
                        t.check(&s, "before restart");
                        drop(s);
                        let report;
                        (s, report) = Spool::open(&spool_dir, max_bytes).unwrap();
                        s.file_limit = 400;
                        t = Tally {
                            came: report.lines,
                            ..Tally::default()
                        };
                        in_flight.clear();
                        confirmed_up_to = 0;
                    }
                }
                let lost = s.take_lost();
                if seed % 3 == 0 && !matches!(op, Op::Rewind) {
                    assert_eq!(
                        lost, 0,
                        "seed {seed} step {step} {op:?}: lost without a fault"
                    );
                }
                t.lost += lost;
                t.check(&s, &format!("seed {seed} step {step} {op:?}"));
                assert!(s.in_flight_lines <= s.len());
                assert_eq!(s.has_unread(), s.len() > s.in_flight_lines);
                assert!(
                    s.bytes() <= max_bytes || s.files.len() == 1,
                    "seed {seed}: {} bytes in {} files",
                    s.bytes(),
                    s.files.len()
                );
            }
            s.rewind();
            while let Some(r) = s.read_next().unwrap() {
                t.confirmed += r.lines;
                s.confirm_oldest().unwrap();
            }
            t.lost += s.take_lost();
            t.check(&s, &format!("seed {seed} drained"));
            assert_eq!((s.len(), s.has_unread()), (0, false));
            assert!(
                files(&spool_dir).len() <= 1,
                "only the file appended to remains"
            );
        }
    }
}
