//! Proxy behaviour against an in-process lab: authentication, forking, CANCEL, timeouts, CDRs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sip_util;

use std::net::SocketAddr;

use sip_util::{DOMAIN, Lab, Ua, answer, callee_request, eventually, rand_token};
use tandem_proto::msg::{HeaderName, Message, Method, Request, Response};

/// Sends `response` from `ua` to the proxy that sent the request.
async fn reply(ua: &Ua, to: SocketAddr, response: Response) {
    ua.send_to(&Message::Response(response), to).await;
}

/// The CANCEL for `invite` (same Via branch, RFC 3261 §9.1).
fn cancel_for(invite: &Request) -> Request {
    let mut c = Request::new(Method::Cancel, invite.uri.clone());
    for name in [
        HeaderName::Via,
        HeaderName::MaxForwards,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
    ] {
        c.headers
            .push(name.clone(), invite.headers.get(&name).unwrap().clone());
    }
    c.headers.push(
        HeaderName::CSeq,
        format!("{} CANCEL", invite.headers.cseq().unwrap().seq),
    );
    c
}

async fn wait_cdr(
    lab: &Lab,
    call_id: &str,
    done: impl Fn(&tandem_labserver::store::Cdr) -> bool,
) -> tandem_labserver::store::Cdr {
    eventually(5.0, || async {
        lab.store
            .list_cdrs(100)
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.call_id == call_id && done(c))
    })
    .await
}

#[tokio::test]
async fn forking_first_answer_wins_and_the_other_branch_is_cancelled() {
    let lab = Lab::start(|_| {}).await;
    let mut bob1 = lab.ua("bob").await;
    let mut bob2 = lab.ua("bob").await;
    bob1.register_self().await;
    bob2.register_self().await;
    let mut alice = lab.ua("alice").await;
    let invite = alice.call(&format!("sip:bob@{DOMAIN}")).await;

    let (inv1, proxy1) = bob1.request(5.0).await;
    let (inv2, proxy2) = bob2.request(5.0).await;
    assert_eq!(inv1.method, Method::Invite);
    assert_eq!(
        inv1.uri.to_string(),
        bob1.contact(),
        "retargeted to the contact"
    );
    assert_eq!(inv2.uri.to_string(), bob2.contact());
    assert_eq!(inv1.headers.max_forwards().unwrap(), Some(69));
    assert!(
        inv1.headers.get(&HeaderName::ProxyAuthorization).is_none(),
        "our credentials are consumed"
    );
    let rr = inv1.headers.values(&HeaderName::RecordRoute);
    assert_eq!(rr.len(), 1, "one Record-Route for UDP in and out: {rr:?}");
    assert!(rr[0].contains(";lr"));
    assert_eq!(inv1.headers.vias().unwrap().len(), 2);

    reply(&bob1, proxy1, answer(&inv1, 180, "b1", &bob1.contact())).await;
    reply(&bob2, proxy2, answer(&inv2, 180, "b2", &bob2.contact())).await;
    let r = alice.response_for(Method::Invite).await;
    assert_eq!(r.status, 180);
    assert_eq!(r.headers.vias().unwrap().len(), 1, "proxy Via removed");

    reply(&bob1, proxy1, answer(&inv1, 200, "b1", &bob1.contact())).await;
    let ok = loop {
        let r = alice.response_for(Method::Invite).await;
        if r.status == 200 {
            break r;
        }
        assert_eq!(r.status, 180);
    };
    assert_eq!(ok.headers.to().unwrap().tag(), Some("b1"));

    // The other branch is cancelled.
    let (cancel, from) = bob2.request(5.0).await;
    assert_eq!(cancel.method, Method::Cancel);
    reply(&bob2, from, answer(&cancel, 200, "b2", &bob2.contact())).await;
    reply(&bob2, proxy2, answer(&inv2, 487, "b2", &bob2.contact())).await;

    // ACK and BYE follow the Record-Route through the proxy to bob1.
    let ack = alice.in_dialog(Method::Ack, &invite, &ok);
    assert_eq!(ack.headers.values(&HeaderName::Route).len(), 1);
    alice.send(&Message::Request(ack)).await;
    let (got, _) = bob1.request(5.0).await;
    assert_eq!(got.method, Method::Ack);
    assert!(
        got.headers.get(&HeaderName::Route).is_none(),
        "our Route popped"
    );

    let bye = alice.in_dialog(Method::Bye, &invite, &ok);
    alice.send(&Message::Request(bye)).await;
    let (bye_in, from) = loop {
        let (r, f) = bob1.request(5.0).await;
        if r.method == Method::Bye {
            break (r, f);
        }
    };
    reply(&bob1, from, answer(&bye_in, 200, "b1", &bob1.contact())).await;
    let r = alice.response_for(Method::Bye).await;
    assert_eq!(r.status, 200);

    let cdr = wait_cdr(&lab, &alice.call_id, |c| c.end_at.is_some()).await;
    assert_eq!(cdr.cause, "answered");
    assert_eq!(cdr.caller, format!("sip:alice@{DOMAIN}"));
    assert_eq!(cdr.callee, format!("sip:bob@{DOMAIN}"));
    assert!(cdr.answer_at.unwrap() >= cdr.start_at);
    assert!(cdr.end_at.unwrap() >= cdr.answer_at.unwrap());
}

