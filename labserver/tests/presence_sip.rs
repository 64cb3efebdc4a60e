//! The lab's presence agent over raw SIP on loopback: PUBLISH from two devices composed,
//! refresh/modify/remove and expiry, the PUBLISH error answers, SUBSCRIBE authorised by
//! pres-rules written over XCAP (allow, polite-block, block, confirm → pending with a
//! watcher-info NOTIFY to the presentity), re-evaluation when the rules change, refresh,
//! unsubscribe, expiry and a watcher that answers 481.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sip_util;
#[path = "xcap_http.rs"]
mod xcap_http;

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use sip_util::{DOMAIN, Lab, Ua, rand_token};
use tandem_labserver::store_xcap::{XcapCondition, XcapDocument};
use tandem_proto::msg::{HeaderName, Message, Method, Request, Response};
use tandem_proto::simple::pidf::{self, Basic};
use tandem_proto::simple::watcherinfo::{WatcherInfo, WatcherStatus};
use xcap_http::{XcapClient, xcap_addr};

/// A test SIP peer: sends requests (answering digest challenges), and answers every NOTIFY it
/// receives (200 unless told otherwise), queueing them for the test.
struct Peer {
    ua: Ua,
    notifies: VecDeque<Request>,
    notify_status: u16,
    /// Every message body this peer ever received.
    seen: Vec<String>,
}

/// The subscriber's side of a subscription dialog.
#[derive(Clone)]
struct SubDialog {
    call_id: String,
    from_tag: String,
    to: String,
    target: String,
    event: String,
}

fn pidf_doc(user: &str, tuple: &str, basic: &str, note: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:{user}@{DOMAIN}\">\n\
         <tuple id=\"{tuple}\"><status><basic>{basic}</basic></status><note>{note}</note></tuple>\n\
         </presence>\n"
    )
}

fn rules_doc(rules: &[(&str, &str)]) -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <cr:ruleset xmlns:cr=\"urn:ietf:params:xml:ns:common-policy\" \
         xmlns:pr=\"urn:ietf:params:xml:ns:pres-rules\">\n",
    );
    for (i, (user, handling)) in rules.iter().enumerate() {
        s.push_str(&format!(
            "<cr:rule id=\"r{i}\"><cr:conditions><cr:identity><cr:one id=\"sip:{user}@{DOMAIN}\"/>\
             </cr:identity></cr:conditions><cr:actions><pr:sub-handling>{handling}</pr:sub-handling>\
             </cr:actions><cr:transformations><pr:provide-services><pr:all-services/></pr:provide-services>\
             <pr:provide-persons><pr:all-persons/></pr:provide-persons><pr:provide-devices><pr:all-devices/>\
             </pr:provide-devices><pr:provide-all-attributes/></cr:transformations></cr:rule>\n"
        ));
    }
    s.push_str("</cr:ruleset>\n");
    s
}

/// Stores `user`'s pres-rules directly (the XCAP path is tested where it matters).
async fn store_rules(lab: &Lab, user: &str, rules: &[(&str, &str)]) {
    let doc = XcapDocument {
        auid: "pres-rules".into(),
        xui: format!("{user}@{DOMAIN}"),
        name: "index".into(),
        etag: rand_token(),
        content_type: "application/auth-policy+xml".into(),
        body: rules_doc(rules).into_bytes(),
        updated_at: 0,
    };
    lab.store
        .xcap_put(&doc, &XcapCondition::None)
        .await
        .unwrap();
}

fn subscription_state(r: &Request) -> String {
    r.headers
        .get_str(&HeaderName::SubscriptionState)
        .unwrap_or("")
        .to_string()
}

fn body(r: &Request) -> String {
    String::from_utf8(r.body.to_vec()).unwrap()
}

impl Peer {
    async fn new(lab: &Lab, user: &str) -> Peer {
        Peer {
            ua: lab.ua(user).await,
            notifies: VecDeque::new(),
            notify_status: 200,
            seen: Vec::new(),
        }
    }

