//! The first, multi-stream offer/answer helpers, kept for existing callers;
//! new code uses [`super::audio`].

use std::net::{IpAddr, SocketAddr};

use super::{
    Attribute, Codec, Connection, Direction, MediaDescription, Origin, RtpMap, SdpError,
    SessionDescription,
};

/// The outcome of offer/answer for one accepted m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedMedia {
    /// Index of the m-line in the offer/answer.
    pub index: usize,
    /// Where to send RTP (`None` when the peer gave no usable address, e.g. 0.0.0.0 hold).
    pub remote_addr: Option<SocketAddr>,
    /// Agreed codecs, in preference order, with the payload types to use.
    pub codecs: Vec<RtpMap>,
    /// Payload type of `telephone-event`, if agreed.
    pub telephone_event: Option<u8>,
    /// Our direction for this stream (from our point of view).
    pub direction: Direction,
}

fn origin_for(session_id: u64, address: IpAddr) -> Origin {
    let c = Connection::from_ip(address);
    Origin {
        username: "-".to_owned(),
        session_id,
        session_version: session_id,
        net_type: c.net_type,
        addr_type: c.addr_type,
        address: c.address,
    }
}

fn push_codec_attributes(m: &mut MediaDescription, codec: &Codec, pt: u8) {
    m.attributes.push(Attribute::new(
        "rtpmap",
        codec.rtpmap_with_pt(pt).to_string(),
    ));
    if let Some(fmtp) = codec.fmtp_value() {
        m.attributes
            .push(Attribute::new("fmtp", format!("{pt} {fmtp}")));
    }
}

/// An offer with one `RTP/AVP` audio stream (RFC 3264 §5) listing `codecs` in order,
/// with `a=ptime:20` and the given direction. A `telephone-event` codec without
/// fmtp gets `0-16`.
pub fn audio_offer(
    session_id: u64,
    address: IpAddr,
    rtp_port: u16,
    codecs: &[Codec],
    direction: Direction,
) -> SessionDescription {
    let mut m = MediaDescription {
        media: "audio".to_owned(),
        port: rtp_port,
        num_ports: None,
        protocol: "RTP/AVP".to_owned(),
        formats: codecs.iter().map(|c| c.payload_type.to_string()).collect(),
        connection: None,
        bandwidths: Vec::new(),
        attributes: Vec::new(),
        other_fields: Vec::new(),
    };
    for codec in codecs {
        push_codec_attributes(&mut m, codec, codec.payload_type);
    }
    m.attributes.push(Attribute::new("ptime", "20"));
    m.attributes.push(Attribute::flag(direction.as_str()));
    SessionDescription {
        origin: origin_for(session_id, address),
        session_name: "-".to_owned(),
        connection: Some(Connection::from_ip(address)),
        bandwidths: Vec::new(),
        times: vec![(0, 0)],
        attributes: Vec::new(),
        media: vec![m],
        other_fields: Vec::new(),
    }
}

fn is_plain_rtp(protocol: &str) -> bool {
    protocol.eq_ignore_ascii_case("RTP/AVP") || protocol.eq_ignore_ascii_case("RTP/AVPF")
}

/// Picks `telephone-event` matching the primary codec's clock rate, else any offered one we support.
fn pick_telephone_event<'a>(
    offered: &'a [RtpMap],
    supported: &'a [Codec],
    primary_rate: u32,
) -> Option<(&'a Codec, &'a RtpMap)> {
    let candidates: Vec<(&Codec, &RtpMap)> = offered
        .iter()
        .filter(|m| m.is_telephone_event())
        .filter_map(|m| {
            supported
                .iter()
                .find(|c| c.is_telephone_event() && c.clock_rate == m.clock_rate)
                .map(|c| (c, m))
        })
        .collect();
    candidates
        .iter()
        .find(|(_, m)| m.clock_rate == primary_rate)
        .or_else(|| candidates.first())
        .copied()
}

