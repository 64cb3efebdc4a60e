//! Two video sessions through a lossy UDP forwarder (seeded random loss both ways, plus a
//! 2.5-second blackout): the frame counter keeps advancing, NACKs are answered with
//! retransmissions, the blackout is repaired with PLI and a keyframe.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

mod session_support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use session_support::*;
use tandem_media::session::MediaSecurity;
use tandem_proto::sdp::video::VideoFeedback;
use tandem_video::codec::VideoCodecKind;
use tandem_video::session::VideoStats;

const RUN: Duration = Duration::from_secs(11);
/// Longer than the sender keeps packets for retransmission (2 s): only a keyframe repairs it.
const BLACKOUT: (Duration, Duration) = (Duration::from_secs(4), Duration::from_millis(6500));

/// Checks one receiving side: counters in order, advancing after the blackout to near the end.
fn check_side(side: &str, seen: &[Seen], start: Instant, end: Instant, rx: &VideoStats) {
    let counters = counters(seen);
    assert!(
        counters.len() >= 40,
        "{side}: {} counters, {rx:?}",
        counters.len()
    );
    assert_increasing(&counters);
    let dark_from = start + BLACKOUT.0;
    let before = seen
        .iter()
        .filter(|s| s.at < dark_from)
        .filter_map(|s| s.counter)
        .max()
        .unwrap_or_else(|| panic!("{side}: nothing before the blackout: {rx:?}"));
    // Video came back after the blackout, with newer frames, and kept coming to the end.
    let after: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.at >= start + BLACKOUT.1 && s.counter.is_some_and(|c| c > before))
        .collect();
    assert!(
        after.len() >= 15,
        "{side}: {} frames after the blackout, {rx:?}",
        after.len()
    );
    let last = seen.last().unwrap();
    assert!(
        end.saturating_duration_since(last.at) < Duration::from_millis(2500),
        "{side}: the last frame came {:?} before the end, {rx:?}",
        end.saturating_duration_since(last.at)
    );
    assert!(rx.nacks_sent > 0 && rx.nacked_packets > 0, "{side}: {rx:?}");
    assert!(
        rx.plis_sent > 0,
        "{side}: no PLI after the blackout: {rx:?}"
    );
    assert!(rx.packets_lost >= 0);
}

