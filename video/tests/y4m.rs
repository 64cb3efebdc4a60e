//! Y4M writer -> reader round trips, malformed files, the Y4M and pattern sources.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::io::Cursor;

use proptest::prelude::*;
use tandem_video::counter::read_counter;
use tandem_video::frame::{FrameError, VideoFrame};
use tandem_video::source::{PatternSource, SourceError, VideoSource, Y4mSource};
use tandem_video::y4m::{Y4mReader, Y4mWriter, create_y4m, open_y4m};

fn pattern(w: u32, h: u32, n: u32) -> VideoFrame {
    PatternSource::new(w, h, 15).unwrap().frame(n).unwrap()
}

fn read_all(bytes: &[u8]) -> Result<Vec<VideoFrame>, SourceError> {
    let mut r = Y4mReader::new(Cursor::new(bytes))?;
    let mut out = Vec::new();
    while let Some(f) = r.read_frame()? {
        out.push(f);
    }
    Ok(out)
}

#[test]
fn write_then_read_is_lossless() {
    let mut w = Y4mWriter::new(Vec::new(), 25);
    assert_eq!(w.size(), None);
    let frames: Vec<VideoFrame> = (0..5).map(|n| pattern(161, 121, n)).collect();
    for f in &frames {
        w.write_frame(f).unwrap();
    }
    assert_eq!(w.frames(), 5);
    assert_eq!(w.size(), Some((161, 121)));
    let bytes = w.finish().unwrap();
    assert!(bytes.starts_with(b"YUV4MPEG2 W161 H121 F25:1 Ip A1:1 C420jpeg\nFRAME\n"));
    let r = Y4mReader::new(Cursor::new(&bytes)).unwrap();
    assert_eq!(
        (
            r.header().width,
            r.header().height,
            r.header().fps_num,
            r.header().fps_den
        ),
        (161, 121, 25, 1)
    );
    assert_eq!(r.header().fps(), 25);
    assert_eq!(read_all(&bytes).unwrap(), frames);
}

#[test]
fn writer_scales_later_frames_to_the_first_size() {
    let mut w = Y4mWriter::new(Vec::new(), 15);
    w.write_frame(&pattern(320, 240, 1)).unwrap();
    w.write_frame(&pattern(640, 480, 2)).unwrap();
    w.write_frame(&pattern(160, 120, 3)).unwrap();
    let frames = read_all(&w.finish().unwrap()).unwrap();
    assert_eq!(frames.len(), 3);
    for (i, f) in frames.iter().enumerate() {
        assert_eq!((f.width, f.height), (320, 240));
        assert_eq!(read_counter(f), Some(i as u32 + 1));
    }
    let mut w = Y4mWriter::new(Vec::new(), 15);
    let mut broken = pattern(64, 48, 0);
    broken.u.pop();
    assert!(w.write_frame(&broken).is_err());
    assert_eq!(w.frames(), 0);
}

#[test]
fn header_variants_are_accepted() {
    let frame = [7u8; 4 * 2 + 2 * 2]; // luma 4x2, two 2x1 chroma planes
    for header in [
        "YUV4MPEG2 W4 H2 F30000:1001 It A0:0 C420mpeg2 XYSCSS=420JPEG\n",
        "YUV4MPEG2 W4 H2 C420paldv F15:1\n",
        "YUV4MPEG2  H2   W4 C420\n",
        "YUV4MPEG2 W4 H2\n",
    ] {
        let mut bytes = header.as_bytes().to_vec();
        bytes.extend_from_slice(b"FRAME Ixyz\n");
        bytes.extend_from_slice(&frame);
        bytes.extend_from_slice(b"FRAME\n");
        bytes.extend_from_slice(&frame);
        let frames = read_all(&bytes).unwrap_or_else(|e| panic!("{header:?}: {e}"));
        assert_eq!(frames.len(), 2, "{header:?}");
        assert_eq!((frames[0].width, frames[0].height), (4, 2));
    }
    let r = Y4mReader::new(Cursor::new(b"YUV4MPEG2 W4 H2 F30000:1001\n")).unwrap();
    assert_eq!(r.header().fps(), 30);
}

