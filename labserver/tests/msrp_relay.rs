//! The MSRP relay (RFC 4976) in-process, driven by raw MSRP clients built on `proto::msrp`:
//! AUTH challenge and Use-Path, SEND/200/REPORT relayed both ways between a TCP and a TLS client,
//! failure REPORTs, bad input, connection limits, idle timeout and backpressure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tandem_labserver::ca::LabCa;
use tandem_labserver::config::LabConfig;
use tandem_labserver::msrp_relay::{MsrpRelay, MsrpRelayConfig};
use tandem_labserver::store::Store;
use tandem_proto::auth::DigestClient;
use tandem_proto::msrp::message::{MIN_EXPIRES, STATUS};
use tandem_proto::msrp::{
    ByteRange, Chunker, FailureReport, Framer, Message, Method, MsrpUri, Request, Response,
    StatusHeader, new_message_id, report,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;

mod lab_fixture;

use lab_fixture::{DOMAIN, Parts};

const STEP: Duration = Duration::from_secs(10);

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A relay with alice/bob (passwords `<name>pw`) in a temporary store; shut down on drop.
struct Fixture {
    relay: MsrpRelay,
    tls_client: Arc<rustls::ClientConfig>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn start(tweak: impl FnOnce(&mut MsrpRelayConfig)) -> Fixture {
        let parts = Parts::new(
            &[("alice", "alicepw"), ("bob", "bobpw")],
            true,
            [7; 32],
            |c| tweak(&mut c.msrp),
        )
        .await;
        let relay = MsrpRelay::start(&parts.config, &parts.store, &parts.ca, parts.authn)
            .await
            .unwrap()
            .expect("enabled by default");
        Fixture {
            relay,
            tls_client: parts.ca.client_config().unwrap(),
            _dir: parts.dir,
        }
    }

    fn addr(&self, tls: bool) -> SocketAddr {
        let key = if tls { "msrps" } else { "msrp" };
        self.relay
            .ready_fields()
            .into_iter()
            .find(|(k, _)| k == key)
            .unwrap()
            .1
    }

    fn relay_uri(&self, tls: bool) -> MsrpUri {
        MsrpUri::parse(&self.relay.relay_uri(tls)).unwrap()
    }

    async fn connect(&self, tls: bool, name: &str) -> Client {
        let tcp = TcpStream::connect(self.addr(tls)).await.unwrap();
        let io: Box<dyn Io> = if tls {
            let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls_client));
            let server_name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
            Box::new(connector.connect(server_name, tcp).await.unwrap())
        } else {
            Box::new(tcp)
        };
        let (rd, wr) = tokio::io::split(io);
        Client {
            rd,
            wr,
            framer: Framer::default(),
            buf: vec![0; 64 * 1024],
            local: MsrpUri::new(tls, "127.0.0.1", 40000, &format!("{name}sess")),
            relay: self.relay_uri(tls),
            path: Vec::new(),
        }
    }

    /// A client that completed AUTH as `user`.
    async fn authed(&self, tls: bool, user: &str) -> Client {
        let mut c = self.connect(tls, user).await;
        c.auth(user, &format!("{user}pw")).await;
        c
    }
}

/// A raw MSRP connection to the relay.
struct Client {
    rd: ReadHalf<Box<dyn Io>>,
    wr: WriteHalf<Box<dyn Io>>,
    framer: Framer,
    buf: Vec<u8>,
    /// This client's own URI (From-Path of its requests, last URI of its `a=path`).
    local: MsrpUri,
    relay: MsrpUri,
    /// The Use-Path the relay gave (empty before AUTH).
    path: Vec<MsrpUri>,
}

impl Client {
    /// The `a=path` this client would put in SDP: relay path, then its own URI.
    fn a_path(&self) -> Vec<MsrpUri> {
        let mut p = self.path.clone();
        p.push(self.local.clone());
        p
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.wr.write_all(bytes).await.unwrap();
        self.wr.flush().await.unwrap();
    }

    /// Writes bytes the relay may refuse halfway (it closes the connection): errors are ignored.
    async fn send_refused(&mut self, bytes: &[u8]) {
        let _ = self.wr.write_all(bytes).await;
        let _ = self.wr.flush().await;
    }

    async fn send(&mut self, request: &Request) {
        self.send_raw(&request.to_bytes()).await;
    }

    /// The next message, or `None` when the relay closed the connection.
    async fn next(&mut self) -> Option<Message> {
        tokio::time::timeout(STEP, async {
            loop {
                if let Some(m) = self.framer.pop().unwrap() {
                    return Some(m);
                }
                match self.rd.read(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.framer.push(&self.buf[..n]),
                }
            }
        })
        .await
        .expect("the relay answers within the step timeout")
    }

