//! RFC 4975 example messages (verbatim, with CRLF line ends), URIs and reports.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rand::SeedableRng;
use rand::rngs::StdRng;
use tandem_proto::msrp::message::{default_comment, is_valid_transaction_id};
use tandem_proto::msrp::report::{failure_report, response_for, success_report};
use tandem_proto::msrp::{
    ByteRange, Continuation, FailureReport, Framer, Message, Method, MsrpError, MsrpUri, Progress,
    Reassembler, Request, StatusHeader,
};

/// Turns an RFC figure (LF line ends) into wire bytes (CRLF).
fn wire(fig: &str) -> Vec<u8> {
    fig.replace('\n', "\r\n").into_bytes()
}

// RFC 4975 §4, first figure.
const SEND_1: &str = "MSRP a786hjs2 SEND
To-Path: msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp
From-Path: msrp://atlanta.example.com:7654/jshA7weztas;tcp
Message-ID: 87652491
Byte-Range: 1-25/25
Content-Type: text/plain

Hey Bob, are you there?
-------a786hjs2$
";

// RFC 4975 §4, the response.
const OK_1: &str = "MSRP a786hjs2 200 OK
To-Path: msrp://atlanta.example.com:7654/jshA7weztas;tcp
From-Path: msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp
-------a786hjs2$
";

// RFC 4975 §10.5 (positive report).
const REPORT_1: &str = "MSRP dkei38sd REPORT
To-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp
From-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp
Message-ID: 12339sdqwer
Byte-Range: 1-106/106
Status: 000 200 OK
-------dkei38sd$
";

// The SEND the §10.5 report is about, in the shape of RFC 4975 §10.5 (the body is ours, sized to
// the figure's 106 bytes so that the report below is exactly the RFC's).
const SEND_HTML: &str = "MSRP d93kswow SEND
To-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp
From-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp
Message-ID: 12339sdqwer
Byte-Range: 1-106/106
Success-Report: yes
Failure-Report: no
Content-Type: text/html

<html><body>
<p>Here is a link:
<a href=\"http://www.example.com/foobar\">foobar</a>
</p>
</body></html>
-------d93kswow$
";

fn request(m: Message) -> Request {
    match m {
        Message::Request(r) => r,
        Message::Response(r) => panic!("expected a request, got {r:?}"),
    }
}

#[test]
fn section4_send_parses() {
    let r = request(Message::parse(&wire(SEND_1)).unwrap());
    assert_eq!(r.transaction_id, "a786hjs2");
    assert_eq!(r.method, Method::Send);
    assert_eq!(r.continuation, Continuation::Complete);
    assert_eq!(r.body.as_deref(), Some(&b"Hey Bob, are you there?"[..]));
    let to = r.headers.to_path().unwrap();
    assert_eq!(to.len(), 1);
    assert_eq!(to[0].host, "biloxi.example.com");
    assert_eq!(to[0].port, Some(12763));
    assert_eq!(to[0].session_id.as_deref(), Some("kjhd37s2s20w2a"));
    assert_eq!(to[0].transport, "tcp");
    assert!(!to[0].secure);
    assert_eq!(r.headers.message_id(), Some("87652491"));
    assert_eq!(
        r.headers.byte_range().unwrap(),
        Some(ByteRange {
            start: 1,
            end: Some(25),
            total: Some(25)
        })
    );
    assert_eq!(r.headers.content_type(), Some("text/plain"));
    r.validate().unwrap();
    // printing gives the same bytes back
    assert_eq!(r.to_bytes(), wire(SEND_1));
}

#[test]
fn section4_response_parses_and_is_what_we_would_send() {
    let m = Message::parse(&wire(OK_1)).unwrap();
    let Message::Response(resp) = &m else {
        panic!("not a response")
    };
    assert_eq!(resp.status, 200);
    assert_eq!(resp.comment.as_deref(), Some("OK"));
    resp.validate().unwrap();
    assert_eq!(m.to_bytes(), wire(OK_1));

    let send = request(Message::parse(&wire(SEND_1)).unwrap());
    let ours = response_for(&send, 200).unwrap().unwrap();
    assert_eq!(ours.to_bytes(), wire(OK_1));
}

