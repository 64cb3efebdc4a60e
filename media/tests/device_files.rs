//! File, null and tone devices, device specs, and the level-bounded ring.

use std::path::PathBuf;
use std::time::Duration;

use tandem_media::device::{
    CaptureDevice, DeviceError, DeviceSpec, LevelRing, NullCapture, NullPlayback, PlaybackDevice,
    ToneCapture, WavSink, WavSource, open_capture, open_playback, open_playback_with_rate,
};
use tandem_media::tone::analyze;
use tandem_media::wav::{read_wav, write_wav};

#[test]
fn wav_source_plays_once_then_reports_the_end() {
    let mut src = WavSource::from_samples(8000, (1..=5).collect(), false);
    assert_eq!(src.rate(), 8000);
    let mut f = [9i16; 3];
    assert!(src.read_frame(&mut f).unwrap());
    assert_eq!(f, [1, 2, 3]);
    // The frame with the last samples still counts, padded with silence.
    assert!(src.read_frame(&mut f).unwrap());
    assert_eq!(f, [4, 5, 0]);
    f = [9; 3];
    assert!(!src.read_frame(&mut f).unwrap());
    assert_eq!(f, [0; 3]);
    assert!(!src.read_frame(&mut f).unwrap());
}

#[test]
fn wav_source_loops_seamlessly() {
    let mut src = WavSource::from_samples(8000, vec![1, 2, 3], true);
    let mut f = [0i16; 7];
    for _ in 0..3 {
        assert!(src.read_frame(&mut f).unwrap());
    }
    // 21 samples = 7 loops of 1,2,3; the last frame starts where the previous left off.
    assert_eq!(f, [3, 1, 2, 3, 1, 2, 3]);
    // An empty file ends at once, looping or not.
    let mut empty = WavSource::from_samples(8000, Vec::new(), true);
    assert!(empty.is_empty());
    assert!(!empty.read_frame(&mut f).unwrap());
}

#[test]
fn wav_source_and_sink_through_files() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.wav");
    let output = dir.path().join("out.wav");
    let samples: Vec<i16> = (0..1600).map(|i| (i * 13 % 2000) as i16).collect();
    write_wav(&input, 16_000, &samples).unwrap();

    let mut src = WavSource::open(&input, false).unwrap();
    assert_eq!(src.len(), 1600);
    let mut sink = WavSink::create(&output, src.rate()).unwrap();
    let mut frame = vec![0i16; 320];
    while src.read_frame(&mut frame).unwrap() {
        sink.write_frame(&frame).unwrap();
    }
    assert_eq!(sink.samples_written(), 1600);
    sink.finish().unwrap();
    assert!(matches!(
        sink.write_frame(&frame),
        Err(DeviceError::Finished)
    ));
    assert_eq!(read_wav(&output).unwrap(), (16_000, samples));

    // Missing and malformed files are errors, not panics.
    assert!(matches!(
        WavSource::open(dir.path().join("nope.wav"), false),
        Err(DeviceError::Wav(_))
    ));
    std::fs::write(dir.path().join("bad.wav"), b"RIFF....WAVEjunk").unwrap();
    let err = WavSource::open(dir.path().join("bad.wav"), true).unwrap_err();
    assert!(err.to_string().contains("WAV"), "{err}");
}

#[test]
fn wav_sink_finalises_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drop.wav");
    {
        let mut sink = WavSink::create(&path, 8000).unwrap();
        sink.write_frame(&[5; 160]).unwrap();
    }
    assert_eq!(read_wav(&path).unwrap(), (8000, vec![5; 160]));
}

