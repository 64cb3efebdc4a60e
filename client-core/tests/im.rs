//! Page-mode instant messages between two user agents over loopback, and raw MESSAGEs from
//! an in-test peer (redelivery duplicates, unsupported types).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod peer;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use peer::{Peer, PeerConfig, fast_tx, final_status};
use tandem_client_core::types::simple::imdn::{
    DeliveryStatus, DisplayStatus, Disposition, Notification,
};
use tandem_client_core::types::simple::iscomposing::ComposingState;
use tandem_client_core::types::{DnsConfig, Transport};
use tandem_client_core::{
    Account, OutgoingMessage, ReceivedMessage, UaConfig, UaError, UaEvent, UaEvents, UserAgent,
};
use tandem_net::Target;
use tandem_proto::msg::{HeaderName, Method, Request, Uri};
use tokio::time::timeout;

async fn ua(history: Option<PathBuf>) -> (UserAgent, UaEvents) {
    let config = UaConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        transport: Transport::Udp,
        dns: DnsConfig::Disabled,
        tx: fast_tx(),
        seed: rand_seed(),
        history,
        ..UaConfig::default()
    };
    UserAgent::new(config).await.unwrap()
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        .into()
}

/// `user`'s account on `me`, sending everything straight to `peer`.
fn account(user: &str, peer: &UserAgent) -> Account {
    let mut a = Account::new(user, "127.0.0.1");
    a.proxy = Some(peer.contact_uri(None));
    a
}

fn uri_of(user: &str, ua: &UserAgent) -> Uri {
    ua.contact_uri(Some(user))
}

async fn next_event(events: &mut UaEvents) -> UaEvent {
    timeout(Duration::from_secs(10), events.next())
        .await
        .expect("timed out waiting for a UA event")
        .expect("UA events ended")
}

