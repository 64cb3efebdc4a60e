//! Calls: the INVITE client side (RFC 3261 §13.2, §9 CANCEL) with early media, the INVITE
//! server side (§13.3 with 2xx retransmission until ACK), and the confirmed dialog (§12):
//! BYE, re-INVITE and UPDATE both ways (hold per RFC 6337, glare per §14.1), DTMF (RFC 4733
//! or SIP INFO), blind and attended transfer (REFER RFC 3515, Replaces RFC 3891, Referred-By
//! RFC 3892).

mod confirmed;
mod incoming;
mod task;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tandem_media::device::DeviceSpec;
use tandem_media::session::MediaControl;
use tandem_media::stats::CallQuality;
use tandem_proto::dialog::DialogId;
use tandem_proto::msg::Uri;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::account::Account;
use crate::error::{Result, UaError};
use crate::media::{MediaInfo, MediaOptions};
use crate::transfer::{ReplacesTarget, escape_header_value};
use crate::video::{
    FrameReceiver, FrameSender, VideoHandle, VideoNotice, VideoSourceSpec, VideoStats,
};

pub(crate) use incoming::IncState;
pub use incoming::IncomingCall;
pub(crate) use task::{place, request_next_hop};

/// Options for placing a call.
#[derive(Debug, Clone)]
pub struct CallOptions {
    /// Give up (CANCEL) when not answered within this time; `None`: wait for the INVITE
    /// transaction to time out.
    pub timeout: Option<Duration>,
    /// Devices and timing of the call's media.
    pub media: MediaOptions,
}

impl Default for CallOptions {
    fn default() -> Self {
        CallOptions {
            timeout: Some(Duration::from_secs(30)),
            media: MediaOptions::default(),
        }
    }
}

/// Options for answering an incoming call.
#[derive(Debug, Clone, Default)]
pub struct AnswerOptions {
    /// The account answering: its SRTP policy and codec preference apply, and calls it places
    /// for a transfer use it. `None`: plain RTP, all codecs, transfers sent as the dialog's
    /// local URI without a proxy.
    pub account: Option<Account>,
    /// Devices and timing of the call's media.
    pub media: MediaOptions,
}

/// Which request carries a new offer (hold, resume) in a confirmed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum OfferMethod {
    /// A re-INVITE (RFC 3261 §14), the usual way.
    #[default]
    Invite,
    /// An UPDATE (RFC 3311): no ACK, answered at once.
    Update,
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
    /// The call was transferred to another party (REFER succeeded).
    Transferred,
    /// Another call replaced this one (INVITE with Replaces, RFC 3891).
    Replaced,
    /// The media failed (mandatory SRTP could not be set up, unacceptable SDP answer).
    MediaFailed,
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndReason::Bye => "bye",
            EndReason::Cancel => "cancel",
            EndReason::Timeout => "timeout",
            EndReason::Error => "error",
            EndReason::Transferred => "transferred",
            EndReason::Replaced => "replaced",
            EndReason::MediaFailed => "media-failed",
        })
    }
}

