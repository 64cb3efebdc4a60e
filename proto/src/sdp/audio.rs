//! RFC 3264 offer/answer for one audio stream, as real SIP peers use it.
//!
//! * [`build_offer`] writes our offer (initial or re-offer: the caller keeps the
//!   `o=` session id and increments the version for every new description).
//! * [`answer_offer`] answers an offer: it accepts the first audio m-line that
//!   has a codec in common and a transport profile/security the caller's
//!   chooser agrees to, and rejects every other m-line with port 0.
//! * [`accept_answer`] checks the answer to our offer.
//!
//! Both sides end in a [`NegotiatedAudio`]: the codec to send with (numbered as
//! the peer numbered it), every payload type we may receive (ours and the
//! peer's, since peers behind B2BUAs renumber), `telephone-event` each way at
//! the clock rate matching the audio codec, our direction after hold rules
//! (RFC 3264 §8.4, RFC 6337, legacy `c=0.0.0.0`), RTCP address (RFC 3605,
//! RFC 5761 mux), packetization time and the peer's SRTP parameters (RFC 4568
//! `a=crypto`, RFC 5763 `a=fingerprint`/`a=setup`) as plain strings.

use std::net::{IpAddr, SocketAddr};

use super::line::{RtcpLine, empty_media, push_rtcp_and_direction};
pub use super::security::{
    AnswerSecurity, OfferedStream, SecurityKind, TransportProfile, plain_only, setup_answer,
};
use super::security::{LineKeys, line_attr};
use super::{
    Attribute, Codec, Connection, Direction, MediaDescription, Origin, RtpMap, SdpError,
    SessionDescription,
};

/// What we put in an audio offer (and, for codecs/direction/ptime/RTCP, in answers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaOffer {
    /// Our codecs in preference order, `telephone-event` included, with our payload types.
    pub codecs: Vec<Codec>,
    /// The direction we want (from our point of view).
    pub direction: Direction,
    /// `a=ptime` we want to receive, in milliseconds.
    pub ptime: Option<u32>,
    /// `a=maxptime`, in milliseconds.
    pub maxptime: Option<u32>,
    /// Whether we offer (or accept) RTP/RTCP multiplexing (RFC 5761).
    pub rtcp_mux: bool,
    /// Our RTCP port for `a=rtcp` (RFC 3605) when it is not RTP port + 1 (offers write it
    /// next to `a=rtcp-mux` as the fallback; answers only when not multiplexing).
    pub rtcp_port: Option<u16>,
    /// Transport profile of the offer (not used when answering).
    pub profile: TransportProfile,
    /// `a=crypto` values to offer (not used when answering); with `RTP/AVP` this is best-effort SRTP.
    pub crypto: Vec<String>,
    /// `a=fingerprint` value, e.g. `sha-256 AB:CD:...` (not used when answering).
    pub fingerprint: Option<String>,
    /// `a=setup` value, normally `actpass` in offers (not used when answering).
    pub setup: Option<String>,
}

impl MediaOffer {
    /// A plain `RTP/AVP` sendrecv offer of `codecs` with `ptime` 20 and `rtcp-mux`.
    pub fn new(codecs: Vec<Codec>) -> Self {
        MediaOffer {
            codecs,
            direction: Direction::SendRecv,
            ptime: Some(20),
            maxptime: None,
            rtcp_mux: true,
            rtcp_port: None,
            profile: TransportProfile::RtpAvp,
            crypto: Vec::new(),
            fingerprint: None,
            setup: None,
        }
    }
}

/// One agreed codec with the payload type it travels under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NegotiatedCodec {
    /// RTP payload type.
    pub payload_type: u8,
    /// Encoding name as written in SDP (`opus`, `PCMA`, ...).
    pub name: String,
    /// RTP clock rate.
    pub clock_rate: u32,
    /// RTP channel count (Opus is always 2 in SDP).
    pub channels: u8,
    /// `a=fmtp` parameters: the peer's for the send codec, ours for receive codecs.
    pub fmtp: Option<String>,
}

impl NegotiatedCodec {
    fn from_map(map: &RtpMap, fmtp: Option<&str>) -> Self {
        // Opus is always `/2` in SDP (RFC 7587 §7), whatever a lenient peer wrote.
        let channels = if map.encoding.eq_ignore_ascii_case("opus") {
            2
        } else {
            map.channels.unwrap_or(1)
        };
        NegotiatedCodec {
            payload_type: map.payload_type,
            name: map.encoding.clone(),
            clock_rate: map.clock_rate,
            channels,
            fmtp: fmtp.map(str::to_owned),
        }
    }

