//! Real audio devices through cpal. Each stream lives on a dedicated thread that owns it (cpal
//! streams are not `Send` everywhere); samples cross through a mutex-protected [`LevelRing`], so
//! [`CpalCapture`] and [`CpalPlayback`] are `Send` and never block the media clock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, Sample, SampleFormat, SizedSample, StreamConfig};

use super::ring::{LevelRing, RingStats};
use super::{CaptureDevice, DEFAULT_RATE, DeviceError, DeviceInfo, PlaybackDevice};

/// How long opening a stream may take before [`DeviceError::Timeout`].
const OPEN_TIMEOUT: Duration = Duration::from_secs(6);
/// Passed to cpal's stream builders.
const BUILD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long dropping a device waits for its stream thread to close the stream.
const CLOSE_WAIT: Duration = Duration::from_millis(300);
/// Hard cap on queued audio between the callback and the media clock.
const MAX_QUEUE: Duration = Duration::from_millis(400);
/// Jitter margin kept queued on top of one callback period (the ring's priming level).
const MARGIN: Duration = Duration::from_millis(10);
/// Standing queue tolerated above the priming level before drift trimming removes the excess.
const SLACK: Duration = Duration::from_millis(20);

/// The ring between a stream's callback and the media clock, for `rate` and `opts`.
fn new_ring(rate: u32, opts: &CpalOptions) -> LevelRing {
    let prime = opts.period + MARGIN;
    LevelRing::with_prime(rate.max(1), opts.max_queue, prime + SLACK, prime)
}

/// How a real device is opened.
///
/// A fixed callback period is always requested: without one PulseAudio picks its defaults (2 s
/// capture fragments and a 2 s playback buffer), far too much latency for a call. (TESTBED.md
/// warns that cpal once spun at 100 % CPU when such a stream was dropped; with cpal 0.18.2's
/// PulseAudio host, pausing before the drop, `tests/device_cpal.rs` checks that no CPU is used
/// after closing. If the backend refuses a fixed size, the stream falls back to its default.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpalOptions {
    /// Preferred sample rate; the device's own rate is used (and reported) when it cannot run at it.
    pub rate: u32,
    /// Callback period of the stream. PulseAudio keeps two periods queued for playback.
    pub period: Duration,
    /// Hard cap on audio queued between the device callback and the media clock.
    pub max_queue: Duration,
}

impl CpalOptions {
    /// Defaults for capture: 48 kHz, 20 ms periods, 400 ms cap.
    pub fn capture() -> Self {
        Self {
            rate: DEFAULT_RATE,
            period: Duration::from_millis(20),
            max_queue: MAX_QUEUE,
        }
    }

    /// Defaults for playback: 48 kHz, 40 ms periods (80 ms in PulseAudio; 20 ms periods underran
    /// on a loaded two-core machine), 400 ms cap.
    pub fn playback() -> Self {
        Self {
            rate: DEFAULT_RATE,
            period: Duration::from_millis(40),
            max_queue: MAX_QUEUE,
        }
    }
}

/// The fixed buffer size for one period at `rate`, clamped to what the device supports
/// (`Default` when it does not say).
fn period_frames(
    period: Duration,
    rate: u32,
    supported: &cpal::SupportedBufferSize,
) -> cpal::BufferSize {
    let want = (u64::from(rate) * period.as_millis() as u64 / 1000).max(1) as u32;
    match supported {
        cpal::SupportedBufferSize::Range { min, max } if min <= max => {
            cpal::BufferSize::Fixed(want.clamp(*min, *max))
        }
        _ => cpal::BufferSize::Default,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Input,
    Output,
}

impl Dir {
    fn label(self) -> &'static str {
        match self {
            Dir::Input => "input",
            Dir::Output => "output",
        }
    }
}

/// State shared between the owner, the stream thread and cpal's callbacks.
#[derive(Debug)]
struct Shared {
    ring: Mutex<LevelRing>,
    failed: Mutex<Option<String>>,
    has_failed: AtomicBool,
}

