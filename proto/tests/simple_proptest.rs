//! Property tests for the SIMPLE formats: no parser panics on arbitrary input (raw bytes or
//! XML-shaped token soup), and print → parse gives back the same value for generated documents.

use bytes::Bytes;
use proptest::prelude::*;
use tandem_proto::simple::cpim::{CpimMessage, Subject};
use tandem_proto::simple::imdn::{
    DeliveryStatus, DisplayStatus, Imdn, Notification, ProcessingStatus,
};
use tandem_proto::simple::iscomposing::{ComposingState, IsComposing};
use tandem_proto::simple::message_summary::{MessageCounts, MessageSummary};
use tandem_proto::simple::multipart::{self, Part};
use tandem_proto::simple::pidf::{
    self, Activity, Basic, Device, Note, Person, Presence, Status, Tuple,
};
use tandem_proto::simple::pres_rules::{
    Conditions, Except, IdentityCond, ProvideSet, Rule, Ruleset, SubHandling, Transformations,
    Validity,
};
use tandem_proto::simple::resource_lists::{DisplayName, Entry, List, ResourceLists};
use tandem_proto::simple::rlmi::{Instance, InstanceState, Name, Resource, Rlmi};
use tandem_proto::simple::watcherinfo::{
    State, Watcher, WatcherEvent, WatcherInfo, WatcherList, WatcherStatus,
};
use tandem_proto::simple::xml::{self, Element};

fn parse_everything(input: &[u8]) {
    let _ = xml::parse(input);
    let _ = pidf::parse(input);
    let _ = WatcherInfo::parse(input);
    let _ = ResourceLists::parse(input);
    let _ = Ruleset::parse(input).map(|r| r.decide("sip:a@b"));
    let _ = Imdn::parse(input);
    let _ = IsComposing::parse(input);
    let _ = Rlmi::parse(input);
    let _ = CpimMessage::parse(input).map(|m| (m.imdn_message_id().map(str::len), m.to_bytes()));
    let _ = multipart::parse(input, "b");
    let _ = MessageSummary::parse(input);
    if let Ok(p) = pidf::parse(input) {
        // Whatever parses must print and parse again.
        let again = pidf::parse(p.to_xml().as_bytes());
        assert!(again.is_ok(), "{:?}", again);
        let _ = pidf::compose("sip:x@y", &[p.clone(), p]).availability();
    }
}

const SOUP: &[&str] = &[
    "<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='sip:a@b'>",
    "</presence>",
    "<tuple id='t'>",
    "</tuple>",
    "<status>",
    "</status>",
    "<basic>open</basic>",
    "<basic>closed</basic>",
    "<contact priority='0.5'>sip:a@b</contact>",
    "<contact priority='NaN'>",
    "<dm:person xmlns:dm='urn:ietf:params:xml:ns:pidf:data-model' id='p'>",
    "</dm:person>",
    "<r:activities xmlns:r='urn:ietf:params:xml:ns:pidf:rpid'>",
    "</r:activities>",
    "<r:away/>",
    "<r:other>x</r:other>",
    "<note xml:lang='en'>n</note>",
    "<watcherinfo xmlns='urn:ietf:params:xml:ns:watcherinfo' version='1' state='full'>",
    "<watcher-list resource='r' package='presence'>",
    "<watcher id='i' status='active' event='approved'>sip:w@x</watcher>",
    "<cp:ruleset xmlns:cp='urn:ietf:params:xml:ns:common-policy'>",
    "<cp:rule id='r'>",
    "<cp:conditions><cp:identity><cp:many domain='b'><cp:except id='sip:a@b'/></cp:many></cp:identity></cp:conditions>",
    "<cp:validity><cp:from>2000-01-01T00:00:00Z</cp:from><cp:until>x</cp:until></cp:validity>",
    "<cp:actions><pr:sub-handling xmlns:pr='urn:ietf:params:xml:ns:pres-rules'>allow</pr:sub-handling></cp:actions>",
    "<list xmlns='urn:ietf:params:xml:ns:rlmi' uri='u' version='1' fullState='true'>",
    "<resource uri='r'><instance id='i' state='active' cid='c'/></resource>",
    "<resource-lists xmlns='urn:ietf:params:xml:ns:resource-lists'><list name='n'>",
    "<entry uri='sip:a@b'><display-name>d</display-name></entry>",
    "</list>",
    "<imdn xmlns='urn:ietf:params:xml:ns:imdn'><message-id>m</message-id><datetime>d</datetime>",
    "<delivery-notification><status><delivered/></status></delivery-notification>",
    "</imdn>",
    "<isComposing xmlns='urn:ietf:params:xml:ns:im-iscomposing'><state>active</state>",
    "</isComposing>",
    "&amp;",
    "&#0;",
    "&#x10FFFF;",
    "&#xD800;",
    "&bogus;",
    "&",
    "<![CDATA[<x>]]>",
    "<!DOCTYPE x [<!ENTITY a 'aaaa'>]>",
    "<?xml version='1.0'?>",
    "<!-- c -->",
    "<a:b xmlns:a=''>",
    "<u:x>",
    "<x a='1' a='2'/>",
    "<x xmlns:p='urn:p' p:a='1' a='2'/>",
    "'",
    "\"",
    ">",
    "<",
    "</",
    "\u{0}",
    "é",
    " ",
    "\r\n",
];

