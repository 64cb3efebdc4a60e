//! `sip:`/`tel:` links: what is accepted, how it is cleaned, what is refused, and how a link
//! reaches the ui (event + `take_link`) without placing a call.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use serde_json::json;
use tandem_app::links::{CallLink, parse_link};
use tandem_app::types::AppEvent;

fn target(link: &str) -> String {
    parse_link(link)
        .unwrap_or_else(|f| panic!("{link}: {}", f.message))
        .target
}

#[test]
fn sip_links_keep_the_address_and_drop_what_could_change_the_request() {
    assert_eq!(target("sip:bob@example.com"), "sip:bob@example.com");
    assert_eq!(
        target("SIP:bob@example.com:5070"),
        "sip:bob@example.com:5070"
    );
    assert_eq!(target("sips:bob@example.com"), "sips:bob@example.com");
    assert_eq!(target("sip://bob@example.com"), "sip:bob@example.com");
    assert_eq!(target("sip:bob%40example.com"), "sip:bob@example.com");
    assert_eq!(
        target("sip:bob@example.com;transport=tcp"),
        "sip:bob@example.com;transport=tcp"
    );
    // method= (a REGISTER or BYE by link), maddr= (somewhere else) and lr are dropped.
    assert_eq!(
        target("sip:bob@example.com;method=REGISTER;maddr=10.9.9.9;lr;transport=tls"),
        "sip:bob@example.com;transport=tls"
    );
    // URI headers never reach the INVITE; only the subject is kept, for display.
    let l = parse_link("sip:bob@example.com?Subject=Lunch%20plans&Route=%3Csip:evil%3E").unwrap();
    assert_eq!(l.target, "sip:bob@example.com");
    assert_eq!(l.subject.as_deref(), Some("Lunch plans"));
    assert_eq!(
        l.link,
        "sip:bob@example.com?Subject=Lunch%20plans&Route=%3Csip:evil%3E"
    );
    // A host alone is a valid thing to call (a lab's IVR, a conference bridge).
    assert_eq!(target("sip:lab.example"), "sip:lab.example");
}

#[test]
fn tel_and_callto_links_become_numbers() {
    assert_eq!(target("tel:+1-555-0100"), "tel:+15550100");
    assert_eq!(target("tel:+1 (555) 010.0"), "tel:+15550100");
    assert_eq!(target("tel:%2B15550100"), "tel:+15550100");
    assert_eq!(
        target("tel:7042;phone-context=example.com;foo=bar"),
        "tel:7042;phone-context=example.com"
    );
    assert_eq!(target("tel:*97#"), "tel:*97#");
    assert_eq!(target("callto:+15550100"), "tel:+15550100");
    assert_eq!(
        target("callto://alice@example.com"),
        "sip:alice@example.com"
    );
}

#[test]
fn bad_links_are_refused_with_a_reason() {
    for (link, words) in [
        ("", "empty"),
        ("http://example.com", "does not open http"),
        ("mailto:bob@example.com", "does not open mailto"),
        ("bob@example.com", "not a sip:"),
        ("tel:", "phone number"),
        ("tel:+1-abc-zz", "phone number"),
        ("tel:%zz", "%-escape"),
        ("tel:123%", "%-escape"),
        ("sip:", "anyone to call"),
        ("sip:bob@exa mple.com", "not valid"),
        ("sip:bob@example.com\r\nVia: evil", "control characters"),
    ] {
        let f = parse_link(link).expect_err(link);
        assert!(
            f.message.contains(words),
            "{link:?}: {:?} lacks {words:?}",
            f.message
        );
    }
    let long = format!("sip:{}@example.com", "a".repeat(5000));
    assert!(parse_link(&long).unwrap_err().message.contains("longer"));
    // Every prefix of a valid link either parses or is refused: never a panic.
    let full = "sips://b%C3%B6b@[2001:db8::1]:5061;transport=tls?subject=%E2%9C%93&x=y";
    for end in 0..=full.len() {
        if let Some(prefix) = full.get(..end) {
            let _ = parse_link(prefix);
        }
    }
}

#[tokio::test]
async fn an_opened_link_reaches_the_ui_once_and_places_no_call() {
    if !common::in_keyring_session("an_opened_link_reaches_the_ui_once_and_places_no_call") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let service = format!("tandem-test-links-{}", std::process::id());
    let app = common::open(dir.path(), &service, "null");
    let mut events = app.subscribe();
    // Before the ui asks, nothing waits.
    assert_eq!(app.take_link(), None);
    let opened = tandem_app::dispatch(
        &app,
        "open_link",
        json!({ "link": "sip:carol@tandem.lab?subject=hi" }),
    )
    .await
    .unwrap();
    let link: CallLink = serde_json::from_value(opened).unwrap();
    assert_eq!(link.target, "sip:carol@tandem.lab");
    let seen = common::wait_for(
        Duration::from_secs(2),
        &mut events,
        "CallLink",
        |e| match e {
            AppEvent::CallLink { link } => Some(link.clone()),
            _ => None,
        },
    )
    .await;
    assert_eq!(seen, link);
    // The ui that starts later takes it, once.
    let taken = tandem_app::dispatch(&app, "take_link", serde_json::Value::Null)
        .await
        .unwrap();
    assert_eq!(taken["target"], "sip:carol@tandem.lab");
    assert_eq!(taken["subject"], "hi");
    let again = tandem_app::dispatch(&app, "take_link", serde_json::Value::Null)
        .await
        .unwrap();
    assert!(again.is_null());
    // A link never dials by itself.
    assert!(app.list_calls().is_empty());
    // A bad link is an error, and the one waiting is not replaced.
    tandem_app::dispatch(&app, "open_link", json!({ "link": "sip:a@b" }))
        .await
        .unwrap();
    let err = tandem_app::dispatch(&app, "open_link", json!({ "link": "javascript:alert(1)" }))
        .await
        .unwrap_err();
    assert!(err.message.contains("does not open javascript"));
    assert_eq!(app.take_link().unwrap().target, "sip:a@b");
    common::forget_secrets(&service);
}
