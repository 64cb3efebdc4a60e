//! The datagram endpoint a media session sends and receives through: a bare UDP socket, or
//! any [`MediaTransport`] (an ICE transport whose sends follow the selected candidate pair,
//! possibly through a TURN allocation).

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::ReadBuf;
use tokio::net::UdpSocket;

/// A boxed send future returned by [`MediaTransport::send_to`].
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = io::Result<usize>> + Send + 'a>>;

/// A datagram transport a media session can run over instead of a bare [`UdpSocket`].
///
/// Implementations deliver only media datagrams (RTP, RTCP, DTLS) to the session; anything
/// else sharing the path (ICE connectivity checks, TURN control traffic) stays inside the
/// transport.
pub trait MediaTransport: Send + Sync + 'static {
    /// The local address that represents this transport (for logs and statistics).
    fn local_addr(&self) -> io::Result<SocketAddr>;

    /// Polls for the next media datagram: its length in `buf` and where it came from.
    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>>;

    /// Takes an already received datagram without waiting (`WouldBlock` when there is none).
    fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)>;

    /// Sends one datagram to the peer; `to` is the SDP address of the peer, which a transport
    /// with its own notion of the path (an ICE selected pair) may override.
    fn send_to<'a>(&'a self, data: &'a [u8], to: SocketAddr) -> SendFuture<'a>;
}

/// The socket of a media session: a UDP socket or a [`MediaTransport`]; cheap to clone.
#[derive(Clone)]
pub struct MediaSocket {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Udp(Arc<UdpSocket>),
    Transport(Arc<dyn MediaTransport>),
}

impl MediaSocket {
    /// A media socket over a bare UDP socket.
    pub fn udp(socket: Arc<UdpSocket>) -> Self {
        MediaSocket {
            inner: Inner::Udp(socket),
        }
    }

    /// A media socket over a transport (ICE, TURN, ...).
    pub fn transport(transport: Arc<dyn MediaTransport>) -> Self {
        MediaSocket {
            inner: Inner::Transport(transport),
        }
    }

    /// The UDP socket underneath, when this is a bare UDP socket.
    pub fn as_udp(&self) -> Option<&Arc<UdpSocket>> {
        match &self.inner {
            Inner::Udp(socket) => Some(socket),
            Inner::Transport(_) => None,
        }
    }

    /// The local address of the socket or transport.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.inner {
            Inner::Udp(socket) => socket.local_addr(),
            Inner::Transport(transport) => transport.local_addr(),
        }
    }

    /// Receives the next datagram.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        match &self.inner {
            Inner::Udp(socket) => socket.recv_from(buf).await,
            Inner::Transport(transport) => {
                std::future::poll_fn(|cx| transport.poll_recv_from(cx, buf)).await
            }
        }
    }

    /// Polls for the next datagram (for hand-written futures).
    pub fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        match &self.inner {
            Inner::Udp(socket) => {
                let mut read = ReadBuf::new(buf);
                socket
                    .poll_recv_from(cx, &mut read)
                    .map_ok(|from| (read.filled().len(), from))
            }
            Inner::Transport(transport) => transport.poll_recv_from(cx, buf),
        }
    }

    /// Takes an already received datagram without waiting (`WouldBlock` when there is none).
    pub fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        match &self.inner {
            Inner::Udp(socket) => socket.try_recv_from(buf),
            Inner::Transport(transport) => transport.try_recv_from(buf),
        }
    }

    /// Sends one datagram towards `to` (a transport may route it along its own path).
    pub async fn send_to(&self, data: &[u8], to: SocketAddr) -> io::Result<usize> {
        match &self.inner {
            Inner::Udp(socket) => socket.send_to(data, to).await,
            Inner::Transport(transport) => transport.send_to(data, to).await,
        }
    }
}

impl fmt::Debug for MediaSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.inner {
            Inner::Udp(_) => "udp",
            Inner::Transport(_) => "transport",
        };
        f.debug_struct("MediaSocket")
            .field("kind", &kind)
            .field("local", &self.local_addr().ok())
            .finish()
    }
}

impl From<Arc<UdpSocket>> for MediaSocket {
    fn from(socket: Arc<UdpSocket>) -> Self {
        MediaSocket::udp(socket)
    }
}

impl From<UdpSocket> for MediaSocket {
    fn from(socket: UdpSocket) -> Self {
        MediaSocket::udp(Arc::new(socket))
    }
}

impl From<Arc<dyn MediaTransport>> for MediaSocket {
    fn from(transport: Arc<dyn MediaTransport>) -> Self {
        MediaSocket::transport(transport)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::task::Waker;

    /// A transport that loops every sent datagram back to itself, tagged with a fixed source.
    struct Loop {
        queue: Mutex<(VecDeque<Vec<u8>>, Option<Waker>)>,
        from: SocketAddr,
    }

    impl MediaTransport for Loop {
        fn local_addr(&self) -> io::Result<SocketAddr> {
            Ok(self.from)
        }

        fn poll_recv_from(
            &self,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<(usize, SocketAddr)>> {
            match self.try_recv_from(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.queue.lock().unwrap().1 = Some(cx.waker().clone());
                    Poll::Pending
                }
                other => Poll::Ready(other),
            }
        }

        fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
            let mut q = self.queue.lock().unwrap();
            let Some(d) = q.0.pop_front() else {
                return Err(io::ErrorKind::WouldBlock.into());
            };
            let n = d.len().min(buf.len());
            buf[..n].copy_from_slice(&d[..n]);
            Ok((n, self.from))
        }

        fn send_to<'a>(&'a self, data: &'a [u8], _to: SocketAddr) -> SendFuture<'a> {
            Box::pin(async move {
                let mut q = self.queue.lock().unwrap();
                q.0.push_back(data.to_vec());
                if let Some(w) = q.1.take() {
                    w.wake();
                }
                Ok(data.len())
            })
        }
    }

    #[tokio::test]
    async fn udp_and_transport_sockets_carry_datagrams() {
        let a = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let b = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let sa = MediaSocket::from(Arc::clone(&a));
        let sb = MediaSocket::from(Arc::clone(&b));
        sa.send_to(b"hello", b.local_addr().unwrap()).await.unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = sb.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(from, a.local_addr().unwrap());
        assert!(sb.as_udp().is_some());

        let from: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let t: Arc<dyn MediaTransport> = Arc::new(Loop {
            queue: Mutex::new((VecDeque::new(), None)),
            from,
        });
        let st = MediaSocket::from(t);
        assert!(st.as_udp().is_none());
        assert_eq!(
            st.try_recv_from(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        let reader = st.clone();
        let recv = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            let (n, f) = reader.recv_from(&mut buf).await.unwrap();
            (buf[..n].to_vec(), f)
        });
        tokio::task::yield_now().await;
        st.send_to(b"rtp", from).await.unwrap();
        let (data, f) = recv.await.unwrap();
        assert_eq!(data, b"rtp");
        assert_eq!(f, from);
        assert!(format!("{st:?}").contains("transport"));
    }
}
