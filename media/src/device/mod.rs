//! Audio devices behind two small traits: real ones through cpal (PulseAudio host preferred), WAV
//! file source and sink, null devices and a tone generator; `DeviceSpec` parses the user's choice.
//!
//! All devices speak mono i16 at the rate they report; the session resamples to the codec's rate.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::tone::SineGenerator;
use crate::wav::{WavError, WavWriter, read_wav};

mod host;
mod ring;

pub use host::{CpalCapture, CpalOptions, CpalPlayback, list_devices, try_list_devices};
pub use ring::{LevelRing, RingStats};

/// The rate used by devices that can pick one (null, tone, file sinks, real devices when they can).
pub const DEFAULT_RATE: u32 = 48_000;

/// Errors from opening or using audio devices.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// Reading or writing a WAV file failed.
    #[error(transparent)]
    Wav(#[from] WavError),
    /// A device specification string could not be parsed.
    #[error("invalid device {spec:?}: {reason}")]
    InvalidSpec {
        /// The text given.
        spec: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No audio host could be initialised.
    #[error("no audio host available: {0}")]
    NoHost(String),
    /// No device of that name exists for that direction.
    #[error("no {direction} device named {name:?}")]
    NotFound {
        /// The requested name.
        name: String,
        /// "input" or "output".
        direction: &'static str,
    },
    /// The host has no default device for that direction.
    #[error("no default {0} device")]
    NoDefault(&'static str),
    /// The device offers no configuration we can use.
    #[error("unsupported device configuration: {0}")]
    Unsupported(String),
    /// The audio backend reported an error while opening the stream.
    #[error("audio backend error: {0}")]
    Backend(String),
    /// The device did not open in time.
    #[error("timed out opening the audio device")]
    Timeout,
    /// A running stream failed (device unplugged, server gone).
    #[error("audio stream failed: {0}")]
    StreamFailed(String),
    /// The sink was already finished.
    #[error("device already finished")]
    Finished,
}

/// A source of mono i16 audio, read one frame at a time by the call's media clock.
pub trait CaptureDevice: Send {
    /// Sample rate of the audio produced.
    fn rate(&self) -> u32;
    /// Fills `out` completely. Returns `Ok(false)` once a finite source has ended (it then yields
    /// silence); `Ok(true)` while it produces audio.
    fn read_frame(&mut self, out: &mut [i16]) -> Result<bool, DeviceError>;
}

/// A sink of mono i16 audio, written one frame at a time by the call's media clock.
pub trait PlaybackDevice: Send {
    /// Sample rate expected.
    fn rate(&self) -> u32;
    /// Queues one frame.
    fn write_frame(&mut self, pcm: &[i16]) -> Result<(), DeviceError>;
    /// Flushes and closes (a WAV sink writes its final header); further writes fail or are ignored.
    fn finish(&mut self) -> Result<(), DeviceError>;
}

impl<T: CaptureDevice + ?Sized> CaptureDevice for Box<T> {
    fn rate(&self) -> u32 {
        (**self).rate()
    }
    fn read_frame(&mut self, out: &mut [i16]) -> Result<bool, DeviceError> {
        (**self).read_frame(out)
    }
}

impl<T: PlaybackDevice + ?Sized> PlaybackDevice for Box<T> {
    fn rate(&self) -> u32 {
        (**self).rate()
    }
    fn write_frame(&mut self, pcm: &[i16]) -> Result<(), DeviceError> {
        (**self).write_frame(pcm)
    }
    fn finish(&mut self) -> Result<(), DeviceError> {
        (**self).finish()
    }
}

/// Plays a WAV file (downmixed to mono, at the file's own rate), once or looping.
#[derive(Debug, Clone)]
pub struct WavSource {
    rate: u32,
    samples: Vec<i16>,
    pos: usize,
    looping: bool,
    ended: bool,
}

impl WavSource {
    /// Loads `path`; with `looping` the file restarts at its end forever.
    pub fn open(path: impl AsRef<Path>, looping: bool) -> Result<Self, DeviceError> {
        let (rate, samples) = read_wav(path)?;
        Ok(Self::from_samples(rate, samples, looping))
    }

    /// A source over samples already in memory.
    pub fn from_samples(rate: u32, samples: Vec<i16>, looping: bool) -> Self {
        Self {
            rate,
            samples,
            pos: 0,
            looping,
            ended: false,
        }
    }

    /// Total samples in the file.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

impl CaptureDevice for WavSource {
    fn rate(&self) -> u32 {
        self.rate
    }

    fn read_frame(&mut self, out: &mut [i16]) -> Result<bool, DeviceError> {
        if self.ended || self.samples.is_empty() {
            self.ended = true;
            out.fill(0);
            return Ok(false);
        }
        let mut filled = 0;
        while filled < out.len() {
            let rest = &self.samples[self.pos..];
            let n = rest.len().min(out.len() - filled);
            out[filled..filled + n].copy_from_slice(&rest[..n]);
            filled += n;
            self.pos += n;
            if self.pos >= self.samples.len() {
                if self.looping {
                    self.pos = 0;
                } else {
                    out[filled..].fill(0);
                    self.ended = true;
                    break;
                }
            }
        }
        // The frame holding the last samples still counts as audio; the next one reports the end.
        Ok(true)
    }
}

/// Records to a 16-bit mono WAV file that stays valid on disk while recording.
#[derive(Debug)]
pub struct WavSink {
    writer: WavWriter,
    finished: bool,
}

impl WavSink {
    /// Creates (or truncates) `path` for audio at `rate` Hz.
    pub fn create(path: impl AsRef<Path>, rate: u32) -> Result<Self, DeviceError> {
        Ok(Self {
            writer: WavWriter::create(path, rate)?,
            finished: false,
        })
    }

    /// Samples recorded so far.
    pub fn samples_written(&self) -> u64 {
        self.writer.samples_written()
    }
}

impl PlaybackDevice for WavSink {
    fn rate(&self) -> u32 {
        self.writer.rate()
    }

    fn write_frame(&mut self, pcm: &[i16]) -> Result<(), DeviceError> {
        if self.finished {
            return Err(DeviceError::Finished);
        }
        Ok(self.writer.write(pcm)?)
    }

    fn finish(&mut self) -> Result<(), DeviceError> {
        self.finished = true;
        Ok(self.writer.finish()?)
    }
}

/// A capture device that yields silence forever.
#[derive(Debug, Clone)]
pub struct NullCapture {
    rate: u32,
}

impl NullCapture {
    /// Silence at `rate` Hz.
    pub fn new(rate: u32) -> Self {
        Self { rate }
    }
}

impl CaptureDevice for NullCapture {
    fn rate(&self) -> u32 {
        self.rate
    }
    fn read_frame(&mut self, out: &mut [i16]) -> Result<bool, DeviceError> {
        out.fill(0);
        Ok(true)
    }
}

/// A playback device that discards audio (counting it).
#[derive(Debug, Clone)]
pub struct NullPlayback {
    rate: u32,
    samples: u64,
}

impl NullPlayback {
    /// Discards audio at `rate` Hz.
    pub fn new(rate: u32) -> Self {
        Self { rate, samples: 0 }
    }

    /// Samples discarded so far.
    pub fn samples_written(&self) -> u64 {
        self.samples
    }
}

impl PlaybackDevice for NullPlayback {
    fn rate(&self) -> u32 {
        self.rate
    }
    fn write_frame(&mut self, pcm: &[i16]) -> Result<(), DeviceError> {
        self.samples += pcm.len() as u64;
        Ok(())
    }
    fn finish(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }
}

/// A capture device producing an endless phase-continuous sine.
#[derive(Debug, Clone)]
pub struct ToneCapture {
    rate: u32,
    generator: SineGenerator,
}

impl ToneCapture {
    /// A `freq_hz` sine at `rate` Hz; `amplitude` is a fraction of full scale.
    pub fn new(freq_hz: f32, rate: u32, amplitude: f32) -> Self {
        Self {
            rate,
            generator: SineGenerator::new(freq_hz, rate, amplitude),
        }
    }
}

impl CaptureDevice for ToneCapture {
    fn rate(&self) -> u32 {
        self.rate
    }
    fn read_frame(&mut self, out: &mut [i16]) -> Result<bool, DeviceError> {
        self.generator.fill(out);
        Ok(true)
    }
}

/// Which device the user asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceSpec {
    /// The system's default device (`default`).
    Default,
    /// A real device by name (its id such as `null.monitor`, or its description).
    Named(String),
    /// A WAV file (`file:PATH`, or any path ending in `.wav`).
    File(PathBuf),
    /// Silence in, audio discarded out (`null`).
    Null,
    /// A sine of this frequency as capture (`tone:440`); as playback it discards like `null`.
    Tone(f32),
}

impl FromStr for DeviceSpec {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| DeviceError::InvalidSpec {
            spec: s.to_owned(),
            reason,
        };
        let t = s.trim();
        if t.is_empty() {
            return Err(invalid("empty device name"));
        }
        let lower = t.to_ascii_lowercase();
        if lower == "default" {
            return Ok(Self::Default);
        }
        if lower == "null" {
            return Ok(Self::Null);
        }
        if lower.starts_with("tone:") {
            let f: f32 = t[5..]
                .trim()
                .parse()
                .map_err(|_| invalid("tone frequency is not a number"))?;
            if !f.is_finite() || f <= 0.0 {
                return Err(invalid("tone frequency must be positive"));
            }
            return Ok(Self::Tone(f));
        }
        if lower.starts_with("file:") {
            let p = &t[5..];
            if p.is_empty() {
                return Err(invalid("file: needs a path"));
            }
            return Ok(Self::File(PathBuf::from(p)));
        }
        if lower.ends_with(".wav") {
            return Ok(Self::File(PathBuf::from(t)));
        }
        Ok(Self::Named(t.to_owned()))
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::Named(n) => f.write_str(n),
            Self::File(p) => write!(f, "file:{}", p.display()),
            Self::Null => f.write_str("null"),
            Self::Tone(hz) => write!(f, "tone:{hz}"),
        }
    }
}

