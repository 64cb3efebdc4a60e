//! PIDF / RPID / data model: the RFC examples, documents real peers produce, composition.

use tandem_proto::simple::ns::{DATA_MODEL, RPID};
use tandem_proto::simple::pidf::{
    self, Activity, Availability, Basic, Note, Person, Presence, Tuple, compose,
};

fn data(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/simple/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn reparse(p: &Presence) -> Presence {
    let xml = p.to_xml();
    pidf::parse(xml.as_bytes()).unwrap_or_else(|e| panic!("reparse failed: {e}\n{xml}"))
}

#[test]
fn rfc3863_prefixed_example() {
    let p = pidf::parse(&data("rfc3863-example1.xml")).unwrap();
    assert_eq!(p.entity, "pres:someone@example.com");
    assert_eq!(p.tuples.len(), 1);
    let t = &p.tuples[0];
    assert_eq!(t.id, "sg89ae");
    assert_eq!(t.status.basic, Some(Basic::Open));
    assert_eq!(t.contact, Some(("tel:+09012345678".to_string(), Some(0.8))));
    assert_eq!(p.availability(), Availability::Available);
    assert_eq!(reparse(&p), p);
}

#[test]
fn rfc3863_extension_example() {
    let p = pidf::parse(&data("rfc3863-example2.xml")).unwrap();
    assert_eq!(p.tuples.len(), 2);
    let t = &p.tuples[0];
    assert_eq!(t.id, "bs35r9");
    // Status extensions survive, with their namespaces.
    assert_eq!(t.status.extra.len(), 2);
    assert!(t.status.extra[0].is("urn:ietf:params:xml:ns:pidf:im", "im"));
    assert_eq!(t.status.extra[0].text(), "busy");
    assert!(t.status.extra[1].is("http://id.example.com/presence/", "location"));
    assert_eq!(
        t.notes,
        vec![
            Note {
                lang: Some("en".into()),
                text: "Don't Disturb Please!".into()
            },
            Note {
                lang: Some("fr".into()),
                text: "Ne derangez pas, s'il vous plait".into()
            },
        ]
    );
    assert_eq!(t.timestamp.as_deref(), Some("2001-10-27T16:49:29Z"));
    assert_eq!(p.tuples[1].contact.as_ref().unwrap().1, Some(1.0));
    assert_eq!(p.notes, vec![Note::new("I'll be in Tokyo next week")]);
    let again = reparse(&p);
    assert_eq!(again, p);
    let xml = p.to_xml();
    assert!(xml.contains("xml:lang=\"fr\""), "{xml}");
    assert!(xml.contains("http://id.example.com/presence/"), "{xml}");
}

#[test]
fn rfc4480_rpid_example() {
    let p = pidf::parse(&data("rfc4480-example.xml")).unwrap();
    assert_eq!(p.tuples.len(), 3);
    assert_eq!(p.devices.len(), 1);
    assert_eq!(p.persons.len(), 1);
    let d = &p.devices[0];
    assert_eq!(d.id, "pc147");
    assert_eq!(d.device_id.as_deref(), Some("urn:device:0003ba4811e3"));
    assert_eq!(d.notes, vec![Note::new("PC")]);
    assert!(d.extra[0].is(RPID, "user-input"));
    let person = &p.persons[0];
    assert_eq!(person.id, "p1");
    assert_eq!(person.activities, vec![Activity::Away]);
    assert_eq!(person.activities_meta.notes, vec![Note::new("Far away")]);
    assert_eq!(person.activities_meta.attrs.len(), 2);
    assert_eq!(
        person.mood,
        vec!["angry".to_string(), "brooding".to_string()]
    );
    assert_eq!(person.place_type.as_deref(), Some("residence"));
    assert_eq!(person.notes, vec![Note::new("Scoring 120")]);
    assert_eq!(
        person.timestamp.as_deref(),
        Some("2005-05-30T16:09:44+05:00")
    );
    let names: Vec<&str> = person.extra.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "class",
            "place-is",
            "privacy",
            "sphere",
            "status-icon",
            "time-offset"
        ]
    );
    // Tuple extensions (deviceID, relationship, service-class) are kept in order.
    let t0: Vec<&str> = p.tuples[0].extra.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(t0, ["deviceID", "relationship", "service-class"]);
    assert!(p.tuples[0].extra[0].is(DATA_MODEL, "deviceID"));
    assert_eq!(p.availability(), Availability::Away);
    assert_eq!(reparse(&p), p);
}

#[test]
fn availability_round_trips_through_presence() {
    for a in [
        Availability::Available,
        Availability::Away,
        Availability::Busy,
        Availability::OnThePhone,
        Availability::Offline,
    ] {
        let p = a.to_presence("sip:alice@example.com", Some("hi & <bye>"));
        let back = reparse(&p);
        assert_eq!(back, p);
        assert_eq!(back.availability(), a, "{a:?}");
        assert_eq!(back.tuples[0].notes[0].text, "hi & <bye>");
    }
    assert_eq!(
        Presence::closed("sip:a@b").availability(),
        Availability::Offline
    );
    assert_eq!(
        Presence::neutral("sip:a@b").availability(),
        Availability::Offline
    );
    assert!(Presence::neutral("sip:a@b").tuples.is_empty());
}

