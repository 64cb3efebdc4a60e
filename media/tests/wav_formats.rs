//! WAV reading of every accepted encoding, header variants, malformed inputs, and the writer.

use std::time::Duration;

use tandem_media::wav::{WavError, WavWriter, parse_wav_bytes, read_wav, write_wav};

/// Builds a WAV file: `fmt` chunk body, extra chunks before data, and data bytes.
fn build(
    fmt: &[u8],
    extra: &[(&[u8; 4], Vec<u8>)],
    data: &[u8],
    data_size: Option<u32>,
) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(b"WAVE");
    body.extend_from_slice(b"fmt ");
    body.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
    body.extend_from_slice(fmt);
    if fmt.len() % 2 == 1 {
        body.push(0);
    }
    for (id, payload) in extra {
        body.extend_from_slice(*id);
        body.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        body.extend_from_slice(payload);
        if payload.len() % 2 == 1 {
            body.push(0);
        }
    }
    body.extend_from_slice(b"data");
    body.extend_from_slice(&data_size.unwrap_or(data.len() as u32).to_le_bytes());
    body.extend_from_slice(data);
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

fn fmt_chunk(tag: u16, channels: u16, rate: u32, bits: u16) -> Vec<u8> {
    let align = channels * bits / 8;
    let mut f = Vec::new();
    f.extend_from_slice(&tag.to_le_bytes());
    f.extend_from_slice(&channels.to_le_bytes());
    f.extend_from_slice(&rate.to_le_bytes());
    f.extend_from_slice(&(rate * u32::from(align)).to_le_bytes());
    f.extend_from_slice(&align.to_le_bytes());
    f.extend_from_slice(&bits.to_le_bytes());
    f
}

fn extensible(channels: u16, rate: u32, bits: u16, sub: u16) -> Vec<u8> {
    let mut f = fmt_chunk(0xFFFE, channels, rate, bits);
    f.extend_from_slice(&22u16.to_le_bytes()); // cbSize
    f.extend_from_slice(&bits.to_le_bytes()); // valid bits
    f.extend_from_slice(&3u32.to_le_bytes()); // channel mask
    f.extend_from_slice(&sub.to_le_bytes());
    f.extend_from_slice(&[
        0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
    ]);
    f
}

#[test]
fn sixteen_bit_mono_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.wav");
    let samples: Vec<i16> = (0..1000)
        .map(|i| ((i * 37) % 65536 - 32768) as i16)
        .collect();
    write_wav(&path, 16_000, &samples).unwrap();
    let (rate, back) = read_wav(&path).unwrap();
    assert_eq!(rate, 16_000);
    assert_eq!(back, samples);
    // Canonical 44-byte header + data.
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 44 + 2000);
}

#[test]
fn stereo_is_downmixed_by_averaging() {
    let mut data = Vec::new();
    for (l, r) in [
        (1000i16, 3000i16),
        (-2000, -4000),
        (32767, 32767),
        (-32768, -32768),
    ] {
        data.extend_from_slice(&l.to_le_bytes());
        data.extend_from_slice(&r.to_le_bytes());
    }
    let bytes = build(&fmt_chunk(1, 2, 44_100, 16), &[], &data, None);
    let (fmt, pcm) = parse_wav_bytes(&bytes).unwrap();
    assert_eq!(
        (fmt.rate, fmt.channels, fmt.bits, fmt.float),
        (44_100, 2, 16, false)
    );
    assert_eq!(pcm, vec![2000, -3000, 32767, -32768]);
}

#[test]
fn eight_bit_unsigned_is_converted() {
    let bytes = build(&fmt_chunk(1, 1, 8000, 8), &[], &[128, 255, 0, 192], None);
    let (_, pcm) = parse_wav_bytes(&bytes).unwrap();
    assert_eq!(pcm, vec![0, 32512, -32768, 16384]);
}

