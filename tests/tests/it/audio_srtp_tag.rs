//! SRTP packets with a bad authentication tag, sent into a running SDES-SRTP call between two `tandem-cli`s, are
//! dropped and counted (`srtp_auth_failures` in the final `quality` line) while the call's audio stays clean.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use tandem_tests::process::Stream;
use tandem_tests::sip::wait_until_answers;
use tandem_tests::{CliAccount, TestDir, Transport, free_port};

use crate::audio_common::{
    SNR_FLOOR_DB, TONE_CALLER, assert_media, assert_tone, field, last_quality, num, tone_file,
};
use crate::common::{assert_exits_ok_verbose, ok, secs};

/// How many forged packets the test sends.
const FORGED: u32 = 25;

/// An RTP packet (PT 0, `seq`, `ssrc`) with 160 payload bytes and a 10-byte tag that cannot be right.
fn forged_packet(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..160u32).map(|i| (i * 7 + u32::from(seq)) as u8));
    p.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);
    p
}

#[test]
fn srtp_bad_tag_dropped_and_counted() {
    let dir = ok(TestDir::new("audio-srtp-tag"));
    let tone = tone_file(dir.path(), TONE_CALLER).display().to_string();
    let bob_rec_path = dir.path().join("bob-heard.wav");
    let bob_rec = bob_rec_path.display().to_string();
    let bob_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let bob = CliAccount::direct("bob", bob_addr);
    let mut answer = ok(bob.spawn(
        "cli-answer",
        &[
            // Without ICE: with it, datagrams from an address no check validated are dropped
            // before SRTP sees them (RFC 8445), and this test is about SRTP's own check.
            "--ice",
            "off",
            "--srtp",
            "mandatory",
            "answer",
            "--no-register",
            "--count",
            "1",
            "--codec",
            "pcmu",
            "--record",
            &bob_rec,
        ],
        dir.path(),
    ));
    ok(wait_until_answers(bob_addr, Transport::Udp, secs(10)));

    let alice = CliAccount::direct("alice", SocketAddr::from(([127, 0, 0, 1], 0)));
    let target = bob.direct_uri();
    let mut call = ok(alice.spawn(
        "cli-call",
        &[
            "--ice",
            "off",
            "--srtp",
            "mandatory",
            "call",
            &target,
            "--duration",
            "4",
            "--timeout",
            "10",
            "--codec",
            "pcmu",
            "--play",
            &tone,
        ],
        dir.path(),
    ));
    // bob's media line says where his RTP arrives.
    let media = ok(answer.wait_for_line(Stream::Stdout, "media ", secs(10)));
    assert_media(&media, "pcmu", "sdes", "callee");
    let local: SocketAddr = field(&media, "local")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no local=IP:PORT in {media:?}"));
    let rtp_to = SocketAddr::new(bob_addr.ip(), local.port());
    std::thread::sleep(Duration::from_millis(500));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..FORGED {
        sock.send_to(&forged_packet(1000 + i as u16, 0x1234_5678 + i), rtp_to)
            .unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }

    let status = ok(call.wait_exit(secs(30)));
    assert_exit_ok(status.code(), &call.stdout());
    let out = assert_exits_ok_verbose(&mut answer, secs(15));
    let q = last_quality(&out, "callee");
    let failures = num(q, "srtp_auth_failures");
    assert!(
        failures >= f64::from(FORGED),
        "{FORGED} forged packets, {failures} counted: {q}"
    );
    assert_tone(
        &bob_rec_path,
        TONE_CALLER,
        SNR_FLOOR_DB,
        secs(2),
        "bob hears alice despite the forgeries",
    );
    let caller_out = call.stdout();
    let caller_q = last_quality(&caller_out, "caller");
    assert_eq!(num(caller_q, "srtp_auth_failures"), 0.0, "{caller_q}");
}

#[track_caller]
fn assert_exit_ok(code: Option<i32>, stdout: &str) {
    assert_eq!(code, Some(0), "tandem-cli call:\n{stdout}");
}
