//! Parse/print throughput of `tandem_proto::msg` over the valid RFC 4475 messages.
//!
//! `cargo bench -p tandem-proto --bench msg_parse` prints, per message, the time of
//! `Message::parse` and of `to_bytes`, and their ratio to copying the input (the reference
//! measured in the same run, so the numbers compare across machines).
//!
//! It then prints the throughput (best of several runs, in operations per second) of the
//! steps a server takes on a SIPp-like digest REGISTER: `Message::parse` (parse + validate),
//! `parse_unvalidated` alone, `validate_request` alone, and reading the headers a transaction
//! layer and a registrar need (top Via, From, To, CSeq, Call-ID, Contact).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may unwrap

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tandem_proto::msg::{Message, ParseLimits, Request, validate_request};

const VALID: [&str; 8] = [
    "wsinv",
    "intmeth",
    "esc01",
    "longreq",
    "semiuri",
    "transports",
    "mpart01",
    "inv2543",
];

fn time(mut f: impl FnMut()) -> Duration {
    // Warm up, then run for about 200 ms.
    for _ in 0..100 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < Duration::from_millis(200) {
        for _ in 0..100 {
            f();
        }
        n += 100;
    }
    start.elapsed() / n
}

/// A SIPp-like REGISTER (as in the `tx_server` bench), with an Authorization header.
const REGISTER: &str = "REGISTER sip:192.0.2.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.7:10007;branch=z9hG4bK-4711-7-0;rport\r\n\
From: <sip:user7@lab.example>;tag=4711SIPpTag007\r\n\
To: <sip:user7@lab.example>\r\n\
Call-ID: 7-4711@198.51.100.7\r\n\
CSeq: 2 REGISTER\r\n\
Contact: <sip:user7@198.51.100.7:10007;transport=udp>\r\n\
Authorization: Digest username=\"user7\", realm=\"lab.example\", \
nonce=\"aGVsbG8gd29ybGQgMTIzNDU2Nzg5MA\", uri=\"sip:192.0.2.1:5060\", \
response=\"6629fae49393a05397450978507c4ef1\", algorithm=MD5, qop=auth, nc=00000001, \
cnonce=\"0a4f113b\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"\r\n\
Max-Forwards: 70\r\n\
Expires: 3600\r\n\
User-Agent: SIPp\r\n\
Content-Length: 0\r\n\r\n";

/// Operations per second of `f`: the best of five runs of about 200 ms each.
fn ops_per_sec(mut f: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| 1.0 / time(&mut f).as_secs_f64().max(1e-12))
        .fold(0.0, f64::max)
}

fn register_steps() {
    let data = Bytes::from_static(REGISTER.as_bytes());
    let req = Request::parse(data.clone()).unwrap();
    let steps: [(&str, f64); 4] = [
        (
            "Message::parse (parse + validate)",
            ops_per_sec(|| {
                black_box(Message::parse(black_box(data.clone())).unwrap());
            }),
        ),
        (
            "parse_unvalidated",
            ops_per_sec(|| {
                black_box(
                    Message::parse_unvalidated(black_box(data.clone()), &ParseLimits::default())
                        .unwrap(),
                );
            }),
        ),
        (
            "validate_request",
            ops_per_sec(|| {
                validate_request(black_box(&req)).unwrap();
            }),
        ),
        (
            "top_via+from+to+cseq+call_id+contacts",
            ops_per_sec(|| {
                let h = &black_box(&req).headers;
                black_box(h.top_via().unwrap());
                black_box(h.from().unwrap());
                black_box(h.to().unwrap());
                black_box(h.cseq().unwrap());
                black_box(h.call_id().unwrap());
                black_box(h.contacts().unwrap());
            }),
        ),
    ];
    println!();
    println!("SIPp-like digest REGISTER ({} bytes):", data.len());
    for (name, ops) in steps {
        println!("  {name:<40} {ops:>12.0} ops/s");
    }
}

fn main() {
    println!(
        "{:<12} {:>10} {:>10} {:>10} {:>8}",
        "message", "copy", "parse", "print", "parse/copy"
    );
    for name in VALID {
        let path = format!(
            "{}/tests/data/rfc4475/{name}.dat",
            env!("CARGO_MANIFEST_DIR")
        );
        let data = Bytes::from(std::fs::read(&path).unwrap());
        let msg = Message::parse(data.clone()).unwrap();
        let copy = time(|| {
            black_box(Bytes::copy_from_slice(black_box(&data)));
        });
        let parse = time(|| {
            black_box(Message::parse(black_box(data.clone())).unwrap());
        });
        let print = time(|| {
            black_box(black_box(&msg).to_bytes());
        });
        println!(
            "{name:<12} {:>8}ns {:>8}ns {:>8}ns {:>8.1}",
            copy.as_nanos(),
            parse.as_nanos(),
            print.as_nanos(),
            parse.as_secs_f64() / copy.as_secs_f64().max(1e-12)
        );
    }
    register_steps();
}
