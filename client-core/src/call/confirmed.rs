//! The confirmed dialog of a call: BYE, re-INVITE/UPDATE both ways (hold per RFC 6337, glare
//! per RFC 3261 §14.1, our 2xx retransmitted until the ACK per §13.3.1.4), DTMF over SIP INFO,
//! REFER and its implicit subscription (RFC 3515) on both sides, and Replaces (RFC 3891).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use tandem_net::{ClientTx, Target, TxOutcome};
use tandem_proto::dialog::Dialog;
use tandem_proto::msg::{HeaderName, Method, NameAddr, Request, Response, Scheme};
use tandem_proto::sdp::SessionDescription;
use tandem_proto::transaction::TxId;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::incoming::IncomingCall;
use super::task::{
    Ack, CallTask, Internal, glare_delay, is_sdp, request_next_hop, sleep_until_opt,
};
use super::{
    AnswerOptions, CallCommand, CallEvent, CallOptions, EndReason, EndedBy, OfferMethod, lock,
};
use crate::error::{Result, UaError};
use crate::media::MediaNotice;
use crate::request::log_outcome;
use crate::transfer::{ReplacesTarget, SIPFRAG, parse_sipfrag, sipfrag, unescape};
use crate::ua::{ALLOW, DialogInput, SUPPORTED, UaEvent};
use crate::video::{VideoNotice, VideoPolicy};

/// How many challenges a re-INVITE may get answered.
const MAX_REINVITE_CHALLENGES: u32 = 3;
/// How long the transferee waits for the transferor's BYE before sending its own.
const TRANSFER_BYE_WAIT: Duration = Duration::from_secs(2);
/// How many ACKs we keep for re-ACKing retransmitted 2xx.
const KEPT_ACKS: usize = 4;
/// A transfer whose subscription never reports a final status is given up after this long.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(120);
/// How often an offer answered 500 with Retry-After is sent again.
const MAX_BUSY_RETRIES: u32 = 3;
/// The longest Retry-After we wait for before re-sending an offer.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(4);

/// The Retry-After of a response (RFC 3261 §20.33), when it is at most [`MAX_RETRY_AFTER`].
fn retry_after(r: &Response) -> Option<Duration> {
    let value = r.headers.get_str(&HeaderName::RetryAfter)?;
    let secs: u64 = value
        .split(|c: char| c == ';' || c == '(' || c.is_whitespace())
        .find(|t| !t.is_empty())?
        .parse()
        .ok()?;
    let delay = Duration::from_secs(secs);
    (delay <= MAX_RETRY_AFTER).then_some(delay.max(Duration::from_millis(200)))
}

/// A hold or resume wanted by the application.
struct Goal {
    hold: bool,
    /// An ICE restart: the re-offer is sent even when the hold state does not change.
    ice_restart: bool,
    /// Video on or off (`None`: as it is).
    video: Option<bool>,
    /// Re-offer even when nothing else changes (a camera turned on in a receive-only video).
    reoffer: bool,
    /// Whether we wanted video before this goal's offer (restored when it fails).
    prev_video: bool,
    /// Whether we took the peer's video receive-only before this goal's offer (restored too).
    prev_recv_only: bool,
    /// Retries after a 500 with Retry-After (the peer was still busy with an offer).
    retries: u32,
    method: OfferMethod,
    reply: Option<oneshot::Sender<Result<()>>>,
}

impl Goal {
    /// A hold/resume/ICE-restart goal that leaves the video as it is.
    fn new(
        hold: bool,
        ice_restart: bool,
        method: OfferMethod,
        reply: Option<oneshot::Sender<Result<()>>>,
    ) -> Goal {
        Goal {
            hold,
            ice_restart,
            video: None,
            reoffer: false,
            prev_video: false,
            prev_recv_only: false,
            retries: 0,
            method,
            reply,
        }
    }

    fn answer(&mut self, result: Result<()>) {
        if let Some(r) = self.reply.take() {
            let _ = r.send(result);
        }
    }
}

/// Our re-INVITE in flight.
struct OutInvite {
    goal: Goal,
    cseq: u32,
    request: Request,
    challenges: u32,
    prev_hold: bool,
}

/// Our 2xx to a re-INVITE, retransmitted until its ACK.
struct Pending2xx {
    tx: TxId,
    response: Response,
    cseq: u32,
    interval: Duration,
    next: Instant,
    give_up: Instant,
    answer_in_ack: bool,
}

/// An in-dialog non-INVITE request we send (one at a time, in CSeq order).
enum OutReq {
    Info {
        digits: VecDeque<char>,
        reply: Option<oneshot::Sender<Result<()>>>,
    },
    Refer {
        refer_to: String,
        target: String,
        reply: Option<oneshot::Sender<Result<()>>>,
    },
    Notify {
        status: u16,
        reason: String,
        terminated: bool,
    },
    /// An UPDATE with a new offer (hold/resume).
    Offer { goal: Goal, prev_hold: bool },
}

/// Our REFER's implicit subscription (transferor side).
struct ReferOut {
    target: String,
    deadline: Instant,
}

/// A REFER we accepted (transferee side).
struct ReferIn {
    event_id: u32,
    target: String,
    last_notified: u16,
    succeeded: bool,
}

/// The state of a confirmed dialog.
pub(crate) struct Live {
    pub dialog: Dialog,
    /// The initial INVITE's client transaction (UAC), for 2xx retransmissions and forks.
    initial: Option<ClientTx>,
    /// ACKs we sent, by INVITE CSeq.
    pub acks: Vec<(u32, Ack)>,
    reinvite: Option<OutInvite>,
    /// An UPDATE offer of ours is queued or in flight.
    update_offer: bool,
    goals: VecDeque<Goal>,
    retry_at: Option<Instant>,
    uas_2xx: Option<Pending2xx>,
    outq: VecDeque<OutReq>,
    inflight: Option<(u32, OutReq)>,
    refer_out: Option<ReferOut>,
    refer_in: Option<ReferIn>,
    transferred: bool,
    end_at: Option<Instant>,
}

impl Live {
    pub fn new(dialog: Dialog, initial: Option<ClientTx>) -> Live {
        Live {
            dialog,
            initial,
            acks: Vec::new(),
            reinvite: None,
            update_offer: false,
            goals: VecDeque::new(),
            retry_at: None,
            uas_2xx: None,
            outq: VecDeque::new(),
            inflight: None,
            refer_out: None,
            refer_in: None,
            transferred: false,
            end_at: None,
        }
    }
}

fn response(request: &Request, status: u16) -> Response {
    let mut r = Response::for_request(request, status);
    r.reason = tandem_proto::msg::reason_phrase(status).into();
    r
}

async fn next_outcome(tx: &mut Option<ClientTx>) -> Option<TxOutcome> {
    match tx {
        Some(tx) => tx.next().await,
        None => std::future::pending().await,
    }
}

