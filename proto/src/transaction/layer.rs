//! The transaction layer: routes every message to its transaction, owns the timers and
//! queues the output.

use std::collections::{HashMap, VecDeque};

use crate::spread::SpreadMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::client::{ClientState, ClientTx, cancel_for};
use super::key::{ClientKey, MAGIC_COOKIE, ServerKey, response_flow, stamp_via};
use super::server::{AckDisposition, ServerTx};
use super::timer::TimerIndex;
use super::{SentBy, Transmit, TxConfig, TxError, TxEvent, TxId};
use crate::msg::{
    HeaderName, Message, Method, Request, Response, check_request_uri_scheme, error_response,
    validate_request, validate_response,
};
use crate::{Flow, Transport};

/// The output queues and the timer index, shared by all transactions.
#[derive(Debug, Default)]
pub(crate) struct Out {
    /// Messages to send.
    pub(crate) transmits: VecDeque<Transmit>,
    /// Events for the TU.
    pub(crate) events: VecDeque<TxEvent>,
    /// All armed timers.
    pub(crate) timers: TimerIndex,
}

/// The SIP transaction layer (RFC 3261 §17, RFC 6026, RFC 3581), sans-IO.
///
/// Feed it input with the `handle_*` methods and the TU's `send_*`/`cancel` calls, then
/// drain [`poll_transmit`](Self::poll_transmit), [`poll_event`](Self::poll_event) and
/// re-arm the timer from [`poll_timeout`](Self::poll_timeout), calling
/// [`handle_timeout`](Self::handle_timeout) when it is reached. Time is passed in; all
/// randomness comes from the seeded generator of [`TxConfig::seed`].
#[derive(Debug)]
pub struct TransactionLayer {
    cfg: TxConfig,
    rng: StdRng,
    sent_by: HashMap<Transport, SentBy>,
    next_id: u64,
    clients: SpreadMap<TxId, ClientTx>,
    servers: SpreadMap<TxId, ServerTx>,
    client_keys: SpreadMap<ClientKey, TxId>,
    server_keys: SpreadMap<Arc<ServerKey>, TxId>,
    out: Out,
}

impl TransactionLayer {
    /// A layer with no transactions. Timer values are clamped to at most one hour (so
    /// deadline arithmetic cannot overflow), T1 to at least 1 ms and T2 to at least T1
    /// (so retransmission intervals are never zero).
    pub fn new(mut config: TxConfig) -> Self {
        const MAX_TIMER: Duration = Duration::from_secs(3600);
        config.t1 = config.t1.clamp(Duration::from_millis(1), MAX_TIMER);
        config.t2 = config.t2.clamp(config.t1, MAX_TIMER);
        config.t4 = config.t4.min(MAX_TIMER);
        config.timer_100 = config.timer_100.min(MAX_TIMER);
        Self {
            rng: StdRng::seed_from_u64(config.seed),
            cfg: config,
            sent_by: HashMap::new(),
            next_id: 1,
            clients: SpreadMap::new(),
            servers: SpreadMap::new(),
            client_keys: SpreadMap::new(),
            server_keys: SpreadMap::new(),
            out: Out::default(),
        }
    }

    // ----- getters -----

    /// The configuration.
    pub fn config(&self) -> &TxConfig {
        &self.cfg
    }

    /// The sent-by configured for `transport`.
    pub fn sent_by(&self, transport: Transport) -> Option<&SentBy> {
        self.sent_by.get(&transport)
    }

    /// The number of live transactions.
    pub fn len(&self) -> usize {
        self.clients.len() + self.servers.len()
    }

    /// Whether there is no live transaction.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The request a client transaction sent (with our Via).
    pub fn client_request(&self, tx: TxId) -> Option<&Request> {
        self.clients.get(&tx).map(|c| &c.request)
    }

    /// The request that created a server transaction, until it sends its final
    /// response (afterwards only what absorbs retransmissions is kept).
    pub fn server_request(&self, tx: TxId) -> Option<&Request> {
        self.servers.get(&tx).and_then(|s| s.request.as_deref())
    }

    /// The flow a transaction uses (client: where it sends; server: where it answers).
    pub fn flow(&self, tx: TxId) -> Option<Flow> {
        self.clients
            .get(&tx)
            .map(|c| c.flow)
            .or_else(|| self.servers.get(&tx).map(|s| s.reply))
    }

    // ----- configuration -----

    /// Sets the host and port put in the sent-by of our Via for `transport`.
    pub fn set_sent_by(&mut self, transport: Transport, sent_by: SentBy) {
        self.sent_by.insert(transport, sent_by);
    }