    fn from_codec(codec: &Codec, payload_type: u8) -> Self {
        NegotiatedCodec {
            payload_type,
            name: codec.name.clone(),
            clock_rate: codec.clock_rate,
            channels: codec.channels,
            fmtp: codec.fmtp.clone(),
        }
    }
}

/// The outcome of an audio offer/answer, from our point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedAudio {
    /// Index of the audio m-line in the offer/answer.
    pub index: usize,
    /// Transport profile of the stream.
    pub profile: TransportProfile,
    /// Agreed security.
    pub security: SecurityKind,
    /// The codec we send with, numbered as the peer expects, with the peer's fmtp.
    pub send_codec: NegotiatedCodec,
    /// Every payload type we accept: the common codecs under our numbers and the peer's.
    pub recv_codecs: Vec<NegotiatedCodec>,
    /// `telephone-event` (payload type, clock rate) the peer expects from us.
    pub send_dtmf: Option<(u8, u32)>,
    /// `telephone-event` (payload type, clock rate) pairs we accept.
    pub recv_dtmf: Vec<(u8, u32)>,
    /// Our direction (what we may send/receive), hold rules applied.
    pub direction: Direction,
    /// The peer's direction as it declared it (`c=0.0.0.0` counts as not receiving).
    pub remote_direction: Direction,
    /// Where to send RTP; `None` for `c=0.0.0.0`/`::` (legacy hold).
    pub remote_rtp: Option<SocketAddr>,
    /// Where to send RTCP: the RTP address when muxed, `a=rtcp` (RFC 3605), else RTP port + 1.
    pub remote_rtcp: Option<SocketAddr>,
    /// Whether RTP and RTCP share one port (both sides agreed, RFC 5761).
    pub rtcp_mux: bool,
    /// The peer's `a=ptime` (how we should packetize), in milliseconds (1..=1000; others ignored).
    pub ptime: Option<u32>,
    /// The peer's `a=maxptime`, in milliseconds.
    pub maxptime: Option<u32>,
    /// The peer's `a=crypto` values on this m-line (one in an answer, all offered in an offer).
    pub crypto: Vec<String>,
    /// The peer's `a=fingerprint` (media level, else session level).
    pub fingerprint: Option<String>,
    /// The peer's `a=setup` (media level, else session level).
    pub setup: Option<String>,
}

impl NegotiatedAudio {
    /// Whether the peer holds us: it declared it does not receive (sendonly, inactive, `c=0.0.0.0`).
    pub fn remote_hold(&self) -> bool {
        !self.remote_direction.receives()
    }

    /// Whether media is encrypted (SDES or DTLS-SRTP).
    pub fn is_secure(&self) -> bool {
        self.security != SecurityKind::Plain
    }
}

/// How a received offer relates to the previous one from the same peer (RFC 3264 §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OfferChange {
    /// Same origin and version: nothing changed, answer with our previous description.
    Unchanged,
    /// Same origin, new version: renegotiate.
    Changed,
    /// A different origin (session id, user or address): a new session description.
    NewSession,
}

/// Compares a new offer's `o=` line with the previous description from the same peer.
pub fn classify_offer(previous: &SessionDescription, new: &SessionDescription) -> OfferChange {
    let (p, n) = (&previous.origin, &new.origin);
    if p.username != n.username
        || p.session_id != n.session_id
        || p.net_type != n.net_type
        || p.addr_type != n.addr_type
        || p.address != n.address
    {
        OfferChange::NewSession
    } else if p.session_version == n.session_version {
        OfferChange::Unchanged
    } else {
        OfferChange::Changed
    }
}

fn session(
    session_id: u64,
    version: u64,
    ip: IpAddr,
    media: Vec<MediaDescription>,
) -> SessionDescription {
    let c = Connection::from_ip(ip);
    SessionDescription {
        origin: Origin {
            username: "-".to_owned(),
            session_id,
            session_version: version,
            net_type: c.net_type.clone(),
            addr_type: c.addr_type.clone(),
            address: c.address.clone(),
        },
        session_name: "-".to_owned(),
        connection: Some(c),
        bandwidths: Vec::new(),
        times: vec![(0, 0)],
        attributes: Vec::new(),
        media,
        other_fields: Vec::new(),
    }
}

