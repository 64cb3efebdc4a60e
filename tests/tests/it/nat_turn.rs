//! STUN/TURN interop (issue 4): coturn's `turnutils_uclient` against the lab's TURN server (UDP and
//! TCP: allocations, permissions, channel data, send indications, refresh, wrong password), our
//! own `proto::stun` client against coturn's `turnserver` and against the lab, and bad input on
//! the lab's TURN port.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure here is a test failure

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use tandem_proto::stun::credentials::ChallengeOutcome;
use tandem_proto::stun::{
    Attribute, ChannelData, Class, Integrity, LongTermClient, Message, Method, TRANSPORT_UDP,
};
use tandem_tests::coturn::{Coturn, CoturnOptions, TurnPeer, UclientOptions, run_uclient};
use tandem_tests::{LabOptions, LabServer, TestDir};

use crate::common::ok;

const TIMEOUT: Duration = Duration::from_secs(60);

fn lab(dir: &TestDir, allow_loopback: bool) -> (LabServer, SocketAddr) {
    let opts = LabOptions {
        domain: "tandem.lab".into(),
        tls: false,
        extra_toml: format!(
            "\n[turn]\nport = 0\ntls_port = 0\nallow_loopback_peers = {allow_loopback}\n"
        ),
        ..LabOptions::default()
    }
    .user("alice", "secret")
    .user("bob", "bobpw");
    let lab = ok(LabServer::start(opts, dir.path()));
    let turn = lab.service("turn").expect("the ready line has turn=");
    (lab, turn)
}

fn assert_clean_run(what: &str, run: &tandem_tests::coturn::UclientRun) {
    assert!(run.success, "{what}: uclient failed:\n{}", run.output);
    assert!(run.sent > 0, "{what}: nothing sent:\n{}", run.output);
    assert_eq!(
        run.received, run.sent,
        "{what}: not every message came back through the relay:\n{}",
        run.output
    );
    assert_eq!(run.lost, 0, "{what}: lost packets:\n{}", run.output);
}

#[test]
fn uclient_against_lab_turn() {
    let dir = ok(TestDir::new("nat-turn-uclient-lab"));
    let (_lab, turn) = lab(&dir, true);
    let peer = ok(TurnPeer::start(dir.path()));
    // UDP with channels (RTP + RTCP allocations: EVEN-PORT with a reservation), two clients.
    let mut opts = UclientOptions::new(turn, peer.addr());
    opts.clients = 2;
    assert_clean_run("udp channels", &ok(run_uclient(&opts, dir.path(), TIMEOUT)));
    // Send/Data indications and extra CreatePermission/ChannelBind requests.
    let mut ind = UclientOptions::new(turn, peer.addr());
    ind.send_indications = true;
    ind.extra_requests = true;
    assert_clean_run(
        "udp indications",
        &ok(run_uclient(&ind, dir.path(), TIMEOUT)),
    );
    // TCP to the server.
    let mut tcp = UclientOptions::new(turn, peer.addr());
    tcp.tcp = true;
    tcp.clients = 2;
    assert_clean_run("tcp channels", &ok(run_uclient(&tcp, dir.path(), TIMEOUT)));
    // A wrong password gets no allocation.
    let mut wrong = UclientOptions::new(turn, peer.addr());
    wrong.password = "not-the-password".into();
    let run = ok(run_uclient(&wrong, dir.path(), TIMEOUT));
    assert!(
        !run.success,
        "a wrong password was accepted:\n{}",
        run.output
    );
    assert!(
        run.output.contains("Cannot complete Allocation"),
        "{}",
        run.output
    );
    assert_eq!(run.received, 0);
}

#[test]
fn uclient_against_coturn_matches() {
    // The same load against coturn: the harness and the peer behave, so a lab failure is the lab's.
    let dir = ok(TestDir::new("nat-turn-uclient-coturn"));
    let coturn = ok(Coturn::start(&CoturnOptions::default(), dir.path()));
    let peer = ok(TurnPeer::start(dir.path()));
    let opts = UclientOptions::new(coturn.addr(), peer.addr());
    assert_clean_run("coturn udp", &ok(run_uclient(&opts, dir.path(), TIMEOUT)));
}

