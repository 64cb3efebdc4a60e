//! Reassembly of incoming SEND chunks into messages (RFC 4975 §5.1, §7.3.1).
//!
//! Chunks of one message are matched by Message-ID and placed by `Byte-Range`; they may come out
//! of order, overlap or repeat. Small messages are collected in memory under a global budget;
//! a sink factory may direct a message to a [`ChunkSink`] instead (a file for RFC 5547 transfers),
//! so a large transfer never sits in memory.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::io::{self, Seek, SeekFrom, Write};

use bytes::Bytes;

use super::message::{
    BYTE_RANGE, ByteRange, Continuation, FailureReport, Headers, Method, Request,
};
use super::{MsrpError, MsrpUri};

/// Where the bytes of one incoming message go.
pub trait ChunkSink: Send {
    /// Writes `data` at the 0-based `offset` (the same range may be written again).
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Called once every byte of `total` has been written: flush, and return the bytes if the
    /// sink keeps them in memory.
    fn finish(&mut self, total: u64) -> io::Result<Option<Bytes>>;
    /// Bytes of memory the sink holds (counted against the reassembler's budget).
    fn memory_bytes(&self) -> usize {
        0
    }
    /// How much `memory_bytes` would grow by writing `len` bytes at `offset`.
    fn memory_growth(&self, offset: u64, len: usize) -> u64 {
        let _ = (offset, len);
        0
    }
}

/// An in-memory sink (the default for messages without a factory-provided sink).
#[derive(Debug, Default)]
pub struct MemorySink {
    data: Vec<u8>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        MemorySink::default()
    }
}

impl ChunkSink for MemorySink {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::Error::other("offset too large"))?;
        let end = start
            .checked_add(data.len())
            .ok_or_else(|| io::Error::other("offset too large"))?;
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        if let Some(dst) = self.data.get_mut(start..end) {
            dst.copy_from_slice(data);
        }
        Ok(())
    }

    fn finish(&mut self, total: u64) -> io::Result<Option<Bytes>> {
        let total = usize::try_from(total).map_err(|_| io::Error::other("total too large"))?;
        self.data.truncate(total);
        Ok(Some(Bytes::from(std::mem::take(&mut self.data))))
    }

    fn memory_bytes(&self) -> usize {
        self.data.len()
    }

    fn memory_growth(&self, offset: u64, len: usize) -> u64 {
        (offset.saturating_add(len as u64)).saturating_sub(self.data.len() as u64)
    }
}

/// A sink over anything seekable and writable, such as a `std::fs::File` opened by the caller.
pub struct SeekSink<W: Write + Seek + Send> {
    inner: W,
}

impl<W: Write + Seek + Send> SeekSink<W> {
    /// Wraps a writer; byte 0 of the message goes to position 0.
    pub fn new(inner: W) -> Self {
        SeekSink { inner }
    }

    /// The writer back.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write + Seek + Send> fmt::Debug for SeekSink<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SeekSink")
    }
}

impl<W: Write + Seek + Send> ChunkSink for SeekSink<W> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.inner.seek(SeekFrom::Start(offset))?;
        self.inner.write_all(data)
    }

    fn finish(&mut self, _total: u64) -> io::Result<Option<Bytes>> {
        self.inner.flush()?;
        Ok(None)
    }
}

/// A sink writing to a file the caller opened (RFC 5547 transfers).
pub type FileSink = SeekSink<std::fs::File>;

/// Chooses a sink for a new message from its first chunk: `Ok(None)` collects it in memory.
pub type SinkFactory = Box<dyn FnMut(&Request) -> io::Result<Option<Box<dyn ChunkSink>>> + Send>;

/// Reassembly limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// Largest message accepted (announced total or bytes reached), any sink.
    pub max_message_size: u64,
    /// Memory for all in-memory messages together.
    pub memory_budget: usize,
    /// Messages being reassembled at once.
    pub max_messages: usize,
    /// Disjoint received ranges tracked per message (a peer scattering tiny chunks is refused).
    pub max_ranges: usize,
    /// Completed Message-IDs remembered, so a late duplicate chunk is recognised instead of
    /// starting a message that never completes.
    pub remember_completed: usize,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        ReassemblyLimits {
            max_message_size: 4 * 1024 * 1024 * 1024,
            memory_budget: 16 * 1024 * 1024,
            max_messages: 64,
            max_ranges: 1024,
            remember_completed: 1024,
        }
    }
}

