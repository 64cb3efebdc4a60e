//! Offer/answer against SDP captured from baresip 1.0 and linphonec 5.1 (see `data/sdp/README.md`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tandem_proto::sdp::{
    AnswerSecurity, Direction, MediaOffer, NegotiatedAudio, NegotiatedCodec, OfferChange,
    OfferedStream, SdpError, SecurityKind, SessionDescription, TransportProfile, accept_answer,
    answer_offer, build_offer, classify_offer, default_audio_codecs, plain_only, setup_answer,
};

const OUR_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
const OUR_CRYPTO: &str =
    "1 AES_CM_128_HMAC_SHA1_80 inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk";

fn data(name: &str) -> String {
    let path = format!("{}/tests/data/sdp/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn sdp(name: &str) -> SessionDescription {
    SessionDescription::parse_bytes(data(name).as_bytes()).unwrap()
}

/// Every `.sdp` file in `tests/data/sdp`, sorted.
fn all_files() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sdp");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".sdp"))
        .collect();
    names.sort();
    names
}

/// Answers with our default codecs on port 50000, session 77 version 1.
fn answer<F>(
    offer: &SessionDescription,
    security: F,
) -> Result<(SessionDescription, NegotiatedAudio), SdpError>
where
    F: FnMut(&OfferedStream<'_>) -> Option<AnswerSecurity>,
{
    let local = MediaOffer::new(default_audio_codecs());
    answer_offer(offer, &local, 77, 1, OUR_IP, 50000, security)
}

/// A chooser that takes SDES whenever keys are offered (SRTP optional), else plain.
fn sdes_optional(s: &OfferedStream<'_>) -> Option<AnswerSecurity> {
    if !s.crypto.is_empty() && (s.profile.is_savp() || s.profile.is_plain()) {
        Some(AnswerSecurity::Sdes(OUR_CRYPTO.to_owned()))
    } else {
        plain_only(s)
    }
}

fn pts(codecs: &[NegotiatedCodec]) -> Vec<u8> {
    codecs.iter().map(|c| c.payload_type).collect()
}

fn audio_line(sdp: &SessionDescription) -> String {
    sdp.to_string()
        .lines()
        .find(|l| l.starts_with("m=audio"))
        .unwrap()
        .to_owned()
}

fn our_offer(name: &str) -> MediaOffer {
    let mut o = MediaOffer::new(default_audio_codecs());
    match name {
        "tandem-offer-hold.sdp" => o.direction = Direction::SendOnly,
        "tandem-offer-sdes.sdp" => {
            o.profile = TransportProfile::RtpSavp;
            o.crypto = vec![
                "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz".into(),
                "2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj".into(),
            ];
        }
        _ => {}
    }
    o
}

#[test]
fn every_capture_parses_and_prints_back_byte_for_byte() {
    let names = all_files();
    assert_eq!(names.len(), 37);
    for name in &names {
        let text = data(name);
        let parsed = SessionDescription::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(parsed.to_string(), text, "{name}");
        assert_eq!(
            SessionDescription::parse(&parsed.to_string()).unwrap(),
            parsed
        );
    }
}

#[test]
fn our_offers_are_what_build_offer_prints() {
    for name in [
        "tandem-offer.sdp",
        "tandem-offer-hold.sdp",
        "tandem-offer-sdes.sdp",
    ] {
        let built = build_offer(
            4242,
            1,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            40000,
            &our_offer(name),
        );
        assert_eq!(built.to_string(), data(name), "{name}");
    }
    let mut zero = build_offer(
        4242,
        1,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        40000,
        &our_offer("tandem-offer.sdp"),
    );
    zero.connection.as_mut().unwrap().address = "0.0.0.0".into();
    assert_eq!(zero.to_string(), data("tandem-offer-zero.sdp"));
}

#[test]
fn answering_baresip() {
    let offer = sdp("baresip-1.0-offer.sdp");
    let (ans, n) = answer(&offer, plain_only).unwrap();
    // Our preference order (opus, PCMA, PCMU) under baresip's numbers; G722 is not ours;
    // only telephone-event/8000 was offered, so it goes with opus.
    assert_eq!(audio_line(&ans), "m=audio 50000 RTP/AVP 96 8 0 101");
    assert_eq!(n.send_codec.payload_type, 96);
    assert_eq!(n.send_codec.name, "opus");
    assert_eq!(n.send_codec.channels, 2);
    assert_eq!(
        n.send_codec.fmtp.as_deref(),
        Some("stereo=1;sprop-stereo=1;maxaveragebitrate=28000")
    );
    assert_eq!(pts(&n.recv_codecs), vec![96, 8, 0, 111]);
    assert_eq!(
        n.recv_codecs[0].fmtp.as_deref(),
        Some("useinbandfec=1;usedtx=1")
    );
    assert_eq!(n.send_dtmf, Some((101, 8000)));
    assert_eq!(n.recv_dtmf, vec![(101, 8000), (110, 48000)]);
    assert_eq!(n.direction, Direction::SendRecv);
    assert!(!n.remote_hold());
    let rtp: SocketAddr = "192.0.2.2:31064".parse().unwrap();
    assert_eq!(n.remote_rtp, Some(rtp));
    assert_eq!(n.remote_rtcp, Some("192.0.2.2:31065".parse().unwrap()));
    assert!(!n.rtcp_mux, "baresip did not offer rtcp-mux");
    assert!(!ans.to_string().contains("rtcp-mux"));
    assert_eq!(n.ptime, Some(20));
    assert_eq!(n.security, SecurityKind::Plain);
    assert_eq!(n.profile, TransportProfile::RtpAvp);
    assert!(
        ans.to_string()
            .contains("a=fmtp:96 useinbandfec=1;usedtx=1\r\n")
    );
    // The answer itself is valid SDP that round-trips and that baresip's offer accepts.
    let back = accept_answer(
        &offer,
        &SessionDescription::parse(&ans.to_string()).unwrap(),
    )
    .unwrap();
    assert_eq!(back.send_codec.payload_type, 96);
    assert_eq!(back.send_dtmf, Some((101, 8000)));
}

#[test]
fn answering_linphone_picks_the_48k_telephone_event_for_opus() {
    let offer = sdp("linphone-5.1-offer.sdp");
    let (ans, n) = answer(&offer, plain_only).unwrap();
    assert_eq!(audio_line(&ans), "m=audio 50000 RTP/AVP 96 8 0 99");
    assert_eq!(n.send_codec.payload_type, 96);
    assert_eq!(n.send_codec.fmtp.as_deref(), Some("useinbandfec=1"));
    assert_eq!(n.send_dtmf, Some((99, 48000)));
    // 100 is telephone-event/16000: not ours.
    assert_eq!(n.recv_dtmf, vec![(99, 48000), (101, 8000), (110, 48000)]);
    assert_eq!(n.remote_rtp, Some("[fd00::2]:32000".parse().unwrap()));
    assert_eq!(n.ptime, None);
    // G.729 (18, static, only an fmtp line) and speex are not taken.
    assert!(!pts(&n.recv_codecs).contains(&18));
}

#[test]
fn answering_asterisk_and_kamailio_rtpengine_offers() {
    let offer = sdp("asterisk-pjsip-offer.sdp");
    let (ans, n) = answer(&offer, plain_only).unwrap();
    assert_eq!(audio_line(&ans), "m=audio 50000 RTP/AVP 107 8 0 101");
    assert_eq!(n.send_codec.payload_type, 107);
    assert_eq!(n.send_dtmf, Some((101, 8000)));
    assert_eq!(n.maxptime, Some(150));
    assert_eq!(pts(&n.recv_codecs), vec![107, 8, 0, 111]);

    let offer = sdp("kamailio-rtpengine-offer.sdp");
    let (ans, n) = answer(&offer, plain_only).unwrap();
    assert_eq!(audio_line(&ans), "m=audio 50000 RTP/AVP 8 0 96");
    assert_eq!(n.send_codec.name, "PCMA");
    assert_eq!(n.send_dtmf, Some((96, 8000)));
    assert_eq!(
        n.recv_dtmf,
        vec![(96, 8000), (97, 48000), (110, 48000), (101, 8000)]
    );
    assert_eq!(n.remote_rtp, Some("203.0.113.1:30000".parse().unwrap()));
    assert_eq!(n.remote_rtcp, Some("203.0.113.1:30001".parse().unwrap()));
}

#[test]
fn baresip_hold_and_resume_reoffers() {
    let first = sdp("baresip-1.0-offer.sdp");
    let hold = sdp("baresip-1.0-hold-reoffer.sdp");
    let resume = sdp("baresip-1.0-resume-reoffer.sdp");
    assert_eq!(classify_offer(&first, &hold), OfferChange::Changed);
    assert_eq!(classify_offer(&hold, &resume), OfferChange::Changed);
    assert_eq!(classify_offer(&hold, &hold), OfferChange::Unchanged);
    // baresip's re-INVITEs carry a new o= version on the same session id.
    assert_eq!(hold.origin.session_id, first.origin.session_id);
    assert_eq!(
        hold.origin.session_version,
        first.origin.session_version + 1
    );
    assert_eq!(
        resume.origin.session_version,
        hold.origin.session_version + 1
    );
    let mut other = first.clone();
    other.origin.session_id += 1;
    assert_eq!(classify_offer(&other, &hold), OfferChange::NewSession);

    let (ans, n) = answer_offer(
        &hold,
        &MediaOffer::new(default_audio_codecs()),
        77,
        2,
        OUR_IP,
        50000,
        plain_only,
    )
    .unwrap();
    assert_eq!(ans.origin.session_version, 2);
    assert_eq!(n.direction, Direction::RecvOnly);
    assert!(n.remote_hold());
    assert!(ans.to_string().contains("a=recvonly\r\n"));
    assert_eq!(n.send_codec.name, "PCMU");

    let (ans, n) = answer(&resume, plain_only).unwrap();
    assert_eq!(n.direction, Direction::SendRecv);
    assert!(!n.remote_hold());
    assert!(ans.to_string().contains("a=sendrecv\r\n"));
}

#[test]
fn linphone_pause_and_resume_reoffers() {
    let first = sdp("linphone-5.1-offer.sdp");
    let hold = sdp("linphone-5.1-hold-reoffer.sdp");
    let resume = sdp("linphone-5.1-resume-reoffer.sdp");
    assert_eq!(classify_offer(&first, &hold), OfferChange::Changed);
    assert_eq!(classify_offer(&hold, &resume), OfferChange::Changed);
    assert_eq!(
        answer(&hold, plain_only).unwrap().1.direction,
        Direction::RecvOnly
    );
    // We are holding them too: a sendonly offer answered by someone who only wants to send gives inactive.
    let mut local = MediaOffer::new(default_audio_codecs());
    local.direction = Direction::SendRecv.hold();
    let (_, n) = answer_offer(&hold, &local, 77, 3, OUR_IP, 50000, plain_only).unwrap();
    assert_eq!(n.direction, Direction::Inactive);
    assert_eq!(
        answer(&resume, plain_only).unwrap().1.direction,
        Direction::SendRecv
    );
}

#[test]
fn sdes_best_effort_offer_from_baresip() {
    let offer = sdp("baresip-1.0-offer-sdes-besteffort.sdp");
    // SRTP off: plain answer without keys.
    let (ans, n) = answer(&offer, plain_only).unwrap();
    assert_eq!(n.security, SecurityKind::Plain);
    assert!(!ans.to_string().contains("a=crypto"));
    // SRTP optional: keys answered on RTP/AVP.
    let mut seen = Vec::new();
    let (ans, n) = answer(&offer, |s: &OfferedStream<'_>| {
        seen.push(s.crypto.iter().map(|c| c.to_string()).collect::<Vec<_>>());
        sdes_optional(s)
    })
    .unwrap();
    assert_eq!(
        seen,
        vec![vec![
            "1 AES_CM_128_HMAC_SHA1_80 inline:yPGtytL7KiU0iuqTaUq+vyPw5KChsZqitZfG0prn".to_owned()
        ]]
    );
    assert_eq!(n.security, SecurityKind::Sdes);
    assert_eq!(n.profile, TransportProfile::RtpAvp);
    assert_eq!(n.crypto.len(), 1);
    assert!(
        ans.to_string()
            .contains(&format!("a=crypto:{OUR_CRYPTO}\r\n"))
    );
    assert_eq!(audio_line(&ans), "m=audio 50000 RTP/AVP 96 8 0 101");
}

