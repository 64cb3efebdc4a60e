//! The lab's presence agent over raw SIP on loopback: PUBLISH from two devices composed,
//! refresh/modify/remove and expiry, the PUBLISH error answers, SUBSCRIBE authorised by
//! pres-rules written over XCAP (allow, polite-block, block, confirm → pending with a
//! watcher-info NOTIFY to the presentity), re-evaluation when the rules change, refresh,
//! unsubscribe, expiry and a watcher that answers 481.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "presence_peer.rs"]
mod presence_peer;
#[path = "xcap_http.rs"]
mod xcap_http;

use std::time::Duration;

use presence_peer::{
    DOMAIN, Lab, Peer, body, etag, notes, pidf_doc, rules_doc, store_rules, subscription_state,
};
use tandem_proto::msg::{HeaderName, Message, Request};
use tandem_proto::simple::pidf::{self, Basic};
use tandem_proto::simple::watcherinfo::{WatcherInfo, WatcherStatus};
use xcap_http::{HttpReply, XcapClient, xcap_addr};

#[tokio::test]
async fn publications_of_two_devices_are_composed_modified_and_expire() {
    let lab = Lab::start(|c| c.presence.min_expires = 1).await;
    store_rules(&lab, "alice", &[("bob", "allow")]).await;
    let mut desk = Peer::new(&lab, "alice").await;
    let mut phone = Peer::new(&lab, "alice").await;
    let mut bob = Peer::new(&lab, "bob").await;

    let doc = pidf_doc("alice", "desk", "open", "at the desk");
    let r = desk
        .publish_presence("alice", None, Some(60), Some(doc.as_str()))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.expires().unwrap(), Some(60));
    let e1 = etag(&r);

    let (r, _) = bob.subscribe("alice", "presence", 60).await;
    assert_eq!(r.status, 200);
    let n = bob.notify().await;
    assert!(subscription_state(&n).starts_with("active"), "{n:?}");
    assert_eq!(n.headers.content_type(), Some("application/pidf+xml"));
    assert_eq!(notes(&n), ["at the desk"]);

    // A second device with a short publication: both are composed.
    let doc = pidf_doc("alice", "phone", "open", "on the phone app");
    let r = phone
        .publish_presence("alice", None, Some(2), Some(doc.as_str()))
        .await;
    assert_eq!(r.status, 200);
    let n = bob.notify().await;
    assert_eq!(notes(&n), ["at the desk", "on the phone app"]);

    // The phone's publication expires: the watcher hears about it.
    let n = bob.notify().await;
    assert_eq!(notes(&n), ["at the desk"]);

    // Modify (new body under the entity tag): a new tag, a NOTIFY.
    let doc = pidf_doc("alice", "desk", "open", "back soon");
    let r = desk
        .publish_presence("alice", Some(e1.as_str()), Some(60), Some(doc.as_str()))
        .await;
    assert_eq!(r.status, 200);
    let e2 = etag(&r);
    assert_ne!(e1, e2);
    let n = bob.notify().await;
    assert_eq!(notes(&n), ["back soon"]);

    // Refresh with the old tag: 412; with the new one: 200, no NOTIFY (nothing changed).
    let r = desk
        .publish_presence("alice", Some(e1.as_str()), None, None)
        .await;
    assert_eq!(r.status, 412);
    let r = desk
        .publish_presence("alice", Some(e2.as_str()), Some(30), None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.expires().unwrap(), Some(30));
    let e3 = etag(&r);
    assert!(
        bob.next_notify(0.5).await.is_none(),
        "a refresh changes no state"
    );

    // Remove: the presentity is offline again.
    let r = desk
        .publish_presence("alice", Some(e3.as_str()), Some(0), None)
        .await;
    assert_eq!(r.status, 200);
    let n = bob.notify().await;
    let p = pidf::parse(&n.body).unwrap();
    assert!(notes(&n).is_empty());
    assert!(
        p.tuples
            .iter()
            .all(|t| t.status.basic == Some(Basic::Closed)),
        "{p:?}"
    );
}

