//! Connections, relay sessions and forwarding (RFC 4976 §5–§7).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tandem_proto::msrp::message::{MIN_EXPIRES, end_line};
use tandem_proto::msrp::{
    ByteRange, Continuation, FailureReport, Framer, FramerLimits, Headers, Message, Method,
    MsrpError, MsrpUri, Request, Response, StatusHeader, new_transaction_id, relay, report,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;

use super::MsrpRelayStats;
use super::auth::{AuthOutcome, RelayAuth};

/// How long a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to a next hop may take.
const OUTBOUND_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often pending transactions and sessions are checked for expiry (at most).
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Most forwarded SENDs awaiting a response per connection; beyond that they are forwarded
/// without a failure-report record (counted as untracked by the log).
const MAX_PENDING: usize = 8192;
/// Messages queued toward one connection (the byte budget is the real bound).
const QUEUE_LEN: usize = 1024;
/// Wrong AUTH credentials tolerated on one connection before it is closed.
const MAX_AUTH_FAILURES: u32 = 5;
/// Bytes of a message's head kept to answer a chunk that turns out too large with 413.
const HEAD_CAPTURE: usize = 8 * 1024;
/// How long, and how many bytes, a connection is drained after a fatal framing error.
const LINGER_TIME: Duration = Duration::from_secs(2);
/// See [`LINGER_TIME`].
const LINGER_BYTES: usize = 16 << 20;
/// Read buffer size.
const READ_BUF: usize = 64 * 1024;

/// The relay's effective settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The host in the relay's URIs.
    pub(crate) host: String,
    /// Host names and addresses that mean this relay in a URI.
    pub(crate) names: Vec<String>,
    /// The TCP listener's port.
    pub(crate) tcp_port: u16,
    /// The TLS listener's port.
    pub(crate) tls_port: u16,
    /// Byte budget of each connection's outbound queue.
    pub(crate) max_buffered_bytes: usize,
    /// Largest chunk body.
    pub(crate) max_chunk_bytes: usize,
    /// Idle connections are closed after this long.
    pub(crate) idle_timeout: Duration,
    /// Shortest Expires granted.
    pub(crate) min_expires: u32,
    /// Longest Expires granted.
    pub(crate) max_expires: u32,
    /// Expires granted when none is asked for.
    pub(crate) default_expires: u32,
    /// Sessions per connection.
    pub(crate) max_sessions_per_connection: usize,
    /// Bytes per second read from one connection (0: unlimited).
    pub(crate) rate_limit: u64,
    /// How long a forwarded SEND may wait for the next hop's response before a 408 REPORT.
    pub(crate) transaction_timeout: Duration,
}

/// A relay session: a URI issued to an authenticated client on one connection.
struct Session {
    conn: Arc<Conn>,
    uri: MsrpUri,
    /// The From-Path URI of the AUTH that created it (the client's own URI).
    client: Option<MsrpUri>,
    expires: Instant,
}

/// A forwarded SEND awaiting the next hop's response, for failure REPORTs.
struct Pending {
    /// The connection the SEND came from.
    sender: Arc<Conn>,
    /// Its headers as received.
    headers: Headers,
    /// Its body length.
    body_len: u64,
    /// When it was forwarded.
    at: Instant,
}

/// One message queued toward a connection, holding its share of the byte budget.
struct Outbound {
    head: Vec<u8>,
    body: Option<Bytes>,
    tail: Vec<u8>,
    _permit: OwnedSemaphorePermit,
}

/// A client connection as seen by other connections' tasks.
pub(crate) struct Conn {
    id: u64,
    peer: SocketAddr,
    tls: bool,
    queue: mpsc::Sender<Outbound>,
    budget: Arc<Semaphore>,
    max_budget: usize,
    pending: Mutex<HashMap<String, Pending>>,
    closed: watch::Sender<bool>,
    auth_failures: AtomicU32,
    /// Body bytes received on this connection and forwarded.
    forwarded_bytes: AtomicU64,
    /// Set by the writer after each write: a connection that only receives is not idle.
    wrote: std::sync::atomic::AtomicBool,
}

impl Conn {
    fn close(&self) {
        self.closed.send_replace(true);
        self.budget.close();
    }

    fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }
}

/// Why a message could not be queued toward a connection.
#[derive(Debug)]
struct Gone;

