//! The GStreamer camera backend: `DeviceMonitor` listing and an appsink capture pipeline
//! `source ! capsfilter(the chosen format) ! [jpegdec !] videoconvert ! videoscale ! videorate
//! ! capsfilter(I420 WxH@F) ! appsink`.
//!
//! The explicit caps right after the source matter: PipeWire's source does not negotiate
//! against "anything" (a bare `pipewiresrc ! videoconvert` never starts).

use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use tracing::{debug, warn};

use super::{
    CameraEncoding, CameraError, CameraFormat, CameraInfo, CaptureFormat, Fraction, FrameRates,
    SizeRange, choose_format, find_camera,
};
use crate::frame::VideoFrame;
use crate::source::SourceError;

/// This backend captures.
pub(super) const SUPPORTED: bool = true;

/// How long the first picture may take (cameras take a moment to start streaming).
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(6);
/// How long a running camera may stay silent before `next_frame` reports it.
const FRAME_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a wait for a picture looks at the pipeline's bus.
const BUS_POLL: Duration = Duration::from_millis(100);
/// The device properties that identify a camera, most specific first.
const ID_PROPERTIES: [&str; 8] = [
    "api.v4l2.path",
    "device.path",
    "object.path",
    "node.name",
    "device.serial",
    "unique-id",
    "device.id",
    "device.guid",
];

/// Initialises GStreamer once per process (it scans the plugin registry).
fn init() -> Result<(), CameraError> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| gst::init().map_err(|e| e.to_string()))
        .clone()
        .map_err(CameraError::Init)
}

/// The process's device monitor on `Video/Source`, started on first use and never stopped: its
/// providers keep their device lists current (hot-plug), and stopping PipeWire 0.3.65's provider
/// corrupts the heap (seen here: `gst_device_monitor_stop` then a later `free()` aborts).
fn monitor() -> Result<&'static Mutex<Option<gst::DeviceMonitor>>, CameraError> {
    static MONITOR: OnceLock<Mutex<Option<gst::DeviceMonitor>>> = OnceLock::new();
    init()?;
    Ok(MONITOR.get_or_init(|| Mutex::new(None)))
}

/// The video sources GStreamer's device providers know now, with their descriptions.
fn enumerate() -> Result<Vec<(gst::Device, CameraInfo)>, CameraError> {
    let mut slot = monitor()?.lock().unwrap_or_else(PoisonError::into_inner);
    if slot.is_none() {
        let monitor = gst::DeviceMonitor::new();
        monitor.add_filter(Some("Video/Source"), None);
        if let Err(e) = monitor.start() {
            // No provider could start: no camera API on this machine (no /dev/video*, no
            // PipeWire). Tried again on the next call (a PipeWire session may come up).
            debug!(error = %e, providers = ?monitor.providers(), "no camera device provider started");
            return Ok(Vec::new());
        }
        *slot = Some(monitor);
    }
    let devices = slot.as_ref().map(|m| m.devices()).unwrap_or_default();
    drop(slot);
    let mut out: Vec<(gst::Device, CameraInfo)> = Vec::new();
    for device in devices {
        let mut info = describe(&device);
        // Two devices with one id (the same node seen twice) stay distinguishable.
        let base = info.id.clone();
        let mut n = 2;
        while out.iter().any(|(_, other)| other.id == info.id) {
            info.id = format!("{base}#{n}");
            n += 1;
        }
        out.push((device, info));
    }
    Ok(out)
}

pub(super) fn list_cameras() -> Result<Vec<CameraInfo>, CameraError> {
    Ok(enumerate()?.into_iter().map(|(_, info)| info).collect())
}