#[test]
fn null_and_tone_devices() {
    let mut n = NullCapture::new(16_000);
    let mut f = [7i16; 320];
    assert!(n.read_frame(&mut f).unwrap());
    assert_eq!(f, [0; 320]);
    assert_eq!(n.rate(), 16_000);

    let mut p = NullPlayback::new(8000);
    p.write_frame(&[1; 160]).unwrap();
    p.write_frame(&[1; 160]).unwrap();
    assert_eq!(p.samples_written(), 320);
    p.finish().unwrap();

    let mut t = ToneCapture::new(697.0, 8000, 0.5);
    let mut pcm = Vec::new();
    let mut frame = [0i16; 160];
    for _ in 0..50 {
        assert!(t.read_frame(&mut frame).unwrap());
        pcm.extend_from_slice(&frame);
    }
    let a = analyze(&pcm, 8000);
    assert!((a.dominant_hz - 697.0).abs() < 0.3, "{a:?}");
    assert!(a.snr_db > 60.0, "{a:?}");
}

#[test]
fn device_specs_parse_and_print() {
    let cases: Vec<(&str, DeviceSpec)> = vec![
        ("default", DeviceSpec::Default),
        ("DEFAULT", DeviceSpec::Default),
        ("null", DeviceSpec::Null),
        ("tone:440", DeviceSpec::Tone(440.0)),
        ("tone: 1000.5", DeviceSpec::Tone(1000.5)),
        (
            "file:/tmp/a.raw",
            DeviceSpec::File(PathBuf::from("/tmp/a.raw")),
        ),
        (
            "rec/out.WAV",
            DeviceSpec::File(PathBuf::from("rec/out.WAV")),
        ),
        ("null.monitor", DeviceSpec::Named("null.monitor".into())),
        (
            "Built-in Audio Analog Stereo",
            DeviceSpec::Named("Built-in Audio Analog Stereo".into()),
        ),
    ];
    for (text, want) in cases {
        let got: DeviceSpec = text.parse().unwrap();
        assert_eq!(got, want, "{text}");
        // Display parses back to the same spec.
        assert_eq!(got.to_string().parse::<DeviceSpec>().unwrap(), want);
    }
    for bad in [
        "", "  ", "tone:", "tone:abc", "tone:-5", "tone:inf", "file:",
    ] {
        let err = bad.parse::<DeviceSpec>().unwrap_err();
        assert!(
            matches!(err, DeviceError::InvalidSpec { .. }),
            "{bad}: {err}"
        );
    }
}

#[test]
fn open_by_spec_for_files_null_and_tone() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec.wav");
    let mut play = open_playback(&DeviceSpec::File(rec.clone())).unwrap();
    assert_eq!(play.rate(), 48_000);
    play.write_frame(&[3; 960]).unwrap();
    play.finish().unwrap();
    assert_eq!(read_wav(&rec).unwrap().1.len(), 960);

    let mut cap = open_capture(&DeviceSpec::File(rec.clone()), false).unwrap();
    let mut f = [0i16; 960];
    assert!(cap.read_frame(&mut f).unwrap());
    assert_eq!(f, [3; 960]);
    assert!(!cap.read_frame(&mut f).unwrap());

    let mut tone = open_capture(&DeviceSpec::Tone(440.0), false).unwrap();
    assert_eq!(tone.rate(), 48_000);
    assert!(tone.read_frame(&mut f).unwrap());
    assert!(f.iter().any(|&s| s != 0));
    let null = open_capture(&DeviceSpec::Null, false).unwrap();
    assert_eq!(null.rate(), 48_000);
    let p = open_playback_with_rate(&DeviceSpec::Null, 8000).unwrap();
    assert_eq!(p.rate(), 8000);
    let p = open_playback_with_rate(&DeviceSpec::File(dir.path().join("8k.wav")), 8000).unwrap();
    assert_eq!(p.rate(), 8000);
    drop(p);
    assert_eq!(read_wav(dir.path().join("8k.wav")).unwrap(), (8000, vec![]));
}

#[test]
fn ring_is_fifo_and_fills_underruns_with_silence() {
    let mut r = LevelRing::new(8000, Duration::from_millis(100), Duration::from_millis(30));
    assert_eq!(r.capacity(), 800);
    r.push(&[1, 2, 3]);
    let mut out = [9i16; 5];
    assert_eq!(r.pop(&mut out), 3);
    assert_eq!(out, [1, 2, 3, 0, 0]);
    assert_eq!(r.stats().inserted, 2);
    assert!(r.is_empty());
}

