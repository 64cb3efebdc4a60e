//! Property tests: generated messages survive print → parse → print, header spelling variants
//! (case, compact forms, whitespace, folding) parse to the same values, and hostile input never
//! panics.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use proptest::prelude::*;
use tandem_proto::msg::*;

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9.!%*_+`'~-]{0,11}"
}

fn host() -> impl Strategy<Value = Host> {
    prop_oneof![
        "[a-z]([a-z0-9-]{0,8}[a-z0-9])?(\\.[a-z][a-z0-9]{0,6}){0,3}".prop_map(Host::Domain),
        any::<[u8; 4]>().prop_map(|o| Host::V4(Ipv4Addr::from(o))),
        any::<[u16; 8]>().prop_map(|s| Host::V6(Ipv6Addr::from(s))),
    ]
}

fn uri() -> impl Strategy<Value = Uri> {
    (
        prop::option::of("[a-zA-Z0-9_.!~*'()&=+$,;?/-]{1,12}|[a-z]{1,4}%[0-9A-F]{2}[a-z]{0,3}"),
        host(),
        prop::option::of(1u16..),
        prop::collection::vec(
            (
                "[a-z][a-z0-9-]{0,7}",
                prop::option::of("[a-zA-Z0-9.-]{1,8}"),
            ),
            0..3,
        ),
        any::<bool>(),
    )
        .prop_map(|(user, host, port, params, sips)| {
            let mut u = Uri::sip(user.as_deref(), host, port);
            if sips {
                u.scheme = Scheme::Sips;
            }
            u.params = params;
            u
        })
}

fn name_addr() -> impl Strategy<Value = NameAddr> {
    (
        prop::option::of(prop_oneof![
            "[A-Za-z][A-Za-z0-9]{0,6}( [A-Za-z0-9]{1,6}){0,2}",
            "[ -~]{0,16}",
            "\\PC{0,8}",
        ]),
        uri(),
        prop::collection::vec(("[a-z][a-z0-9-]{0,7}", prop::option::of(token())), 0..3),
    )
        .prop_map(|(display, uri, params)| NameAddr {
            display,
            uri,
            params,
        })
}

fn via() -> impl Strategy<Value = Via> {
    (
        prop_oneof![Just("UDP"), Just("TCP"), Just("TLS"), Just("WS")],
        host(),
        prop::option::of(any::<u16>()),
        token(),
        any::<bool>(),
    )
        .prop_map(|(t, host, port, branch, rport)| {
            let mut v = Via::new(t, host, port);
            v.set_param("branch", Some(&format!("z9hG4bK{branch}")));
            if rport {
                v.set_param("rport", None);
            }
            v
        })
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Invite),
        Just(Method::Ack),
        Just(Method::Bye),
        Just(Method::Cancel),
        Just(Method::Register),
        Just(Method::Options),
        Just(Method::Message),
        "[A-Z][A-Z_-]{2,10}".prop_map(|m| m.parse().unwrap()),
    ]
}

#[derive(Debug, Clone)]
struct Generated {
    method: Method,
    uri: Uri,
    vias: Vec<Via>,
    from: NameAddr,
    to: NameAddr,
    call_id: String,
    seq: u32,
    contacts: Vec<NameAddr>,
    extra: Vec<(String, String)>,
    body: Vec<u8>,
}

fn generated() -> impl Strategy<Value = Generated> {
    (
        method(),
        uri(),
        prop::collection::vec(via(), 1..4),
        name_addr(),
        name_addr(),
        "[a-zA-Z0-9.!%*_+`'~()<>:/?{}-]{1,20}(@[a-z0-9.]{1,10})?",
        0u32..(1 << 31),
        prop::collection::vec(name_addr(), 0..3),
        prop::collection::vec(("X-[A-Za-z0-9-]{1,10}", "[ -~]{0,30}"), 0..4),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(
            |(method, uri, vias, from, to, call_id, seq, contacts, extra, body)| Generated {
                method,
                uri,
                vias,
                from,
                to,
                call_id,
                seq,
                contacts,
                extra,
                body,
            },
        )
}

