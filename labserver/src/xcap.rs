//! The XCAP server (RFC 4825) of the lab: user documents over HTTPS with digest authentication.
//!
//! Paths are `/xcap-root/<auid>/users/<xui>/<document>` for the application usages
//! `resource-lists` (RFC 4826, `application/resource-lists+xml`) and `pres-rules` (RFC 5025,
//! `application/auth-policy+xml`), and `/xcap-root/xcap-caps/global/index` for the server's
//! capabilities (RFC 4825 §12). A path may go on with `/~~/` and a node selector (RFC 4825 §6.3,
//! see [`crate::xcap_node`]) to GET, PUT or DELETE one element, attribute (or read the namespace
//! bindings) of a document; the result must still be a valid document, and its entity tag is the
//! document's. Every request needs digest credentials of a lab user (the same users and HA1s as
//! SIP; 401 otherwise), and a user may only touch their own directory (403). Bodies are parsed
//! with `tandem_proto::simple` before they are stored (409 with an `<xcap-error>` document when
//! not well-formed or not valid for the usage). Entity tags guard writes (`If-Match`,
//! `If-None-Match`: 412, 304 on a conditional GET). Documents live in the store
//! (`xcap_documents`); each successful write or delete is reported to a [`ChangeHook`] so the
//! presence agent can re-evaluate subscriptions when a user's pres-rules change.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tandem_proto::auth::{Algorithm, Credentials, NonceIssuer, NonceStatus};
use tokio::net::TcpListener;

use crate::location::unix_now;
use crate::store::{Store, StoreError};
use crate::store_xcap::{XcapCondition, XcapDelete, XcapDocument, XcapWrite};
use crate::xcap_node::{NodeError, NodeSelector};

/// The default XCAP (HTTPS) port.
pub const DEFAULT_XCAP_PORT: u16 = 5443;
/// The path prefix of every XCAP URI served (the XCAP root).
pub const XCAP_ROOT: &str = "/xcap-root";
/// The application usage for buddy lists (RFC 4826).
pub const AUID_RESOURCE_LISTS: &str = "resource-lists";
/// The application usage for presence authorization rules (RFC 5025).
pub const AUID_PRES_RULES: &str = "pres-rules";
/// The application usage for resource list server services (RFC 4826 §4).
pub const AUID_RLS_SERVICES: &str = "rls-services";
/// The application usage describing the server's capabilities (RFC 4825 §12).
pub const AUID_XCAP_CAPS: &str = "xcap-caps";
/// The MIME type of resource-lists documents.
pub const MIME_RESOURCE_LISTS: &str = "application/resource-lists+xml";
/// The MIME type of pres-rules documents.
pub const MIME_PRES_RULES: &str = "application/auth-policy+xml";
/// The MIME type of the capabilities document.
pub const MIME_XCAP_CAPS: &str = "application/xcap-caps+xml";
/// The MIME type of XCAP error reports (RFC 4825 §11).
pub const MIME_XCAP_ERROR: &str = "application/xcap-error+xml";
/// The document name clients use for a user's pres-rules (OMA and most clients: `index`).
pub const PRES_RULES_DOCUMENT: &str = "index";

/// `[xcap]` settings of `lab.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct XcapConfig {
    /// Whether the XCAP server runs; default true.
    pub enabled: bool,
    /// The HTTPS port; default 5443, except that when every SIP listener asks for an ephemeral
    /// port (0, as tests do) the XCAP listener does too. It binds the address of the first TLS
    /// listener (else TCP, else UDP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Largest document accepted, in bytes; default 1 MiB (larger bodies get 413).
    pub max_document_bytes: usize,
    /// Most documents one user may store; default 32.
    pub max_documents_per_user: usize,
}

impl Default for XcapConfig {
    fn default() -> XcapConfig {
        XcapConfig {
            enabled: true,
            port: None,
            max_document_bytes: 1 << 20,
            max_documents_per_user: 32,
        }
    }
}

