//! Shared helpers for the lab server's SIP tests: an in-process lab on loopback with a SQLite
//! store in a temporary directory, and a minimal UDP user agent that writes SIP by hand.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tandem_labserver::ca::LabCa;
use tandem_labserver::config::LabConfig;
use tandem_labserver::server::LabServer;
use tandem_labserver::store::Store;
use tandem_proto::Transport;
use tandem_proto::auth::{Algorithm, Challenge, DigestClient};
use tandem_proto::msg::{Frame, HeaderName, Message, Method, Request, Response, StreamFramer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The lab domain used by every test.
pub const DOMAIN: &str = "tandem.lab";

/// A lab server for one test; the temporary directory lives as long as it does.
pub struct Lab {
    pub server: Option<LabServer>,
    pub store: Store,
    pub dir: tempfile::TempDir,
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub tls: Option<SocketAddr>,
    pub tls_client: Option<std::sync::Arc<rustls::ClientConfig>>,
    pub config: LabConfig,
}

/// The default test configuration: loopback UDP+TCP on free ports, no TLS.
pub fn test_config(dir: &std::path::Path) -> LabConfig {
    let mut config = LabConfig {
        domain: DOMAIN.to_string(),
        data_dir: dir.to_path_buf(),
        demo_users: false,
        ..LabConfig::default()
    };
    config.listen.udp = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    config.listen.tcp = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    config.listen.tls = vec![];
    // Offer both algorithms (RFC 8760 order) so the tests cover SHA-256 as well as MD5.
    config.auth.algorithms = vec!["SHA-256".to_string(), "MD5".to_string()];
    config
}

impl Lab {
    /// Starts a lab with users alice/bob/carol (passwords `<name>pw`) after `tweak` edits the config.
    pub async fn start(tweak: impl FnOnce(&mut LabConfig)) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let store = Store::open_in(dir.path()).await.unwrap();
        for u in ["alice", "bob", "carol", "labuser"] {
            store.add_user(u, DOMAIN, &format!("{u}pw")).await.unwrap();
        }
        let mut lab = Lab {
            server: None,
            store,
            dir,
            udp: SocketAddr::from(([127, 0, 0, 1], 9)),
            tcp: SocketAddr::from(([127, 0, 0, 1], 9)),
            tls: None,
            tls_client: None,
            config,
        };
        lab.boot().await;
        lab
    }

    /// (Re)starts the server on the same store.
    pub async fn boot(&mut self) {
        let ca = LabCa::load_or_create(self.dir.path(), &[DOMAIN.to_string()]).unwrap();
        self.tls_client = Some(ca.client_config().unwrap());
        let server = LabServer::start(self.config.clone(), self.store.clone(), ca)
            .await
            .unwrap();
        self.udp = server.local_addr(Transport::Udp).unwrap();
        self.tcp = server.local_addr(Transport::Tcp).unwrap();
        self.tls = server.local_addr(Transport::Tls);
        self.server = Some(server);
    }

    /// Shuts the server down cleanly (flushing state).
    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.unwrap();
        }
    }

    /// A UA for `user` (password `<user>pw`) talking to this lab over UDP.
    pub async fn ua(&self, user: &str) -> Ua {
        Ua::new(user, &format!("{user}pw"), self.udp).await
    }
}

/// A byte stream a UA can talk SIP over (TCP or TLS).
pub trait SipStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> SipStream for T {}

/// A TCP or TLS connection with its SIP stream framer.
pub struct TcpConn {
    stream: Box<dyn SipStream>,
    framer: StreamFramer,
}

/// A hand-written user agent over UDP (or one TCP connection).
pub struct Ua {
    pub sock: UdpSocket,
    pub tcp: Option<tokio::sync::Mutex<TcpConn>>,
    /// `tcp` or `tls` when talking over a stream.
    pub stream_kind: Option<&'static str>,
    pub addr: SocketAddr,
    pub server: SocketAddr,
    pub user: String,
    pub password: String,
    pub call_id: String,
    pub tag: String,
    pub cseq: u32,
}

