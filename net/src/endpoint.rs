//! The public handles: [`Endpoint`], [`Incoming`] and [`ClientTx`].

use std::net::SocketAddr;
use std::sync::Arc;

use tandem_proto::msg::{Message, Request, Response, Uri};
use tandem_proto::transaction::TxId;
use tandem_proto::{Flow, Transport};
use tokio::sync::{mpsc, oneshot};

use crate::driver::{Command, Driver, RequestStarted};
use crate::resolve::{SipResolver, TargetHost};
use crate::{EndpointConfig, NetError, StunRetry};

/// Where to send a request.
#[derive(Debug, Clone)]
pub enum Target {
    /// Resolve this URI with RFC 3263 and fail over through the results.
    Uri(Uri),
    /// Send to exactly this flow.
    Flow(Flow),
}

/// What a client transaction reports.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TxOutcome {
    /// A 1xx response.
    Provisional(Response),
    /// A final response; for INVITE, 2xx retransmissions (and 2xx from other forks) arrive as
    /// further `Final`s.
    Final(Response),
    /// No final response in time (Timer B or F).
    Timeout,
    /// The flow failed (connection refused or lost, ICMP error, …).
    TransportError(String),
}

/// Something an endpoint received that no client transaction asked for.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum IncomingEvent {
    /// A new request in a server transaction: answer with [`Endpoint::respond`].
    Request {
        /// The server transaction.
        tx: TxId,
        /// The request.
        request: Request,
        /// Where it came from.
        flow: Flow,
    },
    /// An ACK for a 2xx (it has no transaction).
    Ack {
        /// The ACK.
        request: Request,
        /// Where it came from.
        flow: Flow,
    },
    /// A CANCEL: answer it on `tx` (200 or 481); when `invite_tx` is some, then answer that
    /// INVITE with 487.
    Cancel {
        /// The CANCEL's server transaction.
        tx: TxId,
        /// The INVITE server transaction it cancels, if it matched one.
        invite_tx: Option<TxId>,
        /// The CANCEL request.
        request: Request,
        /// Where it came from.
        flow: Flow,
    },
    /// A response that matched no client transaction (e.g. a 2xx retransmission to a proxy).
    StrayResponse {
        /// The response.
        response: Response,
        /// Where it came from.
        flow: Flow,
    },
    /// A server INVITE transaction got no ACK for its final response (Timer H).
    Timeout {
        /// The server transaction.
        tx: TxId,
    },
}

/// The state shared by all clones of an [`Endpoint`].
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    pub(crate) local: Vec<(Transport, SocketAddr)>,
    /// Host for Contact when no listener address fits (public host or primary local IP).
    pub(crate) contact_host: String,
    pub(crate) public_host: Option<String>,
    pub(crate) resolver: SipResolver,
    pub(crate) stun_stats: Arc<crate::StunStats>,
    pub(crate) flow_events: tokio::sync::broadcast::Sender<FlowEvent>,
}

/// A change in one of the endpoint's transport flows.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlowEvent {
    /// A stream connection (TCP/TLS) closed; `error` says why when it was not orderly (e.g.
    /// `no keep-alive pong`). A registration over it must be redone on a new flow (RFC 5626).
    Closed {
        /// The flow (transport and remote address) of the connection.
        flow: Flow,
        /// Why it closed, when it was not an orderly close.
        error: Option<String>,
    },
}

/// A cheap, cloneable handle to a running SIP endpoint (its driver task).
#[derive(Debug, Clone)]
pub struct Endpoint {
    shared: Arc<Shared>,
}

/// The stream of incoming requests and events of an endpoint; it has one consumer.
#[derive(Debug)]
pub struct Incoming {
    rx: mpsc::Receiver<IncomingEvent>,
}

impl Incoming {
    /// The next incoming event; `None` once the endpoint has shut down.
    pub async fn next(&mut self) -> Option<IncomingEvent> {
        self.rx.recv().await
    }
}

impl Endpoint {
    /// Binds the configured listeners and starts the driver task.
    pub async fn bind(config: EndpointConfig) -> Result<(Endpoint, Incoming), NetError> {
        let (shared, incoming) = Driver::start(config).await?;
        Ok((
            Endpoint {
                shared: Arc::new(shared),
            },
            Incoming { rx: incoming },
        ))
    }

    /// The address of the first listener of `transport`.
    pub fn local_addr(&self, transport: Transport) -> Option<SocketAddr> {
        self.shared
            .local
            .iter()
            .find(|(t, _)| *t == transport)
            .map(|(_, a)| *a)
    }

    /// All listeners, in configuration order (UDP, TCP, TLS).
    pub fn local_addrs(&self) -> Vec<(Transport, SocketAddr)> {
        self.shared.local.clone()
    }

