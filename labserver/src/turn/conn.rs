//! TURN over TCP and TLS client connections (RFC 8656 §3.1): framing, a bounded writer queue,
//! and the allocation freed when the connection closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tandem_proto::stun::channel::Frame;
use tandem_proto::stun::{ChannelData, Message, StreamFramer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::bump;
use super::core::{ClientSink, ClientTransport, Core, FiveTuple};

/// Frames queued toward one client before more are dropped.
const WRITE_QUEUE: usize = 1024;
/// A connection that has sent nothing (and holds no allocation) for this long is closed.
const IDLE: Duration = Duration::from_secs(60);
/// Time allowed for a TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// Largest buffered, incomplete frame (a STUN message or ChannelData is at most 64 KiB + header).
const MAX_BUFFERED: usize = 65536 + 64;

/// Counts live connections; the guard decrements on drop.
struct ConnSlot(Arc<AtomicUsize>);

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn take_slot(count: &Arc<AtomicUsize>, max: usize) -> Option<ConnSlot> {
    let n = count.fetch_add(1, Ordering::Relaxed);
    let slot = ConnSlot(Arc::clone(count));
    (n < max).then_some(slot)
}

/// Waits for the next TCP client that fits under `max` live connections (others are closed at
/// once): its stream (no-delay), its address, our local address and its connection slot.
async fn next_client(
    listener: &TcpListener,
    count: &Arc<AtomicUsize>,
    max: usize,
) -> (TcpStream, SocketAddr, SocketAddr, ConnSlot) {
    loop {
        let Ok((stream, client)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Some(slot) = take_slot(count, max) else {
            continue;
        };
        let Ok(server) = stream.local_addr() else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        return (stream, client, server, slot);
    }
}

/// Accepts TCP clients on the STUN/TURN port.
pub async fn accept_tcp(core: Arc<Core>, listener: TcpListener) {
    let count = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, client, server, slot) =
            next_client(&listener, &count, core.config.max_connections).await;
        let five = FiveTuple {
            client,
            server,
            transport: ClientTransport::Tcp,
        };
        tokio::spawn(serve(Arc::clone(&core), stream, five, slot));
    }
}

/// Accepts TLS clients on the TURNS port.
pub async fn accept_tls(
    core: Arc<Core>,
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
) {
    let count = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, client, server, slot) =
            next_client(&listener, &count, core.config.max_connections).await;
        let core = Arc::clone(&core);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                _ => {
                    tracing::debug!(%client, "TURN TLS handshake failed");
                    return;
                }
            };
            let five = FiveTuple {
                client,
                server,
                transport: ClientTransport::Tls,
            };
            serve(core, tls, five, slot).await;
        });
    }
}

async fn serve<S>(core: Arc<Core>, stream: S, five: FiveTuple, _slot: ConnSlot)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let sink = ClientSink::Stream(tx);
    let mut framer = StreamFramer::new();
    let mut buf = vec![0u8; 16384];
    let mut closed = core.closed();
    'conn: loop {
        let n = tokio::select! {
            r = tokio::time::timeout(IDLE, rd.read(&mut buf)) => match r {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => n,
                Err(_) if core.has_allocation(&five) => continue,
                Err(_) => break,
            },
            _ = closed.changed() => break,
        };
        let Some(data) = buf.get(..n) else { break };
        framer.push(data);
        loop {
            match framer.pop() {
                Ok(Some(Frame::Stun(bytes))) => match Message::decode_bytes(bytes) {
                    Ok(msg) => {
                        if msg.class == tandem_proto::stun::Class::Request {
                            // In order, on this connection's task.
                            if let Some(reply) = core.request(&msg, five, &sink).await {
                                sink.send(Bytes::from(reply));
                            }
                        } else {
                            core.dispatch(msg, five, sink.clone()).await;
                        }
                    }
                    Err(_) => bump(&core.stats.malformed),
                },
                Ok(Some(Frame::ChannelData(bytes))) => match ChannelData::decode(&bytes) {
                    Ok(cd) => core.client_channel_data(&five, cd).await,
                    Err(_) => bump(&core.stats.malformed),
                },
                Ok(None) => break,
                Err(_) => {
                    bump(&core.stats.malformed);
                    break 'conn;
                }
            }
        }
        if framer.buffered() > MAX_BUFFERED {
            bump(&core.stats.malformed);
            break;
        }
    }
    core.remove(&five);
    drop(sink);
    let abort = writer.abort_handle();
    if tokio::time::timeout(Duration::from_secs(2), writer)
        .await
        .is_err()
    {
        abort.abort();
    }
}
