//! YUV4MPEG2 (`.y4m`) files: a reader for 4:2:0 8-bit streams (C420, C420jpeg, C420paldv,
//! C420mpeg2) that refuses absurd sizes, truncated frames and malformed headers without
//! allocating more than one frame, and a writer (always `C420jpeg`).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use crate::frame::{VideoFrame, plane_sizes};
use crate::source::SourceError;

/// Longest header or FRAME line accepted, in bytes.
const MAX_LINE: usize = 4096;
const MAGIC: &str = "YUV4MPEG2";

/// The stream header of a Y4M file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Y4mHeader {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frame rate numerator.
    pub fps_num: u32,
    /// Frame rate denominator.
    pub fps_den: u32,
}

impl Y4mHeader {
    /// The frame rate rounded to whole frames per second, at least 1.
    pub fn fps(&self) -> u32 {
        if self.fps_den == 0 {
            return 1;
        }
        ((u64::from(self.fps_num) + u64::from(self.fps_den) / 2) / u64::from(self.fps_den))
            .clamp(1, 1000) as u32
    }
}

/// Reads one `\n`-terminated line of at most [`MAX_LINE`] bytes. `Ok(None)` at a clean end of
/// input (nothing read).
fn read_line<R: Read>(r: &mut R, what: &str) -> Result<Option<Vec<u8>>, SourceError> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match r.read(&mut byte) {
            Ok(0) => {
                if line.is_empty() {
                    return Ok(None);
                }
                return Err(SourceError::Format(format!("{what} line truncated")));
            }
            Ok(_) => {
                if byte[0] == b'\n' {
                    return Ok(Some(line));
                }
                if line.len() >= MAX_LINE {
                    return Err(SourceError::Format(format!(
                        "{what} line longer than {MAX_LINE} bytes"
                    )));
                }
                line.push(byte[0]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(SourceError::Io(e)),
        }
    }
}

fn parse_u32(field: &str, what: &str) -> Result<u32, SourceError> {
    field
        .parse::<u32>()
        .map_err(|_| SourceError::Format(format!("bad {what} {field:?}")))
}

/// Parses the stream header line (without its newline).
fn parse_header(line: &[u8]) -> Result<Y4mHeader, SourceError> {
    let text =
        std::str::from_utf8(line).map_err(|_| SourceError::Format("header is not ASCII".into()))?;
    let mut fields = text.split(' ').filter(|f| !f.is_empty());
    if fields.next() != Some(MAGIC) {
        return Err(SourceError::Format("not a YUV4MPEG2 stream".into()));
    }
    let (mut width, mut height) = (None, None);
    let (mut fps_num, mut fps_den) = (30, 1);
    for field in fields {
        let (tag, value) = field.split_at(1);
        match tag {
            "W" => width = Some(parse_u32(value, "width")?),
            "H" => height = Some(parse_u32(value, "height")?),
            "F" => {
                let (n, d) = value
                    .split_once(':')
                    .ok_or_else(|| SourceError::Format(format!("bad frame rate {value:?}")))?;
                fps_num = parse_u32(n, "frame rate")?;
                fps_den = parse_u32(d, "frame rate")?;
                if fps_num == 0 || fps_den == 0 {
                    return Err(SourceError::Format(format!("bad frame rate {value:?}")));
                }
            }
            "C" if !matches!(value, "420" | "420jpeg" | "420paldv" | "420mpeg2") => {
                return Err(SourceError::Format(format!(
                    "unsupported colour space C{value} (only 4:2:0 8-bit)"
                )));
            }
            // Interlacing, aspect ratio, extensions and a 4:2:0 colour space do not change
            // the frame layout.
            _ => {}
        }
    }
    let (Some(width), Some(height)) = (width, height) else {
        return Err(SourceError::Format("header lacks W or H".into()));
    };
    plane_sizes(width, height).map_err(SourceError::Frame)?;
    Ok(Y4mHeader {
        width,
        height,
        fps_num,
        fps_den,
    })
}

/// Reads frames from a Y4M stream.
pub struct Y4mReader<R: Read> {
    reader: R,
    header: Y4mHeader,
    frames: u64,
}