/// State shared by the listeners and every connection task.
pub(crate) struct Relay {
    pub(crate) settings: Settings,
    pub(crate) stats: MsrpRelayStats,
    auth: RelayAuth,
    limit: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
    sessions: Mutex<HashMap<String, Session>>,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    /// Connections the relay opened to peers without a relay, by `host:port`.
    outbound: Mutex<HashMap<String, Arc<Conn>>>,
    next_id: AtomicU64,
    /// Itself, to start connection tasks from a request handler.
    me: std::sync::Weak<Relay>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Relay {
    /// Shared state for a relay with these settings.
    pub(crate) fn new(
        settings: Settings,
        auth: RelayAuth,
        limit: Arc<Semaphore>,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Relay> {
        Arc::new_cyclic(|me| Relay {
            me: me.clone(),
            outbound: Mutex::new(HashMap::new()),
            settings,
            stats: MsrpRelayStats::default(),
            auth,
            limit,
            shutdown,
            sessions: Mutex::new(HashMap::new()),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        })
    }

    /// The relay's URI for the TCP or TLS listener (no session id).
    pub(crate) fn relay_uri(&self, tls: bool) -> MsrpUri {
        let port = if tls {
            self.settings.tls_port
        } else {
            self.settings.tcp_port
        };
        MsrpUri {
            secure: tls,
            user: None,
            host: self.settings.host.clone(),
            port: Some(port),
            session_id: None,
            transport: "tcp".to_owned(),
            params: Vec::new(),
        }
    }

    /// Open connections.
    pub(crate) fn connection_count(&self) -> usize {
        lock(&self.conns).len()
    }

    /// Live sessions.
    pub(crate) fn session_count(&self) -> usize {
        let now = Instant::now();
        lock(&self.sessions)
            .values()
            .filter(|s| s.expires > now && !s.conn.is_closed())
            .count()
    }

    /// Closes every connection and forgets every session.
    pub(crate) async fn close_all(&self) {
        let conns: Vec<Arc<Conn>> = lock(&self.conns).values().cloned().collect();
        for c in conns {
            c.close();
        }
        lock(&self.sessions).clear();
    }

    /// Whether `uri` names this relay (host, scheme and port of one of its listeners).
    fn is_ours(&self, uri: &MsrpUri) -> bool {
        let port = if uri.secure {
            self.settings.tls_port
        } else {
            self.settings.tcp_port
        };
        uri.port == Some(port)
            && uri.transport.eq_ignore_ascii_case("tcp")
            && self
                .settings
                .names
                .iter()
                .any(|n| n.eq_ignore_ascii_case(&uri.host))
    }

    /// The live session a URI of this relay names.
    fn lookup(&self, uri: &MsrpUri) -> Option<Arc<Conn>> {
        if !self.is_ours(uri) {
            return None;
        }
        let sid = uri.session_id.as_deref()?;
        let sessions = lock(&self.sessions);
        let s = sessions.get(sid)?;
        (s.expires > Instant::now() && !s.conn.is_closed() && s.uri.secure == uri.secure)
            .then(|| Arc::clone(&s.conn))
    }

    /// Queues bytes toward `conn`, waiting while its byte budget is used up.
    async fn enqueue(
        &self,
        conn: &Conn,
        head: Vec<u8>,
        body: Option<Bytes>,
        tail: Vec<u8>,
    ) -> Result<(), Gone> {
        let len = head.len() + body.as_ref().map_or(0, Bytes::len) + tail.len();
        let n = u32::try_from(len.clamp(1, conn.max_budget)).unwrap_or(u32::MAX);
        let mut shutdown = self.shutdown.clone();
        let permit = tokio::select! {
            p = Arc::clone(&conn.budget).acquire_many_owned(n) => p.map_err(|_| Gone)?,
            _ = raised(&mut shutdown) => return Err(Gone),
        };
        conn.queue
            .send(Outbound {
                head,
                body,
                tail,
                _permit: permit,
            })
            .await
            .map_err(|_| Gone)
    }

    async fn send_response(&self, conn: &Conn, response: Response) {
        let _ = self
            .enqueue(conn, response.to_bytes(), None, Vec::new())
            .await;
    }

    /// Answers `request` with `status` on `conn`, as its Failure-Report allows.
    async fn respond(&self, conn: &Conn, request: &Request, status: u16) {
        if let Ok(Some(r)) = report::response_for(request, status) {
            self.send_response(conn, r).await;
        }
    }

    async fn send_request(&self, conn: &Conn, request: Request) -> Result<(), Gone> {
        let mut tail = Vec::with_capacity(48);
        if request.body.is_some() {
            tail.extend_from_slice(b"\r\n");
        }
        tail.extend_from_slice(&end_line(&request.transaction_id, request.continuation));
        tail.extend_from_slice(b"\r\n");
        let head = request.head_bytes();
        self.enqueue(conn, head, request.body, tail).await
    }

    /// Serves one accepted connection until it closes.
    async fn serve<S>(
        self: Arc<Self>,
        stream: S,
        peer: SocketAddr,
        tls: bool,
        _slot: OwnedSemaphorePermit,
        ready: Option<tokio::sync::oneshot::Sender<Arc<Conn>>>,
    ) where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (rd, wr) = tokio::io::split(stream);
        let (queue, rx) = mpsc::channel(QUEUE_LEN);
        let (closed, _) = watch::channel(false);
        let max_budget = self
            .settings
            .max_buffered_bytes
            .min(Semaphore::MAX_PERMITS)
            .min(u32::MAX as usize)
            .max(1);
        let conn = Arc::new(Conn {
            id,
            peer,
            tls,
            queue,
            budget: Arc::new(Semaphore::new(max_budget)),
            max_budget,
            pending: Mutex::new(HashMap::new()),
            closed,
            auth_failures: AtomicU32::new(0),
            forwarded_bytes: AtomicU64::new(0),
            wrote: std::sync::atomic::AtomicBool::new(false),
        });
        lock(&self.conns).insert(id, Arc::clone(&conn));
        if let Some(ready) = ready {
            let _ = ready.send(Arc::clone(&conn));
        }
        tracing::debug!(%peer, tls, id, "MSRP relay: connection");
        let writer = tokio::spawn(write_loop(
            wr,
            rx,
            Arc::clone(&conn),
            self.shutdown.clone(),
            self.settings.idle_timeout,
        ));
        self.read_loop(&conn, rd).await;
        conn.close();
        lock(&self.conns).remove(&id);
        lock(&self.outbound).retain(|_, c| c.id != id);
        lock(&self.sessions).retain(|_, s| s.conn.id != id);
        // SENDs forwarded here and never answered will not be: tell their senders (481)
        let orphans: Vec<Pending> = lock(&conn.pending).drain().map(|(_, p)| p).collect();
        for p in orphans {
            self.failure_report(p, 481).await;
        }
        let _ = writer.await;
        tracing::info!(
            %peer,
            id,
            forwarded_bytes = conn.forwarded_bytes.load(Ordering::Relaxed),
            "MSRP relay: connection closed"
        );
    }

    async fn read_loop<R: AsyncRead + Unpin>(&self, conn: &Arc<Conn>, mut rd: R) {
        let mut framer = Framer::new(FramerLimits {
            max_body_bytes: self.settings.max_chunk_bytes,
            ..FramerLimits::default()
        });
        let mut buf = vec![0u8; READ_BUF];
        // the first bytes of the message being framed, to answer an oversized chunk with 413
        let mut head: Vec<u8> = Vec::new();
        let mut shutdown = self.shutdown.clone();
        let mut closed = conn.closed.subscribe();
        let mut sweep =
            tokio::time::interval(SWEEP_INTERVAL.min(self.settings.transaction_timeout / 2));
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut deadline = tokio::time::Instant::now() + self.settings.idle_timeout;
        let mut pace = Pace::new(self.settings.rate_limit);
        loop {
            let n = tokio::select! {
                r = rd.read(&mut buf) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                },
                _ = tokio::time::sleep_until(deadline) => {
                    if conn.wrote.swap(false, Ordering::Relaxed) {
                        deadline = tokio::time::Instant::now() + self.settings.idle_timeout;
                        continue;
                    }
                    MsrpRelayStats::bump(&self.stats.idle_closed);
                    tracing::debug!(peer = %conn.peer, "MSRP relay: idle connection closed");
                    return;
                }
                _ = sweep.tick() => {
                    self.sweep(conn).await;
                    continue;
                }
                _ = raised(&mut shutdown) => return,
                _ = raised(&mut closed) => return,
            };
            pace.after_read(n).await;
            let data = &buf[..n];
            framer.push(data);
            // bytes of `data` after the last complete message, once one completed in it
            let mut rest_after_boundary: Option<usize> = None;
            loop {
                match framer.pop() {
                    Ok(Some(message)) => {
                        rest_after_boundary = Some(framer.buffered());
                        self.handle(conn, message).await;
                        if conn.is_closed() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let start = capture_start(&head, data, rest_after_boundary);
                        self.framing_failed(conn, &e, &start).await;
                        conn.close();
                        linger(&mut rd, &mut buf).await;
                        return;
                    }
                }
            }
            head = capture_start(&head, data, rest_after_boundary);
            // forwarding may have waited for a slow receiver: that was not idleness
            deadline = tokio::time::Instant::now() + self.settings.idle_timeout;
        }
    }

