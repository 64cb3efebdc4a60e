//! The media server against an in-process lab: voicemail deposit with a real media session,
//! MWI subscription NOTIFYs, retrieval by DTMF (the played message contains the deposited
//! tone), persistence across a restart, and the proxy's voicemail fallback (not registered, no
//! answer, busy, mailbox disabled).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sip_util;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sip_util::{DOMAIN, Lab, Ua, answer, eventually, rand_token};
use tandem_media::codec::CodecSpec;
use tandem_media::device::{CaptureDevice, DeviceError, NullCapture, PlaybackDevice, ToneCapture};
use tandem_media::session::{MediaConfig, MediaEvent, MediaSession};
use tandem_media::tone::analyze;
use tandem_proto::msg::{HeaderName, Message, Method, Request, Response};
use tandem_proto::sdp::{self, Codec, MediaOffer, SessionDescription};
use tandem_proto::simple::message_summary::MessageSummary;
use tokio::net::UdpSocket;
use tokio::sync::mpsc::UnboundedReceiver;

/// A playback device keeping everything it hears (8 kHz).
#[derive(Clone, Default)]
struct Tap(Arc<Mutex<Vec<i16>>>);

impl PlaybackDevice for Tap {
    fn rate(&self) -> u32 {
        8000
    }
    fn write_frame(&mut self, pcm: &[i16]) -> Result<(), DeviceError> {
        self.0.lock().unwrap().extend_from_slice(pcm);
        Ok(())
    }
    fn finish(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }
}

impl Tap {
    fn samples(&self) -> Vec<i16> {
        self.0.lock().unwrap().clone()
    }
}

/// True when some 400 ms window of `pcm` (at `rate`) is a clear tone near `hz`.
fn contains_tone(pcm: &[i16], rate: u32, hz: f32) -> bool {
    let w = rate as usize * 2 / 5;
    pcm.chunks(w / 2)
        .enumerate()
        .filter_map(|(i, _)| pcm.get(i * w / 2..i * w / 2 + w))
        .any(|win| {
            let a = analyze(win, rate);
            (a.dominant_hz - hz).abs() < hz * 0.03 && a.snr_db > 10.0 && a.rms > 300.0
        })
}

/// The codec spec for what the negotiation chose to send.
fn codec_spec(neg: &sdp::NegotiatedAudio) -> CodecSpec {
    let c = &neg.send_codec;
    CodecSpec::from_rtpmap(
        &c.name,
        c.clock_rate,
        c.channels,
        c.payload_type,
        c.fmtp.as_deref(),
    )
    .unwrap()
}

/// A call from `ua` with real media: INVITE (answering the proxy's challenge), ACK, session.
struct Call {
    invite: Request,
    ok: Response,
    session: MediaSession,
    events: UnboundedReceiver<MediaEvent>,
}

impl Call {
    async fn start(
        ua: &mut Ua,
        target: &str,
        capture: Box<dyn CaptureDevice>,
        playback: Box<dyn PlaybackDevice>,
    ) -> Result<Call, Response> {
        let rtp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let offer = sdp::build_offer(
            7,
            1,
            ip,
            rtp.local_addr().unwrap().port(),
            &MediaOffer::new(vec![Codec::pcmu(), Codec::telephone_event(8000, 101)]),
        );
        let mut invite = ua.invite(target);
        invite.body = Bytes::from(offer.to_string());
        ua.send(&Message::Request(invite.clone())).await;
        let mut final_r = final_response(ua).await;
        if final_r.status == 407 {
            ua.ack_non_2xx(&invite, &final_r).await;
            invite = ua.authorize(&invite, &final_r, None);
            ua.send(&Message::Request(invite.clone())).await;
            final_r = final_response(ua).await;
        }
        if final_r.status != 200 {
            ua.ack_non_2xx(&invite, &final_r).await;
            return Err(final_r);
        }
        let ack = ua.in_dialog(Method::Ack, &invite, &final_r);
        ua.send(&Message::Request(ack)).await;
        let answer = SessionDescription::parse_bytes(&final_r.body).unwrap();
        let neg = sdp::accept_answer(&offer, &answer).unwrap();
        let spec = codec_spec(&neg);
        let mut config = MediaConfig::new(rtp, neg.remote_rtp.unwrap(), spec, capture, playback);
        config.send_dtmf = neg.send_dtmf;
        config.recv_dtmf = neg.recv_dtmf.clone();
        config.rtcp_mux = neg.rtcp_mux;
        let (session, events) = MediaSession::start(config).unwrap();
        Ok(Call {
            invite,
            ok: final_r,
            session,
            events,
        })
    }

