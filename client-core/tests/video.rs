//! Video calls between two Tandem user agents through an in-process `tandem-lab` on loopback:
//! VP8 and H.264 both ways with the pattern's frame counter checked in both recordings, an
//! audio call upgraded to video by re-INVITE and back (the m-line kept with port 0), a peer
//! without video declining it (the call goes on with audio), SDES-SRTP and DTLS-SRTP video.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use tandem_client_core::types::SrtpPolicy;
use tandem_client_core::{
    Call, CallEvent, MediaOptions, SrtpKeying, VideoNotice, VideoOptions, VideoSourceSpec,
    VideoStats,
};
use tandem_proto::sdp::SessionDescription;
use tandem_video::counter::read_counter;
use tandem_video::y4m::open_y4m;

mod common;

use common::{Lab, Phone, audio, first_frame, hang_up, video_notice};

/// The pattern both sides send: the smallest size whose frame counter survives coding.
const W: u32 = 160;
const H: u32 = 120;
const FPS: u32 = 15;

fn video(codec: &str, record: Option<PathBuf>) -> VideoOptions {
    VideoOptions {
        source: VideoSourceSpec::Pattern {
            width: W,
            height: H,
            fps: FPS,
        },
        record,
        codecs: vec![codec.to_string()],
        ..VideoOptions::default()
    }
}

fn with_video(v: VideoOptions) -> MediaOptions {
    MediaOptions {
        video: Some(v),
        ..audio()
    }
}

async fn started(call: &mut Call) -> VideoNotice {
    video_notice(call, |n| matches!(n, VideoNotice::Started { .. })).await
}

async fn stopped(call: &mut Call) -> VideoStats {
    match video_notice(call, |n| matches!(n, VideoNotice::Stopped(_))).await {
        VideoNotice::Stopped(s) => s,
        _ => unreachable!(),
    }
}

/// The frame counters read from a Y4M recording (`None` where unreadable).
fn counters(path: &Path) -> Vec<Option<u32>> {
    let mut reader = open_y4m(path).unwrap();
    assert_eq!((reader.header().width, reader.header().height), (W, H));
    let mut out = Vec::new();
    while let Some(frame) = reader.read_frame().unwrap() {
        out.push(read_counter(&frame));
    }
    out
}

/// The recording holds about `secs` of the pattern, the counter readable on most frames and
/// advancing (never backwards).
fn assert_recording(path: &Path, secs: u32, who: &str) {
    let counters = counters(path);
    let min = (FPS * secs * 6 / 10) as usize;
    assert!(
        counters.len() >= min,
        "{who}: {} frames recorded, expected at least {min}",
        counters.len()
    );
    let read: Vec<u32> = counters.iter().flatten().copied().collect();
    assert!(
        read.len() * 10 >= counters.len() * 8,
        "{who}: counter readable on {} of {} frames",
        read.len(),
        counters.len()
    );
    assert!(
        read.windows(2).all(|w| w[1] >= w[0]),
        "{who}: the counter went backwards: {read:?}"
    );
    let span = read.last().unwrap() - read.first().unwrap();
    assert!(
        span as usize >= min,
        "{who}: the counter advanced by {span}, expected at least {min}: {read:?}"
    );
}

fn video_line(sdp: &SessionDescription) -> &tandem_proto::sdp::MediaDescription {
    sdp.media
        .iter()
        .find(|m| m.media == "video")
        .expect("an m=video line")
}

