//! The lab media server's IVR: a scripted `tandem-cli` caller walks a three-level menu from the
//! lab's `[ivr]` configuration by DTMF (including a step back) and lands where the configuration
//! says: REFERred to `bob` (a `tandem-cli` that answers and records the caller's tone). Bad
//! input: invalid keys and silence use up the retries and the IVR hangs up; an unknown menu is
//! refused with 404.

use tandem_tests::process::{ChildGuard, Stream};
use tandem_tests::{CliAccount, LabOptions, LabServer, TestDir, Transport};

use crate::audio_common::{
    SNR_FLOOR_DB, TONE_CALLEE, TONE_CALLER, answer_args, assert_tone, assert_tone_after, tone_file,
};
use crate::common::{assert_exits_ok, assert_exits_ok_verbose, ok, secs};

/// Three levels. The walk 1 · * · 1 · 2 · 3 reaches `bob` only if every step, the step back
/// included, does what the configuration says: a missed "back" would make the second 1 a
/// transfer to carol, a missed submenu would make 3 invalid.
const IVR_TOML: &str = r##"
[ivr]
default_menu = "main"

[ivr.menus.main]
prompt = "ivr-welcome"
timeout_secs = 8
choices = { 1 = { submenu = "level2" }, 2 = { transfer = "carol" }, 9 = "hangup" }

[ivr.menus.level2]
prompt = "ivr-support"
timeout_secs = 8
choices = { 1 = { transfer = "carol" }, 2 = { submenu = "level3" }, "*" = "back" }

[ivr.menus.level3]
prompt = "ivr-technical"
timeout_secs = 8
choices = { 3 = { transfer = "bob" }, 4 = { transfer = "carol" }, "*" = "back" }

[ivr.menus.strict]
prompt = "ivr-sales"
timeout_secs = 2
retries = 2
choices = { 1 = "repeat" }
"##;

fn lab(dir: &TestDir) -> LabServer {
    let opts = LabOptions {
        extra_toml: IVR_TOML.to_owned(),
        ..LabOptions::default()
    }
    .user("alice", "alicepw")
    .user("bob", "bobpw")
    .user("carol", "carolpw");
    ok(LabServer::start(opts, dir.path()))
}

/// `alice` calling `uri` with a tone, driven over stdin.
fn call(lab: &LabServer, dir: &TestDir, uri: &str, name: &str) -> ChildGuard {
    let alice = CliAccount::new("alice", "127.0.0.1", "alicepw", lab.udp(), Transport::Udp);
    let tone = tone_file(dir.path(), TONE_CALLER).display().to_string();
    ok(alice.spawn_interactive(
        name,
        &[
            "call",
            uri,
            "--duration",
            "90",
            "--timeout",
            "10",
            "--play",
            &tone,
        ],
        dir.path(),
    ))
}

#[test]
fn caller_walks_three_levels_and_is_transferred() {
    let dir = ok(TestDir::new("mediasrv-ivr-walk"));
    let mut lab = lab(&dir);

    let bob = CliAccount::new("bob", "127.0.0.1", "bobpw", lab.udp(), Transport::Udp);
    let bob_rec = dir.path().join("bob-heard.wav");
    let bob_rec_arg = bob_rec.display().to_string();
    let mut answer = ok(bob.spawn(
        "cli-bob",
        &["answer", "--count", "1", "--record", &bob_rec_arg],
        dir.path(),
    ));
    ok(answer.wait_for_line(Stream::Stdout, "registered", secs(10)));

    let mut alice = call(&lab, &dir, "sip:ivr@127.0.0.1", "cli-alice");
    ok(alice.wait_for_line(Stream::Stdout, "answered", secs(10)));
    // Each key interrupts the prompt of the menu it is pressed in; the pause lets the IVR
    // start the next menu's prompt first.
    for key in ["1", "*", "1", "2", "3"] {
        std::thread::sleep(secs(2));
        ok(alice.send_line(&format!("dtmf {key}")));
    }
    // "Please hold…", then the REFER to bob.
    let refer = ok(alice.wait_for_line(Stream::Stdout, "refer", secs(20)));
    assert!(
        refer.contains("to=sip:bob@127.0.0.1") || refer.contains("to=<sip:bob@127.0.0.1>"),
        "transferred to the wrong target: {refer}\n{}",
        alice.stdout()
    );
    let incoming = ok(answer.wait_for_line(Stream::Stdout, "incoming", secs(15)));
    assert!(incoming.contains("from=sip:alice@"), "{incoming}");
    ok(answer.wait_for_line(Stream::Stdout, "answered", secs(10)));
    std::thread::sleep(secs(4));
    ok(alice.send_line("hangup"));
    assert_exits_ok_verbose(&mut alice, secs(20));
    assert_exits_ok(&mut answer, secs(20), "answer");
    assert!(
        alice.matching_lines(Stream::Stdout, "refer").len() == 1,
        "exactly one transfer: {}",
        alice.stdout()
    );
    assert_tone(
        &bob_rec,
        TONE_CALLER,
        SNR_FLOOR_DB,
        secs(2),
        "bob hears the caller the IVR transferred",
    );
    assert!(lab.is_running());
}

