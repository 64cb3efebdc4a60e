//! The media side of a call as far as signalling goes: a bound RTP socket and the SDP
//! offer/answer (RFC 3264) with PCMU, PCMA and telephone-event.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tandem_proto::sdp::{self, Codec, Direction, NegotiatedMedia, SessionDescription};
use tokio::net::UdpSocket;

use crate::error::{Result, UaError};

/// How many binds we try to get an even RTP port (RFC 3550 §11) before taking any port.
const EVEN_PORT_TRIES: usize = 16;

/// The codecs we offer and accept, in order of preference.
pub fn supported_codecs() -> Vec<Codec> {
    vec![
        Codec::new("PCMU", 8000, 1, 0),
        Codec::new("PCMA", 8000, 1, 8),
        Codec::new("telephone-event", 8000, 1, 101).with_fmtp("0-16"),
    ]
}

/// What a call's media looks like once negotiated.
#[derive(Debug, Clone)]
pub struct MediaInfo {
    /// Our bound RTP address (the port is in our SDP).
    pub local_rtp: SocketAddr,
    /// Our SDP (offer or answer).
    pub local_sdp: Option<SessionDescription>,
    /// The peer's SDP (answer or offer), once received.
    pub remote_sdp: Option<SessionDescription>,
    /// The negotiated streams (codec, payload type, remote RTP address).
    pub negotiated: Vec<NegotiatedMedia>,
}

/// Binds a UDP socket for RTP on `ip`, preferring an even port.
pub(crate) async fn bind_rtp(ip: IpAddr) -> Result<Arc<UdpSocket>> {
    let mut fallback = None;
    for _ in 0..EVEN_PORT_TRIES {
        let sock = UdpSocket::bind(SocketAddr::new(ip, 0))
            .await
            .map_err(|e| UaError::Network(format!("cannot bind an RTP socket on {ip}: {e}")))?;
        let port = sock
            .local_addr()
            .map_err(|e| UaError::Network(format!("RTP socket address: {e}")))?
            .port();
        if port % 2 == 0 {
            return Ok(Arc::new(sock));
        }
        fallback.get_or_insert(sock);
    }
    fallback
        .map(Arc::new)
        .ok_or_else(|| UaError::Network("cannot bind an RTP socket".into()))
}

/// Our SDP offer for an audio call on `rtp`.
pub(crate) fn offer(session_id: u64, ip: IpAddr, rtp_port: u16) -> SessionDescription {
    sdp::audio_offer(
        session_id,
        ip,
        rtp_port,
        &supported_codecs(),
        Direction::SendRecv,
    )
}

/// Our SDP answer to `offer_body`, and the negotiated streams.
pub(crate) fn answer(
    offer_body: &[u8],
    session_id: u64,
    ip: IpAddr,
    rtp_port: u16,
) -> Result<(SessionDescription, SessionDescription, Vec<NegotiatedMedia>)> {
    let text = std::str::from_utf8(offer_body)
        .map_err(|_| UaError::Protocol("the SDP offer is not UTF-8".into()))?;
    let offer = SessionDescription::parse(text)
        .map_err(|e| UaError::Protocol(format!("unusable SDP offer: {e}")))?;
    let (answer, negotiated) =
        sdp::negotiate_answer(&offer, &supported_codecs(), session_id, ip, &[rtp_port])
            .map_err(|e| UaError::Protocol(format!("no common media: {e}")))?;
    Ok((offer, answer, negotiated))
}

/// The peer's SDP answer `body` to our `offer`, and the negotiated streams.
pub(crate) fn take_answer(
    offer: &SessionDescription,
    body: &[u8],
) -> Result<(SessionDescription, Vec<NegotiatedMedia>)> {
    let text = std::str::from_utf8(body)
        .map_err(|_| UaError::Protocol("the SDP answer is not UTF-8".into()))?;
    let answer = SessionDescription::parse(text)
        .map_err(|e| UaError::Protocol(format!("unusable SDP answer: {e}")))?;
    let negotiated = sdp::negotiated_from_answer(offer, &answer)
        .map_err(|e| UaError::Protocol(format!("unusable SDP answer: {e}")))?;
    Ok((answer, negotiated))
}