#[test]
fn section4_example_reassembles_by_its_framing() {
    // The figure announces 25 bytes but carries 23: the `$` end-line decides.
    let send = request(Message::parse(&wire(SEND_1)).unwrap());
    let mut r = Reassembler::default();
    match r.push(&send).unwrap() {
        Progress::Complete(c) => {
            assert_eq!(c.total, 23);
            assert_eq!(c.body.as_deref(), Some(&b"Hey Bob, are you there?"[..]));
            assert!(!c.success_report);
        }
        other => panic!("not complete: {other:?}"),
    }
}

#[test]
fn section10_report_parses_and_matches_generated_report() {
    let rep = request(Message::parse(&wire(REPORT_1)).unwrap());
    assert_eq!(rep.method, Method::Report);
    rep.validate().unwrap();
    assert_eq!(
        rep.headers.status().unwrap(),
        Some(StatusHeader {
            namespace: 0,
            code: 200,
            comment: Some("OK".into())
        })
    );
    assert_eq!(rep.to_bytes(), wire(REPORT_1));

    let send = request(Message::parse(&wire(SEND_HTML)).unwrap());
    assert_eq!(send.body_bytes().len(), 106);
    assert!(send.headers.success_report().unwrap());
    assert_eq!(send.headers.failure_report().unwrap(), FailureReport::No);
    // Failure-Report: no → no transaction response at all
    assert!(response_for(&send, 200).unwrap().is_none());
    assert!(response_for(&send, 400).unwrap().is_none());

    let mut r = Reassembler::default();
    let Progress::Complete(done) = r.push(&send).unwrap() else {
        panic!("not complete")
    };
    let mut rng = StdRng::seed_from_u64(7);
    let mut ours = success_report(&mut rng, &done).unwrap().unwrap();
    // same report but for the transaction id, which is ours to choose
    ours.transaction_id = "dkei38sd".into();
    assert_eq!(ours.to_bytes(), wire(REPORT_1));
}

#[test]
fn reports_are_never_answered_and_partial_only_negative() {
    let rep = request(Message::parse(&wire(REPORT_1)).unwrap());
    assert!(response_for(&rep, 200).unwrap().is_none());
    let mut send = request(Message::parse(&wire(SEND_1)).unwrap());
    send.headers.set("Failure-Report", "partial");
    assert!(response_for(&send, 200).unwrap().is_none());
    let r = response_for(&send, 415).unwrap().unwrap();
    assert_eq!(r.status, 415);
    assert_eq!(r.comment.as_deref(), Some(default_comment(415)));
    let mut rng = StdRng::seed_from_u64(1);
    let fr = failure_report(&mut rng, &send, 415).unwrap().unwrap();
    assert_eq!(fr.method, Method::Report);
    assert_eq!(
        fr.headers.get("Status"),
        Some("000 415 Unsupported Media Type")
    );
    assert_eq!(fr.headers.get("Byte-Range"), Some("1-23/25"));
    assert_eq!(
        fr.headers.get("To-Path"),
        Some("msrp://atlanta.example.com:7654/jshA7weztas;tcp")
    );
    send.headers.set("Failure-Report", "no");
    assert!(failure_report(&mut rng, &send, 415).unwrap().is_none());
}

#[test]
fn the_examples_frame_back_to_back_in_one_stream() {
    let mut stream = Vec::new();
    for fig in [SEND_1, OK_1, SEND_HTML, REPORT_1] {
        stream.extend(wire(fig));
    }
    // feed byte by byte: the framer must find every end-line incrementally
    let mut f = Framer::default();
    let mut got = Vec::new();
    for b in &stream {
        f.push(std::slice::from_ref(b));
        while let Some(m) = f.pop().unwrap() {
            got.push(m);
        }
    }
    assert_eq!(got.len(), 4);
    assert_eq!(got[0].transaction_id(), "a786hjs2");
    assert_eq!(got[2].transaction_id(), "d93kswow");
    assert_eq!(got[3].transaction_id(), "dkei38sd");
    let mut again = Vec::new();
    for m in &got {
        again.extend(m.to_bytes());
    }
    assert_eq!(again, stream);
}

