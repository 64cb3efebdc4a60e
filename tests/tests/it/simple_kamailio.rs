//! `tandem-cli` against an unmodified Kamailio 5.6 presence server (presence, presence_xml, rls, xcap_server over
//! xhttp; `tests/peers/kamailio-presence.cfg.in`): PUBLISH, SUBSCRIBE/NOTIFY with pres-rules written over XCAP, the
//! XCAP buddy list (`tandem-cli buddy`), XCAP access control, and a resource-list subscription (RFC 4662) with
//! `tandem-cli watch --list`.

use tandem_tests::kamailio::curl_xcap;
use tandem_tests::process::Stream;
use tandem_tests::{CliAccount, Kamailio, KamailioOptions, TestDir, Transport};

use crate::common::{assert_exit, ok, secs};

/// `owner`'s pres-rules allowing each of `watchers` (RFC 5025 over common-policy, RFC 4745).
pub fn allow_rules(watchers: &[&str]) -> String {
    let rules: String = watchers
        .iter()
        .enumerate()
        .map(|(i, w)| {
            format!(
                "<cr:rule id=\"r{i}\"><cr:conditions><cr:identity><cr:one id=\"{w}\"/></cr:identity></cr:conditions>\
                 <cr:actions><pr:sub-handling>allow</pr:sub-handling></cr:actions><cr:transformations>\
                 <pr:provide-services><pr:all-services/></pr:provide-services><pr:provide-persons><pr:all-persons/>\
                 </pr:provide-persons><pr:provide-devices><pr:all-devices/></pr:provide-devices>\
                 <pr:provide-all-attributes/></cr:transformations></cr:rule>\n"
            )
        })
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<cr:ruleset xmlns:cr=\"urn:ietf:params:xml:ns:common-policy\" \
         xmlns:pr=\"urn:ietf:params:xml:ns:pres-rules\">\n{rules}</cr:ruleset>\n"
    )
}

/// An rls-services document (RFC 4826 §4) with one service `service` listing `members` for the presence package.
pub fn rls_services(service: &str, members: &[&str]) -> String {
    let entries: String = members
        .iter()
        .map(|m| format!("<rl:entry uri=\"{m}\"/>"))
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rls-services xmlns=\"urn:ietf:params:xml:ns:rls-services\" \
         xmlns:rl=\"urn:ietf:params:xml:ns:resource-lists\">\n<service uri=\"{service}\"><list name=\"buddies\">\
         {entries}</list><packages><package>presence</package></packages></service>\n</rls-services>\n"
    )
}

fn start_kamailio(dir: &TestDir, users: &[(&str, &str)]) -> Kamailio {
    // One worker per transport: Kamailio's presence and rls modules write SQLite from every worker, and two
    // writers at once get "database is locked" (and Kamailio 5.6's error paths then crash the worker).
    let mut opts = KamailioOptions::default().with_presence();
    opts.children = 1;
    for (u, p) in users {
        opts = opts.user(u, p);
    }
    ok(Kamailio::start(opts, dir.path()))
}

fn account(k: &Kamailio, user: &str, password: &str) -> CliAccount {
    let mut a = CliAccount::new(
        user,
        "127.0.0.1",
        password,
        k.addr(Transport::Udp),
        Transport::Udp,
    );
    a.ca_file = Some(k.ca_cert().to_path_buf());
    a
}

fn doc_url(k: &Kamailio, auid: &str, user: &str) -> String {
    format!("{}/{auid}/users/sip:{user}@127.0.0.1/index", k.xcap_root())
}

