//! Server transactions: INVITE (RFC 3261 §17.2.1 with the RFC 6026 Accepted state)
//! and non-INVITE (§17.2.2).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::key::ServerKey;
use super::layer::Out;
use super::timer::{TimerTable, TxTimer};
use super::{Transmit, TxConfig, TxError, TxEvent, TxId};
use crate::Flow;
use crate::msg::{Method, Request};

/// The state of a server transaction (both machines share one enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerState {
    /// Non-INVITE: no response sent yet.
    Trying,
    /// A provisional was sent (INVITE: from creation on).
    Proceeding,
    /// A final response was sent (non-2xx for INVITE).
    Completed,
    /// INVITE: the ACK for the non-2xx final arrived.
    Confirmed,
    /// INVITE: a 2xx was sent (RFC 6026); 2xx retransmissions from the TU pass through.
    Accepted,
    /// Done; the layer removes it.
    Terminated,
}

/// What the layer must do with an ACK matched to an INVITE server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckDisposition {
    /// Absorbed by the transaction.
    Absorbed,
    /// For the TU (the RFC 6026 Accepted state): report `TxEvent::Ack`.
    ToTu,
}

/// One server transaction.
#[derive(Debug)]
pub(crate) struct ServerTx {
    /// Its id.
    pub(crate) id: TxId,
    /// The request that created it (top Via stamped with received/rport), kept until
    /// the final response: Completed, Confirmed and Accepted only need the key, the
    /// flow and the encoded last response to absorb retransmissions.
    pub(crate) request: Option<Box<Request>>,
    /// The flow the request arrived on.
    pub(crate) flow: Flow,
    /// Where responses go (§18.2.2).
    pub(crate) reply: Flow,
    /// Its state.
    pub(crate) state: ServerState,
    /// The key under which the layer indexes it (shared with the layer's index).
    pub(crate) key: Arc<ServerKey>,
    /// For an RFC 2543 INVITE: the extra key its ACK will match, once a final was sent.
    pub(crate) ack_key: Option<Arc<ServerKey>>,
    invite: bool,
    timers: TimerTable,
    interval: Duration,
    last_response: Option<Bytes>,
}

impl ServerTx {
    /// A server transaction for `request`, answering to `reply`.
    pub(crate) fn new(
        id: TxId,
        request: Request,
        flow: Flow,
        reply: Flow,
        key: Arc<ServerKey>,
    ) -> Self {
        let invite = request.method == Method::Invite;
        Self {
            id,
            request: Some(Box::new(request)),
            flow,
            reply,
            state: ServerState::Trying,
            key,
            ack_key: None,
            invite,
            timers: TimerTable::new(id),
            interval: Duration::ZERO,
            last_response: None,
        }
    }

    /// Whether this is an INVITE transaction.
    pub(crate) fn is_invite(&self) -> bool {
        self.invite
    }

    /// Enters the initial state: INVITE starts in Proceeding with the 100-Trying timer.
    pub(crate) fn start(&mut self, now: Instant, cfg: &TxConfig, out: &mut Out) {
        if self.invite {
            self.state = ServerState::Proceeding;
            self.timers
                .set(&mut out.timers, TxTimer::Trying, now + cfg.timer_100);
        }
    }

    fn resend(&self, out: &mut Out) {
        if let Some(data) = &self.last_response {
            out.transmits.push_back(Transmit {
                flow: self.reply,
                data: data.clone(),
            });
        }
    }

    /// A retransmission of the request arrived: re-send the last response (§17.2.1,
    /// §17.2.2); nothing in Trying, Confirmed or (RFC 6026) Accepted.
    pub(crate) fn on_retransmission(&mut self, out: &mut Out) {
        match self.state {
            ServerState::Proceeding | ServerState::Completed => self.resend(out),
            _ => {}
        }
    }

    /// An ACK matched this INVITE transaction.
    pub(crate) fn on_ack(&mut self, now: Instant, cfg: &TxConfig, out: &mut Out) -> AckDisposition {
        match self.state {
            ServerState::Completed => {
                self.timers.stop(&mut out.timers, TxTimer::G);
                self.timers.stop(&mut out.timers, TxTimer::H);
                if self.reply.transport.is_reliable() {
                    self.terminate(out);
                } else {
                    self.state = ServerState::Confirmed;
                    self.timers.set(&mut out.timers, TxTimer::I, now + cfg.t4);
                }
                AckDisposition::Absorbed
            }
            ServerState::Accepted => AckDisposition::ToTu,
            _ => AckDisposition::Absorbed,
        }
    }

