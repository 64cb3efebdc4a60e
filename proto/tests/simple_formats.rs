//! Watcher-info, resource-lists, pres-rules, CPIM, IMDN, is-composing, RLMI, multipart and
//! message-summary against the RFC examples.

use bytes::Bytes;
use rand::SeedableRng;
use tandem_proto::simple::cpim::{CpimMessage, Subject};
use tandem_proto::simple::imdn::{
    DeliveryStatus, DisplayStatus, Disposition, Imdn, Notification, ProcessingStatus,
};
use tandem_proto::simple::iscomposing::{ComposingState, IsComposing};
use tandem_proto::simple::message_summary::{MessageCounts, MessageSummary};
use tandem_proto::simple::multipart::{self, Part};
use tandem_proto::simple::pres_rules::{
    Except, IdentityCond, ProvideSet, Ruleset, SubHandling, normalize_identity,
};
use tandem_proto::simple::resource_lists::ResourceLists;
use tandem_proto::simple::rlmi::{InstanceState, Rlmi};
use tandem_proto::simple::time::{format_rfc3339, parse_rfc3339};
use tandem_proto::simple::watcherinfo::{State, WatcherEvent, WatcherInfo, WatcherStatus};
use tandem_proto::simple::{SimpleError, ns};

fn data(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/simple/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn watcherinfo_rfc3858_example() {
    let w = WatcherInfo::parse(&data("rfc3858-watcherinfo.xml")).unwrap();
    assert_eq!(w.version, 0);
    assert_eq!(w.state, State::Full);
    assert_eq!(w.lists.len(), 1);
    let l = &w.lists[0];
    assert_eq!(l.resource, "sip:professor@example.net");
    assert_eq!(l.package, "presence");
    assert_eq!(l.watchers.len(), 2);
    let a = &l.watchers[0];
    assert_eq!(a.status, WatcherStatus::Active);
    assert_eq!(a.event, WatcherEvent::Approved);
    assert_eq!(a.id, "8ajksjda7s");
    assert_eq!(a.duration_subscribed, Some(509));
    assert_eq!(a.uri, "sip:userA@example.net");
    let b = &l.watchers[1];
    assert_eq!(b.status, WatcherStatus::Pending);
    assert_eq!(b.event, WatcherEvent::Subscribe);
    assert_eq!(b.display_name.as_deref(), Some("Mr. Subscriber"));
    assert_eq!(WatcherInfo::parse(w.to_xml().as_bytes()).unwrap(), w);
    // Bad enumerations are errors, not panics.
    let bad = String::from_utf8(data("rfc3858-watcherinfo.xml"))
        .unwrap()
        .replace("approved", "maybe");
    assert!(WatcherInfo::parse(bad.as_bytes()).is_err());
}

#[test]
fn resource_lists_rfc4826_example() {
    let r = ResourceLists::parse(&data("rfc4826-resource-lists.xml")).unwrap();
    assert_eq!(r.lists.len(), 1);
    let friends = r.list("friends").unwrap();
    assert_eq!(friends.entries[0].uri, "sip:bill@example.com");
    assert_eq!(
        friends.entries[0].display_name.as_ref().unwrap().text,
        "Bill Doe"
    );
    assert_eq!(friends.entry_refs.len(), 1);
    assert!(friends.entry_refs[0].0.starts_with("resource-lists/users/"));
    let close = &friends.lists[0];
    assert_eq!(close.name.as_deref(), Some("close-friends"));
    assert_eq!(close.display_name.as_ref().unwrap().text, "Close Friends");
    assert_eq!(close.external.len(), 1);
    assert_eq!(close.external[0].1.as_ref().unwrap().text, "Marketing");
    assert_eq!(
        r.all_uris(),
        [
            "sip:bill@example.com",
            "sip:joe@example.com",
            "sip:nancy@example.com"
        ]
    );
    assert_eq!(ResourceLists::parse(r.to_xml().as_bytes()).unwrap(), r);
}

#[test]
fn pres_rules_rfc5025_example() {
    let rs = Ruleset::parse(&data("rfc5025-pres-rules.xml")).unwrap();
    assert_eq!(rs.rules.len(), 1);
    let r = &rs.rules[0];
    assert_eq!(r.id, "a");
    assert_eq!(
        r.conditions.identities,
        Some(vec![IdentityCond::One("sip:user@example.com".into())])
    );
    assert_eq!(r.actions, Some(SubHandling::Allow));
    let t = &r.transformations;
    assert!(matches!(&t.provide_services, Some(ProvideSet::Some(v)) if v.len() == 2));
    assert_eq!(t.provide_persons, Some(ProvideSet::All));
    assert_eq!(t.flags, ["provide-activities"]);
    // provide-user-input (a value) and provide-unknown-attribute (attributes) are kept verbatim.
    let names: Vec<&str> = t.extra.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["provide-user-input", "provide-unknown-attribute"]);
    assert_eq!(
        t.extra[1].attr("ns"),
        Some("urn:vendor-specific:foo-namespace")
    );
    assert_eq!(Ruleset::parse(rs.to_xml().as_bytes()).unwrap(), rs);

    assert_eq!(rs.decide("sip:user@example.com"), SubHandling::Allow);
    assert_eq!(
        rs.decide("<sip:user@EXAMPLE.com;transport=tcp>"),
        SubHandling::Allow
    );
    assert_eq!(rs.decide("sip:USER@example.com"), SubHandling::Confirm);
    assert_eq!(rs.decide("sip:other@example.com"), SubHandling::Confirm);
}

