//! Reassembly, chunker and framer limits; a 50 MB transfer through a file sink with bounded memory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tandem_proto::msrp::report::success_report;
use tandem_proto::msrp::{
    ChunkSink, Chunker, Continuation, FailureReport, Framer, FramerLimits, Message, MsrpError,
    MsrpUri, Progress, Reassembler, ReassemblyLimits, Request, SeekSink,
};

fn uris() -> (Vec<MsrpUri>, Vec<MsrpUri>) {
    (
        vec![MsrpUri::parse("msrp://bob.example.com:8888/9di4eae923wzd;tcp").unwrap()],
        vec![
            MsrpUri::parse("msrp://relay.example.com:2855/r1;tcp").unwrap(),
            MsrpUri::parse("msrp://alicepc.example.com:7777/iau39soe2843z;tcp").unwrap(),
        ],
    )
}

fn chunks(data: &[u8], size: usize, id: &str) -> Vec<Request> {
    let (to, from) = uris();
    let mut rng = StdRng::seed_from_u64(5);
    Chunker::new(&to, &from, id, "text/plain", None, size)
        .with_reports(Some(true), Some(FailureReport::Partial))
        .split(&mut rng, data)
        .unwrap()
}

/// A temporary file removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "tandem-msrp-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        TempFile(p)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn out_of_order_duplicates_and_interleaved_messages() {
    let a: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let b = b"second message".to_vec();
    let ca = chunks(&a, 100, "A");
    let cb = chunks(&b, 4, "B");
    let mut r = Reassembler::default();
    // B's chunks interleaved with A's in reverse order, with duplicates
    let mut order: Vec<&Request> = Vec::new();
    for (i, c) in ca.iter().rev().enumerate() {
        order.push(c);
        if let Some(x) = cb.get(i) {
            order.push(x);
        }
        if i % 3 == 0 {
            order.push(c);
        }
    }
    let mut done = Vec::new();
    let mut duplicates = 0;
    for c in order {
        match r.push(c).unwrap() {
            Progress::Complete(m) => done.push(m),
            Progress::Duplicate { message_id } => {
                assert_eq!(message_id, "A");
                duplicates += 1;
            }
            _ => {}
        }
    }
    assert_eq!(done.len(), 2);
    // ca[0] is repeated after A completed: recognised, no new message started
    assert_eq!(duplicates, 1);
    let ma = done.iter().find(|m| m.message_id == "A").unwrap();
    let mb = done.iter().find(|m| m.message_id == "B").unwrap();
    assert_eq!(ma.body.as_deref(), Some(&a[..]));
    assert_eq!(mb.body.as_deref(), Some(&b[..]));
    assert!(ma.success_report);
    assert_eq!(ma.failure_report, FailureReport::Partial);
    assert_eq!(r.in_progress(), 0);
    assert_eq!(r.memory_used(), 0);

    // the success report goes back along the whole From-Path
    let mut rng = StdRng::seed_from_u64(3);
    let rep = success_report(&mut rng, ma).unwrap().unwrap();
    assert_eq!(
        rep.headers.get("To-Path"),
        Some(
            "msrp://relay.example.com:2855/r1;tcp msrp://alicepc.example.com:7777/iau39soe2843z;tcp"
        )
    );
    assert_eq!(rep.headers.get("Byte-Range"), Some("1-1000/1000"));
    assert_eq!(rep.headers.get("Status"), Some("000 200 OK"));
}

#[test]
fn partial_progress_and_resume_point() {
    let data = vec![7u8; 50];
    let c = chunks(&data, 10, "M");
    let mut r = Reassembler::default();
    r.push(&c[0]).unwrap();
    r.push(&c[1]).unwrap();
    let p = r.push(&c[3]).unwrap();
    assert_eq!(
        p,
        Progress::Partial {
            message_id: "M".into(),
            received: 30,
            total: Some(50)
        }
    );
    assert_eq!(r.contiguous_prefix("M"), 20);
    assert_eq!(r.received_ranges("M"), Some(vec![(0, 20), (30, 40)]));
    assert!(r.cancel("M"));
    assert!(!r.cancel("M"));
    assert_eq!(r.contiguous_prefix("M"), 0);
}

