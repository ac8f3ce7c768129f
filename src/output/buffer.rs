//! The bounded buffer an output keeps while its receiver is away or slower
//! than the collectors.
//!
//! Lines are stored encoded, in segments of bounded size, so memory is about
//! the size of the lines themselves and dropping the oldest lines is popping
//! the oldest segment. A segment is also the unit an output writes and waits
//! for the receiver to acknowledge: it leaves the buffer when written
//! ([`LineBuffer::take_front`]) and comes back to its front if the connection
//! fails before the receiver acknowledged it ([`LineBuffer::put_back`]).
//! Every line that leaves the buffer for good is counted by the caller.

use std::collections::VecDeque;

use crate::metrics::Metric;
use crate::output::encode::encode_line;

/// One run of encoded lines.
#[derive(Debug, Default)]
pub struct Segment {
    /// The encoded lines, each ending in `\n`.
    pub bytes: Vec<u8>,
    /// How many lines `bytes` holds.
    pub lines: usize,
}

impl Segment {
    /// Removes the first `lines` lines, which end at byte `bytes`.
    pub fn trim_front(&mut self, bytes: usize, lines: usize) {
        self.bytes.drain(..bytes.min(self.bytes.len()));
        self.lines -= lines.min(self.lines);
    }
}

/// Encoded lines waiting to be written, oldest first, at most `max_lines`
/// once [`LineBuffer::spill_excess`] has run.
#[derive(Debug)]
pub struct LineBuffer {
    segments: VecDeque<Segment>,
    lines: usize,
    max_lines: usize,
    segment_lines: usize,
    spare: Vec<Vec<u8>>,
}

impl LineBuffer {
    /// A buffer holding at most `max_lines` lines, in segments of at most
    /// `segment_lines` lines (also at most a sixteenth of the buffer, so a
    /// drop never throws away much more than it must).
    pub fn new(max_lines: usize, segment_lines: usize) -> Self {
        let max_lines = max_lines.max(1);
        LineBuffer {
            segments: VecDeque::new(),
            lines: 0,
            max_lines,
            segment_lines: segment_lines.min(max_lines / 16).max(1),
            spare: Vec::new(),
        }
    }

    /// Lines per segment at most.
    pub fn segment_lines(&self) -> usize {
        self.segment_lines
    }

    /// The bound on waiting lines.
    pub fn max_lines(&self) -> usize {
        self.max_lines
    }

    /// True when more lines wait than the bound allows.
    pub fn is_over(&self) -> bool {
        self.lines > self.max_lines
    }

