//! Calls: the INVITE client side (RFC 3261 §13.2, §9 CANCEL), the INVITE server side
//! (§13.3 with 2xx retransmission until ACK), and the confirmed dialog (§12, §15 BYE).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tandem_net::{ClientTx, Target, TxOutcome};
use tandem_proto::dialog::Dialog;
use tandem_proto::msg::{HeaderName, Message, Method, Request, Response, Uri};
use tandem_proto::transaction::TxId;
use tandem_proto::{Flow, Transport};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};

use crate::account::{Account, with_transport};
use crate::error::{Result, UaError};
use crate::media::{self, MediaInfo};
use crate::request::{AuthSession, add_to_tag, bump_cseq, name_addr_header, net_error};
use crate::ua::{ALLOW, DialogInput, DialogKey, PendingInvite, SUPPORTED, Shared};

/// How many challenges an INVITE may get answered before we give up.
const MAX_INVITE_CHALLENGES: u32 = 6;

/// Options for placing a call.
#[derive(Debug, Clone)]
pub struct CallOptions {
    /// Give up (CANCEL) when not answered within this time; `None`: wait for the INVITE
    /// transaction to time out.
    pub timeout: Option<Duration>,
}

impl Default for CallOptions {
    fn default() -> Self {
        CallOptions {
            timeout: Some(Duration::from_secs(30)),
        }
    }
}

/// Which side ended a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndedBy {
    /// We did (hangup, timeout, shutdown).
    Local,
    /// The peer did (BYE, CANCEL).
    Remote,
}

impl fmt::Display for EndedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndedBy::Local => "local",
            EndedBy::Remote => "remote",
        })
    }
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// A BYE ended the confirmed call.
    Bye,
    /// A CANCEL ended the call before it was answered.
    Cancel,
    /// A time limit: no answer in time, or no ACK for our 2xx.
    Timeout,
    /// A transport or protocol failure.
    Error,
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndReason::Bye => "bye",
            EndReason::Cancel => "cancel",
            EndReason::Timeout => "timeout",
            EndReason::Error => "error",
        })
    }
}

/// Progress of a call, in order; the last one is `Ended` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CallEvent {
    /// A 100 Trying arrived.
    Trying,
    /// A 180/183 (or other 1xx above 100) arrived.
    Ringing {
        /// The status code.
        status: u16,
        /// The reason phrase.
        reason: String,
    },
    /// The call is confirmed: our 2xx was ACKed, or we ACKed the peer's 2xx.
    Answered {
        /// The final status (a 2xx).
        status: u16,
    },
    /// The call ended after it was set up, or was cancelled.
    Ended {
        /// Who ended it.
        by: EndedBy,
        /// How.
        reason: EndReason,
    },
    /// The call could not be set up (rejected, authentication, timeout, network).
    Failed(UaError),
}

#[derive(Debug)]
enum CallCommand {
    Hangup,
}

/// A call (placed or accepted): events, hangup, media.
///
/// Dropping it hangs up (BYE or CANCEL) in the background.
#[derive(Debug)]
pub struct Call {
    call_id: String,
    remote: Uri,
    cmd: mpsc::UnboundedSender<CallCommand>,
    events: mpsc::UnboundedReceiver<CallEvent>,
    media: Arc<Mutex<MediaInfo>>,
    rtp: Arc<UdpSocket>,
}

impl Call {
    /// The call's Call-ID.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The peer: the callee's URI, or the caller's From URI.
    pub fn remote(&self) -> &Uri {
        &self.remote
    }

    /// The next call event; `None` after the final `Ended`/`Failed` was taken.
    pub async fn next_event(&mut self) -> Option<CallEvent> {
        self.events.recv().await
    }

    /// Ends the call: CANCEL before an answer, BYE after; an `Ended` event follows.
    pub fn hangup(&self) {
        let _ = self.cmd.send(CallCommand::Hangup);
    }

    /// The bound RTP socket whose port is in our SDP.
    pub fn rtp_socket(&self) -> Arc<UdpSocket> {
        self.rtp.clone()
    }

