//! Reading NDJSON fast, in byte ranges that workers read in parallel, without ever stopping on
//! a bad line.
//!
//! A file (or an in-memory buffer) is cut into as many byte ranges as there are workers. A line
//! belongs to the range that holds its first byte, so ranges can be read independently: a
//! reader skips the partial line at its start and finishes the line that crosses its end.
//! Lines longer than [`MAX_MESSAGE_BYTES`] are reported without being buffered whole.

use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;

use crate::event::MAX_MESSAGE_BYTES;

/// Splits `len` bytes into `parts` contiguous ranges of nearly equal size.
pub fn split_ranges(len: u64, parts: usize) -> Vec<Range<u64>> {
    let parts = parts.max(1) as u64;
    (0..parts)
        .map(|i| (len * i / parts)..(len * (i + 1) / parts))
        .collect()
}

/// One line handed to a [`LineReader`] callback.
#[derive(Debug, Clone, Copy)]
pub enum Line<'a> {
    /// A line within the size limit, without its line terminator.
    Text(&'a [u8]),
    /// A line over the size limit: only its length is known; its first bytes are kept for
    /// dead-letter reports.
    TooLong {
        /// The line's length in bytes.
        len: u64,
        /// Its first bytes (up to the buffer it was seen in).
        head: &'a [u8],
    },
}

/// Where a line was found: its index among the lines of its range (from 0), where that range
/// starts, and the line's byte offset in the whole input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinePos {
    /// Index among the lines of the range this reader reads, from 0 (a partial line the range
    /// starts in, which belongs to the previous range, counts as 0).
    pub index_in_range: u64,
    /// Byte offset of the line's first byte in the whole input.
    pub byte_offset: u64,
    /// Byte offset where the range starts (see [`LineCounter`] for line numbers).
    pub range_start: u64,
}

/// Splits `len` bytes into chunks of about `chunk` bytes, dealt round-robin to `parts` readers.
/// Readers that take turns through the input this way stay close to each other in it, so events
/// reach the dataflow in nearly the order of the file, as they would from parallel partitions.
pub fn interleaved_ranges(len: u64, parts: usize, chunk: u64) -> Vec<Vec<Range<u64>>> {
    let parts = parts.max(1);
    let chunk = chunk.max(1);
    let mut out = vec![Vec::new(); parts];
    let mut start = 0;
    let mut i = 0;
    while start < len {
        let end = (start + chunk).min(len);
        out[i % parts].push(start..end);
        start = end;
        i += 1;
    }
    out
}

/// Reads the lines of several byte ranges, one after the other, in batches.
pub struct RangesReader<R, F> {
    open: F,
    ranges: std::collections::VecDeque<Range<u64>>,
    current: Option<LineReader<R>>,
    /// The buffer of the last finished range, for the next.
    spare: Vec<u8>,
}

impl<R: Read + Seek, F: FnMut() -> io::Result<R>> RangesReader<R, F> {
    /// A reader of `ranges`, opening the input with `open` for each.
    pub fn new(open: F, ranges: Vec<Range<u64>>) -> Self {
        RangesReader {
            open,
            ranges: ranges.into(),
            current: None,
            spare: Vec::new(),
        }
    }

    /// As [`LineReader::next_batch`], across ranges.
    pub fn next_batch(
        &mut self,
        max_lines: usize,
        mut f: impl FnMut(LinePos, Line<'_>),
    ) -> io::Result<usize> {
        let mut handed = 0;
        while handed < max_lines {
            let reader = match &mut self.current {
                Some(r) => r,
                None => match self.ranges.pop_front() {
                    Some(range) => {
                        let buf = std::mem::take(&mut self.spare);
                        self.current
                            .insert(LineReader::with_buffer((self.open)()?, range, buf)?)
                    }
                    None => return Ok(handed),
                },
            };
            let n = reader.next_batch(max_lines - handed, &mut f)?;
            if n == 0 {
                if let Some(done) = self.current.take() {
                    self.spare = done.into_buffer();
                }
            }
            handed += n;
        }
        Ok(handed)
    }
}

/// Turns positions into 1-based line numbers, counting newlines only when asked and only once
/// over the input (positions must come in increasing order of `range_start`).
#[derive(Debug, Default)]
pub struct LineCounter {
    offset: u64,
    lines: u64,
}

impl LineCounter {
    /// The 1-based line number of the line at `pos`, reading `input` as far as its range start.
    pub fn line_number<R: Read + Seek>(&mut self, input: R, pos: LinePos) -> io::Result<u64> {
        if pos.range_start < self.offset {
            *self = LineCounter::default();
        }
        if pos.range_start > self.offset {
            self.lines += count_lines(input, self.offset..pos.range_start)?;
            self.offset = pos.range_start;
        }
        Ok(self.lines + pos.index_in_range + 1)
    }
}

/// Reads the lines of one byte range of an input, in batches.
pub struct LineReader<R> {
    input: R,
    buf: Vec<u8>,
    /// Bytes `buf[start..filled]` are read but not yet handed out.
    start: usize,
    filled: usize,
    /// Input offset of `buf[0]`.
    buf_offset: u64,
    /// Lines starting at or after this offset belong to the next range.
    end: u64,
    range_start: u64,
    next_index: u64,
    eof: bool,
}

const READ_CHUNK: usize = 1 << 20;

impl<R: Read + Seek> LineReader<R> {
    /// A reader of the lines whose first byte lies in `range`.
    pub fn new(input: R, range: Range<u64>) -> io::Result<Self> {
        Self::with_buffer(input, range, Vec::new())
    }

