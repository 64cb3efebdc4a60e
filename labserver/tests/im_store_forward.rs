//! Page-mode MESSAGE store-and-forward against an in-process lab: raw SIP over loopback UDP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod im_util;
mod sip_util;

use std::collections::{HashMap, HashSet};

use im_util::{BOB, CloneUa, assert_quiet, body, message, stored_id, submit, take_message};
use sip_util::Lab;
use tandem_proto::msg::{HeaderName, Message, Method};

#[tokio::test]
async fn offline_messages_are_stored_and_delivered_in_order_on_register() {
    let mut lab = Lab::start(|_| {}).await;
    let mut alice = lab.ua("alice").await;
    for i in 0..5 {
        let req = message(&mut alice, BOB, "text/plain", &format!("hello {i}"));
        let (r, _) = submit(&mut alice, req).await;
        assert_eq!(r.status, 202, "message {i}: {}", r.reason);
        assert!(r.headers.to().unwrap().tag().is_some());
    }
    // A message/cpim body is stored byte for byte.
    let cpim = "From: <sip:alice@tandem.lab>\r\nTo: <sip:bob@tandem.lab>\r\nDateTime: 2000-12-13T13:40:00-08:00\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: 34jk324j\r\n\r\nContent-Type: text/plain\r\n\r\ncpim body";
    let req = message(&mut alice, BOB, "message/cpim", cpim);
    assert_eq!(submit(&mut alice, req).await.0.status, 202);
    let stored = lab.store.list_stored_messages(BOB).await.unwrap();
    assert_eq!(stored.len(), 6);
    assert!(stored.windows(2).all(|w| w[0].seq < w[1].seq));

    // Stored messages survive a restart of the server.
    lab.stop().await;
    lab.boot().await;

    let mut bob = lab.ua("bob").await;
    bob.register_self().await;
    let mut seen = HashMap::new();
    let mut ids = HashSet::new();
    for i in 0..5 {
        let req = take_message(&bob, &mut seen, 200).await;
        assert_eq!(body(&req), format!("hello {i}"));
        assert_eq!(req.uri.user.as_deref(), Some("bob"));
        let from = req.headers.from().unwrap();
        assert_eq!(from.uri.to_string(), "sip:alice@tandem.lab");
        assert_eq!(from.display.as_deref(), Some("Alice A"));
        assert_eq!(req.headers.content_type(), Some("text/plain"));
        assert!(req.headers.contains(&HeaderName::Date));
        assert!(ids.insert(stored_id(&req).unwrap()));
    }
    let req = take_message(&bob, &mut seen, 200).await;
    assert_eq!(req.headers.content_type(), Some("message/cpim"));
    assert_eq!(body(&req), cpim);
    // Nothing more, and the store is empty.
    assert_quiet(&bob, &mut seen, 1.5).await;
    assert!(
        lab.store
            .list_stored_messages(BOB)
            .await
            .unwrap()
            .is_empty()
    );

    // With nothing stored, a MESSAGE to a registered user is forwarded live and its 200 relayed.
    let mut alice = lab.ua("alice").await;
    let req = message(&mut alice, BOB, "text/plain", "live");
    let sender = tokio::spawn(async move { submit(&mut alice, req).await.0.status });
    let req = take_message(&bob, &mut seen, 200).await;
    assert_eq!(body(&req), "live");
    assert_eq!(stored_id(&req), None);
    assert_eq!(sender.await.unwrap(), 200);
    lab.stop().await;
}