#[test]
fn ring_hard_cap_drops_oldest() {
    let mut r = LevelRing::new(1000, Duration::from_millis(10), Duration::ZERO);
    r.push(&(0..8).collect::<Vec<i16>>());
    r.push(&(8..15).collect::<Vec<i16>>());
    assert_eq!(r.len(), 10);
    let mut out = [0i16; 10];
    r.pop(&mut out);
    assert_eq!(out, [5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
    assert_eq!(r.stats().dropped, 5);
    // A single push larger than the cap keeps its newest part.
    r.push(&(0..25).collect::<Vec<i16>>());
    r.pop(&mut out);
    assert_eq!(out[0], 15);
}

#[test]
fn ring_latency_stays_bounded_under_clock_drift() {
    let rate = 8000u32;
    let slack = Duration::from_millis(30);
    let mut r = LevelRing::new(rate, Duration::from_millis(500), slack);
    let frame = 160usize;
    let mut out = vec![0i16; frame];
    // Producer 1.25 % fast (162 samples per 160 consumed) for 10 minutes, after a one-off
    // 200 ms burst (a scheduling hiccup) that must be trimmed away, not kept as delay.
    r.push(&vec![1; 1600]);
    let mut max_late = 0usize;
    for i in 0..30_000 {
        r.push(&vec![1; frame + 2]);
        r.pop(&mut out);
        if i > 200 {
            max_late = max_late.max(r.len());
        }
    }
    // After the first trimming window the standing queue never exceeds slack + one window's drift.
    let drift_per_window = 2 * 100; // a window is 2 s = 100 frames, 2 extra samples each
    let bound = (slack.as_secs_f64() * f64::from(rate)) as usize + 2 * drift_per_window + frame;
    assert!(
        max_late <= bound,
        "queue reached {max_late} samples (bound {bound})"
    );
    assert!(r.stats().trims > 0);

    // Producer slow: the consumer gets silence inserted, the queue never grows.
    let mut r = LevelRing::new(rate, Duration::from_millis(500), slack);
    for i in 0..10_000 {
        if i % 50 != 0 {
            r.push(&vec![1; frame]);
        }
        r.pop(&mut out);
        assert!(r.len() <= frame);
    }
    assert!(r.stats().inserted >= 200 * frame as u64 - frame as u64);
}

#[test]
fn primed_ring_waits_for_its_margin_after_underruns() {
    // 1000 Hz: 1 sample per ms. Prime 30, slack 50.
    let ms = Duration::from_millis;
    let mut r = LevelRing::with_prime(1000, ms(400), ms(50), ms(30));
    let mut out = [7i16; 20];
    r.push(&[1; 20]);
    // Not primed yet: silence, nothing consumed.
    assert_eq!(r.pop(&mut out), 0);
    assert_eq!(out, [0; 20]);
    assert_eq!(r.len(), 20);
    r.push(&[2; 10]);
    assert_eq!(r.pop(&mut out), 20);
    assert_eq!(out, [1; 20]);
    // 10 left: an underrun hands them out, then silence until 30 are queued again.
    assert_eq!(r.pop(&mut out), 10);
    assert_eq!(&out[..10], &[2; 10]);
    assert_eq!(&out[10..], &[0; 10]);
    r.push(&[3; 25]);
    assert_eq!(r.pop(&mut out), 0);
    r.push(&[4; 5]);
    assert_eq!(r.pop(&mut out), 20);
    // Released (producer gone): the tail drains without waiting for the margin.
    r.release();
    let mut tail = [0i16; 20];
    assert_eq!(r.pop(&mut tail), 10);
    assert_eq!(&tail[..10], &[3, 3, 3, 3, 3, 4, 4, 4, 4, 4]);
}

#[test]
fn devices_are_send() {
    fn assert_send<T: Send>() {}
    assert_send::<tandem_media::device::CpalCapture>();
    assert_send::<tandem_media::device::CpalPlayback>();
    assert_send::<Box<dyn CaptureDevice>>();
    assert_send::<Box<dyn PlaybackDevice>>();
    assert_send::<WavSink>();
    assert_send::<WavSource>();
}
