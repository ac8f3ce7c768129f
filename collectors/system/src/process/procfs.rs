//! The Linux source of the `process` collector: `<proc_root>/<pid>/…` read
//! directly.
//!
//! Each run lists the numeric directories of the proc root and, for each,
//! reads as little as decides the process:
//!
//! - `stat`, always: the name (`comm`, between the first `(` and the *last*
//!   `)`, since the name itself may hold spaces and parentheses), the state,
//!   the flags (field 9: `PF_KTHREAD` marks a kernel thread), `utime` +
//!   `stime` (fields 14, 15) and `num_threads` (20), and `starttime` (22),
//!   all in clock ticks of USER_HZ, which is 100 on every architecture Linux
//!   supports (what `/proc` reports does not follow the kernel's internal
//!   HZ);
//! - `exe` (a symlink) and `cmdline`, only for a process that is not a
//!   kernel thread (which has neither), and only when a group it does not
//!   already belong to by its pid or name (or, for `cmdline`, its `exe`)
//!   has patterns of that kind;
//! - for matching processes only: `status` (`VmRSS`, `VmSize`, in kB: the
//!   kernel computes them exactly, while `stat`'s `rss` may be off by the
//!   per-CPU batches of its counters) and the entries of `fd/`.
//!
//! A process that is not a kernel thread and matches no group costs one
//! `stat` (open, read, close) and, when a group has `exe` patterns, one
//! `readlink`; a kernel thread that matches no group, the `stat` alone.
//! The files are opened by their path (`<pid>/stat`), not relative to an
//! open pid directory, which would cost two more system calls per process.
//! So that every file of one process still comes from the same process even
//! if its pid is reused meanwhile, `stat` is kept open while the others are
//! read, and read again (one `pread`) before a process's usage is
//! published: it fails once the process it was opened on has exited, and
//! while that process has not, its pid cannot belong to another.
//!
//! A process's age is `<proc_root>/uptime` (seconds since boot) minus
//! `starttime` / 100. Both count from boot on the same clock (boot time,
//! suspend included), so unlike `btime` of `/proc/stat` plus `starttime` the
//! result does not move when the wall clock is stepped (NTP, a wrong clock
//! at boot). When `uptime` cannot be read, no group publishes `uptime`; the
//! counts, which matter more, are still published.
//!
//! # Processes that vanish, and processes that cannot be read
//!
//! Processes exit while being read: a pid directory or file that is gone
//! (`ENOENT`, `ESRCH`) means the process exited, and it is skipped without
//! a trace. Anything else that stops a process from being checked is
//! counted in the collector's `unreadable` gauge, and the run goes on:
//!
//! - a pid directory, `stat` or (for a matching process) `status` that
//!   cannot be opened (`hidepid=1` mounts, say) or is not in the kernel's
//!   format;
//! - a process that matched no group, whose `exe` or `cmdline` could not be
//!   read (reading another user's `exe` needs root or `CAP_SYS_PTRACE`)
//!   while a group has patterns of that kind: it might belong to that group.
//!
//! A process whose `fd/` cannot be read is counted, with its descriptors
//! unknown (the group's `fds_unreadable`). The run fails only when the proc
//! root cannot be listed, holds no pid directory, or not one process in it
//! could be read.

use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;

use carat_collector::input::{show_bytes, MAX_FILE_BYTES};
use carat_collector::{CollectorError, Environment};
use rustix::buffer::spare_capacity;
use rustix::fd::OwnedFd;
use rustix::fs::{openat, readlinkat_raw, Mode, OFlags, RawDir, CWD};
use rustix::io::Errno;
use rustix::path::Arg;

use super::{Candidate, Field, Groups, Tally, Usage};