/// A property of a device as text (strings as they are, numbers printed).
fn property(props: &gst::StructureRef, key: &str) -> Option<String> {
    let value = props.value(key).ok()?;
    let text = match value.get::<String>() {
        Ok(s) => s,
        Err(_) => value.transform::<String>().ok()?.get::<String>().ok()?,
    };
    let text = text.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// The capture API from a device's GObject type (`GstPipeWireDevice` → `pipewire`,
/// `GstV4l2Device` → `v4l2`, `GstAvfDevice` → `avf`, `GstMFDevice` → `mf`).
fn api_of_type(type_name: &str) -> String {
    let core = type_name.strip_prefix("Gst").unwrap_or(type_name);
    let core = core.strip_suffix("Device").unwrap_or(core);
    if core.is_empty() {
        "camera".to_owned()
    } else {
        core.to_ascii_lowercase()
    }
}

/// The id, name and formats of a device.
fn describe(device: &gst::Device) -> CameraInfo {
    let name = device.display_name().to_string();
    let props = device.properties();
    let api = props
        .as_ref()
        .and_then(|p| property(p, "device.api"))
        .unwrap_or_else(|| api_of_type(device.type_().name()));
    let key = props
        .as_ref()
        .and_then(|p| ID_PROPERTIES.iter().find_map(|k| property(p, k)))
        .unwrap_or_else(|| name.clone());
    let formats = device.caps().map(|c| parse_caps(&c)).unwrap_or_default();
    CameraInfo {
        id: format!("{api}:{key}"),
        name,
        formats,
    }
}

/// The formats a device's caps describe (system-memory structures only).
fn parse_caps(caps: &gst::CapsRef) -> Vec<CameraFormat> {
    let mut out = Vec::new();
    for (s, features) in caps.iter_with_features() {
        if !features.is_any()
            && !features.contains(gst::CAPS_FEATURE_MEMORY_SYSTEM_MEMORY)
            && features.size() > 0
        {
            continue;
        }
        let encodings = match s.name().as_str() {
            "video/x-raw" => strings(s, "format")
                .into_iter()
                .map(|f| {
                    if gst_video::VideoFormat::from_string(&f) == gst_video::VideoFormat::Unknown {
                        CameraEncoding::Other(format!("video/x-raw {f}"))
                    } else {
                        CameraEncoding::Raw(f)
                    }
                })
                .collect(),
            "image/jpeg" => vec![CameraEncoding::Mjpeg],
            other => vec![CameraEncoding::Other(other.to_owned())],
        };
        let widths = sizes(s, "width");
        let heights = sizes(s, "height");
        let rates = frame_rates(s);
        for encoding in &encodings {
            for width in &widths {
                for height in &heights {
                    let format = CameraFormat {
                        encoding: encoding.clone(),
                        width: *width,
                        height: *height,
                        frame_rates: rates.clone(),
                    };
                    if !out.contains(&format) {
                        out.push(format);
                    }
                }
            }
        }
    }
    out
}

/// A string field, or each string of a list field (raw caps without a format: none).
fn strings(s: &gst::StructureRef, field: &str) -> Vec<String> {
    let Ok(value) = s.value(field) else {
        return Vec::new();
    };
    if let Ok(text) = value.get::<String>() {
        return vec![text];
    }
    if let Ok(list) = value.get::<gst::List>() {
        return list.iter().filter_map(|v| v.get::<String>().ok()).collect();
    }
    Vec::new()
}

fn positive(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

/// A size field: one number, a range, or a list of numbers (missing: anything).
fn sizes(s: &gst::StructureRef, field: &str) -> Vec<SizeRange> {
    let Ok(value) = s.value(field) else {
        return vec![SizeRange {
            min: 1,
            max: crate::frame::MAX_WIDTH.max(crate::frame::MAX_HEIGHT),
        }];
    };
    if let Ok(n) = value.get::<i32>() {
        return vec![SizeRange::exactly(positive(n))];
    }
    if let Ok(r) = value.get::<gst::IntRange<i32>>() {
        return vec![SizeRange {
            min: positive(r.min()),
            max: positive(r.max()),
        }];
    }
    if let Ok(list) = value.get::<gst::List>() {
        return list
            .iter()
            .filter_map(|v| v.get::<i32>().ok())
            .map(|n| SizeRange::exactly(positive(n)))
            .collect();
    }
    Vec::new()
}

fn fraction(f: gst::Fraction) -> Fraction {
    Fraction::new(positive(f.numer()), positive(f.denom()))
}

/// The `framerate` field: one rate, a list, or a range (missing: any).
fn frame_rates(s: &gst::StructureRef) -> FrameRates {
    let Ok(value) = s.value("framerate") else {
        return FrameRates::Any;
    };
    if let Ok(f) = value.get::<gst::Fraction>() {
        return FrameRates::List(vec![fraction(f)]);
    }
    if let Ok(r) = value.get::<gst::FractionRange>() {
        return FrameRates::Range {
            min: fraction(r.min()),
            max: fraction(r.max()),
        };
    }
    if let Ok(list) = value.get::<gst::List>() {
        return FrameRates::List(
            list.iter()
                .filter_map(|v| v.get::<gst::Fraction>().ok())
                .map(fraction)
                .collect(),
        );
    }
    FrameRates::Any
}

/// The caps the source is held to: exactly the chosen format.
fn source_caps(format: &CaptureFormat) -> Result<gst::Caps, CameraError> {
    let to_i32 = |n: u32| {
        i32::try_from(n).map_err(|_| CameraError::Pipeline(format!("{n} is out of range")))
    };
    let rate = gst::Fraction::new(to_i32(format.fps.num)?, to_i32(format.fps.den.max(1))?);
    let builder = match &format.encoding {
        CameraEncoding::Raw(f) => gst::Caps::builder("video/x-raw").field("format", f.as_str()),
        CameraEncoding::Mjpeg => gst::Caps::builder("image/jpeg"),
        CameraEncoding::Other(media) => {
            return Err(CameraError::Pipeline(format!("cannot capture {media}")));
        }
    };
    Ok(builder
        .field("width", to_i32(format.width)?)
        .field("height", to_i32(format.height)?)
        .field("framerate", rate)
        .build())
}

fn make(factory: &str) -> Result<gst::Element, CameraError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| CameraError::MissingElement(factory.to_owned()))
}

