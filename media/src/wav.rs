//! WAV files: a tolerant reader (8/16/24/32-bit integer PCM and 32/64-bit float, any channel count,
//! downmixed to mono i16) and a streaming 16-bit mono writer that keeps a valid file on disk while it
//! records (the RIFF and data sizes are rewritten at least every second, on `finish` and on drop).

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Errors from reading or writing WAV files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WavError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// The bytes are not a RIFF/WAVE file.
    #[error("not a WAV file: {0}")]
    NotWav(&'static str),
    /// The header is present but inconsistent or incomplete.
    #[error("malformed WAV header: {0}")]
    Malformed(String),
    /// A sample encoding this reader does not handle.
    #[error("unsupported WAV encoding: format tag {format_tag:#06x}, {bits} bits per sample")]
    Unsupported {
        /// The `fmt ` chunk's format tag (1 = PCM, 3 = IEEE float, 0xFFFE = extensible).
        format_tag: u16,
        /// Bits per sample.
        bits: u16,
    },
    /// The data chunk claims more bytes than the file holds.
    #[error(
        "truncated WAV data: the header announces {declared} bytes of samples, the file holds {available}"
    )]
    Truncated {
        /// Bytes announced by the data chunk header.
        declared: u64,
        /// Bytes actually present.
        available: u64,
    },
    /// The recording would exceed the 4 GiB RIFF limit.
    #[error("WAV file would exceed the 4 GiB RIFF size limit")]
    TooLarge,
    /// A sample rate of zero (or otherwise unusable) was given to the writer.
    #[error("invalid sample rate {0}")]
    InvalidRate(u32),
}

/// The sample encoding described by a `fmt ` chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavFormat {
    /// Sample rate in Hz.
    pub rate: u32,
    /// Interleaved channels per frame.
    pub channels: u16,
    /// Bits per sample.
    pub bits: u16,
    /// True for IEEE float samples, false for integer PCM.
    pub float: bool,
}

const FORMAT_PCM: u16 = 1;
const FORMAT_FLOAT: u16 = 3;
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;
/// Channel counts above this are treated as a malformed header.
const MAX_CHANNELS: u16 = 256;
/// Bytes of the canonical 44-byte header the writer produces.
const HEADER_LEN: u64 = 44;

fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn parse_fmt(body: &[u8]) -> Result<WavFormat, WavError> {
    let short = || WavError::Malformed(format!("fmt chunk is {} bytes, need 16", body.len()));
    let mut tag = le_u16(body, 0).ok_or_else(short)?;
    let channels = le_u16(body, 2).ok_or_else(short)?;
    let rate = le_u32(body, 4).ok_or_else(short)?;
    let block_align = le_u16(body, 12).ok_or_else(short)?;
    let bits = le_u16(body, 14).ok_or_else(short)?;
    if tag == FORMAT_EXTENSIBLE {
        // cbSize(2) validBits(2) channelMask(4) then the sub-format GUID whose first two bytes are the tag.
        tag = le_u16(body, 24).ok_or_else(|| {
            WavError::Malformed("WAVE_FORMAT_EXTENSIBLE fmt chunk without a sub-format".into())
        })?;
    }
    if channels == 0 || channels > MAX_CHANNELS {
        return Err(WavError::Malformed(format!("{channels} channels")));
    }
    if rate == 0 {
        return Err(WavError::Malformed("sample rate 0".into()));
    }
    let float = match (tag, bits) {
        (FORMAT_PCM, 8 | 16 | 24 | 32) => false,
        (FORMAT_FLOAT, 32 | 64) => true,
        _ => {
            return Err(WavError::Unsupported {
                format_tag: tag,
                bits,
            });
        }
    };
    let frame = u32::from(channels) * u32::from(bits / 8);
    if u32::from(block_align) != frame {
        return Err(WavError::Malformed(format!(
            "block align {block_align} does not match {channels} channels of {bits} bits"
        )));
    }
    Ok(WavFormat {
        rate,
        channels,
        bits,
        float,
    })
}

/// Decodes one sample at the start of `s` (exactly `bits/8` bytes) to a float in -1.0..=1.0.
fn sample_to_f32(fmt: &WavFormat, s: &[u8]) -> f32 {
    match (fmt.float, s) {
        (false, [a]) => (f32::from(*a) - 128.0) / 128.0,
        (false, [a, b]) => f32::from(i16::from_le_bytes([*a, *b])) / 32768.0,
        (false, [a, b, c]) => (i32::from_le_bytes([0, *a, *b, *c]) >> 8) as f32 / 8_388_608.0,
        (false, [a, b, c, d]) => i32::from_le_bytes([*a, *b, *c, *d]) as f32 / 2_147_483_648.0,
        (true, [a, b, c, d]) => {
            let v = f32::from_le_bytes([*a, *b, *c, *d]);
            if v.is_finite() { v } else { 0.0 }
        }
        (true, [a, b, c, d, e, f, g, h]) => {
            let v = f64::from_le_bytes([*a, *b, *c, *d, *e, *f, *g, *h]) as f32;
            if v.is_finite() { v } else { 0.0 }
        }
        _ => 0.0,
    }
}