/// Clock ticks per second of the times in `/proc/<pid>/stat` (USER_HZ).
const USER_HZ: u64 = 100;
const NANOS_PER_TICK: u64 = 1_000_000_000 / USER_HZ;
/// `getdents` buffer: entries of `/proc` and of `fd/` are tiny (a name of a
/// few digits), so this holds hundreds per system call.
const DIR_BUFFER: usize = 32 * 1024;
/// The least room left in a buffer before each `read` of a file: it grows
/// (doubling) when less is left, and keeps its size from then on.
const READ_ROOM: usize = 512;
/// Room first made for a symlink's target (`exe`, `self`); a longer one
/// grows the buffer, which keeps its size from then on.
const LINK_BUFFER: usize = 256;
/// What Linux appends to `exe` when the binary was removed or replaced.
const DELETED: &[u8] = b" (deleted)";
/// `PF_KTHREAD` of the flags in `/proc/<pid>/stat` (`include/linux/sched.h`).
const PF_KTHREAD: u64 = 0x0020_0000;

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC
}

/// Reads `<proc_root>/<pid>/…` for the `process` collector. See the
/// [module documentation](self).
pub(crate) struct ProcSource {
    root: PathBuf,
    pids: Vec<u32>,
    /// `<pid>/<file>` of the process being read.
    path: PidPath,
    bufs: Buffers,
}

/// Buffers reused from one process and one run to the next.
struct Buffers {
    stat: Vec<u8>,
    status: Vec<u8>,
    cmdline: Vec<u8>,
    link: Vec<u8>,
    /// Spare capacity for `getdents`; its length stays 0.
    dir: Vec<u8>,
    matched: Vec<usize>,
}

/// The relative path of a file of one process, built in a kept buffer.
struct PidPath {
    /// `<pid>/` then the file's name.
    buf: String,
    /// The length of `<pid>/`.
    dir: usize,
}

impl PidPath {
    /// Starts the paths of process `pid`.
    fn set_pid(&mut self, pid: u32) {
        self.buf.clear();
        // Writing to a String cannot fail.
        let _ = write!(self.buf, "{pid}/");
        self.dir = self.buf.len();
    }

    /// `<pid>/<file>`.
    fn file(&mut self, file: &str) -> &str {
        self.buf.truncate(self.dir);
        self.buf.push_str(file);
        &self.buf
    }
}

/// What became of one pid directory.
enum Outcome {
    /// Read and matched against the groups (whether it matched or not).
    Checked,
    /// Gone while being read.
    Vanished,
    /// Read, matched nothing, but might have matched had `exe` or `cmdline`
    /// been readable.
    Uncertain,
    /// Could not be read.
    Failed(&'static str, Failure),
}

enum Failure {
    Io(io::Error),
    Format,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Io(e) => write!(f, "{e}"),
            Failure::Format => f.write_str("not in the kernel's format"),
        }
    }
}

/// True for the errors that mean "the process exited meanwhile".
fn vanished(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(Errno::SRCH.raw_os_error())
}

fn failed(file: &'static str, e: io::Error) -> Outcome {
    if vanished(&e) {
        Outcome::Vanished
    } else {
        Outcome::Failed(file, Failure::Io(e))
    }
}

