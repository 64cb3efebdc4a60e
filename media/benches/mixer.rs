//! Conference mixer capacity: how many participants one core mixes in real time.
//!
//! `cargo bench -p tandem-media --bench mixer` prints one `name key=value ...` line per
//! measurement (collected by `cargo xtask bench mixer`):
//!
//! * `mixer_offline codec=<name> participants=N`: one 20 ms tick of a whole room on one thread —
//!   per participant the server's part of its call leg (jitter buffer + decode of what it sent,
//!   resampling into the mixer, its mix-minus resampled back, encode of what it hears) plus the
//!   mix itself — and the participants one core sustains (`participants_per_core`).
//! * `mixer_realtime codec=<name> participants=N secs=S`: the same room for S seconds in real
//!   time: the mixer on its own clock thread, the legs on one thread woken every 20 ms as a media
//!   session would be; `late_ticks`/`missed_deadlines` count ticks that started more than 20 ms
//!   late or whose work did not fit in 20 ms (the deadline).
//! * `recordings codec=<name> recordings=N`: voicemail deposits in parallel — per recording the
//!   leg's receive chain and Ogg Opus encoding into a file — and recordings per core.
//!
//! `TANDEM_BENCH_SECS` (default 2) sets the time spent on each offline measurement and the
//! length of each real-time run.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may unwrap

use std::hint::black_box;

use bytes::Bytes;
use std::time::{Duration, Instant};

use tandem_media::chain::{AudioReceiveChain, AudioSendChain};
use tandem_media::codec::{CodecKind, CodecSpec, new_encoder};
use tandem_media::device::{CaptureDevice, PlaybackDevice};
use tandem_media::mixer::{Mixer, MixerCapture, MixerConfig, MixerPlayback};
use tandem_media::ogg::OggOpusWriter;

const TICK: Duration = Duration::from_millis(20);

fn secs() -> f64 {
    std::env::var("TANDEM_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(2.0)
        .clamp(0.2, 60.0)
}

/// Speech-like test audio: harmonics of a gliding pitch with a syllable envelope.
fn voiced(rate: u32, n: usize, pitch: f64) -> Vec<i16> {
    let mut phase = 0.0f64;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let f0 = pitch + 30.0 * (std::f64::consts::TAU * 0.7 * t).sin();
            phase += std::f64::consts::TAU * f0 / f64::from(rate);
            let env = 0.55 + 0.45 * (std::f64::consts::TAU * 3.0 * t).sin();
            let v: f64 = (1..=12).map(|h| (phase * h as f64).sin() / h as f64).sum();
            (v * 3000.0 * env) as i16
        })
        .collect()
}

fn spec(name: &str) -> CodecSpec {
    match name {
        "opus" => {
            CodecSpec::from_rtpmap("opus", 48000, 2, 111, Some("useinbandfec=1;usedtx=1")).unwrap()
        }
        _ => CodecSpec::new(CodecKind::Pcmu, 0),
    }
}

/// Two seconds of a participant's encoded speech (what its phone sends), as payloads.
fn payloads(spec: &CodecSpec, pitch: f64) -> Vec<Bytes> {
    let mut enc = new_encoder(spec).unwrap();
    let rate = enc.pcm_rate();
    let audio = voiced(rate, rate as usize * 2, pitch);
    audio
        .chunks_exact(rate as usize / 50)
        .map(|f| {
            let mut p = Vec::new();
            enc.encode(f, &mut p).unwrap();
            Bytes::from(p)
        })
        .collect()
}

/// The server's side of one participant's call leg.
struct Leg {
    spec: CodecSpec,
    rate: u32,
    incoming: Vec<Bytes>,
    rx: AudioReceiveChain,
    tx: AudioSendChain,
    capture: MixerCapture,
    playback: MixerPlayback,
    seq: u16,
    ts: u32,
    k: usize,
    pcm: Vec<i16>,
}

impl Leg {
    fn new(mixer: &Mixer, spec: &CodecSpec, pitch: f64) -> Leg {
        let rate = spec.pcm_rate();
        let (_, capture, playback) = mixer.join(rate).unwrap();
        Leg {
            spec: spec.clone(),
            rate,
            incoming: payloads(spec, pitch),
            rx: AudioReceiveChain::new(vec![spec.clone()], rate).unwrap(),
            tx: AudioSendChain::new(spec, rate, TICK).unwrap(),
            capture,
            playback,
            seq: 0,
            ts: 0,
            k: 0,
            pcm: Vec::with_capacity(rate as usize / 50),
        }
    }

    /// What a media session does per tick: receive + decode → mixer; mixer → encode + send.
    fn receive(&mut self, now: Instant) {
        let frame = self.rate as usize / 50;
        let p = &self.incoming[self.k % self.incoming.len()];
        if !p.is_empty() {
            self.rx
                .push_rtp(now, self.spec.payload_type, self.seq, self.ts, p.clone());
        }
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(if self.spec.kind == CodecKind::Opus {
            960
        } else {
            frame as u32
        });
        self.k += 1;
        self.pcm.clear();
        self.rx.pull(now, frame, &mut self.pcm);
        self.playback.write_frame(&self.pcm).unwrap();
    }

    fn send(&mut self) {
        let frame = self.rate as usize / 50;
        self.pcm.resize(frame, 0);
        self.capture.read_frame(&mut self.pcm).unwrap();
        self.tx.push(&self.pcm);
        while let Some(f) = self.tx.next_payload() {
            black_box(&f.payload);
        }
    }
}