    // ----- input from the network -----

    /// Handles a datagram or a framed stream message from `flow`. A request that does
    /// not parse is answered with a 400 when enough of it survived, else dropped; an
    /// unparseable response is dropped.
    pub fn handle_receive(&mut self, now: Instant, data: Bytes, flow: Flow) {
        match Message::parse(data.clone()) {
            Ok(msg) => self.handle_message(now, msg, flow),
            Err(err) => {
                if data.trim_ascii_start().starts_with(b"SIP/") {
                    return;
                }
                if let Some(reply) = error_response(&data, &err) {
                    self.out.transmits.push_back(Transmit { flow, data: reply });
                }
            }
        }
    }

    /// Handles an already parsed message from `flow`.
    pub fn handle_message(&mut self, now: Instant, msg: Message, flow: Flow) {
        match msg {
            Message::Request(request) => self.on_request(now, request, flow),
            Message::Response(response) => self.on_response(now, response, flow),
        }
    }

    fn on_request(&mut self, now: Instant, mut request: Request, flow: Flow) {
        // Without a readable top Via there is nowhere to send an answer (§18.2.1).
        let Ok(via) = request.headers.top_via() else {
            return;
        };
        let key = ServerKey::of(&request, &via);
        // A retransmission (§17.2.3 match) only re-sends the last response: its request
        // was validated when the transaction was created, so skip the stamping and the
        // semantic checks, which cost more than everything else on this path.
        if request.method != Method::Ack
            && let Some(key) = &key
            && let Some(&id) = self.server_keys.get(key)
            && let Some(tx) = self.servers.get_mut(&id)
        {
            tx.on_retransmission(&mut self.out);
            return;
        }
        // §18.2.1 and RFC 3581 §4 hold for every transport: over a stream the stamped
        // `received`/`rport` name the connection, so stateless responses can reuse it.
        let mut stamped = via.clone();
        if stamp_via(&mut stamped, flow.remote) {
            request.headers.remove_first(&HeaderName::Via);
            request
                .headers
                .push_front(HeaderName::Via, stamped.to_string());
        }
        let reply = response_flow(&stamped, Some(flow)).unwrap_or(flow);
        // Semantic checks (RFC 3261 §8.2, RFC 4475): a bad request gets a stateless 400
        // (416 for an unsupported URI scheme) and creates no state; a bad ACK is dropped.
        let checked = validate_request(&request).and_then(|()| check_request_uri_scheme(&request));
        let key = match (key, checked) {
            (Some(key), Ok(())) => key,
            (_, Err(err)) => {
                if request.method != Method::Ack
                    && let Some(data) = error_response(&request.to_bytes(), &err)
                {
                    self.out.transmits.push_back(Transmit { flow: reply, data });
                }
                return;
            }
            (None, Ok(())) => {
                if request.method != Method::Ack {
                    self.reply_stateless(&request, 400, reply);
                }
                return;
            }
        };

        if request.method == Method::Ack {
            self.on_ack(now, request, flow, &key);
            return;
        }

        if self.len() >= self.cfg.max_transactions {
            self.reply_stateless(&request, 503, reply);
            return;
        }

        let id = self.alloc_id();
        let invite_tx = if request.method == Method::Cancel {
            self.server_keys
                .get(&key.with_method(Method::Invite))
                .copied()
                .filter(|id| self.servers.get(id).is_some_and(ServerTx::is_invite))
        } else {
            None
        };
        let key = Arc::new(key);
        let mut tx = ServerTx::new(id, request.clone(), flow, reply, Arc::clone(&key));
        tx.start(now, &self.cfg, &mut self.out);
        self.servers.insert(id, tx);
        self.server_keys.insert(key, id);
        self.out
            .events
            .push_back(if request.method == Method::Cancel {
                TxEvent::Cancel {
                    tx: id,
                    invite_tx,
                    request,
                    flow,
                }
            } else {
                TxEvent::Request {
                    tx: id,
                    request,
                    flow,
                }
            });
    }

    fn on_ack(&mut self, now: Instant, request: Request, flow: Flow, key: &ServerKey) {
        let matched = self.server_keys.get(key).copied();
        let disposition = match matched.and_then(|id| self.servers.get_mut(&id)) {
            Some(tx) if tx.is_invite() => tx.on_ack(now, &self.cfg, &mut self.out),
            _ => AckDisposition::ToTu,
        };
        if disposition == AckDisposition::ToTu {
            self.out.events.push_back(TxEvent::Ack { request, flow });
        }
        if let Some(id) = matched {
            self.reap_server(id);
        }
    }