    /// A Contact URI for `transport`: `sip:user@host:port;transport=…` with the public host or
    /// the bound IP, and the transport's listener port (or the first listener's for a stream
    /// transport without a listener).
    pub fn contact_uri(&self, transport: Transport, user: Option<&str>) -> Uri {
        let listener = self
            .local_addr(transport)
            .or_else(|| self.shared.local.first().map(|(_, a)| *a));
        let host = match (&self.shared.public_host, listener) {
            (Some(h), _) => h.clone(),
            (None, Some(a)) if !a.ip().is_unspecified() => a.ip().to_string(),
            _ => self.shared.contact_host.clone(),
        };
        let port = listener.map_or(transport.default_port(), |a| a.port());
        crate::uri::contact(&host, port, transport, user)
    }

    /// Resolves a URI to the flows to try, in order (RFC 3263), keeping only flows this
    /// endpoint can use.
    pub async fn resolve(&self, uri: &Uri) -> Result<Vec<Flow>, NetError> {
        let target = crate::uri::resolve_target(uri)?;
        let flows = self.shared.resolver.resolve(&target).await?;
        let flows: Vec<Flow> = flows.into_iter().filter(|f| self.can_use(f)).collect();
        if flows.is_empty() {
            return Err(NetError::NoTarget);
        }
        Ok(flows)
    }

    /// A UDP flow needs a bound UDP socket of its address family; streams can always connect.
    fn can_use(&self, flow: &Flow) -> bool {
        match flow.transport {
            Transport::Udp => self
                .shared
                .local
                .iter()
                .any(|(t, a)| *t == Transport::Udp && a.is_ipv6() == flow.remote.is_ipv6()),
            Transport::Tcp | Transport::Tls => true,
        }
    }

    /// Sends a request in a new client transaction (the transaction layer prepends our Via).
    /// `Target::Uri` resolves with RFC 3263 and fails over to the next target on timeout,
    /// transport error or 503 (a new branch each time); `Target::Flow` sends to that flow only.
    pub async fn request(&self, request: Request, target: Target) -> Result<ClientTx, NetError> {
        let (flows, server_name) = match target {
            Target::Flow(flow) => (vec![flow], None),
            Target::Uri(uri) => {
                let flows = self.resolve(&uri).await?;
                let name = match crate::uri::resolve_target(&uri)?.host {
                    TargetHost::Name(n) => Some(n),
                    TargetHost::Ip(_) => None,
                };
                (flows, name)
            }
        };
        let mut remaining = flows.into_iter();
        let first = remaining.next().ok_or(NetError::NoTarget)?;
        let started = self
            .start(request.clone(), first, server_name.clone())
            .await?;
        Ok(ClientTx {
            endpoint: self.clone(),
            original: request,
            remaining: remaining.collect(),
            server_name,
            flow: first,
            started,
            responded: false,
            final_seen: false,
        })
    }

