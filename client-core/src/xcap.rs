//! XCAP client (RFC 4825) over HTTPS with digest authentication: whole-document
//! GET/PUT/DELETE with ETag / If-Match, and helpers editing the user's buddy list
//! (resource-lists, RFC 4826) and presence authorization rules (pres-rules, RFC 5025).
//!
//! A small HTTP/1.1 client over tokio-rustls: one connection per request
//! (`Connection: close`), Content-Length or chunked bodies, responses bounded to 2 MiB.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rustls::pki_types::ServerName;
use tandem_proto::auth::{Credentials, DigestClient, parse_challenges};
use tandem_proto::simple::pres_rules::{Ruleset, SubHandling};
use tandem_proto::simple::resource_lists::{DisplayName, Entry, List, ResourceLists};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use crate::account::Account;

/// The resource-lists application usage.
pub const AUID_RESOURCE_LISTS: &str = "resource-lists";
/// The pres-rules application usage.
pub const AUID_PRES_RULES: &str = "pres-rules";
/// `application/resource-lists+xml`.
pub const MIME_RESOURCE_LISTS: &str = "application/resource-lists+xml";
/// `application/auth-policy+xml`.
pub const MIME_PRES_RULES: &str = "application/auth-policy+xml";
/// The document name used for both (OMA convention): `index`.
pub const DOCUMENT: &str = "index";
/// The list in resource-lists holding buddies.
pub const BUDDY_LIST: &str = "buddies";
/// Largest response accepted.
const MAX_RESPONSE: usize = 2 * 1024 * 1024;
/// Time limit for one HTTP exchange.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Why an XCAP operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum XcapError {
    /// Connection, TLS or I/O failure.
    #[error("XCAP network error: {0}")]
    Network(String),
    /// The server's answer is not valid HTTP or XML.
    #[error("XCAP protocol error: {0}")]
    Protocol(String),
    /// Our credentials were refused.
    #[error("XCAP authentication failed")]
    AuthFailed,
    /// The document changed since we read it (412, If-Match failed).
    #[error("the document changed meanwhile (412)")]
    PreconditionFailed,
    /// Another HTTP status.
    #[error("XCAP server answered {status}: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// The beginning of the body (e.g. an `<xcap-error>`).
        body: String,
    },
    /// Bad configuration (root URL, account).
    #[error("XCAP configuration error: {0}")]
    Config(String),
}

/// A document with its entity tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XcapDocument {
    /// The ETag to use in If-Match.
    pub etag: Option<String>,
    /// The Content-Type.
    pub content_type: String,
    /// The document.
    pub body: Bytes,
}

/// One HTTP response.
#[derive(Debug)]
struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn error(&self) -> XcapError {
        match self.status {
            412 => XcapError::PreconditionFailed,
            401 => XcapError::AuthFailed,
            s => XcapError::Status {
                status: s,
                body: String::from_utf8_lossy(
                    self.body
                        .get(..self.body.len().min(300))
                        .unwrap_or_default(),
                )
                .into_owned(),
            },
        }
    }
}

/// An XCAP client for one user; cheap to clone.
#[derive(Debug, Clone)]
pub struct XcapClient {
    host: String,
    port: u16,
    root_path: String,
    xui: String,
    tls: Arc<rustls::ClientConfig>,
    digest: Option<Arc<Mutex<DigestClient>>>,
    creds: Arc<Mutex<Option<Credentials>>>,
}

