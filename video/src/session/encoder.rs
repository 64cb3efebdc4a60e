//! The encoder thread: paces the source, scales, encodes, and hands encoded frames to the
//! session task. It never queues raw frames: when the encoder is slower than the source, or the
//! task has not taken the previous frames yet, source frames are skipped (and counted).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self as std_mpsc, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{VideoError, VideoSink};
use crate::codec::{EncodedFrame, EncoderConfig, VideoCodecKind, VideoEncoder, new_encoder};
use crate::frame::{MAX_HEIGHT, MAX_WIDTH};
use crate::source::{SourceError, VideoSource};

/// Encoded frames waiting for the session task; one more frame is not encoded.
const OUTPUT_QUEUE: usize = 3;
/// How long the thread sleeps without a source before looking at its commands again.
const IDLE_WAIT: Duration = Duration::from_millis(500);
/// Frame rate used when a source reports 0.
const FALLBACK_FPS: u32 = 15;

/// Commands from the session task.
pub(super) enum EncoderCommand {
    /// Replace the source (`None`: camera off).
    Source(Option<Box<dyn VideoSource>>),
    /// The next frame is a keyframe.
    Keyframe,
    /// New target bitrate.
    Bitrate(u32),
    /// Send at half the size (low bandwidth) or at full size.
    Halve(bool),
    /// Frames are sent (false: on hold or waiting for keys, the source is not read).
    Active(bool),
}

/// One encoded frame for the task.
pub(super) struct EncoderOutput {
    /// The bitstream.
    pub frame: EncodedFrame,
    /// When the source frame was taken (the RTP timestamp's instant).
    pub captured: Instant,
    /// Encoded width.
    pub width: u32,
    /// Encoded height.
    pub height: u32,
}

/// What else the thread tells the task.
pub(super) enum EncoderNotice {
    /// An encoded frame.
    Frame(EncoderOutput),
    /// The source ended (a file played once).
    SourceEnded,
    /// A source or encoder error (reported once per source).
    Error(String),
}

/// Counters the thread updates and the task reads.
#[derive(Debug, Default)]
pub(super) struct EncoderCounters {
    pub skipped: AtomicU64,
    pub errors: AtomicU64,
}

/// The task's handle on the thread.
pub(super) struct EncoderHandle {
    commands: Option<std_mpsc::Sender<EncoderCommand>>,
    pub output: mpsc::Receiver<EncoderNotice>,
    pub counters: Arc<EncoderCounters>,
    pub thread: Option<JoinHandle<()>>,
}

impl EncoderHandle {
    /// Sends a command; a finished thread (it only ends when the task drops the sender) is ignored.
    pub fn send(&self, command: EncoderCommand) {
        if let Some(commands) = self.commands.as_ref() {
            let _ = commands.send(command);
        }
    }

    /// Closes the command channel: the thread finishes the frame it is encoding and ends.
    pub fn stop(mut self) -> Option<JoinHandle<()>> {
        self.commands = None;
        self.thread.take()
    }
}

/// What the encoder thread needs.
pub(super) struct EncoderSetup {
    pub kind: VideoCodecKind,
    pub source: Box<dyn VideoSource>,
    pub max_width: u32,
    pub max_height: u32,
    pub max_fps: u32,
    pub bitrate_bps: u32,
    pub active: bool,
    pub preview: Option<Box<dyn VideoSink>>,
}

/// The size a `width` x `height` source is sent at: within `max`, aspect kept, halved on request,
/// even dimensions, at least 16x16.
pub(super) fn send_size(
    width: u32,
    height: u32,
    max_width: u32,
    max_height: u32,
    halve: bool,
) -> (u32, u32) {
    let max_width = max_width.clamp(16, MAX_WIDTH);
    let max_height = max_height.clamp(16, MAX_HEIGHT);
    let (mut w, mut h) = (u64::from(width.max(1)), u64::from(height.max(1)));
    if w > u64::from(max_width) || h > u64::from(max_height) {
        // Scale by the tighter of the two ratios.
        let (mw, mh) = (u64::from(max_width), u64::from(max_height));
        if w * mh > h * mw {
            h = (h * mw / w).max(1);
            w = mw;
        } else {
            w = (w * mh / h).max(1);
            h = mh;
        }
    }
    if halve {
        w /= 2;
        h /= 2;
    }
    let even = |v: u64| -> u32 { u32::try_from((v & !1).max(16)).unwrap_or(16) };
    (even(w), even(h))
}

