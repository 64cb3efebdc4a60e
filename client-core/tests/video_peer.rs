//! "Bob turned on video": the peer adds video to an audio call between two Tandem user
//! agents through an in-process `tandem-lab`. The re-INVITE is answered at once per the
//! callee's `VideoPolicy`: receive-only when something shows the video (a frame receiver or a
//! recording), port 0 under `never`; a `VideoNotice::PeerOffered` tells the application, and
//! turning the camera on afterwards re-offers the video with both sending.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use tandem_client_core::{
    Call, CallEvent, MediaOptions, VideoNotice, VideoOptions, VideoPolicy, VideoSourceSpec,
};
use tandem_proto::sdp::{MediaDescription, SessionDescription};
use tandem_video::counter::read_counter;
use tandem_video::y4m::open_y4m;

mod common;

use common::{Lab, Phone, audio, first_frame, hang_up, video_notice};

const W: u32 = 160;
const H: u32 = 120;
const FPS: u32 = 15;

fn pattern() -> VideoSourceSpec {
    VideoSourceSpec::Pattern {
        width: W,
        height: H,
        fps: FPS,
    }
}

/// Audio-only at the start; video options for when the peer adds video.
fn later_video(policy: VideoPolicy, record: Option<&Path>) -> MediaOptions {
    MediaOptions {
        video: Some(VideoOptions {
            offer: false,
            policy,
            source: pattern(),
            record: record.map(Path::to_path_buf),
            codecs: vec!["VP8".into()],
            ..VideoOptions::default()
        }),
        ..audio()
    }
}

async fn peer_offered(call: &mut Call) -> (bool, bool) {
    match video_notice(call, |n| matches!(n, VideoNotice::PeerOffered { .. })).await {
        VideoNotice::PeerOffered { receiving, ask } => (receiving, ask),
        _ => unreachable!(),
    }
}

async fn answered(call: &mut Call) {
    common::wait_for(Duration::from_secs(20), call, |e| {
        matches!(e, CallEvent::Answered { .. })
    })
    .await;
}

fn video_line(sdp: &SessionDescription) -> &MediaDescription {
    sdp.media
        .iter()
        .find(|m| m.media == "video")
        .expect("an m=video line")
}

fn has(m: &MediaDescription, attr: &str) -> bool {
    m.attributes.iter().any(|a| a.name == attr)
}

