//! Conference rooms of the lab's media server: three participants (tandem-cli with Opus, tandem-cli with PCMU,
//! baresip with PCMU) each play their own tone into `conf-<room>@domain`; each one's recording holds the other two
//! tones and not its own (mix-minus, transcoding between Opus and G.711). Bad input: an unknown room in
//! static-only mode is 404, three wrong PINs end the call, and a DTMF flood plus a participant that stops sending
//! (hold) leave the room working for the others.

use std::path::Path;
use std::time::{Duration, Instant};

use tandem_media::tone::write_tone_wav;
use tandem_media::wav::read_wav;
use tandem_tests::process::Stream;
use tandem_tests::{
    Baresip, BaresipOptions, BaresipSource, CliAccount, LabOptions, LabServer, TestDir, Transport,
};

use crate::audio_common::{SKIP_END, SKIP_START};
use crate::common::{assert_exit, assert_exits_ok, ok, secs};

/// The three participants' tones (Hz): no one a harmonic of another, away from the join/leave tones (600/900 Hz).
const TONES: [f32; 3] = [440.0, 1000.0, 1700.0];
/// Amplitude (i16 units) above which a tone counts as heard; the sources are half scale (16 384).
const HEARD: f64 = 2500.0;
/// Amplitude below which a participant's own tone counts as absent (about 35 dB under a heard tone).
const ABSENT: f64 = 300.0;
/// Analysis window.
const WINDOW: Duration = Duration::from_millis(500);

fn lab(dir: &TestDir, conference: &str) -> LabServer {
    let mut opts = LabOptions {
        // baresip 1.0 (libre) knows only MD5 digest.
        auth_algorithms: vec!["MD5".into()],
        extra_toml: format!("\n[mediasrv]\nenabled = true\n\n[conference]\n{conference}\n"),
        ..LabOptions::default()
    };
    for u in ["alice", "bob", "carol"] {
        opts = opts.user(u, &format!("{u}pw"));
    }
    ok(LabServer::start(opts, dir.path()))
}

/// Writes a 40 s half-scale tone WAV (longer than any call here, so slow set-ups never outlast it).
fn long_tone(dir: &Path, hz: f32) -> std::path::PathBuf {
    let path = dir.join(format!("long-tone-{hz}.wav"));
    must(
        write_tone_wav(&path, hz, 48_000, 40.0),
        "writing a tone file",
    );
    path
}

/// The amplitude of the `freq` component of `pcm` (a single-bin DFT, 2|X|/N).
fn amplitude(pcm: &[i16], rate: u32, freq: f32) -> f64 {
    let w = std::f64::consts::TAU * f64::from(freq) / f64::from(rate);
    let (mut re, mut im) = (0.0f64, 0.0f64);
    for (i, &s) in pcm.iter().enumerate() {
        let (sin, cos) = (w * i as f64).sin_cos();
        re += f64::from(s) * cos;
        im += f64::from(s) * sin;
    }
    2.0 * (re * re + im * im).sqrt() / pcm.len().max(1) as f64
}

