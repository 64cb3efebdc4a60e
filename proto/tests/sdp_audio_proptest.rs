//! Property tests for the audio offer/answer: arbitrary input never panics, and
//! whatever two Tandems (or a Tandem and a random offerer) agree on is consistent both ways.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;
use tandem_proto::sdp::{
    AnswerSecurity, Codec, Direction, MediaOffer, OfferedStream, SessionDescription,
    TransportProfile, accept_answer, answer_offer, build_offer, default_audio_codecs, plain_only,
};

const IP_A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const IP_B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

fn direction() -> impl Strategy<Value = Direction> {
    prop_oneof![
        Just(Direction::SendRecv),
        Just(Direction::SendOnly),
        Just(Direction::RecvOnly),
        Just(Direction::Inactive)
    ]
}

fn profile() -> impl Strategy<Value = TransportProfile> {
    prop_oneof![
        Just(TransportProfile::RtpAvp),
        Just(TransportProfile::RtpAvpf),
        Just(TransportProfile::RtpSavp),
        Just(TransportProfile::RtpSavpf),
        Just(TransportProfile::UdpTlsRtpSavp),
        Just(TransportProfile::UdpTlsRtpSavpf),
    ]
}

/// A codec from the pool real peers offer, under a random dynamic payload type.
fn codec() -> impl Strategy<Value = Codec> {
    (0usize..9, 96u8..128).prop_map(|(i, pt)| match i {
        0 => Codec::new("opus", 48000, 2, pt).with_fmtp("useinbandfec=1"),
        1 => Codec::pcma(),
        2 => Codec::pcmu(),
        3 => Codec::g722(),
        4 => Codec::new("G729", 8000, 1, 18),
        5 => Codec::new("speex", 16000, 1, pt),
        6 => Codec::telephone_event(8000, pt),
        7 => Codec::telephone_event(48000, pt),
        _ => Codec::telephone_event(16000, pt),
    })
}

/// An offer as some peer might send it: unique payload types, any profile, keys when needed.
fn peer_offer() -> impl Strategy<Value = MediaOffer> {
    (
        prop::collection::vec(codec(), 1..8),
        direction(),
        profile(),
        any::<bool>(),
        any::<bool>(),
        prop::option::of(prop_oneof![Just(10u32), Just(20), Just(30), Just(60)]),
    )
        .prop_map(|(codecs, dir, profile, mux, keys, ptime)| {
            let mut unique: Vec<Codec> = Vec::new();
            for c in codecs {
                if !unique.iter().any(|u| u.payload_type == c.payload_type) {
                    unique.push(c);
                }
            }
            let mut o = MediaOffer::new(unique);
            o.direction = dir;
            o.profile = profile;
            o.rtcp_mux = mux;
            o.ptime = ptime;
            if profile.is_savp() || (profile.is_plain() && keys) {
                o.crypto = vec![
                    "1 AES_CM_128_HMAC_SHA1_80 inline:QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"
                        .into(),
                ];
            }
            if profile.is_dtls() {
                o.fingerprint = Some("sha-256 AB:CD".into());
                o.setup = Some("actpass".into());
            }
            o
        })
}

/// Our chooser with SRTP "optional": SDES when keys are offered, DTLS when asked, else plain.
fn optional(s: &OfferedStream<'_>) -> Option<AnswerSecurity> {
    if s.profile.is_dtls() {
        return Some(AnswerSecurity::Dtls {
            fingerprint: "sha-256 EF:01".into(),
            setup: "active".into(),
        });
    }
    match s.crypto.first() {
        Some(c) => Some(AnswerSecurity::Sdes((*c).to_owned())),
        None => plain_only(s),
    }
}