/// Starts the thread; the encoder is created here so a missing codec fails the session start.
pub(super) fn spawn(setup: EncoderSetup) -> Result<EncoderHandle, VideoError> {
    let (width, height) = setup.source.size();
    let (width, height) = send_size(width, height, setup.max_width, setup.max_height, false);
    let fps = frame_rate(setup.source.fps(), setup.max_fps);
    let encoder = new_encoder(
        setup.kind,
        EncoderConfig {
            width,
            height,
            fps,
            bitrate_bps: setup.bitrate_bps,
        },
    )?;
    let (cmd_tx, cmd_rx) = std_mpsc::channel();
    let (out_tx, out_rx) = mpsc::channel(OUTPUT_QUEUE);
    let counters = Arc::new(EncoderCounters::default());
    let worker = Worker {
        commands: cmd_rx,
        output: out_tx,
        counters: Arc::clone(&counters),
        source: Some(setup.source),
        encoder,
        max_width: setup.max_width,
        max_height: setup.max_height,
        max_fps: setup.max_fps,
        halve: false,
        active: setup.active,
        force_keyframe: true,
        preview: setup.preview,
        error_reported: false,
        next_tick: None,
        last_encoded: None,
    };
    let thread = std::thread::Builder::new()
        .name("tandem-video-enc".into())
        .spawn(move || worker.run())
        .map_err(|e| VideoError::Thread(e.to_string()))?;
    Ok(EncoderHandle {
        commands: Some(cmd_tx),
        output: out_rx,
        counters,
        thread: Some(thread),
    })
}

/// The frame rate we pace at: the source's, capped by the peer's limit.
fn frame_rate(source_fps: u32, max_fps: u32) -> u32 {
    let fps = if source_fps == 0 {
        FALLBACK_FPS
    } else {
        source_fps
    };
    fps.min(max_fps.max(1)).clamp(1, 120)
}

struct Worker {
    commands: std_mpsc::Receiver<EncoderCommand>,
    output: mpsc::Sender<EncoderNotice>,
    counters: Arc<EncoderCounters>,
    source: Option<Box<dyn VideoSource>>,
    encoder: Box<dyn VideoEncoder>,
    max_width: u32,
    max_height: u32,
    max_fps: u32,
    halve: bool,
    active: bool,
    force_keyframe: bool,
    preview: Option<Box<dyn VideoSink>>,
    error_reported: bool,
    /// When the next source frame is due.
    next_tick: Option<Instant>,
    /// When the last frame was encoded.
    last_encoded: Option<Instant>,
}