#[test]
fn common_policy_rfc4745_example_and_validity() {
    let rs = Ruleset::parse(&data("rfc4745-common-policy.xml")).unwrap();
    let r = &rs.rules[0];
    assert_eq!(r.conditions.sphere.as_deref(), Some("work"));
    assert_eq!(r.conditions.validity.len(), 1);
    let ids = r.conditions.identities.as_ref().unwrap();
    assert_eq!(ids.len(), 3);
    assert_eq!(
        ids[2],
        IdentityCond::Many {
            domain: None,
            excepts: vec![Except::Domain("example.com".into())]
        }
    );
    assert_eq!(r.actions, None);
    assert_eq!(Ruleset::parse(rs.to_xml().as_bytes()).unwrap(), rs);
    // The sphere condition can never be satisfied by us: no match, default Confirm.
    let inside = parse_rfc3339("2003-12-24T18:00:00+01:00").unwrap().unix;
    assert_eq!(
        rs.decide_at("sip:alice@example.com", inside),
        SubHandling::Confirm
    );

    // Without the sphere: validity decides, and a matching rule without sub-handling is block.
    let mut rs2 = rs.clone();
    rs2.rules[0].conditions.sphere = None;
    assert_eq!(
        rs2.decide_at("sip:alice@example.com", inside),
        SubHandling::Block
    );
    assert_eq!(
        rs2.decide_at("sip:alice@example.com", inside + 3600),
        SubHandling::Confirm
    );
    assert_eq!(rs2.decide("sip:alice@example.com"), SubHandling::Confirm);
    // many/except domain: anyone but example.com matches.
    assert_eq!(
        rs2.decide_at("sip:eve@example.org", inside),
        SubHandling::Block
    );
    assert_eq!(
        rs2.decide_at("sip:eve@example.com", inside),
        SubHandling::Confirm
    );
}

#[test]
fn decide_combines_highest_value_and_set_handling() {
    let mut rs = Ruleset::default();
    assert_eq!(rs.decide("sip:bob@lab"), SubHandling::Confirm);
    rs.set_handling("wb", "sip:bob@lab", SubHandling::Block);
    assert_eq!(rs.decide("sip:bob@lab"), SubHandling::Block);
    assert_eq!(rs.decide("sip:carol@lab"), SubHandling::Confirm);
    rs.set_handling("wb2", "sip:bob@lab", SubHandling::PoliteBlock);
    assert_eq!(rs.rules.len(), 1, "the existing rule is updated");
    assert_eq!(rs.decide("sip:bob@lab"), SubHandling::PoliteBlock);
    // A domain-wide allow outranks the polite block (RFC 4745: the highest value wins).
    let xml = r#"<ruleset xmlns="urn:ietf:params:xml:ns:common-policy" xmlns:p="urn:ietf:params:xml:ns:pres-rules">
      <rule id="d"><conditions><identity><many domain="lab"><except id="sip:mallory@lab"/></many></identity></conditions>
      <actions><p:sub-handling>allow</p:sub-handling></actions><transformations/></rule></ruleset>"#;
    let mut domain = Ruleset::parse(xml.as_bytes()).unwrap();
    domain.rules.extend(rs.rules.clone());
    assert_eq!(domain.decide("sip:bob@lab"), SubHandling::Allow);
    assert_eq!(domain.decide("sip:mallory@lab"), SubHandling::Confirm);
    assert_eq!(domain.decide("sip:bob@elsewhere"), SubHandling::Confirm);
    assert_eq!(Ruleset::parse(domain.to_xml().as_bytes()).unwrap(), domain);
    // An unknown sub-handling value is an error.
    let bad = xml.replace(">allow<", ">perhaps<");
    assert!(Ruleset::parse(bad.as_bytes()).is_err());
    assert_eq!(
        normalize_identity("Bob <sips:bob@LAB:5061;x=y>"),
        "sip:bob@lab:5061"
    );
}