/// SDP-ish lines built from real attribute shapes with hostile values.
fn sdp_line() -> impl Strategy<Value = String> {
    let num = prop_oneof![
        Just("0".to_owned()),
        Just("65535".to_owned()),
        Just("65536".to_owned()),
        Just("-1".to_owned()),
        Just("x".to_owned()),
        (0u32..200).prop_map(|n| n.to_string())
    ];
    let addr = prop_oneof![
        Just("0.0.0.0"),
        Just("192.0.2.9"),
        Just("::"),
        Just("fd00::1"),
        Just("host.example"),
        Just("1.2.3.4/127"),
        Just("")
    ];
    let proto = prop_oneof![
        Just("RTP/AVP"),
        Just("RTP/SAVP"),
        Just("UDP/TLS/RTP/SAVPF"),
        Just("RTP/AVPF"),
        Just("udp"),
        Just("RTP/savp")
    ];
    let name = prop_oneof![
        Just("opus/48000/2"),
        Just("opus/48000"),
        Just("PCMU/8000"),
        Just("pcma/8000/1"),
        Just("telephone-event/8000"),
        Just("telephone-event/48000"),
        Just("G722/8000"),
        Just("x/y/z/w"),
        Just("/8000"),
        Just("opus/99999999999")
    ];
    (0usize..12, num.clone(), num, addr, proto, name).prop_map(|(k, n1, n2, addr, proto, name)| {
        match k {
            0 => format!("m=audio {n1} {proto} {n2} 0 8 101"),
            1 => format!("c=IN IP4 {addr}"),
            2 => format!("c=IN IP6 {addr}"),
            3 => format!("a=rtpmap:{n1} {name}"),
            4 => format!("a=fmtp:{n1} useinbandfec=1;usedtx={n2}"),
            5 => format!("a=crypto:{n1} AES_CM_128_HMAC_SHA1_80 inline:QUJD"),
            6 => format!("a=rtcp:{n1} IN IP4 {addr}"),
            7 => format!("a=ptime:{n1}"),
            8 => [
                "a=sendonly",
                "a=recvonly",
                "a=inactive",
                "a=sendrecv",
                "a=rtcp-mux",
            ][n1.len() % 5]
                .to_owned(),
            9 => format!("a=fingerprint:sha-256 {n2}"),
            10 => format!(
                "a=setup:{}",
                ["actpass", "active", "passive", ""][n2.len() % 4]
            ),
            _ => format!("m=video {n1} {proto} 96"),
        }
    })
}

/// Every captured body in `tests/data/sdp`.
fn captured() -> Vec<Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sdp");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sdp"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

/// How to damage a body: (position fraction, operation, byte).
fn mutation() -> impl Strategy<Value = (f64, u8, u8)> {
    (0.0f64..1.0, 0u8..4, any::<u8>())
}

fn mutate(body: &[u8], mutations: &[(f64, u8, u8)]) -> Vec<u8> {
    let mut out = body.to_vec();
    for &(at, op, byte) in mutations {
        let len = out.len();
        // Truncation of the f64 index is intended: a position inside the body.
        let i = ((at * len as f64) as usize).min(len.saturating_sub(1));
        match op {
            0 if len > 0 => out[i] = byte,
            1 => out.insert(i, byte),
            2 if len > 0 => {
                out.remove(i);
            }
            _ => {
                let digits = format!("{}", u64::from(byte) * 1_000_003);
                for (k, d) in digits.bytes().enumerate() {
                    out.insert((i + k).min(out.len()), d);
                }
            }
        }
    }
    out
}

