//! RFC 3263 resolution against an in-test DNS server, and failover between targets.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::dns::{TestDns, Zone};
use common::*;
use tandem_net::{DnsConfig, Endpoint, NetError, Target, TxOutcome};
use tandem_proto::msg::{Message, Response, Uri};
use tandem_proto::{Flow, Transport};
use tokio::net::UdpSocket;

const LOCAL: &str = "127.0.0.1";

fn ip() -> IpAddr {
    LOCAL.parse().unwrap()
}

fn uri(s: &str) -> Uri {
    Uri::parse(s).unwrap()
}

fn flow(t: Transport, port: u16) -> Flow {
    Flow::new(t, SocketAddr::new(ip(), port))
}

/// A client endpoint (UDP bound) that asks `dns`.
async fn client(dns: &TestDns) -> (Endpoint, tandem_net::Incoming) {
    let mut c = config();
    c.udp = vec![any(LOCAL)];
    c.dns = DnsConfig::Nameserver(dns.addr);
    Endpoint::bind(c).await.unwrap()
}

#[tokio::test]
async fn naptr_then_srv_then_address_records() {
    let mut z = Zone::default();
    z.naptr(
        "example.test.",
        20,
        10,
        "SIP+D2U",
        "_sip._udp.example.test.",
    );
    z.naptr(
        "example.test.",
        10,
        10,
        "SIP+D2T",
        "_sip._tcp.example.test.",
    );
    // Unknown services are ignored.
    z.naptr("example.test.", 5, 10, "E2U+email", "mail.example.test.");
    z.srv("_sip._tcp.example.test.", 20, 0, 5080, "b.example.test.");
    z.srv("_sip._tcp.example.test.", 10, 0, 5070, "a.example.test.");
    z.srv("_sip._udp.example.test.", 10, 0, 5090, "a.example.test.");
    z.addr("a.example.test.", ip());
    z.addr("b.example.test.", "127.0.0.2".parse().unwrap());
    let dns = TestDns::start(z).await;
    let (ep, _in) = client(&dns).await;

    let flows = ep.resolve(&uri("sip:alice@example.test")).await.unwrap();
    assert_eq!(
        flows,
        vec![
            flow(Transport::Tcp, 5070),
            Flow::new(Transport::Tcp, "127.0.0.2:5080".parse().unwrap()),
            flow(Transport::Udp, 5090),
        ]
    );

    // An explicit port skips NAPTR and SRV; the transport defaults to UDP.
    let flows = ep.resolve(&uri("sip:a.example.test:7000")).await.unwrap();
    assert_eq!(flows, vec![flow(Transport::Udp, 7000)]);

    // ;transport= fixes the transport: SRV for it only.
    let flows = ep
        .resolve(&uri("sip:example.test;transport=udp"))
        .await
        .unwrap();
    assert_eq!(flows, vec![flow(Transport::Udp, 5090)]);
    ep.shutdown().await;
}

#[tokio::test]
async fn srv_without_naptr_and_address_fallback() {
    let mut z = Zone::default();
    z.srv("_sips._tcp.srv.test.", 10, 0, 5061, "host.srv.test.");
    z.srv("_sip._udp.srv.test.", 10, 0, 5062, "host.srv.test.");
    z.addr("host.srv.test.", ip());
    z.addr("plain.test.", ip());
    z.addr("plain.test.", "::1".parse().unwrap());
    let dns = TestDns::start(z).await;
    let (ep, _in) = client(&dns).await;

    let flows = ep.resolve(&uri("sip:srv.test")).await.unwrap();
    assert_eq!(
        flows,
        vec![flow(Transport::Tls, 5061), flow(Transport::Udp, 5062)]
    );
    // sips: only TLS.
    let flows = ep.resolve(&uri("sips:srv.test")).await.unwrap();
    assert_eq!(flows, vec![flow(Transport::Tls, 5061)]);

    // No NAPTR, no SRV: A/AAAA on 5060 over UDP; the client has no IPv6 UDP socket, so the
    // AAAA result is not usable over UDP.
    let flows = ep.resolve(&uri("sip:plain.test")).await.unwrap();
    assert_eq!(flows, vec![flow(Transport::Udp, 5060)]);
    let flows = ep
        .resolve(&uri("sip:plain.test;transport=tcp"))
        .await
        .unwrap();
    assert_eq!(
        flows,
        vec![
            flow(Transport::Tcp, 5060),
            Flow::new(Transport::Tcp, "[::1]:5060".parse().unwrap())
        ]
    );
    // sips: falls back to TLS on 5061.
    let flows = ep.resolve(&uri("sips:plain.test")).await.unwrap();
    assert_eq!(flows[0], flow(Transport::Tls, 5061));

    let err = ep.resolve(&uri("sip:nothing.test")).await.unwrap_err();
    assert!(
        matches!(err, NetError::Resolve(_) | NetError::NoTarget),
        "{err}"
    );
    ep.shutdown().await;
}

