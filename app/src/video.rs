//! Video in the app: the cameras (video sources) a call can send from, and the delivery of
//! decoded pictures to the ui.
//!
//! Cameras are the built-in test pattern and YUV4MPEG2 (`.y4m`) files in the videos folder
//! (`<data dir>/videos`, or `TANDEM_VIDEO_DIR`); real cameras (V4L2) are not captured yet.
//!
//! Pictures reach the ui through one request per picture ([`serve_frame`]): the desktop shell
//! answers it on its `tandem-video:` URI scheme, `tandem-app-server` at `GET
//! /api/video/{call}/{remote|self}`. The request names the last picture the ui painted
//! (`after=SEQ`) and waits (long poll, at most [`MAX_WAIT`]) until a newer one exists, so the
//! ui paints at the rate the pictures come or at the rate it can follow, whichever is lower,
//! and never queues (it asks for the next picture while painting one: at most two requests per
//! canvas). Only the latest picture of each stream is kept ([`VideoHub`]): memory is one
//! picture per stream plus one per request in flight, whatever the frame rate. The answer
//! is [`FRAME_HEADER_LEN`] bytes of header ([`FrameHeader`]) and the picture, scaled down
//! (aspect kept) to the size the ui asks for, as RGBA or as the decoder's I420 planes
//! (`format=i420`: 1.5 instead of 4 bytes a pixel, converted by the ui).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tandem_client_core::{VideoOptions, VideoSourceSpec};
use tandem_video::frame::{MAX_HEIGHT, MAX_WIDTH, VideoFrame};
use tokio::sync::watch;

use crate::explain::failure;
use crate::state::lock;
use crate::types::{Camera, CameraKind, Failure, FailureKind, VideoSize};

/// The id of the test-pattern camera.
pub const PATTERN_CAMERA: &str = "pattern";
/// The prefix of file camera ids (`file:/path/to/clip.y4m`).
pub const FILE_CAMERA_PREFIX: &str = "file:";
/// The id prefix of a camera of this machine (`device:` + tandem-video's camera id).
pub const DEVICE_CAMERA_PREFIX: &str = "device:";
/// The size and rate of the test pattern the app sends.
pub const PATTERN_SIZE: VideoSize = VideoSize {
    width: 640,
    height: 480,
    fps: Some(15),
};
/// The longest a frame request waits for a new picture before it is answered 204.
pub const MAX_WAIT: Duration = Duration::from_millis(1000);
/// How many `.y4m` files the camera list shows at most.
const MAX_FILES: usize = 64;
/// The magic of a frame answer.
pub const FRAME_MAGIC: [u8; 4] = *b"TVF1";
/// The length of a frame answer's header.
pub const FRAME_HEADER_LEN: usize = 32;

/// The URI scheme the desktop and mobile shells serve pictures on.
pub const URI_SCHEME: &str = "tandem-video";

/// How the pixels of a frame answer are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PixelFormat {
    /// 4 bytes a pixel, R G B A (BT.601 limited range converted here).
    #[default]
    Rgba,
    /// The I420 planes as decoded: Y (width x height), then U and V (ceil(w/2) x ceil(h/2)).
    I420,
}

impl PixelFormat {
    /// The format's code in the header (0 RGBA, 1 I420).
    pub fn code(self) -> u32 {
        match self {
            PixelFormat::Rgba => 0,
            PixelFormat::I420 => 1,
        }
    }
}

/// Which picture stream of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// The peer's video, as decoded.
    Remote,
    /// Our own camera (the self view).
    Local,
}

impl Stream {
    /// The stream's name in frame URLs: `remote` or `self`.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Remote => "remote",
            Stream::Local => "self",
        }
    }

    /// The stream named `name` in a frame URL.
    pub fn from_name(name: &str) -> Option<Stream> {
        match name {
            "remote" => Some(Stream::Remote),
            "self" => Some(Stream::Local),
            _ => None,
        }
    }
}

/// A picture as the hub keeps it: the frame and its number (unique across the app's streams).
#[derive(Debug, Clone)]
pub struct Shown {
    /// The picture's number (never 0).
    pub seq: u32,
    /// The picture.
    pub frame: Arc<VideoFrame>,
}