    fn answer(&mut self, request: &Request) -> Response {
        let status = if request.method == Method::Notify {
            self.notify_status
        } else {
            405
        };
        Response::for_request(request, status)
    }

    async fn handle_request(&mut self, request: Request, from: std::net::SocketAddr) {
        self.seen.push(body(&request));
        let response = self.answer(&request);
        self.ua.send_to(&Message::Response(response), from).await;
        if request.method == Method::Notify {
            self.notifies.push_back(request);
        }
    }

    /// Sends `request` (answering one digest challenge) and returns the final response.
    async fn transact(&mut self, mut request: Request) -> Response {
        let mut challenged = false;
        self.ua.send(&Message::Request(request.clone())).await;
        loop {
            let Some((msg, from)) = self.ua.recv_within(5.0).await else {
                panic!("{}: no response to {}", self.ua.user, request.method);
            };
            match msg {
                Message::Request(r) => self.handle_request(r, from).await,
                Message::Response(r) => {
                    let cseq = r.headers.cseq().unwrap();
                    let sent = request.headers.cseq().unwrap();
                    if cseq.seq != sent.seq || cseq.method != sent.method || r.status < 200 {
                        continue;
                    }
                    if (r.status == 401 || r.status == 407) && !challenged {
                        challenged = true;
                        request = self.ua.authorize(&request, &r, None);
                        self.ua.send(&Message::Request(request.clone())).await;
                        continue;
                    }
                    return r;
                }
            }
        }
    }

    /// The next NOTIFY within `secs`.
    async fn next_notify(&mut self, secs: f64) -> Option<Request> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
        loop {
            if let Some(n) = self.notifies.pop_front() {
                return Some(n);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            if let Some((Message::Request(r), from)) = self.ua.recv_within(left.as_secs_f64()).await
            {
                self.handle_request(r, from).await;
            }
        }
    }

    async fn notify(&mut self) -> Request {
        self.next_notify(8.0)
            .await
            .unwrap_or_else(|| panic!("{}: no NOTIFY", self.ua.user))
    }