#[tokio::test]
async fn failures_are_retried_refusals_relayed_and_resubmissions_stored_once() {
    let mut lab = Lab::start(|c| {
        c.im.retry_initial_secs = 1;
        c.im.retry_max_secs = 1;
    })
    .await;
    let mut alice = lab.ua("alice").await;
    let mut bob = lab.ua("bob").await;
    bob.register_self().await;
    let mut seen = HashMap::new();

    // A live MESSAGE the UA refuses with 415 is relayed, not stored.
    let req = message(&mut alice, BOB, "application/x-odd", "odd");
    let mut a2 = alice.clone_ua().await;
    let sender = tokio::spawn(async move { submit(&mut a2, req).await.0.status });
    take_message(&bob, &mut seen, 415).await;
    assert_eq!(sender.await.unwrap(), 415);
    assert!(
        lab.store
            .list_stored_messages(BOB)
            .await
            .unwrap()
            .is_empty()
    );

    // A live MESSAGE the UA answers 480 is stored (202) and retried at once, same identity.
    let req = message(&mut alice, BOB, "text/plain", "first");
    let mut a2 = alice.clone_ua().await;
    let sender = tokio::spawn(async move { submit(&mut a2, req).await.0.status });
    let live = take_message(&bob, &mut seen, 480).await;
    assert_eq!(stored_id(&live), None);
    assert_eq!(sender.await.unwrap(), 202);
    let retry = take_message(&bob, &mut seen, 480).await;
    assert_eq!(body(&retry), "first");
    let stored = lab.store.list_stored_messages(BOB).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored_id(&retry), Some(stored[0].stored_id.clone()));
    assert!(stored[0].attempts >= 1);

    // While one is stored, a new MESSAGE queues behind it (no overtaking): 202 at once.
    let req = message(&mut alice, BOB, "text/plain", "second");
    let (resp, sent) = submit(&mut alice, req).await;
    assert_eq!(resp.status, 202);
    // The same submission again in a new transaction (a sender retrying after a lost 202):
    // answered 202, stored once.
    let mut again = sent.clone();
    again.headers.set(HeaderName::Via, alice.via());
    alice.send(&Message::Request(again.clone())).await;
    let mut r = alice.response_for(Method::Message).await;
    if r.status == 407 {
        // The nonce count was used: new credentials, same CSeq (they do not cover it).
        let mut authed = alice.authorize(&again, &r, None);
        authed.headers.set(
            HeaderName::CSeq,
            sent.headers.get(&HeaderName::CSeq).unwrap().clone(),
        );
        alice.send(&Message::Request(authed)).await;
        r = alice.response_for(Method::Message).await;
    }
    assert_eq!(r.status, 202);
    assert_eq!(lab.store.list_stored_messages(BOB).await.unwrap().len(), 2);

    // Bob accepts: both arrive in order, "first" with the identity of its earlier attempts.
    let mut got = Vec::new();
    while got.len() < 2 {
        let m = take_message(&bob, &mut seen, 200).await;
        if got.is_empty() && body(&m) == "first" && stored_id(&m) == stored_id(&retry) {
            assert_eq!(
                m.headers.call_id().unwrap(),
                retry.headers.call_id().unwrap()
            );
            assert!(m.headers.cseq().unwrap().seq > retry.headers.cseq().unwrap().seq);
        }
        got.push(body(&m));
    }
    assert_eq!(got, ["first", "second"]);
    assert_quiet(&bob, &mut seen, 1.5).await;
    assert!(
        lab.store
            .list_stored_messages(BOB)
            .await
            .unwrap()
            .is_empty()
    );

    // A stored message every device refuses for good (415) is dropped, the next one delivered.
    let r = bob
        .register(&[format!("<{}>", bob.contact())], Some(0))
        .await;
    assert_eq!(r.status, 200);
    for text in ["refused", "after"] {
        let req = message(&mut alice, BOB, "text/plain", text);
        assert_eq!(submit(&mut alice, req).await.0.status, 202);
    }
    bob.register_self().await;
    assert_eq!(body(&take_message(&bob, &mut seen, 415).await), "refused");
    assert_eq!(body(&take_message(&bob, &mut seen, 200).await), "after");
    assert_quiet(&bob, &mut seen, 1.5).await;
    assert!(
        lab.store
            .list_stored_messages(BOB)
            .await
            .unwrap()
            .is_empty()
    );
    lab.stop().await;
}

#[tokio::test]
async fn quota_unknown_users_and_disabled_store() {
    let mut lab = Lab::start(|c| c.im.max_per_user = 3).await;
    let mut alice = lab.ua("alice").await;
    for i in 0..3 {
        let req = message(&mut alice, BOB, "text/plain", &format!("q{i}"));
        assert_eq!(submit(&mut alice, req).await.0.status, 202);
    }
    let req = message(&mut alice, BOB, "text/plain", "over");
    assert_eq!(submit(&mut alice, req).await.0.status, 486);
    assert_eq!(lab.store.list_stored_messages(BOB).await.unwrap().len(), 3);
    // An unknown user is not stored for.
    let req = message(&mut alice, "sip:nobody@tandem.lab", "text/plain", "x");
    assert_eq!(submit(&mut alice, req).await.0.status, 404);
    lab.stop().await;

    let mut lab = Lab::start(|c| c.im.enabled = false).await;
    let mut alice = lab.ua("alice").await;
    let req = message(&mut alice, BOB, "text/plain", "x");
    assert_eq!(submit(&mut alice, req).await.0.status, 480);
    assert!(
        lab.store
            .list_stored_messages(BOB)
            .await
            .unwrap()
            .is_empty()
    );
    lab.stop().await;
}