/// A message whose bytes have all arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    /// Its Message-ID.
    pub message_id: String,
    /// The headers of its first chunk (without `Byte-Range`): Content-Type, paths, reports, ….
    pub headers: Headers,
    /// Its size.
    pub total: u64,
    /// The bytes, for in-memory messages; `None` when a custom sink holds them.
    pub body: Option<Bytes>,
    /// The sender asked for a success REPORT.
    pub success_report: bool,
    /// The sender's failure report preference.
    pub failure_report: FailureReport,
}

impl Completed {
    /// The Content-Type.
    pub fn content_type(&self) -> Option<&str> {
        self.headers.content_type()
    }

    /// The From-Path of the message (where REPORTs go).
    pub fn from_path(&self) -> Result<Vec<MsrpUri>, MsrpError> {
        self.headers.from_path()
    }
}

/// What one chunk did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// More bytes are missing.
    Partial {
        /// The Message-ID.
        message_id: String,
        /// Distinct bytes received so far.
        received: u64,
        /// The total, once known.
        total: Option<u64>,
    },
    /// The message is complete.
    Complete(Completed),
    /// A chunk of a message completed earlier (a retransmission): nothing to do but answer 200.
    Duplicate {
        /// The Message-ID.
        message_id: String,
    },
    /// The sender aborted the message (`#`); what was collected is dropped.
    Aborted {
        /// The Message-ID.
        message_id: String,
        /// Distinct bytes that had been received.
        received: u64,
    },
}

/// Sorted, disjoint half-open ranges.
#[derive(Debug, Clone, Default)]
struct RangeSet {
    ranges: Vec<(u64, u64)>,
}

impl RangeSet {
    fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let mut s = start;
        let mut e = end;
        let mut out = Vec::with_capacity(self.ranges.len() + 1);
        let mut placed = false;
        for &(a, b) in &self.ranges {
            if b < s {
                out.push((a, b));
            } else if a > e {
                if !placed {
                    out.push((s, e));
                    placed = true;
                }
                out.push((a, b));
            } else {
                s = s.min(a);
                e = e.max(b);
            }
        }
        if !placed {
            out.push((s, e));
        }
        self.ranges = out;
    }

    fn covered(&self) -> u64 {
        self.ranges.iter().map(|(a, b)| b - a).sum()
    }

    fn complete(&self, total: u64) -> bool {
        total == 0 || self.ranges.first() == Some(&(0, total))
    }

    fn count_after_insert(&self, start: u64, end: u64) -> usize {
        let overlapping = self
            .ranges
            .iter()
            .filter(|&&(a, b)| !(b < start || a > end))
            .count();
        self.ranges.len() + 1 - overlapping
    }
}

struct Partial {
    headers: Headers,
    /// The total announced in Byte-Range.
    total: Option<u64>,
    /// Where the `$` chunk ended.
    last_end: Option<u64>,
    ranges: RangeSet,
    sink: Box<dyn ChunkSink>,
}

impl Partial {
    fn effective_total(&self) -> Option<u64> {
        self.last_end.or(self.total)
    }
}

/// Reassembles incoming SEND chunks per Message-ID.
pub struct Reassembler {
    limits: ReassemblyLimits,
    partials: HashMap<String, Partial>,
    factory: Option<SinkFactory>,
    completed: HashSet<String>,
    completed_order: VecDeque<String>,
}

impl fmt::Debug for Reassembler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reassembler")
            .field("limits", &self.limits)
            .field("in_progress", &self.partials.len())
            .finish()
    }
}

impl Default for Reassembler {
    fn default() -> Self {
        Reassembler::new(ReassemblyLimits::default())
    }
}