pub fn rand_token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl Ua {
    pub async fn new(user: &str, password: &str, server: SocketAddr) -> Ua {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        Ua {
            sock,
            tcp: None,
            stream_kind: None,
            addr,
            server,
            user: user.to_string(),
            password: password.to_string(),
            call_id: format!("{}@test", rand_token()),
            tag: rand_token(),
            cseq: 0,
        }
    }

    /// A UA that talks to `server` over one TCP connection (its contact is the connection's
    /// local address, where nothing listens: requests must come back over the connection).
    pub async fn new_tcp(user: &str, password: &str, server: SocketAddr) -> Ua {
        let mut ua = Ua::new(user, password, server).await;
        let stream = TcpStream::connect(server).await.unwrap();
        ua.addr = stream.local_addr().unwrap();
        ua.tcp = Some(tokio::sync::Mutex::new(TcpConn {
            stream: Box::new(stream),
            framer: StreamFramer::new(65_536),
        }));
        ua.stream_kind = Some("tcp");
        ua
    }

    /// A UA that talks to `server` over one TLS connection, trusting `tls`'s roots.
    pub async fn new_tls(
        user: &str,
        password: &str,
        server: SocketAddr,
        tls: std::sync::Arc<rustls::ClientConfig>,
    ) -> Ua {
        let mut ua = Ua::new(user, password, server).await;
        let tcp = TcpStream::connect(server).await.unwrap();
        ua.addr = tcp.local_addr().unwrap();
        let name = rustls_pki_types::ServerName::try_from(DOMAIN.to_string()).unwrap();
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .unwrap();
        ua.tcp = Some(tokio::sync::Mutex::new(TcpConn {
            stream: Box::new(stream),
            framer: StreamFramer::new(65_536),
        }));
        ua.stream_kind = Some("tls");
        ua
    }

    fn stream_transport(&self) -> Option<&'static str> {
        self.stream_kind
    }

    /// This UA's own contact URI.
    pub fn contact(&self) -> String {
        match self.stream_transport() {
            Some(t) => format!("sip:{}@{};transport={t}", self.user, self.addr),
            None => format!("sip:{}@{}", self.user, self.addr),
        }
    }

    pub fn via(&self) -> String {
        let t = self
            .stream_transport()
            .unwrap_or("udp")
            .to_ascii_uppercase();
        format!(
            "SIP/2.0/{t} {};branch=z9hG4bK{};rport",
            self.addr,
            rand_token()
        )
    }

    async fn send_bytes(&self, data: &[u8], to: SocketAddr) {
        match &self.tcp {
            Some(conn) => conn.lock().await.stream.write_all(data).await.unwrap(),
            None => {
                self.sock.send_to(data, to).await.unwrap();
            }
        }
    }

    pub async fn send_text(&self, text: &str) {
        self.send_bytes(text.as_bytes(), self.server).await;
    }

    pub async fn send(&self, msg: &Message) {
        self.send_bytes(&msg.to_bytes(), self.server).await;
    }

    pub async fn send_to(&self, msg: &Message, to: SocketAddr) {
        self.send_bytes(&msg.to_bytes(), to).await;
    }

    /// The next message within `secs`, or None.
    pub async fn recv_within(&self, secs: f64) -> Option<(Message, SocketAddr)> {
        let mut buf = vec![0u8; 65_535];
        if let Some(conn) = &self.tcp {
            let mut conn = conn.lock().await;
            let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
            loop {
                match conn.framer.next() {
                    Some(Ok(Frame::Message(data))) => {
                        return Some((Message::parse(data).unwrap(), self.server));
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => panic!("framing: {e}"),
                    None => {}
                }
                let n = match tokio::time::timeout_at(deadline, conn.stream.read(&mut buf)).await {
                    Ok(Ok(0)) | Err(_) => return None,
                    Ok(Ok(n)) => n,
                    Ok(Err(e)) => panic!("tcp read: {e}"),
                };
                conn.framer.push(&buf[..n]);
            }
        }
        loop {
            let r =
                tokio::time::timeout(Duration::from_secs_f64(secs), self.sock.recv_from(&mut buf))
                    .await;
            let (n, from) = match r {
                Ok(Ok(x)) => x,
                _ => return None,
            };
            let data = Bytes::copy_from_slice(&buf[..n]);
            if data.iter().all(|b| *b == b'\r' || *b == b'\n') {
                continue;
            }
            return Some((Message::parse(data).unwrap(), from));
        }
    }

    /// The next response other than 100 Trying (panics after 5 s).
    pub async fn response(&self) -> Response {
        loop {
            match self.recv_within(5.0).await {
                Some((Message::Response(r), _)) if r.status == 100 => continue,
                Some((Message::Response(r), _)) => return r,
                Some((Message::Request(r), _)) => {
                    panic!("expected a response, got {} {}", r.method, r.uri)
                }
                None => panic!("no response within 5 s"),
            }
        }
    }

    /// The next response whose CSeq method is `method` (other than 100).
    pub async fn response_for(&self, method: Method) -> Response {
        loop {
            let r = self.response().await;
            if r.headers.cseq().unwrap().method == method {
                return r;
            }
        }
    }

    /// The next request (panics after `secs`).
    pub async fn request(&self, secs: f64) -> (Request, SocketAddr) {
        loop {
            match self.recv_within(secs).await {
                Some((Message::Request(r), from)) => return (r, from),
                Some((Message::Response(_), _)) => continue,
                None => panic!("{}: no request within {secs} s", self.user),
            }
        }
    }

    /// A REGISTER for `aor_user` (default: ours) with the given Contact lines and Expires.
    pub fn register_request(
        &mut self,
        aor_user: Option<&str>,
        contacts: &[String],
        expires: Option<u32>,
    ) -> Request {
        self.cseq += 1;
        let aor = format!("sip:{}@{}", aor_user.unwrap_or(&self.user), DOMAIN);
        let mut text = format!(
            "REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: <{aor}>;tag={}\r\nTo: <{aor}>\r\nCall-ID: {}\r\nCSeq: {} REGISTER\r\n",
            self.via(),
            self.tag,
            self.call_id,
            self.cseq
        );
        for c in contacts {
            text.push_str(&format!("Contact: {c}\r\n"));
        }
        if let Some(e) = expires {
            text.push_str(&format!("Expires: {e}\r\n"));
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        Request::parse(Bytes::from(text)).unwrap()
    }

    /// Re-sends `request` with credentials answering `challenge_response` (fresh Via, CSeq+1),
    /// using only challenges of `alg` when given.
    pub fn authorize(
        &mut self,
        request: &Request,
        challenge_response: &Response,
        alg: Option<Algorithm>,
    ) -> Request {
        let (ch_name, cred_name) = if challenge_response.status == 407 {
            (
                HeaderName::ProxyAuthenticate,
                HeaderName::ProxyAuthorization,
            )
        } else {
            (HeaderName::WwwAuthenticate, HeaderName::Authorization)
        };
        let challenges: Vec<Challenge> = challenge_response
            .headers
            .get_all(&ch_name)
            .map(|v| Challenge::parse(std::str::from_utf8(v).unwrap()).unwrap())
            .filter(|c| alg.is_none_or(|a| c.algorithm == a))
            .collect();
        assert!(!challenges.is_empty(), "no usable challenge");
        let mut client = DigestClient::new(&self.user, &self.password);
        let creds = client
            .authorize(
                &challenges,
                request.method.as_str(),
                &request.uri.to_string(),
                &rand_token(),
            )
            .unwrap();
        let mut r = request.clone();
        self.cseq += 1;
        r.headers.set(
            HeaderName::CSeq,
            format!("{} {}", self.cseq, request.method.as_str()),
        );
        r.headers.set(HeaderName::Via, self.via());
        r.headers.remove(&cred_name);
        r.headers.push(cred_name, creds.to_string());
        r
    }

    /// REGISTER with digest (challenge, then credentials); returns the final response.
    pub async fn register(&mut self, contacts: &[String], expires: Option<u32>) -> Response {
        let req = self.register_request(None, contacts, expires);
        self.send(&Message::Request(req.clone())).await;
        let r = self.response().await;
        if r.status != 401 {
            return r;
        }
        let req = self.authorize(&req, &r, None);
        self.send(&Message::Request(req)).await;
        self.response().await
    }

    /// Registers our own contact for 3600 s and asserts 200.
    pub async fn register_self(&mut self) {
        let c = format!("<{}>", self.contact());
        let r = self.register(&[c], Some(3600)).await;
        assert_eq!(
            r.status, 200,
            "{} could not register: {}",
            self.user, r.reason
        );
    }

    /// An INVITE from us to `target` (new Call-ID and tag per call).
    pub fn invite(&mut self, target: &str) -> Request {
        self.call_id = format!("{}@test", rand_token());
        self.tag = rand_token();
        self.cseq += 1;
        let body = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
            self.addr.port() + 1
        );
        let text = format!(
            "INVITE {target} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: <sip:{}@{DOMAIN}>;tag={}\r\nTo: <{target}>\r\nCall-ID: {}\r\nCSeq: {} INVITE\r\nContact: <{}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            self.via(),
            self.user,
            self.tag,
            self.call_id,
            self.cseq,
            self.contact(),
            body.len()
        );
        Request::parse(Bytes::from(text)).unwrap()
    }

    /// Sends an INVITE to `target`, answering the proxy's 407 with our credentials; returns the
    /// request actually sent last (with credentials).
    pub async fn call(&mut self, target: &str) -> Request {
        let inv = self.invite(target);
        self.send(&Message::Request(inv.clone())).await;
        let r = self.response().await;
        assert_eq!(
            r.status, 407,
            "expected a proxy challenge, got {}",
            r.status
        );
        self.ack_non_2xx(&inv, &r).await;
        let inv = self.authorize(&inv, &r, None);
        self.send(&Message::Request(inv.clone())).await;
        inv
    }

    /// The ACK for a non-2xx final response (same branch as the INVITE).
    pub async fn ack_non_2xx(&self, invite: &Request, response: &Response) {
        let mut ack = Request::new(Method::Ack, invite.uri.clone());
        for name in [HeaderName::Via, HeaderName::From, HeaderName::CallId] {
            if let Some(v) = invite.headers.get(&name) {
                ack.headers.push(name.clone(), v.clone());
            }
        }
        ack.headers.push(
            HeaderName::To,
            response.headers.get(&HeaderName::To).unwrap().clone(),
        );
        ack.headers.push(
            HeaderName::CSeq,
            format!("{} ACK", invite.headers.cseq().unwrap().seq),
        );
        ack.headers.push(HeaderName::MaxForwards, "70");
        self.send(&Message::Request(ack)).await;
    }

    /// An in-dialog request (ACK for 2xx, BYE) after `response` (a 2xx to our INVITE).
    pub fn in_dialog(&mut self, method: Method, invite: &Request, response: &Response) -> Request {
        let contact = response.headers.contacts().unwrap();
        let target = match contact.first() {
            Some(tandem_proto::msg::ContactValue::Addr(na)) => na.uri.clone(),
            _ => panic!("2xx without Contact"),
        };
        let mut req = Request::new(method.clone(), target);
        req.headers.push(HeaderName::Via, self.via());
        req.headers.push(HeaderName::MaxForwards, "70");
        req.headers.push(
            HeaderName::From,
            invite.headers.get(&HeaderName::From).unwrap().clone(),
        );
        req.headers.push(
            HeaderName::To,
            response.headers.get(&HeaderName::To).unwrap().clone(),
        );
        req.headers.push(HeaderName::CallId, self.call_id.clone());
        let seq = if method == Method::Ack {
            invite.headers.cseq().unwrap().seq
        } else {
            self.cseq += 1;
            self.cseq
        };
        req.headers
            .push(HeaderName::CSeq, format!("{seq} {}", method.as_str()));
        // Route set: the Record-Route of the 2xx, reversed (we are the caller).
        let mut rr = response.headers.values(&HeaderName::RecordRoute);
        rr.reverse();
        for r in rr {
            req.headers.push(HeaderName::Route, r);
        }
        req
    }
}