/// A blocking TURN client over UDP built on `proto::stun`.
struct Client {
    sock: UdpSocket,
    server: SocketAddr,
    creds: LongTermClient,
}

impl Client {
    fn new(server: SocketAddr, user: &str, password: &str) -> Client {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        Client {
            sock,
            server,
            creds: LongTermClient::new(user, password),
        }
    }

    /// Receives the next datagram (or `None` after `wait`).
    fn recv(&self, wait: Duration) -> Option<Vec<u8>> {
        let until = Instant::now() + wait;
        let mut buf = [0u8; 2048];
        while Instant::now() < until {
            if let Ok((n, from)) = self.sock.recv_from(&mut buf)
                && from == self.server
            {
                return Some(buf[..n].to_vec());
            }
        }
        None
    }

    /// Sends `req` (signed once challenged), retransmitting, and answers 401/438 once each.
    fn transact(&mut self, req: &Message) -> Message {
        for _ in 0..4 {
            let bytes = self.creds.encode(req);
            let mut response = None;
            'retx: for _ in 0..5 {
                self.sock.send_to(&bytes, self.server).unwrap();
                let until = Instant::now() + Duration::from_millis(500);
                while Instant::now() < until {
                    let Some(d) = self.recv(Duration::from_millis(100)) else {
                        continue;
                    };
                    if let Ok(m) = Message::decode(&d)
                        && m.transaction_id == req.transaction_id
                    {
                        response = Some(m);
                        break 'retx;
                    }
                }
            }
            let m = response.expect("no response from the TURN server");
            if m.class == Class::Error && self.creds.on_error(&m) == ChallengeOutcome::Retry {
                continue;
            }
            return m;
        }
        panic!("challenged too often");
    }

    fn request(&mut self, method: Method, attrs: Vec<Attribute>) -> Message {
        let mut req = Message::request(method);
        req.attributes = attrs;
        self.transact(&req)
    }
}

fn expect_success(m: &Message, creds: &LongTermClient, what: &str) {
    assert_eq!(m.class, Class::Success, "{what}: {:?}", m.error_code());
    assert!(
        creds.verify(m),
        "{what}: response integrity does not verify"
    );
}

