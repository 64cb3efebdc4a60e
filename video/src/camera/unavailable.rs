//! No camera backend (Android builds): nothing to list, nothing to open.

use super::{CameraError, CameraInfo, CaptureFormat};
use crate::frame::VideoFrame;
use crate::source::SourceError;

/// This backend does not capture.
pub(super) const SUPPORTED: bool = false;

const WHY: &str = "this platform's camera API is not wired in yet";

pub(super) fn list_cameras() -> Result<Vec<CameraInfo>, CameraError> {
    Ok(Vec::new())
}

/// Never built: [`Capture::open`] always fails.
pub(super) struct Capture {
    never: std::convert::Infallible,
}

impl Capture {
    pub(super) fn open(
        _query: Option<&str>,
        _width: u32,
        _height: u32,
        _fps: u32,
    ) -> Result<(Capture, CameraInfo, CaptureFormat), CameraError> {
        Err(CameraError::Unavailable(WHY.into()))
    }

    pub(super) fn frames(&self) -> u64 {
        match self.never {}
    }

    pub(super) fn next_frame(&mut self, _camera: &str) -> Result<VideoFrame, SourceError> {
        match self.never {}
    }
}
