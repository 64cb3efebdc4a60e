//! Audio conference mixer: N participants, mix-minus, per-participant rates and queues.
//!
//! A [`Mixer`] sums one frame (20 ms by default) of every participant's audio per tick at its own
//! rate (48 kHz by default) and hands each participant the sum of everybody else (mix-minus: nobody
//! hears themselves). Participants plug in as a pair of device adapters for their call's media
//! session, so the session's jitter buffer, concealment and codecs do the per-leg transcoding:
//!
//! - [`MixerPlayback`] (a [`PlaybackDevice`]): what the participant's call *received*, written by the
//!   session; resampled from the participant's rate to the mixer's rate in the caller's thread.
//! - [`MixerCapture`] (a [`CaptureDevice`]): what the participant's call *sends*, read by the
//!   session; the participant's mix-minus, resampled to the participant's rate.
//!
//! Both directions go through bounded per-participant queues (overflow drops the oldest audio,
//! underrun plays silence; both counted), so a stalled or flooding leg never grows memory or
//! delays the others. Sums are 32-bit and each output goes through a limiter before it is
//! saturated to 16 bits, so loud rooms compress instead of wrapping around. Energy-based speaking
//! detection with a hangover feeds the roster ([`MixerEvent::Speaking`]), and clips (join/leave
//! tones from [`join_tone`]/[`leave_tone`], prompts) can be mixed into everyone's or one
//! participant's output.
//!
//! The tick runs on the mixer's own clock thread ([`Mixer::start`]) or is driven by hand
//! ([`Mixer::new`] + [`Mixer::tick`]) for offline mixing, tests and benchmarks.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::device::{CaptureDevice, DeviceError, PlaybackDevice};
use crate::resample::Resampler;
use crate::tone::SineGenerator;

/// Rates a participant or clip may use.
const MIN_RATE: u32 = 8_000;
/// Highest participant or mixer rate accepted.
const MAX_RATE: u32 = 48_000;

/// Mixer settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MixerConfig {
    /// The rate audio is summed at (8000–48000 Hz; participants at other rates are resampled).
    pub rate: u32,
    /// The tick: how much audio is mixed per step (10–60 ms).
    pub tick: Duration,
    /// Most participants in one mixer.
    pub max_participants: usize,
    /// Capacity of each participant's inbound and outbound queue (overflow drops the oldest audio).
    pub queue: Duration,
    /// Level (dBov of a frame's RMS) at or above which a participant counts as speaking.
    pub speaking_threshold_dbov: f32,
    /// How long a participant still counts as speaking after the level fell below the threshold.
    pub speaking_hangover: Duration,
    /// How many clips (tones, prompts) may play at once.
    pub max_clips: usize,
}

impl Default for MixerConfig {
    fn default() -> Self {
        MixerConfig {
            rate: 48_000,
            tick: Duration::from_millis(20),
            max_participants: 64,
            queue: Duration::from_millis(100),
            speaking_threshold_dbov: -42.0,
            speaking_hangover: Duration::from_millis(400),
            max_clips: 16,
        }
    }
}

/// Why the mixer refused something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MixerError {
    /// The configuration is out of range.
    #[error("invalid mixer configuration: {0}")]
    InvalidConfig(&'static str),
    /// A participant or clip rate outside 8000–48000 Hz.
    #[error("unsupported rate {0} Hz (8000-48000)")]
    UnsupportedRate(u32),
    /// The room is full.
    #[error("mixer full ({0} participants)")]
    Full(usize),
    /// No participant with that id.
    #[error("no participant {0}")]
    NoSuchParticipant(ParticipantId),
    /// Too many clips are playing.
    #[error("too many clips playing ({0})")]
    TooManyClips(usize),
    /// The clock thread could not be started.
    #[error("mixer clock thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Identifies a participant within one mixer (never reused by that mixer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantId(pub u64);

impl std::fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Identifies one clip played with [`Mixer::play_to`] or [`Mixer::play_all`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClipId(pub u64);

/// Something that happened in the mixer, for the room logic and the roster.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MixerEvent {
    /// A participant started or stopped speaking.
    Speaking {
        /// Who.
        id: ParticipantId,
        /// Whether they speak now.
        speaking: bool,
    },
    /// A clip finished playing (or its participant left).
    ClipDone(ClipId),
}

/// A participant's state as the roster shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantInfo {
    /// The participant.
    pub id: ParticipantId,
    /// The participant's device rate.
    pub rate: u32,
    /// Whether their audio is left out of the mix.
    pub muted: bool,
    /// Whether they are speaking (level above the threshold, with hangover).
    pub speaking: bool,
    /// The level of their last frame in dBov (-96 for silence).
    pub level_dbov: f32,
    /// Queue counters.
    pub stats: ParticipantStats,
}

/// Per-participant queue counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ParticipantStats {
    /// Ticks at which no full frame of the participant's audio had arrived (mixed as silence).
    pub input_underruns: u64,
    /// Samples of the participant's audio dropped because the inbound queue was full.
    pub input_dropped: u64,
    /// Reads of the participant's mix that found too little audio (answered with silence).
    pub output_underruns: u64,
    /// Samples of the participant's mix dropped because nobody read them in time.
    pub output_dropped: u64,
}

/// Whole-mixer counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MixerStats {
    /// Ticks mixed.
    pub ticks: u64,
    /// Ticks the clock thread started more than one tick late.
    pub late_ticks: u64,
    /// Longest time one tick took, in microseconds.
    pub max_tick_us: u64,
    /// Total time spent mixing, in microseconds.
    pub busy_us: u64,
    /// Output frames in which the limiter reduced the gain.
    pub limited_frames: u64,
}

