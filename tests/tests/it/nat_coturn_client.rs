//! NAT acceptance (issue 4): Tandem's TURN client (`client-core::nat::turn`) against coturn's
//! `turnserver` over UDP, TCP and TLS, and against the lab's TURN server: allocation, permission,
//! Send/Data indications and ChannelData to a `turnutils_peer` echo peer, refresh, stale nonces,
//! two allocations relaying to each other, release, and a wrong password refused with a clear
//! error. Also STUN Binding discovery (`nat::stun`) against both servers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure here is a test failure

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tandem_client_core::nat::NatError;
use tandem_client_core::nat::stun;
use tandem_client_core::nat::turn::{
    RelayFamily, TurnClient, TurnConfig, TurnOptions, TurnTransport, tls_client_config,
};
use tandem_tests::coturn::{Coturn, CoturnOptions, TurnPeer, test_tls_cert};
use tandem_tests::{LabOptions, LabServer, TestDir};

use crate::common::ok;

/// How long one echo may take before the payload is sent again (lossy only under heavy load).
const ECHO_WAIT: Duration = Duration::from_secs(2);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn options() -> TurnOptions {
    TurnOptions {
        timeout: Duration::from_secs(15),
        ..TurnOptions::default()
    }
}

/// Sends `payload` to `peer` through the relay until the echo comes back (at most 5 tries) and
/// checks it came from `peer` unchanged.
async fn echo(client: &TurnClient, peer: SocketAddr, payload: &[u8]) {
    for _ in 0..5 {
        client.send_to(payload, peer).await.unwrap();
        let until = tokio::time::Instant::now() + ECHO_WAIT;
        while let Ok(r) = tokio::time::timeout_at(until, client.recv_from()).await {
            let (data, from) = r.unwrap();
            if &data[..] == payload {
                assert_eq!(from, peer, "echo from the wrong peer");
                return;
            }
        }
    }
    panic!(
        "no echo of {:?} from {peer} through {client:?} (permission {}, channel {:?}, dropped {}, gone {:?})",
        String::from_utf8_lossy(payload),
        client.has_permission(peer.ip()),
        client.channel(peer),
        client.dropped(),
        client.gone_reason(),
    );
}

/// The whole client scenario against one server and transport.
async fn scenario(cfg: &TurnConfig, opts: TurnOptions, peer: SocketAddr) {
    let what = cfg.uri.to_string();
    let client = TurnClient::allocate(cfg, opts)
        .await
        .unwrap_or_else(|e| panic!("{what}: allocation failed: {e}"));
    assert_eq!(client.transport(), cfg.uri.transport);
    let relayed = client.relayed_addr();
    assert!(
        relayed.is_ipv4() && relayed.port() != 0,
        "{what}: {relayed}"
    );
    assert!(!relayed.ip().is_unspecified(), "{what}: {relayed}");
    assert_eq!(
        client.mapped_addr(),
        Some(client.local_addr()),
        "{what}: on loopback the server sees our own address"
    );
    assert!(client.lifetime() > Duration::ZERO);

    // Send indications before any permission: the client requests one itself.
    echo(&client, peer, format!("{what} indication 0").as_bytes()).await;
    assert!(client.has_permission(peer.ip()));
    // An explicit permission (a refresh of the same one).
    client.create_permission(peer.ip()).await.unwrap();
    for i in 1..4 {
        echo(&client, peer, format!("{what} indication {i}").as_bytes()).await;
    }
    assert_eq!(client.channel(peer), None);

    // A channel: data now goes as ChannelData both ways.
    let channel = client.channel_bind(peer).await.unwrap();
    assert!((0x4000..=0x4FFF).contains(&channel), "{channel:#x}");
    assert_eq!(client.channel(peer), Some(channel));
    for i in 0..4 {
        echo(&client, peer, format!("{what} channel {i}").as_bytes()).await;
    }
    // Binding the same peer again refreshes the same channel.
    assert_eq!(client.channel_bind(peer).await.unwrap(), channel);
    // A large payload through the channel.
    let big: Vec<u8> = (0..1200u32).map(|i| (i % 251) as u8).collect();
    echo(&client, peer, &big).await;

    // Refresh, then data still flows.
    let lifetime = client.refresh().await.unwrap();
    assert!(lifetime > Duration::ZERO, "{what}");
    echo(&client, peer, format!("{what} after refresh").as_bytes()).await;

    // Release: Refresh with lifetime 0 is answered, then sending is refused.
    client.close().await.unwrap();
    assert!(!client.is_allocated());
    assert!(matches!(
        client.send_to(b"late", peer).await,
        Err(NatError::Closed(_))
    ));
}

