//! SIMPLE against an in-process `tandem-lab`: MESSAGE through the proxy (and stored for an
//! offline user, delivered on REGISTER), PUBLISH + SUBSCRIBE presence with pres-rules,
//! watcher-info for a pending watcher.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use tandem_client_core::types::simple::pidf::Availability;
use tandem_client_core::types::{DnsConfig, Transport};
use tandem_client_core::{
    Account, OutgoingMessage, PresenceEvent, ReceivedMessage, UaConfig, UaEvent, UaEvents,
    UserAgent, WinfoEvent, parse_uri,
};
use tandem_labserver::ca::LabCa;
use tandem_labserver::server::LabServer;
use tandem_labserver::store::Store;
use tandem_labserver::store_xcap::{XcapCondition, XcapDocument};
use tandem_proto::simple::watcherinfo::WatcherStatus;
use tokio::time::timeout;

#[path = "../../labserver/tests/lab_fixture/mod.rs"]
mod lab_fixture;

use lab_fixture::{DOMAIN, loopback_config};

/// An in-process lab on loopback UDP; shut down on drop of the runtime.
struct Lab {
    server: Option<LabServer>,
    store: Store,
    udp: SocketAddr,
    tls_client: std::sync::Arc<rustls::ClientConfig>,
    xcap: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Lab {
    async fn start() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let config = loopback_config(dir.path(), false);
        let store = Store::open_in(dir.path()).await.unwrap();
        for u in ["alice", "bob", "carol"] {
            store.add_user(u, DOMAIN, &format!("{u}pw")).await.unwrap();
        }
        let ca = LabCa::load_or_create(dir.path(), &[DOMAIN.to_string()]).unwrap();
        let tls_client = ca.client_config().unwrap();
        let server = LabServer::start(config, store.clone(), ca).await.unwrap();
        let udp = server.local_addr(Transport::Udp).unwrap();
        let xcap = server
            .ready_line()
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("xcap="))
            .expect("no xcap= in the ready line")
            .parse()
            .unwrap();
        Lab {
            server: Some(server),
            store,
            udp,
            tls_client,
            xcap,
            _dir: dir,
        }
    }

    fn account(&self, user: &str) -> Account {
        let mut a = Account::new(user, DOMAIN);
        a.password = Some(format!("{user}pw"));
        a.proxy = Some(parse_uri(&format!("sip:{}", self.udp)).unwrap());
        a
    }

    /// Stores `user`'s pres-rules: `(watcher, sub-handling)` pairs.
    async fn rules(&self, user: &str, rules: &[(&str, &str)]) {
        let mut s = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<cr:ruleset \
             xmlns:cr=\"urn:ietf:params:xml:ns:common-policy\" \
             xmlns:pr=\"urn:ietf:params:xml:ns:pres-rules\">\n",
        );
        for (i, (w, h)) in rules.iter().enumerate() {
            s.push_str(&format!(
                "<cr:rule id=\"r{i}\"><cr:conditions><cr:identity><cr:one id=\"sip:{w}@{DOMAIN}\"/>\
                 </cr:identity></cr:conditions><cr:actions><pr:sub-handling>{h}</pr:sub-handling>\
                 </cr:actions><cr:transformations><pr:provide-services><pr:all-services/>\
                 </pr:provide-services><pr:provide-persons><pr:all-persons/></pr:provide-persons>\
                 <pr:provide-all-attributes/></cr:transformations></cr:rule>\n"
            ));
        }
        s.push_str("</cr:ruleset>\n");
        let doc = XcapDocument {
            auid: "pres-rules".into(),
            xui: format!("{user}@{DOMAIN}"),
            name: "index".into(),
            etag: format!("e{}", rules.len()),
            content_type: "application/auth-policy+xml".into(),
            body: s.into_bytes(),
            updated_at: 0,
        };
        self.store
            .xcap_put(&doc, &XcapCondition::None)
            .await
            .unwrap();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Dropping the server stops its tasks with the test's runtime.
        self.server.take();
    }
}

async fn ua() -> (UserAgent, UaEvents) {
    let config = UaConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        transport: Transport::Udp,
        dns: DnsConfig::Disabled,
        ..UaConfig::default()
    };
    UserAgent::new(config).await.unwrap()
}

