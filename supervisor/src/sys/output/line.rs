//! Splitting a byte stream into bounded lines.

use std::io;
use std::os::fd::BorrowedFd;

/// How a [`Line`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnd {
    /// By `\n` (removed, as is a `\r` before it).
    Newline,
    /// It reached the maximum length and was cut; the rest follows as the next line(s).
    Split,
    /// The stream ended without a final newline.
    Eof,
}

/// One line handed out by a [`LineBuffer`]. Valid only during the callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// The bytes, without the line terminator. Not necessarily UTF-8.
    pub bytes: &'a [u8],
    /// How it ended.
    pub end: LineEnd,
}

/// Reassembles lines from arbitrary chunks of bytes, holding at most `max_line` bytes of an
/// unfinished line.
///
/// A line longer than `max_line` is handed out in pieces of `max_line` bytes marked
/// [`LineEnd::Split`], so a worker that never writes a newline cannot grow supervisor memory.
///
/// ```
/// use amp_supervisor::sys::{LineBuffer, LineEnd};
/// let mut lb = LineBuffer::new(4);
/// let mut out = Vec::new();
/// lb.push(b"ab\r\ncdefg", |l| out.push((l.bytes.to_vec(), l.end)));
/// lb.finish(|l| out.push((l.bytes.to_vec(), l.end)));
/// assert_eq!(out, [
///     (b"ab".to_vec(), LineEnd::Newline),
///     (b"cdef".to_vec(), LineEnd::Split),
///     (b"g".to_vec(), LineEnd::Eof),
/// ]);
/// ```
#[derive(Debug, Clone)]
pub struct LineBuffer {
    partial: Vec<u8>,
    max_line: usize,
}

impl LineBuffer {
    /// A buffer splitting lines longer than `max_line` bytes (at least 1; 0 is treated as 1).
    #[must_use]
    pub fn new(max_line: usize) -> Self {
        Self {
            partial: Vec::new(),
            max_line: max_line.max(1),
        }
    }

    /// The configured maximum line length.
    #[must_use]
    pub const fn max_line(&self) -> usize {
        self.max_line
    }