proptest! {
    #[test]
    fn mutated_captures_never_panic(which in any::<prop::sample::Index>(),
                                    mutations in prop::collection::vec(mutation(), 1..6)) {
        let bodies = captured();
        let chosen: &Vec<u8> = which.get(&bodies);
        let body = mutate(chosen, &mutations);
        if let Ok(sdp) = SessionDescription::parse_bytes(&body) {
            prop_assert_eq!(SessionDescription::parse(&sdp.to_string()).unwrap(), sdp.clone());
            let local = MediaOffer::new(default_audio_codecs());
            if let Ok((answer, bob)) = answer_offer(&sdp, &local, 1, 1, IP_B, 4000, optional) {
                let alice = accept_answer(&sdp, &answer).unwrap();
                prop_assert_eq!(alice.index, bob.index);
            }
            for original in &bodies {
                if let Ok(offer) = SessionDescription::parse_bytes(original) {
                    let _ = accept_answer(&offer, &sdp);
                }
            }
        }
    }

    #[test]
    fn structured_hostile_offers_never_panic(lines in prop::collection::vec(sdp_line(), 0..24)) {
        let mut text = String::from("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n");
        for l in &lines {
            text.push_str(l);
            text.push_str("\r\n");
        }
        if let Ok(sdp) = SessionDescription::parse(&text) {
            prop_assert_eq!(SessionDescription::parse(&sdp.to_string()).unwrap(), sdp.clone());
            let local = MediaOffer::new(default_audio_codecs());
            match answer_offer(&sdp, &local, 1, 1, IP_B, 4000, optional) {
                Ok((answer, bob)) => {
                    prop_assert_eq!(answer.media.len(), sdp.media.len());
                    let reparsed = SessionDescription::parse(&answer.to_string()).unwrap();
                    let alice = accept_answer(&sdp, &reparsed).unwrap();
                    prop_assert_eq!(alice.index, bob.index);
                    prop_assert_eq!(alice.security, bob.security);
                }
                Err(e) => prop_assert_eq!(e.status_code(), 488),
            }
            let _ = accept_answer(&sdp, &sdp);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = SessionDescription::parse_bytes(&bytes);
    }

    #[test]
    fn arbitrary_lines_after_a_header_never_panic(
        lines in prop::collection::vec("[a-z]=[ -~]{0,60}", 0..30),
        c in any::<bool>(),
    ) {
        let mut text = String::from("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n");
        if c {
            text.push_str("c=IN IP4 192.0.2.1\r\n");
        }
        for l in &lines {
            text.push_str(l);
            text.push_str("\r\n");
        }
        if let Ok(sdp) = SessionDescription::parse(&text) {
            prop_assert_eq!(SessionDescription::parse(&sdp.to_string()).unwrap(), sdp.clone());
            let local = MediaOffer::new(default_audio_codecs());
            if let Ok((answer, _)) = answer_offer(&sdp, &local, 1, 1, IP_B, 4000, optional) {
                prop_assert_eq!(answer.media.len(), sdp.media.len());
                prop_assert!(accept_answer(&sdp, &answer).is_ok());
            }
            let _ = accept_answer(&sdp, &sdp);
        }
    }

    #[test]
    fn both_sides_agree(offer in peer_offer(), port_a in 1u16..65535, port_b in 1u16..65535,
                        our_dir in direction()) {
        let offer_sdp = build_offer(7, 1, IP_A, port_a, &offer);
        let printed = offer_sdp.to_string();
        let offer_sdp = SessionDescription::parse(&printed).unwrap();
        prop_assert_eq!(offer_sdp.to_string(), printed);
        let mut local = MediaOffer::new(default_audio_codecs());
        local.direction = our_dir;
        let Ok((answer, bob)) = answer_offer(&offer_sdp, &local, 8, 1, IP_B, port_b, optional) else {
            // Nothing acceptable: then no offered audio codec is one of ours.
            let ours = default_audio_codecs();
            prop_assert!(!offer.codecs.iter().any(|c| !c.is_telephone_event()
                && ours.iter().any(|o| o.name.eq_ignore_ascii_case(&c.name) && o.clock_rate == c.clock_rate)));
            return Ok(());
        };
        let answer = SessionDescription::parse(&answer.to_string()).unwrap();
        let alice = accept_answer(&offer_sdp, &answer).unwrap();
        let has = |list: &[tandem_proto::sdp::NegotiatedCodec], c: &tandem_proto::sdp::NegotiatedCodec| {
            list.iter().any(|r| r.payload_type == c.payload_type && r.name.eq_ignore_ascii_case(&c.name)
                && r.clock_rate == c.clock_rate)
        };
        prop_assert!(has(&bob.recv_codecs, &alice.send_codec), "{:?} not in {:?}", alice.send_codec, bob.recv_codecs);
        prop_assert!(has(&alice.recv_codecs, &bob.send_codec), "{:?} not in {:?}", bob.send_codec, alice.recv_codecs);
        if let Some(d) = alice.send_dtmf {
            prop_assert!(bob.recv_dtmf.contains(&d));
        }
        if let Some(d) = bob.send_dtmf {
            prop_assert!(alice.recv_dtmf.contains(&d));
        }
        prop_assert_eq!(alice.send_dtmf.is_some(), bob.send_dtmf.is_some());
        prop_assert_eq!(alice.direction, bob.direction.reverse());
        prop_assert_eq!(alice.direction, offer.direction.intersect(our_dir.reverse()));
        prop_assert_eq!(alice.rtcp_mux, bob.rtcp_mux);
        prop_assert_eq!(alice.security, bob.security);
        prop_assert_eq!(alice.profile, offer.profile);
        prop_assert_eq!(alice.remote_rtp, Some((IP_B, port_b).into()));
        prop_assert_eq!(bob.remote_rtp, Some((IP_A, port_a).into()));
        if offer.profile.is_savp() || offer.profile.is_dtls() {
            prop_assert!(alice.is_secure());
        }
    }
}