#[test]
fn sdes_mandatory_offers_need_keys_in_the_answer() {
    for name in [
        "baresip-1.0-offer-sdes-mandatory.sdp",
        "baresip-1.0-hold-reoffer-sdes-mandatory.sdp",
        "linphone-5.1-offer-sdes-mandatory.sdp",
        "linphone-5.1-offer-sdes-optional.sdp",
    ] {
        let offer = sdp(name);
        let err = answer(&offer, plain_only).unwrap_err();
        assert_eq!(err, SdpError::NoAcceptableMedia, "{name}");
        assert_eq!(err.status_code(), 488);
        // A chooser that returns Plain for SAVP is not obeyed either.
        let err = answer(&offer, |_: &OfferedStream<'_>| Some(AnswerSecurity::Plain)).unwrap_err();
        assert_eq!(err, SdpError::NoAcceptableMedia, "{name}");
        let (ans, n) = answer(&offer, sdes_optional).unwrap();
        assert_eq!(n.security, SecurityKind::Sdes, "{name}");
        assert!(n.is_secure());
        assert_eq!(n.profile, TransportProfile::RtpSavp);
        assert!(
            audio_line(&ans).starts_with("m=audio 50000 RTP/SAVP "),
            "{name}"
        );
        assert!(!n.crypto.is_empty());
    }
    let offer = sdp("linphone-5.1-offer-sdes-mandatory.sdp");
    let (_, n) = answer(&offer, sdes_optional).unwrap();
    assert_eq!(n.crypto.len(), 4);
    assert!(n.crypto[3].starts_with("4 AES_256_CM_HMAC_SHA1_32 inline:"));
}

#[test]
fn dtls_offers_with_session_and_media_level_fingerprints() {
    let dtls = |s: &OfferedStream<'_>| {
        s.profile.is_dtls().then(|| AnswerSecurity::Dtls {
            fingerprint: "sha-256 01:02:03".into(),
            setup: setup_answer(s.setup).into(),
        })
    };
    let offer = sdp("baresip-1.0-offer-dtls.sdp");
    assert_eq!(
        answer(&offer, plain_only).unwrap_err(),
        SdpError::NoAcceptableMedia
    );
    let (ans, n) = answer(&offer, dtls).unwrap();
    assert_eq!(n.profile, TransportProfile::UdpTlsRtpSavpf);
    assert_eq!(n.security, SecurityKind::Dtls);
    assert!(
        n.fingerprint
            .as_deref()
            .unwrap()
            .starts_with("SHA-256 FD:A2:")
    );
    assert_eq!(n.setup.as_deref(), Some("actpass"));
    assert!(n.rtcp_mux);
    assert_eq!(n.remote_rtcp, n.remote_rtp);
    let text = ans.to_string();
    assert!(text.contains("m=audio 50000 UDP/TLS/RTP/SAVPF 96 8 0 101\r\n"));
    assert!(text.contains("a=fingerprint:sha-256 01:02:03\r\na=setup:active\r\n"));
    assert!(text.contains("a=rtcp-mux\r\n"));

    let offer = sdp("linphone-5.1-offer-dtls.sdp");
    let (_, n) = answer(&offer, dtls).unwrap();
    assert_eq!(n.profile, TransportProfile::UdpTlsRtpSavp);
    assert!(
        n.fingerprint
            .as_deref()
            .unwrap()
            .starts_with("SHA-256 EA:1B:")
    );
}

