//! An HTTPS server for the lab's HTTP services (XCAP, click-to-call API): TLS handshakes
//! run off the accept path (a slow one never blocks the others), axum serves the finished
//! connections, and shutdown lets requests in progress finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Time allowed for one TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Finished handshakes waiting for the HTTP server to pick them up.
const MAX_PENDING_CONNECTIONS: usize = 64;
/// How long shutdown waits for requests in progress.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// A running HTTPS server: an axum router behind a TLS acceptor on a bound TCP listener.
pub struct HttpsServer {
    name: &'static str,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    acceptor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for HttpsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsServer")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl HttpsServer {
    /// Serves `app` on `listener` with `tls` (HTTP/1.1 offered by ALPN); `name` labels the log
    /// lines ("API", "XCAP"). Fails only when the listener's address cannot be read.
    pub fn start(
        listener: TcpListener,
        tls: &rustls::ServerConfig,
        app: axum::Router,
        name: &'static str,
    ) -> std::io::Result<HttpsServer> {
        let addr = listener.local_addr()?;
        let mut tls = tls.clone();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let (conn_tx, conn_rx) = mpsc::channel(MAX_PENDING_CONNECTIONS);
        let acceptor = tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(Arc::new(tls)),
            conn_tx,
            name,
        ));
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(TlsListener { rx: conn_rx, addr }, app)
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "{name} server stopped");
            }
        });
        Ok(HttpsServer {
            name,
            addr,
            stop: Some(stop_tx),
            task: Some(task),
            acceptor: Some(acceptor),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and lets requests in progress finish (at most a few seconds).
    pub async fn shutdown(mut self) {
        if let Some(a) = self.acceptor.take() {
            a.abort();
        }
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, t).await.is_err()
        {
            tracing::debug!("{} connections still open at shutdown", self.name);
        }
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        if let Some(a) = self.acceptor.take() {
            a.abort();
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Accepts TCP connections and hands finished TLS handshakes to the HTTP server.
async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    name: &'static str,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "{name} accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = tx.send((stream, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "{name} TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "{name} TLS handshake timed out"),
            }
        });
    }
}

/// The TLS connections accepted by [`accept_loop`], as an axum listener.
struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The acceptor is gone (shutting down): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}