fn to_tag(r: &Response) -> String {
    r.headers
        .to()
        .ok()
        .and_then(|t| t.tag().map(str::to_string))
        .unwrap_or_default()
}

impl CallTask {
    /// Runs the confirmed dialog until the call ends; returns the final event.
    pub(crate) async fn confirmed(&mut self, mut live: Live) -> CallEvent {
        self.publish_dialog(&live.dialog, true);
        // A change of the host's addresses restarts ICE with new candidates.
        let mut network = self.shared.network_changes();
        network.borrow_and_update();
        let mut network_open = true;
        loop {
            self.pump(&mut live);
            let initial_open = live.initial.is_some();
            let retry_at = live.retry_at;
            let uas_next = live.uas_2xx.as_ref().map(|p| p.next);
            let uas_give_up = live.uas_2xx.as_ref().map(|p| p.give_up);
            let transfer_deadline = live.refer_out.as_ref().map(|r| r.deadline);
            let end_at = live.end_at;
            let end = tokio::select! {
                outcome = next_outcome(&mut live.initial), if initial_open => {
                    log_outcome(&outcome, None);
                    match outcome {
                        Some(TxOutcome::Final(r)) if (200..300).contains(&r.status) => {
                            self.on_late_2xx(&mut live, &r).await;
                        }
                        Some(_) => {}
                        None => live.initial = None,
                    }
                    None
                }
                input = self.inputs.recv() => match input {
                    Some(DialogInput::Request { tx, request }) => self.in_dialog(&mut live, tx, request).await,
                    Some(DialogInput::Ack { request }) => self.on_ack(&mut live, request).await,
                    Some(DialogInput::StrayResponse { response }) => {
                        if (200..300).contains(&response.status) {
                            self.on_late_2xx(&mut live, &response).await;
                        }
                        None
                    }
                    Some(DialogInput::Replace { incoming, replaces }) => {
                        self.on_replace(&mut live, incoming, replaces).await
                    }
                    None => Some(CallEvent::Ended { by: EndedBy::Local, reason: EndReason::Error }),
                },
                Some(msg) = self.internal_rx.recv() => self.on_internal(&mut live, msg).await,
                cmd = self.cmds.recv() => match cmd {
                    None | Some(CallCommand::Hangup) => {
                        self.bye(&mut live.dialog, None).await;
                        Some(CallEvent::Ended { by: EndedBy::Local, reason: EndReason::Bye })
                    }
                    Some(CallCommand::SetVideo(on, reply)) => {
                        self.set_video(&mut live, on, reply).await;
                        None
                    }
                    Some(c) => {
                        self.command(&mut live, c);
                        None
                    }
                },
                changed = network.changed(), if network_open => {
                    if changed.is_err() {
                        network_open = false;
                    } else if self.media.ice_regather("network-changed").await {
                        live.goals.push_back(Goal::new(
                            self.media.local_hold,
                            true,
                            OfferMethod::Invite,
                            None,
                        ));
                    }
                    None
                }
                ev = self.media.next_notice() => match ev {
                    MediaNotice::Media(Some(ev)) => self.on_media(&mut live, ev).await,
                    MediaNotice::Media(None) => None,
                    MediaNotice::Call(ev) => {
                        self.emit(ev);
                        None
                    }
                },
                _ = sleep_until_opt(retry_at) => {
                    live.retry_at = None;
                    None
                }
                _ = sleep_until_opt(uas_next) => {
                    if let Some(p) = live.uas_2xx.as_mut() {
                        self.shared.respond(p.tx, p.response.clone());
                        p.interval = (p.interval * 2).min(self.shared.config.tx.t2);
                        p.next = Instant::now() + p.interval;
                    }
                    None
                }
                _ = sleep_until_opt(uas_give_up) => {
                    tracing::warn!("no ACK for our 2xx to a re-INVITE: ending the call");
                    live.uas_2xx = None;
                    self.bye(&mut live.dialog, None).await;
                    Some(CallEvent::Ended { by: EndedBy::Local, reason: EndReason::Timeout })
                }
                _ = sleep_until_opt(transfer_deadline) => {
                    live.refer_out = None;
                    self.emit(CallEvent::TransferFailed { status: 408, reason: "no final transfer status".into() });
                    None
                }
                _ = sleep_until_opt(end_at) => {
                    self.bye(&mut live.dialog, None).await;
                    Some(CallEvent::Ended { by: EndedBy::Local, reason: EndReason::Transferred })
                }
            };
            if let Some(end) = end {
                for mut g in live.goals.drain(..) {
                    g.answer(Err(UaError::Closed));
                }
                if let Some(mut r) = live.reinvite.take() {
                    r.goal.answer(Err(UaError::Closed));
                }
                return end;
            }
        }
    }

    /// Starts what waits: the next hold/resume re-INVITE, the next non-INVITE request.
    fn pump(&mut self, live: &mut Live) {
        let offer_busy = live.reinvite.is_some()
            || live.update_offer
            || live.retry_at.is_some()
            || live.uas_2xx.as_ref().is_some_and(|p| p.answer_in_ack)
            || self.media.offer_pending();
        if !offer_busy && let Some(mut goal) = live.goals.pop_front() {
            let video_same = goal
                .video
                .is_none_or(|v| self.media.video.is_as_wanted(v) && !goal.reoffer);
            if goal.hold == self.media.local_hold && !goal.ice_restart && video_same {
                goal.answer(Ok(()));
            } else if goal.method == OfferMethod::Update {
                live.update_offer = true;
                let prev_hold = self.media.local_hold;
                live.outq.push_front(OutReq::Offer { goal, prev_hold });
            } else {
                self.start_reinvite(live, goal);
            }
        }
        if live.inflight.is_none()
            && let Some(req) = live.outq.pop_front()
        {
            self.send_out(live, req);
        }
    }