#[test]
fn accepting_baresip_answers() {
    let offer = sdp("tandem-offer.sdp");
    let n = accept_answer(&offer, &sdp("baresip-1.0-answer-to-tandem.sdp")).unwrap();
    assert_eq!(n.send_codec.payload_type, 111);
    assert_eq!(
        n.send_codec.fmtp.as_deref(),
        Some("stereo=1;sprop-stereo=1;maxaveragebitrate=28000")
    );
    assert_eq!(pts(&n.recv_codecs), vec![111, 8, 0]);
    assert_eq!(
        n.recv_codecs[0].fmtp.as_deref(),
        Some("useinbandfec=1;usedtx=1")
    );
    // baresip answers telephone-event/8000 only, even with opus.
    assert_eq!(n.send_dtmf, Some((101, 8000)));
    assert_eq!(n.recv_dtmf, vec![(101, 8000), (110, 48000)]);
    assert!(!n.rtcp_mux, "baresip ignores rtcp-mux with rtcp_mux no");
    assert_eq!(n.remote_rtp, Some("192.0.2.2:31046".parse().unwrap()));
    assert_eq!(n.remote_rtcp, Some("192.0.2.2:31047".parse().unwrap()));
    assert_eq!(n.direction, Direction::SendRecv);
    assert_eq!(n.security, SecurityKind::Plain);

    let n = accept_answer(
        &sdp("tandem-offer-hold.sdp"),
        &sdp("baresip-1.0-answer-to-tandem-hold.sdp"),
    )
    .unwrap();
    assert_eq!(n.direction, Direction::SendOnly);
    assert_eq!(n.remote_direction, Direction::RecvOnly);
    assert!(!n.remote_hold());

    let n = accept_answer(
        &sdp("tandem-offer-zero.sdp"),
        &sdp("baresip-1.0-answer-to-tandem-zero.sdp"),
    )
    .unwrap();
    // We offered c=0.0.0.0: nobody can send to us, whatever baresip answered.
    assert_eq!(n.direction, Direction::SendOnly);
    assert_eq!(n.remote_direction, Direction::SendRecv);

    let n = accept_answer(
        &sdp("tandem-offer-sdes.sdp"),
        &sdp("baresip-1.0-answer-to-tandem-sdes.sdp"),
    )
    .unwrap();
    assert_eq!(n.security, SecurityKind::Sdes);
    assert_eq!(
        n.crypto,
        vec![
            "1 AES_CM_128_HMAC_SHA1_80 inline:B8MTXJLUgPiOT+r8krxxfALixza+FZLhP0i4j3d3".to_owned()
        ]
    );
}