#[test]
fn chunked_message_with_interrupted_chunk() {
    // A first chunk sent with an unknown end and interrupted (`+`), the rest in a second one.
    let first = wire(
        "MSRP a786hjs2 SEND
To-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp
From-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp
Message-ID: 12339sdqwer
Byte-Range: 1-*/40
Content-Type: text/plain

0123456789
-------a786hjs2+
",
    );
    let second = wire(
        "MSRP b7443j2k SEND
To-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp
From-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp
Message-ID: 12339sdqwer
Byte-Range: 11-40/40
Content-Type: text/plain

abcdefghijklmnopqrstuvwxyz0123
-------b7443j2k$
",
    );
    let mut r = Reassembler::default();
    let a = request(Message::parse(&first).unwrap());
    assert_eq!(a.continuation, Continuation::More);
    assert!(matches!(
        r.push(&a).unwrap(),
        Progress::Partial {
            received: 10,
            total: Some(40),
            ..
        }
    ));
    let b = request(Message::parse(&second).unwrap());
    let Progress::Complete(c) = r.push(&b).unwrap() else {
        panic!("not complete")
    };
    assert_eq!(
        c.body.as_deref(),
        Some(&b"0123456789abcdefghijklmnopqrstuvwxyz0123"[..])
    );
}

#[test]
fn uris_parse_print_and_compare() {
    let u = MsrpUri::parse("msrps://alice@intra.example.com;tcp").unwrap();
    assert!(u.secure);
    assert_eq!(u.user.as_deref(), Some("alice"));
    assert_eq!(u.port, None);
    assert_eq!(u.session_id, None);
    assert_eq!(u.port_or_default(), 2855);
    assert_eq!(u.to_string(), "msrps://alice@intra.example.com;tcp");

    let v6 = MsrpUri::parse("msrp://[2001:db8::1]:7777/abc+=/x;tcp;foo=bar;flag").unwrap();
    assert_eq!(v6.host, "[2001:db8::1]");
    assert_eq!(v6.port, Some(7777));
    assert_eq!(v6.session_id.as_deref(), Some("abc+=/x"));
    assert_eq!(
        v6.params,
        vec![("foo".into(), Some("bar".into())), ("flag".into(), None)]
    );
    assert_eq!(
        v6.to_string(),
        "msrp://[2001:db8::1]:7777/abc+=/x;tcp;foo=bar;flag"
    );

    // §6.1: scheme/host/transport case-insensitive, session-id case-sensitive, port exact,
    // parameters ignored, escapes of unreserved characters normalised
    let a = MsrpUri::parse("msrp://Atlanta.Example.COM:7654/jshA7weztas;tcp").unwrap();
    let b = MsrpUri::parse("MSRP://atlanta.example.com:7654/jshA7weztas;TCP;x=1").unwrap();
    let c = MsrpUri::parse("msrp://atlanta.example.com:7654/jsha7weztas;tcp").unwrap();
    let d = MsrpUri::parse("msrp://atlanta.example.com/jshA7weztas;tcp").unwrap();
    let e = MsrpUri::parse("msrps://atlanta.example.com:7654/jshA7weztas;tcp").unwrap();
    let f = MsrpUri::parse("msrp://%61tlanta.example.com:7654/jsh%417weztas;tcp").unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_ne!(a, d);
    assert_ne!(a, e);
    assert_eq!(a, f);

    for bad in [
        "",
        "sip:alice@example.com",
        "msrp://host:7654/sess",
        "msrp://host:99999/s;tcp",
        "msrp://host:/s;tcp",
        "msrp://:80/s;tcp",
        "msrp://[::1/s;tcp",
        "msrp://[zz::1]/s;tcp",
        "msrp://host/;tcp",
        "msrp://host/s;",
        "msrp://host/s sp;tcp",
        "msrp://@host/s;tcp",
    ] {
        assert!(MsrpUri::parse(bad).is_err(), "{bad:?} parsed");
    }
    let list = MsrpUri::parse_list(
        "msrp://relay.example.com:2855/abc;tcp  msrp://bob.example.com:8888/9di;tcp",
    )
    .unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(
        MsrpUri::format_list(&list),
        "msrp://relay.example.com:2855/abc;tcp msrp://bob.example.com:8888/9di;tcp"
    );
    assert!(MsrpUri::parse_list("  ").is_err());
}