fn soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(SOUP), 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..600)) {
        parse_everything(&input);
    }

    #[test]
    fn xml_token_soup_never_panics(input in soup()) {
        parse_everything(input.as_bytes());
    }

    #[test]
    fn cpim_like_text_never_panics(lines in prop::collection::vec("[A-Za-z.:;<> =-]{0,20}", 0..12), body in prop::collection::vec(any::<u8>(), 0..40)) {
        let mut s = lines.join("\r\n").into_bytes();
        s.extend_from_slice(&body);
        parse_everything(&s);
    }
}

// ---------------------------------------------------------------------------------------------
// Generators for round trips.

fn text() -> impl Strategy<Value = String> {
    "[A-Za-z0-9 &<>\"'éü€.,!?\t\r\n-]{0,20}"
}

fn word() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9._:@-]{0,12}"
}

fn id() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,8}"
}

fn timestamp() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop::sample::select(vec![
        "2005-05-30T16:09:44+05:00".to_string(),
        "2024-01-01T10:00:00Z".to_string(),
        "2024-01-01T10:00:00.250Z".to_string(),
    ]))
}

fn note() -> impl Strategy<Value = Note> {
    (
        prop::option::of(prop::sample::select(vec!["en", "fr", "de-CH"])),
        text(),
    )
        .prop_map(|(lang, text)| Note {
            lang: lang.map(str::to_string),
            text,
        })
}

fn raw() -> impl Strategy<Value = Element> {
    let leaf = (
        prop::sample::select(vec!["urn:test:ext", "http://example.com/x"]),
        "[a-z]{1,6}",
        prop::option::of(("[a-z]{1,4}", text())),
        "[a-z0-9]{0,5}",
    )
        .prop_map(|(ns, name, attr, t)| {
            let mut e = Element::new(ns, &name);
            if let Some((k, v)) = attr {
                e.set_attr("", &k, &v);
            }
            e.with_text(&t)
        });
    leaf.prop_recursive(2, 6, 3, |inner| {
        (
            prop::sample::select(vec!["urn:test:ext", "urn:test:other"]),
            "[a-z]{1,6}",
            prop::collection::vec(inner, 1..3),
        )
            .prop_map(|(ns, name, kids)| {
                let mut e = Element::new(ns, &name);
                for k in kids {
                    e.push(k);
                }
                e
            })
    })
}