    /// Counts and logs a stream that cannot be framed; an oversized chunk gets 413 first.
    async fn framing_failed(&self, conn: &Conn, error: &MsrpError, head: &[u8]) {
        MsrpRelayStats::bump(&self.stats.bad_frames);
        tracing::info!(peer = %conn.peer, error = %error, "MSRP relay: closing an unframeable stream");
        if matches!(error, MsrpError::BodyTooLarge { .. }) {
            MsrpRelayStats::bump(&self.stats.too_large);
            if let Some(request) = request_from_head(head) {
                self.respond(conn, &request, 413).await;
            }
        }
    }

    async fn handle(&self, conn: &Arc<Conn>, message: Message) {
        match message {
            Message::Response(r) => self.on_response(conn, r).await,
            Message::Request(r) => self.on_request(conn, r).await,
        }
    }

    async fn on_request(&self, conn: &Arc<Conn>, request: Request) {
        if let Err(e) = request.validate() {
            MsrpRelayStats::bump(&self.stats.bad_requests);
            tracing::debug!(peer = %conn.peer, error = %e, "MSRP relay: malformed request");
            self.respond(conn, &request, e.status_code()).await;
            return;
        }
        match request.method {
            Method::Auth => self.on_auth(conn, request).await,
            Method::Send | Method::Report => self.route(conn, request).await,
            Method::Other(_) => self.respond(conn, &request, 501).await,
        }
    }

