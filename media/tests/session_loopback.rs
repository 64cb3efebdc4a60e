//! Two media sessions talking over loopback UDP in real time: tones both ways (PCMU and Opus,
//! plain and SDES-SRTP), DTMF, hold/resume, mute, device switching, RTCP round-trip time and
//! tampered SRTP packets.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_media::codec::{CodecKind, CodecSpec};
use tandem_media::device::{CaptureDevice, DeviceError, PlaybackDevice, ToneCapture, WavSink};
use tandem_media::rtp::{RtpHeader, RtpPacket};
use tandem_media::session::{
    MediaConfig, MediaEvent, MediaSecurity, MediaSession, MediaUpdate, SessionTuning,
};
use tandem_media::srtp::{
    DtlsCertificate, DtlsRole, SdesCrypto, SrtpContext, sdes_accept, sdes_answer, sdes_offer,
};
use tandem_media::tone::analyze;
use tandem_proto::sdp::Direction;
use tokio::net::UdpSocket;
use tokio::sync::mpsc::UnboundedReceiver;

const RATE: u32 = 48_000;

/// The tests run in real time: one call at a time, so they do not starve each other of CPU.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A playback device that keeps everything it was given (shared with the test).
#[derive(Clone)]
struct Recorder {
    rate: u32,
    samples: Arc<Mutex<Vec<i16>>>,
    finished: Arc<Mutex<bool>>,
}

impl Recorder {
    fn new(rate: u32) -> Self {
        Recorder {
            rate,
            samples: Arc::new(Mutex::new(Vec::new())),
            finished: Arc::new(Mutex::new(false)),
        }
    }

    fn len(&self) -> usize {
        self.samples.lock().unwrap().len()
    }

    /// Samples `from..to` (indices into everything recorded).
    fn slice(&self, from: usize, to: usize) -> Vec<i16> {
        let all = self.samples.lock().unwrap();
        all[from.min(all.len())..to.min(all.len())].to_vec()
    }

    fn all(&self) -> Vec<i16> {
        self.samples.lock().unwrap().clone()
    }
}

impl PlaybackDevice for Recorder {
    fn rate(&self) -> u32 {
        self.rate
    }
    fn write_frame(&mut self, pcm: &[i16]) -> Result<(), DeviceError> {
        self.samples.lock().unwrap().extend_from_slice(pcm);
        Ok(())
    }
    fn finish(&mut self) -> Result<(), DeviceError> {
        *self.finished.lock().unwrap() = true;
        Ok(())
    }
}

fn pcmu() -> CodecSpec {
    CodecSpec::new(CodecKind::Pcmu, 0)
}

fn opus() -> CodecSpec {
    CodecSpec::new(CodecKind::Opus, 111)
}

async fn socket() -> Arc<UdpSocket> {
    Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap())
}

fn addr(s: &UdpSocket) -> SocketAddr {
    s.local_addr().unwrap()
}

/// SDES keys for both ends: (A's security, B's security).
fn sdes_pair() -> (MediaSecurity, MediaSecurity, SdesCrypto, SdesCrypto) {
    let offer = sdes_offer();
    let (b_remote, b_local) = sdes_answer(&offer).unwrap();
    let (a_local, a_remote) = sdes_accept(&offer, &b_local).unwrap();
    (
        MediaSecurity::Sdes {
            local: a_local.clone(),
            remote: a_remote.clone(),
        },
        MediaSecurity::Sdes {
            local: b_local,
            remote: b_remote,
        },
        a_local,
        a_remote,
    )
}

struct Side {
    session: Option<MediaSession>,
    events: UnboundedReceiver<MediaEvent>,
    recorder: Recorder,
}

impl Side {
    fn session(&self) -> &MediaSession {
        self.session.as_ref().unwrap()
    }

    fn drain_events(&mut self) -> Vec<MediaEvent> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            out.push(e);
        }
        out
    }
}

struct Call {
    a: Side,
    b: Side,
}

struct CallSetup {
    codec: CodecSpec,
    secure: bool,
    tone_a: f32,
    tone_b: f32,
    dtmf: Option<(u8, u32)>,
    tuning: SessionTuning,
}

impl CallSetup {
    fn new(codec: CodecSpec) -> Self {
        CallSetup {
            codec,
            secure: false,
            tone_a: 440.0,
            tone_b: 1000.0,
            dtmf: None,
            tuning: SessionTuning::default(),
        }
    }
}

fn config(
    socket: Arc<UdpSocket>,
    remote: SocketAddr,
    setup: &CallSetup,
    tone: f32,
    security: MediaSecurity,
    recorder: &Recorder,
) -> MediaConfig {
    let mut cfg = MediaConfig::new(
        socket,
        remote,
        setup.codec.clone(),
        Box::new(ToneCapture::new(tone, RATE, 0.3)),
        Box::new(recorder.clone()),
    );
    cfg.security = security;
    cfg.send_dtmf = setup.dtmf;
    cfg.recv_dtmf = setup.dtmf.into_iter().collect();
    cfg.rtp_timeout = Duration::from_millis(600);
    cfg
}

/// Two loopback sockets with their recorders and configs sending to each other: A plays
/// `setup.tone_a` to B and B plays `setup.tone_b` to A.
struct Wired {
    sa: Arc<UdpSocket>,
    sb: Arc<UdpSocket>,
    rec_a: Recorder,
    rec_b: Recorder,
    cfg_a: MediaConfig,
    cfg_b: MediaConfig,
}