fn push_format(m: &mut MediaDescription, codec: &Codec, pt: u8) {
    let token = pt.to_string();
    if m.formats.contains(&token) {
        return;
    }
    m.formats.push(token);
    m.attributes.push(Attribute::new(
        "rtpmap",
        codec.rtpmap_with_pt(pt).to_string(),
    ));
    if let Some(fmtp) = codec.fmtp_value() {
        m.attributes
            .push(Attribute::new("fmtp", format!("{pt} {fmtp}")));
    }
}

/// Writes ptime, maxptime, RTCP and direction attributes shared by offers and answers
/// (`a=rtcp` as [`push_rtcp_and_direction`] decides).
fn push_common(
    m: &mut MediaDescription,
    local: &MediaOffer,
    rtcp_mux: bool,
    direction: Direction,
    offering: bool,
) {
    if let Some(p) = local.ptime {
        m.attributes.push(Attribute::new("ptime", p.to_string()));
    }
    if let Some(p) = local.maxptime {
        m.attributes.push(Attribute::new("maxptime", p.to_string()));
    }
    push_rtcp_and_direction(m, local.rtcp_port, rtcp_mux, direction, offering);
}

/// Our audio offer: one m-line on `port` with `offer`'s codecs, attributes and
/// security, `o=- session_id version`. For a re-offer keep `session_id` and pass
/// the previous version + 1.
pub fn build_offer(
    session_id: u64,
    version: u64,
    ip: IpAddr,
    port: u16,
    offer: &MediaOffer,
) -> SessionDescription {
    let mut m = empty_media("audio", port, offer.profile.as_str());
    for codec in &offer.codecs {
        push_format(&mut m, codec, codec.payload_type);
    }
    for c in &offer.crypto {
        m.attributes.push(Attribute::new("crypto", c.clone()));
    }
    if let Some(fp) = &offer.fingerprint {
        m.attributes.push(Attribute::new("fingerprint", fp.clone()));
    }
    if let Some(setup) = &offer.setup {
        m.attributes.push(Attribute::new("setup", setup.clone()));
    }
    push_common(&mut m, offer, offer.rtcp_mux, offer.direction, true);
    session(session_id, version, ip, vec![m])
}

/// The interpreted view of one m-line of a description.
struct Stream<'a> {
    index: usize,
    media: &'a MediaDescription,
    profile: Option<TransportProfile>,
    /// (rtpmap, fmtp) in format order.
    formats: Vec<(RtpMap, Option<&'a str>)>,
    keys: LineKeys<'a>,
    ptime: Option<u32>,
    maxptime: Option<u32>,
    /// Declared direction with `c=0.0.0.0` applied (not receiving).
    direction: Direction,
    remote_rtp: Option<SocketAddr>,
    rtcp: RtcpLine,
}

impl<'a> Stream<'a> {
    fn new(sdp: &'a SessionDescription, index: usize, media: &'a MediaDescription) -> Self {
        let formats = media
            .rtpmaps()
            .into_iter()
            .map(|map| {
                let fmtp = media.fmtp(map.payload_type);
                (map, fmtp)
            })
            .collect();
        let unspecified = sdp
            .media_connection(index)
            .and_then(Connection::ip)
            .is_some_and(|ip| ip.is_unspecified());
        let mut direction = sdp.media_direction(index);
        if unspecified {
            direction = Direction::from_flags(direction.sends(), false);
        }
        let number = |name: &str| {
            line_attr(&media.attributes, &sdp.attributes, name).and_then(parse_packet_time)
        };
        Stream {
            index,
            media,
            profile: TransportProfile::parse(&media.protocol),
            formats,
            keys: LineKeys::read(&media.attributes, &sdp.attributes),
            ptime: number("ptime"),
            maxptime: number("maxptime"),
            direction,
            remote_rtp: sdp.media_remote_addr(index),
            rtcp: RtcpLine::read(&media.attributes),
        }
    }

    fn is_audio(&self) -> bool {
        self.media.media.eq_ignore_ascii_case("audio")
    }

    fn audio_formats(&self) -> impl Iterator<Item = &(RtpMap, Option<&'a str>)> {
        self.formats.iter().filter(|(m, _)| !m.is_telephone_event())
    }

    fn dtmf_formats(&self) -> impl Iterator<Item = &RtpMap> {
        self.formats
            .iter()
            .map(|(m, _)| m)
            .filter(|m| m.is_telephone_event())
    }
}

/// Longest packet time we take from a peer's `a=ptime`/`a=maxptime`, in milliseconds.
const MAX_PACKET_TIME_MS: u32 = 1000;