/// One stream's latest picture, and the task that follows client-core's channel.
struct Feed {
    rx: watch::Receiver<Option<Shown>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Counters of the frames handed to the ui, for measurements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryStats {
    /// Frame answers sent.
    pub frames: u64,
    /// Bytes of those answers.
    pub bytes: u64,
    /// Time spent scaling and converting them, in microseconds.
    pub convert_us: u64,
    /// Requests answered 204 (no new picture in time).
    pub idle: u64,
}

/// The latest picture of every video stream of every call.
#[derive(Default)]
pub struct VideoHub {
    feeds: Mutex<HashMap<(String, Stream), Feed>>,
    seq: Arc<AtomicU32>,
    stats: Mutex<DeliveryStats>,
}

impl std::fmt::Debug for VideoHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoHub")
            .field("streams", &lock(&self.feeds).len())
            .finish_non_exhaustive()
    }
}

fn next_seq(counter: &AtomicU32) -> u32 {
    loop {
        let n = counter.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        if n != 0 {
            return n;
        }
    }
}

impl VideoHub {
    /// Follows one picture stream of call `call_id` (client-core's latest-frame channel: the
    /// peer's decoded pictures, or the pictures we send for the self view), replacing an
    /// earlier feed of that stream.
    pub fn attach(
        &self,
        call_id: &str,
        stream: Stream,
        mut frames: watch::Receiver<Option<Arc<VideoFrame>>>,
    ) {
        let (tx, rx) = watch::channel(None);
        let seq = self.seq.clone();
        let task = tokio::spawn(async move {
            loop {
                let latest = frames.borrow_and_update().clone();
                let shown = latest.map(|frame| Shown {
                    seq: next_seq(&seq),
                    frame,
                });
                tx.send_replace(shown);
                if frames.changed().await.is_err() {
                    return;
                }
            }
        });
        self.insert(call_id, stream, Feed { rx, task });
    }

    /// Forgets every stream of call `call_id`.
    pub fn detach_call(&self, call_id: &str) {
        let gone: Vec<Feed> = {
            let mut feeds = lock(&self.feeds);
            let keys: Vec<(String, Stream)> = feeds
                .keys()
                .filter(|(id, _)| id == call_id)
                .cloned()
                .collect();
            keys.iter().filter_map(|k| feeds.remove(k)).collect()
        };
        drop(gone);
    }

    /// How many streams are followed now.
    pub fn streams(&self) -> usize {
        lock(&self.feeds).len()
    }

    /// What has been delivered so far.
    pub fn stats(&self) -> DeliveryStats {
        *lock(&self.stats)
    }

    fn insert(&self, call_id: &str, stream: Stream, feed: Feed) {
        let old = lock(&self.feeds).insert((call_id.to_owned(), stream), feed);
        drop(old);
    }

    fn receiver(&self, call_id: &str, stream: Stream) -> Option<watch::Receiver<Option<Shown>>> {
        lock(&self.feeds)
            .get(&(call_id.to_owned(), stream))
            .map(|f| f.rx.clone())
    }
}

/// A picture request from the ui.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameRequest {
    /// The call.
    pub call_id: String,
    /// Which of its streams.
    pub stream: Stream,
    /// The number of the picture the ui has (0: none yet); the answer is a newer one.
    pub after: u32,
    /// The largest picture the ui wants (it is scaled down to fit, aspect kept).
    pub max_width: u32,
    /// See `max_width`.
    pub max_height: u32,
    /// How the pixels are sent.
    pub format: PixelFormat,
}

/// An answer to a frame request: HTTP status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameReply {
    /// 200 with a picture, 204 when none came in time, 400 for a bad request, 404 when the
    /// call or stream does not exist (any more).
    pub status: u16,
    /// The header and RGBA pixels (200), or a short text.
    pub body: Vec<u8>,
}

impl FrameReply {
    fn text(status: u16, text: &str) -> FrameReply {
        FrameReply {
            status,
            body: text.as_bytes().to_vec(),
        }
    }

    /// The Content-Type of the body.
    pub fn content_type(&self) -> &'static str {
        if self.status == 200 {
            "application/octet-stream"
        } else {
            "text/plain; charset=utf-8"
        }
    }
}

