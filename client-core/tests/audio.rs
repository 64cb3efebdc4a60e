//! Audio calls between two (or three) user agents on loopback: media sessions, SRTP policy,
//! hold/resume, DTMF, transfers, call waiting, rejections, and hostile SDP from a raw socket.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod peer;

use std::time::Duration;

use peer::loopback_ua_config;
use tandem_client_core::types::{DeviceSpec, SrtpPolicy, Uri};
use tandem_client_core::{
    Account, AnswerOptions, Call, CallEvent, CallOptions, EndReason, EndedBy, IncomingCall,
    MediaOptions, Rejection, SrtpKeying, UaConfig, UaError, UaEvent, UaEvents, UserAgent,
};
use tandem_proto::sdp::Direction;
use tokio::time::timeout;

struct Phone {
    ua: UserAgent,
    events: UaEvents,
    account: Account,
}

impl Phone {
    async fn new(user: &str, seed: u64) -> Phone {
        Phone::with_config(user, seed, true).await
    }

    async fn with_config(user: &str, seed: u64, call_waiting: bool) -> Phone {
        let config = UaConfig {
            call_waiting,
            ..loopback_ua_config(seed)
        };
        let (ua, events) = UserAgent::new(config).await.unwrap();
        let account = Account::new(user, "127.0.0.1");
        Phone {
            ua,
            events,
            account,
        }
    }

    fn uri(&self) -> Uri {
        self.ua.contact_uri(Some(&self.account.user))
    }

    async fn call(&self, to: &Phone, media: MediaOptions) -> Call {
        let options = CallOptions {
            media,
            ..CallOptions::default()
        };
        self.ua
            .call(&self.account, to.uri(), options)
            .await
            .unwrap()
    }

    async fn incoming(&mut self) -> IncomingCall {
        match self.ua_event().await {
            UaEvent::IncomingCall(c) => c,
            other => panic!("unexpected UA event {other:?}"),
        }
    }

    async fn ua_event(&mut self) -> UaEvent {
        timeout(Duration::from_secs(10), self.events.next())
            .await
            .expect("no UA event")
            .expect("UA events ended")
    }

    fn answer_options(&self, media: MediaOptions) -> AnswerOptions {
        AnswerOptions {
            account: Some(self.account.clone()),
            media,
        }
    }
}

fn tone(hz: f32) -> MediaOptions {
    MediaOptions {
        capture: DeviceSpec::Tone(hz),
        report_interval: Duration::from_millis(500),
        ..MediaOptions::default()
    }
}

async fn answered(call: &mut Call) -> Vec<CallEvent> {
    let (_, seen) = common::wait_for(Duration::from_secs(15), call, |e| {
        matches!(e, CallEvent::Answered { .. })
    })
    .await;
    seen
}

async fn ended(call: &mut Call) -> CallEvent {
    common::wait_for(Duration::from_secs(15), call, |e| {
        matches!(e, CallEvent::Ended { .. } | CallEvent::Failed(_))
    })
    .await
    .0
}

fn media_started(seen: &[CallEvent]) -> Option<(String, bool)> {
    seen.iter().find_map(|e| match e {
        CallEvent::MediaStarted { codec, secure, .. } => Some((codec.clone(), *secure)),
        _ => None,
    })
}