    async fn on_auth(&self, conn: &Arc<Conn>, request: Request) {
        let to = request.headers.to_path().unwrap_or_default();
        let for_us = match to.as_slice() {
            [uri] => self.is_ours(uri) && uri.session_id.is_none(),
            _ => false,
        };
        if !for_us {
            MsrpRelayStats::bump(&self.stats.forbidden);
            self.respond(conn, &request, 403).await;
            return;
        }
        match self.auth.check(&request).await {
            AuthOutcome::User(user) => self.grant(conn, &request, user).await,
            AuthOutcome::Challenge {
                stale,
                had_credentials,
            } => {
                let failures = if had_credentials && !stale {
                    MsrpRelayStats::bump(&self.stats.auth_failed);
                    conn.auth_failures.fetch_add(1, Ordering::Relaxed) + 1
                } else {
                    0
                };
                if let Ok(r) = report::auth_challenge(&request, &self.auth.challenge(stale)) {
                    self.send_response(conn, r).await;
                }
                if failures >= MAX_AUTH_FAILURES {
                    tracing::info!(peer = %conn.peer, "MSRP relay: too many failed AUTHs, closing");
                    conn.close();
                }
            }
            AuthOutcome::Malformed => {
                MsrpRelayStats::bump(&self.stats.auth_failed);
                MsrpRelayStats::bump(&self.stats.bad_requests);
                self.respond(conn, &request, 400).await;
            }
            AuthOutcome::StoreFailed => {
                MsrpRelayStats::bump(&self.stats.forbidden);
                self.respond(conn, &request, 403).await;
            }
        }
    }

    /// Issues a session to an authenticated client (200 with Use-Path and Expires).
    async fn grant(&self, conn: &Arc<Conn>, request: &Request, user: String) {
        let asked = match request.headers.expires() {
            Ok(e) => e,
            Err(_) => {
                MsrpRelayStats::bump(&self.stats.bad_requests);
                self.respond(conn, request, 400).await;
                return;
            }
        };
        let s = &self.settings;
        let expires = asked.unwrap_or(s.default_expires).min(s.max_expires);
        if expires < s.min_expires {
            if let Ok(mut r) = Response::for_request(request, 423) {
                r.headers.push(MIN_EXPIRES, s.min_expires.to_string());
                self.send_response(conn, r).await;
            }
            return;
        }
        // The client's own URI: an AUTH from the same URI on the same connection refreshes its
        // session (same Use-Path, new lifetime), since the peer only knows the path in the SDP.
        let client = request
            .headers
            .from_path()
            .ok()
            .and_then(|p| p.into_iter().next());
        let until = Instant::now() + Duration::from_secs(u64::from(expires));
        let grant = {
            let mut sessions = lock(&self.sessions);
            let now = Instant::now();
            sessions.retain(|_, s| s.expires > now && !s.conn.is_closed());
            let refreshed = sessions.values_mut().find(|x| {
                x.conn.id == conn.id && client.is_some() && x.client.as_ref() == client.as_ref()
            });
            if let Some(existing) = refreshed {
                existing.expires = until;
                Some((existing.uri.clone(), true))
            } else if sessions.values().filter(|x| x.conn.id == conn.id).count()
                < s.max_sessions_per_connection
            {
                let sid = format!("{:032x}", rand::random::<u128>());
                let uri = MsrpUri {
                    session_id: Some(sid.clone()),
                    ..self.relay_uri(conn.tls)
                };
                sessions.insert(
                    sid,
                    Session {
                        conn: Arc::clone(conn),
                        uri: uri.clone(),
                        client: client.clone(),
                        expires: until,
                    },
                );
                Some((uri, false))
            } else {
                None
            }
        };
        let Some((uri, refreshed)) = grant else {
            MsrpRelayStats::bump(&self.stats.forbidden);
            self.respond(conn, request, 403).await;
            return;
        };
        MsrpRelayStats::bump(&self.stats.auth_ok);
        if refreshed {
            tracing::debug!(peer = %conn.peer, %user, %uri, expires, "MSRP relay: session refreshed");
        } else {
            tracing::info!(peer = %conn.peer, %user, %uri, expires, "MSRP relay: session issued");
        }
        if let Ok(r) = report::auth_ok(request, std::slice::from_ref(&uri), expires) {
            self.send_response(conn, r).await;
        }
    }