/// An in-dialog request from the callee side (we answered `invite` with `to_tag`): Route set
/// from the Record-Route of the INVITE in order, target the caller's Contact.
pub fn callee_request(
    ua: &Ua,
    method: Method,
    invite: &Request,
    to_tag: &str,
    seq: u32,
) -> Request {
    let target = match invite.headers.contacts().unwrap().first() {
        Some(tandem_proto::msg::ContactValue::Addr(na)) => na.uri.clone(),
        _ => panic!("INVITE without Contact"),
    };
    let mut req = Request::new(method.clone(), target);
    req.headers.push(HeaderName::Via, ua.via());
    req.headers.push(HeaderName::MaxForwards, "70");
    let mut to = invite.headers.to().unwrap();
    to.set_tag(to_tag);
    req.headers.push(HeaderName::From, to.to_string());
    req.headers.push(
        HeaderName::To,
        invite.headers.get(&HeaderName::From).unwrap().clone(),
    );
    req.headers.push(
        HeaderName::CallId,
        invite.headers.call_id().unwrap().to_string(),
    );
    req.headers
        .push(HeaderName::CSeq, format!("{seq} {}", method.as_str()));
    for r in invite.headers.values(&HeaderName::RecordRoute) {
        req.headers.push(HeaderName::Route, r);
    }
    req
}

/// A response to `request` from a UAS: copies the dialog headers, adds a To tag and Contact.
pub fn answer(request: &Request, status: u16, to_tag: &str, contact: &str) -> Response {
    let mut r = Response::for_request(request, status);
    if status > 100 {
        let mut to = r.headers.to().unwrap();
        if to.tag().is_none() {
            to.set_tag(to_tag);
        }
        r.headers.set(HeaderName::To, to.to_string());
    }
    if (200..300).contains(&status) || (101..200).contains(&status) {
        r.headers.push(HeaderName::Contact, format!("<{contact}>"));
        // A UAS copies Record-Route into its responses.
        for v in request.headers.values(&HeaderName::RecordRoute) {
            r.headers.push(HeaderName::RecordRoute, v);
        }
    }
    r
}

/// Polls `f` until it returns Some, for up to `secs`.
pub async fn eventually<T, F, Fut>(secs: f64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("condition not met within {secs} s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