/// The header of a frame answer: little-endian `u32`s after the magic `TVF1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Width of the RGBA picture that follows.
    pub width: u32,
    /// Its height.
    pub height: u32,
    /// The picture's number (pass it as `after` to get the next one).
    pub seq: u32,
    /// The width of the picture as decoded (before scaling for the ui).
    pub source_width: u32,
    /// Its height.
    pub source_height: u32,
    /// How long scaling and conversion took, in microseconds.
    pub convert_us: u32,
    /// How the pixels that follow are laid out.
    pub format: PixelFormat,
}

impl FrameHeader {
    /// The header's bytes.
    pub fn to_bytes(&self) -> [u8; FRAME_HEADER_LEN] {
        let mut out = [0u8; FRAME_HEADER_LEN];
        out[..4].copy_from_slice(&FRAME_MAGIC);
        let fields = [
            self.width,
            self.height,
            self.seq,
            self.source_width,
            self.source_height,
            self.convert_us,
            self.format.code(),
        ];
        for (chunk, value) in out[4..].chunks_exact_mut(4).zip(fields) {
            chunk.copy_from_slice(&value.to_le_bytes());
        }
        out
    }

    /// Reads a header from the start of `bytes`.
    pub fn parse(bytes: &[u8]) -> Option<FrameHeader> {
        let head = bytes.get(..FRAME_HEADER_LEN)?;
        if head[..4] != FRAME_MAGIC {
            return None;
        }
        let mut fields = head[4..]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        Some(FrameHeader {
            width: fields.next()?,
            height: fields.next()?,
            seq: fields.next()?,
            source_width: fields.next()?,
            source_height: fields.next()?,
            convert_us: fields.next()?,
            format: match fields.next()? {
                0 => PixelFormat::Rgba,
                1 => PixelFormat::I420,
                _ => return None,
            },
        })
    }
}

/// Decodes `%XX` escapes (the shells' URL helpers encode the whole path as one component).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Parses a frame request from a URL path (`/CALL/remote` or `/CALL/self`, possibly
/// percent-encoded as one segment, with any prefix such as `/api/video` already removed) and
/// its query (`after=N&maxw=W&maxh=H&format=rgba|i420`).
pub fn parse_request(path: &str, query: Option<&str>) -> Result<FrameRequest, String> {
    let path = percent_decode(path).ok_or("bad escape in path")?;
    let mut parts = path.trim_matches('/').split('/');
    let (Some(call_id), Some(stream), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err("the path is /CALL/remote or /CALL/self".to_owned());
    };
    if call_id.is_empty() || call_id.len() > 64 {
        return Err("bad call id".to_owned());
    }
    let stream = Stream::from_name(stream).ok_or("the stream is remote or self")?;
    let mut request = FrameRequest {
        call_id: call_id.to_owned(),
        stream,
        after: 0,
        max_width: MAX_WIDTH,
        max_height: MAX_HEIGHT,
        format: PixelFormat::Rgba,
    };
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = || {
            value
                .parse::<u32>()
                .map_err(|_| format!("{key}={value} is not a number"))
        };
        match key {
            "after" => request.after = number()?,
            "maxw" => request.max_width = number()?.clamp(16, MAX_WIDTH),
            "maxh" => request.max_height = number()?.clamp(16, MAX_HEIGHT),
            "format" => {
                request.format = match value {
                    "rgba" => PixelFormat::Rgba,
                    "i420" => PixelFormat::I420,
                    _ => return Err(format!("format={value}: rgba or i420")),
                }
            }
            _ => {}
        }
    }
    Ok(request)
}

/// The size `width` x `height` scaled down to fit `max_width` x `max_height` (aspect kept,
/// even sizes, at least 2x2); unchanged when it is at most 1.5 times as large as the box in
/// either direction: then the canvas scales it (cheaper than scaling here, and no second
/// resampling), and only a picture far larger than its canvas is made smaller to save copying.
pub fn fit(width: u32, height: u32, max_width: u32, max_height: u32) -> (u32, u32) {
    let slack = |max: u32| u64::from(max) * 3 / 2;
    if u64::from(width) <= slack(max_width) && u64::from(height) <= slack(max_height) {
        return (width, height);
    }
    let scale = f64::min(
        f64::from(max_width) / f64::from(width.max(1)),
        f64::from(max_height) / f64::from(height.max(1)),
    );
    let even = |v: f64| ((v as u32) & !1).max(2);
    (
        even(f64::from(width) * scale),
        even(f64::from(height) * scale),
    )
}