/// Sets up alice -> bob, both answered; returns (alice's call, bob's call).
async fn connect(alice: &Phone, bob: &mut Phone, a: MediaOptions, b: MediaOptions) -> (Call, Call) {
    let mut out = alice.call(bob, a).await;
    let inc = bob.incoming().await;
    let mut inn = inc.accept_with(bob.answer_options(b)).await.unwrap();
    answered(&mut out).await;
    answered(&mut inn).await;
    (out, inn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tone_call_with_hold_resume_and_quality() {
    let mut alice = Phone::new("alice", 11).await;
    let mut bob = Phone::new("bob", 12).await;
    alice.account.codecs = vec!["pcmu".into()];
    let mut out = alice.call(&bob, tone(440.0)).await;
    let inc = bob.incoming().await;
    inc.ring().unwrap();
    let mut inn = inc
        .accept_with(bob.answer_options(tone(880.0)))
        .await
        .unwrap();
    let seen_out = answered(&mut out).await;
    let seen_in = answered(&mut inn).await;
    assert!(
        seen_out
            .iter()
            .any(|e| matches!(e, CallEvent::Ringing { status: 180, .. })),
        "{seen_out:?}"
    );
    let (codec, secure) = media_started(&seen_out).expect("alice's media started");
    assert!(codec.eq_ignore_ascii_case("pcmu"), "{codec}");
    assert!(!secure);
    assert!(media_started(&seen_in).is_some(), "{seen_in:?}");

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let q = inn.quality();
    assert!(q.packets_received > 20, "{q:?}");
    assert!(out.quality().packets_sent > 20, "{:?}", out.quality());

    out.hold().await.unwrap();
    common::wait_for(Duration::from_secs(15), &mut out, |e| *e == CallEvent::Held).await;
    common::wait_for(Duration::from_secs(15), &mut inn, |e| {
        *e == CallEvent::RemoteHold
    })
    .await;
    let held = out.media().negotiated.unwrap();
    assert_eq!(held.direction, Direction::SendOnly);
    assert_eq!(
        inn.media().negotiated.unwrap().direction,
        Direction::RecvOnly
    );
    // Holding twice is a no-op.
    out.hold().await.unwrap();

    out.resume().await.unwrap();
    common::wait_for(Duration::from_secs(15), &mut out, |e| {
        *e == CallEvent::Resumed
    })
    .await;
    common::wait_for(Duration::from_secs(15), &mut inn, |e| {
        *e == CallEvent::RemoteResumed
    })
    .await;
    assert_eq!(
        out.media().negotiated.unwrap().direction,
        Direction::SendRecv
    );

    out.hangup();
    assert_eq!(
        ended(&mut out).await,
        CallEvent::Ended {
            by: EndedBy::Local,
            reason: EndReason::Bye
        }
    );
    assert_eq!(
        ended(&mut inn).await,
        CallEvent::Ended {
            by: EndedBy::Remote,
            reason: EndReason::Bye
        }
    );
    assert!(inn.quality().packets_received > 20);
    alice.ua.shutdown().await;
    bob.ua.shutdown().await;
}

/// Places alice -> bob with the given policies; returns alice's outcome (Ok(secure) when
/// answered, after checking that audio arrives both ways) and whether bob's accept worked.
async fn srtp_call(
    a_policy: SrtpPolicy,
    b_policy: SrtpPolicy,
    keying: SrtpKeying,
) -> (Result<bool, UaError>, bool) {
    let mut alice = Phone::new("alice", 21).await;
    let mut bob = Phone::new("bob", 22).await;
    alice.account.srtp = a_policy;
    alice.account.srtp_keying = keying;
    bob.account.srtp = b_policy;
    bob.account.srtp_keying = keying;
    let mut out = alice.call(&bob, tone(440.0)).await;
    let inc = bob.incoming().await;
    let accepted = inc.accept_with(bob.answer_options(tone(880.0))).await;
    let result = match common::wait_for(Duration::from_secs(15), &mut out, |e| {
        matches!(e, CallEvent::Answered { .. } | CallEvent::Failed(_))
    })
    .await
    {
        (CallEvent::Answered { .. }, seen) => Ok(media_started(&seen).expect("media").1),
        (CallEvent::Failed(e), _) => Err(e),
        _ => unreachable!(),
    };
    let ok = accepted.is_ok();
    if let (Ok(secure), Ok(inn)) = (&result, &accepted) {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        for q in [out.quality(), inn.quality()] {
            assert!(q.packets_received > 10, "{q:?}");
            assert_eq!(q.srtp, *secure, "{q:?}");
            assert_eq!(q.srtp_auth_failures, 0, "{q:?}");
        }
    }
    drop(accepted);
    drop(out);
    tokio::time::sleep(Duration::from_millis(100)).await;
    alice.ua.shutdown().await;
    bob.ua.shutdown().await;
    (result, ok)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srtp_policies_off_optional_mandatory() {
    use SrtpPolicy::*;
    // Mandatory meets optional: SRTP.
    assert_eq!(
        srtp_call(Mandatory, Optional, SrtpKeying::Sdes).await,
        (Ok(true), true)
    );
    // Optional (RTP/AVP + a=crypto) meets optional: SRTP; meets off: plain.
    assert_eq!(
        srtp_call(Optional, Optional, SrtpKeying::Sdes).await,
        (Ok(true), true)
    );
    assert_eq!(
        srtp_call(Optional, Off, SrtpKeying::Sdes).await,
        (Ok(false), true)
    );
    // Mandatory never falls back: RTP/SAVP to an off peer is refused with 488 ...
    let (res, ok) = srtp_call(Mandatory, Off, SrtpKeying::Sdes).await;
    assert!(!ok);
    let err = res.unwrap_err();
    assert_eq!(err.status(), Some(488), "{err:?}");
    assert_eq!(err.rejection(), Some(Rejection::NotAcceptable));
    // ... and a plain offer to a mandatory peer too.
    let (res, ok) = srtp_call(Off, Mandatory, SrtpKeying::Sdes).await;
    assert!(!ok);
    assert_eq!(res.unwrap_err().status(), Some(488));
    // DTLS-SRTP (UDP/TLS/RTP/SAVP).
    assert_eq!(
        srtp_call(Mandatory, Optional, SrtpKeying::Dtls).await,
        (Ok(true), true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtmf_rfc4733_and_sip_info_fallback() {
    let alice = Phone::new("alice", 31).await;
    let mut bob = Phone::new("bob", 32).await;
    // RFC 4733 in the media.
    let (out, mut inn) = connect(&alice, &mut bob, tone(440.0), tone(880.0)).await;
    out.send_dtmf("12#").await.unwrap();
    for d in ['1', '2', '#'] {
        common::wait_for(Duration::from_secs(15), &mut inn, |e| {
            *e == CallEvent::Dtmf(d)
        })
        .await;
    }
    assert!(out.send_dtmf("x").await.is_err());
    drop(out);
    ended(&mut inn).await;

    // No media session on alice's side: no telephone-event to send on, so SIP INFO.
    let no_media = MediaOptions {
        enabled: false,
        ..MediaOptions::default()
    };
    let (out, mut inn) = connect(&alice, &mut bob, no_media, tone(880.0)).await;
    out.send_dtmf("5*").await.unwrap();
    common::wait_for(Duration::from_secs(15), &mut inn, |e| {
        *e == CallEvent::Dtmf('5')
    })
    .await;
    common::wait_for(Duration::from_secs(15), &mut inn, |e| {
        *e == CallEvent::Dtmf('*')
    })
    .await;
    drop(out);
    ended(&mut inn).await;
    alice.ua.shutdown().await;
    bob.ua.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blind_transfer_a_to_b_to_c() {
    // Alice calls Bob; Bob transfers Alice to Carol.
    let mut alice = Phone::new("alice", 41).await;
    let mut bob = Phone::new("bob", 42).await;
    let mut carol = Phone::new("carol", 43).await;
    let (mut a_call, mut b_call) = connect(&alice, &mut bob, tone(440.0), tone(880.0)).await;
    b_call.hold().await.unwrap();
    b_call.transfer_blind(carol.uri()).await.unwrap();

    let (ev, _) = common::wait_for(Duration::from_secs(15), &mut a_call, |e| {
        matches!(e, CallEvent::ReferRequested { .. })
    })
    .await;
    match ev {
        CallEvent::ReferRequested {
            target,
            referred_by,
        } => {
            assert_eq!(target, carol.uri());
            assert!(referred_by.unwrap().contains("bob"));
        }
        _ => unreachable!(),
    }
    let mut new_call = match alice.ua_event().await {
        UaEvent::TransferCall {
            call,
            transferred_call_id,
        } => {
            assert_eq!(transferred_call_id, a_call.call_id());
            call
        }
        other => panic!("{other:?}"),
    };
    let inc = carol.incoming().await;
    assert!(inc.referred_by().unwrap().contains("bob"));
    inc.ring().unwrap();
    let mut c_call = inc
        .accept_with(carol.answer_options(tone(660.0)))
        .await
        .unwrap();
    answered(&mut new_call).await;
    answered(&mut c_call).await;

    let (ev, seen) = common::wait_for(Duration::from_secs(15), &mut b_call, |e| {
        matches!(e, CallEvent::Transferred { .. })
    })
    .await;
    assert!(
        seen.iter()
            .any(|e| matches!(e, CallEvent::TransferProgress { status: 100, .. })),
        "{seen:?}"
    );
    assert!(
        matches!(ev, CallEvent::Transferred { status: 200, .. }),
        "{ev:?}"
    );
    assert_eq!(
        ended(&mut b_call).await,
        CallEvent::Ended {
            by: EndedBy::Local,
            reason: EndReason::Transferred
        }
    );
    let a_end = ended(&mut a_call).await;
    assert!(
        matches!(
            a_end,
            CallEvent::Ended {
                reason: EndReason::Transferred,
                ..
            }
        ),
        "{a_end:?}"
    );
    // Alice and Carol talk.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(c_call.quality().packets_received > 5);
    new_call.hangup();
    ended(&mut c_call).await;
    for p in [&alice, &bob, &carol] {
        p.ua.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attended_transfer_with_replaces() {
    // Alice talks to Bob and to Carol, then connects Bob with Carol.
    let alice = Phone::new("alice", 51).await;
    let mut bob = Phone::new("bob", 52).await;
    let mut carol = Phone::new("carol", 53).await;
    let (a_bob, mut b_call) = connect(&alice, &mut bob, tone(440.0), tone(880.0)).await;
    let (mut a_carol, mut c_call) = connect(&alice, &mut carol, tone(440.0), tone(660.0)).await;
    let mut a_bob = a_bob;
    a_bob.transfer_attended(&a_carol).await.unwrap();

    common::wait_for(Duration::from_secs(15), &mut b_call, |e| {
        matches!(e, CallEvent::ReferRequested { .. })
    })
    .await;
    let mut b_new = match bob.ua_event().await {
        UaEvent::TransferCall { call, .. } => call,
        other => panic!("{other:?}"),
    };
    // Carol's UA accepts the INVITE with Replaces on its own.
    let mut c_new = match carol.ua_event().await {
        UaEvent::CallReplaced {
            call,
            replaced_call_id,
        } => {
            assert_eq!(replaced_call_id, c_call.call_id());
            call
        }
        other => panic!("{other:?}"),
    };
    answered(&mut b_new).await;
    answered(&mut c_new).await;
    assert_eq!(
        ended(&mut c_call).await,
        CallEvent::Ended {
            by: EndedBy::Remote,
            reason: EndReason::Replaced
        }
    );
    let (ev, _) = common::wait_for(Duration::from_secs(15), &mut a_bob, |e| {
        matches!(e, CallEvent::Transferred { .. })
    })
    .await;
    assert!(matches!(ev, CallEvent::Transferred { status: 200, .. }));
    assert!(matches!(
        ended(&mut a_bob).await,
        CallEvent::Ended {
            reason: EndReason::Transferred,
            ..
        }
    ));
    assert!(matches!(
        ended(&mut a_carol).await,
        CallEvent::Ended {
            by: EndedBy::Remote,
            ..
        }
    ));
    assert!(matches!(
        ended(&mut b_call).await,
        CallEvent::Ended {
            reason: EndReason::Transferred,
            ..
        }
    ));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(c_new.quality().packets_received > 5);
    b_new.hangup();
    ended(&mut c_new).await;
    for p in [&alice, &bob, &carol] {
        p.ua.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reinvite_glare_is_retried_until_both_holds_succeed() {
    let alice = Phone::new("alice", 61).await;
    let mut bob = Phone::new("bob", 62).await;
    let (mut out, mut inn) = connect(&alice, &mut bob, tone(440.0), tone(880.0)).await;
    let (a, b) = tokio::join!(
        timeout(Duration::from_secs(15), out.hold()),
        timeout(Duration::from_secs(15), inn.hold())
    );
    a.unwrap().unwrap();
    b.unwrap().unwrap();
    common::wait_for(Duration::from_secs(15), &mut out, |e| *e == CallEvent::Held).await;
    common::wait_for(Duration::from_secs(15), &mut inn, |e| *e == CallEvent::Held).await;
    // Both hold: whoever re-offered last sees inactive.
    let da = out.media().negotiated.unwrap().direction;
    let db = inn.media().negotiated.unwrap().direction;
    assert_eq!((da, db), (Direction::Inactive, Direction::Inactive));
    drop(out);
    ended(&mut inn).await;
    alice.ua.shutdown().await;
    bob.ua.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_map_to_reasons() {
    let alice = Phone::new("alice", 71).await;
    let mut bob = Phone::new("bob", 72).await;
    for (status, rejection) in [
        (486, Rejection::Busy),
        (603, Rejection::Declined),
        (480, Rejection::Unavailable),
        (600, Rejection::Busy),
    ] {
        let mut out = alice.call(&bob, MediaOptions::default()).await;
        bob.incoming().await.reject(status).unwrap();
        match ended(&mut out).await {
            CallEvent::Failed(e) => {
                assert_eq!(e.status(), Some(status));
                assert_eq!(e.rejection(), Some(rejection));
            }
            other => panic!("{other:?}"),
        }
    }
    alice.ua.shutdown().await;
    bob.ua.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_waiting_offers_a_second_call_or_answers_busy() {
    let alice = Phone::new("alice", 81).await;
    let carol = Phone::new("carol", 83).await;
    let mut bob = Phone::new("bob", 82).await;
    let (out, mut inn) = connect(&alice, &mut bob, tone(440.0), tone(880.0)).await;
    let mut second = carol.call(&bob, MediaOptions::default()).await;
    let waiting = bob.incoming().await;
    assert!(waiting.from().unwrap().to_string().contains("carol"));
    let mut second_in = waiting.accept().await.unwrap();
    answered(&mut second).await;
    answered(&mut second_in).await;
    drop(second);
    ended(&mut second_in).await;
    drop(out);
    ended(&mut inn).await;

    // A busy phone (no call waiting) answers 486 while a call is up.
    let mut busy_bob = Phone::with_config("bob", 84, false).await;
    let (out, mut inn) = connect(&alice, &mut busy_bob, tone(440.0), tone(880.0)).await;
    let mut refused = carol.call(&busy_bob, MediaOptions::default()).await;
    match ended(&mut refused).await {
        CallEvent::Failed(e) => assert_eq!(e.rejection(), Some(Rejection::Busy)),
        other => panic!("{other:?}"),
    }
    drop(out);
    ended(&mut inn).await;
    for p in [&alice, &bob, &carol, &busy_bob] {
        p.ua.shutdown().await;
    }
}

/// Sends `invite` from a raw UDP socket and returns the final status.
async fn raw_invite_status(to: std::net::SocketAddr, body: &str, branch: &str) -> u16 {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = sock.local_addr().unwrap();
    let msg = format!(
        "INVITE sip:bob@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:evil@{me}>;tag=e1\r\nTo: <sip:bob@{to}>\r\n\
         Call-ID: {branch}@evil\r\nCSeq: 1 INVITE\r\nContact: <sip:evil@{me}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    sock.send_to(msg.as_bytes(), to).await.unwrap();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, _) = timeout(Duration::from_secs(10), sock.recv_from(&mut buf))
            .await
            .expect("no response")
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        let status: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap();
        if status >= 200 {
            let ack = format!(
                "ACK sip:bob@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{branch}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:evil@{me}>;tag=e1\r\n{}\r\nCall-ID: {branch}@evil\r\n\
                 CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                text.lines()
                    .find(|l| l.starts_with("To:"))
                    .unwrap_or("To: <sip:bob@x>")
            );
            sock.send_to(ack.as_bytes(), to).await.unwrap();
            return status;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sdp_offers_get_488_or_400() {
    let mut bob = Phone::new("bob", 91).await;
    let addr = bob.ua.local_addr().unwrap();
    let head = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n";
    let many: String = (0..500)
        .map(|i| format!("m=audio {} RTP/AVP 0\r\n", 10000 + 2 * i))
        .collect();
    let cases: Vec<(String, &[u16])> = vec![
        (format!("{head}{many}"), &[400, 488]),
        (format!("{head}m=audio 99999 RTP/AVP 0\r\n"), &[400]),
        (format!("{head}m=audio abc RTP/AVP 0\r\n"), &[400]),
        ("v=0\r\nm=audio 4000 RTP/AVP 0\r\n".to_string(), &[400]),
        (
            format!("{head}m=audio 4000 RTP/AVP 97\r\na=rtpmap:97 nonsense/8000\r\n"),
            &[488],
        ),
        (format!("{head}m=video 4000 RTP/AVP 96\r\n"), &[488]),
    ];
    for (i, (sdp, expected)) in cases.iter().enumerate() {
        let branch = format!("hostile{i}");
        let (status, ()) = tokio::join!(raw_invite_status(addr, sdp, &branch), async {
            let inc = bob.incoming().await;
            assert!(inc.accept().await.is_err());
        });
        assert!(expected.contains(&status), "case {i}: {status}");
    }
    // Still alive: a normal call works.
    let alice = Phone::new("alice", 92).await;
    let (out, mut inn) = connect(&alice, &mut bob, tone(440.0), tone(880.0)).await;
    drop(out);
    ended(&mut inn).await;
    alice.ua.shutdown().await;
    bob.ua.shutdown().await;
}

/// A raw UDP SIP peer for the tests that need exact control of the messages.
struct RawPeer {
    sock: tokio::net::UdpSocket,
}

impl RawPeer {
    async fn new() -> RawPeer {
        RawPeer {
            sock: tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        }
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.sock.local_addr().unwrap()
    }

    async fn recv(&self, secs: u64) -> Option<(tandem_proto::msg::Message, std::net::SocketAddr)> {
        let mut buf = vec![0u8; 65536];
        let (n, from) = timeout(Duration::from_secs(secs), self.sock.recv_from(&mut buf))
            .await
            .ok()?
            .unwrap();
        let msg =
            tandem_proto::msg::Message::parse(bytes::Bytes::copy_from_slice(&buf[..n])).unwrap();
        Some((msg, from))
    }

    async fn send(&self, bytes: &[u8], to: std::net::SocketAddr) {
        self.sock.send_to(bytes, to).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_media_then_reinvite_2xx_retransmitted_until_ack() {
    use tandem_proto::msg::{HeaderName, Message, Response};
    use tandem_proto::sdp::{self, Codec, MediaOffer, SessionDescription};

    let alice = Phone::new("alice", 101).await;
    let raw = RawPeer::new().await;
    let media_sink = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let sink_port = media_sink.local_addr().unwrap().port();
    let target: Uri = format!("sip:bob@{}", raw.addr()).parse().unwrap();
    let mut call = alice
        .ua
        .call(
            &alice.account,
            target,
            CallOptions {
                media: tone(440.0),
                ..CallOptions::default()
            },
        )
        .await
        .unwrap();

    let (invite, ua_addr) = loop {
        match raw.recv(5).await.expect("no INVITE") {
            (Message::Request(r), from) if r.method == tandem_proto::msg::Method::Invite => {
                break (r, from);
            }
            _ => {}
        }
    };
    let offer = SessionDescription::parse(std::str::from_utf8(&invite.body).unwrap()).unwrap();
    let (answer, _) = sdp::answer_offer(
        &offer,
        &MediaOffer::new(vec![Codec::pcmu(), Codec::telephone_event(8000, 101)]),
        77,
        1,
        "127.0.0.1".parse().unwrap(),
        sink_port,
        sdp::plain_only,
    )
    .unwrap();
    let with_tag = |status: u16, body: Option<&SessionDescription>| {
        let mut r = Response::for_request(&invite, status);
        r.reason = tandem_proto::msg::reason_phrase(status).into();
        let mut to = r.headers.to().unwrap();
        to.set_tag("rawtag");
        r.headers.set(HeaderName::To, to.to_string());
        r.headers
            .push(HeaderName::Contact, format!("<sip:bob@{}>", raw.addr()));
        if let Some(b) = body {
            r.headers.push(HeaderName::ContentType, "application/sdp");
            r.body = bytes::Bytes::from(b.to_string());
        }
        r.to_bytes()
    };
    // 183 with SDP: early media flows before any 200.
    raw.send(&with_tag(183, Some(&answer)), ua_addr).await;
    let (ev, seen) = common::wait_for(Duration::from_secs(15), &mut call, |e| {
        matches!(e, CallEvent::MediaStarted { .. })
    })
    .await;
    assert!(
        matches!(ev, CallEvent::MediaStarted { early: true, .. }),
        "{ev:?}"
    );
    assert!(
        seen.iter()
            .any(|e| matches!(e, CallEvent::Ringing { status: 183, .. })),
        "{seen:?}"
    );
    let mut rtp = [0u8; 2048];
    timeout(Duration::from_secs(3), media_sink.recv_from(&mut rtp))
        .await
        .expect("no early RTP")
        .unwrap();

    // An INFO in the early dialog is answered (and its digit reported).
    {
        let me = raw.addr();
        let from = invite.headers.get_str(&HeaderName::From).unwrap();
        let contact = match &invite.headers.contacts().unwrap()[0] {
            tandem_proto::msg::ContactValue::Addr(a) => a.uri.clone(),
            _ => panic!(),
        };
        let body = "Signal=4\r\nDuration=100\r\n";
        let info = format!(
            "INFO {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKearlyinfo\r\n\
             Max-Forwards: 70\r\nFrom: <sip:bob@{me}>;tag=rawtag\r\nTo: {from}\r\n\
             Call-ID: {}\r\nCSeq: 2 INFO\r\nContent-Type: application/dtmf-relay\r\n\
             Content-Length: {}\r\n\r\n{body}",
            invite.headers.call_id().unwrap(),
            body.len()
        );
        raw.send(info.as_bytes(), ua_addr).await;
        let status = loop {
            match raw.recv(5).await.expect("no INFO response") {
                (Message::Response(r), _) if r.headers.cseq().unwrap().seq == 2 => break r.status,
                _ => {}
            }
        };
        assert_eq!(status, 200);
        common::wait_for(Duration::from_secs(15), &mut call, |e| {
            *e == CallEvent::Dtmf('4')
        })
        .await;
    }
    raw.send(&with_tag(200, Some(&answer)), ua_addr).await;
    answered(&mut call).await;
    loop {
        match raw.recv(5).await.expect("no ACK") {
            (Message::Request(r), _) if r.method == tandem_proto::msg::Method::Ack => break,
            _ => {}
        }
    }

    // The peer puts us on hold with a re-INVITE and does not ACK at first.
    let contact = invite.headers.contacts().unwrap();
    let alice_contact = match &contact[0] {
        tandem_proto::msg::ContactValue::Addr(a) => a.uri.clone(),
        _ => panic!(),
    };
    let from_tag = invite.headers.from().unwrap().tag().unwrap().to_string();
    let call_id = invite.headers.call_id().unwrap().to_string();
    let mut hold = MediaOffer::new(vec![Codec::pcmu(), Codec::telephone_event(8000, 101)]);
    hold.direction = Direction::SendOnly;
    let hold_sdp =
        sdp::build_offer(77, 2, "127.0.0.1".parse().unwrap(), sink_port, &hold).to_string();
    let me = raw.addr();
    let reinvite = format!(
        "INVITE {alice_contact} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKreinv1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:bob@{me}>;tag=rawtag\r\nTo: {};tag={from_tag}\r\n\
         Call-ID: {call_id}\r\nCSeq: 5 INVITE\r\nContact: <sip:bob@{me}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{hold_sdp}",
        invite
            .headers
            .get_str(&HeaderName::From)
            .unwrap()
            .split(";tag")
            .next()
            .unwrap(),
        hold_sdp.len()
    );
    raw.send(reinvite.as_bytes(), ua_addr).await;
    let mut oks = 0;
    let mut answer_body = None;
    let until = tokio::time::Instant::now() + Duration::from_millis(1300);
    while tokio::time::Instant::now() < until {
        if let Some((Message::Response(r), _)) = raw.recv(1).await
            && r.status == 200
            && r.headers.cseq().unwrap().seq == 5
        {
            oks += 1;
            answer_body = Some(r.body.clone());
        }
    }
    assert!(oks >= 3, "the 2xx to the re-INVITE was sent {oks} times");
    let body = String::from_utf8(answer_body.unwrap().to_vec()).unwrap();
    assert!(body.contains("a=recvonly"), "{body}");
    common::wait_for(Duration::from_secs(15), &mut call, |e| {
        *e == CallEvent::RemoteHold
    })
    .await;
    let ack = format!(
        "ACK {alice_contact} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKreack1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:bob@{me}>;tag=rawtag\r\nTo: <sip:alice@127.0.0.1>;tag={from_tag}\r\n\
         Call-ID: {call_id}\r\nCSeq: 5 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    raw.send(ack.as_bytes(), ua_addr).await;
    // At most one retransmission was already on its way; then silence.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut late = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(1200);
    while tokio::time::Instant::now() < until {
        if let Some((Message::Response(r), _)) = raw.recv(1).await
            && r.status == 200
        {
            late += 1;
        }
    }
    assert!(late <= 1, "{late} retransmissions after the ACK");
    call.hangup();
    // Answer the BYE.
    loop {
        match raw.recv(5).await.expect("no BYE") {
            (Message::Request(r), from) if r.method == tandem_proto::msg::Method::Bye => {
                let mut ok = Response::for_request(&r, 200);
                ok.reason = "OK".into();
                raw.send(&ok.to_bytes(), from).await;
                break;
            }
            _ => {}
        }
    }
    ended(&mut call).await;
    alice.ua.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uas_early_media_before_the_answer() {
    let alice = Phone::new("alice", 111).await;
    let mut bob = Phone::new("bob", 112).await;
    let mut out = alice.call(&bob, tone(440.0)).await;
    let mut inc = bob.incoming().await;
    inc.early_media(bob.answer_options(tone(880.0)))
        .await
        .unwrap();
    let (ev, seen) = common::wait_for(Duration::from_secs(15), &mut out, |e| {
        matches!(e, CallEvent::MediaStarted { .. })
    })
    .await;
    assert!(
        matches!(ev, CallEvent::MediaStarted { early: true, .. }),
        "{ev:?}"
    );
    assert!(
        seen.iter()
            .any(|e| matches!(e, CallEvent::Ringing { status: 183, .. })),
        "{seen:?}"
    );
    // Bob's audio reaches Alice before the answer.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(out.quality().packets_received > 10, "{:?}", out.quality());
    let mut inn = inc.accept().await.unwrap();
    let (ev, _) = common::wait_for(Duration::from_secs(15), &mut inn, |e| {
        matches!(e, CallEvent::MediaStarted { .. })
    })
    .await;
    assert!(matches!(ev, CallEvent::MediaStarted { early: true, .. }));
    answered(&mut inn).await;
    let seen = answered(&mut out).await;
    // The 200 repeats the early answer: no second start.
    assert!(media_started(&seen).is_none(), "{seen:?}");
    drop(inn);
    ended(&mut out).await;
    alice.ua.shutdown().await;
    bob.ua.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_and_resume_with_update() {
    use tandem_client_core::OfferMethod;
    let alice = Phone::new("alice", 121).await;
    let mut bob = Phone::new("bob", 122).await;
    let (mut out, mut inn) = connect(&alice, &mut bob, tone(440.0), tone(880.0)).await;
    let version = |c: &Call| c.media().local_sdp.unwrap().origin.session_version;
    let before = version(&out);
    out.hold_with(OfferMethod::Update).await.unwrap();
    common::wait_for(Duration::from_secs(15), &mut out, |e| *e == CallEvent::Held).await;
    common::wait_for(Duration::from_secs(15), &mut inn, |e| {
        *e == CallEvent::RemoteHold
    })
    .await;
    assert_eq!(
        out.media().negotiated.unwrap().direction,
        Direction::SendOnly
    );
    assert_eq!(version(&out), before + 1);
    // Alice resumes with an UPDATE, then Bob holds with a re-INVITE: both methods interleave.
    out.resume_with(OfferMethod::Update).await.unwrap();
    common::wait_for(Duration::from_secs(15), &mut out, |e| {
        *e == CallEvent::Resumed
    })
    .await;
    common::wait_for(Duration::from_secs(15), &mut inn, |e| {
        *e == CallEvent::RemoteResumed
    })
    .await;
    inn.hold().await.unwrap();
    common::wait_for(Duration::from_secs(15), &mut out, |e| {
        *e == CallEvent::RemoteHold
    })
    .await;
    assert_eq!(
        out.media().negotiated.unwrap().direction,
        Direction::RecvOnly
    );
    drop(out);
    ended(&mut inn).await;
    alice.ua.shutdown().await;
    bob.ua.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_blind_transfer_keeps_the_call() {
    let mut alice = Phone::new("alice", 131).await;
    let mut bob = Phone::new("bob", 132).await;
    let mut carol = Phone::new("carol", 133).await;
    let (mut a_call, mut b_call) = connect(&alice, &mut bob, tone(440.0), tone(880.0)).await;
    b_call.transfer_blind(carol.uri()).await.unwrap();
    // A second transfer while one is in progress is refused.
    assert!(b_call.transfer_blind(carol.uri()).await.is_err());
    let mut new_call = match alice.ua_event().await {
        UaEvent::TransferCall { call, .. } => call,
        other => panic!("{other:?}"),
    };
    carol.incoming().await.reject(486).unwrap();
    match ended(&mut new_call).await {
        CallEvent::Failed(e) => assert_eq!(e.rejection(), Some(Rejection::Busy)),
        other => panic!("{other:?}"),
    }
    let (ev, _) = common::wait_for(Duration::from_secs(15), &mut b_call, |e| {
        matches!(e, CallEvent::TransferFailed { .. })
    })
    .await;
    assert_eq!(
        ev,
        CallEvent::TransferFailed {
            status: 486,
            reason: "Busy Here".into()
        }
    );
    common::wait_for(Duration::from_secs(15), &mut a_call, |e| {
        matches!(e, CallEvent::TransferFailed { status: 486, .. })
    })
    .await;
    // The original call is still up: DTMF still gets through.
    b_call.send_dtmf("7").await.unwrap();
    common::wait_for(Duration::from_secs(15), &mut a_call, |e| {
        *e == CallEvent::Dtmf('7')
    })
    .await;
    b_call.hangup();
    assert_eq!(
        ended(&mut a_call).await,
        CallEvent::Ended {
            by: EndedBy::Remote,
            reason: EndReason::Bye
        }
    );
    for p in [&alice, &bob, &carol] {
        p.ua.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mandatory_srtp_refuses_a_plain_answer_with_ack_and_bye() {
    use tandem_proto::msg::{HeaderName, Message, Method, Response};

    let mut alice = Phone::new("alice", 141).await;
    alice.account.srtp = SrtpPolicy::Mandatory;
    let raw = RawPeer::new().await;
    let target: Uri = format!("sip:bob@{}", raw.addr()).parse().unwrap();
    let mut call = alice
        .ua
        .call(&alice.account, target, CallOptions::default())
        .await
        .unwrap();
    let (invite, ua_addr) = loop {
        match raw.recv(5).await.expect("no INVITE") {
            (Message::Request(r), from) if r.method == Method::Invite => break (r, from),
            _ => {}
        }
    };
    let offer = String::from_utf8(invite.body.to_vec()).unwrap();
    assert!(
        offer.contains("m=audio") && offer.contains("RTP/SAVP"),
        "{offer}"
    );
    assert!(offer.contains("a=crypto:"), "{offer}");
    // A plain answer, as from a peer that ignores SRTP.
    let plain = "v=0\r\no=- 5 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let mut ok = Response::for_request(&invite, 200);
    ok.reason = "OK".into();
    let mut to = ok.headers.to().unwrap();
    to.set_tag("plain");
    ok.headers.set(HeaderName::To, to.to_string());
    ok.headers
        .push(HeaderName::Contact, format!("<sip:bob@{}>", raw.addr()));
    ok.headers.push(HeaderName::ContentType, "application/sdp");
    ok.body = bytes::Bytes::from(plain);
    raw.send(&ok.to_bytes(), ua_addr).await;
    let mut got_ack = false;
    let bye = loop {
        match raw.recv(5).await.expect("no ACK/BYE") {
            (Message::Request(r), from) if r.method == Method::Ack => {
                got_ack = true;
                let _ = from;
            }
            (Message::Request(r), from) if r.method == Method::Bye => break (r, from),
            _ => {}
        }
    };
    assert!(got_ack, "the 2xx must be ACKed before the BYE");
    let reason = bye
        .0
        .headers
        .get_str(&HeaderName::Other("Reason".into()))
        .unwrap();
    assert!(reason.contains("cause=488"), "{reason}");
    let mut bye_ok = Response::for_request(&bye.0, 200);
    bye_ok.reason = "OK".into();
    raw.send(&bye_ok.to_bytes(), bye.1).await;
    match ended(&mut call).await {
        CallEvent::Failed(UaError::Media(_)) => {}
        other => panic!("{other:?}"),
    }
    alice.ua.shutdown().await;
}

/// Alice calls a raw peer, which answers PCMU at `media_port`; returns the call, the INVITE
/// and Alice's SIP address.
async fn raw_answered_call(
    alice: &Phone,
    raw: &RawPeer,
    media_port: u16,
) -> (Call, tandem_proto::msg::Request, std::net::SocketAddr) {
    use tandem_proto::msg::{HeaderName, Message, Method, Response};
    use tandem_proto::sdp::{self, Codec, MediaOffer, SessionDescription};
    let target: Uri = format!("sip:bob@{}", raw.addr()).parse().unwrap();
    let mut call = alice
        .ua
        .call(&alice.account, target, CallOptions::default())
        .await
        .unwrap();
    let (invite, ua_addr) = loop {
        match raw.recv(5).await.expect("no INVITE") {
            (Message::Request(r), from) if r.method == Method::Invite => break (r, from),
            _ => {}
        }
    };
    let offer = SessionDescription::parse(std::str::from_utf8(&invite.body).unwrap()).unwrap();
    let (answer, _) = sdp::answer_offer(
        &offer,
        &MediaOffer::new(vec![Codec::pcmu()]),
        77,
        1,
        "127.0.0.1".parse().unwrap(),
        media_port,
        sdp::plain_only,
    )
    .unwrap();
    let mut ok = Response::for_request(&invite, 200);
    ok.reason = "OK".into();
    let mut to = ok.headers.to().unwrap();
    to.set_tag("rawtag");
    ok.headers.set(HeaderName::To, to.to_string());
    ok.headers
        .push(HeaderName::Contact, format!("<sip:bob@{}>", raw.addr()));
    ok.headers.push(HeaderName::ContentType, "application/sdp");
    ok.body = bytes::Bytes::from(answer.to_string());
    raw.send(&ok.to_bytes(), ua_addr).await;
    answered(&mut call).await;
    loop {
        match raw.recv(5).await.expect("no ACK") {
            (Message::Request(r), _) if r.method == Method::Ack => break,
            _ => {}
        }
    }
    (call, invite, ua_addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reinvite_491_is_retried_after_the_rfc3261_wait_and_glare_is_refused() {
    use tandem_proto::msg::{HeaderName, Message, Method, Response};

    let alice = Phone::new("alice", 151).await;
    let raw = RawPeer::new().await;
    let (call, invite, ua_addr) = raw_answered_call(&alice, &raw, 40002).await;
    let call = std::sync::Arc::new(call);
    let holder = {
        let call = call.clone();
        tokio::spawn(async move { call.hold().await })
    };
    let first = loop {
        match raw.recv(5).await.expect("no re-INVITE") {
            (Message::Request(r), _) if r.method == Method::Invite => break r,
            _ => {}
        }
    };
    assert!(String::from_utf8_lossy(&first.body).contains("a=sendonly"));
    // Our own re-INVITE crosses Alice's: she must answer 491 (RFC 3261 §14.2).
    let me = raw.addr();
    let from_tag = invite.headers.from().unwrap().tag().unwrap().to_string();
    let call_id = invite.headers.call_id().unwrap().to_string();
    let contact = match &invite.headers.contacts().unwrap()[0] {
        tandem_proto::msg::ContactValue::Addr(a) => a.uri.clone(),
        _ => panic!(),
    };
    let crossing = format!(
        "INVITE {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKcross1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:bob@{me}>;tag=rawtag\r\nTo: <sip:alice@127.0.0.1>;tag={from_tag}\r\n\
         Call-ID: {call_id}\r\nCSeq: 9 INVITE\r\nContact: <sip:bob@{me}>\r\nContent-Length: 0\r\n\r\n"
    );
    raw.send(crossing.as_bytes(), ua_addr).await;
    // Wait for Alice's 491 before answering hers: otherwise she may take our 491 first
    // and then accept the crossing INVITE, which is just as correct but not this test.
    assert_eq!(
        raw_response(&raw, 9).await.status,
        491,
        "the crossing re-INVITE was not refused"
    );
    let ack491 = format!(
        "ACK {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKcross1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:bob@{me}>;tag=rawtag\r\nTo: <sip:alice@127.0.0.1>;tag={from_tag}\r\n\
         Call-ID: {call_id}\r\nCSeq: 9 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    raw.send(ack491.as_bytes(), ua_addr).await;
    let mut r491 = Response::for_request(&first, 491);
    r491.reason = "Request Pending".into();
    let sent_491 = tokio::time::Instant::now();
    raw.send(&r491.to_bytes(), ua_addr).await;
    let first_seq = first.headers.cseq().unwrap().seq;
    let retry = loop {
        match raw.recv(6).await.expect("no retried re-INVITE") {
            (Message::Request(r), _)
                if r.method == Method::Invite && r.headers.cseq().unwrap().seq > first_seq =>
            {
                break r;
            }
            _ => {}
        }
    };
    let waited = sent_491.elapsed();
    // Alice placed the call (owns the Call-ID): 2.1 to 4 s.
    assert!(
        waited >= Duration::from_millis(2000) && waited <= Duration::from_millis(4500),
        "{waited:?}"
    );
    assert!(retry.headers.cseq().unwrap().seq > first.headers.cseq().unwrap().seq);
    let mut ok = Response::for_request(&retry, 200);
    ok.reason = "OK".into();
    ok.headers
        .push(HeaderName::Contact, format!("<sip:bob@{me}>"));
    ok.headers.push(HeaderName::ContentType, "application/sdp");
    ok.body = bytes::Bytes::from(
        "v=0\r\no=- 77 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 40002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=recvonly\r\n",
    );
    raw.send(&ok.to_bytes(), ua_addr).await;
    holder.await.unwrap().unwrap();
    loop {
        match raw.recv(5).await.expect("no ACK for the re-INVITE") {
            (Message::Request(r), _) if r.method == Method::Ack => {
                assert_eq!(
                    r.headers.cseq().unwrap().seq,
                    retry.headers.cseq().unwrap().seq
                );
                break;
            }
            _ => {}
        }
    }
    let call = std::sync::Arc::try_unwrap(call).unwrap();
    call.hangup();
    loop {
        match raw.recv(5).await.expect("no BYE") {
            (Message::Request(r), from) if r.method == Method::Bye => {
                let mut ok = Response::for_request(&r, 200);
                ok.reason = "OK".into();
                raw.send(&ok.to_bytes(), from).await;
                break;
            }
            _ => {}
        }
    }
    alice.ua.shutdown().await;
}

/// Reads from the raw peer until a response with `status` to CSeq `seq` arrives.
async fn raw_response(raw: &RawPeer, seq: u32) -> tandem_proto::msg::Response {
    loop {
        match raw.recv(5).await.expect("no response") {
            (tandem_proto::msg::Message::Response(r), _)
                if r.status >= 200 && r.headers.cseq().unwrap().seq == seq =>
            {
                return r;
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_offer_answered_in_ack_and_hostile_reoffers_refused() {
    use tandem_proto::sdp::{self, Codec, MediaOffer, SessionDescription};

    let mut bob = Phone::new("bob", 161).await;
    let raw = RawPeer::new().await;
    let media = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let media_port = media.local_addr().unwrap().port();
    let bob_addr = bob.ua.local_addr().unwrap();
    let me = raw.addr();
    let head = |method: &str, seq: u32, branch: &str, to_tag: &str| {
        format!(
            "{method} sip:bob@{bob_addr} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{branch}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:raw@{me}>;tag=rawfrom\r\nTo: <sip:bob@{bob_addr}>{to_tag}\r\n\
             Call-ID: late-offer@raw\r\nCSeq: {seq} {method}\r\nContact: <sip:raw@{me}>\r\n"
        )
    };
    // INVITE without SDP: Bob offers in the 200, we answer in the ACK.
    let invite = format!(
        "{}Content-Length: 0\r\n\r\n",
        head("INVITE", 1, "late1", "")
    );
    raw.send(invite.as_bytes(), bob_addr).await;
    let inc = bob.incoming().await;
    let mut call = inc
        .accept_with(bob.answer_options(tone(440.0)))
        .await
        .unwrap();
    let ok = raw_response(&raw, 1).await;
    assert_eq!(ok.status, 200);
    let tag = format!(";tag={}", ok.headers.to().unwrap().tag().unwrap());
    let offer = SessionDescription::parse(std::str::from_utf8(&ok.body).unwrap()).unwrap();
    let (answer, _) = sdp::answer_offer(
        &offer,
        &MediaOffer::new(vec![Codec::pcma()]),
        9,
        1,
        "127.0.0.1".parse().unwrap(),
        media_port,
        sdp::plain_only,
    )
    .unwrap();
    let answer = answer.to_string();
    let ack = format!(
        "{}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{answer}",
        head("ACK", 1, "late1ack", &tag),
        answer.len()
    );
    raw.send(ack.as_bytes(), bob_addr).await;
    let seen = answered(&mut call).await;
    let (codec, _) = media_started(&seen).expect("media started at the ACK");
    assert!(codec.eq_ignore_ascii_case("pcma"), "{codec}");
    let mut buf = [0u8; 2048];
    timeout(Duration::from_secs(3), media.recv_from(&mut buf))
        .await
        .expect("no RTP after the ACK")
        .unwrap();

    // Hostile re-offers: unparsable -> 400, nothing acceptable -> 488; the call goes on.
    let bad: [(&str, u16); 3] = [
        ("v=0\r\nm=audio 1 RTP/AVP 0\r\n", 400),
        (
            "v=0\r\no=- 9 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 70000 RTP/AVP 0\r\n",
            400,
        ),
        (
            "v=0\r\no=- 9 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 98\r\na=rtpmap:98 foo/8000\r\n",
            488,
        ),
    ];
    for (i, (body, status)) in bad.iter().enumerate() {
        let seq = 2 + u32::try_from(i).unwrap();
        let reinvite = format!(
            "{}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            head("INVITE", seq, &format!("bad{i}"), &tag),
            body.len()
        );
        raw.send(reinvite.as_bytes(), bob_addr).await;
        let r = raw_response(&raw, seq).await;
        assert_eq!(r.status, *status, "case {i}");
        let ack = format!(
            "{}Content-Length: 0\r\n\r\n",
            head("ACK", seq, &format!("bad{i}"), &tag)
        );
        raw.send(ack.as_bytes(), bob_addr).await;
    }
    // An UPDATE without SDP is a plain refresh.
    let update = format!(
        "{}Content-Length: 0\r\n\r\n",
        head("UPDATE", 10, "upd", &tag)
    );
    raw.send(update.as_bytes(), bob_addr).await;
    assert_eq!(raw_response(&raw, 10).await.status, 200);
    // INFO with a DTMF relay body is reported as a digit.
    let info_body = "Signal=9\r\nDuration=160\r\n";
    let info = format!(
        "{}Content-Type: application/dtmf-relay\r\nContent-Length: {}\r\n\r\n{info_body}",
        head("INFO", 11, "info", &tag),
        info_body.len()
    );
    raw.send(info.as_bytes(), bob_addr).await;
    assert_eq!(raw_response(&raw, 11).await.status, 200);
    common::wait_for(Duration::from_secs(15), &mut call, |e| {
        *e == CallEvent::Dtmf('9')
    })
    .await;
    // Still talking.
    timeout(Duration::from_secs(3), media.recv_from(&mut buf))
        .await
        .expect("RTP stopped")
        .unwrap();
    let bye = format!("{}Content-Length: 0\r\n\r\n", head("BYE", 12, "bye", &tag));
    raw.send(bye.as_bytes(), bob_addr).await;
    assert_eq!(raw_response(&raw, 12).await.status, 200);
    assert_eq!(
        ended(&mut call).await,
        CallEvent::Ended {
            by: EndedBy::Remote,
            reason: EndReason::Bye
        }
    );
    bob.ua.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_can_be_refused() {
    let config = UaConfig {
        accept_transfers: false,
        ..loopback_ua_config(171)
    };
    let (ua, events) = UserAgent::new(config).await.unwrap();
    let alice = Phone {
        ua,
        events,
        account: Account::new("alice", "127.0.0.1"),
    };
    let mut bob = Phone::new("bob", 172).await;
    let carol = Phone::new("carol", 173).await;
    let (out, mut inn) = connect(&alice, &mut bob, tone(440.0), tone(880.0)).await;
    let err = inn.transfer_blind(carol.uri()).await.unwrap_err();
    assert_eq!(err.rejection(), Some(Rejection::Declined));
    // Refused cleanly: a new transfer attempt is possible and the call goes on.
    assert!(inn.transfer_blind(carol.uri()).await.is_err());
    out.send_dtmf("3").await.unwrap();
    common::wait_for(Duration::from_secs(15), &mut inn, |e| {
        *e == CallEvent::Dtmf('3')
    })
    .await;
    drop(out);
    ended(&mut inn).await;
    for p in [&alice, &bob, &carol] {
        p.ua.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codec_preferences_pick_the_send_codec() {
    let names: Vec<String> = tandem_client_core::supported_codecs()
        .iter()
        .filter(|c| !c.is_telephone_event())
        .map(|c| c.name.to_ascii_lowercase())
        .collect();
    assert_eq!(names.first().map(String::as_str), Some("opus"), "{names:?}");
    for wanted in names.clone() {
        let mut alice = Phone::new("alice", 181).await;
        let mut bob = Phone::new("bob", 182).await;
        alice.account.codecs = vec![wanted.clone()];
        let mut out = alice.call(&bob, tone(440.0)).await;
        let mut inn = bob
            .incoming()
            .await
            .accept_with(bob.answer_options(tone(880.0)))
            .await
            .unwrap();
        let seen = answered(&mut out).await;
        let (codec, _) = media_started(&seen).unwrap();
        assert!(codec.eq_ignore_ascii_case(&wanted), "{codec} vs {wanted}");
        answered(&mut inn).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            inn.quality().packets_received > 5,
            "{wanted}: {:?}",
            inn.quality()
        );
        assert!(
            out.quality().packets_received > 5,
            "{wanted}: {:?}",
            out.quality()
        );
        drop(out);
        ended(&mut inn).await;
        alice.ua.shutdown().await;
        bob.ua.shutdown().await;
    }
    // Default preference: Opus between two Tandem phones.
    let alice = Phone::new("alice", 183).await;
    let mut bob = Phone::new("bob", 184).await;
    let mut out = alice.call(&bob, tone(440.0)).await;
    let _inn = bob.incoming().await.accept().await.unwrap();
    let seen = answered(&mut out).await;
    assert_eq!(media_started(&seen).unwrap().0, "opus");
    // An unknown codec name is a configuration error.
    let mut odd = Account::new("alice", "127.0.0.1");
    odd.codecs = vec!["speex".into()];
    let err = alice
        .ua
        .call(&odd, bob.uri(), CallOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, UaError::Config(_)), "{err:?}");
    drop(out);
    alice.ua.shutdown().await;
    bob.ua.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_tone_and_device_switch_mid_call() {
    use tandem_media::tone::analyze;
    use tandem_media::wav::read_wav;

    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.wav");
    let second = dir.path().join("second.wav");
    let alice = Phone::new("alice", 191).await;
    let mut bob = Phone::new("bob", 192).await;
    let record = MediaOptions {
        playback: DeviceSpec::File(first.clone()),
        ..tone(880.0)
    };
    let (out, mut inn) = connect(&alice, &mut bob, tone(440.0), record).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Alice switches to a 1 kHz source, Bob records into a second file.
    out.switch_devices(Some(DeviceSpec::Tone(1000.0)), None)
        .await
        .unwrap();
    inn.switch_devices(None, Some(DeviceSpec::File(second.clone())))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(out);
    // `Ended` comes after the media stopped: the files are complete.
    ended(&mut inn).await;
    for (path, hz) in [(&first, 440.0f32), (&second, 1000.0)] {
        let (rate, pcm) = read_wav(path).unwrap();
        assert!(
            pcm.len() > rate as usize / 2,
            "{path:?}: {} samples",
            pcm.len()
        );
        // Skip the start (jitter buffer fill, the switch-over).
        let tail = &pcm[pcm.len() / 3..];
        let a = analyze(tail, rate);
        assert!((a.dominant_hz - hz).abs() < hz * 0.03, "{path:?}: {a:?}");
        assert!(a.snr_db > 15.0, "{path:?}: {a:?}");
    }
    alice.ua.shutdown().await;
    bob.ua.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_dialog_refer_notify_and_unknown_replaces_are_refused() {
    let bob = Phone::new("bob", 201).await;
    let bob_addr = bob.ua.local_addr().unwrap();
    let raw = RawPeer::new().await;
    let me = raw.addr();
    let request = |method: &str, extra: &str, seq: u32| {
        format!(
            "{method} sip:bob@{bob_addr} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKood{seq}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:raw@{me}>;tag=r{seq}\r\nTo: <sip:bob@{bob_addr}>\r\n\
             Call-ID: ood{seq}@raw\r\nCSeq: {seq} {method}\r\nContact: <sip:raw@{me}>\r\n{extra}\
             Content-Length: 0\r\n\r\n"
        )
    };
    let refer_to = format!("Refer-To: <sip:carol@{me}>\r\n");
    let cases: [(&str, &str, u16); 4] = [
        // Out-of-dialog REFER: refused.
        ("REFER", &refer_to, 403),
        // NOTIFY for no subscription of ours.
        (
            "NOTIFY",
            "Event: refer\r\nSubscription-State: active\r\n",
            481,
        ),
        // An INVITE with Replaces naming no dialog of ours: 481 (RFC 3891 §3); malformed: 400.
        (
            "INVITE",
            "Replaces: nosuch@x;to-tag=a;from-tag=b\r\nRequire: replaces\r\n",
            481,
        ),
        ("INVITE", "Replaces: nosuch@x;to-tag=a\r\n", 400),
    ];
    for (seq, (method, extra, status)) in (1u32..).zip(cases) {
        raw.send(request(method, extra, seq).as_bytes(), bob_addr)
            .await;
        assert_eq!(
            raw_response(&raw, seq).await.status,
            status,
            "{method} with {extra:?}"
        );
    }
    bob.ua.shutdown().await;
}
