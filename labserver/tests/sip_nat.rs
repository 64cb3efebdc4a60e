//! NAT handling of the registrar and proxy over UDP on loopback: RFC 5626 outbound
//! registration (Require, Flow-Timer, feature tags kept on the binding), requests routed over a
//! NATed binding's flow, Contact fixing of NATed requests and answers, STUN on the SIP port.
//! "Behind a NAT" here means a UA that puts a private address in its Contact while its
//! datagrams come from its loopback socket, which is what a registrar sees through a NAT.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sip_util;

use sip_util::{DOMAIN, Lab, answer, callee_request, rand_token};
use tandem_proto::msg::{ContactValue, HeaderName, Message, Method, Request};
use tandem_proto::stun::{Class, Integrity, Method as StunMethod};

const PRIVATE_BOB: &str = "sip:bob@192.168.77.5:5060";
const PRIVATE_ALICE: &str = "sip:alice@10.9.8.7:5062";

fn contact_uri(r: &tandem_proto::msg::Headers) -> String {
    match r.contacts().unwrap().first() {
        Some(ContactValue::Addr(na)) => na.uri.to_string(),
        other => panic!("no Contact: {other:?}"),
    }
}

fn outbound_contact(uri: &str, ice: bool) -> String {
    let mut c = format!(
        "<{uri};ob>;+sip.instance=\"<urn:uuid:{}>\";reg-id=1",
        rand_token()
    );
    if ice {
        c.push_str(";+sip.ice");
    }
    c
}

/// REGISTER with `Supported: outbound, path` (digest included); returns the final response.
async fn register_outbound(ua: &mut sip_util::Ua, contact: &str) -> tandem_proto::msg::Response {
    let mut req = ua.register_request(None, &[contact.to_string()], Some(600));
    req.headers.push(HeaderName::Supported, "outbound, path");
    ua.send(&Message::Request(req.clone())).await;
    let r = ua.response().await;
    if r.status != 401 {
        return r;
    }
    let req = ua.authorize(&req, &r, None);
    ua.send(&Message::Request(req)).await;
    ua.response().await
}

#[tokio::test]
async fn outbound_registration_is_confirmed_with_a_flow_timer_and_keeps_feature_tags() {
    let lab = Lab::start(|c| c.registrar.flow_timer = 17).await;
    let mut bob = lab.ua("bob").await;
    let ok = register_outbound(&mut bob, &outbound_contact(PRIVATE_BOB, true)).await;
    assert_eq!(ok.status, 200, "{}", ok.reason);
    assert_eq!(ok.headers.get_str(&HeaderName::Require), Some("outbound"));
    assert_eq!(
        ok.headers
            .get_str(&HeaderName::Other("Flow-Timer".into()))
            .map(str::trim),
        Some("17")
    );
    // The Via tells the UA its public address (RFC 3581).
    let via = ok.headers.top_via().unwrap();
    assert_eq!(via.rport(), Some(Some(bob.addr.port())));

    // A plain RFC 3261 registration (no Supported: outbound): no Require, no Flow-Timer, and
    // the reg-id is not taken into account.
    let mut carol = lab.ua("carol").await;
    let r = carol
        .register(
            &[outbound_contact("sip:carol@192.168.77.6", false)],
            Some(600),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.headers.get(&HeaderName::Require).is_none());
    assert!(
        r.headers
            .get(&HeaderName::Other("Flow-Timer".into()))
            .is_none()
    );

    // What the relay decision reads (N4): NATed and ICE-capable.
    let server = lab.server.as_ref().unwrap();
    let now = tandem_labserver::location::unix_now();
    let bound = server.location().lookup(&format!("sip:bob@{DOMAIN}"), now);
    assert_eq!(bound.len(), 1);
    assert!(bound[0].is_nated());
    assert!(bound[0].has_feature("+sip.ice"));
    assert_eq!(bound[0].reg_id, Some(1));
    let carols = server
        .location()
        .lookup(&format!("sip:carol@{DOMAIN}"), now);
    assert!(carols[0].is_nated());
    assert!(!carols[0].has_feature("+sip.ice"));
    assert_eq!(carols[0].reg_id, None);
}