#[test]
fn typed_header_values() {
    for (s, r) in [
        ("1-25/25", (1, Some(25), Some(25))),
        ("1-*/*", (1, None, None)),
        ("138-148/148", (138, Some(148), Some(148))),
        ("1-0/0", (1, Some(0), Some(0))),
        ("5-*/10", (5, None, Some(10))),
    ] {
        let br = ByteRange::parse(s).unwrap();
        assert_eq!((br.start, br.end, br.total), r);
        assert_eq!(br.to_string(), s);
    }
    for bad in [
        "", "0-5/5", "5-3/10", "1-20/10", "a-1/1", "1-2", "1-2/x", "-1-2/3",
    ] {
        assert!(ByteRange::parse(bad).is_err(), "{bad:?} parsed");
    }
    assert_eq!(
        StatusHeader::parse("000 413 Message Too Large").unwrap(),
        StatusHeader::new(413)
    );
    assert!(StatusHeader::parse("0 200 OK").is_err());
    assert!(StatusHeader::parse("000").is_err());
    assert!(is_valid_transaction_id("49fh"));
    assert!(!is_valid_transaction_id("abc"));
    assert!(!is_valid_transaction_id(".abcd"));
    assert!(!is_valid_transaction_id(&"a".repeat(33)));
}

#[test]
fn validation_catches_missing_headers() {
    let no_to = wire(
        "MSRP abcd SEND
From-Path: msrp://a.example.com:1/s;tcp
Message-ID: 1
Content-Type: text/plain

x
-------abcd$
",
    );
    let r = request(Message::parse(&no_to).unwrap());
    assert!(matches!(
        r.validate(),
        Err(MsrpError::MissingHeader("To-Path"))
    ));
    assert_eq!(r.validate().unwrap_err().status_code(), 400);

    let no_ct = wire(
        "MSRP abcd SEND
To-Path: msrp://b.example.com:1/s;tcp
From-Path: msrp://a.example.com:1/s;tcp
Message-ID: 1

x
-------abcd$
",
    );
    let r = request(Message::parse(&no_ct).unwrap());
    assert!(matches!(
        r.validate(),
        Err(MsrpError::MissingHeader("Content-Type"))
    ));
}

#[test]
fn unknown_methods_and_bad_start_lines() {
    let m = Message::parse(&wire(
        "MSRP abcd NICKNAME
To-Path: msrp://b.example.com:1/s;tcp
From-Path: msrp://a.example.com:1/s;tcp
-------abcd$
",
    ))
    .unwrap();
    let r = request(m);
    assert_eq!(r.method, Method::Other("NICKNAME".into()));
    assert_eq!(response_for(&r, 501).unwrap().unwrap().status, 501);

    for bad in [
        "SIP/2.0 200 OK\n-------abcd$\n",
        "MSRP ab SEND\n-------ab$\n",
        "MSRP abcd send\n-------abcd$\n",
        "MSRP abcd SEND\nTo-Path msrp://x;tcp\n-------abcd$\n",
        "MSRP abcd SEND\n-------abce$\n",
        "MSRP abcd SEND\n-------abcd!\n",
        "MSRP abcd 20 OK\n-------abcd$\n",
    ] {
        assert!(Message::parse(&wire(bad)).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn relay_forwarding_and_addressing() {
    use tandem_proto::msrp::relay::{addressed_to, forward};
    let relay = MsrpUri::parse("msrp://relay.example.com:2855/r1;tcp").unwrap();
    let bob = MsrpUri::parse("msrp://bob.example.com:8888/9di4eae923wzd;tcp").unwrap();
    let mut send = request(
        Message::parse(&wire(
            "MSRP abcd1 SEND
To-Path: msrp://Relay.example.com:2855/r1;tcp msrp://bob.example.com:8888/9di4eae923wzd;tcp
From-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp
Message-ID: 1
Content-Type: text/plain

hi
-------abcd1$
",
        ))
        .unwrap(),
    );
    assert!(addressed_to(&send, &relay).unwrap());
    assert!(!addressed_to(&send, &bob).unwrap());
    assert!(forward(&mut send.clone(), &bob).is_err());
    let next = forward(&mut send, &relay).unwrap();
    assert_eq!(next, bob);
    assert_eq!(
        send.headers.get("To-Path"),
        Some("msrp://bob.example.com:8888/9di4eae923wzd;tcp")
    );
    assert_eq!(
        send.headers.get("From-Path"),
        Some(
            "msrp://relay.example.com:2855/r1;tcp msrp://alicepc.example.com:7777/iau39soe2843z;tcp"
        )
    );
    assert!(addressed_to(&send, &bob).unwrap());
    // bob's response goes back one hop, to the relay
    let resp = response_for(&send, 200).unwrap().unwrap();
    assert_eq!(resp.headers.to_path().unwrap(), vec![relay.clone()]);
    // the last hop cannot be forwarded further
    assert!(forward(&mut send, &bob).is_err());
}