    /// A call to `user` in the lab's domain that sends silence and keeps what it hears.
    async fn silent(ua: &mut Ua, user: &str) -> Result<Call, Response> {
        Call::start(
            ua,
            &format!("sip:{user}@{DOMAIN}"),
            Box::new(NullCapture::new(8000)),
            Box::new(Tap::default()),
        )
        .await
    }

    /// The Contact of the 2xx: who answered.
    fn contact(&self) -> String {
        self.ok
            .headers
            .get_str(&HeaderName::Contact)
            .unwrap()
            .to_owned()
    }

    async fn wait_first_rtp(&mut self) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(ev) = self.events.recv().await {
                if matches!(ev, MediaEvent::FirstRtp) {
                    return;
                }
            }
        })
        .await
        .expect("no RTP from the media server");
    }

    async fn dtmf(&self, digits: &str) {
        for d in digits.chars() {
            self.session
                .send_dtmf(&d.to_string(), Duration::from_millis(120));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    async fn bye(self, ua: &mut Ua) {
        let bye = ua.in_dialog(Method::Bye, &self.invite, &self.ok);
        ua.send(&Message::Request(bye)).await;
        self.session.stop().await;
        let r = response_for_skipping_requests(ua, Method::Bye).await;
        assert_eq!(r.status, 200);
    }
}

/// The next final response (provisional ones skipped; requests answered 200).
async fn final_response(ua: &Ua) -> Response {
    final_response_where(ua, |_| true).await
}

/// The next final response to a `method` request (requests answered 200 meanwhile).
async fn response_for_skipping_requests(ua: &Ua, method: Method) -> Response {
    final_response_where(ua, |r| r.headers.cseq().unwrap().method == method).await
}

/// The next final response `accept` takes; provisional responses and the ones it refuses are
/// skipped, requests other than ACK (NOTIFYs, BYEs) are answered 200 and dropped.
async fn final_response_where(ua: &Ua, accept: impl Fn(&Response) -> bool) -> Response {
    loop {
        let (msg, from) = ua.recv_within(10.0).await.expect("no response");
        match msg {
            Message::Response(r) if r.status >= 200 && accept(&r) => return r,
            Message::Response(_) => {}
            Message::Request(req) => {
                if req.method != Method::Ack {
                    reply_ok(ua, &req, from).await;
                }
            }
        }
    }
}

/// Answers `req` (which came from `from`) with a 200 from `ua`.
async fn reply_ok(ua: &Ua, req: &Request, from: std::net::SocketAddr) {
    ua.send_to(
        &Message::Response(answer(req, 200, "x", &ua.contact())),
        from,
    )
    .await;
}

/// Subscribes `ua` to its own message summary; returns after the 200.
async fn subscribe_mwi(ua: &mut Ua) {
    ua.call_id = format!("{}@mwi", rand_token());
    ua.tag = rand_token();
    ua.cseq += 1;
    let text = format!(
        "SUBSCRIBE sip:{user}@{DOMAIN} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: <sip:{user}@{DOMAIN}>;tag={tag}\r\nTo: <sip:{user}@{DOMAIN}>\r\nCall-ID: {cid}\r\nCSeq: {cseq} SUBSCRIBE\r\nContact: <{contact}>\r\nEvent: message-summary\r\nAccept: application/simple-message-summary\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n",
        user = ua.user,
        via = ua.via(),
        tag = ua.tag,
        cid = ua.call_id,
        cseq = ua.cseq,
        contact = ua.contact(),
    );
    let sub = Request::parse(Bytes::from(text)).unwrap();
    ua.send(&Message::Request(sub.clone())).await;
    let r = ua.response().await;
    assert_eq!(r.status, 407);
    let sub = ua.authorize(&sub, &r, None);
    ua.send(&Message::Request(sub)).await;
    let r = final_response(ua).await;
    assert_eq!(r.status, 200, "{}", r.reason);
    assert!(r.headers.expires().unwrap().is_some());
}

/// The next message-summary NOTIFY `ua` gets (answered 200): (new, old).
async fn next_summary(ua: &Ua) -> (u32, u32) {
    loop {
        let (msg, from) = ua.recv_within(10.0).await.expect("no NOTIFY");
        if let Message::Request(req) = msg {
            reply_ok(ua, &req, from).await;
            if req.method == Method::Notify {
                assert_eq!(
                    req.headers.get_str(&HeaderName::Event),
                    Some("message-summary")
                );
                let s = MessageSummary::parse(&req.body).unwrap();
                let v = s.voice.unwrap();
                return (v.new, v.old);
            }
        }
    }
}

/// A one-message SMTP sink on a free port: its address and what it received after DATA.
async fn smtp_sink() -> (String, tokio::task::JoinHandle<String>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        let (r, mut w) = sock.into_split();
        let mut lines = BufReader::new(r).lines();
        w.write_all(b"220 sink\r\n").await.unwrap();
        let mut data = String::new();
        let mut in_data = false;
        while let Some(line) = lines.next_line().await.unwrap() {
            if in_data {
                if line == "." {
                    in_data = false;
                    w.write_all(b"250 queued\r\n").await.unwrap();
                } else {
                    data.push_str(&line);
                    data.push('\n');
                }
                continue;
            }
            let reply: &[u8] = match line.as_str() {
                "DATA" => {
                    in_data = true;
                    b"354 go\r\n"
                }
                "QUIT" => {
                    w.write_all(b"221 bye\r\n").await.unwrap();
                    break;
                }
                _ => b"250 ok\r\n",
            };
            w.write_all(reply).await.unwrap();
        }
        data
    });
    (addr, task)
}