impl XcapConfig {
    /// The socket the XCAP server binds, given the SIP listeners.
    pub fn bind_addr(&self, sip_listeners: &[SocketAddr]) -> SocketAddr {
        let ip = sip_listeners
            .first()
            .map(|a| a.ip())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let ephemeral = !sip_listeners.is_empty() && sip_listeners.iter().all(|a| a.port() == 0);
        let port = match self.port {
            Some(p) => p,
            None if ephemeral => 0,
            None => DEFAULT_XCAP_PORT,
        };
        SocketAddr::new(ip, port)
    }
}

/// Errors starting the XCAP server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XcapError {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A document of a user changed (written or deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XcapChange {
    /// The application usage.
    pub auid: String,
    /// The owner, `user@domain`.
    pub xui: String,
    /// The document name.
    pub document: String,
}

/// Called after every successful write or delete.
pub type ChangeHook = Arc<dyn Fn(XcapChange) + Send + Sync>;

/// What the XCAP server needs to know besides the store.
#[derive(Clone)]
pub struct XcapSettings {
    /// Where to listen.
    pub bind: SocketAddr,
    /// The digest realm (the SIP realm: the same HA1s).
    pub realm: String,
    /// The lab domain: HA1s are looked up for it, and XUIs are canonicalised to `user@domain`.
    pub domain: String,
    /// Further host names accepted in XUIs as the lab domain.
    pub local_hosts: Vec<String>,
    /// Digest algorithms offered, in order.
    pub algorithms: Vec<Algorithm>,
    /// The nonce secret and lifetime.
    pub nonce_secret: [u8; 32],
    /// How long a nonce stays valid.
    pub nonce_lifetime: Duration,
    /// Largest accepted document.
    pub max_document_bytes: usize,
    /// Most documents one user may store.
    pub max_documents_per_user: usize,
}

struct XcapState {
    settings: XcapSettings,
    store: Store,
    issuer: Mutex<NonceIssuer>,
    on_change: ChangeHook,
}

/// A running XCAP server.
pub struct XcapServer {
    https: crate::https::HttpsServer,
}

impl XcapServer {
    /// Binds `settings.bind` and serves HTTPS with `tls` until shut down.
    pub async fn start(
        settings: XcapSettings,
        store: Store,
        tls: Arc<rustls::ServerConfig>,
        on_change: ChangeHook,
    ) -> Result<XcapServer, XcapError> {
        let bind = settings.bind;
        let listener = TcpListener::bind(bind)
            .await
            .map_err(|source| XcapError::Bind { addr: bind, source })?;
        let state = Arc::new(XcapState {
            issuer: Mutex::new(NonceIssuer::new(
                settings.nonce_secret,
                settings.nonce_lifetime,
            )),
            settings,
            store,
            on_change,
        });
        let app = axum::Router::new().fallback(handle).with_state(state);
        let https = crate::https::HttpsServer::start(listener, &tls, app, "XCAP")
            .map_err(|source| XcapError::Bind { addr: bind, source })?;
        Ok(XcapServer { https })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.https.local_addr()
    }

    /// Stops accepting and lets requests in progress finish (at most a few seconds).
    pub async fn shutdown(self) {
        self.https.shutdown().await;
    }
}

/// A parsed XCAP request URI.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// `/xcap-root/xcap-caps/global/index`.
    Caps,
    /// A user's document.
    UserDocument {
        auid: &'static str,
        /// The user part of the XUI.
        user: String,
        /// The host part of the XUI (lower-cased).
        host: String,
        document: String,
        /// The node selector after `/~~/`, percent-decoded.
        selector: Option<String>,
    },
}