impl XcapClient {
    /// A client for `account` at `root` (`https://host:port/xcap-root`), trusting `tls`'s roots.
    pub fn new(
        root: &str,
        account: &Account,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<XcapClient, XcapError> {
        let rest = root
            .strip_prefix("https://")
            .ok_or_else(|| XcapError::Config(format!("XCAP root {root:?} is not https://")))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/xcap-root"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| XcapError::Config(format!("bad port in {root:?}")))?;
                (h.trim_matches(['[', ']']).to_string(), port)
            }
            _ => (authority.trim_matches(['[', ']']).to_string(), 443),
        };
        if host.is_empty() || account.user.is_empty() || account.domain.is_empty() {
            return Err(XcapError::Config("empty host, user or domain".into()));
        }
        Ok(XcapClient {
            host,
            port,
            root_path: path.trim_end_matches('/').to_string(),
            xui: format!("sip:{}@{}", account.user, account.domain),
            tls,
            digest: account
                .password
                .as_deref()
                .map(|p| Arc::new(Mutex::new(DigestClient::new(account.auth_username(), p)))),
            creds: Arc::new(Mutex::new(None)),
        })
    }

    /// The path of one of our documents.
    pub fn document_path(&self, auid: &str, document: &str) -> String {
        format!("{}/{auid}/users/{}/{document}", self.root_path, self.xui)
    }

    /// GETs a document; `None` when it does not exist (404).
    pub async fn get(&self, auid: &str, document: &str) -> Result<Option<XcapDocument>, XcapError> {
        let r = self
            .request(
                "GET",
                &self.document_path(auid, document),
                &[],
                Bytes::new(),
            )
            .await?;
        match r.status {
            200 => Ok(Some(XcapDocument {
                etag: r.header("ETag").map(str::to_string),
                content_type: r.header("Content-Type").unwrap_or_default().to_string(),
                body: r.body,
            })),
            404 => Ok(None),
            _ => Err(r.error()),
        }
    }

    /// PUTs a whole document (`if_match`: its ETag, or `*` / none); returns the new ETag.
    pub async fn put(
        &self,
        auid: &str,
        document: &str,
        content_type: &str,
        body: Bytes,
        if_match: Option<&str>,
    ) -> Result<Option<String>, XcapError> {
        let mut headers = vec![("Content-Type", content_type.to_string())];
        match if_match {
            Some(tag) => headers.push(("If-Match", tag.to_string())),
            None => headers.push(("If-None-Match", "*".to_string())),
        }
        let r = self
            .request("PUT", &self.document_path(auid, document), &headers, body)
            .await?;
        if (200..300).contains(&r.status) {
            Ok(r.header("ETag").map(str::to_string))
        } else {
            Err(r.error())
        }
    }

    /// DELETEs a document (with If-Match when given).
    pub async fn delete(
        &self,
        auid: &str,
        document: &str,
        if_match: Option<&str>,
    ) -> Result<(), XcapError> {
        let headers: Vec<(&str, String)> = if_match
            .map(|t| vec![("If-Match", t.to_string())])
            .unwrap_or_default();
        let r = self
            .request(
                "DELETE",
                &self.document_path(auid, document),
                &headers,
                Bytes::new(),
            )
            .await?;
        if (200..300).contains(&r.status) {
            Ok(())
        } else {
            Err(r.error())
        }
    }

    /// Our resource-lists document (empty when none) and its ETag.
    pub async fn resource_lists(&self) -> Result<(ResourceLists, Option<String>), XcapError> {
        match self.get(AUID_RESOURCE_LISTS, DOCUMENT).await? {
            Some(doc) => Ok((
                ResourceLists::parse(&doc.body)
                    .map_err(|e| XcapError::Protocol(format!("resource-lists: {e}")))?,
                doc.etag,
            )),
            None => Ok((ResourceLists::default(), None)),
        }
    }

    /// Our pres-rules document (empty when none) and its ETag.
    pub async fn pres_rules(&self) -> Result<(Ruleset, Option<String>), XcapError> {
        match self.get(AUID_PRES_RULES, DOCUMENT).await? {
            Some(doc) => Ok((
                Ruleset::parse(&doc.body)
                    .map_err(|e| XcapError::Protocol(format!("pres-rules: {e}")))?,
                doc.etag,
            )),
            None => Ok((Ruleset::default(), None)),
        }
    }

    /// The entries of the `buddies` list.
    pub async fn buddies(&self) -> Result<Vec<Entry>, XcapError> {
        let (lists, _) = self.resource_lists().await?;
        Ok(lists
            .list(BUDDY_LIST)
            .map(|l| l.entries.clone())
            .unwrap_or_default())
    }

    /// Adds (or renames) a buddy; read-modify-write with If-Match, retried on 412.
    pub async fn add_buddy(&self, uri: &str, name: Option<&str>) -> Result<(), XcapError> {
        self.edit_lists(|lists| {
            let Some(list) = buddy_list(lists) else {
                return;
            };
            let display_name = name.map(|n| DisplayName {
                lang: None,
                text: n.to_string(),
            });
            match list.entries.iter_mut().find(|e| e.uri == uri) {
                Some(e) => e.display_name = display_name,
                None => list.entries.push(Entry {
                    uri: uri.to_string(),
                    display_name,
                    extra: Vec::new(),
                }),
            }
        })
        .await
    }

    /// Removes a buddy (no error when absent).
    pub async fn remove_buddy(&self, uri: &str) -> Result<(), XcapError> {
        self.edit_lists(|lists| {
            if let Some(list) = buddy_list(lists) {
                list.entries.retain(|e| e.uri != uri);
            }
        })
        .await
    }

    /// Allows `watcher` to see our presence (pres-rules `allow`).
    pub async fn allow_watcher(&self, watcher: &str) -> Result<(), XcapError> {
        self.set_handling(watcher, SubHandling::Allow).await
    }

    /// Blocks `watcher` (pres-rules `block`).
    pub async fn block_watcher(&self, watcher: &str) -> Result<(), XcapError> {
        self.set_handling(watcher, SubHandling::Block).await
    }

    /// Politely blocks `watcher` (they see us offline).
    pub async fn polite_block_watcher(&self, watcher: &str) -> Result<(), XcapError> {
        self.set_handling(watcher, SubHandling::PoliteBlock).await
    }

    async fn set_handling(&self, watcher: &str, handling: SubHandling) -> Result<(), XcapError> {
        for _ in 0..3 {
            let (mut rules, etag) = self.pres_rules().await?;
            let id = format!("w{}", rules.rules.len() + 1);
            rules.set_handling(&id, watcher, handling);
            match self
                .put(
                    AUID_PRES_RULES,
                    DOCUMENT,
                    MIME_PRES_RULES,
                    Bytes::from(rules.to_xml()),
                    etag.as_deref(),
                )
                .await
            {
                Err(XcapError::PreconditionFailed) => continue,
                other => return other.map(|_| ()),
            }
        }
        Err(XcapError::PreconditionFailed)
    }

    async fn edit_lists(&self, edit: impl Fn(&mut ResourceLists)) -> Result<(), XcapError> {
        for _ in 0..3 {
            let (mut lists, etag) = self.resource_lists().await?;
            edit(&mut lists);
            match self
                .put(
                    AUID_RESOURCE_LISTS,
                    DOCUMENT,
                    MIME_RESOURCE_LISTS,
                    Bytes::from(lists.to_xml()),
                    etag.as_deref(),
                )
                .await
            {
                Err(XcapError::PreconditionFailed) => continue,
                other => return other.map(|_| ()),
            }
        }
        Err(XcapError::PreconditionFailed)
    }

    /// One request with digest authentication (pre-emptive after the first challenge).
    async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<HttpResponse, XcapError> {
        let mut answered = false;
        loop {
            let auth = self.authorization(method, path);
            let mut hs: Vec<(&str, String)> = headers.to_vec();
            if let Some(a) = auth {
                hs.push(("Authorization", a));
            }
            let r = timeout(REQUEST_TIMEOUT, self.exchange(method, path, &hs, &body))
                .await
                .map_err(|_| XcapError::Network("timed out".into()))??;
            if r.status != 401 {
                if let Some(d) = &self.digest {
                    d.lock().unwrap_or_else(|p| p.into_inner()).accepted();
                }
                return Ok(r);
            }
            if answered {
                return Err(XcapError::AuthFailed);
            }
            answered = true;
            let Some(digest) = &self.digest else {
                return Err(XcapError::AuthFailed);
            };
            let values: Vec<&str> = r
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("WWW-Authenticate"))
                .map(|(_, v)| v.as_str())
                .collect();
            let challenges = parse_challenges(values);
            let cnonce = format!("{:016x}", rand::random::<u64>());
            let creds = digest
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .authorize_all(&challenges, method, path, &cnonce, &body)
                .map_err(|_| XcapError::AuthFailed)?;
            *self.creds.lock().unwrap_or_else(|p| p.into_inner()) = creds.into_iter().next();
        }
    }

    /// The Authorization value for the next request, from the last challenge.
    fn authorization(&self, method: &str, path: &str) -> Option<String> {
        let digest = self.digest.as_ref()?;
        let mut creds = self.creds.lock().unwrap_or_else(|p| p.into_inner());
        let old = creds.as_ref()?;
        let cnonce = format!("{:016x}", rand::random::<u64>());
        let fresh = digest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .preemptive(&old.realm, method, path, &cnonce)?;
        let value = fresh.to_string();
        *creds = Some(fresh);
        Some(value)
    }

    /// Connects, sends one request, reads the whole response.
    async fn exchange(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &Bytes,
    ) -> Result<HttpResponse, XcapError> {
        let net = |e: std::io::Error| XcapError::Network(e.to_string());
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(net)?;
        let name = ServerName::try_from(self.host.clone())
            .map_err(|e| XcapError::Config(format!("bad TLS server name: {e}")))?;
        let mut tls = TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(net)?;
        let host = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
             User-Agent: Tandem\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (n, v) in headers {
            let v: String = v.chars().filter(|c| *c != '\r' && *c != '\n').collect();
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str("\r\n");
        tls.write_all(head.as_bytes()).await.map_err(net)?;
        tls.write_all(body).await.map_err(net)?;
        tls.flush().await.map_err(net)?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match tls.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    raw.extend_from_slice(buf.get(..n).unwrap_or_default());
                    if raw.len() > MAX_RESPONSE {
                        return Err(XcapError::Protocol("response too large".into()));
                    }
                }
                // A peer closing without close_notify after a complete response is common.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(net(e)),
            }
        }
        parse_response(&raw)
    }
}

