//! The media side of a call: the RTP/RTCP sockets, SDP offer/answer (RFC 3264) with the
//! account's codec preferences and SRTP policy (SDES RFC 4568, DTLS-SRTP RFC 5763/5764),
//! hold per RFC 6337, and the `tandem_media` session started once SDP is negotiated.
//!
//! With ICE on (the account's default), the media runs over an [`IceSession`]: our offers and
//! answers carry its credentials and candidates (RFC 8839) with the default candidate in
//! `c=`/`m=`, the peer's ICE description starts connectivity checks (the offerer controls),
//! new peer credentials restart ICE, and a peer without ICE gets plain RTP to its `c=`/`m=`
//! from our default candidate.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tandem_media::codec::CodecSpec;
use tandem_media::device::{DeviceSpec, open_capture, open_playback};
use tandem_media::session::{
    MediaConfig, MediaEvent, MediaSecurity, MediaSession, MediaSocket, MediaUpdate, SessionTuning,
};
use tandem_media::srtp::{
    DtlsCertificate, DtlsRole, SdesCrypto, SrtpPolicy, sdes_accept, sdes_answer, sdes_offer,
};
use tandem_media::stats::CallQuality;
use tandem_proto::sdp::ice::MediaIce;
use tandem_proto::sdp::video::{NegotiatedVideo, video_index};
use tandem_proto::sdp::{
    self, AnswerSecurity, Codec, Direction, MediaOffer, NegotiatedAudio, OfferChange,
    OfferedStream, SecurityKind, SessionDescription, TransportProfile,
};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::account::{Account, SrtpKeying};
use crate::call::CallEvent;
use crate::error::{Result, UaError};
use crate::nat::ice::{IceConfig, IceEvent, IcePolicy, IceSession, stun_server};
use crate::video::{CallVideo, VideoOptions, VideoStats};

/// How many binds we try to get an even RTP port with a free odd port above it (RFC 3550 §11).
const PORT_PAIR_TRIES: usize = 16;
/// Default packetisation time.
const DEFAULT_PTIME_MS: u32 = 20;

/// The codecs we can send and receive, in our default order of preference: Opus, PCMA,
/// PCMU, then G.722 (when the media engine has it), then telephone-event at 48 kHz and 8 kHz.
pub fn supported_codecs() -> Vec<Codec> {
    let mut all = sdp::default_audio_codecs();
    let events = all
        .iter()
        .position(Codec::is_telephone_event)
        .unwrap_or(all.len());
    all.insert(events, Codec::g722());
    all.into_iter()
        .filter(|c| c.is_telephone_event() || codec_spec(c).is_some())
        .collect()
}

/// Our codec list for an account: its preference order (`opus`, `pcma`, `pcmu`, `g722`)
/// restricting the supported codecs, then telephone-event.
pub(crate) fn codecs_for(account: &Account) -> Result<Vec<Codec>> {
    let all = supported_codecs();
    if account.codecs.is_empty() {
        return Ok(all);
    }
    let mut out = Vec::new();
    for name in &account.codecs {
        let name = name.trim();
        let found = all
            .iter()
            .find(|c| !c.is_telephone_event() && c.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                UaError::Config(format!(
                    "unknown or unsupported codec {name:?} (supported: {})",
                    all.iter()
                        .filter(|c| !c.is_telephone_event())
                        .map(|c| c.name.to_ascii_lowercase())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        if !out.contains(found) {
            out.push(found.clone());
        }
    }
    out.extend(all.into_iter().filter(Codec::is_telephone_event));
    Ok(out)
}

fn codec_spec(c: &Codec) -> Option<CodecSpec> {
    CodecSpec::from_rtpmap(
        &c.name,
        c.clock_rate,
        c.channels,
        c.payload_type,
        c.fmtp.as_deref(),
    )
}

fn negotiated_spec(c: &sdp::NegotiatedCodec) -> Option<CodecSpec> {
    CodecSpec::from_rtpmap(
        &c.name,
        c.clock_rate,
        c.channels,
        c.payload_type,
        c.fmtp.as_deref(),
    )
}

/// Devices and timing of a call's media.
#[derive(Debug, Clone)]
pub struct MediaOptions {
    /// Run a media session at all (false: signalling only, no RTP).
    pub enabled: bool,
    /// Where our audio comes from (default: silence).
    pub capture: DeviceSpec,
    /// Where the peer's audio goes (default: discarded).
    pub playback: DeviceSpec,
    /// Loop a WAV capture file instead of playing it once.
    pub loop_capture: bool,
    /// Report [`CallEvent::RtpTimeout`](crate::CallEvent::RtpTimeout) after this long without RTP.
    pub rtp_timeout: Duration,
    /// Interval of [`CallEvent::Quality`](crate::CallEvent::Quality) reports and RTCP.
    pub report_interval: Duration,
    /// Duration of each RFC 4733 / INFO DTMF digit.
    pub dtmf_duration: Duration,
    /// A non-audio session (MSRP): this SDP is our offer or answer verbatim (its version bumped on
    /// re-offers), no RTP session runs, and the peer's SDP is in [`MediaInfo::remote_sdp`].
    pub session_sdp: Option<SessionDescription>,
    /// Video: offered and accepted when set (`None`: an audio-only call; an offered
    /// `m=video` is declined with port 0).
    pub video: Option<VideoOptions>,
}

impl Default for MediaOptions {
    fn default() -> Self {
        MediaOptions {
            enabled: true,
            capture: DeviceSpec::Null,
            playback: DeviceSpec::Null,
            loop_capture: true,
            rtp_timeout: Duration::from_secs(30),
            report_interval: Duration::from_secs(5),
            dtmf_duration: Duration::from_millis(100),
            session_sdp: None,
            video: None,
        }
    }
}

/// What a call's media looks like once negotiated.
#[derive(Debug, Clone)]
pub struct MediaInfo {
    /// Our bound RTP address (the port is in our SDP).
    pub local_rtp: SocketAddr,
    /// Our last SDP (offer or answer).
    pub local_sdp: Option<SessionDescription>,
    /// The peer's last SDP (answer or offer).
    pub remote_sdp: Option<SessionDescription>,
    /// The negotiated audio stream (codecs, payload types, addresses, security).
    pub negotiated: Option<NegotiatedAudio>,
    /// The negotiated video stream, when the call has video.
    pub video: Option<NegotiatedVideo>,
}

/// Why an SDP offer could not be answered: the status to send (400 or 488) and a reason.
#[derive(Debug, Clone)]
pub(crate) struct OfferRejected {
    pub status: u16,
    pub reason: String,
}

/// A change of the media session worth telling the application about.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum MediaChange {
    /// The session started (first time).
    Started { codec: String, secure: bool },
    /// The session was updated (re-INVITE, UPDATE, a later answer).
    Updated,
    /// Nothing to start (media disabled or no remote address yet).
    None,
}

/// The media of one call: sockets, SDP state and the running session.
pub(crate) struct CallMedia {
    ip: IpAddr,
    rtp: Arc<UdpSocket>,
    /// Our RTCP socket when RTCP does not share the RTP port: beside plain RTP, or beside ICE
    /// for a peer without ICE that does not multiplex (named in `a=rtcp`).
    rtcp: Option<Arc<UdpSocket>>,
    session_id: u64,
    version: u64,
    policy: SrtpPolicy,
    keying: SrtpKeying,
    codecs: Vec<Codec>,
    pub opts: MediaOptions,
    cname: String,
    offered_crypto: Vec<SdesCrypto>,
    cert: Option<DtlsCertificate>,
    /// Our offer waiting for its answer.
    pending_offer: Option<SessionDescription>,
    local: Option<SessionDescription>,
    remote: Option<SessionDescription>,
    negotiated: Option<NegotiatedAudio>,
    /// The SDES keys in use (local, remote).
    keys: Option<(SdesCrypto, SdesCrypto)>,
    /// Our DTLS role in use, with the peer fingerprint.
    dtls: Option<(DtlsRole, String)>,
    /// We want the call on hold.
    pub local_hold: bool,
    muted: bool,
    session: Option<MediaSession>,
    events: Option<mpsc::UnboundedReceiver<MediaEvent>>,
    last_quality: CallQuality,
    /// The ICE session when the account does ICE, with the configuration it was gathered with.
    ice: Option<IceSession>,
    ice_config: Option<IceConfig>,
    /// ICE notices for the call (path chosen, failure, restart, peer without ICE).
    ice_notices: VecDeque<CallEvent>,
    /// The video stream (its socket or ICE session, SDP state and session).
    pub video: CallVideo,
}

impl std::fmt::Debug for CallMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallMedia")
            .field("rtp", &self.rtp.local_addr().ok())
            .field("policy", &self.policy)
            .field("negotiated", &self.negotiated)
            .field("local_hold", &self.local_hold)
            .finish_non_exhaustive()
    }
}