    async fn response(&mut self) -> Response {
        match self.next().await {
            Some(Message::Response(r)) => r,
            other => panic!("expected a response, got {other:?}"),
        }
    }

    async fn request(&mut self) -> Request {
        match self.next().await {
            Some(Message::Request(r)) => r,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    /// Whether the relay closed the connection (within the step timeout).
    async fn closed(&mut self) -> bool {
        loop {
            match self.next().await {
                None => return true,
                Some(_) => continue,
            }
        }
    }

    async fn auth_request(&mut self, creds: Option<&tandem_proto::auth::Credentials>) -> Request {
        let r = report::auth_request(&mut rand::rng(), &self.relay, &self.local, creds);
        self.send(&r).await;
        r
    }

    /// AUTH, answer the challenge, keep the Use-Path.
    async fn auth(&mut self, user: &str, password: &str) -> Response {
        self.auth_request(None).await;
        let challenge = self.response().await;
        assert_eq!(challenge.status, 401);
        let mut digest = DigestClient::new(user, password);
        let creds = digest
            .authorize(
                &challenge.headers.challenges(),
                "AUTH",
                &self.relay.to_string(),
                "0a4f113b",
            )
            .unwrap();
        self.auth_request(Some(&creds)).await;
        let ok = self.response().await;
        assert_eq!(ok.status, 200, "{ok:?}");
        self.path = ok.headers.use_path().unwrap().unwrap();
        ok
    }

    /// A whole text message to `to` (the peer's `a=path`), through our relay path.
    fn text_to(&self, to: &[MsrpUri], text: &str, success: bool) -> Request {
        let mut to_path = self.path.clone();
        to_path.extend(to.iter().cloned());
        let chunker = Chunker::new(
            &to_path,
            std::slice::from_ref(&self.local),
            &new_message_id(&mut rand::rng()),
            "text/plain",
            Some(text.len() as u64),
            2048,
        )
        .with_reports(Some(success), None);
        chunker
            .split(&mut rand::rng(), text.as_bytes())
            .unwrap()
            .remove(0)
    }
}

fn uri_list(v: &str) -> Vec<MsrpUri> {
    MsrpUri::parse_list(v).unwrap()
}

#[tokio::test]
async fn auth_challenges_then_issues_a_use_path() {
    let fx = Fixture::start(|_| {}).await;
    let mut c = fx.connect(false, "alice").await;

    // no credentials: 401 with an MD5 challenge for the lab realm
    let first = c.auth_request(None).await;
    let challenge = c.response().await;
    assert_eq!(challenge.status, 401);
    assert_eq!(challenge.transaction_id, first.transaction_id);
    let challenges = challenge.headers.challenges();
    assert_eq!(challenges.len(), 1);
    assert_eq!(challenges[0].realm, DOMAIN);
    assert_eq!(challenges[0].algorithm.as_str(), "MD5");

    // a wrong password: challenged again and counted
    let mut wrong = DigestClient::new("alice", "nope");
    let creds = wrong
        .authorize(&challenges, "AUTH", &c.relay.to_string(), "abc")
        .unwrap();
    c.auth_request(Some(&creds)).await;
    assert_eq!(c.response().await.status, 401);
    assert_eq!(fx.relay.counters().auth_failed, 1);

    // the right one: 200 with a Use-Path naming this relay and a fresh session
    let ok = c.auth("alice", "alicepw").await;
    assert_eq!(c.path.len(), 1);
    let issued = c.path[0].clone();
    assert!(!issued.secure);
    assert_eq!(issued.host, "127.0.0.1");
    assert_eq!(issued.port, Some(fx.addr(false).port()));
    assert!(issued.session_id.as_deref().is_some_and(|s| s.len() >= 16));
    assert_eq!(ok.headers.expires().unwrap(), Some(3600));
    assert_eq!(fx.relay.session_count(), 1);

    // another AUTH from the same client URI refreshes the session: same Use-Path
    let again = c.auth("alice", "alicepw").await;
    assert_eq!(
        again.headers.use_path().unwrap().unwrap(),
        vec![issued.clone()]
    );
    assert_eq!(fx.relay.session_count(), 1);

    // an AUTH from another URI on the same connection gets another session
    c.local = MsrpUri::new(false, "127.0.0.1", 40001, "alice2");
    let other = c.auth("alice", "alicepw").await;
    let second = other.headers.use_path().unwrap().unwrap();
    assert_ne!(second[0].session_id, issued.session_id);
    assert_eq!(fx.relay.session_count(), 2);
    assert_eq!(fx.relay.counters().auth_ok, 3);
}

#[tokio::test]
async fn auth_expires_bounds_and_foreign_relays() {
    let fx = Fixture::start(|m| {
        m.min_expires = 120;
        m.max_expires = 600;
    })
    .await;
    let mut c = fx.connect(true, "alice").await;
    c.auth_request(None).await;
    let challenge = c.response().await;
    let mut digest = DigestClient::new("alice", "alicepw");
    let (relay, local) = (c.relay.clone(), c.local.clone());
    let mut authed = |expires: Option<u32>| {
        // each request reuses the nonce with the next count (as a refresh would)
        digest.accepted();
        let creds = digest
            .authorize(
                &challenge.headers.challenges(),
                "AUTH",
                &relay.to_string(),
                "c0ffee",
            )
            .unwrap();
        let mut r = report::auth_request(&mut rand::rng(), &relay, &local, Some(&creds));
        if let Some(e) = expires {
            r.headers.push("Expires", e.to_string());
        }
        r
    };
    // too short: 423 with Min-Expires
    let short = authed(Some(30));
    c.send(&short).await;
    let r = c.response().await;
    assert_eq!(r.status, 423);
    assert_eq!(r.headers.get(MIN_EXPIRES), Some("120"));
    // too long: shortened to the maximum (the same nonce with the next nonce count)
    let long = authed(Some(100_000));
    c.send(&long).await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.headers.expires().unwrap(), Some(600));
    let path = r.headers.use_path().unwrap().unwrap();
    assert!(path[0].secure, "a TLS client gets an msrps URI");
    assert_eq!(path[0].port, Some(fx.addr(true).port()));
    // a replayed nonce count is refused
    c.send(&long).await;
    assert_eq!(c.response().await.status, 401);

    // AUTH addressed to another relay: 403
    let other = MsrpUri::parse("msrps://relay.example.com:2856;tcp").unwrap();
    let r = report::auth_request(&mut rand::rng(), &other, &c.local, None);
    c.send(&r).await;
    assert_eq!(c.response().await.status, 403);
    assert!(fx.relay.counters().forbidden >= 1);
}

#[tokio::test]
async fn relays_send_responses_and_reports_both_ways_between_tcp_and_tls() {
    let fx = Fixture::start(|_| {}).await;
    let mut alice = fx.authed(false, "alice").await;
    let mut bob = fx.authed(true, "bob").await;
    let (alice_path, bob_path) = (alice.a_path(), bob.a_path());

    // alice -> bob, with a success report
    let send = alice.text_to(&bob_path, "hello bob", true);
    alice.send(&send).await;
    // hop-by-hop 200 from the relay
    let ok = alice.response().await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.transaction_id, send.transaction_id);
    assert_eq!(
        uri_list(ok.headers.get("To-Path").unwrap()),
        vec![alice.local.clone()]
    );
    // bob gets it with the relay hops moved to From-Path
    let got = bob.request().await;
    assert_eq!(got.method, Method::Send);
    assert_eq!(got.body_bytes(), b"hello bob");
    assert_eq!(got.headers.to_path().unwrap(), vec![bob.local.clone()]);
    let mut expected_from = bob.path.clone();
    expected_from.extend(alice_path.iter().cloned());
    assert_eq!(got.headers.from_path().unwrap(), expected_from);
    // bob's 200 is consumed by the relay (hop-by-hop), his success REPORT goes back to alice
    bob.send_raw(&Response::for_request(&got, 200).unwrap().to_bytes())
        .await;
    let range = ByteRange {
        start: 1,
        end: Some(9),
        total: Some(9),
    };
    let rep = report::report(
        &mut rand::rng(),
        &got.headers,
        range,
        StatusHeader::new(200),
    )
    .unwrap();
    bob.send(&rep).await;
    let rep_at_alice = alice.request().await;
    assert_eq!(rep_at_alice.method, Method::Report);
    assert_eq!(
        rep_at_alice.headers.to_path().unwrap(),
        vec![alice.local.clone()]
    );
    assert_eq!(rep_at_alice.headers.message_id(), send.headers.message_id());
    assert_eq!(rep_at_alice.headers.status().unwrap().unwrap().code, 200);
    let mut report_from = alice.path.clone();
    report_from.extend(bob_path.iter().cloned());
    assert_eq!(rep_at_alice.headers.from_path().unwrap(), report_from);

