//! Calls between the UA and the in-test peer over loopback UDP and TCP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod peer;

use std::time::Duration;

use peer::{Peer, PeerConfig, PeerEvent, UasMode, fast_tx, final_status};
use tandem_client_core::types::{DnsConfig, Transport};
use tandem_client_core::{
    Account, Call, CallEvent, CallOptions, EndReason, EndedBy, IncomingCall, UaConfig, UaError,
    UaEvent, UaEvents, UserAgent,
};
use tandem_net::Target;
use tandem_proto::auth::Algorithm;
use tandem_proto::msg::{HeaderName, Method, Request};
use tandem_proto::sdp::SessionDescription;
use tokio::time::timeout;

async fn ua(transport: Transport) -> (UserAgent, UaEvents) {
    let config = UaConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        transport,
        dns: DnsConfig::Disabled,
        tx: fast_tx(),
        seed: 1234,
        ..UaConfig::default()
    };
    UserAgent::new(config).await.unwrap()
}

fn account(peer: &Peer) -> Account {
    let mut a = Account::new("alice", "tandem.test");
    a.password = Some("secret".into());
    a.proxy = Some(peer.uri(None));
    a.transport = peer.transport;
    a
}

fn no_auth() -> PeerConfig {
    PeerConfig {
        algorithms: vec![],
        ..PeerConfig::default()
    }
}

/// The next call event, ICE notices (path, peer without ICE) skipped: these peers do no ICE.
async fn next(call: &mut Call) -> CallEvent {
    loop {
        let ev = timeout(Duration::from_secs(10), call.next_event())
            .await
            .expect("timed out waiting for a call event")
            .expect("call events ended");
        if !matches!(
            ev,
            CallEvent::IceOff(_)
                | CallEvent::IcePath(_)
                | CallEvent::IceRestart(_)
                | CallEvent::IceFailed(_)
        ) {
            return ev;
        }
    }
}

/// The next event that is not `MediaStarted`.
async fn next_after_media(call: &mut Call) -> CallEvent {
    loop {
        match next(call).await {
            CallEvent::MediaStarted { .. } => continue,
            other => return other,
        }
    }
}

/// Events until `Answered` (or a final event), skipping Trying/Ringing but recording them.
async fn until_settled(call: &mut Call) -> (Vec<CallEvent>, CallEvent) {
    let mut seen = Vec::new();
    loop {
        let ev = next(call).await;
        match ev {
            CallEvent::Trying | CallEvent::Ringing { .. } | CallEvent::MediaStarted { .. } => {
                seen.push(ev)
            }
            other => return (seen, other),
        }
    }
}

async fn outgoing_call(transport: Transport, peer_config: PeerConfig, local_hangup: bool) {
    let mut peer = Peer::start(transport, peer_config).await;
    let (ua, _events) = ua(transport).await;
    let mut call = ua
        .call(
            &account(&peer),
            peer.uri(Some("bob")),
            CallOptions::default(),
        )
        .await
        .unwrap();
    let (seen, settled) = until_settled(&mut call).await;
    assert!(
        seen.iter()
            .any(|e| matches!(e, CallEvent::Ringing { status: 180, .. })),
        "{seen:?}"
    );
    assert_eq!(settled, CallEvent::Answered { status: 200 });

    // The INVITE carried a real offer: our bound RTP port, PCMU/PCMA/telephone-event.
    let invite = match peer
        .wait_for(5, |e| matches!(e, PeerEvent::Invite { .. }))
        .await
    {
        PeerEvent::Invite { request } => request,
        _ => unreachable!(),
    };
    let offer = SessionDescription::parse(std::str::from_utf8(&invite.body).unwrap()).unwrap();
    let media = call.media();
    assert_eq!(offer.media[0].port, media.local_rtp.port());
    assert_eq!(call.rtp_socket().local_addr().unwrap(), media.local_rtp);
    let offered: Vec<String> = tandem_client_core::supported_codecs()
        .iter()
        .map(|c| c.payload_type.to_string())
        .collect();
    assert_eq!(offer.media[0].formats, offered);
    let negotiated = media.negotiated.expect("negotiated media");
    assert_eq!(
        negotiated.remote_rtp,
        Some("127.0.0.1:41000".parse().unwrap())
    );
    peer.wait_for(5, |e| matches!(e, PeerEvent::Ack { .. }))
        .await;

    if local_hangup {
        call.hangup();
        assert_eq!(
            next(&mut call).await,
            CallEvent::Ended {
                by: EndedBy::Local,
                reason: EndReason::Bye
            }
        );
        match peer
            .wait_for(5, |e| matches!(e, PeerEvent::Bye { .. }))
            .await
        {
            PeerEvent::Bye { request } => {
                assert_eq!(
                    request.headers.call_id().unwrap(),
                    invite.headers.call_id().unwrap()
                );
                assert_eq!(request.headers.to().unwrap().tag(), Some("peer-uas"));
            }
            _ => unreachable!(),
        }
    } else {
        assert_eq!(
            next(&mut call).await,
            CallEvent::Ended {
                by: EndedBy::Remote,
                reason: EndReason::Bye
            }
        );
    }
    assert!(call.next_event().await.is_none());
    ua.shutdown().await;
}