#[test]
fn compose_unions_tuples_and_merges_persons_newest_first() {
    let mut phone = Availability::OnThePhone.to_presence_with_id("sip:a@x", "phone", None);
    phone.persons[0].timestamp = Some("2024-01-01T10:00:00Z".into());
    let mut desk = Availability::Away.to_presence_with_id("sip:a@x", "desk", Some("lunch"));
    desk.persons[0].timestamp = Some("2024-01-01T09:00:00+00:00".into());
    // The desk publication arrives later but carries an older person timestamp.
    let c = compose("sip:a@x", &[phone.clone(), desk.clone()]);
    assert_eq!(c.tuples.len(), 2);
    assert_eq!(c.persons.len(), 1);
    assert_eq!(c.persons[0].activities, vec![Activity::OnThePhone]);
    // The newest person wins as a whole: its (empty) notes replace the older person's.
    assert!(c.persons[0].notes.is_empty());
    assert_eq!(c.availability(), Availability::OnThePhone);
    // Without timestamps, publication order decides.
    phone.persons[0].timestamp = None;
    desk.persons[0].timestamp = None;
    let c = compose("sip:a@x", &[phone, desk]);
    assert_eq!(c.persons[0].activities, vec![Activity::Away]);
    assert_eq!(c.persons[0].notes, vec![Note::new("lunch")]);
    assert_eq!(reparse(&c), c);
}

#[test]
fn compose_available_after_busy_clears_busy_and_keeps_other_person_elements() {
    let mut busy = Availability::Busy.to_presence_with_id("sip:a@x", "desk", None);
    let sphere = tandem_proto::simple::xml::Element::new(RPID, "sphere").with_text("work");
    busy.persons[0].extra.push(sphere.clone());
    let avail = Availability::Available.to_presence_with_id("sip:a@x", "phone", None);
    let c = compose("sip:a@x", &[busy.clone(), avail.clone()]);
    assert_eq!(c.availability(), Availability::Available);
    assert_eq!(c.persons[0].extra, vec![sphere]);
    // A publication without a person leaves the person state alone.
    let mut bare = Availability::Available.to_presence_with_id("sip:a@x", "tablet", None);
    bare.persons.clear();
    let c = compose("sip:a@x", &[busy, bare]);
    assert_eq!(c.availability(), Availability::Busy);
    assert_eq!(c.tuples.len(), 2);
}

#[test]
fn compose_keeps_ids_unique() {
    let a = Availability::Available.to_presence("sip:a@x", None);
    let b = Availability::Busy.to_presence("sip:a@x", None);
    let c = compose("sip:a@x", &[a, b]);
    assert_eq!(c.tuples.len(), 2);
    assert_ne!(c.tuples[0].id, c.tuples[1].id);
    assert_eq!(c.availability(), Availability::Busy);
    let ids: Vec<&str> = c
        .tuples
        .iter()
        .map(|t| t.id.as_str())
        .chain(c.persons.iter().map(|p| p.id.as_str()))
        .collect();
    let mut dedup = ids.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), ids.len());
}

#[test]
fn closed_tuple_means_offline_even_with_activities() {
    let p = Presence {
        entity: "sip:a@x".into(),
        tuples: vec![Tuple {
            id: "t".into(),
            status: pidf::Status {
                basic: Some(Basic::Closed),
                extra: vec![],
            },
            ..Tuple::default()
        }],
        persons: vec![Person {
            id: "p".into(),
            activities: vec![Activity::Busy],
            ..Person::default()
        }],
        ..Presence::default()
    };
    assert_eq!(p.availability(), Availability::Offline);
}

#[test]
fn rejects_wrong_root_and_missing_entity() {
    assert!(pidf::parse(b"<presence entity='x'/>").is_err());
    assert!(pidf::parse(b"<presence xmlns='urn:ietf:params:xml:ns:pidf'/>").is_err());
    assert!(
        pidf::parse(b"<p:presence xmlns:p='urn:ietf:params:xml:ns:pidf' entity='sip:a@b'/>")
            .is_ok()
    );
    // A basic value other than open/closed (baresip sends `unknown`, `?`) counts as absent.
    let p = pidf::parse(
        b"<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='sip:a@b'><tuple id='t'><status><basic>maybe</basic></status></tuple></presence>",
    )
    .unwrap();
    assert_eq!(p.tuples[0].status.basic, None);
    assert_eq!(p.availability(), Availability::Offline);
    assert!(pidf::parse(b"<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='sip:a@b'><tuple id='t'><contact priority='2'>x</contact></tuple></presence>").is_err());
}