    /// Encodes and appends metrics from `metrics` until `limit` lines were
    /// added or it runs out; returns how many were added. The bound is not
    /// applied: see [`LineBuffer::spill_excess`].
    pub fn extend<'a>(
        &mut self,
        metrics: &mut impl Iterator<Item = Metric<'a>>,
        limit: usize,
    ) -> usize {
        let mut added = 0;
        while added < limit {
            let Some(metric) = metrics.next() else { break };
            let need_new = self
                .segments
                .back()
                .is_none_or(|s| s.lines >= self.segment_lines);
            if need_new {
                let bytes = self.spare.pop().unwrap_or_default();
                self.segments.push_back(Segment { bytes, lines: 0 });
            }
            if let Some(seg) = self.segments.back_mut() {
                encode_line(&mut seg.bytes, &metric);
                seg.lines += 1;
                self.lines += 1;
                added += 1;
            }
        }
        added
    }

    /// Encodes and appends `metrics`, then applies the bound; returns how
    /// many old lines were dropped (for tests and benchmarks).
    pub fn push<'a>(&mut self, metrics: impl IntoIterator<Item = Metric<'a>>) -> usize {
        self.extend(&mut metrics.into_iter(), usize::MAX);
        let mut dropped = 0;
        self.spill_excess(|seg| dropped += seg.lines);
        dropped
    }

    /// Hands the oldest segments to `spill` (to be written to disk, or
    /// counted as dropped) until at most the bound is left.
    pub fn spill_excess(&mut self, mut spill: impl FnMut(&Segment)) {
        while self.lines > self.max_lines {
            match self.segments.pop_front() {
                Some(seg) => {
                    self.lines -= seg.lines;
                    spill(&seg);
                    self.recycle(seg);
                }
                None => break,
            }
        }
    }

    /// Removes every segment, oldest first, handing each to `take`.
    pub fn drain_into(&mut self, mut take: impl FnMut(&Segment)) {
        while let Some(seg) = self.segments.pop_front() {
            self.lines -= seg.lines;
            take(&seg);
            self.recycle(seg);
        }
    }

    /// Appends segments taken from another buffer ([`LineBuffer::take_all`]),
    /// as the newest lines; [`LineBuffer::spill_excess`] applies the bound.
    pub fn append(&mut self, segments: impl IntoIterator<Item = Segment>) {
        for seg in segments.into_iter().filter(|s| s.lines > 0) {
            self.lines += seg.lines;
            self.segments.push_back(seg);
        }
    }

    /// Removes every segment, oldest first, and returns them.
    pub fn take_all(&mut self) -> Vec<Segment> {
        self.lines = 0;
        self.segments.drain(..).collect()
    }

    /// The oldest segment, to be written.
    pub fn front(&self) -> Option<&Segment> {
        self.segments.front()
    }

    /// Removes the oldest segment and gives it to the caller (it is being
    /// written): it comes back with [`LineBuffer::put_back`] or goes to
    /// [`LineBuffer::recycle`].
    pub fn take_front(&mut self) -> Option<Segment> {
        let seg = self.segments.pop_front()?;
        self.lines -= seg.lines;
        Some(seg)
    }

    /// Puts a segment taken with [`LineBuffer::take_front`] back at the
    /// front (the newest first, when putting several back).
    pub fn put_back(&mut self, seg: Segment) {
        if seg.lines == 0 {
            self.recycle(seg);
            return;
        }
        self.lines += seg.lines;
        self.segments.push_front(seg);
    }

    /// Removes the first `lines` lines of the oldest segment, which end at
    /// byte `bytes` (they were delivered by a write that then failed).
    pub fn trim_front(&mut self, bytes: usize, lines: usize) {
        if let Some(seg) = self.segments.front_mut() {
            let lines = lines.min(seg.lines);
            seg.trim_front(bytes, lines);
            self.lines -= lines;
            if seg.lines == 0 {
                if let Some(empty) = self.segments.pop_front() {
                    self.recycle(empty);
                }
            }
        }
    }

    /// Removes the oldest segment once it was written; returns its lines.
    pub fn pop_front(&mut self) -> usize {
        match self.take_front() {
            Some(seg) => {
                let n = seg.lines;
                self.recycle(seg);
                n
            }
            None => 0,
        }
    }

    /// Lines waiting.
    pub fn len(&self) -> usize {
        self.lines
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// Keeps a segment's allocation for reuse.
    pub fn recycle(&mut self, mut seg: Segment) {
        // Keep a couple of segment allocations for reuse; free the rest so a
        // long outage does not leave the agent holding its peak memory.
        if self.spare.len() < 2 && seg.bytes.capacity() <= 1 << 20 {
            seg.bytes.clear();
            self.spare.push(seg.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::MetricBatch;

    fn batch(from: usize, n: usize) -> MetricBatch {
        let mut b = MetricBatch::new(100);
        for i in from..from + n {
            b.push("p", &format!("m{i}"), i as f64, None);
        }
        b
    }

    fn drain(buf: &mut LineBuffer) -> String {
        let mut out = String::new();
        while let Some(seg) = buf.front() {
            out.push_str(std::str::from_utf8(&seg.bytes).unwrap());
            buf.pop_front();
        }
        out
    }

    fn first_number(text: &str) -> usize {
        text.lines().next().unwrap()[3..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    #[test]
    fn keeps_order_and_counts() {
        let mut buf = LineBuffer::new(1000, 10);
        assert_eq!(buf.push(batch(0, 25).iter()), 0);
        assert_eq!(buf.len(), 25);
        let text = drain(&mut buf);
        let names: Vec<_> = text
            .lines()
            .map(|l| l.split(' ').next().unwrap().to_owned())
            .collect();
        let expected: Vec<_> = (0..25).map(|i| format!("p.m{i}")).collect();
        assert_eq!(names, expected);
        assert!(buf.is_empty());
    }

    #[test]
    fn drops_oldest_first_and_reports_exact_counts() {
        let mut buf = LineBuffer::new(160, 1000); // segments of 10 lines
        let mut dropped = 0;
        for round in 0..30 {
            dropped += buf.push(batch(round * 10, 10).iter());
        }
        assert!(buf.len() <= 160);
        assert_eq!(
            dropped + buf.len(),
            300,
            "every line is either kept or counted"
        );
        let text = drain(&mut buf);
        assert_eq!(
            first_number(&text),
            dropped,
            "the oldest lines were the ones dropped"
        );
    }

    #[test]
    fn extend_stops_at_the_limit_and_leaves_the_rest() {
        let b = batch(0, 25);
        let mut metrics = b.iter();
        let mut buf = LineBuffer::new(10, 100); // segments of 1 line
        assert_eq!(buf.extend(&mut metrics, 12), 12);
        assert_eq!(buf.len(), 12, "the bound waits for spill_excess");
        assert!(buf.is_over());
        let mut spilled = 0;
        buf.spill_excess(|s| spilled += s.lines);
        assert_eq!((spilled, buf.len()), (2, 10));
        assert_eq!(buf.extend(&mut metrics, usize::MAX), 13);
        assert_eq!(first_number(&drain(&mut buf)), 2);
    }

    #[test]
    fn segments_taken_come_back_in_order_and_can_be_trimmed() {
        let mut buf = LineBuffer::new(1000, 10);
        buf.push(batch(0, 25).iter());
        let first = buf.take_front().unwrap();
        let second = buf.take_front().unwrap();
        assert_eq!((first.lines, second.lines, buf.len()), (10, 10, 5));
        buf.put_back(second);
        buf.put_back(first);
        assert_eq!(buf.len(), 25);
        // The first three lines were delivered before a failure.
        let cut = {
            let front = &buf.front().unwrap().bytes;
            let mut newlines = front
                .iter()
                .enumerate()
                .filter(|(_, &b)| b == b'\n')
                .map(|(i, _)| i + 1);
            newlines.nth(2).unwrap()
        };
        buf.trim_front(cut, 3);
        assert_eq!(buf.len(), 22);
        let text = drain(&mut buf);
        assert_eq!(first_number(&text), 3);
        assert_eq!(text.lines().count(), 22);
    }
}