#[tokio::test]
async fn call_and_local_bye_udp() {
    outgoing_call(Transport::Udp, no_auth(), true).await;
}

#[tokio::test]
async fn call_and_local_bye_tcp() {
    outgoing_call(Transport::Tcp, no_auth(), true).await;
}

#[tokio::test]
async fn call_with_digest_and_remote_bye_udp() {
    let config = PeerConfig {
        algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
        bye_after: Some(Duration::from_millis(300)),
        ..PeerConfig::default()
    };
    outgoing_call(Transport::Udp, config, false).await;
}

#[tokio::test]
async fn call_remote_bye_tcp() {
    let config = PeerConfig {
        bye_after: Some(Duration::from_millis(300)),
        ..no_auth()
    };
    outgoing_call(Transport::Tcp, config, false).await;
}

#[tokio::test]
async fn register_and_call_over_tls() {
    let (mut peer, tls) = Peer::start_tls(PeerConfig::default()).await;
    let config = UaConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        transport: Transport::Tls,
        dns: DnsConfig::Disabled,
        tx: fast_tx(),
        tls_client: Some(tls),
        seed: 99,
        ..UaConfig::default()
    };
    let (ua, _events) = UserAgent::new(config).await.unwrap();
    let acct = account(&peer);
    let reg = ua.register(&acct).await.unwrap();
    let (bound, _) = peer.binding("sip:alice@tandem.test").unwrap();
    assert_eq!(bound.transport_param(), Some(Transport::Tls));

    let mut call = ua
        .call(&acct, peer.uri(Some("bob")), CallOptions::default())
        .await
        .unwrap();
    let (_, settled) = until_settled(&mut call).await;
    assert_eq!(settled, CallEvent::Answered { status: 200 });
    peer.wait_for(5, |e| matches!(e, PeerEvent::Ack { .. }))
        .await;
    call.hangup();
    assert_eq!(
        next(&mut call).await,
        CallEvent::Ended {
            by: EndedBy::Local,
            reason: EndReason::Bye
        }
    );
    peer.wait_for(5, |e| matches!(e, PeerEvent::Bye { .. }))
        .await;
    reg.unregister().await.unwrap();
    assert!(peer.binding("sip:alice@tandem.test").is_none());
    ua.shutdown().await;
}

#[tokio::test]
async fn tls_with_an_untrusted_certificate_fails() {
    let (peer, _trusted) = Peer::start_tls(PeerConfig::default()).await;
    let (_, other) = Peer::start_tls(PeerConfig::default()).await;
    let config = UaConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        transport: Transport::Tls,
        dns: DnsConfig::Disabled,
        tx: fast_tx(),
        tls_client: Some(other),
        seed: 98,
        ..UaConfig::default()
    };
    let (ua, _events) = UserAgent::new(config).await.unwrap();
    let err = ua.register(&account(&peer)).await.unwrap_err();
    assert!(
        matches!(err, UaError::Network(_) | UaError::Timeout),
        "{err:?}"
    );
    ua.shutdown().await;
}