impl Shared {
    fn ring(&self) -> MutexGuard<'_, LevelRing> {
        // A panic in a callback cannot leave the ring inconsistent in a harmful way: keep going.
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fail(&self, msg: String) {
        let mut f = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        if f.is_none() {
            *f = Some(msg);
        }
        self.has_failed.store(true, Ordering::Release);
    }

    fn check(&self) -> Result<(), DeviceError> {
        if !self.has_failed.load(Ordering::Acquire) {
            return Ok(());
        }
        let f = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        Err(DeviceError::StreamFailed(
            f.clone().unwrap_or_else(|| "unknown error".to_owned()),
        ))
    }
}

/// What the stream thread reports once the stream plays.
#[derive(Debug, Clone)]
struct Opened {
    rate: u32,
    channels: u16,
    name: String,
    host: String,
}

/// The dedicated thread owning one cpal stream; dropping it stops and joins the thread.
#[derive(Debug)]
struct StreamThread {
    stop: Option<mpsc::Sender<()>>,
    join: Option<JoinHandle<()>>,
}

impl Drop for StreamThread {
    fn drop(&mut self) {
        // Closing the channel wakes the thread, which pauses and drops the stream and exits. Wait
        // for that briefly so a device reopened right after finds it closed; a thread still stuck
        // in the backend (a capture start waiting for its first data) is left to finish alone
        // rather than blocking the caller.
        self.stop.take();
        let Some(join) = self.join.take() else {
            return;
        };
        let deadline = std::time::Instant::now() + CLOSE_WAIT;
        while !join.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        if join.is_finished() {
            if join.join().is_err() {
                tracing::warn!("audio stream thread panicked");
            }
        } else {
            tracing::debug!("audio stream thread still busy in the backend; detached");
        }
    }
}

/// The host we use: PulseAudio when a server is reachable, else cpal's default host.
fn preferred_host() -> Result<cpal::Host, DeviceError> {
    // cpal has a PulseAudio host only on the desktop Unixes (not on Android).
    #[cfg(any(
        target_os = "linux",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "dragonfly"
    ))]
    if cpal::available_hosts().contains(&cpal::HostId::PulseAudio) {
        match cpal::host_from_id(cpal::HostId::PulseAudio) {
            Ok(h) => return Ok(h),
            Err(e) => {
                tracing::debug!(error = %e, "PulseAudio host unavailable, using the default host")
            }
        }
    }
    Ok(cpal::default_host())
}

fn device_id(d: &cpal::Device) -> Option<String> {
    d.id().ok().map(|id| id.id().to_owned())
}

fn device_description(d: &cpal::Device) -> Option<String> {
    d.description().ok().map(|desc| desc.name().to_owned())
}

fn find_device(
    host: &cpal::Host,
    dir: Dir,
    name: Option<&str>,
) -> Result<cpal::Device, DeviceError> {
    let Some(name) = name else {
        let d = match dir {
            Dir::Input => host.default_input_device(),
            Dir::Output => host.default_output_device(),
        };
        return d.ok_or(DeviceError::NoDefault(dir.label()));
    };
    let devices: Vec<cpal::Device> = match dir {
        Dir::Input => host.input_devices().map(|d| d.collect()),
        Dir::Output => host.output_devices().map(|d| d.collect()),
    }
    .map_err(|e| DeviceError::Backend(e.to_string()))?;
    let lower = name.to_lowercase();
    let by_id = devices
        .iter()
        .position(|d| device_id(d).as_deref() == Some(name));
    let by_desc = || {
        devices
            .iter()
            .position(|d| device_description(d).as_deref() == Some(name))
    };
    let by_part = || {
        devices.iter().position(|d| {
            device_id(d).is_some_and(|n| n.to_lowercase().contains(&lower))
                || device_description(d).is_some_and(|n| n.to_lowercase().contains(&lower))
        })
    };
    by_id
        .or_else(by_desc)
        .or_else(by_part)
        .and_then(|i| devices.into_iter().nth(i))
        .ok_or_else(|| DeviceError::NotFound {
            name: name.to_owned(),
            direction: dir.label(),
        })
}