    /// Sends a response from the TU (already encoded as `data`).
    pub(crate) fn send_response(
        &mut self,
        now: Instant,
        cfg: &TxConfig,
        out: &mut Out,
        status: u16,
        data: Bytes,
    ) -> Result<(), TxError> {
        let refused = Err(TxError::InvalidState {
            tx: self.id,
            status,
        });
        let provisional = status < 200;
        let unreliable = !self.reply.transport.is_reliable();
        match (self.invite, self.state) {
            (_, ServerState::Trying | ServerState::Proceeding) => {}
            (true, ServerState::Accepted) if (200..300).contains(&status) => {
                out.transmits.push_back(Transmit {
                    flow: self.reply,
                    data: data.clone(),
                });
                self.last_response = Some(data);
                return Ok(());
            }
            _ => return refused,
        }
        self.timers.stop(&mut out.timers, TxTimer::Trying);
        out.transmits.push_back(Transmit {
            flow: self.reply,
            data: data.clone(),
        });
        self.last_response = Some(data);
        if provisional {
            self.state = ServerState::Proceeding;
            return Ok(());
        }
        // Only the encoded final response is needed from now on.
        self.request = None;
        if self.invite {
            if status < 300 {
                self.state = ServerState::Accepted;
                self.timers
                    .set(&mut out.timers, TxTimer::L, now + cfg.timeout());
            } else {
                self.state = ServerState::Completed;
                self.interval = cfg.t1;
                if unreliable {
                    self.timers.set(&mut out.timers, TxTimer::G, now + cfg.t1);
                }
                self.timers
                    .set(&mut out.timers, TxTimer::H, now + cfg.timeout());
            }
        } else if unreliable {
            self.state = ServerState::Completed;
            self.timers
                .set(&mut out.timers, TxTimer::J, now + cfg.timeout());
        } else {
            self.terminate(out);
        }
        Ok(())
    }

    /// Whether the TU (or the layer's automatic 100) has sent any response yet.
    pub(crate) fn has_responded(&self) -> bool {
        self.last_response.is_some()
    }

    /// Sends the automatic `100 Trying` (encoded as `data`) if still appropriate.
    pub(crate) fn send_trying(&mut self, out: &mut Out, data: Bytes) {
        if self.state == ServerState::Proceeding && self.last_response.is_none() {
            out.transmits.push_back(Transmit {
                flow: self.reply,
                data: data.clone(),
            });
            self.last_response = Some(data);
        }
    }

    /// Handles a fired timer; returns true for the 100-Trying timer, which the layer
    /// answers with [`ServerTx::send_trying`].
    pub(crate) fn on_timer(
        &mut self,
        now: Instant,
        cfg: &TxConfig,
        out: &mut Out,
        timer: TxTimer,
    ) -> bool {
        self.timers.fired(timer);
        match (timer, self.state) {
            (TxTimer::Trying, ServerState::Proceeding) => return !self.has_responded(),
            (TxTimer::G, ServerState::Completed) => {
                self.resend(out);
                self.interval = self.interval.saturating_mul(2).min(cfg.t2);
                self.timers
                    .set(&mut out.timers, TxTimer::G, now + self.interval);
            }
            (TxTimer::H, ServerState::Completed) => {
                out.events.push_back(TxEvent::Timeout { tx: self.id });
                self.terminate(out);
            }
            (TxTimer::I, ServerState::Confirmed)
            | (TxTimer::J, ServerState::Completed)
            | (TxTimer::L, ServerState::Accepted) => self.terminate(out),
            _ => {}
        }
        false
    }

    /// Reports a failed flow and ends the transaction.
    pub(crate) fn transport_error(&mut self, out: &mut Out) {
        out.events
            .push_back(TxEvent::TransportError { tx: self.id });
        self.terminate(out);
    }

    /// Ends the transaction (the layer removes it and reports `Terminated`).
    pub(crate) fn terminate(&mut self, out: &mut Out) {
        self.timers.stop_all(&mut out.timers);
        self.request = None;
        self.state = ServerState::Terminated;
    }
}
