//! Property tests: the framer never panics on arbitrary bytes; chunk → frame → reassemble
//! round-trips with random chunk sizes, read sizes and delivery orders; end-line look-alikes
//! inside bodies survive framing exactly when the sender-side check says they do.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tandem_proto::msrp::message::body_contains_end_line;
use tandem_proto::msrp::{
    Chunker, Continuation, Framer, FramerLimits, Message, Method, MsrpUri, Progress, Reassembler,
    ReassemblyLimits, Request,
};

fn uris() -> (Vec<MsrpUri>, Vec<MsrpUri>) {
    (
        vec![MsrpUri::parse("msrp://bob.example.com:8888/9di4eae923wzd;tcp").unwrap()],
        vec![MsrpUri::parse("msrp://alicepc.example.com:7777/iau39soe2843z;tcp").unwrap()],
    )
}

fn sample_stream() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(
        b"MSRP a786hjs2 SEND\r\nTo-Path: msrp://b.example.com:1/s;tcp\r\nFrom-Path: msrp://a.example.com:2/t;tcp\r\nMessage-ID: 1\r\nByte-Range: 1-5/5\r\nContent-Type: text/plain\r\n\r\nhello\r\n-------a786hjs2$\r\n",
    );
    v.extend_from_slice(
        b"MSRP a786hjs2 200 OK\r\nTo-Path: msrp://a.example.com:2/t;tcp\r\nFrom-Path: msrp://b.example.com:1/s;tcp\r\n-------a786hjs2$\r\n",
    );
    v
}