/// Sample formats in order of preference (all handled by [`build_stream`]).
const FORMATS: [SampleFormat; 7] = [
    SampleFormat::I16,
    SampleFormat::F32,
    SampleFormat::I32,
    SampleFormat::F64,
    SampleFormat::U16,
    SampleFormat::U8,
    SampleFormat::I8,
];

/// Picks a stream configuration: `want_rate` mono if offered, else `want_rate` with the fewest
/// channels, else the device's default configuration (whose rate we then report).
fn choose_config(
    device: &cpal::Device,
    dir: Dir,
    opts: &CpalOptions,
) -> Result<(StreamConfig, SampleFormat), DeviceError> {
    let want_rate = opts.rate;
    let ranges: Vec<cpal::SupportedStreamConfigRange> = match dir {
        Dir::Input => device.supported_input_configs().map(|c| c.collect()),
        Dir::Output => device.supported_output_configs().map(|c| c.collect()),
    }
    .unwrap_or_default();
    let rank = |r: &cpal::SupportedStreamConfigRange| {
        let fmt = FORMATS
            .iter()
            .position(|f| *f == r.sample_format())
            .unwrap_or(usize::MAX);
        (r.channels(), fmt)
    };
    let best = ranges
        .iter()
        .filter(|r| {
            r.channels() > 0 && r.contains_rate(want_rate) && FORMATS.contains(&r.sample_format())
        })
        .min_by_key(|r| rank(r));
    if let Some(r) = best {
        return Ok((
            StreamConfig {
                channels: r.channels(),
                sample_rate: want_rate,
                buffer_size: period_frames(opts.period, opts.rate, r.buffer_size()),
            },
            r.sample_format(),
        ));
    }
    let def = match dir {
        Dir::Input => device.default_input_config(),
        Dir::Output => device.default_output_config(),
    }
    .map_err(|e| DeviceError::Unsupported(e.to_string()))?;
    if !FORMATS.contains(&def.sample_format()) || def.channels() == 0 {
        return Err(DeviceError::Unsupported(format!(
            "default configuration uses {} with {} channels",
            def.sample_format(),
            def.channels()
        )));
    }
    Ok((
        StreamConfig {
            channels: def.channels(),
            sample_rate: def.sample_rate(),
            buffer_size: period_frames(opts.period, def.sample_rate(), def.buffer_size()),
        },
        def.sample_format(),
    ))
}

fn on_stream_error(shared: &Arc<Shared>) -> impl FnMut(cpal::Error) + Send + 'static {
    let shared = Arc::clone(shared);
    move |e: cpal::Error| match e.kind() {
        cpal::ErrorKind::DeviceNotAvailable
        | cpal::ErrorKind::StreamInvalidated
        | cpal::ErrorKind::HostUnavailable
        | cpal::ErrorKind::PermissionDenied => {
            tracing::warn!(error = %e, "audio stream failed");
            shared.fail(e.to_string());
        }
        _ => tracing::debug!(error = %e, "audio stream warning"),
    }
}