/// The mix-minus mixer (see the module documentation).
pub struct Mixer {
    shared: Arc<Shared>,
    clock: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Mixer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mixer")
            .field("rate", &self.shared.config.rate)
            .field("frame", &self.shared.frame)
            .field("running", &self.clock.is_some())
            .finish()
    }
}

struct Shared {
    config: MixerConfig,
    /// Samples per tick at the mixer rate.
    frame: usize,
    /// Queue capacity in samples at the mixer rate.
    queue_cap: usize,
    hangover_ticks: u32,
    threshold_rms: f32,
    state: Mutex<MixState>,
    next_id: AtomicU64,
    stop: AtomicBool,
    events: broadcast::Sender<MixerEvent>,
    stats: Mutex<MixerStats>,
}

struct MixState {
    slots: Vec<Arc<Slot>>,
    clips: Vec<Clip>,
    /// Scratch: each participant's input frame this tick (widened).
    inputs: Vec<Vec<i32>>,
    /// Scratch: the sum of every unmuted input.
    total: Vec<i32>,
    /// Scratch: one output frame.
    out: Vec<i32>,
    /// Scratch: clip audio for everybody.
    common: Vec<i32>,
    /// Scratch: one clip frame.
    clip_frame: Vec<i16>,
}

/// One participant's shared state: the two queues and the flags the tick and adapters share.
struct Slot {
    id: ParticipantId,
    rate: u32,
    muted: AtomicBool,
    input: Mutex<VecDeque<i16>>,
    output: Mutex<VecDeque<i16>>,
    meter: Mutex<Meter>,
    input_underruns: AtomicU64,
    input_dropped: AtomicU64,
    output_underruns: AtomicU64,
    output_dropped: AtomicU64,
    /// Output limiter gain (only touched by the tick).
    gain: Mutex<f32>,
}

#[derive(Debug, Clone, Copy)]
struct Meter {
    level_dbov: f32,
    speaking: bool,
    quiet_ticks: u32,
}

struct Clip {
    id: ClipId,
    /// `None`: everybody (except `except`); `Some`: only that participant.
    target: Option<ParticipantId>,
    except: Option<ParticipantId>,
    feeder: Feeder,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn check_rate(rate: u32) -> Result<(), MixerError> {
    if (MIN_RATE..=MAX_RATE).contains(&rate) {
        Ok(())
    } else {
        Err(MixerError::UnsupportedRate(rate))
    }
}

/// Samples of `dur` at `rate`.
fn samples_for(dur: Duration, rate: u32) -> usize {
    (dur.as_micros() * u128::from(rate) / 1_000_000) as usize
}

/// The RMS of a frame in dBov (full-scale square wave = 0 dBov; silence = -96).
fn level_dbov(rms: f32) -> f32 {
    if rms < 1.0 {
        -96.0
    } else {
        (20.0 * (rms / 32768.0).log10()).max(-96.0)
    }
}

/// Pushes `samples` into a bounded queue, dropping the oldest audio beyond `cap`; returns how many
/// samples were dropped.
fn push_bounded(q: &mut VecDeque<i16>, samples: &[i16], cap: usize) -> u64 {
    q.extend(samples.iter().copied());
    let excess = q.len().saturating_sub(cap);
    if excess > 0 {
        q.drain(..excess);
    }
    excess as u64
}

impl Mixer {
    /// A mixer without a clock: call [`Mixer::tick`] once per tick of audio.
    pub fn new(config: MixerConfig) -> Result<Mixer, MixerError> {
        check_rate(config.rate)?;
        if config.tick < Duration::from_millis(10) || config.tick > Duration::from_millis(60) {
            return Err(MixerError::InvalidConfig("tick must be 10-60 ms"));
        }
        if config.max_participants == 0 {
            return Err(MixerError::InvalidConfig(
                "max_participants must be at least 1",
            ));
        }
        if config.queue < config.tick * 2 || config.queue > Duration::from_secs(2) {
            return Err(MixerError::InvalidConfig(
                "queue must hold two ticks and at most 2 s",
            ));
        }
        if !config.speaking_threshold_dbov.is_finite() {
            return Err(MixerError::InvalidConfig(
                "speaking_threshold_dbov must be finite",
            ));
        }
        let frame = samples_for(config.tick, config.rate);
        let queue_cap = samples_for(config.queue, config.rate);
        let tick_us = config.tick.as_micros().max(1);
        let hangover_ticks = (config.speaking_hangover.as_micros() / tick_us) as u32;
        let threshold_rms =
            32768.0 * 10f32.powf(config.speaking_threshold_dbov.clamp(-96.0, 0.0) / 20.0);
        let (events, _) = broadcast::channel(256);
        Ok(Mixer {
            shared: Arc::new(Shared {
                frame,
                queue_cap,
                hangover_ticks,
                threshold_rms,
                state: Mutex::new(MixState {
                    slots: Vec::new(),
                    clips: Vec::new(),
                    inputs: Vec::new(),
                    total: vec![0; frame],
                    out: vec![0; frame],
                    common: vec![0; frame],
                    clip_frame: vec![0; frame],
                }),
                next_id: AtomicU64::new(1),
                stop: AtomicBool::new(false),
                events,
                stats: Mutex::new(MixerStats::default()),
                config,
            }),
            clock: None,
        })
    }