/// Opens the capture device `spec` names; `looping` applies to WAV files.
pub fn open_capture(
    spec: &DeviceSpec,
    looping: bool,
) -> Result<Box<dyn CaptureDevice>, DeviceError> {
    Ok(match spec {
        DeviceSpec::Default => Box::new(CpalCapture::open(None)?),
        DeviceSpec::Named(n) => Box::new(CpalCapture::open(Some(n))?),
        DeviceSpec::File(p) => Box::new(WavSource::open(p, looping)?),
        DeviceSpec::Null => Box::new(NullCapture::new(DEFAULT_RATE)),
        DeviceSpec::Tone(hz) => Box::new(ToneCapture::new(*hz, DEFAULT_RATE, 0.5)),
    })
}

/// Opens the playback device `spec` names (a WAV file records at [`DEFAULT_RATE`]).
pub fn open_playback(spec: &DeviceSpec) -> Result<Box<dyn PlaybackDevice>, DeviceError> {
    open_playback_with_rate(spec, DEFAULT_RATE)
}

/// Like [`open_playback`], with the rate used for WAV and null sinks.
pub fn open_playback_with_rate(
    spec: &DeviceSpec,
    rate: u32,
) -> Result<Box<dyn PlaybackDevice>, DeviceError> {
    Ok(match spec {
        DeviceSpec::Default => Box::new(CpalPlayback::open(None)?),
        DeviceSpec::Named(n) => Box::new(CpalPlayback::open(Some(n))?),
        DeviceSpec::File(p) => Box::new(WavSink::create(p, rate)?),
        DeviceSpec::Null | DeviceSpec::Tone(_) => Box::new(NullPlayback::new(rate)),
    })
}

/// One entry of [`list_devices`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The name to pass as `--device` (the backend's stable id, e.g. `null.monitor`).
    pub name: String,
    /// Human-readable description.
    pub description: String,
    /// Usable for capture.
    pub input: bool,
    /// Usable for playback.
    pub output: bool,
    /// The host's default for its direction.
    pub default: bool,
    /// Audio host (e.g. `PulseAudio`, `ALSA`).
    pub host: String,
}