/// Per analysis window of a recording: the amplitude of each of [`TONES`].
fn tone_windows(path: &Path) -> Vec<[f64; 3]> {
    let (rate, pcm) = read_wav(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let win = (WINDOW.as_secs_f64() * f64::from(rate)) as usize;
    let skip = (SKIP_START.as_secs_f64() * f64::from(rate)) as usize;
    let end = pcm
        .len()
        .saturating_sub((SKIP_END.as_secs_f64() * f64::from(rate)) as usize);
    pcm.get(skip..end)
        .unwrap_or(&[])
        .chunks_exact(win.max(1))
        .map(|w| {
            [
                amplitude(w, rate, TONES[0]),
                amplitude(w, rate, TONES[1]),
                amplitude(w, rate, TONES[2]),
            ]
        })
        .collect()
}

/// Asserts that participant `me`'s recording holds the tones of `others` together in at least `min_windows`
/// windows, and its own tone in none.
#[track_caller]
fn assert_mix_minus(path: &Path, me: usize, others: &[usize], min_windows: usize, who: &str) {
    let windows = tone_windows(path);
    let both = windows
        .iter()
        .filter(|w| others.iter().all(|&o| w[o] > HEARD))
        .count();
    let table: Vec<String> = windows
        .iter()
        .map(|w| format!("{:.0}/{:.0}/{:.0}", w[0], w[1], w[2]))
        .collect();
    assert!(
        both >= min_windows,
        "{who}: the other tones ({:?} Hz) together in {both} windows of {WINDOW:?} (need {min_windows}); \
         amplitudes of {:?} Hz per window: {table:?}",
        others.iter().map(|&o| TONES[o]).collect::<Vec<_>>(),
        TONES
    );
    let own_max = windows.iter().map(|w| w[me]).fold(0.0, f64::max);
    assert!(
        own_max < ABSENT,
        "{who} hears its own tone ({} Hz) at amplitude {own_max:.0}; per window: {table:?}",
        TONES[me]
    );
}

/// How many analysis windows fit in `span`.
fn windows(span: Duration) -> usize {
    (span.as_millis() / WINDOW.as_millis()) as usize
}

/// The `call` arguments joining `room` for up to a minute with `codec`, playing `tone` and recording into `record`,
/// then `extra`.
fn join_args<'a>(
    room: &'a str,
    codec: &'a str,
    tone: &'a str,
    record: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "call",
        room,
        "--duration",
        "60",
        "--codec",
        codec,
        "--play",
        tone,
        "--record",
        record,
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn conference_three_participants_mix_minus() {
    let dir = ok(TestDir::new("mediasrv-conference-trio"));
    let lab = lab(&dir, "");
    let proxy = lab.udp();
    let room = "sip:conf-trio@127.0.0.1";
    let tone = |i: usize| long_tone(dir.path(), TONES[i]).display().to_string();
    let (alice_tone, bob_tone) = (tone(0), tone(1));
    let alice_rec = dir.path().join("alice-heard.wav");
    let bob_rec = dir.path().join("bob-heard.wav");
    let (alice_rec_arg, bob_rec_arg) = (
        alice_rec.display().to_string(),
        bob_rec.display().to_string(),
    );

    let mut opts = BaresipOptions::new("carol", "127.0.0.1", "carolpw", proxy);
    opts.source = BaresipSource::File(long_tone(dir.path(), TONES[2]));
    opts.record = true;
    opts.audio_codecs = Some("PCMU/8000/1".into());
    let mut carol = ok(Baresip::start(opts, dir.path()));
    ok(carol.wait_registered(secs(10)));

    let alice = CliAccount::new("alice", "127.0.0.1", "alicepw", proxy, Transport::Udp);
    let bob = CliAccount::new("bob", "127.0.0.1", "bobpw", proxy, Transport::Udp);
    let mut alice_call = ok(alice.spawn_interactive(
        "alice-conf",
        &join_args(
            room,
            "opus",
            &alice_tone,
            &alice_rec_arg,
            &["--timeout", "10"],
        ),
        dir.path(),
    ));
    ok(alice_call.wait_for_line(Stream::Stdout, "media", secs(15)));
    let mut bob_call = ok(bob.spawn_interactive(
        "bob-conf",
        &join_args(room, "pcmu", &bob_tone, &bob_rec_arg, &["--timeout", "10"]),
        dir.path(),
    ));
    ok(bob_call.wait_for_line(Stream::Stdout, "media", secs(15)));
    ok(carol.command("dial", room, secs(5)));
    ok(carol.wait_event_type("CALL_ESTABLISHED", secs(15)));
    std::thread::sleep(secs(5));
    ok(carol.command("hangup", "", secs(5)));
    ok(carol.wait_event_type("CALL_CLOSED", secs(10)));
    ok(alice_call.send_line("hangup"));
    ok(bob_call.send_line("hangup"));

    assert_exits_ok(&mut alice_call, secs(30), "alice");
    assert_exits_ok(&mut bob_call, secs(30), "bob");

    // Carol was in for about 5 s: at least 2 s of her tone together with the other one in each recording.
    let min = windows(secs(2));
    assert_mix_minus(&alice_rec, 0, &[1, 2], min, "alice (tandem-cli, Opus)");
    assert_mix_minus(&bob_rec, 1, &[0, 2], min, "bob (tandem-cli, PCMU)");
    let carol_rec = crate::audio_baresip::baresip_recording(&carol, 1);
    assert_mix_minus(&carol_rec, 2, &[0, 1], min, "carol (baresip, PCMU)");
    assert!(carol.is_running());
}

#[test]
fn conference_bad_input() {
    let dir = ok(TestDir::new("mediasrv-conference-bad"));
    let lab = lab(
        &dir,
        "create_on_join = false\n\n\
         [[conference.rooms]]\nname = \"pinned\"\npin = \"2468\"\n\n\
         [[conference.rooms]]\nname = \"open\"\n",
    );
    let proxy = lab.udp();
    let alice = CliAccount::new("alice", "127.0.0.1", "alicepw", proxy, Transport::Udp);
    let bob = CliAccount::new("bob", "127.0.0.1", "bobpw", proxy, Transport::Udp);
    let carol = CliAccount::new("carol", "127.0.0.1", "carolpw", proxy, Transport::Udp);

    // An unknown room in static-only mode.
    let out = ok(alice.run(
        "alice-nosuch",
        &["call", "sip:conf-nosuch@127.0.0.1", "--timeout", "10"],
        dir.path(),
        secs(20),
    ));
    assert_ne!(out.code(), Some(0), "{}", out.dump());
    assert!(
        out.dump().contains("404"),
        "expected a 404:\n{}",
        out.dump()
    );

    // Three wrong PINs: the media server hangs up long before the caller would.
    let started = Instant::now();
    let out = ok(alice.run(
        "alice-wrong-pin",
        &[
            "call",
            "sip:conf-pinned@127.0.0.1",
            "--duration",
            "40",
            "--dtmf",
            "1111#",
            "--dtmf-delay",
            "1",
        ],
        dir.path(),
        secs(60),
    ));
    assert!(
        out.stdout.contains("ended by=remote"),
        "the room should have hung up:\n{}",
        out.dump()
    );
    assert!(
        started.elapsed() < secs(35),
        "hung up only after {:?}",
        started.elapsed()
    );

    // The right PIN gets in (and the room stays until the caller leaves).
    let out = ok(bob.run(
        "bob-right-pin",
        &[
            "call",
            "sip:conf-pinned@127.0.0.1",
            "--duration",
            "4",
            "--dtmf",
            "2468#",
            "--dtmf-delay",
            "1",
        ],
        dir.path(),
        secs(30),
    ));
    assert_exit(&out, 0);
    assert!(out.stdout.contains("ended by=local"), "{}", out.dump());

    // A DTMF flood from bob and carol on hold (no RTP) do not disturb alice and bob hearing each other.
    let tone = |i: usize| long_tone(dir.path(), TONES[i]).display().to_string();
    let (alice_tone, bob_tone) = (tone(0), tone(1));
    let alice_rec = dir.path().join("alice-open.wav");
    let bob_rec = dir.path().join("bob-open.wav");
    let (alice_rec_arg, bob_rec_arg) = (
        alice_rec.display().to_string(),
        bob_rec.display().to_string(),
    );
    let room = "sip:conf-open@127.0.0.1";
    let mut carol_call = ok(carol.spawn_interactive(
        "carol-silent",
        &["call", room, "--duration", "60", "--hold-after", "1"],
        dir.path(),
    ));
    ok(carol_call.wait_for_line(Stream::Stdout, "held", secs(15)));
    let mut alice_call = ok(alice.spawn_interactive(
        "alice-open",
        &join_args(room, "pcmu", &alice_tone, &alice_rec_arg, &[]),
        dir.path(),
    ));
    ok(alice_call.wait_for_line(Stream::Stdout, "media", secs(15)));
    let flood = "0123456789#*1*2*3*9AB";
    let mut bob_call = ok(bob.spawn(
        "bob-flood",
        &[
            "call",
            room,
            "--duration",
            "9",
            "--codec",
            "opus",
            "--play",
            &bob_tone,
            "--record",
            &bob_rec_arg,
            "--dtmf",
            flood,
            "--dtmf-delay",
            "0",
        ],
        dir.path(),
    ));
    assert_exits_ok(&mut bob_call, secs(40), "bob");
    ok(alice_call.send_line("hangup"));
    ok(carol_call.send_line("hangup"));
    assert_exits_ok(&mut alice_call, secs(40), "alice");
    assert_exits_ok(&mut carol_call, secs(40), "carol");
    // The flood (21 digits) replaces bob's audio for a few seconds; after it, 2 s of bob's tone.
    let min = windows(secs(2));
    assert_mix_minus(&alice_rec, 0, &[1], min, "alice next to a DTMF flood");
    assert_mix_minus(&bob_rec, 1, &[0], min, "bob after his DTMF flood");
}

#[test]
fn conference_roster_and_moderator_keys() {
    let dir = ok(TestDir::new("mediasrv-conference-moderator"));
    let lab = lab(
        &dir,
        "create_on_join = false\n\n[[conference.rooms]]\nname = \"mod\"\nmoderator_pin = \"9999\"\n",
    );
    let proxy = lab.udp();
    let alice = CliAccount::new("alice", "127.0.0.1", "alicepw", proxy, Transport::Udp);
    let bob = CliAccount::new("bob", "127.0.0.1", "bobpw", proxy, Transport::Udp);
    let carol = CliAccount::new("carol", "127.0.0.1", "carolpw", proxy, Transport::Udp);
    let room = "sip:conf-mod@127.0.0.1";
    let tone = |i: usize| long_tone(dir.path(), TONES[i]).display().to_string();
    let (alice_tone, bob_tone) = (tone(0), tone(1));
    let alice_rec = dir.path().join("alice-moderator.wav");
    let alice_rec_arg = alice_rec.display().to_string();

    // Carol watches the roster.
    let mut watcher = ok(carol.spawn(
        "carol-roster",
        &["conference", room, "--duration", "60"],
        dir.path(),
    ));
    ok(watcher.wait_for_line(Stream::Stdout, "conference entity=sip:conf-mod@", secs(15)));

    // Alice enters the moderator PIN; bob, an ordinary participant, just presses #.
    let mut alice_call = ok(alice.spawn_interactive(
        "alice-moderator",
        &join_args(
            room,
            "opus",
            &alice_tone,
            &alice_rec_arg,
            &["--dtmf", "9999#", "--dtmf-delay", "1"],
        ),
        dir.path(),
    ));
    ok(watcher.wait_for_line(
        Stream::Stdout,
        "uri=sip:alice@127.0.0.1 role=moderator status=connected speaking=yes",
        secs(20),
    ));
    let mut bob_call = ok(bob.spawn_interactive(
        "bob-participant",
        &[
            "call",
            room,
            "--duration",
            "60",
            "--codec",
            "pcmu",
            "--play",
            &bob_tone,
            "--dtmf",
            "#",
            "--dtmf-delay",
            "1",
        ],
        dir.path(),
    ));
    ok(watcher.wait_for_line(
        Stream::Stdout,
        "uri=sip:bob@127.0.0.1 role=participant status=connected speaking=yes",
        secs(20),
    ));
    std::thread::sleep(secs(2));

    // *6 mutes bob himself, *6 again unmutes him.
    let bob_muted = "uri=sip:bob@127.0.0.1 role=participant status=muted speaking=no";
    let bob_connected = "uri=sip:bob@127.0.0.1 role=participant status=connected";
    ok(bob_call.send_line("dtmf *6"));
    ok(watcher.wait_for_line(Stream::Stdout, bob_muted, secs(10)));
    let connected_before = watcher.matching_lines(Stream::Stdout, bob_connected).len();
    ok(bob_call.send_line("dtmf *6"));
    ok(watcher.wait_for_nth_line(
        Stream::Stdout,
        bob_connected,
        connected_before + 1,
        secs(10),
    ));
    std::thread::sleep(secs(2));

    // *1 mutes everybody else: bob shows as muted and not speaking; alice hears him no more.
    let muted_before = watcher.matching_lines(Stream::Stdout, bob_muted).len();
    ok(alice_call.send_line("dtmf *1"));
    ok(watcher.wait_for_nth_line(Stream::Stdout, bob_muted, muted_before + 1, secs(10)));
    // *2 locks the room.
    ok(alice_call.send_line("dtmf *2"));
    ok(watcher.wait_for_line(Stream::Stdout, "locked=yes", secs(10)));
    std::thread::sleep(secs(3));
    // *3 removes the last one who joined: bob's call is ended by the room.
    ok(alice_call.send_line("dtmf *3"));
    ok(bob_call.wait_for_line(Stream::Stdout, "ended by=remote", secs(15)));
    ok(watcher.wait_for_line(Stream::Stdout, "users=1", secs(10)));
    ok(alice_call.send_line("hangup"));
    assert_exits_ok(&mut alice_call, secs(20), "alice");
    ok(bob_call.wait_exit(secs(20)));
    ok(watcher.wait_for_line(Stream::Stdout, "users=0", secs(10)));

    // Bob was heard before the mute; the last 2 s of alice's recording (muted, then kicked) hold none of him.
    let windows = tone_windows(&alice_rec);
    let heard = windows.iter().filter(|w| w[1] > HEARD).count();
    assert!(heard >= 2, "alice never heard bob: {windows:?}");
    let tail = &windows[windows.len().saturating_sub(4)..];
    assert!(
        tail.iter().all(|w| w[1] < ABSENT),
        "alice still hears bob after *1: {windows:?}"
    );
    assert!(
        windows
            .iter()
            .filter(|w| w[1] > HEARD)
            .all(|w| w[0] < ABSENT),
        "alice hears herself: {windows:?}"
    );
    drop(watcher);
}

/// The value, or a test failure naming `what`.
#[track_caller]
fn must<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e}"),
    }
}

