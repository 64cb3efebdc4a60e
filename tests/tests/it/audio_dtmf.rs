//! RFC 4733 DTMF both ways between `tandem-cli` and baresip through the lab server: `--dtmf` after the answer and
//! a `dtmf` command on the stdin control channel reach baresip (its `CALL_DTMF_START` events); baresip's `sndcode`
//! digits come out of `tandem-cli` as `dtmf digit=` lines, each exactly once.

use std::time::Duration;

use tandem_tests::process::Stream;
use tandem_tests::{Baresip, BaresipOptions, CliAccount, TestDir, Transport};

use crate::audio_baresip::{Registrar, Server};
use crate::audio_common::{field, lines};
use crate::common::{assert_exits_ok_verbose, ok, secs};

fn dtmf_both_ways(codec: &str) {
    let dir = ok(TestDir::new(&format!("audio-dtmf-{codec}")));
    let mut registrar = Registrar::start(Server::Lab, &dir);
    let proxy = registrar.udp();
    let mut opts = BaresipOptions::new("bob", "127.0.0.1", "bobpw", proxy);
    opts.auto_answer = true;
    opts.audio_codecs = Some(crate::audio_baresip::baresip_codec(codec).to_string());
    let mut bob = ok(Baresip::start(opts, dir.path()));
    ok(bob.wait_registered(secs(10)));

    let alice = CliAccount::new("alice", "127.0.0.1", "alicepw", proxy, Transport::Udp);
    let mut call = ok(alice.spawn_interactive(
        "cli-call",
        &[
            "call",
            "sip:bob@127.0.0.1",
            "--duration",
            "8",
            "--timeout",
            "10",
            "--codec",
            codec,
            "--dtmf",
            "159#",
            "--dtmf-delay",
            "0.5",
        ],
        dir.path(),
    ));
    ok(call.wait_for_line(Stream::Stdout, "answered", secs(10)));
    // tandem-cli -> baresip: the --dtmf digits, then one from the control channel.
    let got = ok(bob.wait_dtmf(4, secs(8)));
    assert_eq!(got, "159#", "digits baresip received from --dtmf");
    ok(call.send_line("dtmf 0"));
    let got = ok(bob.wait_dtmf(1, secs(5)));
    assert_eq!(got, "0", "digit baresip received from the control channel");

    // baresip -> tandem-cli.
    for d in ["7", "*", "3"] {
        ok(bob.command("sndcode", d, secs(5)));
        std::thread::sleep(Duration::from_millis(400));
    }
    ok(call.wait_for_nth_line(Stream::Stdout, "dtmf digit=", 3, secs(5)));
    ok(call.send_line("hangup"));
    let out = assert_exits_ok_verbose(&mut call, secs(15));
    // Give a duplicate (a retransmitted end packet reported twice) time to show up before counting.
    let digits: String = lines(&out, "dtmf")
        .iter()
        .filter_map(|l| field(l, "digit"))
        .collect();
    assert_eq!(digits, "7*3", "digits tandem-cli reported:\n{out}");
    assert!(registrar.is_running());
}

#[test]
fn dtmf_with_baresip_pcmu() {
    dtmf_both_ways("pcmu");
}

#[test]
fn dtmf_with_baresip_opus() {
    dtmf_both_ways("opus");
}