    async fn start(
        &self,
        request: Request,
        flow: Flow,
        server_name: Option<String>,
    ) -> Result<RequestStarted, NetError> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::Request {
            request,
            flow,
            server_name,
            reply,
        });
        rx.await.map_err(|_| NetError::Closed)?
    }

    fn command(&self, command: Command) {
        if self.shared.commands.send(command).is_err() {
            tracing::debug!("command to a stopped endpoint dropped");
        }
    }

    /// Sends a response in server transaction `tx`.
    pub fn respond(&self, tx: TxId, response: Response) {
        self.command(Command::Respond { tx, response });
    }

    /// Sends a response without a transaction, routed by its top Via (RFC 3261 §18.2.2).
    pub fn respond_stateless(&self, response: Response) {
        self.command(Command::RespondStateless { response });
    }

    /// Sends a message outside any transaction to `flow` (the ACK for a 2xx, a proxied 2xx).
    pub fn send_stateless(&self, message: Message, flow: Flow) {
        self.command(Command::SendStateless { message, flow });
    }

    /// Cancels an INVITE client transaction (RFC 3261 §9.1): the CANCEL goes out in its own
    /// transaction; the INVITE then normally completes with 487.
    pub fn cancel(&self, tx: TxId) {
        self.command(Command::Cancel { tx });
    }

    /// Sends a STUN Binding request over UDP `flow` from the SIP socket that reaches it (RFC 5626
    /// §8 keep-alive) and returns the XOR-MAPPED-ADDRESS of the answer: the address the peer
    /// sees us as. Retransmits per `retry`; [`NetError::StunTimeout`] when nothing answers.
    pub async fn stun_binding(&self, flow: Flow, retry: StunRetry) -> Result<SocketAddr, NetError> {
        if flow.transport != Transport::Udp {
            return Err(NetError::Config(format!(
                "STUN keep-alives run on UDP flows, not {}",
                flow.transport
            )));
        }
        let (data, tid) = crate::stun::binding_request();
        let (reply, mut answer) = oneshot::channel();
        self.command(Command::StunWait { tid, reply });
        // Forget the transaction however this future ends (answer, timeout or drop).
        struct Forget<'a>(&'a Endpoint, [u8; 12]);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                self.0.command(Command::StunForget { tid: self.1 });
            }
        }
        let _forget = Forget(self, tid);
        for n in 0..retry.transmissions.max(1) {
            let (sent, sent_rx) = oneshot::channel();
            self.command(Command::SendUdpRaw {
                to: flow.remote,
                data: data.clone(),
                reply: sent,
            });
            sent_rx.await.map_err(|_| NetError::Closed)??;
            match tokio::time::timeout(retry.wait_after(n), &mut answer).await {
                Ok(Ok(result)) => return result,
                Ok(Err(_)) => return Err(NetError::Closed),
                Err(_) => tracing::trace!(%flow, attempt = n + 1, "STUN keep-alive unanswered"),
            }
        }
        Err(NetError::StunTimeout)
    }

    /// Sends one raw datagram (e.g. a CRLFCRLF NAT keep-alive, RFC 5626 §3.5.1 style) over UDP
    /// `flow` from the SIP socket that reaches it.
    pub async fn send_datagram(&self, flow: Flow, data: Vec<u8>) -> Result<(), NetError> {
        if flow.transport != Transport::Udp {
            return Err(NetError::Config(format!(
                "raw datagrams go over UDP flows, not {}",
                flow.transport
            )));
        }
        let (reply, rx) = oneshot::channel();
        self.command(Command::SendUdpRaw {
            to: flow.remote,
            data,
            reply,
        });
        rx.await.map_err(|_| NetError::Closed)?
    }

    /// Counters of the STUN traffic on this endpoint's SIP UDP sockets.
    pub fn stun_stats(&self) -> &crate::StunStats {
        &self.shared.stun_stats
    }

    /// Subscribes to flow events (stream connections closing) from now on.
    pub fn flow_events(&self) -> tokio::sync::broadcast::Receiver<FlowEvent> {
        self.shared.flow_events.subscribe()
    }

    /// Closes listeners and connections and stops the driver; waits until it has stopped.
    pub async fn shutdown(&self) {
        let (reply, rx) = oneshot::channel();
        if self
            .shared
            .commands
            .send(Command::Shutdown { reply })
            .is_ok()
        {
            let _ = rx.await;
        }
    }
}

/// A client transaction in progress, with RFC 3263 failover for `Target::Uri`.
#[derive(Debug)]
pub struct ClientTx {
    endpoint: Endpoint,
    original: Request,
    remaining: Vec<Flow>,
    server_name: Option<String>,
    flow: Flow,
    started: RequestStarted,
    /// Any response (even 1xx) seen on the current target: no failover on timeout then.
    responded: bool,
    final_seen: bool,
}

impl ClientTx {
    /// The current transaction id (it changes on failover: read it again after each event).
    pub fn id(&self) -> TxId {
        self.started.tx
    }

    /// The flow the current transaction uses.
    pub fn flow(&self) -> Option<Flow> {
        Some(self.flow)
    }

    /// The request as sent on the current target (with our Via).
    pub fn request(&self) -> &Request {
        &self.started.request
    }

    /// The next outcome; `None` once the transaction is over and no more 2xx can come.
    pub async fn next(&mut self) -> Option<TxOutcome> {
        loop {
            let outcome = self.started.events.recv().await?;
            let retry = match &outcome {
                TxOutcome::Provisional(_) => {
                    self.responded = true;
                    false
                }
                TxOutcome::Final(r) => {
                    let retry = r.status == 503 && !self.final_seen;
                    if !retry {
                        self.final_seen = true;
                    }
                    self.responded = true;
                    retry
                }
                TxOutcome::Timeout | TxOutcome::TransportError(_) => {
                    !self.responded && !self.final_seen
                }
            };
            if retry && !self.remaining.is_empty() && self.failover(&outcome).await {
                continue;
            }
            if let TxOutcome::Final(_) = &outcome {
                self.final_seen = true;
            }
            return Some(outcome);
        }
    }

    /// Starts the request again on the next target; false when no target could be started.
    async fn failover(&mut self, why: &TxOutcome) -> bool {
        while !self.remaining.is_empty() {
            let flow = self.remaining.remove(0);
            tracing::debug!(from = %self.flow, to = %flow, reason = ?why, "failing over");
            match self
                .endpoint
                .start(self.original.clone(), flow, self.server_name.clone())
                .await
            {
                Ok(started) => {
                    self.started = started;
                    self.flow = flow;
                    self.responded = false;
                    return true;
                }
                Err(e) => tracing::debug!(%flow, error = %e, "failover target refused"),
            }
        }
        false
    }
}