    /// A mixer ticking on its own clock thread until [`Mixer::stop`] or drop.
    pub fn start(config: MixerConfig) -> Result<Mixer, MixerError> {
        let mut mixer = Mixer::new(config)?;
        let shared = Arc::clone(&mixer.shared);
        let handle = std::thread::Builder::new()
            .name("tandem-mixer".into())
            .spawn(move || clock_loop(&shared))?;
        mixer.clock = Some(handle);
        Ok(mixer)
    }

    /// The mixer's configuration.
    pub fn config(&self) -> &MixerConfig {
        &self.shared.config
    }

    /// Samples per tick at the mixer rate.
    pub fn frame_len(&self) -> usize {
        self.shared.frame
    }

    /// Adds a participant whose devices run at `rate` Hz; returns its id, the capture adapter
    /// (their mix-minus, for the call's capture side) and the playback adapter (what the call
    /// received, for its playback side).
    pub fn join(
        &self,
        rate: u32,
    ) -> Result<(ParticipantId, MixerCapture, MixerPlayback), MixerError> {
        check_rate(rate)?;
        let mut st = lock(&self.shared.state);
        if st.slots.len() >= self.shared.config.max_participants {
            return Err(MixerError::Full(self.shared.config.max_participants));
        }
        let id = ParticipantId(self.shared.next_id.fetch_add(1, Ordering::Relaxed));
        let slot = Arc::new(Slot {
            id,
            rate,
            muted: AtomicBool::new(false),
            input: Mutex::new(VecDeque::with_capacity(self.shared.queue_cap)),
            output: Mutex::new(VecDeque::with_capacity(self.shared.queue_cap)),
            meter: Mutex::new(Meter {
                level_dbov: -96.0,
                speaking: false,
                quiet_ticks: 0,
            }),
            input_underruns: AtomicU64::new(0),
            input_dropped: AtomicU64::new(0),
            output_underruns: AtomicU64::new(0),
            output_dropped: AtomicU64::new(0),
            gain: Mutex::new(1.0),
        });
        st.slots.push(Arc::clone(&slot));
        st.inputs.push(vec![0; self.shared.frame]);
        drop(st);
        Ok((id, self.capture_for(&slot), self.playback_for(&slot)))
    }

    fn capture_for(&self, slot: &Arc<Slot>) -> MixerCapture {
        MixerCapture {
            slot: Arc::clone(slot),
            resampler: Resampler::new(self.shared.config.rate, slot.rate),
            chunk: self.shared.frame,
            pending: VecDeque::new(),
            taken: Vec::with_capacity(self.shared.frame),
            scratch: Vec::new(),
        }
    }

    fn playback_for(&self, slot: &Arc<Slot>) -> MixerPlayback {
        MixerPlayback {
            slot: Arc::clone(slot),
            resampler: Resampler::new(slot.rate, self.shared.config.rate),
            queue_cap: self.shared.queue_cap,
            scratch: Vec::new(),
        }
    }

    /// New adapters for a participant whose old ones were dropped (e.g. after a device switch);
    /// the queues carry on.
    pub fn reattach(&self, id: ParticipantId) -> Result<(MixerCapture, MixerPlayback), MixerError> {
        let slot = self.slot(id)?;
        Ok((self.capture_for(&slot), self.playback_for(&slot)))
    }

    fn slot(&self, id: ParticipantId) -> Result<Arc<Slot>, MixerError> {
        lock(&self.shared.state)
            .slots
            .iter()
            .find(|s| s.id == id)
            .cloned()
            .ok_or(MixerError::NoSuchParticipant(id))
    }

    /// Removes a participant (its clips end too); false when it was not in the mixer.
    pub fn leave(&self, id: ParticipantId) -> bool {
        let mut st = lock(&self.shared.state);
        let Some(pos) = st.slots.iter().position(|s| s.id == id) else {
            return false;
        };
        st.slots.remove(pos);
        let n = st.slots.len();
        st.inputs.truncate(n);
        let mut done = Vec::new();
        st.clips.retain(|c| {
            let keep = c.target != Some(id);
            if !keep {
                done.push(c.id);
            }
            keep
        });
        drop(st);
        for clip in done {
            let _ = self.shared.events.send(MixerEvent::ClipDone(clip));
        }
        true
    }

    /// Leaves a participant's audio out of (or back in) the mix; they still hear the others.
    pub fn set_muted(&self, id: ParticipantId, muted: bool) -> Result<(), MixerError> {
        self.slot(id)?.muted.store(muted, Ordering::Relaxed);
        Ok(())
    }

    /// Whether a participant is muted.
    pub fn is_muted(&self, id: ParticipantId) -> Result<bool, MixerError> {
        Ok(self.slot(id)?.muted.load(Ordering::Relaxed))
    }

    /// Mutes (or unmutes) everybody except `except`.
    pub fn set_all_muted(&self, muted: bool, except: Option<ParticipantId>) {
        for s in &lock(&self.shared.state).slots {
            if Some(s.id) != except {
                s.muted.store(muted, Ordering::Relaxed);
            }
        }
    }

    /// The participants in join order.
    pub fn participants(&self) -> Vec<ParticipantInfo> {
        lock(&self.shared.state)
            .slots
            .iter()
            .map(|s| {
                let m = *lock(&s.meter);
                ParticipantInfo {
                    id: s.id,
                    rate: s.rate,
                    muted: s.muted.load(Ordering::Relaxed),
                    speaking: m.speaking,
                    level_dbov: m.level_dbov,
                    stats: ParticipantStats {
                        input_underruns: s.input_underruns.load(Ordering::Relaxed),
                        input_dropped: s.input_dropped.load(Ordering::Relaxed),
                        output_underruns: s.output_underruns.load(Ordering::Relaxed),
                        output_dropped: s.output_dropped.load(Ordering::Relaxed),
                    },
                }
            })
            .collect()
    }

