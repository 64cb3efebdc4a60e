//! Shared helpers for the tandem-net integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod dns;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tandem_net::{DnsConfig, Endpoint, EndpointConfig, Incoming, IncomingEvent, TxOutcome};
use tandem_proto::msg::{HeaderName, Method, Request, Response, Uri};
use tokio::task::JoinHandle;

/// Aborts a spawned task when dropped (also when a test fails).
pub struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

static SEED: AtomicU64 = AtomicU64::new(1000);

/// A config with no listeners, no DNS, short timers and a distinct seed.
pub fn config() -> EndpointConfig {
    let mut c = EndpointConfig {
        dns: DnsConfig::Disabled,
        ..EndpointConfig::default()
    };
    c.tx.seed = SEED.fetch_add(1, Ordering::Relaxed);
    c.tx.t1 = Duration::from_millis(50);
    c.tx.t2 = Duration::from_millis(400);
    c.tx.t4 = Duration::from_millis(500);
    c
}

pub fn any(ip: &str) -> SocketAddr {
    format!("{ip}:0").parse().unwrap()
}

static CALL: AtomicU64 = AtomicU64::new(1);

/// A well-formed OPTIONS to `uri` (Via is added by the transaction layer).
pub fn options(uri: &str) -> Request {
    let n = CALL.fetch_add(1, Ordering::Relaxed);
    let mut r = Request::new(Method::Options, Uri::parse(uri).unwrap());
    r.headers.push(
        HeaderName::From,
        format!("<sip:alice@example.test>;tag=f{n}"),
    );
    r.headers.push(HeaderName::To, format!("<{uri}>"));
    r.headers
        .push(HeaderName::CallId, format!("call-{n}@example.test"));
    r.headers.push(HeaderName::CSeq, "1 OPTIONS");
    r
}

/// Answers every incoming request with 200 (and counts nothing else) until dropped.
pub fn serve_200(ep: Endpoint, mut incoming: Incoming) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        while let Some(ev) = incoming.next().await {
            if let IncomingEvent::Request { tx, request, .. } = ev {
                ep.respond(tx, Response::for_request(&request, 200));
            }
        }
    }))
}

/// Waits for the next incoming request (with a time limit).
pub async fn next_request(
    incoming: &mut Incoming,
) -> (tandem_proto::transaction::TxId, Request, tandem_proto::Flow) {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), incoming.next())
            .await
            .expect("no incoming event in time")
            .expect("incoming closed");
        if let IncomingEvent::Request { tx, request, flow } = ev {
            return (tx, request, flow);
        }
    }
}

/// The final outcome of a client transaction (skipping provisionals), with a time limit.
pub async fn final_outcome(tx: &mut tandem_net::ClientTx) -> TxOutcome {
    loop {
        let out = tokio::time::timeout(Duration::from_secs(20), tx.next())
            .await
            .expect("no outcome in time")
            .expect("transaction ended without an outcome");
        if !matches!(out, TxOutcome::Provisional(_)) {
            return out;
        }
    }
}

/// The status of a final response outcome, or a panic describing what came instead.
pub fn status(out: &TxOutcome) -> u16 {
    match out {
        TxOutcome::Final(r) => r.status,
        other => panic!("expected a final response, got {other:?}"),
    }
}

/// A self-signed certificate for `names` and the matching server and client TLS configs.
pub fn tls_configs(names: &[&str]) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let ck = rcgen::generate_simple_self_signed(names).unwrap();
    let cert_der = ck.cert.der().clone();
    let key_der = rustls_pki_types::PrivateKeyDer::Pkcs8(
        rustls_pki_types::PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()),
    );
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key_der)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}
