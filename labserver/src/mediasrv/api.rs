//! Click-to-call and web-started conferences over HTTP (third-party call control, RFC 3725).
//!
//! The API is served over **HTTPS with the lab certificate** (the same CA as SIP-over-TLS and
//! XCAP) on `[api] bind` (default: the lab's first SIP listen IP) and `[api] port` (default
//! 8088, 0 = any; the ready line reports `api=IP:PORT`). Every request needs credentials:
//! either `Authorization: Bearer <token>` with a token from `[api] tokens` (an operator: any
//! call, every call visible), or HTTP digest (RFC 7616, MD5 or SHA-256 as `[auth] algorithms`
//! says) against the lab's users table (a user: calls from their own address only, sees only
//! their own calls and conferences). Missing or wrong credentials get 401 with the challenges;
//! every error is JSON `{"error": "..."}`.
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `POST /api/calls` | `{"from": A, "to": B}` | 201 + the call |
//! | `GET /api/calls` | | 200 + `[call, …]` |
//! | `GET /api/calls/{id}` | | 200 + the call, 404 |
//! | `DELETE /api/calls/{id}` | | 202 + the call (hanging up), 404 |
//! | `POST /api/conferences` | `{"participants": [A, B, …]}` | 201 + the conference |
//! | `GET /api/conferences/{id}` | | 200 + the conference, 404 |
//! | `GET /api/events` | | `text/event-stream`: `event: call`, `data: <call>` on every change |
//!
//! A and B are SIP URIs (`sip:alice@lab.test`), `user@host`, or a bare user of the lab's
//! domain. A call is `{"id", "from", "to", "state", "from_status", "to_status", "reason",
//! "created", "connected", "ended", "conference"}` with `state` one of `calling-from`,
//! `calling-to`, `connected`, `ended`, `failed`.
//!
//! **Call flow** (RFC 3725 §4.1, flow I): the media server sends an INVITE without SDP to A
//! through the proxy (From: B's address, so A sees whom they are connected to); A's 200
//! carries an offer, which goes in an INVITE to B (From: A's address); B's answer goes back to
//! A in the ACK, and B's 200 is ACKed. The media then flows directly between A and B: the media
//! server only holds the two dialogs. A BYE from either side is answered and a BYE sent to the
//! other; `DELETE` ends both (or CANCELs what is still ringing). If B fails, A gets an ACK
//! and a BYE. A's 2xx is retransmitted until its ACK, so B has at most `[api]
//! answer_timeout_secs` (default 25, below A's 32 s) to answer. Re-INVITEs and UPDATEs with a
//! new offer from either side are refused with 488 (the session stays as it was).
//!
//! A **conference** dials every participant into a fresh room `conf-api-<id>` of the media
//! server's conference service: one 3PCC call per participant between them and the room.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{
    HeaderMap, HeaderValue, Method as HttpMethod, StatusCode, Uri as HttpUri, header,
};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tandem_net::{Target, TxOutcome};
use tandem_proto::auth::{Algorithm, Credentials, NonceIssuer, NonceStatus};
use tandem_proto::dialog::Dialog;
use tandem_proto::msg::{
    HeaderName, Host, Message, Method, NameAddr, Request, Response as SipResponse, Uri,
};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

use super::{DialogInbox, DialogMessage, MediaCtx, ServerRequest, random_tag, response_with_tag};
use crate::https::HttpsServer;
use crate::location::unix_now;

/// Default HTTPS port of the API.
pub const DEFAULT_API_PORT: u16 = 8088;
/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;
/// Most participants of one API conference.
const MAX_PARTICIPANTS: usize = 32;
/// Most call records kept (finished ones beyond it are forgotten, oldest first).
const MAX_RECORDS: usize = 10_000;
/// Ended calls are forgotten after this long.
const KEEP_ENDED: Duration = Duration::from_secs(600);
/// How long our BYE may wait for its answer.
const BYE_TIMEOUT: Duration = Duration::from_secs(10);

/// The `[api]` section: the click-to-call and conference HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Serve the API (default true).
    pub enabled: bool,
    /// HTTPS port: default 8088, except that when every SIP listener asks for an ephemeral
    /// port (0, as tests do) the API does too; 0 = any free port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Address to bind (default: the lab's first SIP listen IP).
    pub bind: Option<IpAddr>,
    /// Bearer tokens of operators (may place any call and see all of them).
    pub tokens: Vec<String>,
    /// Most API calls in progress at once (more get 503).
    pub max_calls: usize,
    /// How long A may ring before the call is given up.
    pub ring_timeout_secs: u64,
    /// How long B may take to answer once A has answered (A retransmits its 200 for 32 s).
    pub answer_timeout_secs: u64,
    /// Lifetime of the TURN REST credentials `GET /api/turn-credentials` hands out.
    pub turn_ttl_secs: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            enabled: true,
            port: None,
            bind: None,
            tokens: Vec::new(),
            max_calls: 100,
            ring_timeout_secs: 60,
            answer_timeout_secs: 25,
            turn_ttl_secs: 86_400,
        }
    }
}

impl ApiConfig {
    /// The port to bind, given the lab's SIP listeners (see [`ApiConfig::port`]).
    pub fn port_for(&self, sip_listeners: &[SocketAddr]) -> u16 {
        crate::config::service_port(self.port, DEFAULT_API_PORT, sip_listeners)
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_calls == 0 {
            return Err("api.max_calls must be at least 1".into());
        }
        if !(60..=604_800).contains(&self.turn_ttl_secs) {
            return Err("api.turn_ttl_secs must be 60..=604800".into());
        }
        if self.ring_timeout_secs == 0 || self.ring_timeout_secs > 600 {
            return Err("api.ring_timeout_secs must be 1..=600".into());
        }
        if self.answer_timeout_secs == 0 || self.answer_timeout_secs > 30 {
            return Err(
                "api.answer_timeout_secs must be 1..=30 (A's 200 is retransmitted for 32 s)".into(),
            );
        }
        if self
            .tokens
            .iter()
            .any(|t| t.len() < 16 || t.chars().any(|c| c.is_whitespace()))
        {
            return Err("api.tokens must be at least 16 characters without spaces".into());
        }
        Ok(())
    }
}

/// Errors starting the API server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The listening socket could not be bound.
    #[error("API: cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS configuration could not be built.
    #[error("API TLS: {0}")]
    Tls(#[from] crate::ca::CaError),
    /// The `[api]` section is invalid.
    #[error("{0}")]
    Config(String),
}