#[tokio::test]
async fn invite_auth_uses_new_cseq_same_call_id() {
    let mut peer = Peer::start(Transport::Udp, PeerConfig::default()).await;
    let (ua, _events) = ua(Transport::Udp).await;
    let mut call = ua
        .call(
            &account(&peer),
            peer.uri(Some("bob")),
            CallOptions::default(),
        )
        .await
        .unwrap();
    let (_, settled) = until_settled(&mut call).await;
    assert_eq!(settled, CallEvent::Answered { status: 200 });
    let mut invites = Vec::new();
    for _ in 0..2 {
        if let PeerEvent::Invite { request } = peer
            .wait_for(5, |e| matches!(e, PeerEvent::Invite { .. }))
            .await
        {
            invites.push(request);
        }
    }
    let (a, b) = (&invites[0], &invites[1]);
    assert_eq!(a.headers.call_id().unwrap(), b.headers.call_id().unwrap());
    assert_eq!(
        a.headers.from().unwrap().tag(),
        b.headers.from().unwrap().tag()
    );
    assert_eq!(
        a.headers.cseq().unwrap().seq + 1,
        b.headers.cseq().unwrap().seq
    );
    assert!(a.headers.get(&HeaderName::Authorization).is_none());
    assert!(b.headers.get(&HeaderName::Authorization).is_some());
    call.hangup();
    assert!(matches!(next(&mut call).await, CallEvent::Ended { .. }));
    ua.shutdown().await;
}

#[tokio::test]
async fn call_rejected_with_busy() {
    let peer = Peer::start(
        Transport::Udp,
        PeerConfig {
            uas: UasMode::Reject(486),
            ..no_auth()
        },
    )
    .await;
    let (ua, _events) = ua(Transport::Udp).await;
    let mut call = ua
        .call(
            &account(&peer),
            peer.uri(Some("bob")),
            CallOptions::default(),
        )
        .await
        .unwrap();
    let (_, settled) = until_settled(&mut call).await;
    match settled {
        CallEvent::Failed(UaError::Rejected { status, reason }) => {
            assert_eq!(status, 486);
            assert_eq!(reason, "Busy Here");
        }
        other => panic!("{other:?}"),
    }
    ua.shutdown().await;
}

#[tokio::test]
async fn invite_with_wrong_password_is_auth_failed() {
    let peer = Peer::start(Transport::Udp, PeerConfig::default()).await;
    let (ua, _events) = ua(Transport::Udp).await;
    let mut acct = account(&peer);
    acct.password = Some("nope".into());
    let mut call = ua
        .call(&acct, peer.uri(Some("bob")), CallOptions::default())
        .await
        .unwrap();
    let (_, settled) = until_settled(&mut call).await;
    assert!(
        matches!(settled, CallEvent::Failed(UaError::AuthFailed { .. })),
        "{settled:?}"
    );
    ua.shutdown().await;
}

#[tokio::test]
async fn no_answer_timeout_cancels() {
    let mut peer = Peer::start(
        Transport::Udp,
        PeerConfig {
            uas: UasMode::RingForever,
            ..no_auth()
        },
    )
    .await;
    let (ua, _events) = ua(Transport::Udp).await;
    let options = CallOptions {
        timeout: Some(Duration::from_millis(600)),
        ..CallOptions::default()
    };
    let mut call = ua
        .call(&account(&peer), peer.uri(Some("bob")), options)
        .await
        .unwrap();
    let (_, settled) = until_settled(&mut call).await;
    assert_eq!(
        settled,
        CallEvent::Ended {
            by: EndedBy::Local,
            reason: EndReason::Timeout
        }
    );
    peer.wait_for(5, |e| matches!(e, PeerEvent::Cancel { .. }))
        .await;
    ua.shutdown().await;
}