    /// Bytes of an unfinished line held back.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// Feeds `input`; calls `sink` for every line completed (or split) by it.
    pub fn push(&mut self, mut input: &[u8], mut sink: impl FnMut(Line<'_>)) {
        while !input.is_empty() {
            // Invariant: partial.len() <= max_line.
            let room = self.max_line - self.partial.len();
            let window = &input[..input.len().min(room + 1)];
            if let Some(i) = window.iter().position(|&b| b == b'\n') {
                // A complete line of partial + input[..i] <= max_line bytes.
                let mut line = self.joined(&input[..i]);
                if line.last() == Some(&b'\r') {
                    line = &line[..line.len() - 1];
                }
                sink(Line {
                    bytes: line,
                    end: LineEnd::Newline,
                });
                self.partial.clear();
                input = &input[i + 1..];
            } else if input.len() > room {
                // More than `room` bytes and no newline among the first room+1: cut here.
                sink(Line {
                    bytes: self.joined(&input[..room]),
                    end: LineEnd::Split,
                });
                self.partial.clear();
                input = &input[room..];
            } else {
                self.partial.extend_from_slice(input);
                input = &[];
            }
        }
    }

    /// partial + tail, copying only when there is a partial line.
    fn joined<'s>(&'s mut self, tail: &'s [u8]) -> &'s [u8] {
        if self.partial.is_empty() {
            tail
        } else {
            self.partial.extend_from_slice(tail);
            &self.partial
        }
    }

    /// The stream ended: hands out an unfinished line, if any, as [`LineEnd::Eof`].
    pub fn finish(&mut self, mut sink: impl FnMut(Line<'_>)) {
        if !self.partial.is_empty() {
            sink(Line {
                bytes: &self.partial,
                end: LineEnd::Eof,
            });
            self.partial.clear();
        }
    }
}

/// Why [`drain_fd`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainStatus {
    /// Nothing more to read now (`EAGAIN`): wait for the next readiness event.
    WouldBlock,
    /// The byte budget was used up and more may be waiting. mio readiness is edge-triggered, so
    /// the caller must call again (e.g. on the next loop turn) without waiting for an event.
    Budget,
    /// End of stream (every writer closed it); any unfinished line was handed out.
    Eof,
}

/// Reads a nonblocking pipe until `EAGAIN`, end of stream or `budget` bytes, feeding
/// `lines` and calling `sink` for each line.
///
/// # Errors
///
/// A `read(2)` error other than `EAGAIN`/`EINTR`. A blocking descriptor would block here: pass
/// the `O_NONBLOCK` read ends from [`Child`](super::super::Child).
pub fn drain_fd(
    fd: BorrowedFd<'_>,
    lines: &mut LineBuffer,
    budget: usize,
    mut sink: impl FnMut(Line<'_>),
) -> io::Result<DrainStatus> {
    let mut buf = [0u8; 8192];
    let mut used = 0usize;
    while used < budget {
        let want = buf.len().min(budget - used);
        match nix::unistd::read(fd, &mut buf[..want]) {
            Ok(0) => {
                lines.finish(&mut sink);
                return Ok(DrainStatus::Eof);
            }
            Ok(n) => {
                used += n;
                lines.push(&buf[..n], &mut sink);
            }
            Err(nix::errno::Errno::EAGAIN) => return Ok(DrainStatus::WouldBlock),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(DrainStatus::Budget)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd as _;

    fn collect(lb: &mut LineBuffer, chunks: &[&[u8]], eof: bool) -> Vec<(String, LineEnd)> {
        let mut out = Vec::new();
        let mut sink =
            |l: Line<'_>| out.push((String::from_utf8_lossy(l.bytes).into_owned(), l.end));
        for c in chunks {
            lb.push(c, &mut sink);
        }
        if eof {
            lb.finish(&mut sink);
        }
        out
    }

    fn nl(s: &str) -> (String, LineEnd) {
        (s.to_owned(), LineEnd::Newline)
    }

    #[test]
    fn lines_across_chunk_boundaries() {
        let mut lb = LineBuffer::new(100);
        let out = collect(&mut lb, &[b"hel", b"lo\nwor", b"ld\n\nlast"], false);
        assert_eq!(out, vec![nl("hello"), nl("world"), nl("")]);
        assert_eq!(lb.pending(), 4);
        assert_eq!(
            collect(&mut lb, &[], true),
            vec![("last".to_owned(), LineEnd::Eof)]
        );
        assert_eq!(lb.pending(), 0);
        assert!(collect(&mut lb, &[], true).is_empty());
    }

    #[test]
    fn crlf_is_stripped_but_lone_cr_kept() {
        let mut lb = LineBuffer::new(100);
        let out = collect(&mut lb, &[b"a\r", b"\nb\rc\n"], false);
        assert_eq!(out, vec![nl("a"), nl("b\rc")]);
    }

    #[test]
    fn exact_max_length_line_is_not_split() {
        let mut lb = LineBuffer::new(4);
        assert_eq!(collect(&mut lb, &[b"abcd\n"], false), vec![nl("abcd")]);
        // Newline arriving in the next chunk after exactly max bytes.
        assert_eq!(collect(&mut lb, &[b"wxyz", b"\n"], false), vec![nl("wxyz")]);
        assert_eq!(
            collect(&mut lb, &[b"ab", b"cd", b"\n"], false),
            vec![nl("abcd")]
        );
    }

    #[test]
    fn long_lines_are_split_into_max_sized_pieces() {
        let mut lb = LineBuffer::new(4);
        let out = collect(&mut lb, &[b"abcdefghij\n"], false);
        let split = |s: &str| (s.to_owned(), LineEnd::Split);
        assert_eq!(out, vec![split("abcd"), split("efgh"), nl("ij")]);
        // Same, byte by byte: the buffer never holds more than max.
        let mut out = Vec::new();
        for b in b"abcdefghij\n" {
            lb.push(std::slice::from_ref(b), |l| {
                out.push((String::from_utf8_lossy(l.bytes).into_owned(), l.end))
            });
            assert!(lb.pending() <= 4);
        }
        assert_eq!(out, vec![split("abcd"), split("efgh"), nl("ij")]);
    }

    #[test]
    fn zero_max_is_one() {
        let mut lb = LineBuffer::new(0);
        assert_eq!(lb.max_line(), 1);
        let out = collect(&mut lb, &[b"ab\n"], false);
        assert_eq!(out, vec![("a".to_owned(), LineEnd::Split), nl("b")]);
    }

    #[test]
    fn drain_reads_until_eagain_then_eof() {
        use nix::fcntl::OFlag;
        let (r, w) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).unwrap();
        let mut lb = LineBuffer::new(64);
        let mut got = Vec::new();
        nix::unistd::write(&w, b"one\ntwo\nthr").unwrap();
        let st = drain_fd(r.as_fd(), &mut lb, 1 << 20, |l| got.push(l.bytes.to_vec())).unwrap();
        assert_eq!(st, DrainStatus::WouldBlock);
        assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
        nix::unistd::write(&w, b"ee\nfour").unwrap();
        drop(w);
        let st = drain_fd(r.as_fd(), &mut lb, 1 << 20, |l| got.push(l.bytes.to_vec())).unwrap();
        assert_eq!(st, DrainStatus::Eof);
        assert_eq!(got[2..], [b"three".to_vec(), b"four".to_vec()]);
    }

    #[test]
    fn drain_stops_at_budget() {
        use nix::fcntl::OFlag;
        let (r, w) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).unwrap();
        nix::unistd::write(&w, b"aaaa\nbbbb\n").unwrap();
        let mut lb = LineBuffer::new(64);
        let mut got = Vec::new();
        let st = drain_fd(r.as_fd(), &mut lb, 5, |l| got.push(l.bytes.to_vec())).unwrap();
        assert_eq!((st, got.len()), (DrainStatus::Budget, 1));
        let st = drain_fd(r.as_fd(), &mut lb, 5, |l| got.push(l.bytes.to_vec())).unwrap();
        assert_eq!((st, got.len()), (DrainStatus::Budget, 2));
        let st = drain_fd(r.as_fd(), &mut lb, 5, |l| got.push(l.bytes.to_vec())).unwrap();
        assert_eq!(st, DrainStatus::WouldBlock);
    }
}