/// The state of one API call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallState {
    /// A is being called.
    CallingFrom,
    /// A answered, B is being called.
    CallingTo,
    /// Both are connected.
    Connected,
    /// The call was connected and has ended.
    Ended,
    /// The call never connected.
    Failed,
}

impl CallState {
    /// True for `ended` and `failed`.
    pub fn is_final(self) -> bool {
        matches!(self, CallState::Ended | CallState::Failed)
    }
}

/// One API call as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallInfo {
    /// The call's id.
    pub id: String,
    /// The first party (called first).
    pub from: String,
    /// The second party.
    pub to: String,
    /// Where the call is.
    pub state: CallState,
    /// The last status A answered with.
    pub from_status: Option<u16>,
    /// The last status B answered with.
    pub to_status: Option<u16>,
    /// Why it ended or failed.
    pub reason: Option<String>,
    /// Unix time of the request.
    pub created: u64,
    /// Unix time both were connected.
    pub connected: Option<u64>,
    /// Unix time it ended.
    pub ended: Option<u64>,
    /// The API conference it belongs to.
    pub conference: Option<String>,
}

/// An API conference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConferenceInfo {
    /// The conference's id.
    pub id: String,
    /// The room's SIP URI.
    pub uri: String,
    /// One call per participant.
    pub calls: Vec<CallInfo>,
}

/// `POST /api/calls`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCall {
    from: String,
    to: String,
}

/// `POST /api/conferences`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewConference {
    participants: Vec<String>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

fn json_error(status: StatusCode, message: &str) -> Fail {
    Fail(Box::new(
        (status, axum::Json(ErrorBody { error: message })).into_response(),
    ))
}

/// An error answer of a handler (boxed: responses are large).
struct Fail(Box<Response>);

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        *self.0
    }
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Principal {
    /// A bearer token from the configuration.
    Operator,
    /// A lab user (digest).
    User(String),
}

/// One call in the table.
struct CallEntry {
    info: Mutex<CallInfo>,
    owner: Principal,
    hangup: watch::Sender<bool>,
}

impl CallEntry {
    /// The call's state, locked (a poisoned lock still yields it).
    fn lock_info(&self) -> std::sync::MutexGuard<'_, CallInfo> {
        self.info.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of the call's current state.
    fn snapshot(&self) -> CallInfo {
        self.lock_info().clone()
    }
}

struct ConferenceEntry {
    owner: Principal,
    uri: Uri,
    calls: Vec<String>,
}

/// What the HTTP handlers and the call tasks share.
struct ApiState {
    ctx: Arc<MediaCtx>,
    config: ApiConfig,
    realm: String,
    algorithms: Vec<Algorithm>,
    issuer: Mutex<NonceIssuer>,
    calls: Mutex<HashMap<String, Arc<CallEntry>>>,
    conferences: Mutex<HashMap<String, ConferenceEntry>>,
    events: broadcast::Sender<(Principal, CallInfo)>,
    /// The lab's TURN listeners (`turn`/`turns` ready fields), once the TURN server runs.
    turn: std::sync::OnceLock<Vec<(String, SocketAddr)>>,
}

