//! The decoder thread: decodes assembled frames and hands the pictures to the sink. The
//! session task feeds it through a short bounded queue and drops frames (asking the peer for a
//! keyframe) when decoding falls behind, so a slow decoder never queues video up.

use std::collections::HashMap;
use std::sync::mpsc::{self as std_mpsc, TrySendError};
use std::thread::JoinHandle;

use tokio::sync::mpsc;
use tracing::debug;

use super::{VideoError, VideoSink};
use crate::codec::{CodecError, VideoCodecKind, VideoDecoder, new_decoder};
use crate::frame::{MAX_HEIGHT, MAX_WIDTH};

/// Assembled frames waiting for the decoder (slack for a loaded machine; a decoder slower than
/// the frame rate for longer than this drops frames).
const INPUT_QUEUE: usize = 6;

/// Work for the thread.
pub(super) enum DecoderJob {
    /// Decode one complete frame.
    Frame {
        kind: VideoCodecKind,
        data: Vec<u8>,
        keyframe: bool,
    },
    /// The peer's stream restarted (a new SSRC): fresh decoders.
    Reset,
}

/// What came of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DecoderResult {
    /// A picture went to the sink.
    Decoded { width: u32, height: u32 },
    /// The decoder produced no picture (not an error).
    NoPicture,
    /// The frame was skipped: an earlier frame failed and no keyframe has come since.
    Skipped,
    /// The decoder rejected the frame; a keyframe is needed.
    Failed(String),
    /// The picture was larger than the maximum and was dropped.
    Oversized { width: u32, height: u32 },
}

/// The task's handle on the thread.
pub(super) struct DecoderHandle {
    jobs: Option<std_mpsc::SyncSender<DecoderJob>>,
    pub results: mpsc::UnboundedReceiver<DecoderResult>,
    thread: Option<JoinHandle<()>>,
}

impl DecoderHandle {
    /// Queues a job; false when the queue is full (the frame is dropped) or the thread is gone.
    pub fn submit(&self, job: DecoderJob) -> bool {
        match self.jobs.as_ref().map(|jobs| jobs.try_send(job)) {
            Some(Ok(())) => true,
            Some(Err(TrySendError::Full(_) | TrySendError::Disconnected(_))) | None => false,
        }
    }

    /// Closes the queue; the thread decodes what is queued, finishes the sink and ends.
    pub fn stop(&mut self) -> Option<JoinHandle<()>> {
        self.jobs = None;
        self.thread.take()
    }
}

/// Starts the thread with one decoder per codec in `kinds` (created here, so a missing codec
/// fails the session start).
pub(super) fn spawn(
    kinds: &[VideoCodecKind],
    sink: Option<Box<dyn VideoSink>>,
) -> Result<DecoderHandle, VideoError> {
    let mut decoders = HashMap::new();
    for &kind in kinds {
        if let std::collections::hash_map::Entry::Vacant(slot) = decoders.entry(kind) {
            slot.insert(new_decoder(kind)?);
        }
    }
    let (job_tx, job_rx) = std_mpsc::sync_channel(INPUT_QUEUE);
    let (result_tx, result_rx) = mpsc::unbounded_channel();
    let worker = Worker {
        decoders,
        sink,
        results: result_tx,
        need_keyframe: false,
    };
    let thread = std::thread::Builder::new()
        .name("tandem-video-dec".into())
        .spawn(move || worker.run(job_rx))
        .map_err(|e| VideoError::Thread(e.to_string()))?;
    Ok(DecoderHandle {
        jobs: Some(job_tx),
        results: result_rx,
        thread: Some(thread),
    })
}

struct Worker {
    decoders: HashMap<VideoCodecKind, Box<dyn VideoDecoder>>,
    sink: Option<Box<dyn VideoSink>>,
    results: mpsc::UnboundedSender<DecoderResult>,
    /// A frame failed: delta frames are skipped until a keyframe.
    need_keyframe: bool,
}

impl Worker {
    fn run(mut self, jobs: std_mpsc::Receiver<DecoderJob>) {
        // Ends when the task closes the queue (stop, or the task ended).
        while let Ok(job) = jobs.recv() {
            let result = match job {
                DecoderJob::Reset => {
                    self.reset();
                    continue;
                }
                DecoderJob::Frame {
                    kind,
                    data,
                    keyframe,
                } => self.decode(kind, &data, keyframe),
            };
            // Exactly one result per frame job: the task's accounting relies on it. A closed
            // channel means the task has gone; the remaining jobs are still drained.
            let _ = self.results.send(result);
        }
        if let Some(sink) = self.sink.as_mut() {
            sink.finish();
        }
    }

    fn reset(&mut self) {
        let kinds: Vec<VideoCodecKind> = self.decoders.keys().copied().collect();
        for kind in kinds {
            match new_decoder(kind) {
                Ok(decoder) => {
                    self.decoders.insert(kind, decoder);
                }
                Err(e) => debug!(error = %e, %kind, "decoder could not be re-created"),
            }
        }
        self.need_keyframe = false;
    }

    fn decode(&mut self, kind: VideoCodecKind, data: &[u8], keyframe: bool) -> DecoderResult {
        if self.need_keyframe && !keyframe {
            return DecoderResult::Skipped;
        }
        let decoder = match self.decoders.entry(kind) {
            std::collections::hash_map::Entry::Occupied(slot) => slot.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => match new_decoder(kind) {
                Ok(decoder) => slot.insert(decoder),
                Err(e) => return DecoderResult::Failed(e.to_string()),
            },
        };
        match decoder.decode(data) {
            Ok(Some(frame)) => {
                self.need_keyframe = false;
                if frame.width > MAX_WIDTH || frame.height > MAX_HEIGHT {
                    return DecoderResult::Oversized {
                        width: frame.width,
                        height: frame.height,
                    };
                }
                if let Some(sink) = self.sink.as_mut() {
                    sink.frame(&frame);
                }
                DecoderResult::Decoded {
                    width: frame.width,
                    height: frame.height,
                }
            }
            Ok(None) => DecoderResult::NoPicture,
            Err(CodecError::TooLarge { width, height }) => {
                self.need_keyframe = true;
                DecoderResult::Oversized { width, height }
            }
            Err(e) => {
                self.need_keyframe = true;
                DecoderResult::Failed(e.to_string())
            }
        }
    }
}
