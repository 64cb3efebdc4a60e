//! Camera capture: listing the system's cameras with what they can deliver, choosing a capture
//! format for a wanted size and rate, and [`CameraSource`], a [`crate::source::VideoSource`]
//! giving I420 frames of exactly the wanted size.
//!
//! The backend is GStreamer (`gst::DeviceMonitor` on `Video/Source`: V4L2 or PipeWire on Linux,
//! AVFoundation on macOS, Media Foundation on Windows). GStreamer is initialised on first use
//! (listing or opening), which scans its plugins: call these off any UI thread. On Android the
//! backend is compiled out: [`list_cameras`] finds nothing and [`CameraSource::open`] answers
//! [`CameraError::Unavailable`].

use std::fmt;

use thiserror::Error;

#[cfg(not(target_os = "android"))]
mod gst_backend;
#[cfg(not(target_os = "android"))]
use gst_backend as backend;

#[cfg(target_os = "android")]
mod unavailable;
#[cfg(target_os = "android")]
use unavailable as backend;

use crate::frame::{FrameError, VideoFrame};
use crate::source::{MAX_SOURCE_FPS, SourceError, VideoSource};

/// Why cameras could not be listed or opened.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CameraError {
    /// This build has no camera support (Android).
    #[error("camera capture is not available in this build: {0}")]
    Unavailable(String),
    /// GStreamer could not be initialised.
    #[error("cannot initialise GStreamer for camera capture: {0}")]
    Init(String),
    /// No camera is connected.
    #[error("no camera is connected")]
    NoCamera,
    /// No camera matches the id or name asked for.
    #[error("no camera matches {query:?} (cameras: {})", list_or_none(.available))]
    NotFound {
        /// The id or name fragment asked for.
        query: String,
        /// `id (name)` of every camera found.
        available: Vec<String>,
    },
    /// The camera offers no format we can convert (raw video or MJPEG).
    #[error("camera {camera:?} offers no raw or MJPEG video")]
    NoUsableFormat {
        /// The camera's name.
        camera: String,
    },
    /// A GStreamer element we need is not installed.
    #[error("the GStreamer element {0:?} is missing (install the GStreamer base/good plugins)")]
    MissingElement(String),
    /// The wanted frame size is unusable.
    #[error("camera frame size: {0}")]
    Size(#[from] FrameError),
    /// Building or starting the capture pipeline failed.
    #[error("camera pipeline: {0}")]
    Pipeline(String),
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// A frame rate as a fraction of frames per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fraction {
    /// Numerator.
    pub num: u32,
    /// Denominator (never 0 in values built by this module).
    pub den: u32,
}

impl Fraction {
    /// `num / den`; a zero denominator is taken as 1.
    pub fn new(num: u32, den: u32) -> Fraction {
        Fraction {
            num,
            den: den.max(1),
        }
    }

    /// The rate as a float.
    pub fn as_f64(self) -> f64 {
        f64::from(self.num) / f64::from(self.den.max(1))
    }
}

impl fmt::Display for Fraction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den <= 1 {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{:.2}", self.as_f64())
        }
    }
}

/// How a camera format is encoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CameraEncoding {
    /// Raw video in a GStreamer pixel format (`YUY2`, `NV12`, `I420`, ...).
    Raw(String),
    /// Motion JPEG (decoded with `jpegdec`).
    Mjpeg,
    /// Anything else (`video/x-h264`, ...): listed, never chosen.
    Other(String),
}

impl CameraEncoding {
    /// Raw before MJPEG; `None` for encodings we do not capture.
    fn rank(&self) -> Option<u32> {
        match self {
            CameraEncoding::Raw(_) => Some(0),
            CameraEncoding::Mjpeg => Some(1),
            CameraEncoding::Other(_) => None,
        }
    }

    /// Among raw formats: those videoconvert turns into I420 cheapest first.
    fn raw_rank(&self) -> u32 {
        match self {
            CameraEncoding::Raw(f) => match f.as_str() {
                "I420" => 0,
                "NV12" | "YV12" => 1,
                "YUY2" | "UYVY" => 2,
                _ => 3,
            },
            _ => 4,
        }
    }
}