/// A running API server.
pub struct ApiServer {
    addr: SocketAddr,
    state: Arc<ApiState>,
    https: HttpsServer,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl ApiServer {
    /// Starts the API when `[api]` enables it, serving HTTPS with `tls` (the lab certificate).
    pub async fn start(
        ctx: Arc<MediaCtx>,
        tls: Arc<rustls::ServerConfig>,
    ) -> Result<Option<ApiServer>, ApiError> {
        let config = ctx.config().api.clone();
        if !config.enabled {
            return Ok(None);
        }
        config.validate().map_err(ApiError::Config)?;
        let ip = config.bind.unwrap_or_else(|| ctx.proxy_flow().remote.ip());
        let listen = &ctx.config().listen;
        let sip: Vec<SocketAddr> = listen
            .udp
            .iter()
            .chain(&listen.tcp)
            .chain(&listen.tls)
            .copied()
            .collect();
        let bind = SocketAddr::new(ip, config.port_for(&sip));
        let listener = TcpListener::bind(bind)
            .await
            .map_err(|source| ApiError::Bind { addr: bind, source })?;
        let state = ApiState::new(ctx, config);
        let app = axum::Router::new()
            .route("/api/calls", get(list_calls).post(create_call))
            .route("/api/calls/{id}", get(get_call).delete(delete_call))
            .route("/api/conferences", axum::routing::post(create_conference))
            .route("/api/conferences/{id}", get(get_conference))
            .route("/api/events", get(events))
            .route("/api/turn-credentials", get(turn_credentials))
            .fallback(|| async {
                json_error(StatusCode::NOT_FOUND, "no such resource").into_response()
            })
            .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
            .with_state(Arc::clone(&state));
        let https = HttpsServer::start(listener, &tls, app, "API")
            .map_err(|source| ApiError::Bind { addr: bind, source })?;
        let addr = https.local_addr();
        tracing::info!(%addr, "click-to-call API listening (HTTPS)");
        Ok(Some(ApiServer { addr, state, https }))
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Tells the API where the lab's TURN server listens (its `turn`/`turns` ready fields),
    /// for the URIs `GET /api/turn-credentials` returns.
    pub fn set_turn_servers(&self, fields: Vec<(String, SocketAddr)>) {
        let _ = self.state.turn.set(fields);
    }

    /// `(key, address)` for the ready line: `("api", addr)`.
    pub fn ready_fields(&self) -> Vec<(String, SocketAddr)> {
        vec![("api".to_owned(), self.addr)]
    }

    /// Hangs up every API call, stops accepting and lets requests in progress finish.
    pub async fn shutdown(self) {
        let entries: Vec<Arc<CallEntry>> = self.state.lock_calls().values().cloned().collect();
        for e in entries {
            let _ = e.hangup.send(true);
        }
        // Give the calls a moment to send their BYEs before the SIP endpoint goes away.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while self.state.active_calls() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.https.shutdown().await;
    }
}

fn now() -> u64 {
    u64::try_from(unix_now()).unwrap_or(0)
}

impl ApiState {
    fn new(ctx: Arc<MediaCtx>, config: ApiConfig) -> Arc<ApiState> {
        let algorithms: Vec<Algorithm> = ctx
            .config()
            .auth
            .algorithms
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        Arc::new(ApiState {
            realm: ctx.config().realm().to_owned(),
            algorithms: if algorithms.is_empty() {
                vec![Algorithm::Md5]
            } else {
                algorithms
            },
            issuer: Mutex::new(NonceIssuer::new(rand::random(), Duration::from_secs(300))),
            calls: Mutex::new(HashMap::new()),
            conferences: Mutex::new(HashMap::new()),
            events: broadcast::channel(256).0,
            turn: std::sync::OnceLock::new(),
            config,
            ctx,
        })
    }

    fn lock_calls(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<CallEntry>>> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_conferences(&self) -> std::sync::MutexGuard<'_, HashMap<String, ConferenceEntry>> {
        self.conferences
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The principal, or the 401 to send.
    async fn authenticate(
        &self,
        method: &HttpMethod,
        uri: &HttpUri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Principal, Fail> {
        let now = now();
        let target = uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or_else(|| uri.path());
        let mut stale = false;
        for raw in headers.get_all(header::AUTHORIZATION) {
            let Ok(text) = raw.to_str() else { continue };
            if let Some(token) = text.strip_prefix("Bearer ").map(str::trim) {
                if self
                    .config
                    .tokens
                    .iter()
                    .any(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
                {
                    return Ok(Principal::Operator);
                }
                continue;
            }
            let Ok(creds) = Credentials::parse(text) else {
                continue;
            };
            if creds.realm != self.realm
                || creds.uri != target
                || !self
                    .algorithms
                    .iter()
                    .any(|a| a.base() == creds.algorithm.base())
            {
                continue;
            }
            let ha1 = match self
                .ctx
                .store()
                .ha1(&creds.username, self.ctx.domain(), creds.algorithm)
                .await
            {
                Ok(Some(h)) => h,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "API HA1 lookup failed");
                    return Err(json_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "store unavailable",
                    ));
                }
            };
            if !tandem_proto::auth::verify_with_body(&creds, method.as_str(), &ha1, body) {
                continue;
            }
            let status = self
                .issuer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .check(&creds.nonce, creds.nc, now);
            match status {
                NonceStatus::Valid => return Ok(Principal::User(creds.username)),
                NonceStatus::Stale => stale = true,
                _ => {}
            }
        }
        Err(self.challenge(stale, now))
    }

    fn challenge(&self, stale: bool, now: u64) -> Fail {
        let mut challenge = self
            .issuer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .challenge(&self.realm, Algorithm::Md5, now, rand::random(), stale);
        let mut response = json_error(StatusCode::UNAUTHORIZED, "authentication required");
        for alg in &self.algorithms {
            challenge.algorithm = *alg;
            if let Ok(v) = HeaderValue::from_str(&challenge.to_string()) {
                response.0.headers_mut().append(header::WWW_AUTHENTICATE, v);
            }
        }
        if !self.config.tokens.is_empty()
            && let Ok(v) = HeaderValue::from_str(&format!("Bearer realm=\"{}\"", self.realm))
        {
            response.0.headers_mut().append(header::WWW_AUTHENTICATE, v);
        }
        response
    }

    /// Parses a party (see [`parse_party`]).
    fn party(&self, text: &str) -> Result<Uri, String> {
        parse_party(text, self.ctx.domain())
    }

    /// True when `uri` is `user`'s own address in our domain.
    fn is_own(&self, uri: &Uri, user: &str) -> bool {
        uri.user
            .as_deref()
            .is_some_and(|u| u.eq_ignore_ascii_case(user))
            && self.ctx.locals().is_local_host(&uri.host)
    }

    fn visible(&self, who: &Principal, owner: &Principal) -> bool {
        *who == Principal::Operator || who == owner
    }

    fn active_calls(&self) -> usize {
        self.lock_calls()
            .values()
            .filter(|c| !c.lock_info().state.is_final())
            .count()
    }

    /// Forgets calls that ended long ago.
    fn prune(&self) {
        let cutoff = now().saturating_sub(KEEP_ENDED.as_secs());
        let mut calls = self.lock_calls();
        calls.retain(|_, c| {
            let info = c.lock_info();
            !info.state.is_final() || info.ended.unwrap_or(info.created) > cutoff
        });
        if calls.len() > MAX_RECORDS {
            // A burst of failing calls: forget the oldest finished ones first.
            let mut finished: Vec<(u64, String)> = calls
                .iter()
                .filter_map(|(id, c)| {
                    let info = c.lock_info();
                    info.state
                        .is_final()
                        .then(|| (info.ended.unwrap_or(info.created), id.clone()))
                })
                .collect();
            finished.sort();
            let excess = calls.len() - MAX_RECORDS;
            for (_, id) in finished.into_iter().take(excess) {
                calls.remove(&id);
            }
        }
        let live: std::collections::HashSet<String> = calls.keys().cloned().collect();
        drop(calls);
        self.lock_conferences()
            .retain(|_, c| c.calls.iter().any(|id| live.contains(id)));
    }

    /// Creates a call record and starts its task.
    fn start_call(
        self: &Arc<Self>,
        owner: Principal,
        from: Uri,
        to: Uri,
        conference: Option<String>,
    ) -> CallInfo {
        self.start_call_as(owner, from, to, conference, None).0
    }

    /// [`Self::start_call`] with the caller id A sees (default: B's address); also returns the
    /// call's entry.
    fn start_call_as(
        self: &Arc<Self>,
        owner: Principal,
        from: Uri,
        to: Uri,
        conference: Option<String>,
        caller_id: Option<Uri>,
    ) -> (CallInfo, Arc<CallEntry>) {
        let id = random_tag();
        let info = CallInfo {
            id: id.clone(),
            from: from.to_string(),
            to: to.to_string(),
            state: CallState::CallingFrom,
            from_status: None,
            to_status: None,
            reason: None,
            created: now(),
            connected: None,
            ended: None,
            conference,
        };
        let (hangup, hangup_rx) = watch::channel(false);
        let entry = Arc::new(CallEntry {
            info: Mutex::new(info.clone()),
            owner: owner.clone(),
            hangup,
        });
        self.lock_calls().insert(id, Arc::clone(&entry));
        let _ = self.events.send((owner, info.clone()));
        let state = Arc::clone(self);
        let task_entry = Arc::clone(&entry);
        tokio::spawn(async move {
            let mut call = ThirdPartyCall {
                state: Arc::clone(&state),
                entry: task_entry,
                hangup: hangup_rx,
                caller_id: caller_id.unwrap_or_else(|| to.clone()),
                from,
                to,
            };
            call.run().await;
        });
        (info, entry)
    }
}

/// A third-party call the media server places for itself (the IVR's bridged transfers): the
/// same engine and flow as `POST /api/calls`, outside the HTTP API's table.
pub struct InternalCall {
    entry: Arc<CallEntry>,
}

impl std::fmt::Debug for InternalCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalCall")
            .field("info", &self.info())
            .finish()
    }
}

