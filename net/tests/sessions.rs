//! INVITE transactions through the driver (CANCEL, ACK for 2xx) and connection limits.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

mod common;

use std::time::Duration;

use common::*;
use tandem_net::{Endpoint, IncomingEvent, Target, TxOutcome};
use tandem_proto::msg::{HeaderName, Message, Method, Request, Response, Uri};
use tandem_proto::{Flow, Transport};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

fn invite(uri: &str) -> Request {
    let mut r = options(uri);
    r.method = Method::Invite;
    r.headers.set(HeaderName::CSeq, "1 INVITE");
    r.headers
        .push(HeaderName::Contact, "<sip:alice@127.0.0.1>".to_string());
    r
}

async fn pair(
    transport: Transport,
) -> (
    Endpoint,
    tandem_net::Incoming,
    Endpoint,
    tandem_net::Incoming,
    Flow,
) {
    let mut c = config();
    match transport {
        Transport::Udp => c.udp = vec![any("127.0.0.1")],
        _ => c.tcp = vec![any("127.0.0.1")],
    }
    let (server, server_in) = Endpoint::bind(c).await.unwrap();
    let mut c = config();
    c.udp = vec![any("127.0.0.1")];
    let (client, client_in) = Endpoint::bind(c).await.unwrap();
    let flow = Flow::new(transport, server.local_addr(transport).unwrap());
    (server, server_in, client, client_in, flow)
}

#[tokio::test]
async fn cancel_an_invite() {
    for transport in [Transport::Udp, Transport::Tcp] {
        let (server, mut server_in, client, _client_in, flow) = pair(transport).await;
        let mut tx = client
            .request(invite("sip:bob@127.0.0.1"), Target::Flow(flow))
            .await
            .unwrap();
        let (itx, req, _) = next_request(&mut server_in).await;
        assert_eq!(req.method, Method::Invite);
        let mut ringing = Response::for_request(&req, 180);
        ringing
            .headers
            .set(HeaderName::To, "<sip:bob@127.0.0.1>;tag=srv1");
        server.respond(itx, ringing);
        match tokio::time::timeout(Duration::from_secs(5), tx.next())
            .await
            .unwrap()
        {
            Some(TxOutcome::Provisional(r)) => assert_eq!(r.status, 180),
            other => panic!("expected 180, got {other:?}"),
        }

        client.cancel(tx.id());
        let ev = tokio::time::timeout(Duration::from_secs(5), server_in.next())
            .await
            .unwrap()
            .unwrap();
        let IncomingEvent::Cancel {
            tx: ctx,
            invite_tx,
            request,
            ..
        } = ev
        else {
            panic!("expected a CANCEL, got {ev:?}");
        };
        assert_eq!(invite_tx, Some(itx));
        server.respond(ctx, Response::for_request(&request, 200));
        let mut terminated = Response::for_request(&req, 487);
        terminated
            .headers
            .set(HeaderName::To, "<sip:bob@127.0.0.1>;tag=srv1");
        server.respond(itx, terminated);
        assert_eq!(status(&final_outcome(&mut tx).await), 487);
        client.shutdown().await;
        server.shutdown().await;
    }
}

#[tokio::test]
async fn invite_200_and_stateless_ack() {
    let (server, mut server_in, client, _client_in, flow) = pair(Transport::Udp).await;
    let mut tx = client
        .request(invite("sip:bob@127.0.0.1"), Target::Flow(flow))
        .await
        .unwrap();
    let (itx, req, _) = next_request(&mut server_in).await;
    let mut ok = Response::for_request(&req, 200);
    ok.headers
        .set(HeaderName::To, "<sip:bob@127.0.0.1>;tag=srv2");
    ok.headers
        .push(HeaderName::Contact, "<sip:bob@127.0.0.1>".to_string());
    server.respond(itx, ok);
    let TxOutcome::Final(resp) = final_outcome(&mut tx).await else {
        panic!("expected a final response");
    };
    assert_eq!(resp.status, 200);

    // The ACK for a 2xx goes outside the transaction.
    let mut ack = Request::new(Method::Ack, Uri::parse("sip:bob@127.0.0.1").unwrap());
    for name in [HeaderName::From, HeaderName::To, HeaderName::CallId] {
        ack.headers
            .push(name.clone(), resp.headers.get(&name).unwrap().clone());
    }
    ack.headers.push(HeaderName::CSeq, "1 ACK");
    ack.headers.push(
        HeaderName::Via,
        format!(
            "SIP/2.0/UDP {};branch=z9hG4bKack1",
            client.local_addr(Transport::Udp).unwrap()
        ),
    );
    ack.headers.push(HeaderName::MaxForwards, "70");
    client.send_stateless(Message::Request(ack), flow);
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(5), server_in.next())
            .await
            .unwrap()
            .unwrap();
        if let IncomingEvent::Ack { request, .. } = ev {
            assert_eq!(request.method, Method::Ack);
            break;
        }
    }
    client.shutdown().await;
    server.shutdown().await;
}

async fn wait_closed(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let mut c = config();
    c.tcp = vec![any("127.0.0.1")];
    c.idle_timeout = Duration::from_millis(200);
    let (server, _in) = Endpoint::bind(c).await.unwrap();
    let mut s = TcpStream::connect(server.local_addr(Transport::Tcp).unwrap())
        .await
        .unwrap();
    assert!(wait_closed(&mut s, Duration::from_secs(5)).await);
    server.shutdown().await;
}

#[tokio::test]
async fn connection_limit_refuses_extra_connections() {
    let mut c = config();
    c.tcp = vec![any("127.0.0.1")];
    c.max_connections = 1;
    let (server, _in) = Endpoint::bind(c).await.unwrap();
    let addr = server.local_addr(Transport::Tcp).unwrap();
    let mut first = TcpStream::connect(addr).await.unwrap();
    // Let the driver register the first connection.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut second = TcpStream::connect(addr).await.unwrap();
    assert!(wait_closed(&mut second, Duration::from_secs(5)).await);
    assert!(!wait_closed(&mut first, Duration::from_millis(300)).await);
    server.shutdown().await;
}
