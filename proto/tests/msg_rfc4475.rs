//! RFC 4475 (SIP torture test messages) against `tandem_proto::msg`.
//!
//! The messages live in `tests/data/rfc4475/*.dat` (written by `generate.py` from the RFC text).
//! Each datagram is parsed with `Message::parse` (syntax + `validate_request`/`validate_response`);
//! the table says what RFC 4475 expects of every file, then per-message checks look at the
//! values that make each message interesting.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::net::Ipv4Addr;

use bytes::Bytes;
use tandem_proto::msg::*;

/// What RFC 4475 expects of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Well formed: parses and validates.
    Valid,
    /// Rejected by `Message::parse`; a request is answered with this status by `error_response`.
    Reject(u16),
    /// Rejected by `Message::parse` and dropped silently (responses; `error_response` gives None).
    Drop,
    /// Parses; the application must answer it with this status (a TU decision, checked below).
    TuAnswers(u16),
}

use Expect::*;

const TABLE: &[(&str, &str, Expect)] = &[
    // 3.1.1 Valid messages
    ("wsinv", "3.1.1.1 short tortuous INVITE", Valid),
    ("intmeth", "3.1.1.2 wide range of valid characters", Valid),
    ("esc01", "3.1.1.3 valid use of % escaping", Valid),
    ("escnull", "3.1.1.4 escaped nulls in URIs", Valid),
    ("esc02", "3.1.1.5 use of % when it is not an escape", Valid),
    (
        "lwsdisp",
        "3.1.1.6 no LWS between display name and <",
        Valid,
    ),
    ("longreq", "3.1.1.7 long values in header fields", Valid),
    (
        "dblreq",
        "3.1.1.8 extra trailing octets in a UDP datagram",
        Valid,
    ),
    (
        "semiuri",
        "3.1.1.9 semicolon-separated parameters in URI user part",
        Valid,
    ),
    (
        "transports",
        "3.1.1.10 varied and unknown transport types",
        Valid,
    ),
    ("mpart01", "3.1.1.11 multipart MIME message", Valid),
    ("unreason", "3.1.1.12 unusual reason phrase", Valid),
    ("noreason", "3.1.1.13 empty reason phrase", Valid),
    // 3.1.2 Invalid messages
    (
        "badinv01",
        "3.1.2.1 extraneous header field separators",
        Reject(400),
    ),
    (
        "clerr",
        "3.1.2.2 Content-Length larger than message",
        Reject(400),
    ),
    ("ncl", "3.1.2.3 negative Content-Length", Reject(400)),
    (
        "scalar02",
        "3.1.2.4 request scalar fields with overlarge values",
        Reject(400),
    ),
    (
        "scalarlg",
        "3.1.2.5 response scalar fields with overlarge values",
        Drop,
    ),
    (
        "quotbal",
        "3.1.2.6 unterminated quoted string in display name",
        Reject(400),
    ),
    ("ltgtruri", "3.1.2.7 <> enclosing Request-URI", Reject(400)),
    (
        "lwsruri",
        "3.1.2.8 malformed Request-URI (embedded LWS)",
        Reject(400),
    ),
    (
        "lwsstart",
        "3.1.2.9 multiple SP separating Request-Line elements",
        Reject(400),
    ),
    (
        "trws",
        "3.1.2.10 SP characters at end of Request-Line",
        Reject(400),
    ),
    (
        "escruri",
        "3.1.2.11 escaped headers in Request-URI",
        Reject(400),
    ),
    ("baddate", "3.1.2.12 invalid time zone in Date", Reject(400)),
    (
        "regbadct",
        "3.1.2.13 name-addr URI with ? not enclosed in <>",
        Reject(400),
    ),
    ("badaspec", "3.1.2.14 spaces within addr-spec", Reject(400)),
    (
        "baddn",
        "3.1.2.15 non-token characters in display name",
        Reject(400),
    ),
    ("badvers", "3.1.2.16 unknown protocol version", Reject(505)),
    (
        "mismatch01",
        "3.1.2.17 start line and CSeq method mismatch",
        Reject(400),
    ),
    (
        "mismatch02",
        "3.1.2.18 unknown method with CSeq method mismatch",
        Reject(400),
    ),
    ("bigcode", "3.1.2.19 overlarge response code", Drop),
    // 3.2 Transaction layer semantics
    (
        "badbranch",
        "3.2.1 branch is only the magic cookie (parses; not an RFC 3261 branch)",
        Valid,
    ),
    // 3.3 Application layer semantics
    ("insuf", "3.3.1 missing required header fields", Reject(400)),
    (
        "unkscm",
        "3.3.2 Request-URI with unknown scheme",
        TuAnswers(416),
    ),
    (
        "novelsc",
        "3.3.3 Request-URI with known but atypical scheme",
        TuAnswers(416),
    ),
    (
        "unksm2",
        "3.3.4 unknown URI schemes in header fields (registrar rejects)",
        Valid,
    ),
    (
        "bext01",
        "3.3.5 Proxy-Require and Require (TU answers 420)",
        TuAnswers(420),
    ),
    (
        "invut",
        "3.3.6 unknown Content-Type (TU answers 415)",
        TuAnswers(415),
    ),
    (
        "regaut01",
        "3.3.7 unknown authorization scheme (TU answers 401)",
        TuAnswers(401),
    ),
    (
        "multi01",
        "3.3.8 multiple values in single-value fields",
        Reject(400),
    ),
    ("mcl01", "3.3.9 multiple Content-Length values", Reject(400)),
    (
        "bcast",
        "3.3.10 200 OK with broadcast Via (transport must not send there)",
        Valid,
    ),
    ("zeromf", "3.3.11 Max-Forwards of zero", Valid),
    (
        "cparam01",
        "3.3.12 REGISTER with a Contact header parameter",
        Valid,
    ),
    ("cparam02", "3.3.13 REGISTER with a url-parameter", Valid),
    (
        "regescrt",
        "3.3.14 REGISTER with a URL escaped header",
        Valid,
    ),
    (
        "sdp01",
        "3.3.15 unacceptable Accept offering (TU answers 406)",
        TuAnswers(406),
    ),
    // 3.4 Backward compatibility
    ("inv2543", "3.4.1 INVITE with RFC 2543 syntax", Valid),
];