/// The `buddies` list, created when missing.
fn buddy_list(lists: &mut ResourceLists) -> Option<&mut List> {
    if !lists
        .lists
        .iter()
        .any(|l| l.name.as_deref() == Some(BUDDY_LIST))
    {
        lists.lists.push(List {
            name: Some(BUDDY_LIST.into()),
            ..List::default()
        });
    }
    lists
        .lists
        .iter_mut()
        .find(|l| l.name.as_deref() == Some(BUDDY_LIST))
}

/// Parses a complete HTTP/1.1 response (Content-Length, chunked, or until close).
fn parse_response(raw: &[u8]) -> Result<HttpResponse, XcapError> {
    let bad = |s: &str| XcapError::Protocol(s.to_string());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of HTTP headers"))?;
    let head = std::str::from_utf8(raw.get(..end).unwrap_or_default())
        .map_err(|_| bad("HTTP headers are not UTF-8"))?;
    let rest = raw.get(end + 4..).unwrap_or_default();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("empty response"))?;
    let mut parts = status_line.split_whitespace();
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(bad("not an HTTP/1.x response"));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad("bad status code"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let body = if find("Transfer-Encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else if let Some(len) = find("Content-Length") {
        let len: usize = len.parse().map_err(|_| bad("bad Content-Length"))?;
        rest.get(..len)
            .ok_or_else(|| bad("body shorter than Content-Length"))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse {
        status,
        headers,
        body: Bytes::from(body),
    })
}

/// Decodes a chunked body.
fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, XcapError> {
    let bad = |s: &str| XcapError::Protocol(s.to_string());
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("truncated chunk size"))?;
        let size_line = std::str::from_utf8(data.get(..eol).unwrap_or_default())
            .map_err(|_| bad("bad chunk size"))?;
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| bad("bad chunk size"))?;
        data = data.get(eol + 2..).unwrap_or_default();
        if size == 0 {
            return Ok(out);
        }
        let chunk = data.get(..size).ok_or_else(|| bad("truncated chunk"))?;
        out.extend_from_slice(chunk);
        if out.len() > MAX_RESPONSE {
            return Err(bad("response too large"));
        }
        data = data.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_length_and_chunked_responses() {
        let r =
            parse_response(b"HTTP/1.1 200 OK\r\nETag: \"x\"\r\nContent-Length: 3\r\n\r\nabcdef")
                .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("etag"), Some("\"x\""));
        assert_eq!(&r.body[..], b"abc");
        let r = parse_response(
            b"HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(&r.body[..], b"abcde");
        assert!(parse_response(b"garbage").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
    }
}
