//! The STUN/TURN server in-process, driven by clients built on `proto::stun`: TURN over TLS with
//! ChannelData both ways and the allocation freed when the connection closes, REST credentials,
//! quotas, lifetime caps and the drop counters for bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem_labserver::turn::{TurnConfig, TurnServer};
use tandem_proto::stun::channel::Frame;
use tandem_proto::stun::credentials::ChallengeOutcome;
use tandem_proto::stun::{
    Attribute, ChannelData, Class, Integrity, LongTermClient, Message, Method, StreamFramer,
    TRANSPORT_UDP, TransactionId, long_term_key, rest_password,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

mod lab_fixture;

use lab_fixture::{DOMAIN, Parts};

const STEP: Duration = Duration::from_secs(5);

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Fixture {
    server: TurnServer,
    tls_client: Arc<rustls::ClientConfig>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn start(tweak: impl FnOnce(&mut TurnConfig)) -> Fixture {
        let parts = Parts::new(&[("alice", "secret")], true, [7; 32], |c| {
            c.turn.allow_loopback_peers = true;
            tweak(&mut c.turn)
        })
        .await;
        let server = TurnServer::start(&parts.config, &parts.store, &parts.ca, parts.authn)
            .await
            .unwrap()
            .expect("enabled by default");
        Fixture {
            server,
            tls_client: parts.ca.client_config().unwrap(),
            _dir: parts.dir,
        }
    }

    fn addr(&self, key: &str) -> SocketAddr {
        self.server
            .ready_fields()
            .into_iter()
            .find(|(k, _)| k == key)
            .unwrap()
            .1
    }

    async fn udp(&self, user: &str, password: &str) -> Client {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        Client {
            conn: Conn::Udp(sock, self.addr("turn")),
            creds: LongTermClient::new(user, password),
        }
    }

    async fn tls(&self, user: &str, password: &str) -> Client {
        let tcp = TcpStream::connect(self.addr("turns")).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls_client));
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let tls = connector.connect(name, tcp).await.unwrap();
        Client {
            conn: Conn::Stream(Box::new(tls), StreamFramer::new()),
            creds: LongTermClient::new(user, password),
        }
    }
}

enum Conn {
    Udp(UdpSocket, SocketAddr),
    Stream(Box<dyn Io>, StreamFramer),
}

struct Client {
    conn: Conn,
    creds: LongTermClient,
}

impl Client {
    async fn send(&mut self, bytes: &[u8]) {
        match &mut self.conn {
            Conn::Udp(s, to) => {
                s.send_to(bytes, *to).await.unwrap();
            }
            Conn::Stream(io, _) => io.write_all(bytes).await.unwrap(),
        }
    }

    /// The next datagram or frame, or `None` after `wait`.
    async fn recv(&mut self, wait: Duration) -> Option<Vec<u8>> {
        let fut = async {
            match &mut self.conn {
                Conn::Udp(s, _) => {
                    let mut buf = vec![0u8; 65536];
                    let (n, _) = s.recv_from(&mut buf).await.ok()?;
                    buf.truncate(n);
                    Some(buf)
                }
                Conn::Stream(io, framer) => loop {
                    match framer.pop().ok()? {
                        Some(Frame::Stun(b)) | Some(Frame::ChannelData(b)) => {
                            return Some(b.to_vec());
                        }
                        None => {}
                    }
                    let mut buf = [0u8; 4096];
                    let n = io.read(&mut buf).await.ok()?;
                    if n == 0 {
                        return None;
                    }
                    framer.push(&buf[..n]);
                },
            }
        };
        tokio::time::timeout(wait, fut).await.ok().flatten()
    }

    async fn request(&mut self, method: Method, attrs: Vec<Attribute>) -> Message {
        let mut req = Message::request(method);
        req.attributes = attrs;
        for _ in 0..3 {
            let bytes = self.creds.encode(&req);
            self.send(&bytes).await;
            let deadline = Instant::now() + STEP;
            let response = loop {
                let d = self
                    .recv(deadline.saturating_duration_since(Instant::now()))
                    .await
                    .expect("a response");
                if let Ok(m) = Message::decode(&d)
                    && m.transaction_id == req.transaction_id
                {
                    break m;
                }
            };
            if response.class == Class::Error
                && self.creds.on_error(&response) == ChallengeOutcome::Retry
            {
                continue;
            }
            return response;
        }
        panic!("challenged too often");
    }
}

