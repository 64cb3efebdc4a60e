//! Ogg Opus files (RFC 7845): a crash-tolerant writer and a reader for recordings and prompts.
//!
//! The writer encodes mono i16 audio in 20 ms Opus packets and flushes an Ogg page at least
//! once per second of audio and once per second of wall-clock time, so a process killed while
//! recording leaves a file that players (and [`OggOpusReader`]) read up to the last page. The
//! reader checks every page (capture pattern, version, CRC, segment table, bounded sizes),
//! follows the first Opus logical stream of the file, applies pre-skip, output gain and
//! end trimming, and decodes to mono at any requested rate. [`OggOpusSource`] and
//! [`OggOpusSink`] adapt them to the device traits so a call can play or record a file.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ::opus::{Application, Bitrate, Channels};
use bytes::Bytes;

use crate::device::{CaptureDevice, DeviceError, PlaybackDevice};
use crate::resample::Resampler;

/// Opus always counts granule positions at 48 kHz (RFC 7845 §4).
const GRANULE_RATE: u32 = 48_000;
/// Largest decoded packet: 120 ms at 48 kHz, per channel.
const MAX_PACKET_SAMPLES: usize = 5760;
/// Largest audio packet accepted: 120 ms of 1275-byte frames (RFC 6716 §3.4), rounded up.
const MAX_AUDIO_PACKET: usize = 61_440;
/// Largest header packet accepted (OpusTags may carry pictures; we bound them).
const MAX_HEADER_PACKET: usize = 1 << 20;
/// Most bytes a page can take (27-byte header, 255 lacing values, 255 × 255 data).
const MAX_PAGE: usize = 27 + 255 + 255 * 255;
/// The writer's packets per page: one second of 20 ms packets.
const PACKETS_PER_PAGE: usize = 50;
/// The writer flushes a page when this much wall-clock time passed since the last one.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Largest file [`OggOpusReader::open`] reads (about 9 hours of 16 kbit/s speech).
const MAX_FILE: u64 = 64 << 20;
/// Vendor string written into OpusTags.
const VENDOR: &str = "tandem-media";

/// Errors from reading or writing Ogg Opus files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OggError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// The bytes are not an Ogg stream (no capture pattern where a page should start).
    #[error("not an Ogg file: {0}")]
    NotOgg(&'static str),
    /// A page is damaged (bad CRC, truncated, wrong version, inconsistent lacing).
    #[error("corrupt Ogg page at byte {offset}: {reason}")]
    CorruptPage {
        /// Byte offset of the page in the file.
        offset: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The stream holds no Opus logical stream, or its headers are malformed.
    #[error("invalid Opus header: {0}")]
    BadHeader(String),
    /// A feature the reader does not handle (e.g. surround channel mappings).
    #[error("unsupported Ogg Opus stream: {0}")]
    Unsupported(String),
    /// A packet is larger than any valid one.
    #[error("Opus packet of {0} bytes exceeds the limit")]
    PacketTooLarge(usize),
    /// libopus rejected a packet or a setting.
    #[error("opus codec error: {0}")]
    Codec(String),
    /// A sample rate of zero was requested.
    #[error("invalid sample rate {0}")]
    InvalidRate(u32),
    /// The file is larger than the reader accepts (it is read into memory).
    #[error("{path}: {size} bytes is larger than the {MAX_FILE} bytes accepted")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The writer was already finished.
    #[error("the Ogg Opus writer is already finished")]
    Finished,
}

impl From<::opus::Error> for OggError {
    fn from(e: ::opus::Error) -> Self {
        OggError::Codec(e.to_string())
    }
}

impl From<OggError> for DeviceError {
    fn from(e: OggError) -> Self {
        match e {
            OggError::Finished => DeviceError::Finished,
            other => DeviceError::StreamFailed(other.to_string()),
        }
    }
}

/// CRC-32 of Ogg pages: polynomial 0x04C11DB7, not reflected, initial value 0, no final xor.
fn ogg_crc(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut r = (i as u32) << 24;
            for _ in 0..8 {
                r = if r & 0x8000_0000 != 0 {
                    (r << 1) ^ 0x04C1_1DB7
                } else {
                    r << 1
                };
            }
            *slot = r;
        }
        t
    });
    data.iter().fold(0u32, |crc, &b| {
        (crc << 8) ^ table[(((crc >> 24) as u8) ^ b) as usize]
    })
}

/// Opus encodes natively at these rates; anything else is resampled to 48 kHz.
fn native_rate(rate: u32) -> bool {
    matches!(rate, 8_000 | 12_000 | 16_000 | 24_000 | 48_000)
}

/// The identification header of an Ogg Opus stream (RFC 7845 §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusHead {
    /// Output channels (1 or 2 for mapping family 0).
    pub channels: u8,
    /// Samples at 48 kHz to discard from the start of the decoded audio.
    pub pre_skip: u16,
    /// The rate of the original input, informational only (0 = unknown).
    pub input_rate: u32,
    /// Gain to apply to the decoded output, in 1/256 dB (Q7.8).
    pub output_gain: i16,
    /// Channel mapping family (0 = mono/stereo).
    pub mapping_family: u8,
}

impl OpusHead {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(19);
        v.extend_from_slice(b"OpusHead");
        v.push(1);
        v.push(self.channels);
        v.extend_from_slice(&self.pre_skip.to_le_bytes());
        v.extend_from_slice(&self.input_rate.to_le_bytes());
        v.extend_from_slice(&self.output_gain.to_le_bytes());
        v.push(self.mapping_family);
        v
    }

    fn parse(p: &[u8]) -> Result<Self, OggError> {
        let bad = |m: &str| OggError::BadHeader(m.to_owned());
        if p.len() < 19 || !p.starts_with(b"OpusHead") {
            return Err(bad("first packet is not a 19-byte OpusHead"));
        }
        let version = p[8];
        // RFC 7845 §5.1: versions 0..=15 are compatible with this header layout.
        if version & 0xF0 != 0 {
            return Err(OggError::Unsupported(format!("OpusHead version {version}")));
        }
        let head = OpusHead {
            channels: p[9],
            pre_skip: u16::from_le_bytes([p[10], p[11]]),
            input_rate: u32::from_le_bytes([p[12], p[13], p[14], p[15]]),
            output_gain: i16::from_le_bytes([p[16], p[17]]),
            mapping_family: p[18],
        };
        if head.channels == 0 {
            return Err(bad("zero channels"));
        }
        if head.mapping_family != 0 {
            return Err(OggError::Unsupported(format!(
                "channel mapping family {}",
                head.mapping_family
            )));
        }
        if head.channels > 2 {
            return Err(bad("mapping family 0 allows at most 2 channels"));
        }
        Ok(head)
    }
}