#[test]
fn cpim_rfc3862_example() {
    let m = CpimMessage::parse(&data("rfc3862-cpim.txt")).unwrap();
    assert_eq!(
        m.from.as_deref(),
        Some("MR SANDERS <im:piglet@100akerwood.com>")
    );
    assert_eq!(m.to, ["Depressed Donkey <im:eeyore@100akerwood.com>"]);
    assert_eq!(m.datetime.as_deref(), Some("2000-12-13T13:40:00-08:00"));
    assert_eq!(
        m.subject,
        vec![
            Subject {
                lang: None,
                text: "the weather will be fine today".into()
            },
            Subject {
                lang: Some("fr".into()),
                text: "beau temps prevu pour aujourd'hui".into()
            }
        ]
    );
    assert_eq!(
        m.ns,
        vec![(
            Some("MyFeatures".to_string()),
            "mid:MessageFeatures@id.foo.com".to_string()
        )]
    );
    assert_eq!(m.require, ["MyFeatures.VitalMessageOption"]);
    assert_eq!(
        m.header_ns("mid:MessageFeatures@id.foo.com", "VitalMessageOption"),
        Some("Confirmation-requested")
    );
    assert_eq!(m.content_type.as_deref(), Some("text/xml; charset=utf-8"));
    assert_eq!(
        m.content_headers,
        [("Content-ID".to_string(), "<1234567890@foo.com>".to_string())]
    );
    assert_eq!(
        m.body,
        Bytes::from_static(b"<body>\r\nHere is the text of my message.\r\n</body>\r\n")
    );
    let back = CpimMessage::parse(&m.to_bytes()).unwrap();
    assert_eq!(back.content_headers.len(), 2, "Content-Length is added");
    assert_eq!(back.body, m.body);
    assert_eq!(back.subject, m.subject);
    assert_eq!(back.headers, m.headers);
}

#[test]
fn cpim_imdn_headers_any_prefix() {
    let m = CpimMessage::parse(&data("rfc5438-cpim.txt")).unwrap();
    assert_eq!(m.imdn_message_id(), Some("34jk324j"));
    assert_eq!(
        m.imdn_disposition_notification(),
        [Disposition::PositiveDelivery, Disposition::Display]
    );
    assert!(m.body.starts_with(b"Hello World"));
    // The same headers under another prefix resolve identically.
    let renamed = String::from_utf8(data("rfc5438-cpim.txt"))
        .unwrap()
        .replace("imdn.", "x.")
        .replace("NS: imdn ", "NS: x ");
    let m2 = CpimMessage::parse(renamed.as_bytes()).unwrap();
    assert_eq!(m2.imdn_message_id(), Some("34jk324j"));
    // set_imdn reuses the declared prefix.
    let mut m3 = m2.clone();
    m3.set_imdn("new-id", &[Disposition::Display]);
    assert_eq!(m3.imdn_message_id(), Some("new-id"));
    assert!(m3.headers.iter().any(|(n, _)| n == "x.Message-ID"));
    assert_eq!(m3.ns.len(), 1);
    // And declares the namespace when absent.
    let mut fresh = CpimMessage::new(
        "<sip:a@lab>",
        "<sip:b@lab>",
        Some("2024-05-01T10:00:00Z"),
        "text/plain;charset=utf-8",
        "héllo",
    );
    fresh.set_imdn(
        "abc",
        &[Disposition::PositiveDelivery, Disposition::NegativeDelivery],
    );
    let parsed = CpimMessage::parse(&fresh.to_bytes()).unwrap();
    assert_eq!(parsed.imdn_message_id(), Some("abc"));
    assert_eq!(parsed.body, Bytes::from("héllo"));
    assert_eq!(parsed.prefix_for(ns::IMDN_CPIM), Some("imdn"));
    let text = String::from_utf8(fresh.to_bytes().to_vec()).unwrap();
    assert!(
        text.contains("NS: imdn <urn:ietf:params:imdn>\r\n"),
        "{text}"
    );
}