    /// The media as negotiated so far.
    pub fn media(&self) -> MediaInfo {
        self.media.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Places a call (see [`UserAgent::call`](crate::UserAgent::call)).
    pub(crate) async fn place(
        shared: Arc<Shared>,
        account: Account,
        target: Uri,
        options: CallOptions,
    ) -> Result<Call> {
        let aor = account.aor()?;
        let rtp = media::bind_rtp(shared.local_ip).await?;
        let local_rtp = rtp
            .local_addr()
            .map_err(|e| UaError::Network(format!("RTP socket address: {e}")))?;
        let offer = media::offer(
            u64::from(shared.random_u32()),
            shared.local_ip,
            local_rtp.port(),
        );
        let call_id = shared.call_id();
        let local_tag = shared.tag();
        let mut invite = Request::new(Method::Invite, target.clone());
        {
            let h = &mut invite.headers;
            h.push(HeaderName::MaxForwards, "70");
            h.push(HeaderName::To, format!("<{target}>"));
            h.push(
                HeaderName::From,
                format!(
                    "{};tag={local_tag}",
                    name_addr_header(account.display_name.as_deref(), &aor)
                ),
            );
            h.push(HeaderName::CallId, call_id.clone());
            h.push(HeaderName::CSeq, "1 INVITE");
            h.push(
                HeaderName::Contact,
                format!("<{}>", shared.contact_uri(Some(&account.user))),
            );
            h.push(HeaderName::Allow, ALLOW);
            if !SUPPORTED.is_empty() {
                h.push(HeaderName::Supported, SUPPORTED);
            }
            h.push(HeaderName::UserAgent, shared.config.user_agent.clone());
            h.push(HeaderName::ContentType, "application/sdp");
        }
        invite.body = Bytes::from(offer.to_string());
        let media = Arc::new(Mutex::new(MediaInfo {
            local_rtp,
            local_sdp: Some(offer),
            remote_sdp: None,
            negotiated: Vec::new(),
        }));
        let key = DialogKey {
            call_id: call_id.clone(),
            local_tag,
        };
        let (dialog_tx, dialog_rx) = mpsc::unbounded_channel();
        shared.add_dialog(key.clone(), dialog_tx);
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let hop = Target::Uri(account.next_hop(&target));
        let task = CallTask {
            shared: shared.clone(),
            key,
            events: ev_tx,
            cmds: cmd_rx,
            inputs: dialog_rx,
            media: media.clone(),
            auth: AuthSession::for_account(&account),
        };
        tokio::spawn(task.run_uac(invite, hop, options));
        Ok(Call {
            call_id,
            remote: target,
            cmd: cmd_tx,
            events: ev_rx,
            media,
            rtp,
        })
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let _ = self.cmd.send(CallCommand::Hangup);
    }
}

/// The state of an incoming INVITE before its final response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IncState {
    /// No final response yet.
    Pending,
    /// The caller cancelled (we answered 487).
    Cancelled,
    /// We sent a 2xx.
    Answered,
    /// We sent a 3xx–6xx.
    Rejected,
    /// The transaction failed.
    Failed,
}

/// An incoming call offered to the application: ring, accept or reject it.
///
/// Dropping it without an answer rejects it with 480 Temporarily Unavailable.
#[derive(Debug)]
pub struct IncomingCall {
    shared: Arc<Shared>,
    tx: TxId,
    request: Request,
    flow: Flow,
    local_tag: String,
    state: Arc<watch::Sender<IncState>>,
    state_rx: watch::Receiver<IncState>,
}

impl IncomingCall {
    pub(crate) fn new(shared: Arc<Shared>, tx: TxId, request: Request, flow: Flow) -> Self {
        let local_tag = shared.tag();
        let (state, state_rx) = watch::channel(IncState::Pending);
        let state = Arc::new(state);
        shared.routes().pending_invites.insert(
            tx,
            PendingInvite {
                request: request.clone(),
                local_tag: local_tag.clone(),
                state: state.clone(),
            },
        );
        IncomingCall {
            shared,
            tx,
            request,
            flow,
            local_tag,
            state,
            state_rx,
        }
    }

    /// The INVITE as received.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Where the INVITE came from.
    pub fn flow(&self) -> Flow {
        self.flow
    }

    /// The caller's From URI.
    pub fn from(&self) -> Option<Uri> {
        self.request.headers.from().ok().map(|f| f.uri)
    }

    /// The Call-ID.
    pub fn call_id(&self) -> String {
        self.request
            .headers
            .call_id()
            .map(|c| c.to_string())
            .unwrap_or_default()
    }

