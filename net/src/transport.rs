//! Sockets and stream connections: binding listeners, the per-connection tasks, TLS.
//!
//! Every task here only moves bytes; each reports to the driver over one channel of
//! [`NetInput`]. A stream connection is one task that owns the write half, a queue of
//! outgoing messages, the keep-alive and idle timers, and a reader sub-task that frames
//! incoming bytes into SIP messages.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rustls_pki_types::ServerName;
use socket2::{Domain, Protocol, Socket, Type};
use tandem_proto::msg::{Frame, StreamFramer};
use tandem_proto::{Flow, Transport};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The largest UDP datagram we send or accept.
pub(crate) const MAX_DATAGRAM: usize = 65535;
/// How long a TCP connect plus TLS handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long we wait for a CRLF pong after a CRLFCRLF ping (RFC 5626 §4.4.1).
const PONG_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest message accepted on a stream (as for UDP): a bigger one, or a header section
/// that does not end within it, closes the connection.
pub(crate) const MAX_STREAM_MESSAGE: usize = 65535;
/// Outgoing messages queued on one connection before senders see it as congested.
const QUEUE_LEN: usize = 256;

/// A process-unique id for one stream connection.
pub(crate) type ConnId = u64;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

fn next_conn_id() -> ConnId {
    NEXT_CONN.fetch_add(1, Ordering::Relaxed)
}

/// What the socket tasks tell the driver.
#[derive(Debug)]
pub(crate) enum NetInput {
    /// A UDP datagram arrived.
    Datagram {
        data: Bytes,
        flow: Flow,
        /// Index of the receiving UDP socket in the driver's list.
        socket: usize,
    },
    /// A complete SIP message arrived on a stream connection.
    Message {
        conn: ConnId,
        flow: Flow,
        data: Bytes,
    },
    /// A connection was accepted (and its TLS handshake finished); `queue` writes to it.
    Accepted {
        conn: ConnId,
        flow: Flow,
        queue: mpsc::Sender<Bytes>,
    },
    /// A connection ended; `error` says why when it was not an orderly close.
    Closed {
        conn: ConnId,
        flow: Flow,
        error: Option<String>,
    },
}

/// Settings shared by all stream connections of an endpoint.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnOptions {
    /// CRLF keep-alive interval on connections we opened.
    pub keepalive: Option<Duration>,
    /// Close a connection with no traffic for this long.
    pub idle_timeout: Duration,
}

/// Binds a UDP socket (IPv6 sockets are IPv6-only, so v4 and v6 can share a port number).
pub(crate) fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    // Room for bursts of retransmissions and large messages.
    let _ = socket.set_recv_buffer_size(1 << 20);
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// Binds a TCP listener (address reuse on, IPv6-only for IPv6 addresses).
pub(crate) fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// The first line of a message (or `<n bytes>` when it is not text), for logs.
pub(crate) fn start_line(data: &[u8]) -> String {
    let end = data
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(data.len().min(200));
    match std::str::from_utf8(data.get(..end).unwrap_or_default()) {
        Ok(s) => s.to_string(),
        Err(_) => format!("<{} bytes>", data.len()),
    }
}

/// Logs one SIP message in or out: the start line at debug, the whole message at trace.
pub(crate) fn log_message(direction: &str, flow: &Flow, data: &[u8]) {
    tracing::debug!(%flow, len = data.len(), "{direction} {}", start_line(data));
    tracing::trace!(%flow, "{direction}\n{}", String::from_utf8_lossy(data));
}

/// Receives datagrams from `socket` forever, forwarding each to the driver.
pub(crate) async fn udp_reader(socket: Arc<UdpSocket>, index: usize, net: mpsc::Sender<NetInput>) {
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, remote)) => {
                if n == 0 || n > MAX_DATAGRAM {
                    continue;
                }
                let data = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                let flow = Flow::new(Transport::Udp, canonical(remote));
                let input = NetInput::Datagram {
                    data,
                    flow,
                    socket: index,
                };
                if net.send(input).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // ICMP port unreachable shows up here on some systems: not fatal.
                tracing::debug!(error = %e, "UDP receive error");
                if net.is_closed() {
                    return;
                }
                tokio::task::yield_now().await;
            }
        }
    }
}

/// An IPv4-mapped IPv6 address as plain IPv4, so one peer has one flow.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

