//! Tone calls between `tandem-cli` and baresip through the lab server and through Kamailio: baresip plays a WAV
//! tone (`aufile`) and dumps what it decodes (`sndfile`), `tandem-cli` plays and records WAV files. Each codec
//! (Opus, PCMU) and security (plain, SDES-SRTP mandatory) runs once per server, with the caller alternating.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tandem_tests::process::Stream;
use tandem_tests::{
    Baresip, BaresipOptions, BaresipSource, CliAccount, Kamailio, KamailioOptions, LabOptions,
    LabServer, TestDir, Transport,
};

use crate::audio_common::{
    SKIP_START, SNR_FLOOR_DB, TONE_CALLEE, TONE_CALLER, assert_media, assert_tone_after, tone_file,
};
use crate::common::{assert_exit, assert_exits_ok, ok, secs};

/// Which registrar/proxy sits between the two phones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// `tandem-lab`.
    Lab,
    /// Kamailio.
    Kamailio,
}

/// A running registrar of either kind (kept alive for the test).
pub enum Registrar {
    /// The lab server.
    Lab(Box<LabServer>),
    /// Kamailio.
    Kamailio(Box<Kamailio>),
}

impl Registrar {
    /// Starts `server` with the users alice, bob and carol (passwords `<name>pw`).
    pub fn start(server: Server, dir: &TestDir) -> Registrar {
        let users = ["alice", "bob", "carol"];
        match server {
            Server::Lab => {
                let mut opts = LabOptions {
                    // baresip 1.0 (libre) knows only MD5 digest.
                    auth_algorithms: vec!["MD5".into()],
                    ..LabOptions::default()
                };
                for u in users {
                    opts = opts.user(u, &format!("{u}pw"));
                }
                Registrar::Lab(Box::new(ok(LabServer::start(opts, dir.path()))))
            }
            Server::Kamailio => {
                let mut opts = KamailioOptions::default();
                for u in users {
                    opts = opts.user(u, &format!("{u}pw"));
                }
                Registrar::Kamailio(Box::new(ok(Kamailio::start(opts, dir.path()))))
            }
        }
    }

    /// Its UDP address.
    pub fn udp(&self) -> SocketAddr {
        match self {
            Registrar::Lab(l) => l.udp(),
            Registrar::Kamailio(k) => k.addr(Transport::Udp),
        }
    }

    /// Whether it still runs.
    pub fn is_running(&mut self) -> bool {
        match self {
            Registrar::Lab(l) => l.is_running(),
            Registrar::Kamailio(k) => k.is_running(),
        }
    }
}

/// baresip's `audio_codecs` value for one of our codec names.
pub fn baresip_codec(codec: &str) -> &'static str {
    match codec {
        "opus" => "opus/48000/2",
        "pcma" => "PCMA/8000/1",
        _ => "PCMU/8000/1",
    }
}

