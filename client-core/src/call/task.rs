//! The task that owns one call: setting it up (UAC INVITE with early media, UAS waiting for
//! the ACK), then the confirmed dialog ([`super::confirmed`]), then media teardown.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tandem_net::{ClientTx, Target, TxOutcome};
use tandem_proto::dialog::Dialog;
use tandem_proto::msg::{HeaderName, Message, Method, Request, Response, Uri};
use tandem_proto::transaction::TxId;
use tandem_proto::{Flow, Transport};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use super::confirmed::Live;
use super::{
    Call, CallCommand, CallEvent, CallOptions, CallState, DialogSnapshot, EndReason, EndedBy,
    SharedState, lock,
};
use crate::account::{Account, with_transport};
use crate::error::{Result, UaError};
use crate::media::{CallMedia, MediaChange, MediaNotice};
use crate::request::{AuthSession, bump_cseq, initial_request, net_error};
use crate::ua::{ALLOW, DialogInput, DialogKey, SUPPORTED, Shared};
use crate::video::VideoNotice;

/// How many challenges an INVITE may get answered before we give up.
const MAX_INVITE_CHALLENGES: u32 = 6;

/// Messages from helper tasks (transactions, a transfer's new call) to a call's task.
#[derive(Debug)]
pub(crate) enum Internal {
    /// An outcome of one of our re-INVITE transactions (`None`: it ended).
    InviteOutcome {
        cseq: u32,
        outcome: Option<TxOutcome>,
    },
    /// The final result of one of our in-dialog non-INVITE requests.
    Done { cseq: u32, result: Result<Response> },
    /// Progress of the call we placed for a REFER (transferee side).
    NewCallProgress { status: u16, reason: String },
}

/// The RFC 3326 Reason of a BYE ending a call whose media negotiation failed.
const NOT_ACCEPTABLE_REASON: &str = "SIP;cause=488;text=\"Not Acceptable Here\"";

/// The task that owns one call: its INVITE transaction, dialog, media and commands.
pub(crate) struct CallTask {
    pub shared: Arc<Shared>,
    pub key: DialogKey,
    pub events: mpsc::UnboundedSender<CallEvent>,
    pub cmds: mpsc::UnboundedReceiver<CallCommand>,
    pub inputs: mpsc::UnboundedReceiver<DialogInput>,
    pub state: SharedState,
    pub media: CallMedia,
    pub auth: AuthSession,
    pub account: Account,
    /// We sent the dialog-creating INVITE (we own the Call-ID, RFC 3261 §14.1 timers).
    pub call_id_owner: bool,
    pub internal_tx: mpsc::UnboundedSender<Internal>,
    pub internal_rx: mpsc::UnboundedReceiver<Internal>,
    /// Where to report our progress when we were placed for a REFER.
    pub progress: Option<mpsc::UnboundedSender<Internal>>,
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

/// An ACK for a 2xx we received, kept to answer retransmissions of that 2xx.
#[derive(Debug, Clone)]
pub(crate) struct Ack {
    pub remote_tag: String,
    pub message: Message,
    pub flow: Flow,
}

/// A boxed, sendable future (breaks the type cycle call task -> transfer -> new call task).
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Places a call (see [`UserAgent::call`](crate::UserAgent::call)); `extra` headers go into
/// the INVITE (Referred-By, Replaces), `progress` receives its progress (transfers).
pub(crate) fn place(
    shared: Arc<Shared>,
    account: Account,
    target: Uri,
    options: CallOptions,
    extra: Vec<(HeaderName, String)>,
    progress: Option<mpsc::UnboundedSender<Internal>>,
) -> BoxFuture<Result<Call>> {
    Box::pin(place_inner(
        shared, account, target, options, extra, progress,
    ))
}

async fn place_inner(
    shared: Arc<Shared>,
    account: Account,
    target: Uri,
    options: CallOptions,
    extra: Vec<(HeaderName, String)>,
    progress: Option<mpsc::UnboundedSender<Internal>>,
) -> Result<Call> {
    let aor = account.aor()?;
    let call_id = shared.call_id();
    let mut media = CallMedia::new(
        shared.local_ip,
        shared.config.tls_client.clone(),
        &account,
        options.media.clone(),
        u64::from(shared.random_u32()),
        format!("{}@{}", shared.token(12), shared.host()),
    )
    .await?;
    let offer = media.create_offer()?;
    let local_tag = shared.tag();
    let mut invite = initial_request(
        Method::Invite,
        &target,
        &account,
        &aor,
        &local_tag,
        &call_id,
        Some(&format!("<{}>", shared.contact_uri(Some(&account.user)))),
    );
    {
        let h = &mut invite.headers;
        h.push(HeaderName::Allow, ALLOW);
        h.push(HeaderName::Supported, SUPPORTED);
        for (name, value) in extra {
            h.push(name, value);
        }
        h.push(HeaderName::UserAgent, shared.config.user_agent.clone());
        h.push(HeaderName::ContentType, "application/sdp");
    }
    invite.body = Bytes::from(offer.to_string());
    let rtp = media.rtp_socket();
    let frames = media.video.frames();
    let local_frames = media.video.local_frames();
    let state = Arc::new(Mutex::new(CallState {
        media: media.info(),
        dialog: None,
        control: None,
        quality: Default::default(),
        video_control: None,
        video_stats: None,
    }));
    let key = DialogKey {
        call_id: call_id.clone(),
        local_tag,
    };
    let (dialog_tx, dialog_rx) = mpsc::unbounded_channel();
    shared.add_dialog(key.clone(), dialog_tx);
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let (internal_tx, internal_rx) = mpsc::unbounded_channel();
    let hop = Target::Uri(account.next_hop(&target));
    let task = CallTask {
        shared: shared.clone(),
        key,
        events: ev_tx,
        cmds: cmd_rx,
        inputs: dialog_rx,
        state: state.clone(),
        media,
        auth: AuthSession::for_account(&account),
        account,
        call_id_owner: true,
        internal_tx,
        internal_rx,
        progress,
    };
    tokio::spawn(task.run_uac(invite, hop, options));
    Ok(Call {
        call_id,
        remote: target,
        cmd: cmd_tx,
        events: ev_rx,
        state,
        rtp,
        frames,
        local_frames,
    })
}

impl CallTask {
    pub fn emit(&self, event: CallEvent) {
        let _ = self.events.send(event);
    }