fn activity() -> impl Strategy<Value = Activity> {
    prop_oneof![
        Just(Activity::Away),
        Just(Activity::Busy),
        Just(Activity::OnThePhone),
        Just(Activity::Meeting),
        Just(Activity::Meal),
        Just(Activity::Vacation),
        Just(Activity::Sleeping),
        Just(Activity::Unknown),
        prop::sample::select(vec!["breakfast", "travel", "in-transit"])
            .prop_map(|s| Activity::Other(s.to_string())),
        "[A-Z][a-z]{1,10}".prop_map(Activity::Other),
    ]
}

fn tuple() -> impl Strategy<Value = Tuple> {
    (
        id(),
        prop::option::of(prop_oneof![Just(Basic::Open), Just(Basic::Closed)]),
        prop::collection::vec(raw(), 0..2),
        prop::option::of((
            word(),
            prop::option::of((0u32..=1000).prop_map(|k| k as f32 / 1000.0)),
        )),
        prop::collection::vec(note(), 0..3),
        timestamp(),
        prop::collection::vec(raw(), 0..2),
    )
        .prop_map(|(id, basic, sx, contact, notes, timestamp, extra)| Tuple {
            id,
            status: Status { basic, extra: sx },
            contact,
            notes,
            timestamp,
            extra,
        })
}

fn person() -> impl Strategy<Value = Person> {
    (
        id(),
        prop::collection::vec(activity(), 0..3),
        prop::collection::vec(
            prop_oneof![
                prop::sample::select(vec!["happy", "in_love", "sleepy"]).prop_map(str::to_string),
                "[A-Z][a-z]{1,8}"
            ],
            0..3,
        ),
        prop::collection::vec(note(), 0..2),
        prop::option::of(prop_oneof![
            prop::sample::select(vec!["residence", "office"]).prop_map(str::to_string),
            "[A-Z][a-z]{1,8}( [a-z]{1,4})?"
        ]),
        timestamp(),
        prop::collection::vec(raw(), 0..2),
    )
        .prop_map(
            |(id, activities, mood, notes, place_type, timestamp, extra)| Person {
                id,
                activities,
                mood,
                notes,
                place_type,
                timestamp,
                extra,
                ..Person::default()
            },
        )
}

fn device() -> impl Strategy<Value = Device> {
    (
        id(),
        prop::option::of("urn:uuid:[0-9a-f]{8}"),
        prop::collection::vec(note(), 0..2),
        timestamp(),
        prop::collection::vec(raw(), 0..2),
    )
        .prop_map(|(id, device_id, notes, timestamp, extra)| Device {
            id,
            device_id,
            notes,
            timestamp,
            extra,
        })
}

fn presence() -> impl Strategy<Value = Presence> {
    (
        "sip:[a-z]{1,6}@[a-z]{1,6}\\.example",
        prop::collection::vec(tuple(), 0..3),
        prop::collection::vec(person(), 0..2),
        prop::collection::vec(device(), 0..2),
        prop::collection::vec(note(), 0..2),
        prop::collection::vec(raw(), 0..2),
    )
        .prop_map(
            |(entity, tuples, persons, devices, notes, extra)| Presence {
                entity,
                tuples,
                persons,
                devices,
                notes,
                extra,
            },
        )
}

fn watcherinfo() -> impl Strategy<Value = WatcherInfo> {
    let watcher = (
        id(),
        prop::sample::select(vec![
            WatcherStatus::Pending,
            WatcherStatus::Active,
            WatcherStatus::Waiting,
            WatcherStatus::Terminated,
        ]),
        prop::sample::select(vec![
            WatcherEvent::Subscribe,
            WatcherEvent::Approved,
            WatcherEvent::Deactivated,
            WatcherEvent::Probation,
            WatcherEvent::Rejected,
            WatcherEvent::Timeout,
            WatcherEvent::Giveup,
            WatcherEvent::Noresource,
        ]),
        word(),
        prop::option::of(text()),
        prop::option::of(Just("en".to_string())),
        prop::option::of(0u64..100_000),
        prop::option::of(0u64..100_000),
    )
        .prop_map(
            |(id, status, event, uri, display_name, lang, d, e)| Watcher {
                id,
                status,
                event,
                uri,
                display_name,
                lang,
                duration_subscribed: d,
                expiration: e,
            },
        );
    let list = (word(), word(), prop::collection::vec(watcher, 0..4)).prop_map(
        |(resource, package, watchers)| WatcherList {
            resource,
            package,
            watchers,
        },
    );
    (
        any::<u32>(),
        prop_oneof![Just(State::Full), Just(State::Partial)],
        prop::collection::vec(list, 0..3),
    )
        .prop_map(|(version, state, lists)| WatcherInfo {
            version,
            state,
            lists,
        })
}

