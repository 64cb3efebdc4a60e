//! Client transactions: INVITE (RFC 3261 §17.1.1 with the RFC 6026 Accepted state)
//! and non-INVITE (§17.1.2), plus the ACK and CANCEL they build.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::key::ClientKey;
use super::layer::Out;
use super::timer::{TimerTable, TxTimer};
use super::{Transmit, TxConfig, TxEvent, TxId};
use crate::Flow;
use crate::msg::{HeaderName, Method, Request, Response};

/// The state of a client transaction (both machines share one enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientState {
    /// Created but not sent: a CANCEL waiting for a provisional response (§9.1).
    Held,
    /// INVITE sent, nothing received.
    Calling,
    /// Non-INVITE sent, nothing received.
    Trying,
    /// A provisional response was received.
    Proceeding,
    /// A final response was received (non-2xx for INVITE); absorbing retransmissions.
    Completed,
    /// INVITE got a 2xx (RFC 6026); further 2xx are passed up until Timer M.
    Accepted,
    /// Done; the layer removes it.
    Terminated,
}

/// One client transaction.
#[derive(Debug)]
pub(crate) struct ClientTx {
    /// Its id.
    pub(crate) id: TxId,
    /// Its matching key.
    pub(crate) key: ClientKey,
    /// The request as sent (with our Via).
    pub(crate) request: Request,
    /// The flow it is sent on.
    pub(crate) flow: Flow,
    /// Its state.
    pub(crate) state: ClientState,
    /// For an INVITE: the CANCEL client transaction created for it.
    pub(crate) cancel: Option<TxId>,
    /// For a CANCEL: the INVITE client transaction it cancels.
    pub(crate) cancels: Option<TxId>,
    invite: bool,
    data: Bytes,
    timers: TimerTable,
    interval: Duration,
    ack: Option<Bytes>,
}

impl ClientTx {
    /// A transaction for `request` (whose top Via is ours), not yet sent.
    pub(crate) fn new(id: TxId, key: ClientKey, request: Request, flow: Flow) -> Self {
        let invite = request.method == Method::Invite;
        let data = request.to_bytes();
        Self {
            id,
            key,
            request,
            flow,
            state: ClientState::Held,
            cancel: None,
            cancels: None,
            invite,
            data,
            timers: TimerTable::new(id),
            interval: Duration::ZERO,
            ack: None,
        }
    }

    /// Whether this is an INVITE transaction.
    pub(crate) fn is_invite(&self) -> bool {
        self.invite
    }

    /// Whether a final response was received (or the transaction is over).
    pub(crate) fn has_final(&self) -> bool {
        matches!(
            self.state,
            ClientState::Completed | ClientState::Accepted | ClientState::Terminated
        )
    }

    /// Sends the request and arms the initial timers (§17.1.1.2, §17.1.2.2).
    pub(crate) fn start(&mut self, now: Instant, cfg: &TxConfig, out: &mut Out) {
        self.send(out);
        let unreliable = !self.flow.transport.is_reliable();
        self.interval = cfg.t1;
        if self.invite {
            self.state = ClientState::Calling;
            if unreliable {
                self.timers.set(&mut out.timers, TxTimer::A, now + cfg.t1);
            }
            self.timers
                .set(&mut out.timers, TxTimer::B, now + cfg.timeout());
        } else {
            self.state = ClientState::Trying;
            if unreliable {
                self.timers.set(&mut out.timers, TxTimer::E, now + cfg.t1);
            }
            self.timers
                .set(&mut out.timers, TxTimer::F, now + cfg.timeout());
        }
    }

    /// A CANCEL for this INVITE was sent: if no final response arrives within 64·T1 the
    /// transaction is destroyed (§9.1), reusing Timer B.
    pub(crate) fn cancel_sent(&mut self, now: Instant, cfg: &TxConfig, out: &mut Out) {
        if matches!(self.state, ClientState::Calling | ClientState::Proceeding) {
            self.timers
                .set(&mut out.timers, TxTimer::B, now + cfg.timeout());
        }
    }