/// The text of an error or end-of-stream message.
fn message_text(msg: &gst::Message) -> Option<String> {
    match msg.view() {
        gst::MessageView::Error(e) => {
            let source = msg
                .src()
                .map(|s| s.path_string().to_string())
                .unwrap_or_default();
            let debug = e.debug().map(|d| format!(" ({d})")).unwrap_or_default();
            Some(format!("{}{debug} [{source}]", e.error()))
        }
        gst::MessageView::Eos(_) => Some("the camera stopped streaming (end of stream)".into()),
        _ => None,
    }
}

/// A capture pipeline ending in an appsink.
pub(super) struct Capture {
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    bus: gst::Bus,
    /// The caps of the last picture and their I420 layout.
    info: Option<(gst::Caps, gst_video::VideoInfo)>,
    frames: u64,
    /// Set once the camera failed (reported once; then the source has ended).
    failed: bool,
}

impl Capture {
    pub(super) fn open(
        query: Option<&str>,
        width: u32,
        height: u32,
        fps: u32,
    ) -> Result<(Capture, CameraInfo, CaptureFormat), CameraError> {
        let devices = enumerate()?;
        let infos: Vec<CameraInfo> = devices.iter().map(|(_, i)| i.clone()).collect();
        let info = find_camera(&infos, query)?.clone();
        let device = devices
            .iter()
            .find(|(_, i)| i.id == info.id)
            .map(|(d, _)| d.clone())
            .ok_or(CameraError::NoCamera)?;
        let format = choose_format(&info.formats, width, height, fps).ok_or_else(|| {
            CameraError::NoUsableFormat {
                camera: info.name.clone(),
            }
        })?;
        debug!(camera = %info.id, %format, width, height, fps, "opening camera");
        let capture = Capture::start(&device, &format, width, height, fps)?;
        Ok((capture, info, format))
    }

    fn start(
        device: &gst::Device,
        format: &CaptureFormat,
        width: u32,
        height: u32,
        fps: u32,
    ) -> Result<Capture, CameraError> {
        let pipeline_err = |e: gst::glib::BoolError| CameraError::Pipeline(e.to_string());
        let source = device.create_element(None).map_err(|e| {
            CameraError::Pipeline(format!("cannot create the camera's source: {e}"))
        })?;
        let in_filter = make("capsfilter")?;
        in_filter.set_property("caps", source_caps(format)?);
        let mut chain = vec![source, in_filter];
        if format.encoding == CameraEncoding::Mjpeg {
            chain.push(make("jpegdec")?);
        }
        chain.push(make("videoconvert")?);
        chain.push(make("videoscale")?);
        chain.push(make("videorate")?);
        let out_filter = make("capsfilter")?;
        let to_i32 = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
        out_filter.set_property(
            "caps",
            gst::Caps::builder("video/x-raw")
                .field("format", "I420")
                .field("width", to_i32(width))
                .field("height", to_i32(height))
                .field("framerate", gst::Fraction::new(to_i32(fps), 1))
                .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
                .build(),
        );
        chain.push(out_filter);
        let sink = gst_app::AppSink::builder()
            .max_buffers(2)
            .drop(true)
            .sync(false)
            .build();
        chain.push(sink.clone().upcast());
        let pipeline = gst::Pipeline::new();
        pipeline.add_many(chain.iter()).map_err(pipeline_err)?;
        gst::Element::link_many(chain.iter()).map_err(|e| {
            CameraError::Pipeline(format!("cannot link the capture pipeline ({format}): {e}"))
        })?;
        let bus = pipeline
            .bus()
            .ok_or_else(|| CameraError::Pipeline("the pipeline has no bus".into()))?;
        let capture = Capture {
            pipeline,
            sink,
            bus,
            info: None,
            frames: 0,
            failed: false,
        };
        if let Err(e) = capture.pipeline.set_state(gst::State::Playing) {
            let detail = capture
                .bus
                .pop_filtered(&[gst::MessageType::Error])
                .and_then(|m| message_text(&m))
                .unwrap_or_else(|| e.to_string());
            return Err(CameraError::Pipeline(format!(
                "the camera did not start: {detail}"
            )));
        }
        Ok(capture)
    }

