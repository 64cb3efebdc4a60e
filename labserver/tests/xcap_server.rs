//! The lab's XCAP server over HTTPS with a real client (curl): digest authentication (401),
//! no cross-user access (403), entity tags (412/304), validation (409/415), xcap-caps.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sip_util;
#[path = "xcap_http.rs"]
mod xcap_http;

use sip_util::{DOMAIN, Lab};
use xcap_http::{XcapClient, xcap_addr};

const RULES: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<cr:ruleset xmlns="urn:ietf:params:xml:ns:pres-rules"
    xmlns:pr="urn:ietf:params:xml:ns:pres-rules"
    xmlns:cr="urn:ietf:params:xml:ns:common-policy">
  <cr:rule id="a">
    <cr:conditions>
      <cr:identity><cr:one id="sip:bob@tandem.lab"/></cr:identity>
    </cr:conditions>
    <cr:actions><pr:sub-handling>allow</pr:sub-handling></cr:actions>
    <cr:transformations>
      <pr:provide-services><pr:all-services/></pr:provide-services>
      <pr:provide-persons><pr:all-persons/></pr:provide-persons>
      <pr:provide-devices><pr:all-devices/></pr:provide-devices>
      <pr:provide-all-attributes/>
    </cr:transformations>
  </cr:rule>
</cr:ruleset>
"#;

const LISTS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">
  <list name="buddies">
    <entry uri="sip:bob@tandem.lab"><display-name>Bob</display-name></entry>
    <entry uri="sip:carol@tandem.lab"/>
  </list>
</resource-lists>
"#;

const PRES_RULES: &str = "application/auth-policy+xml";

async fn lab_and_client() -> (Lab, XcapClient) {
    let lab = Lab::start(|_| {}).await;
    let addr = xcap_addr(&lab.server.as_ref().unwrap().ready_line());
    let client = XcapClient::new(addr, lab.dir.path(), DOMAIN);
    (lab, client)
}