impl InternalCall {
    /// Calls `from` (showing `caller_id`), then connects it to `to` (RFC 3725 flow I).
    pub fn start(ctx: Arc<MediaCtx>, from: Uri, to: Uri, caller_id: Option<Uri>) -> InternalCall {
        let config = ctx.config().api.clone();
        let state = ApiState::new(ctx, config);
        let (_, entry) = state.start_call_as(Principal::Operator, from, to, None, caller_id);
        InternalCall { entry }
    }

    /// The call's current state.
    pub fn info(&self) -> CallInfo {
        self.entry.snapshot()
    }

    /// Hangs the call up (CANCEL or BYE, as far as it got).
    pub fn hangup(&self) {
        let _ = self.entry.hangup.send(true);
    }
}

impl Drop for InternalCall {
    fn drop(&mut self) {
        self.hangup();
    }
}

/// Parses a party of an API call: a `sip:`/`sips:` URI with a user part, `user@host`, or a bare
/// user name of `domain`.
pub fn parse_party(text: &str, domain: &str) -> Result<Uri, String> {
    let t = text.trim();
    if t.is_empty() || t.len() > 256 || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{text:?} is not a SIP address"));
    }
    let uri: Uri = if t.contains(':') {
        t.parse()
            .map_err(|_| format!("{text:?} is not a SIP URI"))?
    } else if t.contains('@') {
        format!("sip:{t}")
            .parse()
            .map_err(|_| format!("{text:?} is not a SIP address"))?
    } else {
        if !t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '~'))
        {
            return Err(format!("{text:?} is not a user name"));
        }
        Uri::sip(Some(t), Host::Domain(domain.to_owned()), None)
    };
    if uri.user.as_deref().is_none_or(str::is_empty) {
        return Err(format!("{text:?} has no user part"));
    }
    if !matches!(
        uri.scheme,
        tandem_proto::msg::Scheme::Sip | tandem_proto::msg::Scheme::Sips
    ) {
        return Err(format!("{text:?}: only sip: and sips: URIs"));
    }
    Ok(uri)
}

/// An SDP answer refusing every stream of `offer` (port 0, RFC 3264 §6), for the ACK that must
/// answer A's offer when B could not be reached.
fn refusing_answer(offer: &[u8], ip: IpAddr) -> Bytes {
    let text = String::from_utf8_lossy(offer);
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let id = rand::random::<u32>();
    let mut sdp =
        format!("v=0\r\no=- {id} {id} IN {family} {ip}\r\ns=-\r\nc=IN {family} {ip}\r\nt=0 0\r\n");
    for line in text.lines() {
        let Some(m) = line.trim_end().strip_prefix("m=") else {
            continue;
        };
        let mut parts = m.split_whitespace();
        if let (Some(media), Some(_port), Some(proto), Some(fmt)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        {
            sdp.push_str(&format!("m={media} 0 {proto} {fmt}\r\n"));
        }
    }
    Bytes::from(sdp)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

type ApiResult = Result<Response, Fail>;

async fn auth(
    state: &ApiState,
    method: &HttpMethod,
    uri: &HttpUri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Principal, Fail> {
    state.authenticate(method, uri, headers, body).await
}

fn parse_json<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, Fail> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !is_json {
        return Err(json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be application/json",
        ));
    }
    axum::Json::<T>::from_bytes(body)
        .map(|axum::Json(v)| v)
        .map_err(|e| {
            json_error(
                StatusCode::BAD_REQUEST,
                &format!("invalid JSON: {}", e.body_text()),
            )
        })
}

/// Time-limited TURN credentials (the TURN REST API of draft-uberti-behave-turn-rest):
/// `expiry:user` and `base64(HMAC-SHA1([turn] rest_secret, username))`.
#[derive(Debug, Serialize)]
struct TurnCredentials {
    username: String,
    password: String,
    ttl: u64,
    uris: Vec<String>,
}

/// The `turn:`/`turns:` URIs (RFC 7065) of the lab's TURN listeners.
fn turn_uris(fields: &[(String, SocketAddr)]) -> Vec<String> {
    let mut uris = Vec::new();
    for (key, addr) in fields {
        match key.as_str() {
            "turn" => {
                uris.push(format!("turn:{addr}?transport=udp"));
                uris.push(format!("turn:{addr}?transport=tcp"));
            }
            "turns" => uris.push(format!("turns:{addr}?transport=tcp")),
            _ => {}
        }
    }
    uris
}

/// True for a user name that can stand in a REST username (`expiry:user`).
fn valid_rest_user(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= 64
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b))
}

async fn turn_credentials(
    State(state): State<Arc<ApiState>>,
    method: HttpMethod,
    uri: HttpUri,
    headers: HeaderMap,
) -> ApiResult {
    let who = auth(&state, &method, &uri, &headers, &[]).await?;
    let asked = uri.query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("user=").map(str::to_owned))
    });
    let user = match (&who, asked) {
        (Principal::User(me), None) => me.clone(),
        (Principal::User(me), Some(u)) if &u == me => u,
        (Principal::User(_), Some(_)) => {
            return Err(json_error(
                StatusCode::FORBIDDEN,
                "a user may only ask for their own TURN credentials",
            ));
        }
        (Principal::Operator, Some(u)) => u,
        (Principal::Operator, None) => {
            return Err(json_error(
                StatusCode::BAD_REQUEST,
                "an operator token must name the user: ?user=NAME",
            ));
        }
    };
    if !valid_rest_user(&user) {
        return Err(json_error(StatusCode::BAD_REQUEST, "invalid user name"));
    }
    let Some(secret) = state.ctx.config().turn.rest_secret.as_deref() else {
        return Err(json_error(
            StatusCode::NOT_FOUND,
            "TURN REST credentials are off: set [turn] rest_secret",
        ));
    };
    let Some(fields) = state.turn.get().filter(|f| !f.is_empty()) else {
        return Err(json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the lab's TURN server is not running",
        ));
    };
    let ttl = state.config.turn_ttl_secs;
    let username = format!("{}:{user}", now().saturating_add(ttl));
    let password = tandem_proto::stun::credentials::rest_password(secret.as_bytes(), &username);
    let body = TurnCredentials {
        username,
        password,
        ttl,
        uris: turn_uris(fields),
    };
    let mut r = axum::Json(&body).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

