//! The lab's media relay end to end: two hand-written UDP "phones" on loopback whose SDP
//! announces private addresses (as phones behind a NAT do) call each other through the lab;
//! the proxy anchors the call, rewrites both SDPs, and RTP-like packets pass both ways through
//! the relay. Latching, NAT rebinding, IPv6 <-> IPv4, forks, ICE passthrough and teardown
//! (BYE, failure, inactivity) are checked on the relay's sockets and counters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sip_util;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use sip_util::{DOMAIN, Lab, Ua, answer, callee_request, eventually, rand_token};
use tandem_labserver::media_relay::{RelayMode, RelayStats};
use tandem_proto::Transport;
use tandem_proto::msg::{HeaderName, Message, Method, Request, Response};
use tandem_proto::sdp::SessionDescription;
use tokio::net::UdpSocket;

/// An SDP offer/answer for one audio stream at `ip:port`, with ICE attributes when `ice`.
fn sdp(ip: IpAddr, port: u16, ice: bool) -> String {
    let ty = if ip.is_ipv6() { "IP6" } else { "IP4" };
    let mut s = format!(
        "v=0\r\no=- 7 7 IN {ty} {ip}\r\ns=-\r\nc=IN {ty} {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n"
    );
    if ice {
        s.push_str(&format!(
            "a=ice-ufrag:Fx2r\r\na=ice-pwd:a7Qb5kPzW9sTt1vY3uX8mN0q\r\n\
             a=candidate:1 1 UDP 2130706431 {ip} {port} typ host\r\n"
        ));
        if ip.is_ipv4() {
            // What a STUN server told the NATed phone (the tests' phones send from loopback).
            s.push_str(&format!(
                "a=candidate:2 1 UDP 1694498815 127.0.0.1 {port} typ srflx raddr {ip} rport {port}\r\n"
            ));
        }
        s.push_str("a=end-of-candidates\r\n");
    }
    s.push_str("a=sendrecv\r\n");
    s
}

fn private_v4() -> IpAddr {
    "192.168.77.10".parse().unwrap()
}

/// The relay's counters (the lab runs a relay in these tests).
fn stats(lab: &Lab) -> RelayStats {
    lab.server
        .as_ref()
        .unwrap()
        .media_relay()
        .expect("relay running")
        .stats()
}

fn parse_sdp(body: &Bytes) -> SessionDescription {
    SessionDescription::parse_bytes(body).unwrap()
}

/// Where an SDP says to send its first stream.
fn media_addr(body: &Bytes) -> SocketAddr {
    parse_sdp(body).media_remote_addr(0).unwrap()
}

/// Sends an INVITE with `body` to `target` and answers the proxy's 407; returns the INVITE
/// actually sent (with credentials).
async fn invite_with(ua: &mut Ua, target: &str, body: &str) -> Request {
    ua.call_id = format!("{}@test", rand_token());
    ua.tag = rand_token();
    ua.cseq += 1;
    let text = format!(
        "INVITE {target} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: <sip:{}@{DOMAIN}>;tag={}\r\nTo: <{target}>\r\nCall-ID: {}\r\nCSeq: {} INVITE\r\nContact: <{}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        ua.via(),
        ua.user,
        ua.tag,
        ua.call_id,
        ua.cseq,
        ua.contact(),
        body.len()
    );
    let inv = Request::parse(Bytes::from(text)).unwrap();
    ua.send(&Message::Request(inv.clone())).await;
    let r = ua.response().await;
    assert_eq!(
        r.status, 407,
        "expected a proxy challenge, got {}",
        r.status
    );
    ua.ack_non_2xx(&inv, &r).await;
    let inv = ua.authorize(&inv, &r, None);
    ua.send(&Message::Request(inv.clone())).await;
    inv
}

/// A response from a phone with an SDP body.
fn answer_with(request: &Request, status: u16, tag: &str, contact: &str, body: &str) -> Response {
    let mut r = answer(request, status, tag, contact);
    r.headers.push(HeaderName::ContentType, "application/sdp");
    r.body = Bytes::from(body.to_owned());
    r
}