/// A raw SIP caller whose RTP is garbage: INVITE through the (trusting) proxy, ACK, then BYE.
struct GarbageCaller {
    sock: std::net::UdpSocket,
    proxy: std::net::SocketAddr,
    ok: String,
    call_id: String,
    from_tag: String,
    media: std::net::SocketAddr,
}

fn header<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .collect()
}

impl GarbageCaller {
    fn call(proxy: std::net::SocketAddr, room: &str) -> GarbageCaller {
        let sock = must(std::net::UdpSocket::bind("127.0.0.1:0"), "binding");
        let local = must(sock.local_addr(), "local address");
        let call_id = format!("garbage-{}", local.port());
        let from_tag = "g1".to_string();
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
            local.port()
        );
        let invite = format!(
            "INVITE {room} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKg{call_id};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:garbage@127.0.0.1>;tag={from_tag}\r\nTo: <{room}>\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:garbage@{local}>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        must(
            sock.set_read_timeout(Some(Duration::from_millis(500))),
            "read timeout",
        );
        let mut buf = vec![0u8; 65_535];
        let deadline = Instant::now() + secs(15);
        let ok = loop {
            assert!(
                Instant::now() < deadline,
                "no 200 to the garbage caller's INVITE"
            );
            must(sock.send_to(invite.as_bytes(), proxy), "sending the INVITE");
            let Ok((n, _)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.starts_with("SIP/2.0 200") && text.contains("CSeq: 1 INVITE") {
                break text;
            }
            assert!(!text.starts_with("SIP/2.0 4"), "INVITE refused: {text}");
        };
        let body = ok.split("\r\n\r\n").nth(1).unwrap_or("");
        let port: u16 = body
            .lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no m=audio in the answer: {ok}"));
        let ip = body
            .lines()
            .find_map(|l| l.strip_prefix("c=IN IP4 "))
            .unwrap_or("127.0.0.1")
            .trim();
        let media = must(
            format!("{ip}:{port}").parse::<std::net::SocketAddr>(),
            "media address",
        );
        let caller = GarbageCaller {
            sock,
            proxy,
            ok,
            call_id,
            from_tag,
            media,
        };
        caller.in_dialog("ACK", 1);
        caller
    }

