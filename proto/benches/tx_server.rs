//! Cost of non-INVITE server transactions under a digest-REGISTER load.
//!
//! `cargo bench -p tandem-proto --bench tx_server` prints:
//! - the heap bytes (and allocations) a `TransactionLayer` holds per server transaction
//!   in the Completed state (UDP, waiting for Timer J), over N = 100,000 transactions,
//!   measured with a counting global allocator;
//! - the throughput of `handle_receive` (new REGISTER) + `send_response` (401 with a
//!   challenge), draining `poll_event`/`poll_transmit`, in operations per second;
//! - the throughput of absorbing a request retransmission in Completed;
//! - the throughput of reaping Completed transactions through `handle_timeout` (Timer J).

#![allow(clippy::unwrap_used, clippy::expect_used)]
// a bench may unwrap
// The counting global allocator must implement the unsafe `GlobalAlloc` trait; it only
// forwards to `System` and counts.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tandem_proto::msg::{HeaderName, Response};
use tandem_proto::transaction::{SentBy, TransactionLayer, TxConfig, TxEvent};
use tandem_proto::{Flow, Transport};

/// A global allocator that counts live bytes and allocation calls.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are
// only statistics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's pointer, layout and size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const N: usize = 100_000;

/// A SIPp-like REGISTER from client `i` (its own branch, Call-ID and port).
fn register(i: usize) -> Bytes {
    let port = 10_000 + (i % 50_000);
    Bytes::from(format!(
        "REGISTER sip:192.0.2.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 198.51.100.7:{port};branch=z9hG4bK-4711-{i}-0;rport\r\n\
         From: <sip:user{i}@lab.example>;tag=4711SIPpTag00{i}\r\n\
         To: <sip:user{i}@lab.example>\r\n\
         Call-ID: {i}-4711@198.51.100.7\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:user{i}@198.51.100.7:{port};transport=udp>\r\n\
         Max-Forwards: 70\r\n\
         Expires: 3600\r\n\
         User-Agent: SIPp\r\n\
         Content-Length: 0\r\n\r\n"
    ))
}

fn flow(i: usize) -> Flow {
    let addr: SocketAddr = format!("198.51.100.7:{}", 10_000 + (i % 50_000))
        .parse()
        .unwrap();
    Flow::new(Transport::Udp, addr)
}

fn layer() -> TransactionLayer {
    let mut layer = TransactionLayer::new(TxConfig {
        max_transactions: usize::MAX,
        seed: 7,
        user_agent: Some("Tandem Lab".into()),
        ..TxConfig::default()
    });
    layer.set_sent_by(Transport::Udp, SentBy::new("192.0.2.1", 5060));
    layer
}

/// Feeds REGISTER `data` and answers it with a 401 challenge; returns the bytes sent.
fn register_401(layer: &mut TransactionLayer, now: Instant, data: Bytes, flow: Flow) -> usize {
    layer.handle_receive(now, data, flow);
    let mut sent = 0;
    while let Some(event) = layer.poll_event() {
        if let TxEvent::Request { tx, request, .. } = event {
            let mut response = Response::for_request(&request, 401);
            let mut to = response.headers.to().unwrap();
            to.set_tag("a73kszlfl");
            response.headers.set(HeaderName::To, to.to_string());
            response.headers.push(
                HeaderName::WwwAuthenticate,
                "Digest realm=\"lab.example\", nonce=\"aGVsbG8gd29ybGQgMTIzNDU2Nzg5MA\", \
                 opaque=\"5ccc069c403ebaf9f0171e9517f40e41\", algorithm=MD5, qop=\"auth\"",
            );
            layer.send_response(now, tx, response).unwrap();
        }
    }
    while let Some(t) = layer.poll_transmit() {
        sent += t.data.len();
    }
    sent
}

fn main() {
    let inputs: Vec<(Bytes, Flow)> = (0..N).map(|i| (register(i), flow(i))).collect();
    let now = Instant::now();

    // ----- memory per Completed transaction -----
    let mut l = layer();
    let before_bytes = LIVE.load(Ordering::Relaxed);
    let before_allocs = ALLOCS.load(Ordering::Relaxed);
    let start = Instant::now();
    for (data, flow) in &inputs {
        black_box(register_401(&mut l, now, data.clone(), *flow));
    }
    let create = start.elapsed();
    assert_eq!(l.len(), N);
    let held = LIVE.load(Ordering::Relaxed) - before_bytes;
    let allocs = ALLOCS.load(Ordering::Relaxed) - before_allocs;
    println!(
        "completed non-INVITE server tx: {} bytes held per tx ({} transactions, {:.1} MB total)",
        held / N,
        N,
        held as f64 / 1e6
    );
    println!(
        "handle_receive + send_response (new REGISTER -> 401): {:.0} ops/s, {:.1} allocations per op",
        N as f64 / create.as_secs_f64(),
        allocs as f64 / N as f64
    );

    // ----- absorbing retransmissions in Completed -----
    let start = Instant::now();
    let mut resent = 0;
    for (data, flow) in &inputs {
        l.handle_receive(now, data.clone(), *flow);
        while let Some(t) = l.poll_transmit() {
            resent += black_box(t.data.len());
        }
    }
    let retrans = start.elapsed();
    assert!(resent > 0);
    println!(
        "retransmission absorbed in Completed: {:.0} ops/s",
        N as f64 / retrans.as_secs_f64()
    );

    // ----- Timer J reaping -----
    let start = Instant::now();
    l.handle_timeout(now + Duration::from_secs(33));
    let mut terminated = 0;
    while let Some(event) = l.poll_event() {
        if matches!(event, TxEvent::Terminated { .. }) {
            terminated += 1;
        }
    }
    let reap = start.elapsed();
    assert_eq!(terminated, N);
    assert!(l.is_empty());
    println!(
        "Timer J expiry (reap): {:.0} ops/s",
        N as f64 / reap.as_secs_f64()
    );
    drop(l);

    // ----- steady-state throughput (layer kept small: reap every 10,000) -----
    let mut l = layer();
    let rounds = 3;
    let start = Instant::now();
    let mut t = now;
    for _ in 0..rounds {
        for chunk in inputs.chunks(10_000) {
            for (data, flow) in chunk {
                black_box(register_401(&mut l, t, data.clone(), *flow));
            }
            t += Duration::from_secs(40);
            l.handle_timeout(t);
            while l.poll_event().is_some() {}
        }
    }
    let steady = start.elapsed();
    println!(
        "steady state (receive + 401 + Timer J reap): {:.0} REGISTER transactions/s",
        (rounds * N) as f64 / steady.as_secs_f64()
    );
}
