//! Hostile or unusual peers against one endpoint on loopback: a TU that does not keep up,
//! CRLF keep-alive datagrams, a stream message without Content-Length.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

mod common;

use std::time::Duration;

use common::*;
use tandem_net::{Endpoint, IncomingEvent};
use tandem_proto::Transport;
use tandem_proto::msg::Response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

fn raw_udp_options(port: u16, n: usize) -> String {
    format!(
        "OPTIONS sip:server@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKflood{n}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:raw@127.0.0.1>;tag=f{n}\r\n\
         To: <sip:server@127.0.0.1>\r\n\
         Call-ID: flood-{n}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Receives datagrams on `raw` until `pred` holds for one (or the time is up).
async fn recv_matching(raw: &UdpSocket, within: Duration, pred: impl Fn(&str) -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = vec![0u8; 65535];
    loop {
        match tokio::time::timeout_at(deadline, raw.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => {
                if pred(&String::from_utf8_lossy(&buf[..n])) {
                    return true;
                }
            }
            Ok(Err(_)) => {}
            Err(_) => return false,
        }
    }
}

/// A request whose event cannot be queued for the TU (the incoming queue is full) must
/// not leave a server transaction behind that nobody will ever answer: it is answered
/// with 503 at once, and once the TU catches up requests are served again.
#[tokio::test]
async fn requests_beyond_the_incoming_queue_get_503_and_leave_no_state() {
    let mut c = config();
    c.udp = vec![any("127.0.0.1")];
    let (server, mut server_in) = Endpoint::bind(c).await.unwrap();
    let addr = server.local_addr(Transport::Udp).unwrap();
    let raw = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = raw.local_addr().unwrap().port();

    // Fill the incoming queue (4096 events) without reading it, pacing the sends so the
    // socket buffer does not overflow; then keep sending until 503s come back.
    let mut n = 0;
    for _ in 0..45 {
        for _ in 0..100 {
            raw.send_to(raw_udp_options(port, n).as_bytes(), addr)
                .await
                .unwrap();
            n += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let got_503 = recv_matching(&raw, Duration::from_secs(5), |t| {
        t.starts_with("SIP/2.0 503")
    })
    .await;
    assert!(
        got_503,
        "no 503 for requests the TU could not be told about"
    );

    // Drain what the TU was told and answer it.
    let mut answered = 0;
    while let Ok(Some(ev)) =
        tokio::time::timeout(Duration::from_millis(200), server_in.next()).await
    {
        if let IncomingEvent::Request { tx, request, .. } = ev {
            server.respond(tx, Response::for_request(&request, 200));
            answered += 1;
        }
    }
    assert!(answered >= 1000, "only {answered} requests reached the TU");

    // Once the answered transactions have ended (Timer J, 64·T1), new requests are all
    // served: nothing was left behind holding transaction slots.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let _srv = serve_200(server.clone(), server_in);
    for i in 0..50 {
        let k = 100_000 + i;
        raw.send_to(raw_udp_options(port, k).as_bytes(), addr)
            .await
            .unwrap();
        let call = format!("flood-{k}\r\n");
        let ok = recv_matching(&raw, Duration::from_secs(5), |t| {
            t.contains(&call) && t.starts_with("SIP/2.0 200")
        })
        .await;
        assert!(ok, "no 200 for request {k}");
    }
    server.shutdown().await;
}

/// CRLF keep-alives sent as UDP datagrams (RFC 5626 style) are ignored: no 400.
#[tokio::test]
async fn crlf_datagrams_are_ignored() {
    let mut c = config();
    c.udp = vec![any("127.0.0.1")];
    let (server, server_in) = Endpoint::bind(c).await.unwrap();
    let _srv = serve_200(server.clone(), server_in);
    let addr = server.local_addr(Transport::Udp).unwrap();
    let raw = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = raw.local_addr().unwrap().port();
    for ping in [&b"\r\n\r\n"[..], b"\r\n", b"\0\0\0\0"] {
        raw.send_to(ping, addr).await.unwrap();
    }
    raw.send_to(raw_udp_options(port, 1).as_bytes(), addr)
        .await
        .unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), raw.recv_from(&mut buf))
        .await
        .expect("no answer")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("SIP/2.0 200"), "{text}");
    server.shutdown().await;
}

/// RFC 3261 §18.3: on a stream a message without Content-Length cannot be framed; the
/// connection is closed (and nothing is answered on it).
#[tokio::test]
async fn stream_message_without_content_length_closes_the_connection() {
    let mut c = config();
    c.tcp = vec![any("127.0.0.1")];
    let (server, server_in) = Endpoint::bind(c).await.unwrap();
    let _srv = serve_200(server.clone(), server_in);
    let addr = server.local_addr(Transport::Tcp).unwrap();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let msg = "OPTIONS sip:server@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKnocl\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:raw@127.0.0.1>;tag=nocl\r\n\
         To: <sip:server@127.0.0.1>\r\n\
         Call-ID: nocl\r\n\
         CSeq: 1 OPTIONS\r\n\r\n";
    stream.write_all(msg.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection stayed open");
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    server.shutdown().await;
}