/// Pushes `bytes` in pieces of the given sizes, popping after each; returns messages or the error.
fn frame_in_pieces(
    limits: FramerLimits,
    bytes: &[u8],
    sizes: &[usize],
) -> (Vec<Message>, Option<String>) {
    let mut f = Framer::new(limits);
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(1)
            .clamp(1, rest.len());
        i += 1;
        f.push(&rest[..n]);
        rest = &rest[n..];
        loop {
            match f.pop() {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => {
                    // once failed, always failed
                    assert!(f.pop().is_err());
                    return (out, Some(e.to_string()));
                }
            }
        }
    }
    (out, None)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn framer_never_panics_on_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        sizes in proptest::collection::vec(1usize..512, 1..8),
    ) {
        let limits = FramerLimits { max_header_bytes: 1024, max_body_bytes: 2048 };
        let (msgs, _) = frame_in_pieces(limits, &bytes, &sizes);
        for m in msgs {
            let _ = m.validate();
            let _ = m.to_bytes();
        }
    }

    #[test]
    fn framer_never_panics_on_mutated_messages(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..12),
        cut in any::<prop::sample::Index>(),
        sizes in proptest::collection::vec(1usize..64, 1..6),
    ) {
        let mut bytes = sample_stream();
        for (i, b) in flips {
            let at = i.index(bytes.len());
            bytes[at] = b;
        }
        let keep = cut.index(bytes.len() + 1);
        bytes.truncate(keep.max(bytes.len() / 2));
        let (msgs, _) = frame_in_pieces(FramerLimits::default(), &bytes, &sizes);
        for m in msgs {
            if let Message::Request(r) = &m
                && r.check_body().is_err()
            {
                continue;
            }
            // whatever framed prints to a fixed point (printing puts To-Path/From-Path first)
            let printed = m.to_bytes();
            let again = Message::parse(&printed).unwrap();
            prop_assert_eq!(again.to_bytes(), printed);
            prop_assert_eq!(again.transaction_id(), m.transaction_id());
        }
    }

    #[test]
    fn chunk_frame_reassemble_round_trip(
        data in proptest::collection::vec(any::<u8>(), 0..6000),
        chunk in 1usize..1500,
        reads in proptest::collection::vec(1usize..3000, 1..6),
        seed in any::<u64>(),
        shuffle in any::<bool>(),
        duplicate in any::<bool>(),
    ) {
        let (to, from) = uris();
        let mut rng = StdRng::seed_from_u64(seed);
        let chunks = Chunker::new(&to, &from, "m1", "application/octet-stream", None, chunk)
            .split(&mut rng, &data)
            .unwrap();
        let expected = data.len().div_ceil(chunk).max(1);
        prop_assert_eq!(chunks.len(), expected);
        for (i, c) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            prop_assert_eq!(c.continuation, if last { Continuation::Complete } else { Continuation::More });
            prop_assert!(c.check_body().is_ok());
        }
        let mut order: Vec<usize> = (0..chunks.len()).collect();
        if shuffle {
            // deterministic permutation from the seed
            let mut s = seed | 1;
            for i in (1..order.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                order.swap(i, (s % (i as u64 + 1)) as usize);
            }
        }
        if duplicate && !order.is_empty() {
            order.insert(0, order[order.len() - 1]);
        }
        let mut wire = Vec::new();
        for &i in &order {
            wire.extend(chunks[i].to_bytes());
        }
        let (msgs, err) = frame_in_pieces(FramerLimits::default(), &wire, &reads);
        prop_assert!(err.is_none(), "framing failed: {:?}", err);
        prop_assert_eq!(msgs.len(), order.len());
        // A shuffled 1-byte chunking can leave thousands of disjoint ranges, which the default
        // limits refuse on purpose (see `msrp_reassembly::limits_are_413_and_drop_the_message`); size the limit here.
        let mut r = Reassembler::new(ReassemblyLimits {
            max_ranges: chunks.len() + 1,
            ..ReassemblyLimits::default()
        });
        let mut done = None;
        for m in msgs {
            let Message::Request(req) = m else { panic!("response") };
            prop_assert_eq!(req.method.clone(), Method::Send);
            match r.push(&req).unwrap() {
                Progress::Complete(c) => {
                    prop_assert!(done.is_none());
                    done = Some(c);
                }
                Progress::Partial { .. } | Progress::Duplicate { .. } => {}
                Progress::Aborted { .. } => prop_assert!(false, "aborted"),
            }
        }
        let done = done.expect("never completed");
        prop_assert_eq!(done.total, data.len() as u64);
        prop_assert_eq!(done.body.as_deref(), Some(&data[..]));
    }

    #[test]
    fn end_line_look_alikes_inside_bodies(
        pieces in proptest::collection::vec(0usize..12, 0..24),
        flag in 0usize..3,
        reads in proptest::collection::vec(1usize..40, 1..5),
    ) {
        let tid = "a786hjs2";
        let fragments: [&[u8]; 12] = [
            b"\r\n", b"-------", b"a786hjs2", b"a786hjs2x", b"$", b"+", b"#", b"text ",
            b"\r\n-------a786hjs2", b"-------a786hjs2$\r\n", b"\r\n-------b786hjs2$\r\n", b"\r",
        ];
        let body: Vec<u8> = pieces.iter().flat_map(|&i| fragments[i].iter().copied()).collect();
        let req = Request {
            transaction_id: tid.into(),
            method: Method::Send,
            headers: {
                let mut h = tandem_proto::msrp::Headers::new();
                h.push("To-Path", "msrp://b.example.com:1/s;tcp");
                h.push("From-Path", "msrp://a.example.com:2/t;tcp");
                h.push("Message-ID", "x");
                h.push("Content-Type", "text/plain");
                h
            },
            body: Some(body.clone().into()),
            continuation: [Continuation::Complete, Continuation::More, Continuation::Aborted][flag],
        };
        let (msgs, err) = frame_in_pieces(FramerLimits::default(), &req.to_bytes(), &reads);
        let intact = err.is_none() && msgs.len() == 1 && msgs[0] == Message::Request(req.clone());
        // the sender-side check predicts exactly when a receiver would cut the body short
        prop_assert_eq!(intact, !body_contains_end_line(&body, tid));
        prop_assert_eq!(req.check_body().is_ok(), intact);
    }

    #[test]
    fn chunker_never_emits_a_body_with_its_end_line(
        seed in any::<u64>(),
        junk in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        // a body made of end-lines for many tids: the chunker must pick another tid
        let mut rng = StdRng::seed_from_u64(seed);
        let mut body = junk;
        let mut probe = StdRng::seed_from_u64(seed);
        for _ in 0..4 {
            let t = tandem_proto::msrp::new_transaction_id(&mut probe);
            body.extend_from_slice(format!("\r\n-------{t}$\r\n").as_bytes());
        }
        let (to, from) = uris();
        let c = Chunker::new(&to, &from, "m", "text/plain", None, 4096)
            .split(&mut rng, &body)
            .unwrap();
        prop_assert_eq!(c.len(), 1);
        prop_assert!(c[0].check_body().is_ok());
        let m = Message::parse(&c[0].to_bytes()).unwrap();
        prop_assert_eq!(m, Message::Request(c[0].clone()));
    }
}