#[test]
fn cli_presence_pres_rules_and_buddies_against_kamailio() {
    let dir = ok(TestDir::new("kam-presence"));
    let mut k = start_kamailio(&dir, &[("alice", "alicepw"), ("bob", "bobpw")]);
    let alice = account(&k, "alice", "alicepw");
    let bob = account(&k, "bob", "bobpw");

    // bob watches alice: without pres-rules Kamailio's presence_xml keeps the subscription pending.
    let mut watch = ok(bob.spawn(
        "cli-watch-kam",
        &["watch", "sip:alice@127.0.0.1", "--duration", "90"],
        dir.path(),
    ));
    ok(watch.wait_for_line(Stream::Stdout, "presence-pending", secs(15)));

    // XCAP access control: no credentials 401, bob writing alice's rules 403.
    let rules_url = doc_url(&k, "pres-rules", "alice");
    let rules = allow_rules(&["sip:bob@127.0.0.1"]);
    let anon = ok(curl_xcap("GET", &rules_url, None, k.ca_cert(), None));
    assert_eq!(anon.status, 401, "{anon:?}");
    let cross = ok(curl_xcap(
        "PUT",
        &rules_url,
        Some(("bob", "bobpw")),
        k.ca_cert(),
        Some(("application/auth-policy+xml", &rules)),
    ));
    assert_eq!(cross.status, 403, "{cross:?}");

    // alice allows bob (Kamailio re-evaluates the watchers of alice), then publishes.
    let put = ok(curl_xcap(
        "PUT",
        &rules_url,
        Some(("alice", "alicepw")),
        k.ca_cert(),
        Some(("application/auth-policy+xml", &rules)),
    ));
    assert!(matches!(put.status, 200 | 201), "{put:?}");
    let out = ok(alice.run(
        "cli-presence-kam",
        &[
            "presence",
            "--status",
            "busy",
            "--note",
            "in a meeting",
            "--duration",
            "3",
        ],
        dir.path(),
        secs(40),
    ));
    assert_exit(&out, 0);
    let published = out.events("published");
    assert_eq!(published.len(), 1, "{}", out.dump());
    assert!(published[0].contains("status=busy"), "{}", out.dump());
    assert!(out.has_event("unpublished"), "{}", out.dump());
    let line = ok(watch.wait_for_line(
        Stream::Stdout,
        "presence entity=sip:alice@127.0.0.1 status=busy",
        secs(15),
    ));
    assert!(line.contains("note=\"in a meeting\""), "{line}");
    ok(watch.wait_for_line(
        Stream::Stdout,
        "presence entity=sip:alice@127.0.0.1 status=offline",
        secs(15),
    ));
    watch.stop();

    // The buddy list over Kamailio's XCAP server (resource-lists, HTTPS, digest).
    let xcap_root = k.xcap_root();
    let buddy = |name: &str, args: &[&str]| {
        let mut full = vec!["buddy", "--xcap-root", xcap_root.as_str()];
        full.extend_from_slice(args);
        ok(alice.run(name, &full, dir.path(), secs(30)))
    };
    let add = buddy(
        "cli-buddy-add-bob",
        &["add", "sip:bob@127.0.0.1", "--name", "Bob"],
    );
    assert_exit(&add, 0);
    assert!(add.has_event("buddy-added"), "{}", add.dump());
    let add = buddy("cli-buddy-add-carol", &["add", "sip:carol@127.0.0.1"]);
    assert_exit(&add, 0);
    let list = buddy("cli-buddy-list", &["list"]);
    assert_exit(&list, 0);
    let buddies = list.events("buddy");
    assert_eq!(buddies.len(), 2, "{}", list.dump());
    assert!(
        buddies
            .iter()
            .any(|b| b.contains("uri=sip:bob@127.0.0.1") && b.contains("name=Bob")),
        "{}",
        list.dump()
    );
    // What Kamailio stored is a resource-lists document bob cannot read.
    let stored = ok(curl_xcap(
        "GET",
        &doc_url(&k, "resource-lists", "alice"),
        Some(("alice", "alicepw")),
        k.ca_cert(),
        None,
    ));
    assert_eq!(stored.status, 200, "{stored:?}");
    assert!(
        stored
            .body
            .contains("urn:ietf:params:xml:ns:resource-lists")
            && stored.body.contains("sip:carol@127.0.0.1"),
        "{stored:?}"
    );
    let cross = ok(curl_xcap(
        "GET",
        &doc_url(&k, "resource-lists", "alice"),
        Some(("bob", "bobpw")),
        k.ca_cert(),
        None,
    ));
    assert_eq!(cross.status, 403, "{cross:?}");
    let del = buddy("cli-buddy-del", &["del", "sip:carol@127.0.0.1"]);
    assert_exit(&del, 0);
    let list = buddy("cli-buddy-list2", &["list"]);
    let buddies = list.events("buddy");
    assert_eq!(buddies.len(), 1, "{}", list.dump());
    assert!(
        buddies[0].contains("uri=sip:bob@127.0.0.1"),
        "{}",
        list.dump()
    );
    assert!(k.is_running());
}