    /// True once the caller has cancelled (we already answered 487).
    pub fn is_cancelled(&self) -> bool {
        *self.state_rx.borrow() == IncState::Cancelled
    }

    /// Waits until the caller cancels (or the transaction fails).
    pub async fn cancelled(&mut self) {
        let _ = self
            .state_rx
            .wait_for(|s| matches!(s, IncState::Cancelled | IncState::Failed))
            .await;
    }

    /// A provisional response with our tag and Contact (and Record-Route copied).
    fn provisional(&self, status: u16, reason: &str) -> Response {
        let mut r = Response::for_request(&self.request, status);
        r.reason = reason.into();
        add_to_tag(&mut r, &self.local_tag);
        copy_record_route(&self.request, &mut r);
        r.headers
            .push(HeaderName::Contact, format!("<{}>", self.local_contact()));
        r
    }

    fn local_contact(&self) -> Uri {
        let user = self.request.uri.user.as_deref().filter(|u| !u.is_empty());
        self.shared.contact_uri(user)
    }

    /// Sends 180 Ringing.
    pub fn ring(&self) -> Result<()> {
        if *self.state.borrow() != IncState::Pending {
            return Err(UaError::Cancelled);
        }
        self.shared
            .respond(self.tx, self.provisional(180, "Ringing"));
        Ok(())
    }

    /// Rejects the call with `status` (3xx–6xx).
    pub fn reject(self, status: u16) -> Result<()> {
        if !(300..=699).contains(&status) {
            return Err(UaError::Config(format!(
                "a rejection needs a 3xx-6xx status, not {status}"
            )));
        }
        self.finish(status)
    }

    fn finish(&self, status: u16) -> Result<()> {
        let rejected = self.state.send_if_modified(|s| {
            if *s == IncState::Pending {
                *s = IncState::Rejected;
                true
            } else {
                false
            }
        });
        self.shared.routes().pending_invites.remove(&self.tx);
        if !rejected {
            return Err(UaError::Cancelled);
        }
        let mut r = Response::for_request(&self.request, status);
        r.reason = tandem_proto::msg::reason_phrase(status).into();
        add_to_tag(&mut r, &self.local_tag);
        self.shared.respond(self.tx, r);
        Ok(())
    }

    /// Answers with 200 and an SDP answer (or our offer if the INVITE had none); the
    /// returned call reports `Answered` when the ACK arrives.
    pub async fn accept(self) -> Result<Call> {
        let shared = self.shared.clone();
        let rtp = media::bind_rtp(shared.local_ip).await?;
        let local_rtp = rtp
            .local_addr()
            .map_err(|e| UaError::Network(format!("RTP socket address: {e}")))?;
        let session_id = u64::from(shared.random_u32());
        let has_offer = !self.request.body.is_empty();
        let (remote_sdp, local_sdp, negotiated) = if has_offer {
            match media::answer(
                &self.request.body,
                session_id,
                shared.local_ip,
                local_rtp.port(),
            ) {
                Ok((offer, answer, negotiated)) => (Some(offer), answer, negotiated),
                Err(e) => {
                    tracing::warn!(error = %e, "rejecting an INVITE with an unusable offer");
                    let _ = self.finish(488);
                    return Err(e);
                }
            }
        } else {
            (
                None,
                media::offer(session_id, shared.local_ip, local_rtp.port()),
                Vec::new(),
            )
        };
        let dialog = Dialog::from_uas(&self.request, &self.local_tag)
            .map_err(|e| UaError::Protocol(format!("cannot create the dialog: {e}")))?;
        let mut ok = Response::for_request(&self.request, 200);
        ok.reason = "OK".into();
        add_to_tag(&mut ok, &self.local_tag);
        copy_record_route(&self.request, &mut ok);
        ok.headers
            .push(HeaderName::Contact, format!("<{}>", self.local_contact()));
        ok.headers.push(HeaderName::Allow, ALLOW);
        if !SUPPORTED.is_empty() {
            ok.headers.push(HeaderName::Supported, SUPPORTED);
        }
        ok.headers
            .push(HeaderName::Server, shared.config.user_agent.clone());
        ok.headers.push(HeaderName::ContentType, "application/sdp");
        ok.body = Bytes::from(local_sdp.to_string());

        let key = DialogKey {
            call_id: self.call_id(),
            local_tag: self.local_tag.clone(),
        };
        let (dialog_tx, dialog_rx) = mpsc::unbounded_channel();
        shared.add_dialog(key.clone(), dialog_tx);
        let answered = self.state.send_if_modified(|s| {
            if *s == IncState::Pending {
                *s = IncState::Answered;
                true
            } else {
                false
            }
        });
        shared.routes().pending_invites.remove(&self.tx);
        if !answered {
            shared.remove_dialog(&key);
            return Err(UaError::Cancelled);
        }
        shared.respond(self.tx, ok.clone());

        let media = Arc::new(Mutex::new(MediaInfo {
            local_rtp,
            local_sdp: Some(local_sdp),
            remote_sdp,
            negotiated,
        }));
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let task = CallTask {
            shared: shared.clone(),
            key,
            events: ev_tx,
            cmds: cmd_rx,
            inputs: dialog_rx,
            media: media.clone(),
            auth: AuthSession::none(),
        };
        let invite_cseq = self.request.headers.cseq().map(|c| c.seq).unwrap_or(0);
        tokio::spawn(task.run_uas(dialog, self.tx, ok, invite_cseq, !has_offer));
        let remote = self.from().unwrap_or_else(|| self.request.uri.clone());
        Ok(Call {
            call_id: self.call_id(),
            remote,
            cmd: cmd_tx,
            events: ev_rx,
            media,
            rtp,
        })
    }
}