    fn send(&self, out: &mut Out) {
        out.transmits.push_back(Transmit {
            flow: self.flow,
            data: self.data.clone(),
        });
    }

    /// Handles a response matched to this transaction.
    pub(crate) fn on_response(
        &mut self,
        now: Instant,
        cfg: &TxConfig,
        out: &mut Out,
        response: Response,
    ) {
        if self.invite {
            self.on_invite_response(now, cfg, out, response);
        } else {
            self.on_non_invite_response(now, cfg, out, response);
        }
    }

    fn on_invite_response(
        &mut self,
        now: Instant,
        cfg: &TxConfig,
        out: &mut Out,
        response: Response,
    ) {
        let status = response.status;
        match self.state {
            ClientState::Calling | ClientState::Proceeding => {
                self.timers.stop(&mut out.timers, TxTimer::A);
                if status < 200 {
                    if self.state == ClientState::Calling && self.cancel.is_none() {
                        // Timer B only guards Calling (§17.1.1.2); a pending CANCEL re-arms it.
                        self.timers.stop(&mut out.timers, TxTimer::B);
                    }
                    self.state = ClientState::Proceeding;
                    self.pass_up(out, response);
                } else if status < 300 {
                    self.timers.stop(&mut out.timers, TxTimer::B);
                    self.state = ClientState::Accepted;
                    self.timers
                        .set(&mut out.timers, TxTimer::M, now + cfg.timeout());
                    self.pass_up(out, response);
                } else {
                    self.timers.stop(&mut out.timers, TxTimer::B);
                    let ack = ack_for(&self.request, &response).to_bytes();
                    out.transmits.push_back(Transmit {
                        flow: self.flow,
                        data: ack.clone(),
                    });
                    self.ack = Some(ack);
                    self.pass_up(out, response);
                    if self.flow.transport.is_reliable() {
                        self.terminate(out);
                    } else {
                        self.state = ClientState::Completed;
                        // Timer D: at least 32 s on UDP, i.e. 64·T1 with the default T1.
                        self.timers
                            .set(&mut out.timers, TxTimer::D, now + cfg.timeout());
                    }
                }
            }
            ClientState::Completed => {
                if status >= 300
                    && let Some(ack) = &self.ack
                {
                    out.transmits.push_back(Transmit {
                        flow: self.flow,
                        data: ack.clone(),
                    });
                }
            }
            ClientState::Accepted => {
                if (200..300).contains(&status) {
                    self.pass_up(out, response);
                }
            }
            ClientState::Held | ClientState::Trying | ClientState::Terminated => {}
        }
    }

    fn on_non_invite_response(
        &mut self,
        now: Instant,
        cfg: &TxConfig,
        out: &mut Out,
        response: Response,
    ) {
        match self.state {
            ClientState::Trying | ClientState::Proceeding => {
                if response.status < 200 {
                    self.state = ClientState::Proceeding;
                    self.pass_up(out, response);
                } else {
                    self.timers.stop(&mut out.timers, TxTimer::E);
                    self.timers.stop(&mut out.timers, TxTimer::F);
                    self.pass_up(out, response);
                    if self.flow.transport.is_reliable() {
                        self.terminate(out);
                    } else {
                        self.state = ClientState::Completed;
                        self.timers.set(&mut out.timers, TxTimer::K, now + cfg.t4);
                    }
                }
            }
            _ => {}
        }
    }

    fn pass_up(&self, out: &mut Out, response: Response) {
        out.events.push_back(TxEvent::Response {
            tx: self.id,
            response,
        });
    }

