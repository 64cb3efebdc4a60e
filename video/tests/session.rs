//! Two video sessions over loopback UDP: VP8 and H.264 both ways, a Y4M recording, SDES-SRTP
//! and DTLS-SRTP, camera off/on.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

mod session_support;

use std::time::Duration;

use session_support::*;
use tandem_media::session::MediaSecurity;
use tandem_media::srtp::{CryptoSuite, DtlsCertificate, DtlsRole, SdesCrypto};
use tandem_video::codec::VideoCodecKind;
use tandem_video::session::{VideoEvent, VideoStats};
use tandem_video::y4m::{create_y4m, open_y4m};

/// Checks what one side received from a clean path.
fn check_clean(side: &str, seen: &[Seen], stats: &VideoStats, min_frames: usize) {
    assert!(
        seen.len() >= min_frames,
        "{side}: {} frames decoded, stats {stats:?}",
        seen.len()
    );
    assert!(
        seen.iter().all(|s| (s.width, s.height) == (SIZE.0, SIZE.1)),
        "{side}: wrong sizes"
    );
    let counters = counters(seen);
    // Lossy coding may blur a frame's stamp now and then, not most of them.
    assert!(
        counters.len() * 10 >= seen.len() * 9,
        "{side}: only {} of {} counters readable",
        counters.len(),
        seen.len()
    );
    assert_increasing(&counters);
    let span = counters.last().unwrap() - counters.first().unwrap();
    assert!(
        span as usize + 1 >= min_frames,
        "{side}: counter advanced by {span}"
    );
    assert_eq!(stats.decode_errors, 0, "{side}: {stats:?}");
    assert!(stats.keyframes_received >= 1, "{side}: {stats:?}");
    assert!(stats.frames_decoded as usize >= seen.len());
    assert_eq!((stats.recv_width, stats.recv_height), (SIZE.0, SIZE.1));
    assert_eq!((stats.send_width, stats.send_height), (SIZE.0, SIZE.1));
    assert!(stats.frames_sent >= min_frames as u64, "{side}: {stats:?}");
    assert!(stats.packets_sent >= stats.frames_sent);
    assert!(stats.bytes_sent > 0 && stats.packets_received > 0);
    assert_eq!(stats.unknown_pt_dropped, 0);
}