impl CallMedia {
    /// Binds the sockets (gathers ICE candidates; `tls` is the client configuration for a
    /// `turns:` server) and prepares the SDP state for a call of `account`.
    pub async fn new(
        ip: IpAddr,
        tls: Option<Arc<rustls::ClientConfig>>,
        account: &Account,
        opts: MediaOptions,
        session_id: u64,
        cname: String,
    ) -> Result<CallMedia> {
        let codecs = codecs_for(account)?;
        let (ice, ice_config) = if account.ice && opts.enabled && opts.session_sdp.is_none() {
            gather_ice(ip, tls, account).await?
        } else {
            (None, None)
        };
        let (rtp, rtcp) = match ice.as_ref().and_then(IceSession::primary_socket) {
            // The ICE session reads its sockets (rtcp-mux); RTCP from a peer without ICE
            // nor rtcp-mux goes to a socket of its own, named in a=rtcp.
            Some(primary) => (primary, bind_rtcp_beside_ice(ip).await),
            None => bind_rtp_pair(ip).await?,
        };
        let secure = account.srtp != SrtpPolicy::Off;
        let cert =
            if secure && account.srtp_keying == SrtpKeying::Dtls {
                Some(DtlsCertificate::generate().map_err(|e| {
                    UaError::Media(format!("cannot create a DTLS certificate: {e}"))
                })?)
            } else {
                None
            };
        let offered_crypto = if secure && account.srtp_keying == SrtpKeying::Sdes {
            sdes_offer()
        } else {
            Vec::new()
        };
        let has_rtp = opts.enabled && opts.session_sdp.is_none();
        let wants_video = has_rtp && opts.video.as_ref().is_some_and(|v| v.offer);
        let video = CallVideo::new(
            ip,
            account.srtp,
            account.srtp_keying,
            cname.clone(),
            opts.video.clone().filter(|_| has_rtp),
            opts.rtp_timeout,
            opts.report_interval,
        );
        let mut media = CallMedia {
            ip,
            rtp,
            rtcp,
            session_id,
            version: 0,
            policy: account.srtp,
            keying: account.srtp_keying,
            codecs,
            opts,
            cname,
            offered_crypto,
            cert,
            pending_offer: None,
            local: None,
            remote: None,
            negotiated: None,
            keys: None,
            dtls: None,
            local_hold: false,
            muted: false,
            session: None,
            events: None,
            last_quality: CallQuality::default(),
            ice,
            ice_config,
            ice_notices: VecDeque::new(),
            video,
        };
        if wants_video {
            media.prepare_video().await?;
        }
        Ok(media)
    }

    /// Binds the video socket (or gathers its ICE session like the audio's) unless done.
    pub async fn prepare_video(&mut self) -> Result<()> {
        if self.video.has_transport() {
            return Ok(());
        }
        if let Some(config) = &self.ice_config {
            match IceSession::gather(config).await {
                Ok(ice) => {
                    // RTCP from a peer without ICE nor rtcp-mux goes to our a=rtcp port.
                    let rtcp = bind_rtcp_beside_ice(self.ip).await;
                    self.video.set_ice(ice, rtcp);
                    return Ok(());
                }
                Err(e) if config.policy == IcePolicy::Relay => {
                    return Err(UaError::Media(format!(
                        "ICE relay-only policy without a relay candidate for video: {e}"
                    )));
                }
                Err(e) => tracing::warn!(error = %e, "video ICE gathering failed: plain RTP"),
            }
        }
        let (rtp, rtcp) = bind_rtp_pair(self.ip).await?;
        self.video.set_udp(rtp, rtcp);
        Ok(())
    }

    /// Makes video possible in this call (options and socket) before an upgrade.
    pub async fn ready_video(&mut self) -> Result<()> {
        if !self.opts.enabled || self.opts.session_sdp.is_some() {
            return Err(UaError::Config("this call has no RTP media".into()));
        }
        if self.video.opts.is_none() {
            self.video.opts = Some(self.opts.video.clone().unwrap_or_default());
        }
        self.prepare_video().await
    }