impl Worker {
    fn run(mut self) {
        loop {
            let running = self.active && self.source.is_some();
            let now = Instant::now();
            let wait = match (running, self.next_tick) {
                (true, Some(due)) => due.saturating_duration_since(now),
                (true, None) => Duration::ZERO,
                (false, _) => IDLE_WAIT,
            };
            if !wait.is_zero() {
                match self.commands.recv_timeout(wait) {
                    Ok(command) => {
                        self.on_command(command);
                        continue;
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            // Commands that arrived together with the tick.
            loop {
                match self.commands.try_recv() {
                    Ok(command) => self.on_command(command),
                    Err(std_mpsc::TryRecvError::Empty) => break,
                    Err(std_mpsc::TryRecvError::Disconnected) => return self.finish(),
                }
            }
            if self.active && self.source.is_some() {
                self.tick();
            } else {
                self.next_tick = None;
            }
        }
        self.finish();
    }

    fn finish(&mut self) {
        if let Some(preview) = self.preview.as_mut() {
            preview.finish();
        }
    }

    fn on_command(&mut self, command: EncoderCommand) {
        match command {
            EncoderCommand::Source(source) => {
                self.source = source;
                self.next_tick = None;
                self.error_reported = false;
                self.force_keyframe = true;
            }
            EncoderCommand::Keyframe => self.force_keyframe = true,
            EncoderCommand::Bitrate(bps) => {
                if let Err(e) = self.encoder.set_bitrate(bps) {
                    debug!(error = %e, bps, "encoder refused a bitrate");
                }
            }
            EncoderCommand::Halve(halve) => self.halve = halve,
            EncoderCommand::Active(active) => {
                if active && !self.active {
                    self.force_keyframe = true;
                    self.next_tick = None;
                }
                self.active = active;
            }
        }
    }

    /// One source frame: take it, skip it when the task is behind, else scale and encode.
    fn tick(&mut self) {
        let Some(source) = self.source.as_mut() else {
            return;
        };
        let fps = frame_rate(source.fps(), u32::MAX);
        let interval = Duration::from_secs(1) / fps;
        let now = Instant::now();
        let due = self.next_tick.unwrap_or(now);
        // Ticks missed while the previous frame was being encoded are skipped, not caught up.
        let behind = now.saturating_duration_since(due);
        let missed = u32::try_from(behind.as_nanos() / interval.as_nanos().max(1)).unwrap_or(0);
        if missed > 0 {
            self.counters
                .skipped
                .fetch_add(u64::from(missed), Ordering::Relaxed);
        }
        self.next_tick = Some(due + interval * (missed + 1));
        let frame = match source.next_frame() {
            Ok(frame) => frame,
            Err(SourceError::Ended) => {
                self.source = None;
                self.notify(EncoderNotice::SourceEnded);
                return;
            }
            Err(e) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                if !self.error_reported {
                    self.error_reported = true;
                    self.notify(EncoderNotice::Error(format!("video source: {e}")));
                }
                return;
            }
        };
        // A camera blocks in `next_frame` until its frame exists: that is the capture instant.
        let captured = Instant::now();
        if let Some(preview) = self.preview.as_mut() {
            preview.frame(&frame);
        }
        // The peer's frame rate cap: a faster source has frames skipped.
        let min_gap = Duration::from_secs(1) / self.max_fps.clamp(1, 120);
        if let Some(last) = self.last_encoded
            && captured.saturating_duration_since(last) + interval / 4 < min_gap
        {
            self.counters.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Never queue: with the task's queue full, this frame is not encoded at all (the
        // reference chain stays intact because nothing was produced).
        if self.output.capacity() == 0 {
            self.counters.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let (width, height) = send_size(
            frame.width,
            frame.height,
            self.max_width,
            self.max_height,
            self.halve,
        );
        let scaled;
        let input = if (width, height) == (frame.width, frame.height) {
            &frame
        } else {
            match frame.scaled(width, height) {
                Ok(f) => {
                    scaled = f;
                    &scaled
                }
                Err(e) => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    debug!(error = %e, "scaling a source frame failed");
                    return;
                }
            }
        };
        let force = std::mem::take(&mut self.force_keyframe);
        match self.encoder.encode(input, force) {
            Ok(Some(encoded)) => {
                self.last_encoded = Some(captured);
                let notice = EncoderNotice::Frame(EncoderOutput {
                    frame: encoded,
                    captured,
                    width,
                    height,
                });
                if self.output.try_send(notice).is_err() {
                    // Only possible when the task has ended; the next frame must be a keyframe
                    // anyway since this one is lost.
                    self.force_keyframe = true;
                }
            }
            Ok(None) => {
                // The encoder dropped the frame (rate control); a forced keyframe is retried.
                self.force_keyframe |= force;
                self.counters.skipped.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.force_keyframe = true;
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                if !self.error_reported {
                    self.error_reported = true;
                    warn!(error = %e, "video encoder failed");
                    self.notify(EncoderNotice::Error(format!("video encoder: {e}")));
                }
            }
        }
    }

    fn notify(&self, notice: EncoderNotice) {
        // Notices are rare; if the queue is full the task is busy and a later one will do.
        let _ = self.output.try_send(notice);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_size_fits_halves_and_stays_even() {
        assert_eq!(send_size(640, 480, 1280, 720, false), (640, 480));
        assert_eq!(send_size(640, 480, 1280, 720, true), (320, 240));
        assert_eq!(send_size(1920, 1080, 1280, 720, false), (1280, 720));
        assert_eq!(send_size(1280, 960, 640, 360, false), (480, 360));
        assert_eq!(send_size(321, 241, 4096, 2304, false), (320, 240));
        assert_eq!(send_size(8, 8, 4096, 2304, true), (16, 16));
        assert_eq!(send_size(u32::MAX, u32::MAX, 0, 0, false), (16, 16));
    }

    #[test]
    fn frame_rate_is_capped() {
        assert_eq!(frame_rate(30, 15), 15);
        assert_eq!(frame_rate(0, 30), FALLBACK_FPS);
        assert_eq!(frame_rate(25, 0), 1);
        assert_eq!(frame_rate(1000, u32::MAX), 120);
    }
}