    /// How many participants are in the mixer.
    pub fn len(&self) -> usize {
        lock(&self.shared.state).slots.len()
    }

    /// True when nobody is in the mixer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Mixer events (speaking changes, finished clips); a slow receiver loses the oldest ones.
    pub fn events(&self) -> broadcast::Receiver<MixerEvent> {
        self.shared.events.subscribe()
    }

    /// The mixer's counters.
    pub fn stats(&self) -> MixerStats {
        *lock(&self.shared.stats)
    }

    /// Plays `source` (any rate 8–48 kHz) into one participant's output only, until it ends.
    pub fn play_to(
        &self,
        id: ParticipantId,
        source: Box<dyn CaptureDevice>,
    ) -> Result<ClipId, MixerError> {
        self.slot(id)?;
        self.add_clip(Some(id), None, source)
    }

    /// Plays `source` into everybody's output (except `except`'s), until it ends.
    pub fn play_all(
        &self,
        source: Box<dyn CaptureDevice>,
        except: Option<ParticipantId>,
    ) -> Result<ClipId, MixerError> {
        self.add_clip(None, except, source)
    }

    fn add_clip(
        &self,
        target: Option<ParticipantId>,
        except: Option<ParticipantId>,
        source: Box<dyn CaptureDevice>,
    ) -> Result<ClipId, MixerError> {
        check_rate(source.rate())?;
        let mut st = lock(&self.shared.state);
        if st.clips.len() >= self.shared.config.max_clips {
            return Err(MixerError::TooManyClips(st.clips.len()));
        }
        let id = ClipId(self.shared.next_id.fetch_add(1, Ordering::Relaxed));
        st.clips.push(Clip {
            id,
            target,
            except,
            feeder: Feeder::new(source, self.shared.config.rate, self.shared.config.tick),
        });
        Ok(id)
    }

    /// Stops every clip playing to `id` (or every clip for everybody with `None`).
    pub fn stop_clips(&self, target: Option<ParticipantId>) {
        let mut st = lock(&self.shared.state);
        let mut done = Vec::new();
        st.clips.retain(|c| {
            let keep = c.target != target;
            if !keep {
                done.push(c.id);
            }
            keep
        });
        drop(st);
        for clip in done {
            let _ = self.shared.events.send(MixerEvent::ClipDone(clip));
        }
    }

    /// Mixes one tick: takes a frame from every participant's inbound queue, puts every
    /// participant's mix-minus into its outbound queue, updates levels and speaking flags.
    pub fn tick(&self) {
        let started = Instant::now();
        let limited = self.shared.mix_once();
        let us = started.elapsed().as_micros() as u64;
        let mut stats = lock(&self.shared.stats);
        stats.ticks += 1;
        stats.busy_us += us;
        stats.max_tick_us = stats.max_tick_us.max(us);
        stats.limited_frames += limited;
    }

    /// Stops the clock thread (if any); the mixer can still be ticked by hand.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.clock.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Mixer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn clock_loop(shared: &Arc<Shared>) {
    let tick = shared.config.tick;
    let mut deadline = Instant::now() + tick;
    while !shared.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now < deadline {
            std::thread::sleep(deadline - now);
        }
        let started = Instant::now();
        let lateness = started.saturating_duration_since(deadline);
        let limited = shared.mix_once();
        let us = started.elapsed().as_micros() as u64;
        {
            let mut stats = lock(&shared.stats);
            stats.ticks += 1;
            stats.busy_us += us;
            stats.max_tick_us = stats.max_tick_us.max(us);
            stats.limited_frames += limited;
            if lateness > tick {
                stats.late_ticks += 1;
            }
        }
        deadline += tick;
        // After a long stall (suspended machine), start again from now instead of bursting.
        if Instant::now().saturating_duration_since(deadline) > tick * 5 {
            deadline = Instant::now() + tick;
        }
    }
}