/// Allocate, permissions, Send/Data indications, ChannelBind + ChannelData both ways, refresh,
/// delete, and a wrong password: our codec against `server`.
fn exercise(server: SocketAddr, deleted_at_once: bool) {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let mut c = Client::new(server, "alice", "secret");

    let alloc = c.request(
        Method::ALLOCATE,
        vec![
            Attribute::RequestedTransport(TRANSPORT_UDP),
            Attribute::Lifetime(300),
        ],
    );
    expect_success(&alloc, &c.creds, "Allocate");
    let relayed = alloc.relayed_address().expect("XOR-RELAYED-ADDRESS");
    assert_eq!(
        alloc.mapped_address(),
        Some(c.sock.local_addr().unwrap()),
        "XOR-MAPPED-ADDRESS is our address"
    );
    assert!(alloc.lifetime().unwrap_or(0) > 0);

    // Without a permission nothing reaches the peer.
    let send = |c: &Client, data: &[u8]| {
        let ind = Message::new(
            Class::Indication,
            Method::SEND,
            tandem_proto::stun::TransactionId::random(),
        )
        .with(Attribute::XorPeerAddress(peer_addr))
        .with(Attribute::Data(data.to_vec().into()));
        c.sock
            .send_to(&ind.encode(Integrity::None, false), server)
            .unwrap();
    };
    send(&c, b"too early");
    peer.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 2048];
    assert!(
        peer.recv_from(&mut buf).is_err(),
        "relayed without a permission"
    );
    peer.set_read_timeout(Some(Duration::from_secs(3))).unwrap();

    let perm = c.request(
        Method::CREATE_PERMISSION,
        vec![Attribute::XorPeerAddress(peer_addr)],
    );
    expect_success(&perm, &c.creds, "CreatePermission");
    send(&c, b"hello peer");
    let (n, from) = peer.recv_from(&mut buf).expect("the peer got the Send");
    assert_eq!(&buf[..n], b"hello peer");
    assert_eq!(from, relayed, "the peer sees the relayed address");

    // Peer → client: a Data indication.
    peer.send_to(b"hello client", relayed).unwrap();
    let data = c.recv(Duration::from_secs(3)).expect("a Data indication");
    let ind = Message::decode(&data).unwrap();
    assert_eq!((ind.class, ind.method), (Class::Indication, Method::DATA));
    assert_eq!(ind.peer_addresses(), vec![peer_addr]);
    assert_eq!(ind.data().map(|d| &d[..]), Some(&b"hello client"[..]));

    // Channels.
    let bind = c.request(
        Method::CHANNEL_BIND,
        vec![
            Attribute::ChannelNumber(0x4001),
            Attribute::XorPeerAddress(peer_addr),
        ],
    );
    expect_success(&bind, &c.creds, "ChannelBind");
    c.sock
        .send_to(&ChannelData::encode(0x4001, b"over channel", false), server)
        .unwrap();
    let (n, _) = peer.recv_from(&mut buf).expect("ChannelData relayed");
    assert_eq!(&buf[..n], b"over channel");
    peer.send_to(b"channel back", relayed).unwrap();
    let data = c.recv(Duration::from_secs(3)).expect("ChannelData back");
    let cd = ChannelData::decode(&data).unwrap();
    assert_eq!((cd.channel, cd.data), (0x4001, &b"channel back"[..]));

    // The same channel for another peer is refused.
    let other: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let clash = c.request(
        Method::CHANNEL_BIND,
        vec![
            Attribute::ChannelNumber(0x4001),
            Attribute::XorPeerAddress(other),
        ],
    );
    assert_eq!(clash.error_code().map(|e| e.0), Some(400));

    // Refresh, then delete.
    let refresh = c.request(Method::REFRESH, vec![Attribute::Lifetime(600)]);
    expect_success(&refresh, &c.creds, "Refresh");
    assert!(refresh.lifetime().unwrap_or(0) >= 300);
    let delete = c.request(Method::REFRESH, vec![Attribute::Lifetime(0)]);
    expect_success(&delete, &c.creds, "Refresh 0");
    if deleted_at_once {
        // RFC 8656 §7.3: the allocation is gone at once (coturn keeps it until its timer fires).
        let gone = c.request(Method::REFRESH, vec![Attribute::Lifetime(600)]);
        assert_eq!(
            gone.error_code().map(|e| e.0),
            Some(437),
            "no allocation left"
        );
    }

    // A wrong password: 401 again after the signed retry.
    let mut wrong = Client::new(server, "alice", "wrong");
    let refused = wrong.request(
        Method::ALLOCATE,
        vec![Attribute::RequestedTransport(TRANSPORT_UDP)],
    );
    assert_eq!(refused.error_code().map(|e| e.0), Some(401));
}

#[test]
fn proto_client_against_coturn() {
    let dir = ok(TestDir::new("nat-turn-proto-coturn"));
    let coturn = ok(Coturn::start(&CoturnOptions::default(), dir.path()));
    exercise(coturn.addr(), false);
}

#[test]
fn proto_client_against_lab() {
    let dir = ok(TestDir::new("nat-turn-proto-lab"));
    let (_lab, turn) = lab(&dir, true);
    exercise(turn, true);
}