/// The next INVITE a phone receives.
async fn incoming_invite(ua: &Ua) -> Request {
    loop {
        let (r, _) = ua.request(5.0).await;
        if r.method == Method::Invite {
            return r;
        }
    }
}

/// The next final response to an INVITE (provisionals skipped).
async fn final_response(ua: &Ua) -> Response {
    loop {
        let r = ua.response_for(Method::Invite).await;
        if r.status >= 200 {
            return r;
        }
    }
}

/// A datagram on `sock` within `secs`.
async fn recv(sock: &UdpSocket, secs: f64) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; 2048];
    match tokio::time::timeout(Duration::from_secs_f64(secs), sock.recv_from(&mut buf)).await {
        Ok(Ok((n, from))) => Some((buf[..n].to_vec(), from)),
        _ => None,
    }
}

/// Sends `count` distinct packets from `from` to `to` and checks each arrives unchanged at
/// `at`, from `relay_src` when given; returns how many arrived.
async fn pass(
    from: &UdpSocket,
    to: SocketAddr,
    at: &UdpSocket,
    relay_src: Option<SocketAddr>,
    label: &str,
    count: usize,
) -> usize {
    let mut got = 0;
    for i in 0..count {
        // An RTP-looking header (V=2, PT 0) and a marker payload.
        let mut pkt = vec![0x80, 0x00, 0, i as u8, 0, 0, 0, 0, 1, 2, 3, 4];
        pkt.extend_from_slice(format!("{label}-{i}").as_bytes());
        from.send_to(&pkt, to).await.unwrap();
        if let Some((data, src)) = recv(at, 2.0).await {
            assert_eq!(data, pkt, "{label}: packet changed on the way");
            if let Some(r) = relay_src {
                assert_eq!(src, r, "{label}: packet not from the relay socket");
            }
            got += 1;
        }
    }
    got
}

/// An anchored call alice → bob, both announcing private addresses.
struct Call {
    alice: Ua,
    bob: Ua,
    alice_media: UdpSocket,
    bob_media: UdpSocket,
    invite: Request,
    ok: Response,
    /// The relay's address facing alice (in the 200 she got).
    relay_a: SocketAddr,
    /// The relay's address facing bob (in the INVITE he got).
    relay_b: SocketAddr,
}

async fn anchored_call(lab: &Lab, alice_offer_port: Option<u16>) -> Call {
    let mut bob = lab.ua("bob").await;
    bob.register_self().await;
    let mut alice = lab.ua("alice").await;
    let alice_media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let bob_media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let a_port = alice_offer_port.unwrap_or(alice_media.local_addr().unwrap().port());
    let invite = invite_with(
        &mut alice,
        &format!("sip:bob@{DOMAIN}"),
        &sdp(private_v4(), a_port, true),
    )
    .await;
    let got = incoming_invite(&bob).await;
    let offer = parse_sdp(&got.body);
    let text = String::from_utf8(got.body.to_vec()).unwrap();
    assert!(
        !text.contains("ice-") && !text.contains("candidate"),
        "ICE not stripped: {text}"
    );
    assert!(
        text.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80"),
        "crypto lost: {text}"
    );
    let relay_b = offer.media_remote_addr(0).unwrap();
    assert_eq!(relay_b.ip(), IpAddr::from([127, 0, 0, 1]));
    assert_ne!(relay_b.port(), a_port, "the offer was not anchored: {text}");
    let bob_port = bob_media.local_addr().unwrap().port();
    let ok = answer_with(
        &got,
        200,
        "bobtag",
        &bob.contact(),
        &sdp("10.20.30.40".parse().unwrap(), bob_port, false),
    );
    bob.send(&Message::Response(ok)).await;
    let ok = final_response(&alice).await;
    assert_eq!(ok.status, 200);
    let relay_a = media_addr(&ok.body);
    assert_eq!(relay_a.ip(), IpAddr::from([127, 0, 0, 1]));
    assert_ne!(relay_a, relay_b);
    assert_ne!(relay_a.port(), bob_port, "the answer was not anchored");
    let ack = alice.in_dialog(Method::Ack, &invite, &ok);
    alice.send(&Message::Request(ack)).await;
    Call {
        alice,
        bob,
        alice_media,
        bob_media,
        invite,
        ok,
        relay_a,
        relay_b,
    }
}

