//! Presence between real softphones and `tandem-cli` through the lab server's presence agent: baresip's `presence`
//! module sees a Tandem user's state change within a second and `tandem-cli watch` sees baresip's, both measured;
//! the pres-rules that allow each watcher are written over the lab's XCAP server.

use std::time::{Duration, Instant};

use tandem_tests::kamailio::curl_xcap;
use tandem_tests::process::Stream;
use tandem_tests::{
    Baresip, BaresipOptions, ChildGuard, CliAccount, LabOptions, LabServer, TestDir, Transport,
};

use crate::common::{ok, secs};
use crate::simple_kamailio::allow_rules;

/// The acceptance bound: a state change is seen by the other side within a second.
const WITHIN: Duration = Duration::from_secs(1);

/// Writes `user`'s pres-rules on the lab allowing `watchers`.
fn lab_allow(lab: &LabServer, user: &str, password: &str, watchers: &[&str]) {
    let Some(xcap) = lab.xcap() else {
        panic!("the lab reports no XCAP listener");
    };
    let url = format!(
        "https://127.0.0.1:{}/xcap-root/pres-rules/users/sip:{user}@127.0.0.1/index",
        xcap.port()
    );
    let rules = allow_rules(watchers);
    let put = ok(curl_xcap(
        "PUT",
        &url,
        Some((user, password)),
        &lab.ca_cert(),
        Some(("application/auth-policy+xml", &rules)),
    ));
    assert!(matches!(put.status, 200 | 201), "{put:?}");
}