async fn two_way_video(codec: &str) {
    let lab = Lab::start_with(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let alice_rec = dir.path().join("alice.y4m");
    let bob_rec = dir.path().join("bob.y4m");
    let alice = Phone::new(lab.account("alice")).await;
    let mut bob = Phone::new(lab.account("bob")).await;
    let mut a = alice
        .call("bob", with_video(video(codec, Some(alice_rec.clone()))))
        .await;
    let mut b = bob
        .answer(with_video(video(codec, Some(bob_rec.clone()))))
        .await;
    let frames_rx = a.video_frames();
    for (call, who) in [(&mut a, "alice"), (&mut b, "bob")] {
        match started(call).await {
            VideoNotice::Started {
                codec: c,
                send,
                recv,
                secure,
                ..
            } => {
                assert_eq!(c, codec, "{who}");
                assert_eq!(send, Some((W, H, FPS)), "{who}");
                assert!(recv, "{who}");
                assert!(!secure, "{who}");
            }
            _ => unreachable!(),
        }
        assert_eq!(first_frame(call).await, (W, H), "{who}");
    }
    let negotiated = a.media().video.expect("negotiated video");
    assert_eq!(
        negotiated.send.as_ref().map(|c| c.kind_name.as_str()),
        Some(codec)
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    // The app's latest frame: the peer's pattern at its size.
    let latest = frames_rx
        .borrow()
        .clone()
        .expect("a decoded frame for the app");
    assert_eq!((latest.width, latest.height), (W, H));
    assert!(read_counter(&latest).is_some());
    hang_up(&mut a, &mut b).await;
    for (call, rec, who) in [(&a, &alice_rec, "alice"), (&b, &bob_rec, "bob")] {
        let stats = call.video_stats().expect("video stats");
        assert!(stats.frames_sent >= u64::from(FPS * 3), "{who}: {stats:?}");
        assert!(
            stats.frames_decoded >= u64::from(FPS * 3),
            "{who}: {stats:?}"
        );
        assert_eq!(stats.decode_errors, 0, "{who}: {stats:?}");
        assert_recording(rec, 4, who);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vp8_video_both_ways_through_the_lab() {
    two_way_video("VP8").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_video_both_ways_through_the_lab() {
    two_way_video("H264").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_call_upgraded_to_video_and_back() {
    let lab = Lab::start_with(|_| {}).await;
    let alice = Phone::new(lab.account("alice")).await;
    let mut bob = Phone::new(lab.account("bob")).await;
    // Alice calls without video; Bob would take video (his options have it).
    let mut a = alice.call("bob", audio()).await;
    let mut b = bob.answer(with_video(video("VP8", None))).await;
    common::wait_for(Duration::from_secs(20), &mut a, |e| {
        matches!(e, CallEvent::Answered { .. })
    })
    .await;
    let offer = a.media().local_sdp.unwrap();
    assert_eq!(offer.media.len(), 1, "no video offered: {offer}");
    assert!(a.video_stats().is_none());

    // Upgrade: Alice sends the default pattern (320x240@15) and receives Bob's.
    a.set_camera(Some(VideoSourceSpec::Pattern {
        width: W,
        height: H,
        fps: FPS,
    }))
    .await
    .unwrap();
    a.set_video(true).await.unwrap();
    let offer = a.media().local_sdp.unwrap();
    assert_eq!(offer.media.len(), 2, "{offer}");
    assert_ne!(video_line(&offer).port, 0);
    for call in [&mut a, &mut b] {
        started(call).await;
        assert_eq!(first_frame(call).await, (W, H));
    }
    // Hold keeps the video line (RFC 3264 §8) and holds it too.
    a.hold().await.unwrap();
    let held = a.media().local_sdp.unwrap();
    assert_eq!(held.media.len(), 2, "{held}");
    assert!(
        video_line(&held)
            .attributes
            .iter()
            .any(|x| x.name == "inactive"),
        "{held}"
    );
    a.resume().await.unwrap();

    // Downgrade: port 0 for video, the line stays; both video sessions stop, audio goes on.
    a.set_video(false).await.unwrap();
    let offer = a.media().local_sdp.unwrap();
    assert_eq!(offer.media.len(), 2, "{offer}");
    assert_eq!(video_line(&offer).port, 0, "{offer}");
    let sa = stopped(&mut a).await;
    let sb = stopped(&mut b).await;
    assert!(
        sa.frames_decoded > 0 && sb.frames_decoded > 0,
        "{sa:?} {sb:?}"
    );
    assert!(a.media().video.is_none() && b.media().video.is_none());
    let before = a.quality().packets_received;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(a.quality().packets_received > before, "audio stopped");
    // A later re-offer (Bob holds) keeps both lines, video still off.
    b.hold().await.unwrap();
    let offer = b.media().local_sdp.unwrap();
    assert_eq!(offer.media.len(), 2, "{offer}");
    assert_eq!(video_line(&offer).port, 0, "{offer}");
    b.resume().await.unwrap();
    // Alice turned video off: Bob's upgrade is declined, the call goes on.
    let err = b.set_video(true).await.unwrap_err();
    assert!(err.to_string().contains("declined"), "{err}");
    video_notice(&mut b, |n| matches!(n, VideoNotice::Rejected(_))).await;
    // Alice turns it on again; Bob (who wants video) accepts.
    a.set_video(true).await.unwrap();
    for call in [&mut a, &mut b] {
        started(call).await;
        assert_eq!(first_frame(call).await, (W, H));
    }
    hang_up(&mut a, &mut b).await;
    assert!(a.video_stats().unwrap().frames_decoded >= sa.frames_decoded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_video_declines_it_and_audio_goes_on() {
    let lab = Lab::start_with(|_| {}).await;
    let alice = Phone::new(lab.account("alice")).await;
    let mut bob = Phone::new(lab.account("bob")).await;
    let mut a = alice.call("bob", with_video(video("VP8", None))).await;
    let mut b = bob.answer(audio()).await;
    let notice = video_notice(&mut a, |n| matches!(n, VideoNotice::Rejected(_))).await;
    assert!(matches!(notice, VideoNotice::Rejected(_)));
    let answer = b.media().local_sdp.unwrap();
    assert_eq!(answer.media.len(), 2, "{answer}");
    assert_eq!(video_line(&answer).port, 0, "{answer}");
    assert!(a.media().video.is_none());
    common::wait_for(
        Duration::from_secs(20),
        &mut a,
        |e| matches!(e, CallEvent::Quality(q) if q.packets_received > 20),
    )
    .await;
    // Asking again: the peer declines again, the call goes on.
    let err = a.set_video(true).await.unwrap_err();
    assert!(err.to_string().contains("declined"), "{err}");
    common::wait_for(Duration::from_secs(20), &mut a, |e| {
        matches!(e, CallEvent::Video(VideoNotice::Rejected(_)))
    })
    .await;
    let before = a.quality().packets_received;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(a.quality().packets_received > before);
    hang_up(&mut a, &mut b).await;
    assert!(a.video_stats().is_none());
}

async fn secure_video(keying: SrtpKeying) {
    let lab = Lab::start_with(|_| {}).await;
    let mut alice_acc = lab.account("alice");
    let mut bob_acc = lab.account("bob");
    for acc in [&mut alice_acc, &mut bob_acc] {
        acc.srtp = SrtpPolicy::Mandatory;
        acc.srtp_keying = keying;
    }
    let alice = Phone::new(alice_acc).await;
    let mut bob = Phone::new(bob_acc).await;
    let mut a = alice.call("bob", with_video(video("VP8", None))).await;
    let mut b = bob.answer(with_video(video("VP8", None))).await;
    for call in [&mut a, &mut b] {
        match started(call).await {
            VideoNotice::Started { secure, .. } => assert!(secure, "{keying:?}"),
            _ => unreachable!(),
        }
        assert_eq!(first_frame(call).await, (W, H));
    }
    let offer = a.media().local_sdp.unwrap();
    let audio_line = &offer.media[0];
    let video = video_line(&offer);
    match keying {
        SrtpKeying::Sdes => {
            assert_eq!(video.protocol, "RTP/SAVP");
            let keys = |m: &tandem_proto::sdp::MediaDescription| -> Vec<String> {
                m.attributes
                    .iter()
                    .filter(|x| x.name == "crypto")
                    .filter_map(|x| x.value.clone())
                    .collect()
            };
            assert!(!keys(video).is_empty());
            assert!(
                keys(video).iter().all(|k| !keys(audio_line).contains(k)),
                "video must have its own SDES keys: {offer}"
            );
        }
        _ => {
            assert_eq!(video.protocol, "UDP/TLS/RTP/SAVP");
            let fp = |m: &tandem_proto::sdp::MediaDescription| {
                m.attributes
                    .iter()
                    .find(|x| x.name == "fingerprint")
                    .and_then(|x| x.value.clone())
            };
            assert_eq!(fp(video), fp(audio_line), "the call's one certificate");
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    hang_up(&mut a, &mut b).await;
    let stats = b.video_stats().unwrap();
    assert!(stats.frames_decoded >= u64::from(FPS), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdes_srtp_video() {
    secure_video(SrtpKeying::Sdes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtls_srtp_video() {
    secure_video(SrtpKeying::Dtls).await;
}