    fn command(&mut self, live: &mut Live, cmd: CallCommand) {
        match cmd {
            CallCommand::Hangup => {}
            CallCommand::IceRestart(reply) => {
                if self.media.ice_restart("requested") {
                    live.goals.push_back(Goal::new(
                        self.media.local_hold,
                        true,
                        OfferMethod::Invite,
                        Some(reply),
                    ));
                } else {
                    let _ = reply.send(Err(UaError::Protocol("this call does not do ICE".into())));
                }
            }
            CallCommand::Hold(method, reply) => {
                live.goals
                    .push_back(Goal::new(true, false, method, Some(reply)))
            }
            CallCommand::Resume(method, reply) => {
                live.goals
                    .push_back(Goal::new(false, false, method, Some(reply)))
            }
            CallCommand::SetVideo(on, reply) => {
                // Enabling video is handled in `set_video` (it binds sockets first).
                live.goals.push_back(Goal {
                    video: Some(on),
                    ..Goal::new(
                        self.media.local_hold,
                        false,
                        OfferMethod::Invite,
                        Some(reply),
                    )
                });
            }
            CallCommand::SetCamera(source, reply) => match self.media.video.set_camera(source) {
                Ok(true) => live.goals.push_back(Goal {
                    video: Some(true),
                    reoffer: true,
                    ..Goal::new(
                        self.media.local_hold,
                        false,
                        OfferMethod::Invite,
                        Some(reply),
                    )
                }),
                Ok(false) => {
                    self.publish_media();
                    let _ = reply.send(Ok(()));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            CallCommand::Dtmf(digits, reply) => {
                if self.media.peer_has_telephone_event() && self.media.send_dtmf(&digits) {
                    let _ = reply.send(Ok(()));
                } else {
                    live.outq.push_back(OutReq::Info {
                        digits: digits.chars().collect(),
                        reply: Some(reply),
                    });
                }
            }
            CallCommand::Mute(m) => self.media.set_mute(m),
            CallCommand::SwitchDevices {
                capture,
                playback,
                reply,
            } => {
                let _ = reply.send(self.media.switch_devices(capture, playback));
            }
            CallCommand::Transfer {
                refer_to,
                target,
                reply,
            } => {
                let busy = live.refer_out.is_some()
                    || live
                        .outq
                        .iter()
                        .chain(live.inflight.as_ref().map(|(_, r)| r))
                        .any(|r| matches!(r, OutReq::Refer { .. }));
                if busy {
                    let _ = reply.send(Err(UaError::Protocol(
                        "a transfer is already in progress".into(),
                    )));
                } else {
                    live.outq.push_back(OutReq::Refer {
                        refer_to,
                        target,
                        reply: Some(reply),
                    });
                }
            }
        }
    }

    /// A new in-dialog request with our Contact, Allow and Supported headers.
    fn new_request(&self, live: &mut Live, method: Method) -> Request {
        let mut req = live.dialog.new_request(method);
        if !req.headers.contains(&HeaderName::Contact)
            && matches!(
                req.method,
                Method::Invite | Method::Update | Method::Refer | Method::Notify
            )
        {
            req.headers.push(
                HeaderName::Contact,
                format!(
                    "<{}>",
                    self.shared.contact_uri(
                        Some(&self.account.user)
                            .filter(|u| !u.is_empty())
                            .map(String::as_str)
                    )
                ),
            );
        }
        if matches!(req.method, Method::Invite | Method::Update) {
            req.headers.push(HeaderName::Allow, ALLOW);
            req.headers.push(HeaderName::Supported, SUPPORTED);
        }
        req.headers
            .push(HeaderName::UserAgent, self.shared.config.user_agent.clone());
        req
    }

    fn start_reinvite(&mut self, live: &mut Live, mut goal: Goal) {
        let prev_hold = self.media.local_hold;
        self.media.local_hold = goal.hold;
        self.want_video(&mut goal);
        let offer = match self.media.create_offer() {
            Ok(o) => o,
            Err(e) => {
                self.media.local_hold = prev_hold;
                self.media
                    .video
                    .restore(goal.prev_video, goal.prev_recv_only);
                goal.answer(Err(e));
                return;
            }
        };
        self.publish_media();
        let mut req = self.new_request(live, Method::Invite);
        req.headers.push(HeaderName::ContentType, "application/sdp");
        req.body = Bytes::from(offer.to_string());
        let cseq = live.dialog.local_seq;
        self.spawn_invite(req.clone(), cseq);
        live.reinvite = Some(OutInvite {
            goal,
            cseq,
            request: req,
            challenges: 0,
            prev_hold,
        });
    }

    /// Runs one re-INVITE client transaction in a helper task forwarding every outcome.
    fn spawn_invite(&mut self, mut req: Request, cseq: u32) {
        let uri = req.uri.to_string();
        self.auth.preempt(&self.shared, "INVITE", &uri);
        self.auth.apply(&mut req);
        let hop = Target::Uri(request_next_hop(&req, self.shared.transport));
        let shared = self.shared.clone();
        let itx = self.internal_tx.clone();
        tokio::spawn(async move {
            match shared.endpoint.request(req, hop).await {
                Ok(mut tx) => {
                    crate::ua::log_out(
                        &tandem_proto::msg::Message::Request(tx.request().clone()),
                        tx.flow(),
                    );
                    loop {
                        let outcome = tx.next().await;
                        log_outcome(&outcome, tx.flow());
                        let end = outcome.is_none();
                        if itx.send(Internal::InviteOutcome { cseq, outcome }).is_err() || end {
                            break;
                        }
                    }
                }
                Err(e) => {
                    let _ = itx.send(Internal::InviteOutcome {
                        cseq,
                        outcome: Some(TxOutcome::TransportError(e.to_string())),
                    });
                }
            }
        });
    }

    /// Sends one in-dialog non-INVITE request in a helper task.
    fn send_out(&mut self, live: &mut Live, req: OutReq) {
        if let OutReq::Offer { goal, prev_hold } = req {
            self.send_update_offer(live, goal, prev_hold);
            return;
        }
        let request = match &req {
            OutReq::Info { digits, .. } => {
                let Some(digit) = digits.front().copied() else {
                    if let OutReq::Info { reply: Some(r), .. } = req {
                        let _ = r.send(Ok(()));
                    }
                    return;
                };
                let ms = u32::try_from(self.media.opts.dtmf_duration.as_millis()).unwrap_or(100);
                let Some(body) = tandem_media::dtmf::format_dtmf_relay(digit, ms) else {
                    if let OutReq::Info { reply: Some(r), .. } = req {
                        let _ = r.send(Err(UaError::Config(format!(
                            "{digit:?} is not a DTMF digit"
                        ))));
                    }
                    return;
                };
                let mut r = self.new_request(live, Method::Info);
                r.headers
                    .push(HeaderName::ContentType, "application/dtmf-relay");
                r.body = Bytes::from(body);
                r
            }
            OutReq::Refer {
                refer_to, target, ..
            } => {
                let mut r = self.new_request(live, Method::Refer);
                r.headers.push(HeaderName::ReferTo, refer_to.clone());
                r.headers.push(
                    HeaderName::ReferredBy,
                    format!("<{}>", live.dialog.local_uri.uri),
                );
                live.refer_out = Some(ReferOut {
                    target: target.clone(),
                    deadline: Instant::now() + TRANSFER_TIMEOUT,
                });
                r
            }
            OutReq::Notify {
                status,
                reason,
                terminated,
            } => {
                let Some(event_id) = live.refer_in.as_ref().map(|r| r.event_id) else {
                    return;
                };
                let mut r = self.new_request(live, Method::Notify);
                r.headers
                    .push(HeaderName::Event, format!("refer;id={event_id}"));
                r.headers.push(
                    HeaderName::SubscriptionState,
                    if *terminated {
                        "terminated;reason=noresource".to_string()
                    } else {
                        "active;expires=60".to_string()
                    },
                );
                r.headers.push(HeaderName::ContentType, SIPFRAG);
                r.body = Bytes::from(sipfrag(*status, reason));
                r
            }
            OutReq::Offer { .. } => return,
        };
        self.dispatch_out(live, request, req);
    }

    /// Sends an UPDATE carrying a new offer for `goal`.
    fn send_update_offer(&mut self, live: &mut Live, mut goal: Goal, prev_hold: bool) {
        self.media.local_hold = goal.hold;
        self.want_video(&mut goal);
        let offer = match self.media.create_offer() {
            Ok(o) => o,
            Err(e) => {
                self.media.local_hold = prev_hold;
                self.media
                    .video
                    .restore(goal.prev_video, goal.prev_recv_only);
                live.update_offer = false;
                goal.answer(Err(e));
                return;
            }
        };
        self.publish_media();
        let mut request = self.new_request(live, Method::Update);
        request
            .headers
            .push(HeaderName::ContentType, "application/sdp");
        request.body = Bytes::from(offer.to_string());
        self.dispatch_out(live, request, OutReq::Offer { goal, prev_hold });
    }

    /// Runs one in-dialog non-INVITE request in a helper task; its result comes back as
    /// [`Internal::Done`].
    fn dispatch_out(&mut self, live: &mut Live, mut request: Request, req: OutReq) {
        request.headers.set(HeaderName::MaxForwards, "70");
        let cseq = live.dialog.local_seq;
        let method = request.method.to_string();
        let uri = request.uri.to_string();
        let mut auth = self.auth.clone();
        auth.preempt(&self.shared, &method, &uri);
        let hop = Target::Uri(request_next_hop(&request, self.shared.transport));
        let shared = self.shared.clone();
        let itx = self.internal_tx.clone();
        tokio::spawn(async move {
            let result = shared.send(request, hop, Some(&mut auth)).await;
            let _ = itx.send(Internal::Done { cseq, result });
        });
        live.inflight = Some((cseq, req));
    }

    async fn on_internal(&mut self, live: &mut Live, msg: Internal) -> Option<CallEvent> {
        match msg {
            Internal::InviteOutcome { cseq, outcome } => {
                self.on_invite_outcome(live, cseq, outcome).await
            }
            Internal::Done { cseq, result } => self.on_done(live, cseq, result).await,
            Internal::NewCallProgress { status, reason } => {
                self.on_new_call_progress(live, status, reason);
                None
            }
        }
    }

    async fn on_invite_outcome(
        &mut self,
        live: &mut Live,
        cseq: u32,
        outcome: Option<TxOutcome>,
    ) -> Option<CallEvent> {
        let current = live.reinvite.as_ref().is_some_and(|r| r.cseq == cseq);
        if !current {
            if let Some(TxOutcome::Final(r)) = &outcome
                && (200..300).contains(&r.status)
            {
                self.on_late_2xx(live, r).await;
            }
            return None;
        }
        let r = match outcome {
            Some(TxOutcome::Provisional(_)) => return None,
            Some(TxOutcome::Final(r)) => r,
            Some(TxOutcome::Timeout) | Some(TxOutcome::TransportError(_)) | None => {
                let mut out = live.reinvite.take()?;
                self.media.offer_failed();
                self.media.local_hold = out.prev_hold;
                self.media
                    .video
                    .restore(out.goal.prev_video, out.goal.prev_recv_only);
                out.goal.answer(Err(UaError::Timeout));
                // RFC 3261 §14.1: a re-INVITE timeout ends the dialog.
                self.bye(&mut live.dialog, None).await;
                return Some(CallEvent::Ended {
                    by: EndedBy::Local,
                    reason: EndReason::Timeout,
                });
            }
            Some(_) => return None,
        };
        let mut out = live.reinvite.take()?;
        live.dialog.update_from_response(&r);
        match r.status {
            200..=299 => {
                self.auth.accepted();
                match self.send_ack(&live.dialog, cseq, to_tag(&r)).await {
                    Ok(ack) => {
                        live.acks.push((cseq, ack));
                        if live.acks.len() > KEPT_ACKS {
                            live.acks.remove(0);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot ACK the re-INVITE's 2xx"),
                }
                self.publish_dialog(&live.dialog, true);
                self.finish_offer(live, &r.body, &mut out.goal, out.prev_hold, "re-INVITE")
                    .await
            }
            401 | 407 if out.challenges < MAX_REINVITE_CHALLENGES => {
                let uri = out.request.uri.to_string();
                if let Err(e) = self.auth.on_challenge(&self.shared, &r, "INVITE", &uri) {
                    self.fail_reinvite(out, e);
                    return None;
                }
                let mut req = live.dialog.new_request(Method::Invite);
                for h in out.request.headers.iter() {
                    if !matches!(
                        h.name,
                        HeaderName::CSeq
                            | HeaderName::Via
                            | HeaderName::Authorization
                            | HeaderName::ProxyAuthorization
                    ) && !req.headers.contains(&h.name)
                    {
                        req.headers.push(h.name.clone(), h.value.clone());
                    }
                }
                req.body = out.request.body.clone();
                let new_cseq = live.dialog.local_seq;
                self.auth.apply(&mut req);
                out.request = req.clone();
                out.cseq = new_cseq;
                out.challenges += 1;
                // spawn_invite recomputes credentials for the new CSeq's request.
                self.spawn_invite(req, new_cseq);
                live.reinvite = Some(out);
                None
            }
            491 => {
                // Glare (RFC 3261 §14.1): retry after a random wait.
                self.media.offer_failed();
                self.media.local_hold = out.prev_hold;
                self.media
                    .video
                    .restore(out.goal.prev_video, out.goal.prev_recv_only);
                let delay = glare_delay(self.call_id_owner, self.shared.random_u32());
                tracing::debug!(?delay, "re-INVITE glare: retrying later");
                live.retry_at = Some(Instant::now() + delay);
                live.goals.push_front(out.goal);
                None
            }
            500 if out.goal.retries < MAX_BUSY_RETRIES && retry_after(&r).is_some() => {
                // The peer still waits for the ACK of its last 2xx (RFC 3261 §14.2): retry
                // after its Retry-After.
                self.media.offer_failed();
                self.media.local_hold = out.prev_hold;
                self.media
                    .video
                    .restore(out.goal.prev_video, out.goal.prev_recv_only);
                let delay = retry_after(&r).unwrap_or(MAX_RETRY_AFTER);
                tracing::debug!(
                    ?delay,
                    "re-INVITE answered 500 with Retry-After: retrying later"
                );
                live.retry_at = Some(Instant::now() + delay);
                out.goal.retries += 1;
                live.goals.push_front(out.goal);
                None
            }
            status => {
                let ends = matches!(status, 481 | 408);
                self.fail_reinvite(out, UaError::rejected(status, r.reason.clone()));
                if ends {
                    if status == 408 {
                        self.bye(&mut live.dialog, None).await;
                    }
                    return Some(CallEvent::Ended {
                        by: if status == 481 {
                            EndedBy::Remote
                        } else {
                            EndedBy::Local
                        },
                        reason: EndReason::Error,
                    });
                }
                None
            }
        }
    }

    /// Applies the SDP answer in the 2xx to our re-INVITE or UPDATE (`what`) and
    /// settles `goal`; an unusable answer ends the call with a BYE (cause 488).
    async fn finish_offer(
        &mut self,
        live: &mut Live,
        body: &[u8],
        goal: &mut Goal,
        prev_hold: bool,
        what: &str,
    ) -> Option<CallEvent> {
        let taken = if body.is_empty() {
            Err(UaError::Media(format!(
                "the 2xx to our {what} has no SDP answer"
            )))
        } else {
            self.media.take_answer(body, false)
        };
        if let Err(e) = taken.and_then(|()| self.apply_media(false)) {
            goal.answer(Err(e.clone()));
            tracing::warn!(error = %e, "ending the call: unusable {what} answer");
            return Some(self.end_media_failed(&mut live.dialog).await);
        }
        if goal.hold != prev_hold {
            self.emit(if goal.hold {
                CallEvent::Held
            } else {
                CallEvent::Resumed
            });
        }
        if goal.video == Some(true) && self.media.video.negotiated().is_none() {
            goal.answer(Err(UaError::Media("the peer declined the video".into())));
        } else {
            goal.answer(Ok(()));
        }
        None
    }

    /// Applies a goal's video wish before its offer, remembering the previous one.
    fn want_video(&mut self, goal: &mut Goal) {
        goal.prev_video = self.media.video.wanted();
        goal.prev_recv_only = self.media.video.recv_only();
        if let Some(on) = goal.video {
            self.media.video.set_wanted(on);
        }
    }

    /// `Call::set_video`: enabling binds the video socket (or gathers its ICE candidates)
    /// first, and turns our camera on when we only received the peer's video; then a
    /// re-INVITE carries the change.
    async fn set_video(&mut self, live: &mut Live, on: bool, reply: oneshot::Sender<Result<()>>) {
        if on && let Err(e) = self.media.ready_video().await {
            let _ = reply.send(Err(e));
            return;
        }
        let prev_recv_only = self.media.video.recv_only();
        let reoffer = on && self.media.video.send_again();
        live.goals.push_back(Goal {
            video: Some(on),
            reoffer,
            prev_recv_only,
            ..Goal::new(
                self.media.local_hold,
                false,
                OfferMethod::Invite,
                Some(reply),
            )
        });
    }

    /// Before answering a re-offer: when the peer adds video and the call's policy lets us
    /// receive it and something can show it, binds the video socket (or gathers its ICE
    /// candidates) so that the answer can take it at once.
    async fn prepare_peer_video(&mut self, request: &Request) {
        if request.body.is_empty() || !is_sdp(request.headers.content_type()) {
            return;
        }
        let Ok(offer) = SessionDescription::parse_bytes(&request.body) else {
            return;
        };
        let video = &self.media.video;
        if !video.peer_adds(&offer) || video.policy() == VideoPolicy::Never || !video.can_show() {
            return;
        }
        if let Err(e) = self.media.ready_video().await {
            tracing::warn!(error = %e, "no socket for the peer's video: declining it");
        }
    }

    fn fail_reinvite(&mut self, mut out: OutInvite, error: UaError) {
        self.media.offer_failed();
        self.media.local_hold = out.prev_hold;
        self.media
            .video
            .restore(out.goal.prev_video, out.goal.prev_recv_only);
        self.publish_media();
        out.goal.answer(Err(error));
    }

    async fn on_done(
        &mut self,
        live: &mut Live,
        cseq: u32,
        result: Result<Response>,
    ) -> Option<CallEvent> {
        let matches = live.inflight.as_ref().is_some_and(|(c, _)| *c == cseq);
        if !matches {
            return None;
        }
        let (_, req) = live.inflight.take()?;
        if let Ok(r) = &result
            && let Ok(c) = r.headers.cseq()
            && c.seq > live.dialog.local_seq
        {
            live.dialog.local_seq = c.seq;
        }
        let outcome: Result<()> = match &result {
            Ok(r) if (200..300).contains(&r.status) => Ok(()),
            Ok(r) => Err(UaError::rejected(r.status, r.reason.clone())),
            Err(e) => Err(e.clone()),
        };
        match req {
            OutReq::Info { mut digits, reply } => match outcome {
                Ok(()) => {
                    digits.pop_front();
                    if digits.is_empty() {
                        if let Some(r) = reply {
                            let _ = r.send(Ok(()));
                        }
                    } else {
                        live.outq.push_front(OutReq::Info { digits, reply });
                    }
                }
                Err(e) => {
                    if let Some(r) = reply {
                        let _ = r.send(Err(e));
                    }
                }
            },
            OutReq::Refer { reply, .. } => {
                if outcome.is_err() {
                    live.refer_out = None;
                }
                if let Some(r) = reply {
                    let _ = r.send(outcome);
                }
            }
            OutReq::Offer {
                mut goal,
                prev_hold,
            } => {
                live.update_offer = false;
                let response = match result {
                    Ok(r) if (200..300).contains(&r.status) => r,
                    Ok(r) if r.status == 491 => {
                        self.media.offer_failed();
                        self.media.local_hold = prev_hold;
                        self.media
                            .video
                            .restore(goal.prev_video, goal.prev_recv_only);
                        let delay = glare_delay(self.call_id_owner, self.shared.random_u32());
                        live.retry_at = Some(Instant::now() + delay);
                        live.goals.push_front(goal);
                        return None;
                    }
                    Ok(r)
                        if r.status == 500
                            && goal.retries < MAX_BUSY_RETRIES
                            && retry_after(&r).is_some() =>
                    {
                        self.media.offer_failed();
                        self.media.local_hold = prev_hold;
                        self.media
                            .video
                            .restore(goal.prev_video, goal.prev_recv_only);
                        let delay = retry_after(&r).unwrap_or(MAX_RETRY_AFTER);
                        live.retry_at = Some(Instant::now() + delay);
                        goal.retries += 1;
                        live.goals.push_front(goal);
                        return None;
                    }
                    other => {
                        self.media.offer_failed();
                        self.media.local_hold = prev_hold;
                        self.media
                            .video
                            .restore(goal.prev_video, goal.prev_recv_only);
                        self.publish_media();
                        let ends = matches!(&other, Ok(r) if r.status == 481);
                        goal.answer(other.and_then(|r| Err(UaError::rejected(r.status, r.reason))));
                        return ends.then_some(CallEvent::Ended {
                            by: EndedBy::Remote,
                            reason: EndReason::Error,
                        });
                    }
                };
                return self
                    .finish_offer(live, &response.body, &mut goal, prev_hold, "UPDATE")
                    .await;
            }
            OutReq::Notify { terminated, .. } => {
                let dead = matches!(&result, Ok(r) if r.status == 481);
                if terminated || dead {
                    let succeeded = live.refer_in.as_ref().is_some_and(|r| r.succeeded);
                    live.refer_in = None;
                    if succeeded {
                        // Give the transferor a moment to send its BYE (RFC 5589 §6).
                        live.end_at = Some(Instant::now() + TRANSFER_BYE_WAIT);
                    }
                }
            }
        }
        None
    }

    fn on_new_call_progress(&mut self, live: &mut Live, status: u16, reason: String) {
        let Some(refer) = live.refer_in.as_mut() else {
            return;
        };
        if refer.succeeded || (status < 200 && status == refer.last_notified) {
            return;
        }
        refer.last_notified = status;
        let terminated = status >= 200;
        if (200..300).contains(&status) {
            refer.succeeded = true;
            live.transferred = true;
            let target = refer.target.clone();
            self.emit(CallEvent::Transferred { target, status });
        } else if status >= 300 {
            self.emit(CallEvent::TransferFailed {
                status,
                reason: reason.clone(),
            });
        } else {
            self.emit(CallEvent::TransferProgress {
                status,
                reason: reason.clone(),
            });
        }
        live.outq.push_back(OutReq::Notify {
            status,
            reason,
            terminated,
        });
    }

    /// A 2xx retransmission (re-ACK it) or a 2xx from another fork (ACK and BYE it).
    async fn on_late_2xx(&mut self, live: &mut Live, response: &Response) {
        let Ok(cseq) = response.headers.cseq() else {
            return;
        };
        if cseq.method != Method::Invite {
            return;
        }
        let tag = to_tag(response);
        if let Some((_, ack)) = live
            .acks
            .iter()
            .find(|(c, a)| *c == cseq.seq && a.remote_tag == tag)
        {
            self.shared.send_stateless(ack.message.clone(), ack.flow);
            return;
        }
        if tag == live.dialog.id.remote_tag {
            return;
        }
        // RFC 3261 §13.2.2.4: another fork answered too: ACK it and end that dialog.
        let Some(sent) = live.initial.as_ref().map(|tx| tx.request().clone()) else {
            return;
        };
        if let Ok(mut other) = Dialog::from_uac(&sent, response)
            && self.send_ack(&other, cseq.seq, tag).await.is_ok()
        {
            self.bye(&mut other, None).await;
        }
    }

    async fn on_ack(&mut self, live: &mut Live, ack: Request) -> Option<CallEvent> {
        let seq = ack.headers.cseq().map(|c| c.seq).ok()?;
        let pending = live.uas_2xx.take_if(|p| p.cseq == seq)?;
        if !pending.answer_in_ack {
            return None;
        }
        let taken = self.take_answer_in(&ack.body, "the ACK");
        let was_remote_hold = self.media.remote_hold();
        if let Err(e) = taken.and_then(|()| self.apply_media(false)) {
            tracing::warn!(error = %e, "ending the call: unusable answer in the ACK");
            return Some(self.end_media_failed(&mut live.dialog).await);
        }
        self.hold_events(was_remote_hold);
        None
    }

    fn hold_events(&self, was_remote_hold: bool) {
        let now = self.media.remote_hold();
        if now != was_remote_hold {
            self.emit(if now {
                CallEvent::RemoteHold
            } else {
                CallEvent::RemoteResumed
            });
        }
    }

    /// Handles an in-dialog request; returns the final event when it ends the call.
    async fn in_dialog(
        &mut self,
        live: &mut Live,
        tx: TxId,
        request: Request,
    ) -> Option<CallEvent> {
        if let Err(e) = live.dialog.check_request(&request) {
            tracing::debug!(error = %e, "in-dialog request refused");
            let status = match e {
                tandem_proto::dialog::DialogError::CSeqOutOfOrder { .. } => 500,
                tandem_proto::dialog::DialogError::NotThisDialog => 481,
                _ => 400,
            };
            let mut r = response(&request, status);
            if status == 500 {
                r.headers.push(HeaderName::RetryAfter, "1");
            }
            self.shared.respond(tx, r);
            return None;
        }
        if tandem_proto::dialog::is_target_refresh(&request.method) {
            self.publish_dialog(&live.dialog, true);
        }
        match request.method {
            Method::Bye => {
                self.shared.respond(tx, response(&request, 200));
                let reason = if live.transferred {
                    EndReason::Transferred
                } else {
                    EndReason::Bye
                };
                Some(CallEvent::Ended {
                    by: EndedBy::Remote,
                    reason,
                })
            }
            Method::Invite => {
                self.prepare_peer_video(&request).await;
                self.reinvite_in(live, tx, &request);
                None
            }
            Method::Update => {
                self.prepare_peer_video(&request).await;
                self.update_in(live, tx, &request);
                None
            }
            Method::Info => {
                self.info_in(tx, &request);
                None
            }
            Method::Refer => {
                self.refer_in(live, tx, &request).await;
                None
            }
            Method::Notify => self.notify_in(live, tx, &request).await,
            Method::Options => {
                let mut r = response(&request, 200);
                r.headers.push(HeaderName::Allow, ALLOW);
                r.headers.push(HeaderName::Accept, "application/sdp");
                r.headers.push(HeaderName::Supported, SUPPORTED);
                self.shared.respond(tx, r);
                None
            }
            _ => {
                let mut r = response(&request, 405);
                r.headers.push(HeaderName::Allow, ALLOW);
                self.shared.respond(tx, r);
                None
            }
        }
    }

    /// A 2xx to a re-INVITE/UPDATE with our Contact (and SDP when given).
    fn ok_with_sdp(&self, live: &Live, request: &Request, sdp: Option<String>) -> Response {
        let mut r = response(request, 200);
        let contact = match &live.dialog.local_contact {
            Some(c) => c.to_string(),
            None => format!("<{}>", self.shared.contact_uri(None)),
        };
        r.headers.push(HeaderName::Contact, contact);
        r.headers.push(HeaderName::Allow, ALLOW);
        r.headers.push(HeaderName::Supported, SUPPORTED);
        r.headers
            .push(HeaderName::Server, self.shared.config.user_agent.clone());
        if let Some(sdp) = sdp {
            r.headers.push(HeaderName::ContentType, "application/sdp");
            r.body = Bytes::from(sdp);
        }
        r
    }

    /// Answers an offer in a re-INVITE/UPDATE: the answer, or the 400/488 to send.
    /// When the peer adds video, the call's [`VideoPolicy`] decides: receive-only when we can
    /// show it (never held for the user), else port 0; a [`VideoNotice::PeerOffered`] tells
    /// the application.
    fn answer_reoffer(&mut self, request: &Request) -> std::result::Result<String, Response> {
        let was_remote_hold = self.media.remote_hold();
        let adds = SessionDescription::parse_bytes(&request.body)
            .is_ok_and(|offer| self.media.video.peer_adds(&offer));
        let policy = self.media.video.policy();
        let receive = adds
            && policy != VideoPolicy::Never
            && self.media.video.can_show()
            && self.media.video.has_transport();
        if receive {
            self.media.video.receive_only();
        }
        match self.media.answer_offer(&request.body) {
            Ok(answer) => {
                if let Err(e) = self.apply_media(false) {
                    tracing::warn!(error = %e, "cannot apply the re-offer's media");
                    self.emit(CallEvent::MediaWarning(e.to_string()));
                }
                self.hold_events(was_remote_hold);
                if adds {
                    let receiving = self.media.video.negotiated().is_some();
                    if receive && !receiving {
                        // Offered video we cannot take (codec, security): nothing wanted.
                        self.media.video.set_wanted(false);
                    }
                    tracing::info!(receiving, %policy, "the peer added video");
                    self.emit(CallEvent::Video(VideoNotice::PeerOffered {
                        receiving,
                        ask: policy == VideoPolicy::Ask,
                    }));
                }
                Ok(answer.to_string())
            }
            Err(rej) => {
                if receive {
                    self.media.video.set_wanted(false);
                }
                tracing::warn!(status = rej.status, reason = %rej.reason, "refusing a re-offer");
                let mut r = response(request, rej.status);
                r.headers.push(
                    HeaderName::Other("Warning".into()),
                    format!("399 tandem \"{}\"", rej.reason.replace('"', "'")),
                );
                Err(r)
            }
        }
    }

    fn reinvite_in(&mut self, live: &mut Live, tx: TxId, request: &Request) {
        if live.reinvite.is_some()
            || self.media.offer_pending()
            || live.uas_2xx.as_ref().is_some_and(|p| p.answer_in_ack)
        {
            // Glare: our offer is outstanding (RFC 3261 §14.2, RFC 6337 §3.1).
            self.shared.respond(tx, response(request, 491));
            return;
        }
        if live.uas_2xx.is_some() {
            let mut r = response(request, 500);
            r.headers.push(HeaderName::RetryAfter, "1");
            self.shared.respond(tx, r);
            return;
        }
        let cseq = request.headers.cseq().map(|c| c.seq).unwrap_or(0);
        let (sdp, answer_in_ack) = if request.body.is_empty() {
            match self.media.create_offer() {
                Ok(offer) => (offer.to_string(), true),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot build an offer for an empty re-INVITE");
                    self.shared.respond(tx, response(request, 500));
                    return;
                }
            }
        } else if !is_sdp(request.headers.content_type()) {
            let mut r = response(request, 415);
            r.headers.push(HeaderName::Accept, "application/sdp");
            self.shared.respond(tx, r);
            return;
        } else {
            match self.answer_reoffer(request) {
                Ok(answer) => (answer, false),
                Err(r) => {
                    self.shared.respond(tx, r);
                    return;
                }
            }
        };
        self.publish_media();
        let ok = self.ok_with_sdp(live, request, Some(sdp));
        self.shared.respond(tx, ok.clone());
        let t1 = self.shared.config.tx.t1;
        live.uas_2xx = Some(Pending2xx {
            tx,
            response: ok,
            cseq,
            interval: t1,
            next: Instant::now() + t1,
            give_up: Instant::now() + t1 * 64,
            answer_in_ack,
        });
    }

    fn update_in(&mut self, live: &mut Live, tx: TxId, request: &Request) {
        if request.body.is_empty() {
            let ok = self.ok_with_sdp(live, request, None);
            self.shared.respond(tx, ok);
            return;
        }
        if live.reinvite.is_some() || self.media.offer_pending() {
            // RFC 3311 §5.2: an offer of ours is outstanding.
            self.shared.respond(tx, response(request, 491));
            return;
        }
        if live.uas_2xx.as_ref().is_some_and(|p| p.answer_in_ack) {
            let mut r = response(request, 500);
            r.headers.push(HeaderName::RetryAfter, "1");
            self.shared.respond(tx, r);
            return;
        }
        if !is_sdp(request.headers.content_type()) {
            let mut r = response(request, 415);
            r.headers.push(HeaderName::Accept, "application/sdp");
            self.shared.respond(tx, r);
            return;
        }
        match self.answer_reoffer(request) {
            Ok(answer) => {
                self.publish_media();
                let ok = self.ok_with_sdp(live, request, Some(answer));
                self.shared.respond(tx, ok);
            }
            Err(r) => self.shared.respond(tx, r),
        }
    }

    pub(super) fn info_in(&mut self, tx: TxId, request: &Request) {
        let ct = request.headers.content_type().unwrap_or("");
        if !request.body.is_empty() {
            if let Some((digit, _)) = tandem_media::dtmf::parse_dtmf_info(ct, &request.body) {
                self.emit(CallEvent::Dtmf(digit));
            } else {
                let kind = ct.split(';').next().unwrap_or("").trim();
                if kind.eq_ignore_ascii_case("application/dtmf-relay")
                    || kind.eq_ignore_ascii_case("application/dtmf")
                {
                    self.shared.respond(tx, response(request, 400));
                    return;
                }
            }
        }
        self.shared.respond(tx, response(request, 200));
    }

    /// A REFER from the peer (transferee side, RFC 3515): accept, call the target, report.
    async fn refer_in(&mut self, live: &mut Live, tx: TxId, request: &Request) {
        let refer_to: Vec<_> = request.headers.get_all(&HeaderName::ReferTo).collect();
        let parsed = match refer_to.as_slice() {
            [one] => std::str::from_utf8(one)
                .ok()
                .and_then(|s| NameAddr::parse(s.trim()).ok()),
            _ => None,
        };
        let Some(refer_to) =
            parsed.filter(|n| matches!(n.uri.scheme, Scheme::Sip | Scheme::Sips | Scheme::Tel))
        else {
            let mut r = response(request, 400);
            r.reason = "Bad Refer-To".into();
            self.shared.respond(tx, r);
            return;
        };
        if !self.shared.config.accept_transfers {
            self.shared.respond(tx, response(request, 603));
            return;
        }
        if live.refer_in.is_some() {
            self.shared.respond(tx, response(request, 491));
            return;
        }
        let mut target = refer_to.uri.clone();
        let mut replaces = None;
        for (name, value) in std::mem::take(&mut target.headers) {
            if name.eq_ignore_ascii_case("replaces") {
                match unescape(&value).filter(|v| ReplacesTarget::parse(v).is_some()) {
                    Some(v) => replaces = Some(v),
                    None => {
                        let mut r = response(request, 400);
                        r.reason = "Bad Replaces in Refer-To".into();
                        self.shared.respond(tx, r);
                        return;
                    }
                }
            }
        }
        self.shared.respond(tx, response(request, 202));
        let referred_by = request
            .headers
            .get_str(&HeaderName::ReferredBy)
            .map(str::to_string);
        let event_id = request.headers.cseq().map(|c| c.seq).unwrap_or(0);
        live.refer_in = Some(ReferIn {
            event_id,
            target: target.to_string(),
            last_notified: 100,
            succeeded: false,
        });
        self.emit(CallEvent::ReferRequested {
            target: target.clone(),
            referred_by: referred_by.clone(),
        });
        live.outq.push_back(OutReq::Notify {
            status: 100,
            reason: "Trying".into(),
            terminated: false,
        });
        let mut extra = vec![(
            HeaderName::ReferredBy,
            referred_by.unwrap_or_else(|| format!("<{}>", live.dialog.remote_uri.uri)),
        )];
        if let Some(r) = replaces {
            extra.push((HeaderName::Other("Replaces".into()), r));
            extra.push((HeaderName::Require, "replaces".into()));
        }
        let options = CallOptions {
            media: self.media.opts.clone(),
            ..CallOptions::default()
        };
        let placed = super::place(
            self.shared.clone(),
            self.account.clone(),
            target.clone(),
            options,
            extra,
            Some(self.internal_tx.clone()),
        )
        .await;
        match placed {
            Ok(call) => {
                let call_id = self.key.call_id.clone();
                // When nobody takes UA events the new call is dropped (cancelled), which
                // reports 487 to the transferor.
                self.shared.emit_ua(UaEvent::TransferCall {
                    call,
                    transferred_call_id: call_id,
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot place the call for a REFER");
                self.on_new_call_progress(live, 503, "Service Unavailable".into());
            }
        }
    }

    /// A NOTIFY for our REFER (transferor side): progress of the transferee's new call.
    async fn notify_in(
        &mut self,
        live: &mut Live,
        tx: TxId,
        request: &Request,
    ) -> Option<CallEvent> {
        let is_refer = request
            .headers
            .get_str(&HeaderName::Event)
            .and_then(|e| e.split(';').next())
            .is_some_and(|e| e.trim().eq_ignore_ascii_case("refer"));
        if !is_refer {
            self.shared.respond(tx, response(request, 489));
            return None;
        }
        let Some(refer) = live.refer_out.as_ref() else {
            self.shared.respond(tx, response(request, 481));
            return None;
        };
        let target = refer.target.clone();
        let terminated = request
            .headers
            .get_str(&HeaderName::SubscriptionState)
            .and_then(|s| s.split(';').next())
            .is_some_and(|s| s.trim().eq_ignore_ascii_case("terminated"));
        let frag = parse_sipfrag(&request.body);
        self.shared.respond(tx, response(request, 200));
        match frag {
            Some((status, reason)) if status < 200 => {
                self.emit(CallEvent::TransferProgress { status, reason });
                if terminated {
                    live.refer_out = None;
                    self.emit(CallEvent::TransferFailed {
                        status: 487,
                        reason: "subscription terminated".into(),
                    });
                }
                None
            }
            Some((status, _)) if status < 300 => {
                live.refer_out = None;
                live.transferred = true;
                self.emit(CallEvent::Transferred { target, status });
                // RFC 5589 §6: the transferor ends its call with the transferee.
                self.bye(&mut live.dialog, None).await;
                Some(CallEvent::Ended {
                    by: EndedBy::Local,
                    reason: EndReason::Transferred,
                })
            }
            Some((status, reason)) => {
                live.refer_out = None;
                self.emit(CallEvent::TransferFailed { status, reason });
                None
            }
            None => {
                if terminated {
                    live.refer_out = None;
                    self.emit(CallEvent::TransferFailed {
                        status: 500,
                        reason: "subscription terminated without a status".into(),
                    });
                }
                None
            }
        }
    }

    /// An INVITE with Replaces naming this dialog (RFC 3891): the new call takes our place.
    async fn on_replace(
        &mut self,
        live: &mut Live,
        incoming: IncomingCall,
        replaces: ReplacesTarget,
    ) -> Option<CallEvent> {
        if replaces.from_tag != live.dialog.id.remote_tag {
            let _ = incoming.reject(481);
            return None;
        }
        if replaces.early_only {
            let _ = incoming.reject(486);
            return None;
        }
        // Free the devices for the new call first.
        self.stop_media().await;
        let options = AnswerOptions {
            account: Some(self.account.clone()),
            media: self.media.opts.clone(),
        };
        match incoming.accept_boxed(options).await {
            Ok(call) => {
                let replaced = self.key.call_id.clone();
                // Unclaimed (nobody takes UA events), the new call is dropped: it hangs up.
                self.shared.emit_ua(UaEvent::CallReplaced {
                    call,
                    replaced_call_id: replaced,
                });
                self.bye(&mut live.dialog, None).await;
                Some(CallEvent::Ended {
                    by: EndedBy::Remote,
                    reason: EndReason::Replaced,
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept the replacing call");
                if let Err(e) = self.apply_media(false) {
                    self.emit(CallEvent::MediaWarning(e.to_string()));
                }
                None
            }
        }
    }

    async fn on_media(
        &mut self,
        live: &mut Live,
        ev: tandem_media::session::MediaEvent,
    ) -> Option<CallEvent> {
        use tandem_media::session::MediaEvent;
        match ev {
            MediaEvent::Dtmf(d) => self.emit(CallEvent::Dtmf(d)),
            MediaEvent::Quality(q) => {
                lock(&self.state).quality = q.clone();
                self.emit(CallEvent::Quality(q));
            }
            MediaEvent::RtpTimeout => self.emit(CallEvent::RtpTimeout),
            MediaEvent::CaptureEnded => self.emit(CallEvent::CaptureEnded),
            MediaEvent::Error(e) => self.emit(CallEvent::MediaWarning(e)),
            MediaEvent::SecurityFailed(e) => {
                // Never fall back to plain RTP: the call cannot carry media.
                self.emit(CallEvent::MediaWarning(format!("SRTP failed: {e}")));
                self.bye(&mut live.dialog, Some("SIP;cause=488;text=\"SRTP failed\""))
                    .await;
                return Some(CallEvent::Ended {
                    by: EndedBy::Local,
                    reason: EndReason::MediaFailed,
                });
            }
            _ => {}
        }
        None
    }
}