impl Drop for IncomingCall {
    fn drop(&mut self) {
        if *self.state.borrow() == IncState::Pending {
            let _ = self.finish(480);
        }
    }
}

/// Copies Record-Route from a request into our response (RFC 3261 §12.1.1).
fn copy_record_route(request: &Request, response: &mut Response) {
    let values: Vec<Bytes> = request
        .headers
        .get_all(&HeaderName::RecordRoute)
        .cloned()
        .collect();
    for v in values {
        response.headers.push(HeaderName::RecordRoute, v);
    }
}

/// Where an in-dialog request goes: its first Route if loose, else its Request-URI,
/// with our transport unless the URI names one.
fn request_next_hop(request: &Request, transport: Transport) -> Uri {
    let mut hop = request
        .headers
        .routes()
        .ok()
        .and_then(|r| r.into_iter().next())
        .map(|na| na.uri)
        .unwrap_or_else(|| request.uri.clone());
    hop.user = None;
    hop.password = None;
    hop.headers.clear();
    with_transport(&mut hop, transport);
    hop
}

/// The task that owns one call: its INVITE transaction, dialog and hangup.
struct CallTask {
    shared: Arc<Shared>,
    key: DialogKey,
    events: mpsc::UnboundedSender<CallEvent>,
    cmds: mpsc::UnboundedReceiver<CallCommand>,
    inputs: mpsc::UnboundedReceiver<DialogInput>,
    media: Arc<Mutex<MediaInfo>>,
    auth: AuthSession,
}

/// How the INVITE phase of an outgoing call ended.
enum Setup {
    /// A 2xx: the dialog, the ACK we sent (for re-ACKs), the still running transaction.
    Established(Box<Established>),
    /// It ended with this event.
    Over(CallEvent),
}

/// A call set up by a 2xx.
struct Established {
    dialog: Dialog,
    ack: Ack,
    tx: ClientTx,
}

/// An ACK for a 2xx we sent, kept to answer retransmissions of that 2xx.
struct Ack {
    remote_tag: String,
    message: Message,
    flow: Flow,
}

impl CallTask {
    fn emit(&self, event: CallEvent) {
        let _ = self.events.send(event);
    }

