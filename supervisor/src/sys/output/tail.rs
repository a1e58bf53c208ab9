//! The last lines a worker wrote, kept in memory for `ampctl logs` and crash reports.

use std::collections::VecDeque;

/// A ring of the most recent lines, bounded both in line count and in total bytes.
///
/// Lines are stored as UTF-8 (invalid sequences replaced). A single line longer than the byte
/// bound is truncated to it (at a character boundary).
///
/// ```
/// use amp_supervisor::sys::LogTail;
/// let mut tail = LogTail::new(2, 1024);
/// for l in ["a", "b", "c"] {
///     tail.push(l.as_bytes());
/// }
/// assert_eq!(tail.iter().collect::<Vec<_>>(), ["b", "c"]);
/// assert_eq!(tail.evicted(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct LogTail {
    lines: VecDeque<String>,
    bytes: usize,
    max_lines: usize,
    max_bytes: usize,
    evicted: u64,
}

impl LogTail {
    /// Keeps at most `max_lines` lines and `max_bytes` bytes of line text.
    #[must_use]
    pub fn new(max_lines: usize, max_bytes: usize) -> Self {
        Self {
            lines: VecDeque::new(),
            bytes: 0,
            max_lines,
            max_bytes,
            evicted: 0,
        }
    }

    /// Appends a line (without its terminator), evicting the oldest lines to stay in bounds.
    pub fn push(&mut self, line: &[u8]) {
        if self.max_lines == 0 || self.max_bytes == 0 {
            self.evicted += 1;
            return;
        }
        let mut text = String::from_utf8_lossy(line).into_owned();
        if text.len() > self.max_bytes {
            let mut cut = self.max_bytes;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        self.bytes += text.len();
        self.lines.push_back(text);
        while self.lines.len() > self.max_lines || self.bytes > self.max_bytes {
            let Some(old) = self.lines.pop_front() else {
                break;
            };
            self.bytes -= old.len();
            self.evicted += 1;
        }
    }

    /// Lines kept, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &str> + ExactSizeIterator {
        self.lines.iter().map(String::as_str)
    }

    /// The newest `n` lines (or fewer), oldest first.
    pub fn last(&self, n: usize) -> impl Iterator<Item = &str> {
        self.iter().skip(self.lines.len().saturating_sub(n))
    }

    /// Number of lines kept.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// No lines kept.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Total bytes of the lines kept.
    #[must_use]
    pub const fn bytes(&self) -> usize {
        self.bytes
    }

    /// Lines dropped so far to stay within bounds.
    #[must_use]
    pub const fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Forgets every line (the eviction count is kept).
    pub fn clear(&mut self) {
        self.lines.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(t: &LogTail) -> Vec<&str> {
        t.iter().collect()
    }

    #[test]
    fn bounded_by_line_count() {
        let mut t = LogTail::new(3, 1000);
        for i in 0..10 {
            t.push(format!("line {i}").as_bytes());
        }
        assert_eq!(kept(&t), ["line 7", "line 8", "line 9"]);
        assert_eq!((t.len(), t.evicted()), (3, 7));
        assert_eq!(t.last(2).collect::<Vec<_>>(), ["line 8", "line 9"]);
        assert_eq!(t.last(10).count(), 3);
    }

    #[test]
    fn bounded_by_bytes() {
        let mut t = LogTail::new(100, 10);
        t.push(b"aaaa");
        t.push(b"bbbb");
        assert_eq!(t.bytes(), 8);
        t.push(b"cccc");
        assert_eq!(kept(&t), ["bbbb", "cccc"]);
        assert_eq!(t.bytes(), 8);
        // A line larger than the whole budget is truncated and replaces everything.
        t.push(b"0123456789abcdef");
        assert_eq!(kept(&t), ["0123456789"]);
        assert_eq!(t.bytes(), 10);
    }

    #[test]
    fn truncation_respects_char_boundaries_and_invalid_utf8_is_replaced() {
        let mut t = LogTail::new(10, 5);
        t.push("aaaé€".as_bytes()); // 3 + 2 + 3 bytes; cut at 5 keeps "aaaé"
        assert_eq!(kept(&t), ["aaaé"]);
        t.clear();
        t.push(b"\xffok");
        assert_eq!(kept(&t), ["\u{fffd}ok"]);
    }

    #[test]
    fn zero_bounds_keep_nothing() {
        let mut t = LogTail::new(0, 100);
        t.push(b"x");
        assert!(t.is_empty());
        assert_eq!(t.evicted(), 1);
    }
}
