//! The audio chains a call uses: device PCM -> resample -> frame -> encode -> payload on the
//! send side; RTP payload -> jitter buffer -> decode / FEC / PLC -> resample -> device PCM on
//! the receive side.

use crate::codec::{
    AudioDecoder, AudioEncoder, CodecError, CodecKind, CodecSpec, new_decoder, new_encoder,
};
use crate::jitter::{JitterBuffer, JitterConfig, JitterOutput, JitterStats, MissReason};
use crate::resample::Resampler;
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Errors from building a chain.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The codec could not be created.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The receive chain was given no codecs.
    #[error("no codecs to receive")]
    NoCodecs,
    /// A device rate of 0 or a zero packet time.
    #[error("invalid chain parameter: {0}")]
    Invalid(&'static str),
}

/// One encoded frame ready to go into an RTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    /// The RTP payload; empty when Opus DTX decided nothing needs sending (the timestamp
    /// still advances).
    pub payload: Bytes,
    /// How far the RTP timestamp advances for this frame (RTP clock units).
    pub samples: u32,
}

/// RMS below which decoded audio counts as quiet for jitter adjustments (about -40 dBFS).
const QUIET_RMS: f64 = 330.0;

/// Concealment plays at full level for this long (G.711 Appendix I's 60 ms)...
const CONCEAL_FULL: Duration = Duration::from_millis(60);
/// ...then fades out, reaching silence here; a longer outage (hold, a dead peer) is silent
/// instead of an endless PLC buzz or hiss.
const CONCEAL_SILENT: Duration = Duration::from_millis(120);

/// Conceals `n` samples, fading by the length of the current concealment run.
fn conceal_faded(decoder: &mut dyn AudioDecoder, n: usize, run: &mut usize, out: &mut Vec<i16>) {
    let rate = decoder.pcm_rate() as usize;
    let full = rate * CONCEAL_FULL.as_millis() as usize / 1000;
    let silent = rate * CONCEAL_SILENT.as_millis() as usize / 1000;
    let start = out.len();
    if *run >= silent {
        out.resize(start + n, 0);
    } else {
        decoder.conceal(n, out);
        for (j, s) in out[start..].iter_mut().enumerate() {
            let pos = *run + j;
            if pos >= silent {
                *s = 0;
            } else if pos > full {
                let gain = (silent - pos) as f32 / (silent - full) as f32;
                *s = (f32::from(*s) * gain) as i16;
            }
        }
    }
    *run = run.saturating_add(n);
}

/// Opus frame durations libopus accepts, in ms (2.5 ms is not offered for RTP use).
const OPUS_PTIMES: [u64; 8] = [5, 10, 20, 40, 60, 80, 100, 120];

/// The send side: takes capture PCM at the device rate, emits one payload per packet time.
pub struct AudioSendChain {
    spec: CodecSpec,
    device_rate: u32,
    ptime: Duration,
    encoder: Box<dyn AudioEncoder>,
    resampler: Resampler,
    /// Codec-rate PCM waiting to be framed.
    pending: Vec<i16>,
    scratch: Vec<i16>,
    payload: Vec<u8>,
    frame_len: usize,
    frame_ts: u32,
    encode_errors: u64,
}

impl std::fmt::Debug for AudioSendChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioSendChain")
            .field("spec", &self.spec)
            .field("device_rate", &self.device_rate)
            .field("ptime", &self.ptime)
            .finish_non_exhaustive()
    }
}

/// The packet time actually used for a codec: Opus needs one of its frame sizes (20 ms when
/// the requested one is not), G.711 takes any whole number of milliseconds from 5 to 200.
pub fn effective_ptime(kind: CodecKind, ptime: Duration) -> Duration {
    let ms = ptime.as_millis() as u64;
    match kind {
        CodecKind::Opus if OPUS_PTIMES.contains(&ms) => Duration::from_millis(ms),
        CodecKind::Opus => Duration::from_millis(20),
        _ => Duration::from_millis(ms.clamp(5, 200)),
    }
}

impl AudioSendChain {
    /// Creates the send chain for a codec, a capture device rate and a packet time.
    pub fn new(spec: &CodecSpec, device_rate: u32, ptime: Duration) -> Result<Self, ChainError> {
        if device_rate == 0 {
            return Err(ChainError::Invalid("device rate 0"));
        }
        if ptime.is_zero() {
            return Err(ChainError::Invalid("ptime 0"));
        }
        let encoder = new_encoder(spec)?;
        let mut chain = AudioSendChain {
            spec: spec.clone(),
            device_rate,
            ptime,
            resampler: Resampler::new(device_rate, encoder.pcm_rate()),
            encoder,
            pending: Vec::new(),
            scratch: Vec::new(),
            payload: Vec::new(),
            frame_len: 0,
            frame_ts: 0,
            encode_errors: 0,
        };
        chain.compute_frame();
        Ok(chain)
    }

