//! The driver task: one `select!` over sockets, connections, the transaction timer and
//! commands, with a complete drain of the transaction layer's output after every branch.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use rustls_pki_types::ServerName;
use tandem_proto::msg::{HeaderName, Message, Request, Response};
use tandem_proto::transaction::{SentBy, TransactionLayer, Transmit, TxEvent, TxId};
use tandem_proto::{Flow, Transport};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::endpoint::{IncomingEvent, Shared, TxOutcome};
use crate::resolve::SipResolver;
use crate::stun::{StunAction, StunStats, StunWaiters};
use crate::transport::{self, ConnId, ConnOptions, NetInput, Outgoing};
use crate::{EndpointConfig, NetError};

/// How many incoming events may wait for the TU before new ones are dropped.
const INCOMING_QUEUE: usize = 4096;
/// How many network inputs may wait for the driver.
const NET_QUEUE: usize = 1024;
/// Bound on remembered UDP peer-to-socket associations.
const MAX_UDP_PEERS: usize = 16384;
/// How long shutdown waits for connections to close.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
/// Bound on remembered TLS server names for flows not connected yet.
const MAX_SERVER_NAMES: usize = 4096;
/// Flow events buffered per subscriber before the slowest misses some.
const FLOW_EVENTS: usize = 64;

/// A request the driver has started: its id, the request as sent, and its outcome stream.
#[derive(Debug)]
pub(crate) struct RequestStarted {
    pub tx: TxId,
    pub request: Request,
    pub events: mpsc::UnboundedReceiver<TxOutcome>,
}