#[test]
fn lab_turn_bad_input() {
    let dir = ok(TestDir::new("nat-turn-bad-input"));
    // Loopback peers forbidden (the default policy).
    let (_lab, turn) = lab(&dir, false);
    let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
    raw.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let mut no_answer = |what: &str, bytes: &[u8]| {
        raw.send_to(bytes, turn).unwrap();
        assert!(
            raw.recv_from(&mut buf).is_err(),
            "{what}: the server answered malformed input"
        );
    };
    no_answer("garbage", b"\xff\xfe not stun at all");
    let good = Message::request(Method::BINDING).encode(Integrity::None, false);
    // Header claims a huge body.
    let mut huge = good.clone();
    huge[2..4].copy_from_slice(&0xFFFCu16.to_be_bytes());
    no_answer("huge length", &huge);
    // An attribute running past the end.
    let mut truncated = Message::request(Method::ALLOCATE)
        .with(Attribute::RequestedTransport(TRANSPORT_UDP))
        .encode(Integrity::None, false);
    truncated[22..24].copy_from_slice(&0x0100u16.to_be_bytes());
    no_answer("truncated attribute", &truncated);
    // ChannelData without an allocation.
    no_answer(
        "stray ChannelData",
        &ChannelData::encode(0x4000, b"x", false),
    );

    // The server still answers a Binding.
    let mut c = Client::new(turn, "alice", "secret");
    let binding = c.request(Method::BINDING, vec![]);
    assert_eq!(binding.class, Class::Success);
    assert_eq!(binding.mapped_address(), Some(c.sock.local_addr().unwrap()));

    // An Allocate without credentials is refused with a challenge.
    let unauth =
        Message::request(Method::ALLOCATE).with(Attribute::RequestedTransport(TRANSPORT_UDP));
    raw.send_to(&unauth.encode(Integrity::None, false), turn)
        .unwrap();
    let (n, _) = raw.recv_from(&mut buf).expect("a 401");
    let challenge = Message::decode(&buf[..n]).unwrap();
    assert_eq!(challenge.error_code().map(|e| e.0), Some(401));
    assert!(challenge.realm().is_some() && challenge.nonce().is_some());

    // Wrong integrity (a key from another password) is refused.
    let bad_key = tandem_proto::stun::long_term_key("alice", "tandem.lab", "guess");
    let forged = unauth
        .clone()
        .with(Attribute::Username("alice".into()))
        .with(Attribute::Realm("tandem.lab".into()))
        .with(Attribute::Nonce(challenge.nonce().unwrap().to_owned()));
    raw.send_to(&forged.encode(Integrity::Sha1(&bad_key), false), turn)
        .unwrap();
    let (n, _) = raw.recv_from(&mut buf).expect("an error");
    let refused = Message::decode(&buf[..n]).unwrap();
    assert_eq!(refused.error_code().map(|e| e.0), Some(401));
    // A made-up nonce is stale.
    let stale = unauth
        .clone()
        .with(Attribute::Username("alice".into()))
        .with(Attribute::Realm("tandem.lab".into()))
        .with(Attribute::Nonce("00".repeat(32)));
    let key = tandem_proto::stun::long_term_key("alice", "tandem.lab", "secret");
    raw.send_to(&stale.encode(Integrity::Sha1(&key), false), turn)
        .unwrap();
    let (n, _) = raw.recv_from(&mut buf).expect("a 438");
    assert_eq!(
        Message::decode(&buf[..n])
            .unwrap()
            .error_code()
            .map(|e| e.0),
        Some(438)
    );

    // A real allocation: loopback peers and the server's own port are forbidden (403), a
    // non-UDP transport is 442, a second Allocate on the same 5-tuple is 437.
    let alloc = c.request(
        Method::ALLOCATE,
        vec![Attribute::RequestedTransport(TRANSPORT_UDP)],
    );
    expect_success(&alloc, &c.creds, "Allocate");
    let loopback: SocketAddr = "127.0.0.1:9999".parse().unwrap();
    let perm = c.request(
        Method::CREATE_PERMISSION,
        vec![Attribute::XorPeerAddress(loopback)],
    );
    assert_eq!(perm.error_code().map(|e| e.0), Some(403));
    let own = c.request(
        Method::CHANNEL_BIND,
        vec![
            Attribute::ChannelNumber(0x4002),
            Attribute::XorPeerAddress(turn),
        ],
    );
    assert_eq!(own.error_code().map(|e| e.0), Some(403));
    let again = c.request(
        Method::ALLOCATE,
        vec![Attribute::RequestedTransport(TRANSPORT_UDP)],
    );
    assert_eq!(again.error_code().map(|e| e.0), Some(437));
    let mut tcp_client = Client::new(turn, "bob", "bobpw");
    let tcp_alloc = tcp_client.request(Method::ALLOCATE, vec![Attribute::RequestedTransport(6)]);
    assert_eq!(tcp_alloc.error_code().map(|e| e.0), Some(442));
    // A bad channel number.
    let bad_channel = c.request(
        Method::CHANNEL_BIND,
        vec![
            Attribute::ChannelNumber(0x3FFF),
            Attribute::XorPeerAddress("192.0.2.1:5000".parse().unwrap()),
        ],
    );
    assert_eq!(bad_channel.error_code().map(|e| e.0), Some(400));
}

