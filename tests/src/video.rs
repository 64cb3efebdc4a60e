//! Checking recorded video: a Y4M file written by a peer (`tandem-cli --record-video`) is read frame by frame
//! with `tandem-video`'s reader, and summarised — frame count, size, how many frames differ from their
//! predecessor, and the frame counter that [`tandem_video::source::PatternSource`] stamps into every frame it
//! makes (read back with [`tandem_video::counter::read_counter`]). Plus the source side: a Y4M file of that
//! pattern for peers that play a file (baresip's `avformat`).
//!
//! The frames are streamed, never all held: a 30 s recording at 640x480 would be 0.5 GB.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tandem_video::counter::read_counter;
use tandem_video::frame::VideoFrame;
use tandem_video::source::{PatternSource, VideoSource};
use tandem_video::y4m::{create_y4m, open_y4m};

use crate::error::{HarnessError, IoContext, Result};

/// Mean absolute luma difference above which a frame counts as different from its predecessor (the pattern moves
/// and its counter changes every frame; coding noise alone stays well below 1).
pub const DISTINCT_DIFF: f64 = 0.5;
/// Luma standard deviation below which a frame counts as flat (all one shade: black, grey, a decoder's blank).
pub const FLAT_STDDEV: f64 = 2.0;

/// What a Y4M recording contains.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingReport {
    /// The file that was read.
    pub path: PathBuf,
    /// Frames in the file.
    pub frames: u64,
    /// Frame width (from the header).
    pub width: u32,
    /// Frame height (from the header).
    pub height: u32,
    /// The header's frame rate, numerator.
    pub fps_num: u32,
    /// The header's frame rate, denominator.
    pub fps_den: u32,
    /// Frames that differ from their predecessor by more than [`DISTINCT_DIFF`] (the first frame counts).
    pub distinct_frames: u64,
    /// Frames whose luma is nearly uniform (standard deviation below [`FLAT_STDDEV`]).
    pub flat_frames: u64,
    /// The pattern counter of each frame, `None` where it could not be read.
    pub counters: Vec<Option<u32>>,
}

/// How the pattern counter runs through a recording (see [`RecordingReport::counter_stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CounterStats {
    /// Frames whose counter could be read.
    pub read: usize,
    /// The first counter read.
    pub first: Option<u32>,
    /// The last counter read.
    pub last: Option<u32>,
    /// The largest counter read.
    pub max: Option<u32>,
    /// The index (frame number in the file) of the last frame whose counter could be read.
    pub last_read_index: Option<usize>,
    /// The largest forward step between consecutive read counters (1 for a perfect recording; a freeze or a run
    /// of lost frames of `n` frames shows as `n + 1`).
    pub max_jump: u32,
    /// Steps where the counter went backwards (a source that restarted, or misread digits).
    pub backwards: usize,
    /// Steps where the counter repeated (the same frame recorded twice).
    pub repeats: usize,
}

/// Reads the Y4M recording at `path` and summarises it; fails when the file is missing, not Y4M, or truncated
/// mid-frame.
pub fn check_recording(path: &Path) -> Result<RecordingReport> {
    let mut reader = open_y4m(path).map_err(|e| HarnessError::Protocol {
        what: path.display().to_string(),
        detail: format!("not a readable Y4M file: {e}"),
    })?;
    let header = reader.header();
    let mut report = RecordingReport {
        path: path.to_path_buf(),
        frames: 0,
        width: header.width,
        height: header.height,
        fps_num: header.fps_num,
        fps_den: header.fps_den,
        distinct_frames: 0,
        flat_frames: 0,
        counters: Vec::new(),
    };
    let mut previous: Option<VideoFrame> = None;
    loop {
        let frame = match reader.read_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                return Err(HarnessError::Protocol {
                    what: path.display().to_string(),
                    detail: format!("frame {} unreadable: {e}", report.frames),
                });
            }
        };
        report.frames += 1;
        let changed = previous
            .as_ref()
            .and_then(|p| p.mean_abs_diff(&frame))
            .is_none_or(|d| d > DISTINCT_DIFF);
        if changed {
            report.distinct_frames += 1;
        }
        if luma_stddev(&frame) < FLAT_STDDEV {
            report.flat_frames += 1;
        }
        report.counters.push(read_counter(&frame));
        previous = Some(frame);
    }
    Ok(report)
}