    /// Gathers the ICE candidates again after the host's addresses changed and starts an ICE
    /// restart with them (the next offer carries them); false without ICE, when the peer does
    /// no ICE, or when gathering failed (the old candidates stay).
    pub async fn ice_regather(&mut self, reason: &str) -> bool {
        let (Some(ice), Some(config)) = (self.ice.as_mut(), self.ice_config.as_ref()) else {
            return false;
        };
        if !ice.is_started() {
            return false;
        }
        match ice.regather(config).await {
            Ok(()) => {
                if let Some(vice) = self.video.ice_mut()
                    && vice.is_started()
                    && let Err(e) = vice.regather(config).await
                {
                    tracing::warn!(error = %e, "video ICE candidates not gathered again");
                }
                self.ice_notices
                    .push_back(CallEvent::IceRestart(reason.to_owned()));
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "ICE candidates not gathered again");
                false
            }
        }
    }

    /// Starts an ICE restart (new credentials in the next offer); false without ICE or when
    /// the peer does no ICE.
    pub fn ice_restart(&mut self, reason: &str) -> bool {
        match self.ice.as_mut() {
            Some(ice) if ice.is_started() => {
                ice.restart();
                if let Some(vice) = self.video.ice_mut()
                    && vice.is_started()
                {
                    vice.restart();
                }
                self.ice_notices
                    .push_back(CallEvent::IceRestart(reason.to_owned()));
                true
            }
            _ => false,
        }
    }

    /// The next media event or ICE notice (see [`Self::next_event`]).
    pub async fn next_notice(&mut self) -> MediaNotice {
        if let Some(n) = self.ice_notices.pop_front() {
            return MediaNotice::Call(n);
        }
        let events = &mut self.events;
        let ice = &mut self.ice;
        let video = &mut self.video;
        tokio::select! {
            ev = next_media_event(events) => MediaNotice::Media(ev),
            ev = next_ice_event(ice) => MediaNotice::Call(ev),
            n = video.next_notice() => MediaNotice::Call(CallEvent::Video(n)),
        }
    }

    /// Takes the peer's SDP (offer or answer): starts or restarts ICE with its description,
    /// or falls back to plain RTP to its `c=`/`m=` when it does no ICE. Returns whether our
    /// answer must carry ICE attributes.
    fn ice_on_remote(
        &mut self,
        remote: &SessionDescription,
        controlling: bool,
        remote_rtp: Option<SocketAddr>,
    ) -> bool {
        let Some(ice) = self.ice.as_mut() else {
            return false;
        };
        let index = remote.media.iter().position(|m| m.media == "audio");
        let outcome = ice_with_peer(ice, remote, index, controlling, remote_rtp);
        if outcome == IceOutcome::FellBack {
            self.ice_notices
                .push_back(CallEvent::IceOff("peer-without-ice".to_owned()));
        }
        outcome == IceOutcome::Ice
    }

    /// [`Self::ice_on_remote`] for the video line at `index` of the peer's SDP, on the video's
    /// own ICE session; returns whether our answer's video line carries ICE attributes.
    fn video_ice_on_remote(
        &mut self,
        remote: &SessionDescription,
        index: usize,
        controlling: bool,
        remote_rtp: Option<SocketAddr>,
    ) -> bool {
        let Some(ice) = self.video.ice_mut() else {
            return false;
        };
        ice_with_peer(ice, remote, Some(index), controlling, remote_rtp) == IceOutcome::Ice
    }

    /// Our SDP's address and port: the ICE default candidate, or the RTP socket.
    fn sdp_address(&self) -> Result<(IpAddr, u16)> {
        match &self.ice {
            Some(ice) => {
                let a = ice.default_addr();
                Ok((a.ip(), a.port()))
            }
            None => Ok((self.ip, local_port(&self.rtp)?)),
        }
    }

    /// The `a=rtcp` port of our audio line: the RTCP socket's when it is not RTP port + 1;
    /// with ICE only while the default candidate is a host address of that socket's IP (a
    /// bare port names the `c=` address).
    fn rtcp_port(&self) -> Option<u16> {
        let rtcp = self.rtcp.as_ref()?.local_addr().ok()?;
        match &self.ice {
            Some(ice) => (ice.default_addr().ip() == rtcp.ip()).then_some(rtcp.port()),
            None => {
                let rtp = self.rtp.local_addr().ok()?.port();
                (rtcp.port() != rtp.wrapping_add(1)).then_some(rtcp.port())
            }
        }
    }

    /// The socket the audio session sends and reads RTCP on apart from RTP: none when RTCP
    /// is multiplexed; with ICE only for a peer without ICE, and only when our SDP named it
    /// (never beside a relay or reflexive default, which would reveal the host address).
    fn rtcp_socket(&self, rtcp_mux: bool) -> Option<Arc<UdpSocket>> {
        if rtcp_mux {
            return None;
        }
        match &self.ice {
            Some(ice) if ice.is_started() || self.rtcp_port().is_none() => None,
            _ => self.rtcp.clone(),
        }
    }

    /// Writes our ICE attributes onto the audio section of `sdp`.
    fn add_ice(&self, sdp: &mut SessionDescription) {
        if let Some(ice) = &self.ice
            && let Some(m) = sdp
                .media
                .iter_mut()
                .find(|m| m.media == "audio" && m.port != 0)
        {
            ice.local_ice().apply_to(m);
        }
    }

    /// The RTP socket.
    pub fn rtp_socket(&self) -> Arc<UdpSocket> {
        self.rtp.clone()
    }

    /// A snapshot for [`Call::media`](crate::Call::media).
    pub fn info(&self) -> MediaInfo {
        MediaInfo {
            local_rtp: match &self.ice {
                Some(ice) => ice.default_addr(),
                None => self
                    .rtp
                    .local_addr()
                    .unwrap_or_else(|_| SocketAddr::new(self.ip, 0)),
            },
            local_sdp: self.local.clone(),
            remote_sdp: self.remote.clone(),
            negotiated: self.negotiated.clone(),
            video: self.video.negotiated().cloned(),
        }
    }

    /// The negotiated stream, if any.
    pub fn negotiated(&self) -> Option<&NegotiatedAudio> {
        self.negotiated.as_ref()
    }

    /// Whether the peer has put us on hold (it does not send to us).
    pub fn remote_hold(&self) -> bool {
        self.negotiated.as_ref().is_some_and(|n| n.remote_hold())
    }

    /// Whether RFC 4733 events can be sent to the peer.
    pub fn peer_has_telephone_event(&self) -> bool {
        self.session.is_some()
            && self
                .negotiated
                .as_ref()
                .is_some_and(|n| n.send_dtmf.is_some())
    }

    /// Whether an offer of ours waits for its answer.
    pub fn offer_pending(&self) -> bool {
        self.pending_offer.is_some()
    }

    fn local_offer(&self) -> MediaOffer {
        let mut offer = MediaOffer::new(self.codecs.clone());
        offer.ptime = Some(DEFAULT_PTIME_MS);
        offer.rtcp_port = self.rtcp_port();
        offer.direction = if self.local_hold {
            Direction::SendRecv.hold()
        } else {
            Direction::SendRecv
        };
        offer
    }

    /// Builds a new offer (initial or re-offer: version + 1) and remembers it for the answer.
    pub fn create_offer(&mut self) -> Result<SessionDescription> {
        if let Some(fixed) = &self.opts.session_sdp {
            let mut sdp = fixed.clone();
            sdp.origin.session_version = self.next_version();
            self.pending_offer = Some(sdp.clone());
            self.local = Some(sdp.clone());
            return Ok(sdp);
        }
        let mut offer = self.local_offer();
        match (self.policy, self.keying) {
            (SrtpPolicy::Off, _) => {}
            (policy, SrtpKeying::Sdes) => {
                offer.profile = if policy == SrtpPolicy::Mandatory {
                    TransportProfile::RtpSavp
                } else {
                    TransportProfile::RtpAvp
                };
                offer.crypto = self
                    .offered_crypto
                    .iter()
                    .map(SdesCrypto::to_attribute_value)
                    .collect();
            }
            (_, SrtpKeying::Dtls) => {
                let cert = self
                    .cert
                    .as_ref()
                    .ok_or_else(|| UaError::Media("no DTLS certificate".into()))?;
                offer.profile = TransportProfile::UdpTlsRtpSavp;
                offer.fingerprint = Some(cert.fingerprint());
                offer.setup = Some("actpass".into());
            }
        }
        let (ip, port) = self.sdp_address()?;
        let mut sdp = sdp::build_offer(self.session_id, self.next_version(), ip, port, &offer);
        self.add_ice(&mut sdp);
        if let Some(line) = self
            .video
            .offer_line(self.local_hold, ip, self.cert.as_ref())?
        {
            sdp.media.push(line);
        }
        self.pending_offer = Some(sdp.clone());
        self.local = Some(sdp.clone());
        Ok(sdp)
    }

    fn next_version(&mut self) -> u64 {
        if self.local.is_some() {
            self.version += 1;
        }
        self.version
    }

    /// Forgets our pending offer (its transaction failed).
    pub fn offer_failed(&mut self) {
        self.pending_offer = None;
        self.video.offer_failed();
    }

    /// Takes the peer's answer to our pending offer. With `keep_offer` the offer stays
    /// pending (an early answer in a provisional response; the 2xx repeats it).
    pub fn take_answer(&mut self, body: &[u8], keep_offer: bool) -> Result<()> {
        let offer = self
            .pending_offer
            .clone()
            .ok_or_else(|| UaError::Protocol("an SDP answer without an offer".into()))?;
        if !keep_offer {
            self.pending_offer = None;
        }
        let answer = SessionDescription::parse_bytes(body)
            .map_err(|e| UaError::Media(format!("unusable SDP answer: {e}")))?;
        if self.opts.session_sdp.is_some() {
            // A non-audio session: its owner interprets the answer.
            self.remote = Some(answer);
            return Ok(());
        }
        let neg = sdp::accept_answer(&offer, &answer)
            .map_err(|e| UaError::Media(format!("unacceptable SDP answer: {e}")))?;
        match neg.security {
            SecurityKind::Plain => {
                if self.policy == SrtpPolicy::Mandatory {
                    return Err(UaError::Media(
                        "SRTP is mandatory but the answer is plain RTP".into(),
                    ));
                }
                self.keys = None;
                self.dtls = None;
            }
            SecurityKind::Sdes => {
                let remote = neg
                    .crypto
                    .first()
                    .ok_or_else(|| UaError::Media("SRTP answer without a=crypto".into()))
                    .and_then(|v| {
                        SdesCrypto::parse(v)
                            .map_err(|e| UaError::Media(format!("bad a=crypto in answer: {e}")))
                    })?;
                let (local, remote) = sdes_accept(&self.offered_crypto, &remote)
                    .map_err(|e| UaError::Media(format!("unacceptable a=crypto answer: {e}")))?;
                self.keys = Some((local, remote));
                self.dtls = None;
            }
            SecurityKind::Dtls => {
                let fp = neg
                    .fingerprint
                    .clone()
                    .ok_or_else(|| UaError::Media("DTLS answer without a=fingerprint".into()))?;
                // We offered actpass: an active peer makes us the DTLS server.
                let role = match neg.setup.as_deref().map(str::trim) {
                    Some(s) if s.eq_ignore_ascii_case("passive") => DtlsRole::Client,
                    _ => DtlsRole::Server,
                };
                self.dtls = Some((role, fp));
                self.keys = None;
            }
            #[allow(unreachable_patterns)]
            _ => return Err(UaError::Media("unsupported media security".into())),
        }
        self.ice_on_remote(&answer, true, neg.remote_rtp);
        self.video.take_answer(&offer, &answer, keep_offer);
        if let Some(remote_rtp) = self.video.negotiated().map(|v| v.remote_rtp)
            && let Some(index) = video_index(&answer)
        {
            self.video_ice_on_remote(&answer, index, true, remote_rtp);
        }
        self.remote = Some(answer);
        self.negotiated = Some(neg);
        Ok(())
    }

    /// Answers the peer's offer (initial or re-offer) per our codecs, hold state and SRTP
    /// policy; 400 for an unparsable offer, 488 for one we cannot accept.
    pub fn answer_offer(
        &mut self,
        body: &[u8],
    ) -> std::result::Result<SessionDescription, OfferRejected> {
        let offer = SessionDescription::parse_bytes(body).map_err(|e| OfferRejected {
            status: e.status_code(),
            reason: format!("unusable SDP offer: {e}"),
        })?;
        if let Some(fixed) = &self.opts.session_sdp {
            // A non-audio session: the answer was prepared by its owner; re-offers get it again.
            let mut answer = fixed.clone();
            if self.local.is_none() {
                answer.origin.session_version = self.version;
            } else if let Some(prev) = &self.local {
                answer.origin.session_version = prev.origin.session_version;
            }
            self.pending_offer = None;
            self.remote = Some(offer);
            self.local = Some(answer.clone());
            return Ok(answer);
        }
        if let (Some(prev), Some(local)) = (&self.remote, &self.local)
            && self.pending_offer.is_none()
            && sdp::classify_offer(prev, &offer) == OfferChange::Unchanged
        {
            // RFC 6337 §5.1: the same offer again (a session refresh): same answer.
            return Ok(local.clone());
        }
        let policy = self.policy;
        let cert_fp = self.cert.as_ref().map(DtlsCertificate::fingerprint);
        let mut chosen_keys: Option<(SdesCrypto, SdesCrypto)> = None;
        let mut chosen_dtls: Option<(DtlsRole, String)> = None;
        let current_keys = self.keys.clone();
        let chooser = |s: &OfferedStream<'_>| -> Option<AnswerSecurity> {
            chosen_keys = None;
            chosen_dtls = None;
            if s.profile.is_dtls() {
                if policy == SrtpPolicy::Off {
                    return None;
                }
                let fp = s.fingerprint?;
                let ours = cert_fp.clone()?;
                let setup = sdp::setup_answer(s.setup);
                let role = if setup == "active" {
                    DtlsRole::Client
                } else {
                    DtlsRole::Server
                };
                chosen_dtls = Some((role, fp.to_string()));
                return Some(AnswerSecurity::Dtls {
                    fingerprint: ours,
                    setup: setup.to_string(),
                });
            }
            if policy != SrtpPolicy::Off && !s.crypto.is_empty() {
                let offered = SdesCrypto::parse_all(&s.crypto);
                // Keep our key when the peer re-offers the key we already accepted.
                let kept = current_keys.as_ref().and_then(|(local, remote)| {
                    offered
                        .iter()
                        .find(|c| c == &remote)
                        .map(|r| (r.clone(), local.clone()))
                });
                if let Some((remote, local)) = kept.or_else(|| sdes_answer(&offered)) {
                    let value = local.to_attribute_value();
                    chosen_keys = Some((local, remote));
                    return Some(AnswerSecurity::Sdes(value));
                }
            }
            if s.profile.is_plain() && policy != SrtpPolicy::Mandatory {
                return Some(AnswerSecurity::Plain);
            }
            None
        };
        let local = self.local_offer();
        let (ip, port) = self.sdp_address().map_err(|e| OfferRejected {
            status: 500,
            reason: e.to_string(),
        })?;
        let version = if self.local.is_some() {
            self.version + 1
        } else {
            self.version
        };
        let (mut answer, neg) =
            sdp::answer_offer(&offer, &local, self.session_id, version, ip, port, chooser)
                .map_err(|e| OfferRejected {
                    status: e.status_code(),
                    reason: format!("unacceptable SDP offer: {e}"),
                })?;
        if self.ice_on_remote(&offer, false, neg.remote_rtp) {
            self.add_ice(&mut answer);
        }
        let cert = self.cert.clone();
        if let Some(index) =
            self.video
                .answer(&offer, &mut answer, self.local_hold, cert.as_ref(), false)
        {
            let remote_rtp = self.video.negotiated().and_then(|v| v.remote_rtp);
            if self.video_ice_on_remote(&offer, index, false, remote_rtp)
                && let Some(line) = answer.media.get_mut(index)
            {
                self.video.add_ice(line);
            }
        }
        // RFC 3264 §8: an unchanged description keeps its version.
        let unchanged = self.local.as_ref().is_some_and(|prev| {
            let mut same = answer.clone();
            same.origin.session_version = prev.origin.session_version;
            &same == prev
        });
        if unchanged {
            answer.origin.session_version = self.version;
        } else {
            self.version = version;
        }
        self.keys = chosen_keys;
        self.dtls = chosen_dtls;
        self.pending_offer = None;
        self.remote = Some(offer);
        self.local = Some(answer.clone());
        self.negotiated = Some(neg);
        Ok(answer)
    }

    fn security(&self) -> Result<MediaSecurity> {
        let neg = self
            .negotiated
            .as_ref()
            .ok_or_else(|| UaError::Media("no negotiated media".into()))?;
        Ok(match neg.security {
            SecurityKind::Sdes => {
                let (local, remote) = self
                    .keys
                    .clone()
                    .ok_or_else(|| UaError::Media("SRTP without keys".into()))?;
                MediaSecurity::Sdes { local, remote }
            }
            SecurityKind::Dtls => {
                let (role, remote_fingerprint) = self
                    .dtls
                    .clone()
                    .ok_or_else(|| UaError::Media("DTLS without a fingerprint".into()))?;
                let cert = self
                    .cert
                    .clone()
                    .ok_or_else(|| UaError::Media("no DTLS certificate".into()))?;
                MediaSecurity::Dtls {
                    role,
                    cert,
                    remote_fingerprint,
                }
            }
            _ => MediaSecurity::Plain,
        })
    }

    /// Starts the media sessions (audio, and video when negotiated) on the negotiated SDP, or
    /// updates the running ones. A video failure is a warning: the audio goes on.
    pub fn apply(&mut self) -> Result<MediaChange> {
        let change = self.apply_audio()?;
        if self.opts.enabled && self.opts.session_sdp.is_none() {
            let cert = self.cert.clone();
            if let Err(e) = self.video.apply(cert.as_ref()) {
                tracing::warn!(error = %e, "video not started");
                self.video.warn(e.to_string());
            }
        }
        Ok(change)
    }

    /// Starts the audio session on the negotiated SDP, or updates the running one.
    fn apply_audio(&mut self) -> Result<MediaChange> {
        if !self.opts.enabled || self.opts.session_sdp.is_some() {
            return Ok(MediaChange::None);
        }
        let Some(neg) = self.negotiated.clone() else {
            return Ok(MediaChange::None);
        };
        let send_codec = negotiated_spec(&neg.send_codec).ok_or_else(|| {
            UaError::Media(format!(
                "negotiated codec {} is not supported by the media engine",
                neg.send_codec.name
            ))
        })?;
        let recv_codecs: Vec<CodecSpec> =
            neg.recv_codecs.iter().filter_map(negotiated_spec).collect();
        let ptime = Duration::from_millis(u64::from(match neg.ptime {
            Some(p @ (10 | 20 | 30 | 40 | 60)) => p,
            _ => DEFAULT_PTIME_MS,
        }));
        let security = self.security()?;
        let secure = security.is_secure();
        if let Some(session) = &self.session {
            session.update(MediaUpdate {
                remote_rtp: neg.remote_rtp,
                remote_rtcp: neg.remote_rtcp,
                rtcp_mux: Some(neg.rtcp_mux),
                send_codec: Some(send_codec),
                recv_codecs: Some(recv_codecs),
                send_dtmf: Some(neg.send_dtmf),
                recv_dtmf: Some(neg.recv_dtmf.clone()),
                ptime: Some(ptime),
                direction: Some(neg.direction),
                security: Some(security),
            });
            return Ok(MediaChange::Updated);
        }
        let Some(remote_rtp) = neg.remote_rtp else {
            // Held with c=0.0.0.0 from the start: nothing to send to yet.
            return Ok(MediaChange::None);
        };
        let capture = open_capture(&self.opts.capture, self.opts.loop_capture)
            .map_err(|e| UaError::Media(format!("capture device: {e}")))?;
        let playback = open_playback(&self.opts.playback)
            .map_err(|e| UaError::Media(format!("playback device: {e}")))?;
        let codec = send_codec.name().to_string();
        let socket: MediaSocket = match &self.ice {
            Some(ice) => ice.socket(),
            None => self.rtp.clone().into(),
        };
        let mut config = MediaConfig::new(socket, remote_rtp, send_codec, capture, playback);
        config.rtcp_socket = self.rtcp_socket(neg.rtcp_mux).map(Into::into);
        config.remote_rtcp = neg.remote_rtcp;
        config.rtcp_mux = neg.rtcp_mux;
        config.recv_codecs = recv_codecs;
        config.send_dtmf = neg.send_dtmf;
        config.recv_dtmf = neg.recv_dtmf.clone();
        config.ptime = ptime;
        config.direction = neg.direction;
        config.security = security;
        config.cname = self.cname.clone();
        config.rtp_timeout = self.opts.rtp_timeout;
        let tuning = SessionTuning::default()
            .with_rtcp_interval(self.opts.report_interval)
            .with_quality_interval(self.opts.report_interval);
        let (session, events) = MediaSession::start_tuned(config, tuning)
            .map_err(|e| UaError::Media(format!("cannot start the media session: {e}")))?;
        if self.muted {
            session.set_mute(true);
        }
        self.session = Some(session);
        self.events = Some(events);
        Ok(MediaChange::Started { codec, secure })
    }

    /// The next media event; pends forever without a session.
    pub async fn next_event(&mut self) -> Option<MediaEvent> {
        next_media_event(&mut self.events).await
    }

    /// Mutes or unmutes (remembered for a session started later).
    pub fn set_mute(&mut self, muted: bool) {
        self.muted = muted;
        if let Some(s) = &self.session {
            s.set_mute(muted);
        }
    }

    /// Queues RFC 4733 digits on the running session.
    pub fn send_dtmf(&self, digits: &str) -> bool {
        match &self.session {
            Some(s) => {
                s.send_dtmf(digits, self.opts.dtmf_duration);
                true
            }
            None => false,
        }
    }

    /// Opens and switches to other devices (the specs are remembered for later sessions).
    pub fn switch_devices(
        &mut self,
        capture: Option<DeviceSpec>,
        playback: Option<DeviceSpec>,
    ) -> Result<()> {
        let cap = match &capture {
            Some(spec) if self.session.is_some() => Some(
                open_capture(spec, self.opts.loop_capture)
                    .map_err(|e| UaError::Media(format!("capture device: {e}")))?,
            ),
            _ => None,
        };
        let play = match &playback {
            Some(spec) if self.session.is_some() => Some(
                open_playback(spec).map_err(|e| UaError::Media(format!("playback device: {e}")))?,
            ),
            _ => None,
        };
        if let Some(c) = capture {
            self.opts.capture = c;
        }
        if let Some(p) = playback {
            self.opts.playback = p;
        }
        if let Some(s) = &self.session
            && (cap.is_some() || play.is_some())
        {
            s.switch_devices(cap, play);
        }
        Ok(())
    }

    /// A handle to read live quality from outside the call task.
    pub fn control(&self) -> Option<tandem_media::session::MediaControl> {
        self.session.as_ref().map(MediaSession::control)
    }

    /// Stops the video session (RTCP BYE, recording finished); returns the call's final video
    /// counters (`None` when it never had video).
    pub async fn stop_video(&mut self) -> Option<VideoStats> {
        self.video.stop().await
    }

    /// Stops the sessions (RTCP BYE, playback and recordings finished); returns the final
    /// audio quality.
    pub async fn stop(&mut self) -> Option<CallQuality> {
        self.video.stop().await;
        let session = self.session.take()?;
        self.events = None;
        let q = session.stop().await;
        self.last_quality = q.clone();
        Some(q)
    }
}