fn load(name: &str) -> Bytes {
    let path = format!(
        "{}/tests/data/rfc4475/{name}.dat",
        env!("CARGO_MANIFEST_DIR")
    );
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

fn request(name: &str) -> Request {
    match Message::parse(load(name)) {
        Ok(Message::Request(r)) => r,
        other => panic!("{name}: expected a valid request, got {other:?}"),
    }
}

fn one_contact(r: &Request) -> NameAddr {
    match r.headers.contacts().unwrap().as_slice() {
        [ContactValue::Addr(a)] => a.clone(),
        other => panic!("expected one contact address, got {other:?}"),
    }
}

fn response(name: &str) -> Response {
    match Message::parse(load(name)) {
        Ok(Message::Response(r)) => r,
        other => panic!("{name}: expected a valid response, got {other:?}"),
    }
}

#[test]
fn every_message_behaves_as_rfc4475_expects() {
    assert_eq!(
        TABLE.len(),
        49,
        "all 49 messages of RFC 4475 are in the table"
    );
    for &(name, what, expect) in TABLE {
        let data = load(name);
        let parsed = Message::parse(data.clone());
        match expect {
            Valid | TuAnswers(_) => {
                let msg = parsed.unwrap_or_else(|e| panic!("{name} ({what}): {e}"));
                // Printing and parsing again gives the same message.
                let again = Message::parse(msg.to_bytes())
                    .unwrap_or_else(|e| panic!("{name}: reparse failed: {e}"));
                assert_eq!(
                    without_length(again.headers()),
                    without_length(msg.headers()),
                    "{name}"
                );
                assert_eq!(again.body(), msg.body(), "{name}");
                assert_eq!(again.to_bytes(), msg.to_bytes(), "{name}: print is stable");
            }
            Reject(status) => {
                let err = parsed.expect_err(name);
                assert_eq!(err.status_code(), status, "{name} ({what}): {err}");
                let resp = error_response(&data, &err)
                    .unwrap_or_else(|| panic!("{name}: no error response for {err}"));
                // The Vias are copied verbatim (even broken ones, so the client can match the
                // answer), so only the syntax of the response is checked here.
                let resp = Response::parse_unvalidated_for_tests(resp);
                assert_eq!(resp.status, status, "{name}");
                assert!(!resp.reason.is_empty(), "{name}");
                // The response goes back along the request's Vias.
                assert_eq!(
                    resp.headers.count(&HeaderName::Via),
                    data_via_lines(&data),
                    "{name}"
                );
            }
            Drop => {
                let err = parsed.expect_err(name);
                assert_eq!(error_response(&data, &err), None, "{name}: {err}");
            }
        }
    }
}

fn without_length(h: &Headers) -> Vec<Header> {
    h.iter()
        .filter(|h| h.name != HeaderName::ContentLength)
        .cloned()
        .collect()
}

fn data_via_lines(data: &[u8]) -> usize {
    let text = String::from_utf8_lossy(data);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    head.lines()
        .filter(|l| {
            let name = l.split(':').next().unwrap_or("").trim();
            name.eq_ignore_ascii_case("via") || name.eq_ignore_ascii_case("v")
        })
        .count()
}

#[test]
fn wsinv() {
    let r = request("wsinv");
    assert_eq!(r.method, Method::Invite);
    assert_eq!(r.uri.param("unknownparam"), Some(None));
    let h = &r.headers;
    assert_eq!(h.call_id().unwrap(), "wsinv.ndaksdj@192.0.2.1");
    assert_eq!(h.to().unwrap().tag(), Some("1918181833n"));
    let from = h.from().unwrap();
    assert_eq!(from.display.as_deref(), Some(r#"J Rosenberg \""#));
    assert_eq!(from.tag(), Some("98asjd8"));
    assert_eq!(h.max_forwards().unwrap(), Some(68));
    assert_eq!(h.cseq().unwrap(), CSeq::new(9, Method::Invite));
    let vias = h.vias().unwrap();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].transport, "UDP");
    assert_eq!(vias[0].branch(), Some("390skdjuw"));
    assert_eq!(vias[1].transport, "TCP");
    assert_eq!(vias[1].host, Host::Domain("spindle.example.com".into()));
    assert_eq!(vias[1].branch(), Some("z9hG4bK9ikj8"));
    assert_eq!(vias[2].branch(), Some("z9hG4bK30239"));
    assert_eq!(h.get_str(&HeaderName::Subject), Some(""));
    assert_eq!(
        h.get_str(&HeaderName::Other("newfangledheader".into())),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(
        h.get_str(&HeaderName::Other("UnknownHeaderWithUnusualValue".into())),
        Some(";;,,;;,;")
    );
    let route = &h.routes().unwrap()[0];
    assert!(route.uri.is_loose_route());
    assert_eq!(route.uri.param("unknownwith"), Some(Some("value")));
    let contacts = h.contacts().unwrap();
    let [ContactValue::Addr(c)] = contacts.as_slice() else {
        panic!("{contacts:?}")
    };
    assert_eq!(c.display.as_deref(), Some(r#"Quoted string """#));
    assert_eq!(c.param("newparam"), Some(Some("newvalue")));
    assert_eq!(c.param("secondparam"), Some(None));
    assert_eq!(c.q(), Some(0.33));
    assert_eq!(r.body.len(), 150);
    assert_eq!(h.content_type(), Some("application/sdp"));
}

#[test]
fn intmeth() {
    let r = request("intmeth");
    assert_eq!(
        r.method,
        Method::Extension("!interesting-Method0123456789_*+`.%indeed'~".into())
    );
    assert_eq!(
        r.uri.user.as_deref(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(
        r.uri.password.as_deref(),
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    assert_eq!(
        r.headers.top_via().unwrap().branch(),
        Some("z9hG4bK-.!%66*_+`'~")
    );
    let to = r.headers.to().unwrap();
    assert_eq!(
        to.display.as_deref(),
        Some("BEL:\u{7} NUL:\u{0} DEL:\u{7f}")
    );
    let from = r.headers.from().unwrap();
    assert_eq!(
        from.display.as_deref(),
        Some("token1~` token2'+_ token3*%!.-")
    );
    assert_eq!(from.tag(), Some("_token~1'+`*%!-."));
    assert_eq!(
        from.param("fromParam''~+*_!.-%"),
        Some(Some("\"работающий\""))
    );
    assert_eq!(
        r.headers.call_id().unwrap(),
        "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    );
    assert_eq!(
        r.headers
            .get_str(&HeaderName::Other("extensionHeader-!.%*+_`'~".into())),
        Some("\u{feff}大停電")
    );
}

#[test]
fn esc01_escnull_esc02() {
    let r = request("esc01");
    assert_eq!(r.uri.user.as_deref(), Some("sips%3Auser%40example.com"));
    assert_eq!(
        r.uri.user_unescaped().as_deref(),
        Some("sips:user@example.com")
    );
    assert_eq!(r.uri.host, Host::Domain("example.net".into()));
    let to = r.headers.to().unwrap();
    assert!(
        to.uri
            .equivalent(&Uri::parse("sip:user@example.com").unwrap())
    );
    let from = r.headers.from().unwrap();
    assert_eq!(from.uri.user_unescaped().as_deref(), Some("I have spaces"));
    let c = one_contact(&r);
    assert_eq!(c.uri.user_unescaped().as_deref(), Some("caller"));
    assert!(c.uri.has_param("%6C%72"));
    assert_eq!(r.headers.content_type(), Some("application/sdp"));

    let r = request("escnull");
    let to = r.headers.to().unwrap();
    assert_eq!(to.uri.user_unescaped().as_deref(), Some("null-\0-null"));
    let contacts = r.headers.contacts().unwrap();
    assert_eq!(contacts.len(), 2);
    let users: Vec<_> = contacts
        .iter()
        .map(|c| match c {
            ContactValue::Addr(a) => a.uri.user_unescaped().unwrap(),
            ContactValue::Star => panic!("star"),
        })
        .collect();
    assert_eq!(users, vec!["\0".to_string(), "\0\0".to_string()]);
    assert_eq!(r.headers.expires().unwrap(), None);

    let r = request("esc02");
    assert_eq!(r.method, Method::Extension("RE%47IST%45R".into()));
    assert_ne!(r.method, Method::Register);
    assert_eq!(r.headers.to().unwrap().display.as_deref(), Some("%Z%45"));
    assert_eq!(
        r.headers.top_via().unwrap().branch(),
        Some("z9hG4bK209%fzsnel234")
    );
    // "C%6Fntact" is an unknown header, not Contact.
    assert_eq!(r.headers.contacts().unwrap().len(), 2);
    assert!(r.headers.contains(&HeaderName::Other("C%6Fntact".into())));
}

#[test]
fn lwsdisp_longreq_dblreq_semiuri() {
    let r = request("lwsdisp");
    assert_eq!(r.headers.from().unwrap().display.as_deref(), Some("caller"));

    let r = request("longreq");
    let to = r.headers.to().unwrap();
    assert!(to.display.unwrap().contains(&"extreme".repeat(10)));
    assert_eq!(to.uri.port, Some(6000));
    assert_eq!(to.uri.params.len(), 3);
    let vias = r.headers.vias().unwrap();
    assert_eq!(vias.len(), 34);
    assert_eq!(vias[0].host, Host::Domain("sip33.example.com".into()));
    assert_eq!(vias[33].received(), Some("192.0.2.5"));
    assert_eq!(r.headers.from().unwrap().tag().map(str::len), Some(155));
    assert_eq!(r.body.len(), 150);

    // Only the first message of the datagram counts; the rest is discarded.
    let r = request("dblreq");
    assert_eq!(r.method, Method::Register);
    assert!(r.body.is_empty());
    assert_eq!(
        r.headers.call_id().unwrap(),
        "dblreq.0ha0isndaksdj99sdfafnl3lk233412"
    );

    let r = request("semiuri");
    assert_eq!(r.uri.user.as_deref(), Some("user;par=u%40example.net"));
    assert_eq!(r.uri.host, Host::Domain("example.com".into()));
    assert!(r.uri.params.is_empty());
    assert_eq!(r.headers.values(&HeaderName::Accept).len(), 6);
}

#[test]
fn transports_mpart01_reasons() {
    let r = request("transports");
    let t: Vec<_> = r
        .headers
        .vias()
        .unwrap()
        .into_iter()
        .map(|v| v.transport)
        .collect();
    assert_eq!(t, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
    assert_eq!(
        r.headers.call_id().unwrap(),
        "transports.kijh4akdnaqjkwendsasfdj"
    );

    let r = request("mpart01");
    assert_eq!(r.method, Method::Message);
    assert_eq!(r.body.len(), 553);
    assert!(r.body.ends_with(b"--7a9cbec02ceef655--\r\n"));
    assert_eq!(
        r.headers.content_type(),
        Some("multipart/mixed;boundary=7a9cbec02ceef655")
    );
    assert_eq!(r.headers.top_via().unwrap().rport(), Some(None));

    let r = response("unreason");
    assert_eq!(r.status, 200);
    assert_eq!(r.reason, "= 2**3 * 5**2 но сто девяносто девять - простое");
    let r = response("noreason");
    assert_eq!(r.status, 100);
    assert_eq!(r.reason, "");
}

#[test]
fn invalid_messages_fail_for_the_right_reason() {
    let err = |name: &str| Message::parse(load(name)).unwrap_err();
    assert!(matches!(err("badinv01"), ParseError::Header { .. }));
    assert_eq!(
        err("clerr"),
        ParseError::BodyTruncated {
            declared: 9999,
            available: 154
        }
    );
    assert!(matches!(err("ncl"), ParseError::ContentLength(_)));
    assert_eq!(err("scalar02"), ParseError::OutOfRange("CSeq"));
    assert_eq!(err("scalarlg"), ParseError::OutOfRange("CSeq"));
    assert!(matches!(err("quotbal"), ParseError::Header { ref header, .. } if header == "To"));
    assert!(matches!(err("ltgtruri"), ParseError::Uri(_)));
    assert!(matches!(err("lwsruri"), ParseError::StartLine(_)));
    assert!(matches!(err("lwsstart"), ParseError::StartLine(_)));
    assert!(matches!(err("trws"), ParseError::StartLine(_)));
    assert!(matches!(err("escruri"), ParseError::Uri(_)));
    assert!(matches!(err("baddate"), ParseError::Header { ref header, .. } if header == "Date"));
    assert!(
        matches!(err("regbadct"), ParseError::Header { ref header, .. } if header == "Contact")
    );
    assert!(matches!(err("badaspec"), ParseError::Header { ref header, .. } if header == "To"));
    assert_eq!(err("baddn"), ParseError::DuplicateHeader("From"));
    assert_eq!(err("badvers"), ParseError::Version("SIP/7.0".into()));
    assert!(matches!(err("mismatch01"), ParseError::CSeqMismatch { .. }));
    assert_eq!(
        err("mismatch02"),
        ParseError::CSeqMismatch {
            method: "NEWMETHOD".into(),
            cseq: "INVITE".into()
        }
    );
    assert!(matches!(err("bigcode"), ParseError::Status(_)));
    assert!(matches!(err("insuf"), ParseError::MissingHeader(_)));
    assert!(matches!(err("multi01"), ParseError::DuplicateHeader(_)));
    assert!(matches!(err("mcl01"), ParseError::ContentLength(_)));

    // The invalid requests are syntactically complete where the RFC says the fault is only
    // semantic: parse_unvalidated accepts them and validate_request flags them.
    for name in [
        "scalar02",
        "mismatch01",
        "mismatch02",
        "multi01",
        "escruri",
        "baddate",
        "insuf",
    ] {
        let Ok(Message::Request(r)) =
            Message::parse_unvalidated(load(name), &ParseLimits::default())
        else {
            panic!("{name} should parse syntactically")
        };
        assert!(validate_request(&r).is_err(), "{name}");
    }
}

#[test]
fn error_responses_carry_the_request_identity() {
    let data = load("mismatch01");
    let err = Message::parse(data.clone()).unwrap_err();
    let resp = Response::parse(error_response(&data, &err).unwrap()).unwrap();
    assert_eq!(resp.status, 400);
    assert_eq!(resp.reason, "CSeq Method Mismatch");
    assert_eq!(resp.headers.call_id().unwrap(), "mismatch01.dj0234sxdfl3");
    assert_eq!(resp.headers.cseq().unwrap(), CSeq::new(8, Method::Invite));
    assert!(resp.headers.to().unwrap().tag().is_some());
    assert_eq!(
        resp.headers.top_via().unwrap().branch(),
        Some("z9hG4bKkdjuw")
    );
    // The same request always gets the same tag (stateless answer).
    assert_eq!(error_response(&data, &err), error_response(&data, &err));

    let data = load("badvers");
    let err = Message::parse(data.clone()).unwrap_err();
    let resp = error_response(&data, &err).unwrap();
    assert!(resp.starts_with(b"SIP/2.0 505 Version Not Supported\r\n"));
    assert!(resp.windows(12).any(|w| w == b"Via: SIP/7.0"));

    // insuf: no From/To/Call-ID, but Via and CSeq survive, so a 400 can still go back.
    let data = load("insuf");
    let err = Message::parse(data.clone()).unwrap_err();
    let resp = Response::parse_unvalidated_for_tests(error_response(&data, &err).unwrap());
    assert_eq!(resp.status, 400);
    assert!(resp.headers.get(&HeaderName::From).is_none());
}

trait ParseUnvalidated {
    fn parse_unvalidated_for_tests(data: Bytes) -> Response;
}

impl ParseUnvalidated for Response {
    fn parse_unvalidated_for_tests(data: Bytes) -> Response {
        match Message::parse_unvalidated(data, &ParseLimits::default()).unwrap() {
            Message::Response(r) => r,
            Message::Request(_) => panic!("not a response"),
        }
    }
}

#[test]
fn semantic_cases() {
    let r = request("badbranch");
    let via = r.headers.top_via().unwrap();
    assert_eq!(via.branch(), Some("z9hG4bK"));
    assert!(!via.has_rfc3261_branch());

    for name in ["unkscm", "novelsc"] {
        let r = request(name);
        assert!(!r.uri.scheme.is_supported(), "{name}");
        let err = check_request_uri_scheme(&r).unwrap_err();
        assert_eq!(err.status_code(), 416);
        let resp = error_response(&load(name), &err).unwrap();
        assert!(
            resp.starts_with(b"SIP/2.0 416 Unsupported URI Scheme\r\n"),
            "{name}"
        );
    }
    let r = request("unkscm");
    assert_eq!(
        r.uri.to_string(),
        "nobodyknowsthisscheme:totallyopaquecontent"
    );
    let r = request("novelsc");
    assert_eq!(r.uri.scheme, Scheme::Other("soap.beep".into()));

    let r = request("unksm2");
    assert_eq!(
        r.headers.to().unwrap().uri.scheme,
        Scheme::Other("isbn".into())
    );
    assert_eq!(
        r.headers.from().unwrap().uri.scheme,
        Scheme::Other("http".into())
    );
    assert!(check_request_uri_scheme(&r).is_ok());

    let r = request("bext01");
    assert_eq!(r.headers.values(&HeaderName::Require).len(), 2);
    assert_eq!(r.headers.values(&HeaderName::ProxyRequire).len(), 2);

    let r = request("invut");
    assert_eq!(r.headers.content_type(), Some("application/unknownformat"));
    assert_eq!(r.body.len(), 40);

    let r = request("regaut01");
    assert_eq!(
        r.headers.get_str(&HeaderName::Authorization),
        Some("NoOneKnowsThisScheme opaque-data=here")
    );

    let r = response("bcast");
    let vias = r.headers.vias().unwrap();
    assert_eq!(vias[1].host, Host::V4(Ipv4Addr::BROADCAST));

    let r = request("zeromf");
    assert_eq!(r.headers.max_forwards().unwrap(), Some(0));

    let r = request("cparam01");
    let c = one_contact(&r);
    assert!(c.uri.params.is_empty());
    assert_eq!(c.param("unknownparam"), Some(None));
    let r = request("cparam02");
    let c = one_contact(&r);
    assert_eq!(c.uri.param("unknownparam"), Some(None));
    assert!(c.params.is_empty());

    let r = request("regescrt");
    let c = one_contact(&r);
    assert_eq!(
        c.uri.headers,
        vec![("Route".to_string(), "%3Csip:sip.example.com%3E".to_string())]
    );

    let r = request("sdp01");
    assert_eq!(
        r.headers.get_str(&HeaderName::Accept),
        Some("text/nobodyKnowsThis")
    );

    let r = request("inv2543");
    assert_eq!(r.headers.max_forwards().unwrap(), None);
    assert_eq!(r.headers.top_via().unwrap().branch(), None);
    assert_eq!(
        r.body.len(),
        105,
        "no Content-Length: the rest of the datagram"
    );
    assert_eq!(
        r.headers.record_routes().unwrap()[0].uri.param("maddr"),
        Some(Some("ss1.example.com"))
    );
}