    /// Reports our progress to the call that placed us for a REFER.
    fn report(&self, status: u16, reason: &str) {
        if let Some(p) = &self.progress {
            let _ = p.send(Internal::NewCallProgress {
                status,
                reason: reason.to_string(),
            });
        }
    }

    /// Publishes the media state to the handle.
    pub fn publish_media(&self) {
        let info = self.media.info();
        let control = self.media.control();
        let (video_stats, video_control) = self.media.video.stats_parts();
        let mut st = lock(&self.state);
        st.media = info;
        if control.is_some() {
            st.control = control;
        }
        st.video_control = video_control;
        st.video_stats = video_stats;
    }

    /// Publishes the dialog to the handle (for attended transfer).
    pub fn publish_dialog(&self, dialog: &Dialog, confirmed: bool) {
        lock(&self.state).dialog = Some(DialogSnapshot {
            id: dialog.id.clone(),
            remote_target: dialog.remote_target.clone(),
            confirmed,
        });
    }

    /// Starts or updates the media; reports a start as `MediaStarted`.
    pub fn apply_media(&mut self, early: bool) -> Result<()> {
        let change = self.media.apply();
        self.publish_media();
        match change? {
            MediaChange::Started { codec, secure } => {
                self.emit(CallEvent::MediaStarted {
                    codec,
                    secure,
                    early,
                });
            }
            MediaChange::Updated | MediaChange::None => {}
        }
        Ok(())
    }

    /// Stops the media and keeps its final quality for [`Call::quality`].
    pub async fn stop_media(&mut self) {
        let video = self.media.stop_video().await;
        {
            let mut st = lock(&self.state);
            st.video_control = None;
            st.video_stats = self.media.video.totals();
        }
        if let Some(stats) = video {
            self.emit(CallEvent::Video(VideoNotice::Stopped(stats)));
        }
        if let Some(q) = self.media.stop().await {
            let mut st = lock(&self.state);
            st.quality = q;
            st.control = None;
        }
    }

    /// The end of the task: media stopped (recordings complete), routes removed, queued
    /// requests refused, then the final event.
    pub async fn finish(&mut self, last: CallEvent) {
        self.stop_media().await;
        self.shared.remove_dialog(&self.key);
        self.refuse_queued();
        self.emit(last);
    }

    /// Answers in-dialog requests that arrived while the call was ending: 481.
    fn refuse_queued(&mut self) {
        self.inputs.close();
        while let Ok(input) = self.inputs.try_recv() {
            match input {
                DialogInput::Request { tx, request } => {
                    let mut r = Response::for_request(&request, 481);
                    r.reason = "Call/Transaction Does Not Exist".into();
                    self.shared.respond(tx, r);
                }
                DialogInput::Replace { incoming, .. } => {
                    let _ = incoming.reject(481);
                }
                _ => {}
            }
        }
    }