impl fmt::Display for CameraEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CameraEncoding::Raw(format) => f.write_str(format),
            CameraEncoding::Mjpeg => f.write_str("MJPEG"),
            CameraEncoding::Other(media) => f.write_str(media),
        }
    }
}

/// An inclusive range of sizes in pixels (`min == max` for one size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SizeRange {
    /// Smallest.
    pub min: u32,
    /// Largest.
    pub max: u32,
}

impl SizeRange {
    /// One size.
    pub fn exactly(n: u32) -> SizeRange {
        SizeRange { min: n, max: n }
    }

    /// The size in the range nearest to `wanted`.
    fn nearest(self, wanted: u32) -> u32 {
        wanted.clamp(self.min, self.max.max(self.min))
    }
}

impl fmt::Display for SizeRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}

/// The frame rates a format offers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FrameRates {
    /// These rates only.
    List(Vec<Fraction>),
    /// Any rate between these two.
    Range {
        /// Lowest.
        min: Fraction,
        /// Highest.
        max: Fraction,
    },
    /// The device did not say (any rate is asked for).
    Any,
}

impl FrameRates {
    /// The rate to ask for: the slowest at or above `wanted`, else the fastest offered.
    fn choose(&self, wanted: u32) -> Fraction {
        let want = f64::from(wanted);
        match self {
            FrameRates::List(rates) => {
                let usable = rates.iter().filter(|r| r.num > 0);
                let at_least = usable
                    .clone()
                    .filter(|r| r.as_f64() >= want - 0.01)
                    .min_by(|a, b| a.as_f64().total_cmp(&b.as_f64()));
                at_least
                    .or_else(|| usable.max_by(|a, b| a.as_f64().total_cmp(&b.as_f64())))
                    .copied()
                    .unwrap_or(Fraction::new(wanted, 1))
            }
            FrameRates::Range { min, max } => {
                if want < min.as_f64() {
                    *min
                } else if want > max.as_f64() {
                    *max
                } else {
                    Fraction::new(wanted, 1)
                }
            }
            FrameRates::Any => Fraction::new(wanted, 1),
        }
    }
}

impl fmt::Display for FrameRates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameRates::List(rates) => {
                let mut sorted = rates.clone();
                sorted.sort_by(|a, b| a.as_f64().total_cmp(&b.as_f64()));
                sorted.dedup();
                let parts: Vec<String> = sorted.iter().map(Fraction::to_string).collect();
                write!(f, "{}fps", parts.join(","))
            }
            FrameRates::Range { min, max } => write!(f, "{min}-{max}fps"),
            FrameRates::Any => f.write_str("any fps"),
        }
    }
}

/// One kind of picture a camera delivers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CameraFormat {
    /// Pixel format or compression.
    pub encoding: CameraEncoding,
    /// Widths offered.
    pub width: SizeRange,
    /// Heights offered.
    pub height: SizeRange,
    /// Frame rates offered.
    pub frame_rates: FrameRates,
}

impl fmt::Display for CameraFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}x{} {}",
            self.encoding, self.width, self.height, self.frame_rates
        )
    }
}

/// A camera the system has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraInfo {
    /// Stable id: the capture API and the device's path or node name (`v4l2:/dev/video0`,
    /// `pipewire:…`); the same while the device stays plugged in.
    pub id: String,
    /// Name for people.
    pub name: String,
    /// What it delivers.
    pub formats: Vec<CameraFormat>,
}

impl CameraInfo {
    /// `id (name)`, as error messages list cameras.
    pub fn label(&self) -> String {
        format!("{} ({})", self.id, self.name)
    }
}

/// The concrete format a capture asks the camera for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CaptureFormat {
    /// Pixel format or MJPEG.
    pub encoding: CameraEncoding,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frame rate.
    pub fps: Fraction,
}

impl fmt::Display for CaptureFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}x{}@{}",
            self.encoding, self.width, self.height, self.fps
        )
    }
}