fn display_name() -> impl Strategy<Value = Option<DisplayName>> {
    prop::option::of(
        (prop::option::of(Just("en".to_string())), text())
            .prop_map(|(lang, text)| DisplayName { lang, text }),
    )
}

fn rl_list() -> impl Strategy<Value = List> {
    let entry = (word(), display_name()).prop_map(|(uri, display_name)| Entry {
        uri,
        display_name,
        extra: Vec::new(),
    });
    let base = (
        prop::option::of(id()),
        display_name(),
        prop::collection::vec(entry, 0..3),
        prop::collection::vec((word(), display_name()), 0..2),
        prop::collection::vec((word(), display_name()), 0..2),
        prop::collection::vec(raw(), 0..2),
    )
        .prop_map(
            |(name, display_name, entries, entry_refs, external, extra)| List {
                name,
                display_name,
                entries,
                entry_refs,
                external,
                lists: Vec::new(),
                extra,
            },
        );
    base.prop_recursive(3, 12, 3, |inner| {
        (inner.clone(), prop::collection::vec(inner, 0..3)).prop_map(|(mut l, subs)| {
            l.lists = subs;
            l
        })
    })
}

fn ruleset() -> impl Strategy<Value = Ruleset> {
    let ident = prop_oneof![
        word().prop_map(IdentityCond::One),
        (
            prop::option::of("[a-z]{1,6}\\.example"),
            prop::collection::vec(
                prop_oneof![
                    word().prop_map(Except::Id),
                    "[a-z]{1,6}\\.example".prop_map(Except::Domain)
                ],
                0..3
            )
        )
            .prop_map(|(domain, excepts)| IdentityCond::Many { domain, excepts }),
    ];
    let set = prop::option::of(prop_oneof![
        Just(ProvideSet::All),
        Just(ProvideSet::Some(Vec::new()))
    ]);
    let rule = (
        id(),
        prop::option::of(prop::collection::vec(ident, 0..3)),
        prop::option::of("[a-z]{1,8}"),
        prop::collection::vec(
            Just(Validity {
                from: "2024-01-01T00:00:00Z".into(),
                until: "2024-02-01T00:00:00Z".into(),
            }),
            0..2,
        ),
        prop::option::of(prop::sample::select(vec![
            SubHandling::Block,
            SubHandling::Confirm,
            SubHandling::PoliteBlock,
            SubHandling::Allow,
        ])),
        (set.clone(), set.clone(), set, any::<bool>()),
        prop::sample::subsequence(
            vec!["provide-activities", "provide-mood", "provide-place-type"],
            0..3,
        ),
    )
        .prop_map(
            |(id, identities, sphere, validity, actions, (s, p, d, all), flags)| Rule {
                id,
                conditions: Conditions {
                    identities,
                    sphere,
                    validity,
                    extra: Vec::new(),
                },
                actions,
                extra_actions: Vec::new(),
                transformations: Transformations {
                    provide_services: s,
                    provide_persons: p,
                    provide_devices: d,
                    provide_all_attributes: all,
                    flags: flags.into_iter().map(str::to_string).collect(),
                    extra: Vec::new(),
                },
            },
        );
    prop::collection::vec(rule, 0..4).prop_map(|rules| Ruleset { rules })
}