/// An `a=ptime`/`a=maxptime` value in whole milliseconds: integers, or decimals such as
/// `20.0` that some gateways send; 0, negative, absurd (> 1 s) or malformed values are ignored.
fn parse_packet_time(value: &str) -> Option<u32> {
    let ms = match value.parse::<u32>() {
        Ok(ms) => ms,
        Err(_) => {
            let f = value.parse::<f64>().ok().filter(|f| f.is_finite())?;
            let rounded = f.round();
            if !(1.0..=f64::from(MAX_PACKET_TIME_MS)).contains(&rounded) {
                return None;
            }
            // A whole number in 1..=1000 after the check: the cast is exact.
            rounded as u32
        }
    };
    (1..=MAX_PACKET_TIME_MS).contains(&ms).then_some(ms)
}

/// Pushes `codec` unless its payload type is already taken.
fn push_unique(list: &mut Vec<NegotiatedCodec>, codec: NegotiatedCodec) {
    if !list.iter().any(|c| c.payload_type == codec.payload_type) {
        list.push(codec);
    }
}

fn push_unique_dtmf(list: &mut Vec<(u8, u32)>, pt: u8, rate: u32) {
    if !list.iter().any(|(p, _)| *p == pt) {
        list.push((pt, rate));
    }
}

/// The `telephone-event` format matching `rate`, else the first one.
fn pick_dtmf<'m>(candidates: &[&'m RtpMap], rate: u32) -> Option<&'m RtpMap> {
    candidates
        .iter()
        .find(|m| m.clock_rate == rate)
        .or_else(|| candidates.first())
        .copied()
}

