//! Registrar, authentication and server-level checks against an in-process lab over UDP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sip_util;

use sip_util::{DOMAIN, Lab, rand_token};
use tandem_proto::auth::Algorithm;
use tandem_proto::msg::{ContactValue, HeaderName, Message};

fn contacts_of(r: &tandem_proto::msg::Response) -> Vec<(String, Option<u32>, Option<f32>)> {
    r.headers
        .contacts()
        .unwrap()
        .into_iter()
        .filter_map(|c| match c {
            ContactValue::Addr(na) => Some((na.uri.to_string(), na.expires(), na.q())),
            ContactValue::Star => None,
        })
        .collect()
}

#[tokio::test]
async fn register_with_sha256_and_with_md5() {
    let lab = Lab::start(|_| {}).await;
    for alg in [Algorithm::Sha256, Algorithm::Md5] {
        let mut ua = lab.ua("alice").await;
        let contact = format!("<{}>", ua.contact());
        let req = ua.register_request(None, std::slice::from_ref(&contact), Some(600));
        ua.send(&Message::Request(req.clone())).await;
        let challenge = ua.response().await;
        assert_eq!(challenge.status, 401);
        let offered: Vec<String> = challenge
            .headers
            .values(&HeaderName::WwwAuthenticate)
            .into_iter()
            .collect();
        let all: Vec<&str> = challenge
            .headers
            .get_all(&HeaderName::WwwAuthenticate)
            .map(|v| std::str::from_utf8(v).unwrap())
            .collect();
        assert_eq!(all.len(), 2, "one challenge per algorithm: {offered:?}");
        assert!(
            all[0].contains("algorithm=SHA-256"),
            "SHA-256 first: {}",
            all[0]
        );
        assert!(all[1].contains("algorithm=MD5"));
        assert!(all[0].contains("qop=\"auth\""));
        assert!(challenge.headers.to().unwrap().tag().is_some());

        let req = ua.authorize(&req, &challenge, Some(alg));
        ua.send(&Message::Request(req)).await;
        let ok = ua.response().await;
        assert_eq!(ok.status, 200, "{alg:?}: {}", ok.reason);
        assert!(ok.headers.get(&HeaderName::Date).is_some());
        let listed = contacts_of(&ok);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].0, ua.contact());
        let exp = listed[0].1.unwrap();
        assert!((595..=600).contains(&exp), "expires {exp}");
        // Clean up for the next round.
        let r = ua.register(&["*".to_string()], Some(0)).await;
        assert_eq!(r.status, 200);
    }
}

