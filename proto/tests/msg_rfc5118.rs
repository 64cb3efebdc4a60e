//! RFC 5118 (SIP torture test messages for IPv6) against `tandem_proto::msg`.
//!
//! The messages live in `tests/data/rfc5118/*.dat` (written by `generate.py` from the RFC text).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use tandem_proto::msg::*;

fn load(name: &str) -> Bytes {
    let path = format!(
        "{}/tests/data/rfc5118/{name}.dat",
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

fn v6(s: &str) -> Host {
    Host::V6(s.parse::<Ipv6Addr>().unwrap())
}

/// What RFC 5118 expects of each message.
const TABLE: &[(&str, &str, bool)] = &[
    (
        "ipv6-good",
        "4.1 valid SIP message with an IPv6 reference",
        true,
    ),
    ("ipv6-bad", "4.2 IPv6 Request-URI without [] (400)", false),
    (
        "port-ambiguous",
        "4.3 [2001:db8::10:5070]: the 5070 is part of the address",
        true,
    ),
    (
        "port-unambiguous",
        "4.4 [2001:db8::10]:5070: port 5070",
        true,
    ),
    (
        "via-received-param-with-delim",
        "4.5 received=[IPv6] accepted",
        true,
    ),
    (
        "via-received-param-no-delim",
        "4.5 received=IPv6 accepted",
        true,
    ),
    ("mult-ip-in-header", "4.7 IPv4 and IPv6 Vias", true),
    ("mult-ip-in-sdp", "4.8 IPv4 and IPv6 in SDP", true),
    ("ipv4-mapped-ipv6", "4.9 IPv4-mapped IPv6 addresses", true),
    // RFC 5954 corrected the RFC 3261 ABNF that allowed three colons: it is not an IPv6 address.
    (
        "ipv6-bug-abnf-3-colons",
        "4.10 2001:db8:::192.0.2.1 rejected (400)",
        false,
    ),
    (
        "ipv6-correct-abnf-2-colons",
        "4.10 2001:db8::192.0.2.1 accepted",
        true,
    ),
];

#[test]
fn every_message_behaves_as_rfc5118_expects() {
    for &(name, what, valid) in TABLE {
        let data = load(name);
        match Message::parse(data.clone()) {
            Ok(msg) => {
                assert!(valid, "{name} ({what}) should be rejected");
                let again = Message::parse(msg.to_bytes()).unwrap();
                assert_eq!(again.to_bytes(), msg.to_bytes(), "{name}");
            }
            Err(err) => {
                assert!(!valid, "{name} ({what}): {err}");
                let resp = error_response(&data, &err).expect("a 400 goes back");
                assert!(resp.starts_with(b"SIP/2.0 400 "), "{name}");
            }
        }
    }
}

#[test]
fn ipv6_references() {
    let r = request("ipv6-good");
    assert_eq!(r.uri.host, v6("2001:db8::10"));
    assert_eq!(r.uri.to_string(), "sip:[2001:db8::10]");
    let via = r.headers.top_via().unwrap();
    assert_eq!(via.host, v6("2001:db8::9:1"));
    assert_eq!(via.sent_by(), "[2001:db8::9:1]");
    let contacts = r.headers.contacts().unwrap();
    let [ContactValue::Addr(c)] = contacts.as_slice() else {
        panic!("{contacts:?}")
    };
    assert_eq!(c.uri.host, v6("2001:db8::1"));
    assert_eq!(c.display.as_deref(), Some("Caller"));

    assert!(matches!(
        Message::parse(load("ipv6-bad")),
        Err(ParseError::Uri(_))
    ));

    let r = request("port-ambiguous");
    assert_eq!(r.uri.host, v6("2001:db8::10:5070"));
    assert_eq!(r.uri.port, None);
    let r = request("port-unambiguous");
    assert_eq!(r.uri.host, v6("2001:db8::10"));
    assert_eq!(r.uri.port, Some(5070));
    assert_eq!(r.uri.host_port(), "[2001:db8::10]:5070");
}

#[test]
fn via_received_forms() {
    let r = request("via-received-param-with-delim");
    let via = r.headers.top_via().unwrap();
    assert_eq!(via.received(), Some("[2001:db8::9:255]"));
    assert_eq!(
        Host::parse_lenient(via.received().unwrap()).unwrap(),
        v6("2001:db8::9:255")
    );
    let r = request("via-received-param-no-delim");
    let via = r.headers.top_via().unwrap();
    assert_eq!(via.received(), Some("2001:db8::9:255"));
    assert_eq!(
        Host::parse_lenient(via.received().unwrap()).unwrap(),
        v6("2001:db8::9:255")
    );
}

#[test]
fn mixed_addresses() {
    let r = request("mult-ip-in-header");
    let vias = r.headers.vias().unwrap();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].sent_by(), "[2001:db8::9:1]:6050");
    assert_eq!(vias[1].host, Host::V4(Ipv4Addr::new(192, 0, 2, 1)));
    assert_eq!(vias[2].transport, "TCP");
    assert_eq!(vias[2].received(), Some("192.0.2.200"));

    let r = request("ipv4-mapped-ipv6");
    let vias = r.headers.vias().unwrap();
    assert_eq!(vias[0].host, v6("::ffff:192.0.2.10"));
    assert_eq!(vias[0].port, Some(19823));
    assert_eq!(vias[1].host, v6("::ffff:192.0.2.2"));
    // RFC 5118's Content-Length (236) is shorter than the body as printed: over a datagram the
    // extra octets are discarded (RFC 3261 §18.3).
    assert_eq!(r.body.len(), 236);

    let r = request("mult-ip-in-sdp");
    assert_eq!(r.body.len(), 181);
    assert!(r.body.starts_with(b"v=0\r\n"));

    let r = request("ipv6-correct-abnf-2-colons");
    assert_eq!(r.uri.host, v6("2001:db8::c000:201"));
    assert!(matches!(
        Message::parse(load("ipv6-bug-abnf-3-colons")),
        Err(ParseError::Uri(_))
    ));
}

/// §4.6 as printed in RFC 5118 announces `Content-Length: 268` for a 251-octet body, so over a
/// datagram it must be rejected (RFC 3261 §18.3: too few octets). With the length corrected the
/// message parses and its IPv6 addresses come out right.
#[test]
fn ipv6_in_sdp() {
    let data = load("ipv6-in-sdp");
    assert_eq!(
        Message::parse(data.clone()),
        Err(ParseError::BodyTruncated {
            declared: 268,
            available: 251
        })
    );
    let fixed = String::from_utf8(data.to_vec())
        .unwrap()
        .replace("Content-Length: 268", "Content-Length: 251");
    let Ok(Message::Request(r)) = Message::parse(Bytes::from(fixed)) else {
        panic!()
    };
    assert_eq!(r.uri.host, v6("2001:db8::10"));
    assert_eq!(r.headers.to().unwrap().uri.host, v6("2001:db8::10"));
    assert_eq!(r.headers.top_via().unwrap().host, v6("2001:db8::20"));
    assert!(
        r.body
            .windows(24)
            .any(|w| w == b"c=IN IP6 2001:db8::20\r\nt")
    );
}
