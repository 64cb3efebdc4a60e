//! Registration against the in-test registrar over loopback UDP and TCP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod peer;

use std::time::Duration;

use peer::{Peer, PeerConfig, PeerEvent, fast_tx};
use tandem_client_core::types::{DnsConfig, Transport};
use tandem_client_core::{Account, RegEvent, UaConfig, UaError, UaEvents, UserAgent};
use tandem_proto::auth::{Algorithm, Credentials};
use tandem_proto::msg::HeaderName;

async fn ua(transport: Transport) -> (UserAgent, UaEvents) {
    let config = UaConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        transport,
        dns: DnsConfig::Disabled,
        tx: fast_tx(),
        seed: 42,
        ..UaConfig::default()
    };
    UserAgent::new(config).await.unwrap()
}

fn account(peer: &Peer, password: Option<&str>) -> Account {
    let mut a = Account::new("alice", "tandem.test");
    a.password = password.map(str::to_string);
    a.proxy = Some(peer.uri(None));
    a.transport = peer.transport;
    a.expires = 600;
    a
}

fn register_status(ev: &PeerEvent) -> (u16, u32, String, Option<Credentials>) {
    match ev {
        PeerEvent::Register { request, status } => {
            let cseq = request.headers.cseq().unwrap().seq;
            let call_id = request.headers.call_id().unwrap().to_string();
            let creds = request
                .headers
                .get_str(&HeaderName::Authorization)
                .map(|v| Credentials::parse(v).unwrap());
            (*status, cseq, call_id, creds)
        }
        other => panic!("expected a REGISTER, got {other:?}"),
    }
}

async fn register_roundtrip(transport: Transport, algorithms: Vec<Algorithm>, expect: Algorithm) {
    let mut peer = Peer::start(
        transport,
        PeerConfig {
            algorithms,
            ..PeerConfig::default()
        },
    )
    .await;
    let (ua, _events) = ua(transport).await;
    let acct = account(&peer, Some("secret"));
    let reg = ua.register(&acct).await.unwrap();
    assert_eq!(reg.expires(), 600);
    assert_eq!(reg.aor().to_string(), "sip:alice@tandem.test");

    let (s1, c1, id1, cr1) = register_status(&peer.next_event(5).await);
    assert_eq!((s1, c1), (401, 1));
    assert!(cr1.is_none());
    let (s2, c2, id2, cr2) = register_status(&peer.next_event(5).await);
    assert_eq!((s2, c2), (200, 2));
    assert_eq!(id1, id2);
    let creds = cr2.unwrap();
    assert_eq!(creds.algorithm, expect);
    assert_eq!(creds.username, "alice");
    assert_eq!(creds.uri, "sip:tandem.test");

    let (bound, granted) = peer.binding("sip:alice@tandem.test").unwrap();
    assert_eq!(granted, 600);
    let ours = ua.contact_uri(Some("alice"));
    assert!(bound.equivalent(&ours), "{bound} vs {ours}");
    assert_eq!(bound.transport_param().unwrap_or(Transport::Udp), transport);

    reg.unregister().await.unwrap();
    let (s3, c3, id3, _) = register_status(&peer.next_event(5).await);
    assert_eq!(s3, 200);
    assert!(c3 > 2);
    assert_eq!(id3, id1);
    assert!(peer.binding("sip:alice@tandem.test").is_none());
    ua.shutdown().await;
}

#[tokio::test]
async fn register_md5_over_udp() {
    register_roundtrip(Transport::Udp, vec![Algorithm::Md5], Algorithm::Md5).await;
}

#[tokio::test]
async fn register_sha256_over_tcp() {
    register_roundtrip(
        Transport::Tcp,
        vec![Algorithm::Sha256, Algorithm::Md5],
        Algorithm::Sha256,
    )
    .await;
}

#[tokio::test]
async fn register_sha256_over_udp() {
    register_roundtrip(Transport::Udp, vec![Algorithm::Sha256], Algorithm::Sha256).await;
}

#[tokio::test]
async fn comma_joined_challenges_pick_the_first_supported() {
    let mut peer = Peer::start(
        Transport::Udp,
        PeerConfig {
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            joined_challenges: true,
            ..PeerConfig::default()
        },
    )
    .await;
    let (ua, _events) = ua(Transport::Udp).await;
    let reg = ua.register(&account(&peer, Some("secret"))).await.unwrap();
    assert_eq!(register_status(&peer.next_event(5).await).0, 401);
    let (status, _, _, creds) = register_status(&peer.next_event(5).await);
    assert_eq!(status, 200);
    assert_eq!(creds.unwrap().algorithm, Algorithm::Sha256);
    reg.unregister().await.unwrap();
    ua.shutdown().await;
}

#[tokio::test]
async fn stale_nonce_is_retried_silently() {
    let mut peer = Peer::start(
        Transport::Udp,
        PeerConfig {
            stale_once: true,
            ..PeerConfig::default()
        },
    )
    .await;
    let (ua, _events) = ua(Transport::Udp).await;
    let reg = ua.register(&account(&peer, Some("secret"))).await.unwrap();
    let statuses: Vec<u16> = [
        peer.next_event(5).await,
        peer.next_event(5).await,
        peer.next_event(5).await,
    ]
    .iter()
    .map(|e| register_status(e).0)
    .collect();
    assert_eq!(statuses, vec![401, 401, 200]);
    drop(reg);
    ua.shutdown().await;
}