    // bob -> alice over the same sessions
    let back = bob.text_to(&alice_path, "hi alice", false);
    bob.send(&back).await;
    assert_eq!(bob.response().await.status, 200);
    let got = alice.request().await;
    assert_eq!(got.body_bytes(), b"hi alice");
    assert_eq!(got.headers.to_path().unwrap(), vec![alice.local.clone()]);

    let c = fx.relay.counters();
    assert_eq!(c.forwarded, 3, "{c:?}");
    assert_eq!(c.stray_responses, 0, "{c:?}");
    assert_eq!(fx.relay.connection_count(), 2);
}

#[tokio::test]
async fn downstream_errors_become_failure_reports() {
    let fx = Fixture::start(|_| {}).await;
    let mut alice = fx.authed(false, "alice").await;
    let mut bob = fx.authed(false, "bob").await;
    let send = alice.text_to(&bob.a_path(), "<b>html</b>", false);
    alice.send(&send).await;
    assert_eq!(alice.response().await.status, 200);
    let got = bob.request().await;
    // bob refuses the content type
    bob.send_raw(&Response::for_request(&got, 415).unwrap().to_bytes())
        .await;
    let rep = alice.request().await;
    assert_eq!(rep.method, Method::Report);
    assert_eq!(
        rep.headers.get(STATUS),
        Some("000 415 Unsupported Media Type")
    );
    assert_eq!(rep.headers.message_id(), send.headers.message_id());
    assert_eq!(rep.headers.to_path().unwrap(), vec![alice.local.clone()]);
    assert_eq!(fx.relay.counters().failure_reports, 1);

    // Failure-Report: no gets neither the hop-by-hop 200 nor a REPORT
    let mut quiet = alice.text_to(&bob.a_path(), "quiet", false);
    quiet
        .headers
        .set("Failure-Report", FailureReport::No.as_str());
    alice.send(&quiet).await;
    let got = bob.request().await;
    assert_eq!(got.body_bytes(), b"quiet");
    // a later message shows nothing else arrived at alice in between
    let probe = alice.text_to(&bob.a_path(), "probe", false);
    alice.send(&probe).await;
    let r = alice.response().await;
    assert_eq!(r.transaction_id, probe.transaction_id);
}