#[test]
fn malformed_headers_are_errors() {
    let long = format!("YUV4MPEG2 W4 H2 X{}\n", "a".repeat(10_000));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("no newline", b"YUV4MPEG2 W4 H2".to_vec()),
        ("bad magic", b"YUV4MPEG W4 H2\n".to_vec()),
        ("no width", b"YUV4MPEG2 H2\n".to_vec()),
        ("zero width", b"YUV4MPEG2 W0 H2\n".to_vec()),
        ("bad number", b"YUV4MPEG2 W4x H2\n".to_vec()),
        ("negative", b"YUV4MPEG2 W-4 H2\n".to_vec()),
        ("overflow", b"YUV4MPEG2 W99999999999 H2\n".to_vec()),
        ("4:4:4", b"YUV4MPEG2 W4 H2 C444\n".to_vec()),
        ("10 bit", b"YUV4MPEG2 W4 H2 C420p10\n".to_vec()),
        ("zero fps", b"YUV4MPEG2 W4 H2 F0:1\n".to_vec()),
        ("bad fps", b"YUV4MPEG2 W4 H2 F30\n".to_vec()),
        ("binary", vec![0xff, 0xfe, b'\n']),
        ("too long", long.into_bytes()),
    ];
    for (name, bytes) in cases {
        assert!(
            Y4mReader::new(Cursor::new(&bytes)).is_err(),
            "{name} was accepted"
        );
    }
}

#[test]
fn absurd_sizes_are_refused_before_allocating() {
    for (header, w, h) in [
        ("YUV4MPEG2 W100000 H100000\n", 100_000, 100_000),
        ("YUV4MPEG2 W4097 H16\n", 4097, 16),
        ("YUV4MPEG2 W16 H2305\n", 16, 2305),
    ] {
        match Y4mReader::new(Cursor::new(header.as_bytes())) {
            Err(SourceError::Frame(FrameError::TooLarge { width, height })) => {
                assert_eq!((width, height), (w, h));
            }
            Err(e) => panic!("{header:?}: wrong error {e}"),
            Ok(_) => panic!("{header:?} accepted"),
        }
    }
}

#[test]
fn malformed_frames_are_errors() {
    let header = b"YUV4MPEG2 W4 H2 F15:1\n".to_vec();
    let frame = vec![1u8; 12];
    let with = |tail: &[u8]| {
        let mut b = header.clone();
        b.extend_from_slice(tail);
        b
    };
    // No frames at all is an empty stream, not an error.
    assert!(read_all(&header).unwrap().is_empty());
    let mut truncated = b"FRAME\n".to_vec();
    truncated.extend_from_slice(&frame[..7]);
    assert!(matches!(
        read_all(&with(&truncated)),
        Err(SourceError::Format(_))
    ));
    assert!(matches!(
        read_all(&with(b"FRAME\n")),
        Err(SourceError::Format(_))
    ));
    assert!(matches!(
        read_all(&with(b"FRAM")),
        Err(SourceError::Format(_))
    ));
    assert!(matches!(
        read_all(&with(b"FRAMES\n")),
        Err(SourceError::Format(_))
    ));
    let mut junk = b"FRAME\n".to_vec();
    junk.extend_from_slice(&frame);
    junk.extend_from_slice(b"GARBAGE\n");
    assert!(matches!(
        read_all(&with(&junk)),
        Err(SourceError::Format(_))
    ));
    let long_frame_line = [b"FRAME ".as_slice(), &[b'x'; 5000], b"\n"].concat();
    assert!(matches!(
        read_all(&with(&long_frame_line)),
        Err(SourceError::Format(_))
    ));
}

#[test]
fn y4m_source_loops_or_ends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.y4m");
    let mut w = create_y4m(&path, 10).unwrap();
    for n in 0..3 {
        w.write_frame(&pattern(96, 64, n)).unwrap();
    }
    w.finish().unwrap();
    assert_eq!(open_y4m(&path).unwrap().header().width, 96);

    let mut once = Y4mSource::open(&path, false).unwrap();
    assert_eq!((once.size(), once.fps()), ((96, 64), 10));
    for n in 0..3 {
        assert_eq!(read_counter(&once.next_frame().unwrap()), Some(n));
    }
    assert!(matches!(once.next_frame(), Err(SourceError::Ended)));

    let mut looped = Y4mSource::open(&path, true).unwrap();
    let counters: Vec<Option<u32>> = (0..8)
        .map(|_| read_counter(&looped.next_frame().unwrap()))
        .collect();
    let expect: Vec<Option<u32>> = [0, 1, 2, 0, 1, 2, 0, 1].iter().map(|&n| Some(n)).collect();
    assert_eq!(counters, expect);

    // A file with a header but no frames ends instead of looping forever.
    let empty = dir.path().join("empty.y4m");
    std::fs::write(&empty, b"YUV4MPEG2 W96 H64 F10:1\n").unwrap();
    let mut src = Y4mSource::open(&empty, true).unwrap();
    assert!(matches!(src.next_frame(), Err(SourceError::Ended)));
    assert!(matches!(
        Y4mSource::open(&dir.path().join("missing.y4m"), true),
        Err(SourceError::Io(_))
    ));
}

