//! Shared pieces of the video session tests: collecting sinks, session pairs over loopback UDP,
//! a lossy forwarder, waiting helpers.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // helpers of several test files; tests may unwrap

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tandem_media::session::MediaSecurity;
use tandem_media::srtp::{CryptoSuite, SdesCrypto};
use tandem_video::codec::VideoCodecKind;
use tandem_video::counter::read_counter;
use tandem_video::frame::VideoFrame;
use tandem_video::session::{
    VideoConfig, VideoEvent, VideoRecvCodec, VideoSendConfig, VideoSession, VideoSink,
};
use tandem_video::source::PatternSource;
use tokio::net::UdpSocket;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;

/// One decoded frame as a sink saw it.
#[derive(Clone, Copy, Debug)]
pub struct Seen {
    pub width: u32,
    pub height: u32,
    pub counter: Option<u32>,
    pub at: Instant,
}

/// A sink that records size, counter and arrival of every frame.
#[derive(Clone, Default)]
pub struct Collect {
    pub frames: Arc<Mutex<Vec<Seen>>>,
}

impl VideoSink for Collect {
    fn frame(&mut self, frame: &VideoFrame) {
        self.frames.lock().unwrap().push(Seen {
            width: frame.width,
            height: frame.height,
            counter: read_counter(frame),
            at: Instant::now(),
        });
    }
}

impl Collect {
    pub fn len(&self) -> usize {
        self.frames.lock().unwrap().len()
    }

    pub fn snapshot(&self) -> Vec<Seen> {
        self.frames.lock().unwrap().clone()
    }
}

/// A running session with its events and what its sink saw.
pub struct Peer {
    pub session: VideoSession,
    pub events: UnboundedReceiver<VideoEvent>,
    pub seen: Collect,
}

impl Peer {
    pub fn drain_events(&mut self) -> Vec<VideoEvent> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            out.push(e);
        }
        out
    }
}

/// The session tests of one file run one at a time: each runs four codec threads on a shared
/// machine.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The picture size and frame rate (width, height, fps) the session tests send.
pub const SIZE: (u32, u32, u32) = (320, 240, 15);

/// Fresh SDES-SRTP keys for a call: side A's and side B's security, each the other's mirror.
pub fn sdes_pair() -> (MediaSecurity, MediaSecurity) {
    let ka = SdesCrypto::generate(1, CryptoSuite::AesCm128HmacSha1_80);
    let kb = SdesCrypto::generate(1, CryptoSuite::AesCm128HmacSha1_80);
    let sec_a = MediaSecurity::Sdes {
        local: ka.clone(),
        remote: kb.clone(),
    };
    let sec_b = MediaSecurity::Sdes {
        local: kb,
        remote: ka,
    };
    (sec_a, sec_b)
}

pub const PT_VP8: u8 = 96;
pub const PT_H264: u8 = 97;

pub fn pt_of(kind: VideoCodecKind) -> u8 {
    match kind {
        VideoCodecKind::Vp8 => PT_VP8,
        VideoCodecKind::H264 => PT_H264,
    }
}

pub async fn bind() -> (Arc<UdpSocket>, SocketAddr) {
    let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

/// A sendrecv configuration sending a `width` x `height` pattern at `fps` with `kind`,
/// accepting VP8 and H.264, short report intervals.
pub fn config(
    socket: Arc<UdpSocket>,
    remote: SocketAddr,
    kind: VideoCodecKind,
    (width, height, fps): (u32, u32, u32),
    security: MediaSecurity,
) -> (VideoConfig, Collect) {
    let mut cfg = VideoConfig::new(socket, remote);
    let mut send = VideoSendConfig::new(
        kind,
        pt_of(kind),
        Box::new(PatternSource::new(width, height, fps).unwrap()),
    );
    send.start_bitrate_bps = 400_000;
    send.max_bitrate_bps = 1_000_000;
    cfg.send = Some(send);
    cfg.recv = vec![
        VideoRecvCodec {
            kind: VideoCodecKind::Vp8,
            payload_type: PT_VP8,
        },
        VideoRecvCodec {
            kind: VideoCodecKind::H264,
            payload_type: PT_H264,
        },
    ];
    let seen = Collect::default();
    cfg.sink = Some(Box::new(seen.clone()));
    cfg.security = security;
    cfg.report_interval = Duration::from_millis(500);
    cfg.stats_interval = Duration::from_secs(1);
    (cfg, seen)
}

pub fn start(cfg: VideoConfig, seen: Collect) -> Peer {
    let (session, events) = VideoSession::start(cfg).unwrap();
    Peer {
        session,
        events,
        seen,
    }
}

/// Polls `cond` every 50 ms until it holds or `limit` passes; returns whether it held.
pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The counters of the frames seen, in order (unreadable ones left out).
pub fn counters(seen: &[Seen]) -> Vec<u32> {
    seen.iter().filter_map(|s| s.counter).collect()
}

/// Asserts the counters never go backwards or repeat.
pub fn assert_increasing(counters: &[u32]) {
    for pair in counters.windows(2) {
        assert!(
            pair[1] > pair[0],
            "counter went from {} to {}: {counters:?}",
            pair[0],
            pair[1]
        );
    }
}

/// A UDP forwarder between A and B that drops a seeded share of datagrams both ways, and
/// everything during an optional blackout window.
pub struct Forwarder {
    /// Where A sends (towards B).
    pub for_a: SocketAddr,
    /// Where B sends (towards A).
    pub for_b: SocketAddr,
    pub forwarded: Arc<AtomicU64>,
    pub dropped: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Forwarder {
    pub async fn start(
        a: SocketAddr,
        b: SocketAddr,
        loss: f64,
        seed: u64,
        blackout: Option<(Duration, Duration)>,
    ) -> Forwarder {
        let (fa, for_a) = bind().await;
        let (fb, for_b) = bind().await;
        let forwarded = Arc::new(AtomicU64::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let (fwd, drp) = (Arc::clone(&forwarded), Arc::clone(&dropped));
        let task = tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed);
            let start = Instant::now();
            let mut buf_a = vec![0u8; 65536];
            let mut buf_b = vec![0u8; 65536];
            loop {
                let (data, out, to) = tokio::select! {
                    r = fa.recv_from(&mut buf_a) => {
                        let Ok((n, _)) = r else { continue };
                        (&buf_a[..n], &fb, b)
                    }
                    r = fb.recv_from(&mut buf_b) => {
                        let Ok((n, _)) = r else { continue };
                        (&buf_b[..n], &fa, a)
                    }
                };
                let t = start.elapsed();
                let dark = blackout.is_some_and(|(from, until)| t >= from && t < until);
                if dark || rng.random::<f64>() < loss {
                    drp.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                fwd.fetch_add(1, Ordering::Relaxed);
                let _ = out.send_to(data, to).await;
            }
        });
        Forwarder {
            for_a,
            for_b,
            forwarded,
            dropped,
            task,
        }
    }
}