/// A raw UDP socket that answers every request with `status` (or never, for `None`) and
/// counts what it received.
struct RawTarget {
    port: u16,
    hits: tokio::sync::watch::Receiver<usize>,
    _task: AbortOnDrop,
}

async fn raw_target(status: Option<u16>) -> RawTarget {
    let socket = UdpSocket::bind(any(LOCAL)).await.unwrap();
    let port = socket.local_addr().unwrap().port();
    let (hits_tx, hits) = tokio::sync::watch::channel(0usize);
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            hits_tx.send_modify(|h| *h += 1);
            let Some(status) = status else { continue };
            let data = bytes::Bytes::copy_from_slice(&buf[..n]);
            if let Ok(Message::Request(req)) = Message::parse(data) {
                let resp = Response::for_request(&req, status);
                let _ = socket.send_to(&resp.to_bytes(), from).await;
            }
        }
    });
    RawTarget {
        port,
        hits,
        _task: AbortOnDrop(task),
    }
}

async fn live_server() -> (Endpoint, AbortOnDrop) {
    let mut c = config();
    c.udp = vec![any(LOCAL)];
    let (server, server_in) = Endpoint::bind(c).await.unwrap();
    let guard = serve_200(server.clone(), server_in);
    (server, guard)
}

#[tokio::test]
async fn srv_failover_after_timeout() {
    let dead = raw_target(None).await;
    let (server, _srv) = live_server().await;
    let live_port = server.local_addr(Transport::Udp).unwrap().port();

    let mut z = Zone::default();
    z.srv("_sip._udp.fail.test.", 10, 0, dead.port, "h.fail.test.");
    z.srv("_sip._udp.fail.test.", 20, 0, live_port, "h.fail.test.");
    z.addr("h.fail.test.", ip());
    let dns = TestDns::start(z).await;
    let (ep, _in) = client(&dns).await;

    let mut tx = ep
        .request(options("sip:fail.test"), Target::Uri(uri("sip:fail.test")))
        .await
        .unwrap();
    let first_id = tx.id();
    assert_eq!(tx.flow(), Some(flow(Transport::Udp, dead.port)));
    let out = final_outcome(&mut tx).await;
    assert_eq!(status(&out), 200);
    assert_eq!(tx.flow(), Some(flow(Transport::Udp, live_port)));
    assert_ne!(tx.id(), first_id, "a new transaction for the next target");
    assert!(*dead.hits.borrow() >= 1, "the dead target was tried first");
    ep.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn srv_failover_after_503_and_last_503_is_returned() {
    let busy = raw_target(Some(503)).await;
    let (server, _srv) = live_server().await;
    let live_port = server.local_addr(Transport::Udp).unwrap().port();

    let mut z = Zone::default();
    z.srv("_sip._udp.busy.test.", 10, 0, busy.port, "h.busy.test.");
    z.srv("_sip._udp.busy.test.", 20, 0, live_port, "h.busy.test.");
    z.srv("_sip._udp.allbusy.test.", 10, 0, busy.port, "h.busy.test.");
    z.addr("h.busy.test.", ip());
    let dns = TestDns::start(z).await;
    let (ep, _in) = client(&dns).await;

    let mut tx = ep
        .request(options("sip:busy.test"), Target::Uri(uri("sip:busy.test")))
        .await
        .unwrap();
    assert_eq!(status(&final_outcome(&mut tx).await), 200);
    assert_eq!(tx.flow(), Some(flow(Transport::Udp, live_port)));
    assert_eq!(*busy.hits.borrow(), 1);

    // With only the 503 target, the caller gets the 503.
    let mut tx = ep
        .request(
            options("sip:allbusy.test"),
            Target::Uri(uri("sip:allbusy.test")),
        )
        .await
        .unwrap();
    assert_eq!(status(&final_outcome(&mut tx).await), 503);
    ep.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn last_target_timeout_is_returned() {
    let dead = raw_target(None).await;
    let mut z = Zone::default();
    z.srv("_sip._udp.dead.test.", 10, 0, dead.port, "h.dead.test.");
    z.addr("h.dead.test.", ip());
    let dns = TestDns::start(z).await;
    let (ep, _in) = client(&dns).await;
    let mut tx = ep
        .request(options("sip:dead.test"), Target::Uri(uri("sip:dead.test")))
        .await
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), final_outcome(&mut tx))
        .await
        .unwrap();
    assert!(matches!(out, TxOutcome::Timeout), "{out:?}");
    ep.shutdown().await;
}