    fn with_media<R>(&self, f: impl FnOnce(&mut MediaInfo) -> R) -> R {
        let mut m = self.media.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut m)
    }

    async fn run_uac(mut self, invite: Request, hop: Target, options: CallOptions) {
        match self.invite_phase(invite, hop, options).await {
            Setup::Established(est) => {
                let Established { dialog, ack, tx } = *est;
                self.emit(CallEvent::Answered { status: 200 });
                self.dialog_phase(dialog, Some((tx, ack))).await;
            }
            Setup::Over(event) => self.emit(event),
        }
        self.shared.remove_dialog(&self.key);
        self.refuse_queued();
    }

    /// Answers in-dialog requests that arrived while the call was ending: 481.
    fn refuse_queued(&mut self) {
        self.inputs.close();
        while let Ok(input) = self.inputs.try_recv() {
            if let DialogInput::Request { tx, request } = input {
                let mut r = Response::for_request(&request, 481);
                r.reason = "Call/Transaction Does Not Exist".into();
                self.shared.respond(tx, r);
            }
        }
    }

    async fn invite_phase(
        &mut self,
        mut invite: Request,
        hop: Target,
        options: CallOptions,
    ) -> Setup {
        let no_answer_deadline = options.timeout.map(|t| Instant::now() + t);
        let t1 = self.shared.config.tx.t1;
        let mut challenges = 0;
        let mut cancel: Option<(EndReason, Instant)> = None;
        let uri = invite.uri.to_string();
        'attempt: loop {
            self.auth.apply(&mut invite);
            let mut tx = match self
                .shared
                .endpoint
                .request(invite.clone(), hop.clone())
                .await
            {
                Ok(tx) => tx,
                Err(e) => return Setup::Over(CallEvent::Failed(net_error(e))),
            };
            crate::ua::log_out(&Message::Request(tx.request().clone()), tx.flow());
            if cancel.is_some() {
                self.shared.endpoint.cancel(tx.id());
            }
            loop {
                let deadline = no_answer_deadline.filter(|_| cancel.is_none());
                let give_up = cancel.map(|(_, at)| at);
                tokio::select! {
                    outcome = tx.next() => {
                        crate::request::log_outcome(&outcome, tx.flow());
                        match outcome {
                            Some(TxOutcome::Provisional(r)) => {
                                if r.status == 100 {
                                    self.emit(CallEvent::Trying);
                                } else {
                                    self.emit(CallEvent::Ringing { status: r.status, reason: r.reason.clone() });
                                }
                            }
                            Some(TxOutcome::Final(r)) if (200..300).contains(&r.status) => {
                                self.auth.accepted();
                                let sent = tx.request().clone();
                                match self.establish(&sent, &r).await {
                                    Ok((mut dialog, ack)) => {
                                        if let Some((reason, _)) = cancel {
                                            // The 2xx crossed our CANCEL: ACK it, then BYE.
                                            self.bye(&mut dialog).await;
                                            return Setup::Over(CallEvent::Ended { by: EndedBy::Local, reason });
                                        }
                                        return Setup::Established(Box::new(Established { dialog, ack, tx }));
                                    }
                                    Err(e) => return Setup::Over(CallEvent::Failed(e)),
                                }
                            }
                            Some(TxOutcome::Final(r)) if (r.status == 401 || r.status == 407) && cancel.is_none() => {
                                challenges += 1;
                                if challenges > MAX_INVITE_CHALLENGES {
                                    return Setup::Over(CallEvent::Failed(UaError::AuthFailed { realm: None }));
                                }
                                if let Err(e) = self.auth.on_challenge(&self.shared, &r, "INVITE", &uri) {
                                    return Setup::Over(CallEvent::Failed(e));
                                }
                                if let Err(e) = bump_cseq(&mut invite) {
                                    return Setup::Over(CallEvent::Failed(e));
                                }
                                continue 'attempt;
                            }
                            Some(TxOutcome::Final(r)) => {
                                if let Some((reason, _)) = cancel {
                                    return Setup::Over(CallEvent::Ended { by: EndedBy::Local, reason });
                                }
                                self.auth.accepted();
                                let err = if r.status == 401 || r.status == 407 {
                                    UaError::AuthFailed { realm: None }
                                } else {
                                    UaError::rejected(r.status, r.reason.clone())
                                };
                                return Setup::Over(CallEvent::Failed(err));
                            }
                            Some(TxOutcome::Timeout) => {
                                return Setup::Over(match cancel {
                                    Some((reason, _)) => CallEvent::Ended { by: EndedBy::Local, reason },
                                    None => CallEvent::Failed(UaError::Timeout),
                                });
                            }
                            Some(TxOutcome::TransportError(e)) => {
                                return Setup::Over(CallEvent::Failed(UaError::Network(e)));
                            }
                            Some(_) => {}
                            None => {
                                return Setup::Over(CallEvent::Failed(UaError::Network(
                                    "the INVITE transaction ended without a final response".into(),
                                )));
                            }
                        }
                    }
                    _ = sleep_until_opt(deadline) => {
                        tracing::info!("no answer in time: cancelling");
                        self.shared.endpoint.cancel(tx.id());
                        cancel = Some((EndReason::Timeout, Instant::now() + t1 * 64));
                    }
                    cmd = self.cmds.recv(), if cancel.is_none() => {
                        let _ = cmd;
                        self.shared.endpoint.cancel(tx.id());
                        cancel = Some((EndReason::Cancel, Instant::now() + t1 * 64));
                    }
                    _ = sleep_until_opt(give_up) => {
                        let reason = cancel.map_or(EndReason::Cancel, |(r, _)| r);
                        return Setup::Over(CallEvent::Ended { by: EndedBy::Local, reason });
                    }
                }
            }
        }
    }

    /// Creates the dialog from our INVITE (as sent) and its 2xx, and ACKs the 2xx.
    async fn establish(&mut self, sent: &Request, ok: &Response) -> Result<(Dialog, Ack)> {
        let dialog = Dialog::from_uac(sent, ok)
            .map_err(|e| UaError::Protocol(format!("cannot create the dialog: {e}")))?;
        let invite_cseq = sent
            .headers
            .cseq()
            .map_err(|e| UaError::Protocol(format!("bad CSeq: {e}")))?
            .seq;
        let remote_tag = ok
            .headers
            .to()
            .ok()
            .and_then(|t| t.tag().map(str::to_string))
            .unwrap_or_default();
        let ack = self.send_ack(&dialog, invite_cseq, remote_tag).await?;
        if !ok.body.is_empty() {
            let offer = self.with_media(|m| m.local_sdp.clone());
            if let Some(offer) = offer {
                match media::take_answer(&offer, &ok.body) {
                    Ok((answer, negotiated)) => self.with_media(|m| {
                        m.remote_sdp = Some(answer);
                        m.negotiated = negotiated;
                    }),
                    Err(e) => tracing::warn!(error = %e, "ignoring an unusable SDP answer"),
                }
            }
        }
        Ok((dialog, ack))
    }

    /// Builds and sends the ACK for the 2xx of INVITE `invite_cseq` through the route set.
    async fn send_ack(&self, dialog: &Dialog, invite_cseq: u32, remote_tag: String) -> Result<Ack> {
        let mut ack = dialog.ack(invite_cseq);
        let hop = request_next_hop(&ack, self.shared.transport);
        let flow = self.resolve(&hop).await?;
        ack.headers.push_front(
            HeaderName::Via,
            format!(
                "SIP/2.0/{} {};branch={};rport",
                flow.transport.via_token(),
                self.shared.sent_by(flow.transport),
                self.shared.branch()
            ),
        );
        ack.headers.set(HeaderName::MaxForwards, "70");
        let message = Message::Request(ack);
        self.shared.send_stateless(message.clone(), flow);
        Ok(Ack {
            remote_tag,
            message,
            flow,
        })
    }

    /// Resolves an in-dialog next hop (RFC 3263) to the flow to use.
    async fn resolve(&self, hop: &Uri) -> Result<Flow> {
        self.shared
            .endpoint
            .resolve(hop)
            .await
            .map_err(net_error)?
            .into_iter()
            .next()
            .ok_or_else(|| UaError::Network(format!("no target for {hop}")))
    }

    /// Sends BYE in `dialog` and waits (bounded) for its final response.
    async fn bye(&mut self, dialog: &mut Dialog) {
        let mut bye = dialog.new_request(Method::Bye);
        bye.headers.set(HeaderName::MaxForwards, "70");
        bye.headers
            .push(HeaderName::UserAgent, self.shared.config.user_agent.clone());
        let hop = request_next_hop(&bye, self.shared.transport);
        // Credentials from the INVITE are for its method and URI: recompute them for the BYE.
        let uri = bye.uri.to_string();
        self.auth.preempt(&self.shared, "BYE", &uri);
        let limit = self
            .shared
            .config
            .shutdown_timeout
            .max(self.shared.config.tx.t1 * 64);
        let send = self
            .shared
            .send(bye, Target::Uri(hop), Some(&mut self.auth));
        match tokio::time::timeout(limit, send).await {
            Ok(Ok(r)) => tracing::debug!(status = r.status, "BYE answered"),
            Ok(Err(e)) => tracing::warn!(error = %e, "BYE failed"),
            Err(_) => tracing::warn!("BYE not answered in time"),
        }
    }

    async fn run_uas(
        mut self,
        dialog: Dialog,
        tx: TxId,
        ok: Response,
        invite_cseq: u32,
        answer_in_ack: bool,
    ) {
        self.uas_phases(dialog, tx, ok, invite_cseq, answer_in_ack)
            .await;
        self.shared.remove_dialog(&self.key);
        self.refuse_queued();
    }

    /// Retransmits our 2xx until the ACK (RFC 3261 §13.3.1.4), then runs the dialog.
    async fn uas_phases(
        &mut self,
        mut dialog: Dialog,
        tx: TxId,
        ok: Response,
        invite_cseq: u32,
        answer_in_ack: bool,
    ) {
        let t1 = self.shared.config.tx.t1;
        let t2 = self.shared.config.tx.t2;
        let give_up = Instant::now() + t1 * 64;
        let mut interval = t1;
        let mut next = Instant::now() + interval;
        let mut hangup = false;
        loop {
            tokio::select! {
                _ = sleep_until(next) => {
                    self.shared.respond(tx, ok.clone());
                    interval = (interval * 2).min(t2);
                    next = Instant::now() + interval;
                }
                _ = sleep_until(give_up) => {
                    // RFC 3261 §13.3.1.4: confirmed, but end the session with a BYE.
                    tracing::warn!("no ACK for our 2xx: ending the call");
                    self.bye(&mut dialog).await;
                    self.emit(CallEvent::Ended { by: EndedBy::Local, reason: EndReason::Timeout });
                    return;
                }
                cmd = self.cmds.recv(), if !hangup => {
                    // §15: no BYE before the ACK (or the give-up time).
                    let _ = cmd;
                    hangup = true;
                }
                input = self.inputs.recv() => match input {
                    Some(DialogInput::Ack { request }) => {
                        let seq = request.headers.cseq().map(|c| c.seq).unwrap_or(0);
                        if seq == invite_cseq {
                            if answer_in_ack && !request.body.is_empty() {
                                self.take_ack_answer(&request);
                            }
                            break;
                        }
                    }
                    Some(DialogInput::Request { tx, request, .. }) => {
                        if self.in_dialog_request(&mut dialog, tx, request) {
                            self.emit(CallEvent::Ended { by: EndedBy::Remote, reason: EndReason::Bye });
                            return;
                        }
                    }
                    Some(DialogInput::StrayResponse { .. }) => {}
                    None => return,
                }
            }
        }
        self.emit(CallEvent::Answered { status: 200 });
        if hangup {
            self.bye(&mut dialog).await;
            self.emit(CallEvent::Ended {
                by: EndedBy::Local,
                reason: EndReason::Bye,
            });
        } else {
            self.dialog_phase(dialog, None).await;
        }
    }

    fn take_ack_answer(&self, ack: &Request) {
        let offer = self.with_media(|m| m.local_sdp.clone());
        if let Some(offer) = offer {
            match media::take_answer(&offer, &ack.body) {
                Ok((answer, negotiated)) => self.with_media(|m| {
                    m.remote_sdp = Some(answer);
                    m.negotiated = negotiated;
                }),
                Err(e) => tracing::warn!(error = %e, "unusable SDP answer in the ACK"),
            }
        }
    }

    /// The confirmed dialog: BYE either way, re-ACKs, in-dialog requests.
    async fn dialog_phase(&mut self, mut dialog: Dialog, mut invite: Option<(ClientTx, Ack)>) {
        loop {
            let invite_open = invite.is_some();
            tokio::select! {
                outcome = next_outcome(&mut invite), if invite_open => match outcome {
                    Some(TxOutcome::Final(r)) if (200..300).contains(&r.status) => self.on_late_2xx(&r, &invite).await,
                    Some(_) => {}
                    None => invite = None,
                },
                input = self.inputs.recv() => match input {
                    Some(DialogInput::Request { tx, request, .. }) => {
                        if self.in_dialog_request(&mut dialog, tx, request) {
                            self.emit(CallEvent::Ended { by: EndedBy::Remote, reason: EndReason::Bye });
                            return;
                        }
                    }
                    Some(DialogInput::StrayResponse { response }) => {
                        if (200..300).contains(&response.status) {
                            self.on_late_2xx(&response, &invite).await;
                        }
                    }
                    Some(DialogInput::Ack { .. }) => {}
                    None => return,
                },
                cmd = self.cmds.recv() => {
                    let _ = cmd;
                    self.bye(&mut dialog).await;
                    self.emit(CallEvent::Ended { by: EndedBy::Local, reason: EndReason::Bye });
                    return;
                }
            }
        }
    }

    /// A 2xx retransmission (re-ACK it) or a 2xx from another fork (ACK and BYE it).
    async fn on_late_2xx(&mut self, response: &Response, invite: &Option<(ClientTx, Ack)>) {
        let Some((tx, ack)) = invite else {
            return;
        };
        let is_invite = response
            .headers
            .cseq()
            .is_ok_and(|c| c.method == Method::Invite);
        if !is_invite {
            return;
        }
        let tag = response
            .headers
            .to()
            .ok()
            .and_then(|t| t.tag().map(str::to_string))
            .unwrap_or_default();
        if tag == ack.remote_tag {
            self.shared.send_stateless(ack.message.clone(), ack.flow);
            return;
        }
        // RFC 3261 §13.2.2.4: another fork answered too: ACK it and end that dialog.
        let sent = tx.request().clone();
        if let Ok(mut other) = Dialog::from_uac(&sent, response) {
            let seq = sent.headers.cseq().map(|c| c.seq).unwrap_or(1);
            if self.send_ack(&other, seq, tag).await.is_ok() {
                self.bye(&mut other).await;
            }
        }
    }

    /// Handles an in-dialog request; true when it was a BYE that ends the call.
    fn in_dialog_request(&mut self, dialog: &mut Dialog, tx: TxId, request: Request) -> bool {
        if let Err(e) = dialog.check_request(&request) {
            tracing::debug!(error = %e, "in-dialog request out of order");
            let mut r = Response::for_request(&request, 500);
            r.reason = "Server Internal Error".into();
            r.headers.push(HeaderName::RetryAfter, "1");
            self.shared.respond(tx, r);
            return false;
        }
        let endpoint = self.shared.clone();
        match request.method {
            Method::Bye => {
                let mut r = Response::for_request(&request, 200);
                r.reason = "OK".into();
                endpoint.respond(tx, r);
                true
            }
            Method::Invite | Method::Update => {
                let r = self.session_refresh(&request);
                endpoint.respond(tx, r);
                false
            }
            Method::Info | Method::Options | Method::Notify => {
                let mut r = Response::for_request(&request, 200);
                r.reason = "OK".into();
                if request.method == Method::Options {
                    r.headers.push(HeaderName::Allow, ALLOW);
                }
                endpoint.respond(tx, r);
                false
            }
            _ => {
                let mut r = Response::for_request(&request, 405);
                r.reason = "Method Not Allowed".into();
                r.headers.push(HeaderName::Allow, ALLOW);
                endpoint.respond(tx, r);
                false
            }
        }
    }

    /// Answers a re-INVITE/UPDATE: keep our media; answer an offer with our SDP.
    fn session_refresh(&mut self, request: &Request) -> Response {
        let mut r = Response::for_request(request, 200);
        r.reason = "OK".into();
        r.headers.push(
            HeaderName::Contact,
            format!("<{}>", self.shared.contact_uri(None)),
        );
        let (local, rtp) = self.with_media(|m| (m.local_sdp.clone(), m.local_rtp));
        let sdp = if request.body.is_empty() {
            local
        } else {
            match media::answer(
                &request.body,
                u64::from(self.shared.random_u32()),
                self.shared.local_ip,
                rtp.port(),
            ) {
                Ok((offer, answer, negotiated)) => {
                    self.with_media(|m| {
                        m.remote_sdp = Some(offer);
                        m.negotiated = negotiated;
                        m.local_sdp = Some(answer.clone());
                    });
                    Some(answer)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "unusable re-offer");
                    let mut r = Response::for_request(request, 488);
                    r.reason = "Not Acceptable Here".into();
                    return r;
                }
            }
        };
        if let Some(sdp) = sdp {
            r.headers.push(HeaderName::ContentType, "application/sdp");
            r.body = Bytes::from(sdp.to_string());
        }
        r
    }
}

async fn next_outcome(invite: &mut Option<(ClientTx, Ack)>) -> Option<TxOutcome> {
    match invite {
        Some((tx, _)) => tx.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}