async fn next_message(events: &mut UaEvents) -> ReceivedMessage {
    loop {
        let ev = timeout(Duration::from_secs(15), events.next())
            .await
            .expect("timed out waiting for a message")
            .expect("events ended");
        if let UaEvent::Message(m) = ev {
            return m;
        }
    }
}

#[tokio::test]
async fn messages_through_the_lab_and_stored_for_offline_users() {
    let lab = Lab::start().await;
    let (alice_ua, _alice_ev) = ua().await;
    let (bob_ua, mut bob_ev) = ua().await;
    let alice = lab.account("alice");
    let bob = lab.account("bob");
    let bob_uri = bob.aor().unwrap();

    // Bob is offline: the lab stores the messages (202).
    for text in ["one", "two"] {
        let out = alice_ua
            .send_message(&alice, bob_uri.clone(), OutgoingMessage::text(text))
            .await
            .unwrap();
        assert_eq!(out.status, 202, "stored for an offline user");
        assert!(out.stored);
    }
    // Bob registers: both arrive in order, with the lab's stored id.
    let reg = bob_ua.register(&bob).await.unwrap();
    let m1 = next_message(&mut bob_ev).await;
    let m2 = next_message(&mut bob_ev).await;
    assert_eq!(m1.text().as_deref(), Some("one"));
    assert_eq!(m2.text().as_deref(), Some("two"));
    assert!(m1.stored_id.is_some());
    assert!(m1.from.starts_with("sip:alice@tandem.lab"), "{}", m1.from);

    // Online now: delivered (200, or 202 when the lab still queues it behind the stored ones
    // to keep the order), and it arrives after them.
    let out = alice_ua
        .send_message(&alice, bob_uri, OutgoingMessage::text("live"))
        .await
        .unwrap();
    assert!(matches!(out.status, 200 | 202), "{out:?}");
    assert_eq!(
        next_message(&mut bob_ev).await.text().as_deref(),
        Some("live")
    );
    reg.unregister().await.unwrap();
}

#[tokio::test]
async fn publish_and_subscribe_through_the_lab() {
    let lab = Lab::start().await;
    lab.rules("alice", &[("bob", "allow")]).await;
    let (alice_ua, _a) = ua().await;
    let (bob_ua, _b) = ua().await;
    let alice = lab.account("alice");
    let bob = lab.account("bob");

    let publication = alice_ua
        .publish(&alice, Availability::Away, Some("lunch"))
        .await
        .unwrap();
    let first_tag = publication.etag().await.unwrap();

    let mut sub = bob_ua.subscribe_presence(&bob, alice.aor().unwrap());
    let state = next_state(&mut sub).await;
    assert_eq!(state.availability(), Availability::Away);

    // Modify: a new entity tag, a new NOTIFY.
    publication
        .modify(Availability::Busy, Some("meeting"))
        .await
        .unwrap();
    assert_ne!(publication.etag().await.unwrap(), first_tag);
    let state = loop {
        let s = next_state(&mut sub).await;
        if s.availability() == Availability::Busy {
            break s;
        }
    };
    assert!(state.to_xml().contains("meeting"));

    // Remove: the watcher sees alice offline.
    publication.remove().await.unwrap();
    loop {
        if next_state(&mut sub).await.availability() == Availability::Offline {
            break;
        }
    }
    sub.unsubscribe().await;
}