/// What [`CallMedia::next_notice`] gives: a media session event (`None`: the session ended)
/// or a call event to pass on (ICE path, failure, restart, peer without ICE).
#[derive(Debug)]
pub(crate) enum MediaNotice {
    /// From the media session.
    Media(Option<MediaEvent>),
    /// For the application as is.
    Call(CallEvent),
}

async fn next_media_event(
    events: &mut Option<mpsc::UnboundedReceiver<MediaEvent>>,
) -> Option<MediaEvent> {
    match events.as_mut() {
        Some(rx) => {
            let ev = rx.recv().await;
            if ev.is_none() {
                *events = None;
            }
            ev
        }
        None => std::future::pending().await,
    }
}

async fn next_ice_event(ice: &mut Option<IceSession>) -> CallEvent {
    let Some(ice) = ice.as_mut() else {
        return std::future::pending().await;
    };
    match ice.next_event().await {
        Some(IceEvent::Selected(info)) => CallEvent::IcePath(info),
        Some(IceEvent::Failed(reason)) => CallEvent::IceFailed(reason),
        // The session task is gone (or a future event kind): nothing more to report.
        _ => std::future::pending().await,
    }
}

/// What [`ice_with_peer`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IceOutcome {
    /// ICE runs with the peer (our SDP carries ICE attributes).
    Ice,
    /// The peer does no ICE: plain RTP to its address, for the first time.
    FellBack,
    /// No ICE with the peer (already fallen back, or nothing to send to).
    Off,
}