#[test]
fn abort_drops_the_message() {
    let (to, from) = uris();
    let mut rng = StdRng::seed_from_u64(1);
    let mut ch = Chunker::new(&to, &from, "X", "text/plain", Some(100), 30);
    let first = ch.next_chunk(&mut rng, &[1; 30], false).unwrap();
    assert_eq!(first.continuation, Continuation::More);
    assert_eq!(first.headers.get("Byte-Range"), Some("1-30/100"));
    let abort = ch.abort(&mut rng);
    assert_eq!(abort.continuation, Continuation::Aborted);
    assert_eq!(abort.headers.get("Byte-Range"), Some("31-30/100"));
    assert!(ch.is_finished());
    assert!(matches!(
        ch.next_chunk(&mut rng, &[0], false),
        Err(MsrpError::Finished)
    ));
    // on the wire and back
    let abort = match Message::parse(&abort.to_bytes()).unwrap() {
        Message::Request(r) => r,
        m => panic!("{m:?}"),
    };
    let mut r = Reassembler::default();
    r.push(&first).unwrap();
    assert_eq!(
        r.push(&abort).unwrap(),
        Progress::Aborted {
            message_id: "X".into(),
            received: 30
        }
    );
    assert_eq!(r.in_progress(), 0);
}

#[test]
fn chunker_known_total_unknown_total_and_seek() {
    let (to, from) = uris();
    let mut rng = StdRng::seed_from_u64(2);
    let mut ch = Chunker::new(&to, &from, "F", "image/jpeg", Some(25), 10);
    assert_eq!(ch.next_len(), 10);
    ch.seek(20); // resume from byte 21 (a=file-range:21-25)
    assert_eq!(ch.next_len(), 5);
    let c = ch.next_chunk(&mut rng, b"vwxyz", false).unwrap();
    assert_eq!(c.headers.get("Byte-Range"), Some("21-25/25"));
    assert_eq!(c.continuation, Continuation::Complete);
    assert!(ch.is_finished());
    assert!(matches!(
        Chunker::new(&to, &from, "G", "x/y", Some(5), 10).next_chunk(&mut rng, b"too long", false),
        Err(MsrpError::InconsistentRange(_))
    ));

    let mut live = Chunker::new(&to, &from, "L", "text/plain", None, 10);
    let a = live.next_chunk(&mut rng, b"abc", false).unwrap();
    assert_eq!(a.headers.get("Byte-Range"), Some("1-3/*"));
    let b = live.next_chunk(&mut rng, b"de", true).unwrap();
    assert_eq!(b.headers.get("Byte-Range"), Some("4-5/5"));
    let mut r = Reassembler::default();
    assert!(matches!(
        r.push(&a).unwrap(),
        Progress::Partial { total: None, .. }
    ));
    let Progress::Complete(done) = r.push(&b).unwrap() else {
        panic!()
    };
    assert_eq!(done.body.as_deref(), Some(&b"abcde"[..]));

    let empty = chunks(b"", 10, "E");
    assert_eq!(empty.len(), 1);
    assert_eq!(empty[0].headers.get("Byte-Range"), Some("1-0/0"));
    let Progress::Complete(done) = Reassembler::default().push(&empty[0]).unwrap() else {
        panic!()
    };
    assert_eq!(done.total, 0);
    assert_eq!(done.body.as_deref(), Some(&b""[..]));
}