async fn lab() -> Lab {
    Lab::start(|c| {
        c.relay.mode = RelayMode::Auto;
    })
    .await
}

#[tokio::test]
async fn media_passes_both_ways_and_bye_tears_down() {
    let lab = lab().await;
    let mut call = anchored_call(&lab, None).await;
    assert_eq!(stats(&lab).sessions, 1);
    let before = stats(&lab).forwarded;
    let a_to_b = pass(
        &call.alice_media,
        call.relay_a,
        &call.bob_media,
        Some(call.relay_b),
        "a2b",
        20,
    )
    .await;
    let b_to_a = pass(
        &call.bob_media,
        call.relay_b,
        &call.alice_media,
        Some(call.relay_a),
        "b2a",
        20,
    )
    .await;
    assert_eq!((a_to_b, b_to_a), (20, 20));
    assert!(stats(&lab).forwarded >= before + 40);

    let bye = call.alice.in_dialog(Method::Bye, &call.invite, &call.ok);
    call.alice.send(&Message::Request(bye)).await;
    loop {
        let (req, _) = call.bob.request(5.0).await;
        if req.method == Method::Bye {
            break;
        }
        assert_eq!(req.method, Method::Ack, "unexpected {}", req.method);
    }
    eventually(5.0, || async { (stats(&lab).sessions == 0).then_some(()) }).await;
    assert_eq!(stats(&lab).sockets, 0);
    // The relay's sockets are gone: nothing comes back any more.
    call.alice_media
        .send_to(b"late", call.relay_a)
        .await
        .unwrap();
    assert!(recv(&call.bob_media, 0.5).await.is_none());
}

#[tokio::test]
async fn latching_follows_the_real_source_and_rebinds_after_silence() {
    let lab = lab().await;
    // Alice's SDP names a port where nothing listens (a NAT changes it): the relay must learn
    // her real address from her first packet.
    let decoy = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let decoy_port = decoy.local_addr().unwrap().port();
    let call = anchored_call(&lab, Some(decoy_port)).await;
    assert_eq!(
        pass(
            &call.alice_media,
            call.relay_a,
            &call.bob_media,
            None,
            "latch",
            3
        )
        .await,
        3
    );
    assert_eq!(
        pass(
            &call.bob_media,
            call.relay_b,
            &call.alice_media,
            None,
            "back",
            3
        )
        .await,
        3
    );
    assert!(
        recv(&decoy, 0.2).await.is_none(),
        "media went to the SDP port after latching"
    );

    // Another source while alice is still talking: dropped and counted.
    let intruder = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let foreign_before = stats(&lab).dropped_foreign;
    intruder.send_to(b"intruder", call.relay_a).await.unwrap();
    assert!(recv(&call.bob_media, 0.5).await.is_none());
    assert!(stats(&lab).dropped_foreign > foreign_before);

    // Alice's NAT rebinds: her old source goes silent for more than 3 s, the new one takes over.
    let rebound = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    tokio::time::sleep(Duration::from_millis(3300)).await;
    let relatches = stats(&lab).relatches;
    assert_eq!(
        pass(&rebound, call.relay_a, &call.bob_media, None, "rebound", 3).await,
        3
    );
    assert!(stats(&lab).relatches > relatches);
    assert_eq!(
        pass(
            &call.bob_media,
            call.relay_b,
            &rebound,
            Some(call.relay_a),
            "to-new",
            3
        )
        .await,
        3
    );
    assert!(recv(&call.alice_media, 0.2).await.is_none());
}