/// `GET /api/turn-credentials` (curl, bearer token naming the user) hands out REST credentials that coturn's
/// `turnutils_uclient` then allocates with on the lab's TURN server; a tampered password is refused, and a lab
/// without `rest_secret` says so.
#[test]
fn rest_credentials_from_the_api_work_with_uclient() {
    const TOKEN: &str = "nat-turn-operator-token-0123456789";
    let dir = ok(TestDir::new("nat-turn-rest-api"));
    let start = |rest: &str| {
        let opts = LabOptions {
            domain: "tandem.lab".into(),
            tls: false,
            extra_toml: format!(
                "\n[turn]\nport = 0\ntls_port = 0\nallow_loopback_peers = true\n{rest}\
                 \n[api]\nport = 0\ntokens = [\"{TOKEN}\"]\nturn_ttl_secs = 600\n"
            ),
            ..LabOptions::default()
        }
        .user("alice", "secret");
        ok(LabServer::start(opts, dir.path()))
    };
    let get = |lab: &LabServer, query: &str| -> (u16, serde_json::Value) {
        let api = lab.service("api").expect("the ready line has api=");
        let out = std::process::Command::new("curl")
            .args(["-sk", "-w", "\n%{http_code}", "-H"])
            .arg(format!("Authorization: Bearer {TOKEN}"))
            .arg(format!("https://{api}/api/turn-credentials{query}"))
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, status) = text.rsplit_once('\n').expect("curl printed the status");
        (
            status.trim().parse().expect("a status code"),
            serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
        )
    };

    let lab = start("rest_secret = \"nat-turn-rest-secret\"\n");
    let turn = lab.service("turn").expect("the ready line has turn=");
    let (status, creds) = get(&lab, "?user=alice");
    assert_eq!(status, 200, "{creds}");
    let username = creds["username"].as_str().expect("a username").to_owned();
    let password = creds["password"].as_str().expect("a password").to_owned();
    let (expiry, user) = username.split_once(':').expect("expiry:user");
    assert_eq!(user, "alice");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expiry: u64 = expiry.parse().expect("a Unix time");
    assert!((now + 590..=now + 610).contains(&expiry), "{username}");
    assert_eq!(creds["ttl"], 600);
    let uris: Vec<&str> = creds["uris"]
        .as_array()
        .expect("uris")
        .iter()
        .filter_map(|u| u.as_str())
        .collect();
    assert!(
        uris.contains(&format!("turn:{turn}?transport=udp").as_str()),
        "{uris:?}"
    );

    let peer = ok(TurnPeer::start(dir.path()));
    let mut opts = UclientOptions::new(turn, peer.addr());
    opts.user = username.clone();
    opts.password = password.clone();
    assert_clean_run(
        "uclient with REST credentials",
        &ok(run_uclient(&opts, dir.path(), TIMEOUT)),
    );
    let mut wrong = UclientOptions::new(turn, peer.addr());
    wrong.user = username;
    wrong.password = format!("x{password}");
    let run = ok(run_uclient(&wrong, dir.path(), TIMEOUT));
    assert!(
        !run.success,
        "a tampered password was accepted:\n{}",
        run.output
    );

    // An operator must name the user; a bad name is refused.
    assert_eq!(get(&lab, "").0, 400);
    assert_eq!(get(&lab, "?user=a%20b").0, 400);
    drop(lab);

    // Without rest_secret the API says the feature is off.
    let lab = start("");
    let (status, body) = get(&lab, "?user=alice");
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"].as_str().unwrap_or("").contains("rest_secret"),
        "{body}"
    );
}