#[tokio::test]
async fn hangup_before_answer_cancels_tcp() {
    let mut peer = Peer::start(
        Transport::Tcp,
        PeerConfig {
            uas: UasMode::RingForever,
            ..no_auth()
        },
    )
    .await;
    let (ua, _events) = ua(Transport::Tcp).await;
    let mut call = ua
        .call(
            &account(&peer),
            peer.uri(Some("bob")),
            CallOptions::default(),
        )
        .await
        .unwrap();
    loop {
        if let CallEvent::Ringing { .. } = next(&mut call).await {
            break;
        }
    }
    call.hangup();
    assert_eq!(
        next(&mut call).await,
        CallEvent::Ended {
            by: EndedBy::Local,
            reason: EndReason::Cancel
        }
    );
    peer.wait_for(5, |e| matches!(e, PeerEvent::Cancel { .. }))
        .await;
    ua.shutdown().await;
}

async fn incoming(events: &mut UaEvents) -> IncomingCall {
    match timeout(Duration::from_secs(10), events.next())
        .await
        .expect("no incoming call")
        .expect("UA stopped")
    {
        UaEvent::IncomingCall(c) => c,
        other => panic!("{other:?}"),
    }
}

async fn incoming_call(transport: Transport, ua_hangs_up: bool) {
    let mut peer = Peer::start(transport, no_auth()).await;
    let (ua, mut events) = ua(transport).await;
    let target = ua.contact_uri(Some("alice"));
    let caller = peer.call(&target);
    let answerer = async {
        let inc = incoming(&mut events).await;
        assert!(inc.from().unwrap().to_string().starts_with("sip:bob@"));
        inc.ring().unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        inc.accept().await.unwrap()
    };
    let (pcall, mut call) = tokio::join!(caller, answerer);
    assert_eq!(pcall.final_response.status, 200);
    assert!(pcall.provisional.contains(&180), "{:?}", pcall.provisional);
    let answer =
        SessionDescription::parse(std::str::from_utf8(&pcall.final_response.body).unwrap())
            .unwrap();
    assert_eq!(answer.media[0].port, call.media().local_rtp.port());
    assert_eq!(answer.media[0].formats, vec!["0"]);
    assert_eq!(
        next_after_media(&mut call).await,
        CallEvent::Answered { status: 200 }
    );

    if ua_hangs_up {
        call.hangup();
        assert_eq!(
            next(&mut call).await,
            CallEvent::Ended {
                by: EndedBy::Local,
                reason: EndReason::Bye
            }
        );
        peer.wait_for(5, |e| matches!(e, PeerEvent::Bye { .. }))
            .await;
    } else {
        assert_eq!(peer.bye_as_uac(&pcall).await, 200);
        assert_eq!(
            next(&mut call).await,
            CallEvent::Ended {
                by: EndedBy::Remote,
                reason: EndReason::Bye
            }
        );
        // A second BYE for the ended dialog: 481.
        assert_eq!(peer.bye_as_uac(&pcall).await, 481);
    }
    ua.shutdown().await;
}

#[tokio::test]
async fn incoming_call_answered_caller_hangs_up_udp() {
    incoming_call(Transport::Udp, false).await;
}

#[tokio::test]
async fn incoming_call_answered_callee_hangs_up_tcp() {
    incoming_call(Transport::Tcp, true).await;
}

#[tokio::test]
async fn incoming_call_answered_caller_hangs_up_tcp() {
    incoming_call(Transport::Tcp, false).await;
}