fn imdn() -> impl Strategy<Value = Imdn> {
    let n = prop_oneof![
        prop::sample::select(vec![
            DeliveryStatus::Delivered,
            DeliveryStatus::Failed,
            DeliveryStatus::Forbidden,
            DeliveryStatus::Error
        ])
        .prop_map(Notification::Delivery),
        prop::sample::select(vec![
            DisplayStatus::Displayed,
            DisplayStatus::Forbidden,
            DisplayStatus::Error
        ])
        .prop_map(Notification::Display),
        prop::sample::select(vec![
            ProcessingStatus::Processed,
            ProcessingStatus::Stored,
            ProcessingStatus::Forbidden,
            ProcessingStatus::Error
        ])
        .prop_map(Notification::Processing),
    ];
    (
        word(),
        word(),
        prop::option::of(word()),
        prop::option::of(word()),
        prop::option::of(word()),
        n,
        prop::collection::vec(raw(), 0..2),
    )
        .prop_map(
            |(message_id, datetime, r, o, s, notification, extra)| Imdn {
                message_id,
                datetime,
                recipient_uri: r,
                original_recipient_uri: o,
                subject: s,
                notification,
                extra,
            },
        )
}

fn header_value() -> impl Strategy<Value = String> {
    "[A-Za-z0-9<>@:.=,/\"]([A-Za-z0-9<>@:.=,/\" ]{0,15}[A-Za-z0-9<>@:.=,/\"])?"
}