async fn next_state(
    sub: &mut tandem_client_core::PresenceSubscription,
) -> tandem_proto::simple::pidf::Presence {
    loop {
        match timeout(Duration::from_secs(15), sub.next())
            .await
            .expect("timed out waiting for presence")
            .expect("subscription ended")
        {
            PresenceEvent::State(p) => return p,
            PresenceEvent::Pending => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn pending_watcher_shows_in_winfo_and_blocked_watcher_is_terminated() {
    let lab = Lab::start().await;
    lab.rules("alice", &[("bob", "block")]).await;
    let (alice_ua, _a) = ua().await;
    let (bob_ua, _b) = ua().await;
    let (carol_ua, _c) = ua().await;
    let alice = lab.account("alice");

    let mut winfo = alice_ua.subscribe_winfo(&alice).unwrap();
    // Carol has no rule: confirm → pending, and alice's watcher-info lists her as pending.
    let mut carol_sub = carol_ua.subscribe_presence(&lab.account("carol"), alice.aor().unwrap());
    let ev = timeout(Duration::from_secs(15), carol_sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev, PresenceEvent::Pending);
    let found = loop {
        match timeout(Duration::from_secs(15), winfo.next())
            .await
            .unwrap()
            .unwrap()
        {
            WinfoEvent::Info(info) => {
                let pending = info
                    .lists
                    .iter()
                    .flat_map(|l| l.watchers.iter())
                    .find(|w| w.uri.contains("carol") && w.status == WatcherStatus::Pending);
                if let Some(w) = pending {
                    break w.clone();
                }
            }
            WinfoEvent::Pending => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(found.uri.starts_with("sip:carol@"));

    // Bob is blocked: terminated (rejected), final, never a state.
    let mut bob_sub = bob_ua.subscribe_presence(&lab.account("bob"), alice.aor().unwrap());
    loop {
        match timeout(Duration::from_secs(15), bob_sub.next())
            .await
            .unwrap()
        {
            Some(PresenceEvent::Terminated { final_, .. }) => {
                assert!(final_, "a blocked watcher must not retry");
                break;
            }
            Some(PresenceEvent::State(p)) => panic!("blocked watcher saw {p:?}"),
            Some(_) => continue,
            None => break,
        }
    }
    carol_sub.unsubscribe().await;
    winfo.unsubscribe().await;
}

#[tokio::test]
async fn xcap_buddies_and_pres_rules_drive_the_presence_agent() {
    use tandem_client_core::{XcapClient, XcapError};
    let lab = Lab::start().await;
    let root = format!("https://{}/xcap-root", lab.xcap);
    let alice = lab.account("alice");
    let xcap = XcapClient::new(&root, &alice, lab.tls_client.clone()).unwrap();

    assert!(xcap.buddies().await.unwrap().is_empty());
    xcap.add_buddy("sip:bob@tandem.lab", Some("Bob"))
        .await
        .unwrap();
    xcap.add_buddy("sip:carol@tandem.lab", None).await.unwrap();
    xcap.remove_buddy("sip:carol@tandem.lab").await.unwrap();
    let buddies = xcap.buddies().await.unwrap();
    assert_eq!(buddies.len(), 1);
    assert_eq!(buddies[0].uri, "sip:bob@tandem.lab");
    assert_eq!(buddies[0].display_name.as_ref().unwrap().text, "Bob");

    // ETags: a stale If-Match is refused with 412.
    let doc = xcap.get("resource-lists", "index").await.unwrap().unwrap();
    let etag = doc.etag.clone().unwrap();
    xcap.put(
        "resource-lists",
        "index",
        &doc.content_type,
        doc.body.clone(),
        Some(&etag),
    )
    .await
    .unwrap();
    let err = xcap
        .put(
            "resource-lists",
            "index",
            &doc.content_type,
            doc.body.clone(),
            Some(&etag),
        )
        .await
        .unwrap_err();
    assert_eq!(err, XcapError::PreconditionFailed);

    // Wrong password: AuthFailed.
    let mut wrong = alice.clone();
    wrong.password = Some("nope".into());
    let bad = XcapClient::new(&root, &wrong, lab.tls_client.clone()).unwrap();
    assert_eq!(bad.buddies().await.unwrap_err(), XcapError::AuthFailed);

    // Allow bob through pres-rules over XCAP: his subscription becomes active.
    xcap.allow_watcher("sip:bob@tandem.lab").await.unwrap();
    let (alice_ua, _a) = ua().await;
    let (bob_ua, _b) = ua().await;
    let _publication = alice_ua
        .publish(&alice, Availability::Available, Some("here"))
        .await
        .unwrap();
    let mut sub = bob_ua.subscribe_presence(&lab.account("bob"), alice.aor().unwrap());
    assert_eq!(
        next_state(&mut sub).await.availability(),
        Availability::Available
    );
    // Then block him: the subscription is terminated for good.
    xcap.block_watcher("sip:bob@tandem.lab").await.unwrap();
    loop {
        match timeout(Duration::from_secs(15), sub.next()).await.unwrap() {
            Some(PresenceEvent::Terminated { final_, .. }) => {
                assert!(final_);
                break;
            }
            Some(PresenceEvent::State(p)) => {
                assert_ne!(p.availability(), Availability::Busy);
            }
            Some(_) => {}
            None => break,
        }
    }
    xcap.delete("pres-rules", "index", None).await.unwrap();
    assert!(xcap.get("pres-rules", "index").await.unwrap().is_none());
}