/// The comment header of an Ogg Opus stream (RFC 7845 §5.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpusTags {
    /// The encoder's vendor string.
    pub vendor: String,
    /// `NAME=value` user comments.
    pub comments: Vec<String>,
}

impl OpusTags {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(b"OpusTags");
        v.extend_from_slice(&(self.vendor.len() as u32).to_le_bytes());
        v.extend_from_slice(self.vendor.as_bytes());
        v.extend_from_slice(&(self.comments.len() as u32).to_le_bytes());
        for c in &self.comments {
            v.extend_from_slice(&(c.len() as u32).to_le_bytes());
            v.extend_from_slice(c.as_bytes());
        }
        v
    }

    fn parse(p: &[u8]) -> Result<Self, OggError> {
        let bad = |m: &str| OggError::BadHeader(m.to_owned());
        let rest = p
            .strip_prefix(b"OpusTags".as_slice())
            .ok_or_else(|| bad("second packet is not OpusTags"))?;
        let mut cur = Cursor { buf: rest, pos: 0 };
        let vendor_len = cur.u32().ok_or_else(|| bad("OpusTags truncated"))? as usize;
        let vendor = cur
            .take(vendor_len)
            .ok_or_else(|| bad("OpusTags vendor string truncated"))?;
        let count = cur.u32().ok_or_else(|| bad("OpusTags truncated"))? as usize;
        let mut comments = Vec::new();
        for _ in 0..count {
            let len = cur.u32().ok_or_else(|| bad("OpusTags comment truncated"))? as usize;
            let c = cur
                .take(len)
                .ok_or_else(|| bad("OpusTags comment truncated"))?;
            comments.push(String::from_utf8_lossy(c).into_owned());
        }
        Ok(OpusTags {
            vendor: String::from_utf8_lossy(vendor).into_owned(),
            comments,
        })
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn u32(&mut self) -> Option<u32> {
        let s = self.take(4)?;
        Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
}

/// Encoder settings for [`OggOpusWriter::create_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OggOpusOptions {
    /// Target bitrate in bits/s (voice: 16000–32000).
    pub bitrate: i32,
    /// `NAME=value` comments for the OpusTags header.
    pub comments: Vec<String>,
}

impl OggOpusOptions {
    /// Defaults for speech at `rate`: 16 kbit/s up to 16 kHz, 24 kbit/s above.
    pub fn speech(rate: u32) -> Self {
        OggOpusOptions {
            bitrate: if rate <= 16_000 { 16_000 } else { 24_000 },
            comments: Vec::new(),
        }
    }
}

/// Writes mono audio to an Ogg Opus file, keeping it playable while it grows.
pub struct OggOpusWriter {
    path: PathBuf,
    out: BufWriter<File>,
    encoder: ::opus::Encoder,
    /// Rate of the audio handed to `write_pcm`.
    input_rate: u32,
    /// Rate the encoder runs at (the input rate, or 48 kHz after resampling).
    enc_rate: u32,
    resampler: Option<Resampler>,
    /// Samples per 20 ms frame at `enc_rate`.
    frame: usize,
    pending: Vec<i16>,
    scratch: Vec<i16>,
    packet_buf: Vec<u8>,
    /// Packets encoded but not yet written in a page.
    queued: Vec<(Vec<u8>, u64)>,
    serial: u32,
    sequence: u32,
    pre_skip: u16,
    /// 48 kHz samples encoded so far (padding included), excluding pre-skip.
    encoded_48k: u64,
    /// Samples of real input so far, at `input_rate`.
    input_samples: u64,
    last_flush: Instant,
    finished: bool,
}

