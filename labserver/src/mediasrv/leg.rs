//! One call of the media server: an INVITE dialog plus a [`MediaSession`] whose SDP answer was
//! negotiated with [`tandem_proto::sdp::answer_offer`] (Opus, PCMA, PCMU, G.722 and
//! telephone-event; plain RTP, SDES-SRTP or DTLS-SRTP, whatever the offer asks for).
//!
//! Life of an incoming [`Leg`]:
//! 1. the media server's dispatcher negotiates the offer and hands the leg, **not yet answered**,
//!    to the service (`voicemail`, `conference::handle`, `ivr::handle`); an unacceptable offer
//!    never gets that far (488);
//! 2. the service calls [`Leg::answer`] (200 OK with our SDP; media starts) or [`Leg::reject`]
//!    (e.g. 404 for an unknown room); dropping an unanswered leg answers 480;
//! 3. while it is up, [`Leg::next_event`] yields [`LegEvent`]s (DTMF from RFC 4733 or SIP INFO,
//!    the caller's BYE as [`LegEvent::Hangup`], RTP timeouts, NOTIFYs, …), and the service
//!    drives the audio: [`Leg::set_devices`] (e.g. a conference mixer's capture/playback pair),
//!    [`Leg::play`] / [`Leg::play_interruptible`] (prompts), [`Leg::set_playback`] (recording),
//!    [`Leg::collect_digits`];
//! 4. [`Leg::hangup`] sends BYE (dropping the leg does too). After [`LegEvent::Hangup`] or
//!    [`Leg::hangup`] the media session has stopped, so a recording device is finished.
//!
//! Our 2xx is retransmitted until the ACK (RFC 3261 §13.3.1.4); an INVITE without SDP gets our
//! offer in the 2xx and its answer from the ACK (media starts silent and is updated then; an ACK
//! without a usable answer ends the call); re-INVITEs and UPDATEs with SDP are answered and
//! applied to the running session; every request the leg sends goes through the proxy.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tandem_media::codec::CodecSpec;
use tandem_media::device::{CaptureDevice, DeviceError, NullCapture, NullPlayback, PlaybackDevice};
use tandem_media::dtmf::parse_dtmf_info;
use tandem_media::session::{
    MediaConfig, MediaControl, MediaEvent, MediaSecurity, MediaSession, MediaUpdate,
};
use tandem_media::srtp::{DtlsRole, SdesCrypto, sdes_answer};
use tandem_net::{Target, TxOutcome};
use tandem_proto::Flow;
use tandem_proto::dialog::Dialog;
use tandem_proto::msg::{HeaderName, Method, NameAddr, Request, Response, Uri};
use tandem_proto::sdp::{
    self, AnswerSecurity, Codec, MediaOffer, NegotiatedAudio, OfferChange, OfferedStream,
    SecurityKind, SessionDescription,
};
use tandem_proto::transaction::TxId;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{DialogInbox, DialogMessage, MediaCtx, ServerRequest, random_tag, response_with_tag};

/// Duration of each DTMF digit the leg sends.
const DTMF_DURATION: Duration = Duration::from_millis(100);
/// How long an in-dialog request we send may wait for its final response.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(32);
/// Sample rate of the default (silent) devices.
const IDLE_RATE: u32 = 16_000;
/// The methods a leg accepts, for `Allow`.
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, NOTIFY";

/// Why a leg operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LegError {
    /// The caller cancelled the INVITE before we answered.
    #[error("the call was cancelled")]
    Cancelled,
    /// The call has ended (BYE, hangup, rejected).
    #[error("the call has ended")]
    Ended,
    /// The leg was already answered (or rejected).
    #[error("the call was already answered")]
    AlreadyAnswered,
    /// The media session could not start or be updated.
    #[error("media: {0}")]
    Media(String),
    /// A request could not be sent or got no final response.
    #[error("signalling: {0}")]
    Signalling(String),
}

/// What happens on a leg, in order.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum LegEvent {
    /// A DTMF digit (`0-9*#A-D`), from RFC 4733 telephone-events or SIP INFO.
    Dtmf(char),
    /// The peer hung up (BYE, CANCEL before the answer, or no ACK for our 2xx). The media has
    /// stopped: recording devices are finished. [`Leg::next_event`] returns `None` afterwards.
    Hangup,
    /// No RTP from the peer for `[mediasrv] rtp_timeout_secs`.
    RtpTimeout,
    /// RTP flows again after an [`LegEvent::RtpTimeout`].
    RtpResumed,
    /// An in-dialog NOTIFY arrived (already answered 200), e.g. REFER progress (`refer`,
    /// `message/sipfrag`).
    Notify {
        /// The Event header's package (`refer`, …).
        event: String,
        /// Content-Type of the body.
        content_type: Option<String>,
        /// The body.
        body: Bytes,
    },
    /// The media security failed (DTLS handshake, SRTP keys): no audio flows.
    MediaFailed(String),
}

/// How a [`Leg::play`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayOutcome {
    /// The source reached its end.
    Finished,
    /// The source was replaced (another play, `set_devices`) or the leg ended first.
    Stopped,
}

/// How a [`Leg::play_interruptible`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayResult {
    /// The prompt played to its end.
    Finished,
    /// The caller pressed a key (the prompt was stopped; the digit is consumed).
    Digit(char),
    /// The call ended.
    Hangup,
}

/// What [`Leg::collect_digits`] gathered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Digits {
    /// The digits, without the terminator.
    pub digits: String,
    /// The terminator key ended the input.
    pub terminated: bool,
    /// The caller hung up while we were waiting.
    pub hangup: bool,
}

/// Resolves when a source given to [`Leg::play`] ends or is replaced.
#[derive(Debug)]
#[must_use = "await it to know when the prompt has played"]
pub struct PlayDone {
    rx: Option<oneshot::Receiver<()>>,
}

