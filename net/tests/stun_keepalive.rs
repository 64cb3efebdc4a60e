//! STUN on the SIP UDP port (RFC 5626 §8) and flow events, between endpoints on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

mod common;

use std::time::Duration;

use common::*;
use tandem_net::{Endpoint, FlowEvent, NetError, StunRetry, Target};
use tandem_proto::stun::{Attribute, Class, Integrity, Message, Method};
use tandem_proto::{Flow, Transport};
use tokio::net::{TcpListener, UdpSocket};

fn fast_retry() -> StunRetry {
    StunRetry {
        rto: Duration::from_millis(50),
        transmissions: 3,
        last_wait: Duration::from_millis(200),
    }
}

#[tokio::test]
async fn keepalive_is_answered_with_our_address_and_sip_still_works() {
    let mut c = config();
    c.udp = vec![any("127.0.0.1")];
    let (server, server_in) = Endpoint::bind(c).await.unwrap();
    let _srv = serve_200(server.clone(), server_in);
    let mut c = config();
    c.udp = vec![any("127.0.0.1")];
    let (client, _client_in) = Endpoint::bind(c).await.unwrap();

    let flow = Flow::new(Transport::Udp, server.local_addr(Transport::Udp).unwrap());
    let mapped = client
        .stun_binding(flow, StunRetry::default())
        .await
        .unwrap();
    assert_eq!(mapped, client.local_addr(Transport::Udp).unwrap());
    let (answered, _, dropped) = server.stun_stats().snapshot();
    assert_eq!((answered, dropped), (1, 0));
    let (_, matched, _) = client.stun_stats().snapshot();
    assert_eq!(matched, 1);

    // SIP on the same socket pair is unaffected.
    let uri = format!("sip:127.0.0.1:{}", flow.remote.port());
    let mut tx = client
        .request(options(&uri), Target::Flow(flow))
        .await
        .unwrap();
    assert_eq!(status(&final_outcome(&mut tx).await), 200);
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_raw_stun_client_gets_an_answer_and_junk_is_dropped() {
    let mut c = config();
    c.udp = vec![any("127.0.0.1")];
    let (server, _server_in) = Endpoint::bind(c).await.unwrap();
    let addr = server.local_addr(Transport::Udp).unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();

    // Junk that looks like STUN (cookie, bad length) and a TURN Allocate: dropped, not answered.
    let mut junk = Message::request(Method::BINDING).encode(Integrity::None, false);
    junk[3] = 0xF0;
    sock.send_to(&junk, addr).await.unwrap();
    let alloc = Message::request(Method::ALLOCATE).encode(Integrity::None, true);
    sock.send_to(&alloc, addr).await.unwrap();

    let req = Message::request(Method::BINDING);
    sock.send_to(&req.encode(Integrity::None, false), addr)
        .await
        .unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from, addr);
    let resp = Message::decode(&buf[..n]).unwrap();
    assert_eq!(resp.class, Class::Success);
    assert_eq!(resp.transaction_id, req.transaction_id);
    assert_eq!(resp.mapped_address(), Some(sock.local_addr().unwrap()));
    assert!(
        resp.attributes
            .iter()
            .any(|a| matches!(a, Attribute::Fingerprint(_)))
    );
    assert_eq!(server.stun_stats().snapshot(), (1, 0, 2));
    server.shutdown().await;
}

#[tokio::test]
async fn an_unanswered_keepalive_times_out() {
    // A plain UDP socket that never answers stands in for a dead NAT mapping.
    let silent = std::sync::Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let counter = {
        let silent = silent.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            let mut n_stun = 0;
            while let Ok(Ok((n, _))) =
                tokio::time::timeout(Duration::from_secs(2), silent.recv_from(&mut buf)).await
            {
                if tandem_proto::stun::is_stun(&buf[..n]) {
                    n_stun += 1;
                }
            }
            n_stun
        })
    };
    let mut c = config();
    c.udp = vec![any("127.0.0.1")];
    let (client, _client_in) = Endpoint::bind(c).await.unwrap();
    let flow = Flow::new(Transport::Udp, silent.local_addr().unwrap());
    let started = std::time::Instant::now();
    let err = client.stun_binding(flow, fast_retry()).await.unwrap_err();
    assert!(matches!(err, NetError::StunTimeout), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(350));
    // Three transmissions reached the silent socket.
    assert_eq!(counter.await.unwrap(), 3);
    // Stream flows are refused.
    let tcp = Flow::new(Transport::Tcp, silent.local_addr().unwrap());
    assert!(matches!(
        client.stun_binding(tcp, fast_retry()).await,
        Err(NetError::Config(_))
    ));
    client.shutdown().await;
}

#[tokio::test]
async fn a_closed_connection_is_a_flow_event() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut c = config();
    c.udp = vec![any("127.0.0.1")];
    let (client, _client_in) = Endpoint::bind(c).await.unwrap();
    let mut events = client.flow_events();
    let flow = Flow::new(Transport::Tcp, addr);
    let _tx = client
        .request(options("sip:127.0.0.1"), Target::Flow(flow))
        .await
        .unwrap();
    let (stream, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .unwrap()
        .unwrap();
    drop(stream);
    let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("no flow event")
        .unwrap();
    let FlowEvent::Closed { flow: closed, .. } = ev else {
        panic!("unexpected {ev:?}");
    };
    assert_eq!(closed, flow);
    client.shutdown().await;
}

#[tokio::test]
async fn raw_datagrams_leave_from_the_sip_socket() {
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut c = config();
    c.udp = vec![any("127.0.0.1")];
    let (client, _client_in) = Endpoint::bind(c).await.unwrap();
    let flow = Flow::new(Transport::Udp, peer.local_addr().unwrap());
    client
        .send_datagram(flow, b"\r\n\r\n".to_vec())
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"\r\n\r\n");
    assert_eq!(from, client.local_addr(Transport::Udp).unwrap());
    let tcp = Flow::new(Transport::Tcp, peer.local_addr().unwrap());
    assert!(matches!(
        client.send_datagram(tcp, vec![0]).await,
        Err(NetError::Config(_))
    ));
    client.shutdown().await;
}