#[tokio::test]
async fn wrong_password_is_challenged_again() {
    let lab = Lab::start(|_| {}).await;
    let mut ua = sip_util::Ua::new("alice", "not-the-password", lab.udp).await;
    let r = ua
        .register(&[format!("<{}>", ua.contact())], Some(600))
        .await;
    assert_eq!(r.status, 401);
    // Unknown user: challenged too (no user enumeration).
    let mut ua = sip_util::Ua::new("mallory", "x", lab.udp).await;
    let r = ua
        .register(&[format!("<{}>", ua.contact())], Some(600))
        .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn interval_too_brief_gets_423_with_min_expires() {
    let lab = Lab::start(|c| c.registrar.min_expires = 120).await;
    let mut ua = lab.ua("bob").await;
    let r = ua
        .register(&[format!("<{}>", ua.contact())], Some(30))
        .await;
    assert_eq!(r.status, 423);
    assert_eq!(r.headers.get_str(&HeaderName::MinExpires), Some("120"));
    // Above the maximum: shortened.
    let r = ua
        .register(&[format!("<{}>", ua.contact())], Some(999_999))
        .await;
    assert_eq!(r.status, 200);
    let max = lab.config.registrar.max_expires;
    let got = contacts_of(&r)[0].1.unwrap();
    assert!(got <= max && got + 5 >= max, "expires {got} vs max {max}");
}

#[tokio::test]
async fn wildcard_unregister_and_its_rules() {
    let lab = Lab::start(|_| {}).await;
    let mut ua = lab.ua("carol").await;
    let a = format!("<sip:carol@{}>", ua.addr);
    let b = "<sip:carol@192.0.2.7:5070>".to_string();
    let r = ua.register(&[a, b], Some(600)).await;
    assert_eq!(r.status, 200);
    assert_eq!(contacts_of(&r).len(), 2);
    // "*" needs Expires: 0.
    let r = ua.register(&["*".to_string()], Some(60)).await;
    assert_eq!(r.status, 400);
    let r = ua.register(&["*".to_string()], Some(0)).await;
    assert_eq!(r.status, 200);
    assert!(contacts_of(&r).is_empty());
    // A query (no Contact) shows nothing is left.
    let r = ua.register(&[], None).await;
    assert_eq!(r.status, 200);
    assert!(contacts_of(&r).is_empty());
}

#[tokio::test]
async fn several_contacts_with_q_values() {
    let lab = Lab::start(|_| {}).await;
    let mut ua = lab.ua("alice").await;
    let r = ua
        .register(
            &[
                "<sip:alice@192.0.2.1:5060>;q=0.2".to_string(),
                "<sip:alice@192.0.2.2:5060>;q=0.9".to_string(),
                "<sip:alice@192.0.2.3:5060>;expires=300".to_string(),
            ],
            Some(600),
        )
        .await;
    assert_eq!(r.status, 200);
    let listed = contacts_of(&r);
    assert_eq!(listed.len(), 3);
    // Highest q first (no q counts as 1.0), each with its own expiry.
    assert_eq!(listed[0].0, "sip:alice@192.0.2.3:5060");
    assert!(listed[0].1.unwrap() <= 300);
    assert_eq!(listed[1].0, "sip:alice@192.0.2.2:5060");
    assert_eq!(listed[1].2, Some(0.9));
    assert_eq!(listed[2].2, Some(0.2));
    assert!(listed[2].1.unwrap() > 300);
    // The same contact twice in one request counts once.
    let r = ua
        .register(
            &[
                "<sip:alice@192.0.2.9:5060>".to_string(),
                "<sip:alice@192.0.2.9:5060>;expires=0".to_string(),
            ],
            Some(600),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(contacts_of(&r).len(), 3);
    // Removing one contact with expires=0 keeps the others.
    let r = ua
        .register(&["<sip:alice@192.0.2.3:5060>;expires=0".to_string()], None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(contacts_of(&r).len(), 2);
    // max_contacts is enforced.
    let lab2 = Lab::start(|c| c.registrar.max_contacts = 1).await;
    let mut ua = lab2.ua("alice").await;
    let r = ua
        .register(
            &[
                "<sip:alice@192.0.2.1:5060>".to_string(),
                "<sip:alice@192.0.2.2:5060>".to_string(),
            ],
            Some(600),
        )
        .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn out_of_order_cseq_is_rejected() {
    let lab = Lab::start(|_| {}).await;
    let mut ua = lab.ua("bob").await;
    let contact = format!("<{}>", ua.contact());
    let r = ua.register(std::slice::from_ref(&contact), Some(600)).await;
    assert_eq!(r.status, 200);
    // Same Call-ID, lower CSeq than the stored one.
    let stored = ua.cseq;
    let challenge_req = ua.register_request(None, std::slice::from_ref(&contact), Some(600));
    ua.send(&Message::Request(challenge_req.clone())).await;
    let ch = ua.response().await;
    assert_eq!(ch.status, 401);
    let mut req = ua.authorize(&challenge_req, &ch, None);
    req.headers
        .set(HeaderName::CSeq, format!("{} REGISTER", stored - 1));
    ua.send(&Message::Request(req)).await;
    let r = ua.response().await;
    assert_eq!(r.status, 500);
}

#[tokio::test]
async fn third_party_registration_policy() {
    let lab = Lab::start(|c| c.registrar.third_party = vec!["labuser".to_string()]).await;
    // alice may not register bob's AoR.
    let mut ua = lab.ua("alice").await;
    let req = ua.register_request(Some("bob"), &[format!("<{}>", ua.contact())], Some(600));
    ua.send(&Message::Request(req.clone())).await;
    let ch = ua.response().await;
    assert_eq!(ch.status, 401);
    let req = ua.authorize(&req, &ch, None);
    ua.send(&Message::Request(req)).await;
    assert_eq!(ua.response().await.status, 403);
    // labuser is listed: allowed.
    let mut ua = lab.ua("labuser").await;
    let req = ua.register_request(Some("bob"), &[format!("<{}>", ua.contact())], Some(600));
    ua.send(&Message::Request(req.clone())).await;
    let ch = ua.response().await;
    let req = ua.authorize(&req, &ch, None);
    ua.send(&Message::Request(req)).await;
    let r = ua.response().await;
    assert_eq!(r.status, 200);
    assert_eq!(contacts_of(&r).len(), 1);
    // Third-party registrars may register any AoR of a local domain (SIPp load scenarios).
    let req = ua.register_request(
        Some("sipp-0001"),
        &[format!("<{}>", ua.contact())],
        Some(600),
    );
    ua.send(&Message::Request(req.clone())).await;
    let ch = ua.response().await;
    let req = ua.authorize(&req, &ch, None);
    ua.send(&Message::Request(req)).await;
    assert_eq!(ua.response().await.status, 200);
    // A foreign AoR: 404.
    let mut req = ua.register_request(None, &[format!("<{}>", ua.contact())], Some(600));
    req.headers
        .set(HeaderName::To, "<sip:labuser@example.invalid>".to_string());
    ua.send(&Message::Request(req.clone())).await;
    let ch = ua.response().await;
    let req = ua.authorize(&req, &ch, None);
    ua.send(&Message::Request(req)).await;
    assert_eq!(ua.response().await.status, 404);
}

#[tokio::test]
async fn foreign_registrar_domain_is_refused() {
    let lab = Lab::start(|_| {}).await;
    let ua = lab.ua("alice").await;
    let text = format!(
        "REGISTER sip:example.org SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.org>;tag=1\r\nTo: <sip:alice@example.org>\r\nCall-ID: {}\r\nCSeq: 1 REGISTER\r\nContact: <{}>\r\nContent-Length: 0\r\n\r\n",
        ua.via(),
        rand_token(),
        ua.contact()
    );
    ua.send_text(&text).await;
    assert_eq!(ua.response().await.status, 403);
}

#[tokio::test]
async fn registrations_survive_a_restart() {
    let mut lab = Lab::start(|_| {}).await;
    let mut ua = lab.ua("alice").await;
    ua.register_self().await;
    lab.stop().await;
    lab.boot().await;
    let mut ua2 = lab.ua("alice").await;
    let r = ua2.register(&[], None).await;
    assert_eq!(r.status, 200);
    let listed = contacts_of(&r);
    assert_eq!(listed.len(), 1, "binding lost across restart");
    assert_eq!(listed[0].0, ua.contact());
    // And the store has it.
    let rows = lab.store.load_bindings(0).await.unwrap();
    assert!(rows.iter().any(|b| b.aor == format!("sip:alice@{DOMAIN}")));
}

#[tokio::test]
async fn options_for_the_server_and_max_forwards_zero() {
    let lab = Lab::start(|_| {}).await;
    let ua = lab.ua("alice").await;
    let text = format!(
        "OPTIONS sip:{DOMAIN} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@{DOMAIN}>;tag=1\r\nTo: <sip:{DOMAIN}>\r\nCall-ID: {}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        ua.via(),
        rand_token()
    );
    ua.send_text(&text).await;
    let r = ua.response().await;
    assert_eq!(r.status, 200);
    assert!(
        r.headers
            .get_str(&HeaderName::Allow)
            .unwrap()
            .contains("INVITE")
    );
    assert!(r.headers.get(&HeaderName::Accept).is_some());

    let text = format!(
        "MESSAGE sip:bob@{DOMAIN} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 0\r\nFrom: <sip:alice@{DOMAIN}>;tag=1\r\nTo: <sip:bob@{DOMAIN}>\r\nCall-ID: {}\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi",
        ua.via(),
        rand_token()
    );
    ua.send_text(&text).await;
    assert_eq!(ua.response().await.status, 483);

    let text = format!(
        "MESSAGE sip:bob@{DOMAIN} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nProxy-Require: com.example.nope\r\nFrom: <sip:alice@{DOMAIN}>;tag=1\r\nTo: <sip:bob@{DOMAIN}>\r\nCall-ID: {}\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n",
        ua.via(),
        rand_token()
    );
    ua.send_text(&text).await;
    let r = ua.response().await;
    assert_eq!(r.status, 420);
    assert_eq!(
        r.headers.get_str(&HeaderName::Unsupported),
        Some("com.example.nope")
    );
}

#[tokio::test]
async fn expired_nonce_is_challenged_with_stale_true() {
    let lab = Lab::start(|c| c.auth.nonce_lifetime_secs = 1).await;
    let mut ua = lab.ua("alice").await;
    let contact = format!("<{}>", ua.contact());
    let req = ua.register_request(None, std::slice::from_ref(&contact), Some(600));
    ua.send(&Message::Request(req.clone())).await;
    let challenge = ua.response().await;
    assert_eq!(challenge.status, 401);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let late = ua.authorize(&req, &challenge, None);
    ua.send(&Message::Request(late)).await;
    let r = ua.response().await;
    assert_eq!(r.status, 401);
    let again = r.headers.get_str(&HeaderName::WwwAuthenticate).unwrap();
    assert!(again.contains("stale=true"), "{again}");
    // The fresh nonce works.
    let fresh = ua.authorize(&req, &r, None);
    ua.send(&Message::Request(fresh)).await;
    assert_eq!(ua.response().await.status, 200);
}

#[tokio::test]
async fn trusted_sources_are_not_challenged() {
    let lab = Lab::start(|c| c.auth.trusted = vec!["127.0.0.0/8".parse().unwrap()]).await;
    let mut ua = lab.ua("bob").await;
    let contact = format!("<{}>", ua.contact());
    let req = ua.register_request(None, std::slice::from_ref(&contact), Some(600));
    ua.send(&Message::Request(req)).await;
    let r = ua.response().await;
    assert_eq!(r.status, 200);
    assert_eq!(contacts_of(&r).len(), 1);
}
