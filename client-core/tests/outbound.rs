//! RFC 5626 outbound against an in-process `tandem-lab` on loopback, through a small "NAT" in
//! the test: a UDP forwarder whose outside port can change (a NAT rebinding) or that can drop
//! STUN (a dead keep-alive path), and a TCP forwarder whose connections can be cut.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tandem_client_core::types::{DnsConfig, Transport};
use tandem_client_core::{
    Account, RegEvent, RegReason, Registration, UaConfig, UserAgent, parse_uri,
};
use tandem_labserver::ca::LabCa;
use tandem_labserver::server::LabServer;
use tandem_labserver::store::Store;
use tandem_proto::transaction::TxConfig;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio::time::timeout;

#[path = "../../labserver/tests/lab_fixture/mod.rs"]
mod lab_fixture;

use lab_fixture::{DOMAIN, loopback_config};

struct Lab {
    server: Option<LabServer>,
    udp: SocketAddr,
    tcp: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Lab {
    async fn start() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let mut config = loopback_config(dir.path(), true);
        config.registrar.flow_timer = 1;
        let store = Store::open_in(dir.path()).await.unwrap();
        for u in ["alice", "bob"] {
            store.add_user(u, DOMAIN, &format!("{u}pw")).await.unwrap();
        }
        let ca = LabCa::load_or_create(dir.path(), &[DOMAIN.to_string()]).unwrap();
        let server = LabServer::start(config, store, ca).await.unwrap();
        Lab {
            udp: server.local_addr(Transport::Udp).unwrap(),
            tcp: server.local_addr(Transport::Tcp).unwrap(),
            server: Some(server),
            _dir: dir,
        }
    }

    fn account(&self, user: &str, proxy: &str) -> Account {
        let mut a = Account::new(user, DOMAIN);
        a.password = Some(format!("{user}pw"));
        a.proxy = Some(parse_uri(&format!("sip:{proxy}")).unwrap());
        a
    }

    fn binding(&self, user: &str) -> tandem_labserver::store::Binding {
        let now = tandem_labserver::location::unix_now();
        let mut b = self
            .server
            .as_ref()
            .unwrap()
            .location()
            .lookup(&format!("sip:{user}@{DOMAIN}"), now);
        assert_eq!(b.len(), 1, "one binding for {user}: {b:?}");
        b.remove(0)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.server.take();
    }
}

fn ua_config(transport: Transport) -> UaConfig {
    UaConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        transport,
        dns: DnsConfig::Disabled,
        tx: TxConfig {
            t1: Duration::from_millis(100),
            t2: Duration::from_millis(400),
            t4: Duration::from_millis(500),
            ..TxConfig::default()
        },
        ..UaConfig::default()
    }
}

/// A one-client UDP NAT: the client sends to `inside`; datagrams go on to `upstream` from the
/// current outside socket, answers come back to the client.
struct UdpNat {
    inside: SocketAddr,
    inside_sock: Arc<UdpSocket>,
    client: Arc<Mutex<Option<SocketAddr>>>,
    outside: Arc<Mutex<Arc<UdpSocket>>>,
    drop_stun: Arc<AtomicBool>,
    /// Add a Via below the client's to requests, as a proxy without outbound support would.
    extra_via: Arc<AtomicBool>,
    tasks: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

impl UdpNat {
    async fn start(upstream: SocketAddr) -> UdpNat {
        let inside = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let outside = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
        let nat = UdpNat {
            inside: inside.local_addr().unwrap(),
            inside_sock: inside.clone(),
            client: client.clone(),
            outside: Arc::new(Mutex::new(outside.clone())),
            drop_stun: Arc::new(AtomicBool::new(false)),
            extra_via: Arc::new(AtomicBool::new(false)),
            tasks: Arc::new(std::sync::Mutex::new(Vec::new())),
        };
        let out_task = Self::outside_loop(
            outside,
            inside.clone(),
            client.clone(),
            nat.drop_stun.clone(),
        );
        let (current, drop_stun) = (nat.outside.clone(), nat.drop_stun.clone());
        let extra_via = nat.extra_via.clone();
        let in_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_535];
            loop {
                let Ok((n, from)) = inside.recv_from(&mut buf).await else {
                    return;
                };
                *client.lock().await = Some(from);
                if drop_stun.load(Ordering::Relaxed) && tandem_proto::stun::is_stun(&buf[..n]) {
                    continue;
                }
                let mut data = buf[..n].to_vec();
                if extra_via.load(Ordering::Relaxed) {
                    data = with_second_via(&data);
                }
                let out = current.lock().await.clone();
                let _ = out.send_to(&data, upstream).await;
            }
        });
        nat.tasks.lock().unwrap().extend([in_task, out_task]);
        nat
    }

    fn outside_loop(
        outside: Arc<UdpSocket>,
        inside: Arc<UdpSocket>,
        client: Arc<Mutex<Option<SocketAddr>>>,
        drop_stun: Arc<AtomicBool>,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_535];
            loop {
                let Ok((n, _)) = outside.recv_from(&mut buf).await else {
                    return;
                };
                if drop_stun.load(Ordering::Relaxed) && tandem_proto::stun::is_stun(&buf[..n]) {
                    continue;
                }
                if let Some(c) = *client.lock().await {
                    // The "proxy" takes its Via off responses again.
                    let data = String::from_utf8_lossy(&buf[..n])
                        .replace(PROXY_VIA, "")
                        .into_bytes();
                    let data = if tandem_proto::stun::is_stun(&buf[..n]) {
                        buf[..n].to_vec()
                    } else {
                        data
                    };
                    let _ = inside.send_to(&data, c).await;
                }
            }
        })
    }

    async fn outside_addr(&self) -> SocketAddr {
        self.outside.lock().await.local_addr().unwrap()
    }
}