#[tokio::test]
async fn ipv6_caller_reaches_ipv4_callee_through_the_relay() {
    let lab = Lab::start(|c| {
        c.listen.udp = vec![
            SocketAddr::from(([127, 0, 0, 1], 0)),
            "[::1]:0".parse().unwrap(),
        ];
    })
    .await;
    let server = lab.server.as_ref().unwrap();
    let v6_sip = server
        .local_addrs()
        .into_iter()
        .find(|(t, a)| *t == Transport::Udp && a.is_ipv6())
        .map(|(_, a)| a)
        .unwrap();
    assert!(
        server.ready_line().contains(" relay=127.0.0.1,::1"),
        "{}",
        server.ready_line()
    );

    let mut bob = lab.ua("bob").await;
    bob.register_self().await;
    // Alice is on ::1 only, announcing her real (public-looking) address: no NAT, but the
    // families differ, so the call must be anchored.
    let mut alice = Ua::new("alice", "alicepw", v6_sip).await;
    alice.sock = UdpSocket::bind("[::1]:0").await.unwrap();
    alice.addr = alice.sock.local_addr().unwrap();
    let alice_media = UdpSocket::bind("[::1]:0").await.unwrap();
    let bob_media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let alice_ip: IpAddr = "::1".parse().unwrap();
    let invite = invite_with(
        &mut alice,
        &format!("sip:bob@{DOMAIN}"),
        &sdp(alice_ip, alice_media.local_addr().unwrap().port(), false),
    )
    .await;
    let got = incoming_invite(&bob).await;
    let relay_b = media_addr(&got.body);
    assert_eq!(
        relay_b.ip(),
        IpAddr::from([127, 0, 0, 1]),
        "bob must get an IPv4 address"
    );
    let ok = answer_with(
        &got,
        200,
        "b6",
        &bob.contact(),
        &sdp(
            IpAddr::from([127, 0, 0, 1]),
            bob_media.local_addr().unwrap().port(),
            false,
        ),
    );
    bob.send(&Message::Response(ok)).await;
    let ok = final_response(&alice).await;
    assert_eq!(ok.status, 200);
    let relay_a = media_addr(&ok.body);
    assert_eq!(relay_a.ip(), alice_ip, "alice must get an IPv6 address");
    assert!(parse_sdp(&ok.body).connection.unwrap().addr_type == "IP6");
    // RFC 5658 across families: the Record-Route facing alice is an IPv6 one, bob's IPv4.
    let rr = ok.headers.values(&HeaderName::RecordRoute);
    assert_eq!(rr.len(), 2, "{rr:?}");
    assert!(
        rr[1].contains("[::1]") && rr[0].contains("127.0.0.1"),
        "{rr:?}"
    );
    let ack = alice.in_dialog(Method::Ack, &invite, &ok);
    alice.send(&Message::Request(ack)).await;

    assert_eq!(
        pass(
            &alice_media,
            relay_a,
            &bob_media,
            Some(relay_b),
            "v6to4",
            10
        )
        .await,
        10
    );
    assert_eq!(
        pass(
            &bob_media,
            relay_b,
            &alice_media,
            Some(relay_a),
            "v4to6",
            10
        )
        .await,
        10
    );
}

#[tokio::test]
async fn failure_final_response_releases_the_session() {
    let lab = lab().await;
    let mut bob = lab.ua("bob").await;
    bob.register_self().await;
    let mut alice = lab.ua("alice").await;
    let invite = invite_with(
        &mut alice,
        &format!("sip:bob@{DOMAIN}"),
        &sdp(private_v4(), 40000, false),
    )
    .await;
    let got = incoming_invite(&bob).await;
    assert_ne!(media_addr(&got.body).port(), 40000);
    assert_eq!(stats(&lab).sessions, 1);
    let busy = answer(&got, 486, "busytag", &bob.contact());
    bob.send(&Message::Response(busy)).await;
    let r = final_response(&alice).await;
    assert_eq!(r.status, 486);
    alice.ack_non_2xx(&invite, &r).await;
    eventually(3.0, || async { (stats(&lab).sessions == 0).then_some(()) }).await;
}