impl Shared {
    /// One mix step; returns how many output frames the limiter touched.
    fn mix_once(&self) -> u64 {
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        let frame = self.frame;
        let mut events = Vec::new();
        st.total.fill(0);
        // 1. Inputs: one frame from each queue (silence on underrun), meters, the total.
        for (slot, input) in st.slots.iter().zip(st.inputs.iter_mut()) {
            let got = {
                let mut q = lock(&slot.input);
                if q.len() >= frame {
                    for (d, s) in input.iter_mut().zip(q.drain(..frame)) {
                        *d = i32::from(s);
                    }
                    true
                } else {
                    false
                }
            };
            if !got {
                input.fill(0);
                slot.input_underruns.fetch_add(1, Ordering::Relaxed);
            }
            let muted = slot.muted.load(Ordering::Relaxed);
            let energy: f64 = input.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
            let rms = (energy / frame.max(1) as f64).sqrt() as f32;
            {
                let mut m = lock(&slot.meter);
                m.level_dbov = level_dbov(rms);
                let loud = !muted && rms >= self.threshold_rms;
                let was = m.speaking;
                if loud {
                    m.quiet_ticks = 0;
                    m.speaking = true;
                } else if m.speaking {
                    m.quiet_ticks += 1;
                    if m.quiet_ticks > self.hangover_ticks {
                        m.speaking = false;
                    }
                }
                if m.speaking != was {
                    events.push(MixerEvent::Speaking {
                        id: slot.id,
                        speaking: m.speaking,
                    });
                }
            }
            if muted {
                input.fill(0);
            } else {
                for (t, s) in st.total.iter_mut().zip(input.iter()) {
                    *t += *s;
                }
            }
        }
        // 2. Clips: the common ones join the total-for-listeners; private ones are added per slot.
        st.common.fill(0);
        let mut has_common_except = false;
        let mut finished = Vec::new();
        for clip in st.clips.iter_mut() {
            let alive = clip.feeder.next(&mut st.clip_frame[..frame]);
            if clip.target.is_none() {
                if clip.except.is_none() {
                    for (c, s) in st.common.iter_mut().zip(st.clip_frame.iter()) {
                        *c += i32::from(*s);
                    }
                } else {
                    has_common_except = true;
                }
            }
            if !alive {
                finished.push(clip.id);
            }
        }
        // 3. Outputs: total minus own input, plus clips, limited, into each outbound queue.
        let mut limited = 0;
        for (slot, input) in st.slots.iter().zip(st.inputs.iter()) {
            for ((o, t), i) in st.out.iter_mut().zip(st.total.iter()).zip(input.iter()) {
                *o = *t - *i;
            }
            for (o, c) in st.out.iter_mut().zip(st.common.iter()) {
                *o += *c;
            }
            if has_common_except || st.clips.iter().any(|c| c.target == Some(slot.id)) {
                for clip in &st.clips {
                    let hears = match clip.target {
                        Some(t) => t == slot.id,
                        None => clip.except.is_some() && clip.except != Some(slot.id),
                    };
                    if hears {
                        for (o, s) in st.out.iter_mut().zip(clip.feeder.last.iter()) {
                            *o += i32::from(*s);
                        }
                    }
                }
            }
            let mut gain = lock(&slot.gain);
            if limit(&mut st.out, &mut gain) {
                limited += 1;
            }
            drop(gain);
            let mut q = lock(&slot.output);
            let mut dropped = 0u64;
            q.extend(st.out.iter().map(|&s| s.clamp(-32768, 32767) as i16));
            let excess = q.len().saturating_sub(self.queue_cap);
            if excess > 0 {
                q.drain(..excess);
                dropped += excess as u64;
            }
            drop(q);
            if dropped > 0 {
                slot.output_dropped.fetch_add(dropped, Ordering::Relaxed);
            }
        }
        if !finished.is_empty() {
            st.clips.retain(|c| !finished.contains(&c.id));
        }
        drop(guard);
        for ev in events {
            let _ = self.events.send(ev);
        }
        for clip in finished {
            let _ = self.events.send(MixerEvent::ClipDone(clip));
        }
        limited
    }
}

/// The level the limiter keeps peaks under (about -0.3 dBFS).
const LIMIT_CEILING: f32 = 31_500.0;
/// Per-tick release toward unity gain.
const LIMIT_RELEASE: f32 = 0.15;

/// Applies a peak limiter with instant attack (ramped across the frame so there is no click) and
/// slow release; returns whether it reduced the gain below unity anywhere in this frame.
fn limit(frame: &mut [i32], gain: &mut f32) -> bool {
    let peak = frame.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0) as f32;
    let needed = if peak > LIMIT_CEILING {
        LIMIT_CEILING / peak
    } else {
        1.0
    };
    let start = *gain;
    let target = if needed < start {
        needed
    } else {
        (start + (1.0 - start) * LIMIT_RELEASE).min(needed).min(1.0)
    };
    *gain = target;
    if start >= 1.0 && target >= 1.0 {
        return false;
    }
    let n = frame.len().max(1) as f32;
    for (i, s) in frame.iter_mut().enumerate() {
        // Reach the lower gain at the frame's start when attacking (peaks may come early), ramp
        // smoothly when releasing.
        let g = if target < start {
            target
        } else {
            start + (target - start) * (i as f32 / n)
        };
        *s = (*s as f32 * g).round() as i32;
    }
    true
}

/// Pulls tick-sized frames at the mixer rate out of a clip source at any rate.
struct Feeder {
    source: Box<dyn CaptureDevice>,
    resampler: Resampler,
    /// Source samples per read (one tick at the source's rate).
    chunk: usize,
    read_buf: Vec<i16>,
    resampled: Vec<i16>,
    pending: VecDeque<i16>,
    ended: bool,
    /// The frame produced by the last [`Feeder::next`] (for per-listener mixing).
    last: Vec<i16>,
}

impl Feeder {
    fn new(source: Box<dyn CaptureDevice>, mixer_rate: u32, tick: Duration) -> Self {
        let rate = source.rate();
        Feeder {
            resampler: Resampler::new(rate, mixer_rate),
            chunk: samples_for(tick, rate).max(1),
            read_buf: Vec::new(),
            resampled: Vec::new(),
            pending: VecDeque::new(),
            ended: false,
            last: Vec::new(),
            source,
        }
    }

    /// Fills `out` with the next frame; false once the source ended and everything was played.
    fn next(&mut self, out: &mut [i16]) -> bool {
        while self.pending.len() < out.len() && !self.ended {
            self.read_buf.resize(self.chunk, 0);
            match self.source.read_frame(&mut self.read_buf) {
                Ok(true) => {}
                Ok(false) | Err(_) => {
                    self.ended = true;
                    // Flush the resampler's tail with silence so the clip's end is heard.
                    self.read_buf.fill(0);
                }
            }
            self.resampled.clear();
            self.resampler.process(&self.read_buf, &mut self.resampled);
            self.pending.extend(self.resampled.iter().copied());
        }
        let n = self.pending.len().min(out.len());
        for (o, s) in out.iter_mut().zip(self.pending.drain(..n)) {
            *o = s;
        }
        out[n..].fill(0);
        self.last.clear();
        self.last.extend_from_slice(out);
        !(self.ended && self.pending.is_empty())
    }
}