    fn compute_frame(&mut self) {
        let pt = effective_ptime(self.spec.kind, self.ptime);
        let ms = pt.as_millis() as u64;
        self.frame_len = (u64::from(self.encoder.pcm_rate()) * ms / 1000) as usize;
        self.frame_ts = (u64::from(self.spec.clock_rate) * ms / 1000) as u32;
    }

    /// The codec being sent.
    pub fn codec(&self) -> &CodecSpec {
        &self.spec
    }

    /// The packet time in use (see [`effective_ptime`]).
    pub fn ptime(&self) -> Duration {
        effective_ptime(self.spec.kind, self.ptime)
    }

    /// RTP timestamp advance per frame.
    pub fn frame_timestamp_units(&self) -> u32 {
        self.frame_ts
    }

    /// Frames that failed to encode (each still produced an empty frame).
    pub fn encode_errors(&self) -> u64 {
        self.encode_errors
    }

    /// Adds captured PCM at the device rate.
    pub fn push(&mut self, pcm_at_device_rate: &[i16]) {
        self.resampler
            .process(pcm_at_device_rate, &mut self.pending);
    }

    /// Encodes the next complete frame, if enough PCM is buffered.
    pub fn next_payload(&mut self) -> Option<EncodedFrame> {
        if self.frame_len == 0 || self.pending.len() < self.frame_len {
            return None;
        }
        self.scratch.clear();
        self.scratch.extend(self.pending.drain(..self.frame_len));
        let payload = match self.encoder.encode(&self.scratch, &mut self.payload) {
            Ok(()) => Bytes::copy_from_slice(&self.payload),
            Err(e) => {
                self.encode_errors += 1;
                tracing::debug!("encode failed: {e}");
                Bytes::new()
            }
        };
        Some(EncodedFrame {
            payload,
            samples: self.frame_ts,
        })
    }

    /// Switches to another codec (re-INVITE); buffered PCM is kept when the rate is unchanged.
    pub fn set_codec(&mut self, spec: &CodecSpec) -> Result<(), ChainError> {
        let encoder = new_encoder(spec)?;
        if encoder.pcm_rate() != self.encoder.pcm_rate() {
            self.resampler = Resampler::new(self.device_rate, encoder.pcm_rate());
            self.pending.clear();
        }
        self.encoder = encoder;
        self.spec = spec.clone();
        self.compute_frame();
        Ok(())
    }

    /// Changes the packet time.
    pub fn set_ptime(&mut self, ptime: Duration) {
        if !ptime.is_zero() {
            self.ptime = ptime;
            self.compute_frame();
        }
    }

    /// Changes the capture device rate (device hot switch); buffered PCM is dropped.
    pub fn set_device_rate(&mut self, device_rate: u32) {
        if device_rate != 0 && device_rate != self.device_rate {
            self.device_rate = device_rate;
            self.resampler = Resampler::new(device_rate, self.encoder.pcm_rate());
            self.pending.clear();
        }
    }

    /// Tells the encoder the loss the peer reports (percent, from RTCP); tunes Opus FEC.
    pub fn set_expected_loss(&mut self, percent: u8) {
        self.encoder.set_expected_loss(percent);
    }
}

/// Receive chain counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReceiveChainStats {
    /// The jitter buffer's counters and levels.
    pub jitter: JitterStats,
    /// Audio produced by concealment (PLC for lost or missing packets), milliseconds.
    pub concealed_ms: u64,
    /// Lost packets recovered from in-band FEC.
    pub fec_recovered: u64,
    /// Payloads that failed to decode (concealed instead).
    pub decode_errors: u64,
    /// Packets with a payload type we do not receive (dropped).
    pub unknown_pt: u64,
    /// Packets accepted into the jitter buffer.
    pub packets: u64,
    /// Times the decoder changed because the payload type changed.
    pub codec_switches: u64,
    /// The codec currently decoded, if any packet arrived.
    pub codec: Option<&'static str>,
}

struct Active {
    spec: CodecSpec,
    decoder: Box<dyn AudioDecoder>,
    resampler: Resampler,
    jitter: JitterBuffer,
}

/// The receive side: RTP payloads in, exactly the requested amount of device-rate PCM out.
pub struct AudioReceiveChain {
    codecs: Vec<CodecSpec>,
    device_rate: u32,
    active: Option<Active>,
    ready: VecDeque<i16>,
    pcm: Vec<i16>,
    resampled: Vec<i16>,
    min_delay: Duration,
    max_delay: Duration,
    stats: ReceiveChainStats,
    concealed_ms: f64,
    /// Concealed samples (decoder rate) since the last good or FEC-recovered frame.
    conceal_run: usize,
    /// Jitter counters of buffers replaced on codec switches, kept so totals stay monotonic.
    jitter_carry: JitterStats,
}