async fn wired(setup: &CallSetup, sec_a: MediaSecurity, sec_b: MediaSecurity) -> Wired {
    let (sa, sb) = (socket().await, socket().await);
    let (rec_a, rec_b) = (Recorder::new(RATE), Recorder::new(RATE));
    let cfg_a = config(
        Arc::clone(&sa),
        addr(&sb),
        setup,
        setup.tone_a,
        sec_a,
        &rec_a,
    );
    let cfg_b = config(
        Arc::clone(&sb),
        addr(&sa),
        setup,
        setup.tone_b,
        sec_b,
        &rec_b,
    );
    Wired {
        sa,
        sb,
        rec_a,
        rec_b,
        cfg_a,
        cfg_b,
    }
}

/// [`wired`] without media security.
async fn wired_plain(setup: &CallSetup) -> Wired {
    wired(setup, MediaSecurity::Plain, MediaSecurity::Plain).await
}

async fn start_call(setup: CallSetup) -> Call {
    let (sec_a, sec_b) = if setup.secure {
        let (a, b, _, _) = sdes_pair();
        (a, b)
    } else {
        (MediaSecurity::Plain, MediaSecurity::Plain)
    };
    let Wired {
        rec_a,
        rec_b,
        cfg_a,
        cfg_b,
        ..
    } = wired(&setup, sec_a, sec_b).await;
    let (sess_a, ev_a) = MediaSession::start_tuned(cfg_a, setup.tuning).unwrap();
    let (sess_b, ev_b) = MediaSession::start_tuned(cfg_b, setup.tuning).unwrap();
    Call {
        a: Side {
            session: Some(sess_a),
            events: ev_a,
            recorder: rec_a,
        },
        b: Side {
            session: Some(sess_b),
            events: ev_b,
            recorder: rec_b,
        },
    }
}

/// Asserts that the recording carries `freq` clearly after its first half second (jitter
/// buffer fill, codec warm-up).
fn assert_tone(label: &str, pcm: &[i16], freq: f32) {
    assert_tone_from(label, pcm, freq, RATE as usize / 2);
}

/// Asserts that `pcm[skip..]` (at least 0.3 s of it) carries `freq` clearly.
fn assert_tone_from(label: &str, pcm: &[i16], freq: f32, skip: usize) {
    assert!(
        pcm.len() >= skip + RATE as usize * 3 / 10,
        "{label}: only {} samples",
        pcm.len()
    );
    let analysis = analyze(&pcm[skip..], RATE);
    assert!(
        (analysis.dominant_hz - freq).abs() < freq * 0.03,
        "{label}: dominant {} Hz, expected {freq} Hz ({analysis:?})",
        analysis.dominant_hz
    );
    // A clean tone gives 25-40 dB here; 10 dB still tells it from noise or a wrong tone and
    // tolerates a concealed frame or two when the test machine is busy.
    assert!(
        analysis.snr_db > 10.0,
        "{label}: SNR too low ({analysis:?})"
    );
    assert!(analysis.rms > 1000.0, "{label}: too quiet ({analysis:?})");
}

async fn tones_both_ways(codec: CodecSpec, secure: bool) {
    let mut setup = CallSetup::new(codec);
    setup.secure = secure;
    let mut call = start_call(setup).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let qa = call.a.session.take().unwrap().stop().await;
    let qb = call.b.session.take().unwrap().stop().await;
    assert_tone("A hears B", &call.a.recorder.all(), 1000.0);
    assert_tone("B hears A", &call.b.recorder.all(), 440.0);
    assert!(
        *call.a.recorder.finished.lock().unwrap(),
        "stop finishes the playback device"
    );
    for (q, label) in [(&qa, "A"), (&qb, "B")] {
        assert_eq!(q.srtp, secure, "{label}: {q:?}");
        assert_eq!(q.srtp_auth_failures, 0, "{label}: {q:?}");
        // 2.5 s of 20 ms frames; allow for scheduling slack at start and stop.
        assert!(q.packets_sent >= 100, "{label}: {q:?}");
        assert!(q.packets_received >= 100, "{label}: {q:?}");
        assert!(q.loss_percent < 1.0, "{label}: {q:?}");
        assert!(q.mos > 3.5, "{label}: {q:?}");
    }
    let events: Vec<_> = call.a.drain_events();
    assert!(
        events.iter().any(|e| matches!(e, MediaEvent::FirstRtp)),
        "{events:?}"
    );
    if secure {
        assert!(
            events
                .iter()
                .any(|e| matches!(e, MediaEvent::SecureEstablished)),
            "{events:?}"
        );
    }
}

#[tokio::test]
async fn pcmu_plain_tones_both_ways() {
    let _serial = SERIAL.lock().await;
    tones_both_ways(pcmu(), false).await;
}

#[tokio::test]
async fn opus_plain_tones_both_ways() {
    let _serial = SERIAL.lock().await;
    tones_both_ways(opus(), false).await;
}

#[tokio::test]
async fn pcmu_sdes_tones_both_ways() {
    let _serial = SERIAL.lock().await;
    tones_both_ways(pcmu(), true).await;
}

#[tokio::test]
async fn opus_sdes_tones_both_ways() {
    let _serial = SERIAL.lock().await;
    tones_both_ways(opus(), true).await;
}