/// Accepts connections forever; each gets its own task (TLS handshake first when `tls` is set).
pub(crate) async fn accept_loop(
    listener: TcpListener,
    transport: Transport,
    tls: Option<TlsAcceptor>,
    options: ConnOptions,
    net: mpsc::Sender<NetInput>,
) {
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(error = %e, %transport, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if net.is_closed() {
            return;
        }
        let _ = tcp.set_nodelay(true);
        let flow = Flow::new(transport, canonical(remote));
        let tls = tls.clone();
        let net = net.clone();
        tokio::spawn(async move {
            let conn = next_conn_id();
            tracing::debug!(%flow, conn, "accepted connection");
            match tls {
                None => incoming_connection(tcp, conn, flow, options, net).await,
                Some(acceptor) => {
                    match tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            incoming_connection(stream, conn, flow, options, net).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%flow, error = %e, "TLS accept failed"),
                        Err(_) => tracing::debug!(%flow, "TLS accept timed out"),
                    }
                }
            }
        });
    }
}

async fn incoming_connection<S>(
    stream: S,
    conn: ConnId,
    flow: Flow,
    options: ConnOptions,
    net: mpsc::Sender<NetInput>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (queue_tx, queue_rx) = mpsc::channel(QUEUE_LEN);
    if net
        .send(NetInput::Accepted {
            conn,
            flow,
            queue: queue_tx,
        })
        .await
        .is_err()
    {
        return;
    }
    // Keep-alive pings are sent only on connections we opened (RFC 5626 §4.4.1).
    let options = ConnOptions {
        keepalive: None,
        ..options
    };
    let error = run_connection(stream, conn, flow, queue_rx, options, net.clone()).await;
    let _ = net.send(NetInput::Closed { conn, flow, error }).await;
}