#[tokio::test]
async fn deposit_notify_retrieve_and_survive_a_restart() {
    let (smtp_addr, mail) = smtp_sink().await;
    let mut lab = Lab::start(|c| {
        c.voicemail.smtp = Some(tandem_labserver::mediasrv::smtp::SmtpConfig {
            server: smtp_addr,
            from: "voicemail@tandem.lab".into(),
            recipients: [("alice".to_owned(), "alice@example.com".to_owned())].into(),
            ..Default::default()
        });
    })
    .await;
    let mut alice = lab.ua("alice").await;
    subscribe_mwi(&mut alice).await;

    // Bob leaves a message: '#' skips the greeting, then 2.5 s of a 1000 Hz tone.
    let mut bob = lab.ua("bob").await;
    let mut call = Call::start(
        &mut bob,
        &format!("sip:vm-alice@{DOMAIN}"),
        Box::new(ToneCapture::new(1000.0, 8000, 0.4)),
        Box::new(Tap::default()),
    )
    .await
    .unwrap();
    call.wait_first_rtp().await;
    call.dtmf("#").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    call.bye(&mut bob).await;

    let (new, old) = eventually(10.0, || async {
        let c = lab.store.voicemail_counts("alice").await.unwrap();
        (c.0 > 0).then_some(c)
    })
    .await;
    assert_eq!((new, old), (1, 0));
    // MWI: the subscriber hears about it (after the initial state and its retransmissions,
    // which nobody answered while bob was recording).
    let summary = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let s = next_summary(&alice).await;
            if s != (0, 0) {
                return s;
            }
        }
    })
    .await
    .expect("no NOTIFY with the new message");
    assert_eq!(summary, (1, 0));
    let messages = lab.store.voicemail_messages("alice").await.unwrap();
    let m = &messages[0];
    assert!(m.caller.contains("bob"), "{m:?}");
    assert!(m.duration_ms >= 1500, "{m:?}");
    let pcm = tandem_media::ogg::OggOpusReader::open(&m.path)
        .unwrap()
        .decode_all(16_000)
        .unwrap();
    assert!(
        contains_tone(&pcm, 16_000, 1000.0),
        "no tone in the message"
    );

    // The e-mail notification carries the recording (an Ogg file: base64 of "OggS").
    let data = tokio::time::timeout(Duration::from_secs(10), mail)
        .await
        .expect("no e-mail")
        .unwrap();
    assert!(data.contains("To: alice@example.com\n"), "{data}");
    assert!(data.contains("Subject: New voicemail from"), "{data}");
    assert!(data.contains("Content-Type: audio/ogg\n"), "{data}");
    assert!(data.contains("\nT2dnUw"), "no Ogg attachment: {data}");

    // Nothing is lost across a restart.
    lab.stop().await;
    lab.boot().await;
    assert_eq!(lab.store.voicemail_counts("alice").await.unwrap(), (1, 0));
    assert!(std::path::Path::new(&m.path).is_file());

    // Alice listens: PIN 1234#, then 1 (listen); the message's tone comes back.
    let mut alice = lab.ua("alice").await;
    let tap = Tap::default();
    let mut call = Call::start(
        &mut alice,
        &format!("sip:voicemail@{DOMAIN}"),
        Box::new(NullCapture::new(8000)),
        Box::new(tap.clone()),
    )
    .await
    .unwrap();
    call.wait_first_rtp().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    call.dtmf("1234#").await;
    // "You have one new message" then the main menu: '1' interrupts it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    call.dtmf("1").await;
    eventually(15.0, || async {
        contains_tone(&tap.samples(), 8000, 1000.0).then_some(())
    })
    .await;
    // Played to its end, then '9' saves it: now old.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    call.dtmf("9").await;
    eventually(5.0, || async {
        let c = lab.store.voicemail_counts("alice").await.unwrap();
        (c == (0, 1)).then_some(())
    })
    .await;
    call.bye(&mut alice).await;
    lab.stop().await;
}