#[test]
fn invalid_keys_and_silence_end_the_call_and_unknown_menus_are_refused() {
    let dir = ok(TestDir::new("mediasrv-ivr-bad"));
    let mut lab = lab(&dir);

    // Unknown menu: 404 before any answer.
    let mut nope = call(&lab, &dir, "sip:ivr-nosuchmenu@127.0.0.1", "cli-nope");
    let failed = ok(nope.wait_for_line(Stream::Stdout, "failed", secs(10)));
    assert!(failed.contains("status=404"), "{failed}");
    let _ = nope.wait_exit(secs(10));

    // `strict`: a key without a choice, then nothing: two failed attempts, goodbye, BYE.
    let mut alice = call(&lab, &dir, "sip:ivr-strict@127.0.0.1", "cli-alice");
    ok(alice.wait_for_line(Stream::Stdout, "answered", secs(10)));
    std::thread::sleep(secs(1));
    // A flood of keys without a choice must not break anything either.
    ok(alice.send_line("dtmf 7777777777"));
    let ended = ok(alice.wait_for_line(Stream::Stdout, "ended", secs(60)));
    assert!(ended.contains("by=remote"), "{ended}\n{}", alice.stdout());
    assert_exits_ok(&mut alice, secs(10), "alice");
    assert!(
        alice.matching_lines(Stream::Stdout, "refer").is_empty(),
        "{}",
        alice.stdout()
    );

    // The IVR still serves the next caller.
    let mut again = call(&lab, &dir, "sip:ivr@127.0.0.1", "cli-again");
    ok(again.wait_for_line(Stream::Stdout, "answered", secs(10)));
    std::thread::sleep(secs(1));
    ok(again.send_line("dtmf 9"));
    let ended = ok(again.wait_for_line(Stream::Stdout, "ended", secs(20)));
    assert!(ended.contains("by=remote"), "{ended}");
    assert!(lab.is_running());
}

/// `transfer_mode = "bridge"`: the media server calls the target itself and passes the audio
/// between the two calls; each side hears the other's tone.
#[test]
fn bridged_transfer_carries_audio_both_ways() {
    let dir = ok(TestDir::new("mediasrv-ivr-bridge"));
    let opts = LabOptions {
        extra_toml: r##"
[ivr]
default_menu = "main"
transfer_mode = "bridge"
transfer_prompt = "digit-1"

[ivr.menus.main]
prompt = "vm-new"
timeout_secs = 8
choices = { 5 = { transfer = "bob" } }
"##
        .to_owned(),
        ..LabOptions::default()
    }
    .user("alice", "alicepw")
    .user("bob", "bobpw");
    let mut lab = ok(LabServer::start(opts, dir.path()));

    let bob = CliAccount::new("bob", "127.0.0.1", "bobpw", lab.udp(), Transport::Udp);
    let bob_tone = tone_file(dir.path(), TONE_CALLEE).display().to_string();
    let bob_rec = dir.path().join("bob-heard.wav");
    let bob_rec_arg = bob_rec.display().to_string();
    let mut answer = ok(bob.spawn(
        "cli-bob",
        &answer_args(&bob_tone, &bob_rec_arg, &[]),
        dir.path(),
    ));
    ok(answer.wait_for_line(Stream::Stdout, "registered", secs(10)));

    let alice = CliAccount::new("alice", "127.0.0.1", "alicepw", lab.udp(), Transport::Udp);
    let alice_tone = tone_file(dir.path(), TONE_CALLER).display().to_string();
    let alice_rec = dir.path().join("alice-heard.wav");
    let alice_rec_arg = alice_rec.display().to_string();
    let mut call = ok(alice.spawn_interactive(
        "cli-alice",
        &[
            "call",
            "sip:ivr@127.0.0.1",
            "--duration",
            "90",
            "--timeout",
            "10",
            "--play",
            &alice_tone,
            "--record",
            &alice_rec_arg,
        ],
        dir.path(),
    ));
    ok(call.wait_for_line(Stream::Stdout, "answered", secs(10)));
    std::thread::sleep(secs(1));
    ok(call.send_line("dtmf 5"));
    // bob sees the caller's address, not the media server's.
    let incoming = ok(answer.wait_for_line(Stream::Stdout, "incoming", secs(15)));
    assert!(incoming.contains("from=sip:alice@127.0.0.1"), "{incoming}");
    ok(answer.wait_for_line(Stream::Stdout, "answered", secs(10)));
    let bridged_at = std::time::Instant::now();
    std::thread::sleep(secs(5));
    ok(call.send_line("hangup"));
    assert_exits_ok_verbose(&mut call, secs(20));
    // The IVR hangs up bob's side when alice leaves.
    let ended = ok(answer.wait_for_line(Stream::Stdout, "ended", secs(15)));
    assert!(ended.contains("by=remote"), "{ended}");
    assert_exits_ok(&mut answer, secs(15), "answer");
    assert!(
        call.matching_lines(Stream::Stdout, "refer").is_empty(),
        "bridge mode sends no REFER: {}",
        call.stdout()
    );
    assert!(bridged_at.elapsed() >= secs(5));

    // bob's recording is all bridge; alice's starts with the prompts (skip them).
    assert_tone(
        &bob_rec,
        TONE_CALLER,
        SNR_FLOOR_DB,
        secs(3),
        "bob hears alice through the bridge",
    );
    assert_tone_after(
        &alice_rec,
        TONE_CALLEE,
        SNR_FLOOR_DB,
        secs(6),
        0.5,
        secs(4),
        "alice hears bob through the bridge",
    );
    assert!(lab.is_running());
}