#[tokio::test]
async fn tls_server_name_comes_from_the_uri_host() {
    let (server_tls, client_tls) = tls_configs(&["sip.tls.test"]);
    let mut c = config();
    c.tls = vec![any(LOCAL)];
    c.tls_server = Some(server_tls);
    let (server, server_in) = Endpoint::bind(c).await.unwrap();
    let _srv = serve_200(server.clone(), server_in);
    let port = server.local_addr(Transport::Tls).unwrap().port();

    let mut z = Zone::default();
    z.addr("sip.tls.test.", ip());
    let dns = TestDns::start(z).await;
    let mut c = config();
    c.udp = vec![any(LOCAL)];
    c.dns = DnsConfig::Nameserver(dns.addr);
    c.tls_client = Some(client_tls);
    let (ep, _in) = Endpoint::bind(c).await.unwrap();

    // The certificate names only sip.tls.test, not 127.0.0.1: verification needs the name.
    let target = format!("sips:sip.tls.test:{port}");
    let mut tx = ep
        .request(options(&target), Target::Uri(uri(&target)))
        .await
        .unwrap();
    assert_eq!(status(&final_outcome(&mut tx).await), 200);
    ep.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn failover_after_refused_connection() {
    let closed_port = {
        let l = std::net::TcpListener::bind(any(LOCAL)).unwrap();
        l.local_addr().unwrap().port()
    };
    let mut c = config();
    c.tcp = vec![any(LOCAL)];
    let (server, server_in) = Endpoint::bind(c).await.unwrap();
    let _srv = serve_200(server.clone(), server_in);
    let live_port = server.local_addr(Transport::Tcp).unwrap().port();

    let mut z = Zone::default();
    z.naptr("tcp.test.", 10, 10, "SIP+D2T", "_sip._tcp.tcp.test.");
    z.srv("_sip._tcp.tcp.test.", 10, 0, closed_port, "h.tcp.test.");
    z.srv("_sip._tcp.tcp.test.", 20, 0, live_port, "h.tcp.test.");
    z.addr("h.tcp.test.", ip());
    let dns = TestDns::start(z).await;
    let (ep, _in) = client(&dns).await;
    let mut tx = ep
        .request(options("sip:tcp.test"), Target::Uri(uri("sip:tcp.test")))
        .await
        .unwrap();
    assert_eq!(tx.flow(), Some(flow(Transport::Tcp, closed_port)));
    assert_eq!(status(&final_outcome(&mut tx).await), 200);
    assert_eq!(tx.flow(), Some(flow(Transport::Tcp, live_port)));
    ep.shutdown().await;
    server.shutdown().await;
}