/// Reads the whole of `name` under `dir` into `buf` (cleared first).
///
/// Reads into `buf`'s spare capacity until the end of the file rather than
/// with `File::read_to_end`, which first calls `statx` and `lseek` to size
/// the buffer: proc files report a size of 0, so those would be two wasted
/// system calls per file, on every process, on every run.
fn read_at<P: Arg>(dir: &OwnedFd, name: P, buf: &mut Vec<u8>) -> io::Result<()> {
    let fd = openat(dir, name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    read_fd(&fd, buf, false)
}

/// Reads the whole of the open file `fd` into `buf` (cleared first).
///
/// With `one_record`, a read that leaves room in the buffer ends the file:
/// true of the proc files made of one record, which the kernel formats
/// whole before copying out as much as fits (`seq_file`: `stat`,
/// `status`), and of regular files; this saves the final `read` that would
/// return 0. `parse_stat` and `parse_status` reject a file cut short.
///
/// A file larger than [`MAX_FILE_BYTES`] (the bound on every file a
/// collector reads) is an error, and `buf`'s memory is given back.
fn read_fd(fd: &OwnedFd, buf: &mut Vec<u8>, one_record: bool) -> io::Result<()> {
    buf.clear();
    loop {
        if buf.len() > MAX_FILE_BYTES {
            *buf = Vec::new();
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!(
                    "larger than {}, the most read from one file; nothing of it was used",
                    show_bytes(MAX_FILE_BYTES)
                ),
            ));
        }
        if buf.capacity() - buf.len() < READ_ROOM {
            buf.reserve(buf.capacity().max(READ_ROOM));
        }
        let room = buf.capacity() - buf.len();
        match rustix::io::read(fd, spare_capacity(buf)) {
            Ok(0) => return Ok(()),
            Ok(n) if one_record && n < room => return Ok(()),
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Opens `path` under `dir` for [`read_fd`].
fn open_at<P: Arg>(dir: &OwnedFd, path: P) -> io::Result<OwnedFd> {
    Ok(openat(
        dir,
        path,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Fails (`ESRCH` from proc) once the process whose `stat` is open as `fd`
/// has exited and been reaped; until then its pid is its own.
fn still_there(fd: &OwnedFd) -> io::Result<()> {
    let mut byte = [0u8; 1];
    loop {
        match rustix::io::pread(fd, &mut byte, 0) {
            Ok(_) => return Ok(()),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads the target of the symlink `name` under `dir` into `buf` (cleared
/// first). Unlike `rustix::fs::readlinkat`, which takes the buffer by value
/// and returns a `CString` (shrunk to fit, then dropped on an error such as
/// a kernel thread's missing `exe`), the buffer's allocation is kept from
/// one process and one run to the next.
fn read_link_at<P: Arg + Copy>(
    dir: &OwnedFd,
    name: P,
    buf: &mut Vec<u8>,
) -> rustix::io::Result<()> {
    buf.clear();
    buf.reserve(LINK_BUFFER);
    loop {
        let room = buf.capacity();
        let n = readlinkat_raw(dir, name, spare_capacity(buf))?;
        if n < room {
            return Ok(());
        }
        // The target filled the buffer and may have been cut: again, with
        // twice the room.
        buf.clear();
        buf.reserve(2 * room);
    }
}

/// Calls `each` with the name of every entry of the open directory `fd`
/// except `.` and `..`, reading through `buf`'s spare capacity.
fn for_each_entry(fd: &OwnedFd, buf: &mut Vec<u8>, mut each: impl FnMut(&[u8])) -> io::Result<()> {
    buf.clear();
    buf.reserve(DIR_BUFFER);
    let mut dir = RawDir::new(fd, buf.spare_capacity_mut());
    while let Some(entry) = dir.next() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            each(name);
        }
    }
    Ok(())
}

/// Parses a decimal pid; `None` for anything else (`self`, `sys`, …).
fn parse_pid(name: &[u8]) -> Option<u32> {
    if name.is_empty() || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(name).ok()?.parse().ok()
}

/// The fields of `/proc/<pid>/stat` the collector uses.
#[derive(Debug, PartialEq, Eq)]
struct Stat<'a> {
    comm: &'a [u8],
    state: u8,
    /// `PF_KTHREAD` is set in the flags.
    kthread: bool,
    utime: u64,
    stime: u64,
    threads: u64,
    starttime: u64,
}

/// Parses `/proc/<pid>/stat` of process `pid`. `None` when it is not in the
/// kernel's format: another pid, no `(comm)`, fewer fields than
/// `starttime`, or cut short (no final newline, and nothing after
/// `starttime`, the last field used, which may then be cut).
fn parse_stat(buf: &[u8], pid: u32) -> Option<Stat<'_>> {
    let open = buf.iter().position(|&b| b == b'(')?;
    let close = buf.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    if parse_pid(buf[..open].trim_ascii())? != pid {
        return None;
    }
    let comm = &buf[open + 1..close];
    let mut fields = std::str::from_utf8(&buf[close + 1..])
        .ok()?
        .split_ascii_whitespace();
    let number = |f: Option<&str>| f?.parse::<u64>().ok();
    // Fields are numbered from 1 in proc(5): after `)` come state (3),
    // ppid (4) … flags (9) … utime (14), stime (15), cutime … nice (16–19),
    // num_threads (20), itrealvalue (21), starttime (22).
    let [state] = fields.next()?.as_bytes() else {
        return None;
    };
    let flags = number(fields.nth(5))?;
    let utime = number(fields.nth(4))?;
    let stime = number(fields.next())?;
    let threads = number(fields.nth(4))?;
    let starttime = number(fields.nth(1))?;
    // Without a final newline or space, starttime is whole only when more
    // fields follow it (the kernel prints some thirty more).
    let terminated = buf.last().is_some_and(u8::is_ascii_whitespace);
    if !terminated && fields.next().is_none() {
        return None;
    }
    Some(Stat {
        comm,
        state: *state,
        kthread: flags & PF_KTHREAD != 0,
        utime,
        stime,
        threads,
        starttime,
    })
}

/// Memory sizes from `/proc/<pid>/status`, in bytes.
#[derive(Debug, Default, PartialEq, Eq)]
struct Memory {
    rss: u64,
    vms: u64,
}

/// Parses `VmRSS` and `VmSize` of `/proc/<pid>/status`. A process with no
/// memory of its own (a kernel thread) has neither line: 0. `None` when the
/// file is not in the kernel's format (no `Name:` line, a size that is not
/// `<n> kB`), or may have been cut before its memory lines: without a final
/// newline, a whole `Threads:` line, which the kernel prints after them,
/// must be there.
fn parse_status(buf: &[u8]) -> Option<Memory> {
    let terminated = buf.last() == Some(&b'\n');
    let kb = |v: &[u8]| -> Option<u64> {
        let digits = v.trim_ascii().strip_suffix(b"kB")?.trim_ascii_end();
        std::str::from_utf8(digits)
            .ok()?
            .parse::<u64>()
            .ok()?
            .checked_mul(1024)
    };
    let mut memory = Memory::default();
    let mut named = false;
    let mut past_memory = terminated;
    let mut lines = buf.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        if let Some(v) = line.strip_prefix(b"VmRSS:") {
            memory.rss = kb(v)?;
        } else if let Some(v) = line.strip_prefix(b"VmSize:") {
            memory.vms = kb(v)?;
        } else if line.starts_with(b"Name:") {
            named = true;
        } else if line.starts_with(b"Threads:") && lines.peek().is_some() {
            past_memory = true;
        }
    }
    (named && past_memory).then_some(memory)
}

/// Parses the first field of `/proc/uptime`: seconds since boot.
fn parse_uptime(buf: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(buf).ok()?;
    let up = text.split_ascii_whitespace().next()?.parse::<f64>().ok()?;
    (up.is_finite() && up >= 0.0).then_some(up)
}

/// Turns the bytes of `cmdline` (arguments each ended by NUL) into the
/// arguments joined by single spaces, in place.
fn join_args(cmdline: &mut Vec<u8>) {
    while cmdline.last() == Some(&0) {
        cmdline.pop();
    }
    for b in cmdline.iter_mut() {
        if *b == 0 {
            *b = b' ';
        }
    }
}

/// What is read about the whole system once per run.
struct RunContext {
    self_pid: Option<u32>,
    /// `<proc_root>/uptime` in clock ticks.
    uptime_ticks: Option<u64>,
}

impl ProcSource {
    /// A source reading under `env.proc_root`.
    pub(crate) fn new(env: &Environment) -> Self {
        ProcSource {
            root: env.proc_root.clone(),
            pids: Vec::new(),
            path: PidPath {
                buf: String::new(),
                dir: 0,
            },
            bufs: Buffers {
                stat: Vec::new(),
                status: Vec::new(),
                cmdline: Vec::new(),
                link: Vec::new(),
                dir: Vec::new(),
                matched: Vec::new(),
            },
        }
    }

    /// Reads every process, adding the matching ones to `tally`.
    pub(crate) fn scan(
        &mut self,
        groups: &Groups,
        tally: &mut Tally,
    ) -> Result<(), CollectorError> {
        let root = openat(CWD, &self.root, dir_flags(), Mode::empty())
            .map_err(|e| CollectorError::io(&self.root, e.into()))?;
        self.pids.clear();
        let pids = &mut self.pids;
        for_each_entry(&root, &mut self.bufs.dir, |name| {
            if let Some(pid) = parse_pid(name) {
                pids.push(pid);
            }
        })
        .map_err(|e| CollectorError::io(&self.root, e))?;
        if self.pids.is_empty() {
            return Err(CollectorError::parse(
                self.root.display().to_string(),
                "no process directories: not a proc filesystem?",
            ));
        }

        let run = RunContext {
            self_pid: if groups.needs_self() {
                self.bufs.self_pid(&root)
            } else {
                None
            },
            uptime_ticks: read_at(&root, c"uptime", &mut self.bufs.status)
                .ok()
                .and_then(|()| parse_uptime(&self.bufs.status))
                .map(|up| (up * USER_HZ as f64).round() as u64),
        };

        let (mut checked, mut unreadable) = (0u64, 0u64);
        let mut first_failure: Option<(u32, &'static str, Failure)> = None;
        for &pid in &self.pids {
            self.path.set_pid(pid);
            match self
                .bufs
                .visit(&root, pid, &mut self.path, &run, groups, tally)
            {
                Outcome::Checked => checked += 1,
                Outcome::Vanished => {}
                Outcome::Uncertain => {
                    checked += 1;
                    unreadable += 1;
                }
                Outcome::Failed(file, why) => {
                    unreadable += 1;
                    first_failure.get_or_insert((pid, file, why));
                }
            }
        }
        if checked == 0 {
            let detail = match &first_failure {
                Some((pid, "", why)) => format!("; the first: {pid}: {why}"),
                Some((pid, file, why)) => format!("; the first: {pid}/{file}: {why}"),
                None => String::new(),
            };
            return Err(CollectorError::io(
                &self.root,
                io::Error::other(format!(
                    "none of the {} process directories could be read{detail}",
                    self.pids.len()
                )),
            ));
        }
        tally.unreadable = Some(unreadable);
        Ok(())
    }
}

impl Buffers {
    /// The agent's own pid as the proc root sees it: `<proc_root>/self`
    /// resolves to the reader's pid in the pid namespace of that proc
    /// filesystem (the host's pid when the host's `/proc` is mounted in a
    /// container). `None` when there is no such link.
    fn self_pid(&mut self, root: &OwnedFd) -> Option<u32> {
        read_link_at(root, c"self", &mut self.link).ok()?;
        parse_pid(&self.link)
    }

    /// Reads process `pid` (its files `<pid>/…` under `root`, `path` set to
    /// it) and adds it to `tally` if it matches a group.
    fn visit(
        &mut self,
        root: &OwnedFd,
        pid: u32,
        path: &mut PidPath,
        run: &RunContext,
        groups: &Groups,
        tally: &mut Tally,
    ) -> Outcome {
        // Kept open until the end: see `still_there`.
        let stat_fd = match open_at(root, path.file("stat")) {
            Ok(fd) => fd,
            Err(e) => return failed("stat", e),
        };
        if let Err(e) = read_fd(&stat_fd, &mut self.stat, true) {
            return failed("stat", e);
        }
        let Some(stat) = parse_stat(&self.stat, pid) else {
            return Outcome::Failed("stat", Failure::Format);
        };
        // Z: a zombie, exited and waiting for its parent; X: dead.
        if matches!(stat.state, b'Z' | b'X' | b'x') {
            return Outcome::Checked;
        }

        // A kernel thread has no executable and an empty command line: it
        // can only match by its name.
        let mut candidate = Candidate {
            pid,
            comm: stat.comm,
            exe: Field::Absent,
            cmdline: Field::Absent,
        };
        // Whether a file other than `stat` was read.
        let mut more = false;
        if !stat.kthread && groups.wants_exe(&candidate, run.self_pid) {
            more = true;
            candidate.exe = match read_link_at(root, path.file("exe"), &mut self.link) {
                Ok(()) => {
                    let exe = self.link.strip_suffix(DELETED).unwrap_or(&self.link);
                    if exe.is_empty() {
                        Field::Absent
                    } else {
                        Field::Known(exe)
                    }
                }
                // No executable: a kernel thread (or the process just exited,
                // which a later read notices if it matters).
                Err(Errno::NOENT | Errno::SRCH) => Field::Absent,
                // EACCES: another user's process, without CAP_SYS_PTRACE.
                Err(_) => Field::Unknown,
            };
        }
        if !stat.kthread && groups.wants_cmdline(&candidate, run.self_pid) {
            more = true;
            candidate.cmdline = match read_at(root, path.file("cmdline"), &mut self.cmdline) {
                Ok(()) => {
                    join_args(&mut self.cmdline);
                    if self.cmdline.is_empty() {
                        Field::Absent // a kernel thread
                    } else {
                        Field::Known(&self.cmdline)
                    }
                }
                Err(e) if vanished(&e) => return Outcome::Vanished,
                Err(_) => Field::Unknown,
            };
        }

        let uncertain = groups.classify(&candidate, run.self_pid, &mut self.matched);
        if !uncertain && self.matched.is_empty() {
            return Outcome::Checked;
        }
        if uncertain {
            // Only if what could not be read was this process's.
            if more {
                if let Err(e) = still_there(&stat_fd) {
                    return failed("stat", e);
                }
            }
            return Outcome::Uncertain;
        }

        let memory = match open_at(root, path.file("status"))
            .and_then(|fd| read_fd(&fd, &mut self.status, true))
        {
            Ok(()) => match parse_status(&self.status) {
                Some(memory) => memory,
                None => return Outcome::Failed("status", Failure::Format),
            },
            Err(e) => return failed("status", e),
        };
        let fds = match count_fds(root, path.file("fd"), &mut self.dir) {
            Ok(n) => Some(n),
            Err(e) if vanished(&e) => return Outcome::Vanished,
            Err(_) => None,
        };
        // Everything read above came from the process `stat` was read from.
        if let Err(e) = still_there(&stat_fd) {
            return failed("stat", e);
        }
        let usage = Usage {
            start: stat.starttime,
            cpu_ns: stat
                .utime
                .saturating_add(stat.stime)
                .saturating_mul(NANOS_PER_TICK),
            rss: memory.rss,
            vms: memory.vms,
            threads: Some(stat.threads),
            fds,
            // In ticks, so that the result has the two decimals of its
            // inputs and no binary-fraction noise (5.3, not 5.300000000000182).
            uptime: run
                .uptime_ticks
                .map(|up| up.saturating_sub(stat.starttime) as f64 / USER_HZ as f64),
        };
        tally.add(pid, &usage, &self.matched);
        Outcome::Checked
    }
}

/// The number of open descriptors in the directory `path` (`<pid>/fd`)
/// under `root`.
fn count_fds(root: &OwnedFd, path: &str, buf: &mut Vec<u8>) -> io::Result<u64> {
    let fd_dir = openat(root, path, dir_flags(), Mode::empty())?;
    let mut n = 0u64;
    for_each_entry(&fd_dir, buf, |_| n += 1)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::fixture_path;

    fn fixture(relative: &str) -> Vec<u8> {
        std::fs::read(fixture_path(&format!("process/{relative}"))).unwrap()
    }

    #[test]
    fn recorded_stat_files() {
        let sleep = fixture("sleep/stat");
        assert_eq!(
            parse_stat(&sleep, 2174),
            Some(Stat {
                comm: b"sleep",
                state: b'S',
                kthread: false,
                utime: 0,
                stime: 0,
                threads: 1,
                starttime: 174_870,
            })
        );
        let odd = fixture("odd/stat");
        let stat = parse_stat(&odd, 2173).unwrap();
        assert_eq!(stat.comm, b"(my (odd) prog)");
        assert_eq!(
            (stat.state, stat.threads, stat.starttime),
            (b'S', 1, 174_870)
        );
        let zombie = fixture("zombie/stat");
        assert_eq!(parse_stat(&zombie, 2177).unwrap().state, b'Z');
        let kthread = fixture("kthread/stat");
        let stat = parse_stat(&kthread, 2).unwrap();
        assert_eq!((stat.comm, stat.starttime), (&b"kthreadd"[..], 25));
        assert!(stat.kthread);
    }

    #[test]
    fn stat_fields_by_position() {
        // utime 1234 and stime 56 at fields 14 and 15, 7 threads at 20,
        // starttime 98765 at 22.
        let line = b"42 (a) R 1 42 42 0 -1 4194304 10 0 0 0 1234 56 0 0 20 0 7 0 98765 1000 10 18446744073709551615\n";
        let stat = parse_stat(line, 42).unwrap();
        assert_eq!(
            (stat.utime, stat.stime, stat.threads, stat.starttime),
            (1234, 56, 7, 98765)
        );
    }

    #[test]
    fn odd_stat_files_are_rejected() {
        let good = b"42 (a) R 1 42 42 0 -1 4194304 10 0 0 0 1234 56 0 0 20 0 7 0 98765 1000 10\n";
        assert!(parse_stat(good, 42).is_some());
        assert!(parse_stat(good, 43).is_none(), "another pid");
        let cases: [&[u8]; 7] = [
            b"",
            b"42 (a) R 1 42 42 0 -1 4194304 10 0 0 0 1234 56 0 0 20 0 7 0 98765", // no newline
            b"42 (a) R 1 42 42 0 -1 4194304 10 0 0 0 1234 56 0 0 20 0 7 0\n",     // no starttime
            b"42 a R 1 42 42 0 -1 4194304 10 0 0 0 1234 56 0 0 20 0 7 0 98765\n", // no parens
            b"42 )a( R 1 42 42 0 -1 4194304 10 0 0 0 1234 56 0 0 20 0 7 0 98765\n",
            b"42 (a) R 1 42 42 0 -1 4194304 10 0 0 0 x 56 0 0 20 0 7 0 98765\n",
            b"garbage\n",
        ];
        for case in cases {
            assert!(
                parse_stat(case, 42).is_none(),
                "{:?}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn recorded_status_files() {
        assert_eq!(
            parse_status(&fixture("sleep/status")),
            Some(Memory {
                rss: 1832 * 1024,
                vms: 2920 * 1024,
            })
        );
        assert_eq!(
            parse_status(&fixture("odd/status")),
            Some(Memory {
                rss: 3184 * 1024,
                vms: 4360 * 1024,
            })
        );
        // A kernel thread has no memory of its own: no Vm lines.
        assert_eq!(
            parse_status(&fixture("kthread/status")),
            Some(Memory::default())
        );
        assert!(parse_status(b"Name:\tx\nVmRSS:\t  12 MB\n").is_none());
        assert!(parse_status(b"Name:\tx\nVmRSS:\t  lots kB\n").is_none());
        assert!(parse_status(b"VmRSS:\t  12 kB\n").is_none(), "no Name");
        assert!(parse_status(b"Name:\tx\nVmRSS:\t  12 kB").is_none(), "cut");
        assert!(parse_status(b"Name:\tx\nVmRSS:\t  12 kB\nThreads:\t1").is_none());
        assert!(parse_status(b"").is_none());
    }

    #[test]
    fn recorded_files_without_their_final_newline_are_read_whole() {
        for (name, pid) in [
            ("sleep", 2174),
            ("odd", 2173),
            ("zombie", 2177),
            ("kthread", 2),
        ] {
            let stat = fixture(&format!("{name}/stat"));
            let cut = stat.strip_suffix(b"\n").unwrap();
            assert_eq!(parse_stat(cut, pid), parse_stat(&stat, pid), "{name}");
            assert!(parse_stat(cut, pid).is_some(), "{name}");
            let status = fixture(&format!("{name}/status"));
            let cut = status.strip_suffix(b"\n").unwrap();
            assert_eq!(parse_status(cut), parse_status(&status), "{name}");
            assert!(parse_status(cut).is_some(), "{name}");
        }
        // Cut before the memory lines (or in them): not whole.
        let sleep = fixture("sleep/status");
        let before_threads = sleep.windows(8).position(|w| w == b"Threads:").unwrap();
        assert!(parse_status(&sleep[..before_threads + 9]).is_none());
        assert!(parse_status(&sleep[..before_threads - 3]).is_none());
    }

    #[test]
    fn cmdline_and_uptime() {
        let mut cmdline = fixture("sleep/cmdline");
        join_args(&mut cmdline);
        assert_eq!(cmdline, b"sleep 600");
        let mut cmdline = fixture("odd/cmdline");
        join_args(&mut cmdline);
        assert!(cmdline.starts_with(b"bash -c printf \"(my (odd) prog)\""));
        let mut empty = fixture("kthread/cmdline");
        join_args(&mut empty);
        assert!(empty.is_empty());

        assert_eq!(parse_uptime(b"1735.72 2644.10\n"), Some(1735.72));
        assert_eq!(parse_uptime(b"nan 1\n"), None);
        assert_eq!(parse_uptime(b"-1 1\n"), None);
        assert_eq!(parse_uptime(b""), None);
    }

    #[test]
    fn files_are_read_whole_into_a_kept_buffer() {
        let dir = crate::test_support::ProcDir::new("procfs-read");
        let long: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        dir.write("long", &long);
        dir.write("short", "1 (a) S\n");
        dir.write("empty", "");
        let fd = openat(CWD, &dir.path, dir_flags(), Mode::empty()).unwrap();
        let mut buf = Vec::new();
        read_at(&fd, c"long", &mut buf).unwrap();
        assert_eq!(buf, long.as_bytes());
        let (ptr, cap) = (buf.as_ptr(), buf.capacity());
        read_at(&fd, c"short", &mut buf).unwrap();
        assert_eq!(buf, b"1 (a) S\n");
        read_at(&fd, c"empty", &mut buf).unwrap();
        assert!(buf.is_empty());
        let err = read_at(&fd, c"none", &mut buf).unwrap_err();
        assert!(vanished(&err), "{err}");
        assert_eq!((buf.as_ptr(), buf.capacity()), (ptr, cap));
    }

    #[test]
    fn a_file_over_the_bound_is_an_error_and_frees_the_buffer() {
        let dir = crate::test_support::ProcDir::new("procfs-huge");
        dir.write_bytes("cmdline", &vec![b'a'; MAX_FILE_BYTES + 1]);
        dir.write_bytes("fits", &vec![b'a'; MAX_FILE_BYTES]);
        let fd = openat(CWD, &dir.path, dir_flags(), Mode::empty()).unwrap();
        let mut buf = Vec::new();
        let err = read_at(&fd, c"cmdline", &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        assert!(err.to_string().contains("16 MiB"), "{err}");
        assert_eq!(buf.capacity(), 0);
        read_at(&fd, c"fits", &mut buf).unwrap();
        assert_eq!(buf.len(), MAX_FILE_BYTES);
    }

    #[test]
    fn links_are_read_into_a_kept_buffer() {
        let dir = crate::test_support::ProcDir::new("procfs-links");
        let long = format!("/{}", "x".repeat(3 * LINK_BUFFER));
        std::os::unix::fs::symlink("/usr/bin/short", dir.path.join("short")).unwrap();
        std::os::unix::fs::symlink(&long, dir.path.join("long")).unwrap();
        let fd = openat(CWD, &dir.path, dir_flags(), Mode::empty()).unwrap();
        let mut buf = Vec::new();
        read_link_at(&fd, c"short", &mut buf).unwrap();
        assert_eq!(buf, b"/usr/bin/short");
        // Longer than the first room made: grown until it fits, not cut.
        read_link_at(&fd, c"long", &mut buf).unwrap();
        assert_eq!(buf, long.as_bytes());
        // A missing link (a kernel thread's exe) keeps the allocation.
        let (ptr, cap) = (buf.as_ptr(), buf.capacity());
        assert_eq!(read_link_at(&fd, c"none", &mut buf), Err(Errno::NOENT));
        read_link_at(&fd, c"short", &mut buf).unwrap();
        assert_eq!(buf, b"/usr/bin/short");
        assert_eq!((buf.as_ptr(), buf.capacity()), (ptr, cap));
    }

    #[test]
    fn pids_are_decimal_names_only() {
        assert_eq!(parse_pid(b"1"), Some(1));
        assert_eq!(parse_pid(b"4194304"), Some(4_194_304));
        for name in [&b"self"[..], b"", b"1a", b"-1", b"+1", b"99999999999"] {
            assert_eq!(parse_pid(name), None, "{name:?}");
        }
    }
}