#[tokio::test]
async fn wrong_password_is_auth_failed() {
    let mut peer = Peer::start(Transport::Udp, PeerConfig::default()).await;
    let (ua, _events) = ua(Transport::Udp).await;
    let err = ua
        .register(&account(&peer, Some("wrong")))
        .await
        .unwrap_err();
    assert!(matches!(err, UaError::AuthFailed { .. }), "{err:?}");
    // Exactly two attempts: the unauthenticated one and one with credentials.
    assert_eq!(register_status(&peer.next_event(5).await).0, 401);
    assert_eq!(register_status(&peer.next_event(5).await).0, 401);
    assert!(peer.binding("sip:alice@tandem.test").is_none());
    ua.shutdown().await;
}

#[tokio::test]
async fn missing_password_is_auth_failed() {
    let peer = Peer::start(Transport::Udp, PeerConfig::default()).await;
    let (ua, _events) = ua(Transport::Udp).await;
    let err = ua.register(&account(&peer, None)).await.unwrap_err();
    assert!(matches!(err, UaError::AuthFailed { .. }), "{err:?}");
    ua.shutdown().await;
}

#[tokio::test]
async fn interval_too_brief_retries_with_min_expires() {
    let mut peer = Peer::start(
        Transport::Udp,
        PeerConfig {
            algorithms: vec![],
            min_expires: Some(1200),
            ..PeerConfig::default()
        },
    )
    .await;
    let (ua, _events) = ua(Transport::Udp).await;
    let reg = ua.register(&account(&peer, None)).await.unwrap();
    assert_eq!(reg.expires(), 1200);
    assert_eq!(register_status(&peer.next_event(5).await).0, 423);
    match peer.next_event(5).await {
        PeerEvent::Register { request, status } => {
            assert_eq!(status, 200);
            assert_eq!(request.headers.expires().unwrap(), Some(1200));
        }
        other => panic!("{other:?}"),
    }
    reg.unregister().await.unwrap();
    ua.shutdown().await;
}

#[tokio::test]
async fn refreshes_before_expiry_with_same_call_id() {
    let mut peer = Peer::start(
        Transport::Tcp,
        PeerConfig {
            max_expires: 2,
            ..PeerConfig::default()
        },
    )
    .await;
    let (ua, _events) = ua(Transport::Tcp).await;
    let mut reg = ua.register(&account(&peer, Some("secret"))).await.unwrap();
    assert_eq!(reg.expires(), 2);
    let (_, _, call_id, _) = register_status(&peer.next_event(5).await);
    let (_, first_ok_cseq, _, _) = register_status(&peer.next_event(5).await);

    // Two refreshes, each within the 2 s the binding lives.
    for _ in 0..2 {
        let ev = tokio::time::timeout(Duration::from_millis(2500), reg.next_event())
            .await
            .expect("no refresh before expiry")
            .unwrap();
        assert_eq!(ev, RegEvent::Refreshed { expires: 2 });
    }
    let mut last = first_ok_cseq;
    let mut refreshes = 0;
    while let Ok(ev) = tokio::time::timeout(Duration::from_millis(100), async {
        peer.next_event(1).await
    })
    .await
    {
        let (status, cseq, id, _) = register_status(&ev);
        assert_eq!(id, call_id);
        assert!(cseq > last, "CSeq must increase: {cseq} after {last}");
        last = cseq;
        if status == 200 {
            refreshes += 1;
        }
    }
    assert_eq!(refreshes, 2);
    assert!(peer.binding("sip:alice@tandem.test").is_some());
    reg.unregister().await.unwrap();
    assert!(peer.binding("sip:alice@tandem.test").is_none());
    ua.shutdown().await;
}

#[tokio::test]
async fn foreign_contact_is_registered() {
    let peer = Peer::start(
        Transport::Udp,
        PeerConfig {
            algorithms: vec![],
            ..PeerConfig::default()
        },
    )
    .await;
    let (ua, _events) = ua(Transport::Udp).await;
    let foreign = tandem_client_core::parse_uri("sip:sipp@127.0.0.1:5999").unwrap();
    let reg = ua
        .register_with(
            &account(&peer, None),
            tandem_client_core::RegisterOptions {
                contact: Some(foreign.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (bound, _) = peer.binding("sip:alice@tandem.test").unwrap();
    assert!(bound.equivalent(&foreign));
    reg.unregister().await.unwrap();
    ua.shutdown().await;
}

#[tokio::test]
async fn options_gets_200() {
    let mut peer = Peer::start(Transport::Udp, PeerConfig::default()).await;
    let (ua, _events) = ua(Transport::Udp).await;
    let resp = ua.options(peer.uri(None)).await.unwrap();
    assert_eq!(resp.status, 200);
    assert!(matches!(
        peer.next_event(5).await,
        PeerEvent::Options { .. }
    ));
    ua.shutdown().await;
}

#[tokio::test]
async fn unreachable_registrar_times_out() {
    // Bind a UDP socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let (ua, _events) = ua(Transport::Udp).await;
    let mut acct = Account::new("alice", "tandem.test");
    acct.proxy = Some(tandem_client_core::parse_proxy(&addr.to_string()).unwrap());
    let err = ua.register(&acct).await.unwrap_err();
    assert_eq!(err, UaError::Timeout);
    ua.shutdown().await;
}