/// What [`Endpoint`](crate::Endpoint) handles ask the driver to do.
#[derive(Debug)]
pub(crate) enum Command {
    Request {
        request: Request,
        flow: Flow,
        server_name: Option<String>,
        reply: oneshot::Sender<Result<RequestStarted, NetError>>,
    },
    Respond {
        tx: TxId,
        response: Response,
    },
    RespondStateless {
        response: Response,
    },
    SendStateless {
        message: Message,
        flow: Flow,
    },
    Cancel {
        tx: TxId,
    },
    /// Await a STUN Binding response with transaction id `tid`.
    StunWait {
        tid: [u8; 12],
        reply: oneshot::Sender<Result<SocketAddr, NetError>>,
    },
    /// Stop awaiting `tid`.
    StunForget {
        tid: [u8; 12],
    },
    /// Send raw bytes (STUN, keep-alives) on the UDP socket that reaches `to`.
    SendUdpRaw {
        to: SocketAddr,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// One open (or opening) stream connection.
struct Conn {
    id: ConnId,
    queue: mpsc::Sender<Bytes>,
}

/// The driver: sockets, connections and channels around one `TransactionLayer`.
pub(crate) struct Driver {
    layer: TransactionLayer,
    udp: Vec<Arc<UdpSocket>>,
    /// Which UDP socket each peer last reached us on: replies leave from the same address.
    udp_peers: HashMap<SocketAddr, usize>,
    conns: HashMap<(Transport, SocketAddr), Conn>,
    clients: HashMap<TxId, mpsc::UnboundedSender<TxOutcome>>,
    incoming: mpsc::Sender<IncomingEvent>,
    /// The TLS client side; built from the system roots on first use when not configured.
    connector: Option<TlsConnector>,
    server_names: HashMap<SocketAddr, String>,
    options: ConnOptions,
    max_connections: usize,
    net_tx: mpsc::Sender<NetInput>,
    tasks: Vec<JoinHandle<()>>,
    stun: StunWaiters,
    stun_stats: Arc<StunStats>,
    flow_events: tokio::sync::broadcast::Sender<crate::FlowEvent>,
}

/// The local IP the system would use to reach the Internet (no packet is sent), or loopback.
pub(crate) fn primary_ip(v6: bool) -> IpAddr {
    let probe = || -> std::io::Result<IpAddr> {
        let (bind, to): (SocketAddr, SocketAddr) = if v6 {
            (
                (Ipv6Addr::UNSPECIFIED, 0).into(),
                "[2001:db8::1]:9".parse().map_err(std::io::Error::other)?,
            )
        } else {
            (
                (Ipv4Addr::UNSPECIFIED, 0).into(),
                "192.0.2.1:9".parse().map_err(std::io::Error::other)?,
            )
        };
        let s = std::net::UdpSocket::bind(bind)?;
        s.connect(to)?;
        Ok(s.local_addr()?.ip())
    };
    match probe() {
        Ok(ip) if !ip.is_unspecified() => ip,
        _ if v6 => Ipv6Addr::LOCALHOST.into(),
        _ => Ipv4Addr::LOCALHOST.into(),
    }
}

/// The host to advertise for a listener bound to `addr`.
fn advertised_host(public: &Option<String>, addr: SocketAddr) -> String {
    match public {
        Some(h) => h.clone(),
        None if addr.ip().is_unspecified() => primary_ip(addr.is_ipv6()).to_string(),
        None => addr.ip().to_string(),
    }
}

impl Driver {
    /// Binds everything, spawns the driver task and returns the shared handle state.
    pub(crate) async fn start(
        config: EndpointConfig,
    ) -> Result<(Shared, mpsc::Receiver<IncomingEvent>), NetError> {
        if !config.tls.is_empty() && config.tls_server.is_none() {
            return Err(NetError::Config(
                "TLS listeners need a tls_server configuration".into(),
            ));
        }
        let options = ConnOptions {
            keepalive: config.keepalive,
            idle_timeout: config.idle_timeout,
        };
        let (net_tx, net_rx) = mpsc::channel(NET_QUEUE);
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (in_tx, in_rx) = mpsc::channel(INCOMING_QUEUE);

        let mut local = Vec::new();
        let mut tasks = Vec::new();
        let mut udp = Vec::new();
        for addr in &config.udp {
            let socket = Arc::new(transport::bind_udp(*addr)?);
            local.push((Transport::Udp, socket.local_addr()?));
            tasks.push(tokio::spawn(transport::udp_reader(
                Arc::clone(&socket),
                udp.len(),
                net_tx.clone(),
            )));
            udp.push(socket);
        }
        let mut listeners = Vec::new();
        for addr in &config.tcp {
            let l = transport::bind_tcp(*addr)?;
            local.push((Transport::Tcp, l.local_addr()?));
            listeners.push((l, Transport::Tcp));
        }
        for addr in &config.tls {
            let l = transport::bind_tcp(*addr)?;
            local.push((Transport::Tls, l.local_addr()?));
            listeners.push((l, Transport::Tls));
        }
        let acceptor = config.tls_server.clone().map(TlsAcceptor::from);
        for (l, t) in listeners {
            let tls = if t == Transport::Tls {
                acceptor.clone()
            } else {
                None
            };
            tasks.push(tokio::spawn(transport::accept_loop(
                l,
                t,
                tls,
                options,
                net_tx.clone(),
            )));
        }

        let mut layer = TransactionLayer::new(config.tx.clone());
        for transport in [Transport::Udp, Transport::Tcp, Transport::Tls] {
            if let Some(sent_by) = sent_by_for(&local, transport, &config.public_host) {
                tracing::debug!(%transport, %sent_by, "Via sent-by");
                layer.set_sent_by(transport, sent_by);
            }
        }

        let mut transports = vec![Transport::Tcp, Transport::Tls];
        if !udp.is_empty() {
            transports.insert(0, Transport::Udp);
        }
        let resolver = SipResolver::new(config.dns, &transports, config.tx.seed)?;
        let contact_host = match (&config.public_host, local.first()) {
            (Some(h), _) => h.clone(),
            (None, Some((_, a))) => advertised_host(&None, *a),
            (None, None) => primary_ip(false).to_string(),
        };

        let stun_stats = Arc::new(StunStats::default());
        let (flow_events, _) = tokio::sync::broadcast::channel(FLOW_EVENTS);
        let driver = Driver {
            layer,
            udp,
            udp_peers: HashMap::new(),
            conns: HashMap::new(),
            clients: HashMap::new(),
            incoming: in_tx,
            connector: config.tls_client.clone().map(TlsConnector::from),
            server_names: HashMap::new(),
            options,
            max_connections: config.max_connections,
            net_tx,
            tasks,
            stun: StunWaiters::default(),
            stun_stats: Arc::clone(&stun_stats),
            flow_events: flow_events.clone(),
        };
        tokio::spawn(driver.run(net_rx, cmd_rx));
        tracing::debug!(?local, "endpoint bound");
        Ok((
            Shared {
                commands: cmd_tx,
                local,
                contact_host,
                public_host: config.public_host,
                resolver,
                stun_stats,
                flow_events,
            },
            in_rx,
        ))
    }

    async fn run(
        mut self,
        mut net_rx: mpsc::Receiver<NetInput>,
        mut cmd_rx: mpsc::UnboundedReceiver<Command>,
    ) {
        let mut shutdown_reply = None;
        loop {
            let deadline = self.layer.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                input = net_rx.recv() => match input {
                    Some(input) => self.on_net(input),
                    None => break,
                },
                cmd = cmd_rx.recv() => match cmd {
                    Some(Command::Shutdown { reply }) => {
                        shutdown_reply = Some(reply);
                        break;
                    }
                    Some(cmd) => self.on_command(cmd),
                    None => break,
                },
                () = sleep => self.layer.handle_timeout(std::time::Instant::now()),
            }
            self.drain();
        }
        // Listeners and UDP readers: their sockets are closed once the tasks are gone.
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
        // Dropping the queues ends every connection task; wait (briefly) for them to close.
        let mut open: std::collections::HashSet<ConnId> =
            self.conns.values().map(|c| c.id).collect();
        self.conns.clear();
        self.clients.clear();
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while !open.is_empty() {
            match tokio::time::timeout_at(deadline, net_rx.recv()).await {
                Ok(Some(NetInput::Closed { conn, .. })) => {
                    open.remove(&conn);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        tracing::debug!("endpoint stopped");
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
    }

    fn on_net(&mut self, input: NetInput) {
        let now = std::time::Instant::now();
        match input {
            NetInput::Datagram { data, flow, socket } => {
                // STUN keep-alives and their answers share the SIP port (RFC 5626 §8).
                if tandem_proto::stun::is_stun(&data) {
                    self.on_stun(&data, flow, socket);
                    return;
                }
                // CRLF (or NUL) keep-alives some peers send over UDP: nothing to answer.
                if data
                    .iter()
                    .all(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\t' | 0))
                {
                    tracing::trace!(%flow, len = data.len(), "UDP keep-alive ignored");
                    return;
                }
                transport::log_message("recv", &flow, &data);
                if self.udp_peers.len() >= MAX_UDP_PEERS {
                    self.udp_peers.clear();
                }
                self.udp_peers.insert(flow.remote, socket);
                self.layer.handle_receive(now, data, flow);
            }
            NetInput::Message { conn, flow, data } => {
                tracing::trace!(%flow, conn, "message on connection");
                transport::log_message("recv", &flow, &data);
                self.layer.handle_receive(now, data, flow);
            }
            NetInput::Accepted { conn, flow, queue } => {
                if self.conns.len() >= self.max_connections {
                    tracing::warn!(%flow, max = self.max_connections, "too many connections, refusing");
                    return;
                }
                self.conns
                    .insert((flow.transport, flow.remote), Conn { id: conn, queue });
            }
            NetInput::Closed { conn, flow, error } => {
                let key = (flow.transport, flow.remote);
                let current = match self.conns.get(&key) {
                    Some(c) if c.id == conn => {
                        self.conns.remove(&key);
                        true
                    }
                    Some(_) => false,
                    None => true,
                };
                tracing::debug!(%flow, conn, ?error, "connection closed");
                // A stale connection's failure must not fail transactions on its successor.
                if error.is_some() && current {
                    self.layer.transport_error(now, flow);
                }
                if current {
                    // Nobody listening is fine: flow events are advisory.
                    let _ = self
                        .flow_events
                        .send(crate::FlowEvent::Closed { flow, error });
                }
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        let now = std::time::Instant::now();
        match cmd {
            Command::Request {
                request,
                flow,
                server_name,
                reply,
            } => {
                if let (Transport::Tls, Some(name)) = (flow.transport, server_name) {
                    if self.server_names.len() >= MAX_SERVER_NAMES {
                        self.server_names.clear();
                    }
                    self.server_names.insert(flow.remote, name);
                }
                let result = match self.layer.send_request(now, request, flow) {
                    Ok(tx) => {
                        let (events_tx, events) = mpsc::unbounded_channel();
                        self.clients.insert(tx, events_tx);
                        match self.layer.client_request(tx) {
                            Some(request) => Ok(RequestStarted {
                                tx,
                                request: request.clone(),
                                events,
                            }),
                            None => Err(NetError::Tx(format!("{tx} vanished"))),
                        }
                    }
                    Err(e) => Err(NetError::Tx(e.to_string())),
                };
                let _ = reply.send(result);
            }
            Command::Respond { tx, response } => {
                if let Err(e) = self.layer.send_response(now, tx, response) {
                    tracing::warn!(%tx, error = %e, "response not sent");
                }
            }
            Command::RespondStateless { response } => {
                self.layer.send_stateless_response(response);
            }
            Command::SendStateless { message, flow } => {
                self.layer.send_stateless(message, flow);
            }
            Command::Cancel { tx } => match self.layer.cancel(now, tx) {
                Ok(cancel_tx) => tracing::debug!(%tx, %cancel_tx, "CANCEL sent"),
                Err(e) => tracing::debug!(%tx, error = %e, "CANCEL not sent"),
            },
            Command::StunWait { tid, reply } => self.stun.insert(tid, reply),
            Command::StunForget { tid } => self.stun.remove(&tid),
            Command::SendUdpRaw { to, data, reply } => {
                let result = self
                    .send_udp(to, &data)
                    .map_err(|e| NetError::Io(std::io::Error::other(format!("to {to}: {e}"))));
                let _ = reply.send(result);
            }
            Command::Shutdown { .. } => {}
        }
    }

    /// Answers a STUN Binding request from the receiving socket, or hands a response to the
    /// keep-alive awaiting it.
    fn on_stun(&mut self, data: &[u8], flow: Flow, socket: usize) {
        match self.stun.on_datagram(data, flow.remote, &self.stun_stats) {
            StunAction::Reply(bytes) => {
                let Some(s) = self.udp.get(socket) else {
                    return;
                };
                if let Err(e) = udp_send(s, &bytes, flow.remote) {
                    tracing::debug!(%flow, error = %e, "STUN Binding response not sent");
                }
            }
            StunAction::None => {}
        }
    }

    /// Drains the layer's transmits and events until both are empty.
    fn drain(&mut self) {
        loop {
            let mut progress = false;
            while let Some(t) = self.layer.poll_transmit() {
                progress = true;
                self.transmit(t);
            }
            while let Some(ev) = self.layer.poll_event() {
                progress = true;
                self.event(ev);
            }
            if !progress {
                break;
            }
        }
    }

    fn transmit(&mut self, t: Transmit) {
        let Transmit { flow, data } = t;
        transport::log_message("send", &flow, &data);
        let result = match flow.transport {
            Transport::Udp => self.send_udp(flow.remote, &data),
            Transport::Tcp | Transport::Tls => self.send_stream(flow, data),
        };
        if let Err(e) = result {
            tracing::debug!(%flow, error = %e, "send failed");
            self.layer.transport_error(std::time::Instant::now(), flow);
        }
    }

    fn send_udp(&self, to: SocketAddr, data: &[u8]) -> Result<(), String> {
        if data.len() > transport::MAX_DATAGRAM {
            return Err(format!("{} bytes is too large for UDP", data.len()));
        }
        let socket = self
            .udp_peers
            .get(&to)
            .and_then(|i| self.udp.get(*i))
            .or_else(|| self.pick_udp_socket(to))
            .ok_or_else(|| format!("no UDP socket for {to}"))?;
        match udp_send(socket, data, to) {
            Ok(_) => Ok(()),
            // The socket buffer is full: a lost datagram, which retransmission covers.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                tracing::debug!(%to, "UDP send buffer full, datagram dropped");
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// A UDP socket of `to`'s family: bound to loopback for a loopback destination, else
    /// preferably not; the first of the family when nothing fits better.
    fn pick_udp_socket(&self, to: SocketAddr) -> Option<&Arc<UdpSocket>> {
        let family: Vec<(&Arc<UdpSocket>, SocketAddr)> = self
            .udp
            .iter()
            .filter_map(|s| s.local_addr().ok().map(|a| (s, a)))
            .filter(|(_, a)| a.is_ipv6() == to.is_ipv6())
            .collect();
        let loopback = to.ip().is_loopback();
        family
            .iter()
            .find(|(_, a)| a.ip().is_loopback() == loopback)
            .or_else(|| family.first())
            .map(|(s, _)| *s)
    }

    fn send_stream(&mut self, flow: Flow, data: Bytes) -> Result<(), String> {
        let key = (flow.transport, flow.remote);
        if let Some(conn) = self.conns.get(&key) {
            match conn.queue.try_send(data) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    return Err("connection send queue is full".into());
                }
                Err(mpsc::error::TrySendError::Closed(d)) => {
                    // The connection just ended: open a new one below.
                    self.conns.remove(&key);
                    return self.connect_and_send(flow, d);
                }
            }
        }
        self.connect_and_send(flow, data)
    }

    fn connect_and_send(&mut self, flow: Flow, data: Bytes) -> Result<(), String> {
        if self.conns.len() >= self.max_connections {
            return Err(format!(
                "connection limit ({}) reached",
                self.max_connections
            ));
        }
        let tls = match flow.transport {
            Transport::Tls => {
                let name = match self.server_names.remove(&flow.remote) {
                    Some(n) => ServerName::try_from(n.trim_end_matches('.').to_string())
                        .map_err(|e| format!("TLS server name: {e}"))?,
                    None => ServerName::IpAddress(flow.remote.ip().into()),
                };
                Some((self.tls_connector()?, name))
            }
            _ => None,
        };
        let (queue, queue_rx) = mpsc::channel(64);
        queue
            .try_send(data)
            .map_err(|_| "new connection queue refused data".to_string())?;
        let id = transport::new_conn_id();
        tracing::debug!(%flow, conn = id, "connecting");
        transport::spawn_outgoing(
            Outgoing { flow, tls },
            id,
            queue_rx,
            self.options,
            self.net_tx.clone(),
        );
        self.conns
            .insert((flow.transport, flow.remote), Conn { id, queue });
        Ok(())
    }

    fn tls_connector(&mut self) -> Result<TlsConnector, String> {
        if let Some(c) = &self.connector {
            return Ok(c.clone());
        }
        let config = crate::config::default_tls_client().map_err(|e| e.to_string())?;
        let connector = TlsConnector::from(config);
        self.connector = Some(connector.clone());
        Ok(connector)
    }

    fn event(&mut self, ev: TxEvent) {
        match ev {
            TxEvent::Response { tx, response } => {
                let outcome = if response.status < 200 {
                    TxOutcome::Provisional(response)
                } else {
                    TxOutcome::Final(response)
                };
                self.deliver_client(tx, outcome);
            }
            TxEvent::Timeout { tx } => {
                if self.clients.contains_key(&tx) {
                    self.deliver_client(tx, TxOutcome::Timeout);
                } else {
                    self.deliver_incoming(IncomingEvent::Timeout { tx });
                }
            }
            TxEvent::TransportError { tx } => {
                if self.clients.contains_key(&tx) {
                    self.deliver_client(tx, TxOutcome::TransportError("flow failed".into()));
                } else {
                    tracing::debug!(%tx, "server transaction lost its flow");
                }
            }
            TxEvent::Terminated { tx } => {
                self.clients.remove(&tx);
            }
            TxEvent::Request { tx, request, flow } => {
                self.deliver_incoming(IncomingEvent::Request { tx, request, flow });
            }
            TxEvent::Ack { request, flow } => {
                self.deliver_incoming(IncomingEvent::Ack { request, flow });
            }
            TxEvent::Cancel {
                tx,
                invite_tx,
                request,
                flow,
            } => {
                self.deliver_incoming(IncomingEvent::Cancel {
                    tx,
                    invite_tx,
                    request,
                    flow,
                });
            }
            TxEvent::StrayResponse { response, flow } => {
                self.deliver_incoming(IncomingEvent::StrayResponse { response, flow });
            }
            other => tracing::debug!(event = ?other, "unhandled transaction event"),
        }
    }

    fn deliver_client(&mut self, tx: TxId, outcome: TxOutcome) {
        if let Some(ch) = self.clients.get(&tx) {
            if ch.send(outcome).is_err() {
                // The ClientTx was dropped: nobody listens any more.
                self.clients.remove(&tx);
            }
        } else {
            tracing::debug!(%tx, ?outcome, "outcome for a transaction nobody awaits");
        }
    }

    /// Queues `ev` for the TU. A request or CANCEL that cannot be queued (the TU is not
    /// keeping up, or gone) is answered with 503 here: its server transaction would
    /// otherwise wait forever for a response nobody will send.
    fn deliver_incoming(&mut self, ev: IncomingEvent) {
        let ev = match self.incoming.try_send(ev) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(ev)) => {
                tracing::warn!(event = ?ev, "incoming queue full, event dropped");
                ev
            }
            Err(mpsc::error::TrySendError::Closed(ev)) => ev,
        };
        let (tx, request) = match ev {
            IncomingEvent::Request { tx, request, .. }
            | IncomingEvent::Cancel { tx, request, .. } => (tx, request),
            _ => return,
        };
        let mut response = Response::for_request(&request, 503);
        response.headers.push(HeaderName::RetryAfter, "5");
        if let Ok(mut to) = response.headers.to()
            && to.tag().is_none()
        {
            to.set_tag(&format!("{:016x}", rand::random::<u64>()));
            response.headers.set(HeaderName::To, to.to_string());
        }
        if let Err(e) = self
            .layer
            .send_response(std::time::Instant::now(), tx, response)
        {
            tracing::debug!(%tx, error = %e, "503 for an undelivered request not sent");
        }
    }
}

/// Sends one datagram without waiting. tokio reports WouldBlock until its reactor has seen a
/// socket writable once (one bound a moment ago), so the kernel is asked directly before the
/// socket is taken as full.
fn udp_send(socket: &UdpSocket, data: &[u8], to: SocketAddr) -> std::io::Result<usize> {
    match socket.try_send_to(data, to) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            socket2::SockRef::from(socket).send_to(data, &to.into())
        }
        other => other,
    }
}

/// The Via sent-by for `transport`: the public host or the listener's IP, with the listener's
/// port; a stream transport without a listener borrows the first listener's host and port.
fn sent_by_for(
    local: &[(Transport, SocketAddr)],
    transport: Transport,
    public_host: &Option<String>,
) -> Option<SentBy> {
    let own = local.iter().find(|(t, _)| *t == transport).map(|(_, a)| *a);
    let first = local.first().map(|(_, a)| *a);
    let port_source = own
        .or_else(|| {
            local
                .iter()
                .find(|(t, _)| *t == Transport::Udp)
                .map(|(_, a)| *a)
        })
        .or(first)?;
    let host_source = own.or(first)?;
    Some(SentBy::new(
        advertised_host(public_host, host_source),
        port_source.port(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn sent_by_uses_own_listener_else_udp_port() {
        let local = vec![
            (Transport::Udp, addr("192.0.2.10:5060")),
            (Transport::Tls, addr("192.0.2.11:5061")),
        ];
        assert_eq!(
            sent_by_for(&local, Transport::Tls, &None),
            Some(SentBy::new("192.0.2.11", 5061))
        );
        // No TCP listener: the first listener's host and the UDP port.
        assert_eq!(
            sent_by_for(&local, Transport::Tcp, &None),
            Some(SentBy::new("192.0.2.10", 5060))
        );
        assert_eq!(
            sent_by_for(&local, Transport::Udp, &Some("sip.example.org".into())),
            Some(SentBy::new("sip.example.org", 5060))
        );
        assert_eq!(sent_by_for(&[], Transport::Udp, &None), None);
    }

    #[test]
    fn unspecified_bind_advertises_a_real_address() {
        let host = advertised_host(&None, addr("0.0.0.0:5060"));
        let ip: IpAddr = host.parse().unwrap();
        assert!(!ip.is_unspecified());
        assert_eq!(advertised_host(&None, addr("[::1]:5060")), "::1");
    }
}