/// Audio keeps flowing to `call`.
async fn audio_flows(call: &Call) {
    let before = call.quality().packets_received;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(call.quality().packets_received > before, "audio stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_video_is_received_at_once_then_the_camera_is_turned_on() {
    let lab = Lab::start_with(|_| {}).await;
    let alice = Phone::new(lab.account("alice")).await;
    let mut bob = Phone::new(lab.account("bob")).await;
    let mut a = alice.call("bob", audio()).await;
    // Bob answers audio only, with the default policy (ask), and shows video (a receiver).
    let mut b = bob.answer(audio()).await;
    let frames = b.video_frames();
    answered(&mut a).await;
    assert_eq!(b.media().local_sdp.unwrap().media.len(), 1);

    // Alice turns on video: Bob's side answers receive-only at once.
    a.set_camera(Some(pattern())).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), a.set_video(true))
        .await
        .expect("the re-INVITE was held waiting")
        .unwrap();
    assert_eq!(peer_offered(&mut b).await, (true, true));
    let answer = b.media().local_sdp.unwrap();
    let line = video_line(&answer);
    assert_ne!(line.port, 0, "{answer}");
    assert!(has(line, "recvonly"), "{answer}");
    match video_notice(&mut b, |n| matches!(n, VideoNotice::Started { .. })).await {
        VideoNotice::Started { send, recv, .. } => {
            assert!(send.is_none() && recv, "{send:?} {recv}");
        }
        _ => unreachable!(),
    }
    assert_eq!(first_frame(&mut b).await, (W, H));
    let frame = frames.borrow().clone().expect("a picture to show");
    assert_eq!((frame.width, frame.height), (W, H));
    let neg = a.media().video.expect("Alice's video is negotiated");
    assert!(
        neg.direction.sends() && !neg.direction.receives(),
        "{neg:?}"
    );
    assert!(
        b.local_video_frames().borrow().is_none(),
        "Bob sends nothing yet"
    );

    // Alice turns her video off and on again: Bob is asked again.
    a.set_video(false).await.unwrap();
    video_notice(&mut b, |n| matches!(n, VideoNotice::Stopped(_))).await;
    assert!(b.media().video.is_none());
    a.set_video(true).await.unwrap();
    assert_eq!(peer_offered(&mut b).await, (true, true));
    assert_eq!(first_frame(&mut b).await, (W, H));

    // Bob turns his camera on: his re-INVITE makes the video two-way.
    b.set_camera(Some(pattern())).await.unwrap();
    let offer = b.media().local_sdp.unwrap();
    let line = video_line(&offer);
    assert!(!has(line, "recvonly") && !has(line, "sendonly"), "{offer}");
    assert_eq!(first_frame(&mut a).await, (W, H));
    let neg = b.media().video.unwrap();
    assert!(neg.direction.sends() && neg.direction.receives(), "{neg:?}");
    audio_flows(&a).await;
    hang_up(&mut a, &mut b).await;
    let stats = b.video_stats().unwrap();
    assert!(
        stats.frames_decoded > 0 && stats.frames_sent > 0,
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_declines_the_peer_video_and_audio_goes_on() {
    let lab = Lab::start_with(|_| {}).await;
    let alice = Phone::new(lab.account("alice")).await;
    let mut bob = Phone::new(lab.account("bob")).await;
    let mut a = alice.call("bob", audio()).await;
    let mut b = bob.answer(later_video(VideoPolicy::Never, None)).await;
    let _frames = b.video_frames();
    answered(&mut a).await;
    a.set_camera(Some(pattern())).await.unwrap();
    let err = a.set_video(true).await.unwrap_err();
    assert!(err.to_string().contains("declined"), "{err}");
    assert_eq!(peer_offered(&mut b).await, (false, false));
    let answer = b.media().local_sdp.unwrap();
    assert_eq!(video_line(&answer).port, 0, "{answer}");
    assert!(b.media().video.is_none());
    audio_flows(&b).await;
    hang_up(&mut a, &mut b).await;
    assert!(b.video_stats().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_policy_records_the_peer_video_without_asking() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("bob.y4m");
    let lab = Lab::start_with(|_| {}).await;
    let alice = Phone::new(lab.account("alice")).await;
    let mut bob = Phone::new(lab.account("bob")).await;
    let mut a = alice.call("bob", audio()).await;
    // No frame receiver: the recording is what shows the video.
    let mut b = bob
        .answer(later_video(VideoPolicy::Receive, Some(&rec)))
        .await;
    answered(&mut a).await;
    assert_eq!(
        b.media().local_sdp.unwrap().media.len(),
        1,
        "no video offered"
    );
    a.set_camera(Some(pattern())).await.unwrap();
    a.set_video(true).await.unwrap();
    assert_eq!(peer_offered(&mut b).await, (true, false));
    assert_eq!(first_frame(&mut b).await, (W, H));
    tokio::time::sleep(Duration::from_secs(2)).await;
    hang_up(&mut a, &mut b).await;
    let mut reader = open_y4m(&rec).unwrap();
    let mut read = Vec::new();
    while let Some(frame) = reader.read_frame().unwrap() {
        read.extend(read_counter(&frame));
    }
    assert!(read.len() >= 15, "{} readable frames recorded", read.len());
    assert!(read.windows(2).all(|w| w[1] >= w[0]), "{read:?}");
    assert!(
        read.last().unwrap() - read.first().unwrap() >= 15,
        "{read:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_without_a_picture_declines_until_the_user_turns_the_camera_on() {
    let lab = Lab::start_with(|_| {}).await;
    let alice = Phone::new(lab.account("alice")).await;
    let mut bob = Phone::new(lab.account("bob")).await;
    let mut a = alice.call("bob", audio()).await;
    // Nothing shows video on Bob's side: the offer is declined, Bob is asked.
    let mut b = bob.answer(later_video(VideoPolicy::Ask, None)).await;
    answered(&mut a).await;
    a.set_camera(Some(pattern())).await.unwrap();
    assert!(a.set_video(true).await.is_err());
    assert_eq!(peer_offered(&mut b).await, (false, true));
    // Bob says yes: two-way video by his re-INVITE.
    b.set_video(true).await.unwrap();
    assert_eq!(first_frame(&mut a).await, (W, H));
    assert_eq!(first_frame(&mut b).await, (W, H));
    hang_up(&mut a, &mut b).await;
}