/// The answer bytes for `shown`: header and pixels, scaled down to fit `max_width` x
/// `max_height`.
pub fn encode_frame(
    shown: &Shown,
    max_width: u32,
    max_height: u32,
    format: PixelFormat,
) -> Vec<u8> {
    let started = Instant::now();
    let frame = &shown.frame;
    let (w, h) = fit(frame.width, frame.height, max_width, max_height);
    let scaled;
    let picture: &VideoFrame = if (w, h) == (frame.width, frame.height) {
        frame
    } else {
        match frame.scaled(w, h) {
            Ok(f) => {
                scaled = f;
                &scaled
            }
            Err(_) => frame,
        }
    };
    let pixels = match format {
        PixelFormat::Rgba => picture.to_rgba(),
        PixelFormat::I420 => {
            let mut planes =
                Vec::with_capacity(picture.y.len() + picture.u.len() + picture.v.len());
            planes.extend_from_slice(&picture.y);
            planes.extend_from_slice(&picture.u);
            planes.extend_from_slice(&picture.v);
            planes
        }
    };
    let header = FrameHeader {
        width: picture.width,
        height: picture.height,
        seq: shown.seq,
        source_width: frame.width,
        source_height: frame.height,
        convert_us: u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX),
        format,
    };
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + pixels.len());
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(&pixels);
    out
}

/// Answers a picture request from `hub`: the newest picture after `request.after`, waiting up
/// to `wait` for one.
pub async fn serve_frame(hub: &VideoHub, request: &FrameRequest, wait: Duration) -> FrameReply {
    let Some(mut rx) = hub.receiver(&request.call_id, request.stream) else {
        return FrameReply::text(404, "no such video stream");
    };
    let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
    loop {
        let current = rx.borrow_and_update().clone();
        if let Some(shown) = current.filter(|s| s.seq != request.after) {
            let (mw, mh, format) = (request.max_width, request.max_height, request.format);
            let encode = move || encode_frame(&shown, mw, mh, format);
            let body = match tokio::task::spawn_blocking(encode).await {
                Ok(body) => body,
                Err(_) => return FrameReply::text(500, "the picture could not be converted"),
            };
            let convert_us = FrameHeader::parse(&body).map_or(0, |h| u64::from(h.convert_us));
            {
                let mut stats = lock(&hub.stats);
                stats.frames += 1;
                stats.bytes += body.len() as u64;
                stats.convert_us += convert_us;
            }
            return FrameReply { status: 200, body };
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => continue,
            Ok(Err(_)) => return FrameReply::text(404, "the video stream ended"),
            Err(_) => {
                lock(&hub.stats).idle += 1;
                return FrameReply::text(204, "");
            }
        }
    }
}

/// Answers a request for `path` + `query` (see [`parse_request`]).
pub async fn serve_path(hub: &VideoHub, path: &str, query: Option<&str>) -> FrameReply {
    match parse_request(path, query) {
        Ok(request) => serve_frame(hub, &request, MAX_WAIT).await,
        Err(why) => FrameReply::text(400, &why),
    }
}

impl crate::AppState {
    /// Answers a picture request of the ui (`/CALL/remote?after=N&maxw=W&maxh=H`, see
    /// [`parse_request`]): the shells' `tandem-video:` scheme and the dev server call this.
    pub async fn video_frame(&self, path: &str, query: Option<&str>) -> FrameReply {
        serve_path(&self.inner.video, path, query).await
    }

    /// What the picture requests delivered so far (for measurements).
    pub fn video_delivery(&self) -> DeliveryStats {
        self.inner.video.stats()
    }
}