impl Reassembler {
    /// A reassembler keeping every message in memory (within the budget).
    pub fn new(limits: ReassemblyLimits) -> Self {
        Reassembler {
            limits,
            partials: HashMap::new(),
            factory: None,
            completed: HashSet::new(),
            completed_order: VecDeque::new(),
        }
    }

    /// Sets the factory asked for a sink on every new message.
    pub fn with_sink_factory(mut self, factory: SinkFactory) -> Self {
        self.factory = Some(factory);
        self
    }

    /// The limits in force.
    pub fn limits(&self) -> ReassemblyLimits {
        self.limits
    }

    /// Messages being reassembled.
    pub fn in_progress(&self) -> usize {
        self.partials.len()
    }

    /// Memory held by in-memory messages.
    pub fn memory_used(&self) -> usize {
        self.partials.values().map(|p| p.sink.memory_bytes()).sum()
    }

    /// The 0-based half-open ranges received so far for `message_id`.
    pub fn received_ranges(&self, message_id: &str) -> Option<Vec<(u64, u64)>> {
        self.partials
            .get(message_id)
            .map(|p| p.ranges.ranges.clone())
    }

    /// The number of bytes received contiguously from the start (where a resumed transfer,
    /// RFC 5547 `a=file-range`, should continue; 0-based).
    pub fn contiguous_prefix(&self, message_id: &str) -> u64 {
        self.partials
            .get(message_id)
            .and_then(|p| p.ranges.ranges.first().copied())
            .filter(|&(a, _)| a == 0)
            .map_or(0, |(_, b)| b)
    }

    /// Forgets a message (after a failure, a timeout or the end of the session).
    pub fn cancel(&mut self, message_id: &str) -> bool {
        self.partials.remove(message_id).is_some()
    }

    fn remember(&mut self, message_id: &str) {
        if self.limits.remember_completed == 0 {
            return;
        }
        while self.completed_order.len() >= self.limits.remember_completed {
            if let Some(old) = self.completed_order.pop_front() {
                self.completed.remove(&old);
            }
        }
        if self.completed.insert(message_id.to_owned()) {
            self.completed_order.push_back(message_id.to_owned());
        }
    }

    /// Takes one SEND chunk. An error leaves other messages untouched; answer the chunk with
    /// [`MsrpError::status_code`] (413 drops the whole message here too).
    pub fn push(&mut self, chunk: &Request) -> Result<Progress, MsrpError> {
        if chunk.method != Method::Send {
            return Err(MsrpError::InvalidStartLine(
                "only SEND requests carry message data",
            ));
        }
        let message_id = chunk
            .headers
            .message_id()
            .ok_or(MsrpError::MissingHeader(super::message::MESSAGE_ID))?
            .to_owned();
        let result = self.push_inner(&message_id, chunk);
        if result.as_ref().is_err_and(|e| e.status_code() == 413) {
            self.partials.remove(&message_id);
        }
        result
    }