/// Answers `offer` (RFC 3264 §6) with one audio stream on `port`.
///
/// m-lines are considered in order; the first audio m-line with a common
/// codec, a known RTP profile and a security that `security` returns and that
/// fits the profile (see [`AnswerSecurity`]) is accepted, every other m-line
/// is answered with port 0. The answer lists the common codecs in OUR
/// preference order under the offerer's payload numbers, plus the
/// `telephone-event` whose clock matches the first of them. Our direction is
/// the offered one reversed, limited by `local.direction`; an offer with
/// `c=0.0.0.0` means we must not send. `local`'s profile/crypto/fingerprint/setup
/// are not used. Fails with [`SdpError::NoAcceptableMedia`] (488) when nothing fits.
pub fn answer_offer<F>(
    offer: &SessionDescription,
    local: &MediaOffer,
    session_id: u64,
    version: u64,
    ip: IpAddr,
    port: u16,
    mut security: F,
) -> Result<(SessionDescription, NegotiatedAudio), SdpError>
where
    F: FnMut(&OfferedStream<'_>) -> Option<AnswerSecurity>,
{
    let mut answer_media = Vec::with_capacity(offer.media.len());
    let mut negotiated = None;
    for (index, media) in offer.media.iter().enumerate() {
        if negotiated.is_none() {
            let stream = Stream::new(offer, index, media);
            if let Some((m, n)) = try_answer(&stream, local, port, &mut security) {
                answer_media.push(m);
                negotiated = Some(n);
                continue;
            }
        }
        let mut rejected = empty_media(&media.media, 0, &media.protocol);
        rejected.formats = media.formats.clone();
        answer_media.push(rejected);
    }
    let negotiated = negotiated.ok_or(SdpError::NoAcceptableMedia)?;
    Ok((session(session_id, version, ip, answer_media), negotiated))
}

fn try_answer<F>(
    stream: &Stream<'_>,
    local: &MediaOffer,
    port: u16,
    security: &mut F,
) -> Option<(MediaDescription, NegotiatedAudio)>
where
    F: FnMut(&OfferedStream<'_>) -> Option<AnswerSecurity>,
{
    if !stream.is_audio() || stream.media.port == 0 {
        return None;
    }
    let profile = stream.profile?;
    // Common audio codecs in our preference order, each with the offered format.
    let common: Vec<(&Codec, &RtpMap, Option<&str>)> = local
        .codecs
        .iter()
        .filter(|c| !c.is_telephone_event())
        .filter_map(|c| {
            stream
                .audio_formats()
                .find(|(m, _)| c.accepts(m))
                .map(|(m, f)| (c, m, *f))
        })
        .collect();
    let (_, first_map, first_fmtp) = *common.first()?;
    let offered = stream.keys.offered(stream.index, profile);
    let chosen = security(&offered)?;
    if !chosen.fits(&offered) {
        return None;
    }
    let dtmf_supported = |m: &&RtpMap| {
        local
            .codecs
            .iter()
            .any(|c| c.is_telephone_event() && c.clock_rate == m.clock_rate)
    };
    let dtmf_offered: Vec<&RtpMap> = stream.dtmf_formats().filter(dtmf_supported).collect();
    let dtmf = pick_dtmf(&dtmf_offered, first_map.clock_rate);
    let remote_direction = stream.direction;
    let mut direction = remote_direction.reverse().intersect(local.direction);
    if stream.remote_rtp.is_none() {
        direction = Direction::from_flags(false, direction.receives());
    }
    let rtcp_mux = stream.rtcp.mux && local.rtcp_mux;

    let mut m = empty_media(&stream.media.media, port, &stream.media.protocol);
    for (codec, map, _) in &common {
        push_format(&mut m, codec, map.payload_type);
    }
    let dtmf_codec = dtmf.and_then(|d| {
        local
            .codecs
            .iter()
            .find(|c| c.is_telephone_event() && c.clock_rate == d.clock_rate)
            .map(|c| (c, d))
    });
    if let Some((codec, map)) = dtmf_codec {
        push_format(&mut m, codec, map.payload_type);
    }
    m.attributes.extend(chosen.attributes());
    push_common(&mut m, local, rtcp_mux, direction, false);

    let mut recv_codecs = Vec::new();
    for (codec, map, _) in &common {
        push_unique(
            &mut recv_codecs,
            NegotiatedCodec::from_codec(codec, map.payload_type),
        );
    }
    // Leniently also our own numbers, where the offer does not use them for something else.
    for (codec, _, _) in &common {
        if !stream
            .formats
            .iter()
            .any(|(m, _)| m.payload_type == codec.payload_type)
        {
            push_unique(
                &mut recv_codecs,
                NegotiatedCodec::from_codec(codec, codec.payload_type),
            );
        }
    }
    let mut recv_dtmf = Vec::new();
    if let Some((_, map)) = dtmf_codec {
        push_unique_dtmf(&mut recv_dtmf, map.payload_type, map.clock_rate);
    }
    for map in &dtmf_offered {
        push_unique_dtmf(&mut recv_dtmf, map.payload_type, map.clock_rate);
    }
    for codec in local.codecs.iter().filter(|c| c.is_telephone_event()) {
        let taken = stream
            .formats
            .iter()
            .any(|(m, _)| m.payload_type == codec.payload_type);
        if !taken {
            push_unique_dtmf(&mut recv_dtmf, codec.payload_type, codec.clock_rate);
        }
    }
    let (crypto, fingerprint, setup) = stream.keys.to_owned_parts();
    let negotiated = NegotiatedAudio {
        index: stream.index,
        profile,
        security: chosen.kind(),
        send_codec: NegotiatedCodec::from_map(first_map, first_fmtp),
        recv_codecs,
        send_dtmf: dtmf_codec.map(|(_, m)| (m.payload_type, m.clock_rate)),
        recv_dtmf,
        direction,
        remote_direction,
        remote_rtp: stream.remote_rtp,
        remote_rtcp: stream.rtcp.remote(stream.remote_rtp, rtcp_mux),
        rtcp_mux,
        ptime: stream.ptime,
        maxptime: stream.maxptime,
        crypto,
        fingerprint,
        setup,
    };
    Some((m, negotiated))
}

/// Checks the `answer` to our `offer` (RFC 3264 §5, §6) and returns the first
/// accepted audio stream.
///
/// The answer must have as many m-lines as the offer, of the same media types,
/// accept no stream the offer disabled, keep the transport profile, and accept
/// audio with at least one offered codec. An `RTP/SAVP(F)` answer needs an
/// `a=crypto`, a DTLS one an `a=fingerprint`; on an `RTP/AVP(F)` offer that
/// carried `a=crypto`, an answer with `a=crypto` turns SDES on.
pub fn accept_answer(
    offer: &SessionDescription,
    answer: &SessionDescription,
) -> Result<NegotiatedAudio, SdpError> {
    if offer.media.len() != answer.media.len() {
        return Err(SdpError::MediaCountMismatch {
            offer: offer.media.len(),
            answer: answer.media.len(),
        });
    }
    let mut found = None;
    for (index, (o, a)) in offer.media.iter().zip(&answer.media).enumerate() {
        if !o.media.eq_ignore_ascii_case(&a.media) {
            return Err(SdpError::MediaMismatch { index });
        }
        if a.port == 0 {
            continue;
        }
        if o.port == 0 {
            return Err(SdpError::MediaMismatch { index });
        }
        if found.is_none() && o.media.eq_ignore_ascii_case("audio") {
            found = Some(accept_stream(
                &Stream::new(offer, index, o),
                &Stream::new(answer, index, a),
            )?);
        }
    }
    found.ok_or(SdpError::NoAudio)
}

fn accept_stream(ours: &Stream<'_>, theirs: &Stream<'_>) -> Result<NegotiatedAudio, SdpError> {
    let index = ours.index;
    let unacceptable = |reason| SdpError::Unacceptable { index, reason };
    let profile = ours
        .profile
        .ok_or_else(|| unacceptable("we did not offer an RTP profile"))?;
    if theirs.profile != Some(profile) {
        return Err(unacceptable("the answer changed the transport profile"));
    }
    let ours_for = |map: &RtpMap| {
        ours.formats.iter().find(|(m, _)| {
            m.encoding.eq_ignore_ascii_case(&map.encoding)
                && m.clock_rate == map.clock_rate
                && (m.channels.unwrap_or(1) == map.channels.unwrap_or(1)
                    || m.encoding.eq_ignore_ascii_case("opus"))
        })
    };
    let common: Vec<(&RtpMap, Option<&str>, &RtpMap, Option<&str>)> = theirs
        .audio_formats()
        .filter_map(|(t, tf)| ours_for(t).map(|(o, of)| (t, *tf, o, *of)))
        .collect();
    let (send_map, send_fmtp, ..) = *common.first().ok_or(SdpError::MediaMismatch { index })?;
    let security = theirs
        .keys
        .answered_kind(profile, !ours.keys.crypto.is_empty())
        .map_err(unacceptable)?;
    let mut recv_codecs = Vec::new();
    for (t, _, o, of) in &common {
        push_unique(&mut recv_codecs, NegotiatedCodec::from_map(o, *of));
        let clashes = ours.formats.iter().any(|(m, _)| {
            m.payload_type == t.payload_type && ours_for(t).map(|(x, _)| x) != Some(m)
        });
        if !clashes {
            push_unique(&mut recv_codecs, NegotiatedCodec::from_map(t, *of));
        }
    }
    let offered_dtmf = |rate: u32| ours.dtmf_formats().any(|m| m.clock_rate == rate);
    let answered_dtmf: Vec<&RtpMap> = theirs
        .dtmf_formats()
        .filter(|m| offered_dtmf(m.clock_rate))
        .collect();
    let send_dtmf =
        pick_dtmf(&answered_dtmf, send_map.clock_rate).map(|m| (m.payload_type, m.clock_rate));
    let mut recv_dtmf = Vec::new();
    for t in &answered_dtmf {
        if let Some(o) = ours.dtmf_formats().find(|m| m.clock_rate == t.clock_rate) {
            push_unique_dtmf(&mut recv_dtmf, o.payload_type, o.clock_rate);
        }
        let clashes = ours.formats.iter().any(|(m, _)| {
            m.payload_type == t.payload_type
                && !(m.is_telephone_event() && m.clock_rate == t.clock_rate)
        });
        if !clashes {
            push_unique_dtmf(&mut recv_dtmf, t.payload_type, t.clock_rate);
        }
    }
    for o in ours.dtmf_formats() {
        push_unique_dtmf(&mut recv_dtmf, o.payload_type, o.clock_rate);
    }
    let remote_direction = theirs.direction;
    let mut direction = ours.direction.intersect(remote_direction.reverse());
    if theirs.remote_rtp.is_none() {
        direction = Direction::from_flags(false, direction.receives());
    }
    let rtcp_mux = ours.rtcp.mux && theirs.rtcp.mux;
    let (crypto, fingerprint, setup) = theirs.keys.to_owned_parts();
    Ok(NegotiatedAudio {
        index,
        profile,
        security,
        send_codec: NegotiatedCodec::from_map(send_map, send_fmtp),
        recv_codecs,
        send_dtmf,
        recv_dtmf,
        direction,
        remote_direction,
        remote_rtp: theirs.remote_rtp,
        remote_rtcp: theirs.rtcp.remote(theirs.remote_rtp, rtcp_mux),
        rtcp_mux,
        ptime: theirs.ptime,
        maxptime: theirs.maxptime,
        crypto,
        fingerprint,
        setup,
    })
}