impl Future for PlayDone {
    type Output = PlayOutcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<PlayOutcome> {
        match self.rx.as_mut() {
            None => Poll::Ready(PlayOutcome::Stopped),
            Some(rx) => match Pin::new(rx).poll(cx) {
                Poll::Ready(Ok(())) => Poll::Ready(PlayOutcome::Finished),
                Poll::Ready(Err(_)) => Poll::Ready(PlayOutcome::Stopped),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// A capture device that tells a [`PlayDone`] when it runs out.
struct TrackedCapture {
    inner: Box<dyn CaptureDevice>,
    done: Option<oneshot::Sender<()>>,
}

impl CaptureDevice for TrackedCapture {
    fn rate(&self) -> u32 {
        self.inner.rate()
    }

    fn read_frame(&mut self, out: &mut [i16]) -> Result<bool, DeviceError> {
        let more = self.inner.read_frame(out);
        if !matches!(more, Ok(true))
            && let Some(done) = self.done.take()
        {
            let _ = done.send(());
        }
        more
    }
}

/// The codecs the media server offers and answers with, in preference order.
pub fn supported_codecs() -> Vec<Codec> {
    let mut all = sdp::default_audio_codecs();
    let events = all
        .iter()
        .position(Codec::is_telephone_event)
        .unwrap_or(all.len());
    all.insert(events, Codec::g722());
    all.into_iter()
        .filter(|c| {
            c.is_telephone_event()
                || codec_spec(
                    &c.name,
                    c.clock_rate,
                    c.channels,
                    c.payload_type,
                    c.fmtp.as_deref(),
                )
                .is_some()
        })
        .collect()
}

fn codec_spec(
    name: &str,
    rate: u32,
    channels: u8,
    pt: u8,
    fmtp: Option<&str>,
) -> Option<CodecSpec> {
    CodecSpec::from_rtpmap(name, rate, channels, pt, fmtp)
}

fn negotiated_spec(c: &sdp::NegotiatedCodec) -> Option<CodecSpec> {
    codec_spec(
        &c.name,
        c.clock_rate,
        c.channels,
        c.payload_type,
        c.fmtp.as_deref(),
    )
}

/// The SDP side of a leg: its sockets, our last description and the agreed stream.
struct SdpState {
    ip: IpAddr,
    rtp: Arc<UdpSocket>,
    rtcp: Option<Arc<UdpSocket>>,
    session_id: u64,
    version: u64,
    local: Option<SessionDescription>,
    remote: Option<SessionDescription>,
    negotiated: Option<NegotiatedAudio>,
    keys: Option<(SdesCrypto, SdesCrypto)>,
    dtls: Option<(DtlsRole, String)>,
    /// Our offer in a 2xx to an INVITE without SDP, waiting for the answer in the ACK.
    pending_offer: Option<SessionDescription>,
}

/// Binds an RTP socket on an even port with its RTCP port above it when possible.
fn bind_rtp(ip: IpAddr) -> std::io::Result<(Arc<UdpSocket>, Option<Arc<UdpSocket>>)> {
    let bind = |port: u16| -> std::io::Result<UdpSocket> {
        let s = std::net::UdpSocket::bind(SocketAddr::new(ip, port))?;
        s.set_nonblocking(true)?;
        UdpSocket::from_std(s)
    };
    for _ in 0..16 {
        let rtp = bind(0)?;
        let port = rtp.local_addr()?.port();
        if port % 2 != 0 || port == u16::MAX {
            continue;
        }
        if let Ok(rtcp) = bind(port + 1) {
            return Ok((Arc::new(rtp), Some(Arc::new(rtcp))));
        }
    }
    let rtp = bind(0)?;
    let rtcp = bind(0).ok().map(Arc::new);
    Ok((Arc::new(rtp), rtcp))
}

impl SdpState {
    fn new(ip: IpAddr) -> std::io::Result<SdpState> {
        let (rtp, rtcp) = bind_rtp(ip)?;
        Ok(SdpState {
            ip,
            rtp,
            rtcp,
            session_id: rand::random::<u32>().into(),
            version: 0,
            local: None,
            remote: None,
            negotiated: None,
            keys: None,
            dtls: None,
            pending_offer: None,
        })
    }

    /// The local port of our RTP socket.
    fn rtp_port(&self) -> Result<u16, (u16, String)> {
        self.rtp
            .local_addr()
            .map(|a| a.port())
            .map_err(|e| (500, format!("RTP socket: {e}")))
    }

    fn local_offer(&self) -> Result<MediaOffer, (u16, String)> {
        let mut offer = MediaOffer::new(supported_codecs());
        offer.ptime = Some(20);
        let rtp_port = self.rtp_port()?;
        offer.rtcp_port = match &self.rtcp {
            Some(s) => s
                .local_addr()
                .ok()
                .map(|a| a.port())
                .filter(|p| *p != rtp_port.wrapping_add(1)),
            None => None,
        };
        Ok(offer)
    }

    /// Our offer for an INVITE that came without one (RFC 3261 §13.2.1: the answer comes in
    /// the ACK): plain RTP/AVP with our codecs.
    fn offer(&mut self) -> Result<SessionDescription, (u16, String)> {
        let local = self.local_offer()?;
        let port = self.rtp_port()?;
        let offer = sdp::build_offer(self.session_id, self.version, self.ip, port, &local);
        self.local = Some(offer.clone());
        self.pending_offer = Some(offer.clone());
        Ok(offer)
    }

    /// Takes the answer (from the ACK) to our offer.
    fn take_answer(&mut self, body: &[u8]) -> Result<(), String> {
        let offer = self.pending_offer.take().ok_or("no offer is pending")?;
        let answer = SessionDescription::parse_bytes(body)
            .map_err(|e| format!("unusable SDP answer: {e}"))?;
        let neg =
            sdp::accept_answer(&offer, &answer).map_err(|e| format!("unacceptable answer: {e}"))?;
        if neg.security != SecurityKind::Plain {
            return Err("a secure answer to a plain offer".into());
        }
        if negotiated_spec(&neg.send_codec).is_none() {
            return Err(format!("codec {} is not supported", neg.send_codec.name));
        }
        self.remote = Some(answer);
        self.negotiated = Some(neg);
        Ok(())
    }

    /// A session that sends nothing until the answer arrives (then [`SdpState::update`]).
    fn start_idle(
        &self,
        ctx: &MediaCtx,
        capture: Box<dyn CaptureDevice>,
        playback: Box<dyn PlaybackDevice>,
    ) -> Result<(MediaSession, mpsc::UnboundedReceiver<MediaEvent>), String> {
        let codec = CodecSpec::from_rtpmap("PCMU", 8000, 1, 0, None).ok_or("no PCMU codec")?;
        let mut config = MediaConfig::new(
            self.rtp.clone(),
            SocketAddr::new(self.ip, 9),
            codec,
            capture,
            playback,
        );
        config.direction = tandem_proto::sdp::Direction::Inactive;
        config.rtp_timeout = Duration::from_secs(ctx.config().mediasrv.rtp_timeout_secs.max(1));
        MediaSession::start(config).map_err(|e| e.to_string())
    }

    /// Answers an offer (initial or re-offer): 400 for an unparsable one, 488 for one we
    /// cannot accept.
    fn answer(&mut self, body: &[u8], ctx: &MediaCtx) -> Result<SessionDescription, (u16, String)> {
        let offer = SessionDescription::parse_bytes(body)
            .map_err(|e| (e.status_code(), format!("unusable SDP offer: {e}")))?;
        if let (Some(prev), Some(local)) = (&self.remote, &self.local)
            && sdp::classify_offer(prev, &offer) == OfferChange::Unchanged
        {
            return Ok(local.clone());
        }
        let cert_fp = ctx.dtls_cert().map(|c| c.fingerprint());
        let current_keys = self.keys.clone();
        let mut chosen_keys = None;
        let mut chosen_dtls = None;
        let chooser = |s: &OfferedStream<'_>| -> Option<AnswerSecurity> {
            chosen_keys = None;
            chosen_dtls = None;
            if s.profile.is_dtls() {
                let fp = s.fingerprint?;
                let ours = cert_fp.clone()?;
                let setup = sdp::setup_answer(s.setup);
                let role = if setup == "active" {
                    DtlsRole::Client
                } else {
                    DtlsRole::Server
                };
                chosen_dtls = Some((role, fp.to_owned()));
                return Some(AnswerSecurity::Dtls {
                    fingerprint: ours,
                    setup: setup.to_owned(),
                });
            }
            if !s.crypto.is_empty() {
                let offered = SdesCrypto::parse_all(&s.crypto);
                let kept = current_keys.as_ref().and_then(|(local, remote)| {
                    offered
                        .iter()
                        .find(|c| *c == remote)
                        .map(|r| (r.clone(), local.clone()))
                });
                if let Some((remote, local)) = kept.or_else(|| sdes_answer(&offered)) {
                    let value = local.to_attribute_value();
                    chosen_keys = Some((local, remote));
                    return Some(AnswerSecurity::Sdes(value));
                }
            }
            s.profile.is_plain().then_some(AnswerSecurity::Plain)
        };
        let local = self.local_offer()?;
        let port = self.rtp_port()?;
        let version = if self.local.is_some() {
            self.version + 1
        } else {
            self.version
        };
        let (answer, neg) = sdp::answer_offer(
            &offer,
            &local,
            self.session_id,
            version,
            self.ip,
            port,
            chooser,
        )
        .map_err(|e| (e.status_code(), format!("unacceptable SDP offer: {e}")))?;
        if negotiated_spec(&neg.send_codec).is_none() {
            return Err((
                488,
                format!("codec {} is not supported", neg.send_codec.name),
            ));
        }
        self.version = version;
        self.keys = chosen_keys;
        self.dtls = chosen_dtls;
        self.remote = Some(offer);
        self.local = Some(answer.clone());
        self.negotiated = Some(neg);
        Ok(answer)
    }

    fn security(&self, ctx: &MediaCtx) -> Result<MediaSecurity, String> {
        let neg = self.negotiated.as_ref().ok_or("no negotiated media")?;
        Ok(match neg.security {
            SecurityKind::Sdes => {
                let (local, remote) = self.keys.clone().ok_or("SRTP without keys")?;
                MediaSecurity::Sdes { local, remote }
            }
            SecurityKind::Dtls => {
                let (role, remote_fingerprint) =
                    self.dtls.clone().ok_or("DTLS without a fingerprint")?;
                let cert = ctx.dtls_cert().cloned().ok_or("no DTLS certificate")?;
                MediaSecurity::Dtls {
                    role,
                    cert,
                    remote_fingerprint,
                }
            }
            _ => MediaSecurity::Plain,
        })
    }

    fn ptime(neg: &NegotiatedAudio) -> Duration {
        let ms = neg
            .ptime
            .filter(|p| matches!(p, 10 | 20 | 30 | 40 | 60))
            .unwrap_or(20);
        Duration::from_millis(u64::from(ms))
    }

    /// Starts the media session on the negotiated stream.
    fn start(
        &self,
        ctx: &MediaCtx,
        capture: Box<dyn CaptureDevice>,
        playback: Box<dyn PlaybackDevice>,
    ) -> Result<(MediaSession, mpsc::UnboundedReceiver<MediaEvent>), String> {
        let neg = self.negotiated.as_ref().ok_or("no negotiated media")?;
        let send_codec = negotiated_spec(&neg.send_codec)
            .ok_or_else(|| format!("codec {} is not supported", neg.send_codec.name))?;
        let remote_rtp = neg
            .remote_rtp
            .unwrap_or_else(|| SocketAddr::new(self.ip, 9));
        let mut config =
            MediaConfig::new(self.rtp.clone(), remote_rtp, send_codec, capture, playback);
        config.rtcp_socket = if neg.rtcp_mux {
            None
        } else {
            self.rtcp.clone().map(Into::into)
        };
        config.remote_rtcp = neg.remote_rtcp;
        config.rtcp_mux = neg.rtcp_mux;
        config.recv_codecs = neg.recv_codecs.iter().filter_map(negotiated_spec).collect();
        config.send_dtmf = neg.send_dtmf;
        config.recv_dtmf = neg.recv_dtmf.clone();
        config.ptime = Self::ptime(neg);
        config.direction = neg.direction;
        config.security = self.security(ctx)?;
        config.rtp_timeout = Duration::from_secs(ctx.config().mediasrv.rtp_timeout_secs.max(1));
        MediaSession::start(config).map_err(|e| e.to_string())
    }

    /// The update for a running session after a re-offer.
    fn update(&self, ctx: &MediaCtx) -> Result<MediaUpdate, String> {
        let neg = self.negotiated.as_ref().ok_or("no negotiated media")?;
        let send_codec = negotiated_spec(&neg.send_codec)
            .ok_or_else(|| format!("codec {} is not supported", neg.send_codec.name))?;
        Ok(MediaUpdate {
            remote_rtp: neg.remote_rtp,
            remote_rtcp: neg.remote_rtcp,
            rtcp_mux: Some(neg.rtcp_mux),
            send_codec: Some(send_codec),
            recv_codecs: Some(neg.recv_codecs.iter().filter_map(negotiated_spec).collect()),
            send_dtmf: Some(neg.send_dtmf),
            recv_dtmf: Some(neg.recv_dtmf.clone()),
            ptime: Some(Self::ptime(neg)),
            direction: Some(neg.direction),
            security: Some(self.security(ctx)?),
        })
    }
}

/// An incoming INVITE not answered yet.
struct Offered {
    tx: TxId,
    request: Request,
    inbox: DialogInbox,
    sdp: SdpState,
    /// Our SDP for the 2xx: the answer, or our offer when the INVITE had none.
    answer: SessionDescription,
    /// The INVITE had no offer: ours is in the 2xx, the answer comes in the ACK.
    late_offer: bool,
    /// Devices set before the answer (behind a mutex so that a [`Leg`] is `Sync`).
    devices: std::sync::Mutex<PendingDevices>,
}

/// Devices set before the answer.
#[derive(Default)]
struct PendingDevices {
    capture: Option<Box<dyn CaptureDevice>>,
    playback: Option<Box<dyn PlaybackDevice>>,
}

/// A leg whose task runs.
struct Active {
    cmd: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedReceiver<LegEvent>,
    control: MediaControl,
}

enum State {
    Offered(Box<Offered>),
    Active(Active),
    Ended,
}

/// Commands from the [`Leg`] handle to its task.
enum Command {
    Request {
        method: Method,
        headers: Vec<(HeaderName, String)>,
        content_type: Option<String>,
        body: Bytes,
        reply: oneshot::Sender<Result<Response, LegError>>,
    },
    Hangup(oneshot::Sender<()>),
}

/// One call of the media server (see the [module docs](self)).
pub struct Leg {
    ctx: Arc<MediaCtx>,
    caller: Uri,
    caller_name: Option<String>,
    target: Uri,
    to: Uri,
    call_id: String,
    local_tag: String,
    state: State,
}

impl std::fmt::Debug for Leg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leg")
            .field("caller", &self.caller.to_string())
            .field("target", &self.target.to_string())
            .field("call_id", &self.call_id)
            .field(
                "state",
                &match self.state {
                    State::Offered(_) => "offered",
                    State::Active(_) => "active",
                    State::Ended => "ended",
                },
            )
            .finish()
    }
}

impl Leg {
    /// Negotiates an incoming INVITE's offer and registers its dialog; the error is the status
    /// and reason to answer with.
    pub(crate) fn incoming(
        ctx: Arc<MediaCtx>,
        tx: TxId,
        request: Request,
        _flow: Flow,
    ) -> Result<Leg, (u16, String)> {
        let from = request
            .headers
            .from()
            .map_err(|e| (400, format!("bad From: {e}")))?;
        let to = request
            .headers
            .to()
            .map_err(|e| (400, format!("bad To: {e}")))?;
        let call_id = request
            .headers
            .call_id()
            .map_err(|e| (400, format!("bad Call-ID: {e}")))?
            .to_owned();
        let mut sdp =
            SdpState::new(ctx.media_ip()).map_err(|e| (500, format!("no RTP socket: {e}")))?;
        let late_offer = request.body.is_empty();
        let answer = if late_offer {
            sdp.offer()?
        } else {
            sdp.answer(&request.body, &ctx)?
        };
        let local_tag = random_tag();
        let inbox = ctx.register_dialog(&call_id, &local_tag);
        inbox.watch_invite(tx);
        Ok(Leg {
            caller_name: from.display.clone(),
            caller: from.uri.clone(),
            target: request.uri.clone(),
            to: to.uri.clone(),
            call_id,
            local_tag,
            state: State::Offered(Box::new(Offered {
                tx,
                request,
                inbox,
                sdp,
                answer,
                late_offer,
                devices: std::sync::Mutex::new(PendingDevices::default()),
            })),
            ctx,
        })
    }