#[tokio::test]
async fn nobody_registered_gives_480_and_unknown_user_404() {
    let lab = Lab::start(|_| {}).await;
    let mut alice = lab.ua("alice").await;
    let inv = alice.call(&format!("sip:bob@{DOMAIN}")).await;
    let r = alice.response_for(Method::Invite).await;
    assert_eq!(r.status, 480);
    alice.ack_non_2xx(&inv, &r).await;
    let cdr = wait_cdr(&lab, &alice.call_id, |_| true).await;
    assert_eq!(cdr.cause, "failed:480");

    let inv = alice.call(&format!("sip:nobody@{DOMAIN}")).await;
    let r = alice.response_for(Method::Invite).await;
    assert_eq!(r.status, 404);
    alice.ack_non_2xx(&inv, &r).await;
}

#[tokio::test]
async fn busy_here_is_passed_through() {
    let lab = Lab::start(|_| {}).await;
    let mut bob = lab.ua("bob").await;
    bob.register_self().await;
    let mut alice = lab.ua("alice").await;
    let inv = alice.call(&format!("sip:bob@{DOMAIN}")).await;
    let (inv_b, proxy) = bob.request(5.0).await;
    reply(&bob, proxy, answer(&inv_b, 486, "bb", &bob.contact())).await;
    let r = alice.response_for(Method::Invite).await;
    assert_eq!(r.status, 486);
    alice.ack_non_2xx(&inv, &r).await;
    // The proxy ACKs bob's 486 hop by hop.
    let (ack, _) = bob.request(5.0).await;
    assert_eq!(ack.method, Method::Ack);
    let cdr = wait_cdr(&lab, &alice.call_id, |_| true).await;
    assert_eq!(cdr.cause, "busy");
    assert_eq!(cdr.status, Some(486));
}

#[tokio::test]
async fn caller_cancel_reaches_the_callee() {
    let lab = Lab::start(|_| {}).await;
    let mut bob = lab.ua("bob").await;
    bob.register_self().await;
    let mut alice = lab.ua("alice").await;
    let inv = alice.call(&format!("sip:bob@{DOMAIN}")).await;
    let (inv_b, proxy) = bob.request(5.0).await;
    reply(&bob, proxy, answer(&inv_b, 180, "bb", &bob.contact())).await;
    assert_eq!(alice.response_for(Method::Invite).await.status, 180);

    alice.send(&Message::Request(cancel_for(&inv))).await;
    assert_eq!(alice.response_for(Method::Cancel).await.status, 200);
    let (cancel, from) = bob.request(5.0).await;
    assert_eq!(cancel.method, Method::Cancel);
    reply(&bob, from, answer(&cancel, 200, "bb", &bob.contact())).await;
    reply(&bob, proxy, answer(&inv_b, 487, "bb", &bob.contact())).await;
    let r = alice.response_for(Method::Invite).await;
    assert_eq!(r.status, 487);
    alice.ack_non_2xx(&inv, &r).await;
    let cdr = wait_cdr(&lab, &alice.call_id, |_| true).await;
    assert_eq!(cdr.cause, "cancelled");
}