#[tokio::test]
async fn incoming_call_cancelled_by_caller() {
    let peer = Peer::start(Transport::Udp, no_auth()).await;
    let (ua, mut events) = ua(Transport::Udp).await;
    let target = ua.contact_uri(Some("alice"));
    let caller = peer.call_and_cancel(&target, Duration::from_millis(50));
    let answerer = async {
        let mut inc = incoming(&mut events).await;
        inc.ring().unwrap();
        timeout(Duration::from_secs(5), inc.cancelled())
            .await
            .expect("CANCEL not seen");
        assert!(inc.is_cancelled());
        assert!(matches!(inc.accept().await, Err(UaError::Cancelled)));
    };
    let (status, ()) = tokio::join!(caller, answerer);
    assert_eq!(status, 487);
    ua.shutdown().await;
}

#[tokio::test]
async fn incoming_call_rejected() {
    let peer = Peer::start(Transport::Udp, no_auth()).await;
    let (ua, mut events) = ua(Transport::Udp).await;
    let target = ua.contact_uri(Some("alice"));
    let answerer = async {
        let inc = incoming(&mut events).await;
        inc.reject(603).unwrap();
    };
    let (pcall, ()) = tokio::join!(peer.call(&target), answerer);
    assert_eq!(pcall.final_response.status, 603);
    ua.shutdown().await;
}

#[tokio::test]
async fn unknown_dialog_gets_481_and_options_200() {
    let peer = Peer::start(Transport::Udp, no_auth()).await;
    let (ua, _events) = ua(Transport::Udp).await;
    let target = ua.contact_uri(Some("alice"));
    let mut bye = Request::new(Method::Bye, target.clone());
    bye.headers.push(HeaderName::MaxForwards, "70");
    bye.headers
        .push(HeaderName::From, format!("<sip:bob@{}>;tag=x1", peer.addr));
    bye.headers
        .push(HeaderName::To, format!("<{target}>;tag=nosuchtag"));
    bye.headers.push(HeaderName::CallId, "no-such-call");
    bye.headers.push(HeaderName::CSeq, "7 BYE");
    assert_eq!(
        final_status(&peer.endpoint, bye, Target::Uri(target.clone())).await,
        481
    );

    let mut opt = Request::new(Method::Options, target.clone());
    opt.headers.push(HeaderName::MaxForwards, "70");
    opt.headers
        .push(HeaderName::From, format!("<sip:bob@{}>;tag=x2", peer.addr));
    opt.headers.push(HeaderName::To, format!("<{target}>"));
    opt.headers.push(HeaderName::CallId, "options-probe");
    opt.headers.push(HeaderName::CSeq, "1 OPTIONS");
    assert_eq!(
        final_status(&peer.endpoint, opt, Target::Uri(target)).await,
        200
    );
    ua.shutdown().await;
}

#[tokio::test]
async fn unsupported_extension_and_media_type_are_refused() {
    let peer = Peer::start(Transport::Udp, no_auth()).await;
    let (ua, mut events) = ua(Transport::Udp).await;
    let target = ua.contact_uri(Some("alice"));
    let invite = |extra: &[(HeaderName, &str)], body: &'static str| {
        let mut r = Request::new(Method::Invite, target.clone());
        r.headers.push(HeaderName::MaxForwards, "70");
        r.headers.push(
            HeaderName::From,
            format!("<sip:bob@{}>;tag=t{}", peer.addr, extra.len()),
        );
        r.headers.push(HeaderName::To, format!("<{target}>"));
        r.headers.push(
            HeaderName::CallId,
            format!("ext-{}-{}", extra.len(), body.len()),
        );
        r.headers.push(HeaderName::CSeq, "1 INVITE");
        for (name, value) in extra {
            r.headers.push(name.clone(), value.to_string());
        }
        r.body = bytes::Bytes::from_static(body.as_bytes());
        r
    };
    let req = invite(&[(HeaderName::Require, "100rel")], "");
    assert_eq!(
        final_status(&peer.endpoint, req, Target::Uri(target.clone())).await,
        420
    );
    let req = invite(&[(HeaderName::ContentType, "text/plain")], "hello");
    assert_eq!(
        final_status(&peer.endpoint, req, Target::Uri(target.clone())).await,
        415
    );
    let mut odd = invite(&[], "");
    odd.uri = tandem_proto::msg::Uri::parse("urn:service:sos").unwrap();
    assert_eq!(
        final_status(&peer.endpoint, odd, Target::Uri(target.clone())).await,
        416
    );
    // None reached the application.
    assert!(
        timeout(Duration::from_millis(200), events.next())
            .await
            .is_err()
    );
    ua.shutdown().await;
}