    /// Forwards a SEND or REPORT by its To-Path (RFC 4976 §6).
    async fn route(&self, conn: &Arc<Conn>, mut request: Request) {
        let to = request.headers.to_path().unwrap_or_default();
        let Some(first) = to.first() else {
            return;
        };
        let Some(first_conn) = self.lookup(first) else {
            MsrpRelayStats::bump(&self.stats.no_session);
            self.refuse(conn, &request, 481).await;
            return;
        };
        // Our hops to take off To-Path, and the connection that gets the request.
        let (dest, hops) = if first_conn.id == conn.id {
            // Outgoing from our client: the next hop must be another session of this relay
            // (relay-to-relay forwarding is not supported), followed by its client.
            let next = to.get(1);
            match next.and_then(|n| Some((n, self.lookup(n)?))) {
                Some((n, c)) if to.len() >= 3 => (c, vec![first.clone(), n.clone()]),
                Some(_) => {
                    MsrpRelayStats::bump(&self.stats.bad_requests);
                    self.refuse(conn, &request, 400).await;
                    return;
                }
                None => match next.filter(|n| !self.is_ours(n) && !n.secure) {
                    // a peer without a relay: connect to it
                    Some(n) => match self.outbound(n).await {
                        Some(c) => (c, vec![first.clone()]),
                        None => {
                            MsrpRelayStats::bump(&self.stats.no_session);
                            self.refuse(conn, &request, 481).await;
                            return;
                        }
                    },
                    None => {
                        MsrpRelayStats::bump(&self.stats.no_session);
                        self.refuse(conn, &request, 481).await;
                        return;
                    }
                },
            }
        } else if to.len() >= 2 {
            // Incoming for one of our clients, from its peer (or the peer's relay hop above).
            (first_conn, vec![first.clone()])
        } else {
            MsrpRelayStats::bump(&self.stats.bad_requests);
            self.refuse(conn, &request, 400).await;
            return;
        };
        let original = request.headers.clone();
        for hop in &hops {
            if relay::forward(&mut request, hop).is_err() {
                MsrpRelayStats::bump(&self.stats.bad_requests);
                self.refuse(conn, &request, 400).await;
                return;
            }
        }
        let is_send = request.method == Method::Send;
        let body_len = request.body_bytes().len() as u64;
        let response_to = Request {
            headers: original,
            body: None,
            ..Request::new(&request.transaction_id, request.method.clone())
        };
        let tracked = is_send
            && response_to.headers.failure_report().unwrap_or_default() != FailureReport::No
            && self.track(&dest, conn, &mut request, &response_to.headers, body_len);
        let tid = request.transaction_id.clone();
        if self.send_request(&dest, request).await.is_err() {
            if tracked {
                lock(&dest.pending).remove(&tid);
            }
            MsrpRelayStats::bump(&self.stats.no_session);
            self.refuse(conn, &response_to, 481).await;
            return;
        }
        MsrpRelayStats::bump(&self.stats.forwarded);
        self.stats
            .forwarded_bytes
            .fetch_add(body_len, Ordering::Relaxed);
        conn.forwarded_bytes.fetch_add(body_len, Ordering::Relaxed);
        if is_send {
            // hop-by-hop: queued for the next hop
            self.respond(conn, &response_to, 200).await;
        }
    }