impl std::fmt::Debug for AudioReceiveChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioReceiveChain")
            .field("codecs", &self.codecs)
            .field("device_rate", &self.device_rate)
            .finish_non_exhaustive()
    }
}

fn add_counters(a: &mut JitterStats, b: &JitterStats) {
    a.received += b.received;
    a.played += b.played;
    a.late += b.late;
    a.duplicates += b.duplicates;
    a.dropped += b.dropped;
    a.inserted += b.inserted;
    a.concealed += b.concealed;
    a.silence += b.silence;
    a.resyncs += b.resyncs;
    a.outliers += b.outliers;
}

impl AudioReceiveChain {
    /// Creates the receive chain for every payload type we accept and the playback rate.
    pub fn new(codecs: Vec<CodecSpec>, device_rate: u32) -> Result<Self, ChainError> {
        if codecs.is_empty() {
            return Err(ChainError::NoCodecs);
        }
        if device_rate == 0 {
            return Err(ChainError::Invalid("device rate 0"));
        }
        Ok(AudioReceiveChain {
            codecs,
            device_rate,
            active: None,
            ready: VecDeque::new(),
            pcm: Vec::new(),
            resampled: Vec::new(),
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(300),
            stats: ReceiveChainStats::default(),
            concealed_ms: 0.0,
            conceal_run: 0,
            jitter_carry: JitterStats::default(),
        })
    }

    /// Sets the jitter buffer delay bounds (default 20..=300 ms), also for the current stream.
    pub fn set_delay_bounds(&mut self, min_delay: Duration, max_delay: Duration) {
        self.min_delay = min_delay;
        self.max_delay = max_delay.max(min_delay);
        if let Some(a) = self.active.as_mut() {
            a.jitter.set_delay_bounds(self.min_delay, self.max_delay);
        }
    }

    /// Replaces the receivable codecs (re-INVITE); the current decoder stays if still listed.
    pub fn set_codecs(&mut self, codecs: Vec<CodecSpec>) {
        if codecs.is_empty() {
            return;
        }
        if let Some(a) = &self.active
            && !codecs
                .iter()
                .any(|c| c.payload_type == a.spec.payload_type && c.kind == a.spec.kind)
        {
            self.retire_active();
        }
        self.codecs = codecs;
    }

    /// The caller (the media task) could not run from `since` until `until`: the packets it
    /// pushes now waited for it, not for the network (see [`JitterBuffer::note_stall`]).
    pub fn note_stall(&mut self, since: Instant, until: Instant) {
        if let Some(a) = self.active.as_mut() {
            a.jitter.note_stall(since, until);
        }
    }

    /// Forgets buffered packets and timing (the sender's SSRC changed); the decoder is kept.
    pub fn reset_stream(&mut self) {
        if let Some(a) = self.active.as_mut() {
            a.jitter.reset();
        }
    }

    /// The playback device rate.
    pub fn device_rate(&self) -> u32 {
        self.device_rate
    }

    /// Changes the playback device rate (device hot switch).
    pub fn set_device_rate(&mut self, device_rate: u32) {
        if device_rate == 0 || device_rate == self.device_rate {
            return;
        }
        self.device_rate = device_rate;
        self.ready.clear();
        if let Some(a) = self.active.as_mut() {
            a.resampler = Resampler::new(a.decoder.pcm_rate(), device_rate);
        }
    }

    fn retire_active(&mut self) {
        if let Some(old) = self.active.take() {
            add_counters(&mut self.jitter_carry, &old.jitter.stats());
        }
    }

    fn jitter_config(&self, clock_rate: u32) -> JitterConfig {
        JitterConfig {
            clock_rate,
            min_delay: self.min_delay,
            max_delay: self.max_delay,
            max_packets: 100,
        }
    }