#[tokio::test]
async fn unanswered_invite_times_out() {
    let lab = Lab::start(|c| c.proxy.invite_timeout_secs = 2).await;
    let mut bob = lab.ua("bob").await;
    bob.register_self().await;
    let mut alice = lab.ua("alice").await;

    // No response at all from bob: 408.
    let inv = alice.call(&format!("sip:bob@{DOMAIN}")).await;
    let (_inv_b, _) = bob.request(5.0).await;
    let r = alice.response_for(Method::Invite).await;
    assert_eq!(r.status, 408);
    alice.ack_non_2xx(&inv, &r).await;
    let cdr = wait_cdr(&lab, &alice.call_id, |_| true).await;
    assert_eq!(cdr.cause, "no-answer");

    // Ringing but never answered: 480, and bob's branch is cancelled.
    let inv = alice.call(&format!("sip:bob@{DOMAIN}")).await;
    let (inv_b, proxy) = loop {
        let (r, f) = bob.request(5.0).await;
        if r.method == Method::Invite && r.headers.call_id().unwrap() == alice.call_id {
            break (r, f);
        }
    };
    reply(&bob, proxy, answer(&inv_b, 180, "bb", &bob.contact())).await;
    assert_eq!(alice.response_for(Method::Invite).await.status, 180);
    let r = alice.response_for(Method::Invite).await;
    assert_eq!(r.status, 480);
    alice.ack_non_2xx(&inv, &r).await;
    let cancel = loop {
        let (r, f) = bob.request(5.0).await;
        if r.method == Method::Cancel {
            break (r, f);
        }
    };
    assert_eq!(cancel.0.headers.call_id().unwrap(), alice.call_id);
}

#[tokio::test]
async fn foreign_domain_needs_authentication_and_a_matching_from() {
    let lab = Lab::start(|_| {}).await;
    let mut ua = lab.ua("alice").await;
    let target = "sip:someone@example.invalid";
    let mut inv = ua.invite(target);
    inv.headers.set(
        HeaderName::From,
        format!("<sip:mallory@evil.invalid>;tag={}", rand_token()),
    );
    ua.send(&Message::Request(inv.clone())).await;
    let r = ua.response().await;
    assert_eq!(r.status, 407, "no open relay: challenge first");
    assert_eq!(r.headers.count(&HeaderName::ProxyAuthenticate), 2);
    ua.ack_non_2xx(&inv, &r).await;
    // Valid credentials of alice, but From claims someone else: 403.
    let inv2 = ua.authorize(&inv, &r, None);
    ua.send(&Message::Request(inv2.clone())).await;
    let r = ua.response().await;
    assert_eq!(r.status, 403);
    ua.ack_non_2xx(&inv2, &r).await;
}