fn code(m: &Message) -> Option<u16> {
    m.error_code().map(|e| e.0)
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + STEP;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn tls_allocation_relays_channel_data_and_ends_with_the_connection() {
    let f = Fixture::start(|_| {}).await;
    let mut c = f.tls("alice", "secret").await;
    let alloc = c
        .request(
            Method::ALLOCATE,
            vec![Attribute::RequestedTransport(TRANSPORT_UDP)],
        )
        .await;
    assert_eq!(alloc.class, Class::Success, "{:?}", alloc.error_code());
    assert!(c.creds.verify(&alloc));
    let relayed = alloc.relayed_address().unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let bind = c
        .request(
            Method::CHANNEL_BIND,
            vec![
                Attribute::ChannelNumber(0x4abc),
                Attribute::XorPeerAddress(peer_addr),
            ],
        )
        .await;
    assert_eq!(bind.class, Class::Success, "{:?}", bind.error_code());
    // Client → peer: padded ChannelData over TLS.
    c.send(&ChannelData::encode(0x4abc, b"odd-sized", true))
        .await;
    let mut buf = [0u8; 256];
    let (n, from) = tokio::time::timeout(STEP, peer.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((&buf[..n], from), (&b"odd-sized"[..], relayed));
    // Peer → client: ChannelData, padded on the stream.
    peer.send_to(b"back!", relayed).await.unwrap();
    let frame = c.recv(STEP).await.expect("ChannelData over TLS");
    assert_eq!(frame.len() % 4, 0, "padded to 4 over a stream");
    let cd = ChannelData::decode(&frame).unwrap();
    assert_eq!((cd.channel, cd.data), (0x4abc, &b"back!"[..]));
    assert_eq!(f.server.allocation_count(), 1);
    drop(c);
    wait_until("the allocation to go with its connection", || {
        f.server.allocation_count() == 0
    })
    .await;
    f.server.shutdown().await;
}

#[tokio::test]
async fn rest_credentials_and_quota() {
    let f = Fixture::start(|t| {
        t.rest_secret = Some("north".into());
        t.user_quota = 2;
        t.max_lifetime_secs = 1200;
    })
    .await;
    let future = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let user = format!("{future}:carol");
    let mut rest = f.udp(&user, &rest_password(b"north", &user)).await;
    let ok = rest
        .request(
            Method::ALLOCATE,
            vec![Attribute::RequestedTransport(TRANSPORT_UDP)],
        )
        .await;
    assert_eq!(ok.class, Class::Success, "{:?}", ok.error_code());
    // Lifetime capped at the maximum.
    let refresh = rest
        .request(Method::REFRESH, vec![Attribute::Lifetime(99_999)])
        .await;
    assert_eq!(refresh.lifetime(), Some(1200));
    // An expired REST username is refused, as is a wrong REST password.
    let old = "1000:carol".to_owned();
    let mut expired = f.udp(&old, &rest_password(b"north", &old)).await;
    let refused = expired
        .request(
            Method::ALLOCATE,
            vec![Attribute::RequestedTransport(TRANSPORT_UDP)],
        )
        .await;
    assert_eq!(code(&refused), Some(401));
    let mut forged = f.udp(&user, "not-the-hmac").await;
    let refused = forged
        .request(
            Method::ALLOCATE,
            vec![Attribute::RequestedTransport(TRANSPORT_UDP)],
        )
        .await;
    assert_eq!(code(&refused), Some(401));

    // Quota: two allocations for alice, the third is 486.
    let mut results = Vec::new();
    for _ in 0..3 {
        let mut c = f.udp("alice", "secret").await;
        let r = c
            .request(
                Method::ALLOCATE,
                vec![Attribute::RequestedTransport(TRANSPORT_UDP)],
            )
            .await;
        results.push((code(&r), c));
    }
    let codes: Vec<Option<u16>> = results.iter().map(|(c, _)| *c).collect();
    assert_eq!(codes, vec![None, None, Some(486)]);
    // Freeing one makes room again.
    let (_, first) = &mut results[0];
    let gone = first
        .request(Method::REFRESH, vec![Attribute::Lifetime(0)])
        .await;
    assert_eq!(gone.lifetime(), Some(0));
    let (_, third) = &mut results[2];
    let again = third
        .request(
            Method::ALLOCATE,
            vec![Attribute::RequestedTransport(TRANSPORT_UDP)],
        )
        .await;
    assert_eq!(again.class, Class::Success, "{:?}", again.error_code());
    f.server.shutdown().await;
}

#[tokio::test]
async fn bad_input_is_dropped_and_counted() {
    let f = Fixture::start(|_| {}).await;
    let before = f.server.stats();
    let mut raw = f.udp("alice", "secret").await;
    raw.send(b"\x00\x01\x00\x04 definitely not stun").await;
    let mut huge = Message::request(Method::BINDING).encode(Integrity::None, false);
    huge[2..4].copy_from_slice(&0xFFF0u16.to_be_bytes());
    raw.send(&huge).await;
    raw.send(&[0x40, 0x00, 0x00, 0x10, 1, 2]).await;
    assert!(raw.recv(Duration::from_millis(300)).await.is_none());
    wait_until("malformed input counted", || {
        f.server.stats().malformed >= before.malformed + 3
    })
    .await;

    // Wrong integrity with a valid nonce: 401 and counted.
    let challenge = raw
        .request(
            Method::ALLOCATE,
            vec![Attribute::RequestedTransport(TRANSPORT_UDP)],
        )
        .await;
    assert!(f.server.stats().unauthenticated > before.unauthenticated);
    let _ = challenge;
    let mut wrong = f.udp("alice", "guess").await;
    let refused = wrong
        .request(
            Method::ALLOCATE,
            vec![Attribute::RequestedTransport(TRANSPORT_UDP)],
        )
        .await;
    assert_eq!(code(&refused), Some(401));
    assert!(f.server.stats().integrity_failures > before.integrity_failures);

    // A Send indication without a permission is dropped and counted; nothing reaches the peer.
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let ind = Message::new(Class::Indication, Method::SEND, TransactionId::random())
        .with(Attribute::XorPeerAddress(peer.local_addr().unwrap()))
        .with(Attribute::Data(b"sneak".to_vec().into()));
    raw.send(&ind.encode(Integrity::None, false)).await;
    wait_until("the unpermitted send counted", || {
        f.server.stats().no_permission > before.no_permission
    })
    .await;
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), peer.recv_from(&mut buf))
            .await
            .is_err()
    );
    // An unknown comprehension-required attribute in an authenticated request: 420.
    let mut c = f.udp("alice", "secret").await;
    let r = c
        .request(
            Method::ALLOCATE,
            vec![
                Attribute::RequestedTransport(TRANSPORT_UDP),
                Attribute::Other {
                    kind: 0x0077,
                    value: Default::default(),
                },
            ],
        )
        .await;
    assert_eq!(code(&r), Some(420));
    let key = long_term_key("alice", DOMAIN, "secret");
    assert!(
        r.verify_integrity(&key).is_ok(),
        "errors after auth are signed"
    );
    f.server.shutdown().await;
}