async fn clean_call(kind: VideoCodecKind, security: (MediaSecurity, MediaSecurity)) {
    let (sa, addr_a) = bind().await;
    let (sb, addr_b) = bind().await;
    let (cfg_a, seen_a) = config(sa, addr_b, kind, SIZE, security.0);
    let (cfg_b, seen_b) = config(sb, addr_a, kind, SIZE, security.1);
    let mut b = start(cfg_b, seen_b);
    let mut a = start(cfg_a, seen_a);
    let enough = wait_until(Duration::from_secs(15), || {
        a.seen.len() >= 30 && b.seen.len() >= 30
    })
    .await;
    let events_a = a.drain_events();
    let events_b = b.drain_events();
    let stats_a = a.session.stop().await;
    let stats_b = b.session.stop().await;
    assert!(enough, "A saw {}, B saw {}", a.seen.len(), b.seen.len());
    check_clean("A", &a.seen.snapshot(), &stats_a, 30);
    check_clean("B", &b.seen.snapshot(), &stats_b, 30);
    for events in [&events_a, &events_b] {
        assert!(
            events.iter().any(|e| matches!(
                e,
                VideoEvent::FirstFrame {
                    width: 320,
                    height: 240
                }
            )),
            "{events:?}"
        );
        assert!(!events.iter().any(|e| matches!(e, VideoEvent::RtpTimeout)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vp8_both_ways_on_a_clean_path() {
    let _serial = SERIAL.lock().await;
    clean_call(
        VideoCodecKind::Vp8,
        (MediaSecurity::Plain, MediaSecurity::Plain),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_both_ways_on_a_clean_path() {
    let _serial = SERIAL.lock().await;
    clean_call(
        VideoCodecKind::H264,
        (MediaSecurity::Plain, MediaSecurity::Plain),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vp8_over_sdes_srtp() {
    let _serial = SERIAL.lock().await;
    let (sec_a, sec_b) = sdes_pair();
    clean_call(VideoCodecKind::Vp8, (sec_a, sec_b)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_over_dtls_srtp() {
    let _serial = SERIAL.lock().await;
    let cert_a = DtlsCertificate::generate().unwrap();
    let cert_b = DtlsCertificate::generate().unwrap();
    let sec_a = MediaSecurity::Dtls {
        role: DtlsRole::Client,
        remote_fingerprint: cert_b.fingerprint(),
        cert: cert_a.clone(),
    };
    let sec_b = MediaSecurity::Dtls {
        role: DtlsRole::Server,
        remote_fingerprint: cert_a.fingerprint(),
        cert: cert_b,
    };
    clean_call(VideoCodecKind::H264, (sec_a, sec_b)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srtp_session_refuses_plain_rtp_and_wrong_keys() {
    let _serial = SERIAL.lock().await;
    // A sends with keys B does not have: B decodes nothing and counts the failures.
    let (sa, addr_a) = bind().await;
    let (sb, addr_b) = bind().await;
    let ka = SdesCrypto::generate(1, CryptoSuite::AesCm128HmacSha1_80);
    let kb = SdesCrypto::generate(1, CryptoSuite::AesCm128HmacSha1_80);
    let other = SdesCrypto::generate(1, CryptoSuite::AesCm128HmacSha1_80);
    let (cfg_a, seen_a) = config(
        sa,
        addr_b,
        VideoCodecKind::Vp8,
        SIZE,
        MediaSecurity::Sdes {
            local: ka,
            remote: kb.clone(),
        },
    );
    let (cfg_b, seen_b) = config(
        sb,
        addr_a,
        VideoCodecKind::Vp8,
        SIZE,
        MediaSecurity::Sdes {
            local: kb,
            remote: other,
        },
    );
    let b = start(cfg_b, seen_b);
    let a = start(cfg_a, seen_a);
    // Plain RTP of the right payload type on top.
    let (raw, _) = bind().await;
    for seq in 0..50u16 {
        let mut pkt = vec![
            0x80, 96, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 0x90, 0x80, 0x00, 0x00,
        ];
        pkt[2..4].copy_from_slice(&seq.to_be_bytes());
        raw.send_to(&pkt, addr_b).await.unwrap();
    }
    let failing = wait_until(Duration::from_secs(10), || {
        b.session.stats().srtp_auth_failures >= 40
    })
    .await;
    let stats_b = b.session.stop().await;
    let stats_a = a.session.stop().await;
    assert!(failing, "{stats_b:?}");
    assert_eq!(stats_b.frames_decoded, 0);
    assert_eq!(stats_b.packets_received, 0);
    assert!(stats_b.srtp);
    // A gets B's video fine: B's sending key is the one A expects.
    assert!(stats_a.frames_decoded > 0, "{stats_a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_is_complete_after_stop_and_camera_off_stops_frames() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rx.y4m");
    let (sa, addr_a) = bind().await;
    let (sb, addr_b) = bind().await;
    let (cfg_a, seen_a) = config(sa, addr_b, VideoCodecKind::Vp8, SIZE, MediaSecurity::Plain);
    let (mut cfg_b, seen_b) = config(sb, addr_a, VideoCodecKind::Vp8, SIZE, MediaSecurity::Plain);
    // B records instead of collecting, and sends nothing.
    cfg_b.sink = Some(Box::new(create_y4m(&path, 15).unwrap()));
    cfg_b.send = None;
    let b = start(cfg_b, seen_b);
    let a = start(cfg_a, seen_a);
    assert!(
        wait_until(Duration::from_secs(15), || b.session.stats().frames_decoded
            >= 20)
        .await,
        "{:?}",
        b.session.stats()
    );
    // Camera off: A stops sending frames (RTCP goes on).
    a.session.control().set_source(None);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = a.session.stats().frames_sent;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        a.session.stats().frames_sent,
        sent,
        "frames after camera off"
    );
    // Camera on again at another size: the receiver follows.
    a.session.control().set_source(Some(Box::new(
        tandem_video::source::PatternSource::new(160, 120, 15).unwrap(),
    )));
    assert!(
        wait_until(Duration::from_secs(10), || b.session.stats().recv_width
            == 160)
        .await,
        "{:?}",
        b.session.stats()
    );
    let stats_b = b.session.stop().await;
    a.session.stop().await;
    let mut reader = open_y4m(&path).unwrap();
    assert_eq!((reader.header().width, reader.header().height), (320, 240));
    let mut frames = 0u64;
    let mut readable = Vec::new();
    while let Some(frame) = reader.read_frame().unwrap() {
        frames += 1;
        if let Some(n) = tandem_video::counter::read_counter(&frame) {
            readable.push(n);
        }
    }
    assert_eq!(frames, stats_b.frames_decoded, "{stats_b:?}");
    assert!(readable.len() >= 20);
    assert_eq!(stats_b.frames_sent, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_times_out_and_resume_brings_video_back() {
    let _serial = SERIAL.lock().await;
    let (sa, addr_a) = bind().await;
    let (sb, addr_b) = bind().await;
    let (cfg_a, seen_a) = config(sa, addr_b, VideoCodecKind::Vp8, SIZE, MediaSecurity::Plain);
    let (mut cfg_b, seen_b) = config(sb, addr_a, VideoCodecKind::Vp8, SIZE, MediaSecurity::Plain);
    cfg_b.send = None;
    cfg_b.rtp_timeout = Duration::from_millis(1500);
    let mut b = start(cfg_b, seen_b);
    let a = start(cfg_a, seen_a);
    assert!(wait_until(Duration::from_secs(15), || b.seen.len() >= 10).await);
    // A puts the video on hold: no more RTP, B notices.
    a.session
        .control()
        .set_direction(tandem_proto::sdp::Direction::Inactive);
    let mut timed_out = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !timed_out {
        match tokio::time::timeout_at(deadline, b.events.recv()).await {
            Ok(Some(VideoEvent::RtpTimeout)) => timed_out = true,
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    assert!(timed_out, "no RTP timeout: {:?}", b.session.stats());
    let held = b.seen.len();
    // Resume: RTP resumes with a keyframe and the counter continues.
    a.session
        .control()
        .set_direction(tandem_proto::sdp::Direction::SendRecv);
    assert!(wait_until(Duration::from_secs(10), || b.seen.len() >= held + 10).await);
    let events = b.drain_events();
    let stats_a = a.session.stop().await;
    let stats_b = b.session.stop().await;
    assert!(
        events.iter().any(|e| matches!(e, VideoEvent::RtpResumed)),
        "{events:?}"
    );
    assert!(stats_a.keyframes_sent >= 2, "{stats_a:?}");
    let seen = b.seen.snapshot();
    let counters = counters(&seen);
    assert_increasing(&counters);
    assert_eq!(stats_b.decode_errors, 0);
}

/// A pattern source that takes 150 ms per frame while claiming 30 fps.
struct SlowSource(tandem_video::source::PatternSource);

impl tandem_video::source::VideoSource for SlowSource {
    fn next_frame(
        &mut self,
    ) -> Result<tandem_video::frame::VideoFrame, tandem_video::source::SourceError> {
        std::thread::sleep(Duration::from_millis(150));
        self.0.next_frame()
    }

    fn size(&self) -> (u32, u32) {
        self.0.size()
    }

    fn fps(&self) -> u32 {
        30
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_source_skips_frames_instead_of_queueing_them() {
    let _serial = SERIAL.lock().await;
    let (sa, addr_a) = bind().await;
    let (sb, addr_b) = bind().await;
    let (mut cfg_a, seen_a) = config(sa, addr_b, VideoCodecKind::Vp8, SIZE, MediaSecurity::Plain);
    cfg_a.send.as_mut().unwrap().source = Box::new(SlowSource(
        tandem_video::source::PatternSource::new(320, 240, 30).unwrap(),
    ));
    let (mut cfg_b, seen_b) = config(sb, addr_a, VideoCodecKind::Vp8, SIZE, MediaSecurity::Plain);
    cfg_b.send = None;
    let b = start(cfg_b, seen_b);
    let a = start(cfg_a, seen_a);
    let started = std::time::Instant::now();
    assert!(wait_until(Duration::from_secs(15), || b.seen.len() >= 12).await);
    let elapsed = started.elapsed();
    let stats_a = a.session.stop().await;
    b.session.stop().await;
    // About 6-7 frames a second get through; the ticks in between are skipped, not queued.
    assert!(stats_a.frames_skipped >= stats_a.frames_sent, "{stats_a:?}");
    let max_frames = (elapsed.as_secs_f64() * 7.0).ceil() as u64 + 2;
    assert!(
        stats_a.frames_sent <= max_frames,
        "{stats_a:?} in {elapsed:?}"
    );
    assert_increasing(&counters(&b.seen.snapshot()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_feedback_gets_periodic_keyframes_and_no_feedback() {
    let _serial = SERIAL.lock().await;
    let none = tandem_proto::sdp::video::VideoFeedback::default();
    let (sa, addr_a) = bind().await;
    let (sb, addr_b) = bind().await;
    let (mut cfg_a, seen_a) = config(sa, addr_b, VideoCodecKind::H264, SIZE, MediaSecurity::Plain);
    cfg_a.feedback = none;
    let (mut cfg_b, seen_b) = config(sb, addr_a, VideoCodecKind::H264, SIZE, MediaSecurity::Plain);
    cfg_b.feedback = none;
    cfg_b.send = None;
    let b = start(cfg_b, seen_b);
    let a = start(cfg_a, seen_a);
    let periodic = wait_until(Duration::from_secs(12), || {
        a.session.stats().keyframes_sent >= 3
    })
    .await;
    let stats_a = a.session.stop().await;
    let stats_b = b.session.stop().await;
    assert!(periodic, "{stats_a:?}");
    assert!(stats_b.keyframes_received >= 2, "{stats_b:?}");
    assert_eq!(
        stats_b.nacks_sent + stats_b.plis_sent + stats_b.firs_sent,
        0
    );
    assert_eq!(stats_b.remb_sent_bps, 0);
    assert_eq!(stats_a.plis_received + stats_a.nacks_received, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtls_with_a_wrong_fingerprint_fails_and_sends_no_media() {
    let _serial = SERIAL.lock().await;
    let cert_a = DtlsCertificate::generate().unwrap();
    let cert_b = DtlsCertificate::generate().unwrap();
    let stranger = DtlsCertificate::generate().unwrap();
    let (sa, addr_a) = bind().await;
    let (sb, addr_b) = bind().await;
    let (mut cfg_a, seen_a) = config(
        sa,
        addr_b,
        VideoCodecKind::Vp8,
        SIZE,
        MediaSecurity::Dtls {
            role: DtlsRole::Client,
            remote_fingerprint: cert_b.fingerprint(),
            cert: cert_a,
        },
    );
    let (mut cfg_b, seen_b) = config(
        sb,
        addr_a,
        VideoCodecKind::Vp8,
        SIZE,
        MediaSecurity::Dtls {
            role: DtlsRole::Server,
            // B expects someone else: it must refuse A.
            remote_fingerprint: stranger.fingerprint(),
            cert: cert_b,
        },
    );
    cfg_a.dtls_timeout = Duration::from_secs(3);
    cfg_b.dtls_timeout = Duration::from_secs(3);
    let mut b = start(cfg_b, seen_b);
    let mut a = start(cfg_a, seen_a);
    let mut failed = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !failed {
        match tokio::time::timeout_at(deadline, b.events.recv()).await {
            Ok(Some(VideoEvent::SecurityFailed(_))) => failed = true,
            Ok(Some(VideoEvent::Secure(true))) => panic!("B accepted the wrong certificate"),
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events_a = a.drain_events();
    let stats_a = a.session.stop().await;
    let stats_b = b.session.stop().await;
    assert!(failed, "{stats_b:?}");
    for stats in [&stats_a, &stats_b] {
        assert_eq!(stats.packets_sent, 0, "{stats:?}");
        assert_eq!(stats.frames_decoded, 0);
        assert!(!stats.srtp);
    }
    assert!(
        !events_a
            .iter()
            .any(|e| matches!(e, VideoEvent::Secure(false))),
        "{events_a:?}"
    );
}