#[tokio::test]
async fn silent_call_times_out() {
    let lab = Lab::start(|c| c.relay.timeout_secs = 2).await;
    let call = anchored_call(&lab, None).await;
    assert_eq!(
        pass(
            &call.alice_media,
            call.relay_a,
            &call.bob_media,
            None,
            "once",
            1
        )
        .await,
        1
    );
    let timed_out = stats(&lab).sessions_timed_out;
    eventually(6.0, || async { (stats(&lab).sessions == 0).then_some(()) }).await;
    assert_eq!(stats(&lab).sessions_timed_out, timed_out + 1);
}

#[tokio::test]
async fn ice_callee_and_ice_offer_are_not_anchored_but_plain_ones_are() {
    let lab = lab().await;
    let mut bob = lab.ua("bob").await;
    let contact = format!("<{}>;+sip.ice", bob.contact());
    assert_eq!(bob.register(&[contact], Some(3600)).await.status, 200);
    let mut alice = lab.ua("alice").await;
    invite_with(
        &mut alice,
        &format!("sip:bob@{DOMAIN}"),
        &sdp(private_v4(), 40000, true),
    )
    .await;
    let got = incoming_invite(&bob).await;
    assert_eq!(
        media_addr(&got.body),
        SocketAddr::new(private_v4(), 40000),
        "an ICE call to an ICE callee must pass untouched"
    );
    assert!(String::from_utf8_lossy(&got.body).contains("a=candidate:"));
    assert_eq!(stats(&lab).sessions, 0);

    // The same callee offered a call without ICE from a NATed caller: anchored.
    invite_with(
        &mut alice,
        &format!("sip:bob@{DOMAIN}"),
        &sdp(private_v4(), 40002, false),
    )
    .await;
    let got = loop {
        let r = incoming_invite(&bob).await;
        if r.headers.call_id().unwrap() == alice.call_id {
            break r;
        }
    };
    assert_ne!(media_addr(&got.body).port(), 40002);
    assert_eq!(stats(&lab).sessions, 1);

    // An ICE offer from a NATed caller with nothing but its private host candidate (no STUN
    // or TURN server configured): ICE could not get through, so the relay anchors it.
    let host_only = sdp(private_v4(), 40004, true).replace(
        "a=candidate:2 1 UDP 1694498815 127.0.0.1 40004 typ srflx raddr 192.168.77.10 rport 40004\r\n",
        "",
    );
    assert!(!host_only.contains("srflx"));
    invite_with(&mut alice, &format!("sip:bob@{DOMAIN}"), &host_only).await;
    let got = loop {
        let r = incoming_invite(&bob).await;
        if r.headers.call_id().unwrap() == alice.call_id {
            break r;
        }
    };
    assert_ne!(media_addr(&got.body).port(), 40004);
    assert!(!String::from_utf8_lossy(&got.body).contains("a=candidate"));
    assert_eq!(stats(&lab).sessions, 2);
}

#[tokio::test]
async fn mode_never_leaves_sdp_alone() {
    let lab = Lab::start(|c| c.relay.mode = RelayMode::Never).await;
    assert!(lab.server.as_ref().unwrap().media_relay().is_none());
    assert!(!lab.server.as_ref().unwrap().ready_line().contains("relay="));
    let mut bob = lab.ua("bob").await;
    bob.register_self().await;
    let mut alice = lab.ua("alice").await;
    invite_with(
        &mut alice,
        &format!("sip:bob@{DOMAIN}"),
        &sdp(private_v4(), 40000, false),
    )
    .await;
    let got = incoming_invite(&bob).await;
    assert_eq!(media_addr(&got.body), SocketAddr::new(private_v4(), 40000));
}