    /// Handles a fired timer.
    pub(crate) fn on_timer(&mut self, now: Instant, cfg: &TxConfig, out: &mut Out, timer: TxTimer) {
        self.timers.fired(timer);
        match (timer, self.state) {
            (TxTimer::A, ClientState::Calling) => {
                self.send(out);
                self.interval = self.interval.saturating_mul(2);
                self.timers
                    .set(&mut out.timers, TxTimer::A, now + self.interval);
            }
            (TxTimer::E, ClientState::Trying) => {
                self.send(out);
                self.interval = self.interval.saturating_mul(2).min(cfg.t2);
                self.timers
                    .set(&mut out.timers, TxTimer::E, now + self.interval);
            }
            (TxTimer::E, ClientState::Proceeding) => {
                self.send(out);
                self.interval = cfg.t2;
                self.timers.set(&mut out.timers, TxTimer::E, now + cfg.t2);
            }
            (TxTimer::B, ClientState::Calling | ClientState::Proceeding)
            | (TxTimer::F, ClientState::Trying | ClientState::Proceeding) => {
                out.events.push_back(TxEvent::Timeout { tx: self.id });
                self.terminate(out);
            }
            (TxTimer::D, ClientState::Completed)
            | (TxTimer::K, ClientState::Completed)
            | (TxTimer::M, ClientState::Accepted) => self.terminate(out),
            _ => {}
        }
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
        self.state = ClientState::Terminated;
    }
}

/// Copies every header line named `name` from `from` to `to`, in order.
fn copy_all(from: &Request, to: &mut Request, name: &HeaderName) {
    for value in from.headers.get_all(name) {
        to.headers.push(name.clone(), value.clone());
    }
}

/// The top Via value of `request`, as one header value.
fn top_via_value(request: &Request) -> Option<String> {
    request.headers.values(&HeaderName::Via).into_iter().next()
}

/// The ACK for a non-2xx final `response` to `invite` (RFC 3261 §17.1.1.3): same
/// Request-URI, Call-ID, From, CSeq number and top Via (so the same branch) as the
/// INVITE, To from the response, the INVITE's Route headers, no body.
pub fn ack_for(invite: &Request, response: &Response) -> Request {
    let mut ack = Request::new(Method::Ack, invite.uri.clone());
    if let Some(via) = top_via_value(invite) {
        ack.headers.push(HeaderName::Via, via);
    }
    ack.headers.push(HeaderName::MaxForwards, "70");
    copy_all(invite, &mut ack, &HeaderName::From);
    match response.headers.get(&HeaderName::To) {
        Some(to) => ack.headers.push(HeaderName::To, to.clone()),
        None => copy_all(invite, &mut ack, &HeaderName::To),
    }
    copy_all(invite, &mut ack, &HeaderName::CallId);
    let seq = invite.headers.cseq().map(|c| c.seq).unwrap_or(1);
    ack.headers.push(HeaderName::CSeq, format!("{seq} ACK"));
    copy_all(invite, &mut ack, &HeaderName::Route);
    ack
}

/// The CANCEL for `invite` (RFC 3261 §9.1): same Request-URI, Call-ID, From, To, CSeq
/// number and top Via as the INVITE, its Route headers, no body.
pub(crate) fn cancel_for(invite: &Request) -> Request {
    let mut cancel = Request::new(Method::Cancel, invite.uri.clone());
    if let Some(via) = top_via_value(invite) {
        cancel.headers.push(HeaderName::Via, via);
    }
    cancel.headers.push(HeaderName::MaxForwards, "70");
    copy_all(invite, &mut cancel, &HeaderName::From);
    copy_all(invite, &mut cancel, &HeaderName::To);
    copy_all(invite, &mut cancel, &HeaderName::CallId);
    let seq = invite.headers.cseq().map(|c| c.seq).unwrap_or(1);
    cancel
        .headers
        .push(HeaderName::CSeq, format!("{seq} CANCEL"));
    copy_all(invite, &mut cancel, &HeaderName::Route);
    copy_all(invite, &mut cancel, &HeaderName::UserAgent);
    cancel
}
