//! The INVITE server side before the final response: an incoming call offered to the
//! application, answered with an SDP answer (or offer) per the answering account.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tandem_proto::Flow;
use tandem_proto::dialog::Dialog;
use tandem_proto::msg::{HeaderName, NameAddr, Request, Response, Uri};
use tandem_proto::sdp::SessionDescription;
use tandem_proto::transaction::TxId;
use tokio::sync::{mpsc, watch};

use super::task::{BoxFuture, CallTask};
use super::{AnswerOptions, Call, CallEvent, CallState};
use crate::account::Account;
use crate::error::{Result, UaError};
use crate::media::{CallMedia, MediaChange};
use crate::request::{AuthSession, add_to_tag};
use crate::ua::{ALLOW, DialogKey, PendingInvite, SUPPORTED, Shared};

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
    early: Option<Box<Prepared>>,
}

/// The media of an incoming call, prepared for the 200 (or already running for a 183).
#[derive(Debug)]
struct Prepared {
    media: CallMedia,
    local_sdp: SessionDescription,
    started: Option<(String, bool)>,
    early: bool,
    account: Account,
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
            early: None,
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

    /// The Referred-By of a call placed for a transfer (RFC 3892), if any.
    pub fn referred_by(&self) -> Option<String> {
        self.request
            .headers
            .get_str(&HeaderName::ReferredBy)
            .map(str::to_string)
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

    /// Rejects the call with `status` (3xx–6xx): 486 busy, 603 decline, 480 unavailable, …
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

    /// Answers with 200 and an SDP answer (or our offer if the INVITE had none), plain RTP,
    /// all codecs, no devices; see [`IncomingCall::accept_with`].
    pub async fn accept(self) -> Result<Call> {
        self.accept_with(AnswerOptions::default()).await
    }

    /// Answers with 200 per `options` (the account's SRTP policy and codecs, devices). An
    /// offer we cannot accept is refused with 488 (400 when unparsable) and an error; the
    /// media starts as the 200 goes out, and the call reports `Answered` at the ACK.
    pub async fn accept_with(self, options: AnswerOptions) -> Result<Call> {
        self.accept_boxed(options).await
    }

    /// [`IncomingCall::accept_with`] as a boxed future (a call task accepts a replacing call).
    pub(crate) fn accept_boxed(self, options: AnswerOptions) -> BoxFuture<Result<Call>> {
        Box::pin(self.accept_inner(options))
    }

    /// Answers the offer (or builds our offer) per `options` and starts the media when the
    /// offer told us where to send; failures are answered (488/400/500) here.
    async fn prepare(&self, options: &AnswerOptions) -> Result<Prepared> {
        let shared = &self.shared;
        let account = match options.account.clone() {
            Some(a) => a,
            None => self.fallback_account(),
        };
        let mut media = match CallMedia::new(
            shared.local_ip,
            shared.config.tls_client.clone(),
            &account,
            options.media.clone(),
            u64::from(shared.random_u32()),
            format!("{}@{}", shared.token(12), shared.host()),
        )
        .await
        {
            Ok(m) => m,
            Err(e) => {
                let _ = self.finish(500);
                return Err(e);
            }
        };
        let has_offer = !self.request.body.is_empty();
        let local_sdp = if has_offer {
            match media.answer_offer(&self.request.body) {
                Ok(answer) => answer,
                Err(rej) => {
                    tracing::warn!(status = rej.status, reason = %rej.reason, "rejecting an INVITE");
                    let _ = self.finish(rej.status);
                    return Err(UaError::Media(rej.reason));
                }
            }
        } else {
            match media.create_offer() {
                Ok(offer) => offer,
                Err(e) => {
                    let _ = self.finish(500);
                    return Err(e);
                }
            }
        };
        // The media starts at once when the offer told us where to send.
        let started = if has_offer {
            media.apply()
        } else {
            Ok(MediaChange::None)
        };
        let started = match started {
            Ok(MediaChange::Started { codec, secure }) => Some((codec, secure)),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the media: rejecting the call");
                let _ = self.finish(500);
                return Err(e);
            }
        };
        Ok(Prepared {
            media,
            local_sdp,
            started,
            early: false,
            account,
        })
    }