    /// Sends an in-dialog request (RFC 3261 §12.2.1.1: the route set is the Record-Route reversed).
    fn in_dialog(&self, method: &str, cseq: u32) {
        let local = must(self.sock.local_addr(), "local address");
        let target = header(&self.ok, "Contact")
            .first()
            .map(|c| {
                c.trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .unwrap_or_default();
        let mut routes: Vec<&str> = header(&self.ok, "Record-Route");
        routes.reverse();
        let route_lines: String = routes.iter().map(|r| format!("Route: {r}\r\n")).collect();
        let to = header(&self.ok, "To").first().copied().unwrap_or("");
        let msg = format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKg{method}{cseq};rport\r\n\
             {route_lines}Max-Forwards: 70\r\nFrom: <sip:garbage@127.0.0.1>;tag={}\r\nTo: {to}\r\n\
             Call-ID: {}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
            self.from_tag, self.call_id
        );
        must(
            self.sock.send_to(msg.as_bytes(), self.proxy),
            "sending an in-dialog request",
        );
    }

    /// 50 datagrams a second of junk for `dur`: random bytes, truncated headers, unknown payload types, SSRC
    /// and sequence jumps, oversized packets.
    fn spray(&self, dur: Duration) {
        let start = Instant::now();
        let mut k: u32 = 0;
        while start.elapsed() < dur {
            let x = k.wrapping_mul(2_654_435_761);
            let pkt: Vec<u8> = match k % 6 {
                0 => (0..(x % 1400) as usize)
                    .map(|i| (x >> (i % 24)) as u8)
                    .collect(),
                1 => vec![0x80],
                2 => {
                    let mut p = vec![0x80, 99, (k >> 8) as u8, k as u8, 0, 0, 0, 0, 1, 2, 3, 4];
                    p.extend(std::iter::repeat_n(0x55, 160));
                    p
                }
                3 => {
                    let mut p = vec![0x80, 0, (x >> 8) as u8, x as u8, x as u8, 1, 2, 3];
                    p.extend_from_slice(&x.to_be_bytes());
                    p.extend((0..160).map(|i| (x >> (i % 24)) as u8));
                    p
                }
                4 => vec![0xff; 9000],
                _ => vec![0x81, 200, 0, 100, 1, 2, 3, 4],
            };
            let _ = self.sock.send_to(&pkt, self.media);
            k += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for GarbageCaller {
    fn drop(&mut self) {
        self.in_dialog("BYE", 2);
    }
}

#[test]
fn conference_survives_garbage_rtp() {
    let dir = ok(TestDir::new("mediasrv-conference-garbage"));
    let mut opts = LabOptions {
        extra_toml: "\n[mediasrv]\nenabled = true\n".into(),
        // The raw caller does not authenticate.
        trusted: vec!["127.0.0.1/32".into()],
        ..LabOptions::default()
    };
    for u in ["alice", "bob"] {
        opts = opts.user(u, &format!("{u}pw"));
    }
    let mut lab = ok(LabServer::start(opts, dir.path()));
    let proxy = lab.udp();
    let room = "sip:conf-junk@127.0.0.1";
    let alice = CliAccount::new("alice", "127.0.0.1", "alicepw", proxy, Transport::Udp);
    let bob = CliAccount::new("bob", "127.0.0.1", "bobpw", proxy, Transport::Udp);
    let tone = |i: usize| long_tone(dir.path(), TONES[i]).display().to_string();
    let (alice_tone, bob_tone) = (tone(0), tone(1));
    let alice_rec = dir.path().join("alice-junk.wav");
    let bob_rec = dir.path().join("bob-junk.wav");
    let (alice_rec_arg, bob_rec_arg) = (
        alice_rec.display().to_string(),
        bob_rec.display().to_string(),
    );
    let garbage = GarbageCaller::call(proxy, room);
    let mut alice_call = ok(alice.spawn_interactive(
        "alice-junk",
        &join_args(room, "opus", &alice_tone, &alice_rec_arg, &[]),
        dir.path(),
    ));
    let mut bob_call = ok(bob.spawn_interactive(
        "bob-junk",
        &join_args(room, "pcmu", &bob_tone, &bob_rec_arg, &[]),
        dir.path(),
    ));
    ok(alice_call.wait_for_line(Stream::Stdout, "media", secs(15)));
    ok(bob_call.wait_for_line(Stream::Stdout, "media", secs(15)));
    garbage.spray(secs(6));
    drop(garbage);
    ok(alice_call.send_line("hangup"));
    ok(bob_call.send_line("hangup"));
    assert_exits_ok(&mut alice_call, secs(30), "alice");
    assert_exits_ok(&mut bob_call, secs(30), "bob");
    let min = windows(secs(3));
    assert_mix_minus(&alice_rec, 0, &[1], min, "alice next to a garbage sender");
    assert_mix_minus(&bob_rec, 1, &[0], min, "bob next to a garbage sender");
    assert!(lab.is_running(), "the lab server died");
}