async fn dtmf_once(codec: CodecSpec, te_pt: u8) {
    let clock = codec.clock_rate;
    let mut setup = CallSetup::new(codec);
    setup.dtmf = Some((te_pt, clock));
    let mut call = start_call(setup).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    call.a
        .session()
        .send_dtmf("19*#", Duration::from_millis(80));
    call.b.session().send_dtmf("5", Duration::from_millis(80));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    call.a.session.take().unwrap().stop().await;
    call.b.session.take().unwrap().stop().await;
    let digits = |events: Vec<MediaEvent>| -> String {
        events
            .into_iter()
            .filter_map(|e| match e {
                MediaEvent::Dtmf(d) => Some(d),
                _ => None,
            })
            .collect()
    };
    assert_eq!(digits(call.b.drain_events()), "19*#");
    assert_eq!(digits(call.a.drain_events()), "5");
    // The DTMF packets replaced audio frames and did not go into the audio decoder: once the
    // digits are over, the tone is clean again.
    let heard = call.b.recorder.all();
    let tail = heard.len().saturating_sub(RATE as usize * 2 / 5);
    assert_tone_from("B hears A after DTMF", &heard, 440.0, tail);
}

#[tokio::test]
async fn dtmf_digits_arrive_exactly_once_pcmu() {
    let _serial = SERIAL.lock().await;
    dtmf_once(pcmu(), 101).await;
}

#[tokio::test]
async fn dtmf_digits_arrive_exactly_once_opus() {
    let _serial = SERIAL.lock().await;
    dtmf_once(opus(), 110).await;
}