#[tokio::test]
async fn message_is_forwarded_to_a_registered_user() {
    let lab = Lab::start(|_| {}).await;
    let mut bob = lab.ua("bob").await;
    bob.register_self().await;
    let alice = lab.ua("alice").await;
    let text = format!(
        "MESSAGE sip:bob@{DOMAIN} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@{DOMAIN}>;tag=1\r\nTo: <sip:bob@{DOMAIN}>\r\nCall-ID: {}\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
        alice.via(),
        rand_token()
    );
    alice.send_text(&text).await;
    let r = alice.response().await;
    assert_eq!(r.status, 407);
    let mut alice = alice;
    let req = Request::parse(bytes::Bytes::from(text)).unwrap();
    let req = alice.authorize(&req, &r, None);
    alice.send(&Message::Request(req)).await;
    let (msg, proxy) = bob.request(5.0).await;
    assert_eq!(msg.method, Method::Message);
    assert_eq!(&msg.body[..], b"hello");
    assert!(
        msg.headers.get(&HeaderName::RecordRoute).is_none(),
        "MESSAGE creates no dialog"
    );
    // A slow answer still gets through (no CANCEL grace timer for non-INVITE).
    tokio::time::sleep(std::time::Duration::from_millis(4300)).await;
    reply(&bob, proxy, answer(&msg, 200, "bm", &bob.contact())).await;
    assert_eq!(alice.response().await.status, 200);
}

#[tokio::test]
async fn tcp_callee_is_reached_over_its_registration_connection() {
    let lab = Lab::start(|_| {}).await;
    let mut bob = Ua::new_tcp("bob", "bobpw", lab.tcp).await;
    bob.register_self().await;
    let mut alice = lab.ua("alice").await;
    let invite = alice.call(&format!("sip:bob@{DOMAIN}")).await;

    let (inv_b, proxy) = bob.request(5.0).await;
    assert_eq!(inv_b.method, Method::Invite);
    let rr = inv_b.headers.values(&HeaderName::RecordRoute);
    assert_eq!(
        rr.len(),
        2,
        "double Record-Route for UDP in, TCP out: {rr:?}"
    );
    assert!(rr[0].contains("transport=tcp"), "{rr:?}");
    assert!(rr[1].contains("transport=udp"), "{rr:?}");

    reply(&bob, proxy, answer(&inv_b, 200, "bt", &bob.contact())).await;
    let ok = alice.response_for(Method::Invite).await;
    assert_eq!(ok.status, 200);
    let ack = alice.in_dialog(Method::Ack, &invite, &ok);
    alice.send(&Message::Request(ack)).await;
    let (ack_b, _) = bob.request(5.0).await;
    assert_eq!(ack_b.method, Method::Ack);

    // The callee hangs up: its BYE follows the Record-Route back to the UDP caller.
    let bye = callee_request(&bob, Method::Bye, &inv_b, "bt", 1);
    bob.send(&Message::Request(bye)).await;
    let (bye_a, from) = alice.request(5.0).await;
    assert_eq!(bye_a.method, Method::Bye);
    assert!(bye_a.headers.get(&HeaderName::Route).is_none());
    alice
        .send_to(
            &Message::Response(answer(&bye_a, 200, "x", &alice.contact())),
            from,
        )
        .await;
    assert_eq!(bob.response_for(Method::Bye).await.status, 200);
    let cdr = wait_cdr(&lab, &alice.call_id, |c| c.end_at.is_some()).await;
    assert_eq!(cdr.cause, "answered");
}

#[tokio::test]
async fn third_party_contact_is_not_sent_over_the_registering_connection() {
    let lab = Lab::start(|c| c.registrar.third_party = vec!["labuser".to_string()]).await;
    let uas = lab.ua("bob").await;
    let mut registrar_client = Ua::new_tcp("labuser", "labuserpw", lab.tcp).await;
    let req = registrar_client.register_request(
        Some("bob"),
        &[format!("<{}>", uas.contact())],
        Some(600),
    );
    registrar_client.send(&Message::Request(req.clone())).await;
    let ch = registrar_client.response().await;
    let req = registrar_client.authorize(&req, &ch, None);
    registrar_client.send(&Message::Request(req)).await;
    assert_eq!(registrar_client.response().await.status, 200);

    let mut alice = lab.ua("alice").await;
    alice.call(&format!("sip:bob@{DOMAIN}")).await;
    let (inv, proxy) = uas.request(5.0).await;
    assert_eq!(inv.method, Method::Invite);
    assert!(
        registrar_client.recv_within(0.3).await.is_none(),
        "nothing goes to the registering client's connection"
    );
    reply(&uas, proxy, answer(&inv, 486, "u", &uas.contact())).await;
    assert_eq!(alice.response_for(Method::Invite).await.status, 486);
}