/// Starts or restarts `ice` with the peer's ICE description of m-line `index`, or falls back
/// to plain RTP to its `c=`/`m=` (`remote_rtp`) when it does no ICE there.
fn ice_with_peer(
    ice: &mut IceSession,
    remote: &SessionDescription,
    index: Option<usize>,
    controlling: bool,
    remote_rtp: Option<SocketAddr>,
) -> IceOutcome {
    let description = index.and_then(|i| match MediaIce::from_sdp(remote, i) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "unusable ICE attributes in the peer's SDP");
            None
        }
    });
    // RFC 8839 §5.4: a default address outside the candidates (an SBC rewrote c=/m=
    // but left the ICE lines) makes the peer's ICE unusable.
    let description = description.filter(|d| {
        let usable = remote_rtp
            .filter(|a| !a.ip().is_unspecified())
            .is_none_or(|a| d.has_default_candidate(a));
        if !usable {
            tracing::info!("ICE mismatch: the peer's c=/m= is none of its candidates");
        }
        usable
    });
    if let Some(d) = description {
        match ice.start(&d, controlling) {
            Ok(_) => return IceOutcome::Ice,
            Err(e) => tracing::warn!(error = %e, "ICE cannot start with the peer"),
        }
    }
    if let Some(rtp) = remote_rtp.filter(|a| !a.ip().is_unspecified()) {
        let first = !ice.is_fixed();
        match ice.fall_back(rtp) {
            Ok(()) if first => return IceOutcome::FellBack,
            Ok(()) => {}
            Err(e) => tracing::warn!(error = %e, "no media path to the peer"),
        }
    }
    IceOutcome::Off
}