/// The last frame of the Y4M file at `path`; fails when it has none or is unreadable.
pub fn last_frame(path: &Path) -> Result<VideoFrame> {
    let bad = |detail: String| HarnessError::Protocol {
        what: path.display().to_string(),
        detail,
    };
    let mut reader = open_y4m(path).map_err(|e| bad(format!("not a readable Y4M file: {e}")))?;
    let mut last = None;
    while let Some(frame) = reader
        .read_frame()
        .map_err(|e| bad(format!("unreadable frame: {e}")))?
    {
        last = Some(frame);
    }
    last.ok_or_else(|| bad("no frames".into()))
}

/// The standard deviation of a frame's luma samples (0 for an empty frame).
pub fn luma_stddev(frame: &VideoFrame) -> f64 {
    if frame.y.is_empty() {
        return 0.0;
    }
    let n = frame.y.len() as f64;
    let mean = frame.y.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = frame
        .y
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    var.sqrt()
}

/// Writes `seconds` of [`PatternSource`] frames (`width`x`height` at `fps`, counter stamped from 0) to a Y4M file
/// at `path`, for a peer that sends a file; returns the number of frames.
pub fn write_pattern_y4m(
    path: &Path,
    width: u32,
    height: u32,
    fps: u32,
    seconds: u32,
) -> Result<u64> {
    let bad = |detail: String| HarnessError::Protocol {
        what: path.display().to_string(),
        detail,
    };
    let mut source =
        PatternSource::new(width, height, fps).map_err(|e| bad(format!("pattern source: {e}")))?;
    let mut writer = create_y4m(path, fps).ctx(|| format!("creating {}", path.display()))?;
    for _ in 0..u64::from(fps) * u64::from(seconds) {
        let frame = source
            .next_frame()
            .map_err(|e| bad(format!("pattern frame: {e}")))?;
        writer
            .write_frame(&frame)
            .ctx(|| format!("writing {}", path.display()))?;
    }
    let frames = writer.frames();
    writer
        .finish()
        .ctx(|| format!("finishing {}", path.display()))?;
    Ok(frames)
}

/// The `key=value` fields of a `tandem-cli` event line (words without `=` are skipped).
pub fn line_fields(line: &str) -> BTreeMap<&str, &str> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .collect()
}

/// The last line of `stdout` that starts with `prefix` (e.g. `video started`, `video stats`).
pub fn last_line<'a>(stdout: &'a str, prefix: &str) -> Option<&'a str> {
    stdout.lines().rev().find(|l| {
        l.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
    })
}

/// The counters of `tandem-cli`'s `video stats sent=N received=N decoded=N …` line (printed at hang-up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliVideoStats {
    /// The line they came from.
    pub line: String,
    /// Every numeric field.
    pub fields: BTreeMap<String, u64>,
}

impl CliVideoStats {
    /// The last `video stats` line of `stdout`; `None` when there is none.
    pub fn parse(stdout: &str) -> Option<Self> {
        let line = last_line(stdout, "video stats")?;
        let fields = line_fields(line)
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect();
        Some(CliVideoStats {
            line: line.to_string(),
            fields,
        })
    }

    /// The last `video stats` line of `stdout`, panicking with `who` and the output when there is none.
    #[track_caller]
    pub fn of(stdout: &str, who: &str) -> Self {
        Self::parse(stdout)
            .unwrap_or_else(|| panic!("{who}: no `video stats` line from tandem-cli:\n{stdout}"))
    }

    /// Field `key` (e.g. `decoded`, `nacks_sent`); panics when the line lacks it.
    #[track_caller]
    pub fn get(&self, key: &str) -> u64 {
        match self.fields.get(key) {
            Some(v) => *v,
            None => panic!("no numeric `{key}` in {:?}", self.line),
        }
    }
}

impl RecordingReport {
    /// The header's frame rate in frames per second (0 when the header says 0/0).
    pub fn fps(&self) -> f64 {
        if self.fps_den == 0 {
            0.0
        } else {
            f64::from(self.fps_num) / f64::from(self.fps_den)
        }
    }

    /// How the pattern counter runs through the recording.
    pub fn counter_stats(&self) -> CounterStats {
        let mut stats = CounterStats::default();
        let mut prev: Option<u32> = None;
        for (i, c) in self.counters.iter().enumerate() {
            let Some(c) = *c else { continue };
            stats.read += 1;
            stats.first.get_or_insert(c);
            stats.last = Some(c);
            stats.max = Some(stats.max.map_or(c, |m| m.max(c)));
            stats.last_read_index = Some(i);
            if let Some(p) = prev {
                match c.cmp(&p) {
                    std::cmp::Ordering::Greater => stats.max_jump = stats.max_jump.max(c - p),
                    std::cmp::Ordering::Equal => stats.repeats += 1,
                    std::cmp::Ordering::Less => stats.backwards += 1,
                }
            }
            prev = Some(c);
        }
        stats
    }