#[test]
fn cpim_rejects_malformed() {
    assert!(matches!(
        CpimMessage::parse(b"From: a\r\nno colon here\r\n\r\n\r\n"),
        Err(SimpleError::Cpim(_))
    ));
    assert!(CpimMessage::parse(b"From: a\r\n").is_err());
    assert!(CpimMessage::parse(b"NS: nobrackets\r\n\r\n\r\n").is_err());
    // LF-only line ends are accepted.
    let m = CpimMessage::parse(b"From: <sip:a@b>\n\nContent-Type: text/plain\n\nhi").unwrap();
    assert_eq!(m.body, Bytes::from_static(b"hi"));
}

#[test]
fn imdn_rfc5438_example_and_all_statuses() {
    let i = Imdn::parse(&data("rfc5438-imdn-delivered.xml")).unwrap();
    assert_eq!(i.message_id, "34jk324j");
    assert_eq!(i.datetime, "2008-04-04T12:16:49-05:00");
    assert_eq!(i.recipient_uri.as_deref(), Some("im:bob@example.com"));
    assert_eq!(i.subject.as_deref(), Some("Weekly report"));
    assert_eq!(
        i.notification,
        Notification::Delivery(DeliveryStatus::Delivered)
    );
    assert_eq!(i.disposition(), Disposition::PositiveDelivery);
    assert_eq!(Imdn::parse(i.to_xml().as_bytes()).unwrap(), i);
    for n in [
        Notification::Delivery(DeliveryStatus::Failed),
        Notification::Delivery(DeliveryStatus::Forbidden),
        Notification::Delivery(DeliveryStatus::Error),
        Notification::Display(DisplayStatus::Displayed),
        Notification::Display(DisplayStatus::Forbidden),
        Notification::Display(DisplayStatus::Error),
        Notification::Processing(ProcessingStatus::Processed),
        Notification::Processing(ProcessingStatus::Stored),
        Notification::Processing(ProcessingStatus::Forbidden),
        Notification::Processing(ProcessingStatus::Error),
    ] {
        let x = Imdn::new("id-1", "2024-01-01T00:00:00Z", n);
        assert_eq!(Imdn::parse(x.to_xml().as_bytes()).unwrap(), x);
    }
    // Missing notification or unknown status: errors.
    assert!(Imdn::parse(b"<imdn xmlns='urn:ietf:params:xml:ns:imdn'><message-id>a</message-id><datetime>x</datetime></imdn>").is_err());
    assert!(Imdn::parse(b"<imdn xmlns='urn:ietf:params:xml:ns:imdn'><message-id>a</message-id><datetime>x</datetime><display-notification><status><delivered/></status></display-notification></imdn>").is_err());
}

#[test]
fn iscomposing_rfc3994_examples() {
    let a = IsComposing::parse(&data("rfc3994-active.xml")).unwrap();
    assert_eq!(a.state, ComposingState::Active);
    assert_eq!(a.content_type.as_deref(), Some("text/plain"));
    assert_eq!(a.refresh, Some(90));
    let i = IsComposing::parse(&data("rfc3994-idle.xml")).unwrap();
    assert_eq!(i.state, ComposingState::Idle);
    assert_eq!(i.lastactive.as_deref(), Some("2003-01-27T10:43:00Z"));
    assert_eq!(i.content_type.as_deref(), Some("audio"));
    for x in [a, i, IsComposing::active(Some(60)), IsComposing::idle()] {
        assert_eq!(IsComposing::parse(x.to_xml().as_bytes()).unwrap(), x);
    }
    assert!(IsComposing::parse(b"<isComposing xmlns='urn:ietf:params:xml:ns:im-iscomposing'><state>typing</state></isComposing>").is_err());
    assert!(IsComposing::parse(b"<isComposing xmlns='urn:ietf:params:xml:ns:im-iscomposing'><state>active</state><refresh>-1</refresh></isComposing>").is_err());
}