    /// As [`LineReader::new`], reusing `buf`'s allocation (see [`LineReader::into_buffer`]).
    pub fn with_buffer(mut input: R, range: Range<u64>, mut buf: Vec<u8>) -> io::Result<Self> {
        buf.clear();
        let mut skip_partial = false;
        let seek_to = if range.start > 0 {
            // Look at the byte before the range: a line starts at range.start only after '\n'.
            input.seek(SeekFrom::Start(range.start - 1))?;
            let mut b = [0u8; 1];
            let n = input.read(&mut b)?;
            skip_partial = n == 1 && b[0] != b'\n';
            range.start
        } else {
            input.seek(SeekFrom::Start(0))?;
            0
        };
        let mut reader = LineReader {
            input,
            buf,
            start: 0,
            filled: 0,
            buf_offset: seek_to,
            end: range.end,
            range_start: range.start,
            next_index: 0,
            eof: false,
        };
        if skip_partial {
            reader.skip_partial_line()?;
            // The skipped line is numbered as this range's line 0 (it starts before the range).
            reader.next_index = 1;
        }
        Ok(reader)
    }
}

impl<R: Read> LineReader<R> {
    /// The reader's buffer, to reuse for the next range.
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }

    fn offset_of(&self, pos: usize) -> u64 {
        self.buf_offset + pos as u64
    }