#[test]
fn accepting_linphone_answers() {
    let n = accept_answer(
        &sdp("tandem-offer.sdp"),
        &sdp("linphone-5.1-answer-to-tandem.sdp"),
    )
    .unwrap();
    assert_eq!(n.send_codec.payload_type, 111);
    assert_eq!(n.send_codec.fmtp.as_deref(), Some("useinbandfec=1"));
    assert_eq!(n.send_dtmf, Some((110, 48000)));
    assert_eq!(n.ptime, None);
    assert_eq!(n.remote_rtp, Some("127.0.0.1:32000".parse().unwrap()));

    let n = accept_answer(
        &sdp("tandem-offer-hold.sdp"),
        &sdp("linphone-5.1-answer-to-tandem-hold.sdp"),
    )
    .unwrap();
    assert_eq!(n.direction, Direction::SendOnly);

    let n = accept_answer(
        &sdp("tandem-offer-sdes.sdp"),
        &sdp("linphone-5.1-answer-to-tandem-sdes.sdp"),
    )
    .unwrap();
    assert_eq!(n.security, SecurityKind::Sdes);
    assert_eq!(n.crypto.len(), 1);
    // A SAVP answer stripped of its key is refused.
    let mut stripped = sdp("linphone-5.1-answer-to-tandem-sdes.sdp");
    stripped.media[0].attributes.retain(|a| a.name != "crypto");
    let err = accept_answer(&sdp("tandem-offer-sdes.sdp"), &stripped).unwrap_err();
    assert!(
        matches!(err, SdpError::Unacceptable { index: 0, .. }),
        "{err:?}"
    );
    assert_eq!(err.status_code(), 488);
}