fn build_input<T>(
    device: &cpal::Device,
    config: StreamConfig,
    shared: &Arc<Shared>,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + Send + 'static,
    i16: FromSample<T>,
{
    let channels = usize::from(config.channels.max(1));
    let ring_shared = Arc::clone(shared);
    let mut mono: Vec<i16> = Vec::new();
    device.build_input_stream::<T, _, _>(
        config,
        move |data: &[T], _info: &cpal::InputCallbackInfo| {
            mono.clear();
            mono.extend(data.chunks_exact(channels).map(|frame| {
                let sum: i32 = frame.iter().map(|s| i32::from(i16::from_sample(*s))).sum();
                (sum / channels as i32) as i16
            }));
            ring_shared.ring().push(&mono);
        },
        on_stream_error(shared),
        Some(BUILD_TIMEOUT),
    )
}

fn build_output<T>(
    device: &cpal::Device,
    config: StreamConfig,
    shared: &Arc<Shared>,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + FromSample<i16> + Send + 'static,
{
    let channels = usize::from(config.channels.max(1));
    let ring_shared = Arc::clone(shared);
    let mut mono: Vec<i16> = Vec::new();
    device.build_output_stream::<T, _, _>(
        config,
        move |data: &mut [T], _info: &cpal::OutputCallbackInfo| {
            mono.resize(data.len() / channels, 0);
            ring_shared.ring().pop(&mut mono);
            for (frame, s) in data.chunks_exact_mut(channels).zip(&mono) {
                frame.fill(T::from_sample(*s));
            }
        },
        on_stream_error(shared),
        Some(BUILD_TIMEOUT),
    )
}

fn build_stream(
    device: &cpal::Device,
    dir: Dir,
    config: StreamConfig,
    format: SampleFormat,
    shared: &Arc<Shared>,
) -> Result<cpal::Stream, DeviceError> {
    macro_rules! by_dir {
        ($t:ty) => {
            match dir {
                Dir::Input => build_input::<$t>(device, config, shared),
                Dir::Output => build_output::<$t>(device, config, shared),
            }
        };
    }
    let r = match format {
        SampleFormat::I16 => by_dir!(i16),
        SampleFormat::F32 => by_dir!(f32),
        SampleFormat::I32 => by_dir!(i32),
        SampleFormat::F64 => by_dir!(f64),
        SampleFormat::U16 => by_dir!(u16),
        SampleFormat::U8 => by_dir!(u8),
        SampleFormat::I8 => by_dir!(i8),
        other => return Err(DeviceError::Unsupported(format!("sample format {other}"))),
    };
    r.map_err(|e| DeviceError::Backend(e.to_string()))
}

/// Body of the stream thread: open, report, then hold the stream until told to stop.
fn run_stream(
    dir: Dir,
    name: Option<String>,
    opts: CpalOptions,
    shared: Arc<Shared>,
    ready: mpsc::Sender<Result<Opened, DeviceError>>,
    stop: mpsc::Receiver<()>,
) {
    let opened = (|| {
        let host = preferred_host()?;
        let device = find_device(&host, dir, name.as_deref())?;
        let (config, format) = choose_config(&device, dir, &opts)?;
        // Size the ring for the rate actually used.
        *shared.ring() = new_ring(config.sample_rate, &opts);
        let stream = match build_stream(&device, dir, config, format, &shared) {
            Err(e) if config.buffer_size != cpal::BufferSize::Default => {
                tracing::debug!(error = %e, "fixed buffer size refused, using the backend's default");
                let config = StreamConfig {
                    buffer_size: cpal::BufferSize::Default,
                    ..config
                };
                build_stream(&device, dir, config, format, &shared)?
            }
            other => other?,
        };
        // Starting a PulseAudio record stream waits for its first data, which an idle sink can
        // take seconds to deliver: capture starts after `open` has returned (the ring hands out
        // silence until then, and a failure surfaces from `read_frame`).
        if dir == Dir::Output {
            stream
                .play()
                .map_err(|e| DeviceError::Backend(e.to_string()))?;
        }
        let info = Opened {
            rate: config.sample_rate,
            channels: config.channels,
            name: device_id(&device)
                .or_else(|| device_description(&device))
                .unwrap_or_default(),
            host: host.id().name().to_owned(),
        };
        Ok((stream, info))
    })();
    match opened {
        Ok((stream, info)) => {
            tracing::debug!(
                direction = dir.label(),
                device = %info.name,
                host = %info.host,
                rate = info.rate,
                channels = info.channels,
                "audio stream open"
            );
            if ready.send(Ok(info)).is_err() {
                return;
            }
            if dir == Dir::Input
                && let Err(e) = stream.play()
            {
                tracing::warn!(error = %e, "cannot start capture stream");
                shared.fail(format!("cannot start capture: {e}"));
            }
            // Blocks until the owner drops the sender (or sends).
            let _ = stop.recv();
            if let Err(e) = stream.pause() {
                tracing::debug!(error = %e, "pausing audio stream before close");
            }
            drop(stream);
        }
        Err(e) => {
            let _ = ready.send(Err(e));
        }
    }
}

/// Starts a stream thread and waits until the stream plays (or fails).
fn open_stream(
    dir: Dir,
    name: Option<&str>,
    opts: CpalOptions,
) -> Result<(Arc<Shared>, StreamThread, Opened), DeviceError> {
    let shared = Arc::new(Shared {
        ring: Mutex::new(new_ring(opts.rate, &opts)),
        failed: Mutex::new(None),
        has_failed: AtomicBool::new(false),
    });
    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel();
    let thread_shared = Arc::clone(&shared);
    let name_owned = name.map(str::to_owned);
    let join = std::thread::Builder::new()
        .name(format!("audio-{}", dir.label()))
        .spawn(move || run_stream(dir, name_owned, opts, thread_shared, ready_tx, stop_rx))
        .map_err(|e| DeviceError::Backend(format!("cannot start audio thread: {e}")))?;
    let thread = StreamThread {
        stop: Some(stop_tx),
        join: Some(join),
    };
    match ready_rx.recv_timeout(OPEN_TIMEOUT) {
        Ok(Ok(info)) => Ok((shared, thread, info)),
        Ok(Err(e)) => Err(e),
        Err(RecvTimeoutError::Timeout) => {
            // Do not join a thread stuck in the backend: detach it.
            let mut thread = thread;
            thread.stop.take();
            thread.join.take();
            Err(DeviceError::Timeout)
        }
        Err(RecvTimeoutError::Disconnected) => {
            Err(DeviceError::Backend("audio thread exited".into()))
        }
    }
}

/// Defines the constructors and accessors [`CpalCapture`] and [`CpalPlayback`] share: both open
/// from `$defaults` through their own `open_with`, and keep the stream's `shared` state and the
/// `info` it reported when it opened.
macro_rules! stream_common {
    (
        $ty:ident,
        defaults: $defaults:path,
        open: $open_doc:literal,
        open_with_rate: $rate_doc:literal,
        channels: $channels_doc:literal,
        queued: $queued_doc:literal $(,)?
    ) => {
        impl $ty {
            #[doc = $open_doc]
            pub fn open(name: Option<&str>) -> Result<Self, DeviceError> {
                Self::open_with_rate(name, DEFAULT_RATE)
            }

            #[doc = $rate_doc]
            pub fn open_with_rate(name: Option<&str>, rate: u32) -> Result<Self, DeviceError> {
                Self::open_with(
                    name,
                    CpalOptions {
                        rate,
                        ..$defaults()
                    },
                )
            }

            /// The device's name.
            pub fn name(&self) -> &str {
                &self.info.name
            }

            /// The audio host in use.
            pub fn host(&self) -> &str {
                &self.info.host
            }

            #[doc = $channels_doc]
            pub fn device_channels(&self) -> u16 {
                self.info.channels
            }

            #[doc = $queued_doc]
            pub fn queued(&self) -> usize {
                self.shared.ring().len()
            }

            /// Drift and underrun corrections so far.
            pub fn ring_stats(&self) -> RingStats {
                self.shared.ring().stats()
            }
        }
    };
}

/// A real capture device (microphone, or a PulseAudio monitor source), mono at the rate it reports.
#[derive(Debug)]
pub struct CpalCapture {
    shared: Arc<Shared>,
    info: Opened,
    _thread: StreamThread,
}

impl CpalCapture {
    /// Opens with explicit options.
    pub fn open_with(name: Option<&str>, options: CpalOptions) -> Result<Self, DeviceError> {
        let (shared, thread, info) = open_stream(Dir::Input, name, options)?;
        Ok(Self {
            shared,
            info,
            _thread: thread,
        })
    }
}

stream_common!(
    CpalCapture,
    defaults: CpalOptions::capture,
    open: "Opens the named input device (id, description, or a unique part of either), or the \
           default one, preferring [`DEFAULT_RATE`].",
    open_with_rate: "Like [`CpalCapture::open`], preferring `rate` (the device's own rate is \
                     used, and reported, when it cannot run at `rate`).",
    channels: "Channels the device delivers (downmixed to mono here).",
    queued: "Samples queued between the device and the media clock."
);

impl CaptureDevice for CpalCapture {
    fn rate(&self) -> u32 {
        self.info.rate
    }

    fn read_frame(&mut self, out: &mut [i16]) -> Result<bool, DeviceError> {
        self.shared.check()?;
        self.shared.ring().pop(out);
        Ok(true)
    }
}

/// A real playback device (speaker, or a PulseAudio sink), mono at the rate it reports.
#[derive(Debug)]
pub struct CpalPlayback {
    shared: Arc<Shared>,
    info: Opened,
    max_queue: Duration,
    thread: Option<StreamThread>,
}

impl CpalPlayback {
    /// Opens with explicit options.
    pub fn open_with(name: Option<&str>, options: CpalOptions) -> Result<Self, DeviceError> {
        let (shared, thread, info) = open_stream(Dir::Output, name, options)?;
        Ok(Self {
            shared,
            info,
            max_queue: options.max_queue,
            thread: Some(thread),
        })
    }
}

stream_common!(
    CpalPlayback,
    defaults: CpalOptions::playback,
    open: "Opens the named output device (id, description, or a unique part of either), or the \
           default one, preferring [`DEFAULT_RATE`].",
    open_with_rate: "Like [`CpalPlayback::open`], preferring `rate`.",
    channels: "Channels the device plays (mono is copied to each).",
    queued: "Samples queued between the media clock and the device."
);

impl PlaybackDevice for CpalPlayback {
    fn rate(&self) -> u32 {
        self.info.rate
    }

    fn write_frame(&mut self, pcm: &[i16]) -> Result<(), DeviceError> {
        if self.thread.is_none() {
            return Err(DeviceError::Finished);
        }
        self.shared.check()?;
        self.shared.ring().push(pcm);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), DeviceError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        // Let what is queued play out (bounded by the ring's cap), then close the stream.
        self.shared.ring().release();
        let deadline = std::time::Instant::now() + self.max_queue;
        while !self.shared.ring().is_empty() && std::time::Instant::now() < deadline {
            if self.shared.check().is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(thread);
        Ok(())
    }
}

/// Lists the preferred host's devices, or an error when the host cannot be queried.
pub fn try_list_devices() -> Result<Vec<DeviceInfo>, DeviceError> {
    let host = preferred_host()?;
    let host_name = host.id().name().to_owned();
    let default_in = host.default_input_device().as_ref().and_then(device_id);
    let default_out = host.default_output_device().as_ref().and_then(device_id);
    let devices = host
        .devices()
        .map_err(|e| DeviceError::Backend(e.to_string()))?;
    Ok(devices
        .map(|d| {
            let id = device_id(&d);
            let description = device_description(&d).unwrap_or_default();
            DeviceInfo {
                name: id.clone().unwrap_or_else(|| description.clone()),
                description,
                input: d.supports_input(),
                output: d.supports_output(),
                default: id.is_some() && (id == default_in || id == default_out),
                host: host_name.clone(),
            }
        })
        .collect())
}

/// Lists the audio devices of the preferred host (PulseAudio when reachable); empty on failure.
pub fn list_devices() -> Vec<DeviceInfo> {
    try_list_devices().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot list audio devices");
        Vec::new()
    })
}