#[tokio::test]
async fn dtmf_with_an_8k_event_clock_on_opus_arrives_exactly_once() {
    let _serial = SERIAL.lock().await;
    let mut setup = CallSetup::new(opus());
    setup.dtmf = Some((101, 8000));
    let mut call = start_call(setup).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    call.a.session().send_dtmf("42", Duration::from_millis(80));
    tokio::time::sleep(Duration::from_millis(900)).await;
    call.a.session.take().unwrap().stop().await;
    call.b.session.take().unwrap().stop().await;
    let digits: String = call
        .b
        .drain_events()
        .into_iter()
        .filter_map(|e| match e {
            MediaEvent::Dtmf(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(digits, "42");
}

#[tokio::test]
async fn dtmf_without_telephone_event_is_an_error_event() {
    let _serial = SERIAL.lock().await;
    let mut call = start_call(CallSetup::new(pcmu())).await;
    call.a.session().send_dtmf("1", Duration::from_millis(80));
    tokio::time::sleep(Duration::from_millis(300)).await;
    call.a.session.take().unwrap().stop().await;
    call.b.session.take().unwrap().stop().await;
    let events = call.a.drain_events();
    assert!(
        events.iter().any(|e| matches!(e, MediaEvent::Error(_))),
        "{events:?}"
    );
    assert!(
        !call
            .b
            .drain_events()
            .iter()
            .any(|e| matches!(e, MediaEvent::Dtmf(_)))
    );
}

fn rms(pcm: &[i16]) -> f32 {
    if pcm.is_empty() {
        return 0.0;
    }
    let sum: f64 = pcm.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / pcm.len() as f64).sqrt() as f32
}

#[tokio::test]
async fn hold_stops_audio_and_resume_brings_it_back() {
    let _serial = SERIAL.lock().await;
    let mut call = start_call(CallSetup::new(pcmu())).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    // A puts B on hold: A offers sendonly, B answers recvonly.
    call.a.session().update(MediaUpdate {
        direction: Some(Direction::SendOnly),
        ..Default::default()
    });
    call.b.session().update(MediaUpdate {
        direction: Some(Direction::RecvOnly),
        ..Default::default()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let hold_from = call.a.recorder.len();
    let b_hold_from = call.b.recorder.len();
    let b_sent_at_hold = call.b.session().quality().packets_sent;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let hold_to = call.a.recorder.len();
    let b_sent_in_hold = call.b.session().quality().packets_sent - b_sent_at_hold;
    let b_hears_during_hold = call.b.recorder.len();
    call.a.session().update(MediaUpdate {
        direction: Some(Direction::SendRecv),
        ..Default::default()
    });
    call.b.session().update(MediaUpdate {
        direction: Some(Direction::SendRecv),
        ..Default::default()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resume_from = call.a.recorder.len();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let resume_to = call.a.recorder.len();
    call.a.session.take().unwrap().stop().await;
    call.b.session.take().unwrap().stop().await;

    let before = call.a.recorder.slice(RATE as usize / 2, hold_from);
    assert!(
        rms(&before) > 1000.0,
        "audio before hold: rms {}",
        rms(&before)
    );
    let held = call.a.recorder.slice(hold_from, hold_to);
    assert!(rms(&held) < 50.0, "audio during hold: rms {}", rms(&held));
    assert_eq!(b_sent_in_hold, 0, "B sent RTP while recvonly");
    // A kept sending while holding (sendonly): B heard A through the hold.
    let b_during = call.b.recorder.slice(b_hold_from, b_hears_during_hold);
    assert_tone_from("B hears A during hold", &b_during, 440.0, 0);
    let resumed = call.a.recorder.slice(resume_from, resume_to);
    assert_tone_from("A hears B after resume", &resumed, 1000.0, 0);
}

#[tokio::test]
async fn mute_sends_silence_and_keeps_rtp_flowing() {
    let _serial = SERIAL.lock().await;
    let mut call = start_call(CallSetup::new(pcmu())).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    call.a.session().set_mute(true);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let from = call.b.recorder.len();
    let received_before = call.b.session().quality().packets_received;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let to = call.b.recorder.len();
    let received_during = call.b.session().quality().packets_received - received_before;
    call.a.session().set_mute(false);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let after_from = to + RATE as usize / 4;
    let after_to = call.b.recorder.len();
    call.a.session.take().unwrap().stop().await;
    call.b.session.take().unwrap().stop().await;
    let muted = call.b.recorder.slice(from, to);
    assert!(rms(&muted) < 50.0, "muted audio rms {}", rms(&muted));
    assert!(
        received_during >= 20,
        "only {received_during} packets while muted"
    );
    assert_tone_from(
        "B hears A after unmute",
        &call.b.recorder.slice(after_from, after_to),
        440.0,
        0,
    );
}

#[tokio::test]
async fn tampered_and_plain_packets_in_srtp_call_are_dropped_and_counted() {
    let _serial = SERIAL.lock().await;
    let (sec_a, sec_b, a_local, a_remote) = sdes_pair();
    let Wired {
        sb,
        rec_b,
        cfg_a,
        cfg_b,
        ..
    } = wired(&CallSetup::new(pcmu()), sec_a, sec_b).await;
    let addr_b = addr(&sb);
    let (sess_a, _ev_a) = MediaSession::start(cfg_a).unwrap();
    let (sess_b, _ev_b) = MediaSession::start(cfg_b).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // An attacker who knows A's key (the worst case) forges a packet, then flips a payload bit.
    let mut forger = SrtpContext::from_sdes(&a_local, &a_remote).unwrap();
    let rtp = RtpPacket {
        header: RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: 40_000,
            timestamp: 1234,
            ssrc: 0x1234_5678,
            csrc: Vec::new(),
        },
        payload: vec![0x55u8; 160].into(),
    };
    let mut tampered = forger.protect_rtp(&rtp.to_bytes()).unwrap();
    tampered[20] ^= 0x01;
    let third = socket().await;
    third.send_to(&tampered, addr_b).await.unwrap();
    // A plain RTP packet in a secure call.
    third.send_to(&rtp.to_bytes(), addr_b).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let qb = sess_b.stop().await;
    sess_a.stop().await;
    assert_eq!(qb.srtp_auth_failures, 2, "{qb:?}");
    assert!(qb.srtp);
    assert_tone("B still hears A", &rec_b.all(), 440.0);
}

#[tokio::test]
async fn rtcp_reports_give_rtt_and_remote_loss() {
    let _serial = SERIAL.lock().await;
    let mut setup = CallSetup::new(pcmu());
    setup.tuning = SessionTuning::default()
        .with_rtcp_interval(Duration::from_millis(300))
        .with_quality_interval(Duration::from_millis(500));
    let mut call = start_call(setup).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let live = call.a.session().quality();
    let qa = call.a.session.take().unwrap().stop().await;
    call.b.session.take().unwrap().stop().await;
    let rtt = live.rtt_ms.expect("RTT measured from RTCP");
    assert!((0.0..100.0).contains(&rtt), "loopback RTT {rtt} ms");
    assert_eq!(qa.remote_loss_percent, Some(0.0), "{qa:?}");
    let events = call.a.drain_events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, MediaEvent::Quality(q) if q.packets_received > 0)),
        "{events:?}"
    );
}

#[tokio::test]
async fn separate_rtcp_sockets_work_without_mux() {
    let _serial = SERIAL.lock().await;
    let (ra, rb) = (socket().await, socket().await);
    let tuning = SessionTuning::default().with_rtcp_interval(Duration::from_millis(300));
    let Wired {
        rec_b,
        mut cfg_a,
        mut cfg_b,
        ..
    } = wired_plain(&CallSetup::new(pcmu())).await;
    cfg_a.rtcp_mux = false;
    cfg_a.rtcp_socket = Some(Arc::clone(&ra).into());
    cfg_a.remote_rtcp = Some(addr(&rb));
    cfg_b.rtcp_mux = false;
    cfg_b.rtcp_socket = Some(Arc::clone(&rb).into());
    cfg_b.remote_rtcp = Some(addr(&ra));
    let (sess_a, _ea) = MediaSession::start_tuned(cfg_a, tuning).unwrap();
    let (sess_b, _eb) = MediaSession::start_tuned(cfg_b, tuning).unwrap();
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let qa = sess_a.quality();
    sess_a.stop().await;
    sess_b.stop().await;
    assert!(qa.rtt_ms.is_some(), "{qa:?}");
    assert_tone("B hears A", &rec_b.all(), 440.0);
}

#[tokio::test]
async fn device_hot_switch_changes_what_the_peer_hears() {
    let _serial = SERIAL.lock().await;
    let mut call = start_call(CallSetup::new(opus())).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    let new_rec = Recorder::new(16_000);
    call.a.session().switch_devices(
        Some(Box::new(ToneCapture::new(700.0, 16_000, 0.3))),
        Some(Box::new(new_rec.clone())),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let from = call.b.recorder.len();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let to = call.b.recorder.len();
    call.a.session.take().unwrap().stop().await;
    call.b.session.take().unwrap().stop().await;
    assert!(
        *call.a.recorder.finished.lock().unwrap(),
        "old playback finished"
    );
    // B hears the new capture device (skip_start of assert_tone covers the switch).
    let heard = call.b.recorder.slice(from, to);
    assert_tone_from("B hears A's new device", &heard, 700.0, 0);
    // A's new playback device at another rate gets B's tone.
    let a_new = new_rec.all();
    let analysis = analyze(&a_new[8_000.min(a_new.len())..], 16_000);
    assert!((analysis.dominant_hz - 1000.0).abs() < 30.0, "{analysis:?}");
}

/// A finite capture source: a tone for a while, then it ends.
struct Finite {
    inner: ToneCapture,
    left: usize,
}

impl CaptureDevice for Finite {
    fn rate(&self) -> u32 {
        self.inner.rate()
    }
    fn read_frame(&mut self, out: &mut [i16]) -> Result<bool, DeviceError> {
        if self.left == 0 {
            out.fill(0);
            return Ok(false);
        }
        self.inner.read_frame(out)?;
        self.left = self.left.saturating_sub(out.len());
        Ok(true)
    }
}

#[tokio::test]
async fn capture_end_and_rtp_timeout_are_reported() {
    let _serial = SERIAL.lock().await;
    let Wired {
        mut cfg_a, cfg_b, ..
    } = wired_plain(&CallSetup::new(pcmu())).await;
    cfg_a.capture = Box::new(Finite {
        inner: ToneCapture::new(440.0, RATE, 0.3),
        left: RATE as usize / 5,
    });
    let (sess_a, mut ev_a) = MediaSession::start(cfg_a).unwrap();
    let (sess_b, mut ev_b) = MediaSession::start(cfg_b).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // B stops sending: A times out (600 ms), then B resumes and A reports it.
    sess_b.update(MediaUpdate {
        direction: Some(Direction::RecvOnly),
        ..Default::default()
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    sess_b.update(MediaUpdate {
        direction: Some(Direction::SendRecv),
        ..Default::default()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    sess_a.stop().await;
    sess_b.stop().await;
    let mut a_events = Vec::new();
    while let Ok(e) = ev_a.try_recv() {
        a_events.push(e);
    }
    let pos = |f: &dyn Fn(&MediaEvent) -> bool| a_events.iter().position(f);
    let ended = pos(&|e| matches!(e, MediaEvent::CaptureEnded));
    let timeout = pos(&|e| matches!(e, MediaEvent::RtpTimeout));
    let resumed = pos(&|e| matches!(e, MediaEvent::RtpResumed));
    assert!(ended.is_some(), "{a_events:?}");
    assert!(timeout.is_some() && resumed > timeout, "{a_events:?}");
    assert_eq!(
        a_events
            .iter()
            .filter(|e| matches!(e, MediaEvent::CaptureEnded))
            .count(),
        1
    );
    // B kept receiving A's (silent) RTP: no timeout there.
    let mut b_events = Vec::new();
    while let Ok(e) = ev_b.try_recv() {
        b_events.push(e);
    }
    assert!(
        !b_events.iter().any(|e| matches!(e, MediaEvent::RtpTimeout)),
        "{b_events:?}"
    );
}

#[tokio::test]
async fn wav_sink_is_complete_after_stop() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.wav");
    let Wired {
        cfg_a, mut cfg_b, ..
    } = wired_plain(&CallSetup::new(pcmu())).await;
    cfg_b.playback = Box::new(WavSink::create(&path, 8000).unwrap());
    let (sess_a, _ea) = MediaSession::start(cfg_a).unwrap();
    let (sess_b, _eb) = MediaSession::start(cfg_b).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sess_b.stop().await;
    sess_a.stop().await;
    let (rate, pcm) = tandem_media::wav::read_wav(&path).unwrap();
    assert_eq!(rate, 8000);
    // About 1.5 s written, one frame per tick.
    assert!(pcm.len() > 8000, "{} samples", pcm.len());
    let analysis = analyze(&pcm[4000..], 8000);
    assert!((analysis.dominant_hz - 440.0).abs() < 13.0, "{analysis:?}");
}

#[tokio::test]
async fn start_outside_runtime_and_bad_ptime_are_errors() {
    let _serial = SERIAL.lock().await;
    let s = socket().await;
    let rec = Recorder::new(RATE);
    let mut cfg = config(
        Arc::clone(&s),
        addr(&s),
        &CallSetup::new(pcmu()),
        440.0,
        MediaSecurity::Plain,
        &rec,
    );
    cfg.ptime = Duration::ZERO;
    assert!(MediaSession::start(cfg).is_err());
    let cfg = config(
        Arc::clone(&s),
        addr(&s),
        &CallSetup::new(pcmu()),
        440.0,
        MediaSecurity::Plain,
        &rec,
    );
    let result = std::thread::spawn(move || MediaSession::start(cfg).map(|_| ()))
        .join()
        .unwrap();
    assert!(result.is_err());
}

/// Starts a DTLS-SRTP call: A is the DTLS client, B the server; `b_expects` is the fingerprint
/// B checks A's certificate against.
async fn dtls_call(
    codec: CodecSpec,
    corrupt_fingerprint: bool,
) -> (
    MediaSession,
    UnboundedReceiver<MediaEvent>,
    Recorder,
    MediaSession,
    UnboundedReceiver<MediaEvent>,
    Recorder,
) {
    let cert_a = DtlsCertificate::generate().unwrap();
    let cert_b = DtlsCertificate::generate().unwrap();
    let b_expects = if corrupt_fingerprint {
        // Another certificate's fingerprint: B must refuse A.
        DtlsCertificate::generate().unwrap().fingerprint()
    } else {
        cert_a.fingerprint()
    };
    let sec_a = MediaSecurity::Dtls {
        role: DtlsRole::Client,
        cert: cert_a,
        remote_fingerprint: cert_b.fingerprint(),
    };
    let sec_b = MediaSecurity::Dtls {
        role: DtlsRole::Server,
        cert: cert_b,
        remote_fingerprint: b_expects,
    };
    let Wired {
        rec_a,
        rec_b,
        cfg_a,
        cfg_b,
        ..
    } = wired(&CallSetup::new(codec), sec_a, sec_b).await;
    let tuning = SessionTuning::default().with_dtls_timeout(Duration::from_secs(2));
    // The server starts first, as after an answer; the client's hello then finds it.
    let (sess_b, ev_b) = MediaSession::start_tuned(cfg_b, tuning).unwrap();
    let (sess_a, ev_a) = MediaSession::start_tuned(cfg_a, tuning).unwrap();
    (sess_a, ev_a, rec_a, sess_b, ev_b, rec_b)
}

fn drain(events: &mut UnboundedReceiver<MediaEvent>) -> Vec<MediaEvent> {
    let mut out = Vec::new();
    while let Ok(e) = events.try_recv() {
        out.push(e);
    }
    out
}

#[tokio::test]
async fn dtls_srtp_handshake_on_the_media_socket_then_tones_both_ways() {
    let _serial = SERIAL.lock().await;
    let (a, mut ev_a, rec_a, b, mut ev_b, rec_b) = dtls_call(opus(), false).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let qa = a.stop().await;
    let qb = b.stop().await;
    for (events, label) in [(drain(&mut ev_a), "A"), (drain(&mut ev_b), "B")] {
        assert!(
            events
                .iter()
                .any(|e| matches!(e, MediaEvent::SecureEstablished)),
            "{label}: {events:?}"
        );
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, MediaEvent::SecurityFailed(_))),
            "{label}: {events:?}"
        );
    }
    assert!(qa.srtp && qb.srtp, "{qa:?} {qb:?}");
    assert_eq!(qb.srtp_auth_failures, 0, "{qb:?}");
    assert_tone("A hears B over DTLS-SRTP", &rec_a.all(), 1000.0);
    assert_tone("B hears A over DTLS-SRTP", &rec_b.all(), 440.0);
}

#[tokio::test]
async fn dtls_fingerprint_mismatch_fails_and_never_sends_plain_media() {
    let _serial = SERIAL.lock().await;
    let (a, mut ev_a, rec_a, b, mut ev_b, rec_b) = dtls_call(pcmu(), true).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let qa = a.stop().await;
    let qb = b.stop().await;
    let events_b = drain(&mut ev_b);
    assert!(
        events_b
            .iter()
            .any(|e| matches!(e, MediaEvent::SecurityFailed(_))),
        "{events_b:?}"
    );
    let events_a = drain(&mut ev_a);
    assert!(
        !events_a.iter().any(|e| matches!(e, MediaEvent::FirstRtp)),
        "{events_a:?}"
    );
    assert_eq!(qb.packets_received, 0, "{qb:?}");
    assert_eq!(qb.packets_sent, 0, "{qb:?}");
    assert_eq!(qa.packets_received, 0, "{qa:?}");
    assert!(rms(&rec_a.all()) < 1.0 && rms(&rec_b.all()) < 1.0);
}

#[tokio::test]
async fn on_the_wire_dtmf_rtp_and_rtcp_follow_the_rfcs() {
    let _serial = SERIAL.lock().await;
    let (sa, peer) = (socket().await, socket().await);
    let mut setup = CallSetup::new(pcmu());
    setup.dtmf = Some((101, 8000));
    let rec = Recorder::new(RATE);
    let mut cfg = config(
        Arc::clone(&sa),
        addr(&peer),
        &setup,
        440.0,
        MediaSecurity::Plain,
        &rec,
    );
    cfg.cname = "alice@test".into();
    let tuning = SessionTuning::default().with_rtcp_interval(Duration::from_millis(400));
    let (session, _events) = MediaSession::start_tuned(cfg, tuning).unwrap();
    let collector = tokio::spawn(async move {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 2048];
        while let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(500), peer.recv_from(&mut buf)).await
        {
            got.push(buf[..n].to_vec());
        }
        got
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    session.send_dtmf("7", Duration::from_millis(100));
    tokio::time::sleep(Duration::from_millis(800)).await;
    session.stop().await;
    let datagrams = collector.await.unwrap();

    let mut rtp = Vec::new();
    let mut rtcp = Vec::new();
    for d in &datagrams {
        match tandem_media::rtp::classify(d) {
            tandem_media::rtp::PacketKind::Rtp => rtp.push(RtpPacket::parse(d).unwrap()),
            tandem_media::rtp::PacketKind::Rtcp => {
                rtcp.push(tandem_media::rtcp::parse_compound(d).unwrap())
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // One SSRC, sequence numbers without gaps across audio and events.
    assert!(rtp.len() > 40, "{} RTP packets", rtp.len());
    let ssrc = rtp[0].header.ssrc;
    for pair in rtp.windows(2) {
        assert_eq!(pair[1].header.ssrc, ssrc);
        assert_eq!(
            pair[1].header.sequence,
            pair[0].header.sequence.wrapping_add(1)
        );
    }
    assert!(rtp[0].header.marker, "first packet starts a talkspurt");
    // The event: contiguous packets (no audio in between), one timestamp, marker on the first,
    // the end packet three times.
    let first = rtp
        .iter()
        .position(|p| p.header.payload_type == 101)
        .unwrap();
    let last = rtp
        .iter()
        .rposition(|p| p.header.payload_type == 101)
        .unwrap();
    let event: Vec<_> = rtp[first..=last].iter().collect();
    assert!(event.iter().all(|p| p.header.payload_type == 101));
    assert!(event.len() >= 5 + 2, "{} event packets", event.len());
    let ts = event[0].header.timestamp;
    assert!(event.iter().all(|p| p.header.timestamp == ts));
    assert!(event[0].header.marker);
    assert!(event[1..].iter().all(|p| !p.header.marker));
    let decoded: Vec<_> = event
        .iter()
        .map(|p| tandem_media::dtmf::TelephoneEvent::parse(&p.payload).unwrap())
        .collect();
    assert!(decoded.iter().all(|e| e.event == 7));
    let ends: Vec<_> = decoded.iter().filter(|e| e.end).collect();
    assert_eq!(ends.len(), 3, "{decoded:?}");
    assert!(ends.iter().all(|e| e.duration == ends[0].duration));
    assert!(decoded[decoded.len() - 3..].iter().all(|e| e.end));
    // The event starts where the replaced audio frame would have: audio timestamps run on.
    let before = &rtp[first - 1].header;
    let after = &rtp[last + 1].header;
    assert_eq!(before.payload_type, 0);
    assert_eq!(ts, before.timestamp.wrapping_add(160));
    let ticks = (last - first + 1) as u32;
    assert_eq!(after.timestamp, ts.wrapping_add(160 * ticks));

    // RTCP: compound packets that start with an SR and carry our CNAME; BYE at the end.
    assert!(rtcp.len() >= 2, "{rtcp:?}");
    for compound in &rtcp {
        assert!(
            matches!(&compound[0], tandem_media::rtcp::RtcpPacket::SenderReport(sr) if sr.ssrc == ssrc),
            "{compound:?}"
        );
        assert!(compound.iter().any(|p| matches!(
            p,
            tandem_media::rtcp::RtcpPacket::Sdes(s) if s.cname_of(ssrc) == Some("alice@test")
        )));
    }
    let last_compound = rtcp.last().unwrap();
    assert!(
        last_compound.iter().any(
            |p| matches!(p, tandem_media::rtcp::RtcpPacket::Bye(b) if b.sources == vec![ssrc])
        ),
        "{last_compound:?}"
    );
}

#[tokio::test]
async fn codec_change_and_sdes_rekey_by_update() {
    let _serial = SERIAL.lock().await;
    let (sec_a, sec_b, _, _) = sdes_pair();
    let mut setup = CallSetup::new(pcmu());
    setup.secure = true;
    let Wired {
        rec_a,
        rec_b,
        mut cfg_a,
        mut cfg_b,
        ..
    } = wired(&setup, sec_a, sec_b).await;
    // Both accept both codecs from the start, as after an offer with two.
    cfg_a.recv_codecs = vec![pcmu(), opus()];
    cfg_b.recv_codecs = vec![pcmu(), opus()];
    let (a, _ea) = MediaSession::start(cfg_a).unwrap();
    let (b, _eb) = MediaSession::start(cfg_b).unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    // A re-INVITE switches both to Opus with fresh keys.
    let (new_a, new_b, _, _) = sdes_pair();
    a.update(MediaUpdate {
        send_codec: Some(opus()),
        security: Some(new_a),
        ..Default::default()
    });
    b.update(MediaUpdate {
        send_codec: Some(opus()),
        security: Some(new_b),
        ..Default::default()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let from = rec_b.len();
    let a_from = rec_a.len();
    tokio::time::sleep(Duration::from_millis(900)).await;
    let (to, a_to) = (rec_b.len(), rec_a.len());
    let qa = a.stop().await;
    let qb = b.stop().await;
    assert_eq!(qa.codec, "opus", "{qa:?}");
    assert!(qa.srtp && qb.srtp);
    assert_tone_from(
        "B hears A after the switch",
        &rec_b.slice(from, to),
        440.0,
        0,
    );
    assert_tone_from(
        "A hears B after the switch",
        &rec_a.slice(a_from, a_to),
        1000.0,
        0,
    );
    // Packets in flight with the old keys during the switch may fail; not a steady stream.
    assert!(qb.srtp_auth_failures < 5, "{qb:?}");
}

#[tokio::test]
async fn nothing_is_sent_to_an_unspecified_address() {
    let _serial = SERIAL.lock().await;
    let (sa, peer) = (socket().await, socket().await);
    // c=0.0.0.0 (legacy hold) with the peer's port: Linux would deliver to 127.0.0.1.
    let remote = SocketAddr::from(([0, 0, 0, 0], addr(&peer).port()));
    let rec = Recorder::new(RATE);
    let setup = CallSetup::new(pcmu());
    let cfg = config(sa, remote, &setup, 440.0, MediaSecurity::Plain, &rec);
    let tuning = SessionTuning::default().with_rtcp_interval(Duration::from_millis(200));
    let (session, _events) = MediaSession::start_tuned(cfg, tuning).unwrap();
    let mut buf = [0u8; 1500];
    let got = tokio::time::timeout(Duration::from_millis(700), peer.recv_from(&mut buf)).await;
    session.stop().await;
    assert!(got.is_err(), "a datagram arrived: {got:?}");
}

/// A lossy, jittery path: forwards datagrams from `from` to `to`, dropping `loss` of them and
/// delaying each by a uniform 0..`jitter` (so packets reorder), with a fixed seed.
fn impaired_relay(
    from: Arc<UdpSocket>,
    to: SocketAddr,
    loss: f64,
    jitter: Duration,
    seed: u64,
) -> tokio::task::JoinHandle<()> {
    use rand::{Rng, SeedableRng};
    tokio::spawn(async move {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut buf = vec![0u8; 2048];
        while let Ok((n, _)) = from.recv_from(&mut buf).await {
            if rng.random_bool(loss) {
                continue;
            }
            let delay = jitter.mul_f64(rng.random_range(0.0..1.0));
            let data = buf[..n].to_vec();
            let out = Arc::clone(&from);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = out.send_to(&data, to).await;
            });
        }
    })
}

/// Aborts the relay tasks when the test ends, also on failure.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

async fn impaired_call(codec: CodecSpec, seed: u64) {
    let (sa, sb) = (socket().await, socket().await);
    // A sends to relay_ab, which forwards to B; B sends to relay_ba, which forwards to A.
    let (relay_ab, relay_ba) = (socket().await, socket().await);
    let _relays = AbortOnDrop(vec![
        impaired_relay(
            Arc::clone(&relay_ab),
            addr(&sb),
            0.05,
            Duration::from_millis(40),
            seed,
        ),
        impaired_relay(
            Arc::clone(&relay_ba),
            addr(&sa),
            0.05,
            Duration::from_millis(40),
            seed + 1,
        ),
    ]);
    let setup = CallSetup::new(codec);
    let (rec_a, rec_b) = (Recorder::new(RATE), Recorder::new(RATE));
    let cfg_a = config(
        sa,
        addr(&relay_ab),
        &setup,
        440.0,
        MediaSecurity::Plain,
        &rec_a,
    );
    let cfg_b = config(
        sb,
        addr(&relay_ba),
        &setup,
        1000.0,
        MediaSecurity::Plain,
        &rec_b,
    );
    let (a, _ea) = MediaSession::start(cfg_a).unwrap();
    let (b, _eb) = MediaSession::start(cfg_b).unwrap();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let stats_b = b.receive_stats();
    let qa = a.stop().await;
    let qb = b.stop().await;
    for (rec, freq, q, label) in [(&rec_a, 1000.0, &qa, "A"), (&rec_b, 440.0, &qb, "B")] {
        let pcm = rec.all();
        // Skip the first second: the jitter buffer grows to the path's jitter there.
        let analysis = analyze(&pcm[RATE as usize..], RATE);
        assert!(
            (analysis.dominant_hz - freq).abs() < freq * 0.03,
            "{label}: {analysis:?} {q:?}"
        );
        let gap = tandem_media::tone::longest_gap(
            &pcm,
            RATE,
            Duration::from_millis(10),
            300.0,
            Duration::from_secs(1),
            Duration::from_millis(100),
        );
        // Concealment (G.711 Appendix I PLC, Opus PLC/FEC) bridges the losses: no 10 ms window
        // goes quiet, where concealing with silence would leave 20 ms holes.
        assert!(
            gap < Duration::from_millis(20),
            "{label}: gap {gap:?} {q:?}"
        );
        assert!(
            (1.0..15.0).contains(&q.loss_percent),
            "{label}: loss {} {q:?}",
            q.loss_percent
        );
        assert!(q.jitter_ms > 1.0, "{label}: {q:?}");
    }
    assert!(stats_b.concealed_ms > 0, "{stats_b:?}");
}

#[tokio::test]
async fn five_percent_loss_and_40ms_jitter_pcmu() {
    let _serial = SERIAL.lock().await;
    impaired_call(pcmu(), 7).await;
}

#[tokio::test]
async fn five_percent_loss_and_40ms_jitter_opus() {
    let _serial = SERIAL.lock().await;
    impaired_call(opus(), 11).await;
}

#[tokio::test]
async fn a_new_peer_ssrc_is_reported_and_played() {
    let _serial = SERIAL.lock().await;
    let setup = CallSetup::new(pcmu());
    let Wired {
        sa,
        sb,
        rec_a,
        cfg_a,
        cfg_b,
        ..
    } = wired_plain(&setup).await;
    let (a, mut ev_a) = MediaSession::start(cfg_a).unwrap();
    let (b, _eb) = MediaSession::start(cfg_b).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    b.stop().await;
    // The peer restarts its media on the same port (a new SSRC, sequence and timestamp).
    let rec_b2 = Recorder::new(RATE);
    let cfg_b2 = config(
        Arc::clone(&sb),
        addr(&sa),
        &setup,
        700.0,
        MediaSecurity::Plain,
        &rec_b2,
    );
    let (b2, _eb2) = MediaSession::start(cfg_b2).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let from = rec_a.len();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let to = rec_a.len();
    a.stop().await;
    b2.stop().await;
    let events = drain(&mut ev_a);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, MediaEvent::SsrcChanged { old, new } if old != new)),
        "{events:?}"
    );
    assert_tone_from("A hears the new source", &rec_a.slice(from, to), 700.0, 0);
}

#[tokio::test]
async fn wav_file_played_once_arrives_in_the_peers_wav_file() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let play = dir.path().join("play.wav");
    let record = dir.path().join("record.wav");
    // A 16 kHz file: the session resamples it to the codec and the peer to its sink's rate.
    tandem_media::tone::write_tone_wav(&play, 600.0, 16_000, 0.8).unwrap();
    let Wired {
        mut cfg_a,
        mut cfg_b,
        ..
    } = wired_plain(&CallSetup::new(opus())).await;
    cfg_a.capture = Box::new(tandem_media::device::WavSource::open(&play, false).unwrap());
    cfg_b.playback = Box::new(WavSink::create(&record, 8000).unwrap());
    let (a, mut ev_a) = MediaSession::start(cfg_a).unwrap();
    let (b, _eb) = MediaSession::start(cfg_b).unwrap();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    a.stop().await;
    b.stop().await;
    assert!(
        drain(&mut ev_a)
            .iter()
            .any(|e| matches!(e, MediaEvent::CaptureEnded))
    );
    let (rate, pcm) = tandem_media::wav::read_wav(&record).unwrap();
    assert_eq!(rate, 8000);
    // The file's 0.8 s of tone, then silence once it has ended.
    let segments =
        tandem_media::tone::active_segments(&pcm, 8000, Duration::from_millis(20), 500.0);
    let active: Duration = segments.iter().map(|s| s.duration()).sum();
    assert!(
        active >= Duration::from_millis(700) && active <= Duration::from_millis(900),
        "{segments:?}"
    );
    let first = &segments[0];
    let start = (first.start.as_secs_f64() * 8000.0) as usize;
    let end = (first.end.as_secs_f64() * 8000.0) as usize;
    let analysis = analyze(&pcm[start..end], 8000);
    assert!((analysis.dominant_hz - 600.0).abs() < 18.0, "{analysis:?}");
}