    /// Early media: answers the INVITE's offer in a 183 Session Progress and starts the media
    /// now (announcements, ringback from us). A later accept sends the same answer in the 200
    /// (its options no longer matter for the media). Needs an offer in the INVITE.
    pub async fn early_media(&mut self, options: AnswerOptions) -> Result<()> {
        if *self.state.borrow() != IncState::Pending {
            return Err(UaError::Cancelled);
        }
        if self.request.body.is_empty() {
            return Err(UaError::Config(
                "early media needs an SDP offer in the INVITE".into(),
            ));
        }
        let sdp = match &self.early {
            Some(p) => p.local_sdp.clone(),
            None => {
                let mut prepared = self.prepare(&options).await?;
                prepared.early = true;
                let sdp = prepared.local_sdp.clone();
                self.early = Some(Box::new(prepared));
                sdp
            }
        };
        let mut r = self.provisional(183, "Session Progress");
        r.headers.push(HeaderName::ContentType, "application/sdp");
        r.body = Bytes::from(sdp.to_string());
        self.shared.respond(self.tx, r);
        Ok(())
    }

    async fn accept_inner(mut self, options: AnswerOptions) -> Result<Call> {
        let shared = self.shared.clone();
        let has_offer = !self.request.body.is_empty();
        let prepared = match self.early.take() {
            Some(p) => *p,
            None => self.prepare(&options).await?,
        };
        let Prepared {
            mut media,
            local_sdp,
            started,
            early,
            account,
        } = prepared;
        let mut dialog = Dialog::from_uas(&self.request, &self.local_tag)
            .map_err(|e| UaError::Protocol(format!("cannot create the dialog: {e}")))?;
        let contact = self.local_contact();
        dialog.local_contact = Some(NameAddr::new(contact.clone()));
        dialog.confirm();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        if let Some((codec, secure)) = started {
            let _ = ev_tx.send(CallEvent::MediaStarted {
                codec,
                secure,
                early,
            });
        }
        let mut ok = Response::for_request(&self.request, 200);
        ok.reason = "OK".into();
        add_to_tag(&mut ok, &self.local_tag);
        copy_record_route(&self.request, &mut ok);
        ok.headers.push(HeaderName::Contact, format!("<{contact}>"));
        ok.headers.push(HeaderName::Allow, ALLOW);
        ok.headers.push(HeaderName::Supported, SUPPORTED);
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
            media.stop().await;
            return Err(UaError::Cancelled);
        }
        shared.respond(self.tx, ok.clone());

        let rtp = media.rtp_socket();
        let frames = media.video.frames();
        let local_frames = media.video.local_frames();
        let (video_stats, video_control) = media.video.stats_parts();
        let state = Arc::new(Mutex::new(CallState {
            media: media.info(),
            dialog: None,
            control: media.control(),
            quality: Default::default(),
            video_control,
            video_stats,
        }));
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
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
            call_id_owner: false,
            internal_tx,
            internal_rx,
            progress: None,
        };
        let invite_cseq = self.request.headers.cseq().map(|c| c.seq).unwrap_or(0);
        tokio::spawn(task.run_uas(dialog, self.tx, ok, invite_cseq, !has_offer));
        let remote = self.from().unwrap_or_else(|| self.request.uri.clone());
        Ok(Call {
            call_id: self.call_id(),
            remote,
            cmd: cmd_tx,
            events: ev_rx,
            state,
            rtp,
            frames,
            local_frames,
        })
    }

    /// An account for answering without one: the called URI's user and host.
    fn fallback_account(&self) -> Account {
        let to = self
            .request
            .headers
            .to()
            .map(|t| t.uri)
            .unwrap_or_else(|_| self.request.uri.clone());
        let mut a = Account::new(to.user_unescaped().unwrap_or_default(), to.host_port());
        a.transport = self.shared.transport;
        a
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