fn cpim() -> impl Strategy<Value = CpimMessage> {
    let other_name = "[A-Za-z][A-Za-z0-9-]{0,8}(\\.[A-Za-z][A-Za-z0-9-]{0,8})?".prop_filter(
        "not a CPIM header",
        |n| {
            !["from", "to", "cc", "datetime", "subject", "ns", "require"]
                .contains(&n.to_ascii_lowercase().as_str())
        },
    );
    let content_name = "Content-[A-Za-z]{1,8}".prop_filter("not type or length", |n| {
        !["content-type", "content-length"].contains(&n.to_ascii_lowercase().as_str())
    });
    (
        prop::option::of(header_value()),
        prop::collection::vec(header_value(), 0..3),
        prop::option::of(Just("2000-12-13T13:40:00-08:00".to_string())),
        prop::collection::vec(
            (
                prop::option::of(Just("fr".to_string())),
                "[A-Za-z0-9]([A-Za-z0-9 ']{0,10}[A-Za-z0-9])?",
            )
                .prop_map(|(lang, text)| Subject { lang, text }),
            0..3,
        ),
        prop::collection::vec(
            (prop::option::of("[A-Za-z]{1,6}"), "[a-z]{1,5}:[a-z]{1,5}"),
            0..2,
        ),
        prop::collection::vec((other_name, header_value()), 0..3),
        prop::option::of(Just("text/plain; charset=utf-8".to_string())),
        prop::collection::vec((content_name, header_value()), 0..2),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(
            |(from, to, datetime, subject, ns, headers, content_type, content_headers, body)| {
                CpimMessage {
                    from,
                    to,
                    cc: Vec::new(),
                    datetime,
                    subject,
                    ns,
                    require: Vec::new(),
                    headers,
                    content_type,
                    content_headers,
                    body: Bytes::from(body),
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn pidf_round_trips(p in presence()) {
        let xml = p.to_xml();
        let back = pidf::parse(xml.as_bytes());
        prop_assert_eq!(back.as_ref().ok(), Some(&p), "{}", xml);
        // Composition of a document with itself keeps everything and stays parseable.
        let c = pidf::compose(&p.entity, &[p.clone(), p.clone()]);
        prop_assert_eq!(c.tuples.len(), 2 * p.tuples.len());
        prop_assert!(c.persons.len() <= 1);
        prop_assert_eq!(pidf::parse(c.to_xml().as_bytes()).ok(), Some(c));
    }

    #[test]
    fn watcherinfo_round_trips(w in watcherinfo()) {
        prop_assert_eq!(WatcherInfo::parse(w.to_xml().as_bytes()).ok(), Some(w));
    }

    #[test]
    fn resource_lists_round_trip(lists in prop::collection::vec(rl_list(), 0..3)) {
        let r = ResourceLists { lists };
        let xml = r.to_xml();
        prop_assert_eq!(ResourceLists::parse(xml.as_bytes()).ok(), Some(r), "{}", xml);
    }

    #[test]
    fn pres_rules_round_trip_and_decide_is_monotonic(rs in ruleset(), w in word()) {
        let xml = rs.to_xml();
        let back = Ruleset::parse(xml.as_bytes());
        prop_assert_eq!(back.as_ref().ok(), Some(&rs), "{}", xml);
        // Adding an allow rule for exactly this watcher can only raise the decision to allow.
        let before = rs.decide(&w);
        let mut more = rs.clone();
        more.rules.push(Rule {
            id: "extra".into(),
            conditions: Conditions { identities: Some(vec![IdentityCond::One(w.clone())]), ..Conditions::default() },
            actions: Some(SubHandling::Allow),
            ..Rule::default()
        });
        prop_assert_eq!(more.decide(&w), SubHandling::Allow);
        prop_assert!(before <= SubHandling::Allow);
    }

    #[test]
    fn imdn_round_trips(i in imdn()) {
        prop_assert_eq!(Imdn::parse(i.to_xml().as_bytes()).ok(), Some(i));
    }

    #[test]
    fn iscomposing_round_trips(
        active in any::<bool>(),
        last in prop::option::of(word()),
        ct in prop::option::of(word()),
        refresh in prop::option::of(any::<u32>()),
    ) {
        let x = IsComposing {
            state: if active { ComposingState::Active } else { ComposingState::Idle },
            lastactive: last,
            content_type: ct,
            refresh,
            extra: Vec::new(),
        };
        prop_assert_eq!(IsComposing::parse(x.to_xml().as_bytes()).ok(), Some(x));
    }

    #[test]
    fn rlmi_round_trips(
        uri in word(),
        version in any::<u32>(),
        full in any::<bool>(),
        resources in prop::collection::vec(
            (word(), prop::collection::vec(text(), 0..2), prop::collection::vec(
                (id(), prop::sample::select(vec![InstanceState::Active, InstanceState::Pending, InstanceState::Terminated]),
                 prop::option::of(word()), prop::option::of(id())), 0..3)),
            0..4),
    ) {
        let r = Rlmi {
            uri,
            version,
            full_state: full,
            names: vec![Name { lang: Some("en".into()), text: "list".into() }],
            resources: resources
                .into_iter()
                .map(|(uri, names, inst)| Resource {
                    uri,
                    names: names.into_iter().map(|text| Name { lang: None, text }).collect(),
                    instances: inst
                        .into_iter()
                        .map(|(id, state, cid, reason)| Instance { id, state, cid, reason })
                        .collect(),
                })
                .collect(),
        };
        prop_assert_eq!(Rlmi::parse(r.to_xml().as_bytes()).ok(), Some(r));
    }

    #[test]
    fn cpim_round_trips(m in cpim()) {
        let bytes = m.to_bytes();
        let back = CpimMessage::parse(&bytes);
        prop_assert!(back.is_ok(), "{:?}", back);
        let mut back = back.unwrap_or_default();
        back.content_headers.retain(|(n, _)| !n.eq_ignore_ascii_case("content-length"));
        prop_assert_eq!(back, m);
    }

    #[test]
    fn multipart_round_trips(
        seed in any::<u64>(),
        parts in prop::collection::vec(
            (prop::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,10}", header_value()), 0..3),
             prop::collection::vec(any::<u8>(), 0..80)),
            0..5),
    ) {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let boundary = multipart::generate_boundary(&mut rng);
        let parts: Vec<Part> = parts
            .into_iter()
            .map(|(headers, body)| Part { headers, body: Bytes::from(body) })
            .collect();
        let body = multipart::build(&parts, &boundary);
        prop_assert!(body.is_ok());
        let body = body.unwrap_or_default();
        prop_assert_eq!(multipart::parse(&body, &boundary).ok(), Some(parts));
    }

    #[test]
    fn message_summary_round_trips(
        waiting in any::<bool>(),
        account in prop::option::of(word()),
        voice in prop::option::of((any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>())),
        fax in prop::option::of((any::<u32>(), any::<u32>())),
        ext in prop::collection::vec(("X-[A-Za-z]{1,8}", header_value()), 0..2),
        details in prop::option::of("[A-Za-z][A-Za-z: ]{0,20}(\r\n[A-Za-z: ]{0,20}){0,3}"),
    ) {
        let m = MessageSummary {
            waiting,
            account,
            voice: voice.map(|(a, b, c, d)| MessageCounts { new: a, old: b, urgent_new: c, urgent_old: d }),
            other: fax
                .map(|(a, b)| ("Fax-Message".to_string(), MessageCounts { new: a, old: b, ..MessageCounts::default() }))
                .into_iter()
                .collect(),
            headers: ext,
            details: details.unwrap_or_default(),
        };
        prop_assert_eq!(MessageSummary::parse(m.to_body().as_bytes()).ok(), Some(m));
    }
}

#[test]
fn limits_hold() {
    // Depth bomb.
    let deep = format!(
        "<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'>{}{}</presence>",
        "<a>".repeat(100),
        "</a>".repeat(100)
    );
    assert!(matches!(
        pidf::parse(deep.as_bytes()),
        Err(tandem_proto::simple::SimpleError::TooDeep { .. })
    ));
    // Too large.
    let big = vec![b' '; 1024 * 1024 + 1];
    assert!(matches!(
        xml::parse(&big),
        Err(tandem_proto::simple::SimpleError::TooLarge { .. })
    ));
    // Element flood.
    let flood = format!(
        "<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'>{}</presence>",
        "<x/>".repeat(30_000)
    );
    assert!(matches!(
        pidf::parse(flood.as_bytes()),
        Err(tandem_proto::simple::SimpleError::TooManyElements { .. })
    ));
    // No entity expansion: a DOCTYPE (billion laughs) is refused outright.
    let laughs = "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol2 '&lol;&lol;'>]><presence xmlns='urn:ietf:params:xml:ns:pidf' entity='&lol2;'/>";
    assert!(pidf::parse(laughs.as_bytes()).is_err());
    // Undeclared prefixes and unknown entities are errors.
    assert!(xml::parse(b"<p:x/>").is_err());
    assert!(xml::parse(b"<x>&nbsp;</x>").is_err());
    // Multipart part flood.
    let mut many = Vec::new();
    for _ in 0..1100 {
        many.extend_from_slice(b"--b\r\n\r\nx\r\n");
    }
    many.extend_from_slice(b"--b--\r\n");
    assert!(multipart::parse(&many, "b").is_err());
}

#[test]
fn namespace_handling_is_prefix_independent() {
    let a = xml::parse(b"<a:r xmlns:a='urn:n' xmlns:b='urn:m'><b:c b:k='v'>t</b:c></a:r>").unwrap();
    let b =
        xml::parse(b"<r xmlns='urn:n'><c xmlns='urn:m' xmlns:z='urn:m' z:k='v'>t</c></r>").unwrap();
    assert_eq!(a, b);
    // Printing then parsing an element tree keeps it, including no-namespace children under a
    // default namespace and namespaced attributes in the default namespace.
    let tree = Element::new("urn:n", "r")
        .with_attr_ns("urn:n", "k", "v")
        .with_child(Element::new("", "plain").with_child(Element::new("urn:n", "inner")))
        .with_child(Element::new("urn:q", "q").with_text("a<b&c"));
    let printed = tree.to_document();
    assert_eq!(xml::parse(printed.as_bytes()).unwrap(), tree, "{printed}");
}
