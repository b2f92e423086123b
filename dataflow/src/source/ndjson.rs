//! A worker's byte ranges of NDJSON input, read line by line.

use std::ops::Range;

use emoflow_ingest::ndjson::{Line, LineCounter, RangesReader};
use emoflow_ingest::{RejectReason, Rejection, MAX_MESSAGE_BYTES};

use super::files::{InputData, Reader};
use super::{Batch, History, Source};
use crate::error::RunError;
use crate::feed::Feed;
use crate::intake::{At, Intake};

/// Opens the input again (each range is read through its own handle).
type OpenFn = Box<dyn FnMut() -> std::io::Result<Reader> + Send>;

/// Lines a back-fill reads at a time.
const HISTORY_BATCH: usize = 65_536;

/// One worker's NDJSON source.
pub(crate) struct NdjsonSource {
    input: InputData,
    reader: RangesReader<Reader, OpenFn>,
    /// Numbers the lines of dead letters, counting newlines from the last one.
    line_numbers: LineCounter,
    /// The byte spans whose lines were read so far: the history to back-fill from.
    read: Vec<Range<u64>>,
    finished: bool,
}

impl NdjsonSource {
    /// Reads `ranges` of `input`, in order.
    pub(crate) fn new(input: InputData, ranges: Vec<Range<u64>>) -> Self {
        NdjsonSource {
            reader: RangesReader::new(opener(&input), ranges),
            input,
            line_numbers: LineCounter::default(),
            read: Vec::new(),
            finished: false,
        }
    }
}

fn opener(input: &InputData) -> OpenFn {
    let input = input.clone();
    Box::new(move || input.open())
}

impl Source for NdjsonSource {
    fn read(
        &mut self,
        budget: usize,
        feed: &mut Feed,
        intake: &mut Intake,
    ) -> Result<Batch, RunError> {
        let (input, spans, line_numbers) = (&self.input, &mut self.read, &mut self.line_numbers);
        let mut io_error = None;
        let mut bytes = 0u64;
        let records = self
            .reader
            .next_batch(budget, |pos, line| {
                let (len, decoded, payload) = match line {
                    Line::Text(text) => (text.len() as u64 + 1, intake.decode(text, None, 0), text),
                    Line::TooLong { len, head } => (
                        len + 1,
                        Err(Rejection::new(
                            RejectReason::TooLarge,
                            format!("line is {len} bytes, the limit is {MAX_MESSAGE_BYTES}"),
                        )),
                        head,
                    ),
                };
                bytes += len;
                note_read(spans, pos.byte_offset, len);
                let at = At {
                    partition: 0,
                    offset: pos.byte_offset as i64,
                    arrival_ms: None,
                };
                let line = || match input.open().and_then(|i| line_numbers.line_number(i, pos)) {
                    Ok(n) => Some(n),
                    Err(e) => {
                        io_error = Some(e);
                        None
                    }
                };
                let _ = intake.admit(feed, at, decoded, payload, line);
            })
            .map_err(RunError::Read)?;
        if let Some(e) = io_error {
            return Err(RunError::Read(std::io::Error::new(
                e.kind(),
                format!("cannot count lines: {e}"),
            )));
        }
        self.finished = records == 0;
        Ok(Batch {
            records,
            amount: bytes,
        })
    }

    fn is_finished(&self) -> bool {
        self.finished
    }

    fn history(&mut self, f: &mut History<'_>) -> Result<(), RunError> {
        let mut again = RangesReader::new(opener(&self.input), self.read.clone());
        loop {
            let n = again
                .next_batch(HISTORY_BATCH, |_, line| {
                    if let Line::Text(bytes) = line {
                        if let Ok(e) = emoflow_ingest::decode_event(bytes, None) {
                            f(&e, None);
                        }
                    }
                })
                .map_err(RunError::Read)?;
            if n == 0 {
                return Ok(());
            }
        }
    }
}

/// Notes that the line at `offset`, `len` bytes with its newline, was read.
fn note_read(spans: &mut Vec<Range<u64>>, offset: u64, len: u64) {
    match spans.last_mut() {
        Some(last) if last.end == offset => last.end = offset + len,
        _ => spans.push(offset..offset + len),
    }
}