    /// The connection to a peer endpoint (`msrp://` URI that is not this relay): an open one to
    /// the same host and port, else a new TCP connection (counted against `max_connections`).
    async fn outbound(&self, uri: &MsrpUri) -> Option<Arc<Conn>> {
        let host = uri
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_or_default();
        let key = format!("{host}:{port}");
        if let Some(c) = lock(&self.outbound).get(&key).filter(|c| !c.is_closed()) {
            return Some(Arc::clone(c));
        }
        let me = self.me.upgrade()?;
        let Ok(slot) = Arc::clone(&self.limit).try_acquire_owned() else {
            MsrpRelayStats::bump(&self.stats.connections_refused);
            return None;
        };
        let tcp = match tokio::time::timeout(
            OUTBOUND_CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                tracing::info!(%uri, error = %e, "MSRP relay: cannot connect to the next hop");
                return None;
            }
            Err(_) => {
                tracing::info!(%uri, "MSRP relay: connecting to the next hop timed out");
                return None;
            }
        };
        let peer = tcp.peer_addr().ok()?;
        let _ = tcp.set_nodelay(true);
        MsrpRelayStats::bump(&self.stats.connections);
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(serve_outbound(me, tcp, peer, slot, tx));
        let conn = rx.await.ok()?;
        tracing::info!(%uri, %peer, "MSRP relay: connected to a peer without a relay");
        // two requests may race to connect: keep the first, the other stays usable until idle
        Some(Arc::clone(lock(&self.outbound).entry(key).or_insert(conn)))
    }

    /// Records a forwarded SEND so a downstream error becomes a failure REPORT; draws a new
    /// transaction id when the next hop already has one pending with this id.
    fn track(
        &self,
        dest: &Arc<Conn>,
        sender: &Arc<Conn>,
        request: &mut Request,
        original: &Headers,
        body_len: u64,
    ) -> bool {
        let mut pending = lock(&dest.pending);
        if pending.len() >= MAX_PENDING {
            tracing::debug!(peer = %dest.peer, "MSRP relay: too many pending SENDs, not tracking");
            return false;
        }
        let mut tries = 0;
        while pending.contains_key(&request.transaction_id) || request.check_body().is_err() {
            tries += 1;
            if tries > 8 {
                return false;
            }
            request.transaction_id = new_transaction_id(&mut rand::rng());
        }
        pending.insert(
            request.transaction_id.clone(),
            Pending {
                sender: Arc::clone(sender),
                headers: original.clone(),
                body_len,
                at: Instant::now(),
            },
        );
        true
    }

    /// Answers a request the relay cannot forward: a response for SEND, nothing for REPORT.
    async fn refuse(&self, conn: &Conn, request: &Request, status: u16) {
        tracing::debug!(peer = %conn.peer, status, method = %request.method, "MSRP relay: refused");
        if request.method == Method::Send {
            self.respond(conn, request, status).await;
        }
    }

    async fn on_response(&self, conn: &Conn, response: Response) {
        let pending = lock(&conn.pending).remove(&response.transaction_id);
        let Some(p) = pending else {
            MsrpRelayStats::bump(&self.stats.stray_responses);
            return;
        };
        if response.status != 200 {
            self.failure_report(p, response.status).await;
        }
    }

    /// Sends a failure REPORT for a forwarded SEND back to its sender.
    async fn failure_report(&self, p: Pending, status: u16) {
        let partial_ok = p.headers.failure_report().unwrap_or_default() != FailureReport::No;
        if !partial_ok {
            return;
        }
        let range = match p.headers.byte_range() {
            Ok(Some(r)) => ByteRange {
                start: r.start,
                end: Some(r.offset() + p.body_len),
                total: r.total,
            },
            _ => ByteRange {
                start: 1,
                end: Some(p.body_len),
                total: None,
            },
        };
        let Ok(rep) = report::report(
            &mut rand::rng(),
            &p.headers,
            range,
            StatusHeader::new(status),
        ) else {
            return;
        };
        MsrpRelayStats::bump(&self.stats.failure_reports);
        let _ = self.send_request(&p.sender, rep).await;
    }

    /// Times out pending SENDs (408 failure REPORTs) and forgets expired sessions.
    async fn sweep(&self, conn: &Conn) {
        let now = Instant::now();
        let expired: Vec<Pending> = {
            let mut pending = lock(&conn.pending);
            let ids: Vec<String> = pending
                .iter()
                .filter(|(_, p)| now.duration_since(p.at) >= self.settings.transaction_timeout)
                .map(|(k, _)| k.clone())
                .collect();
            ids.iter().filter_map(|k| pending.remove(k)).collect()
        };
        for p in expired {
            self.failure_report(p, 408).await;
        }
        lock(&self.sessions).retain(|_, s| s.expires > now && !s.conn.is_closed());
    }
}