    /// A one-paragraph summary for assertion messages and logs (with the counters, shortened).
    pub fn summary(&self) -> String {
        let counters: Vec<String> = self
            .counters
            .iter()
            .map(|c| c.map_or_else(|| "?".to_string(), |c| c.to_string()))
            .collect();
        let shown = if counters.len() > 80 {
            format!(
                "{} … {}",
                counters[..40].join(" "),
                counters[counters.len() - 40..].join(" ")
            )
        } else {
            counters.join(" ")
        };
        format!(
            "{}: {} frames {}x{} @ {}/{} fps, {} distinct, {} flat; {:?}; counters: {shown}",
            self.path.display(),
            self.frames,
            self.width,
            self.height,
            self.fps_num,
            self.fps_den,
            self.distinct_frames,
            self.flat_frames,
            self.counter_stats()
        )
    }

    /// Asserts at least `min` frames were recorded.
    #[track_caller]
    pub fn assert_min_frames(&self, min: u64, who: &str) {
        assert!(
            self.frames >= min,
            "{who}: {} frames recorded, expected at least {min}\n{}",
            self.frames,
            self.summary()
        );
    }

    /// Asserts the frames are `width`x`height`.
    #[track_caller]
    pub fn assert_size(&self, width: u32, height: u32, who: &str) {
        assert_eq!(
            (self.width, self.height),
            (width, height),
            "{who}: recorded size\n{}",
            self.summary()
        );
    }

    /// Asserts the picture moves: at least `min_fraction` of the frames differ from their predecessor, and at
    /// most `max_flat_fraction` of them are flat (a blank or black picture).
    #[track_caller]
    pub fn assert_frames_change(&self, min_fraction: f64, max_flat_fraction: f64, who: &str) {
        let frames = self.frames.max(1) as f64;
        assert!(
            self.distinct_frames as f64 >= min_fraction * frames,
            "{who}: only {} of {} frames differ from their predecessor (want ≥ {:.0} %)\n{}",
            self.distinct_frames,
            self.frames,
            min_fraction * 100.0,
            self.summary()
        );
        assert!(
            self.flat_frames as f64 <= max_flat_fraction * frames,
            "{who}: {} of {} frames are flat (allowed {:.0} %)\n{}",
            self.flat_frames,
            self.frames,
            max_flat_fraction * 100.0,
            self.summary()
        );
    }

