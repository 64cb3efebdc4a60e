//! Video calls through the app API, between two accounts of one app on its bundled lab server:
//! cameras (the test pattern and `.y4m` files), a video call answered with video, the pictures
//! served to the ui (both ends, peer and self view), camera off, downgrade and upgrade.
//! Runs inside a private kernel keyring session (`keyctl session`), like `app_state`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use tandem_app::AppState;
use tandem_app::types::*;
use tandem_app::video::{FrameHeader, PixelFormat};
use tandem_video::source::{PatternSource, VideoSource};
use tokio::sync::broadcast;

use common::in_keyring_session;

/// A keyring service name of this test process alone: the kernel's persistent keyring is
/// shared by every session of the user, so tests running side by side must not share names.
fn service() -> String {
    format!("tandem-video-test-{}", std::process::id())
}

/// Removes every password a test may have stored.
fn forget_secrets() {
    common::forget_secrets(&service())
}

fn open(dir: &std::path::Path) -> AppState {
    common::open(dir, &service(), "tone:440")
}

/// Asks for pictures of `call`'s `stream` until one comes (as the ui does); its header.
async fn picture(app: &AppState, call: &str, stream: &str) -> FrameHeader {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let reply = app
            .video_frame(&format!("/{call}/{stream}"), Some("after=0&format=i420"))
            .await;
        if reply.status == 200 {
            let header = FrameHeader::parse(&reply.body).unwrap();
            assert_eq!(header.format, PixelFormat::I420);
            return header;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {stream} picture for {call}: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for the next incoming call of `account`.
async fn incoming(rx: &mut broadcast::Receiver<AppEvent>, account: &str) -> CallInfo {
    common::wait_for(
        Duration::from_secs(15),
        rx,
        "an incoming call",
        |e| match e {
            AppEvent::Call { call }
                if call.account_id == account && call.phase == CallPhase::Incoming =>
            {
                Some(call.clone())
            }
            _ => None,
        },
    )
    .await
}

/// `GET path` against the dev server at `addr`: (status, body).
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let mut body = answer[split + 4..].to_vec();
    if chunked {
        // Undo the chunked coding: size line, data, CRLF, … up to the 0-size chunk.
        let mut plain = Vec::new();
        let mut rest = &body[..];
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16)
                    .unwrap();
            if size == 0 {
                break;
            }
            plain.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            rest = &rest[line_end + 2 + size + 2..];
        }
        body = plain;
    }
    (status, body)
}

const ALICE: &str = "alice@tandem.lab";
const BOB: &str = "bob@tandem.lab";

/// Alice calls bob (with `video` as asked): the call at alice's end and the one ringing at bob's.
async fn alice_calls_bob(
    app: &AppState,
    rx: &mut broadcast::Receiver<AppEvent>,
    video: Option<bool>,
) -> (CallInfo, CallInfo) {
    let placed = app
        .call(CallRequest {
            account_id: ALICE.into(),
            target: "bob".into(),
            video,
        })
        .await
        .unwrap();
    let ringing = incoming(rx, BOB).await;
    (placed, ringing)
}

/// Waits up to 15 s until the call `id` is as `pred` wants (`what` names it on a time-out).
async fn until(app: &AppState, id: &str, what: &str, pred: impl Fn(&CallInfo) -> bool) {
    common::wait_call(Duration::from_secs(15), app, id, what, pred).await;
}