#[test]
fn rlmi_rfc4662_example_in_multipart() {
    let r = Rlmi::parse(&data("rfc4662-rlmi.xml")).unwrap();
    assert_eq!(r.uri, "sip:adam-friends@pres.example.com");
    assert_eq!(r.version, 1);
    assert!(r.full_state);
    assert_eq!(r.names.len(), 2);
    assert_eq!(r.names[1].lang.as_deref(), Some("de"));
    assert_eq!(r.resources.len(), 4);
    let bob = &r.resources[0];
    assert_eq!(bob.names[0].text, "Bob Smith");
    assert_eq!(bob.instances[0].state, InstanceState::Active);
    assert_eq!(
        bob.instances[0].cid.as_deref(),
        Some("bUZBsM@pres.example.com")
    );
    assert!(r.resources[2].instances.is_empty());
    assert_eq!(Rlmi::parse(r.to_xml().as_bytes()).unwrap(), r);

    // A NOTIFY body: RLMI root part plus one PIDF part per active instance.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let boundary = multipart::generate_boundary(&mut rng);
    let pidf = tandem_proto::simple::pidf::Availability::Away
        .to_presence("sip:bob@example.com", None)
        .to_xml();
    let parts = vec![
        Part::new(
            "application/rlmi+xml;charset=\"UTF-8\"",
            Some("nXYxAE@pres.example.com"),
            r.to_xml(),
        ),
        Part::new(
            "application/pidf+xml;charset=\"UTF-8\"",
            Some("bUZBsM@pres.example.com"),
            pidf.clone(),
        ),
    ];
    let body = multipart::build(&parts, &boundary).unwrap();
    let ct = multipart::content_type(
        &boundary,
        "application/rlmi+xml",
        Some("nXYxAE@pres.example.com"),
    );
    assert_eq!(
        multipart::content_type_param(&ct, "boundary").as_deref(),
        Some(boundary.as_str())
    );
    assert_eq!(
        multipart::content_type_param(&ct, "type").as_deref(),
        Some("application/rlmi+xml")
    );
    assert_eq!(
        multipart::content_type_param(&ct, "start").as_deref(),
        Some("<nXYxAE@pres.example.com>")
    );
    let back = multipart::parse(&body, &boundary).unwrap();
    assert_eq!(back, parts);
    assert_eq!(back[1].content_id(), Some("bUZBsM@pres.example.com"));
    let p = tandem_proto::simple::pidf::parse(&back[1].body).unwrap();
    assert_eq!(
        p.availability(),
        tandem_proto::simple::pidf::Availability::Away
    );
}

#[test]
fn multipart_rfc_style_body_with_preamble_and_lf() {
    let body = b"preamble to ignore\r\n--50UBfW7LSCVLtggUPe5z\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <nXYxAE@pres.example.com>\r\nContent-Type: application/rlmi+xml;charset=\"UTF-8\"\r\n\r\n<list/>\r\n--50UBfW7LSCVLtggUPe5z\nContent-Type: text/plain\n\nline one\n--50UBfW7LSCVLtggUPe5z-not-a-boundary\n--50UBfW7LSCVLtggUPe5z--\r\nepilogue";
    let parts = multipart::parse(body, "50UBfW7LSCVLtggUPe5z").unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].content_id(), Some("nXYxAE@pres.example.com"));
    assert_eq!(parts[0].body, Bytes::from_static(b"<list/>"));
    assert_eq!(parts[1].content_type(), "text/plain");
    assert_eq!(
        parts[1].body,
        Bytes::from_static(b"line one\n--50UBfW7LSCVLtggUPe5z-not-a-boundary")
    );
    assert!(multipart::parse(b"--b\r\nA: b\r\n\r\nno end", "b").is_err());
    assert!(multipart::parse(b"nothing", "b").is_err());
    // The builder refuses a boundary that occurs in a part, and invalid boundaries.
    let p = vec![Part::new("text/plain", None, "x\r\n--abc\r\n")];
    assert!(multipart::build(&p, "abc").is_err());
    assert!(multipart::build(&p, "").is_err());
    assert!(multipart::build(&p, "bad\"quote").is_err());
}