/// Converts a float sample (nominally -1.0..=1.0) to i16 with clipping.
pub fn f32_to_i16(v: f32) -> i16 {
    (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// Decodes interleaved sample bytes to mono i16: 16-bit mono is copied, everything else averaged.
fn decode_samples(fmt: &WavFormat, data: &[u8]) -> Vec<i16> {
    let width = usize::from(fmt.bits / 8);
    let channels = usize::from(fmt.channels);
    let frame_len = width * channels;
    if frame_len == 0 {
        return Vec::new();
    }
    let frames = data.chunks_exact(frame_len);
    if !fmt.float && fmt.bits == 16 && channels == 1 {
        return frames.map(|f| i16::from_le_bytes([f[0], f[1]])).collect();
    }
    if !fmt.float && fmt.bits == 16 {
        return frames
            .map(|f| {
                let sum: i32 = f
                    .chunks_exact(2)
                    .map(|s| i32::from(i16::from_le_bytes([s[0], s[1]])))
                    .sum();
                (sum / channels as i32) as i16
            })
            .collect();
    }
    frames
        .map(|f| {
            let sum: f32 = f.chunks_exact(width).map(|s| sample_to_f32(fmt, s)).sum();
            f32_to_i16(sum / channels as f32)
        })
        .collect()
}

/// Parses a whole WAV file held in memory, returning its format and the samples downmixed to mono i16.
///
/// Chunks other than `fmt ` and `data` are skipped (with RIFF pad bytes); a data size of 0 or
/// 0xFFFFFFFF (written by streaming tools that never finalised the header) means "up to the end of
/// the file"; a larger declared size than the file holds is [`WavError::Truncated`].
pub fn parse_wav_bytes(bytes: &[u8]) -> Result<(WavFormat, Vec<i16>), WavError> {
    if bytes.len() < 12 {
        return Err(WavError::NotWav("shorter than a RIFF header"));
    }
    if bytes.get(0..4) != Some(b"RIFF") {
        return Err(WavError::NotWav("missing RIFF signature"));
    }
    if bytes.get(8..12) != Some(b"WAVE") {
        return Err(WavError::NotWav("RIFF form type is not WAVE"));
    }
    let mut pos = 12usize;
    let mut fmt: Option<WavFormat> = None;
    loop {
        let Some(id) = bytes.get(pos..pos + 8) else {
            return Err(if fmt.is_some() {
                WavError::Malformed("no data chunk".into())
            } else {
                WavError::Malformed("no fmt chunk".into())
            });
        };
        let size = u32::from_le_bytes([id[4], id[5], id[6], id[7]]);
        let body_start = pos + 8;
        let available = bytes.len() - body_start;
        match &id[0..4] {
            b"fmt " => {
                let end = body_start
                    .checked_add(size as usize)
                    .filter(|e| *e <= bytes.len())
                    .ok_or_else(|| {
                        WavError::Malformed("fmt chunk runs past the end of the file".into())
                    })?;
                fmt = Some(parse_fmt(&bytes[body_start..end])?);
                // Chunks are padded to an even length.
                pos = end + (size as usize & 1);
            }
            b"data" => {
                let fmt = fmt
                    .ok_or_else(|| WavError::Malformed("data chunk before the fmt chunk".into()))?;
                let len = if size == 0 || size == u32::MAX {
                    available
                } else if size as usize > available {
                    return Err(WavError::Truncated {
                        declared: u64::from(size),
                        available: available as u64,
                    });
                } else {
                    size as usize
                };
                let samples = decode_samples(&fmt, &bytes[body_start..body_start + len]);
                return Ok((fmt, samples));
            }
            _ => {
                let skip = (size as usize).saturating_add(size as usize & 1);
                pos = body_start
                    .checked_add(skip)
                    .filter(|p| *p <= bytes.len())
                    .ok_or_else(|| {
                        WavError::Malformed(format!(
                            "chunk {:?} runs past the end of the file",
                            String::from_utf8_lossy(&id[0..4])
                        ))
                    })?;
            }
        }
    }
}

/// Reads a WAV file and returns `(sample rate, mono i16 samples)`; stereo and wider are downmixed.
pub fn read_wav(path: impl AsRef<Path>) -> Result<(u32, Vec<i16>), WavError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| WavError::Io {
        path: path.to_owned(),
        source,
    })?;
    let (fmt, samples) = parse_wav_bytes(&bytes)?;
    Ok((fmt.rate, samples))
}

