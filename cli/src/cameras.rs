//! `tandem-cli cameras`: one `camera …` line per camera of this machine, or (`--record`) a few
//! seconds captured from one into a YUV4MPEG2 file, to check a camera without a call.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use tandem_video::camera::{CameraError, CameraSource, list_cameras};
use tandem_video::source::{SourceError, VideoSource};
use tandem_video::y4m::create_y4m;

use crate::args::parse_video_size;
use crate::output::{Event, Exit};

/// Options of `tandem-cli cameras`.
#[derive(Debug, Clone, Args)]
pub struct CamerasArgs {
    /// Record from a camera into this YUV4MPEG2 file instead of listing.
    #[arg(long, value_name = "OUT.y4m")]
    pub record: Option<PathBuf>,
    /// The camera to record from: its id, name or a fragment of either (default: the first).
    #[arg(long, value_name = "ID|NAME", requires = "record")]
    pub camera: Option<String>,
    /// Seconds to record.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=600))]
    pub seconds: u32,
    /// Size of the recorded pictures, WIDTHxHEIGHT (the camera's picture is scaled to it).
    #[arg(long = "video-size", value_name = "WxH", default_value = "640x480", value_parser = parse_video_size)]
    pub video_size: (u32, u32),
    /// Frame rate of the recording.
    #[arg(long = "video-fps", value_name = "N", default_value_t = 15, value_parser = clap::value_parser!(u32).range(1..=60))]
    pub video_fps: u32,
}

/// The exit code for a camera that could not be listed or opened.
fn exit_for(err: &CameraError) -> Exit {
    match err {
        CameraError::NoCamera
        | CameraError::NotFound { .. }
        | CameraError::NoUsableFormat { .. }
        | CameraError::Size(_)
        | CameraError::Unavailable(_) => Exit::Usage,
        _ => Exit::Network,
    }
}

/// Runs `cameras`: lists, or records with `--record`.
pub fn run(args: &CamerasArgs) -> Exit {
    match &args.record {
        Some(path) => record(args, path.clone()),
        None => list(),
    }
}

/// Prints `camera id=… name=… formats="…; …"` per camera, then `cameras count=N`.
fn list() -> Exit {
    let cameras = match list_cameras() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tandem-cli: {e}");
            return exit_for(&e);
        }
    };
    for camera in &cameras {
        let formats: Vec<String> = camera.formats.iter().map(|f| f.to_string()).collect();
        Event::new("camera")
            .kv("id", &camera.id)
            .kv("name", &camera.name)
            .kv("formats", formats.join("; "))
            .emit();
    }
    Event::new("cameras").kv("count", cameras.len()).emit();
    if cameras.is_empty() {
        eprintln!("tandem-cli: no camera is connected");
    }
    Exit::Success
}

/// Captures `--seconds` from the camera into `path`: `camera recording …`, then
/// `camera recorded frames=N path=…` (or `camera failed reason=…`).
fn record(args: &CamerasArgs, path: PathBuf) -> Exit {
    let (width, height) = args.video_size;
    let fps = args.video_fps;
    let mut source = match CameraSource::open(args.camera.as_deref(), width, height, fps) {
        Ok(s) => s,
        Err(e) => {
            Event::new("camera")
                .kv("failed", "open")
                .kv("reason", &e)
                .emit();
            return exit_for(&e);
        }
    };
    Event::new("camera")
        .kv("recording", &source.camera().id)
        .kv("name", &source.camera().name)
        .kv("format", source.capture_format())
        .kv("size", format!("{width}x{height}"))
        .kv("fps", fps)
        .emit();
    let mut writer = match create_y4m(&path, fps) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("tandem-cli: cannot write {}: {e}", path.display());
            return Exit::Usage;
        }
    };
    let wanted = u64::from(args.seconds) * u64::from(fps);
    let deadline = Instant::now() + Duration::from_secs(u64::from(args.seconds) + 10);
    let mut failure = None;
    while writer.frames() < wanted && Instant::now() < deadline {
        match source.next_frame() {
            Ok(frame) => {
                if let Err(e) = writer.write_frame(&frame) {
                    eprintln!("tandem-cli: writing {}: {e}", path.display());
                    return Exit::Usage;
                }
            }
            Err(SourceError::Ended) => break,
            Err(e) => {
                failure = Some(e.to_string());
                break;
            }
        }
    }
    let frames = writer.frames();
    if let Err(e) = writer.finish() {
        eprintln!("tandem-cli: finishing {}: {e}", path.display());
        return Exit::Usage;
    }
    Event::new("camera")
        .kv("recorded", frames)
        .kv("path", path.display())
        .emit();
    match failure {
        Some(reason) => {
            Event::new("camera")
                .kv("failed", "capture")
                .kv("reason", reason)
                .emit();
            Exit::Network
        }
        None if frames < wanted => {
            Event::new("camera")
                .kv("failed", "capture")
                .kv("reason", format!("{frames} of {wanted} frames in time"))
                .emit();
            Exit::Network
        }
        None => Exit::Success,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::args::{Cli, Command};

    #[test]
    fn cameras_flags_parse() {
        let cli = Cli::try_parse_from(["tandem-cli", "cameras"]).unwrap();
        let Some(Command::Cameras(a)) = cli.command else {
            panic!("not cameras");
        };
        assert!(a.record.is_none() && a.camera.is_none());
        assert_eq!((a.video_size, a.video_fps, a.seconds), ((640, 480), 15, 3));
        let cli = Cli::try_parse_from([
            "tandem-cli",
            "cameras",
            "--record",
            "out.y4m",
            "--camera",
            "TestCam",
            "--seconds",
            "2",
            "--video-size",
            "352x288",
        ])
        .unwrap();
        let Some(Command::Cameras(a)) = cli.command else {
            panic!("not cameras");
        };
        assert_eq!(a.camera.as_deref(), Some("TestCam"));
        assert_eq!((a.video_size, a.seconds), ((352, 288), 2));
        // --camera only makes sense with --record; no zero-second recordings.
        assert!(Cli::try_parse_from(["tandem-cli", "cameras", "--camera", "x"]).is_err());
        assert!(
            Cli::try_parse_from(["tandem-cli", "cameras", "--record", "o", "--seconds", "0"])
                .is_err()
        );
    }
}