    /// A command that needs a confirmed call, during setup: refused (mute and device
    /// switches apply at once). Returns true for a hangup.
    pub fn setup_command(&mut self, cmd: CallCommand) -> bool {
        let not_yet = || Err(UaError::Protocol("the call is not answered yet".into()));
        match cmd {
            CallCommand::Hangup => return true,
            CallCommand::Hold(_, r)
            | CallCommand::Resume(_, r)
            | CallCommand::Dtmf(_, r)
            | CallCommand::IceRestart(r) => {
                let _ = r.send(not_yet());
            }
            CallCommand::Transfer { reply, .. } => {
                let _ = reply.send(not_yet());
            }
            CallCommand::Mute(m) => self.media.set_mute(m),
            CallCommand::SwitchDevices {
                capture,
                playback,
                reply,
            } => {
                let _ = reply.send(self.media.switch_devices(capture, playback));
            }
            CallCommand::SetVideo(_, r) => {
                let _ = r.send(not_yet());
            }
            CallCommand::SetCamera(source, r) => {
                // Before the answer the new source only applies to the session started later
                // (or switches the running early one); no re-offer.
                let _ = r.send(self.media.video.set_camera(source).map(|_| ()));
                self.publish_media();
            }
        }
        false
    }

    pub async fn run_uac(mut self, invite: Request, hop: Target, options: CallOptions) {
        match self.invite_phase(invite, hop, options).await {
            Setup::Established(est) => {
                let Established { dialog, ack, tx } = *est;
                self.report(200, "OK");
                self.emit(CallEvent::Answered { status: 200 });
                let mut live = Live::new(dialog, Some(tx));
                live.acks.push((1, ack));
                let last = self.confirmed(live).await;
                self.finish(last).await;
            }
            Setup::Over(event) => {
                match &event {
                    CallEvent::Failed(UaError::Rejected { status, reason }) => {
                        self.report(*status, reason)
                    }
                    CallEvent::Failed(UaError::Timeout) => self.report(408, "Request Timeout"),
                    CallEvent::Failed(_) => self.report(503, "Service Unavailable"),
                    _ => self.report(487, "Request Terminated"),
                }
                self.finish(event).await;
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
        let mut early_tag: Option<String> = None;
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
                                    continue;
                                }
                                self.report(r.status, &r.reason);
                                self.emit(CallEvent::Ringing { status: r.status, reason: r.reason.clone() });
                                self.early_media(&r, &mut early_tag);
                            }
                            Some(TxOutcome::Final(r)) if (200..300).contains(&r.status) => {
                                self.auth.accepted();
                                let sent = tx.request().clone();
                                match self.establish(&sent, &r, early_tag.is_some()).await {
                                    Ok((mut dialog, ack)) => {
                                        if let Some((reason, _)) = cancel {
                                            // The 2xx crossed our CANCEL: ACK it, then BYE.
                                            self.bye(&mut dialog, None).await;
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
                        let hangup = match cmd {
                            Some(c) => self.setup_command(c),
                            None => true,
                        };
                        if hangup {
                            self.shared.endpoint.cancel(tx.id());
                            cancel = Some((EndReason::Cancel, Instant::now() + t1 * 64));
                        }
                    }
                    input = self.inputs.recv() => match input {
                        Some(DialogInput::Replace { incoming, .. }) => {
                            // RFC 3891 §3: an early dialog we initiated cannot be replaced.
                            let _ = incoming.reject(481);
                        }
                        Some(DialogInput::Request { tx, request }) => self.early_request(tx, &request),
                        _ => {}
                    },
                    ev = self.media.next_notice() => match ev {
                        MediaNotice::Media(Some(ev)) => self.on_media_event_early(ev),
                        MediaNotice::Media(None) => {}
                        MediaNotice::Call(ev) => self.emit(ev),
                    },
                    _ = sleep_until_opt(give_up) => {
                        let reason = cancel.map_or(EndReason::Cancel, |(r, _)| r);
                        return Setup::Over(CallEvent::Ended { by: EndedBy::Local, reason });
                    }
                }
            }
        }
    }