#[tokio::test]
async fn forked_call_keeps_the_answering_branch() {
    let lab = lab().await;
    // Bob has two phones; both ring, each gets its own relay address.
    let mut desk = lab.ua("bob").await;
    let mut mobile = lab.ua("bob").await;
    desk.register_self().await;
    mobile.register_self().await;
    let desk_media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mobile_media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let alice_media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut alice = lab.ua("alice").await;
    invite_with(
        &mut alice,
        &format!("sip:bob@{DOMAIN}"),
        &sdp(
            private_v4(),
            alice_media.local_addr().unwrap().port(),
            false,
        ),
    )
    .await;
    let at_desk = incoming_invite(&desk).await;
    let at_mobile = incoming_invite(&mobile).await;
    let (relay_desk, relay_mobile) = (media_addr(&at_desk.body), media_addr(&at_mobile.body));
    assert_ne!(
        relay_desk, relay_mobile,
        "each branch gets its own relay socket"
    );

    // The desk phone sends early media (183), then the mobile answers.
    let early = answer_with(
        &at_desk,
        183,
        "desk",
        &desk.contact(),
        &sdp(private_v4(), desk_media.local_addr().unwrap().port(), false),
    );
    desk.send(&Message::Response(early)).await;
    let r183 = alice.response_for(Method::Invite).await;
    assert_eq!(r183.status, 183);
    let relay_a = media_addr(&r183.body);
    assert_eq!(
        pass(
            &desk_media,
            relay_desk,
            &alice_media,
            Some(relay_a),
            "early",
            2
        )
        .await,
        2
    );
    let ok = answer_with(
        &at_mobile,
        200,
        "mobile",
        &mobile.contact(),
        &sdp(
            private_v4(),
            mobile_media.local_addr().unwrap().port(),
            false,
        ),
    );
    mobile.send(&Message::Response(ok)).await;
    let ok = final_response(&alice).await;
    assert_eq!(ok.status, 200);
    assert_eq!(
        media_addr(&ok.body),
        relay_a,
        "the caller keeps one relay address"
    );
    // The desk's INVITE is cancelled; its relay socket is released.
    let (cancel, _) = desk.request(5.0).await;
    assert_eq!(cancel.method, Method::Cancel);
    assert_eq!(
        pass(
            &alice_media,
            relay_a,
            &mobile_media,
            Some(relay_mobile),
            "won",
            3
        )
        .await,
        3
    );
    assert_eq!(
        pass(
            &mobile_media,
            relay_mobile,
            &alice_media,
            Some(relay_a),
            "won-back",
            3
        )
        .await,
        3
    );
    desk_media.send_to(b"loser", relay_desk).await.unwrap();
    assert!(recv(&alice_media, 0.3).await.is_none());
}

#[tokio::test]
async fn cancel_releases_the_session() {
    let lab = lab().await;
    let mut bob = lab.ua("bob").await;
    bob.register_self().await;
    let mut alice = lab.ua("alice").await;
    let invite = invite_with(
        &mut alice,
        &format!("sip:bob@{DOMAIN}"),
        &sdp(private_v4(), 40000, false),
    )
    .await;
    let got = incoming_invite(&bob).await;
    assert_eq!(stats(&lab).sessions, 1);
    // Ringing first: a proxy cancels a branch only after a provisional response.
    bob.send(&Message::Response(answer(&got, 180, "bt", &bob.contact())))
        .await;
    assert_eq!(alice.response_for(Method::Invite).await.status, 180);
    let mut cancel = Request::new(Method::Cancel, invite.uri.clone());
    for name in [
        HeaderName::Via,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
    ] {
        cancel
            .headers
            .push(name.clone(), invite.headers.get(&name).unwrap().clone());
    }
    cancel.headers.push(
        HeaderName::CSeq,
        format!("{} CANCEL", invite.headers.cseq().unwrap().seq),
    );
    cancel.headers.push(HeaderName::MaxForwards, "70");
    alice.send(&Message::Request(cancel)).await;
    loop {
        let (r, _) = bob.request(5.0).await;
        if r.method == Method::Cancel {
            bob.send(&Message::Response(answer(&r, 200, "bt", &bob.contact())))
                .await;
            break;
        }
    }
    bob.send(&Message::Response(answer(&got, 487, "bt", &bob.contact())))
        .await;
    let r = final_response(&alice).await;
    assert_eq!(r.status, 487);
    alice.ack_non_2xx(&invite, &r).await;
    eventually(3.0, || async { (stats(&lab).sessions == 0).then_some(()) }).await;
}