    /// Adds a received RTP packet's payload (after SRTP and DTMF demultiplexing).
    pub fn push_rtp(
        &mut self,
        now: Instant,
        pt: u8,
        sequence: u16,
        timestamp: u32,
        payload: Bytes,
    ) {
        let Some(spec) = self.codecs.iter().find(|c| c.payload_type == pt).cloned() else {
            self.stats.unknown_pt += 1;
            return;
        };
        let same = self
            .active
            .as_ref()
            .is_some_and(|a| a.spec.kind == spec.kind && a.spec.clock_rate == spec.clock_rate);
        if !same {
            let decoder = match new_decoder(&spec) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!("cannot create decoder for {}: {e}", spec.name());
                    self.stats.decode_errors += 1;
                    return;
                }
            };
            if self.active.is_some() {
                self.stats.codec_switches += 1;
            }
            self.retire_active();
            self.active = Some(Active {
                resampler: Resampler::new(decoder.pcm_rate(), self.device_rate),
                jitter: JitterBuffer::new(self.jitter_config(spec.clock_rate)),
                decoder,
                spec,
            });
        } else if let Some(a) = self.active.as_mut() {
            a.spec.payload_type = spec.payload_type;
        }
        let Some(a) = self.active.as_mut() else {
            return;
        };
        let Some(pcm_samples) = a.decoder.packet_samples(&payload) else {
            self.stats.decode_errors += 1;
            return;
        };
        let units = (pcm_samples as u64 * u64::from(a.spec.clock_rate)
            / u64::from(a.decoder.pcm_rate())) as u32;
        self.stats.packets += 1;
        a.jitter.push(now, sequence, timestamp, payload, units);
    }

    /// Fills `out` with exactly `samples_at_device_rate` samples (appended): decoded audio,
    /// concealment, or silence while nothing has arrived yet.
    pub fn pull(&mut self, now: Instant, samples_at_device_rate: usize, out: &mut Vec<i16>) {
        let want = samples_at_device_rate;
        let mut rounds = 0;
        while self.ready.len() < want && rounds < 32 {
            rounds += 1;
            if !self.decode_next(now, want) {
                break;
            }
        }
        let take = self.ready.len().min(want);
        out.extend(self.ready.drain(..take));
        out.resize(out.len() + (want - take), 0);
    }

    /// Decodes (or conceals) one jitter-buffer step into `ready`; false when buffering.
    fn decode_next(&mut self, now: Instant, want_device: usize) -> bool {
        let Some(a) = self.active.as_mut() else {
            return false;
        };
        let clock = u64::from(a.spec.clock_rate);
        let pcm_rate = u64::from(a.decoder.pcm_rate());
        let want_units = ((want_device as u64 * clock) / u64::from(self.device_rate)).max(1) as u32;
        self.pcm.clear();
        match a.jitter.pop(now, want_units) {
            JitterOutput::Buffering => return false,
            JitterOutput::Packet {
                payload, samples, ..
            } => {
                if let Err(e) = a.decoder.decode(&payload, &mut self.pcm) {
                    tracing::debug!("decode failed: {e}");
                    self.stats.decode_errors += 1;
                    self.pcm.clear();
                    let n = (u64::from(samples) * pcm_rate / clock) as usize;
                    conceal_faded(
                        a.decoder.as_mut(),
                        n.max(1),
                        &mut self.conceal_run,
                        &mut self.pcm,
                    );
                    self.concealed_ms += f64::from(samples) * 1000.0 / clock as f64;
                } else {
                    self.conceal_run = 0;
                }
            }
            JitterOutput::Missing {
                samples,
                next,
                reason,
            } => {
                let n = ((u64::from(samples) * pcm_rate / clock) as usize).max(1);
                let recovered = match (&next, reason) {
                    (Some(next), MissReason::Lost) => a.decoder.decode_fec(next, n, &mut self.pcm),
                    _ => false,
                };
                if recovered {
                    self.stats.fec_recovered += 1;
                    self.conceal_run = 0;
                } else if reason == MissReason::Silence {
                    // The sender paused (DTX): the decoder's comfort noise, not faded.
                    a.decoder.conceal(n, &mut self.pcm);
                } else {
                    conceal_faded(a.decoder.as_mut(), n, &mut self.conceal_run, &mut self.pcm);
                    self.concealed_ms += f64::from(samples) * 1000.0 / clock as f64;
                }
            }
        }
        // Quiet audio (below about -40 dBFS) is where the jitter buffer may drop or insert.
        let energy: f64 = self.pcm.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        let quiet = energy <= QUIET_RMS * QUIET_RMS * self.pcm.len() as f64;
        a.jitter.set_quiet(quiet);
        let before = self.ready.len();
        self.resampled.clear();
        a.resampler.process(&self.pcm, &mut self.resampled);
        self.ready.extend(self.resampled.iter().copied());
        // A resampler still filling its filter may produce nothing; the next round will.
        self.ready.len() > before || !self.pcm.is_empty()
    }

    /// Counters, jitter buffer levels and concealment totals.
    pub fn stats(&self) -> ReceiveChainStats {
        let mut s = self.stats.clone();
        let mut jitter = match &self.active {
            Some(a) => a.jitter.stats(),
            None => JitterStats::default(),
        };
        add_counters(&mut jitter, &self.jitter_carry);
        s.jitter = jitter;
        s.concealed_ms = self.concealed_ms as u64;
        if let Some(a) = &self.active {
            s.codec = Some(a.spec.name());
        }
        s
    }
}
