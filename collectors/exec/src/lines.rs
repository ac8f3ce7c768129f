//! Reading a command's pipes a line at a time with bounds, and logging its
//! standard error without flooding the agent's log.

use std::time::{Duration, Instant};

use carat_collector::input::excerpt;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// The longest line kept; the rest of a longer one is skipped.
pub const MAX_LINE: usize = 8 * 1024;

/// A line read from a pipe.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line, without its end, invalid UTF-8 replaced.
    Text(String),
    /// A line longer than [`MAX_LINE`]: its first bytes, and its length.
    TooLong(String, usize),
}

/// Lines of a pipe, each at most [`MAX_LINE`] bytes in memory.
pub struct LineReader<R> {
    inner: BufReader<R>,
    /// The line being read: its first [`MAX_LINE`] bytes, and its length
    /// without its end.
    line: Vec<u8>,
    length: usize,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// Lines of `pipe`.
    pub fn new(pipe: R) -> Self {
        LineReader {
            inner: BufReader::new(pipe),
            line: Vec::new(),
            length: 0,
        }
    }

    /// The next line; `None` at the end of the pipe. A last line without
    /// a newline counts as a line. Cancel-safe: a line read in part is
    /// kept for the next call.
    pub async fn next(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            let chunk = self.inner.fill_buf().await?;
            if chunk.is_empty() {
                if self.length == 0 {
                    return Ok(None);
                }
                break;
            }
            let (take, end) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            let room = MAX_LINE.saturating_sub(self.line.len());
            self.line.extend_from_slice(&chunk[..take.min(room)]);
            self.length += take;
            self.inner.consume(take + usize::from(end));
            if end {
                break;
            }
        }
        let text = String::from_utf8_lossy(&self.line)
            .trim_end_matches('\r')
            .to_owned();
        let length = std::mem::take(&mut self.length);
        self.line.clear();
        Ok(Some(if length > MAX_LINE {
            Line::TooLong(text, length)
        } else {
            Line::Text(text)
        }))
    }
}

/// Lines of standard error logged per minute at most; the others are
/// counted and the count logged.
const LOGGED_PER_MINUTE: u32 = 10;

/// The most characters of a standard error line that are logged.
const LOGGED_CHARS: usize = 300;

/// Logs a command's standard error: each line as a warning naming the
/// instance, cut to 300 characters, at most 10 a minute.
pub struct StderrLog {
    instance: String,
    window: Instant,
    logged: u32,
    suppressed: u64,
    last: Option<String>,
}

impl StderrLog {
    /// A log for collector instance `instance`.
    pub fn new(instance: &str) -> Self {
        StderrLog {
            instance: instance.to_owned(),
            window: Instant::now(),
            logged: 0,
            suppressed: 0,
            last: None,
        }
    }

    /// Logs `line`, unless this minute's lines were logged already.
    pub fn line(&mut self, line: &str) {
        let line = line.trim_end();
        if line.is_empty() {
            return;
        }
        let shown = excerpt(line, LOGGED_CHARS);
        if self.window.elapsed() >= Duration::from_secs(60) {
            self.flush();
            self.window = Instant::now();
            self.logged = 0;
        }
        if self.logged < LOGGED_PER_MINUTE {
            self.logged += 1;
            tracing::warn!(collector = %self.instance, "collector {} wrote on standard error: {shown}", self.instance);
        } else {
            self.suppressed += 1;
        }
        self.last = Some(shown);
    }

    /// Logs how many lines were not, if any.
    pub fn flush(&mut self) {
        if self.suppressed > 0 {
            tracing::warn!(
                collector = %self.instance,
                "collector {}: {} more lines on standard error were not logged (at most {LOGGED_PER_MINUTE} a minute)",
                self.instance,
                self.suppressed
            );
            self.suppressed = 0;
        }
    }

    /// The last line seen (cut, quoted), for an error message; forgotten
    /// once taken.
    pub fn take_last(&mut self) -> Option<String> {
        self.last.take()
    }
}