impl Generated {
    fn request(&self) -> Request {
        let mut r = Request::new(self.method.clone(), self.uri.clone());
        for v in &self.vias {
            r.headers.push(HeaderName::Via, v.to_string());
        }
        r.headers.push(HeaderName::From, self.from.to_string());
        r.headers.push(HeaderName::To, self.to.to_string());
        r.headers.push(HeaderName::CallId, self.call_id.clone());
        r.headers.push(
            HeaderName::CSeq,
            CSeq::new(self.seq, self.method.clone()).to_string(),
        );
        r.headers.push(HeaderName::MaxForwards, "70");
        if !self.contacts.is_empty() {
            let joined: Vec<String> = self.contacts.iter().map(ToString::to_string).collect();
            r.headers.push(HeaderName::Contact, joined.join(", "));
        }
        for (n, v) in &self.extra {
            r.headers.push(HeaderName::parse(n), v.trim().to_string());
        }
        r.body = Bytes::from(self.body.clone());
        r
    }
}

fn without_length(h: &Headers) -> Vec<Header> {
    h.iter()
        .filter(|h| h.name != HeaderName::ContentLength)
        .cloned()
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn print_parse_print(g in generated()) {
        let req = g.request();
        let bytes = req.to_bytes();
        let parsed = Request::parse(bytes.clone())
            .unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&bytes)));
        prop_assert_eq!(&parsed.method, &g.method);
        prop_assert_eq!(&parsed.uri, &g.uri);
        prop_assert_eq!(without_length(&parsed.headers), without_length(&req.headers));
        prop_assert_eq!(&parsed.body, &req.body);
        prop_assert_eq!(parsed.headers.vias().unwrap(), g.vias.clone());
        prop_assert_eq!(parsed.headers.from().unwrap(), g.from.clone());
        prop_assert_eq!(parsed.headers.to().unwrap(), g.to.clone());
        prop_assert_eq!(parsed.headers.call_id().unwrap(), g.call_id.as_str());
        prop_assert_eq!(parsed.headers.cseq().unwrap(), CSeq::new(g.seq, g.method.clone()));
        let contacts: Vec<ContactValue> =
            g.contacts.iter().cloned().map(ContactValue::Addr).collect();
        prop_assert_eq!(parsed.headers.contacts().unwrap(), contacts);
        prop_assert_eq!(parsed.to_bytes(), bytes);
        // A response built from it round-trips too.
        let resp = Response::for_request(&parsed, 200);
        let back = Response::parse(resp.to_bytes()).unwrap();
        prop_assert_eq!(back.headers.vias().unwrap(), g.vias.clone());
        prop_assert_eq!(back.to_bytes(), resp.to_bytes());
    }

    /// The same message spelled with random name case, compact forms, whitespace around the
    /// colon and line folding parses to the same header values.
    #[test]
    fn spelling_variants(g in generated(), seed in any::<u64>()) {
        let req = g.request();
        let mut rng = seed;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut text = Vec::new();
        text.extend_from_slice(format!("{} {} SIP/2.0\r\n", req.method, req.uri).as_bytes());
        for h in req.headers.iter() {
            let long = h.name.as_str();
            let compact = match h.name {
                HeaderName::Via => Some("v"),
                HeaderName::From => Some("f"),
                HeaderName::To => Some("t"),
                HeaderName::CallId => Some("i"),
                HeaderName::Contact => Some("m"),
                _ => None,
            };
            let name: String = match (compact, next() % 3) {
                (Some(c), 0) => c.to_string(),
                _ => long
                    .chars()
                    .map(|c| if next() % 2 == 0 { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
                    .collect(),
            };
            let pad = [" ", "", "\t", "  "][(next() % 4) as usize];
            // Fold at one of the spaces of the value (never inside a quoted string: only when
            // the value has no quotes; and not where whitespace runs, since a fold plus the
            // whitespace around it reads back as one SP, RFC 3261 §7.3.1).
            let value = String::from_utf8(h.value.to_vec()).unwrap();
            let single_spaces = !value.contains("  ") && !value.contains(" \t") && !value.contains("\t ");
            let folded = if !value.contains('"') && single_spaces && value.contains(' ') && next() % 2 == 0 {
                value.replacen(' ', "\r\n   ", 1)
            } else {
                value.clone()
            };
            text.extend_from_slice(format!("{name}{pad}:{pad}{folded}\r\n").as_bytes());
        }
        text.extend_from_slice(format!("l: {}\r\n\r\n", req.body.len()).as_bytes());
        text.extend_from_slice(&req.body);
        let parsed = Request::parse(Bytes::from(text.clone()))
            .unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&text)));
        prop_assert_eq!(without_length(&parsed.headers), without_length(&req.headers));
        prop_assert_eq!(&parsed.body, &req.body);
    }

    #[test]
    fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        let data = Bytes::from(data);
        if let Err(e) = Message::parse(data.clone()) {
            let _ = e.reason();
            let _ = error_response(&data, &e);
        }
        let mut f = StreamFramer::new(4096);
        f.push(&data);
        while let Some(Ok(_)) = f.next() {}
    }

    /// Random text lines (any Unicode) in message shape never panic.
    #[test]
    fn random_text_never_panics(
        start in prop_oneof![Just(""), Just("SIP/"), Just("INVITE sip:"), Just("SIP/2.0 ")],
        lines in prop::collection::vec("\\PC{0,40}", 0..12),
        body in "\\PC{0,20}",
    ) {
        let text = format!("{start}{}\r\n\r\n{body}", lines.join("\r\n"));
        let data = Bytes::from(text);
        if let Err(e) = Message::parse(data.clone()) {
            let _ = error_response(&data, &e);
        }
    }

    /// Mutated valid messages (flipped bytes, truncation, inserted separators) never panic.
    #[test]
    fn mutations_never_panic(g in generated(), edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let mut data = g.request().to_bytes().to_vec();
        for (pos, byte) in edits {
            let i = pos % data.len();
            data[i] = match byte % 6 {
                0 => b':',
                1 => b',',
                2 => b'"',
                3 => b'<',
                4 => b'\n',
                _ => byte,
            };
        }
        data.truncate(cut % (data.len() + 1));
        let data = Bytes::from(data);
        match Message::parse(data.clone()) {
            Ok(m) => {
                // Whatever survives the mutations prints to bytes that parse to the same print.
                let printed = m.to_bytes();
                let again = Message::parse(printed.clone())
                    .unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&printed)));
                prop_assert_eq!(again.to_bytes(), printed);
                let h = m.headers();
                let _ = (h.vias(), h.from(), h.to(), h.contacts(), h.routes(), h.expires());
            }
            Err(e) => {
                let _ = error_response(&data, &e);
            }
        }
    }

    #[test]
    fn uri_strings_never_panic(s in "\\PC{0,64}") {
        if let Ok(u) = Uri::parse(&s) {
            let again = Uri::parse(&u.to_string()).unwrap();
            prop_assert_eq!(&again, &u);
            prop_assert!(again.equivalent(&u) || !u.scheme.is_supported());
            let _ = (u.aor(), u.user_unescaped(), u.host_port());
        }
        let _ = NameAddr::parse(&s);
        let _ = Via::parse(&s);
        let _ = CSeq::parse(&s);
    }

    /// Framing a stream of messages cut into arbitrary chunks gives back each message.
    #[test]
    fn framer_chunks(gs in prop::collection::vec(generated(), 1..4), chunk in 1usize..300) {
        let msgs: Vec<Bytes> = gs.iter().map(|g| g.request().to_bytes()).collect();
        let stream: Vec<u8> = msgs.iter().flat_map(|m| m.iter().copied()).collect();
        let mut f = StreamFramer::new(1 << 16);
        let mut out = Vec::new();
        for piece in stream.chunks(chunk) {
            f.push(piece);
            while let Some(item) = f.next() {
                match item.unwrap() {
                    Frame::Message(m) => out.push(m),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        prop_assert_eq!(out, msgs);
    }
}

const BASE: &str = "OPTIONS sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKabc\r\n\
From: <sip:alice@example.com>;tag=1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: big@192.0.2.1\r\n\
CSeq: 1 OPTIONS\r\n";

#[test]
fn hundred_kilobyte_header_is_rejected_without_panic() {
    let big = format!(
        "{BASE}X-Big: {}\r\nContent-Length: 0\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let data = Bytes::from(big);
    let err = Message::parse(data.clone()).unwrap_err();
    assert_eq!(err, ParseError::LineTooLong(MAX_LINE_LEN));
    let resp = error_response(&data, &err);
    assert!(resp.is_some_and(|r| r.starts_with(b"SIP/2.0 400 Line Too Long\r\n")));
    // With a larger limit the same message parses.
    let limits = ParseLimits {
        max_line_len: 200 * 1024,
        ..ParseLimits::default()
    };
    let m = Message::parse_unvalidated(data, &limits).unwrap();
    assert_eq!(
        m.headers()
            .get(&HeaderName::Other("x-big".into()))
            .map(Bytes::len),
        Some(100 * 1024)
    );
    // A folded header grown past the limit line by line is caught too.
    let folded = format!(
        "{BASE}X-Big: a\r\n{}Content-Length: 0\r\n\r\n",
        " aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(4000)
    );
    assert_eq!(
        Message::parse(Bytes::from(folded)).unwrap_err(),
        ParseError::LineTooLong(MAX_LINE_LEN)
    );
    // Too many header lines.
    let many = format!(
        "{BASE}{}Content-Length: 0\r\n\r\n",
        "X-A: b\r\n".repeat(MAX_HEADERS + 1)
    );
    assert_eq!(
        Message::parse(Bytes::from(many)).unwrap_err(),
        ParseError::TooManyHeaders(MAX_HEADERS)
    );
}

#[test]
fn zero_copy_values_share_the_input() {
    let data = Bytes::from(format!("{BASE}Content-Length: 4\r\n\r\nbody"));
    let range = data.as_ptr() as usize..data.as_ptr() as usize + data.len();
    let m = Message::parse(data.clone()).unwrap();
    for h in m.headers().iter() {
        assert!(range.contains(&(h.value.as_ptr() as usize)), "{:?}", h.name);
    }
    assert!(range.contains(&(m.body().as_ptr() as usize)));
}

/// Seeded mutations of every RFC 4475 / RFC 5118 message: never a panic, and whatever parses
/// prints to bytes that parse to the same print.
#[test]
fn torture_corpus_mutations() {
    let mut corpus = Vec::new();
    for dir in ["rfc4475", "rfc5118"] {
        let path = format!("{}/tests/data/{dir}", env!("CARGO_MANIFEST_DIR"));
        for entry in std::fs::read_dir(&path).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "dat") {
                corpus.push(std::fs::read(&p).unwrap());
            }
        }
    }
    assert!(corpus.len() >= 61);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const SPECIAL: &[u8] = b":;,<>\"\\ \t\r\n@[]%=?";
    for round in 0..20_000 {
        let mut data = corpus[round % corpus.len()].clone();
        for _ in 0..1 + rand() % 4 {
            let i = (rand() as usize) % data.len();
            match rand() % 4 {
                0 => data[i] = SPECIAL[(rand() as usize) % SPECIAL.len()],
                1 => data[i] = rand() as u8,
                2 => {
                    data.remove(i);
                }
                _ => data.insert(i, SPECIAL[(rand() as usize) % SPECIAL.len()]),
            }
            if data.is_empty() {
                break;
            }
        }
        let data = Bytes::from(data);
        match Message::parse(data.clone()) {
            Ok(m) => {
                let printed = m.to_bytes();
                let again = Message::parse(printed.clone()).unwrap_or_else(|e| {
                    panic!(
                        "round {round}: {e}\n{}\n---\n{}",
                        String::from_utf8_lossy(&data),
                        String::from_utf8_lossy(&printed)
                    )
                });
                assert_eq!(again.to_bytes(), printed, "round {round}");
            }
            Err(e) => {
                if let Some(resp) = error_response(&data, &e) {
                    Message::parse_unvalidated(resp, &ParseLimits::default()).unwrap();
                }
            }
        }
    }
}