#[test]
fn inconsistent_ranges_are_400() {
    let c = chunks(&[1; 20], 10, "R");
    let mut r = Reassembler::default();
    r.push(&c[0]).unwrap();
    let mut other_total = c[1].clone();
    other_total.headers.set("Byte-Range", "11-20/30");
    let e = r.push(&other_total).unwrap_err();
    assert_eq!(e.status_code(), 400);
    let mut past = c[1].clone();
    past.headers.set("Byte-Range", "15-24/20");
    assert_eq!(r.push(&past).unwrap_err().status_code(), 400);
    let mut longer = c[1].clone();
    longer.headers.set("Byte-Range", "11-15/20");
    assert_eq!(r.push(&longer).unwrap_err().status_code(), 400);
    // the message survives 400s
    let Progress::Complete(done) = r.push(&c[1]).unwrap() else {
        panic!()
    };
    assert_eq!(done.total, 20);
}

#[test]
fn limits_are_413_and_drop_the_message() {
    let limits = ReassemblyLimits {
        max_message_size: 1000,
        memory_budget: 300,
        max_messages: 2,
        max_ranges: 3,
        remember_completed: 4,
    };
    // announced total over the size limit
    let mut r = Reassembler::new(limits);
    let big = chunks(&[0; 1200], 100, "big");
    let e = r.push(&big[0]).unwrap_err();
    assert!(matches!(e, MsrpError::MessageTooLarge { .. }));
    assert_eq!(e.status_code(), 413);

    // announced total over the memory budget
    let mid = chunks(&[0; 500], 100, "mid");
    assert!(matches!(
        r.push(&mid[0]).unwrap_err(),
        MsrpError::MemoryBudget(300)
    ));

    // unannounced growth over the budget: the message is dropped
    let (to, from) = uris();
    let mut rng = StdRng::seed_from_u64(9);
    let mut live = Chunker::new(&to, &from, "live", "text/plain", None, 200);
    let a = live.next_chunk(&mut rng, &[1; 200], false).unwrap();
    let b = live.next_chunk(&mut rng, &[1; 200], false).unwrap();
    r.push(&a).unwrap();
    assert_eq!(r.memory_used(), 200);
    assert_eq!(r.push(&b).unwrap_err().status_code(), 413);
    assert_eq!(r.in_progress(), 0);
    assert_eq!(r.memory_used(), 0);

    // too many messages at once
    let m1 = chunks(&[0; 20], 10, "m1");
    let m2 = chunks(&[0; 20], 10, "m2");
    let m3 = chunks(&[0; 20], 10, "m3");
    r.push(&m1[0]).unwrap();
    r.push(&m2[0]).unwrap();
    assert!(matches!(
        r.push(&m3[0]).unwrap_err(),
        MsrpError::TooManyMessages(2)
    ));

    // scattered tiny chunks
    let mut r = Reassembler::new(limits);
    let s = chunks(&[0; 10], 1, "s");
    for i in [0, 2, 4] {
        r.push(&s[i]).unwrap();
    }
    assert_eq!(r.push(&s[6]).unwrap_err().status_code(), 400);
    r.push(&s[1]).unwrap(); // merges two ranges: fine again
    r.push(&s[6]).unwrap();
}

#[test]
fn framer_limits_close_the_stream() {
    let limits = FramerLimits {
        max_header_bytes: 512,
        max_body_bytes: 100,
    };
    let mut f = Framer::new(limits);
    f.push(b"MSRP abcd SEND\r\nTo-Path: ");
    f.push(&[b'x'; 600]);
    assert!(matches!(
        f.pop(),
        Err(MsrpError::HeadersTooLarge { limit: 512 })
    ));
    assert!(matches!(f.pop(), Err(MsrpError::Poisoned)));

    // a long line without CRLF is caught before it ends
    let mut f = Framer::new(limits);
    f.push(&[b'M'; 513]);
    assert!(matches!(f.pop(), Err(MsrpError::HeadersTooLarge { .. })));

    // bodies: exactly the limit passes, one more byte fails even before the end-line
    let c = chunks(&[b'a'; 100], 100, "ok");
    let mut f = Framer::new(limits);
    f.push(&c[0].to_bytes());
    assert!(f.pop().unwrap().is_some());
    let c = chunks(&[b'a'; 101], 101, "no");
    let bytes = c[0].to_bytes();
    let mut f = Framer::new(limits);
    let head_len = c[0].head_bytes().len();
    f.push(&bytes[..head_len + 101 + 20]);
    assert!(matches!(
        f.pop(),
        Err(MsrpError::BodyTooLarge { limit: 100 })
    ));
    assert!(f.buffered() == 0);
}