async fn create_call(
    State(state): State<Arc<ApiState>>,
    method: HttpMethod,
    uri: HttpUri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let who = auth(&state, &method, &uri, &headers, &body).await?;
    let req: NewCall = parse_json(&headers, &body)?;
    let from = state
        .party(&req.from)
        .map_err(|e| json_error(StatusCode::BAD_REQUEST, &e))?;
    let to = state
        .party(&req.to)
        .map_err(|e| json_error(StatusCode::BAD_REQUEST, &e))?;
    if let Principal::User(user) = &who
        && !state.is_own(&from, user)
    {
        return Err(json_error(
            StatusCode::FORBIDDEN,
            "a user may only place calls from their own address",
        ));
    }
    state.prune();
    if state.active_calls() >= state.config.max_calls {
        return Err(json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many calls in progress",
        ));
    }
    let info = state.start_call(who, from, to, None);
    let mut r = (StatusCode::CREATED, axum::Json(&info)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/calls/{}", info.id)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

async fn list_calls(
    State(state): State<Arc<ApiState>>,
    method: HttpMethod,
    uri: HttpUri,
    headers: HeaderMap,
) -> ApiResult {
    let who = auth(&state, &method, &uri, &headers, &[]).await?;
    state.prune();
    let mut list: Vec<CallInfo> = state
        .lock_calls()
        .values()
        .filter(|c| state.visible(&who, &c.owner))
        .map(|c| c.snapshot())
        .collect();
    list.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
    Ok(axum::Json(list).into_response())
}

/// Authenticates a body-less request about call `id`: the call, if the caller may see it.
async fn find_call(
    state: &ApiState,
    id: &str,
    method: &HttpMethod,
    uri: &HttpUri,
    headers: &HeaderMap,
) -> Result<Arc<CallEntry>, Fail> {
    let who = auth(state, method, uri, headers, &[]).await?;
    state
        .lock_calls()
        .get(id)
        .filter(|c| state.visible(&who, &c.owner))
        .cloned()
        .ok_or_else(|| json_error(StatusCode::NOT_FOUND, "no such call"))
}

async fn get_call(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    method: HttpMethod,
    uri: HttpUri,
    headers: HeaderMap,
) -> ApiResult {
    let entry = find_call(&state, &id, &method, &uri, &headers).await?;
    let info = entry.snapshot();
    Ok(axum::Json(info).into_response())
}

async fn delete_call(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    method: HttpMethod,
    uri: HttpUri,
    headers: HeaderMap,
) -> ApiResult {
    let entry = find_call(&state, &id, &method, &uri, &headers).await?;
    let _ = entry.hangup.send(true);
    let info = entry.snapshot();
    Ok((StatusCode::ACCEPTED, axum::Json(info)).into_response())
}

async fn create_conference(
    State(state): State<Arc<ApiState>>,
    method: HttpMethod,
    uri: HttpUri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let who = auth(&state, &method, &uri, &headers, &body).await?;
    let req: NewConference = parse_json(&headers, &body)?;
    if req.participants.is_empty() || req.participants.len() > MAX_PARTICIPANTS {
        return Err(json_error(
            StatusCode::BAD_REQUEST,
            &format!("participants: 1 to {MAX_PARTICIPANTS} addresses"),
        ));
    }
    let mut parties = Vec::new();
    for p in &req.participants {
        let uri = state
            .party(p)
            .map_err(|e| json_error(StatusCode::BAD_REQUEST, &e))?;
        if !parties.contains(&uri) {
            parties.push(uri);
        }
    }
    if let Principal::User(user) = &who
        && !parties.iter().any(|p| state.is_own(p, user))
    {
        return Err(json_error(
            StatusCode::FORBIDDEN,
            "a user may only start conferences they take part in",
        ));
    }
    state.prune();
    if state.active_calls() + parties.len() > state.config.max_calls {
        return Err(json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many calls in progress",
        ));
    }
    let id = random_tag();
    let room = Uri::sip(
        Some(&format!("conf-api-{}", &id[..8.min(id.len())])),
        Host::Domain(state.ctx.domain().to_owned()),
        None,
    );
    let calls: Vec<CallInfo> = parties
        .into_iter()
        .map(|p| state.start_call(who.clone(), p, room.clone(), Some(id.clone())))
        .collect();
    state.lock_conferences().insert(
        id.clone(),
        ConferenceEntry {
            owner: who,
            uri: room.clone(),
            calls: calls.iter().map(|c| c.id.clone()).collect(),
        },
    );
    let info = ConferenceInfo {
        id: id.clone(),
        uri: room.to_string(),
        calls,
    };
    let mut r = (StatusCode::CREATED, axum::Json(&info)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/conferences/{id}")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

async fn get_conference(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    method: HttpMethod,
    uri: HttpUri,
    headers: HeaderMap,
) -> ApiResult {
    let who = auth(&state, &method, &uri, &headers, &[]).await?;
    let (room, ids) = {
        let confs = state.lock_conferences();
        let c = confs
            .get(&id)
            .filter(|c| state.visible(&who, &c.owner))
            .ok_or_else(|| json_error(StatusCode::NOT_FOUND, "no such conference"))?;
        (c.uri.clone(), c.calls.clone())
    };
    let calls = {
        let table = state.lock_calls();
        ids.iter()
            .filter_map(|i| table.get(i))
            .map(|c| c.snapshot())
            .collect()
    };
    Ok(axum::Json(ConferenceInfo {
        id,
        uri: room.to_string(),
        calls,
    })
    .into_response())
}

async fn events(
    State(state): State<Arc<ApiState>>,
    method: HttpMethod,
    uri: HttpUri,
    headers: HeaderMap,
) -> ApiResult {
    let who = auth(&state, &method, &uri, &headers, &[]).await?;
    let stream = BroadcastStream::new(state.events.subscribe()).filter_map(move |item| {
        let (owner, info) = item.ok()?;
        if who != Principal::Operator && who != owner {
            return None;
        }
        Some(Event::default().event("call").json_data(&info))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// How an INVITE we sent ended.
enum InviteEnd {
    /// 2xx: the dialog and its response.
    Answered(Box<(Dialog, SipResponse)>),
    /// A final failure status (or 0 for timeout/transport), with a reason.
    Failed(u16, String),
    /// The call was hung up (API) or the other side left before this one answered.
    Abandoned,
}

/// One outgoing INVITE of a 3PCC call.
struct OutLeg {
    inbox: DialogInbox,
    /// 2xx responses (retransmissions included) of the INVITE after the first.
    retransmits: mpsc::UnboundedReceiver<SipResponse>,
    /// The CSeq of the INVITE (for the ACK).
    cseq: u32,
    dialog: Option<Dialog>,
    /// The ACK we sent, re-sent for each 2xx retransmission.
    ack: Option<Request>,
}

/// The task of one API call.
struct ThirdPartyCall {
    state: Arc<ApiState>,
    entry: Arc<CallEntry>,
    hangup: watch::Receiver<bool>,
    /// The From of the INVITE to A.
    caller_id: Uri,
    from: Uri,
    to: Uri,
}

impl ThirdPartyCall {
    fn ctx(&self) -> &MediaCtx {
        &self.state.ctx
    }

    fn update(&self, f: impl FnOnce(&mut CallInfo)) {
        let info = {
            let mut info = self.entry.lock_info();
            f(&mut info);
            info.clone()
        };
        tracing::info!(call = %info.id, state = ?info.state, from_status = ?info.from_status, to_status = ?info.to_status, reason = ?info.reason, "API call");
        let _ = self.state.events.send((self.entry.owner.clone(), info));
    }

    fn finish(&self, state: CallState, reason: &str) {
        let reason = reason.to_owned();
        self.update(|i| {
            i.state = state;
            i.reason = Some(reason);
            i.ended = Some(now());
        });
    }

    fn hung_up(&self) -> bool {
        *self.hangup.borrow()
    }

    async fn run(&mut self) {
        let ring = Duration::from_secs(self.state.config.ring_timeout_secs);
        // 1. INVITE A without an offer (caller id: B).
        let (mut a, a_end) = self
            .invite(
                &self.from.clone(),
                &self.caller_id.clone(),
                None,
                ring,
                true,
            )
            .await;
        let (a_dialog, a_ok) = match a_end {
            InviteEnd::Answered(answered) => *answered,
            InviteEnd::Failed(status, reason) => {
                self.update(|i| i.from_status = (status > 0).then_some(status));
                return self.finish(
                    CallState::Failed,
                    &format!("{} did not answer: {reason}", self.from),
                );
            }
            InviteEnd::Abandoned => {
                return self.finish(CallState::Failed, "hung up before the call was answered");
            }
        };
        a.dialog = Some(a_dialog);
        self.update(|i| {
            i.from_status = Some(a_ok.status);
            i.state = CallState::CallingTo;
        });
        let offer = a_ok.body.clone();
        if offer.is_empty() || !is_sdp(&a_ok) {
            self.ack(&mut a, None);
            self.bye(&mut a).await;
            return self.finish(
                CallState::Failed,
                &format!("{} answered without an SDP offer", self.from),
            );
        }
        // 2. INVITE B with A's offer (caller id: A), while A waits for its ACK.
        let answer_timeout = Duration::from_secs(self.state.config.answer_timeout_secs);
        let (mut b, b_end) = self
            .invite_watching(
                &self.to.clone(),
                &self.from.clone(),
                Some(offer),
                answer_timeout,
                &mut a,
            )
            .await;
        let (b_dialog, b_ok) = match b_end {
            InviteEnd::Answered(answered) => *answered,
            InviteEnd::Failed(status, reason) => {
                self.update(|i| i.to_status = (status > 0).then_some(status));
                let refuse = refusing_answer(&a_ok.body, self.ctx().media_ip());
                self.ack(&mut a, Some(refuse));
                self.bye(&mut a).await;
                return self.finish(
                    CallState::Failed,
                    &format!("{} did not answer: {reason}", self.to),
                );
            }
            InviteEnd::Abandoned => {
                if a.dialog
                    .as_ref()
                    .is_some_and(|d| d.state != tandem_proto::dialog::DialogState::Terminated)
                {
                    let refuse = refusing_answer(&a_ok.body, self.ctx().media_ip());
                    self.ack(&mut a, Some(refuse));
                    self.bye(&mut a).await;
                }
                return self.finish(CallState::Failed, "hung up before the call was connected");
            }
        };
        b.dialog = Some(b_dialog);
        self.update(|i| i.to_status = Some(b_ok.status));
        // 3. B's answer to A in the ACK; ACK B.
        self.ack(&mut b, None);
        let answer = (!b_ok.body.is_empty() && is_sdp(&b_ok)).then(|| b_ok.body.clone());
        let Some(answer) = answer else {
            let refuse = refusing_answer(&a_ok.body, self.ctx().media_ip());
            self.ack(&mut a, Some(refuse));
            self.bye(&mut a).await;
            self.bye(&mut b).await;
            return self.finish(
                CallState::Failed,
                &format!("{} answered without SDP", self.to),
            );
        };
        self.ack(&mut a, Some(answer));
        self.update(|i| {
            i.state = CallState::Connected;
            i.connected = Some(now());
        });
        // 4. Connected until someone hangs up.
        let reason = self.connected(&mut a, &mut b).await;
        self.finish(CallState::Ended, &reason);
    }

    /// Sends an INVITE to `target` through the proxy and waits for its final answer.
    async fn invite(
        &mut self,
        target: &Uri,
        caller: &Uri,
        offer: Option<Bytes>,
        timeout: Duration,
        is_a: bool,
    ) -> (OutLeg, InviteEnd) {
        self.invite_inner(target, caller, offer, timeout, is_a, None)
            .await
    }

    /// Like [`Self::invite`] for B, also watching A's dialog (A may hang up meanwhile).
    async fn invite_watching(
        &mut self,
        target: &Uri,
        caller: &Uri,
        offer: Option<Bytes>,
        timeout: Duration,
        a: &mut OutLeg,
    ) -> (OutLeg, InviteEnd) {
        self.invite_inner(target, caller, offer, timeout, false, Some(a))
            .await
    }

    async fn invite_inner(
        &mut self,
        target: &Uri,
        caller: &Uri,
        offer: Option<Bytes>,
        timeout: Duration,
        is_a: bool,
        mut other: Option<&mut OutLeg>,
    ) -> (OutLeg, InviteEnd) {
        let ctx = Arc::clone(&self.state.ctx);
        let call_id = format!("{}@tandem-api", random_tag());
        let tag = random_tag();
        let inbox = ctx.register_dialog(&call_id, &tag);
        let (rt_tx, rt_rx) = mpsc::unbounded_channel();
        let mut leg = OutLeg {
            inbox,
            retransmits: rt_rx,
            cseq: 1,
            dialog: None,
            ack: None,
        };
        let mut req = Request::new(Method::Invite, target.clone());
        req.headers.push(HeaderName::MaxForwards, "70");
        let mut from = NameAddr::new(caller.clone());
        from.display = Some("Click-to-call".to_owned());
        from.set_tag(&tag);
        req.headers.push(HeaderName::From, from.to_string());
        req.headers
            .push(HeaderName::To, NameAddr::new(target.clone()).to_string());
        req.headers.push(HeaderName::CallId, call_id.clone());
        req.headers.push(HeaderName::CSeq, "1 INVITE");
        req.headers.push(
            HeaderName::Contact,
            format!("<{}>", ctx.contact("clicktocall")),
        );
        req.headers.push(
            HeaderName::Allow,
            "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, NOTIFY",
        );
        if let Some(body) = offer {
            req.headers.push(HeaderName::ContentType, "application/sdp");
            req.body = body;
        }
        let mut tx = match ctx
            .endpoint()
            .request(req.clone(), Target::Flow(ctx.proxy_flow()))
            .await
        {
            Ok(tx) => tx,
            Err(e) => return (leg, InviteEnd::Failed(0, e.to_string())),
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let mut cancelled = false;
        let end = loop {
            let other_inbox = async {
                match other.as_deref_mut() {
                    Some(o) => o.inbox.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                outcome = tx.next() => match outcome {
                    None => break InviteEnd::Failed(0, "no final response".into()),
                    Some(TxOutcome::Provisional(r)) => {
                        let status = r.status;
                        self.update(|i| if is_a { i.from_status = Some(status) } else { i.to_status = Some(status) });
                    }
                    Some(TxOutcome::Final(r)) if (200..300).contains(&r.status) => {
                        match Dialog::from_uac(&req, &r) {
                            Ok(d) => {
                                if cancelled || self.hung_up() {
                                    // Answered while we cancelled: ACK and BYE.
                                    leg.dialog = Some(d);
                                    self.ack(&mut leg, None);
                                    self.bye(&mut leg).await;
                                    break InviteEnd::Abandoned;
                                }
                                break InviteEnd::Answered(Box::new((d, r)));
                            }
                            Err(e) => break InviteEnd::Failed(r.status, format!("unusable 2xx: {e}")),
                        }
                    }
                    Some(TxOutcome::Final(r)) => {
                        if cancelled {
                            break InviteEnd::Abandoned;
                        }
                        break InviteEnd::Failed(r.status, format!("{} {}", r.status, r.reason));
                    }
                    Some(TxOutcome::Timeout) => break InviteEnd::Failed(408, "timeout".into()),
                    Some(TxOutcome::TransportError(e)) => break InviteEnd::Failed(503, e),
                    Some(_) => {}
                },
                _ = tokio::time::sleep_until(deadline), if !cancelled => {
                    ctx.endpoint().cancel(tx.id());
                    cancelled = true;
                    self.update(|i| i.reason = Some("no answer in time".into()));
                }
                changed = self.hangup.changed(), if !cancelled => {
                    if changed.is_err() || *self.hangup.borrow() {
                        ctx.endpoint().cancel(tx.id());
                        cancelled = true;
                    }
                }
                msg = leg.inbox.recv() => {
                    if let Some(DialogMessage::Request(r)) = msg {
                        respond(&ctx, &r, 481, "Call/Transaction Does Not Exist");
                    }
                }
                msg = other_inbox => {
                    // A hung up (BYE before our ACK) while B rings.
                    if let Some(DialogMessage::Request(r)) = msg {
                        if r.request.method == Method::Bye {
                            respond(&ctx, &r, 200, "OK");
                            if let Some(o) = other.as_deref_mut()
                                && let Some(d) = o.dialog.as_mut()
                            {
                                d.terminate();
                            }
                            if !cancelled {
                                ctx.endpoint().cancel(tx.id());
                                cancelled = true;
                            }
                        } else {
                            respond(&ctx, &r, 200, "OK");
                        }
                    }
                }
            }
        };
        // Later 2xx (retransmissions, other forks) are re-ACKed by whoever holds the leg.
        tokio::spawn(async move {
            while let Some(outcome) = tx.next().await {
                if let TxOutcome::Final(r) = outcome
                    && (200..300).contains(&r.status)
                    && rt_tx.send(r).is_err()
                {
                    break;
                }
            }
        });
        (leg, end)
    }

    /// Sends the ACK for the leg's 2xx (with `answer` when given) and remembers it.
    fn ack(&self, leg: &mut OutLeg, answer: Option<Bytes>) {
        let Some(dialog) = leg.dialog.as_ref() else {
            return;
        };
        let mut ack = dialog.ack(leg.cseq);
        // A 2xx ACK is sent outside any transaction: it needs a Via of its own (RFC 3261
        // §13.2.2.4: a new branch).
        let ctx = self.ctx();
        if let Some(local) = ctx.endpoint().local_addr(tandem_proto::Transport::Udp) {
            ack.headers.push_front(
                HeaderName::Via,
                format!("SIP/2.0/UDP {local};branch=z9hG4bK{};rport", random_tag()),
            );
        }
        if let Some(body) = answer {
            ack.headers.push(HeaderName::ContentType, "application/sdp");
            ack.body = body;
        }
        self.ctx()
            .endpoint()
            .send_stateless(Message::Request(ack.clone()), self.ctx().proxy_flow());
        leg.ack = Some(ack);
    }

    /// Re-sends the ACK for every 2xx retransmission that came in.
    fn reack(&self, leg: &mut OutLeg) {
        while let Ok(_r) = leg.retransmits.try_recv() {
            if let Some(ack) = &leg.ack {
                self.ctx()
                    .endpoint()
                    .send_stateless(Message::Request(ack.clone()), self.ctx().proxy_flow());
            }
        }
    }

    /// Sends BYE on the leg's dialog (once) and waits a little for its answer.
    async fn bye(&self, leg: &mut OutLeg) {
        let Some(dialog) = leg.dialog.as_mut() else {
            return;
        };
        if dialog.state == tandem_proto::dialog::DialogState::Terminated {
            return;
        }
        let bye = dialog.new_request(Method::Bye);
        dialog.terminate();
        let ctx = self.ctx();
        match ctx
            .endpoint()
            .request(bye, Target::Flow(ctx.proxy_flow()))
            .await
        {
            Ok(mut tx) => {
                // Meanwhile the peer may hang up too (BYE glare): answer its requests, or it
                // waits for us as we wait for it.
                let inbox = &mut leg.inbox;
                let _ = tokio::time::timeout(BYE_TIMEOUT, async {
                    loop {
                        tokio::select! {
                            o = tx.next() => match o {
                                Some(TxOutcome::Provisional(_)) => {}
                                _ => break,
                            },
                            m = inbox.recv() => match m {
                                Some(DialogMessage::Request(r)) => respond(ctx, &r, 200, "OK"),
                                Some(_) => {}
                                None => break,
                            },
                        }
                    }
                })
                .await;
            }
            Err(e) => tracing::debug!(error = %e, "API: BYE not sent"),
        }
    }

    /// Both legs are up: relays hang-ups until the call ends; returns why it ended.
    async fn connected(&mut self, a: &mut OutLeg, b: &mut OutLeg) -> String {
        let ctx = Arc::clone(&self.state.ctx);
        loop {
            tokio::select! {
                Some(_) = a.retransmits.recv() => {
                    if let Some(ack) = &a.ack {
                        ctx.endpoint().send_stateless(Message::Request(ack.clone()), ctx.proxy_flow());
                    }
                    self.reack(a);
                }
                Some(_) = b.retransmits.recv() => {
                    if let Some(ack) = &b.ack {
                        ctx.endpoint().send_stateless(Message::Request(ack.clone()), ctx.proxy_flow());
                    }
                    self.reack(b);
                }
                msg = a.inbox.recv() => match msg {
                    None => { self.bye(b).await; return "the media server stopped".into(); }
                    Some(m) => if in_dialog(&ctx, a, m) {
                        self.bye(b).await;
                        return format!("{} hung up", self.from);
                    }
                },
                msg = b.inbox.recv() => match msg {
                    None => { self.bye(a).await; return "the media server stopped".into(); }
                    Some(m) => if in_dialog(&ctx, b, m) {
                        self.bye(a).await;
                        return format!("{} hung up", self.to);
                    }
                },
                changed = self.hangup.changed() => {
                    if changed.is_err() || *self.hangup.borrow() {
                        self.bye(a).await;
                        self.bye(b).await;
                        return "hung up through the API".into();
                    }
                }
            }
        }
    }
}

/// Answers an in-dialog request on a connected leg; true when it was a BYE.
fn in_dialog(ctx: &MediaCtx, leg: &mut OutLeg, msg: DialogMessage) -> bool {
    let DialogMessage::Request(req) = msg else {
        return false;
    };
    if let Some(d) = leg.dialog.as_mut()
        && let Err(e) = d.check_request(&req.request)
    {
        tracing::debug!(error = %e, "API: out-of-order in-dialog request");
        respond(ctx, &req, 500, "Server Internal Error");
        return false;
    }
    match req.request.method {
        Method::Bye => {
            respond(ctx, &req, 200, "OK");
            if let Some(d) = leg.dialog.as_mut() {
                d.terminate();
            }
            true
        }
        Method::Invite | Method::Update if !req.request.body.is_empty() => {
            respond(ctx, &req, 488, "Not Acceptable Here");
            false
        }
        Method::Invite => {
            // An offerless re-INVITE would need a new offer from the other side.
            respond(ctx, &req, 488, "Not Acceptable Here");
            false
        }
        _ => {
            respond(ctx, &req, 200, "OK");
            false
        }
    }
}

fn respond(ctx: &MediaCtx, req: &ServerRequest, status: u16, reason: &str) {
    let tag = req
        .request
        .headers
        .to()
        .ok()
        .and_then(|t| t.tag().map(str::to_owned))
        .unwrap_or_else(random_tag);
    ctx.endpoint().respond(
        req.tx,
        response_with_tag(&req.request, status, reason, &tag),
    );
}

fn is_sdp(r: &SipResponse) -> bool {
    r.headers
        .get_str(&HeaderName::ContentType)
        .is_none_or(|ct| {
            ct.trim()
                .to_ascii_lowercase()
                .starts_with("application/sdp")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_validation() {
        let c = ApiConfig::default();
        let fixed: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert_eq!(c.port_for(&[fixed]), DEFAULT_API_PORT);
        assert_eq!(c.port_for(&[any, any]), 0);
        assert_eq!(c.port_for(&[any, fixed]), DEFAULT_API_PORT);
        c.validate().unwrap();
        let c: ApiConfig = toml::from_str("port = 0\ntokens = [\"0123456789abcdef0123\"]").unwrap();
        c.validate().unwrap();
        for bad in [
            "tokens = [\"short\"]",
            "max_calls = 0",
            "answer_timeout_secs = 40",
            "ring_timeout_secs = 0",
        ] {
            let c: ApiConfig = toml::from_str(bad).unwrap();
            assert!(c.validate().is_err(), "{bad}");
        }
        assert!(toml::from_str::<ApiConfig>("bogus = 1").is_err());
    }

    #[test]
    fn parties() {
        let d = "lab.test";
        let ok = |t: &str| parse_party(t, d).map(|u| u.to_string());
        assert_eq!(ok("alice").as_deref(), Ok("sip:alice@lab.test"));
        assert_eq!(
            ok(" bob@example.org ").as_deref(),
            Ok("sip:bob@example.org")
        );
        assert_eq!(
            ok("sips:carol@lab.test").as_deref(),
            Ok("sips:carol@lab.test")
        );
        for bad in [
            "",
            "a b",
            "sip:",
            "sip:lab.test",
            "mailto:x@y",
            "al<ice",
            "al;ice",
            "@lab.test",
            "tel:+123",
        ] {
            assert!(parse_party(bad, d).is_err(), "{bad:?} accepted");
        }
        assert!(parse_party(&"x".repeat(300), d).is_err());
    }

    #[test]
    fn refusing_answers_zero_every_stream() {
        let offer = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 111 0 101\r\na=rtpmap:111 opus/48000/2\r\nm=video 4002 RTP/AVP 96\r\n";
        let a = refusing_answer(offer, "127.0.0.1".parse().unwrap());
        let text = String::from_utf8(a.to_vec()).unwrap();
        assert!(text.contains("m=audio 0 RTP/AVP 111\r\n"), "{text}");
        assert!(text.contains("m=video 0 RTP/AVP 96\r\n"), "{text}");
        assert!(text.starts_with("v=0\r\n"));
        tandem_proto::sdp::SessionDescription::parse(&text).unwrap();
    }

    #[test]
    fn call_json_shape() {
        let info = CallInfo {
            id: "x".into(),
            from: "sip:a@d".into(),
            to: "sip:b@d".into(),
            state: CallState::CallingTo,
            from_status: Some(200),
            to_status: None,
            reason: None,
            created: 1,
            connected: None,
            ended: None,
            conference: None,
        };
        let json = serde_json_like(&info);
        assert!(json.contains("\"state\":\"calling-to\""), "{json}");
        assert!(CallState::Failed.is_final() && !CallState::Connected.is_final());
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    fn serde_json_like(info: &CallInfo) -> String {
        let r = axum::Json(info).into_response();
        let (_, body) = r.into_parts();
        let bytes = futures_lite(body);
        String::from_utf8(bytes).unwrap()
    }

    fn futures_lite(body: axum::body::Body) -> Vec<u8> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async { axum::body::to_bytes(body, 1 << 16).await.unwrap().to_vec() })
    }
}