/// Polls `guard`'s `stream` every 5 ms until it has `n` lines matching `pattern`; returns when that was seen.
fn wait_seen(
    guard: &mut ChildGuard,
    stream: Stream,
    pattern: &str,
    n: usize,
    timeout: Duration,
) -> Instant {
    let start = Instant::now();
    loop {
        if guard.matching_lines(stream, pattern).len() >= n {
            return Instant::now();
        }
        assert!(
            start.elapsed() < timeout,
            "no {n}x '{pattern}' from {} within {timeout:?}:\n{}",
            guard.name(),
            guard.tails()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn baresip_and_cli_see_each_others_presence_through_lab_within_a_second() {
    let dir = ok(TestDir::new("presence-baresip"));
    let lab = ok(LabServer::start(
        LabOptions::default()
            .user("alice", "alicepw")
            .user("carol", "carolpw"),
        dir.path(),
    ));
    lab_allow(&lab, "alice", "alicepw", &["sip:carol@127.0.0.1"]);
    lab_allow(&lab, "carol", "carolpw", &["sip:alice@127.0.0.1"]);

    // carol is baresip: she publishes (open at start) and watches alice.
    let mut opts = BaresipOptions::new("carol", "127.0.0.1", "carolpw", lab.udp());
    opts.presence_contacts = vec!["sip:alice@127.0.0.1".into()];
    opts.publish_interval = Some(600);
    let mut carol = ok(Baresip::start(opts, dir.path()));
    ok(carol.wait_registered(secs(15)));
    let alice_uri = "sip:alice@127.0.0.1";
    // The lab answers baresip's subscription with alice's (empty, so closed) state.
    ok(carol.wait_contact_presence(alice_uri, "Offline", secs(15)));

    // alice (tandem-cli) watches carol and sees baresip's initial publication.
    let alice = CliAccount::new("alice", lab.domain(), "alicepw", lab.udp(), Transport::Udp);
    let mut watch = ok(alice.spawn(
        "cli-watch-carol",
        &["watch", "sip:carol@127.0.0.1", "--duration", "90"],
        dir.path(),
    ));
    let carol_available = "presence entity=sip:carol@127.0.0.1 status=available";
    let carol_offline = "presence entity=sip:carol@127.0.0.1 status=offline";
    wait_seen(&mut watch, Stream::Stdout, carol_available, 1, secs(15));

    // baresip → tandem-cli: carol goes offline, then online again.
    let t0 = Instant::now();
    ok(carol.set_presence(false, secs(5)));
    let offline = wait_seen(&mut watch, Stream::Stdout, carol_offline, 1, secs(10)) - t0;
    let t0 = Instant::now();
    ok(carol.set_presence(true, secs(5)));
    let online = wait_seen(&mut watch, Stream::Stdout, carol_available, 2, secs(10)) - t0;
    eprintln!("baresip → tandem-cli: offline seen after {offline:?}, online after {online:?}");

    // tandem-cli → baresip: alice publishes busy, baresip shows her busy; the publication is removed, she is
    // offline again; then available is online.
    // Measured from the moment the cli reports the PUBLISH accepted (the state changed at the lab); the time
    // from starting the cli process (its start-up, the digest round trip) is printed too.
    let spawned = Instant::now();
    let mut busy = ok(alice.spawn(
        "cli-presence-busy",
        &["presence", "--status", "busy", "--duration", "3"],
        dir.path(),
    ));
    let t0 = wait_seen(
        &mut busy,
        Stream::Stdout,
        "published status=busy",
        1,
        secs(15),
    );
    let busy_seen = ok(carol.wait_contact_presence(alice_uri, "Busy", secs(10)));
    let to_busy = busy_seen - t0;
    let busy_from_spawn = busy_seen - spawned;
    let t0 = wait_seen(&mut busy, Stream::Stdout, "unpublished", 1, secs(15));
    let to_offline = ok(carol.wait_contact_presence(alice_uri, "Offline", secs(10))) - t0;
    let mut available = ok(alice.spawn(
        "cli-presence-available",
        &["presence", "--status", "available", "--duration", "3"],
        dir.path(),
    ));
    let t0 = wait_seen(
        &mut available,
        Stream::Stdout,
        "published status=available",
        1,
        secs(15),
    );
    let to_online = ok(carol.wait_contact_presence(alice_uri, "Online", secs(10))) - t0;
    eprintln!(
        "tandem-cli → baresip: busy seen after {to_busy:?} ({busy_from_spawn:?} after starting the cli), \
         offline after {to_offline:?}, online after {to_online:?}"
    );
    for (what, d) in [
        ("baresip offline at tandem-cli", offline),
        ("baresip online at tandem-cli", online),
        ("tandem-cli busy at baresip", to_busy),
        ("tandem-cli offline at baresip", to_offline),
        ("tandem-cli online at baresip", to_online),
    ] {
        assert!(d < WITHIN, "{what} took {d:?}");
    }
    watch.stop();
    assert!(carol.is_running());
}

#[test]
fn cli_watches_its_buddy_list_through_the_lab_rls() {
    let dir = ok(TestDir::new("presence-rls"));
    let lab = ok(LabServer::start(
        LabOptions::default()
            .user("alice", "alicepw")
            .user("bob", "bobpw")
            .user("carol", "carolpw")
            .user("dave", "davepw"),
        dir.path(),
    ));
    let Some(xcap) = lab.xcap() else {
        panic!("the lab reports no XCAP listener");
    };
    let xcap_root = format!("https://127.0.0.1:{}/xcap-root", xcap.port());
    lab_allow(&lab, "bob", "bobpw", &["sip:alice@127.0.0.1"]);
    lab_allow(&lab, "carol", "carolpw", &["sip:alice@127.0.0.1"]);

    // alice's buddies (resource-lists over XCAP with tandem-cli): two who allow her, one who has not decided,
    // and one the lab does not serve.
    let mut alice = CliAccount::new("alice", lab.domain(), "alicepw", lab.udp(), Transport::Udp);
    alice.ca_file = Some(lab.ca_cert());
    for buddy in [
        "sip:bob@127.0.0.1",
        "sip:carol@127.0.0.1",
        "sip:dave@127.0.0.1",
        "sip:zed@example.org",
    ] {
        let out = ok(alice.run(
            "cli-buddy-add",
            &["buddy", "--xcap-root", &xcap_root, "add", buddy],
            dir.path(),
            secs(30),
        ));
        assert_eq!(out.code(), Some(0), "{}", out.dump());
    }

    // carol is baresip (publishes open); bob publishes busy with tandem-cli.
    let mut opts = BaresipOptions::new("carol", "127.0.0.1", "carolpw", lab.udp());
    opts.publish_interval = Some(600);
    let mut carol = ok(Baresip::start(opts, dir.path()));
    ok(carol.wait_registered(secs(15)));
    let bob = CliAccount::new("bob", lab.domain(), "bobpw", lab.udp(), Transport::Udp);
    let mut busy = ok(bob.spawn(
        "cli-presence-bob",
        &[
            "presence",
            "--status",
            "busy",
            "--note",
            "on a call",
            "--duration",
            "60",
        ],
        dir.path(),
    ));
    wait_seen(
        &mut busy,
        Stream::Stdout,
        "published status=busy",
        1,
        secs(15),
    );

    let mut watch = ok(alice.spawn(
        "cli-watch-buddies",
        &[
            "watch",
            "--list",
            "sip:alice-buddies@127.0.0.1",
            "--duration",
            "60",
        ],
        dir.path(),
    ));
    wait_seen(
        &mut watch,
        Stream::Stdout,
        "list uri=sip:alice-buddies@127.0.0.1 version=.*full=yes resources=4",
        1,
        secs(15),
    );
    let carol_available = "presence entity=sip:carol@127.0.0.1 status=available";
    wait_seen(&mut watch, Stream::Stdout, carol_available, 1, secs(15));
    let bob_line = watch.matching_lines(
        Stream::Stdout,
        "presence entity=sip:bob@127.0.0.1 status=busy",
    );
    assert!(
        bob_line
            .first()
            .is_some_and(|l| l.contains("note=\"on a call\"")),
        "{}",
        watch.tails()
    );
    let out = watch.stdout();
    assert!(
        out.contains("presence-pending entity=sip:dave@127.0.0.1"),
        "{out}"
    );
    assert!(
        out.contains("presence-terminated entity=sip:zed@example.org reason=noresource"),
        "{out}"
    );
    assert!(!out.contains("entity=sip:dave@127.0.0.1 status="), "{out}");

    // A member's change reaches the list watcher within a second.
    let t0 = Instant::now();
    ok(carol.set_presence(false, secs(5)));
    let d = wait_seen(
        &mut watch,
        Stream::Stdout,
        "presence entity=sip:carol@127.0.0.1 status=offline",
        1,
        secs(10),
    ) - t0;
    eprintln!("baresip offline seen in alice's list after {d:?}");
    assert!(d < WITHIN, "{d:?}");

    // dave allows alice: the list shows his (empty, so offline) state instead of pending.
    lab_allow(&lab, "dave", "davepw", &["sip:alice@127.0.0.1"]);
    wait_seen(
        &mut watch,
        Stream::Stdout,
        "presence entity=sip:dave@127.0.0.1 status=offline",
        1,
        secs(10),
    );

    // An rls-services service of alice's (RFC 4826 §4) is a list too; other users cannot use her lists.
    let services =
        crate::simple_kamailio::rls_services("sip:alice-work@127.0.0.1", &["sip:bob@127.0.0.1"]);
    let put = ok(curl_xcap(
        "PUT",
        &format!("{xcap_root}/rls-services/users/sip:alice@127.0.0.1/index"),
        Some(("alice", "alicepw")),
        &lab.ca_cert(),
        Some(("application/rls-services+xml", &services)),
    ));
    assert!(matches!(put.status, 200 | 201), "{put:?}");
    let work = ok(alice.run(
        "cli-watch-work",
        &[
            "watch",
            "--list",
            "sip:alice-work@127.0.0.1",
            "--duration",
            "3",
        ],
        dir.path(),
        secs(30),
    ));
    assert_eq!(work.code(), Some(0), "{}", work.dump());
    assert!(work.stdout.contains("resources=1"), "{}", work.dump());
    assert!(
        work.stdout
            .contains("presence entity=sip:bob@127.0.0.1 status=busy"),
        "{}",
        work.dump()
    );
    let nosy = ok(bob.run(
        "cli-watch-not-mine",
        &[
            "watch",
            "--list",
            "sip:alice-buddies@127.0.0.1",
            "--duration",
            "5",
        ],
        dir.path(),
        secs(30),
    ));
    assert!(
        nosy.stdout.contains("presence-terminated reason=\"404"),
        "{}",
        nosy.dump()
    );
    assert!(!nosy.stdout.contains("entity=sip:carol"), "{}", nosy.dump());
    watch.stop();
    busy.stop();
    assert!(carol.is_running());
}

/// Linphone (linphonec 5.1) through the lab: it shows a Tandem user's state changes (`friend add`; it prints
/// `Friend "alice" <sip:…> is Away|Busy|Offline…`), within a second; the other way, linphonec has no command to set
/// its own presence, so what it can change is being there: it PUBLISHes `open` when it registers (`publish=1`)
/// and removes the publication when it quits, and tandem-cli sees both.
#[test]
fn linphone_and_cli_see_each_others_presence_through_lab() {
    let dir = ok(TestDir::new("presence-linphone"));
    let lab = ok(LabServer::start(
        LabOptions::default()
            .user("alice", "alicepw")
            .user("dave", "davepw"),
        dir.path(),
    ));
    lab_allow(&lab, "alice", "alicepw", &["sip:dave@127.0.0.1"]);
    lab_allow(&lab, "dave", "davepw", &["sip:alice@127.0.0.1"]);
    let alice = CliAccount::new("alice", lab.domain(), "alicepw", lab.udp(), Transport::Udp);
    let mut watch = ok(alice.spawn(
        "cli-watch-dave",
        &["watch", "sip:dave@127.0.0.1", "--duration", "90"],
        dir.path(),
    ));
    wait_seen(
        &mut watch,
        Stream::Stdout,
        "presence entity=sip:dave@127.0.0.1 status=offline",
        1,
        secs(15),
    );

    // linphonec registers and publishes: tandem-cli sees dave available.
    let mut opts = tandem_tests::LinphoneOptions::new("dave");
    opts.registrar = Some(tandem_tests::LinphoneRegistrar {
        addr: lab.udp(),
        domain: "127.0.0.1".into(),
        password: "davepw".into(),
    });
    opts.publish = true;
    let mut dave = ok(tandem_tests::Linphone::start(opts, dir.path()));
    wait_seen(
        &mut watch,
        Stream::Stdout,
        "presence entity=sip:dave@127.0.0.1 status=available",
        1,
        secs(15),
    );

    // tandem-cli → linphonec: away, then (publication removed) offline, each within a second.
    ok(dave.add_friend("alice", "sip:alice@127.0.0.1"));
    let friend = "Friend \"alice\" <sip:alice@127.0.0.1> is";
    wait_seen(
        dave.process(),
        Stream::Stdout,
        &format!("{friend} Offline"),
        1,
        secs(15),
    );
    let mut away = ok(alice.spawn(
        "cli-presence-away",
        &["presence", "--status", "away", "--duration", "2"],
        dir.path(),
    ));
    let t0 = wait_seen(
        &mut away,
        Stream::Stdout,
        "published status=away",
        1,
        secs(15),
    );
    let to_away = wait_seen(
        dave.process(),
        Stream::Stdout,
        &format!("{friend} Away"),
        1,
        secs(10),
    ) - t0;
    let t0 = wait_seen(&mut away, Stream::Stdout, "unpublished", 1, secs(15));
    let to_offline = wait_seen(
        dave.process(),
        Stream::Stdout,
        &format!("{friend} Offline"),
        2,
        secs(10),
    ) - t0;
    eprintln!("tandem-cli → linphonec: away seen after {to_away:?}, offline after {to_offline:?}");

    // linphonec quits: its publication is removed and tandem-cli sees dave offline again.
    let t0 = Instant::now();
    ok(dave.quit(secs(20)));
    let gone = wait_seen(
        &mut watch,
        Stream::Stdout,
        "presence entity=sip:dave@127.0.0.1 status=offline",
        2,
        secs(20),
    ) - t0;
    eprintln!("linphonec quit → tandem-cli offline after {gone:?}");
    for (what, d) in [
        ("tandem-cli away at linphonec", to_away),
        ("tandem-cli offline at linphonec", to_offline),
    ] {
        assert!(d < WITHIN, "{what} took {d:?}");
    }
    watch.stop();
}