#[test]
fn pattern_source_moves_and_counts() {
    assert!(PatternSource::new(0, 10, 15).is_err());
    assert!(PatternSource::new(5000, 10, 15).is_err());
    let mut src = PatternSource::new(320, 240, 0).unwrap();
    assert_eq!((src.size(), src.fps()), ((320, 240), 1));
    let mut src2 = PatternSource::new(320, 240, 30).unwrap();
    let mut prev = src2.next_frame().unwrap();
    assert_eq!(read_counter(&prev), Some(0));
    for n in 1..60 {
        let f = src2.next_frame().unwrap();
        assert!(f.is_consistent());
        assert_eq!(read_counter(&f), Some(n));
        // Bars and box move: well beyond the counter blocks alone.
        let diff = prev.mean_abs_diff(&f).unwrap();
        assert!(diff > 0.5, "frame {n} barely changed: {diff}");
        prev = f;
    }
    // Not just grey: colour bars have chroma.
    let f = src.next_frame().unwrap();
    assert!(f.u.iter().any(|&c| c < 100) && f.v.iter().any(|&c| c > 160));
    // Tiny patterns work (no counter below 64x48).
    let mut tiny = PatternSource::new(2, 2, 15).unwrap();
    assert!(tiny.next_frame().unwrap().is_consistent());
}

#[test]
fn file_to_codec_to_file_keeps_the_counter() {
    use tandem_video::codec::{EncoderConfig, VideoCodecKind, new_decoder, new_encoder};
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.y4m");
    let mut w = create_y4m(&input, 15).unwrap();
    let mut pattern = PatternSource::new(320, 240, 15).unwrap();
    for _ in 0..10 {
        w.write_frame(&pattern.next_frame().unwrap()).unwrap();
    }
    w.finish().unwrap();
    for kind in [VideoCodecKind::Vp8, VideoCodecKind::H264] {
        let output = dir.path().join(format!("out-{kind}.y4m"));
        let mut src = Y4mSource::open(&input, true).unwrap();
        let config = EncoderConfig {
            width: 320,
            height: 240,
            fps: src.fps(),
            bitrate_bps: 300_000,
        };
        let mut enc = new_encoder(kind, config).unwrap();
        let mut dec = new_decoder(kind).unwrap();
        let mut rec = create_y4m(&output, 15).unwrap();
        // Two passes through the looped file.
        for _ in 0..20 {
            let e = enc
                .encode(&src.next_frame().unwrap(), false)
                .unwrap()
                .unwrap();
            rec.write_frame(&dec.decode(&e.data).unwrap().unwrap())
                .unwrap();
        }
        assert_eq!(rec.frames(), 20);
        rec.finish().unwrap();
        let mut back = open_y4m(&output).unwrap();
        let mut counters = Vec::new();
        while let Some(f) = back.read_frame().unwrap() {
            counters.push(read_counter(&f));
        }
        let expect: Vec<Option<u32>> = (0..20).map(|i| Some(i % 10)).collect();
        assert_eq!(counters, expect, "{kind}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_input_never_panics(
        size in (1u32..40, 1u32..40),
        tail in proptest::collection::vec(any::<u8>(), 0..4000),
    ) {
        let mut bytes = format!("YUV4MPEG2 W{} H{} F15:1\n", size.0, size.1).into_bytes();
        bytes.extend_from_slice(&tail);
        if let Ok(frames) = read_all(&bytes) {
            for f in frames {
                prop_assert!(f.is_consistent());
            }
        }
        let _ = read_all(&tail);
    }
}