/// The byte at `offset` of the generated 50 MB file.
fn file_byte(offset: u64) -> u8 {
    let x = offset.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 56) as u8 ^ (offset as u8)
}

#[test]
fn fifty_megabytes_through_a_file_sink_with_bounded_memory() {
    const TOTAL: u64 = 50 * 1024 * 1024;
    const CHUNK: usize = 1024 * 1024;
    let tmp = TempFile::new("50mb");
    let (to, from) = uris();
    let mut rng = StdRng::seed_from_u64(50);
    let mut chunker = Chunker::new(
        &to,
        &from,
        "file-1",
        "application/octet-stream",
        Some(TOTAL),
        CHUNK,
    );
    let path = tmp.0.clone();
    let mut reassembler = Reassembler::new(ReassemblyLimits {
        memory_budget: 64 * 1024,
        ..ReassemblyLimits::default()
    })
    .with_sink_factory(Box::new(move |_first: &Request| {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        Ok(Some(Box::new(SeekSink::new(file)) as Box<dyn ChunkSink>))
    }));
    let mut framer = Framer::default();
    let mut piece = vec![0u8; CHUNK];
    let mut completed = None;
    let mut max_buffered = 0;
    while !chunker.is_finished() {
        let start = chunker.position();
        let n = chunker.next_len();
        for (i, b) in piece[..n].iter_mut().enumerate() {
            *b = file_byte(start + i as u64);
        }
        let req = chunker.next_chunk(&mut rng, &piece[..n], false).unwrap();
        let wire = req.to_bytes();
        drop(req);
        // the network delivers it in 64 KiB reads
        for read in wire.chunks(64 * 1024) {
            framer.push(read);
            max_buffered = max_buffered.max(framer.buffered());
            while let Some(m) = framer.pop().unwrap() {
                let Message::Request(r) = m else { panic!() };
                match reassembler.push(&r).unwrap() {
                    Progress::Complete(c) => completed = Some(c),
                    Progress::Partial { .. } => assert_eq!(reassembler.memory_used(), 0),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
    }
    let done = completed.expect("transfer incomplete");
    assert_eq!(done.total, TOTAL);
    assert!(done.body.is_none(), "a file sink keeps nothing in memory");
    assert!(
        max_buffered <= CHUNK + 64 * 1024 + 1024,
        "framer buffered {max_buffered}"
    );

    let mut f = File::open(&tmp.0).unwrap();
    assert_eq!(f.seek(SeekFrom::End(0)).unwrap(), TOTAL);
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut buf = vec![0u8; CHUNK];
    let mut off = 0u64;
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        for (i, b) in buf[..n].iter().enumerate() {
            assert_eq!(*b, file_byte(off + i as u64), "byte {}", off + i as u64);
        }
        off += n as u64;
    }
    assert_eq!(off, TOTAL);
}

#[test]
fn long_header_trickling_in_byte_by_byte() {
    // a 60 KiB header value delivered one byte at a time (scanned once, not once per byte)
    let mut bytes = b"MSRP abcd SEND\r\nTo-Path: msrp://b.example.com:1/s;tcp\r\nFrom-Path: msrp://a.example.com:2/t;tcp\r\nX-Long: ".to_vec();
    bytes.extend(std::iter::repeat_n(b'v', 60 * 1024));
    bytes.extend_from_slice(b"\r\n-------abcd$\r\n");
    let mut f = Framer::default();
    let mut got = None;
    for b in &bytes {
        f.push(std::slice::from_ref(b));
        if let Some(m) = f.pop().unwrap() {
            got = Some(m);
        }
    }
    let Some(Message::Request(r)) = got else {
        panic!("no message")
    };
    assert_eq!(r.headers.get("X-Long").map(str::len), Some(60 * 1024));
    assert_eq!(f.buffered(), 0);
}