/// Gathers the ICE candidates of a call of `account` (STUN and TURN from the account).
async fn gather_ice(
    ip: IpAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    account: &Account,
) -> Result<(Option<IceSession>, Option<IceConfig>)> {
    let stun = stun_server(account.stun.as_deref(), account.turn.as_ref()).await;
    let mut config = IceConfig::new(stun, account.ice_policy).with_preferred_ip(ip);
    if let Some(turn) = &account.turn {
        config = config.with_turn(turn.clone());
        config.turn_tls = tls;
    }
    match IceSession::gather(&config).await {
        Ok(ice) => Ok((Some(ice), Some(config))),
        Err(e) if account.ice_policy == IcePolicy::Relay => Err(UaError::Media(format!(
            "ICE relay-only policy without a relay candidate: {e}"
        ))),
        Err(e) => {
            tracing::warn!(error = %e, "ICE gathering failed: plain RTP");
            Ok((None, None))
        }
    }
}

fn local_port(sock: &UdpSocket) -> Result<u16> {
    sock.local_addr()
        .map(|a| a.port())
        .map_err(|e| UaError::Network(format!("RTP socket address: {e}")))
}

/// An RTCP socket on `ip` beside an ICE session (none when binding fails: RTCP then only
/// travels multiplexed).
async fn bind_rtcp_beside_ice(ip: IpAddr) -> Option<Arc<UdpSocket>> {
    match UdpSocket::bind(SocketAddr::new(ip, 0)).await {
        Ok(s) => Some(Arc::new(s)),
        Err(e) => {
            tracing::debug!(error = %e, "no RTCP socket beside ICE");
            None
        }
    }
}