#[test]
fn a_plain_answer_to_our_savp_offer_is_refused() {
    let err = accept_answer(
        &sdp("tandem-offer-sdes.sdp"),
        &sdp("baresip-1.0-answer-to-tandem.sdp"),
    )
    .unwrap_err();
    assert!(matches!(err, SdpError::Unacceptable { .. }), "{err:?}");
}

#[test]
fn hold_and_resume_reoffers_answered_by_baresip_and_linphone() {
    let offers = [
        "tandem-offer.sdp",
        "tandem-reoffer-2-hold.sdp",
        "tandem-reoffer-3-resume.sdp",
    ];
    // What build_offer prints for the re-offers: same session id, version + 1, direction per hold/resume.
    let mut o = our_offer("tandem-offer.sdp");
    for (version, name) in (1u64..).zip(offers) {
        let built = build_offer(4242, version, IpAddr::V4(Ipv4Addr::LOCALHOST), 40000, &o);
        assert_eq!(built.to_string(), data(name), "{name}");
        o.direction = if version == 1 {
            o.direction.hold()
        } else {
            o.direction.resume()
        };
    }
    let want = [
        Direction::SendRecv,
        Direction::SendOnly,
        Direction::SendRecv,
    ];
    for peer in ["baresip-1.0", "linphone-5.1"] {
        let answers = [
            sdp(&format!("{peer}-dialog-answer-1.sdp")),
            sdp(&format!("{peer}-dialog-answer-2-hold.sdp")),
            sdp(&format!("{peer}-dialog-answer-3-resume.sdp")),
        ];
        for ((offer, answer), dir) in offers.iter().zip(&answers).zip(want) {
            let n = accept_answer(&sdp(offer), answer).unwrap();
            assert_eq!(n.direction, dir, "{peer} {offer}");
            assert!(!n.remote_hold(), "{peer} {offer}");
            assert_eq!(n.send_codec.payload_type, 111, "{peer} {offer}");
        }
        assert_eq!(
            classify_offer(&answers[0], &answers[1]),
            OfferChange::Changed,
            "{peer}"
        );
        assert_eq!(
            classify_offer(&answers[1], &answers[2]),
            OfferChange::Changed,
            "{peer}"
        );
        assert!(answers[2].origin.session_version > answers[1].origin.session_version);
    }
}

#[test]
fn linphone_offer_through_kamailio_and_baresips_answer() {
    let offer = sdp("kamailio-forwarded-linphone-5.1-offer.sdp");
    // We would answer it exactly as linphone's direct offer.
    let (ans, n) = answer(&offer, plain_only).unwrap();
    assert_eq!(audio_line(&ans), "m=audio 50000 RTP/AVP 96 8 0 99");
    assert_eq!(n.send_dtmf, Some((99, 48000)));
    // baresip answered opus with telephone-event/8000 (PT 101): linphone's view of it.
    let theirs = accept_answer(&offer, &sdp("baresip-1.0-answer-via-kamailio.sdp")).unwrap();
    assert_eq!(theirs.send_codec.payload_type, 96);
    assert_eq!(theirs.send_dtmf, Some((101, 8000)));
    assert_eq!(theirs.remote_rtp, Some("[fd00::2]:31092".parse().unwrap()));
    assert!(theirs.recv_dtmf.contains(&(99, 48000)));
}
