//! Two `tandem-cli`s in network namespaces with 5 % loss and 40 ms ± 20 ms delay (normal distribution) each way:
//! `tc netem` on their interfaces, or where the kernel lacks netem, the harness's userspace impairment bridge on
//! the RTP/RTCP packets.
//!
//! Stated bound: after the first second, the recorded tone keeps its frequency (±2 %) and an SNR of at least
//! 10 dB, and no silent gap lasts longer than 100 ms (concealment and FEC fill single losses; the adaptive jitter
//! buffer absorbs the delay variation). Skipped, with the reason printed, when not running as root.

use std::net::SocketAddr;
use std::time::Duration;

use tandem_tests::impair::Impairment;
use tandem_tests::netns::is_root;
use tandem_tests::process::Stream;
use tandem_tests::{CliAccount, NetnsPair, TestDir, free_port};

use crate::audio_common::{
    Recording, TONE_CALLEE, TONE_CALLER, answer_args, assert_media, assert_tone, last_quality, num,
    tone_file,
};
use crate::common::{assert_exit, assert_exits_ok_verbose, ok, secs};

/// The longest silence allowed after the first second.
const GAP_BOUND: Duration = Duration::from_millis(100);
/// The SNR floor under loss (concealed frames are not the original tone).
const LOSSY_SNR_DB: f32 = 10.0;

fn lossy_call(codec: &str) {
    if !is_root() {
        eprintln!(
            "SKIPPED audio_netem ({codec}): network namespaces and netem need root (run the tests as root)"
        );
        return;
    }
    let dir = ok(TestDir::new(&format!("audio-netem-{codec}")));
    let net = ok(NetnsPair::create());
    let mode = ok(net.impair(Impairment {
        loss_percent: 5.0,
        delay: Duration::from_millis(40),
        jitter: Duration::from_millis(20),
    }));
    eprintln!("audio_netem ({codec}): impairment by {mode:?}");

    let caller_tone = tone_file(dir.path(), TONE_CALLER).display().to_string();
    let callee_tone = tone_file(dir.path(), TONE_CALLEE).display().to_string();
    let caller_rec = dir.path().join("alice-heard.wav");
    let callee_rec = dir.path().join("bob-heard.wav");

    let bob_addr = SocketAddr::new(net.addr_b(), free_port());
    let mut bob = CliAccount::direct("bob", bob_addr);
    bob.netns = Some(net.b().to_string());
    let bob_rec = callee_rec.display().to_string();
    let mut answer = ok(bob.spawn(
        "cli-answer",
        &answer_args(&callee_tone, &bob_rec, &["--no-register", "--codec", codec]),
        dir.path(),
    ));
    // The answerer binds before it reads anything; give it a moment (OPTIONS from the host cannot reach the namespace).
    std::thread::sleep(Duration::from_millis(500));
    assert!(answer.is_running(), "{}", answer.tails());

    let mut alice = CliAccount::direct("alice", SocketAddr::new(net.addr_a(), 0));
    alice.netns = Some(net.a().to_string());
    let target = bob.direct_uri();
    let alice_rec = caller_rec.display().to_string();
    let call = ok(alice.run(
        "cli-call",
        &[
            "call",
            &target,
            "--duration",
            "4",
            "--timeout",
            "15",
            "--codec",
            codec,
            "--play",
            &caller_tone,
            "--record",
            &alice_rec,
        ],
        dir.path(),
        secs(40),
    ));
    assert_exit(&call, 0);
    ok(answer.wait_for_line(Stream::Stdout, "ended", secs(15)));
    let bob_out = assert_exits_ok_verbose(&mut answer, secs(15));
    assert_media(&call.stdout, codec, "no", "caller");

    for (path, tone, who, out) in [
        (
            &caller_rec,
            TONE_CALLEE,
            "alice hears bob",
            call.stdout.as_str(),
        ),
        (
            &callee_rec,
            TONE_CALLER,
            "bob hears alice",
            bob_out.as_str(),
        ),
    ] {
        assert_tone(path, tone, LOSSY_SNR_DB, secs(3), who);
        let rec = Recording::read(path);
        let gap = rec.longest_gap(secs(1));
        assert!(
            gap <= GAP_BOUND,
            "{who}: a {gap:?} gap after the first second (bound {GAP_BOUND:?}); segments {:?}",
            rec.segments()
        );
        // The receiver saw the loss (and reports it), so the path really was lossy.
        let q = last_quality(out, who);
        let loss = num(q, "loss");
        assert!(
            (0.5..=15.0).contains(&loss),
            "{who}: loss {loss} % under 5 % netem: {q}"
        );
        eprintln!("{who}: longest gap {gap:?}; {q}");
    }
}

#[test]
fn netem_loss_jitter_opus() {
    lossy_call("opus");
}

#[test]
fn netem_loss_jitter_pcmu() {
    lossy_call("pcmu");
}