#[tokio::test]
async fn a_6xx_cancels_the_other_branches_and_wins() {
    let lab = Lab::start(|_| {}).await;
    let mut bob1 = lab.ua("bob").await;
    let mut bob2 = lab.ua("bob").await;
    bob1.register_self().await;
    bob2.register_self().await;
    let mut alice = lab.ua("alice").await;
    let inv = alice.call(&format!("sip:bob@{DOMAIN}")).await;
    let (inv1, proxy1) = bob1.request(5.0).await;
    let (inv2, proxy2) = bob2.request(5.0).await;
    reply(&bob2, proxy2, answer(&inv2, 180, "b2", &bob2.contact())).await;
    reply(&bob1, proxy1, answer(&inv1, 603, "b1", &bob1.contact())).await;
    let (cancel, from) = loop {
        let (r, f) = bob2.request(5.0).await;
        if r.method == Method::Cancel {
            break (r, f);
        }
    };
    reply(&bob2, from, answer(&cancel, 200, "b2", &bob2.contact())).await;
    reply(&bob2, proxy2, answer(&inv2, 487, "b2", &bob2.contact())).await;
    let r = loop {
        let r = alice.response_for(Method::Invite).await;
        if r.status >= 200 {
            break r;
        }
    };
    assert_eq!(r.status, 603);
    alice.ack_non_2xx(&inv, &r).await;
    let cdr = wait_cdr(&lab, &alice.call_id, |_| true).await;
    assert_eq!(cdr.cause, "failed:603");
}

#[tokio::test]
async fn tls_callee_gets_the_call_over_its_tls_connection() {
    let lab =
        Lab::start(|c| c.listen.tls = vec![std::net::SocketAddr::from(([127, 0, 0, 1], 0))]).await;
    let tls = lab.tls.expect("TLS listener");
    let mut bob = Ua::new_tls("bob", "bobpw", tls, lab.tls_client.clone().unwrap()).await;
    bob.register_self().await;
    let mut alice = lab.ua("alice").await;
    alice.call(&format!("sip:bob@{DOMAIN}")).await;
    let (inv, proxy) = bob.request(5.0).await;
    assert_eq!(inv.method, Method::Invite);
    let rr = inv.headers.values(&HeaderName::RecordRoute);
    assert_eq!(rr.len(), 2, "{rr:?}");
    assert!(rr[0].contains("transport=tls"), "{rr:?}");
    reply(&bob, proxy, answer(&inv, 486, "bt", &bob.contact())).await;
    assert_eq!(alice.response_for(Method::Invite).await.status, 486);
}

#[tokio::test]
async fn a_request_that_comes_back_unchanged_is_a_loop() {
    let lab = Lab::start(|c| c.auth.trusted = vec!["127.0.0.0/8".parse().unwrap()]).await;
    let alice = lab.ua("alice").await;
    // A broken next hop that sends every request straight back to the proxy.
    let bouncer = lab.ua("bouncer").await;
    let text = format!(
        "MESSAGE sip:x@{} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@{DOMAIN}>;tag=1\r\nTo: <sip:x@{}>\r\nCall-ID: {}\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n",
        bouncer.addr,
        alice.via(),
        bouncer.addr,
        rand_token()
    );
    alice.send_text(&text).await;
    let (fwd, proxy) = bouncer.request(5.0).await;
    assert_eq!(fwd.headers.vias().unwrap().len(), 2);
    bouncer.send_to(&Message::Request(fwd), proxy).await;
    // The proxy answers its own looped copy with 482; the bouncer relays that back too.
    let looped = bouncer.response().await;
    assert_eq!(looped.status, 482);
    bouncer.send_to(&Message::Response(looped), proxy).await;
    let r = alice.response().await;
    assert_eq!(r.status, 482);
}