#[tokio::test]
async fn a_next_hop_that_never_answers_gets_the_sender_a_408_report() {
    let fx = Fixture::start(|m| m.transaction_timeout_secs = 1).await;
    let mut alice = fx.authed(false, "alice").await;
    let mut bob = fx.authed(true, "bob").await;
    let send = alice.text_to(&bob.a_path(), "are you there?", false);
    let started = Instant::now();
    alice.send(&send).await;
    assert_eq!(alice.response().await.status, 200);
    // bob reads it and stays silent
    assert_eq!(bob.request().await.body_bytes(), b"are you there?");
    let rep = alice.request().await;
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(rep.method, Method::Report);
    assert_eq!(rep.headers.status().unwrap().unwrap().code, 408);
    assert_eq!(rep.headers.message_id(), send.headers.message_id());
    let range = rep.headers.byte_range().unwrap().unwrap();
    assert_eq!((range.start, range.end), (1, Some(14)));
    assert_eq!(fx.relay.counters().failure_reports, 1);
    // bob's late answer matches nothing any more: dropped and counted
    let late = Response::for_request(&send, 200).unwrap();
    bob.send_raw(&late.to_bytes()).await;
    let waited = Instant::now();
    while fx.relay.counters().stray_responses == 0 {
        assert!(waited.elapsed() < STEP, "the late response was not counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fx.relay.counters().failure_reports, 1);
}

#[tokio::test]
async fn a_receiver_that_disconnects_unanswered_gets_the_sender_a_481_report() {
    let fx = Fixture::start(|_| {}).await;
    let mut alice = fx.authed(false, "alice").await;
    let mut bob = fx.authed(false, "bob").await;
    let send = alice.text_to(&bob.a_path(), "last words", false);
    alice.send(&send).await;
    assert_eq!(alice.response().await.status, 200);
    assert_eq!(bob.request().await.body_bytes(), b"last words");
    drop(bob);
    let rep = alice.request().await;
    assert_eq!(rep.method, Method::Report);
    assert_eq!(rep.headers.status().unwrap().unwrap().code, 481);
    assert_eq!(rep.headers.message_id(), send.headers.message_id());
}

#[tokio::test]
async fn a_peer_without_a_relay_is_reached_over_a_connection_the_relay_opens() {
    let fx = Fixture::start(|_| {}).await;
    let mut alice = fx.authed(false, "alice").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer_uri = MsrpUri::new(
        false,
        "127.0.0.1",
        listener.local_addr().unwrap().port(),
        "peersess",
    );
    let send = alice.text_to(std::slice::from_ref(&peer_uri), "hi peer", false);
    alice.send(&send).await;
    assert_eq!(alice.response().await.status, 200);

    // the relay connects to the peer and delivers with its own hop in From-Path
    let (tcp, _) = tokio::time::timeout(STEP, listener.accept())
        .await
        .unwrap()
        .unwrap();
    let (rd, wr) = tokio::io::split(Box::new(tcp) as Box<dyn Io>);
    let mut peer = Client {
        rd,
        wr,
        framer: Framer::default(),
        buf: vec![0; 64 * 1024],
        local: peer_uri.clone(),
        relay: fx.relay_uri(false),
        path: Vec::new(),
    };
    let got = peer.request().await;
    assert_eq!(got.body_bytes(), b"hi peer");
    assert_eq!(got.headers.to_path().unwrap(), vec![peer_uri.clone()]);
    let mut from = alice.path.clone();
    from.push(alice.local.clone());
    assert_eq!(got.headers.from_path().unwrap(), from);
    peer.send_raw(&Response::for_request(&got, 200).unwrap().to_bytes())
        .await;

    // the peer answers over the same connection: to alice through her relay hop
    let back = peer.text_to(&from, "hi alice", false);
    peer.send(&back).await;
    assert_eq!(peer.response().await.status, 200);
    let at_alice = alice.request().await;
    assert_eq!(at_alice.body_bytes(), b"hi alice");
    assert_eq!(
        at_alice.headers.to_path().unwrap(),
        vec![alice.local.clone()]
    );
    assert_eq!(
        at_alice.headers.from_path().unwrap(),
        vec![alice.path[0].clone(), peer_uri.clone()]
    );

    // a second message reuses the connection
    let again = alice.text_to(std::slice::from_ref(&peer_uri), "again", false);
    alice.send(&again).await;
    assert_eq!(alice.response().await.status, 200);
    assert_eq!(peer.request().await.body_bytes(), b"again");
    assert_eq!(fx.relay.connection_count(), 2);

    // TLS peers without a relay are refused (their certificate could not be checked)
    let tls_peer = MsrpUri::new(true, "127.0.0.1", 9, "x");
    let refused = alice.text_to(std::slice::from_ref(&tls_peer), "no", false);
    alice.send(&refused).await;
    assert_eq!(alice.response().await.status, 481);
}

#[tokio::test]
async fn bad_requests_get_the_right_status_and_are_counted() {
    let fx = Fixture::start(|_| {}).await;
    let mut alice = fx.authed(false, "alice").await;
    let bob = fx.authed(false, "bob").await;

    // a SEND without Message-ID: 400
    let mut no_id = alice.text_to(&bob.a_path(), "x", false);
    no_id.headers.remove("Message-ID");
    alice.send(&no_id).await;
    assert_eq!(alice.response().await.status, 400);

    // to a session the relay never issued: 481
    let mut forged = alice.path[0].clone();
    forged.session_id = Some("doesnotexist".into());
    let stranger = MsrpUri::new(false, "127.0.0.1", 1, "peer");
    let mut unknown = alice.text_to(std::slice::from_ref(&stranger), "x", false);
    unknown.headers.set(
        "To-Path",
        MsrpUri::format_list(&[alice.path[0].clone(), forged, stranger.clone()]),
    );
    alice.send(&unknown).await;
    assert_eq!(alice.response().await.status, 481);

    // onward to a host that is not this relay (relay-to-relay is not supported): 481
    let elsewhere = alice.text_to(std::slice::from_ref(&stranger), "x", false);
    alice.send(&elsewhere).await;
    assert_eq!(alice.response().await.status, 481);

    // only the relay hop, nowhere after it: 400
    let mut dead_end = alice.text_to(&[], "x", false);
    dead_end.headers.set("To-Path", bob.path[0].to_string());
    alice.send(&dead_end).await;
    assert_eq!(alice.response().await.status, 400);

    // an unknown method: 501
    let mut other = alice.text_to(&bob.a_path(), "x", false);
    other.method = Method::Other("FROB".into());
    alice.send(&other).await;
    assert_eq!(alice.response().await.status, 501);

    let c = fx.relay.counters();
    assert!(c.bad_requests >= 2, "{c:?}");
    assert!(c.no_session >= 2, "{c:?}");

    // an unauthenticated connection cannot use a relay URI as its own outgoing hop either
    let mut anon = fx.connect(false, "mallory").await;
    let mut sneaky = anon.text_to(&bob.a_path(), "x", false);
    sneaky.headers.set(
        "To-Path",
        MsrpUri::format_list(&[
            MsrpUri {
                session_id: None,
                ..alice.path[0].clone()
            },
            bob.local.clone(),
        ]),
    );
    anon.send(&sneaky).await;
    assert_eq!(anon.response().await.status, 481);

    // garbage: the stream is closed and counted
    anon.send_refused(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert!(anon.closed().await);
    assert_eq!(fx.relay.counters().bad_frames, 1);

    // a chunk larger than the limit: 413, then the connection closes
    let mut big = fx.authed(false, "alice").await;
    let mut huge = big.text_to(&bob.a_path(), "x", false);
    huge.body = Some(Bytes::from(vec![b'a'; (1 << 20) + 4096]));
    big.send_refused(&huge.to_bytes()).await;
    let r = big.response().await;
    assert_eq!(r.status, 413);
    assert_eq!(r.transaction_id, huge.transaction_id);
    assert!(big.closed().await);
    let c = fx.relay.counters();
    assert_eq!(c.too_large, 1, "{c:?}");

    // the relay still serves the others
    let mut alice2 = fx.authed(false, "alice").await;
    let fine = alice2.text_to(&bob.a_path(), "still here", false);
    alice2.send(&fine).await;
    assert_eq!(alice2.response().await.status, 200);
}

#[tokio::test]
async fn connection_limit_and_idle_timeout() {
    let fx = Fixture::start(|m| {
        m.max_connections = 2;
        m.idle_timeout_secs = 1;
    })
    .await;
    let _a = fx.connect(false, "a").await;
    let _b = fx.connect(false, "b").await;
    let mut c = fx.connect(false, "c").await;
    assert!(c.closed().await, "the third connection is refused");
    assert_eq!(fx.relay.counters().connections_refused, 1);
    drop((_a, _b));
    // idle connections are closed after the timeout
    let started = Instant::now();
    let mut d = loop {
        // the slots free up once the server notices the closed sockets
        let mut d = fx.connect(false, "d").await;
        d.auth_request(None).await;
        match d.next().await {
            Some(_) => break d,
            None => {
                assert!(started.elapsed() < STEP, "the slots never freed up");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let idle_from = Instant::now();
    assert!(d.closed().await);
    assert!(idle_from.elapsed() >= Duration::from_millis(800));
    assert!(fx.relay.counters().idle_closed >= 1);
}

/// Sends `total` bytes from alice to bob in chunks; returns the sha256 of what was sent.
async fn send_bulk(
    wr: &mut WriteHalf<Box<dyn Io>>,
    mut chunker: Chunker,
    total: usize,
    written: &std::sync::atomic::AtomicUsize,
) -> [u8; 32] {
    let mut hash = Sha256::new();
    let mut seed = 0x1234_5678_u32;
    while !chunker.is_finished() {
        let n = chunker.next_len();
        let data: Vec<u8> = (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 24) as u8
            })
            .collect();
        hash.update(&data);
        let chunk = chunker.next_chunk(&mut rand::rng(), &data, false).unwrap();
        let bytes = chunk.to_bytes();
        wr.write_all(&bytes).await.unwrap();
        written.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
    wr.flush().await.unwrap();
    assert_eq!(chunker.position() as usize, total);
    hash.finalize().into()
}

/// A chunker for `total` bytes of binary content from `alice` to `bob` in `chunk`-byte chunks.
fn bulk_chunker(alice: &Client, bob: &Client, total: usize, chunk: usize) -> Chunker {
    let mut to_path = alice.path.clone();
    to_path.extend(bob.a_path());
    Chunker::new(
        &to_path,
        std::slice::from_ref(&alice.local),
        &new_message_id(&mut rand::rng()),
        "application/octet-stream",
        Some(total as u64),
        chunk,
    )
}

/// Reads a sender's hop-by-hop responses until `chunks` 200s came (anything else fails the
/// test); returns their count.
async fn read_oks(mut rd: ReadHalf<Box<dyn Io>>, chunks: usize) -> usize {
    let mut framer = Framer::default();
    let mut buf = vec![0; 64 * 1024];
    let mut oks = 0usize;
    while oks < chunks {
        let n = rd.read(&mut buf).await.unwrap();
        assert!(n > 0, "the relay closed a sender's connection");
        framer.push(&buf[..n]);
        while let Some(m) = framer.pop().unwrap() {
            match m {
                Message::Response(r) if r.status == 200 => oks += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    oks
}

/// Receives `total` bytes of chunks at `bob`, checking they come in order; their SHA-256.
async fn receive_bulk(bob: &mut Client, total: usize) -> [u8; 32] {
    let mut hash = Sha256::new();
    let mut received = 0usize;
    while received < total {
        let chunk = bob.request().await;
        let range = chunk.headers.byte_range().unwrap().unwrap();
        assert_eq!(range.offset() as usize, received, "chunks in order");
        hash.update(chunk.body_bytes());
        received += chunk.body_bytes().len();
    }
    hash.finalize().into()
}

#[tokio::test]
async fn a_slow_receiver_holds_the_sender_back_and_every_byte_arrives() {
    const TOTAL: usize = 64 << 20;
    const CHUNK: usize = 64 * 1024;
    let fx = Fixture::start(|m| m.max_buffered_bytes = 256 * 1024).await;
    let alice = fx.authed(false, "alice").await;
    let mut bob = fx.authed(true, "bob").await;
    let chunker = bulk_chunker(&alice, &bob, TOTAL, CHUNK);
    let Client {
        rd: alice_rd,
        wr: mut alice_wr,
        ..
    } = alice;
    // alice reads her hop-by-hop 200s concurrently, as a real client does
    let oks = tokio::spawn(read_oks(alice_rd, TOTAL / CHUNK));
    let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let w = Arc::clone(&written);
    let sender = tokio::spawn(async move { send_bulk(&mut alice_wr, chunker, TOTAL, &w).await });

    // bob does not read for a while: alice must get stuck well before the end
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stuck_at = written.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        stuck_at < TOTAL / 2,
        "alice wrote {stuck_at} bytes while bob read nothing: the relay buffers without bound"
    );

    // now bob reads everything and it is byte-identical
    let started = Instant::now();
    let received_hash = receive_bulk(&mut bob, TOTAL).await;
    let elapsed = started.elapsed();
    let sent_hash = sender.await.unwrap();
    assert_eq!(received_hash, sent_hash);
    assert_eq!(oks.await.unwrap(), TOTAL / CHUNK);
    eprintln!(
        "msrp relay throughput (TCP -> relay -> TLS, 64 KiB chunks): {:.1} MB/s",
        TOTAL as f64 / 1e6 / elapsed.as_secs_f64()
    );
    let c = fx.relay.counters();
    assert_eq!(c.forwarded_bytes, TOTAL as u64);
}

#[tokio::test]
async fn sessions_end_with_their_connection_and_on_shutdown() {
    let fx = Fixture::start(|_| {}).await;
    let mut alice = fx.authed(false, "alice").await;
    let bob = fx.authed(false, "bob").await;
    let bob_path = bob.a_path();
    drop(bob);
    // once bob's connection is gone his session is too: 481
    let started = Instant::now();
    loop {
        let send = alice.text_to(&bob_path, "anyone?", false);
        alice.send(&send).await;
        let r = alice.response().await;
        if r.status == 481 {
            break;
        }
        assert_eq!(r.status, 200);
        assert!(
            started.elapsed() < STEP,
            "bob's session outlived his connection"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fx.relay.session_count(), 1);
    fx.relay.shutdown().await;
    assert!(alice.closed().await);
    let started = Instant::now();
    while fx.relay.connection_count() > 0 {
        assert!(
            started.elapsed() < STEP,
            "connections outlived the shutdown"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fx.relay.session_count(), 0);
}

/// Reads an environment variable as a number, with a default.
fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Several senders and receivers relayed at once, every byte checked; prints the relay's
/// throughput as `msrp_relay_throughput …` (the line `cargo xtask bench msrp` reports, run in
/// release with `TANDEM_MSRP_BENCH_MB` / `TANDEM_MSRP_BENCH_PAIRS` / `TANDEM_MSRP_BENCH_CHUNK`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_pairs_relay_every_byte_and_report_throughput() {
    let mb = env_num("TANDEM_MSRP_BENCH_MB", 16);
    let pairs = env_num("TANDEM_MSRP_BENCH_PAIRS", 2).max(1);
    let chunk = env_num("TANDEM_MSRP_BENCH_CHUNK", 64 * 1024).clamp(1024, 1 << 20);
    let total = mb << 20;
    let fx = Fixture::start(|_| {}).await;
    let mut tasks = Vec::new();
    let started = Instant::now();
    for p in 0..pairs {
        let tls = p % 2 == 1;
        let alice = fx.authed(tls, "alice").await;
        let mut bob = fx.authed(!tls, "bob").await;
        let chunker = bulk_chunker(&alice, &bob, total, chunk);
        let Client {
            rd: alice_rd,
            wr: mut alice_wr,
            ..
        } = alice;
        let chunks = total.div_ceil(chunk);
        let oks = tokio::spawn(read_oks(alice_rd, chunks));
        let sender = tokio::spawn(async move {
            let written = std::sync::atomic::AtomicUsize::new(0);
            send_bulk(&mut alice_wr, chunker, total, &written).await
        });
        let receiver = tokio::spawn(async move { receive_bulk(&mut bob, total).await });
        tasks.push((sender, receiver, oks));
    }
    for (sender, receiver, oks) in tasks {
        let sent = sender.await.unwrap();
        assert_eq!(receiver.await.unwrap(), sent, "byte-identical");
        oks.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let bytes = (total * pairs) as f64;
    println!(
        "msrp_relay_throughput pairs={pairs} chunk={chunk} total_mb={:.1} secs={secs:.2} mb_per_s={:.1}",
        bytes / 1e6,
        bytes / 1e6 / secs
    );
    assert_eq!(fx.relay.counters().forwarded_bytes, (total * pairs) as u64);
}

#[test]
fn the_msrp_section_parses_with_defaults_and_rejects_typos() {
    let c = LabConfig::from_toml_str(
        "[msrp]\nport = 0\ntls_port = 3000\nhost = \"relay.example\"\nmax_chunk_bytes = 65536\n",
    )
    .unwrap();
    assert!(c.msrp.enabled);
    assert_eq!(c.msrp.port, Some(0));
    assert_eq!(c.msrp.tls_port, Some(3000));
    assert_eq!(c.msrp.host.as_deref(), Some("relay.example"));
    assert_eq!(c.msrp.max_chunk_bytes, 65536);
    assert_eq!(c.msrp.max_buffered_bytes, 4 << 20);
    assert!(LabConfig::from_toml_str("[msrp]\nprot = 1\n").is_err());
    // default ports, ephemeral ones when the SIP listeners are ephemeral
    let d = MsrpRelayConfig::default();
    let fixed = [SocketAddr::from(([10, 0, 0, 1], 5060))];
    let (tcp, tls) = d.bind_addrs(&fixed);
    assert_eq!((tcp.port(), tls.port()), (2855, 2856));
    assert_eq!(tcp.ip(), fixed[0].ip());
    let (tcp, tls) = d.bind_addrs(&[SocketAddr::from(([127, 0, 0, 1], 0))]);
    assert_eq!((tcp.port(), tls.port()), (0, 0));
}

#[tokio::test]
async fn the_lab_server_reports_the_relay_in_its_ready_line() {
    use tandem_labserver::server::LabServer;
    for enabled in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = LabConfig {
            domain: DOMAIN.to_string(),
            data_dir: dir.path().to_path_buf(),
            demo_users: false,
            ..LabConfig::default()
        };
        config.listen.udp = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
        config.listen.tcp = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
        config.listen.tls = vec![];
        config.msrp.enabled = enabled;
        let store = Store::open_in(dir.path()).await.unwrap();
        store.add_user("alice", DOMAIN, "alicepw").await.unwrap();
        let ca = LabCa::load_or_create(dir.path(), &[DOMAIN.to_string()]).unwrap();
        let server = LabServer::start(config, store, ca).await.unwrap();
        let line = server.ready_line();
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
                .map(|v| v.parse::<SocketAddr>().unwrap())
        };
        if enabled {
            let msrp = field("msrp").unwrap_or_else(|| panic!("no msrp= in {line}"));
            let msrps = field("msrps").unwrap_or_else(|| panic!("no msrps= in {line}"));
            assert_ne!(msrp.port(), 0);
            assert_ne!(msrps.port(), 0);
            // the relay answers an AUTH with a challenge
            let tcp = TcpStream::connect(msrp).await.unwrap();
            let (rd, wr) = tokio::io::split(Box::new(tcp) as Box<dyn Io>);
            let mut c = Client {
                rd,
                wr,
                framer: Framer::default(),
                buf: vec![0; 4096],
                local: MsrpUri::new(false, "127.0.0.1", 40000, "probe"),
                relay: MsrpUri::parse(&format!("msrp://{msrp};tcp")).unwrap(),
                path: Vec::new(),
            };
            c.auth("alice", "alicepw").await;
            assert_eq!(c.path[0].port, Some(msrp.port()));
        } else {
            assert!(field("msrp").is_none(), "{line}");
        }
        server.shutdown().await.unwrap();
    }
}