#[tokio::test]
async fn a_register_through_a_proxy_without_outbound_gets_439() {
    let lab = Lab::start(|_| {}).await;
    let mut bob = lab.ua("bob").await;
    let mut req = bob.register_request(None, &[outbound_contact(PRIVATE_BOB, false)], Some(600));
    req.headers.push(HeaderName::Supported, "outbound");
    // A second Via: the REGISTER came through an edge proxy that put no `ob` Path.
    req.headers.push(
        HeaderName::Via,
        "SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKedge",
    );
    bob.send(&Message::Request(req.clone())).await;
    let challenge = bob.response().await;
    assert_eq!(challenge.status, 401);
    let req = bob.authorize(&req, &challenge, None);
    let mut req = req;
    req.headers.push(
        HeaderName::Via,
        "SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKedge2",
    );
    bob.send(&Message::Request(req)).await;
    let r = bob.response().await;
    assert_eq!(r.status, 439, "{}", r.reason);
}

#[tokio::test]
async fn calls_reach_a_nated_callee_over_its_flow_and_contacts_are_fixed() {
    let lab = Lab::start(|_| {}).await;
    let mut bob = lab.ua("bob").await;
    // bob is behind a NAT without outbound: a private Contact, datagrams from his socket.
    let r = bob.register(&[format!("<{PRIVATE_BOB}>")], Some(600)).await;
    assert_eq!(r.status, 200);
    let mut alice = lab.ua("alice").await;
    alice.register_self().await;

    // alice, behind another NAT, calls with a private Contact too.
    let inv = alice.invite(&format!("sip:bob@{DOMAIN}"));
    let mut inv: Request = inv;
    inv.headers
        .set(HeaderName::Contact, format!("<{PRIVATE_ALICE}>"));
    alice.send(&Message::Request(inv.clone())).await;
    let challenge = alice.response().await;
    assert_eq!(challenge.status, 407);
    alice.ack_non_2xx(&inv, &challenge).await;
    let inv = alice.authorize(&inv, &challenge, None);
    alice.send(&Message::Request(inv.clone())).await;

    // The INVITE reaches bob's socket (his flow), not 192.168.77.5.
    let (incoming, _) = bob.request(5.0).await;
    assert_eq!(incoming.method, Method::Invite);
    // alice's Contact now names the address her requests came from.
    assert_eq!(
        contact_uri(&incoming.headers),
        format!("sip:alice@{}", alice.addr)
    );

    // bob answers with his private Contact; alice sees it fixed to bob's flow.
    let tag = rand_token();
    let ok = answer(&incoming, 200, &tag, PRIVATE_BOB);
    bob.send(&Message::Response(ok)).await;
    let resp = alice.response_for(Method::Invite).await;
    assert_eq!(resp.status, 200);
    assert_eq!(contact_uri(&resp.headers), format!("sip:bob@{}", bob.addr));

    // bob's BYE (to alice's fixed Contact, through the Record-Route) reaches alice's socket.
    let bye = callee_request(&bob, Method::Bye, &incoming, &tag, 1);
    bob.send(&Message::Request(bye)).await;
    let (got, _) = alice.request(5.0).await;
    assert_eq!(got.method, Method::Bye);
    alice
        .send(&Message::Response(
            tandem_proto::msg::Response::for_request(&got, 200),
        ))
        .await;
    assert_eq!(bob.response_for(Method::Bye).await.status, 200);
}

#[tokio::test]
async fn the_sip_port_answers_stun_binding_requests() {
    let lab = Lab::start(|_| {}).await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let req = tandem_proto::stun::Message::request(StunMethod::BINDING);
    sock.send_to(&req.encode(Integrity::None, true), lab.udp)
        .await
        .unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) =
        tokio::time::timeout(std::time::Duration::from_secs(5), sock.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(from, lab.udp);
    let resp = tandem_proto::stun::Message::decode(&buf[..n]).unwrap();
    assert_eq!(resp.class, Class::Success);
    assert_eq!(resp.mapped_address(), Some(sock.local_addr().unwrap()));
}