    /// NOTIFYs until one satisfies `pred` (panics after 8 s).
    async fn notify_until(&mut self, pred: impl Fn(&Request) -> bool) -> Request {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let n = self
                .next_notify(left.as_secs_f64())
                .await
                .unwrap_or_else(|| panic!("{}: no matching NOTIFY", self.ua.user));
            if pred(&n) {
                return n;
            }
        }
    }

    /// Reads and answers whatever arrives for `secs`.
    async fn drain(&mut self, secs: f64) {
        while self.next_notify(secs).await.is_some() {}
    }

    #[allow(clippy::too_many_arguments)]
    fn request(
        &mut self,
        method: &str,
        ruri: &str,
        to: &str,
        call_id: &str,
        from_tag: &str,
        extra: &[String],
        body: Option<(&str, &str)>,
    ) -> Request {
        self.ua.cseq += 1;
        let mut text = format!(
            "{method} {ruri} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: <sip:{}@{DOMAIN}>;tag={from_tag}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {} {method}\r\nContact: <{}>\r\n",
            self.ua.via(),
            self.ua.user,
            self.ua.cseq,
            self.ua.contact()
        );
        for e in extra {
            text.push_str(e);
            text.push_str("\r\n");
        }
        match body {
            Some((ct, b)) => text.push_str(&format!(
                "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            )),
            None => text.push_str("Content-Length: 0\r\n\r\n"),
        }
        Request::parse(Bytes::from(text)).unwrap()
    }

    /// PUBLISH to our own AoR (or `target`).
    async fn publish(
        &mut self,
        target: &str,
        extra: &[String],
        body: Option<(&str, &str)>,
    ) -> Response {
        let aor = format!("sip:{target}@{DOMAIN}");
        let req = self.request(
            "PUBLISH",
            &aor,
            &format!("<{aor}>"),
            &format!("{}@test", rand_token()),
            &rand_token(),
            extra,
            body,
        );
        self.transact(req).await
    }

    /// A new subscription to `target`'s `event`.
    async fn subscribe(
        &mut self,
        target: &str,
        event: &str,
        expires: u32,
    ) -> (Response, SubDialog) {
        let aor = format!("sip:{target}@{DOMAIN}");
        let call_id = format!("{}@test", rand_token());
        let from_tag = rand_token();
        let accept = if event == "presence" {
            "application/pidf+xml"
        } else {
            "application/watcherinfo+xml"
        };
        let req = self.request(
            "SUBSCRIBE",
            &aor,
            &format!("<{aor}>"),
            &call_id,
            &from_tag,
            &[
                format!("Event: {event}"),
                format!("Accept: {accept}"),
                format!("Expires: {expires}"),
            ],
            None,
        );
        let r = self.transact(req).await;
        let to = r.headers.get_str(&HeaderName::To).unwrap().to_string();
        let target = r
            .headers
            .contacts()
            .ok()
            .and_then(|c| c.into_iter().next())
            .map(|c| match c {
                tandem_proto::msg::ContactValue::Addr(a) => a.uri.to_string(),
                tandem_proto::msg::ContactValue::Star => aor.clone(),
            })
            .unwrap_or(aor);
        (
            r,
            SubDialog {
                call_id,
                from_tag,
                to,
                target,
                event: event.to_string(),
            },
        )
    }

    /// A refresh (or, with 0, an unsubscribe) inside the subscription's dialog.
    async fn resubscribe(&mut self, d: &SubDialog, expires: u32) -> Response {
        let req = self.request(
            "SUBSCRIBE",
            &d.target,
            &d.to,
            &d.call_id,
            &d.from_tag,
            &[format!("Event: {}", d.event), format!("Expires: {expires}")],
            None,
        );
        self.transact(req).await
    }
}

fn etag(r: &Response) -> String {
    r.headers
        .get_str(&HeaderName::Other("SIP-ETag".into()))
        .expect("SIP-ETag")
        .to_string()
}

fn notes(n: &Request) -> Vec<String> {
    let p = pidf::parse(&n.body).unwrap();
    let mut notes: Vec<String> = p
        .tuples
        .iter()
        .flat_map(|t| t.notes.iter().map(|n| n.text.clone()))
        .collect();
    notes.sort();
    notes
}

#[tokio::test]
async fn publications_of_two_devices_are_composed_modified_and_expire() {
    let lab = Lab::start(|c| c.presence.min_expires = 1).await;
    store_rules(&lab, "alice", &[("bob", "allow")]).await;
    let mut desk = Peer::new(&lab, "alice").await;
    let mut phone = Peer::new(&lab, "alice").await;
    let mut bob = Peer::new(&lab, "bob").await;
    let pidf_ct = "application/pidf+xml";

    let doc = pidf_doc("alice", "desk", "open", "at the desk");
    let r = desk
        .publish(
            "alice",
            &["Event: presence".into(), "Expires: 60".into()],
            Some((pidf_ct, &doc)),
        )
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
        .publish(
            "alice",
            &["Event: presence".into(), "Expires: 2".into()],
            Some((pidf_ct, &doc)),
        )
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
        .publish(
            "alice",
            &[
                "Event: presence".into(),
                format!("SIP-If-Match: {e1}"),
                "Expires: 60".into(),
            ],
            Some((pidf_ct, &doc)),
        )
        .await;
    assert_eq!(r.status, 200);
    let e2 = etag(&r);
    assert_ne!(e1, e2);
    let n = bob.notify().await;
    assert_eq!(notes(&n), ["back soon"]);

    // Refresh with the old tag: 412; with the new one: 200, no NOTIFY (nothing changed).
    let r = desk
        .publish(
            "alice",
            &["Event: presence".into(), format!("SIP-If-Match: {e1}")],
            None,
        )
        .await;
    assert_eq!(r.status, 412);
    let r = desk
        .publish(
            "alice",
            &[
                "Event: presence".into(),
                format!("SIP-If-Match: {e2}"),
                "Expires: 30".into(),
            ],
            None,
        )
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
        .publish(
            "alice",
            &[
                "Event: presence".into(),
                format!("SIP-If-Match: {e3}"),
                "Expires: 0".into(),
            ],
            None,
        )
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
        .publish(
            "alice",
            &["Event: presence".into(), "SIP-If-Match: nosuchtag".into()],
            None,
        )
        .await;
    assert_eq!(r.status, 412);
    let r = alice
        .publish("alice", &["Event: presence".into()], None)
        .await;
    assert_eq!(r.status, 400, "an initial PUBLISH needs a body");
    let r = bob
        .publish("alice", &["Event: presence".into()], Some((pidf_ct, &doc)))
        .await;
    assert_eq!(r.status, 403, "only alice publishes alice");
    let r = alice
        .publish("zed", &["Event: presence".into()], Some((pidf_ct, &doc)))
        .await;
    assert_eq!(r.status, 404);
    let r = alice
        .publish("alice", &["Event: presence".into()], Some((pidf_ct, &doc)))
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
    let alice_creds = Some(("alice", "alicepw"));
    let ct = ("Content-Type", "application/auth-policy+xml");
    let doc = rules_doc(&[
        ("bob", "allow"),
        ("carol", "polite-block"),
        ("labuser", "block"),
    ]);
    let r = xcap
        .send("PUT", &rules_path, alice_creds, &[ct], Some(&doc))
        .await;
    assert_eq!(r.status, 201);
    let rules_etag = r.etag();

    let mut alice = Peer::new(&lab, "alice").await;
    let mut alice_watch = Peer::new(&lab, "alice").await;
    let mut bob = Peer::new(&lab, "bob").await;
    let mut carol = Peer::new(&lab, "carol").await;
    let mut mallory = Peer::new(&lab, "labuser").await;
    let mut dave = Peer::new(&lab, "dave").await;
    let pidf_ct = "application/pidf+xml";
    let secret = pidf_doc("alice", "t", "open", "secret-note");
    let r = alice
        .publish(
            "alice",
            &["Event: presence".into()],
            Some((pidf_ct, &secret)),
        )
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
    assert_eq!(subscription_state(&n), "terminated;reason=rejected");
    assert!(n.body.is_empty());

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
    let doc = rules_doc(&[
        ("bob", "allow"),
        ("carol", "polite-block"),
        ("labuser", "block"),
        ("dave", "allow"),
    ]);
    let r = xcap
        .send(
            "PUT",
            &rules_path,
            alice_creds,
            &[ct, ("If-Match", &format!("\"{rules_etag}\""))],
            Some(&doc),
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
        .publish(
            "alice",
            &[
                "Event: presence".into(),
                format!("SIP-If-Match: {alice_etag}"),
            ],
            Some((pidf_ct, &secret2)),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(notes(&bob.notify().await), ["secret-two"]);
    assert_eq!(notes(&dave.notify().await), ["secret-two"]);
    let n = carol.notify().await;
    assert!(!body(&n).contains("secret"));

    // Alice now blocks bob: his subscription ends, without state.
    let r = xcap.send("GET", &rules_path, alice_creds, &[], None).await;
    let doc = rules_doc(&[
        ("bob", "block"),
        ("carol", "polite-block"),
        ("labuser", "block"),
        ("dave", "allow"),
    ]);
    let r = xcap
        .send(
            "PUT",
            &rules_path,
            alice_creds,
            &[ct, ("If-Match", &format!("\"{}\"", r.etag()))],
            Some(&doc),
        )
        .await;
    assert_eq!(r.status, 200);
    let n = bob.notify().await;
    assert_eq!(subscription_state(&n), "terminated;reason=rejected");
    assert!(n.body.is_empty());

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
        .publish(
            "alice",
            &["Event: presence".into()],
            Some(("application/pidf+xml", &doc)),
        )
        .await;
    assert_eq!(r.status, 200);
    bob.notify().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    bob.notify_status = 200;
    let r = bob.resubscribe(&d, 600).await;
    assert_eq!(r.status, 481);
}