async fn lossy_call(kind: VideoCodecKind, seed: u64, security: (MediaSecurity, MediaSecurity)) {
    let (sa, addr_a) = bind().await;
    let (sb, addr_b) = bind().await;
    let fwd = Forwarder::start(addr_a, addr_b, 0.04, seed, Some(BLACKOUT)).await;
    let (cfg_a, seen_a) = config(sa, fwd.for_a, kind, SIZE, security.0);
    let (cfg_b, seen_b) = config(sb, fwd.for_b, kind, SIZE, security.1);
    let start = Instant::now();
    let b = session_support::start(cfg_b, seen_b);
    let a = session_support::start(cfg_a, seen_a);
    tokio::time::sleep(RUN).await;
    let end = Instant::now();
    let stats_a = a.session.stop().await;
    let stats_b = b.session.stop().await;
    assert!(fwd.dropped.load(Ordering::Relaxed) > 20);
    check_side("A", &a.seen.snapshot(), start, end, &stats_a);
    check_side("B", &b.seen.snapshot(), start, end, &stats_b);
    for (side, tx) in [("A", &stats_a), ("B", &stats_b)] {
        assert!(tx.nacks_received > 0, "{side}: {tx:?}");
        assert!(tx.retransmissions > 0, "{side}: {tx:?}");
        assert!(tx.plis_received > 0, "{side}: {tx:?}");
        // The first keyframe and at least one for the blackout.
        assert!(tx.keyframes_sent >= 2, "{side}: {tx:?}");
        assert!(tx.remote_loss_percent.is_some(), "{side}: {tx:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vp8_recovers_from_loss_and_a_blackout() {
    let _serial = SERIAL.lock().await;
    lossy_call(
        VideoCodecKind::Vp8,
        7,
        (MediaSecurity::Plain, MediaSecurity::Plain),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_recovers_from_loss_and_a_blackout() {
    let _serial = SERIAL.lock().await;
    lossy_call(
        VideoCodecKind::H264,
        11,
        (MediaSecurity::Plain, MediaSecurity::Plain),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vp8_over_srtp_recovers_with_retransmitted_srtp_packets() {
    let _serial = SERIAL.lock().await;
    let (sec_a, sec_b) = sdes_pair();
    lossy_call(VideoCodecKind::Vp8, 13, (sec_a, sec_b)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_loss_lowers_the_bitrate_and_halves_a_large_picture() {
    let _serial = SERIAL.lock().await;
    let (sa, addr_a) = bind().await;
    let (sb, addr_b) = bind().await;
    // 30 % loss: the loss controller backs off to its floor.
    let fwd = Forwarder::start(addr_a, addr_b, 0.30, 3, None).await;
    let (mut cfg_a, seen_a) = config(
        sa,
        fwd.for_a,
        VideoCodecKind::Vp8,
        (640, 480, 10),
        MediaSecurity::Plain,
    );
    cfg_a.send.as_mut().unwrap().start_bitrate_bps = 300_000;
    cfg_a.report_interval = Duration::from_millis(200);
    let (mut cfg_b, seen_b) = config(
        sb,
        fwd.for_b,
        VideoCodecKind::Vp8,
        (640, 480, 10),
        MediaSecurity::Plain,
    );
    cfg_b.send = None;
    cfg_b.report_interval = Duration::from_millis(200);
    let b = session_support::start(cfg_b, seen_b);
    let a = session_support::start(cfg_a, seen_a);
    let halved = wait_until(Duration::from_secs(15), || {
        let s = a.session.stats();
        s.downscales > 0 && s.send_width == 320
    })
    .await;
    let stats_a = a.session.stop().await;
    b.session.stop().await;
    assert!(halved, "{stats_a:?}");
    assert!(stats_a.target_bitrate_bps < 150_000, "{stats_a:?}");
    assert_eq!(stats_a.send_height, 240);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fir_only_peer_gets_fir_and_no_nacks() {
    let _serial = SERIAL.lock().await;
    let (sa, addr_a) = bind().await;
    let (sb, addr_b) = bind().await;
    // No random loss, a 2.5-second blackout: only a keyframe request repairs it.
    let fwd = Forwarder::start(addr_a, addr_b, 0.0, 5, Some(BLACKOUT)).await;
    let fir_only = VideoFeedback {
        nack: false,
        pli: false,
        fir: true,
        remb: false,
    };
    let (mut cfg_a, seen_a) = config(
        sa,
        fwd.for_a,
        VideoCodecKind::Vp8,
        SIZE,
        MediaSecurity::Plain,
    );
    cfg_a.feedback = fir_only;
    let (mut cfg_b, seen_b) = config(
        sb,
        fwd.for_b,
        VideoCodecKind::Vp8,
        SIZE,
        MediaSecurity::Plain,
    );
    cfg_b.feedback = fir_only;
    cfg_b.send = None;
    let start = Instant::now();
    let b = session_support::start(cfg_b, seen_b);
    let a = session_support::start(cfg_a, seen_a);
    let back = wait_until(RUN, || {
        b.seen
            .snapshot()
            .iter()
            .filter(|s| s.at >= start + BLACKOUT.1)
            .count()
            >= 15
    })
    .await;
    let stats_a = a.session.stop().await;
    let stats_b = b.session.stop().await;
    assert!(back, "{stats_b:?}");
    assert!(
        stats_b.firs_sent > 0 && stats_b.plis_sent == 0,
        "{stats_b:?}"
    );
    assert_eq!(stats_b.nacks_sent, 0);
    assert_eq!(stats_b.remb_sent_bps, 0);
    assert!(
        stats_a.firs_received > 0 && stats_a.plis_received == 0,
        "{stats_a:?}"
    );
    assert!(stats_a.keyframes_sent >= 2);
    assert_increasing(&counters(&b.seen.snapshot()));
}