/// Writes `samples` as a 16-bit mono PCM WAV file at `rate` Hz (replacing any existing file).
pub fn write_wav(path: impl AsRef<Path>, rate: u32, samples: &[i16]) -> Result<(), WavError> {
    let mut w = WavWriter::create(path, rate)?;
    w.write(samples)?;
    w.finish()
}

/// Builds the 44-byte canonical header of a 16-bit mono PCM file with `data_len` bytes of samples.
fn header(rate: u32, data_len: u32) -> [u8; 44] {
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&data_len.saturating_add(36).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&FORMAT_PCM.to_le_bytes());
    h[22..24].copy_from_slice(&1u16.to_le_bytes());
    h[24..28].copy_from_slice(&rate.to_le_bytes());
    h[28..32].copy_from_slice(&rate.saturating_mul(2).to_le_bytes());
    h[32..34].copy_from_slice(&2u16.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_len.to_le_bytes());
    h
}

/// How often the streaming writer rewrites the header sizes at the latest.
pub const HEADER_REFRESH: Duration = Duration::from_secs(1);

/// A streaming 16-bit mono PCM WAV writer whose file is a valid, readable WAV at all times.
///
/// Samples go straight to the file (no user-space buffer, so a killed process loses nothing already
/// written); the header's sizes are rewritten when [`HEADER_REFRESH`] has passed or a second of
/// audio has accumulated since the last rewrite, on [`WavWriter::finish`] and on drop. The header
/// never claims more data than is on disk.
#[derive(Debug)]
pub struct WavWriter {
    file: Option<File>,
    path: PathBuf,
    rate: u32,
    data_len: u32,
    header_len: u32,
    last_header: Instant,
    scratch: Vec<u8>,
}

impl WavWriter {
    /// Creates (or truncates) `path` and writes an empty but valid header.
    pub fn create(path: impl AsRef<Path>, rate: u32) -> Result<Self, WavError> {
        let path = path.as_ref().to_owned();
        if rate == 0 {
            return Err(WavError::InvalidRate(rate));
        }
        let io = |source| WavError::Io {
            path: path.clone(),
            source,
        };
        let mut file = File::create(&path).map_err(io)?;
        file.write_all(&header(rate, 0)).map_err(io)?;
        Ok(Self {
            file: Some(file),
            path,
            rate,
            data_len: 0,
            header_len: 0,
            last_header: Instant::now(),
            scratch: Vec::new(),
        })
    }

    /// The sample rate written in the header.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Samples written so far.
    pub fn samples_written(&self) -> u64 {
        u64::from(self.data_len / 2)
    }

    fn io_err(&self, source: io::Error) -> WavError {
        WavError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends samples; rewrites the header sizes when due.
    pub fn write(&mut self, samples: &[i16]) -> Result<(), WavError> {
        let added = samples.len().checked_mul(2).ok_or(WavError::TooLarge)?;
        let new_len = u64::from(self.data_len) + added as u64;
        if new_len + HEADER_LEN - 8 > u64::from(u32::MAX) {
            return Err(WavError::TooLarge);
        }
        self.scratch.clear();
        self.scratch.reserve(added);
        for s in samples {
            self.scratch.extend_from_slice(&s.to_le_bytes());
        }
        let Some(file) = self.file.as_mut() else {
            return Err(self.io_err(io::Error::other("writer already finished")));
        };
        if let Err(e) = file.write_all(&self.scratch) {
            return Err(self.io_err(e));
        }
        self.data_len = new_len as u32;
        let unflushed = self.data_len - self.header_len;
        if self.last_header.elapsed() >= HEADER_REFRESH || unflushed >= self.rate.saturating_mul(2)
        {
            self.update_header()?;
        }
        Ok(())
    }

    /// Rewrites the RIFF and data sizes to match the samples written so far.
    pub fn update_header(&mut self) -> Result<(), WavError> {
        let h = header(self.rate, self.data_len);
        let end = HEADER_LEN + u64::from(self.data_len);
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let r = (|| {
            file.seek(SeekFrom::Start(4))?;
            file.write_all(&h[4..8])?;
            file.seek(SeekFrom::Start(40))?;
            file.write_all(&h[40..44])?;
            file.seek(SeekFrom::Start(end))?;
            Ok(())
        })();
        self.last_header = Instant::now();
        r.map_err(|e| self.io_err(e))?;
        self.header_len = self.data_len;
        Ok(())
    }

    /// Finalises the header and flushes the file to disk; later writes fail.
    pub fn finish(&mut self) -> Result<(), WavError> {
        if self.file.is_none() {
            return Ok(());
        }
        self.update_header()?;
        let file = self.file.take();
        if let Some(f) = file {
            f.sync_data().map_err(|e| self.io_err(e))?;
        }
        Ok(())
    }
}

impl Drop for WavWriter {
    fn drop(&mut self) {
        if self.file.is_some()
            && let Err(e) = self.update_header()
        {
            tracing::warn!(error = %e, "could not finalise WAV header on drop");
        }
    }
}