#[tokio::test]
async fn wrong_pin_three_times_hangs_up() {
    let mut lab = Lab::start(|_| {}).await;
    lab.store.voicemail_set_pin("alice", "9876").await.unwrap();
    let mut alice = lab.ua("alice").await;
    let mut call = Call::silent(&mut alice, "voicemail").await.unwrap();
    call.wait_first_rtp().await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        call.dtmf("1234#").await;
        // "That PIN is not correct."
        tokio::time::sleep(Duration::from_millis(1800)).await;
    }
    // After the third wrong PIN: goodbye and BYE from the media server.
    let bye = eventually(15.0, || async {
        match alice.recv_within(0.5).await {
            Some((Message::Request(r), from)) if r.method == Method::Bye => Some((r, from)),
            Some((Message::Request(r), from)) => {
                reply_ok(&alice, &r, from).await;
                None
            }
            _ => None,
        }
    })
    .await;
    reply_ok(&alice, &bye.0, bye.1).await;
    call.session.stop().await;
    lab.stop().await;
}

#[tokio::test]
async fn proxy_falls_back_to_voicemail() {
    let mut lab = Lab::start(|c| {
        c.voicemail.enabled = true;
        c.voicemail.no_answer_secs = 1;
    })
    .await;
    let mut alice = lab.ua("alice").await;

    // Carol is not registered: her mailbox answers at once.
    let call = Call::silent(&mut alice, "carol").await.unwrap();
    let contact = call.contact();
    assert!(contact.contains("vm-carol@"), "{contact}");
    call.bye(&mut alice).await;

    // Bob is registered but busy: voicemail.
    let mut bob = lab.ua("bob").await;
    bob.register_self().await;
    let bob_task = tokio::spawn(async move {
        let (inv, from) = bob.request(10.0).await;
        assert_eq!(inv.method, Method::Invite);
        bob.send_to(
            &Message::Response(answer(&inv, 486, "busy", &bob.contact())),
            from,
        )
        .await;
        // The ACK for the 486, then the next INVITE rings without an answer.
        loop {
            let (req, from) = bob.request(10.0).await;
            match req.method {
                Method::Ack => {}
                Method::Invite => {
                    bob.send_to(
                        &Message::Response(answer(&req, 180, "ring", &bob.contact())),
                        from,
                    )
                    .await;
                }
                Method::Cancel => {
                    bob.send_to(
                        &Message::Response(answer(&req, 200, "ring", &bob.contact())),
                        from,
                    )
                    .await;
                    return;
                }
                _ => {}
            }
        }
    });
    let call = Call::silent(&mut alice, "bob").await.unwrap();
    let contact = call.contact();
    assert!(contact.contains("vm-bob@"), "busy: {contact}");
    call.bye(&mut alice).await;

    // No answer within no_answer_secs: bob's branch is cancelled, voicemail answers.
    let started = tokio::time::Instant::now();
    let call = Call::silent(&mut alice, "bob").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(900));
    let contact = call.contact();
    assert!(contact.contains("vm-bob@"), "no answer: {contact}");
    call.bye(&mut alice).await;
    bob_task.await.unwrap();

    // A disabled mailbox: the caller gets the proxy's 480 as before.
    lab.store
        .voicemail_set_enabled("carol", false)
        .await
        .unwrap();
    let r = Call::silent(&mut alice, "carol")
        .await
        .err()
        .expect("carol's disabled mailbox answered");
    assert_eq!(r.status, 480);
    lab.stop().await;
}

