//! Two endpoints on loopback: UDP, TCP, TLS, IPv6, connection reuse, stream framing,
//! keep-alives, malformed input.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

mod common;

use std::time::Duration;

use common::*;
use tandem_net::{Endpoint, IncomingEvent, Target, TxOutcome};
use tandem_proto::msg::{HeaderName, Response};
use tandem_proto::{Flow, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// Sends an OPTIONS from `client` to `server_flow` and checks the 200 and both flows.
async fn options_round_trip(client: &Endpoint, server_flow: Flow) {
    let uri = format!(
        "sip:{}:{};transport={}",
        bracket(server_flow.remote),
        server_flow.remote.port(),
        server_flow.transport.uri_param()
    );
    let mut tx = client
        .request(options(&uri), Target::Flow(server_flow))
        .await
        .unwrap();
    assert!(
        tx.request()
            .headers
            .get_str(&HeaderName::Via)
            .unwrap()
            .contains(&format!("SIP/2.0/{}", server_flow.transport.via_token())),
        "our Via names the transport"
    );
    assert_eq!(status(&final_outcome(&mut tx).await), 200);
    assert_eq!(tx.flow(), Some(server_flow));
}

fn bracket(a: std::net::SocketAddr) -> String {
    match a {
        std::net::SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
        std::net::SocketAddr::V4(v4) => v4.ip().to_string(),
    }
}

#[tokio::test]
async fn options_over_udp() {
    let mut c = config();
    c.udp = vec![any("127.0.0.1")];
    let (server, server_in) = Endpoint::bind(c).await.unwrap();
    let _srv = serve_200(server.clone(), server_in);

    let mut c = config();
    c.udp = vec![any("127.0.0.1")];
    let (client, _client_in) = Endpoint::bind(c).await.unwrap();

    let flow = Flow::new(Transport::Udp, server.local_addr(Transport::Udp).unwrap());
    options_round_trip(&client, flow).await;
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn options_over_tcp_without_client_listener() {
    let mut c = config();
    c.tcp = vec![any("127.0.0.1")];
    let (server, server_in) = Endpoint::bind(c).await.unwrap();
    let _srv = serve_200(server.clone(), server_in);

    // The client has only a UDP socket; its TCP connection needs no listener.
    let mut c = config();
    c.udp = vec![any("127.0.0.1")];
    let (client, _client_in) = Endpoint::bind(c).await.unwrap();

    let flow = Flow::new(Transport::Tcp, server.local_addr(Transport::Tcp).unwrap());
    options_round_trip(&client, flow).await;
    // A second request reuses the connection.
    options_round_trip(&client, flow).await;
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn options_over_tls_with_uri_target() {
    let (server_tls, client_tls) = tls_configs(&["127.0.0.1", "localhost"]);
    let mut c = config();
    c.tls = vec![any("127.0.0.1")];
    c.tls_server = Some(server_tls);
    let (server, server_in) = Endpoint::bind(c).await.unwrap();
    let _srv = serve_200(server.clone(), server_in);

    let mut c = config();
    c.udp = vec![any("127.0.0.1")];
    c.tls_client = Some(client_tls);
    let (client, _client_in) = Endpoint::bind(c).await.unwrap();

    let addr = server.local_addr(Transport::Tls).unwrap();
    let uri = format!("sips:127.0.0.1:{}", addr.port());
    let mut tx = client
        .request(options(&uri), Target::Uri(uri.parse_uri()))
        .await
        .unwrap();
    assert_eq!(status(&final_outcome(&mut tx).await), 200);
    assert_eq!(tx.flow(), Some(Flow::new(Transport::Tls, addr)));
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn tls_with_an_untrusted_certificate_is_a_transport_error() {
    let (server_tls, _) = tls_configs(&["127.0.0.1"]);
    let (_, other_client_tls) = tls_configs(&["127.0.0.1"]);
    let mut c = config();
    c.tls = vec![any("127.0.0.1")];
    c.tls_server = Some(server_tls);
    let (server, server_in) = Endpoint::bind(c).await.unwrap();
    let _srv = serve_200(server.clone(), server_in);

    let mut c = config();
    c.udp = vec![any("127.0.0.1")];
    c.tls_client = Some(other_client_tls);
    let (client, _client_in) = Endpoint::bind(c).await.unwrap();
    let flow = Flow::new(Transport::Tls, server.local_addr(Transport::Tls).unwrap());
    let mut tx = client
        .request(options("sip:127.0.0.1"), Target::Flow(flow))
        .await
        .unwrap();
    let out = final_outcome(&mut tx).await;
    assert!(matches!(out, TxOutcome::TransportError(_)), "{out:?}");
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn options_over_ipv6() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("note: no IPv6 loopback on this machine, skipping the IPv6 test");
        return;
    }
    // v4 and v6 listeners on the same endpoint.
    let mut c = config();
    c.udp = vec![any("127.0.0.1"), any("[::1]")];
    c.tcp = vec![any("[::1]")];
    let (server, server_in) = Endpoint::bind(c).await.unwrap();
    let _srv = serve_200(server.clone(), server_in);

    let mut c = config();
    c.udp = vec![any("[::1]")];
    let (client, _client_in) = Endpoint::bind(c).await.unwrap();

    let v6_udp = server
        .local_addrs()
        .into_iter()
        .find(|(t, a)| *t == Transport::Udp && a.is_ipv6())
        .unwrap()
        .1;
    options_round_trip(&client, Flow::new(Transport::Udp, v6_udp)).await;
    let v6_tcp = server.local_addr(Transport::Tcp).unwrap();
    options_round_trip(&client, Flow::new(Transport::Tcp, v6_tcp)).await;
    let contact = client.contact_uri(Transport::Udp, Some("bob")).to_string();
    assert!(contact.starts_with("sip:bob@[::1]:"), "{contact}");
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn incoming_connection_is_reused_for_requests_back() {
    let mut c = config();
    c.tcp = vec![any("127.0.0.1")];
    let (server, mut server_in) = Endpoint::bind(c).await.unwrap();

    let mut c = config();
    c.tcp = vec![any("127.0.0.1")];
    let (client, mut client_in) = Endpoint::bind(c).await.unwrap();

    let server_addr = server.local_addr(Transport::Tcp).unwrap();
    let to_server = Flow::new(Transport::Tcp, server_addr);
    let mut tx = client
        .request(options("sip:127.0.0.1"), Target::Flow(to_server))
        .await
        .unwrap();
    let (stx, req, seen_flow) = next_request(&mut server_in).await;
    // The server sees the client's ephemeral port, not its listener.
    assert_ne!(seen_flow.remote, client.local_addr(Transport::Tcp).unwrap());
    server.respond(stx, Response::for_request(&req, 200));
    assert_eq!(status(&final_outcome(&mut tx).await), 200);

    // A server-originated request to that flow uses the same connection: nothing listens on
    // the client's ephemeral port, so a new connection would fail.
    let mut back = server
        .request(options("sip:alice@127.0.0.1"), Target::Flow(seen_flow))
        .await
        .unwrap();
    let (ctx, req, flow_at_client) = next_request(&mut client_in).await;
    assert_eq!(flow_at_client, to_server);
    client.respond(ctx, Response::for_request(&req, 200));
    assert_eq!(status(&final_outcome(&mut back).await), 200);
    client.shutdown().await;
    server.shutdown().await;
}

/// Reads from `stream` until `count` occurrences of `needle` were seen (or the time is up).
async fn read_until_count(stream: &mut TcpStream, needle: &[u8], count: usize) -> Vec<u8> {
    let mut all = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let seen = all.windows(needle.len()).filter(|w| *w == needle).count();
        if seen >= count {
            return all;
        }
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .expect("timed out reading")
            .unwrap();
        assert!(
            n > 0,
            "connection closed early: {}",
            String::from_utf8_lossy(&all)
        );
        all.extend_from_slice(&buf[..n]);
    }
}

fn raw_options(branch: &str, call: &str) -> String {
    format!(
        "OPTIONS sip:server@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:raw@127.0.0.1>;tag=r{branch}\r\n\
         To: <sip:server@127.0.0.1>\r\n\
         Call-ID: {call}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

#[tokio::test]
async fn tcp_framing_split_and_coalesced_messages() {
    let mut c = config();
    c.tcp = vec![any("127.0.0.1")];
    let (server, server_in) = Endpoint::bind(c).await.unwrap();
    let _srv = serve_200(server.clone(), server_in);
    let addr = server.local_addr(Transport::Tcp).unwrap();

    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    for b in raw_options("split1", "split-call").as_bytes() {
        stream.write_all(&[*b]).await.unwrap();
        stream.flush().await.unwrap();
    }
    let got = read_until_count(&mut stream, b"SIP/2.0 200", 1).await;
    assert!(String::from_utf8_lossy(&got).contains("split-call"));

    let two = format!(
        "{}{}",
        raw_options("two1", "two-call-1"),
        raw_options("two2", "two-call-2")
    );
    stream.write_all(two.as_bytes()).await.unwrap();
    let got = read_until_count(&mut stream, b"SIP/2.0 200", 2).await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains("two-call-1") && text.contains("two-call-2"),
        "{text}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn keepalive_ping_is_answered_with_pong() {
    let mut c = config();
    c.tcp = vec![any("127.0.0.1")];
    let (server, _server_in) = Endpoint::bind(c).await.unwrap();
    let mut stream = TcpStream::connect(server.local_addr(Transport::Tcp).unwrap())
        .await
        .unwrap();
    stream.write_all(b"\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut buf))
        .await
        .expect("no pong")
        .unwrap();
    assert_eq!(&buf, b"\r\n");
    server.shutdown().await;
}

#[tokio::test]
async fn keepalive_pings_on_outgoing_connections() {
    // A raw TCP "server" sees our pings after the first request and answers them.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();

    let mut c = config();
    c.udp = vec![any("127.0.0.1")];
    c.keepalive = Some(Duration::from_millis(100));
    let (client, _client_in) = Endpoint::bind(c).await.unwrap();
    let _tx = client
        .request(
            options("sip:127.0.0.1"),
            Target::Flow(Flow::new(Transport::Tcp, addr)),
        )
        .await
        .unwrap();

    let (mut stream, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .unwrap()
        .unwrap();
    let got = read_until_count(&mut stream, b"\r\n\r\n", 1).await;
    assert!(got.starts_with(b"OPTIONS "));
    // Two more pings after the request (each one answered with a pong keeps the flow alive).
    let mut pings = 0;
    let mut rest = Vec::new();
    while pings < 2 {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("no ping")
            .unwrap();
        assert!(n > 0);
        rest.extend_from_slice(&buf[..n]);
        while rest.starts_with(b"\r\n\r\n") {
            rest.drain(..4);
            pings += 1;
            stream.write_all(b"\r\n").await.unwrap();
        }
    }
    client.shutdown().await;
}

#[tokio::test]
async fn malformed_datagram_gets_400() {
    let mut c = config();
    c.udp = vec![any("127.0.0.1")];
    let (server, server_in) = Endpoint::bind(c).await.unwrap();
    let _srv = serve_200(server.clone(), server_in);
    let addr = server.local_addr(Transport::Udp).unwrap();

    let raw = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = raw.local_addr().unwrap().port();
    let bad = format!(
        "OPTIONS sip:server@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKbad1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:raw@127.0.0.1>;tag=bad\r\n\
         To: <sip:server@127.0.0.1>\r\n\
         Call-ID: bad-call\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 5000\r\n\r\nshort"
    );
    raw.send_to(bad.as_bytes(), addr).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), raw.recv_from(&mut buf))
        .await
        .expect("no answer to a malformed request")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("SIP/2.0 400"), "{text}");
    assert!(text.contains("bad-call"));
    server.shutdown().await;
}

#[tokio::test]
async fn oversized_header_closes_only_that_connection() {
    let mut c = config();
    c.tcp = vec![any("127.0.0.1")];
    let (server, server_in) = Endpoint::bind(c).await.unwrap();
    let _srv = serve_200(server.clone(), server_in);
    let addr = server.local_addr(Transport::Tcp).unwrap();

    let mut good = TcpStream::connect(addr).await.unwrap();
    let mut bad = TcpStream::connect(addr).await.unwrap();
    let mut huge = String::from("OPTIONS sip:server@127.0.0.1 SIP/2.0\r\nX-Huge: ");
    huge.push_str(&"a".repeat(110 * 1024));
    // The server may close while we are still writing: a write error is fine too.
    let _ = bad.write_all(huge.as_bytes()).await;
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match bad.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the connection with the oversized header stayed open");
    assert!(closed);

    good.write_all(raw_options("after", "after-call").as_bytes())
        .await
        .unwrap();
    let got = read_until_count(&mut good, b"SIP/2.0 200", 1).await;
    assert!(String::from_utf8_lossy(&got).contains("after-call"));
    server.shutdown().await;
}

#[tokio::test]
async fn refused_tcp_connection_is_a_transport_error() {
    // Bind and drop to get a port nothing listens on.
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let mut c = config();
    c.udp = vec![any("127.0.0.1")];
    let (client, _in) = Endpoint::bind(c).await.unwrap();
    let mut tx = client
        .request(
            options("sip:127.0.0.1"),
            Target::Flow(Flow::new(Transport::Tcp, addr)),
        )
        .await
        .unwrap();
    let out = final_outcome(&mut tx).await;
    assert!(matches!(out, TxOutcome::TransportError(_)), "{out:?}");
    client.shutdown().await;
}

#[tokio::test]
async fn incoming_events_stop_after_shutdown() {
    let mut c = config();
    c.udp = vec![any("127.0.0.1")];
    let (server, mut server_in) = Endpoint::bind(c).await.unwrap();
    server.shutdown().await;
    let ev: Option<IncomingEvent> = tokio::time::timeout(Duration::from_secs(5), server_in.next())
        .await
        .unwrap();
    assert!(ev.is_none());
}

trait ParseUri {
    fn parse_uri(&self) -> tandem_proto::msg::Uri;
}

impl ParseUri for String {
    fn parse_uri(&self) -> tandem_proto::msg::Uri {
        tandem_proto::msg::Uri::parse(self).unwrap()
    }
}

#[tokio::test]
async fn shutdown_releases_the_ports() {
    let mut c = config();
    c.udp = vec![any("127.0.0.1")];
    c.tcp = vec![any("127.0.0.1")];
    let (server, server_in) = Endpoint::bind(c).await.unwrap();
    let _srv = serve_200(server.clone(), server_in);
    // An open connection too.
    let tcp = server.local_addr(Transport::Tcp).unwrap();
    let mut s = TcpStream::connect(tcp).await.unwrap();
    s.write_all(raw_options("sd", "sd-call").as_bytes())
        .await
        .unwrap();
    read_until_count(&mut s, b"SIP/2.0 200", 1).await;
    let udp = server.local_addr(Transport::Udp).unwrap();
    server.shutdown().await;
    std::net::UdpSocket::bind(udp).expect("UDP port still taken after shutdown");
    std::net::TcpListener::bind(tcp).expect("TCP port still taken after shutdown");
    // The connection was closed by the shutdown.
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("connection still open after shutdown");
    assert!(matches!(n, Ok(0) | Err(_)));
}

#[tokio::test]
async fn udp_replies_leave_from_the_socket_the_request_reached() {
    let mut c = config();
    c.udp = vec![any("127.0.0.1"), any("127.0.0.1")];
    let (server, server_in) = Endpoint::bind(c).await.unwrap();
    let _srv = serve_200(server.clone(), server_in);
    let second = server
        .local_addrs()
        .into_iter()
        .filter(|(t, _)| *t == Transport::Udp)
        .nth(1)
        .unwrap()
        .1;

    let raw = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = raw.local_addr().unwrap().port();
    let req = raw_options("second", "second-call").replace(
        "SIP/2.0/TCP 127.0.0.1:9",
        &format!("SIP/2.0/UDP 127.0.0.1:{port}"),
    );
    raw.send_to(req.as_bytes(), second).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), raw.recv_from(&mut buf))
        .await
        .expect("no response")
        .unwrap();
    assert!(buf[..n].starts_with(b"SIP/2.0 200"));
    assert_eq!(from, second);
    server.shutdown().await;
}