/// The first bytes of the message now being framed: from the last boundary in `data` when one
/// was seen (`rest` bytes remain after it), else `previous` continued with `data`.
fn capture_start(previous: &[u8], data: &[u8], rest: Option<usize>) -> Vec<u8> {
    match rest {
        Some(rest) => {
            let start = data.len().saturating_sub(rest);
            let end = data.len().min(start + HEAD_CAPTURE);
            data[start..end].to_vec()
        }
        None => {
            let mut v = previous.to_vec();
            let room = HEAD_CAPTURE.saturating_sub(v.len());
            v.extend_from_slice(&data[..data.len().min(room)]);
            v
        }
    }
}

/// Rebuilds the start line and headers of a request from the first bytes of its message (to
/// answer it when its body cannot be framed).
fn request_from_head(head: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(&head[..head.len().min(HEAD_CAPTURE)]).ok()?;
    let text = text.trim_start_matches("\r\n");
    let head_end = text.find("\r\n\r\n")?;
    let head_text = &text[..head_end];
    let first = head_text.split("\r\n").next()?;
    let tid = first.strip_prefix("MSRP ")?.split(' ').next()?;
    let mut wire = head_text.as_bytes().to_vec();
    wire.extend_from_slice(b"\r\n");
    wire.extend_from_slice(&end_line(tid, Continuation::Complete));
    wire.extend_from_slice(b"\r\n");
    match Message::parse(&wire).ok()? {
        Message::Request(r) => Some(r),
        Message::Response(_) => None,
    }
}

/// Paces reads to a byte rate: after each read, sleeps until the bytes read so far are due.
struct Pace {
    rate: u64,
    since: tokio::time::Instant,
    bytes: u64,
}

impl Pace {
    fn new(rate: u64) -> Pace {
        Pace {
            rate,
            since: tokio::time::Instant::now(),
            bytes: 0,
        }
    }

    async fn after_read(&mut self, n: usize) {
        if self.rate == 0 {
            return;
        }
        let now = tokio::time::Instant::now();
        self.bytes = self.bytes.saturating_add(n as u64);
        let ahead = Duration::try_from_secs_f64(self.bytes as f64 / self.rate as f64)
            .unwrap_or(Duration::MAX);
        let Some(due) = self.since.checked_add(ahead) else {
            // absurdly far ahead: start a fresh window
            self.since = now;
            self.bytes = 0;
            return;
        };
        if due > now {
            tokio::time::sleep_until(due).await;
        } else if now.duration_since(due) > Duration::from_secs(1) {
            // more than a second behind (the peer was idle): start over
            self.since = now;
            self.bytes = 0;
        }
    }
}

/// After a fatal error: reads and discards what the peer still sends, for a short while, so
/// closing with unread data does not reset the connection before our last response arrives.
async fn linger<R: AsyncRead + Unpin>(rd: &mut R, buf: &mut [u8]) {
    let _ = tokio::time::timeout(LINGER_TIME, async {
        let mut discarded = 0usize;
        while discarded < LINGER_BYTES {
            match rd.read(buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => discarded += n,
            }
        }
    })
    .await;
}

/// [`Relay::serve`] for a connection the relay opened, as a boxed `Send` future: serving can open
/// further connections, and the explicit type ends that recursion for the compiler.
fn serve_outbound(
    relay: Arc<Relay>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
    ready: tokio::sync::oneshot::Sender<Arc<Conn>>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(relay.serve(tcp, peer, false, slot, Some(ready)))
}

/// Accepts connections on one listener (TLS when `tls` is given) until aborted.
pub(crate) async fn accept_loop(
    relay: Arc<Relay>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "MSRP relay: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&relay.limit).try_acquire_owned() else {
            MsrpRelayStats::bump(&relay.stats.connections_refused);
            tracing::info!(%peer, "MSRP relay: connection limit reached, refusing");
            drop(tcp);
            continue;
        };
        MsrpRelayStats::bump(&relay.stats.connections);
        let _ = tcp.set_nodelay(true);
        let relay = Arc::clone(&relay);
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => relay.serve(tcp, peer, false, slot, None).await,
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => relay.serve(stream, peer, true, slot, None).await,
                        Ok(Err(e)) => {
                            MsrpRelayStats::bump(&relay.stats.tls_failures);
                            tracing::debug!(%peer, error = %e, "MSRP relay: TLS handshake failed");
                        }
                        Err(_) => {
                            MsrpRelayStats::bump(&relay.stats.tls_failures);
                            tracing::debug!(%peer, "MSRP relay: TLS handshake timed out");
                        }
                    }
                }
            }
        });
    }
}