#[tokio::test]
async fn merged_invite_gets_482() {
    let peer = Peer::start(Transport::Udp, no_auth()).await;
    let (ua, mut events) = ua(Transport::Udp).await;
    let target = ua.contact_uri(Some("alice"));
    let mut r = Request::new(Method::Invite, target.clone());
    r.headers.push(HeaderName::MaxForwards, "70");
    r.headers.push(
        HeaderName::From,
        format!("<sip:bob@{}>;tag=fork1", peer.addr),
    );
    r.headers.push(HeaderName::To, format!("<{target}>"));
    r.headers.push(HeaderName::CallId, "forked-call");
    r.headers.push(HeaderName::CSeq, "1 INVITE");
    // The first copy reaches the application and stays unanswered.
    let mut first = peer
        .endpoint
        .request(r.clone(), Target::Uri(target.clone()))
        .await
        .unwrap();
    let inc = incoming(&mut events).await;
    inc.ring().unwrap();
    // The second copy (another branch, as after a forking proxy) is a merged request.
    assert_eq!(
        final_status(&peer.endpoint, r, Target::Uri(target)).await,
        482
    );
    inc.reject(486).unwrap();
    loop {
        match first.next().await {
            Some(tandem_net::TxOutcome::Final(resp)) => {
                assert_eq!(resp.status, 486);
                break;
            }
            Some(_) => {}
            None => panic!("no final response"),
        }
    }
    ua.shutdown().await;
}

#[tokio::test]
async fn uas_retransmits_2xx_until_ack_then_gives_up_with_bye() {
    let mut peer = Peer::start(Transport::Udp, no_auth()).await;
    let (ua, mut events) = ua(Transport::Udp).await;
    let target = ua.contact_uri(Some("alice"));
    let mut r = Request::new(Method::Invite, target.clone());
    r.headers.push(HeaderName::MaxForwards, "70");
    r.headers.push(
        HeaderName::From,
        format!("<sip:bob@{}>;tag=noack", peer.addr),
    );
    r.headers.push(HeaderName::To, format!("<{target}>"));
    r.headers.push(HeaderName::CallId, "no-ack-call");
    r.headers.push(HeaderName::CSeq, "1 INVITE");
    r.headers.push(
        HeaderName::Contact,
        format!(
            "<{}>",
            peer.endpoint.contact_uri(Transport::Udp, Some("bob"))
        ),
    );
    let mut tx = peer.endpoint.request(r, Target::Uri(target)).await.unwrap();
    let mut call = incoming(&mut events).await.accept().await.unwrap();
    // Never ACK: count the 2xx copies (the first and its retransmissions).
    let mut copies = 0;
    let counting = async {
        while let Some(outcome) = tx.next().await {
            if let tandem_net::TxOutcome::Final(resp) = outcome {
                assert_eq!(resp.status, 200);
                copies += 1;
            }
        }
    };
    let _ = timeout(Duration::from_secs(3), counting).await;
    assert!(copies >= 3, "only {copies} copies of the 2xx");
    // After 64*T1 without ACK the UA ends the session with a BYE.
    assert_eq!(
        next(&mut call).await,
        CallEvent::Ended {
            by: EndedBy::Local,
            reason: EndReason::Timeout
        }
    );
    peer.wait_for(5, |e| matches!(e, PeerEvent::Bye { .. }))
        .await;
    ua.shutdown().await;
}