#[tokio::test]
async fn publish_errors() {
    let lab = Lab::start(|_| {}).await;
    let mut alice = Peer::new(&lab, "alice").await;
    let mut bob = Peer::new(&lab, "bob").await;
    let doc = pidf_doc("alice", "t", "open", "x");
    let pidf_ct = "application/pidf+xml";

    // Unauthenticated: challenged.
    let aor = format!("sip:alice@{DOMAIN}");
    let req = alice.request(
        "PUBLISH",
        &aor,
        &format!("<{aor}>"),
        "c1@test",
        "t1",
        &["Event: presence".into()],
        Some((pidf_ct, &doc)),
    );
    alice.ua.send(&Message::Request(req)).await;
    assert_eq!(alice.ua.response().await.status, 407);

    let r = alice
        .publish("alice", &["Event: dialog".into()], Some((pidf_ct, &doc)))
        .await;
    assert_eq!(r.status, 489);
    let r = alice
        .publish(
            "alice",
            &["Event: presence".into()],
            Some(("text/plain", "hello")),
        )
        .await;
    assert_eq!(r.status, 415);
    let r = alice
        .publish(
            "alice",
            &["Event: presence".into()],
            Some((pidf_ct, "<presence")),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = alice
        .publish(
            "alice",
            &["Event: presence".into(), "Expires: 10".into()],
            Some((pidf_ct, &doc)),
        )
        .await;
    assert_eq!(r.status, 423);
    assert_eq!(r.headers.get_str(&HeaderName::MinExpires), Some("60"));
    let r = alice
        .publish_presence("alice", Some("nosuchtag"), None, None)
        .await;
    assert_eq!(r.status, 412);
    let r = alice.publish_presence("alice", None, None, None).await;
    assert_eq!(r.status, 400, "an initial PUBLISH needs a body");
    let r = bob
        .publish_presence("alice", None, None, Some(doc.as_str()))
        .await;
    assert_eq!(r.status, 403, "only alice publishes alice");
    let r = alice
        .publish_presence("zed", None, None, Some(doc.as_str()))
        .await;
    assert_eq!(r.status, 404);
    let r = alice
        .publish_presence("alice", None, None, Some(doc.as_str()))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.expires().unwrap(), Some(3600));
    // A SUBSCRIBE for another package is the devices' business: proxied (alice has none: 480).
    let (r, _) = bob.subscribe("alice", "dialog", 60).await;
    assert_eq!(r.status, 480);
    // Only alice may watch alice's watchers.
    let (r, _) = bob.subscribe("alice", "presence.winfo", 60).await;
    assert_eq!(r.status, 403);
}

/// PUTs alice's pres-rules document with `rules` (watcher, action) to `path`, conditional on
/// the entity tag `etag` when given.
async fn put_rules(
    xcap: &XcapClient,
    path: &str,
    rules: &[(&str, &str)],
    etag: Option<&str>,
) -> HttpReply {
    let if_match = etag.map(|e| format!("\"{e}\""));
    xcap.put(
        path,
        Some(("alice", "alicepw")),
        "application/auth-policy+xml",
        if_match.as_deref().map(|v| ("If-Match", v)),
        &rules_doc(rules),
    )
    .await
}

/// Asserts that `n` ends its subscription as rejected, without state.
fn assert_rejected(n: &Request) {
    assert_eq!(subscription_state(n), "terminated;reason=rejected");
    assert!(n.body.is_empty());
}