#[test]
fn cli_watches_a_resource_list_through_kamailio_rls() {
    let dir = ok(TestDir::new("kam-rls"));
    let mut k = start_kamailio(
        &dir,
        &[("alice", "alicepw"), ("bob", "bobpw"), ("carol", "carolpw")],
    );
    let alice = account(&k, "alice", "alicepw");
    let bob = account(&k, "bob", "bobpw");
    let rules = allow_rules(&["sip:alice@127.0.0.1"]);
    for (user, password) in [("bob", "bobpw"), ("carol", "carolpw")] {
        let put = ok(curl_xcap(
            "PUT",
            &doc_url(&k, "pres-rules", user),
            Some((user, password)),
            k.ca_cert(),
            Some(("application/auth-policy+xml", &rules)),
        ));
        assert!(matches!(put.status, 200 | 201), "{put:?}");
    }
    // alice's list service: what Kamailio's rls looks up for a SUBSCRIBE from alice to sip:alice-list@….
    let services = rls_services(
        "sip:alice-list@127.0.0.1",
        &["sip:bob@127.0.0.1", "sip:carol@127.0.0.1"],
    );
    let put = ok(curl_xcap(
        "PUT",
        &doc_url(&k, "rls-services", "alice"),
        Some(("alice", "alicepw")),
        k.ca_cert(),
        Some(("application/rls-services+xml", &services)),
    ));
    assert!(matches!(put.status, 200 | 201), "{put:?}");

    let mut busy = ok(bob.spawn(
        "cli-presence-bob",
        &[
            "presence",
            "--status",
            "busy",
            "--note",
            "on a call",
            "--duration",
            "40",
        ],
        dir.path(),
    ));
    ok(busy.wait_for_line(Stream::Stdout, "published status=busy", secs(15)));
    let mut watch = ok(alice.spawn(
        "cli-watch-list-kam",
        &[
            "watch",
            "--list",
            "sip:alice-list@127.0.0.1",
            "--duration",
            "60",
        ],
        dir.path(),
    ));
    ok(watch.wait_for_line(
        Stream::Stdout,
        "list uri=sip:alice-list@127.0.0.1",
        secs(20),
    ));
    let line = ok(watch.wait_for_line(
        Stream::Stdout,
        "presence entity=sip:bob@127.0.0.1 status=busy",
        secs(20),
    ));
    assert!(line.contains("note=\"on a call\""), "{line}");
    // carol has published nothing: she is listed, without an available state.
    let lists = watch.matching_lines(Stream::Stdout, "list uri=");
    assert!(lists.iter().all(|l| l.contains("resources=")), "{lists:?}");
    busy.stop();
    watch.stop();
    assert!(k.is_running());
}