/// Why a path is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathError {
    NotFound,
    /// A node selector that is not valid UTF-8 after percent-decoding.
    BadSelector,
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn parse_target(path: &str) -> Result<Target, PathError> {
    let rest = path
        .strip_prefix(XCAP_ROOT)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or(PathError::NotFound)?;
    let (rest, selector) = match rest.split_once("/~~/") {
        Some((doc, sel)) => (
            doc,
            Some(percent_decode(sel).ok_or(PathError::BadSelector)?),
        ),
        None if rest.contains("~~") => return Err(PathError::NotFound),
        None => (rest, None),
    };
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [AUID_XCAP_CAPS, "global", "index"] if selector.is_none() => Ok(Target::Caps),
        [auid, "users", xui, document] if !document.is_empty() => {
            let auid = match *auid {
                AUID_RESOURCE_LISTS => AUID_RESOURCE_LISTS,
                AUID_PRES_RULES => AUID_PRES_RULES,
                AUID_RLS_SERVICES => AUID_RLS_SERVICES,
                _ => return Err(PathError::NotFound),
            };
            let xui = percent_decode(xui).ok_or(PathError::NotFound)?;
            let document = percent_decode(document).ok_or(PathError::NotFound)?;
            if document.contains('/') || document.len() > 128 {
                return Err(PathError::NotFound);
            }
            let bare = xui
                .strip_prefix("sip:")
                .or_else(|| xui.strip_prefix("sips:"))
                .unwrap_or(&xui);
            let (user, host) = bare.split_once('@').ok_or(PathError::NotFound)?;
            if user.is_empty() || host.is_empty() || user.len() > 128 || host.len() > 255 {
                return Err(PathError::NotFound);
            }
            Ok(Target::UserDocument {
                auid,
                user: user.to_string(),
                host: host.to_ascii_lowercase(),
                document,
                selector,
            })
        }
        _ => Err(PathError::NotFound),
    }
}

fn plain(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{text}\n"),
    )
        .into_response()
}

/// A 409 with an RFC 4825 §11 error document.
fn xcap_error(condition: &str, phrase: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <xcap-error xmlns=\"urn:ietf:params:xml:ns:xcap-error\"><{condition} phrase=\"{}\"/></xcap-error>\n",
        escape_attr(phrase)
    );
    (
        StatusCode::CONFLICT,
        [(header::CONTENT_TYPE, MIME_XCAP_ERROR)],
        body,
    )
        .into_response()
}

fn escape_attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn caps_document() -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <xcap-caps xmlns=\"urn:ietf:params:xml:ns:xcap-caps\">\n\
         <auids><auid>{AUID_XCAP_CAPS}</auid><auid>{AUID_RESOURCE_LISTS}</auid><auid>{AUID_PRES_RULES}</auid><auid>{AUID_RLS_SERVICES}</auid></auids>\n\
         <extensions/>\n\
         <namespaces>\n\
         <namespace>urn:ietf:params:xml:ns:xcap-caps</namespace>\n\
         <namespace>urn:ietf:params:xml:ns:xcap-error</namespace>\n\
         <namespace>urn:ietf:params:xml:ns:resource-lists</namespace>\n\
         <namespace>urn:ietf:params:xml:ns:common-policy</namespace>\n\
         <namespace>urn:ietf:params:xml:ns:pres-rules</namespace>\n\
         <namespace>urn:ietf:params:xml:ns:rls-services</namespace>\n\
         </namespaces>\n\
         </xcap-caps>\n"
    )
}

/// The namespace of unprefixed names in node selectors of an application usage (RFC 4825 §6.4).
fn default_namespace(auid: &str) -> &'static str {
    match auid {
        AUID_PRES_RULES => tandem_proto::simple::ns::COMMON_POLICY,
        AUID_RLS_SERVICES => crate::rls::RLS_SERVICES_NS,
        _ => tandem_proto::simple::ns::RESOURCE_LISTS,
    }
}

fn mime_of(auid: &str) -> &'static str {
    match auid {
        AUID_PRES_RULES => MIME_PRES_RULES,
        AUID_RLS_SERVICES => crate::rls::MIME_RLS_SERVICES,
        _ => MIME_RESOURCE_LISTS,
    }
}