async fn next_message(events: &mut UaEvents) -> ReceivedMessage {
    match next_event(events).await {
        UaEvent::Message(m) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

#[tokio::test]
async fn text_message_both_ways() {
    let (alice, mut alice_ev) = ua(None).await;
    let (bob, mut bob_ev) = ua(None).await;
    let a = account("alice", &bob);
    let b = account("bob", &alice);
    let out = alice
        .send_message(&a, uri_of("bob", &bob), OutgoingMessage::text("hello bob"))
        .await
        .unwrap();
    assert_eq!(out.status, 200);
    assert!(!out.stored);
    let m = next_message(&mut bob_ev).await;
    assert_eq!(m.text().as_deref(), Some("hello bob"));
    assert!(m.from.starts_with("sip:alice@127.0.0.1"), "{}", m.from);
    assert!(!m.cpim);
    assert!(m.imdn_requested.is_empty());
    assert_eq!(m.message_id, out.call_id);

    bob.send_message(
        &b,
        uri_of("alice", &alice),
        OutgoingMessage::text("hi alice"),
    )
    .await
    .unwrap();
    let m = next_message(&mut alice_ev).await;
    assert_eq!(m.text().as_deref(), Some("hi alice"));
}

#[tokio::test]
async fn cpim_with_imdn_delivery_and_display() {
    let (alice, mut alice_ev) = ua(None).await;
    let (bob, mut bob_ev) = ua(None).await;
    let a = account("alice", &bob);
    let b = account("bob", &alice);
    // Bob's UA knows his account, so it answers positive-delivery requests on its own.
    bob.add_account(&b);
    let out = alice
        .send_message(
            &a,
            uri_of("bob", &bob),
            OutgoingMessage::cpim_text(
                "über CPIM",
                &[Disposition::PositiveDelivery, Disposition::Display],
            ),
        )
        .await
        .unwrap();
    let m = next_message(&mut bob_ev).await;
    assert!(m.cpim);
    assert_eq!(m.text().as_deref(), Some("über CPIM"));
    assert_eq!(m.message_id, out.message_id);
    assert_ne!(m.message_id, out.call_id);
    assert_eq!(m.datetime.as_deref(), Some(out.datetime.as_str()));
    assert_eq!(
        m.imdn_requested,
        vec![Disposition::PositiveDelivery, Disposition::Display]
    );

    match next_event(&mut alice_ev).await {
        UaEvent::Imdn { from, imdn } => {
            assert!(from.starts_with("sip:bob@"), "{from}");
            assert_eq!(imdn.message_id, out.message_id);
            assert_eq!(
                imdn.notification,
                Notification::Delivery(DeliveryStatus::Delivered)
            );
        }
        other => panic!("expected a delivery IMDN, got {other:?}"),
    }

    // The user read it: a display notification, sent explicitly.
    bob.send_imdn(&b, &m, Notification::Display(DisplayStatus::Displayed))
        .await
        .unwrap();
    match next_event(&mut alice_ev).await {
        UaEvent::Imdn { imdn, .. } => {
            assert_eq!(imdn.message_id, out.message_id);
            assert_eq!(
                imdn.notification,
                Notification::Display(DisplayStatus::Displayed)
            );
        }
        other => panic!("expected a display IMDN, got {other:?}"),
    }

    // A notification that was not asked for is refused locally.
    let plain = OutgoingMessage::cpim_text("no receipts", &[]);
    alice
        .send_message(&a, uri_of("bob", &bob), plain)
        .await
        .unwrap();
    let m2 = next_message(&mut bob_ev).await;
    let err = bob
        .send_imdn(&b, &m2, Notification::Display(DisplayStatus::Displayed))
        .await
        .unwrap_err();
    assert!(matches!(err, UaError::Config(_)), "{err:?}");
}

#[tokio::test]
async fn composing_indication() {
    let (alice, _alice_ev) = ua(None).await;
    let (bob, mut bob_ev) = ua(None).await;
    let a = account("alice", &bob);
    alice
        .send_composing(&a, uri_of("bob", &bob), ComposingState::Active, Some(60))
        .await
        .unwrap();
    match next_event(&mut bob_ev).await {
        UaEvent::Composing { from, state } => {
            assert!(from.starts_with("sip:alice@"));
            assert_eq!(state.state, ComposingState::Active);
            assert_eq!(state.refresh, Some(60));
        }
        other => panic!("expected composing, got {other:?}"),
    }
    alice
        .send_composing(&a, uri_of("bob", &bob), ComposingState::Idle, None)
        .await
        .unwrap();
    match next_event(&mut bob_ev).await {
        UaEvent::Composing { state, .. } => assert_eq!(state.state, ComposingState::Idle),
        other => panic!("expected composing, got {other:?}"),
    }
}

fn raw_message(
    to: &Uri,
    call_id: &str,
    content_type: &str,
    body: &str,
    extra: &[(&str, &str)],
) -> Request {
    let mut req = Request::new(Method::Message, to.clone());
    let h = &mut req.headers;
    h.push(HeaderName::MaxForwards, "70");
    h.push(HeaderName::To, format!("<{to}>"));
    h.push(HeaderName::From, "<sip:carol@tandem.test>;tag=c1");
    h.push(HeaderName::CallId, call_id.to_string());
    h.push(HeaderName::CSeq, "1 MESSAGE");
    h.push(HeaderName::ContentType, content_type.to_string());
    for (n, v) in extra {
        h.push(HeaderName::parse(n), v.to_string());
    }
    req.body = Bytes::from(body.to_string());
    req
}

#[tokio::test]
async fn redelivered_messages_are_dropped_and_unknown_types_refused() {
    let (bob, mut bob_ev) = ua(None).await;
    let peer = Peer::start(Transport::Udp, PeerConfig::default()).await;
    let to = uri_of("bob", &bob);
    let target = || Target::Uri(bob.contact_uri(None));

    // The lab redelivers a stored message after a crash: same stored id, new Call-ID.
    for call_id in ["s1-a", "s1-b"] {
        let req = raw_message(
            &to,
            call_id,
            "text/plain",
            "stored one",
            &[("Tandem-Stored-Id", "42")],
        );
        assert_eq!(final_status(&peer.endpoint, req, target()).await, 200);
    }
    // A CPIM message resent with the same imdn.Message-ID is a duplicate too.
    let cpim = "From: <sip:carol@tandem.test>\r\nTo: <sip:bob@tandem.test>\r\n\
                NS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: Zx9\r\n\
                DateTime: 2026-11-27T10:00:00Z\r\n\r\nContent-Type: text/plain\r\n\r\ncpim one";
    for call_id in ["c1-a", "c1-b"] {
        let req = raw_message(&to, call_id, "message/cpim", cpim, &[]);
        assert_eq!(final_status(&peer.endpoint, req, target()).await, 200);
    }
    let req = raw_message(&to, "last", "text/plain", "after", &[]);
    assert_eq!(final_status(&peer.endpoint, req, target()).await, 200);

    let m = next_message(&mut bob_ev).await;
    assert_eq!(m.text().as_deref(), Some("stored one"));
    assert_eq!(m.stored_id.as_deref(), Some("42"));
    let m = next_message(&mut bob_ev).await;
    assert_eq!(m.text().as_deref(), Some("cpim one"));
    assert_eq!(m.message_id, "Zx9");
    assert_eq!(m.datetime.as_deref(), Some("2026-11-27T10:00:00Z"));
    let m = next_message(&mut bob_ev).await;
    assert_eq!(
        m.text().as_deref(),
        Some("after"),
        "a duplicate was delivered"
    );

    // Types we do not take: 415; broken CPIM: 400.
    let req = raw_message(&to, "x1", "application/octet-stream", "\u{1}\u{2}", &[]);
    assert_eq!(final_status(&peer.endpoint, req, target()).await, 415);
    let req = raw_message(&to, "x2", "message/cpim", "garbage without blank line", &[]);
    assert_eq!(final_status(&peer.endpoint, req, target()).await, 400);
    assert!(
        timeout(Duration::from_millis(300), bob_ev.next())
            .await
            .is_err(),
        "refused messages must not be delivered"
    );
}

#[tokio::test]
async fn rejected_message_is_an_error() {
    let (alice, _ev) = ua(None).await;
    // A peer that challenges: alice has no password, so the MESSAGE fails with AuthFailed.
    let peer = Peer::start(Transport::Udp, PeerConfig::default()).await;
    let mut a = Account::new("alice", "tandem.test");
    a.proxy = Some(peer.uri(None));
    let err = alice
        .send_message(&a, peer.uri(Some("bob")), OutgoingMessage::text("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, UaError::AuthFailed { .. } | UaError::Rejected { .. }),
        "{err:?}"
    );
    // IMDN requests without CPIM are a usage error.
    let mut bad = OutgoingMessage::text("x");
    bad.imdn = vec![Disposition::Display];
    let err = alice
        .send_message(&a, peer.uri(Some("bob")), bad)
        .await
        .unwrap_err();
    assert!(matches!(err, UaError::Config(_)));
}

#[tokio::test]
async fn history_records_and_searches() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, _alice_ev) = ua(Some(dir.path().join("alice.db"))).await;
    let (bob, mut bob_ev) = ua(Some(dir.path().join("bob/history.db"))).await;
    let a = account("alice", &bob);
    for text in ["first note", "second NOTE", "unrelated"] {
        alice
            .send_message(&a, uri_of("bob", &bob), OutgoingMessage::text(text))
            .await
            .unwrap();
        next_message(&mut bob_ev).await;
    }
    let ah = alice.history().unwrap();
    let sent = ah
        .messages_with(&uri_of("bob", &bob).to_string(), 10)
        .await
        .unwrap();
    let texts: Vec<_> = sent.iter().filter_map(|m| m.text()).collect();
    assert_eq!(texts, ["first note", "second NOTE", "unrelated"]);
    assert_eq!(ah.messages_with(&sent[0].peer, 2).await.unwrap().len(), 2);

    // Bob records in the background after answering: wait for it.
    let bh = bob.history().unwrap();
    let mut found = Vec::new();
    for _ in 0..50 {
        found = bh.search_messages("note", 10).await.unwrap();
        if found.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let texts: Vec<_> = found.iter().filter_map(|m| m.text()).collect();
    assert_eq!(texts, ["first note", "second NOTE"]);
    assert!(bh.search_messages("100%", 10).await.unwrap().is_empty());

    // A delivery notification marks the sent message delivered in the sender's history.
    let (alice2, mut alice2_ev) = ua(Some(dir.path().join("alice2.db"))).await;
    let a2 = account("alice", &bob);
    bob.add_account(&account("bob", &alice2));
    let out = alice2
        .send_message(
            &a2,
            uri_of("bob", &bob),
            OutgoingMessage::cpim_text("receipt please", &[Disposition::PositiveDelivery]),
        )
        .await
        .unwrap();
    next_message(&mut bob_ev).await;
    assert!(matches!(
        next_event(&mut alice2_ev).await,
        UaEvent::Imdn { .. }
    ));
    let h2 = alice2.history().unwrap();
    let mut status = String::new();
    for _ in 0..50 {
        let rows = h2.search_messages("receipt", 10).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].message_id, out.message_id);
        status = rows[0].status.clone();
        if status == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "delivered");

    // Reopening the same file keeps everything (the migration is idempotent).
    let path = dir.path().join("alice.db");
    let again = tandem_client_core::History::open(&path).await.unwrap();
    assert_eq!(again.search_messages("note", 10).await.unwrap().len(), 2);
}
