//! The bounded buffer an output keeps while its receiver is away.
//!
//! Lines are stored encoded, in segments of bounded size, so memory is about
//! the size of the lines themselves and dropping the oldest lines is popping
//! the oldest segment. Every dropped line is counted by the caller.

use std::collections::VecDeque;

use crate::metrics::MetricBatch;
use crate::output::encode::encode_line;

/// One run of encoded lines.
#[derive(Debug, Default)]
pub struct Segment {
    /// The encoded lines, each ending in `\n`.
    pub bytes: Vec<u8>,
    /// How many lines `bytes` holds.
    pub lines: usize,
}

/// Encoded lines waiting to be sent, oldest first, at most `max_lines`.
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

    /// Encodes and appends `batch`; returns how many old lines were dropped
    /// to stay within the bound.
    pub fn push(&mut self, batch: &MetricBatch) -> usize {
        let mut dropped = 0;
        self.push_spilling(batch, |seg| dropped += seg.lines);
        dropped
    }

    /// Encodes and appends `batch`, handing the oldest segments that no
    /// longer fit to `spill` (to be written to disk, or counted as dropped).
    pub fn push_spilling(&mut self, batch: &MetricBatch, mut spill: impl FnMut(&Segment)) {
        for metric in batch.iter() {
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
            }
        }
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

    /// The oldest segment, to be written.
    pub fn front(&self) -> Option<&Segment> {
        self.segments.front()
    }

    /// Removes the oldest segment once it was written; returns its lines.
    pub fn pop_front(&mut self) -> usize {
        match self.segments.pop_front() {
            Some(seg) => {
                let n = seg.lines;
                self.lines -= n;
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

    /// Empties the buffer; returns how many lines it held.
    pub fn clear(&mut self) -> usize {
        let n = self.lines;
        while self.pop_front() > 0 {}
        self.segments.clear();
        self.lines = 0;
        n
    }

    fn recycle(&mut self, mut seg: Segment) {
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

    #[test]
    fn keeps_order_and_counts() {
        let mut buf = LineBuffer::new(1000, 10);
        assert_eq!(buf.push(&batch(0, 25)), 0);
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
            dropped += buf.push(&batch(round * 10, 10));
        }
        assert!(buf.len() <= 160);
        assert_eq!(
            dropped + buf.len(),
            300,
            "every line is either kept or counted"
        );
        let text = drain(&mut buf);
        let first: usize = text.lines().next().unwrap()[3..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(first, dropped, "the oldest lines were the ones dropped");
    }
}