    pub(super) fn frames(&self) -> u64 {
        self.frames
    }

    /// Stops the pipeline after a failure; later calls report the end.
    fn fail(&mut self, camera: &str, why: String) -> SourceError {
        warn!(camera, error = %why, "camera failed");
        self.failed = true;
        let _ = self.pipeline.set_state(gst::State::Null);
        SourceError::Device(format!("camera {camera}: {why}"))
    }

    pub(super) fn next_frame(&mut self, camera: &str) -> Result<VideoFrame, SourceError> {
        if self.failed {
            return Err(SourceError::Ended);
        }
        let limit = if self.frames == 0 {
            FIRST_FRAME_TIMEOUT
        } else {
            FRAME_TIMEOUT
        };
        let deadline = Instant::now() + limit;
        loop {
            if let Some(msg) = self
                .bus
                .pop_filtered(&[gst::MessageType::Error, gst::MessageType::Eos])
                && let Some(why) = message_text(&msg)
            {
                return Err(self.fail(camera, why));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(SourceError::Device(format!(
                    "camera {camera}: no picture for {} s",
                    limit.as_secs()
                )));
            }
            let wait = gst::ClockTime::from_nseconds(
                u64::try_from(left.min(BUS_POLL).as_nanos()).unwrap_or(u64::MAX),
            );
            match self.sink.try_pull_sample(wait) {
                Some(sample) => {
                    let frame = self.copy(&sample)?;
                    self.frames += 1;
                    return Ok(frame);
                }
                None if self.sink.is_eos() => {
                    return Err(self.fail(camera, "the camera stopped streaming".into()));
                }
                None => {}
            }
        }
    }

    /// A tightly packed copy of an I420 sample (the buffer's rows may be padded).
    fn copy(&mut self, sample: &gst::Sample) -> Result<VideoFrame, SourceError> {
        let format_err = |what: String| SourceError::Format(format!("camera picture: {what}"));
        if let Some(caps) = sample.caps()
            && self
                .info
                .as_ref()
                .is_none_or(|(known, _)| known.as_ref() != caps)
        {
            let info = gst_video::VideoInfo::from_caps(caps)
                .map_err(|e| format_err(format!("caps {caps}: {e}")))?;
            if info.format() != gst_video::VideoFormat::I420 {
                return Err(format_err(format!("format {:?}, not I420", info.format())));
            }
            self.info = Some((caps.to_owned(), info));
        }
        let (_, info) = self
            .info
            .as_ref()
            .ok_or_else(|| format_err("no caps".into()))?;
        let buffer = sample
            .buffer()
            .ok_or_else(|| format_err("no buffer".into()))?;
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, info)
            .map_err(|e| format_err(format!("unreadable buffer: {e}")))?;
        let (width, height) = (info.width(), info.height());
        let plane = |index: u32, w: u32, h: u32| -> Result<Vec<u8>, SourceError> {
            let data = frame
                .plane_data(index)
                .map_err(|e| format_err(format!("plane {index}: {e}")))?;
            let stride = frame
                .plane_stride()
                .get(index as usize)
                .and_then(|s| usize::try_from(*s).ok())
                .ok_or_else(|| format_err(format!("plane {index} has no stride")))?;
            let (w, h) = (w as usize, h as usize);
            let mut out = Vec::with_capacity(w * h);
            for row in 0..h {
                let start = row * stride;
                let line = data
                    .get(start..start + w)
                    .ok_or_else(|| format_err(format!("plane {index} is short")))?;
                out.extend_from_slice(line);
            }
            Ok(out)
        };
        let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
        let y = plane(0, width, height)?;
        let u = plane(1, cw, ch)?;
        let v = plane(2, cw, ch)?;
        Ok(VideoFrame::from_planes(width, height, y, u, v)?)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Err(e) = self.pipeline.set_state(gst::State::Null) {
            debug!(error = %e, "stopping the camera pipeline");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_names_from_device_types() {
        assert_eq!(api_of_type("GstPipeWireDevice"), "pipewire");
        assert_eq!(api_of_type("GstV4l2Device"), "v4l2");
        assert_eq!(api_of_type("GstMFDevice"), "mf");
        assert_eq!(api_of_type("GstDevice"), "camera");
    }
}