/// A participant's mix-minus as a capture device for their call (see the module documentation).
pub struct MixerCapture {
    slot: Arc<Slot>,
    resampler: Resampler,
    /// Mixer-rate samples taken from the queue per resampling step.
    chunk: usize,
    /// Resampled audio at the participant's rate not yet read.
    pending: VecDeque<i16>,
    /// Mixer-rate samples just taken from the queue.
    taken: Vec<i16>,
    scratch: Vec<i16>,
}

impl std::fmt::Debug for MixerCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MixerCapture")
            .field("participant", &self.slot.id)
            .field("rate", &self.slot.rate)
            .finish()
    }
}

impl MixerCapture {
    /// The participant this adapter belongs to.
    pub fn participant(&self) -> ParticipantId {
        self.slot.id
    }
}

impl CaptureDevice for MixerCapture {
    fn rate(&self) -> u32 {
        self.slot.rate
    }

    fn read_frame(&mut self, out: &mut [i16]) -> Result<bool, DeviceError> {
        while self.pending.len() < out.len() {
            {
                let mut q = lock(&self.slot.output);
                if q.is_empty() {
                    break;
                }
                let n = q.len().min(self.chunk);
                self.taken.clear();
                self.taken.extend(q.drain(..n));
            }
            self.scratch.clear();
            self.resampler.process(&self.taken, &mut self.scratch);
            self.pending.extend(self.scratch.iter().copied());
        }
        if self.pending.len() >= out.len() {
            let n = out.len();
            for (o, s) in out.iter_mut().zip(self.pending.drain(..n)) {
                *o = s;
            }
        } else {
            // Not enough mixed audio yet: silence now, and what did arrive plays next time (so
            // the queue keeps one tick of slack against the two clocks' phase).
            out.fill(0);
            self.slot.output_underruns.fetch_add(1, Ordering::Relaxed);
        }
        Ok(true)
    }
}

/// What a participant's call received, as a playback device feeding the mixer.
pub struct MixerPlayback {
    slot: Arc<Slot>,
    resampler: Resampler,
    queue_cap: usize,
    scratch: Vec<i16>,
}

impl std::fmt::Debug for MixerPlayback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MixerPlayback")
            .field("participant", &self.slot.id)
            .field("rate", &self.slot.rate)
            .finish()
    }
}

impl MixerPlayback {
    /// The participant this adapter belongs to.
    pub fn participant(&self) -> ParticipantId {
        self.slot.id
    }
}

impl PlaybackDevice for MixerPlayback {
    fn rate(&self) -> u32 {
        self.slot.rate
    }

    fn write_frame(&mut self, pcm: &[i16]) -> Result<(), DeviceError> {
        self.scratch.clear();
        self.resampler.process(pcm, &mut self.scratch);
        let dropped = push_bounded(&mut lock(&self.slot.input), &self.scratch, self.queue_cap);
        if dropped > 0 {
            self.slot
                .input_dropped
                .fetch_add(dropped, Ordering::Relaxed);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), DeviceError> {
        // The participant leaves through `Mixer::leave`; a finished device just stops feeding.
        Ok(())
    }
}

/// A clip of samples in memory at some rate, as a finite capture device (for tones and prompts).
#[derive(Debug, Clone)]
pub struct Clip16 {
    rate: u32,
    samples: Arc<[i16]>,
    pos: usize,
}

impl Clip16 {
    /// A clip playing `samples` at `rate` once.
    pub fn new(rate: u32, samples: impl Into<Arc<[i16]>>) -> Self {
        Clip16 {
            rate,
            samples: samples.into(),
            pos: 0,
        }
    }
}

impl CaptureDevice for Clip16 {
    fn rate(&self) -> u32 {
        self.rate
    }