#[tokio::test]
async fn pres_rules_over_xcap_decide_and_watcher_info_tells_the_presentity() {
    let lab = Lab::start(|_| {}).await;
    lab.store.add_user("dave", DOMAIN, "davepw").await.unwrap();
    let xcap = XcapClient::new(
        xcap_addr(&lab.server.as_ref().unwrap().ready_line()),
        lab.dir.path(),
        DOMAIN,
    );
    let rules_path = xcap.user_path("pres-rules", "alice", "index");
    let r = put_rules(
        &xcap,
        &rules_path,
        &[
            ("bob", "allow"),
            ("carol", "polite-block"),
            ("labuser", "block"),
        ],
        None,
    )
    .await;
    assert_eq!(r.status, 201);
    let rules_etag = r.etag();

    let mut alice = Peer::new(&lab, "alice").await;
    let mut alice_watch = Peer::new(&lab, "alice").await;
    let mut bob = Peer::new(&lab, "bob").await;
    let mut carol = Peer::new(&lab, "carol").await;
    let mut mallory = Peer::new(&lab, "labuser").await;
    let mut dave = Peer::new(&lab, "dave").await;
    let secret = pidf_doc("alice", "t", "open", "secret-note");
    let r = alice
        .publish_presence("alice", None, None, Some(secret.as_str()))
        .await;
    assert_eq!(r.status, 200);
    let alice_etag = etag(&r);

    // Alice watches her watchers.
    let (r, _) = alice_watch.subscribe("alice", "presence.winfo", 600).await;
    assert_eq!(r.status, 200);
    let n = alice_watch.notify().await;
    assert_eq!(
        n.headers.content_type(),
        Some("application/watcherinfo+xml")
    );
    let wi = WatcherInfo::parse(&n.body).unwrap();
    assert!(wi.lists.iter().all(|l| l.watchers.is_empty()), "{wi:?}");

    // allow: active with the state.
    let (r, _) = bob.subscribe("alice", "presence", 600).await;
    assert_eq!(r.status, 200);
    let n = bob.notify().await;
    assert!(subscription_state(&n).starts_with("active"));
    assert_eq!(notes(&n), ["secret-note"]);

    // polite-block: active, but alice looks offline.
    let (r, _) = carol.subscribe("alice", "presence", 600).await;
    assert_eq!(r.status, 200);
    let n = carol.notify().await;
    assert!(subscription_state(&n).starts_with("active"));
    let p = pidf::parse(&n.body).unwrap();
    assert!(
        p.tuples
            .iter()
            .all(|t| t.status.basic == Some(Basic::Closed)),
        "{p:?}"
    );
    assert!(!body(&n).contains("secret"));

    // block: rejected, no state.
    let (r, _) = mallory.subscribe("alice", "presence", 600).await;
    assert!(r.status == 200 || r.status == 403, "{}", r.status);
    let n = mallory.notify().await;
    assert_rejected(&n);

    // No rule for dave: confirm → pending, and alice is told.
    let (r, _) = dave.subscribe("alice", "presence", 600).await;
    assert_eq!(r.status, 202);
    let n = dave.notify().await;
    assert!(subscription_state(&n).starts_with("pending"), "{n:?}");
    assert!(n.body.is_empty());
    let dave_uri = format!("sip:dave@{DOMAIN}");
    let watcher_status = |n: &Request, uri: &str| {
        WatcherInfo::parse(&n.body)
            .ok()?
            .lists
            .iter()
            .flat_map(|l| l.watchers.iter())
            .find(|w| w.uri == uri)
            .map(|w| w.status)
    };
    alice_watch
        .notify_until(|n| watcher_status(n, &dave_uri) == Some(WatcherStatus::Pending))
        .await;

    // Alice allows dave over XCAP: dave's subscription becomes active with the state.
    let r = put_rules(
        &xcap,
        &rules_path,
        &[
            ("bob", "allow"),
            ("carol", "polite-block"),
            ("labuser", "block"),
            ("dave", "allow"),
        ],
        Some(&rules_etag),
    )
    .await;
    assert_eq!(r.status, 200);
    let n = dave.notify().await;
    assert!(subscription_state(&n).starts_with("active"), "{n:?}");
    assert_eq!(notes(&n), ["secret-note"]);
    alice_watch
        .notify_until(|n| watcher_status(n, &dave_uri) == Some(WatcherStatus::Active))
        .await;

    // A change reaches the allowed watchers; the polite-blocked one still sees nothing.
    let secret2 = pidf_doc("alice", "t", "open", "secret-two");
    let r = alice
        .publish_presence(
            "alice",
            Some(alice_etag.as_str()),
            None,
            Some(secret2.as_str()),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(notes(&bob.notify().await), ["secret-two"]);
    assert_eq!(notes(&dave.notify().await), ["secret-two"]);
    let n = carol.notify().await;
    assert!(!body(&n).contains("secret"));

    // Alice now blocks bob: his subscription ends, without state.
    let r = xcap
        .send("GET", &rules_path, Some(("alice", "alicepw")), &[], None)
        .await;
    let r = put_rules(
        &xcap,
        &rules_path,
        &[
            ("bob", "block"),
            ("carol", "polite-block"),
            ("labuser", "block"),
            ("dave", "allow"),
        ],
        Some(&r.etag()),
    )
    .await;
    assert_eq!(r.status, 200);
    let n = bob.notify().await;
    assert_rejected(&n);

    // The blocked and polite-blocked watchers never learnt anything.
    mallory.drain(0.5).await;
    carol.drain(0.5).await;
    for seen in mallory.seen.iter().chain(&carol.seen) {
        assert!(!seen.contains("secret"), "{seen}");
    }
}

#[tokio::test]
async fn refresh_unsubscribe_expiry_and_a_vanished_watcher() {
    let lab = Lab::start(|c| c.presence.min_expires = 1).await;
    store_rules(&lab, "alice", &[("bob", "allow"), ("carol", "allow")]).await;
    let mut alice = Peer::new(&lab, "alice").await;
    let mut bob = Peer::new(&lab, "bob").await;
    let mut carol = Peer::new(&lab, "carol").await;

    let (r, d) = bob.subscribe("alice", "presence", 60).await;
    assert_eq!(r.status, 200);
    assert!(subscription_state(&bob.notify().await).starts_with("active"));
    let r = bob.resubscribe(&d, 120).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.expires().unwrap(), Some(120));
    let n = bob.notify().await;
    let state = subscription_state(&n);
    let left: u32 = state.rsplit('=').next().unwrap().parse().unwrap();
    assert!(
        state.starts_with("active;expires=") && (110..=120).contains(&left),
        "{state}"
    );
    let r = bob.resubscribe(&d, 0).await;
    assert_eq!(r.status, 200);
    let n = bob.notify().await;
    assert!(subscription_state(&n).starts_with("terminated"), "{n:?}");
    let r = bob.resubscribe(&d, 60).await;
    assert_eq!(r.status, 481);

    // A subscription nobody refreshes ends with a timeout NOTIFY.
    let (r, _) = carol.subscribe("alice", "presence", 2).await;
    assert_eq!(r.status, 200);
    assert!(subscription_state(&carol.notify().await).starts_with("active"));
    let n = carol.notify().await;
    assert_eq!(subscription_state(&n), "terminated;reason=timeout");

    // A watcher that answers 481 is forgotten.
    let (r, d) = bob.subscribe("alice", "presence", 600).await;
    assert_eq!(r.status, 200);
    bob.notify().await;
    bob.notify_status = 481;
    let doc = pidf_doc("alice", "t", "open", "hello");
    let r = alice
        .publish_presence("alice", None, None, Some(doc.as_str()))
        .await;
    assert_eq!(r.status, 200);
    bob.notify().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    bob.notify_status = 200;
    let r = bob.resubscribe(&d, 600).await;
    assert_eq!(r.status, 481);
}