/// How to open an outgoing connection.
pub(crate) struct Outgoing {
    /// Where to.
    pub flow: Flow,
    /// For TLS: the connector and the name to verify (and send as SNI).
    pub tls: Option<(TlsConnector, ServerName<'static>)>,
}

/// Opens an outgoing connection and runs it; messages queued before it is up are sent once it is.
pub(crate) fn spawn_outgoing(
    out: Outgoing,
    conn: ConnId,
    queue_rx: mpsc::Receiver<Bytes>,
    options: ConnOptions,
    net: mpsc::Sender<NetInput>,
) {
    tokio::spawn(async move {
        let flow = out.flow;
        let error = match tokio::time::timeout(CONNECT_TIMEOUT, connect(&out)).await {
            Err(_) => Some("connect timed out".to_string()),
            Ok(Err(e)) => Some(e),
            Ok(Ok(Stream::Tcp(tcp))) => {
                run_connection(tcp, conn, flow, queue_rx, options, net.clone()).await
            }
            Ok(Ok(Stream::Tls(tls))) => {
                run_connection(*tls, conn, flow, queue_rx, options, net.clone()).await
            }
        };
        if let Some(e) = &error {
            tracing::debug!(%flow, conn, error = %e, "connection failed");
        }
        let _ = net.send(NetInput::Closed { conn, flow, error }).await;
    });
}

/// A freshly allocated connection id for an outgoing connection.
pub(crate) fn new_conn_id() -> ConnId {
    next_conn_id()
}

enum Stream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

async fn connect(out: &Outgoing) -> Result<Stream, String> {
    let tcp = TcpStream::connect(out.flow.remote)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    match &out.tls {
        None => Ok(Stream::Tcp(tcp)),
        Some((connector, name)) => connector
            .connect(name.clone(), tcp)
            .await
            .map(|s| Stream::Tls(Box::new(s)))
            .map_err(|e| format!("TLS handshake: {e}")),
    }
}

/// Control messages from a connection's reader to its writer.
enum Ctl {
    /// The peer pinged (CRLFCRLF): answer with a CRLF pong.
    SendPong,
    /// The peer answered our ping.
    GotPong,
}

/// Milliseconds since `base`, for a shared "last activity" stamp.
fn stamp(base: Instant) -> u64 {
    u64::try_from(base.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Runs an established connection until it closes; returns the error, if any.
async fn run_connection<S>(
    stream: S,
    conn: ConnId,
    flow: Flow,
    mut queue: mpsc::Receiver<Bytes>,
    options: ConnOptions,
    net: mpsc::Sender<NetInput>,
) -> Option<String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (read_half, mut write_half) = tokio::io::split(stream);
    let base = Instant::now();
    let activity = Arc::new(AtomicU64::new(0));
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<Ctl>(8);
    let mut reader = tokio::spawn(read_loop(
        read_half,
        conn,
        flow,
        net,
        ctl_tx,
        Arc::clone(&activity),
        base,
    ));

    let mut ping_timer = options.keepalive.map(|k| {
        let mut t = tokio::time::interval_at(base + k, k);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let mut pong_deadline: Option<Instant> = None;
    let idle = options.idle_timeout;

    let result = loop {
        let last = base + Duration::from_millis(activity.load(Ordering::Relaxed));
        let idle_at = last + idle;
        let pong_at = pong_deadline.unwrap_or(idle_at);
        tokio::select! {
            msg = queue.recv() => match msg {
                Some(data) => {
                    if let Err(e) = write_half.write_all(&data).await {
                        break Some(format!("write: {e}"));
                    }
                    activity.store(stamp(base), Ordering::Relaxed);
                }
                // The driver dropped the connection.
                None => break None,
            },
            ctl = ctl_rx.recv() => match ctl {
                Some(Ctl::SendPong) => {
                    if let Err(e) = write_half.write_all(b"\r\n").await {
                        break Some(format!("write: {e}"));
                    }
                }
                Some(Ctl::GotPong) => pong_deadline = None,
                None => {}
            },
            _ = async {
                match ping_timer.as_mut() {
                    Some(t) => { t.tick().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {
                tracing::trace!(%flow, "keep-alive ping");
                if let Err(e) = write_half.write_all(b"\r\n\r\n").await {
                    break Some(format!("write: {e}"));
                }
                if pong_deadline.is_none() {
                    pong_deadline = Some(Instant::now() + PONG_TIMEOUT);
                }
            },
            _ = tokio::time::sleep_until(pong_at.min(idle_at)) => {
                let now = Instant::now();
                if pong_deadline.is_some_and(|d| d <= now) {
                    break Some("no keep-alive pong".to_string());
                }
                let last = base + Duration::from_millis(activity.load(Ordering::Relaxed));
                if last + idle <= now {
                    tracing::debug!(%flow, conn, "idle connection closed");
                    break None;
                }
            },
            res = &mut reader => break match res {
                Ok(r) => r,
                Err(e) => Some(format!("reader task: {e}")),
            },
        }
    };
    reader.abort();
    let _ = write_half.shutdown().await;
    result
}

/// Reads and frames incoming bytes; returns why it stopped (None on an orderly EOF).
async fn read_loop<R>(
    mut read_half: R,
    conn: ConnId,
    flow: Flow,
    net: mpsc::Sender<NetInput>,
    ctl: mpsc::Sender<Ctl>,
    activity: Arc<AtomicU64>,
    base: Instant,
) -> Option<String>
where
    R: AsyncRead + Unpin,
{
    let mut framer = StreamFramer::new(MAX_STREAM_MESSAGE);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        buf.clear();
        buf.reserve(16 * 1024);
        match read_half.read_buf(&mut buf).await {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) => return Some(format!("read: {e}")),
        }
        activity.store(stamp(base), Ordering::Relaxed);
        framer.push(&buf);
        loop {
            match framer.next() {
                Some(Ok(Frame::Message(data))) => {
                    if net
                        .send(NetInput::Message { conn, flow, data })
                        .await
                        .is_err()
                    {
                        return None;
                    }
                }
                Some(Ok(Frame::KeepAlive)) => {
                    tracing::trace!(%flow, "keep-alive ping received");
                    let _ = ctl.send(Ctl::SendPong).await;
                }
                Some(Ok(Frame::Pong)) => {
                    let _ = ctl.send(Ctl::GotPong).await;
                }
                None => break,
                Some(Err(e)) => {
                    tracing::debug!(%flow, conn, error = %e, "bad stream data, closing");
                    return Some(format!("framing: {e}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_line_of_messages() {
        assert_eq!(
            start_line(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n"),
            "OPTIONS sip:a@b SIP/2.0"
        );
        assert_eq!(start_line(b"\xff\xfe\r\n"), "<4 bytes>");
        assert_eq!(start_line(b""), "");
    }

    #[test]
    fn mapped_addresses_become_ipv4() {
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:5060".parse().unwrap();
        assert_eq!(canonical(mapped), "192.0.2.1:5060".parse().unwrap());
        let v6: SocketAddr = "[2001:db8::1]:5060".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }
}
