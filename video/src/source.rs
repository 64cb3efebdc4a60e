//! Headless video sources: a moving test pattern with a frame counter, and Y4M files.

use std::fs::File;
use std::io::{self, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::counter::stamp_counter;
use crate::frame::{FrameError, VideoFrame, check_size};
use crate::y4m::{Y4mHeader, Y4mReader};

/// Highest frame rate a source runs at.
pub const MAX_SOURCE_FPS: u32 = 120;

/// Why a source could not deliver a frame.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SourceError {
    /// Reading the input failed.
    #[error("video source I/O: {0}")]
    Io(#[from] io::Error),
    /// The input is not in the expected format.
    #[error("video source format: {0}")]
    Format(String),
    /// A frame could not be built.
    #[error("video source frame: {0}")]
    Frame(#[from] FrameError),
    /// The source has no more frames.
    #[error("video source ended")]
    Ended,
    /// The capture device failed, vanished or stopped delivering pictures.
    #[error("video device: {0}")]
    Device(String),
}

/// Something that produces raw frames at a nominal rate (camera, file, test pattern).
pub trait VideoSource: Send {
    /// The next frame.
    fn next_frame(&mut self) -> Result<VideoFrame, SourceError>;
    /// The frame size the source produces.
    fn size(&self) -> (u32, u32);
    /// The nominal frames per second.
    fn fps(&self) -> u32;
}

/// 75 % colour bars in BT.601 limited range (Y, U, V): white, yellow, cyan, green, magenta,
/// red, blue, black.
const BARS: [[u8; 3]; 8] = [
    [180, 128, 128],
    [162, 44, 142],
    [131, 156, 44],
    [112, 72, 58],
    [84, 184, 198],
    [65, 100, 212],
    [35, 212, 114],
    [16, 128, 128],
];

/// A synthetic source: colour bars scrolling sideways, a box bouncing around, and the frame
/// number stamped with [`stamp_counter`] (readable with [`crate::counter::read_counter`]).
pub struct PatternSource {
    width: u32,
    height: u32,
    fps: u32,
    frame_no: u32,
}

impl PatternSource {
    /// A pattern of `width` x `height` at `fps` (clamped to 1..=[`MAX_SOURCE_FPS`]).
    pub fn new(width: u32, height: u32, fps: u32) -> Result<Self, FrameError> {
        check_size(width, height)?;
        Ok(PatternSource {
            width,
            height,
            fps: fps.clamp(1, MAX_SOURCE_FPS),
            frame_no: 0,
        })
    }

    /// The number the next frame carries.
    pub fn frame_number(&self) -> u32 {
        self.frame_no
    }

    /// Frame number `n` of the pattern (the source's sequence is `frame(0)`, `frame(1)`, ...).
    pub fn frame(&self, n: u32) -> Result<VideoFrame, FrameError> {
        let (w, h) = (self.width, self.height);
        let mut frame = VideoFrame::black(w, h)?;
        let cw = frame.chroma_width() as usize;
        // Bars scroll one full width every 4 seconds.
        let period = u64::from(self.fps) * 4;
        let shift = (u64::from(n) % period * u64::from(w) / period) as u32;
        let bar_of = |x: u32| -> [u8; 3] {
            let pos = (x + shift) % w;
            BARS[(pos as usize * BARS.len()) / w as usize]
        };
        let row_y: Vec<u8> = (0..w).map(|x| bar_of(x)[0]).collect();
        let row_u: Vec<u8> = (0..cw as u32).map(|x| bar_of(x * 2)[1]).collect();
        let row_v: Vec<u8> = (0..cw as u32).map(|x| bar_of(x * 2)[2]).collect();
        for line in frame.y.chunks_exact_mut(w as usize) {
            line.copy_from_slice(&row_y);
        }
        for line in frame.u.chunks_exact_mut(cw) {
            line.copy_from_slice(&row_u);
        }
        for line in frame.v.chunks_exact_mut(cw) {
            line.copy_from_slice(&row_v);
        }
        // A box bouncing diagonally in the lower part (below the counter).
        let size = (w.min(h) / 5).max(2);
        let top = h * 2 / 5 + h / 5;
        let span_x = w.saturating_sub(size).max(1);
        let span_y = h.saturating_sub(top + size).max(1);
        let step = (w / (self.fps * 2)).max(1);
        let travel = u64::from(n) * u64::from(step);
        let bounce = |t: u64, span: u32| -> u32 {
            let span = u64::from(span);
            let p = t % (2 * span);
            (if p < span { p } else { 2 * span - p }) as u32
        };
        let bx = bounce(travel, span_x);
        let by = top + bounce(travel * 3 / 4, span_y);
        frame.fill_rect(bx, by, size, size, [210, 16, 146]);
        stamp_counter(&mut frame, n);
        Ok(frame)
    }
}

impl VideoSource for PatternSource {
    fn next_frame(&mut self) -> Result<VideoFrame, SourceError> {
        let frame = self.frame(self.frame_no)?;
        self.frame_no = self.frame_no.wrapping_add(1);
        Ok(frame)
    }

    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn fps(&self) -> u32 {
        self.fps
    }
}

/// Frames from a Y4M file, optionally looped forever.
pub struct Y4mSource {
    path: PathBuf,
    reader: Y4mReader<BufReader<File>>,
    header: Y4mHeader,
    looped: bool,
}

impl Y4mSource {
    /// Opens `path`; with `looped` the file restarts at its end (it must hold at least one frame).
    pub fn open(path: &Path, looped: bool) -> Result<Self, SourceError> {
        let reader = crate::y4m::open_y4m(path)?;
        let header = reader.header().clone();
        Ok(Y4mSource {
            path: path.to_path_buf(),
            reader,
            header,
            looped,
        })
    }

    /// The file's header.
    pub fn header(&self) -> &Y4mHeader {
        &self.header
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn rewind(&mut self) -> Result<(), SourceError> {
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(0))?;
        let reader = Y4mReader::new(BufReader::new(file))?;
        if *reader.header() != self.header {
            return Err(SourceError::Format(format!(
                "{} changed while looping",
                self.path.display()
            )));
        }
        self.reader = reader;
        Ok(())
    }
}

impl VideoSource for Y4mSource {
    fn next_frame(&mut self) -> Result<VideoFrame, SourceError> {
        if let Some(frame) = self.reader.read_frame()? {
            return Ok(frame);
        }
        if !self.looped || self.reader.frames_read() == 0 {
            return Err(SourceError::Ended);
        }
        self.rewind()?;
        self.reader.read_frame()?.ok_or(SourceError::Ended)
    }

    fn size(&self) -> (u32, u32) {
        (self.header.width, self.header.height)
    }

    fn fps(&self) -> u32 {
        self.header.fps().min(MAX_SOURCE_FPS)
    }
}