/// A wrong password is refused with an error that says so.
async fn wrong_password(cfg: &TurnConfig, opts: TurnOptions) {
    let mut bad = cfg.clone();
    bad.password = "not-the-password".into();
    let err = TurnClient::allocate(&bad, opts).await.unwrap_err();
    assert!(err.is_wrong_password(), "{}: {err:?}", cfg.uri);
    assert!(err.to_string().contains("wrong password"), "{err}");
}

/// Two allocations on one server send to each other's relayed addresses (what two clients
/// behind symmetric NATs do).
async fn relay_to_relay(cfg: &TurnConfig, opts: TurnOptions) {
    let a = TurnClient::allocate(cfg, opts.clone()).await.unwrap();
    let b = TurnClient::allocate(cfg, opts).await.unwrap();
    let (ra, rb) = (a.relayed_addr(), b.relayed_addr());
    assert_ne!(ra, rb);
    a.create_permission(rb.ip()).await.unwrap();
    b.create_permission(ra.ip()).await.unwrap();
    a.channel_bind(rb).await.unwrap();
    for i in 0..5 {
        let msg = format!("a to b {i}");
        a.send_to(msg.as_bytes(), rb).await.unwrap();
        let (data, from) = tokio::time::timeout(ECHO_WAIT * 3, b.recv_from())
            .await
            .expect("relay to relay")
            .unwrap();
        assert_eq!(&data[..], msg.as_bytes());
        assert_eq!(from, ra);
        let back = format!("b to a {i}");
        b.send_to(back.as_bytes(), ra).await.unwrap();
        let (data, from) = tokio::time::timeout(ECHO_WAIT * 3, a.recv_from())
            .await
            .expect("relay to relay back")
            .unwrap();
        assert_eq!(&data[..], back.as_bytes());
        assert_eq!(from, rb);
    }
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// The ICE-agent way: the caller owns a UDP socket, reads it, answers its own traffic (here: a
/// STUN Binding discovery on the same socket, run sans-IO) and feeds the TURN server's
/// datagrams to the client.
async fn shared_socket(cfg: &TurnConfig, peer: SocketAddr) {
    let sock = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let server = cfg.uri.host.parse::<std::net::IpAddr>().unwrap();
    let server = SocketAddr::new(server, cfg.uri.port);
    let slot: Arc<std::sync::OnceLock<Arc<TurnClient>>> = Arc::new(std::sync::OnceLock::new());
    let (data_tx, mut data_rx) = tokio::sync::mpsc::channel::<(Vec<u8>, SocketAddr)>(64);
    let (stun_tx, mut stun_rx) = tokio::sync::mpsc::channel::<(Vec<u8>, SocketAddr)>(64);
    let reader = {
        let (sock, slot) = (sock.clone(), slot.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let d = &buf[..n];
                // Demultiplex: TURN traffic to the client once it exists, the rest (here: the
                // STUN Binding answer) to the STUN side.
                match slot.get() {
                    Some(c) if c.is_for_me(d, from) => {
                        if let Some((data, peer)) = c.handle_incoming(d, from) {
                            let _ = data_tx.try_send((data.to_vec(), peer));
                        }
                    }
                    _ => {
                        let _ = stun_tx.try_send((d.to_vec(), from));
                    }
                }
            }
        })
    };
    // STUN Binding on the shared socket, sans-IO.
    let mut tx = stun::BindingTransaction::with_rto(
        server,
        Duration::from_millis(100),
        std::time::Instant::now(),
    );
    let mapped = loop {
        let now = std::time::Instant::now();
        assert!(tx.handle_timeout(now).is_none(), "STUN binding timed out");
        if let Some(req) = tx.poll_transmit(now) {
            sock.send_to(req, server).await.unwrap();
        }
        let wait = tx
            .poll_timeout()
            .unwrap()
            .saturating_duration_since(std::time::Instant::now());
        if let Ok(Some((d, from))) = tokio::time::timeout(wait, stun_rx.recv()).await {
            match tx.handle_response(&d, from) {
                stun::BindingOutcome::Mapped(a) => break a,
                stun::BindingOutcome::NotMine => {}
                stun::BindingOutcome::Failed(e) => panic!("{e}"),
            }
        }
    };
    assert_eq!(mapped, sock.local_addr().unwrap());
    // The client on the shared socket: made reachable from the reader, then started.
    let client = Arc::new(
        TurnClient::with_socket(sock.clone(), cfg, options())
            .await
            .unwrap(),
    );
    assert!(slot.set(client.clone()).is_ok());
    client.start().await.unwrap();
    assert!(client.is_allocated());
    assert_eq!(client.mapped_addr(), Some(mapped));
    assert!(
        client.recv_from().await.is_err(),
        "data comes from handle_incoming"
    );
    client.channel_bind(peer).await.unwrap();
    for i in 0..3 {
        let msg = format!("shared socket {i}");
        let mut got = false;
        for _ in 0..5 {
            client.send_to(msg.as_bytes(), peer).await.unwrap();
            if let Ok(Some((d, from))) = tokio::time::timeout(ECHO_WAIT, data_rx.recv()).await {
                assert_eq!((d.as_slice(), from), (msg.as_bytes(), peer));
                got = true;
                break;
            }
        }
        assert!(got, "no echo through the shared socket");
    }
    client.close().await.unwrap();
    reader.abort();
}