    fn push_inner(&mut self, message_id: &str, chunk: &Request) -> Result<Progress, MsrpError> {
        let body = chunk.body_bytes();
        let len = body.len() as u64;
        // RFC 4975 §7.1.1: no Byte-Range means the chunk starts at byte 1 and the total is unknown
        let range = chunk.headers.byte_range()?.unwrap_or(ByteRange {
            start: 1,
            end: None,
            total: None,
        });
        let offset = range.offset();
        let end = offset
            .checked_add(len)
            .ok_or(MsrpError::InconsistentRange("range overflows"))?;
        if let Some(e) = range.end {
            // an interrupted chunk may carry fewer bytes than announced, never more
            if end > e {
                return Err(MsrpError::InconsistentRange(
                    "body longer than its byte range",
                ));
            }
        }
        let max = self.limits.max_message_size;
        if let Some(t) = range.total {
            if t > max {
                return Err(MsrpError::MessageTooLarge {
                    size: t,
                    limit: max,
                });
            }
            if end > t {
                return Err(MsrpError::InconsistentRange("chunk goes past the total"));
            }
        }
        if end > max {
            return Err(MsrpError::MessageTooLarge {
                size: end,
                limit: max,
            });
        }

        if !self.partials.contains_key(message_id) {
            if self.completed.contains(message_id) {
                return Ok(Progress::Duplicate {
                    message_id: message_id.to_owned(),
                });
            }
            if chunk.continuation == Continuation::Aborted {
                return Ok(Progress::Aborted {
                    message_id: message_id.to_owned(),
                    received: 0,
                });
            }
            if self.partials.len() >= self.limits.max_messages {
                return Err(MsrpError::TooManyMessages(self.limits.max_messages));
            }
            let sink = match self.factory.as_mut() {
                Some(f) => f(chunk)?,
                None => None,
            };
            let sink: Box<dyn ChunkSink> = match sink {
                Some(s) => s,
                None => {
                    let budget = self.limits.memory_budget as u64;
                    if let Some(t) = range.total {
                        let free = budget.saturating_sub(self.memory_used() as u64);
                        if t > free {
                            return Err(MsrpError::MemoryBudget(self.limits.memory_budget));
                        }
                    }
                    Box::new(MemorySink::new())
                }
            };
            let mut headers = chunk.headers.clone();
            headers.remove(BYTE_RANGE);
            self.partials.insert(
                message_id.to_owned(),
                Partial {
                    headers,
                    total: None,
                    last_end: None,
                    ranges: RangeSet::default(),
                    sink,
                },
            );
        }
        let used = self.memory_used() as u64;
        let budget = self.limits.memory_budget as u64;
        let max_ranges = self.limits.max_ranges;
        let Some(p) = self.partials.get_mut(message_id) else {
            return Err(MsrpError::InconsistentRange("message vanished"));
        };

        if chunk.continuation == Continuation::Aborted {
            let received = p.ranges.covered();
            self.partials.remove(message_id);
            return Ok(Progress::Aborted {
                message_id: message_id.to_owned(),
                received,
            });
        }

        // The announced total must not change; the last chunk (`$`) fixes where the message
        // ends. When the two disagree (RFC 4975's own §4 example announces 25 bytes and carries
        // 23) the framing wins: the end-line is what the sender actually produced.
        if let Some(t) = range.total {
            match p.total {
                Some(a) if a != t => {
                    return Err(MsrpError::InconsistentRange("total size changed"));
                }
                _ => p.total = Some(t),
            }
        }
        if chunk.continuation == Continuation::Complete {
            if p.ranges.ranges.last().is_some_and(|&(_, e)| e > end) {
                return Err(MsrpError::InconsistentRange(
                    "bytes received past the last chunk",
                ));
            }
            p.last_end = Some(end);
        }
        if p.effective_total().is_some_and(|t| end > t) {
            return Err(MsrpError::InconsistentRange("chunk goes past the total"));
        }
        if len > 0 {
            if p.ranges.count_after_insert(offset, end) > max_ranges {
                return Err(MsrpError::InconsistentRange("too many disjoint ranges"));
            }
            let growth = p.sink.memory_growth(offset, body.len());
            if growth > 0 && used.saturating_add(growth) > budget {
                return Err(MsrpError::MemoryBudget(self.limits.memory_budget));
            }
            p.sink.write_at(offset, body)?;
            p.ranges.insert(offset, end);
        }
        let received = p.ranges.covered();
        match p.effective_total() {
            Some(total) if p.ranges.complete(total) => {
                let Some(mut p) = self.partials.remove(message_id) else {
                    return Err(MsrpError::InconsistentRange("message vanished"));
                };
                let body = p.sink.finish(total)?;
                self.remember(message_id);
                let success_report = p.headers.success_report().unwrap_or(false);
                let failure_report = p.headers.failure_report().unwrap_or_default();
                Ok(Progress::Complete(Completed {
                    message_id: message_id.to_owned(),
                    headers: p.headers,
                    total,
                    body,
                    success_report,
                    failure_report,
                }))
            }
            total => Ok(Progress::Partial {
                message_id: message_id.to_owned(),
                received,
                total,
            }),
        }
    }
}