    /// A 1xx with SDP (183 Session Progress): early media on the answer it carries.
    fn early_media(&mut self, r: &Response, early_tag: &mut Option<String>) {
        let tag = r
            .headers
            .to()
            .ok()
            .and_then(|t| t.tag().map(str::to_string));
        if r.body.is_empty() || tag.is_none() || !is_sdp(r.headers.content_type()) {
            return;
        }
        if early_tag.is_some() && *early_tag != tag {
            // Another fork's early media: keep the first one.
            return;
        }
        match self.media.take_answer(&r.body, true) {
            Ok(()) => {
                *early_tag = tag;
                if let Err(e) = self.apply_media(true) {
                    tracing::warn!(error = %e, "cannot start early media");
                }
            }
            Err(e) => tracing::warn!(error = %e, "ignoring an unusable early SDP answer"),
        }
    }

    /// A request in a dialog that is not confirmed yet (early, or before our 2xx's ACK):
    /// OPTIONS and INFO (DTMF) are answered, anything else waits (500 + Retry-After,
    /// RFC 3261 §14.2).
    fn early_request(&mut self, tx: TxId, request: &Request) {
        match request.method {
            Method::Options => {
                let mut r = Response::for_request(request, 200);
                r.reason = "OK".into();
                r.headers.push(HeaderName::Allow, ALLOW);
                r.headers.push(HeaderName::Supported, SUPPORTED);
                self.shared.respond(tx, r);
            }
            Method::Info => self.info_in(tx, request),
            Method::Ack => {}
            _ => {
                let mut r = Response::for_request(request, 500);
                r.reason = "Server Internal Error".into();
                r.headers.push(HeaderName::RetryAfter, "1");
                self.shared.respond(tx, r);
            }
        }
    }

    /// Media events before the answer: only warnings matter.
    fn on_media_event_early(&mut self, ev: tandem_media::session::MediaEvent) {
        use tandem_media::session::MediaEvent;
        match ev {
            MediaEvent::Dtmf(d) => self.emit(CallEvent::Dtmf(d)),
            MediaEvent::Error(e) | MediaEvent::SecurityFailed(e) => {
                self.emit(CallEvent::MediaWarning(e))
            }
            _ => {}
        }
    }

    /// Creates the dialog from our INVITE (as sent) and its 2xx, ACKs the 2xx and takes the
    /// SDP answer; an unacceptable answer ends the call with a BYE (RFC 3261 §13.2.2.4).
    async fn establish(
        &mut self,
        sent: &Request,
        ok: &Response,
        had_early: bool,
    ) -> Result<(Dialog, Ack)> {
        let mut dialog = Dialog::from_uac(sent, ok)
            .map_err(|e| UaError::Protocol(format!("cannot create the dialog: {e}")))?;
        dialog.local_contact = sent
            .headers
            .contacts()
            .ok()
            .and_then(|c| c.into_iter().next())
            .and_then(|c| match c {
                tandem_proto::msg::ContactValue::Addr(a) => Some(a),
                tandem_proto::msg::ContactValue::Star => None,
            });
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
        self.publish_dialog(&dialog, true);
        let answer = if !ok.body.is_empty() {
            self.media.take_answer(&ok.body, false)
        } else if had_early && self.media.negotiated().is_some() {
            self.media.offer_failed();
            Ok(())
        } else {
            Err(UaError::Media("the 2xx carries no SDP answer".into()))
        };
        if let Err(e) = answer.and_then(|()| self.apply_media(false)) {
            tracing::warn!(error = %e, "ending the call: unusable media");
            self.bye(&mut dialog, Some(NOT_ACCEPTABLE_REASON)).await;
            return Err(e);
        }
        Ok((dialog, ack))
    }