async fn stun_binding(server: SocketAddr) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mapped = stun::binding(&sock, server, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(mapped, sock.local_addr().unwrap());
}

#[test]
fn turn_client_against_coturn() {
    let dir = ok(TestDir::new("nat-coturn-client"));
    let cert = ok(test_tls_cert(dir.path()));
    let coturn = ok(Coturn::start(
        &CoturnOptions {
            tls: Some((cert.cert.clone(), cert.key.clone())),
            ..CoturnOptions::default()
        },
        dir.path(),
    ));
    let peer = ok(TurnPeer::start(dir.path()));
    let addr = coturn.addr();
    let tls_addr = coturn.tls_addr().unwrap();
    runtime().block_on(async {
        stun_binding(addr).await;
        let udp = TurnConfig::new(&format!("turn:{addr}"), "alice", "secret").unwrap();
        assert_eq!(udp.uri.transport, TurnTransport::Udp);
        scenario(&udp, options(), peer.addr()).await;
        let tcp =
            TurnConfig::new(&format!("turn:{addr}?transport=tcp"), "alice", "secret").unwrap();
        assert_eq!(tcp.uri.transport, TurnTransport::Tcp);
        scenario(&tcp, options(), peer.addr()).await;
        let tls = TurnConfig::new(&format!("turns:{tls_addr}"), "alice", "secret").unwrap();
        let tls_opts = TurnOptions {
            tls: Some(tls_client_config(Some(&cert.ca)).unwrap()),
            ..options()
        };
        scenario(&tls, tls_opts.clone(), peer.addr()).await;
        // TLS without trusting the test CA fails the handshake, clearly.
        let untrusted = TurnClient::allocate(&tls, options()).await.unwrap_err();
        assert!(matches!(untrusted, NatError::Tls { .. }), "{untrusted:?}");
        wrong_password(&udp, options()).await;
        wrong_password(&tcp, options()).await;
        wrong_password(&tls, tls_opts).await;
        relay_to_relay(&udp, options()).await;
        shared_socket(&udp, peer.addr()).await;
    });
    drop(coturn);
}