impl Drop for UdpNat {
    fn drop(&mut self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

/// The Via the UDP NAT's "proxy" mode adds under the client's.
const PROXY_VIA: &str = "Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKproxy\r\n";

/// A SIP request with one more Via under the first (a proxy's); other data unchanged.
fn with_second_via(data: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(data);
    if text.starts_with("SIP/2.0") || tandem_proto::stun::is_stun(data) {
        return data.to_vec();
    }
    let Some(start) = text.find("\r\nVia:") else {
        return data.to_vec();
    };
    let Some(end) = text[start + 2..].find("\r\n") else {
        return data.to_vec();
    };
    let at = start + 2 + end + 2;
    let mut out = text[..at].to_string();
    out.push_str(PROXY_VIA);
    out.push_str(&text[at..]);
    out.into_bytes()
}

async fn next_event(reg: &mut Registration, secs: u64) -> RegEvent {
    timeout(Duration::from_secs(secs), reg.next_event())
        .await
        .expect("no registration event in time")
        .expect("registration events ended")
}

async fn options_reach(from: &UserAgent, account: &Account, user: &str) -> u16 {
    let target = parse_uri(&format!("sip:{user}@{DOMAIN}")).unwrap();
    match timeout(Duration::from_secs(10), from.options_as(account, target)).await {
        Ok(Ok(r)) => r.status,
        Ok(Err(e)) => panic!("OPTIONS failed: {e}"),
        Err(_) => panic!("OPTIONS took too long"),
    }
}

#[tokio::test]
async fn a_nat_rebinding_is_noticed_by_the_keepalive_and_calls_follow_the_new_mapping() {
    let lab = Lab::start().await;
    let nat = UdpNat::start(lab.udp).await;
    let (bob, _bob_events) = UserAgent::new(ua_config(Transport::Udp)).await.unwrap();
    let bob_account = lab.account("bob", &nat.inside.to_string());
    let mut reg = bob.register(&bob_account).await.unwrap();
    let first = nat.outside_addr().await;
    assert_eq!(
        reg.mapped(),
        Some(first),
        "the Via rport/received names the NAT"
    );

    let b = lab.binding("bob");
    assert!(b.is_nated());
    assert!(b.has_feature("+sip.ice"));
    assert_eq!(b.reg_id, Some(1));
    assert!(
        b.instance
            .as_deref()
            .is_some_and(|i| i.contains("urn:uuid:"))
    );
    assert!(b.contact.ends_with(";ob"), "{}", b.contact);
    assert_eq!(b.flow_addr().unwrap().remote, first);

    let (alice, _alice_events) = UserAgent::new(ua_config(Transport::Udp)).await.unwrap();
    let alice_account = lab.account("alice", &lab.udp.to_string());
    let _alice_reg = alice.register(&alice_account).await.unwrap();
    assert_eq!(options_reach(&alice, &alice_account, "bob").await, 200);

    // The NAT's mapping changes: the next keep-alive (Flow-Timer 1 s) sees it.
    let second = rebind_outside(&nat).await;
    assert_ne!(first, second);
    let mut seen_keepalive = false;
    let reason = loop {
        match next_event(&mut reg, 10).await {
            RegEvent::KeepaliveMapped { mapped } => {
                assert_eq!(mapped, second);
                seen_keepalive = true;
            }
            RegEvent::Reregistered { reason, mapped, .. } => {
                assert_eq!(mapped, Some(second));
                break reason;
            }
            RegEvent::Refreshed { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(seen_keepalive);
    assert_eq!(reason, RegReason::MappingChanged);
    assert_eq!(lab.binding("bob").flow_addr().unwrap().remote, second);
    assert_eq!(options_reach(&alice, &alice_account, "bob").await, 200);
}

/// Replaces the NAT's outside socket with a new one (a new public port): answers to the old
/// mapping are lost from now on, the new one forwards to the client.
async fn rebind_outside(nat: &UdpNat) -> SocketAddr {
    let fresh = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = fresh.local_addr().unwrap();
    *nat.outside.lock().await = fresh.clone();
    let task = UdpNat::outside_loop(
        fresh,
        nat.inside_sock.clone(),
        nat.client.clone(),
        nat.drop_stun.clone(),
    );
    let mut tasks = nat.tasks.lock().unwrap();
    // tasks[1] reads the old outside socket: stopping it closes that socket.
    tasks.remove(1).abort();
    tasks.push(task);
    addr
}

#[tokio::test]
async fn unanswered_keepalives_fail_the_flow_and_the_ua_registers_again() {
    let lab = Lab::start().await;
    let nat = UdpNat::start(lab.udp).await;
    let (bob, _bob_events) = UserAgent::new(ua_config(Transport::Udp)).await.unwrap();
    let mut reg = bob
        .register(&lab.account("bob", &nat.inside.to_string()))
        .await
        .unwrap();
    // One keep-alive answered (so STUN is known to work on this flow), then STUN is dropped.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    nat.drop_stun.store(true, Ordering::Relaxed);
    let reason = loop {
        match next_event(&mut reg, 25).await {
            RegEvent::Reregistered { reason, .. } => break reason,
            RegEvent::Refreshed { .. } | RegEvent::KeepaliveMapped { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(reason, RegReason::FlowFailed);
}

/// A TCP forwarder to `upstream` whose live connections can be cut.
struct TcpNat {
    inside: SocketAddr,
    conns: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl TcpNat {
    async fn start(upstream: SocketAddr) -> TcpNat {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let inside = listener.local_addr().unwrap();
        let conns: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let list = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    let _ = client.shutdown().await;
                });
                list.lock().unwrap().push(task);
            }
        });
        TcpNat {
            inside,
            conns,
            accept,
        }
    }

    /// Cuts every connection (both sides see them close).
    fn cut(&self) -> usize {
        let mut conns = self.conns.lock().unwrap();
        let n = conns.len();
        for c in conns.drain(..) {
            c.abort();
        }
        n
    }
}

impl Drop for TcpNat {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

#[tokio::test]
async fn a_closed_tcp_flow_is_replaced_at_once() {
    let lab = Lab::start().await;
    let nat = TcpNat::start(lab.tcp).await;
    let (bob, _bob_events) = UserAgent::new(ua_config(Transport::Tcp)).await.unwrap();
    let mut account = lab.account("bob", &format!("{};transport=tcp", nat.inside));
    account.transport = Transport::Tcp;
    let mut reg = bob.register(&account).await.unwrap();
    let first = reg.flow().unwrap();
    assert_eq!(first.transport, tandem_proto::Transport::Tcp);
    let before = lab.binding("bob").flow_addr().unwrap();
    assert_eq!(nat.cut(), 1);
    let started = std::time::Instant::now();
    let RegEvent::Reregistered { reason, .. } = next_event(&mut reg, 10).await else {
        panic!("expected a re-registration");
    };
    assert_eq!(reason, RegReason::FlowFailed);
    assert!(started.elapsed() < Duration::from_secs(5));
    // A new connection, so a new source port at the registrar.
    let after = lab.binding("bob").flow_addr().unwrap();
    assert_ne!(before, after);
}

#[tokio::test]
async fn a_network_change_reregisters() {
    let lab = Lab::start().await;
    let (bob, _bob_events) = UserAgent::new(ua_config(Transport::Udp)).await.unwrap();
    let mut reg = bob
        .register(&lab.account("bob", &lab.udp.to_string()))
        .await
        .unwrap();
    let mut changes = bob.network_changes();
    bob.notify_network_change();
    timeout(Duration::from_secs(2), changes.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(changes.borrow().generation, 1);
    let reason = loop {
        match next_event(&mut reg, 10).await {
            RegEvent::Reregistered { reason, .. } => break reason,
            RegEvent::Refreshed { .. } | RegEvent::KeepaliveMapped { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(reason, RegReason::AddressChanged);
}

#[tokio::test]
async fn a_439_from_the_registrar_falls_back_to_a_plain_registration() {
    let lab = Lab::start().await;
    let nat = UdpNat::start(lab.udp).await;
    nat.extra_via.store(true, Ordering::Relaxed);
    let (bob, _bob_events) = UserAgent::new(ua_config(Transport::Udp)).await.unwrap();
    let reg = bob
        .register(&lab.account("bob", &nat.inside.to_string()))
        .await
        .unwrap();
    assert!(!reg.contact().has_param("ob"), "{}", reg.contact());
    let b = lab.binding("bob");
    assert_eq!(b.reg_id, None);
    assert!(!b.contact.contains(";ob"));
    // Still ICE-capable.
    assert!(b.has_feature("+sip.ice"));
}