/// The folder searched for `.y4m` files: `TANDEM_VIDEO_DIR`, else `<data_dir>/videos`.
pub fn videos_folder(data_dir: &Path) -> PathBuf {
    std::env::var_os("TANDEM_VIDEO_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| data_dir.join("videos"))
}

fn bad_camera(message: impl Into<String>, detail: impl Into<String>) -> Failure {
    failure(FailureKind::Settings, message, detail)
}

/// The test pattern camera.
pub fn pattern_camera() -> Camera {
    Camera {
        id: PATTERN_CAMERA.to_owned(),
        label: "Test pattern (moving colour bars)".to_owned(),
        kind: CameraKind::Pattern,
        size: Some(PATTERN_SIZE),
    }
}

/// The camera of a `.y4m` file (its header read for the size and rate).
pub fn file_camera(path: &Path) -> Result<Camera, Failure> {
    let is_y4m = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("y4m"));
    if !is_y4m {
        return Err(bad_camera(
            format!("{} is not a .y4m video file.", path.display()),
            "",
        ));
    }
    let reader = tandem_video::y4m::open_y4m(path).map_err(|e| {
        bad_camera(
            format!(
                "{} cannot be used as a camera: it is not a readable YUV4MPEG2 file.",
                path.display()
            ),
            e.to_string(),
        )
    })?;
    let header = reader.header();
    let fps = (header.fps_den > 0).then(|| (header.fps_num / header.fps_den).max(1));
    Ok(Camera {
        id: format!("{FILE_CAMERA_PREFIX}{}", path.display()),
        label: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string()),
        kind: CameraKind::File,
        size: Some(VideoSize {
            width: header.width,
            height: header.height,
            fps,
        }),
    })
}

/// The size and rate a device camera is captured at (the picture is scaled to it).
fn device_size() -> VideoSize {
    let (width, height, fps) = tandem_client_core::DEFAULT_CAMERA;
    VideoSize {
        width,
        height,
        fps: Some(fps),
    }
}

/// The cameras of this machine now (none when there is none, or GStreamer cannot start: then
/// the reason is logged). The first call initialises GStreamer (a plugin scan): the app pays
/// for it only once cameras are listed.
pub fn device_cameras() -> Vec<Camera> {
    match tandem_video::camera::list_cameras() {
        Ok(cameras) => cameras
            .into_iter()
            .map(|c| Camera {
                id: format!("{DEVICE_CAMERA_PREFIX}{}", c.id),
                label: c.name,
                kind: CameraKind::Device,
                size: Some(device_size()),
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the cameras");
            Vec::new()
        }
    }
}

/// Every camera: the test pattern, the cameras of this machine, then the `.y4m` files of
/// `folder` by name.
pub fn list_cameras(folder: &Path) -> Vec<Camera> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| e.eq_ignore_ascii_case("y4m"))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files.truncate(MAX_FILES);
    let mut out = vec![pattern_camera()];
    out.extend(device_cameras());
    out.extend(files.iter().filter_map(|p| file_camera(p).ok()));
    out
}

/// The client-core source of camera `id` (checked: a file camera must be a readable `.y4m`).
pub fn camera_spec(id: &str) -> Result<VideoSourceSpec, Failure> {
    if id == PATTERN_CAMERA {
        return Ok(VideoSourceSpec::Pattern {
            width: PATTERN_SIZE.width,
            height: PATTERN_SIZE.height,
            fps: PATTERN_SIZE.fps.unwrap_or(15),
        });
    }
    if let Some(path) = id.strip_prefix(FILE_CAMERA_PREFIX) {
        let path = PathBuf::from(path);
        file_camera(&path)?;
        return Ok(VideoSourceSpec::File(path));
    }
    if let Some(device) = id.strip_prefix(DEVICE_CAMERA_PREFIX) {
        let cameras = tandem_video::camera::list_cameras().map_err(|e| {
            bad_camera(
                "The cameras of this computer cannot be used.",
                e.to_string(),
            )
        })?;
        if !cameras.iter().any(|c| c.id == device) {
            return Err(bad_camera(
                format!("The camera \"{device}\" is not connected."),
                "",
            ));
        }
        let size = device_size();
        return Ok(VideoSourceSpec::Camera {
            id: Some(device.to_owned()),
            width: size.width,
            height: size.height,
            fps: size.fps.unwrap_or(15),
        });
    }
    Err(bad_camera(
        format!(
            "There is no camera \"{id}\". The app sends from a connected camera, a test pattern or a .y4m file."
        ),
        "",
    ))
}

/// The highest bit rate the app lets a video call send at.
pub const MAX_BITRATE_BPS: u32 = 1_500_000;