impl std::fmt::Debug for OggOpusWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OggOpusWriter")
            .field("path", &self.path)
            .field("input_rate", &self.input_rate)
            .field("input_samples", &self.input_samples)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl OggOpusWriter {
    /// Creates (or truncates) `path` for mono audio at `rate` Hz with speech defaults.
    pub fn create(path: impl AsRef<Path>, rate: u32) -> Result<Self, OggError> {
        Self::create_with(path, rate, &OggOpusOptions::speech(rate))
    }

    /// Creates (or truncates) `path` for mono audio at `rate` Hz with the given settings.
    pub fn create_with(
        path: impl AsRef<Path>,
        rate: u32,
        options: &OggOpusOptions,
    ) -> Result<Self, OggError> {
        if rate == 0 {
            return Err(OggError::InvalidRate(rate));
        }
        let path = path.as_ref().to_path_buf();
        let enc_rate = if native_rate(rate) {
            rate
        } else {
            GRANULE_RATE
        };
        let mut encoder = ::opus::Encoder::new(enc_rate, Channels::Mono, Application::Voip)?;
        encoder.set_bitrate(Bitrate::Bits(options.bitrate.clamp(6_000, 510_000)))?;
        let lookahead = u64::try_from(encoder.get_lookahead()?.max(0)).unwrap_or(0);
        let pre_skip = u16::try_from(lookahead * u64::from(GRANULE_RATE / enc_rate))
            .map_err(|_| OggError::Codec("encoder lookahead out of range".into()))?;
        let file = File::create(&path).map_err(|source| OggError::Io {
            path: path.clone(),
            source,
        })?;
        let mut w = OggOpusWriter {
            out: BufWriter::new(file),
            encoder,
            input_rate: rate,
            enc_rate,
            resampler: (!native_rate(rate)).then(|| Resampler::new(rate, GRANULE_RATE)),
            frame: enc_rate as usize / 50,
            pending: Vec::new(),
            scratch: Vec::new(),
            packet_buf: vec![0; 4000],
            queued: Vec::new(),
            serial: rand::random(),
            sequence: 0,
            pre_skip,
            encoded_48k: 0,
            input_samples: 0,
            last_flush: Instant::now(),
            finished: false,
            path,
        };
        let head = OpusHead {
            channels: 1,
            pre_skip,
            input_rate: rate,
            output_gain: 0,
            mapping_family: 0,
        };
        let mut comments = vec![format!("ENCODER={VENDOR}")];
        comments.extend(options.comments.iter().cloned());
        let tags = OpusTags {
            vendor: VENDOR.to_owned(),
            comments,
        };
        // RFC 7845 §3: the ID header alone on the first page (BOS), the comment header on its
        // own page(s), audio starts on a fresh page. Granule positions of header pages are 0.
        w.write_page(&[(head.encode(), 0)], 0x02)?;
        w.write_page(&[(tags.encode(), 0)], 0x00)?;
        w.sync()?;
        Ok(w)
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The rate of the audio `write_pcm` expects.
    pub fn rate(&self) -> u32 {
        self.input_rate
    }

    /// Duration of the audio written so far.
    pub fn duration(&self) -> Duration {
        Duration::from_micros(self.input_samples * 1_000_000 / u64::from(self.input_rate))
    }

    /// The input so far counted at 48 kHz.
    fn input_48k(&self) -> u64 {
        self.input_samples * u64::from(GRANULE_RATE) / u64::from(self.input_rate)
    }

    /// Appends mono samples at [`Self::rate`]; full 20 ms frames are encoded at once and a page
    /// goes to disk every second of audio or of wall-clock time.
    pub fn write_pcm(&mut self, pcm: &[i16]) -> Result<(), OggError> {
        if self.finished {
            return Err(OggError::Finished);
        }
        self.input_samples += pcm.len() as u64;
        match &mut self.resampler {
            Some(r) => {
                self.scratch.clear();
                r.process(pcm, &mut self.scratch);
                self.pending.extend_from_slice(&self.scratch);
            }
            None => self.pending.extend_from_slice(pcm),
        }
        while self.pending.len() >= self.frame {
            let frame: Vec<i16> = self.pending.drain(..self.frame).collect();
            self.encode_frame(&frame)?;
        }
        if self.queued.len() >= PACKETS_PER_PAGE
            || (!self.queued.is_empty() && self.last_flush.elapsed() >= FLUSH_INTERVAL)
        {
            self.flush_page(false)?;
        }
        Ok(())
    }

    /// Writes out everything buffered so far as a page and flushes it to the OS.
    pub fn flush(&mut self) -> Result<(), OggError> {
        if self.finished {
            return Ok(());
        }
        if !self.queued.is_empty() {
            self.flush_page(false)?;
        }
        self.sync()
    }

    /// Encodes the last partial frame (padded with silence, trimmed by the final granule
    /// position), writes the end-of-stream page and closes the file.
    pub fn finish(&mut self) -> Result<(), OggError> {
        if self.finished {
            return Ok(());
        }
        // Push the resampler's and the encoder's delay out with silence, so the last real
        // samples are in a packet; the final granule position trims the excess.
        if let Some(r) = &mut self.resampler {
            let tail = vec![0i16; r.delay_samples() * 2 + 64];
            self.scratch.clear();
            r.process(&tail, &mut self.scratch);
            self.pending.extend_from_slice(&self.scratch);
        }
        let needed = self.input_48k() + u64::from(self.pre_skip);
        while self.encoded_48k < needed || !self.pending.is_empty() || self.queued.is_empty() {
            let take = self.pending.len().min(self.frame);
            let mut frame: Vec<i16> = self.pending.drain(..take).collect();
            frame.resize(self.frame, 0);
            self.encode_frame(&frame)?;
        }
        self.flush_page(true)?;
        self.finished = true;
        self.sync()
    }

    fn encode_frame(&mut self, frame: &[i16]) -> Result<(), OggError> {
        let n = self.encoder.encode(frame, &mut self.packet_buf)?;
        let packet = self
            .packet_buf
            .get(..n)
            .ok_or_else(|| OggError::Codec("encoder overran its buffer".into()))?
            .to_vec();
        self.encoded_48k += frame.len() as u64 * u64::from(GRANULE_RATE / self.enc_rate);
        self.queued
            .push((packet, u64::from(self.pre_skip) + self.encoded_48k));
        Ok(())
    }

    fn flush_page(&mut self, eos: bool) -> Result<(), OggError> {
        let mut packets = std::mem::take(&mut self.queued);
        if eos && let Some(last) = packets.last_mut() {
            // RFC 7845 §4.5: the last page's granule position trims the padding of the final
            // frame.
            last.1 = last.1.min(u64::from(self.pre_skip) + self.input_48k());
        }
        self.write_page(&packets, if eos { 0x04 } else { 0x00 })?;
        self.last_flush = Instant::now();
        self.sync()
    }

    /// Writes packets (each with its end granule position) as one or more pages: at most 255
    /// lacing values per page, a packet too large for one page continues on the next. Each page
    /// carries the granule of the last packet completed on it (−1 when none completes there).
    fn write_page(&mut self, packets: &[(Vec<u8>, u64)], flags: u8) -> Result<(), OggError> {
        // (lacing value, granule when this segment ends a packet)
        let mut segments: Vec<(u8, Option<u64>)> = Vec::new();
        for (p, g) in packets {
            let full = p.len() / 255;
            segments.extend(std::iter::repeat_n((255u8, None), full));
            segments.push(((p.len() % 255) as u8, Some(*g)));
        }
        let all: Vec<u8> = packets
            .iter()
            .flat_map(|(p, _)| p.iter().copied())
            .collect();
        let mut data_off = 0usize;
        let mut continued = false;
        let pages: Vec<&[(u8, Option<u64>)]> = segments.chunks(255).collect();
        let count = pages.len();
        for (i, page) in pages.into_iter().enumerate() {
            let lacing: Vec<u8> = page.iter().map(|s| s.0).collect();
            let len: usize = lacing.iter().map(|&l| usize::from(l)).sum();
            let granule = page.iter().rev().find_map(|s| s.1).unwrap_or(u64::MAX);
            let data = all.get(data_off..data_off + len).unwrap_or_default();
            data_off += len;
            let mut page_flags = if i == 0 { flags & 0x02 } else { 0 };
            if i + 1 == count {
                page_flags |= flags & 0x04;
            }
            self.emit_page(&lacing, data, page_flags, continued, granule)?;
            continued = page.last().is_some_and(|s| s.1.is_none());
        }
        Ok(())
    }

    fn emit_page(
        &mut self,
        lacing: &[u8],
        data: &[u8],
        flags: u8,
        continued: bool,
        granule: u64,
    ) -> Result<(), OggError> {
        let mut page = Vec::with_capacity(27 + lacing.len() + data.len());
        page.extend_from_slice(b"OggS");
        page.push(0);
        page.push(flags | u8::from(continued));
        page.extend_from_slice(&granule.to_le_bytes());
        page.extend_from_slice(&self.serial.to_le_bytes());
        page.extend_from_slice(&self.sequence.to_le_bytes());
        page.extend_from_slice(&[0; 4]);
        page.push(lacing.len() as u8);
        page.extend_from_slice(lacing);
        page.extend_from_slice(data);
        let crc = ogg_crc(&page);
        page[22..26].copy_from_slice(&crc.to_le_bytes());
        self.sequence = self.sequence.wrapping_add(1);
        self.out.write_all(&page).map_err(|source| OggError::Io {
            path: self.path.clone(),
            source,
        })
    }

    fn sync(&mut self) -> Result<(), OggError> {
        self.out.flush().map_err(|source| OggError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

impl Drop for OggOpusWriter {
    fn drop(&mut self) {
        if !self.finished
            && let Err(e) = self.finish()
        {
            tracing::warn!("ogg: finishing {} on drop: {e}", self.path.display());
        }
    }
}

/// One Ogg page as parsed from a buffer.
struct Page<'a> {
    flags: u8,
    granule: u64,
    serial: u32,
    lacing: &'a [u8],
    data: &'a [u8],
}

/// Parses the page at `offset`; returns it and the offset of the next one.
fn parse_page(buf: &[u8], offset: usize) -> Result<(Page<'_>, usize), OggError> {
    let corrupt = |reason| OggError::CorruptPage { offset, reason };
    let rest = buf.get(offset..).ok_or(corrupt("offset past the end"))?;
    if rest.len() < 27 {
        return Err(corrupt("truncated page header"));
    }
    if &rest[..4] != b"OggS" {
        return Err(corrupt("missing OggS capture pattern"));
    }
    if rest[4] != 0 {
        return Err(corrupt("unknown stream structure version"));
    }
    let flags = rest[5];
    let granule = u64::from_le_bytes([
        rest[6], rest[7], rest[8], rest[9], rest[10], rest[11], rest[12], rest[13],
    ]);
    let serial = u32::from_le_bytes([rest[14], rest[15], rest[16], rest[17]]);
    let stored_crc = u32::from_le_bytes([rest[22], rest[23], rest[24], rest[25]]);
    let nsegs = usize::from(rest[26]);
    let lacing = rest
        .get(27..27 + nsegs)
        .ok_or(corrupt("truncated segment table"))?;
    let body_len: usize = lacing.iter().map(|&l| usize::from(l)).sum();
    let total = 27 + nsegs + body_len;
    debug_assert!(total <= MAX_PAGE);
    let page_bytes = rest.get(..total).ok_or(corrupt("truncated page body"))?;
    let mut check = page_bytes.to_vec();
    check[22..26].fill(0);
    if ogg_crc(&check) != stored_crc {
        return Err(corrupt("CRC mismatch"));
    }
    Ok((
        Page {
            flags,
            granule,
            serial,
            lacing,
            data: &page_bytes[27 + nsegs..],
        },
        offset + total,
    ))
}

/// An Opus packet with the granule position of its page when it is the page's last packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OggPacket {
    /// The packet bytes.
    pub data: Bytes,
    /// The end granule position, when this packet is the last one completed on its page.
    pub granule: Option<u64>,
    /// True when this packet ends the logical stream (its page has the EOS flag).
    pub eos: bool,
}

/// Reads an Ogg Opus file: validates pages and headers and yields the audio packets of the
/// first Opus logical stream (other multiplexed streams are skipped).
#[derive(Debug, Clone)]
pub struct OggOpusReader {
    data: Bytes,
    pos: usize,
    serial: u32,
    head: OpusHead,
    tags: OpusTags,
    /// Packets completed but not yet returned.
    ready: VecDeque<OggPacket>,
    /// A packet continuing onto the next page.
    partial: Vec<u8>,
    eos: bool,
    /// Granule position of the last page of the stream, found by scanning from the end.
    final_granule: Option<u64>,
}

impl OggOpusReader {
    /// Reads and validates the headers of the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, OggError> {
        use std::io::Read;
        let path = path.as_ref();
        let io = |source| OggError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        if size > MAX_FILE {
            return Err(OggError::TooLarge {
                path: path.to_path_buf(),
                size,
            });
        }
        let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        // Read at most one byte past the limit: a file growing meanwhile is refused too.
        file.take(MAX_FILE + 1).read_to_end(&mut data).map_err(io)?;
        if data.len() as u64 > MAX_FILE {
            return Err(OggError::TooLarge {
                path: path.to_path_buf(),
                size: data.len() as u64,
            });
        }
        Self::from_bytes(Bytes::from(data))
    }

    /// Reads and validates the headers of an in-memory file.
    pub fn from_bytes(data: Bytes) -> Result<Self, OggError> {
        if !data.starts_with(b"OggS") {
            return Err(OggError::NotOgg("no OggS capture pattern at the start"));
        }
        // Find the BOS page of an Opus stream among the leading BOS pages.
        let mut pos = 0;
        let mut found = None;
        loop {
            let (page, next) = parse_page(&data, pos)?;
            if page.flags & 0x02 == 0 {
                break;
            }
            if found.is_none() && page.data.starts_with(b"OpusHead") {
                if page.lacing.last() == Some(&255) || page.lacing.len() != 1 {
                    return Err(OggError::BadHeader(
                        "the OpusHead page must hold exactly one packet".into(),
                    ));
                }
                found = Some((page.serial, OpusHead::parse(page.data)?));
            }
            pos = next;
            if pos >= data.len() {
                break;
            }
        }
        let (serial, head) =
            found.ok_or_else(|| OggError::BadHeader("no Opus stream in the file".into()))?;
        let mut reader = OggOpusReader {
            final_granule: None,
            data,
            pos,
            serial,
            head,
            tags: OpusTags::default(),
            ready: VecDeque::new(),
            partial: Vec::new(),
            eos: false,
        };
        let tags = reader
            .next_raw_packet(MAX_HEADER_PACKET)?
            .ok_or_else(|| OggError::BadHeader("missing OpusTags".into()))?;
        reader.tags = OpusTags::parse(&tags.data)?;
        // Audio must start on a fresh page (RFC 7845 §3).
        if !reader.ready.is_empty() || !reader.partial.is_empty() {
            return Err(OggError::BadHeader(
                "OpusTags page also carries audio".into(),
            ));
        }
        reader.final_granule = reader.scan_final_granule();
        Ok(reader)
    }

    /// The identification header.
    pub fn head(&self) -> &OpusHead {
        &self.head
    }

    /// The comment header.
    pub fn tags(&self) -> &OpusTags {
        &self.tags
    }

    /// Duration of the stream from the last page's granule position (None when no audio page
    /// has a valid one).
    pub fn duration(&self) -> Option<Duration> {
        let g = self.final_granule?;
        let samples = g.saturating_sub(u64::from(self.head.pre_skip));
        Some(Duration::from_micros(
            samples * 1_000_000 / u64::from(GRANULE_RATE),
        ))
    }

    /// Scans the page headers of our stream and returns the last valid granule position.
    fn scan_final_granule(&self) -> Option<u64> {
        let mut pos = self.pos;
        let mut last = None;
        while pos < self.data.len() {
            let Ok((page, next)) = parse_page(&self.data, pos) else {
                break;
            };
            if page.serial == self.serial && page.granule != u64::MAX {
                last = Some(page.granule);
            }
            if page.serial == self.serial && page.flags & 0x04 != 0 {
                break;
            }
            pos = next;
        }
        last
    }

    /// The next audio packet, or None at the end of the stream. A file cut off mid-page (a
    /// recording whose writer was killed) ends cleanly at the last complete page.
    pub fn next_packet(&mut self) -> Result<Option<OggPacket>, OggError> {
        self.next_raw_packet(MAX_AUDIO_PACKET)
    }

    fn next_raw_packet(&mut self, limit: usize) -> Result<Option<OggPacket>, OggError> {
        loop {
            if let Some(p) = self.ready.pop_front() {
                return Ok(Some(p));
            }
            if self.eos || self.pos >= self.data.len() {
                return Ok(None);
            }
            let data = self.data.clone();
            let (page, next) = match parse_page(&data, self.pos) {
                Ok(x) => x,
                // A truncated last page: the writer died while writing it.
                Err(OggError::CorruptPage { reason, .. }) if reason.starts_with("truncated") => {
                    self.pos = self.data.len();
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            self.pos = next;
            if page.serial != self.serial {
                continue;
            }
            if page.flags & 0x01 == 0 && !self.partial.is_empty() {
                return Err(OggError::CorruptPage {
                    offset: self.pos,
                    reason: "packet continues but the next page is not a continuation",
                });
            }
            if page.flags & 0x01 != 0 && self.partial.is_empty() && self.ready.is_empty() {
                // A continuation of a packet we never saw the start of (lost page): skip to
                // the first packet starting on this page.
                let mut off = 0;
                let mut skip = 0;
                for &l in page.lacing {
                    off += usize::from(l);
                    skip += 1;
                    if l < 255 {
                        break;
                    }
                }
                self.collect(&page, skip, off, limit)?;
            } else {
                self.collect(&page, 0, 0, limit)?;
            }
            if page.flags & 0x04 != 0 {
                self.eos = true;
            }
        }
    }

    /// Splits the page's data into packets starting at lacing index `seg` / data offset `off`.
    fn collect(
        &mut self,
        page: &Page<'_>,
        seg: usize,
        mut off: usize,
        limit: usize,
    ) -> Result<(), OggError> {
        let mut completed = Vec::new();
        for &l in page.lacing.iter().skip(seg) {
            let l = usize::from(l);
            let chunk = page
                .data
                .get(off..off + l)
                .ok_or(OggError::NotOgg("lacing exceeds page data"))?;
            off += l;
            if self.partial.len() + l > limit {
                return Err(OggError::PacketTooLarge(self.partial.len() + l));
            }
            self.partial.extend_from_slice(chunk);
            if l < 255 {
                completed.push(Bytes::from(std::mem::take(&mut self.partial)));
            }
        }
        let n = completed.len();
        let eos = page.flags & 0x04 != 0;
        for (i, data) in completed.into_iter().enumerate() {
            let last = i + 1 == n;
            self.ready.push_back(OggPacket {
                data,
                granule: (last && page.granule != u64::MAX).then_some(page.granule),
                eos: last && eos,
            });
        }
        Ok(())
    }

    /// Decodes the whole remaining stream to mono at `rate` Hz.
    pub fn decode_all(self, rate: u32) -> Result<Vec<i16>, OggError> {
        let mut dec = OggOpusDecoder::new(self, rate)?;
        let mut out = Vec::new();
        while dec.decode_next(&mut out)? {}
        Ok(out)
    }
}

/// Decodes the packets of an [`OggOpusReader`] to mono PCM at a chosen rate.
pub struct OggOpusDecoder {
    reader: OggOpusReader,
    decoder: ::opus::Decoder,
    channels: usize,
    dec_rate: u32,
    out_rate: u32,
    resampler: Option<Resampler>,
    /// Samples at `dec_rate` still to drop (pre-skip).
    skip: u64,
    /// Samples at `dec_rate` delivered so far after pre-skip.
    delivered: u64,
    gain: f32,
    buf: Vec<i16>,
    mono: Vec<i16>,
}

impl std::fmt::Debug for OggOpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OggOpusDecoder")
            .field("out_rate", &self.out_rate)
            .field("delivered", &self.delivered)
            .finish_non_exhaustive()
    }
}

impl OggOpusDecoder {
    /// A decoder producing mono audio at `rate` Hz.
    pub fn new(reader: OggOpusReader, rate: u32) -> Result<Self, OggError> {
        if rate == 0 {
            return Err(OggError::InvalidRate(rate));
        }
        let dec_rate = if native_rate(rate) {
            rate
        } else {
            GRANULE_RATE
        };
        let channels = usize::from(reader.head.channels);
        let ch = if channels == 2 {
            Channels::Stereo
        } else {
            Channels::Mono
        };
        let decoder = ::opus::Decoder::new(dec_rate, ch)?;
        let factor = u64::from(GRANULE_RATE / dec_rate);
        let gain = 10f32.powf(f32::from(reader.head.output_gain) / (20.0 * 256.0));
        Ok(OggOpusDecoder {
            skip: u64::from(reader.head.pre_skip) / factor,
            reader,
            decoder,
            channels,
            dec_rate,
            out_rate: rate,
            resampler: (dec_rate != rate).then(|| Resampler::new(dec_rate, rate)),
            delivered: 0,
            gain,
            buf: vec![0; MAX_PACKET_SAMPLES * 2],
            mono: Vec::new(),
        })
    }

    /// The output rate.
    pub fn rate(&self) -> u32 {
        self.out_rate
    }

    /// Decodes the next packet, appending its audio to `out`; false at the end of the stream.
    pub fn decode_next(&mut self, out: &mut Vec<i16>) -> Result<bool, OggError> {
        let Some(packet) = self.reader.next_packet()? else {
            return Ok(false);
        };
        let n = self.decoder.decode(&packet.data, &mut self.buf, false)?;
        let frames = n.min(self.buf.len() / self.channels);
        self.mono.clear();
        if self.channels == 2 {
            self.mono.extend(
                self.buf
                    .chunks_exact(2)
                    .take(frames)
                    .map(|c| ((i32::from(c[0]) + i32::from(c[1])) / 2) as i16),
            );
        } else {
            self.mono.extend_from_slice(&self.buf[..frames]);
        }
        let mut start = 0usize;
        if self.skip > 0 {
            let s = (self.skip as usize).min(self.mono.len());
            start = s;
            self.skip -= s as u64;
        }
        let mut end = self.mono.len();
        // End trimming: the granule position of the page ending with the last packet says how
        // many samples the stream really holds (RFC 7845 §4.5).
        if packet.eos
            && let Some(g) = packet.granule
        {
            let factor = u64::from(GRANULE_RATE / self.dec_rate);
            let total = g.saturating_sub(u64::from(self.reader.head.pre_skip)) / factor;
            let allowed = total.saturating_sub(self.delivered);
            end = end.min(start + allowed as usize);
        }
        let slice = self.mono.get(start..end.max(start)).unwrap_or_default();
        self.delivered += slice.len() as u64;
        let apply_gain =
            |v: i16| -> i16 { (f32::from(v) * self.gain).round().clamp(-32768.0, 32767.0) as i16 };
        match &mut self.resampler {
            Some(r) => {
                if self.reader.head.output_gain == 0 {
                    r.process(slice, out);
                } else {
                    let g: Vec<i16> = slice.iter().map(|&v| apply_gain(v)).collect();
                    r.process(&g, out);
                }
            }
            None => {
                if self.reader.head.output_gain == 0 {
                    out.extend_from_slice(slice);
                } else {
                    out.extend(slice.iter().map(|&v| apply_gain(v)));
                }
            }
        }
        Ok(true)
    }
}

/// Plays an Ogg Opus file as a capture device (mono, at the rate chosen when opened).
pub struct OggOpusSource {
    decoder: OggOpusDecoder,
    queue: VecDeque<i16>,
    scratch: Vec<i16>,
    ended: bool,
}

impl std::fmt::Debug for OggOpusSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OggOpusSource")
            .field("rate", &self.decoder.out_rate)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl OggOpusSource {
    /// Opens `path` for playback at `rate` Hz.
    pub fn open(path: impl AsRef<Path>, rate: u32) -> Result<Self, OggError> {
        Self::from_reader(OggOpusReader::open(path)?, rate)
    }

    /// Plays an in-memory file at `rate` Hz.
    pub fn from_bytes(data: Bytes, rate: u32) -> Result<Self, OggError> {
        Self::from_reader(OggOpusReader::from_bytes(data)?, rate)
    }

    /// Plays the packets of `reader` at `rate` Hz.
    pub fn from_reader(reader: OggOpusReader, rate: u32) -> Result<Self, OggError> {
        Ok(OggOpusSource {
            decoder: OggOpusDecoder::new(reader, rate)?,
            queue: VecDeque::new(),
            scratch: Vec::new(),
            ended: false,
        })
    }
}

impl CaptureDevice for OggOpusSource {
    fn rate(&self) -> u32 {
        self.decoder.out_rate
    }

    fn read_frame(&mut self, out: &mut [i16]) -> Result<bool, DeviceError> {
        if self.ended && self.queue.is_empty() {
            out.fill(0);
            return Ok(false);
        }
        while self.queue.len() < out.len() && !self.ended {
            self.scratch.clear();
            match self.decoder.decode_next(&mut self.scratch) {
                Ok(true) => self.queue.extend(self.scratch.iter().copied()),
                Ok(false) => self.ended = true,
                Err(e) => {
                    // A damaged file plays up to the damage, then ends.
                    tracing::warn!("ogg: playback stopped: {e}");
                    self.ended = true;
                }
            }
        }
        let n = self.queue.len().min(out.len());
        for (slot, v) in out.iter_mut().zip(self.queue.drain(..n)) {
            *slot = v;
        }
        out[n..].fill(0);
        if n == 0 {
            return Ok(false);
        }
        Ok(true)
    }
}

/// Records a call into an Ogg Opus file as a playback device.
#[derive(Debug)]
pub struct OggOpusSink {
    writer: OggOpusWriter,
}

impl OggOpusSink {
    /// Creates (or truncates) `path` for audio at `rate` Hz.
    pub fn create(path: impl AsRef<Path>, rate: u32) -> Result<Self, OggError> {
        Ok(OggOpusSink {
            writer: OggOpusWriter::create(path, rate)?,
        })
    }

    /// Wraps an existing writer.
    pub fn from_writer(writer: OggOpusWriter) -> Self {
        OggOpusSink { writer }
    }

    /// Duration recorded so far.
    pub fn duration(&self) -> Duration {
        self.writer.duration()
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        self.writer.path()
    }
}

impl PlaybackDevice for OggOpusSink {
    fn rate(&self) -> u32 {
        self.writer.rate()
    }

    fn write_frame(&mut self, pcm: &[i16]) -> Result<(), DeviceError> {
        Ok(self.writer.write_pcm(pcm)?)
    }

    fn finish(&mut self) -> Result<(), DeviceError> {
        Ok(self.writer.finish()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tone::{analyze, sine};
    use std::process::Command;

    fn tone_file(dir: &Path, name: &str, rate: u32, hz: f32, secs: u64) -> PathBuf {
        let path = dir.join(name);
        let mut w = OggOpusWriter::create(&path, rate).unwrap();
        let pcm = sine(hz, rate, Duration::from_secs(secs), 0.5);
        // Odd-sized writes, like a device clock would deliver.
        for chunk in pcm.chunks(rate as usize / 50 + 7) {
            w.write_pcm(chunk).unwrap();
        }
        w.finish().unwrap();
        path
    }

    #[test]
    fn crc_matches_the_reference_value() {
        // CRC-32/MPEG-2 style without final xor and init 0 (the Ogg variant) of "123456789".
        assert_eq!(ogg_crc(b"123456789"), 0x89A1_897F);
    }

    #[test]
    fn round_trip_at_several_rates() {
        let dir = tempfile::tempdir().unwrap();
        for (rate, out_rate) in [
            (16_000, 16_000),
            (8_000, 48_000),
            (48_000, 8_000),
            (44_100, 16_000),
        ] {
            let path = tone_file(dir.path(), &format!("t{rate}.opus"), rate, 440.0, 2);
            let reader = OggOpusReader::open(&path).unwrap();
            assert_eq!(reader.head().channels, 1);
            assert_eq!(reader.head().input_rate, rate);
            assert!(
                reader
                    .tags()
                    .comments
                    .iter()
                    .any(|c| c.starts_with("ENCODER="))
            );
            let d = reader.duration().unwrap();
            assert!(
                d.as_millis().abs_diff(2000) <= 1,
                "rate {rate}: duration {d:?}"
            );
            let pcm = reader.decode_all(out_rate).unwrap();
            let expect = out_rate as usize * 2;
            assert!(
                pcm.len().abs_diff(expect) <= out_rate as usize / 50,
                "rate {rate}->{out_rate}: {} samples, expected about {expect}",
                pcm.len()
            );
            let a = analyze(&pcm[pcm.len() / 4..], out_rate);
            assert!((a.dominant_hz - 440.0).abs() < 5.0, "{rate}: {a:?}");
            assert!(a.snr_db > 20.0, "{rate}: {a:?}");
        }
    }

    #[test]
    fn source_and_sink_adapters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.opus");
        let mut sink = OggOpusSink::create(&path, 16_000).unwrap();
        let pcm = sine(1000.0, 16_000, Duration::from_millis(1500), 0.4);
        for frame in pcm.chunks(320) {
            sink.write_frame(frame).unwrap();
        }
        assert_eq!(sink.duration(), Duration::from_millis(1500));
        sink.finish().unwrap();
        assert!(sink.write_frame(&pcm[..320]).is_err());

        let mut src = OggOpusSource::open(&path, 48_000).unwrap();
        assert_eq!(CaptureDevice::rate(&src), 48_000);
        let mut got = Vec::new();
        let mut frame = [0i16; 960];
        let mut frames = 0;
        while src.read_frame(&mut frame).unwrap() {
            got.extend_from_slice(&frame);
            frames += 1;
            assert!(frames < 200, "source never ends");
        }
        // 1.5 s = 75 frames of 20 ms.
        assert!((74..=76).contains(&frames), "{frames} frames");
        assert!(!src.read_frame(&mut frame).unwrap());
        assert!(frame.iter().all(|&s| s == 0));
        let a = analyze(&got[4800..], 48_000);
        assert!((a.dominant_hz - 1000.0).abs() < 10.0, "{a:?}");
    }

    #[test]
    fn killed_writer_leaves_a_playable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("killed.opus");
        let mut w = OggOpusWriter::create(&path, 16_000).unwrap();
        let pcm = sine(700.0, 16_000, Duration::from_millis(3300), 0.4);
        for frame in pcm.chunks(320) {
            w.write_pcm(frame).unwrap();
        }
        // No finish, no drop: what a SIGKILL leaves behind (buffered bytes are lost too).
        std::mem::forget(w);
        let reader = OggOpusReader::open(&path).unwrap();
        let d = reader.duration().unwrap();
        assert!(d >= Duration::from_secs(3), "only {d:?} survived");
        let got = reader.decode_all(16_000).unwrap();
        assert!(got.len() >= 16_000 * 3 - 320, "{} samples", got.len());
        let a = analyze(&got[8000..], 16_000);
        assert!((a.dominant_hz - 700.0).abs() < 10.0, "{a:?}");
    }

    #[test]
    fn wall_clock_flush_reaches_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slow.opus");
        let mut w = OggOpusWriter::create(&path, 8_000).unwrap();
        let pcm = sine(500.0, 8_000, Duration::from_millis(200), 0.4);
        w.write_pcm(&pcm).unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        std::thread::sleep(FLUSH_INTERVAL + Duration::from_millis(50));
        w.write_pcm(&pcm[..160]).unwrap();
        let after = std::fs::metadata(&path).unwrap().len();
        assert!(
            after > before,
            "no page after a second: {before} -> {after}"
        );
        std::mem::forget(w);
        let got = OggOpusReader::open(&path)
            .unwrap()
            .decode_all(8_000)
            .unwrap();
        assert!(got.len() >= 1600, "{}", got.len());
    }

    #[test]
    fn empty_recording_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.opus");
        let mut w = OggOpusWriter::create(&path, 16_000).unwrap();
        w.finish().unwrap();
        w.finish().unwrap();
        assert!(matches!(w.write_pcm(&[0; 10]), Err(OggError::Finished)));
        let r = OggOpusReader::open(&path).unwrap();
        assert_eq!(r.duration(), Some(Duration::ZERO));
        assert!(r.decode_all(16_000).unwrap().is_empty());
    }

    #[test]
    fn large_header_packets_span_pages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tags.opus");
        let big = format!("COMMENT={}", "x".repeat(200_000));
        let opts = OggOpusOptions {
            comments: vec![big.clone(), "TITLE=t".into()],
            ..OggOpusOptions::speech(16_000)
        };
        let mut w = OggOpusWriter::create_with(&path, 16_000, &opts).unwrap();
        w.write_pcm(&sine(440.0, 16_000, Duration::from_millis(500), 0.3))
            .unwrap();
        w.finish().unwrap();
        let r = OggOpusReader::open(&path).unwrap();
        assert!(r.tags().comments.contains(&big));
        assert!(r.tags().comments.contains(&"TITLE=t".to_string()));
        assert_eq!(r.decode_all(16_000).unwrap().len(), 8000);
    }

    #[test]
    fn malformed_files_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = tone_file(dir.path(), "ok.opus", 16_000, 440.0, 3);
        let good = std::fs::read(&path).unwrap();

        assert!(matches!(
            OggOpusReader::from_bytes(Bytes::from_static(b"RIFF....WAVEfmt ")),
            Err(OggError::NotOgg(_))
        ));
        assert!(OggOpusReader::from_bytes(Bytes::new()).is_err());

        // A flipped byte in the OpusHead page: CRC mismatch.
        let mut bad = good.clone();
        bad[30] ^= 0x40;
        assert!(matches!(
            OggOpusReader::from_bytes(Bytes::from(bad)),
            Err(OggError::CorruptPage { .. })
        ));

        // A flipped byte in the audio: decoding stops with a clear error, the source just ends.
        let mut bad = good.clone();
        let n = bad.len();
        bad[n / 2] ^= 0x01;
        let r = OggOpusReader::from_bytes(Bytes::from(bad.clone())).unwrap();
        assert!(matches!(
            r.decode_all(16_000),
            Err(OggError::CorruptPage { .. })
        ));
        let mut src = OggOpusSource::from_bytes(Bytes::from(bad), 16_000).unwrap();
        let mut frame = [0i16; 320];
        let mut frames = 0;
        while src.read_frame(&mut frame).unwrap() {
            frames += 1;
        }
        assert!(frames < 140, "{frames} frames of a damaged 150-frame file");

        // Truncated in the middle of the last page: everything before it still plays.
        let cut = &good[..good.len() - 20];
        let pcm = OggOpusReader::from_bytes(Bytes::copy_from_slice(cut))
            .unwrap()
            .decode_all(16_000)
            .unwrap();
        assert!(pcm.len() >= 32_000 && pcm.len() < 48_000, "{}", pcm.len());

        // A valid Ogg page that is not Opus.
        let mut w = OggOpusWriter::create(dir.path().join("x.opus"), 16_000).unwrap();
        w.finish().unwrap();
        let mut other = std::fs::read(dir.path().join("x.opus")).unwrap();
        other[28..36].copy_from_slice(b"OpusHeaX");
        let crc_off = 22;
        other[crc_off..crc_off + 4].fill(0);
        let len = 27 + 1 + usize::from(other[27]);
        let crc = ogg_crc(&other[..len]);
        other[crc_off..crc_off + 4].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            OggOpusReader::from_bytes(Bytes::from(other)),
            Err(OggError::BadHeader(_))
        ));

        // Too large to read into memory (a sparse file: no disk used).
        let huge = dir.path().join("huge.opus");
        File::create(&huge).unwrap().set_len(MAX_FILE + 1).unwrap();
        assert!(matches!(
            OggOpusReader::open(&huge),
            Err(OggError::TooLarge { .. })
        ));

        assert!(matches!(
            OggOpusWriter::create(dir.path().join("r.opus"), 0),
            Err(OggError::InvalidRate(0))
        ));
        assert!(matches!(
            OggOpusWriter::create(dir.path().join("missing/dir/r.opus"), 8000),
            Err(OggError::Io { .. })
        ));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        use proptest::prelude::*;
        let dir = tempfile::tempdir().unwrap();
        let good = std::fs::read(tone_file(dir.path(), "p.opus", 8_000, 440.0, 1)).unwrap();
        proptest!(ProptestConfig::with_cases(200), |(
            pos in 0usize..4000,
            val in any::<u8>(),
            cut in 0usize..4000,
            junk in proptest::collection::vec(any::<u8>(), 0..300),
        )| {
            let mut b = good.clone();
            let p = pos % b.len();
            b[p] = val;
            b.truncate(cut.max(1).min(b.len()));
            if let Ok(r) = OggOpusReader::from_bytes(Bytes::from(b)) {
                let _ = r.decode_all(8_000);
            }
            let mut j = b"OggS".to_vec();
            j.extend_from_slice(&junk);
            let _ = OggOpusReader::from_bytes(Bytes::from(j));
        });
    }

    fn have(tool: &str) -> bool {
        Command::new(tool).arg("--version").output().is_ok()
    }

    #[test]
    fn opus_tools_interoperate() {
        if !have("opusdec") || !have("opusenc") {
            eprintln!("skipping: opus-tools not installed (cargo xtask installs them)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        // Ours → opusdec.
        let ours = tone_file(dir.path(), "ours.opus", 16_000, 600.0, 2);
        let wav = dir.path().join("ours.wav");
        let st = Command::new("opusdec")
            .args(["--quiet", "--rate", "16000"])
            .arg(&ours)
            .arg(&wav)
            .status()
            .unwrap();
        assert!(st.success());
        let (rate, pcm) = crate::wav::read_wav(&wav).unwrap();
        assert_eq!(rate, 16_000);
        assert!(pcm.len().abs_diff(32_000) <= 160, "{}", pcm.len());
        let a = analyze(&pcm[8000..], rate);
        assert!((a.dominant_hz - 600.0).abs() < 8.0, "{a:?}");

        // opusenc → ours.
        let src = dir.path().join("src.wav");
        crate::tone::write_tone_wav(&src, 900.0, 16_000, 2.0).unwrap();
        let theirs = dir.path().join("theirs.opus");
        let st = Command::new("opusenc")
            .args(["--quiet", "--bitrate", "16"])
            .arg(&src)
            .arg(&theirs)
            .status()
            .unwrap();
        assert!(st.success());
        let r = OggOpusReader::open(&theirs).unwrap();
        assert!(r.head().pre_skip > 0);
        let pcm = r.decode_all(16_000).unwrap();
        assert!(pcm.len().abs_diff(32_000) <= 16, "{}", pcm.len());
        let a = analyze(&pcm[8000..], 16_000);
        assert!((a.dominant_hz - 900.0).abs() < 8.0, "{a:?}");
    }
}