    /// Asserts the pattern counter advances: readable on at least `min_read_fraction` of the frames, never
    /// backwards, spanning at least `min_span` frames of the source, no forward step larger than `max_jump` (a
    /// freeze of `max_jump - 1` source frames at most), and still read within the last `tail` frames of the file.
    #[track_caller]
    pub fn assert_counter_advances(
        &self,
        min_read_fraction: f64,
        min_span: u32,
        max_jump: u32,
        tail: usize,
        who: &str,
    ) -> CounterStats {
        let s = self.counter_stats();
        let summary = || self.summary();
        assert!(
            s.read as f64 >= min_read_fraction * self.frames.max(1) as f64,
            "{who}: counter read on {} of {} frames (want ≥ {:.0} %)\n{}",
            s.read,
            self.frames,
            min_read_fraction * 100.0,
            summary()
        );
        assert_eq!(
            s.backwards,
            0,
            "{who}: the counter went backwards\n{}",
            summary()
        );
        let span = s.last.zip(s.first).map_or(0, |(l, f)| l.saturating_sub(f));
        assert!(
            span >= min_span,
            "{who}: the counter spans {span} frames, expected at least {min_span}\n{}",
            summary()
        );
        assert!(
            s.max_jump <= max_jump,
            "{who}: the counter jumped by {} frames (bound {max_jump}): a freeze or a run of lost frames\n{}",
            s.max_jump,
            summary()
        );
        let last_index = s.last_read_index.unwrap_or(0);
        let frames = usize::try_from(self.frames).unwrap_or(usize::MAX);
        assert!(
            last_index + tail >= frames,
            "{who}: the last readable counter is at frame {last_index} of {frames} (want within the last {tail})\n{}",
            summary()
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(counters: &[Option<u32>]) -> RecordingReport {
        RecordingReport {
            path: PathBuf::from("x.y4m"),
            frames: counters.len() as u64,
            width: 320,
            height: 240,
            fps_num: 15,
            fps_den: 1,
            distinct_frames: counters.len() as u64,
            flat_frames: 0,
            counters: counters.to_vec(),
        }
    }

    #[test]
    fn counter_stats_find_jumps_repeats_and_reversals() {
        let r = report(&[
            None,
            Some(3),
            Some(4),
            Some(4),
            None,
            Some(9),
            Some(7),
            Some(8),
        ]);
        let s = r.counter_stats();
        assert_eq!(s.read, 6);
        assert_eq!((s.first, s.last, s.max), (Some(3), Some(8), Some(9)));
        assert_eq!(s.max_jump, 5);
        assert_eq!((s.repeats, s.backwards), (1, 1));
        assert_eq!(s.last_read_index, Some(7));
    }

    #[test]
    #[should_panic(expected = "jumped by 21")]
    fn a_freeze_fails_the_counter_assert() {
        let counters: Vec<Option<u32>> = (0..10).chain(30..40).map(Some).collect();
        report(&counters).assert_counter_advances(0.9, 30, 5, 3, "test");
    }

    #[test]
    #[should_panic(expected = "last readable counter")]
    fn garbage_at_the_end_fails_the_counter_assert() {
        let mut counters: Vec<Option<u32>> = (0..40).map(Some).collect();
        counters.extend([None; 10]);
        report(&counters).assert_counter_advances(0.5, 30, 2, 3, "test");
    }

    #[test]
    fn a_clean_run_passes_the_counter_assert() {
        let counters: Vec<Option<u32>> = (5..50).map(Some).collect();
        let s = report(&counters).assert_counter_advances(0.99, 40, 1, 1, "test");
        assert_eq!(s.max_jump, 1);
    }

    #[test]
    fn flat_frames_have_no_spread() {
        let black = VideoFrame::black(16, 16).unwrap();
        assert!(luma_stddev(&black) < FLAT_STDDEV);
        let mut bars = black.clone();
        for (i, v) in bars.y.iter_mut().enumerate() {
            *v = if i % 16 < 8 { 16 } else { 235 };
        }
        assert!(luma_stddev(&bars) > 100.0);
    }

    #[test]
    fn pattern_files_round_trip_with_counters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.y4m");
        assert_eq!(write_pattern_y4m(&path, 320, 240, 15, 2).unwrap(), 30);
        let r = check_recording(&path).unwrap();
        r.assert_size(320, 240, "pattern");
        r.assert_min_frames(30, "pattern");
        assert_eq!(r.fps(), 15.0);
        r.assert_frames_change(0.9, 0.0, "pattern");
        let s = r.assert_counter_advances(1.0, 29, 1, 1, "pattern");
        assert_eq!((s.first, s.last), (Some(0), Some(29)));
    }

    #[test]
    fn a_truncated_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.y4m");
        write_pattern_y4m(&path, 160, 120, 15, 1).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
        assert!(check_recording(&path).is_err());
        std::fs::write(&path, b"not y4m at all").unwrap();
        assert!(check_recording(&path).is_err());
    }

    #[test]
    fn cli_lines_parse() {
        let out = "answered\nvideo started codec=VP8 pt=96 send=320x240@15 recv=yes\nvideo first-frame 320x240\nvideo stats sent=90 received=88 decoded=87 keyframes=2 nacks_sent=3 nacks_received=1 plis_sent=0 plis_received=0 retransmitted=1 decode_errors=0 lost=4\nended by=local\n";
        let started = last_line(out, "video started").unwrap();
        assert_eq!(line_fields(started).get("codec"), Some(&"VP8"));
        assert_eq!(line_fields(started).get("send"), Some(&"320x240@15"));
        assert_eq!(
            last_line(out, "video first-frame"),
            Some("video first-frame 320x240")
        );
        assert_eq!(last_line(out, "video stat"), None);
        assert!(last_line(out, "video").unwrap().starts_with("video stats"));
        let stats = CliVideoStats::of(out, "test");
        assert_eq!(
            (stats.get("sent"), stats.get("decoded"), stats.get("lost")),
            (90, 87, 4)
        );
        assert_eq!(stats.get("nacks_sent"), 3);
        assert!(CliVideoStats::parse("ended by=local").is_none());
    }
}