/// Picks what to capture for a `width` x `height` picture at `fps`: a size at least as large
/// as wanted (the smallest such), at the wanted rate or faster, raw before MJPEG; failing that
/// the nearest below. `None` when no format is raw or MJPEG.
pub fn choose_format(
    formats: &[CameraFormat],
    width: u32,
    height: u32,
    fps: u32,
) -> Option<CaptureFormat> {
    let wanted_area = u64::from(width) * u64::from(height);
    formats
        .iter()
        .filter_map(|format| {
            let rank = format.encoding.rank()?;
            let w = format.width.nearest(width);
            let h = format.height.nearest(height);
            if w == 0 || h == 0 {
                return None;
            }
            let rate = format.frame_rates.choose(fps);
            let area = u64::from(w) * u64::from(h);
            let covers = w >= width && h >= height;
            let size_distance = area.abs_diff(wanted_area);
            let too_slow = rate.as_f64() + 0.01 < f64::from(fps);
            // Milli-fps away from the wanted rate (faster than wanted costs a little too).
            let rate_distance = ((rate.as_f64() - f64::from(fps)).abs() * 1000.0) as u64;
            let key = (
                !covers,
                too_slow,
                rank,
                size_distance,
                rate_distance,
                format.encoding.raw_rank(),
            );
            Some((
                key,
                CaptureFormat {
                    encoding: format.encoding.clone(),
                    width: w,
                    height: h,
                    fps: rate,
                },
            ))
        })
        .min_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, choice)| choice)
}

/// The camera `query` names: `None` is the first camera; otherwise an exact id, then an exact
/// name (case-insensitive), then the only camera whose id or name contains it (case-insensitive).
pub fn find_camera<'a>(
    cameras: &'a [CameraInfo],
    query: Option<&str>,
) -> Result<&'a CameraInfo, CameraError> {
    let not_found = |query: &str| CameraError::NotFound {
        query: query.to_owned(),
        available: cameras.iter().map(CameraInfo::label).collect(),
    };
    let Some(query) = query.map(str::trim).filter(|q| !q.is_empty()) else {
        return cameras.first().ok_or(CameraError::NoCamera);
    };
    if cameras.is_empty() {
        return Err(not_found(query));
    }
    if let Some(c) = cameras.iter().find(|c| c.id == query) {
        return Ok(c);
    }
    if let Some(c) = cameras.iter().find(|c| c.name.eq_ignore_ascii_case(query)) {
        return Ok(c);
    }
    let lower = query.to_lowercase();
    let mut matching = cameras
        .iter()
        .filter(|c| c.id.to_lowercase().contains(&lower) || c.name.to_lowercase().contains(&lower));
    match (matching.next(), matching.next()) {
        (Some(c), None) => Ok(c),
        _ => Err(not_found(query)),
    }
}

/// Every camera connected now (a fresh look on every call; empty when there is none).
/// Initialises GStreamer on first use: call it off any UI thread.
pub fn list_cameras() -> Result<Vec<CameraInfo>, CameraError> {
    backend::list_cameras()
}

/// True when this build can capture from cameras (false on Android).
pub fn capture_supported() -> bool {
    backend::SUPPORTED
}

/// A running capture from a camera: I420 frames of the asked size and rate, scaled and
/// converted from the camera's own format. The pipeline stops when this is dropped.
pub struct CameraSource {
    inner: backend::Capture,
    camera: CameraInfo,
    format: CaptureFormat,
    width: u32,
    height: u32,
    fps: u32,
}

impl CameraSource {
    /// Starts capturing from the camera `query` names (see [`find_camera`]; `None`: the first
    /// one) at `width` x `height` and `fps` (clamped to 1..=[`MAX_SOURCE_FPS`]). Returns once
    /// the pipeline is started; a camera that then fails to deliver is reported by
    /// [`VideoSource::next_frame`]. Initialises GStreamer on first use.
    pub fn open(
        query: Option<&str>,
        width: u32,
        height: u32,
        fps: u32,
    ) -> Result<CameraSource, CameraError> {
        crate::frame::check_size(width, height)?;
        let fps = fps.clamp(1, MAX_SOURCE_FPS);
        let (inner, camera, format) = backend::Capture::open(query, width, height, fps)?;
        Ok(CameraSource {
            inner,
            camera,
            format,
            width,
            height,
            fps,
        })
    }