/// The same XCAP node-selector requests (RFC 4825 §6.3) against an XCAP root: element by attribute and by
/// position, an attribute, namespace bindings from the query, element PUT (create) and DELETE, 404 for a missing
/// node; `who` names the server in messages. With `query_bindings` a prefixed selector binding its prefix in the
/// query (`?xmlns(rl=…)`, RFC 4825 §6.4) is checked too: Kamailio 5.6's xcap_server passes the query into its
/// XPath and does not resolve prefixes (not even those of its `xml_ns` parameter: "Undefined namespace prefix"),
/// so that step is for the lab only.
pub fn node_selector_checks(
    who: &str,
    root: &str,
    user: &str,
    password: &str,
    ca: &std::path::Path,
    query_bindings: bool,
) {
    let doc_url = format!("{root}/resource-lists/users/sip:{user}@127.0.0.1/index");
    let creds = Some((user, password));
    let doc = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">\
        <list name=\"friends\"><entry uri=\"sip:bob@127.0.0.1\"><display-name>Bob</display-name></entry>\
        <entry uri=\"sip:carol@127.0.0.1\"/></list><list name=\"work\"><entry uri=\"sip:dave@127.0.0.1\"/></list>\
        </resource-lists>\n";
    let put = ok(curl_xcap(
        "PUT",
        &doc_url,
        creds,
        ca,
        Some(("application/resource-lists+xml", doc)),
    ));
    assert!(matches!(put.status, 200 | 201), "{who}: {put:?}");
    let node = |sel: &str| format!("{doc_url}/~~/{sel}");
    let friends = "resource-lists/list%5b@name=%22friends%22%5d";

    let second = ok(curl_xcap(
        "GET",
        &node(&format!("{friends}/entry%5b2%5d")),
        creds,
        ca,
        None,
    ));
    assert_eq!(second.status, 200, "{who}: {second:?}");
    assert!(
        second.body.contains("sip:carol@127.0.0.1"),
        "{who}: {second:?}"
    );
    assert!(!second.body.contains("sip:bob@"), "{who}: {second:?}");
    let name = ok(curl_xcap(
        "GET",
        &node("resource-lists/list%5b2%5d/@name"),
        creds,
        ca,
        None,
    ));
    assert_eq!(
        (name.status, name.body.trim()),
        (200, "work"),
        "{who}: {name:?}"
    );
    if query_bindings {
        let prefixed = ok(curl_xcap(
            "GET",
            &format!(
                "{}?xmlns(rl=urn:ietf:params:xml:ns:resource-lists)",
                node("rl:resource-lists/rl:list%5b@name=%22work%22%5d/rl:entry")
            ),
            creds,
            ca,
            None,
        ));
        assert_eq!(prefixed.status, 200, "{who}: {prefixed:?}");
        assert!(
            prefixed.body.contains("sip:dave@127.0.0.1"),
            "{who}: {prefixed:?}"
        );
    }
    let missing = ok(curl_xcap(
        "GET",
        &node(&format!("{friends}/entry%5b7%5d")),
        creds,
        ca,
        None,
    ));
    assert_eq!(missing.status, 404, "{who}: {missing:?}");

    let eve = format!("{friends}/entry%5b@uri=%22sip:eve@127.0.0.1%22%5d");
    let created = ok(curl_xcap(
        "PUT",
        &node(&eve),
        creds,
        ca,
        Some((
            "application/xcap-el+xml",
            "<entry xmlns=\"urn:ietf:params:xml:ns:resource-lists\" uri=\"sip:eve@127.0.0.1\"/>",
        )),
    ));
    assert!(matches!(created.status, 200 | 201), "{who}: {created:?}");
    let deleted = ok(curl_xcap(
        "DELETE",
        &node(&format!(
            "{friends}/entry%5b@uri=%22sip:bob@127.0.0.1%22%5d"
        )),
        creds,
        ca,
        None,
    ));
    assert_eq!(deleted.status, 200, "{who}: {deleted:?}");
    let whole = ok(curl_xcap("GET", &doc_url, creds, ca, None));
    assert_eq!(whole.status, 200, "{who}: {whole:?}");
    assert!(
        whole.body.contains("sip:eve@127.0.0.1")
            && whole.body.contains("sip:carol@127.0.0.1")
            && !whole.body.contains("sip:bob@127.0.0.1"),
        "{who}: {whole:?}"
    );
    let eve_now = ok(curl_xcap("GET", &node(&eve), creds, ca, None));
    assert_eq!(eve_now.status, 200, "{who}: {eve_now:?}");
}

#[test]
fn xcap_node_selectors_on_kamailio_and_the_lab() {
    let dir = ok(TestDir::new("xcap-nodes"));
    let k = start_kamailio(&dir, &[("alice", "alicepw")]);
    node_selector_checks(
        "kamailio",
        &k.xcap_root(),
        "alice",
        "alicepw",
        k.ca_cert(),
        false,
    );
    let lab = ok(tandem_tests::LabServer::start(
        tandem_tests::LabOptions::default().user("alice", "alicepw"),
        dir.path(),
    ));
    let Some(xcap) = lab.xcap() else {
        panic!("the lab reports no XCAP listener");
    };
    node_selector_checks(
        "lab",
        &format!("https://127.0.0.1:{}/xcap-root", xcap.port()),
        "alice",
        "alicepw",
        &lab.ca_cert(),
        true,
    );
}