/// Checks a body for an application usage: `Err((condition, phrase))` for the 409 document.
fn validate(auid: &str, body: &[u8]) -> Result<(), (&'static str, String)> {
    if std::str::from_utf8(body).is_err() {
        return Err(("not-utf-8", "the document is not UTF-8".to_string()));
    }
    let result = match auid {
        AUID_PRES_RULES => tandem_proto::simple::pres_rules::Ruleset::parse(body).map(|_| ()),
        AUID_RLS_SERVICES => crate::rls::validate_rls_services(body),
        _ => tandem_proto::simple::resource_lists::ResourceLists::parse(body).map(|_| ()),
    };
    result.map_err(|e| {
        let text = e.to_string();
        let lower = text.to_ascii_lowercase();
        let condition = if lower.contains("xml") && !lower.contains("namespace") {
            "not-well-formed"
        } else {
            "schema-validation-error"
        };
        (condition, text)
    })
}

/// The `If-Match` / `If-None-Match` condition of a request; `Err` for a malformed header.
fn condition(headers: &HeaderMap, current: Option<&str>) -> Result<Conditional, ()> {
    let list = |name: header::HeaderName| -> Result<Option<Vec<String>>, ()> {
        let mut tags = Vec::new();
        let mut seen = false;
        for v in headers.get_all(name) {
            seen = true;
            let v = v.to_str().map_err(|_| ())?;
            for t in v.split(',') {
                let t = t.trim();
                let t = t.strip_prefix("W/").unwrap_or(t);
                if t == "*" {
                    tags.push("*".to_string());
                } else if let Some(inner) = t.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
                    tags.push(inner.to_string());
                } else if !t.is_empty() {
                    return Err(());
                }
            }
        }
        Ok(seen.then_some(tags))
    };
    let if_match = list(header::IF_MATCH)?;
    let if_none_match = list(header::IF_NONE_MATCH)?;
    let matches = |tags: &[String]| match current {
        Some(cur) => tags.iter().any(|t| t == "*" || t == cur),
        None => false,
    };
    if let Some(tags) = &if_match
        && !matches(tags)
    {
        return Ok(Conditional::Failed);
    }
    if let Some(tags) = &if_none_match
        && matches(tags)
    {
        return Ok(Conditional::NoneMatchFailed);
    }
    // Pass on to the store what was checked, so a concurrent writer cannot slip in between.
    let store_condition = match (current, &if_match, &if_none_match) {
        (Some(cur), Some(_), _) => XcapCondition::IfMatch(cur.to_string()),
        (None, _, Some(tags)) if tags.iter().any(|t| t == "*") => XcapCondition::IfAbsent,
        (Some(cur), None, Some(_)) => XcapCondition::IfMatch(cur.to_string()),
        (None, None, Some(_)) => XcapCondition::IfAbsent,
        _ => XcapCondition::None,
    };
    Ok(Conditional::Proceed(store_condition))
}

enum Conditional {
    Proceed(XcapCondition),
    /// `If-Match` did not match: 412.
    Failed,
    /// `If-None-Match` matched: 304 for GET, 412 otherwise.
    NoneMatchFailed,
}

fn new_etag() -> String {
    format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

fn quoted(etag: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{etag}\"")).unwrap_or(HeaderValue::from_static("\"\""))
}

