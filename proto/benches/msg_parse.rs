//! Parse/print throughput of `tandem_proto::msg` over the valid RFC 4475 messages.
//!
//! `cargo bench -p tandem-proto --bench msg_parse` prints, per message, the time of
//! `Message::parse` and of `to_bytes`, and their ratio to copying the input (the reference
//! measured in the same run, so the numbers compare across machines).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may unwrap

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tandem_proto::msg::Message;

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
}