fn room(codec: &str, n: usize) -> (Mixer, Vec<Leg>) {
    let spec = spec(codec);
    let mixer = Mixer::new(MixerConfig {
        max_participants: n.max(1),
        ..MixerConfig::default()
    })
    .unwrap();
    let legs = (0..n)
        .map(|i| Leg::new(&mixer, &spec, 110.0 + 7.0 * i as f64))
        .collect();
    (mixer, legs)
}

/// One room tick on one thread; returns the average time per tick.
fn offline(codec: &str, n: usize, budget: Duration) -> Duration {
    let (mixer, mut legs) = room(codec, n);
    let base = Instant::now();
    let mut k = 0u64;
    let mut tick = || {
        let now = base + TICK * (k as u32);
        for leg in legs.iter_mut() {
            leg.receive(now);
        }
        mixer.tick();
        for leg in legs.iter_mut() {
            leg.send();
        }
        k += 1;
    };
    for _ in 0..10 {
        tick();
    }
    let start = Instant::now();
    let mut runs = 0u32;
    while start.elapsed() < budget {
        tick();
        runs += 1;
    }
    start.elapsed() / runs.max(1)
}

/// Real time: the mixer's clock thread plus one thread running every leg each 20 ms.
fn realtime(codec: &str, n: usize, run: Duration) -> (u64, u64, u64, u64, u64) {
    let spec = spec(codec);
    let mut mixer = Mixer::start(MixerConfig {
        max_participants: n.max(1),
        ..MixerConfig::default()
    })
    .unwrap();
    let mut legs: Vec<Leg> = (0..n)
        .map(|i| Leg::new(&mixer, &spec, 110.0 + 7.0 * i as f64))
        .collect();
    let start = Instant::now();
    let mut deadline = start + TICK;
    let (mut ticks, mut missed, mut max_work_us) = (0u64, 0u64, 0u64);
    while start.elapsed() < run {
        let now = Instant::now();
        if now < deadline {
            std::thread::sleep(deadline - now);
        }
        let woke = Instant::now();
        for leg in legs.iter_mut() {
            leg.receive(woke);
            leg.send();
        }
        let done = Instant::now();
        let work = done - woke;
        max_work_us = max_work_us.max(work.as_micros() as u64);
        // The frame was due at `deadline`; it must be out before the next one is.
        if done > deadline + TICK {
            missed += 1;
        }
        ticks += 1;
        deadline += TICK;
    }
    mixer.stop();
    let s = mixer.stats();
    (ticks, missed, max_work_us, s.late_ticks, s.max_tick_us)
}

/// Voicemail deposits: per recording, the leg's receive chain and an Ogg Opus writer.
fn recordings(codec: &str, n: usize, budget: Duration) -> Duration {
    let spec = spec(codec);
    let rate = spec.pcm_rate();
    let dir = tempfile::tempdir().unwrap();
    let mut recs: Vec<(AudioReceiveChain, OggOpusWriter, Vec<Bytes>)> = (0..n)
        .map(|i| {
            (
                AudioReceiveChain::new(vec![spec.clone()], 16_000).unwrap(),
                OggOpusWriter::create(dir.path().join(format!("vm{i}.opus")), 16_000).unwrap(),
                payloads(&spec, 120.0 + i as f64),
            )
        })
        .collect();
    let base = Instant::now();
    let mut pcm = Vec::with_capacity(320);
    let mut k = 0u32;
    let step = if spec.kind == CodecKind::Opus {
        960
    } else {
        rate / 50
    };
    let mut tick = || {
        let now = base + TICK * k;
        for (rx, w, p) in recs.iter_mut() {
            let payload = &p[k as usize % p.len()];
            if !payload.is_empty() {
                rx.push_rtp(
                    now,
                    spec.payload_type,
                    k as u16,
                    k.wrapping_mul(step),
                    payload.clone(),
                );
            }
            pcm.clear();
            rx.pull(now, 320, &mut pcm);
            w.write_pcm(&pcm).unwrap();
        }
        k += 1;
    };
    for _ in 0..10 {
        tick();
    }
    let start = Instant::now();
    let mut runs = 0u32;
    while start.elapsed() < budget {
        tick();
        runs += 1;
    }
    let t = start.elapsed() / runs.max(1);
    for (_, mut w, _) in recs {
        w.finish().unwrap();
    }
    t
}

fn main() {
    let secs = secs();
    let budget = Duration::from_secs_f64(secs / 2.0);
    for codec in ["pcmu", "opus"] {
        let n = 20;
        let t = offline(codec, n, budget);
        let per_core = n as f64 * TICK.as_secs_f64() / t.as_secs_f64();
        println!(
            "mixer_offline codec={codec} participants={n} us_per_tick={:.0} us_per_participant={:.1} participants_per_core={:.0}",
            t.as_secs_f64() * 1e6,
            t.as_secs_f64() * 1e6 / n as f64,
            per_core
        );
        // Real time at about half a core's capacity (the rest is left to the OS and the peers).
        let rt_n = ((per_core * 0.5) as usize).clamp(3, 400);
        let run = Duration::from_secs_f64(secs.max(1.0));
        let (ticks, missed, max_work_us, late, max_tick_us) = realtime(codec, rt_n, run);
        println!(
            "mixer_realtime codec={codec} participants={rt_n} secs={:.1} ticks={ticks} missed_deadlines={missed} max_leg_work_us={max_work_us} late_ticks={late} max_mix_us={max_tick_us}",
            run.as_secs_f64()
        );
        let n = 20;
        let t = recordings(codec, n, budget);
        println!(
            "recordings codec={codec} recordings={n} us_per_tick={:.0} recordings_per_core={:.0}",
            t.as_secs_f64() * 1e6,
            n as f64 * TICK.as_secs_f64() / t.as_secs_f64()
        );
    }
}