impl XcapState {
    /// The authenticated user name, or the 401 to send.
    async fn authenticate(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<String, Response> {
        let now = u64::try_from(unix_now()).unwrap_or(0);
        let request_target = uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or_else(|| uri.path());
        let mut stale = false;
        for raw in headers.get_all(header::AUTHORIZATION) {
            let Ok(text) = raw.to_str() else { continue };
            let Ok(creds) = Credentials::parse(text) else {
                continue;
            };
            if creds.realm != self.settings.realm
                || creds.uri != request_target
                || !self
                    .settings
                    .algorithms
                    .iter()
                    .any(|a| a.base() == creds.algorithm.base())
            {
                continue;
            }
            let ha1 = match self
                .store
                .ha1(&creds.username, &self.settings.domain, creds.algorithm)
                .await
            {
                Ok(Some(h)) => h,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "XCAP HA1 lookup failed");
                    return Err(plain(StatusCode::SERVICE_UNAVAILABLE, "store unavailable"));
                }
            };
            if !tandem_proto::auth::verify_with_body(&creds, method.as_str(), &ha1, body) {
                continue;
            }
            let status = self.issuer.lock().unwrap_or_else(|p| p.into_inner()).check(
                &creds.nonce,
                creds.nc,
                now,
            );
            match status {
                NonceStatus::Valid => return Ok(creds.username),
                NonceStatus::Stale => stale = true,
                _ => {}
            }
        }
        Err(self.challenge(stale, now))
    }

    fn challenge(&self, stale: bool, now: u64) -> Response {
        let mut challenge = self
            .issuer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .challenge(
                &self.settings.realm,
                Algorithm::Md5,
                now,
                rand::random(),
                stale,
            );
        let mut response = plain(StatusCode::UNAUTHORIZED, "authentication required");
        for alg in &self.settings.algorithms {
            challenge.algorithm = *alg;
            if let Ok(v) = HeaderValue::from_str(&challenge.to_string()) {
                response.headers_mut().append(header::WWW_AUTHENTICATE, v);
            }
        }
        response
    }

    fn is_local_host(&self, host: &str) -> bool {
        host == self.settings.domain || self.settings.local_hosts.iter().any(|h| h == host)
    }

    async fn serve(&self, method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
        let max = self.settings.max_document_bytes;
        let body = match axum::body::to_bytes(body, max).await {
            Ok(b) => b,
            Err(_) => return plain(StatusCode::PAYLOAD_TOO_LARGE, "document too large"),
        };
        let user = match self.authenticate(&method, &uri, &headers, &body).await {
            Ok(u) => u,
            Err(r) => return r,
        };
        let target = match parse_target(uri.path()) {
            Ok(t) => t,
            Err(PathError::NotFound) => return plain(StatusCode::NOT_FOUND, "no such document"),
            Err(PathError::BadSelector) => {
                return plain(StatusCode::BAD_REQUEST, "bad node selector");
            }
        };
        match target {
            Target::Caps => {
                if method == Method::GET {
                    ([(header::CONTENT_TYPE, MIME_XCAP_CAPS)], caps_document()).into_response()
                } else {
                    let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "read-only document");
                    r.headers_mut()
                        .insert(header::ALLOW, HeaderValue::from_static("GET"));
                    r
                }
            }
            Target::UserDocument {
                auid,
                user: owner,
                host,
                document,
                selector,
            } => {
                if !self.is_local_host(&host) {
                    return plain(StatusCode::NOT_FOUND, "not a user of this server");
                }
                if owner != user {
                    return plain(StatusCode::FORBIDDEN, "another user's document");
                }
                let xui = format!("{owner}@{}", self.settings.domain);
                match selector {
                    Some(sel) => {
                        let selector =
                            match NodeSelector::parse(&sel, uri.query(), default_namespace(auid)) {
                                Ok(s) => s,
                                Err(e) => return plain(StatusCode::BAD_REQUEST, &e.to_string()),
                            };
                        self.node(method, &headers, auid, xui, document, &selector, &body)
                            .await
                    }
                    None => {
                        self.document(method, &headers, auid, xui, document, body.to_vec())
                            .await
                    }
                }
            }
        }
    }

    /// GET, PUT or DELETE of the node `selector` picks in a document (RFC 4825 §7.3–§7.9).
    #[allow(clippy::too_many_arguments)]
    async fn node(
        &self,
        method: Method,
        headers: &HeaderMap,
        auid: &'static str,
        xui: String,
        name: String,
        selector: &NodeSelector,
        body: &[u8],
    ) -> Response {
        let current = match self.store.xcap_get(auid, &xui, &name).await {
            Ok(Some(c)) => c,
            Ok(None) => return plain(StatusCode::NOT_FOUND, "no such document"),
            Err(e) => return store_failed(&e),
        };
        match condition(headers, Some(current.etag.as_str())) {
            Ok(Conditional::Proceed(_)) => {}
            Ok(Conditional::NoneMatchFailed) if matches!(method, Method::GET | Method::HEAD) => {
                let mut r = StatusCode::NOT_MODIFIED.into_response();
                r.headers_mut().insert(header::ETAG, quoted(&current.etag));
                return r;
            }
            Ok(_) => return plain(StatusCode::PRECONDITION_FAILED, "entity tag does not match"),
            Err(()) => return plain(StatusCode::BAD_REQUEST, "malformed entity tag"),
        }
        let doc = match tandem_proto::simple::xml::parse(&current.body) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(%xui, auid, error = %e, "stored XCAP document unreadable");
                return plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "stored document unreadable",
                );
            }
        };
        let node_failed = |e: NodeError| match e {
            NodeError::NotFound => plain(StatusCode::NOT_FOUND, "no such node"),
            NodeError::Syntax(s) => plain(StatusCode::BAD_REQUEST, &s),
            NodeError::ReadOnly => {
                let mut r = plain(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "namespace bindings are read-only",
                );
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET"));
                r
            }
            other => xcap_error(other.condition(), &other.to_string()),
        };
        let (new_doc, status) = match method {
            Method::GET | Method::HEAD => {
                return match selector.get(&doc) {
                    Ok(selected) => {
                        let mime = selected.mime();
                        let mut r = if method == Method::HEAD {
                            StatusCode::OK.into_response()
                        } else {
                            selected.into_body().into_response()
                        };
                        r.headers_mut()
                            .insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
                        r.headers_mut().insert(header::ETAG, quoted(&current.etag));
                        r
                    }
                    Err(e) => node_failed(e),
                };
            }
            Method::PUT => {
                let given = headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| {
                        v.split(';')
                            .next()
                            .unwrap_or("")
                            .trim()
                            .to_ascii_lowercase()
                    });
                let wanted = selector.body_mime();
                if given.as_deref() != Some(wanted) {
                    return plain(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        &format!("this node is written as {wanted}"),
                    );
                }
                match selector.put(&doc, body) {
                    Ok((d, true)) => (d, StatusCode::CREATED),
                    Ok((d, false)) => (d, StatusCode::OK),
                    Err(e) => return node_failed(e),
                }
            }
            Method::DELETE => match selector.delete(&doc) {
                Ok(d) => (d, StatusCode::OK),
                Err(e) => return node_failed(e),
            },
            _ => {
                let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, PUT, DELETE"));
                return r;
            }
        };
        let text = new_doc.to_document().into_bytes();
        if text.len() > self.settings.max_document_bytes {
            return plain(StatusCode::PAYLOAD_TOO_LARGE, "document too large");
        }
        if let Err((condition, phrase)) = validate(auid, &text) {
            return xcap_error(condition, &phrase);
        }
        let new = XcapDocument {
            auid: auid.to_string(),
            xui: xui.clone(),
            name: name.clone(),
            etag: new_etag(),
            content_type: current.content_type.clone(),
            body: text,
            updated_at: unix_now(),
        };
        // The read-modify-write holds only if nobody changed the document meanwhile.
        match self
            .store
            .xcap_put(&new, &XcapCondition::IfMatch(current.etag.clone()))
            .await
        {
            Ok(XcapWrite::Created | XcapWrite::Replaced) => {}
            Ok(XcapWrite::PreconditionFailed) => {
                return plain(
                    StatusCode::CONFLICT,
                    "the document changed meanwhile; retry",
                );
            }
            Err(e) => return store_failed(&e),
        }
        (self.on_change)(XcapChange {
            auid: auid.to_string(),
            xui,
            document: name,
        });
        let mut r = status.into_response();
        r.headers_mut().insert(header::ETAG, quoted(&new.etag));
        r
    }

    async fn document(
        &self,
        method: Method,
        headers: &HeaderMap,
        auid: &'static str,
        xui: String,
        name: String,
        body: Vec<u8>,
    ) -> Response {
        let current = match self.store.xcap_get(auid, &xui, &name).await {
            Ok(c) => c,
            Err(e) => return store_failed(&e),
        };
        let cond = match condition(headers, current.as_ref().map(|d| d.etag.as_str())) {
            Ok(c) => c,
            Err(()) => return plain(StatusCode::BAD_REQUEST, "malformed entity tag"),
        };
        match method {
            Method::GET | Method::HEAD => {
                let Some(doc) = current else {
                    return plain(StatusCode::NOT_FOUND, "no such document");
                };
                match cond {
                    Conditional::Failed => {
                        plain(StatusCode::PRECONDITION_FAILED, "entity tag does not match")
                    }
                    Conditional::NoneMatchFailed => {
                        let mut r = StatusCode::NOT_MODIFIED.into_response();
                        r.headers_mut().insert(header::ETAG, quoted(&doc.etag));
                        r
                    }
                    Conditional::Proceed(_) => {
                        let content_type = HeaderValue::from_str(&doc.content_type)
                            .unwrap_or(HeaderValue::from_static(MIME_RESOURCE_LISTS));
                        let mut r = if method == Method::HEAD {
                            StatusCode::OK.into_response()
                        } else {
                            doc.body.into_response()
                        };
                        r.headers_mut().insert(header::CONTENT_TYPE, content_type);
                        r.headers_mut().insert(header::ETAG, quoted(&doc.etag));
                        r
                    }
                }
            }
            Method::PUT => {
                let store_condition = match cond {
                    Conditional::Proceed(c) => c,
                    _ => {
                        return plain(StatusCode::PRECONDITION_FAILED, "entity tag does not match");
                    }
                };
                let mime = mime_of(auid);
                let given = headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| {
                        v.split(';')
                            .next()
                            .unwrap_or("")
                            .trim()
                            .to_ascii_lowercase()
                    });
                if given.as_deref() != Some(mime) {
                    return plain(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        &format!("{auid} documents are {mime}"),
                    );
                }
                if let Err((condition, phrase)) = validate(auid, &body) {
                    return xcap_error(condition, &phrase);
                }
                if current.is_none() {
                    match self.store.xcap_count(&xui).await {
                        Ok(n) if n >= self.settings.max_documents_per_user => {
                            return plain(StatusCode::INSUFFICIENT_STORAGE, "too many documents");
                        }
                        Ok(_) => {}
                        Err(e) => return store_failed(&e),
                    }
                }
                let doc = XcapDocument {
                    auid: auid.to_string(),
                    xui: xui.clone(),
                    name: name.clone(),
                    etag: new_etag(),
                    content_type: mime.to_string(),
                    body,
                    updated_at: unix_now(),
                };
                let status = match self.store.xcap_put(&doc, &store_condition).await {
                    Ok(XcapWrite::Created) => StatusCode::CREATED,
                    Ok(XcapWrite::Replaced) => StatusCode::OK,
                    Ok(XcapWrite::PreconditionFailed) => {
                        return plain(StatusCode::PRECONDITION_FAILED, "entity tag does not match");
                    }
                    Err(e) => return store_failed(&e),
                };
                (self.on_change)(XcapChange {
                    auid: auid.to_string(),
                    xui,
                    document: name,
                });
                let mut r = status.into_response();
                r.headers_mut().insert(header::ETAG, quoted(&doc.etag));
                r
            }
            Method::DELETE => {
                let store_condition = match cond {
                    Conditional::Proceed(c) => c,
                    _ => {
                        return plain(StatusCode::PRECONDITION_FAILED, "entity tag does not match");
                    }
                };
                match self
                    .store
                    .xcap_delete(auid, &xui, &name, &store_condition)
                    .await
                {
                    Ok(XcapDelete::Deleted) => {
                        (self.on_change)(XcapChange {
                            auid: auid.to_string(),
                            xui,
                            document: name,
                        });
                        StatusCode::OK.into_response()
                    }
                    Ok(XcapDelete::NotFound) => plain(StatusCode::NOT_FOUND, "no such document"),
                    Ok(XcapDelete::PreconditionFailed) => {
                        plain(StatusCode::PRECONDITION_FAILED, "entity tag does not match")
                    }
                    Err(e) => store_failed(&e),
                }
            }
            _ => {
                let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, PUT, DELETE"));
                r
            }
        }
    }
}