/// The media server's address from the lab's ready line.
fn mediasrv_addr(lab: &Lab) -> std::net::SocketAddr {
    let line = lab.server.as_ref().unwrap().ready_line();
    let field = line
        .split_whitespace()
        .find_map(|f| f.strip_prefix("mediasrv="))
        .expect("no mediasrv in the ready line");
    field.parse().unwrap()
}

#[tokio::test]
async fn bad_requests_are_refused() {
    let mut lab = Lab::start(|_| {}).await;
    let mut alice = lab.ua("alice").await;

    // A mailbox that does not exist: 404.
    let r = Call::silent(&mut alice, "vm-nobody")
        .await
        .err()
        .expect("a mailbox for nobody");
    assert_eq!(r.status, 404);

    // Garbage SDP: 400.
    let mut inv = alice.invite(&format!("sip:vm-bob@{DOMAIN}"));
    inv.body = Bytes::from_static(b"v=0\r\nthis is not SDP\r\n");
    alice.send(&Message::Request(inv.clone())).await;
    let r = alice.response().await;
    alice.ack_non_2xx(&inv, &r).await;
    let inv = alice.authorize(&inv, &r, None);
    alice.send(&Message::Request(inv.clone())).await;
    let r = final_response(&alice).await;
    assert!(matches!(r.status, 400 | 488), "{}", r.status);
    alice.ack_non_2xx(&inv, &r).await;

    // Straight to the media server, around the proxy: 403.
    let direct = mediasrv_addr(&lab);
    let mut inv = alice.invite(&format!("sip:vm-bob@{DOMAIN}"));
    inv.headers.set(HeaderName::Via, alice.via());
    alice.send_to(&Message::Request(inv.clone()), direct).await;
    let r = loop {
        let (m, _) = alice
            .recv_within(5.0)
            .await
            .expect("no answer from the media server");
        if let Message::Response(r) = m
            && r.status >= 200
        {
            break r;
        }
    };
    assert_eq!(r.status, 403);

    // Someone else's message summary: 403.
    alice.call_id = format!("{}@mwi", rand_token());
    alice.cseq += 1;
    let text = format!(
        "SUBSCRIBE sip:bob@{DOMAIN} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@{DOMAIN}>;tag={}\r\nTo: <sip:bob@{DOMAIN}>\r\nCall-ID: {}\r\nCSeq: {} SUBSCRIBE\r\nContact: <{}>\r\nEvent: message-summary\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n",
        alice.via(),
        rand_token(),
        alice.call_id,
        alice.cseq,
        alice.contact(),
    );
    let sub = Request::parse(Bytes::from(text)).unwrap();
    alice.send(&Message::Request(sub.clone())).await;
    let r = alice.response().await;
    let sub = alice.authorize(&sub, &r, None);
    alice.send(&Message::Request(sub)).await;
    let r = alice.response().await;
    assert_eq!(r.status, 403);

    // The media server still serves: a real deposit call works.
    let call = Call::silent(&mut alice, "vm-bob").await.unwrap();
    call.bye(&mut alice).await;
    lab.stop().await;
}