/// Answers `offer` (RFC 3264 §6): the same m-lines in the same order; streams
/// without a common codec (or not plain RTP/AVP(F)) rejected with port 0;
/// payload types numbered as the offerer did, in the offer's order; the
/// direction is the complement of the offered one. `ports[k]` is our RTP port
/// for the k-th accepted stream. Fails when nothing can be accepted.
pub fn negotiate_answer(
    offer: &SessionDescription,
    supported: &[Codec],
    session_id: u64,
    address: IpAddr,
    ports: &[u16],
) -> Result<(SessionDescription, Vec<NegotiatedMedia>), SdpError> {
    let mut answer_media = Vec::with_capacity(offer.media.len());
    let mut negotiated = Vec::new();
    for (index, offered) in offer.media.iter().enumerate() {
        let offered_maps = offered.rtpmaps();
        let chosen: Vec<(&Codec, &RtpMap)> = offered_maps
            .iter()
            .filter(|m| !m.is_telephone_event())
            .filter_map(|m| {
                supported
                    .iter()
                    .find(|c| !c.is_telephone_event() && c.matches(m))
                    .map(|c| (c, m))
            })
            .collect();
        let acceptable = offered.port != 0 && is_plain_rtp(&offered.protocol) && !chosen.is_empty();
        if !acceptable {
            answer_media.push(MediaDescription {
                media: offered.media.clone(),
                port: 0,
                num_ports: None,
                protocol: offered.protocol.clone(),
                formats: offered.formats.clone(),
                connection: None,
                bandwidths: Vec::new(),
                attributes: Vec::new(),
                other_fields: Vec::new(),
            });
            continue;
        }
        let port = *ports
            .get(negotiated.len())
            .ok_or(SdpError::NotEnoughPorts {
                needed: negotiated.len() + 1,
                given: ports.len(),
            })?;
        let primary_rate = chosen.first().map_or(8000, |(_, m)| m.clock_rate);
        let te = pick_telephone_event(&offered_maps, supported, primary_rate);
        let direction = offer.media_direction(index).reverse();
        let mut m = MediaDescription {
            media: offered.media.clone(),
            port,
            num_ports: None,
            protocol: offered.protocol.clone(),
            formats: Vec::new(),
            connection: None,
            bandwidths: Vec::new(),
            attributes: Vec::new(),
            other_fields: Vec::new(),
        };
        let mut codecs = Vec::with_capacity(chosen.len());
        for (codec, map) in &chosen {
            m.formats.push(map.payload_type.to_string());
            push_codec_attributes(&mut m, codec, map.payload_type);
            codecs.push((*map).clone());
        }
        if let Some((codec, map)) = te {
            m.formats.push(map.payload_type.to_string());
            push_codec_attributes(&mut m, codec, map.payload_type);
        }
        let ptime = offered.attribute("ptime").unwrap_or("20").to_owned();
        m.attributes.push(Attribute::new("ptime", ptime));
        m.attributes.push(Attribute::flag(direction.as_str()));
        negotiated.push(NegotiatedMedia {
            index,
            remote_addr: offer.media_remote_addr(index),
            codecs,
            telephone_event: te.map(|(_, map)| map.payload_type),
            direction,
        });
        answer_media.push(m);
    }
    if negotiated.is_empty() {
        return Err(SdpError::NoAcceptableMedia);
    }
    let answer = SessionDescription {
        origin: origin_for(session_id, address),
        session_name: "-".to_owned(),
        connection: Some(Connection::from_ip(address)),
        bandwidths: Vec::new(),
        times: vec![(0, 0)],
        attributes: Vec::new(),
        media: answer_media,
        other_fields: Vec::new(),
    };
    Ok((answer, negotiated))
}

/// The offerer's view of a completed exchange: for each stream the answer
/// accepted, the codecs of the answer that were offered (with the answer's
/// payload types, which are what we send with), the remote address and our
/// direction (what we offered, limited by what the answerer agreed to).
pub fn negotiated_from_answer(
    offer: &SessionDescription,
    answer: &SessionDescription,
) -> Result<Vec<NegotiatedMedia>, SdpError> {
    if offer.media.len() != answer.media.len() {
        return Err(SdpError::MediaCountMismatch {
            offer: offer.media.len(),
            answer: answer.media.len(),
        });
    }
    let mut out = Vec::new();
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
        let offered = o.rtpmaps();
        let answered = a.rtpmaps();
        let was_offered = |m: &RtpMap| {
            offered
                .iter()
                .any(|x| x.matches(&m.encoding, m.clock_rate, m.channels.unwrap_or(1)))
        };
        let codecs: Vec<RtpMap> = answered
            .iter()
            .filter(|m| !m.is_telephone_event() && was_offered(m))
            .cloned()
            .collect();
        if codecs.is_empty() {
            return Err(SdpError::MediaMismatch { index });
        }
        let telephone_event = answered
            .iter()
            .find(|m| m.is_telephone_event() && was_offered(m))
            .map(|m| m.payload_type);
        let direction = offer
            .media_direction(index)
            .intersect(answer.media_direction(index).reverse());
        out.push(NegotiatedMedia {
            index,
            remote_addr: answer.media_remote_addr(index),
            codecs,
            telephone_event,
            direction,
        });
    }
    Ok(out)
}