#[test]
fn linphone_publication() {
    let p = pidf::parse(&data("linphone-publish.xml")).unwrap();
    assert_eq!(p.entity, "sip:test@127.0.0.1:8888");
    let t = &p.tuples[0];
    assert_eq!(t.id, "mg0g2-");
    assert_eq!(t.status.basic, Some(Basic::Open));
    assert!(t.status.extra[0].is("http://www.linphone.org/xsds/pidfonline.xsd", "online"));
    assert_eq!(
        t.contact,
        Some(("sip:test@127.0.0.1:8888".into(), Some(0.42)))
    );
    assert_eq!(t.timestamp.as_deref(), Some("2023-04-07T07:34:48Z"));
    assert_eq!(p.availability(), Availability::Available);
    let xml = p.to_xml();
    assert!(
        xml.contains("<contact priority=\"0.42\">sip:test@127.0.0.1:8888</contact>"),
        "{xml}"
    );
    assert_eq!(reparse(&p), p);
}

#[test]
fn baresip_publications() {
    let p = pidf::parse(&data("baresip-publish-open.xml")).unwrap();
    assert_eq!(p.entity, "sip:alice@lab.example");
    assert_eq!(p.persons[0].id, "p4159");
    assert!(p.persons[0].activities.is_empty());
    assert_eq!(p.availability(), Availability::Available);
    assert_eq!(reparse(&p), p);
    let u = pidf::parse(&data("baresip-publish-unknown.xml")).unwrap();
    assert_eq!(u.tuples[0].status.basic, None);
    assert_eq!(u.availability(), Availability::Offline);
}

#[test]
fn output_matches_what_baresip_scans_for() {
    // baresip 1.0's subscriber does not parse XML: it regex-matches `<basic>open</basic>`,
    // `<rpid:away/>`, `<rpid:busy/>` and `<rpid:on-the-phone/>`. Our prefixes must stay so.
    let away = Availability::Away.to_presence("sip:a@lab", None).to_xml();
    assert!(away.contains("<basic>open</basic>"), "{away}");
    assert!(away.contains("<rpid:away/>"), "{away}");
    let busy = Availability::Busy.to_presence("sip:a@lab", None).to_xml();
    assert!(busy.contains("<rpid:busy/>"), "{busy}");
    let phone = Availability::OnThePhone
        .to_presence("sip:a@lab", None)
        .to_xml();
    assert!(phone.contains("<rpid:on-the-phone/>"), "{phone}");
    let off = Presence::closed("sip:a@lab").to_xml();
    assert!(off.contains("<basic>closed</basic>"), "{off}");
    // Even after composing documents that used other prefixes.
    let k = pidf::parse(&data("kamailio-pua-busy.xml")).unwrap();
    let c = compose("sip:bob@lab.example", &[k]).to_xml();
    assert!(
        c.contains("<rpid:on-the-phone/>") && c.contains("<dm:person"),
        "{c}"
    );
}

#[test]
fn kamailio_and_freeswitch_prefixes() {
    let k = pidf::parse(&data("kamailio-pua-busy.xml")).unwrap();
    assert_eq!(
        k.persons[0].activities,
        vec![Activity::OnThePhone, Activity::Busy]
    );
    assert_eq!(k.availability(), Availability::OnThePhone);
    assert_eq!(reparse(&k), k);
    // The document declares ISO-8859-1 but is ASCII; we read UTF-8 only.
    let f = pidf::parse(&data("freeswitch-on-the-phone.xml")).unwrap();
    assert_eq!(f.availability(), Availability::OnThePhone);
    assert_eq!(f.persons[0].notes, vec![Note::new("Talk 07766088671")]);
}

/// Fuzz regression (`fuzz/regressions/pidf_parse/`): a namespace name with markup characters is
/// refused, since it could not print back to itself.
#[test]
fn namespace_with_markup_characters_is_refused() {
    let doc = b"<?xml version=\"1.0\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" \
xmlns:x=\"http://example.com/a<b\" entity=\"sip:a@example.com\"><tuple id=\"t\"><status>\
<basic>open</basic><x:online/></status></tuple></presence>";
    assert!(Presence::parse(doc).is_err());
    let amp = b"<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:x=\"http://e.com/?a&amp;b\" \
entity=\"sip:a@example.com\"><tuple id=\"t\"><status><basic>open</basic><x:online/></status></tuple></presence>";
    assert!(Presence::parse(amp).is_err());
    // Ordinary documents still parse and print back to themselves.
    let ok = b"<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:x=\"http://example.com/ext\" \
entity=\"sip:a@example.com\"><tuple id=\"t\"><status><basic>open</basic><x:online/></status></tuple></presence>";
    let p = Presence::parse(ok).unwrap();
    assert_eq!(
        Presence::parse(p.to_xml().as_bytes()).unwrap().to_xml(),
        p.to_xml()
    );
}