/// The video options of a call sending from `source`: VP8 preferred, then H.264.
pub fn video_options(source: VideoSourceSpec) -> VideoOptions {
    VideoOptions {
        source,
        record: None,
        codecs: vec!["VP8".to_owned(), "H264".to_owned()],
        max_bitrate_bps: MAX_BITRATE_BPS,
        ..VideoOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths_and_queries() {
        let r = parse_request("/call-3/remote", Some("after=7&maxw=320&maxh=200")).unwrap();
        assert_eq!(
            r,
            FrameRequest {
                call_id: "call-3".into(),
                stream: Stream::Remote,
                after: 7,
                max_width: 320,
                max_height: 200,
                format: PixelFormat::Rgba,
            }
        );
        // The shells' URL helper encodes the path as one component.
        let r = parse_request("/call-3%2Fself", None).unwrap();
        assert_eq!(r.stream, Stream::Local);
        assert_eq!((r.after, r.max_width), (0, MAX_WIDTH));
        assert!(parse_request("/call-3/both", None).is_err());
        assert!(parse_request("/call-3", None).is_err());
        assert!(parse_request("/a/remote/x", None).is_err());
        assert!(parse_request("/call-3/remote", Some("after=-1")).is_err());
        assert!(parse_request("/call-3%zz/remote", None).is_err());
        let r = parse_request("/c/remote", Some("format=i420")).unwrap();
        assert_eq!(r.format, PixelFormat::I420);
        assert!(parse_request("/c/remote", Some("format=png")).is_err());
        // Absurd sizes are clamped.
        let r = parse_request("/c/remote", Some("maxw=0&maxh=99999999")).unwrap();
        assert_eq!((r.max_width, r.max_height), (16, MAX_HEIGHT));
    }

    #[test]
    fn fit_keeps_aspect_and_never_grows() {
        assert_eq!(fit(640, 480, 1000, 1000), (640, 480));
        // Slightly larger than the canvas: the canvas scales it.
        assert_eq!(fit(640, 480, 576, 432), (640, 480));
        assert_eq!(fit(640, 480, 400, 400), (400, 300));
        assert_eq!(fit(640, 480, 320, 480), (320, 240));
        assert_eq!(fit(1280, 720, 640, 640), (640, 360));
        assert_eq!(fit(4096, 2, 16, 16), (16, 2));
    }

    fn shown(width: u32, height: u32, seq: u32) -> Shown {
        let mut frame = VideoFrame::black(width, height).unwrap();
        // A light left half: luma 200 (limited range, grey).
        for row in frame.y.chunks_mut(width as usize) {
            for px in &mut row[..(width / 2) as usize] {
                *px = 200;
            }
        }
        Shown {
            seq,
            frame: Arc::new(frame),
        }
    }

    #[test]
    fn frames_are_encoded_as_asked() {
        let body = encode_frame(&shown(64, 48, 5), 1000, 1000, PixelFormat::Rgba);
        let h = FrameHeader::parse(&body).unwrap();
        assert_eq!((h.width, h.height, h.seq), (64, 48, 5));
        assert_eq!((h.source_width, h.source_height), (64, 48));
        assert_eq!(body.len(), FRAME_HEADER_LEN + 64 * 48 * 4);
        let px = |x: usize, y: usize| {
            let i = FRAME_HEADER_LEN + (y * 64 + x) * 4;
            body[i..i + 4].to_vec()
        };
        // Limited-range black is RGB 0; luma 200 is a light grey.
        assert_eq!(px(63, 10), vec![0, 0, 0, 255]);
        assert!(px(0, 10)[..3].iter().all(|&c| c > 200), "{:?}", px(0, 10));

        // Scaled down to fit, aspect kept; I420 is the three planes.
        let body = encode_frame(&shown(640, 480, 6), 320, 320, PixelFormat::I420);
        let h = FrameHeader::parse(&body).unwrap();
        assert_eq!((h.width, h.height), (320, 240));
        assert_eq!((h.source_width, h.source_height), (640, 480));
        assert_eq!(h.format, PixelFormat::I420);
        assert_eq!(body.len(), FRAME_HEADER_LEN + 320 * 240 + 2 * 160 * 120);
    }

    #[tokio::test]
    async fn requests_wait_for_a_newer_picture() {
        let hub = VideoHub::default();
        let ask = |after: u32| FrameRequest {
            call_id: "call-1".into(),
            stream: Stream::Remote,
            after,
            max_width: 4096,
            max_height: 2304,
            format: PixelFormat::I420,
        };
        let short = Duration::from_millis(50);
        assert_eq!(serve_frame(&hub, &ask(0), short).await.status, 404);
        let (tx, rx) = watch::channel::<Option<Arc<VideoFrame>>>(None);
        hub.attach("call-1", Stream::Remote, rx);
        assert_eq!(hub.streams(), 1);
        // No picture yet: 204 after the wait.
        assert_eq!(serve_frame(&hub, &ask(0), short).await.status, 204);
        tx.send_replace(Some(shown(32, 16, 0).frame));
        let first = serve_frame(&hub, &ask(0), MAX_WAIT).await;
        assert_eq!(first.status, 200);
        let seq = FrameHeader::parse(&first.body).unwrap().seq;
        assert_ne!(seq, 0);
        // The same picture is not sent twice: the request waits for the next one.
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            tx.send_replace(Some(shown(32, 16, 0).frame));
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(tx);
        });
        let started = Instant::now();
        let next = serve_frame(&hub, &ask(seq), MAX_WAIT).await;
        assert_eq!(next.status, 200);
        assert!(started.elapsed() >= Duration::from_millis(80));
        let seq2 = FrameHeader::parse(&next.body).unwrap().seq;
        assert_ne!(seq2, seq);
        sender.await.unwrap();
        // The call's channel closed: the stream ended.
        assert_eq!(serve_frame(&hub, &ask(seq2), MAX_WAIT).await.status, 404);
        let stats = hub.stats();
        assert_eq!(stats.frames, 2);
        assert_eq!(stats.idle, 1);
        hub.detach_call("call-1");
        assert_eq!(hub.streams(), 0);
        assert_eq!(serve_frame(&hub, &ask(0), short).await.status, 404);
    }

    /// Not a check: what a picture costs here (`cargo test -p tandem-app -- --nocapture`).
    #[test]
    fn conversion_cost() {
        for (w, h) in [(320, 240), (640, 480), (1280, 720)] {
            let s = shown(w, h, 1);
            for format in [PixelFormat::Rgba, PixelFormat::I420] {
                let started = Instant::now();
                let rounds = 10;
                let mut bytes = 0;
                for _ in 0..rounds {
                    bytes = encode_frame(&s, 4096, 2304, format).len();
                }
                eprintln!(
                    "frame answer {w}x{h} {format:?}: {} bytes, {:.2} ms",
                    bytes,
                    started.elapsed().as_secs_f64() * 1000.0 / f64::from(rounds)
                );
            }
        }
    }

    #[test]
    fn header_round_trip() {
        let h = FrameHeader {
            width: 320,
            height: 240,
            seq: 9,
            source_width: 640,
            source_height: 480,
            convert_us: 1234,
            format: PixelFormat::I420,
        };
        let bytes = h.to_bytes();
        assert_eq!(&bytes[..4], b"TVF1");
        assert_eq!(FrameHeader::parse(&bytes), Some(h));
        assert_eq!(FrameHeader::parse(&bytes[..10]), None);
        let mut bad = bytes;
        bad[0] = b'X';
        assert_eq!(FrameHeader::parse(&bad), None);
        let mut bad = bytes;
        bad[28] = 7;
        assert_eq!(FrameHeader::parse(&bad), None);
    }

    #[test]
    fn device_cameras_are_listed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let cameras = list_cameras(dir.path());
        assert_eq!(cameras[0].id, PATTERN_CAMERA);
        // Whatever this machine has is listed as devices with the size they are sent at.
        let devices = device_cameras();
        for d in &devices {
            assert!(d.id.starts_with(DEVICE_CAMERA_PREFIX), "{d:?}");
            assert_eq!(d.kind, CameraKind::Device);
            assert!(cameras.contains(d), "{d:?} not in {cameras:?}");
            let spec = camera_spec(&d.id).unwrap();
            assert!(matches!(spec, VideoSourceSpec::Camera { id: Some(_), .. }));
        }
        // A camera that is not connected is refused in words.
        let err = camera_spec("device:v4l2:/dev/video-not-here").unwrap_err();
        assert!(err.message.contains("is not connected"), "{err:?}");
    }
}