    /// Reads more input after the unconsumed bytes; false at the end of input.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.filled, 0);
            self.buf_offset += self.start as u64;
            self.filled -= self.start;
            self.start = 0;
        }
        if self.buf.len() < self.filled + READ_CHUNK {
            self.buf.resize(self.filled + READ_CHUNK, 0);
        }
        let n = loop {
            match self.input.read(&mut self.buf[self.filled..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        self.filled += n;
        if n == 0 {
            self.eof = true;
        }
        Ok(n > 0)
    }

    fn skip_partial_line(&mut self) -> io::Result<()> {
        loop {
            if let Some(nl) = memchr::memchr(b'\n', &self.buf[self.start..self.filled]) {
                self.start += nl + 1;
                return Ok(());
            }
            self.start = self.filled;
            if !self.fill()? {
                return Ok(());
            }
        }
    }

    /// Hands up to `max_lines` lines to `f`, in order. Empty and whitespace-only lines are
    /// skipped (they hold no event). Returns how many lines were handed out; 0 means the range
    /// is done.
    pub fn next_batch(
        &mut self,
        max_lines: usize,
        mut f: impl FnMut(LinePos, Line<'_>),
    ) -> io::Result<usize> {
        let mut handed = 0;
        while handed < max_lines {
            if self.offset_of(self.start) >= self.end {
                return Ok(handed);
            }
            let pending = &self.buf[self.start..self.filled];
            match memchr::memchr(b'\n', pending) {
                Some(nl) => {
                    let pos = self.take_pos();
                    let line = trim_cr(&self.buf[self.start..self.start + nl]);
                    self.start += nl + 1;
                    if emit(pos, line, &mut f) {
                        handed += 1;
                    }
                }
                None if pending.len() > MAX_MESSAGE_BYTES + 1 => {
                    self.skip_long_line(&mut f)?;
                    handed += 1;
                }
                None => {
                    if !self.fill()? {
                        // Last line without a terminator.
                        if self.start < self.filled {
                            let pos = self.take_pos();
                            let line = trim_cr(&self.buf[self.start..self.filled]);
                            self.start = self.filled;
                            if emit(pos, line, &mut f) {
                                handed += 1;
                            }
                        }
                        return Ok(handed);
                    }
                }
            }
        }
        Ok(handed)
    }

    fn take_pos(&mut self) -> LinePos {
        let pos = LinePos {
            index_in_range: self.next_index,
            byte_offset: self.offset_of(self.start),
            range_start: self.range_start,
        };
        self.next_index += 1;
        pos
    }

    /// Reports a line that is over the limit and discards it without buffering it whole.
    fn skip_long_line(&mut self, f: &mut impl FnMut(LinePos, Line<'_>)) -> io::Result<()> {
        let pos = self.take_pos();
        let head_len = 1024.min(self.filled - self.start);
        let head = self.buf[self.start..self.start + head_len].to_vec();
        let mut len = 0u64;
        loop {
            let pending = &self.buf[self.start..self.filled];
            if let Some(nl) = memchr::memchr(b'\n', pending) {
                len += nl as u64;
                self.start += nl + 1;
                break;
            }
            len += pending.len() as u64;
            self.start = self.filled;
            if !self.fill()? {
                break;
            }
        }
        f(pos, Line::TooLong { len, head: &head });
        Ok(())
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Hands a line on unless it is blank; says whether it did.
fn emit(pos: LinePos, line: &[u8], f: &mut impl FnMut(LinePos, Line<'_>)) -> bool {
    if line.iter().all(u8::is_ascii_whitespace) {
        return false;
    }
    f(pos, Line::Text(line));
    true
}

/// Counts the newlines in `range` of `input`.
fn count_lines<R: Read + Seek>(mut input: R, range: Range<u64>) -> io::Result<u64> {
    input.seek(SeekFrom::Start(range.start))?;
    let mut limited = input.take(range.end - range.start);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut lines = 0u64;
    loop {
        let n = limited.read(&mut buf)?;
        if n == 0 {
            return Ok(lines);
        }
        lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn read_all(data: &[u8], parts: usize, batch: usize) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        for range in split_ranges(data.len() as u64, parts) {
            let mut r = LineReader::new(Cursor::new(data), range).unwrap();
            while r
                .next_batch(batch, |pos, line| {
                    let text = match line {
                        Line::Text(t) => String::from_utf8_lossy(t).into_owned(),
                        Line::TooLong { len, .. } => format!("<{len} bytes>"),
                    };
                    out.push((pos.byte_offset, text));
                })
                .unwrap()
                > 0
            {}
        }
        out
    }

    #[test]
    fn every_line_is_read_once_whatever_the_split() {
        let data = b"a\nbb\r\n\nccc\n   \nd";
        let expected = read_all(data, 1, 100);
        assert_eq!(
            expected.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>(),
            ["a", "bb", "ccc", "d"]
        );
        for parts in 1..=data.len() + 2 {
            for batch in 1..4 {
                assert_eq!(
                    read_all(data, parts, batch),
                    expected,
                    "parts {parts} batch {batch}"
                );
            }
        }
    }

    #[test]
    fn overlong_line_is_reported_and_skipped() {
        let mut data = b"first\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', 3 * READ_CHUNK));
        data.extend(b"\nlast\n");
        let lines = read_all(&data, 1, 10);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1].1, format!("<{} bytes>", 3 * READ_CHUNK));
        assert_eq!(lines[2].1, "last");
    }

    #[test]
    fn interleaved_ranges_read_every_line_once_with_its_number() {
        let data: String = (1..=200).map(|i| format!("line{i}\n")).collect();
        for (parts, chunk) in [(1, 7), (2, 13), (3, 64), (2, 10_000)] {
            let mut seen = Vec::new();
            for ranges in interleaved_ranges(data.len() as u64, parts, chunk) {
                let mut reader = RangesReader::new(|| Ok(Cursor::new(data.as_bytes())), ranges);
                let mut counter = LineCounter::default();
                let mut batch = Vec::new();
                while reader
                    .next_batch(5, |pos, line| batch.push((pos, line_text(line))))
                    .unwrap()
                    > 0
                {
                    for (pos, text) in batch.drain(..) {
                        let n = counter
                            .line_number(Cursor::new(data.as_bytes()), pos)
                            .unwrap();
                        assert_eq!(text, format!("line{n}"));
                        seen.push(n);
                    }
                }
            }
            seen.sort();
            assert_eq!(
                seen,
                (1..=200).collect::<Vec<u64>>(),
                "parts {parts} chunk {chunk}"
            );
        }
    }

    fn line_text(line: Line<'_>) -> String {
        match line {
            Line::Text(t) => String::from_utf8_lossy(t).into_owned(),
            Line::TooLong { len, .. } => format!("<{len}>"),
        }
    }

    proptest::proptest! {
        #[test]
        fn splits_partition_lines(text in "[ab\n]{0,60}", parts in 1usize..6) {
            let one = read_all(text.as_bytes(), 1, 7);
            proptest::prop_assert_eq!(read_all(text.as_bytes(), parts, 2), one);
        }
    }
}