    /// The caller: the From URI of the INVITE.
    pub fn caller(&self) -> &Uri {
        &self.caller
    }

    /// The caller's display name, if the From header had one.
    pub fn caller_name(&self) -> Option<&str> {
        self.caller_name.as_deref()
    }

    /// The Request-URI of the INVITE (e.g. `sip:conf-lab@domain`).
    pub fn target(&self) -> &Uri {
        &self.target
    }

    /// The To URI of the INVITE (the originally called address).
    pub fn to(&self) -> &Uri {
        &self.to
    }

    /// The dialog's Call-ID.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The shared media server context.
    pub fn ctx(&self) -> &Arc<MediaCtx> {
        &self.ctx
    }

    /// True once answered and until the call ends.
    pub fn is_active(&self) -> bool {
        matches!(self.state, State::Active(_))
    }

    /// True once the call has ended (or was rejected).
    pub fn is_ended(&self) -> bool {
        matches!(self.state, State::Ended)
    }

    /// The running media session's controls (quality, receive statistics, mute), once answered.
    pub fn media(&self) -> Option<&MediaControl> {
        match &self.state {
            State::Active(a) => Some(&a.control),
            _ => None,
        }
    }

    /// Answers the INVITE: 200 OK with our SDP answer, media starts with the devices given so
    /// far (silence and a discarding sink otherwise). Fails with [`LegError::Cancelled`] when the
    /// caller cancelled meanwhile.
    pub async fn answer(&mut self) -> Result<(), LegError> {
        let offered = match std::mem::replace(&mut self.state, State::Ended) {
            State::Offered(o) => o,
            other => {
                let ended = matches!(other, State::Ended);
                self.state = other;
                return Err(if ended {
                    LegError::Ended
                } else {
                    LegError::AlreadyAnswered
                });
            }
        };
        let mut o = *offered;
        while let Some(msg) = o.inbox.try_recv() {
            if matches!(msg, DialogMessage::Cancel) {
                self.finish_cancelled(&o);
                return Err(LegError::Cancelled);
            }
        }
        let pending = std::mem::take(
            &mut *o
                .devices
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let capture = pending
            .capture
            .unwrap_or_else(|| Box::new(NullCapture::new(IDLE_RATE)));
        let playback = pending
            .playback
            .unwrap_or_else(|| Box::new(NullPlayback::new(IDLE_RATE)));
        let started = if o.late_offer {
            o.sdp.start_idle(&self.ctx, capture, playback)
        } else {
            o.sdp.start(&self.ctx, capture, playback)
        };
        let (session, media_events) = match started {
            Ok(s) => s,
            Err(e) => {
                let r = response_with_tag(&o.request, 500, "Media Failure", &self.local_tag);
                self.ctx.endpoint().respond(o.tx, r);
                o.inbox.invite_done(o.tx);
                return Err(LegError::Media(e));
            }
        };
        let mut dialog = Dialog::from_uas(&o.request, &self.local_tag)
            .map_err(|e| LegError::Signalling(e.to_string()))?;
        let contact = self
            .ctx
            .contact(self.target.user.as_deref().unwrap_or("mediasrv"));
        dialog.local_contact = Some(NameAddr::new(contact.clone()));
        dialog.confirm();
        let mut ok = response_with_tag(&o.request, 200, "OK", &self.local_tag);
        for rr in o.request.headers.get_all(&HeaderName::RecordRoute) {
            ok.headers.push(HeaderName::RecordRoute, rr.clone());
        }
        ok.headers.push(HeaderName::Contact, format!("<{contact}>"));
        ok.headers.push(HeaderName::Allow, ALLOW);
        ok.headers.push(HeaderName::ContentType, "application/sdp");
        ok.body = Bytes::from(o.answer.to_string());
        let cseq = o.request.headers.cseq().map(|c| c.seq).unwrap_or(1);
        self.ctx.endpoint().respond(o.tx, ok.clone());
        o.inbox.invite_done(o.tx);
        let control = session.control();
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let t1 = Duration::from_millis(500);
        let task = LegTask {
            ctx: Arc::clone(&self.ctx),
            dialog,
            sdp: o.sdp,
            session: Some(session),
            media_events,
            inbox: o.inbox,
            events: ev_tx,
            awaiting_answer: o.late_offer,
            pending: Some(Pending2xx {
                tx: o.tx,
                response: ok,
                cseq,
                interval: t1,
                next: Instant::now() + t1,
                give_up: Instant::now() + t1 * 64,
            }),
        };
        tokio::spawn(task.run(cmd_rx));
        self.state = State::Active(Active {
            cmd: cmd_tx,
            events: ev_rx,
            control,
        });
        Ok(())
    }

    fn finish_cancelled(&mut self, o: &Offered) {
        let r = response_with_tag(&o.request, 487, "Request Terminated", &self.local_tag);
        self.ctx.endpoint().respond(o.tx, r);
        o.inbox.invite_done(o.tx);
        self.state = State::Ended;
    }

    /// Rejects the unanswered INVITE with `status` (≥ 300) and `reason`; ends the leg.
    pub fn reject(&mut self, status: u16, reason: &str) {
        if let State::Offered(o) = std::mem::replace(&mut self.state, State::Ended) {
            let status = if (300..700).contains(&status) {
                status
            } else {
                500
            };
            let r = response_with_tag(&o.request, status, reason, &self.local_tag);
            self.ctx.endpoint().respond(o.tx, r);
            o.inbox.invite_done(o.tx);
        }
    }

    /// The next event; `None` once the call has ended (after [`LegEvent::Hangup`] or
    /// [`Leg::hangup`]). Before the answer only a CANCEL can happen ([`LegEvent::Hangup`]).
    pub async fn next_event(&mut self) -> Option<LegEvent> {
        match &mut self.state {
            State::Ended => None,
            State::Offered(o) => loop {
                match o.inbox.recv().await {
                    Some(DialogMessage::Cancel) | None => {
                        if let State::Offered(o) = std::mem::replace(&mut self.state, State::Ended)
                        {
                            self.finish_cancelled(&o);
                        }
                        return Some(LegEvent::Hangup);
                    }
                    Some(DialogMessage::Request(req)) => {
                        let r = response_with_tag(&req.request, 481, "Not Yet", &random_tag());
                        self.ctx.endpoint().respond(req.tx, r);
                    }
                    Some(_) => {}
                }
            },
            State::Active(a) => match a.events.recv().await {
                Some(LegEvent::Hangup) | None => {
                    self.state = State::Ended;
                    Some(LegEvent::Hangup)
                }
                Some(ev) => Some(ev),
            },
        }
    }

    /// Replaces both devices: `capture` is what the caller hears, `playback` receives what the
    /// caller says (decoded, at the device's rate). Before the answer they are kept for it.
    pub fn set_devices(
        &mut self,
        capture: Box<dyn CaptureDevice>,
        playback: Box<dyn PlaybackDevice>,
    ) {
        self.switch(Some(capture), Some(playback));
    }

    /// Replaces what the caller hears.
    pub fn set_capture(&mut self, capture: Box<dyn CaptureDevice>) {
        self.switch(Some(capture), None);
    }

    /// Replaces where the caller's audio goes (the previous device is finished).
    pub fn set_playback(&mut self, playback: Box<dyn PlaybackDevice>) {
        self.switch(None, Some(playback));
    }

    fn switch(
        &mut self,
        capture: Option<Box<dyn CaptureDevice>>,
        playback: Option<Box<dyn PlaybackDevice>>,
    ) {
        match &mut self.state {
            State::Offered(o) => {
                let mut pending = o
                    .devices
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if capture.is_some() {
                    pending.capture = capture;
                }
                if let Some(p) = playback
                    && let Some(mut old) = pending.playback.replace(p)
                {
                    let _ = old.finish();
                }
            }
            State::Active(a) => a.control.switch_devices(capture, playback),
            State::Ended => {
                if let Some(mut p) = playback {
                    let _ = p.finish();
                }
            }
        }
    }

    /// Plays `source` to the caller (replacing what it heard); the returned [`PlayDone`]
    /// resolves when the source ends ([`PlayOutcome::Finished`]) or is replaced or the call ends
    /// ([`PlayOutcome::Stopped`]). Silence follows the end of the source.
    pub fn play(&mut self, source: Box<dyn CaptureDevice>) -> PlayDone {
        if self.is_ended() {
            return PlayDone { rx: None };
        }
        let (tx, rx) = oneshot::channel();
        self.set_capture(Box::new(TrackedCapture {
            inner: source,
            done: Some(tx),
        }));
        PlayDone { rx: Some(rx) }
    }

    /// Stops whatever is playing (silence).
    pub fn stop_playing(&mut self) {
        if !self.is_ended() {
            self.set_capture(Box::new(NullCapture::new(IDLE_RATE)));
        }
    }

    /// Plays `source` until it ends, a key is pressed (the prompt stops, the digit is returned)
    /// or the call ends. Other events (RTP timeouts, NOTIFYs) are dropped meanwhile.
    pub async fn play_interruptible(&mut self, source: Box<dyn CaptureDevice>) -> PlayResult {
        let mut done = self.play(source);
        loop {
            tokio::select! {
                outcome = &mut done => {
                    return match outcome {
                        PlayOutcome::Finished => PlayResult::Finished,
                        PlayOutcome::Stopped if self.is_ended() => PlayResult::Hangup,
                        PlayOutcome::Stopped => PlayResult::Finished,
                    };
                }
                ev = self.next_event() => match ev {
                    Some(LegEvent::Dtmf(d)) => {
                        self.stop_playing();
                        return PlayResult::Digit(d);
                    }
                    Some(LegEvent::Hangup) | None => return PlayResult::Hangup,
                    Some(_) => {}
                }
            }
        }
    }

    /// Collects up to `max` digits: ends at `terminator` (not included), after `first` without
    /// any key, after `between` without a further key, or when the caller hangs up.
    pub async fn collect_digits(
        &mut self,
        max: usize,
        terminator: Option<char>,
        first: Duration,
        between: Duration,
    ) -> Digits {
        self.collect_more(String::new(), max, terminator, first, between)
            .await
    }

    /// Like [`Leg::collect_digits`], starting with `already` (e.g. the key that interrupted a
    /// prompt).
    pub async fn collect_more(
        &mut self,
        already: String,
        max: usize,
        terminator: Option<char>,
        first: Duration,
        between: Duration,
    ) -> Digits {
        let mut out = Digits {
            digits: String::new(),
            ..Digits::default()
        };
        for d in already.chars() {
            if Some(d) == terminator {
                out.terminated = true;
                return out;
            }
            out.digits.push(d);
        }
        while out.digits.len() < max {
            let wait = if out.digits.is_empty() {
                first
            } else {
                between
            };
            let deadline = Instant::now() + wait;
            loop {
                match tokio::time::timeout_at(deadline, self.next_event()).await {
                    Err(_) => return out,
                    Ok(Some(LegEvent::Dtmf(d))) => {
                        if Some(d) == terminator {
                            out.terminated = true;
                            return out;
                        }
                        out.digits.push(d);
                        break;
                    }
                    Ok(Some(LegEvent::Hangup)) | Ok(None) => {
                        out.hangup = true;
                        return out;
                    }
                    Ok(Some(_)) => {}
                }
            }
        }
        out
    }

    /// Sends RFC 4733 digits to the caller.
    pub fn send_dtmf(&self, digits: &str) {
        if let State::Active(a) = &self.state {
            a.control.send_dtmf(digits, DTMF_DURATION);
        }
    }

    /// Mutes (encoded silence) or unmutes what the caller hears.
    pub fn set_mute(&self, muted: bool) {
        if let State::Active(a) = &self.state {
            a.control.set_mute(muted);
        }
    }

    /// Sends an in-dialog request (`REFER`, `INFO`, `NOTIFY`, …) with extra headers and an
    /// optional body, and waits for its final response.
    pub async fn request(
        &self,
        method: Method,
        headers: Vec<(HeaderName, String)>,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<Response, LegError> {
        let State::Active(a) = &self.state else {
            return Err(LegError::Ended);
        };
        let (tx, rx) = oneshot::channel();
        a.cmd
            .send(Command::Request {
                method,
                headers,
                content_type: content_type.map(str::to_owned),
                body,
                reply: tx,
            })
            .map_err(|_| LegError::Ended)?;
        rx.await.map_err(|_| LegError::Ended)?
    }

    /// Ends the call: BYE (or 480 when not answered yet); the media session has stopped when
    /// this returns, so recording devices are finished.
    pub async fn hangup(&mut self) {
        match std::mem::replace(&mut self.state, State::Ended) {
            State::Offered(o) => {
                let r =
                    response_with_tag(&o.request, 480, "Temporarily Unavailable", &self.local_tag);
                self.ctx.endpoint().respond(o.tx, r);
                o.inbox.invite_done(o.tx);
            }
            State::Active(a) => {
                let (tx, rx) = oneshot::channel();
                if a.cmd.send(Command::Hangup(tx)).is_ok() {
                    let _ = rx.await;
                }
            }
            State::Ended => {}
        }
    }
}

impl Drop for Leg {
    fn drop(&mut self) {
        if let State::Offered(o) = &self.state {
            let r = response_with_tag(&o.request, 480, "Temporarily Unavailable", &self.local_tag);
            self.ctx.endpoint().respond(o.tx, r);
            o.inbox.invite_done(o.tx);
        }
        // An active leg's task sees its command channel close and sends BYE.
    }
}

/// Our 2xx to an INVITE, retransmitted until its ACK.
struct Pending2xx {
    tx: TxId,
    response: Response,
    cseq: u32,
    interval: Duration,
    next: Instant,
    give_up: Instant,
}

/// The task behind an answered [`Leg`].
struct LegTask {
    ctx: Arc<MediaCtx>,
    dialog: Dialog,
    sdp: SdpState,
    session: Option<MediaSession>,
    media_events: mpsc::UnboundedReceiver<MediaEvent>,
    inbox: DialogInbox,
    events: mpsc::UnboundedSender<LegEvent>,
    pending: Option<Pending2xx>,
    /// Our 2xx carried an offer: the ACK must bring the answer.
    awaiting_answer: bool,
}

/// Why the task loop ended.
enum End {
    /// The peer ended the call (BYE, no ACK).
    Remote,
    /// We hang up; tell the waiter once the media has stopped.
    Local(Option<oneshot::Sender<()>>),
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl LegTask {
    async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<Command>) {
        let mut closing = self.ctx.closing();
        let end = loop {
            let retransmit_at = self.pending.as_ref().map(|p| p.next.min(p.give_up));
            if *closing.borrow_and_update() {
                break End::Local(None);
            }
            tokio::select! {
                _ = closing.changed() => {}
                cmd = cmds.recv() => match cmd {
                    None => break End::Local(None),
                    Some(Command::Hangup(done)) => break End::Local(Some(done)),
                    Some(Command::Request { method, headers, content_type, body, reply }) => {
                        self.send_request(method, headers, content_type, body, reply);
                    }
                },
                msg = self.inbox.recv() => match msg {
                    None => break End::Local(None),
                    Some(DialogMessage::Ack(ack)) => {
                        if !self.on_ack(&ack) {
                            break End::Local(None);
                        }
                    }
                    Some(DialogMessage::Cancel) => {}
                    Some(DialogMessage::Request(req)) => {
                        if self.on_request(req) {
                            break End::Remote;
                        }
                    }
                },
                ev = self.media_events.recv(), if self.session.is_some() => match ev {
                    None => self.session = None,
                    Some(ev) => self.on_media(ev),
                },
                _ = sleep_until_opt(retransmit_at) => {
                    if self.retransmit() {
                        tracing::info!(call_id = %self.dialog.id.call_id, "no ACK for our 2xx: hanging up");
                        self.send_bye();
                        break End::Remote;
                    }
                }
            }
        };
        if matches!(end, End::Local(_)) {
            self.send_bye();
        }
        if let Some(session) = self.session.take() {
            session.stop().await;
        }
        match end {
            End::Remote => {
                let _ = self.events.send(LegEvent::Hangup);
            }
            End::Local(Some(done)) => {
                let _ = done.send(());
            }
            End::Local(None) => {}
        }
    }

    /// True when the retransmissions are over (no ACK came).
    fn retransmit(&mut self) -> bool {
        let Some(p) = self.pending.as_mut() else {
            return false;
        };
        let now = Instant::now();
        if now >= p.give_up {
            self.pending = None;
            return true;
        }
        self.ctx.endpoint().respond(p.tx, p.response.clone());
        p.interval = (p.interval * 2).min(Duration::from_secs(4));
        p.next = now + p.interval;
        false
    }

    /// Handles the ACK of our 2xx; false when the call cannot go on (the answer our late
    /// offer needed is missing or unusable: we hang up, RFC 3261 §13.2.1).
    fn on_ack(&mut self, ack: &Request) -> bool {
        let seq = ack.headers.cseq().map(|c| c.seq).ok();
        if self.pending.as_ref().is_none_or(|p| Some(p.cseq) != seq) {
            return true;
        }
        self.pending = None;
        if !self.awaiting_answer {
            return true;
        }
        self.awaiting_answer = false;
        let applied = self
            .sdp
            .take_answer(&ack.body)
            .and_then(|()| self.sdp.update(&self.ctx));
        match applied {
            Ok(update) => {
                if let Some(s) = &self.session {
                    s.update(update);
                }
                true
            }
            Err(e) => {
                tracing::info!(call_id = %self.dialog.id.call_id, error = %e, "no usable answer in the ACK: hanging up");
                false
            }
        }
    }

    fn respond(&self, req: &ServerRequest, status: u16, reason: &str) {
        let r = response_with_tag(&req.request, status, reason, &self.dialog.id.local_tag);
        self.ctx.endpoint().respond(req.tx, r);
    }

    /// Handles an in-dialog request; true when it ended the call.
    fn on_request(&mut self, req: ServerRequest) -> bool {
        if let Err(e) = self.dialog.check_request(&req.request) {
            let status = match e {
                tandem_proto::dialog::DialogError::CSeqOutOfOrder { .. } => 500,
                _ => 481,
            };
            self.respond(&req, status, "Bad In-Dialog Request");
            return false;
        }
        match req.request.method {
            Method::Bye => {
                self.respond(&req, 200, "OK");
                self.dialog.terminate();
                true
            }
            Method::Invite | Method::Update => {
                self.on_offer(&req);
                false
            }
            Method::Info => {
                let ct = req.request.headers.content_type().unwrap_or("");
                match parse_dtmf_info(ct, &req.request.body) {
                    Some((digit, _)) => {
                        self.respond(&req, 200, "OK");
                        let _ = self.events.send(LegEvent::Dtmf(digit));
                    }
                    None if req.request.body.is_empty() => self.respond(&req, 200, "OK"),
                    None => self.respond(&req, 415, "Unsupported Media Type"),
                }
                false
            }
            Method::Options => {
                let mut r = response_with_tag(&req.request, 200, "OK", &self.dialog.id.local_tag);
                r.headers.push(HeaderName::Allow, ALLOW);
                self.ctx.endpoint().respond(req.tx, r);
                false
            }
            Method::Notify => {
                self.respond(&req, 200, "OK");
                let event = req
                    .request
                    .headers
                    .get_str(&HeaderName::Event)
                    .map(|e| e.split(';').next().unwrap_or("").trim().to_owned())
                    .unwrap_or_default();
                let _ = self.events.send(LegEvent::Notify {
                    event,
                    content_type: req.request.headers.content_type().map(str::to_owned),
                    body: req.request.body.clone(),
                });
                false
            }
            _ => {
                let mut r = response_with_tag(
                    &req.request,
                    405,
                    "Method Not Allowed",
                    &self.dialog.id.local_tag,
                );
                r.headers.push(HeaderName::Allow, ALLOW);
                self.ctx.endpoint().respond(req.tx, r);
                false
            }
        }
    }

    /// A re-INVITE or UPDATE: answer its offer (or repeat our description) and apply it.
    fn on_offer(&mut self, req: &ServerRequest) {
        let is_invite = req.request.method == Method::Invite;
        if is_invite && self.pending.is_some() {
            let mut r = response_with_tag(
                &req.request,
                500,
                "Previous 2xx Not Acknowledged",
                &self.dialog.id.local_tag,
            );
            r.headers.push(HeaderName::RetryAfter, "1");
            self.ctx.endpoint().respond(req.tx, r);
            return;
        }
        let body = if req.request.body.is_empty() {
            match &self.sdp.local {
                Some(local) if !is_invite => {
                    // UPDATE without an offer: just a refresh.
                    let _ = local;
                    self.respond(req, 200, "OK");
                    return;
                }
                // A re-INVITE without an offer: we would have to offer; keep it simple and
                // answer with our current description as the offer is not supported.
                _ => {
                    self.respond(req, 488, "Offer Required");
                    return;
                }
            }
        } else {
            match self.sdp.answer(&req.request.body, &self.ctx) {
                Ok(answer) => answer,
                Err((status, reason)) => {
                    self.respond(req, status, &reason);
                    return;
                }
            }
        };
        match self.sdp.update(&self.ctx) {
            Ok(update) => {
                if let Some(s) = &self.session {
                    s.update(update);
                }
            }
            Err(e) => {
                self.respond(req, 488, &e);
                return;
            }
        }
        let mut ok = response_with_tag(&req.request, 200, "OK", &self.dialog.id.local_tag);
        if let Some(c) = &self.dialog.local_contact {
            ok.headers.push(HeaderName::Contact, c.to_string());
        }
        ok.headers.push(HeaderName::Allow, ALLOW);
        ok.headers.push(HeaderName::ContentType, "application/sdp");
        ok.body = Bytes::from(body.to_string());
        self.ctx.endpoint().respond(req.tx, ok.clone());
        if is_invite {
            let t1 = Duration::from_millis(500);
            self.pending = Some(Pending2xx {
                tx: req.tx,
                response: ok,
                cseq: req.request.headers.cseq().map(|c| c.seq).unwrap_or(0),
                interval: t1,
                next: Instant::now() + t1,
                give_up: Instant::now() + t1 * 64,
            });
        }
    }

    fn on_media(&mut self, ev: MediaEvent) {
        let out = match ev {
            MediaEvent::Dtmf(d) => LegEvent::Dtmf(d),
            MediaEvent::RtpTimeout => LegEvent::RtpTimeout,
            MediaEvent::RtpResumed => LegEvent::RtpResumed,
            MediaEvent::SecurityFailed(e) => LegEvent::MediaFailed(e),
            _ => return,
        };
        let _ = self.events.send(out);
    }

    fn build_request(
        &mut self,
        method: Method,
        headers: Vec<(HeaderName, String)>,
        content_type: Option<String>,
        body: Bytes,
    ) -> Request {
        let mut req = self.dialog.new_request(method);
        for (name, value) in headers {
            req.headers.push(name, value);
        }
        if let Some(ct) = content_type {
            req.headers.push(HeaderName::ContentType, ct);
        }
        req.body = body;
        req
    }

    fn send_request(
        &mut self,
        method: Method,
        headers: Vec<(HeaderName, String)>,
        content_type: Option<String>,
        body: Bytes,
        reply: oneshot::Sender<Result<Response, LegError>>,
    ) {
        let req = self.build_request(method, headers, content_type, body);
        let endpoint = self.ctx.endpoint().clone();
        let flow = self.ctx.proxy_flow();
        tokio::spawn(async move {
            let _ = reply.send(final_response(&endpoint, req, flow).await);
        });
    }

    fn send_bye(&mut self) {
        if self.dialog.state == tandem_proto::dialog::DialogState::Terminated {
            return;
        }
        let bye = self.build_request(Method::Bye, Vec::new(), None, Bytes::new());
        self.dialog.terminate();
        let endpoint = self.ctx.endpoint().clone();
        let flow = self.ctx.proxy_flow();
        tokio::spawn(async move {
            if let Err(e) = final_response(&endpoint, bye, flow).await {
                tracing::debug!(error = %e, "BYE got no final response");
            }
        });
    }
}

/// Sends `request` to `flow` and waits for its final response.
pub(crate) async fn final_response(
    endpoint: &tandem_net::Endpoint,
    request: Request,
    flow: Flow,
) -> Result<Response, LegError> {
    let mut ctx = endpoint
        .request(request, Target::Flow(flow))
        .await
        .map_err(|e| LegError::Signalling(e.to_string()))?;
    let wait = async {
        while let Some(outcome) = ctx.next().await {
            match outcome {
                TxOutcome::Final(r) => return Ok(r),
                TxOutcome::Timeout => return Err(LegError::Signalling("timeout".into())),
                TxOutcome::TransportError(e) => return Err(LegError::Signalling(e)),
                _ => {}
            }
        }
        Err(LegError::Signalling("no final response".into()))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, wait)
        .await
        .unwrap_or_else(|_| Err(LegError::Signalling("timeout".into())))
}
