//! One MSRP transport connection (TCP, or TLS toward a relay or peer): a reader task that frames
//! incoming bytes into messages (bounded queue, so a slow session stops reading the socket) and a
//! writer task fed by a bounded queue.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tandem_proto::msrp::{Framer, FramerLimits, Message, MsrpUri};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use super::MsrpError;

/// Time allowed for the TCP connect and the TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages queued from the reader before it stops reading the socket.
const INCOMING_QUEUE: usize = 32;
/// Serialized messages queued for the writer.
const OUTGOING_QUEUE: usize = 16;
/// Read buffer size.
const READ_BUF: usize = 64 * 1024;

/// Anything we can run MSRP over.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What the reader delivers: a message, or why the connection ended.
pub(crate) type Incoming = std::result::Result<Message, String>;

/// An open MSRP connection.
#[derive(Debug)]
pub(crate) struct Connection {
    /// Our end of the TCP connection.
    pub local: SocketAddr,
    /// The peer's (or relay's) end.
    pub peer: SocketAddr,
    incoming: mpsc::Receiver<Incoming>,
    writer: mpsc::Sender<Vec<u8>>,
    reader_task: JoinHandle<()>,
    writer_task: Option<JoinHandle<()>>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader_task.abort();
        if let Some(w) = &self.writer_task {
            w.abort();
        }
    }
}

/// The host of an MSRP URI without IPv6 brackets.
fn bare_host(uri: &MsrpUri) -> &str {
    uri.host.trim_start_matches('[').trim_end_matches(']')
}

/// Turns off Nagle on a fresh connection and reads its (local, peer) addresses.
fn tcp_setup(tcp: &TcpStream) -> Result<(SocketAddr, SocketAddr), MsrpError> {
    let _ = tcp.set_nodelay(true);
    let local = tcp
        .local_addr()
        .map_err(|e| MsrpError::Network(e.to_string()))?;
    let peer = tcp
        .peer_addr()
        .map_err(|e| MsrpError::Network(e.to_string()))?;
    Ok((local, peer))
}

impl Connection {
    /// Connects to the host and port of `uri` (TLS for `msrps:`, verified with `tls`).
    pub async fn connect(
        uri: &MsrpUri,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> Result<Connection, MsrpError> {
        let host = bare_host(uri).to_owned();
        let port = uri.port_or_default();
        let tcp = timeout(CONNECT_TIMEOUT, TcpStream::connect((host.as_str(), port)))
            .await
            .map_err(|_| MsrpError::Network(format!("connecting to {uri}: timed out")))?
            .map_err(|e| MsrpError::Network(format!("connecting to {uri}: {e}")))?;
        let (local, peer) = tcp_setup(&tcp)?;
        if !uri.secure {
            return Ok(Connection::start(Box::new(tcp), local, peer));
        }
        let config = tls.cloned().ok_or_else(|| {
            MsrpError::Config(format!(
                "{uri} needs TLS but no TLS client configuration is set"
            ))
        })?;
        let name = ServerName::try_from(host.clone())
            .map_err(|_| MsrpError::Config(format!("{host:?} is not a valid TLS server name")))?;
        let stream = timeout(
            CONNECT_TIMEOUT,
            TlsConnector::from(config).connect(name, tcp),
        )
        .await
        .map_err(|_| MsrpError::Network(format!("TLS handshake with {uri}: timed out")))?
        .map_err(|e| MsrpError::Network(format!("TLS handshake with {uri}: {e}")))?;
        Ok(Connection::start(Box::new(stream), local, peer))
    }

    /// Wraps a TCP connection a peer opened to us.
    pub fn accepted(tcp: TcpStream) -> Result<Connection, MsrpError> {
        let (local, peer) = tcp_setup(&tcp)?;
        Ok(Connection::start(Box::new(tcp), local, peer))
    }

    fn start(stream: Box<dyn Io>, local: SocketAddr, peer: SocketAddr) -> Connection {
        let (mut rd, mut wr) = tokio::io::split(stream);
        let (in_tx, in_rx) = mpsc::channel::<Incoming>(INCOMING_QUEUE);
        let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(OUTGOING_QUEUE);
        let reader_task = tokio::spawn(async move {
            let mut framer = Framer::new(FramerLimits::default());
            let mut buf = vec![0u8; READ_BUF];
            loop {
                let n = match rd.read(&mut buf).await {
                    Ok(0) => {
                        let _ = in_tx
                            .send(Err("connection closed by the peer".into()))
                            .await;
                        return;
                    }
                    Ok(n) => n,
                    Err(e) => {
                        let _ = in_tx.send(Err(format!("read error: {e}"))).await;
                        return;
                    }
                };
                framer.push(buf.get(..n).unwrap_or_default());
                loop {
                    match framer.pop() {
                        Ok(Some(msg)) => {
                            if in_tx.send(Ok(msg)).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            let _ = in_tx.send(Err(format!("framing error: {e}"))).await;
                            return;
                        }
                    }
                }
            }
        });
        let writer_task = tokio::spawn(async move {
            while let Some(bytes) = out_rx.recv().await {
                if let Err(e) = wr.write_all(&bytes).await {
                    tracing::debug!(error = %e, "MSRP write failed");
                    return;
                }
                if out_rx.is_empty() && wr.flush().await.is_err() {
                    return;
                }
            }
            let _ = wr.flush().await;
            let _ = wr.shutdown().await;
        });
        Connection {
            local,
            peer,
            incoming: in_rx,
            writer: out_tx,
            reader_task,
            writer_task: Some(writer_task),
        }
    }

    /// The next message, or why the connection ended (`None` once that was reported).
    pub async fn recv(&mut self) -> Option<Incoming> {
        self.incoming.recv().await
    }

    /// Queues bytes for the writer (waits while its queue is full).
    pub async fn send(&self, bytes: Vec<u8>) -> Result<(), MsrpError> {
        self.writer
            .send(bytes)
            .await
            .map_err(|_| MsrpError::Network("the MSRP connection is closed".into()))
    }

    /// A clone of the writer queue (to reserve a slot in `select!`).
    pub fn writer(&self) -> mpsc::Sender<Vec<u8>> {
        self.writer.clone()
    }

    /// Flushes what is queued and closes our side (waits at most two seconds).
    pub async fn close(mut self) {
        let (closed_tx, _) = mpsc::channel(1);
        // Replacing the sender drops ours, so the writer drains its queue and shuts down.
        drop(std::mem::replace(&mut self.writer, closed_tx));
        if let Some(w) = self.writer_task.take() {
            let _ = timeout(Duration::from_secs(2), w).await;
        }
    }
}