    /// The camera being captured.
    pub fn camera(&self) -> &CameraInfo {
        &self.camera
    }

    /// What the camera was asked for.
    pub fn capture_format(&self) -> &CaptureFormat {
        &self.format
    }

    /// Frames delivered so far.
    pub fn frames(&self) -> u64 {
        self.inner.frames()
    }
}

impl VideoSource for CameraSource {
    /// Waits for the camera's next picture (at most a few seconds: a silent camera is an error,
    /// not a hang). A camera that failed or vanished gives one [`SourceError::Device`], then
    /// [`SourceError::Ended`].
    fn next_frame(&mut self) -> Result<VideoFrame, SourceError> {
        self.inner.next_frame(&self.camera.name)
    }

    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn fps(&self) -> u32 {
        self.fps
    }
}

impl fmt::Debug for CameraSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CameraSource")
            .field("camera", &self.camera.id)
            .field("format", &self.format)
            .field("size", &(self.width, self.height))
            .field("fps", &self.fps)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(format: &str, w: u32, h: u32, rates: &[u32]) -> CameraFormat {
        CameraFormat {
            encoding: CameraEncoding::Raw(format.into()),
            width: SizeRange::exactly(w),
            height: SizeRange::exactly(h),
            frame_rates: FrameRates::List(rates.iter().map(|r| Fraction::new(*r, 1)).collect()),
        }
    }

    fn mjpeg(w: u32, h: u32, rates: &[u32]) -> CameraFormat {
        CameraFormat {
            encoding: CameraEncoding::Mjpeg,
            ..raw("x", w, h, rates)
        }
    }

    #[test]
    fn raw_at_the_wanted_size_wins() {
        let formats = [
            mjpeg(640, 480, &[30]),
            raw("YUY2", 640, 480, &[30, 15]),
            raw("YUY2", 1280, 720, &[10]),
        ];
        let c = choose_format(&formats, 640, 480, 30).unwrap();
        assert_eq!(c.encoding, CameraEncoding::Raw("YUY2".into()));
        assert_eq!((c.width, c.height, c.fps), (640, 480, Fraction::new(30, 1)));
        // 15 fps wanted: 15 is offered, so not 30.
        let c = choose_format(&formats, 640, 480, 15).unwrap();
        assert_eq!(c.fps, Fraction::new(15, 1));
    }

    #[test]
    fn mjpeg_when_raw_is_too_small_or_too_slow() {
        // The usual USB webcam: raw 720p only at 10 fps, MJPEG at 30.
        let formats = [
            raw("YUY2", 640, 480, &[30]),
            raw("YUY2", 1280, 720, &[10, 5]),
            mjpeg(1280, 720, &[30, 15]),
        ];
        let c = choose_format(&formats, 1280, 720, 30).unwrap();
        assert_eq!(c.encoding, CameraEncoding::Mjpeg);
        assert_eq!((c.width, c.height), (1280, 720));
        // At 10 fps the raw format is good enough.
        let c = choose_format(&formats, 1280, 720, 10).unwrap();
        assert_eq!(c.encoding, CameraEncoding::Raw("YUY2".into()));
        assert_eq!(c.fps, Fraction::new(10, 1));
    }

    #[test]
    fn smallest_size_covering_else_largest_below() {
        let formats = [
            raw("NV12", 320, 240, &[30]),
            raw("NV12", 800, 600, &[30]),
            raw("NV12", 1920, 1080, &[30]),
        ];
        let c = choose_format(&formats, 640, 480, 30).unwrap();
        assert_eq!((c.width, c.height), (800, 600));
        let formats = [raw("NV12", 320, 240, &[30]), raw("NV12", 160, 120, &[30])];
        let c = choose_format(&formats, 640, 480, 30).unwrap();
        assert_eq!((c.width, c.height), (320, 240));
    }

    #[test]
    fn ranges_give_the_wanted_size_and_rate() {
        let formats = [CameraFormat {
            encoding: CameraEncoding::Raw("YUY2".into()),
            width: SizeRange { min: 16, max: 4096 },
            height: SizeRange { min: 16, max: 4096 },
            frame_rates: FrameRates::Range {
                min: Fraction::new(0, 1),
                max: Fraction::new(60, 1),
            },
        }];
        let c = choose_format(&formats, 352, 288, 15).unwrap();
        assert_eq!((c.width, c.height, c.fps), (352, 288, Fraction::new(15, 1)));
        // Beyond the range: its maximum.
        let c = choose_format(&formats, 352, 288, 120).unwrap();
        assert_eq!(c.fps, Fraction::new(60, 1));
    }

    #[test]
    fn nothing_usable() {
        let h264 = CameraFormat {
            encoding: CameraEncoding::Other("video/x-h264".into()),
            ..raw("x", 640, 480, &[30])
        };
        assert_eq!(choose_format(&[h264], 640, 480, 30), None);
        assert_eq!(choose_format(&[], 640, 480, 30), None);
    }

    #[test]
    fn slower_rates_pick_the_fastest() {
        let formats = [raw("YUY2", 640, 480, &[5, 10, 0])];
        let c = choose_format(&formats, 640, 480, 30).unwrap();
        assert_eq!(c.fps, Fraction::new(10, 1));
        // NTSC-style fractions are kept as they are.
        let formats = [CameraFormat {
            frame_rates: FrameRates::List(vec![Fraction::new(30000, 1001)]),
            ..raw("YUY2", 640, 480, &[])
        }];
        let c = choose_format(&formats, 640, 480, 30).unwrap();
        assert_eq!(c.fps, Fraction::new(30000, 1001));
    }

    fn cam(id: &str, name: &str) -> CameraInfo {
        CameraInfo {
            id: id.into(),
            name: name.into(),
            formats: vec![],
        }
    }

    #[test]
    fn finding_cameras() {
        let cams = [
            cam("v4l2:/dev/video0", "Integrated Camera"),
            cam("v4l2:/dev/video2", "USB Camera"),
            cam("pipewire:TandemTestCam", "TandemTestCam"),
        ];
        assert_eq!(find_camera(&cams, None).unwrap().id, "v4l2:/dev/video0");
        assert_eq!(
            find_camera(&cams, Some(" ")).unwrap().id,
            "v4l2:/dev/video0"
        );
        assert_eq!(
            find_camera(&cams, Some("v4l2:/dev/video2")).unwrap().name,
            "USB Camera"
        );
        assert_eq!(
            find_camera(&cams, Some("usb camera")).unwrap().id,
            "v4l2:/dev/video2"
        );
        assert_eq!(
            find_camera(&cams, Some("testcam")).unwrap().id,
            "pipewire:TandemTestCam"
        );
        // "camera" is in two names: ambiguous.
        let err = find_camera(&cams, Some("camera")).unwrap_err();
        assert!(matches!(err, CameraError::NotFound { .. }));
        assert!(err.to_string().contains("USB Camera"), "{err}");
        assert!(matches!(
            find_camera(&cams, Some("nothing")),
            Err(CameraError::NotFound { .. })
        ));
        assert_eq!(find_camera(&[], None), Err(CameraError::NoCamera));
        let err = find_camera(&[], Some("x")).unwrap_err();
        assert!(err.to_string().contains("none"), "{err}");
    }

    #[test]
    fn descriptions() {
        let f = CameraFormat {
            encoding: CameraEncoding::Mjpeg,
            width: SizeRange::exactly(1280),
            height: SizeRange::exactly(720),
            frame_rates: FrameRates::List(vec![Fraction::new(30, 1), Fraction::new(15, 1)]),
        };
        assert_eq!(f.to_string(), "MJPEG 1280x720 15,30fps");
        let f = CameraFormat {
            encoding: CameraEncoding::Raw("YUY2".into()),
            width: SizeRange { min: 1, max: 8192 },
            height: SizeRange::exactly(240),
            frame_rates: FrameRates::Range {
                min: Fraction::new(0, 1),
                max: Fraction::new(30000, 1001),
            },
        };
        assert_eq!(f.to_string(), "YUY2 1-8192x240 0-29.97fps");
    }
}
