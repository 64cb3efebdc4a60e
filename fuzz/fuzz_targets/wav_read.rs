//! Fuzz target: WAV reading from memory and from a file (the `--play` path) never panics;
//! for files that parse, both readers agree, a `WavSource` over the file plays it back, and what parses survives a
//! `write_wav` -> `read_wav` round trip as 16-bit mono.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tandem_media::device::{CaptureDevice, WavSource};
use tandem_media::wav::{parse_wav_bytes, read_wav, write_wav};

/// A per-process scratch directory (several fuzz jobs may run side by side).
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tandem-fuzz-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    // In memory first; the file paths (slow: three file writes) only for inputs that parse.
    let Ok((fmt, samples)) = parse_wav_bytes(data) else {
        return;
    };
    assert!(
        fmt.channels >= 1,
        "parsed a WAV with {} channels",
        fmt.channels
    );
    let frame_bytes = usize::from(fmt.channels) * usize::from(fmt.bits / 8);
    assert!(
        samples.len() * frame_bytes <= data.len(),
        "{} samples from {} bytes",
        samples.len(),
        data.len()
    );

    let input = scratch().join("input.wav");
    std::fs::write(&input, data).expect("write scratch input");
    match read_wav(&input) {
        Ok((rate, file_samples)) => {
            assert_eq!(fmt.rate, rate, "read_wav rate differs from parse_wav_bytes");
            assert_eq!(samples, file_samples, "read_wav samples differ");
        }
        Err(e) => panic!("read_wav refused a file parse_wav_bytes accepted: {e}"),
    }

    match WavSource::open(&input, true) {
        Ok(mut source) => {
            assert_eq!(source.rate(), fmt.rate);
            assert_eq!(source.len(), samples.len());
            let mut frame = vec![0i16; 160];
            for _ in 0..3 {
                let playing = source.read_frame(&mut frame).expect("read_frame");
                assert_eq!(playing, !samples.is_empty(), "looping source ended");
            }
        }
        Err(e) => panic!("WavSource refused a file read_wav accepted: {e}"),
    }

    let output = scratch().join("output.wav");
    match write_wav(&output, fmt.rate, &samples) {
        Ok(()) => match read_wav(&output) {
            Ok((rate, again)) => {
                assert_eq!(rate, fmt.rate, "rate changed in a write/read round trip");
                assert_eq!(again, samples, "samples changed in a write/read round trip");
            }
            Err(e) => panic!("our own WAV does not read back: {e}"),
        },
        Err(e) => assert!(
            fmt.rate == 0 || samples.len() > (u32::MAX as usize) / 2,
            "write_wav: {e}"
        ),
    }
});