#[test]
fn twenty_four_and_thirty_two_bit_integers_are_converted() {
    let mut d24 = Vec::new();
    for v in [0x123456i32, -0x400000, 0x7FFFFF] {
        d24.extend_from_slice(&v.to_le_bytes()[..3]);
    }
    let (_, pcm) = parse_wav_bytes(&build(&fmt_chunk(1, 1, 48_000, 24), &[], &d24, None)).unwrap();
    assert_eq!(pcm, vec![0x1234, -0x4000, 32767]);

    let mut d32 = Vec::new();
    for v in [0x12345678i32, i32::MIN, -0x10000] {
        d32.extend_from_slice(&v.to_le_bytes());
    }
    // 24-bit data in the extensible wrapper too.
    let (_, pcm) = parse_wav_bytes(&build(&fmt_chunk(1, 1, 48_000, 32), &[], &d32, None)).unwrap();
    assert_eq!(pcm, vec![0x1234, -32768, -1]);
    let (fmt, pcm) =
        parse_wav_bytes(&build(&extensible(1, 48_000, 24, 1), &[], &d24, None)).unwrap();
    assert_eq!(fmt.bits, 24);
    assert_eq!(pcm, vec![0x1234, -0x4000, 32767]);
}

#[test]
fn float_samples_are_converted_and_clipped() {
    let mut d = Vec::new();
    for v in [0.5f32, -0.25, 2.0, f32::NAN, -1.0] {
        d.extend_from_slice(&v.to_le_bytes());
    }
    let (fmt, pcm) = parse_wav_bytes(&build(&fmt_chunk(3, 1, 48_000, 32), &[], &d, None)).unwrap();
    assert!(fmt.float);
    assert_eq!(pcm, vec![16384, -8192, 32767, 0, -32768]);

    let mut d64 = Vec::new();
    for v in [0.5f64, -0.5] {
        d64.extend_from_slice(&v.to_le_bytes());
    }
    let (_, pcm) = parse_wav_bytes(&build(&extensible(1, 48_000, 64, 3), &[], &d64, None)).unwrap();
    assert_eq!(pcm, vec![16384, -16384]);

    // Stereo float: averaged.
    let mut st = Vec::new();
    for v in [0.5f32, 0.0] {
        st.extend_from_slice(&v.to_le_bytes());
    }
    let (_, pcm) = parse_wav_bytes(&build(&fmt_chunk(3, 2, 48_000, 32), &[], &st, None)).unwrap();
    assert_eq!(pcm, vec![8192]);
}

#[test]
fn extra_chunks_with_odd_sizes_are_skipped() {
    let data: Vec<u8> = [5i16, -5].iter().flat_map(|s| s.to_le_bytes()).collect();
    let extra: Vec<(&[u8; 4], Vec<u8>)> =
        vec![(b"LIST", b"INFOabc".to_vec()), (b"fact", vec![1, 2, 3, 4])];
    let (_, pcm) =
        parse_wav_bytes(&build(&fmt_chunk(1, 1, 8000, 16), &extra, &data, None)).unwrap();
    assert_eq!(pcm, vec![5, -5]);
    // An 18-byte fmt chunk (cbSize = 0) is fine too.
    let mut fmt = fmt_chunk(1, 1, 8000, 16);
    fmt.extend_from_slice(&0u16.to_le_bytes());
    let (_, pcm) = parse_wav_bytes(&build(&fmt, &[], &data, None)).unwrap();
    assert_eq!(pcm, vec![5, -5]);
}

#[test]
fn streaming_sizes_mean_up_to_end_of_file() {
    let data: Vec<u8> = [1i16, 2, 3].iter().flat_map(|s| s.to_le_bytes()).collect();
    for size in [0u32, u32::MAX] {
        let (_, pcm) =
            parse_wav_bytes(&build(&fmt_chunk(1, 1, 8000, 16), &[], &data, Some(size))).unwrap();
        assert_eq!(pcm, vec![1, 2, 3]);
    }
    // A trailing partial frame is ignored.
    let mut odd = data.clone();
    odd.push(7);
    let (_, pcm) = parse_wav_bytes(&build(&fmt_chunk(1, 1, 8000, 16), &[], &odd, None)).unwrap();
    assert_eq!(pcm, vec![1, 2, 3]);
}