    fn read_frame(&mut self, out: &mut [i16]) -> Result<bool, DeviceError> {
        let rest = self.samples.get(self.pos..).unwrap_or(&[]);
        if rest.is_empty() {
            out.fill(0);
            return Ok(false);
        }
        let n = rest.len().min(out.len());
        out[..n].copy_from_slice(&rest[..n]);
        out[n..].fill(0);
        self.pos += n;
        Ok(true)
    }
}

/// Two short notes with a gap, at a quarter of full scale, with 5 ms fades against clicks.
fn two_notes(rate: u32, first: f32, second: f32) -> Vec<i16> {
    let note = samples_for(Duration::from_millis(120), rate);
    let gap = samples_for(Duration::from_millis(40), rate);
    let fade = samples_for(Duration::from_millis(5), rate).max(1);
    let mut out = Vec::with_capacity(2 * note + gap);
    for (i, freq) in [first, second].into_iter().enumerate() {
        if i == 1 {
            out.extend(std::iter::repeat_n(0, gap));
        }
        let mut buf = vec![0i16; note];
        SineGenerator::new(freq, rate, 0.25).fill(&mut buf);
        for k in 0..fade.min(note / 2) {
            let g = k as f32 / fade as f32;
            buf[k] = (f32::from(buf[k]) * g) as i16;
            let j = note - 1 - k;
            buf[j] = (f32::from(buf[j]) * g) as i16;
        }
        out.extend_from_slice(&buf);
    }
    out
}

/// The join tone at `rate`: a rising pair of notes (600 then 900 Hz), 280 ms.
pub fn join_tone(rate: u32) -> Clip16 {
    Clip16::new(rate, two_notes(rate, 600.0, 900.0))
}

/// The leave tone at `rate`: a falling pair of notes (900 then 600 Hz), 280 ms.
pub fn leave_tone(rate: u32) -> Clip16 {
    Clip16::new(rate, two_notes(rate, 900.0, 600.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tone::{analyze, rms};

    fn mixer() -> Mixer {
        Mixer::new(MixerConfig::default()).unwrap()
    }

    /// Feeds `n` ticks of a tone per participant (freq 0 = silence), mixing each tick and
    /// collecting what each participant's capture adapter gives back.
    fn run(
        m: &Mixer,
        parts: &mut [(MixerCapture, MixerPlayback, f32)],
        ticks: usize,
    ) -> Vec<Vec<i16>> {
        let mut gens: Vec<SineGenerator> = parts
            .iter()
            .map(|(_, p, f)| SineGenerator::new(*f, p.rate(), 0.3))
            .collect();
        let mut outs = vec![Vec::new(); parts.len()];
        for _ in 0..ticks {
            for ((_, p, f), g) in parts.iter_mut().zip(gens.iter_mut()) {
                let mut buf = vec![0i16; p.rate() as usize / 50];
                if *f > 0.0 {
                    g.fill(&mut buf);
                }
                p.write_frame(&buf).unwrap();
            }
            m.tick();
            for ((c, _, _), out) in parts.iter_mut().zip(outs.iter_mut()) {
                let mut buf = vec![0i16; c.rate() as usize / 50];
                c.read_frame(&mut buf).unwrap();
                out.extend_from_slice(&buf);
            }
        }
        outs
    }

    /// The strongest bins of a spectrum-ish check: power of `freq` by correlation.
    fn tone_power(pcm: &[i16], rate: u32, freq: f32) -> f64 {
        let w = 2.0 * std::f64::consts::PI * f64::from(freq) / f64::from(rate);
        let (mut re, mut im) = (0.0, 0.0);
        for (i, &s) in pcm.iter().enumerate() {
            re += f64::from(s) * (w * i as f64).cos();
            im += f64::from(s) * (w * i as f64).sin();
        }
        (re * re + im * im).sqrt() / pcm.len().max(1) as f64
    }

    #[test]
    fn mix_minus_at_mixed_rates() {
        let m = mixer();
        let mut parts = Vec::new();
        for (rate, f) in [(8000, 440.0), (16000, 1000.0), (48000, 1700.0)] {
            let (_, c, p) = m.join(rate).unwrap();
            parts.push((c, p, f));
        }
        let outs = run(&m, &mut parts, 100);
        let freqs = [440.0, 1000.0, 1700.0];
        for (i, out) in outs.iter().enumerate() {
            let rate = parts[i].0.rate();
            let tail = &out[out.len() / 2..];
            let own = tone_power(tail, rate, freqs[i]);
            for (j, f) in freqs.iter().enumerate() {
                let p = tone_power(tail, rate, *f);
                if i == j {
                    continue;
                }
                assert!(p > 1000.0, "participant {i} hears {f} Hz at {p}");
                assert!(
                    own * 100.0 < p,
                    "participant {i} hears itself: {own} vs {p}"
                );
            }
        }
        for info in m.participants() {
            assert!(info.speaking, "{info:?}");
            assert!(info.level_dbov > -20.0, "{info:?}");
        }
    }

    #[test]
    fn two_participants_hear_each_other_exactly_at_the_mixer_rate() {
        let m = mixer();
        let (_, mut ca, mut pa) = m.join(48000).unwrap();
        let (_, mut cb, mut pb) = m.join(48000).unwrap();
        let frame: Vec<i16> = (0..960).map(|i| (i % 100) as i16 * 10).collect();
        pa.write_frame(&frame).unwrap();
        pb.write_frame(&[0; 960]).unwrap();
        m.tick();
        let mut out = vec![0i16; 960];
        cb.read_frame(&mut out).unwrap();
        assert_eq!(out, frame);
        ca.read_frame(&mut out).unwrap();
        assert!(out.iter().all(|&s| s == 0));
    }

    #[test]
    fn loud_sums_are_limited_not_wrapped() {
        let m = mixer();
        let mut parts = Vec::new();
        for _ in 0..5 {
            let (_, c, p) = m.join(48000).unwrap();
            parts.push((c, p));
        }
        let (_, mut listener, mut lp) = m.join(48000).unwrap();
        for _ in 0..20 {
            for (_, p) in parts.iter_mut() {
                p.write_frame(&[30000; 960]).unwrap();
            }
            lp.write_frame(&[0; 960]).unwrap();
            m.tick();
            for (c, _) in parts.iter_mut() {
                let mut buf = [0i16; 960];
                c.read_frame(&mut buf).unwrap();
            }
            let mut out = [0i16; 960];
            listener.read_frame(&mut out).unwrap();
            assert!(out.iter().all(|&s| s > 0), "wrapped around");
            assert!(out.iter().all(|&s| f32::from(s) <= LIMIT_CEILING + 1.0));
        }
        assert!(m.stats().limited_frames > 0);
    }

    #[test]
    fn muted_participant_is_not_heard_but_hears() {
        let m = mixer();
        let (a, ca, pa) = m.join(16000).unwrap();
        let (_, cb, pb) = m.join(16000).unwrap();
        m.set_muted(a, true).unwrap();
        let mut parts = vec![(ca, pa, 440.0), (cb, pb, 1000.0)];
        let outs = run(&m, &mut parts, 30);
        assert!(rms(&outs[1][8000..]) < 1.0, "muted audio leaked");
        assert!(tone_power(&outs[0][8000..], 16000, 1000.0) > 1000.0);
        let info = m.participants();
        assert!(info[0].muted && !info[0].speaking);
        m.set_muted(a, false).unwrap();
        assert!(!m.is_muted(a).unwrap());
        m.set_all_muted(true, Some(a));
        assert!(!m.is_muted(a).unwrap());
        assert!(m.participants()[1].muted);
    }

    #[test]
    fn speaking_detection_with_hangover_and_events() {
        let m = mixer();
        let mut ev = m.events();
        let (a, ca, pa) = m.join(8000).unwrap();
        let mut parts = vec![(ca, pa, 440.0)];
        run(&m, &mut parts, 3);
        assert_eq!(
            ev.try_recv().unwrap(),
            MixerEvent::Speaking {
                id: a,
                speaking: true
            }
        );
        parts[0].2 = 0.0;
        run(&m, &mut parts, 10);
        assert!(m.participants()[0].speaking, "hangover");
        run(&m, &mut parts, 20);
        assert!(!m.participants()[0].speaking);
        assert_eq!(
            ev.try_recv().unwrap(),
            MixerEvent::Speaking {
                id: a,
                speaking: false
            }
        );
    }

    #[test]
    fn queues_are_bounded_and_underruns_counted() {
        let m = mixer();
        let (a, mut ca, mut pa) = m.join(48000).unwrap();
        // A flood of 2 s of input in one go keeps only the queue's capacity.
        for _ in 0..100 {
            pa.write_frame(&[1000; 960]).unwrap();
        }
        // Nobody reads the output for 50 ticks.
        for _ in 0..50 {
            m.tick();
        }
        let info = &m.participants()[0];
        assert_eq!(info.id, a);
        assert!(info.stats.input_dropped >= 96_000 - 4800, "{info:?}");
        assert!(info.stats.input_underruns >= 40, "{info:?}");
        assert!(info.stats.output_dropped > 0, "{info:?}");
        // Reading more than is queued gives silence once, counted.
        let mut buf = vec![0i16; 960];
        for _ in 0..10 {
            ca.read_frame(&mut buf).unwrap();
        }
        assert!(m.participants()[0].stats.output_underruns >= 5);
    }

    #[test]
    fn clips_play_to_one_or_all_and_report_done() {
        let m = mixer();
        let mut ev = m.events();
        let (a, ca, pa) = m.join(8000).unwrap();
        let (b, cb, pb) = m.join(48000).unwrap();
        let clip = m.play_to(b, Box::new(join_tone(16000))).unwrap();
        let mut parts = vec![(ca, pa, 0.0), (cb, pb, 0.0)];
        let outs = run(&m, &mut parts, 20);
        assert!(rms(&outs[0]) < 1.0, "a heard b's private clip");
        let an = analyze(&outs[1][..48000 * 12 / 100], 48000);
        assert!((an.dominant_hz - 600.0).abs() < 20.0, "{an:?}");
        let mut done = false;
        while let Ok(e) = ev.try_recv() {
            done |= e == MixerEvent::ClipDone(clip);
        }
        assert!(done);
        // Everybody but a.
        m.play_all(Box::new(leave_tone(8000)), Some(a)).unwrap();
        let outs = run(&m, &mut parts, 20);
        assert!(rms(&outs[0]) < 1.0);
        assert!(rms(&outs[1]) > 1000.0);
        // Everybody.
        m.play_all(Box::new(leave_tone(8000)), None).unwrap();
        let outs = run(&m, &mut parts, 20);
        assert!(rms(&outs[0]) > 1000.0 && rms(&outs[1]) > 1000.0);
        assert!(
            m.play_to(ParticipantId(999), Box::new(join_tone(8000)))
                .is_err()
        );
        assert!(m.play_all(Box::new(join_tone(4000)), None).is_err());
    }

    #[test]
    fn join_leave_limits_and_reattach() {
        let cfg = MixerConfig {
            max_participants: 2,
            ..MixerConfig::default()
        };
        let m = Mixer::new(cfg).unwrap();
        let (a, _, _) = m.join(8000).unwrap();
        let (b, _, _) = m.join(8000).unwrap();
        assert!(matches!(m.join(8000), Err(MixerError::Full(2))));
        assert!(matches!(m.join(96000), Err(MixerError::UnsupportedRate(_))));
        assert!(m.leave(a));
        assert!(!m.leave(a));
        assert_eq!(m.len(), 1);
        let (c, p) = m.reattach(b).unwrap();
        assert_eq!((c.participant(), p.participant()), (b, b));
        assert!(m.reattach(a).is_err());
        let (c2, _, _) = m.join(8000).unwrap();
        assert!(c2 != a && c2 != b);
        assert!(
            Mixer::new(MixerConfig {
                tick: Duration::from_millis(5),
                ..MixerConfig::default()
            })
            .is_err()
        );
    }

    #[test]
    fn clock_thread_mixes_in_real_time() {
        let mut m = Mixer::start(MixerConfig::default()).unwrap();
        let (_, _c, mut p) = m.join(48000).unwrap();
        p.write_frame(&[0; 960]).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        m.stop();
        let s = m.stats();
        assert!(s.ticks >= 5 && s.ticks <= 30, "{s:?}");
    }
}