/// Waits (bounded) for baresip's decoded-audio dump of its `n`th call to appear, and returns it.
pub fn baresip_recording(bob: &Baresip, n: usize) -> PathBuf {
    for _ in 0..50 {
        if let Some(p) = bob.recordings().get(n - 1) {
            // sndfile finishes the header when the call's audio closes; give it a moment.
            std::thread::sleep(Duration::from_millis(300));
            return p.clone();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("baresip wrote no recording #{n}: {:?}", bob.recordings());
}

fn tone_call(server: Server, codec: &str, srtp: bool, cli_calls: bool) {
    tone_call_keyed(server, codec, srtp.then_some("sdes"), cli_calls);
}

/// A tone call; `keying`: `None` for plain RTP, else `sdes` or `dtls` (mandatory on both sides).
fn tone_call_keyed(server: Server, codec: &str, keying: Option<&str>, cli_calls: bool) {
    let srtp = keying.is_some();
    let dir = ok(TestDir::new(&format!(
        "audio-baresip-{}-{codec}-{}",
        if server == Server::Lab { "lab" } else { "kam" },
        keying.unwrap_or("plain")
    )));
    let mut registrar = Registrar::start(server, &dir);
    let proxy = registrar.udp();
    let cli_tone = tone_file(dir.path(), TONE_CALLER);
    let baresip_tone = tone_file(dir.path(), TONE_CALLEE);
    let cli_rec = dir.path().join("alice-heard.wav");

    let mut opts = BaresipOptions::new("bob", "127.0.0.1", "bobpw", proxy);
    opts.auto_answer = cli_calls;
    opts.source = BaresipSource::File(baresip_tone);
    opts.record = true;
    opts.media_enc = keying.map(|k| {
        if k == "dtls" {
            "dtls_srtp".to_string()
        } else {
            "srtp-mand".to_string()
        }
    });
    opts.audio_codecs = Some(baresip_codec(codec).to_string());
    let mut bob = ok(Baresip::start(opts, dir.path()));
    ok(bob.wait_registered(secs(10)));

    let alice = CliAccount::new("alice", "127.0.0.1", "alicepw", proxy, Transport::Udp);
    let srtp_arg = if srtp { "mandatory" } else { "off" };
    let keying_arg = keying.unwrap_or("sdes");
    // 3 s of talk; a second more with DTLS, whose handshake may eat the first second.
    let talk = if keying == Some("dtls") {
        secs(4)
    } else {
        secs(3)
    };
    let talk_arg = talk.as_secs().to_string();
    let tone_arg = cli_tone.display().to_string();
    let rec_arg = cli_rec.display().to_string();
    let media = [
        "--play",
        &tone_arg,
        "--record",
        &rec_arg,
        "--codec",
        codec,
        "--srtp",
        srtp_arg,
        "--srtp-keying",
        keying_arg,
    ];
    let cli_out = if cli_calls {
        let mut args = vec![
            "call",
            "sip:bob@127.0.0.1",
            "--duration",
            &talk_arg,
            "--timeout",
            "10",
        ];
        args.extend_from_slice(&media);
        let call = ok(alice.run("cli-call", &args, dir.path(), secs(30)));
        assert_exit(&call, 0);
        ok(bob.wait_event_type("CALL_CLOSED", secs(10)));
        call.stdout
    } else {
        let mut args = vec!["answer", "--count", "1"];
        args.extend_from_slice(&media);
        let mut answer = ok(alice.spawn("cli-answer", &args, dir.path()));
        ok(answer.wait_for_line(Stream::Stdout, "registered", secs(10)));
        ok(bob.command("dial", "sip:alice@127.0.0.1", secs(5)));
        ok(bob.wait_event_type("CALL_ESTABLISHED", secs(10)));
        std::thread::sleep(talk);
        ok(bob.command("hangup", "", secs(5)));
        ok(bob.wait_event_type("CALL_CLOSED", secs(10)));
        assert_exits_ok(&mut answer, secs(15), "answer");
        answer.stdout()
    };
    let secure = keying.unwrap_or("no");
    assert_media(&cli_out, codec, secure, "tandem-cli");
    // A DTLS handshake may take a retransmission (1 s) when the first flight beats the answer to the offerer.
    let skip = if keying == Some("dtls") {
        Duration::from_millis(1500)
    } else {
        SKIP_START
    };
    assert_tone_after(
        &cli_rec,
        TONE_CALLEE,
        SNR_FLOOR_DB,
        secs(2),
        0.8,
        skip,
        "tandem-cli hears baresip",
    );
    let heard = baresip_recording(&bob, 1);
    assert_tone_after(
        &heard,
        TONE_CALLER,
        SNR_FLOOR_DB,
        secs(2),
        0.8,
        skip,
        "baresip hears tandem-cli",
    );
    assert!(registrar.is_running());
    assert!(bob.is_running());
}

#[test]
fn baresip_lab_opus_plain_cli_calls() {
    tone_call(Server::Lab, "opus", false, true);
}

#[test]
fn baresip_lab_pcmu_plain_baresip_calls() {
    tone_call(Server::Lab, "pcmu", false, false);
}

#[test]
fn baresip_lab_opus_sdes_baresip_calls() {
    tone_call(Server::Lab, "opus", true, false);
}

#[test]
fn baresip_lab_pcmu_sdes_cli_calls() {
    tone_call(Server::Lab, "pcmu", true, true);
}

#[test]
fn baresip_kamailio_opus_plain_baresip_calls() {
    tone_call(Server::Kamailio, "opus", false, false);
}

#[test]
fn baresip_kamailio_pcmu_plain_cli_calls() {
    tone_call(Server::Kamailio, "pcmu", false, true);
}

#[test]
fn baresip_kamailio_opus_sdes_cli_calls() {
    tone_call(Server::Kamailio, "opus", true, true);
}

#[test]
fn baresip_kamailio_pcmu_sdes_baresip_calls() {
    tone_call(Server::Kamailio, "pcmu", true, false);
}

#[test]
fn baresip_lab_opus_dtls_cli_calls() {
    tone_call_keyed(Server::Lab, "opus", Some("dtls"), true);
}

#[test]
fn baresip_lab_pcmu_dtls_baresip_calls() {
    tone_call_keyed(Server::Lab, "pcmu", Some("dtls"), false);
}