    /// Builds and sends the ACK for the 2xx of INVITE `invite_cseq` through the route set.
    pub async fn send_ack(
        &self,
        dialog: &Dialog,
        invite_cseq: u32,
        remote_tag: String,
    ) -> Result<Ack> {
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

    /// Takes the SDP answer in `body` (a message named by `carrier`), failing when it has none.
    pub fn take_answer_in(&mut self, body: &[u8], carrier: &str) -> Result<()> {
        if body.is_empty() {
            Err(UaError::Media(format!("{carrier} carries no SDP answer")))
        } else {
            self.media.take_answer(body, false)
        }
    }

    /// Ends the call over unusable media: BYE with a 488 Reason, then the local end event.
    pub async fn end_media_failed(&mut self, dialog: &mut Dialog) -> CallEvent {
        self.bye(dialog, Some(NOT_ACCEPTABLE_REASON)).await;
        CallEvent::Ended {
            by: EndedBy::Local,
            reason: EndReason::MediaFailed,
        }
    }

    /// Sends BYE in `dialog` (with an RFC 3326 Reason when given) and waits (bounded) for
    /// its final response.
    pub async fn bye(&mut self, dialog: &mut Dialog, reason: Option<&str>) {
        let mut bye = dialog.new_request(Method::Bye);
        bye.headers.set(HeaderName::MaxForwards, "70");
        if let Some(reason) = reason {
            bye.headers
                .push(HeaderName::Other("Reason".into()), reason.to_string());
        }
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
        dialog.terminate();
    }

    pub async fn run_uas(
        mut self,
        dialog: Dialog,
        tx: TxId,
        ok: Response,
        invite_cseq: u32,
        answer_in_ack: bool,
    ) {
        let last = self
            .uas_phases(dialog, tx, ok, invite_cseq, answer_in_ack)
            .await;
        self.finish(last).await;
    }

    /// Retransmits our 2xx until the ACK (RFC 3261 §13.3.1.4), then runs the dialog.
    async fn uas_phases(
        &mut self,
        mut dialog: Dialog,
        tx: TxId,
        ok: Response,
        invite_cseq: u32,
        answer_in_ack: bool,
    ) -> CallEvent {
        let t1 = self.shared.config.tx.t1;
        let t2 = self.shared.config.tx.t2;
        let give_up = Instant::now() + t1 * 64;
        let mut interval = t1;
        let mut next = Instant::now() + interval;
        let mut hangup = false;
        self.publish_dialog(&dialog, true);
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
                    self.bye(&mut dialog, None).await;
                    return CallEvent::Ended { by: EndedBy::Local, reason: EndReason::Timeout };
                }
                cmd = self.cmds.recv(), if !hangup => {
                    // §15: no BYE before the ACK (or the give-up time).
                    hangup = match cmd {
                        Some(c) => self.setup_command(c),
                        None => true,
                    };
                }
                input = self.inputs.recv() => match input {
                    Some(DialogInput::Ack { request }) => {
                        let seq = request.headers.cseq().map(|c| c.seq).unwrap_or(0);
                        if seq == invite_cseq {
                            if answer_in_ack {
                                let taken = self.take_answer_in(&request.body, "the ACK");
                                if let Err(e) = taken.and_then(|()| self.apply_media(false)) {
                                    tracing::warn!(error = %e, "ending the call: unusable answer in the ACK");
                                    return self.end_media_failed(&mut dialog).await;
                                }
                            }
                            break;
                        }
                    }
                    Some(DialogInput::Request { tx, request }) => {
                        if request.method == Method::Bye && dialog.check_request(&request).is_ok() {
                            let mut r = Response::for_request(&request, 200);
                            r.reason = "OK".into();
                            self.shared.respond(tx, r);
                            return CallEvent::Ended { by: EndedBy::Remote, reason: EndReason::Bye };
                        }
                        self.early_request(tx, &request);
                    }
                    Some(DialogInput::Replace { incoming, .. }) => {
                        let _ = incoming.reject(481);
                    }
                    Some(DialogInput::StrayResponse { .. }) => {}
                    None => return CallEvent::Ended { by: EndedBy::Local, reason: EndReason::Error },
                },
                ev = self.media.next_event() => {
                    if let Some(ev) = ev {
                        self.on_media_event_early(ev);
                    }
                }
            }
        }
        self.emit(CallEvent::Answered { status: 200 });
        // The caller has our answer now: a fresh keyframe for a peer that could not decrypt
        // or use what we sent before it.
        self.media.video.request_keyframe();
        if hangup {
            self.bye(&mut dialog, None).await;
            return CallEvent::Ended {
                by: EndedBy::Local,
                reason: EndReason::Bye,
            };
        }
        self.confirmed(Live::new(dialog, None)).await
    }
}

/// Whether a Content-Type is `application/sdp` (absent counts as SDP for bodies in INVITEs).
pub(crate) fn is_sdp(content_type: Option<&str>) -> bool {
    content_type.is_none_or(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
    })
}

/// Where an in-dialog request goes: its first Route if loose, else its Request-URI,
/// with our transport unless the URI names one.
pub(crate) fn request_next_hop(request: &Request, transport: Transport) -> Uri {
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

pub(crate) async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The random wait before retrying a re-INVITE that got 491 (RFC 3261 §14.1): 2.1–4 s for
/// the Call-ID owner, 0–2 s otherwise, in 10 ms units.
pub(crate) fn glare_delay(owner: bool, random: u32) -> Duration {
    let steps = if owner {
        210 + random % 190
    } else {
        random % 201
    };
    Duration::from_millis(u64::from(steps) * 10)
}
