//! Voicemail acceptance (issue 6): baresip calls a Tandem user (`tandem-cli answer` that keeps
//! ringing) who does not answer; after `[voicemail] no_answer_secs` the lab sends the call to the
//! user's mailbox, where baresip's sine tone is recorded. `tandem-cli mwi` sees `new=1`; then
//! `tandem-cli` calls `voicemail@`, sends the PIN and the listen key by DTMF and records what it
//! hears: the deposited tone. Hanging up after the message marks it heard (`new=0 old=1`).

use tandem_tests::process::Stream;
use tandem_tests::{
    Baresip, BaresipOptions, BaresipSource, CliAccount, LabOptions, LabServer, TestDir, Transport,
};

use crate::audio_common::{FREQ_TOLERANCE, Recording};
use crate::common::{assert_exit, ok, secs};

/// baresip's tone (an `ausine` frequency).
const TONE_HZ: u32 = 1000;

const VOICEMAIL_TOML: &str = r#"
[voicemail]
enabled = true
no_answer_secs = 3
"#;

/// True when some 400 ms window of `rec` is a clear tone at `hz`.
fn has_tone(rec: &Recording, hz: f32) -> bool {
    let w = (rec.rate as usize * 2) / 5;
    let step = w / 2;
    let mut start = 0;
    while start + w <= rec.pcm.len() {
        let a = tandem_media::tone::analyze(&rec.pcm[start..start + w], rec.rate);
        if (a.dominant_hz - hz).abs() <= hz * FREQ_TOLERANCE && a.snr_db > 15.0 && a.rms > 500.0 {
            return true;
        }
        start += step;
    }
    false
}

#[test]
fn baresip_leaves_a_message_cli_gets_mwi_and_listens() {
    let dir = ok(TestDir::new("mediasrv-voicemail"));
    let opts = LabOptions {
        // baresip 1.0 (libre) knows only MD5 digest.
        auth_algorithms: vec!["MD5".into()],
        extra_toml: VOICEMAIL_TOML.to_owned(),
        ..LabOptions::default()
    }
    .user("alice", "alicepw")
    .user("bob", "bobpw");
    let mut lab = ok(LabServer::start(opts, dir.path()));
    let proxy = lab.udp();
    let alice = CliAccount::new("alice", "127.0.0.1", "alicepw", proxy, Transport::Udp);

    // Alice watches her mailbox, and her phone rings without being answered.
    let mut mwi = ok(alice.spawn("cli-mwi", &["mwi", "--duration", "90"], dir.path()));
    ok(mwi.wait_for_line(Stream::Stdout, "mwi new=0 old=0", secs(10)));
    let mut phone = ok(alice.spawn(
        "cli-answer",
        &["answer", "--ring", "120", "--count", "1"],
        dir.path(),
    ));
    ok(phone.wait_for_line(Stream::Stdout, "registered", secs(10)));

    // Bob (baresip) calls her: no answer, voicemail takes the call and records his tone.
    let mut opts = BaresipOptions::new("bob", "127.0.0.1", "bobpw", proxy);
    opts.source = BaresipSource::Sine(TONE_HZ);
    opts.audio_codecs = Some("PCMU/8000/1".into());
    let mut bob = ok(Baresip::start(opts, dir.path()));
    ok(bob.wait_registered(secs(10)));
    ok(bob.command("dial", "sip:alice@127.0.0.1", secs(5)));
    ok(phone.wait_for_line(Stream::Stdout, "incoming", secs(10)));
    ok(bob.wait_event_type("CALL_ESTABLISHED", secs(15)));
    // The greeting (about 5 s) and the beep, then 3 s of tone on the recording.
    std::thread::sleep(secs(9));
    ok(bob.command("hangup", "", secs(5)));
    ok(bob.wait_event_type("CALL_CLOSED", secs(10)));

    // MWI: one new message.
    ok(mwi.wait_for_line(Stream::Stdout, "mwi new=1 old=0", secs(15)));
    let line = ok(mwi.wait_for_line(Stream::Stdout, "mwi new=1", secs(1)));
    assert!(line.contains("account=sip:alice@"), "{line}");

    // Alice listens: PIN 1234 then #, then 1 (listen); she records what she hears.
    let heard = dir.path().join("alice-heard.wav");
    let heard_arg = heard.display().to_string();
    let out = ok(alice.run(
        "cli-voicemail",
        &[
            "call",
            "sip:voicemail@127.0.0.1",
            "--dtmf",
            "1234#1",
            "--dtmf-delay",
            "1.5",
            "--record",
            &heard_arg,
            "--codec",
            "pcmu",
            "--duration",
            "14",
            "--timeout",
            "10",
        ],
        dir.path(),
        secs(40),
    ));
    assert_exit(&out, 0);
    let rec = Recording::read(&heard);
    assert!(
        has_tone(&rec, TONE_HZ as f32),
        "the played message has no {TONE_HZ} Hz tone ({:?} recorded)",
        rec.duration()
    );

    // Played to its end and left: the message is now old.
    ok(mwi.wait_for_line(Stream::Stdout, "mwi new=0 old=1", secs(15)));
    assert!(lab.is_running());
    assert!(bob.is_running());
}