    fn on_response(&mut self, now: Instant, response: Response, flow: Flow) {
        if !(100..=699).contains(&response.status) || validate_response(&response).is_err() {
            return;
        }
        let Ok(via) = response.headers.top_via() else {
            return;
        };
        let Ok(cseq) = response.headers.cseq() else {
            return;
        };
        let matched = via
            .branch()
            .filter(|b| b.starts_with(MAGIC_COOKIE))
            .and_then(|branch| self.client_keys.get(&ClientKey::new(branch, cseq.method)))
            .copied();
        match matched.and_then(|id| self.clients.get_mut(&id).map(|tx| (id, tx))) {
            Some((id, tx)) => {
                // §8.1.3.3: a response with more Vias than our request had (one, for a
                // UAC) was not meant for us: drop it.
                let sent = tx.request.headers.vias().map_or(1, |v| v.len());
                if response.headers.vias().map_or(true, |v| v.len() > sent) {
                    return;
                }
                tx.on_response(now, &self.cfg, &mut self.out, response);
                self.after_client(now, id);
            }
            None => self
                .out
                .events
                .push_back(TxEvent::StrayResponse { response, flow }),
        }
    }

    /// Reports that `flow` failed: every transaction using it ends with `TransportError`.
    pub fn transport_error(&mut self, now: Instant, flow: Flow) {
        let _ = now;
        let mut clients: Vec<TxId> = self
            .clients
            .values()
            .filter(|c| c.flow == flow)
            .map(|c| c.id)
            .collect();
        clients.sort_unstable();
        for id in clients {
            if let Some(tx) = self.clients.get_mut(&id) {
                tx.transport_error(&mut self.out);
            }
            self.reap_client(id);
        }
        let mut servers: Vec<TxId> = self
            .servers
            .values()
            .filter(|s| s.flow == flow || s.reply == flow)
            .map(|s| s.id)
            .collect();
        servers.sort_unstable();
        for id in servers {
            if let Some(tx) = self.servers.get_mut(&id) {
                tx.transport_error(&mut self.out);
            }
            self.reap_server(id);
        }
    }