impl<R: Read> Y4mReader<R> {
    /// Reads and checks the stream header.
    pub fn new(mut reader: R) -> Result<Self, SourceError> {
        let line = read_line(&mut reader, "header")?
            .ok_or_else(|| SourceError::Format("empty file".into()))?;
        let header = parse_header(&line)?;
        Ok(Y4mReader {
            reader,
            header,
            frames: 0,
        })
    }

    /// The stream header.
    pub fn header(&self) -> &Y4mHeader {
        &self.header
    }

    /// Frames read so far.
    pub fn frames_read(&self) -> u64 {
        self.frames
    }

    /// The next frame; `Ok(None)` at the end of the stream, an error for a truncated frame or
    /// a malformed FRAME line.
    pub fn read_frame(&mut self) -> Result<Option<VideoFrame>, SourceError> {
        let Some(line) = read_line(&mut self.reader, "FRAME")? else {
            return Ok(None);
        };
        let is_frame = line.starts_with(b"FRAME") && matches!(line.get(5), None | Some(b' '));
        if !is_frame {
            return Err(SourceError::Format(format!(
                "expected FRAME after frame {}",
                self.frames
            )));
        }
        let (w, h) = (self.header.width, self.header.height);
        let (ys, cs) = plane_sizes(w, h).map_err(SourceError::Frame)?;
        let mut planes = [vec![0u8; ys], vec![0u8; cs], vec![0u8; cs]];
        for plane in &mut planes {
            self.reader.read_exact(plane).map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    SourceError::Format(format!("frame {} truncated", self.frames))
                } else {
                    SourceError::Io(e)
                }
            })?;
        }
        let [y, u, v] = planes;
        let frame = VideoFrame::from_planes(w, h, y, u, v).map_err(SourceError::Frame)?;
        self.frames += 1;
        Ok(Some(frame))
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.reader
    }
}

/// Opens a Y4M file for reading.
pub fn open_y4m(path: &Path) -> Result<Y4mReader<BufReader<File>>, SourceError> {
    Y4mReader::new(BufReader::new(File::open(path)?))
}

/// Writes frames as a Y4M stream; the header is written with the first frame's size and later
/// frames of another size are scaled to it.
pub struct Y4mWriter<W: Write> {
    writer: W,
    fps: u32,
    size: Option<(u32, u32)>,
    frames: u64,
}

impl<W: Write> Y4mWriter<W> {
    /// A writer at `fps` frames per second (0 is taken as 1).
    pub fn new(writer: W, fps: u32) -> Self {
        Y4mWriter {
            writer,
            fps: fps.max(1),
            size: None,
            frames: 0,
        }
    }

    /// Appends one frame (writing the header first if this is the first frame).
    pub fn write_frame(&mut self, frame: &VideoFrame) -> io::Result<()> {
        if !frame.is_consistent() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "frame planes do not match its size",
            ));
        }
        let (w, h) = match self.size {
            Some(size) => size,
            None => {
                writeln!(
                    self.writer,
                    "{MAGIC} W{} H{} F{}:1 Ip A1:1 C420jpeg",
                    frame.width, frame.height, self.fps
                )?;
                self.size = Some((frame.width, frame.height));
                (frame.width, frame.height)
            }
        };
        let scaled;
        let frame = if (frame.width, frame.height) == (w, h) {
            frame
        } else {
            scaled = frame
                .scaled(w, h)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            &scaled
        };
        self.writer.write_all(b"FRAME\n")?;
        self.writer.write_all(&frame.y)?;
        self.writer.write_all(&frame.u)?;
        self.writer.write_all(&frame.v)?;
        self.frames += 1;
        Ok(())
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The size of the stream (the first frame's), once a frame was written.
    pub fn size(&self) -> Option<(u32, u32)> {
        self.size
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.writer.flush()?;
        Ok(self.writer)
    }
}

/// Creates (truncates) a Y4M file for writing at `fps`.
pub fn create_y4m(path: &Path, fps: u32) -> io::Result<Y4mWriter<BufWriter<File>>> {
    Ok(Y4mWriter::new(BufWriter::new(File::create(path)?), fps))
}