/// Binds RTP on an even port with RTCP on the next one when possible (RFC 3550 §11), else
/// any two ports (the RTCP port then goes into `a=rtcp`, RFC 3605).
pub(crate) async fn bind_rtp_pair(ip: IpAddr) -> Result<(Arc<UdpSocket>, Option<Arc<UdpSocket>>)> {
    let bind = |port: u16| async move {
        UdpSocket::bind(SocketAddr::new(ip, port))
            .await
            .map_err(|e| UaError::Network(format!("cannot bind an RTP socket on {ip}: {e}")))
    };
    for _ in 0..PORT_PAIR_TRIES {
        let rtp = bind(0).await?;
        let port = local_port(&rtp)?;
        if port % 2 != 0 || port == u16::MAX {
            continue;
        }
        if let Ok(rtcp) = bind(port + 1).await {
            return Ok((Arc::new(rtp), Some(Arc::new(rtcp))));
        }
    }
    let rtp = bind(0).await?;
    let rtcp = bind(0).await.ok().map(Arc::new);
    Ok((Arc::new(rtp), rtcp))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn media(policy: SrtpPolicy, keying: SrtpKeying) -> CallMedia {
        let mut account = Account::new("alice", "127.0.0.1");
        account.srtp = policy;
        account.srtp_keying = keying;
        CallMedia::new(
            "127.0.0.1".parse().unwrap(),
            None,
            &account,
            MediaOptions {
                enabled: false,
                ..MediaOptions::default()
            },
            42,
            "cname@test".into(),
        )
        .await
        .unwrap()
    }

    fn audio(sdp: &SessionDescription) -> &sdp::MediaDescription {
        sdp.media.first().unwrap()
    }

    async fn ice_media() -> CallMedia {
        let account = Account::new("alice", "127.0.0.1");
        CallMedia::new(
            "127.0.0.1".parse().unwrap(),
            None,
            &account,
            MediaOptions::default(),
            7,
            "cname@test".into(),
        )
        .await
        .unwrap()
    }

    fn notices(m: &mut CallMedia) -> Vec<CallEvent> {
        m.ice_notices.drain(..).collect()
    }

    #[tokio::test]
    async fn ice_offers_carry_candidates_and_answers_follow_the_peer() {
        let mut a = ice_media().await;
        let mut b = ice_media().await;
        let offer = a.create_offer().unwrap();
        let ice = MediaIce::from_sdp(&offer, 0)
            .unwrap()
            .expect("ICE in the offer");
        let default = offer.media_remote_addr(0).unwrap();
        assert!(ice.has_default_candidate(default), "{offer}");
        assert_eq!(a.info().local_rtp, default);
        assert!(ice.end_of_candidates);

        // An ICE offer gets an ICE answer.
        let answer = b.answer_offer(offer.to_string().as_bytes()).unwrap();
        assert!(MediaIce::from_sdp(&answer, 0).unwrap().is_some());
        assert!(notices(&mut b).is_empty());
        a.take_answer(answer.to_string().as_bytes(), false).unwrap();
        assert!(notices(&mut a).is_empty());

        // A default address outside the candidates (an SBC rewrote c=): no ICE, plain RTP.
        let mut c = ice_media().await;
        let mut rewritten = a.create_offer().unwrap();
        rewritten.connection = Some(sdp::Connection::from_ip("192.0.2.7".parse().unwrap()));
        rewritten.media[0].connection = None;
        let answer = c.answer_offer(rewritten.to_string().as_bytes()).unwrap();
        assert_eq!(MediaIce::from_sdp(&answer, 0).unwrap(), None);
        assert_eq!(
            notices(&mut c),
            vec![CallEvent::IceOff("peer-without-ice".into())]
        );

        // A peer without ICE at all.
        let mut d = ice_media().await;
        let mut plain = a.create_offer().unwrap();
        tandem_proto::sdp::ice::strip_ice(&mut plain);
        let answer = d.answer_offer(plain.to_string().as_bytes()).unwrap();
        assert_eq!(MediaIce::from_sdp(&answer, 0).unwrap(), None);
        assert_eq!(notices(&mut d).len(), 1);
    }

    /// The value of attribute `name` on `m`.
    fn attr<'a>(m: &'a sdp::MediaDescription, name: &str) -> Option<&'a str> {
        m.attributes
            .iter()
            .find(|x| x.name == name)
            .and_then(|x| x.value.as_deref())
    }

    /// Two loopback sockets whose ports are not consecutive (RTP, RTCP), as a peer that
    /// must name its RTCP port in `a=rtcp`.
    async fn peer_sockets() -> (UdpSocket, UdpSocket) {
        loop {
            let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let rtcp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let (p, q) = (
                rtp.local_addr().unwrap().port(),
                rtcp.local_addr().unwrap().port(),
            );
            if q != p.wrapping_add(1) {
                return (rtp, rtcp);
            }
        }
    }

    /// The first RTCP compound on `sock` from `from_port`: (its sender SSRC, its source).
    async fn first_rtcp(sock: &UdpSocket, from_port: u16) -> (u32, SocketAddr) {
        use tandem_media::rtcp::{RtcpPacket, parse_compound};
        let mut buf = [0u8; 2048];
        loop {
            let (n, from) = sock.recv_from(&mut buf).await.unwrap();
            if from.port() != from_port {
                continue;
            }
            let Ok(packets) = parse_compound(&buf[..n]) else {
                continue;
            };
            let ssrc = packets.iter().find_map(|p| match p {
                RtcpPacket::SenderReport(sr) => Some(sr.ssrc),
                RtcpPacket::ReceiverReport(rr) => Some(rr.ssrc),
                _ => None,
            });
            if let Some(ssrc) = ssrc {
                return (ssrc, from);
            }
        }
    }

    /// A peer without ICE and without rtcp-mux (baresip's way) still exchanges RTCP with our
    /// ICE audio line: our offer names an RTCP socket in a=rtcp, our reports come from it to
    /// the peer's a=rtcp port, and the peer's reports sent there reach the session.
    #[tokio::test]
    async fn ice_audio_line_keeps_rtcp_for_a_peer_without_ice_or_mux() {
        let account = Account::new("alice", "127.0.0.1");
        let opts = MediaOptions {
            report_interval: Duration::from_millis(200),
            ..MediaOptions::default()
        };
        let mut a = CallMedia::new(
            "127.0.0.1".parse().unwrap(),
            None,
            &account,
            opts,
            11,
            "cname@test".into(),
        )
        .await
        .unwrap();
        let offer = a.create_offer().unwrap();
        assert!(MediaIce::from_sdp(&offer, 0).unwrap().is_some(), "{offer}");
        let m = audio(&offer);
        assert!(m.attributes.iter().any(|x| x.name == "rtcp-mux"), "{offer}");
        let our_rtcp: u16 = attr(m, "rtcp").expect("a=rtcp beside ICE").parse().unwrap();
        assert_ne!(our_rtcp, m.port);

        // The peer answers plain RTP/AVP: no ICE, no rtcp-mux, RTCP on a port of its own.
        let (peer_rtp, peer_rtcp) = peer_sockets().await;
        let peer_rtcp_port = peer_rtcp.local_addr().unwrap().port();
        let mut local = MediaOffer::new(sdp::default_audio_codecs());
        local.rtcp_mux = false;
        local.rtcp_port = Some(peer_rtcp_port);
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let peer_port = peer_rtp.local_addr().unwrap().port();
        let (answer, _) =
            sdp::answer_offer(&offer, &local, 5, 1, loopback, peer_port, sdp::plain_only).unwrap();
        assert_eq!(
            attr(audio(&answer), "rtcp"),
            Some(&*peer_rtcp_port.to_string())
        );
        a.take_answer(answer.to_string().as_bytes(), false).unwrap();
        let neg = a.negotiated().unwrap();
        assert!(!neg.rtcp_mux);
        assert_eq!(
            neg.remote_rtcp,
            Some(SocketAddr::new(loopback, peer_rtcp_port))
        );
        assert!(matches!(a.apply().unwrap(), MediaChange::Started { .. }));

        // Our RTCP reaches the peer's a=rtcp port from our a=rtcp port.
        let wait = Duration::from_secs(10);
        let (ssrc, from) = tokio::time::timeout(wait, first_rtcp(&peer_rtcp, our_rtcp))
            .await
            .expect("no RTCP from our a=rtcp port at the peer's a=rtcp port");
        assert_eq!(from.ip(), loopback);

        // The peer's receiver reports (25 % loss of our stream) sent to our a=rtcp port
        // reach the session.
        use tandem_media::rtcp::{ReceiverReport, ReportBlock, RtcpPacket, build_compound};
        let rr = build_compound(&[RtcpPacket::ReceiverReport(ReceiverReport {
            ssrc: 0x5eed_0001,
            reports: vec![ReportBlock {
                ssrc,
                fraction_lost: 64,
                ..ReportBlock::default()
            }],
        })]);
        let control = a.control().expect("a running session");
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            peer_rtcp
                .send_to(&rr, SocketAddr::new(loopback, our_rtcp))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            let loss = control.quality().remote_loss_percent;
            if loss.is_some_and(|l| (l - 25.0).abs() < 0.5) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the peer's RTCP on our a=rtcp port never reached the session: {loss:?}"
            );
        }
        a.stop().await;

        // Answering such a peer's offer: our answer names the same RTCP socket, no rtcp-mux.
        let mut b = ice_media().await;
        let mut plain = MediaOffer::new(sdp::default_audio_codecs());
        plain.rtcp_mux = false;
        plain.rtcp_port = Some(peer_rtcp_port);
        let offer = sdp::build_offer(3, 1, loopback, peer_port, &plain);
        let answer = b.answer_offer(offer.to_string().as_bytes()).unwrap();
        let m = audio(&answer);
        assert!(
            !m.attributes.iter().any(|x| x.name == "rtcp-mux"),
            "{answer}"
        );
        let b_rtcp = b.rtcp.as_ref().unwrap().local_addr().unwrap().port();
        assert_eq!(attr(m, "rtcp"), Some(&*b_rtcp.to_string()), "{answer}");
        assert_eq!(
            b.rtcp_socket(false).map(|s| s.local_addr().unwrap().port()),
            Some(b_rtcp)
        );
    }

    async fn video_media(video: bool) -> CallMedia {
        let mut account = Account::new("alice", "127.0.0.1");
        account.ice = false;
        let opts = MediaOptions {
            video: video.then(VideoOptions::default),
            ..MediaOptions::default()
        };
        CallMedia::new(
            "127.0.0.1".parse().unwrap(),
            None,
            &account,
            opts,
            9,
            "cname@test".into(),
        )
        .await
        .unwrap()
    }

    fn video_of(sdp: &SessionDescription) -> &sdp::MediaDescription {
        sdp.media.iter().find(|m| m.media == "video").unwrap()
    }

    #[tokio::test]
    async fn video_offers_answers_and_reoffers_keep_the_line() {
        let mut a = video_media(true).await;
        let mut b = video_media(true).await;
        let offer = a.create_offer().unwrap();
        assert_eq!(offer.media.len(), 2, "{offer}");
        assert_eq!(offer.media[0].media, "audio");
        let v = video_of(&offer);
        assert_ne!(v.port, 0);
        assert_ne!(v.port, offer.media[0].port, "a socket of its own");
        let text = offer.to_string();
        for needle in ["VP8/90000", "H264/90000", "a=rtcp-fb:96 nack", "a=rtcp-mux"] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        let answer = b.answer_offer(text.as_bytes()).unwrap();
        assert_eq!(answer.media.len(), 2);
        assert_ne!(video_of(&answer).port, 0, "{answer}");
        assert!(b.video.negotiated().is_some());
        a.take_answer(answer.to_string().as_bytes(), false).unwrap();
        let neg = a.video.negotiated().unwrap();
        assert_eq!(neg.send.as_ref().unwrap().kind_name, "VP8");
        assert_eq!(neg.remote_rtp.unwrap().port(), video_of(&answer).port);
        // Hold: the video line stays and goes inactive with the audio on hold.
        a.local_hold = true;
        let hold = a.create_offer().unwrap();
        assert_eq!(hold.media.len(), 2);
        assert!(
            video_of(&hold)
                .attributes
                .iter()
                .any(|x| x.name == "inactive")
        );
        a.offer_failed();
        a.local_hold = false;
        // Downgrade: port 0, the line kept (RFC 3264 §8.2).
        a.video.set_wanted(false);
        let off = a.create_offer().unwrap();
        assert_eq!(off.media.len(), 2);
        assert_eq!(video_of(&off).port, 0);
        let answer = b.answer_offer(off.to_string().as_bytes()).unwrap();
        assert_eq!(video_of(&answer).port, 0, "{answer}");
        assert!(b.video.negotiated().is_none());
        a.take_answer(answer.to_string().as_bytes(), false).unwrap();
        assert!(a.video.negotiated().is_none());
        // The peer's later offers keep the disabled line too.
        let again = b.create_offer().unwrap();
        assert_eq!(again.media.len(), 2);
        assert_eq!(video_of(&again).port, 0, "{again}");
    }

    #[tokio::test]
    async fn hostile_or_unwanted_video_is_declined_and_audio_goes_on() {
        let mut a = video_media(true).await;
        let good = a.create_offer().unwrap();
        // An audio-only answerer declines the video with port 0.
        let mut plain = video_media(false).await;
        let answer = plain.answer_offer(good.to_string().as_bytes()).unwrap();
        assert_eq!(answer.media.len(), 2);
        assert_eq!(video_of(&answer).port, 0);
        assert!(answer.media[0].port != 0);
        a.take_answer(answer.to_string().as_bytes(), false).unwrap();
        assert!(a.negotiated().is_some() && a.video.negotiated().is_none());

        let mutate = |f: &dyn Fn(&mut sdp::MediaDescription)| {
            let mut sdp = good.clone();
            let i = sdp.media.iter().position(|m| m.media == "video").unwrap();
            f(&mut sdp.media[i]);
            sdp.to_string()
        };
        let cases = [
            // Only codecs we do not have.
            mutate(&|m| {
                m.formats = vec!["31".into()];
                m.attributes
                    .retain(|x| x.name != "rtpmap" && x.name != "fmtp");
            }),
            // H.264 in packetization-mode 0 only.
            mutate(&|m| {
                m.formats = vec!["97".into()];
                m.attributes.retain(|x| {
                    !(x.name == "fmtp" && x.value.as_deref().is_some_and(|v| v.starts_with("97")))
                });
                m.attributes.push(sdp::Attribute::new(
                    "fmtp",
                    "97 profile-level-id=42e01f;packetization-mode=0",
                ));
            }),
            // Not an RTP profile.
            mutate(&|m| m.protocol = "TCP/MSRP".into()),
        ];
        for offer in cases {
            let mut b = video_media(true).await;
            let answer = b.answer_offer(offer.as_bytes()).unwrap();
            assert_eq!(video_of(&answer).port, 0, "{offer}\n{answer}");
            assert_ne!(answer.media[0].port, 0);
            assert!(b.video.negotiated().is_none());
        }
        // Absurd limits are clamped, not refused.
        let huge = mutate(&|m| {
            m.attributes.retain(|x| x.name != "imageattr");
            m.attributes.push(sdp::Attribute::new(
                "imageattr",
                "96 recv [x=99999999,y=99999999] send [x=99999999,y=99999999]",
            ));
        });
        let mut b = video_media(true).await;
        let answer = b.answer_offer(huge.as_bytes()).unwrap();
        assert_ne!(video_of(&answer).port, 0);
        let limits = b.video.negotiated().unwrap().peer_limits;
        assert!(
            limits.max_width <= 4096 && limits.max_height <= 2304,
            "{limits:?}"
        );
    }

    #[tokio::test]
    async fn offers_follow_the_srtp_policy() {
        let cases = [
            (SrtpPolicy::Off, SrtpKeying::Sdes, "RTP/AVP", 0, false),
            (SrtpPolicy::Optional, SrtpKeying::Sdes, "RTP/AVP", 3, false),
            (
                SrtpPolicy::Mandatory,
                SrtpKeying::Sdes,
                "RTP/SAVP",
                3,
                false,
            ),
            (
                SrtpPolicy::Mandatory,
                SrtpKeying::Dtls,
                "UDP/TLS/RTP/SAVP",
                0,
                true,
            ),
            (
                SrtpPolicy::Optional,
                SrtpKeying::Dtls,
                "UDP/TLS/RTP/SAVP",
                0,
                true,
            ),
        ];
        for (policy, keying, proto, crypto, dtls) in cases {
            let mut m = media(policy, keying).await;
            let offer = m.create_offer().unwrap();
            let text = offer.to_string();
            assert_eq!(audio(&offer).protocol, proto, "{policy:?} {keying:?}");
            assert_eq!(text.matches("a=crypto:").count(), crypto, "{text}");
            assert_eq!(text.contains("a=fingerprint:sha-256 "), dtls, "{text}");
            assert_eq!(text.contains("a=setup:actpass"), dtls, "{text}");
            assert!(text.contains("a=rtcp-mux"), "{text}");
            assert_eq!(
                audio(&offer).port,
                m.rtp_socket().local_addr().unwrap().port()
            );
        }
    }

    #[tokio::test]
    async fn reoffers_bump_the_version_and_hold_is_sendonly() {
        let mut m = media(SrtpPolicy::Off, SrtpKeying::Sdes).await;
        let first = m.create_offer().unwrap();
        assert!(!first.to_string().contains("a=sendonly"), "{first}");
        m.local_hold = true;
        let hold = m.create_offer().unwrap();
        assert_eq!(hold.origin.session_id, first.origin.session_id);
        assert_eq!(
            hold.origin.session_version,
            first.origin.session_version + 1
        );
        assert!(hold.to_string().contains("a=sendonly"), "{hold}");
    }

    #[tokio::test]
    async fn an_unchanged_answer_keeps_its_version() {
        // Bob answers Alice's offer twice: a refresh with a new version but the same media.
        let mut alice = media(SrtpPolicy::Off, SrtpKeying::Sdes).await;
        let mut bob = media(SrtpPolicy::Off, SrtpKeying::Sdes).await;
        let offer = alice.create_offer().unwrap();
        let a1 = bob.answer_offer(offer.to_string().as_bytes()).unwrap();
        let again = alice.create_offer().unwrap();
        assert_eq!(
            again.origin.session_version,
            offer.origin.session_version + 1
        );
        let a2 = bob.answer_offer(again.to_string().as_bytes()).unwrap();
        assert_eq!(a1, a2);
        // A real change (hold) does bump it.
        alice.local_hold = true;
        let hold = alice.create_offer().unwrap();
        let a3 = bob.answer_offer(hold.to_string().as_bytes()).unwrap();
        assert_eq!(a3.origin.session_version, a1.origin.session_version + 1);
        assert!(a3.to_string().contains("a=recvonly"), "{a3}");
        assert!(bob.remote_hold());
        // The same offer again (same version) is answered with the same answer.
        let a4 = bob.answer_offer(hold.to_string().as_bytes()).unwrap();
        assert_eq!(a4, a3);
    }

    #[tokio::test]
    async fn mandatory_answerer_refuses_plain_and_optional_accepts_crypto() {
        let mut plain = media(SrtpPolicy::Off, SrtpKeying::Sdes).await;
        let plain_offer = plain.create_offer().unwrap().to_string();
        let mut strict = media(SrtpPolicy::Mandatory, SrtpKeying::Sdes).await;
        let err = strict.answer_offer(plain_offer.as_bytes()).unwrap_err();
        assert_eq!(err.status, 488);
        let mut best_effort = media(SrtpPolicy::Optional, SrtpKeying::Sdes).await;
        let be_offer = best_effort.create_offer().unwrap().to_string();
        let answer = strict.answer_offer(be_offer.as_bytes()).unwrap();
        assert_eq!(answer.to_string().matches("a=crypto:").count(), 1);
        best_effort
            .take_answer(answer.to_string().as_bytes(), false)
            .unwrap();
        assert!(best_effort.negotiated().unwrap().is_secure());
        // An off answerer ignores the crypto lines and answers plain; optional accepts that.
        let mut best_effort = media(SrtpPolicy::Optional, SrtpKeying::Sdes).await;
        let be_offer = best_effort.create_offer().unwrap().to_string();
        let mut off = media(SrtpPolicy::Off, SrtpKeying::Sdes).await;
        let answer = off.answer_offer(be_offer.as_bytes()).unwrap();
        assert!(!answer.to_string().contains("a=crypto"));
        best_effort
            .take_answer(answer.to_string().as_bytes(), false)
            .unwrap();
        assert!(!best_effort.negotiated().unwrap().is_secure());
        // Garbage is a 400.
        assert_eq!(off.answer_offer(b"\xff\xfe").unwrap_err().status, 400);
    }
}