/// Writes queued messages to one connection until it closes; a write that stalls for the idle
/// timeout closes it (a receiver that never reads cannot hold the relay's memory).
async fn write_loop<W: AsyncWrite + Unpin>(
    wr: W,
    mut rx: mpsc::Receiver<Outbound>,
    conn: Arc<Conn>,
    mut shutdown: watch::Receiver<bool>,
    stall: Duration,
) {
    let mut w = BufWriter::with_capacity(READ_BUF, wr);
    let mut closed = conn.closed.subscribe();
    loop {
        let item = tokio::select! {
            item = rx.recv() => item,
            _ = raised(&mut closed) => {
                // deliver what is already queued (e.g. a final error response), briefly
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    while let Ok(item) = rx.try_recv() {
                        if write_item(&mut w, &item).await.is_err() {
                            break;
                        }
                    }
                    let _ = w.flush().await;
                })
                .await;
                break;
            }
            _ = raised(&mut shutdown) => break,
        };
        let Some(item) = item else {
            break;
        };
        match tokio::time::timeout(stall, write_item(&mut w, &item)).await {
            Ok(Ok(())) => conn.wrote.store(true, Ordering::Relaxed),
            _ => break,
        }
        drop(item);
        if rx.is_empty() && !matches!(tokio::time::timeout(stall, w.flush()).await, Ok(Ok(()))) {
            break;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), w.shutdown()).await;
    conn.close();
}

async fn write_item<W: AsyncWrite + Unpin>(w: &mut W, item: &Outbound) -> std::io::Result<()> {
    w.write_all(&item.head).await?;
    if let Some(body) = &item.body {
        w.write_all(body).await?;
    }
    w.write_all(&item.tail).await
}

/// Resolves once the flag is raised (or its sender is gone).
async fn raised(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|v| *v).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_capture_follows_message_boundaries() {
        // no boundary in this read: the previous capture continues
        assert_eq!(capture_start(b"MSRP ", b"a1 SEND", None), b"MSRP a1 SEND");
        // a boundary with 4 bytes after it: the capture restarts there
        assert_eq!(capture_start(b"old", b"xxxxxxMSRP", Some(4)), b"MSRP");
        // bounded
        let big = vec![b'x'; HEAD_CAPTURE * 2];
        assert_eq!(capture_start(b"", &big, None).len(), HEAD_CAPTURE);
        assert_eq!(
            capture_start(b"", &big, Some(big.len())).len(),
            HEAD_CAPTURE
        );
        // a rest longer than the data cannot happen, and does not panic
        assert_eq!(capture_start(b"", b"ab", Some(5)), b"ab");
    }

    #[test]
    fn a_request_is_rebuilt_from_its_head() {
        let head = b"\r\nMSRP tx1234 SEND\r\nTo-Path: msrp://a.example:2855/s1;tcp\r\n\
            From-Path: msrp://b.example:2855/s2;tcp\r\nMessage-ID: m1\r\n\
            Content-Type: text/plain\r\n\r\nbody bytes that were cut";
        let r = request_from_head(head).unwrap();
        assert_eq!(r.transaction_id, "tx1234");
        assert_eq!(r.method, Method::Send);
        assert_eq!(r.headers.message_id(), Some("m1"));
        let response = report::response_for(&r, 413).unwrap().unwrap();
        assert_eq!(response.status, 413);
        // no blank line yet, a response, garbage: nothing to answer
        assert!(request_from_head(b"MSRP tx1234 SEND\r\nTo-Path: x").is_none());
        assert!(
            request_from_head(b"MSRP tx1234 200 OK\r\nTo-Path: msrp://a:1/s;tcp\r\n\r\n").is_none()
        );
        assert!(request_from_head(b"\xff\xfe\r\n\r\n").is_none());
    }

    #[tokio::test]
    async fn pacing_holds_reads_to_the_rate() {
        let mut pace = Pace::new(100_000);
        let start = tokio::time::Instant::now();
        for _ in 0..10 {
            pace.after_read(5000).await;
        }
        // 50 000 bytes at 100 000 B/s
        assert!(
            start.elapsed() >= Duration::from_millis(490),
            "{:?}",
            start.elapsed()
        );
        let mut free = Pace::new(0);
        let start = tokio::time::Instant::now();
        free.after_read(usize::MAX).await;
        assert!(start.elapsed() < Duration::from_millis(100));
        // an absurd amount does not panic
        let mut slow = Pace::new(1);
        slow.bytes = u64::MAX - 1;
        slow.after_read(usize::MAX).await;
    }
}