#[tokio::test]
async fn reinvite_keeps_the_relay_legs_and_follows_the_new_address() {
    let lab = lab().await;
    let call = anchored_call(&lab, None).await;
    assert_eq!(
        pass(
            &call.alice_media,
            call.relay_a,
            &call.bob_media,
            None,
            "before",
            2
        )
        .await,
        2
    );
    // Bob moves his media to a new socket with a re-INVITE.
    let moved = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let got = invite_as_bob_saw_it(&call);
    let mut reinvite = callee_request(&call.bob, Method::Invite, &got, "bobtag", 7);
    reinvite
        .headers
        .push(HeaderName::Contact, format!("<{}>", call.bob.contact()));
    reinvite
        .headers
        .push(HeaderName::ContentType, "application/sdp");
    reinvite.body = Bytes::from(sdp(
        "10.20.30.40".parse().unwrap(),
        moved.local_addr().unwrap().port(),
        false,
    ));
    call.bob.send(&Message::Request(reinvite)).await;
    let at_alice = incoming_invite(&call.alice).await;
    assert_eq!(
        media_addr(&at_alice.body),
        call.relay_a,
        "a re-INVITE keeps the caller's relay socket"
    );
    let ok = answer_with(
        &at_alice,
        200,
        "unused",
        &call.alice.contact(),
        &sdp(
            private_v4(),
            call.alice_media.local_addr().unwrap().port(),
            false,
        ),
    );
    call.alice.send(&Message::Response(ok)).await;
    let ok = loop {
        match call.bob.recv_within(5.0).await {
            Some((Message::Response(r), _))
                if r.status >= 200 && r.headers.cseq().unwrap().method == Method::Invite =>
            {
                break r;
            }
            Some(_) => continue,
            None => panic!("no answer to the re-INVITE"),
        }
    };
    assert_eq!(ok.status, 200);
    assert_eq!(media_addr(&ok.body), call.relay_b, "and the callee's");
    assert_eq!(stats(&lab).sessions, 1);
    // Media for bob now goes to the new socket, not the old one.
    assert_eq!(
        pass(
            &call.alice_media,
            call.relay_a,
            &moved,
            Some(call.relay_b),
            "after",
            3
        )
        .await,
        3
    );
    assert!(recv(&call.bob_media, 0.2).await.is_none());
}

/// The INVITE bob got in [`anchored_call`], as far as his in-dialog requests need it: alice's
/// Contact and tags, and the proxy's Record-Route set (the same as in the 200 alice got).
fn invite_as_bob_saw_it(call: &Call) -> Request {
    let mut seen = call.invite.clone();
    seen.headers.remove(&HeaderName::RecordRoute);
    for rr in call.ok.headers.values(&HeaderName::RecordRoute) {
        seen.headers.push(HeaderName::RecordRoute, rr);
    }
    seen
}

#[tokio::test]
async fn a_full_relay_lets_calls_through_unanchored_and_counts_them() {
    let lab = Lab::start(|c| c.relay.max_sessions = 1).await;
    let _first = anchored_call(&lab, None).await;
    let mut carol = lab.ua("carol").await;
    carol.register_self().await;
    let mut alice = lab.ua("alice").await;
    invite_with(
        &mut alice,
        &format!("sip:carol@{DOMAIN}"),
        &sdp(private_v4(), 40010, false),
    )
    .await;
    let got = incoming_invite(&carol).await;
    assert_eq!(media_addr(&got.body), SocketAddr::new(private_v4(), 40010));
    let s = stats(&lab);
    assert_eq!((s.sessions, s.sessions_refused), (1, 1));
}