    /// Fires every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((id, timer)) = self.out.timers.pop_due(now) {
            if let Some(tx) = self.clients.get_mut(&id) {
                tx.on_timer(now, &self.cfg, &mut self.out, timer);
                self.after_client(now, id);
            } else if let Some(tx) = self.servers.get_mut(&id) {
                if tx.on_timer(now, &self.cfg, &mut self.out, timer)
                    && let Some(request) = &tx.request
                {
                    let trying = trying_for(request).to_bytes();
                    tx.send_trying(&mut self.out, trying);
                }
                self.reap_server(id);
            }
        }
        self.shrink_tables();
    }

    /// The largest capacity among the transaction tables (tests of `shrink_tables`).
    #[cfg(test)]
    pub(crate) fn table_capacity(&self) -> usize {
        self.clients
            .capacity()
            .max(self.servers.capacity())
            .max(self.client_keys.capacity())
            .max(self.server_keys.capacity())
    }

    /// Gives back table memory after a burst: a map starts shrinking once it uses under a
    /// quarter of its capacity (hysteresis, so steady load never reallocates).
    fn shrink_tables(&mut self) {
        self.clients.maybe_shrink();
        self.servers.maybe_shrink();
        self.client_keys.maybe_shrink();
        self.server_keys.maybe_shrink();
    }

    // ----- TU commands -----

    /// Sends `request` to `flow` in a new client transaction: prepends our Via (transport
    /// of `flow`, the sent-by set for it, a fresh `z9hG4bK` branch and `rport`), adds
    /// Max-Forwards and User-Agent when missing, and queues the first transmission.
    pub fn send_request(
        &mut self,
        now: Instant,
        mut request: Request,
        flow: Flow,
    ) -> Result<TxId, TxError> {
        if request.method == Method::Ack {
            return Err(TxError::AckInTransaction);
        }
        let sent_by = self
            .sent_by
            .get(&flow.transport)
            .ok_or(TxError::NoSentBy(flow.transport))?
            .to_string();
        check_request(&request)?;
        let branch = loop {
            let branch = format!("{MAGIC_COOKIE}{:016x}", self.rng.random::<u64>());
            let taken = self
                .client_keys
                .contains_key(&ClientKey::new(&branch, request.method.clone()));
            if !taken {
                break branch;
            }
        };
        request.headers.push_front(
            HeaderName::Via,
            format!(
                "SIP/2.0/{} {sent_by};branch={branch};rport",
                flow.transport.via_token()
            ),
        );
        if request.headers.get(&HeaderName::MaxForwards).is_none() {
            request.headers.push(HeaderName::MaxForwards, "70");
        }
        if let Some(ua) = &self.cfg.user_agent
            && request.headers.get(&HeaderName::UserAgent).is_none()
        {
            request.headers.push(HeaderName::UserAgent, ua.clone());
        }
        let id = self.alloc_id();
        let key = ClientKey::new(&branch, request.method.clone());
        let mut tx = ClientTx::new(id, key.clone(), request, flow);
        tx.start(now, &self.cfg, &mut self.out);
        self.clients.insert(id, tx);
        self.client_keys.insert(key, id);
        Ok(id)
    }

    /// Sends a response in server transaction `tx`. Where it goes follows RFC 3261
    /// §18.2.2 / RFC 3581: the arrival connection for streams, the `received`/`rport`
    /// address for UDP. A `Server` header is added when configured and missing.
    pub fn send_response(
        &mut self,
        now: Instant,
        tx: TxId,
        mut response: Response,
    ) -> Result<(), TxError> {
        let status = response.status;
        if !(100..=699).contains(&status) {
            return Err(TxError::InvalidStatus(status));
        }
        let server = self
            .servers
            .get_mut(&tx)
            .ok_or(TxError::UnknownTransaction(tx))?;
        if let Some(ua) = &self.cfg.user_agent
            && response.headers.get(&HeaderName::Server).is_none()
        {
            response.headers.push(HeaderName::Server, ua.clone());
        }
        server.send_response(now, &self.cfg, &mut self.out, status, response.to_bytes())?;
        if server.is_invite() && status >= 200 {
            // RFC 2543 peers' ACKs are matched by the To tag of our final response.
            let to_tag = response.headers.to().ok();
            let to_tag = to_tag.as_ref().and_then(|to| to.tag());
            if server.ack_key.is_none()
                && let Some(ack_key) = server.key.ack_key(to_tag)
                && ack_key != *server.key
            {
                let ack_key = Arc::new(ack_key);
                self.server_keys.insert(Arc::clone(&ack_key), tx);
                server.ack_key = Some(ack_key);
            }
        }
        self.reap_server(tx);
        Ok(())
    }

    /// Sends `msg` to `flow` as is, outside any transaction (ACK for a 2xx, a proxy's
    /// stateless forwarding).
    pub fn send_stateless(&mut self, msg: Message, flow: Flow) {
        self.out.transmits.push_back(Transmit {
            flow,
            data: msg.to_bytes(),
        });
    }

    /// Sends `response` outside any transaction, to the address its top Via names
    /// (`received`/`rport`, else sent-by; default port by transport). A response whose
    /// Via names a host that is not an IP address (and has no `received`) is dropped.
    pub fn send_stateless_response(&mut self, response: Response) {
        let Ok(via) = response.headers.top_via() else {
            return;
        };
        if let Some(flow) = response_flow(&via, None) {
            self.out.transmits.push_back(Transmit {
                flow,
                data: response.to_bytes(),
            });
        }
    }

    /// Cancels INVITE client transaction `invite_tx` (RFC 3261 §9.1): builds the CANCEL
    /// and sends it in a new non-INVITE client transaction, at once if a provisional
    /// response was received, else as soon as one is (if a final response comes first,
    /// the CANCEL is dropped and only `Terminated` is reported for it).
    pub fn cancel(&mut self, now: Instant, invite_tx: TxId) -> Result<TxId, TxError> {
        let invite = self
            .clients
            .get(&invite_tx)
            .ok_or(TxError::UnknownTransaction(invite_tx))?;
        if !invite.is_invite() {
            return Err(TxError::NotInvite(invite_tx));
        }
        if invite.has_final() {
            return Err(TxError::AlreadyFinal(invite_tx));
        }
        if invite.cancel.is_some() {
            return Err(TxError::AlreadyCancelled(invite_tx));
        }
        let request = cancel_for(&invite.request);
        let key = ClientKey::new(&invite.key.branch, Method::Cancel);
        let flow = invite.flow;
        let id = self.alloc_id();
        let mut cancel = ClientTx::new(id, key.clone(), request, flow);
        cancel.cancels = Some(invite_tx);
        if let Some(invite) = self.clients.get_mut(&invite_tx) {
            invite.cancel = Some(id);
            if invite.state == ClientState::Proceeding {
                cancel.start(now, &self.cfg, &mut self.out);
                invite.cancel_sent(now, &self.cfg, &mut self.out);
            }
        }
        self.clients.insert(id, cancel);
        self.client_keys.insert(key, id);
        Ok(id)
    }

    // ----- output -----

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    /// The next event for the TU.
    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.out.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.out.timers.next()
    }

    // ----- internals -----

    fn alloc_id(&mut self) -> TxId {
        let id = TxId(self.next_id);
        self.next_id += 1;
        id
    }

    /// After a client transaction changed: releases or drops a CANCEL held for it and
    /// removes it if it terminated.
    fn after_client(&mut self, now: Instant, id: TxId) {
        let Some(tx) = self.clients.get(&id) else {
            return;
        };
        if let Some(cancel_id) = tx.cancel {
            let proceeding = tx.state == ClientState::Proceeding;
            let finished = tx.has_final();
            if let Some(cancel) = self.clients.get_mut(&cancel_id)
                && cancel.state == ClientState::Held
            {
                if proceeding {
                    cancel.start(now, &self.cfg, &mut self.out);
                    if let Some(invite) = self.clients.get_mut(&id) {
                        invite.cancel_sent(now, &self.cfg, &mut self.out);
                    }
                } else if finished {
                    cancel.terminate(&mut self.out);
                    self.reap_client(cancel_id);
                }
            }
        }
        self.reap_client(id);
    }

    /// Removes client transaction `id` if it terminated (and a CANCEL still held for it).
    fn reap_client(&mut self, id: TxId) {
        if !self
            .clients
            .get(&id)
            .is_some_and(|tx| tx.state == ClientState::Terminated)
        {
            return;
        }
        let Some(tx) = self.clients.remove(&id) else {
            return;
        };
        self.client_keys.remove(&tx.key);
        self.out.events.push_back(TxEvent::Terminated { tx: id });
        if let Some(cancel_id) = tx.cancel
            && let Some(cancel) = self.clients.get_mut(&cancel_id)
            && cancel.state == ClientState::Held
        {
            cancel.terminate(&mut self.out);
            self.reap_client(cancel_id);
        }
    }

    /// Removes server transaction `id` if it terminated.
    fn reap_server(&mut self, id: TxId) {
        if !self
            .servers
            .get(&id)
            .is_some_and(|tx| tx.state == super::server::ServerState::Terminated)
        {
            return;
        }
        if let Some(tx) = self.servers.remove(&id) {
            for key in std::iter::once(&tx.key).chain(&tx.ack_key) {
                if self.server_keys.get(&**key) == Some(&id) {
                    self.server_keys.remove(&**key);
                }
            }
            self.out.events.push_back(TxEvent::Terminated { tx: id });
        }
    }

    /// Answers `request` with `status` outside any transaction (overload 503, 400).
    fn reply_stateless(&mut self, request: &Request, status: u16, reply: Flow) {
        let mut response = Response::for_request(request, status);
        if status == 503 {
            response.headers.push(HeaderName::RetryAfter, "5");
        }
        if let Ok(mut to) = response.headers.to()
            && to.tag().is_none()
        {
            let tag = format!("{:016x}", self.rng.random::<u64>());
            to.set_tag(&tag);
            response.headers.set(HeaderName::To, to.to_string());
        }
        if let Some(ua) = &self.cfg.user_agent {
            response.headers.push(HeaderName::Server, ua.clone());
        }
        self.out.transmits.push_back(Transmit {
            flow: reply,
            data: response.to_bytes(),
        });
    }
}

/// The automatic `100 Trying` for an INVITE (§8.2.6.1: no To tag, Timestamp copied).
fn trying_for(request: &Request) -> Response {
    let mut trying = Response::for_request(request, 100);
    if let Some(ts) = request.headers.get(&HeaderName::Timestamp) {
        trying.headers.push(HeaderName::Timestamp, ts.clone());
    }
    trying
}

/// Checks the headers a client transaction relies on (§8.1.1).
fn check_request(request: &Request) -> Result<(), TxError> {
    let invalid =
        |what: &str, e: &dyn std::fmt::Display| TxError::InvalidRequest(format!("{what}: {e}"));
    let cseq = request.headers.cseq().map_err(|e| invalid("CSeq", &e))?;
    if cseq.method != request.method {
        return Err(TxError::InvalidRequest(format!(
            "CSeq method {} differs from request method {}",
            cseq.method, request.method
        )));
    }
    request
        .headers
        .call_id()
        .map_err(|e| invalid("Call-ID", &e))?;
    request.headers.from().map_err(|e| invalid("From", &e))?;
    request.headers.to().map_err(|e| invalid("To", &e))?;
    Ok(())
}