#[tokio::test]
async fn xcap_needs_credentials_and_keeps_users_apart() {
    let (_lab, x) = lab_and_client().await;
    let path = x.user_path("pres-rules", "alice", "index");
    let ct = [("Content-Type", PRES_RULES)];

    let r = x.send("GET", &path, None, &[], None).await;
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .is_some_and(|v| v.starts_with("Digest ") && v.contains("realm=\"tandem.lab\"")),
        "{r:?}"
    );
    let r = x
        .send("PUT", &path, Some(("alice", "wrong")), &ct, Some(RULES))
        .await;
    assert_eq!(r.status, 401);
    let r = x
        .send("PUT", &path, Some(("nobody", "x")), &ct, Some(RULES))
        .await;
    assert_eq!(r.status, 401);

    let r = x
        .send("PUT", &path, Some(("alice", "alicepw")), &ct, Some(RULES))
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let etag = r.etag();
    let r = x
        .send("GET", &path, Some(("alice", "alicepw")), &[], None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, RULES);
    assert_eq!(r.header("content-type"), Some(PRES_RULES));
    assert_eq!(r.etag(), etag);

    // Another user may neither read nor write nor delete alice's documents.
    let r = x
        .send("GET", &path, Some(("bob", "bobpw")), &[], None)
        .await;
    assert_eq!(r.status, 403);
    let r = x
        .send("PUT", &path, Some(("bob", "bobpw")), &ct, Some(RULES))
        .await;
    assert_eq!(r.status, 403);
    let r = x
        .send("DELETE", &path, Some(("bob", "bobpw")), &[], None)
        .await;
    assert_eq!(r.status, 403);
    let r = x
        .send("GET", &path, Some(("alice", "alicepw")), &[], None)
        .await;
    assert_eq!(r.etag(), etag, "bob changed nothing");

    // Bob's own directory is his; a foreign domain is not served.
    let bob_path = x.user_path("pres-rules", "bob", "index");
    let r = x
        .send("GET", &bob_path, Some(("bob", "bobpw")), &[], None)
        .await;
    assert_eq!(r.status, 404);
    let foreign = "/xcap-root/pres-rules/users/sip:alice@elsewhere.example/index";
    let r = x
        .send("GET", foreign, Some(("alice", "alicepw")), &[], None)
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn xcap_entity_tags_guard_writes() {
    let (_lab, x) = lab_and_client().await;
    let path = x.user_path("resource-lists", "alice", "index");
    let alice = Some(("alice", "alicepw"));
    let ct = "application/resource-lists+xml";

    let r = x
        .put(&path, alice, ct, Some(("If-None-Match", "*")), LISTS)
        .await;
    assert_eq!(r.status, 201);
    let e1 = r.etag();
    let r = x
        .put(&path, alice, ct, Some(("If-None-Match", "*")), LISTS)
        .await;
    assert_eq!(r.status, 412, "the document exists");
    let r = x
        .put(&path, alice, ct, Some(("If-Match", "\"stale\"")), LISTS)
        .await;
    assert_eq!(r.status, 412);
    let if_e1 = format!("\"{e1}\"");
    let r = x
        .put(&path, alice, ct, Some(("If-Match", &if_e1)), LISTS)
        .await;
    assert_eq!(r.status, 200);
    let e2 = r.etag();
    assert_ne!(e1, e2, "each version has its own tag");
    let r = x
        .put(&path, alice, ct, Some(("If-Match", &if_e1)), LISTS)
        .await;
    assert_eq!(r.status, 412, "a lost update is refused");

    let if_e2 = format!("\"{e2}\"");
    let r = x
        .send("GET", &path, alice, &[("If-None-Match", &if_e2)], None)
        .await;
    assert_eq!(r.status, 304);
    let r = x
        .send("GET", &path, alice, &[("If-None-Match", &if_e1)], None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, LISTS);

    let r = x
        .send("DELETE", &path, alice, &[("If-Match", &if_e1)], None)
        .await;
    assert_eq!(r.status, 412);
    let r = x
        .send("DELETE", &path, alice, &[("If-Match", &if_e2)], None)
        .await;
    assert_eq!(r.status, 200);
    let r = x.send("GET", &path, alice, &[], None).await;
    assert_eq!(r.status, 404);
    let r = x.send("DELETE", &path, alice, &[], None).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn xcap_validates_documents() {
    let (_lab, x) = lab_and_client().await;
    let alice = Some(("alice", "alicepw"));
    let rules = x.user_path("pres-rules", "alice", "index");
    let ct = ("Content-Type", PRES_RULES);

    let r = x
        .send("PUT", &rules, alice, &[ct], Some("<cr:ruleset xmlns:cr="))
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.header("content-type"), Some("application/xcap-error+xml"));
    assert!(
        r.body.contains("urn:ietf:params:xml:ns:xcap-error"),
        "{}",
        r.body
    );
    // Well-formed, but not a ruleset.
    let r = x.send("PUT", &rules, alice, &[ct], Some(LISTS)).await;
    assert_eq!(r.status, 409, "{r:?}");
    assert!(r.body.contains("<xcap-error"), "{}", r.body);
    let r = x.send("GET", &rules, alice, &[], None).await;
    assert_eq!(r.status, 404, "nothing was stored");
    // The wrong media type for the usage.
    let r = x
        .send(
            "PUT",
            &rules,
            alice,
            &[("Content-Type", "text/plain")],
            Some(RULES),
        )
        .await;
    assert_eq!(r.status, 415);
    // A node selector with a prefix the query does not bind is a bad request; a node of a document that does not
    // exist does not exist either; unknown usages do not exist.
    let r = x
        .send("GET", &format!("{rules}/~~/cr:ruleset"), alice, &[], None)
        .await;
    assert_eq!(r.status, 400);
    let r = x
        .send("GET", &format!("{rules}/~~/ruleset"), alice, &[], None)
        .await;
    assert_eq!(r.status, 404);
    let r = x
        .send(
            "GET",
            "/xcap-root/no-such-usage/users/sip:alice@tandem.lab/index",
            alice,
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 404);
    // The capabilities document.
    let r = x
        .send("GET", "/xcap-root/xcap-caps/global/index", alice, &[], None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/xcap-caps+xml"));
    for auid in ["pres-rules", "resource-lists", "xcap-caps"] {
        assert!(
            r.body.contains(&format!("<auid>{auid}</auid>")),
            "{}",
            r.body
        );
    }
}
