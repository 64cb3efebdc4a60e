//! Blind transfer A -> B -> C (REFER, RFC 3515) through the lab server, with audio checked at C:
//! - baresip (B) transfers `tandem-cli` (A) to `tandem-cli` (C): A follows the REFER;
//! - `tandem-cli` (B, `--transfer-to`) transfers baresip (A) to `tandem-cli` (C): B sends the REFER and reports
//!   the outcome from the NOTIFY sipfrag.

use tandem_tests::process::Stream;
use tandem_tests::{Baresip, BaresipOptions, BaresipSource, CliAccount, TestDir, Transport};

use crate::audio_baresip::{Registrar, Server};
use crate::audio_common::{
    SNR_FLOOR_DB, TONE_CALLER, TONE_THIRD, answer_args, assert_tone, call_bob_pcmu, tone_file,
};
use crate::common::{assert_exits_ok, assert_exits_ok_verbose, ok, secs};

#[test]
fn baresip_transfers_cli_to_cli() {
    let dir = ok(TestDir::new("audio-transfer-in"));
    let mut registrar = Registrar::start(Server::Lab, &dir);
    let proxy = registrar.udp();
    let mut opts = BaresipOptions::new("bob", "127.0.0.1", "bobpw", proxy);
    opts.auto_answer = true;
    let mut bob = ok(Baresip::start(opts, dir.path()));
    ok(bob.wait_registered(secs(10)));

    let carol = CliAccount::new("carol", "127.0.0.1", "carolpw", proxy, Transport::Udp);
    let carol_rec = dir.path().join("carol-heard.wav");
    let carol_tone = tone_file(dir.path(), TONE_THIRD).display().to_string();
    let carol_rec_arg = carol_rec.display().to_string();
    let mut answer = ok(carol.spawn(
        "cli-carol",
        &answer_args(&carol_tone, &carol_rec_arg, &["--codec", "pcmu"]),
        dir.path(),
    ));
    ok(answer.wait_for_line(Stream::Stdout, "registered", secs(10)));

    let alice = CliAccount::new("alice", "127.0.0.1", "alicepw", proxy, Transport::Udp);
    let tone = tone_file(dir.path(), TONE_CALLER).display().to_string();
    let mut call = call_bob_pcmu(&alice, "cli-alice", dir.path(), &tone, None);
    ok(bob.wait_event_type("CALL_ESTABLISHED", secs(10)));
    std::thread::sleep(secs(1));
    ok(bob.command("transfer", "sip:carol@127.0.0.1", secs(5)));

    // A follows the REFER to C; the call with B ends.
    ok(call.wait_for_line(Stream::Stdout, "refer.*to=sip:carol@", secs(10)));
    ok(answer.wait_for_line(Stream::Stdout, "incoming.*from=sip:alice@", secs(10)));
    ok(answer.wait_for_line(Stream::Stdout, "answered", secs(10)));
    ok(bob.wait_event_type("CALL_CLOSED", secs(10)));
    std::thread::sleep(secs(3));
    ok(call.send_line("hangup"));
    assert_exits_ok_verbose(&mut call, secs(15));
    assert_exits_ok(&mut answer, secs(15), "answer");
    assert_tone(
        &carol_rec,
        TONE_CALLER,
        SNR_FLOOR_DB,
        secs(2),
        "C hears A after the transfer",
    );
    assert!(registrar.is_running());
}

#[test]
fn cli_transfers_baresip_to_cli() {
    let dir = ok(TestDir::new("audio-transfer-out"));
    let mut registrar = Registrar::start(Server::Lab, &dir);
    let proxy = registrar.udp();
    // A: baresip calling with a tone.
    let mut opts = BaresipOptions::new("alice", "127.0.0.1", "alicepw", proxy);
    opts.source = BaresipSource::File(tone_file(dir.path(), TONE_CALLER));
    opts.audio_codecs = Some("PCMU/8000/1".into());
    let mut alice = ok(Baresip::start(opts, dir.path()));
    ok(alice.wait_registered(secs(10)));

    // C: tandem-cli answering and recording.
    let carol = CliAccount::new("carol", "127.0.0.1", "carolpw", proxy, Transport::Udp);
    let carol_rec = dir.path().join("carol-heard.wav");
    let carol_rec_arg = carol_rec.display().to_string();
    let mut c = ok(carol.spawn(
        "cli-carol",
        &["answer", "--count", "1", "--record", &carol_rec_arg],
        dir.path(),
    ));
    ok(c.wait_for_line(Stream::Stdout, "registered", secs(10)));

    // B: tandem-cli answering, then transferring A to C.
    let bob = CliAccount::new("bob", "127.0.0.1", "bobpw", proxy, Transport::Udp);
    let mut b = ok(bob.spawn(
        "cli-bob",
        &[
            "answer",
            "--count",
            "1",
            "--transfer-to",
            "sip:carol@127.0.0.1",
            "--transfer-after",
            "1",
        ],
        dir.path(),
    ));
    ok(b.wait_for_line(Stream::Stdout, "registered", secs(10)));

    ok(alice.command("dial", "sip:bob@127.0.0.1", secs(5)));
    ok(b.wait_for_line(Stream::Stdout, "answered", secs(10)));
    let transferred = ok(b.wait_for_line(Stream::Stdout, "transferred", secs(15)));
    assert!(
        transferred.contains("to=sip:carol@") && transferred.contains("status=200"),
        "{transferred}"
    );
    ok(c.wait_for_line(Stream::Stdout, "incoming.*from=sip:alice@", secs(10)));
    ok(c.wait_for_line(Stream::Stdout, "answered", secs(10)));
    std::thread::sleep(secs(3));
    // Hang up A's remaining call (the one with C).
    ok(alice.command("hangup", "", secs(5)));
    assert_exits_ok(&mut c, secs(15), "c");
    assert_exits_ok(&mut b, secs(15), "b");
    assert_tone(
        &carol_rec,
        TONE_CALLER,
        SNR_FLOOR_DB,
        secs(2),
        "C hears A after the transfer",
    );
    assert!(registrar.is_running());
}