#[test]
fn malformed_files_give_clear_errors() {
    let ok_fmt = fmt_chunk(1, 1, 8000, 16);
    let data = [0u8; 8];
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (Vec::new(), "not a WAV file"),
        (b"RIFX\0\0\0\0WAVE".to_vec(), "RIFF signature"),
        (b"RIFF\0\0\0\0AVI ".to_vec(), "not WAVE"),
        (b"RIFF\x04\0\0\0WAVE".to_vec(), "no fmt chunk"),
        (
            build(&fmt_chunk(2, 1, 8000, 4), &[], &data, None),
            "format tag 0x0002",
        ),
        (
            build(&fmt_chunk(1, 1, 8000, 12), &[], &data, None),
            "12 bits",
        ),
        (
            build(&fmt_chunk(3, 1, 8000, 16), &[], &data, None),
            "format tag 0x0003, 16 bits",
        ),
        (
            build(&fmt_chunk(1, 0, 8000, 16), &[], &data, None),
            "0 channels",
        ),
        (
            build(&fmt_chunk(1, 1, 0, 16), &[], &data, None),
            "sample rate 0",
        ),
        (
            build(&ok_fmt[..10], &[], &data, None),
            "fmt chunk is 10 bytes",
        ),
        (build(&ok_fmt, &[], &data, Some(100)), "truncated"),
        (
            build(&fmt_chunk(0xFFFE, 1, 8000, 16), &[], &data, None),
            "without a sub-format",
        ),
    ];
    for (bytes, want) in cases {
        let err = parse_wav_bytes(&bytes).unwrap_err();
        assert!(err.to_string().contains(want), "{err} (wanted {want:?})");
    }
    // Block align not matching the format.
    let mut bad_align = fmt_chunk(1, 2, 8000, 16);
    bad_align[12] = 3;
    let err = parse_wav_bytes(&build(&bad_align, &[], &data, None)).unwrap_err();
    assert!(matches!(err, WavError::Malformed(_)), "{err}");
    // Data before fmt.
    let mut swapped = b"RIFF\0\0\0\0WAVEdata\x02\0\0\0\0\0".to_vec();
    swapped.extend_from_slice(b"fmt \x10\0\0\0");
    swapped.extend_from_slice(&ok_fmt);
    assert!(
        parse_wav_bytes(&swapped)
            .unwrap_err()
            .to_string()
            .contains("before the fmt")
    );
    // A chunk whose size runs past the end.
    let mut runaway = b"RIFF\0\0\0\0WAVELIST\xff\xff\xff\x7f".to_vec();
    runaway.extend_from_slice(&[0; 16]);
    assert!(
        parse_wav_bytes(&runaway)
            .unwrap_err()
            .to_string()
            .contains("past the end")
    );
    // fmt but no data.
    let no_data = {
        let mut b = build(&ok_fmt, &[], &[], None);
        b.truncate(b.len() - 8);
        b
    };
    assert!(
        parse_wav_bytes(&no_data)
            .unwrap_err()
            .to_string()
            .contains("no data chunk")
    );
}

#[test]
fn missing_file_error_names_the_path() {
    let err = read_wav("/nonexistent/dir/x.wav").unwrap_err();
    assert!(matches!(err, WavError::Io { .. }));
    assert!(err.to_string().contains("/nonexistent/dir/x.wav"), "{err}");
}

#[test]
fn writer_keeps_the_file_valid_while_recording() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.wav");
    let mut w = WavWriter::create(&path, 8000).unwrap();
    // Empty but valid straight away.
    let (rate, pcm) = read_wav(&path).unwrap();
    assert_eq!((rate, pcm.len()), (8000, 0));

    // One second of audio forces a header rewrite even without waiting.
    let second: Vec<i16> = (0..8000).map(|i| (i % 100) as i16).collect();
    w.write(&second).unwrap();
    let (_, pcm) = read_wav(&path).unwrap();
    assert_eq!(pcm, second);

    // A small write is not yet announced...
    w.write(&[1, 2, 3]).unwrap();
    assert_eq!(read_wav(&path).unwrap().1.len(), 8000);
    // ...but is within a second.
    std::thread::sleep(Duration::from_millis(1050));
    w.write(&[4]).unwrap();
    assert_eq!(read_wav(&path).unwrap().1.len(), 8004);
    assert_eq!(w.samples_written(), 8004);

    // Dropping finalises.
    w.write(&[9; 10]).unwrap();
    drop(w);
    let (_, pcm) = read_wav(&path).unwrap();
    assert_eq!(pcm.len(), 8014);
    assert_eq!(&pcm[8004..], &[9; 10]);
}

#[test]
fn writer_finish_is_final() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fin.wav");
    let mut w = WavWriter::create(&path, 48_000).unwrap();
    w.write(&[7; 480]).unwrap();
    w.finish().unwrap();
    w.finish().unwrap();
    assert!(w.write(&[1]).is_err());
    assert_eq!(read_wav(&path).unwrap(), (48_000, vec![7; 480]));
    assert!(matches!(
        WavWriter::create(dir.path().join("z.wav"), 0),
        Err(WavError::InvalidRate(0))
    ));
    assert!(WavWriter::create(dir.path().join("no/such/dir.wav"), 8000).is_err());
}
