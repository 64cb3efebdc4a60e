//! The receive side of a session recovers at once after its task was starved of CPU.
//!
//! A loaded machine (debug builds, load average 3–9 on two cores) can keep the media task from
//! running for hundreds of milliseconds. Meanwhile the peer keeps sending in real time, so
//! when the task runs again it finds a backlog of packets on the socket and a frame clock that
//! catches up with a burst of ticks. Every one of those packets is needed: the recording must
//! go on without a long gap after the stall.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_media::codec::{CodecKind, CodecSpec};
use tandem_media::device::{DeviceError, NullCapture, NullPlayback, PlaybackDevice, ToneCapture};
use tandem_media::session::{MediaConfig, MediaSession};
use tandem_media::tone::{analyze, longest_gap};
use tokio::net::UdpSocket;
use tokio::runtime::Runtime;

const RATE: u32 = 8000;

/// A playback device that keeps everything it was given.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<i16>>>);

impl PlaybackDevice for Recorder {
    fn rate(&self) -> u32 {
        RATE
    }
    fn write_frame(&mut self, pcm: &[i16]) -> Result<(), DeviceError> {
        self.0.lock().unwrap().extend_from_slice(pcm);
        Ok(())
    }
    fn finish(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }
}

/// A runtime with a single worker: a blocking task on it starves every other task there, as
/// a busy machine starves the media task.
fn single_worker() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn bind(rt: &Runtime) -> (Arc<UdpSocket>, SocketAddr) {
    let socket = rt.block_on(UdpSocket::bind("127.0.0.1:0")).unwrap();
    let addr = socket.local_addr().unwrap();
    (Arc::new(socket), addr)
}

/// Runs a PCMU call from A (a 440 Hz tone, its own runtime) to B (recording, its own
/// runtime); B's runtime is blocked for each of `stalls` in turn, 1.5 s apart. Returns B's
/// recording.
fn call_with_stalls(stalls: &[Duration]) -> Vec<i16> {
    let (rt_a, rt_b) = (single_worker(), single_worker());
    let (sock_a, addr_a) = bind(&rt_a);
    let (sock_b, addr_b) = bind(&rt_b);
    let codec = CodecSpec::new(CodecKind::Pcmu, 0);
    let recorder = Recorder::default();
    let cfg_a = MediaConfig::new(
        sock_a,
        addr_b,
        codec.clone(),
        Box::new(ToneCapture::new(440.0, RATE, 0.3)),
        Box::new(NullPlayback::new(RATE)),
    );
    let cfg_b = MediaConfig::new(
        sock_b,
        addr_a,
        codec,
        Box::new(NullCapture::new(RATE)),
        Box::new(recorder.clone()),
    );
    let (sess_b, _ev_b) = rt_b.block_on(async { MediaSession::start(cfg_b) }).unwrap();
    let (sess_a, _ev_a) = rt_a.block_on(async { MediaSession::start(cfg_a) }).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    for stall in stalls {
        let stall = *stall;
        // Blocks B's only worker: B's task neither receives nor ticks meanwhile.
        rt_b.spawn(async move { std::thread::sleep(stall) });
        std::thread::sleep(stall + Duration::from_millis(1500));
    }
    rt_a.block_on(sess_a.stop());
    rt_b.block_on(sess_b.stop());
    recorder.0.lock().unwrap().clone()
}

#[test]
fn playout_recovers_right_after_the_task_was_starved() {
    let stalls = [
        Duration::from_millis(200),
        Duration::from_millis(400),
        Duration::from_millis(600),
    ];
    let pcm = call_with_stalls(&stalls);
    let tone = analyze(pcm.get(RATE as usize..).unwrap_or_default(), RATE);
    assert!(
        (tone.dominant_hz - 440.0).abs() < 5.0,
        "B hears {:.1} Hz",
        tone.dominant_hz
    );
    // Skip the jitter buffer's fill at the start and the teardown at the end.
    let gap = longest_gap(
        &pcm,
        RATE,
        Duration::from_millis(20),
        500.0,
        Duration::from_millis(400),
        Duration::from_millis(200),
    );
    assert!(
        gap <= Duration::from_millis(100),
        "a {gap:?} gap in B's recording after a stall"
    );
}