#[tokio::test]
async fn an_unfinished_recording_is_recovered_at_start() {
    let mut lab = Lab::start(|_| {}).await;
    lab.stop().await;
    // What a server killed in the middle of a message leaves: the row in the "recording"
    // state and an Ogg file that was never finished.
    let dir = lab.dir.path().join("voicemail").join("alice");
    std::fs::create_dir_all(&dir).unwrap();
    let keep = dir.join("kept.opus");
    let mut w = tandem_media::ogg::OggOpusWriter::create(&keep, 16_000).unwrap();
    w.write_pcm(&tandem_media::tone::sine(
        1000.0,
        16_000,
        Duration::from_secs(2),
        0.4,
    ))
    .unwrap();
    w.flush().unwrap();
    std::mem::forget(w);
    let short = dir.join("short.opus");
    let mut w = tandem_media::ogg::OggOpusWriter::create(&short, 16_000).unwrap();
    w.write_pcm(&[0; 1600]).unwrap();
    w.flush().unwrap();
    std::mem::forget(w);
    for (id, path) in [("kept", &keep), ("short", &short)] {
        lab.store
            .voicemail_begin(&tandem_labserver::store_voicemail::VoicemailMessage {
                id: id.into(),
                mailbox: "alice".into(),
                caller: "sip:bob@tandem.lab".into(),
                caller_name: None,
                received_at: 1,
                duration_ms: 0,
                path: path.display().to_string(),
                is_new: true,
            })
            .await
            .unwrap();
    }
    assert_eq!(lab.store.voicemail_counts("alice").await.unwrap(), (0, 0));
    lab.boot().await;
    let messages = lab.store.voicemail_messages("alice").await.unwrap();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0].id, "kept");
    assert!(
        (1800..=2200).contains(&messages[0].duration_ms),
        "{messages:?}"
    );
    assert!(!short.exists(), "the too-short part was not removed");
    assert!(lab.store.voicemail_recordings().await.unwrap().is_empty());
    lab.stop().await;
}

#[tokio::test]
async fn registered_devices_get_unsolicited_mwi_and_the_pin_can_be_changed() {
    let mut lab = Lab::start(|_| {}).await;
    let mut alice = lab.ua("alice").await;
    alice.register_self().await;

    let mut bob = lab.ua("bob").await;
    let mut call = Call::start(
        &mut bob,
        &format!("sip:vm-alice@{DOMAIN}"),
        Box::new(ToneCapture::new(700.0, 8000, 0.4)),
        Box::new(Tap::default()),
    )
    .await
    .unwrap();
    call.wait_first_rtp().await;
    call.dtmf("#").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    call.bye(&mut bob).await;
    // Alice did not subscribe: her registered device gets an out-of-dialog NOTIFY.
    assert_eq!(next_summary(&alice).await, (1, 0));

    // PIN 1234#, then 4 (new PIN) with 5678# twice.
    let mut call = Call::silent(&mut alice, "voicemail").await.unwrap();
    call.wait_first_rtp().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    call.dtmf("1234#").await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    call.dtmf("4").await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    call.dtmf("5678#").await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    call.dtmf("5678#").await;
    let want = tandem_labserver::store_voicemail::pin_hash("alice", "5678");
    eventually(10.0, || async {
        let b = lab.store.voicemail_box("alice").await.unwrap()?;
        (b.pin_hash.as_deref() == Some(want.as_str())).then_some(())
    })
    .await;
    call.bye(&mut alice).await;
    lab.stop().await;
}