#[test]
fn message_summary_rfc3842() {
    let m = MessageSummary::parse(&data("rfc3842-summary.txt")).unwrap();
    assert!(m.waiting);
    assert_eq!(m.account.as_deref(), Some("sip:alice@vmail.example.com"));
    assert_eq!(
        m.voice,
        Some(MessageCounts {
            new: 2,
            old: 8,
            urgent_new: 0,
            urgent_old: 2
        })
    );
    assert_eq!(MessageSummary::parse(m.to_body().as_bytes()).unwrap(), m);
    let with_details = "Messages-Waiting: yes\r\nMessage-Account: sip:alice@vmail.example.com\r\nVoice-Message: 4/8 (1/2)\r\nFax-Message: 1/0\r\n\r\nTo: <alice@atlanta.example.com>\r\nFrom: <bob@biloxi.example.com>\r\nSubject: carpool tomorrow?\r\n";
    let m = MessageSummary::parse(with_details.as_bytes()).unwrap();
    assert_eq!(m.voice.unwrap().urgent_new, 1);
    assert_eq!(m.other[0].0, "Fax-Message");
    assert_eq!(m.other[0].1.new, 1);
    assert!(m.details.starts_with("To: <alice@atlanta.example.com>"));
    assert_eq!(MessageSummary::parse(m.to_body().as_bytes()).unwrap(), m);
    assert!(MessageSummary::parse(b"Voice-Message: 1/2\r\n").is_err());
    assert!(MessageSummary::parse(b"Messages-Waiting: perhaps\r\n").is_err());
    assert!(MessageSummary::parse(b"Messages-Waiting: no\r\nVoice-Message: x/2\r\n").is_err());
}

#[test]
fn rfc3339_helpers() {
    let a = parse_rfc3339("2008-04-04T12:16:49-05:00").unwrap();
    let b = parse_rfc3339("2008-04-04T17:16:49Z").unwrap();
    assert_eq!(a, b);
    assert_eq!(format_rfc3339(b.unix), "2008-04-04T17:16:49Z");
    assert_eq!(
        parse_rfc3339("1970-01-01T00:00:00.5Z").unwrap().nanos,
        500_000_000
    );
    assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59Z");
    for bad in [
        "",
        "2008-13-01T00:00:00Z",
        "2008-04-04T12:16:49",
        "2008-04-04T12:16:49+5:00",
        "x",
    ] {
        assert!(parse_rfc3339(bad).is_none(), "{bad}");
    }
}

#[test]
fn pres_rules_transformations_filter_a_document() {
    use tandem_proto::simple::pidf::{self, Activity};
    let rs = Ruleset::parse(&data("rfc5025-pres-rules.xml")).unwrap();
    let doc = pidf::parse(&data("rfc4480-example.xml")).unwrap();
    let t = rs.transformations_for("sip:user@example.com", None);
    let out = t.apply(&doc);
    // provide-services by scheme sip/mailto: the im: tuple is withheld.
    let ids: Vec<&str> = out.tuples.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["ty4658", "eg92n8"]);
    // No provide-note, no provide-class/relationship/...: those go.
    assert!(
        out.tuples
            .iter()
            .all(|t| t.notes.is_empty() && t.extra.is_empty())
    );
    assert!(out.notes.is_empty());
    // All persons, with activities (provide-activities) but not mood, place-type or the rest.
    assert_eq!(out.persons.len(), 1);
    assert_eq!(out.persons[0].activities, vec![Activity::Away]);
    assert!(out.persons[0].mood.is_empty());
    assert_eq!(out.persons[0].place_type, None);
    assert!(out.persons[0].extra.is_empty());
    // No provide-devices: no devices.
    assert!(out.devices.is_empty());
    // A watcher no rule matches gets nothing.
    let none = rs
        .transformations_for("sip:stranger@example.com", None)
        .apply(&doc);
    assert!(none.tuples.is_empty() && none.persons.is_empty() && none.devices.is_empty());
    // set_handling(Allow) provides everything.
    let mut mine = Ruleset::default();
    mine.set_handling("w1", "sip:friend@example.com", SubHandling::Allow);
    let all = mine
        .transformations_for("sip:friend@example.com", None)
        .apply(&doc);
    assert_eq!(all, doc);
    // Union across rules: the RFC rule plus an all-devices rule for the same watcher.
    let mut both = rs.clone();
    let mut extra_rule = mine.rules[0].clone();
    extra_rule.conditions.identities = Some(vec![IdentityCond::One("sip:user@example.com".into())]);
    extra_rule.transformations = tandem_proto::simple::pres_rules::Transformations {
        provide_devices: Some(ProvideSet::All),
        ..Default::default()
    };
    both.rules.push(extra_rule);
    let u = both
        .transformations_for("sip:user@example.com", None)
        .apply(&doc);
    assert_eq!(u.devices.len(), 1);
    assert_eq!(u.devices[0].device_id, None, "no provide-deviceID");
    assert_eq!(
        u.devices[0].extra.len(),
        1,
        "provide-user-input=bare keeps user-input"
    );
}