/// Progress of a call, in order; the last one is `Ended` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CallEvent {
    /// A 100 Trying arrived.
    Trying,
    /// A 180/183 (or other 1xx above 100) arrived; play local ringback unless a
    /// `MediaStarted { early: true, .. }` came (early media).
    Ringing {
        /// The status code.
        status: u16,
        /// The reason phrase.
        reason: String,
    },
    /// The media session started: before the answer (early media, 183 with SDP) or after.
    MediaStarted {
        /// The codec we send (`opus`, `PCMA`, `PCMU`, …).
        codec: String,
        /// SRTP (SDES or DTLS) protects the media.
        secure: bool,
        /// Started on early media, before the call was answered.
        early: bool,
    },
    /// The call is confirmed: our 2xx was ACKed, or we ACKed the peer's 2xx.
    Answered {
        /// The final status (a 2xx).
        status: u16,
    },
    /// A DTMF digit from the peer (RFC 4733 or SIP INFO).
    Dtmf(char),
    /// Our hold (re-INVITE with sendonly/inactive) was accepted.
    Held,
    /// Our resume was accepted.
    Resumed,
    /// The peer put us on hold.
    RemoteHold,
    /// The peer took us off hold.
    RemoteResumed,
    /// The peer asked us to transfer (REFER): we call `target` and report progress to it.
    ReferRequested {
        /// The Refer-To target (without its URI headers).
        target: Uri,
        /// The Referred-By value, if any.
        referred_by: Option<String>,
    },
    /// Progress of a transfer (NOTIFY sipfrag received, or our new call's progress).
    TransferProgress {
        /// The status of the call to the transfer target.
        status: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// The transfer succeeded; this call ends next (`Ended { reason: Transferred }`).
    Transferred {
        /// The transfer target.
        target: String,
        /// The final status of the call to the target (a 2xx).
        status: u16,
    },
    /// The transfer failed; this call goes on.
    TransferFailed {
        /// The final status of the call to the target (or of the REFER).
        status: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// Periodic media quality (codec, loss, jitter, RTT, MOS).
    Quality(CallQuality),
    /// No RTP from the peer for the configured time.
    RtpTimeout,
    /// A finite capture source (a WAV file played once) has ended.
    CaptureEnded,
    /// A non-fatal media problem (device error, DTMF without a payload type, …).
    MediaWarning(String),
    /// ICE selected the media path (again after a restart or when another pair wins).
    IcePath(crate::nat::ice::IcePathInfo),
    /// ICE found no working path, or consent on the selected one was lost (`no-valid-pair`,
    /// `consent-lost`, ...).
    IceFailed(String),
    /// An ICE restart started (`requested`, `network-changed`).
    IceRestart(String),
    /// The peer does no ICE: plain RTP to its SDP address (`peer-without-ice`).
    IceOff(String),
    /// Video started, stopped, was declined, its first frame, counters, warnings.
    Video(VideoNotice),
    /// The call ended after it was set up, or was cancelled.
    Ended {
        /// Who ended it.
        by: EndedBy,
        /// How.
        reason: EndReason,
    },
    /// The call could not be set up (rejected, authentication, timeout, network); see
    /// [`UaError::rejection`] for busy/declined/unavailable/no-answer.
    Failed(UaError),
}

/// Commands from a [`Call`] handle to its task.
pub(crate) enum CallCommand {
    Hangup,
    Hold(OfferMethod, oneshot::Sender<Result<()>>),
    Resume(OfferMethod, oneshot::Sender<Result<()>>),
    IceRestart(oneshot::Sender<Result<()>>),
    Dtmf(String, oneshot::Sender<Result<()>>),
    Mute(bool),
    Transfer {
        refer_to: String,
        target: String,
        reply: oneshot::Sender<Result<()>>,
    },
    SwitchDevices {
        capture: Option<DeviceSpec>,
        playback: Option<DeviceSpec>,
        reply: oneshot::Sender<Result<()>>,
    },
    SetVideo(bool, oneshot::Sender<Result<()>>),
    SetCamera(Option<VideoSourceSpec>, oneshot::Sender<Result<()>>),
}

/// The dialog of a call as seen from outside its task (for attended transfer).
#[derive(Debug, Clone)]
pub(crate) struct DialogSnapshot {
    pub id: DialogId,
    pub remote_target: Uri,
    pub confirmed: bool,
}

/// State a call's task shares with its handle.
#[derive(Debug)]
pub(crate) struct CallState {
    pub media: MediaInfo,
    pub dialog: Option<DialogSnapshot>,
    pub control: Option<MediaControl>,
    pub quality: CallQuality,
    /// The running video session's control.
    pub video_control: Option<VideoHandle>,
    /// Video counters of stopped sessions (final at the end); `None` before any video.
    pub video_stats: Option<VideoStats>,
}

/// Shared call state.
pub(crate) type SharedState = Arc<Mutex<CallState>>;

pub(crate) fn lock(state: &SharedState) -> MutexGuard<'_, CallState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// A call (placed or accepted): events, hangup, hold, DTMF, transfer, media.
///
/// Dropping it hangs up (BYE or CANCEL) in the background.
#[derive(Debug)]
pub struct Call {
    call_id: String,
    remote: Uri,
    cmd: mpsc::UnboundedSender<CallCommand>,
    events: mpsc::UnboundedReceiver<CallEvent>,
    state: SharedState,
    rtp: Arc<UdpSocket>,
    frames: FrameSender,
    local_frames: FrameSender,
}

impl fmt::Debug for CallCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CallCommand::Hangup => "Hangup",
            CallCommand::Hold(..) => "Hold",
            CallCommand::Resume(..) => "Resume",
            CallCommand::IceRestart(_) => "IceRestart",
            CallCommand::Dtmf(..) => "Dtmf",
            CallCommand::Mute(_) => "Mute",
            CallCommand::Transfer { .. } => "Transfer",
            CallCommand::SwitchDevices { .. } => "SwitchDevices",
            CallCommand::SetVideo(..) => "SetVideo",
            CallCommand::SetCamera(..) => "SetCamera",
        })
    }
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
        lock(&self.state).media.clone()
    }

    /// A live snapshot of the media quality (codec, loss, jitter, RTT, MOS); the final
    /// figures once the call has ended.
    pub fn quality(&self) -> CallQuality {
        let st = lock(&self.state);
        match &st.control {
            Some(c) if c.is_running() => c.quality(),
            _ => st.quality.clone(),
        }
    }

    /// The latest decoded frame of the peer's video (`None` before the first one); the
    /// receiver sees every new frame as it is decoded (older ones are skipped).
    pub fn video_frames(&self) -> FrameReceiver {
        self.frames.subscribe()
    }

    /// The latest frame we send (self view; `None` before the first one or without a camera).
    pub fn local_video_frames(&self) -> FrameReceiver {
        self.local_frames.subscribe()
    }

    /// The call's video counters (live, summed over its video sessions; final after the
    /// end); `None` when the call has had no video.
    pub fn video_stats(&self) -> Option<VideoStats> {
        let st = lock(&self.state);
        match &st.video_control {
            Some(VideoHandle(c)) => Some(
                st.video_stats
                    .clone()
                    .unwrap_or_default()
                    .plus(&VideoStats::from_session(&c.stats())),
            ),
            None => st.video_stats.clone(),
        }
    }

    /// Adds video to the call (`true`: re-INVITE with an `m=video` line, using the call's
    /// video options or the defaults) or removes it (`false`: the video line gets port 0).
    /// Returns once the peer answered; an error when it declined the video (the call goes on
    /// with audio and a [`VideoNotice::Rejected`] is reported).
    pub async fn set_video(&self, on: bool) -> Result<()> {
        self.request(|tx| CallCommand::SetVideo(on, tx)).await
    }

    /// Switches what we send: another source, or `None` to stop sending frames (the video
    /// stream stays). Turning a camera on in a call where we did not send re-offers the video
    /// with us sending.
    pub async fn set_camera(&self, source: Option<VideoSourceSpec>) -> Result<()> {
        self.request(|tx| CallCommand::SetCamera(source, tx)).await
    }

    async fn request(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<()>>) -> CallCommand,
    ) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(make(tx)).map_err(|_| UaError::Closed)?;
        rx.await.map_err(|_| UaError::Closed)?
    }

    /// Restarts ICE (RFC 8445 §9): a re-INVITE with new ICE credentials; returns once the
    /// peer answered it (the new path follows as [`CallEvent::IcePath`]). An error when the
    /// call does no ICE.
    pub async fn ice_restart(&self) -> Result<()> {
        self.request(CallCommand::IceRestart).await
    }

    /// Puts the call on hold (re-INVITE with `sendonly`, or `inactive` when the peer holds
    /// us too); returns once the peer accepted it. A glare (491) is retried per RFC 3261 §14.1.
    pub async fn hold(&self) -> Result<()> {
        self.hold_with(OfferMethod::Invite).await
    }

    /// Takes the call off hold (re-INVITE with `sendrecv`).
    pub async fn resume(&self) -> Result<()> {
        self.resume_with(OfferMethod::Invite).await
    }

    /// [`Call::hold`] with the offer sent in a re-INVITE or an UPDATE (RFC 3311).
    pub async fn hold_with(&self, method: OfferMethod) -> Result<()> {
        self.request(|tx| CallCommand::Hold(method, tx)).await
    }

    /// [`Call::resume`] with the offer sent in a re-INVITE or an UPDATE (RFC 3311).
    pub async fn resume_with(&self, method: OfferMethod) -> Result<()> {
        self.request(|tx| CallCommand::Resume(method, tx)).await
    }

    /// Sends DTMF digits (`0-9`, `*`, `#`, `A-D`): RFC 4733 events in the media when the
    /// peer negotiated telephone-event, else one SIP INFO (`application/dtmf-relay`) per digit.
    /// Returns once the digits are queued (RFC 4733) or all INFOs were answered.
    pub async fn send_dtmf(&self, digits: &str) -> Result<()> {
        if digits.is_empty() {
            return Ok(());
        }
        if let Some(bad) = digits
            .chars()
            .find(|c| tandem_media::dtmf::digit_to_event(*c).is_none())
        {
            return Err(UaError::Config(format!("{bad:?} is not a DTMF digit")));
        }
        let digits = digits.to_string();
        self.request(|tx| CallCommand::Dtmf(digits, tx)).await
    }

    /// Mutes (silence is sent, RTP keeps flowing) or unmutes our audio.
    pub fn set_mute(&self, muted: bool) {
        let _ = self.cmd.send(CallCommand::Mute(muted));
    }

    /// Switches the capture and/or playback device during the call.
    pub async fn switch_devices(
        &self,
        capture: Option<DeviceSpec>,
        playback: Option<DeviceSpec>,
    ) -> Result<()> {
        self.request(|reply| CallCommand::SwitchDevices {
            capture,
            playback,
            reply,
        })
        .await
    }

    /// Blind transfer (RFC 3515, RFC 5589 §6): REFER the peer to `target` with Referred-By.
    /// Returns once the REFER is accepted (202); progress follows as `TransferProgress`
    /// events, then `Transferred` and `Ended { reason: Transferred }` (we hang up after the
    /// 2xx NOTIFY), or `TransferFailed`.
    pub async fn transfer_blind(&self, target: Uri) -> Result<()> {
        let refer_to = format!("<{target}>");
        let target = target.to_string();
        self.request(|reply| CallCommand::Transfer {
            refer_to,
            target,
            reply,
        })
        .await
    }

    /// Attended transfer (RFC 5589 §7): REFER this call's peer to `other`'s peer with a
    /// Replaces naming `other`'s dialog (RFC 3891), so the two peers get connected and both
    /// our calls end. `other` must be answered.
    pub async fn transfer_attended(&self, other: &Call) -> Result<()> {
        let snap = lock(&other.state).dialog.clone();
        let Some(snap) = snap.filter(|s| s.confirmed) else {
            return Err(UaError::Config(
                "the call to transfer to is not answered".into(),
            ));
        };
        let replaces = ReplacesTarget {
            call_id: snap.id.call_id.clone(),
            to_tag: snap.id.remote_tag.clone(),
            from_tag: snap.id.local_tag.clone(),
            early_only: false,
        };
        let mut uri = snap.remote_target.clone();
        uri.headers.clear();
        let target = uri.to_string();
        uri.headers.push((
            "Replaces".to_string(),
            escape_header_value(&replaces.to_string()),
        ));
        let refer_to = format!("<{uri}>");
        self.request(|reply| CallCommand::Transfer {
            refer_to,
            target,
            reply,
        })
        .await
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let _ = self.cmd.send(CallCommand::Hangup);
    }
}