#[tokio::test]
async fn uac_re_acks_retransmitted_2xx() {
    let mut peer = Peer::start(
        Transport::Udp,
        PeerConfig {
            retransmit_ok: 3,
            ..no_auth()
        },
    )
    .await;
    let (ua, _events) = ua(Transport::Udp).await;
    let mut call = ua
        .call(
            &account(&peer),
            peer.uri(Some("bob")),
            CallOptions::default(),
        )
        .await
        .unwrap();
    let (_, settled) = until_settled(&mut call).await;
    assert_eq!(settled, CallEvent::Answered { status: 200 });
    let mut acks = Vec::new();
    for _ in 0..4 {
        if let PeerEvent::Ack { request } = peer
            .wait_for(5, |e| matches!(e, PeerEvent::Ack { .. }))
            .await
        {
            acks.push(request);
        }
    }
    // The same ACK each time (same branch: it is a retransmission of one request).
    let branch = |r: &Request| r.headers.top_via().unwrap().branch().unwrap().to_string();
    assert!(acks.iter().all(|a| branch(a) == branch(&acks[0])));
    call.hangup();
    assert!(matches!(next(&mut call).await, CallEvent::Ended { .. }));
    ua.shutdown().await;
}

#[tokio::test]
async fn uac_follows_record_route_for_ack_and_bye() {
    let mut peer = Peer::start(
        Transport::Udp,
        PeerConfig {
            record_route: true,
            ..no_auth()
        },
    )
    .await;
    let (ua, _events) = ua(Transport::Udp).await;
    let mut call = ua
        .call(
            &account(&peer),
            peer.uri(Some("bob")),
            CallOptions::default(),
        )
        .await
        .unwrap();
    let (_, settled) = until_settled(&mut call).await;
    assert_eq!(settled, CallEvent::Answered { status: 200 });
    let ack = match peer
        .wait_for(5, |e| matches!(e, PeerEvent::Ack { .. }))
        .await
    {
        PeerEvent::Ack { request } => request,
        _ => unreachable!(),
    };
    // Request-URI: the remote target (dead port); Route: the recorded route.
    assert_eq!(ack.uri.port, Some(peer::DEAD_PORT));
    assert_eq!(ack.headers.routes().unwrap().len(), 1);
    call.hangup();
    assert_eq!(
        next(&mut call).await,
        CallEvent::Ended {
            by: EndedBy::Local,
            reason: EndReason::Bye
        }
    );
    match peer
        .wait_for(5, |e| matches!(e, PeerEvent::Bye { .. }))
        .await
    {
        PeerEvent::Bye { request } => {
            assert_eq!(request.uri.port, Some(peer::DEAD_PORT));
            assert_eq!(request.headers.routes().unwrap().len(), 1);
        }
        _ => unreachable!(),
    }
    ua.shutdown().await;
}

#[tokio::test]
async fn uas_follows_record_route_for_bye() {
    let mut peer = Peer::start(Transport::Tcp, no_auth()).await;
    let (ua, mut events) = ua(Transport::Tcp).await;
    let target = ua.contact_uri(Some("alice"));
    let answerer = async {
        let inc = incoming(&mut events).await;
        inc.accept().await.unwrap()
    };
    let (pcall, mut call) = tokio::join!(peer.call_via(&target, true), answerer);
    assert_eq!(pcall.final_response.status, 200);
    // The UA copied the Record-Route into its 2xx.
    assert_eq!(
        pcall.final_response.headers.record_routes().unwrap().len(),
        1
    );
    assert_eq!(
        next_after_media(&mut call).await,
        CallEvent::Answered { status: 200 }
    );
    call.hangup();
    assert_eq!(
        next(&mut call).await,
        CallEvent::Ended {
            by: EndedBy::Local,
            reason: EndReason::Bye
        }
    );
    match peer
        .wait_for(5, |e| matches!(e, PeerEvent::Bye { .. }))
        .await
    {
        PeerEvent::Bye { request } => {
            assert_eq!(request.uri.port, Some(peer::DEAD_PORT));
            assert_eq!(request.headers.routes().unwrap().len(), 1);
        }
        _ => unreachable!(),
    }
    ua.shutdown().await;
}