fn store_failed(e: &StoreError) -> Response {
    tracing::warn!(error = %e, "XCAP store access failed");
    let mut r = plain(StatusCode::SERVICE_UNAVAILABLE, "store unavailable");
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

async fn handle(
    State(state): State<Arc<XcapState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    state.serve(method, uri, headers, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            parse_target("/xcap-root/pres-rules/users/sip:alice@Tandem.lab/index"),
            Ok(Target::UserDocument {
                auid: AUID_PRES_RULES,
                user: "alice".into(),
                host: "tandem.lab".into(),
                document: "index".into(),
                selector: None,
            })
        );
        assert_eq!(
            parse_target("/xcap-root/resource-lists/users/bob%40tandem.lab/buddies.xml"),
            Ok(Target::UserDocument {
                auid: AUID_RESOURCE_LISTS,
                user: "bob".into(),
                host: "tandem.lab".into(),
                document: "buddies.xml".into(),
                selector: None,
            })
        );
        assert_eq!(
            parse_target("/xcap-root/xcap-caps/global/index"),
            Ok(Target::Caps)
        );
        assert_eq!(
            parse_target(
                "/xcap-root/resource-lists/users/sip:a@b/index/~~/resource-lists/list%5b@name=%22x%22%5d"
            ),
            Ok(Target::UserDocument {
                auid: AUID_RESOURCE_LISTS,
                user: "a".into(),
                host: "b".into(),
                document: "index".into(),
                selector: Some("resource-lists/list[@name=\"x\"]".into()),
            })
        );
        assert_eq!(
            parse_target("/xcap-root/pres-rules/users/a@b/index/~~/%ff"),
            Err(PathError::BadSelector)
        );
        for bad in [
            "/",
            "/xcap-root",
            "/xcap-root/other/users/a@b/index",
            "/xcap-root/pres-rules/users/nohost/index",
            "/xcap-root/pres-rules/users/a@b/",
            "/xcap-root/pres-rules/users/a@b/x%2Fy",
            "/xcap-root/pres-rules/users/a%zz@b/index",
            "/xcap-root/pres-rules/users/a@b/index~~",
            "/xcap-root/xcap-caps/global/index/~~/xcap-caps",
        ] {
            assert_eq!(parse_target(bad), Err(PathError::NotFound), "{bad}");
        }
    }

    #[test]
    fn bind_address() {
        let c = XcapConfig::default();
        let eph = [SocketAddr::from(([127, 0, 0, 1], 0))];
        assert_eq!(c.bind_addr(&eph), SocketAddr::from(([127, 0, 0, 1], 0)));
        let fixed = [SocketAddr::from(([10, 0, 0, 1], 5061))];
        assert_eq!(
            c.bind_addr(&fixed),
            SocketAddr::from(([10, 0, 0, 1], DEFAULT_XCAP_PORT))
        );
        let c = XcapConfig {
            port: Some(8443),
            ..XcapConfig::default()
        };
        assert_eq!(c.bind_addr(&eph).port(), 8443);
    }

    #[test]
    fn conditions() {
        let mut h = HeaderMap::new();
        h.insert(header::IF_MATCH, HeaderValue::from_static("\"abc\""));
        assert!(matches!(
            condition(&h, Some("abc")),
            Ok(Conditional::Proceed(XcapCondition::IfMatch(ref e))) if e == "abc"
        ));
        assert!(matches!(condition(&h, Some("x")), Ok(Conditional::Failed)));
        assert!(matches!(condition(&h, None), Ok(Conditional::Failed)));
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(matches!(
            condition(&h, None),
            Ok(Conditional::Proceed(XcapCondition::IfAbsent))
        ));
        assert!(matches!(
            condition(&h, Some("x")),
            Ok(Conditional::NoneMatchFailed)
        ));
        let mut h = HeaderMap::new();
        h.insert(header::IF_MATCH, HeaderValue::from_static("abc"));
        assert!(condition(&h, Some("abc")).is_err());
    }
}