#[tokio::test]
async fn shutdown_hangs_up_every_call() {
    let mut lab = Lab::start(|_| {}).await;
    let mut alice = lab.ua("alice").await;
    let mut call = Call::silent(&mut alice, "vm-bob").await.unwrap();
    call.wait_first_rtp().await;
    let stop = tokio::spawn(async move {
        lab.stop().await;
        lab
    });
    let (bye, from) = alice.request(5.0).await;
    assert_eq!(bye.method, Method::Bye);
    reply_ok(&alice, &bye, from).await;
    call.session.stop().await;
    let _lab = stop.await.unwrap();
}

/// An INVITE without SDP to `target` from `ua`, through the proxy's challenge: the 2xx.
async fn late_offer_invite(ua: &mut Ua, target: &str) -> (Request, Response) {
    let mut inv = ua.invite(target);
    inv.body = Bytes::new();
    inv.headers.remove(&HeaderName::ContentType);
    ua.send(&Message::Request(inv.clone())).await;
    let r = ua.response().await;
    assert_eq!(r.status, 407);
    ua.ack_non_2xx(&inv, &r).await;
    let inv = ua.authorize(&inv, &r, None);
    ua.send(&Message::Request(inv.clone())).await;
    let ok = final_response(ua).await;
    assert_eq!(ok.status, 200, "{}", ok.reason);
    (inv, ok)
}

#[tokio::test]
async fn an_invite_without_offer_gets_ours_and_the_answer_comes_in_the_ack() {
    let mut lab = Lab::start(|_| {}).await;
    let mut alice = lab.ua("alice").await;
    let (inv, ok) = late_offer_invite(&mut alice, &format!("sip:vm-bob@{DOMAIN}")).await;
    let offer = SessionDescription::parse_bytes(&ok.body).unwrap();
    let rtp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let (answer, neg) = sdp::answer_offer(
        &offer,
        &MediaOffer::new(vec![Codec::pcmu(), Codec::telephone_event(8000, 101)]),
        9,
        1,
        "127.0.0.1".parse().unwrap(),
        rtp.local_addr().unwrap().port(),
        sdp::plain_only,
    )
    .unwrap();
    let mut ack = alice.in_dialog(Method::Ack, &inv, &ok);
    ack.headers.push(HeaderName::ContentType, "application/sdp");
    ack.body = Bytes::from(answer.to_string());
    alice.send(&Message::Request(ack)).await;
    let spec = codec_spec(&neg);
    let config = MediaConfig::new(
        rtp,
        neg.remote_rtp.unwrap(),
        spec,
        Box::new(NullCapture::new(8000)),
        Box::new(Tap::default()),
    );
    let (session, events) = MediaSession::start(config).unwrap();
    let mut call = Call {
        invite: inv,
        ok,
        session,
        events,
    };
    // The greeting reaches us once the answer is applied.
    call.wait_first_rtp().await;
    call.bye(&mut alice).await;

    // An ACK without the answer: the media server hangs up.
    let (inv, ok) = late_offer_invite(&mut alice, &format!("sip:vm-bob@{DOMAIN}")).await;
    let ack = alice.in_dialog(Method::Ack, &inv, &ok);
    alice.send(&Message::Request(ack)).await;
    let (bye, from) = alice.request(5.0).await;
    assert_eq!(bye.method, Method::Bye);
    alice
        .send_to(&Message::Response(answer_for(&bye, &alice)), from)
        .await;
    lab.stop().await;
}

fn answer_for(req: &Request, ua: &Ua) -> Response {
    answer(req, 200, "x", &ua.contact())
}