async fn all_ended(app: &AppState) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !app.list_calls().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "calls did not end");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn video_flow() {
    let dir = tempfile::tempdir().unwrap();
    let app = open(dir.path());
    let mut rx = app.subscribe();
    app.start_bundled_lab().await.unwrap();
    app.register("bob@tandem.lab").await.unwrap();

    // Cameras: the pattern, and the .y4m files of the videos folder (a bad one is left out).
    let cameras = app.list_cameras();
    assert_eq!(cameras.current.as_deref(), Some("pattern"));
    assert_eq!(cameras.available[0].id, "pattern");
    let videos = dir.path().join("videos");
    std::fs::create_dir_all(&videos).unwrap();
    let clip = videos.join("clip.y4m");
    let mut source = PatternSource::new(176, 144, 10).unwrap();
    let mut writer = tandem_video::y4m::create_y4m(&clip, 10).unwrap();
    for _ in 0..5 {
        writer.write_frame(&source.next_frame().unwrap()).unwrap();
    }
    writer.finish().unwrap();
    std::fs::write(videos.join("broken.y4m"), b"not a video").unwrap();
    let cameras = app.list_cameras();
    assert_eq!(cameras.folder, videos.display().to_string());
    // The cameras of the machine running the test (if any) come between the two.
    let ids: Vec<&str> = cameras
        .available
        .iter()
        .filter(|c| c.kind != CameraKind::Device)
        .map(|c| c.id.as_str())
        .collect();
    let clip_id = format!("file:{}", clip.display());
    assert_eq!(ids, ["pattern", clip_id.as_str()]);
    let file = cameras.available.iter().find(|c| c.id == clip_id).unwrap();
    assert_eq!(file.kind, CameraKind::File);
    assert_eq!(
        file.size,
        Some(VideoSize {
            width: 176,
            height: 144,
            fps: Some(10)
        })
    );
    let bad = app.choose_camera(Some(&format!(
        "file:{}",
        videos.join("broken.y4m").display()
    )));
    assert_eq!(bad.unwrap_err().kind, FailureKind::Settings);
    assert!(app.choose_camera(Some("v4l2:/dev/video0")).is_err());
    // The choice is remembered across restarts of the app state.
    app.choose_camera(Some(&clip_id)).unwrap();
    assert_eq!(
        open(dir.path()).list_cameras().current.as_deref(),
        Some(clip_id.as_str())
    );

    // alice video-calls bob (sending the clip); bob answers with video (the pattern).
    let (placed, ringing) = alice_calls_bob(&app, &mut rx, Some(true)).await;
    assert!(
        ringing.video.is_some(),
        "bob is not told the call has video"
    );
    app.choose_camera(Some("pattern")).unwrap();
    app.answer_with(&ringing.id, true).await.unwrap();
    let vp8 = |c: &CallInfo| {
        c.video.as_ref().is_some_and(|v| {
            v.codec.as_deref() == Some("VP8") && v.receiving && v.sending.is_some()
        })
    };
    until(&app, &placed.id, "alice's video", vp8).await;
    until(&app, &ringing.id, "bob's video", vp8).await;
    let alice_call = app
        .list_calls()
        .into_iter()
        .find(|c| c.id == placed.id)
        .unwrap();
    let alice_video = alice_call.video.unwrap();
    assert_eq!(alice_video.camera.as_deref(), Some(clip_id.as_str()));
    assert_eq!(
        alice_video.sending,
        Some(VideoSize {
            width: 176,
            height: 144,
            fps: Some(10)
        })
    );

    // Pictures for the ui: each end sees the other's source, and its own as the self view.
    let at_alice = picture(&app, &placed.id, "remote").await;
    assert_eq!((at_alice.source_width, at_alice.source_height), (640, 480));
    let at_bob = picture(&app, &ringing.id, "remote").await;
    assert_eq!((at_bob.source_width, at_bob.source_height), (176, 144));
    let own = picture(&app, &placed.id, "self").await;
    assert_eq!((own.width, own.height), (176, 144));
    until(&app, &placed.id, "the peer's picture size", |c| {
        c.video
            .as_ref()
            .and_then(|v| v.remote_size)
            .map(|s| (s.width, s.height))
            == Some((640, 480))
    })
    .await;
    // Scaled down for a small canvas, aspect kept.
    let small = app
        .video_frame(
            &format!("/{}/remote", placed.id),
            Some("maxw=320&maxh=320&format=rgba"),
        )
        .await;
    assert_eq!(small.status, 200);
    let h = FrameHeader::parse(&small.body).unwrap();
    assert_eq!((h.width, h.height, h.format), (320, 240, PixelFormat::Rgba));
    assert_eq!(
        small.body.len(),
        tandem_app::video::FRAME_HEADER_LEN + 320 * 240 * 4
    );
    // Bad requests are answered, not served.
    assert_eq!(app.video_frame("/nope/remote", None).await.status, 404);
    assert_eq!(app.video_frame("/x/sideways", None).await.status, 400);

    // The same through tandem-app-server's route, as the ui in a browser asks.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = tandem_app::server::router(app.clone(), dir.path().join("no-ui"));
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let (status, body) = http_get(
        addr,
        &format!(
            "/api/video/{}/remote?format=i420&maxw=640&maxh=480",
            placed.id
        ),
    )
    .await;
    assert_eq!(status, 200);
    let h = FrameHeader::parse(&body).unwrap();
    assert_eq!((h.width, h.height, h.format), (640, 480, PixelFormat::I420));
    assert_eq!(
        body.len(),
        tandem_app::video::FRAME_HEADER_LEN + 640 * 480 * 3 / 2
    );
    assert_eq!(http_get(addr, "/api/video/nope/self").await.0, 404);
    assert_eq!(
        http_get(addr, "/api/video/nope/self?format=png").await.0,
        400
    );
    server.abort();

    // Video figures arrive for the ui.
    let figures = common::wait_for(
        Duration::from_secs(15),
        &mut rx,
        "video figures",
        |e| match e {
            AppEvent::Video { call_id, figures }
                if *call_id == placed.id && figures.frames_decoded > 0 =>
            {
                Some(figures.clone())
            }
            _ => None,
        },
    )
    .await;
    assert!(figures.frames_sent > 0, "{figures:?}");

    // Camera off: alice sends no more pictures, bob's video to alice goes on.
    app.set_camera(&placed.id, None).await.unwrap();
    until(&app, &placed.id, "camera off", |c| {
        c.video.as_ref().is_some_and(|v| v.camera.is_none())
    })
    .await;
    let before = picture(&app, &placed.id, "remote").await.seq;
    let next = app
        .video_frame(
            &format!("/{}/remote", placed.id),
            Some(&format!("after={before}&format=i420")),
        )
        .await;
    assert_eq!(next.status, 200, "bob's video stopped with alice's camera");
    // An unknown camera is refused in words.
    assert!(app.set_camera(&placed.id, Some("nothing")).await.is_err());

    // Downgrade: the video goes from both ends, the call goes on.
    app.set_video(&placed.id, false).await.unwrap();
    until(&app, &placed.id, "alice's video gone", |c| {
        c.video.is_none()
    })
    .await;
    until(&app, &ringing.id, "bob's video gone", |c| c.video.is_none()).await;
    until(&app, &placed.id, "the call goes on", |c| {
        c.phase == CallPhase::Active
    })
    .await;
    app.hangup(&placed.id).unwrap();
    all_ended(&app).await;

    // An audio call answered by a video-capable phone, upgraded to video by the caller.
    let (placed, ringing) = alice_calls_bob(&app, &mut rx, None).await;
    assert!(ringing.video.is_none(), "an audio call announced as video");
    app.answer_with(&ringing.id, true).await.unwrap();
    until(&app, &placed.id, "answered", |c| {
        c.phase == CallPhase::Active
    })
    .await;
    assert!(
        app.list_calls()
            .iter()
            .all(|c| c.video.as_ref().is_none_or(|v| v.codec.is_none()))
    );
    app.set_video(&placed.id, true).await.unwrap();
    until(&app, &placed.id, "upgraded", vp8).await;
    let at_alice = picture(&app, &placed.id, "remote").await;
    assert_eq!((at_alice.source_width, at_alice.source_height), (640, 480));
    app.hangup(&placed.id).unwrap();
    all_ended(&app).await;
    // Everything of the calls' video is gone with them.
    assert_eq!(
        app.video_frame(&format!("/{}/remote", placed.id), None)
            .await
            .status,
        404
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_call_cameras_pictures_downgrade_upgrade() {
    if in_keyring_session("video_call_cameras_pictures_downgrade_upgrade") {
        video_flow().await;
        forget_secrets();
    }
}

/// "Bob turned on video": alice's audio call to bob gets video from alice; bob's side shows
/// it at once (receive-only) and asks; "Not now" keeps it receive-only, "Show my camera"
/// makes it two-way.
async fn peer_added_video_flow() {
    let dir = tempfile::tempdir().unwrap();
    let app = open(dir.path());
    let mut rx = app.subscribe();
    app.start_bundled_lab().await.unwrap();
    app.register("bob@tandem.lab").await.unwrap();
    app.choose_camera(Some("pattern")).unwrap();
    let (placed, ringing) = alice_calls_bob(&app, &mut rx, None).await;
    assert!(ringing.video.is_none());
    app.answer_with(&ringing.id, false).await.unwrap();
    until(&app, &placed.id, "alice answered", |c| {
        c.phase == CallPhase::Active
    })
    .await;
    // Alice turns her camera on: bob sees her at once and is asked about his.
    app.set_video(&placed.id, true).await.unwrap();
    until(&app, &ringing.id, "bob asked about his camera", |c| {
        c.video
            .as_ref()
            .is_some_and(|v| v.peer_offered && v.receiving && v.codec.is_some())
    })
    .await;
    let bob_video = |app: &AppState| {
        app.list_calls()
            .into_iter()
            .find(|c| c.id == ringing.id)
            .and_then(|c| c.video)
            .unwrap()
    };
    assert!(bob_video(&app).sending.is_none(), "bob sends nothing yet");
    let header = picture(&app, &ringing.id, "remote").await;
    assert_eq!((header.source_width, header.source_height), (640, 480));
    // "Not now": the question goes, the picture stays.
    app.dismiss_video_offer(&ringing.id).unwrap();
    let shown = bob_video(&app);
    assert!(!shown.peer_offered && shown.receiving);
    assert!(app.dismiss_video_offer("no-such-call").is_err());
    // "Show my camera": two-way video.
    app.set_video(&ringing.id, true).await.unwrap();
    until(&app, &placed.id, "alice receives bob", |c| {
        c.video
            .as_ref()
            .is_some_and(|v| v.receiving && v.sending.is_some())
    })
    .await;
    let header = picture(&app, &placed.id, "remote").await;
    assert_eq!((header.source_width, header.source_height), (640, 480));
    assert!(!bob_video(&app).peer_offered);
    app.hangup(&placed.id).unwrap();
    all_ended(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_added_video_is_shown_and_asks_for_the_camera() {
    if in_keyring_session("peer_added_video_is_shown_and_asks_for_the_camera") {
        peer_added_video_flow().await;
        forget_secrets();
    }
}