fn lab(dir: &TestDir) -> LabServer {
    let opts = LabOptions {
        domain: "tandem.lab".into(),
        tls: false,
        // Short nonces: every later request of the scenario meets a 438 Stale Nonce first.
        extra_toml: "\n[turn]\nport = 0\ntls_port = 0\nallow_loopback_peers = true\nnonce_lifetime_secs = 1\nrelay_ipv6 = \"::1\"\n"
            .into(),
        ..LabOptions::default()
    }
    .user("alice", "secret");
    ok(LabServer::start(opts, dir.path()))
}

#[test]
fn turn_client_against_lab_turn() {
    let dir = ok(TestDir::new("nat-coturn-client-lab"));
    let lab = lab(&dir);
    let turn = lab.service("turn").expect("the ready line has turn=");
    let turns = lab.service("turns");
    let peer = ok(TurnPeer::start(dir.path()));
    runtime().block_on(async {
        stun_binding(turn).await;
        let udp = TurnConfig::new(&format!("turn:{turn}"), "alice", "secret").unwrap();
        scenario(&udp, options(), peer.addr()).await;
        let tcp =
            TurnConfig::new(&format!("turn:{turn}?transport=tcp"), "alice", "secret").unwrap();
        scenario(&tcp, options(), peer.addr()).await;
        if let Some(turns) = turns {
            let tls = TurnConfig::new(&format!("turns:{turns}"), "alice", "secret").unwrap();
            let opts = TurnOptions {
                tls: Some(tls_client_config(Some(&lab.ca_cert())).unwrap()),
                ..options()
            };
            scenario(&tls, opts, peer.addr()).await;
        }
        // Nonces live 1 s: after 2.1 s idle every request is answered 438 first, and the
        // client re-signs with the new nonce.
        let client = TurnClient::allocate(&udp, options()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2100)).await;
        client.create_permission(peer.addr().ip()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2100)).await;
        client.channel_bind(peer.addr()).await.unwrap();
        echo(&client, peer.addr(), b"after stale nonces").await;
        tokio::time::sleep(Duration::from_millis(2100)).await;
        client.close().await.unwrap();
        wrong_password(&udp, options()).await;
        wrong_password(&tcp, options()).await;
        relay_to_relay(&udp, options()).await;
        ipv6_relays(&udp, peer.addr()).await;
    });
}

/// A UDP echo peer on `[::1]`, stopped when the returned task is aborted.
async fn echo_peer_v6() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let sock = tokio::net::UdpSocket::bind("[::1]:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let _ = sock.send_to(&buf[..n], from).await;
        }
    });
    (addr, task)
}

/// IPv6 relayed addresses from the lab (RFC 8656 §7.2): an IPv6-only allocation, and a
/// dual-stack one that relays to an IPv4 and an IPv6 peer.
async fn ipv6_relays(cfg: &TurnConfig, peer4: SocketAddr) {
    let (peer6, echo_task) = echo_peer_v6().await;
    let v6 = TurnClient::allocate(
        cfg,
        TurnOptions {
            family: RelayFamily::V6,
            ..options()
        },
    )
    .await
    .unwrap();
    assert_eq!(v6.relayed_addrs().len(), 1);
    assert!(v6.relayed_addr().is_ipv6(), "{v6:?}");
    // An IPv4 peer has no relayed address of its family in this allocation.
    assert!(v6.create_permission(peer4.ip()).await.is_err());
    v6.channel_bind(peer6).await.unwrap();
    echo(&v6, peer6, b"over an IPv6 relay").await;
    v6.close().await.unwrap();

    let dual = TurnClient::allocate(
        cfg,
        TurnOptions {
            family: RelayFamily::Dual,
            ..options()
        },
    )
    .await
    .unwrap();
    let relayed = dual.relayed_addrs();
    assert_eq!(relayed.len(), 2, "{relayed:?}");
    assert!(relayed[0].is_ipv4() && relayed[1].is_ipv6(), "{relayed:?}");
    echo(&dual, peer4, b"dual: to the IPv4 peer").await;
    dual.channel_bind(peer6).await.unwrap();
    echo(&dual, peer6, b"dual: to the IPv6 peer").await;
    dual.close().await.unwrap();
    echo_task.abort();
}
