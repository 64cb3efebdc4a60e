//! The audio offer/answer API on constructed cases: renumbered payload types, RTCP
//! addresses, session-level attributes, several audio m-lines, re-offers, and hostile input.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tandem_proto::sdp::{
    AnswerSecurity, Codec, Direction, MAX_FORMATS, MAX_LINE_LEN, MAX_MEDIA, MAX_SDP_LEN,
    MediaOffer, OfferChange, OfferedStream, SdpError, SecurityKind, SessionDescription,
    TransportProfile, accept_answer, answer_offer, build_offer, classify_offer,
    default_audio_codecs, plain_only, setup_answer,
};

const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));

fn crlf(s: &str) -> String {
    s.lines().map(|l| format!("{l}\r\n")).collect()
}

fn parse(s: &str) -> SessionDescription {
    SessionDescription::parse(&crlf(s)).unwrap()
}

fn local() -> MediaOffer {
    MediaOffer::new(default_audio_codecs())
}

fn answer(
    offer: &SessionDescription,
) -> Result<(SessionDescription, tandem_proto::sdp::NegotiatedAudio), SdpError> {
    answer_offer(offer, &local(), 9, 1, IP, 6000, plain_only)
}

const HEADER: &str = "v=0\no=- 1 1 IN IP4 198.51.100.7\ns=-\nc=IN IP4 198.51.100.7\nt=0 0\n";

#[test]
fn default_offer_text() {
    let mut o = local();
    o.rtcp_mux = false;
    o.rtcp_port = Some(7001);
    o.maxptime = Some(60);
    let sdp = build_offer(5, 6, IP, 7000, &o).to_string();
    assert_eq!(
        sdp,
        crlf(
            "v=0
o=- 5 6 IN IP4 192.0.2.10
s=-
c=IN IP4 192.0.2.10
t=0 0
m=audio 7000 RTP/AVP 111 8 0 110 101
a=rtpmap:111 opus/48000/2
a=fmtp:111 useinbandfec=1;usedtx=1
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:110 telephone-event/48000
a=fmtp:110 0-16
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=maxptime:60
a=rtcp:7001
a=sendrecv
"
        )
    );
}

#[test]
fn offer_with_dtls_and_ipv6() {
    let mut o = MediaOffer::new(vec![Codec::pcmu(), Codec::telephone_event(8000, 101)]);
    o.profile = TransportProfile::UdpTlsRtpSavpf;
    o.fingerprint = Some("sha-256 AA:BB".into());
    o.setup = Some("actpass".into());
    o.direction = Direction::SendOnly;
    let ip: IpAddr = "2001:db8::1".parse().unwrap();
    let sdp = build_offer(1, 2, ip, 4000, &o);
    let text = sdp.to_string();
    assert!(text.contains("o=- 1 2 IN IP6 2001:db8::1\r\n"));
    assert!(text.contains("m=audio 4000 UDP/TLS/RTP/SAVPF 0 101\r\n"));
    assert!(text.contains("a=fingerprint:sha-256 AA:BB\r\na=setup:actpass\r\n"));
    assert!(text.contains("a=rtcp-mux\r\na=sendonly\r\n"));
    assert_eq!(SessionDescription::parse(&text).unwrap(), sdp);
}

#[test]
fn renumbered_payload_types_both_ways() {
    // A B2BUA renumbers our opus to 107 and our telephone-event/8000 to 96 in its answer.
    let offer = build_offer(1, 1, IP, 7000, &local());
    let ans = parse(&format!(
        "{HEADER}m=audio 9000 RTP/AVP 107 96
a=rtpmap:107 opus/48000/2
a=fmtp:107 useinbandfec=1
a=rtpmap:96 telephone-event/8000
a=rtcp-mux
"
    ));
    let n = accept_answer(&offer, &ans).unwrap();
    assert_eq!(n.send_codec.payload_type, 107);
    assert_eq!(n.send_dtmf, Some((96, 8000)));
    let recv: Vec<u8> = n.recv_codecs.iter().map(|c| c.payload_type).collect();
    assert_eq!(recv, vec![111, 107]);
    assert!(n.recv_dtmf.contains(&(101, 8000)));
    assert!(n.recv_dtmf.contains(&(96, 8000)));
    assert!(n.recv_dtmf.contains(&(110, 48000)));
    assert!(n.rtcp_mux);
    assert_eq!(n.remote_rtcp, n.remote_rtp);

    // A peer answering with PT 8 for opus (clashing with our PCMA) gets opus on 8 for sending,
    // but we keep receiving PT 8 as PCMA.
    let ans = parse(&format!(
        "{HEADER}m=audio 9000 RTP/AVP 8\na=rtpmap:8 opus/48000/2\n"
    ));
    let n = accept_answer(&offer, &ans).unwrap();
    assert_eq!(n.send_codec.payload_type, 8);
    assert_eq!(n.send_codec.name, "opus");
    assert_eq!(n.recv_codecs.len(), 1);
    assert_eq!(n.recv_codecs[0].payload_type, 111);
}

#[test]
fn rtcp_attribute_and_session_level_direction() {
    let offer = parse(&format!(
        "{HEADER}a=sendonly\nm=audio 9000 RTP/AVP 0\na=rtcp:9005 IN IP4 203.0.113.9\n"
    ));
    let (ans, n) = answer(&offer).unwrap();
    assert_eq!(n.remote_rtcp, Some("203.0.113.9:9005".parse().unwrap()));
    assert_eq!(n.direction, Direction::RecvOnly);
    assert!(n.remote_hold());
    assert!(ans.to_string().contains("a=recvonly\r\n"));
    let offer = parse(&format!("{HEADER}m=audio 9000 RTP/AVP 0\na=rtcp:9003\n"));
    assert_eq!(
        answer(&offer).unwrap().1.remote_rtcp,
        Some("198.51.100.7:9003".parse().unwrap())
    );
    // An unspecified a=rtcp address means the RTP one.
    let offer = parse(&format!(
        "{HEADER}m=audio 9000 RTP/AVP 0\na=rtcp:9009 IN IP4 0.0.0.0\n"
    ));
    assert_eq!(
        answer(&offer).unwrap().1.remote_rtcp,
        Some("198.51.100.7:9009".parse().unwrap())
    );
    // Port 65535: no RTP port + 1.
    let offer = parse(&format!("{HEADER}m=audio 65535 RTP/AVP 0\n"));
    assert_eq!(answer(&offer).unwrap().1.remote_rtcp, None);
}

#[test]
fn legacy_hold_with_zero_address() {
    let offer = parse(
        "v=0\no=- 1 2 IN IP4 198.51.100.7\ns=-\nc=IN IP4 0.0.0.0\nt=0 0\nm=audio 9000 RTP/AVP 8\n",
    );
    let (ans, n) = answer(&offer).unwrap();
    assert_eq!(n.remote_rtp, None);
    assert_eq!(n.remote_rtcp, None);
    assert_eq!(n.direction, Direction::RecvOnly);
    assert!(n.remote_hold());
    assert!(ans.to_string().contains("a=recvonly\r\n"));
    let offer6 = parse(
        "v=0\no=- 1 2 IN IP6 ::1\ns=-\nt=0 0\nm=audio 9000 RTP/AVP 8\nc=IN IP6 ::\na=sendrecv\n",
    );
    assert_eq!(answer(&offer6).unwrap().1.direction, Direction::RecvOnly);
}

#[test]
fn several_audio_lines_and_other_media() {
    // SAVP first (we refuse it: SRTP off), then plain audio, then video: only the second is taken.
    let offer = parse(&format!(
        "{HEADER}m=audio 9000 RTP/SAVP 0
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz
m=audio 9002 RTP/AVP 0 8
m=video 9004 RTP/AVP 96
a=rtpmap:96 VP8/90000
m=audio 9006 RTP/AVP 0
"
    ));
    let mut calls = Vec::new();
    let (ans, n) = answer_offer(&offer, &local(), 9, 1, IP, 6000, |s: &OfferedStream<'_>| {
        calls.push((s.index, s.profile));
        plain_only(s)
    })
    .unwrap();
    assert_eq!(
        calls,
        vec![
            (0, TransportProfile::RtpSavp),
            (1, TransportProfile::RtpAvp)
        ]
    );
    assert_eq!(n.index, 1);
    let ports: Vec<u16> = ans.media.iter().map(|m| m.port).collect();
    assert_eq!(ports, vec![0, 6000, 0, 0]);
    assert_eq!(ans.media[2].media, "video");
    assert_eq!(ans.media[2].formats, vec!["96"]);
    assert_eq!(n.send_codec.name, "PCMA");
    let back = accept_answer(&offer, &ans).unwrap();
    assert_eq!(back.index, 1);
    assert_eq!(back.send_codec.payload_type, 8);
}

#[test]
fn streams_we_cannot_take() {
    for (media, why) in [
        (
            "m=audio 9000 RTP/AVP 18 3\n",
            "no common codec (G.729, GSM)",
        ),
        ("m=audio 9000 RTP/XAVP 0\n", "unknown profile"),
        ("m=audio 0 RTP/AVP 0\n", "disabled stream"),
        ("m=video 9000 RTP/AVP 0\n", "not audio"),
        (
            "m=audio 9000 RTP/AVP 96 101\na=rtpmap:101 telephone-event/8000\n",
            "only DTMF",
        ),
        ("m=audio 9000 TCP/MSRP *\n", "not RTP"),
    ] {
        let offer = parse(&format!("{HEADER}{media}"));
        let err = answer(&offer).unwrap_err();
        assert_eq!(err, SdpError::NoAcceptableMedia, "{why}");
        assert_eq!(err.status_code(), 488, "{why}");
    }
    // Without media at all.
    assert_eq!(
        answer(&parse(HEADER)).unwrap_err(),
        SdpError::NoAcceptableMedia
    );
}

#[test]
fn chooser_answers_that_do_not_fit_the_profile_are_ignored() {
    let avp = parse(&format!("{HEADER}m=audio 9000 RTP/AVP 0\n"));
    // SDES without offered keys, DTLS on plain RTP: rejected.
    for bad in [
        AnswerSecurity::Sdes("1 AES_CM_128_HMAC_SHA1_80 inline:x".into()),
        AnswerSecurity::Dtls {
            fingerprint: "sha-256 AA".into(),
            setup: "active".into(),
        },
    ] {
        let r = answer_offer(&avp, &local(), 1, 1, IP, 1, |_: &OfferedStream<'_>| {
            Some(bad.clone())
        });
        assert_eq!(r.unwrap_err(), SdpError::NoAcceptableMedia);
    }
    // DTLS offer without a fingerprint cannot be answered with DTLS.
    let dtls = parse(&format!("{HEADER}m=audio 9000 UDP/TLS/RTP/SAVP 0\n"));
    let r = answer_offer(&dtls, &local(), 1, 1, IP, 1, |_: &OfferedStream<'_>| {
        Some(AnswerSecurity::Dtls {
            fingerprint: "sha-256 AA".into(),
            setup: "active".into(),
        })
    });
    assert_eq!(r.unwrap_err(), SdpError::NoAcceptableMedia);
    assert_eq!(setup_answer(Some("actpass")), "active");
    assert_eq!(setup_answer(Some("active")), "passive");
    assert_eq!(setup_answer(Some("passive")), "active");
    assert_eq!(setup_answer(None), "active");
}

#[test]
fn hold_resume_reoffer_cycle() {
    // Alice (us) calls Bob, holds, resumes; Bob answers with our API too.
    let alice = local();
    let offer1 = build_offer(100, 1, IP, 7000, &alice);
    let (answer1, bob1) = answer_offer(&offer1, &local(), 200, 1, IP, 8000, plain_only).unwrap();
    let a1 = accept_answer(&offer1, &answer1).unwrap();
    assert_eq!(a1.direction, Direction::SendRecv);
    assert_eq!(bob1.direction, Direction::SendRecv);
    assert!(a1.rtcp_mux && bob1.rtcp_mux);
    assert_eq!(a1.send_codec.payload_type, 111);
    assert_eq!(bob1.send_codec.payload_type, 111);
    assert_eq!(a1.send_dtmf, Some((110, 48000)));
    assert_eq!(bob1.send_dtmf, Some((110, 48000)));

    let mut held = alice.clone();
    held.direction = a1.direction.hold();
    let offer2 = build_offer(100, 2, IP, 7000, &held);
    assert_eq!(classify_offer(&offer1, &offer2), OfferChange::Changed);
    let (answer2, bob2) = answer_offer(&offer2, &local(), 200, 2, IP, 8000, plain_only).unwrap();
    assert_eq!(bob2.direction, Direction::RecvOnly);
    assert!(bob2.remote_hold());
    let a2 = accept_answer(&offer2, &answer2).unwrap();
    assert_eq!(a2.direction, Direction::SendOnly);
    assert!(!a2.remote_hold());

    // Bob holds Alice too while she holds him: Alice's answer is inactive.
    let mut bob_holds = local();
    bob_holds.direction = bob2.direction.hold();
    assert_eq!(bob_holds.direction, Direction::Inactive);

    let mut resumed = held.clone();
    resumed.direction = held.direction.resume();
    assert_eq!(resumed.direction, Direction::SendRecv);
    let offer3 = build_offer(100, 3, IP, 7000, &resumed);
    let (answer3, bob3) = answer_offer(&offer3, &local(), 200, 3, IP, 8000, plain_only).unwrap();
    assert_eq!(bob3.direction, Direction::SendRecv);
    assert_eq!(
        accept_answer(&offer3, &answer3).unwrap().direction,
        Direction::SendRecv
    );
    assert_eq!(
        classify_offer(&offer3, &offer3.clone()),
        OfferChange::Unchanged
    );
    assert_eq!(Direction::Inactive.resume(), Direction::RecvOnly);
    assert_eq!(Direction::RecvOnly.hold(), Direction::Inactive);
}

#[test]
fn sdes_offer_answer_between_two_tandems() {
    let mut o = local();
    o.profile = TransportProfile::RtpSavp;
    o.crypto = vec![
        "1 AES_CM_128_HMAC_SHA1_80 inline:AAAA".into(),
        "2 AES_CM_128_HMAC_SHA1_32 inline:BBBB".into(),
    ];
    let offer = build_offer(1, 1, IP, 7000, &o);
    let (ans, bob) = answer_offer(&offer, &local(), 2, 1, IP, 8000, |s: &OfferedStream<'_>| {
        s.crypto
            .get(1)
            .map(|c| AnswerSecurity::Sdes(c.replace("BBBB", "CCCC")))
    })
    .unwrap();
    assert_eq!(bob.security, SecurityKind::Sdes);
    assert_eq!(bob.crypto.len(), 2);
    let alice = accept_answer(&offer, &ans).unwrap();
    assert_eq!(alice.security, SecurityKind::Sdes);
    assert_eq!(
        alice.crypto,
        vec!["2 AES_CM_128_HMAC_SHA1_32 inline:CCCC".to_owned()]
    );
    // Changing the profile in the answer is refused.
    let mut bad = ans.clone();
    bad.media[0].protocol = "RTP/AVP".into();
    assert!(matches!(
        accept_answer(&offer, &bad),
        Err(SdpError::Unacceptable { index: 0, .. })
    ));
    // Best effort: keys on RTP/AVP, answered without keys = plain.
    let mut be = local();
    be.crypto = o.crypto.clone();
    let offer = build_offer(1, 1, IP, 7000, &be);
    let (ans, bob) = answer_offer(&offer, &local(), 2, 1, IP, 8000, plain_only).unwrap();
    assert_eq!(bob.security, SecurityKind::Plain);
    assert_eq!(
        accept_answer(&offer, &ans).unwrap().security,
        SecurityKind::Plain
    );
}

#[test]
fn answers_that_do_not_match_the_offer() {
    let offer = build_offer(1, 1, IP, 7000, &local());
    let two = parse(&format!(
        "{HEADER}m=audio 1 RTP/AVP 0\nm=audio 2 RTP/AVP 0\n"
    ));
    assert_eq!(
        accept_answer(&offer, &two).unwrap_err(),
        SdpError::MediaCountMismatch {
            offer: 1,
            answer: 2
        }
    );
    let video = parse(&format!("{HEADER}m=video 1 RTP/AVP 0\n"));
    assert_eq!(
        accept_answer(&offer, &video).unwrap_err(),
        SdpError::MediaMismatch { index: 0 }
    );
    let unoffered = parse(&format!("{HEADER}m=audio 1 RTP/AVP 9\n"));
    assert_eq!(
        accept_answer(&offer, &unoffered).unwrap_err(),
        SdpError::MediaMismatch { index: 0 }
    );
    let rejected = parse(&format!("{HEADER}m=audio 0 RTP/AVP 0\n"));
    let err = accept_answer(&offer, &rejected).unwrap_err();
    assert_eq!(err, SdpError::NoAudio);
    assert_eq!(err.status_code(), 488);
}

fn m_lines(n: usize) -> String {
    let mut s = HEADER.to_owned();
    for i in 0..n {
        s.push_str(&format!("m=audio {} RTP/AVP 0\n", 1000 + i));
    }
    s
}

#[test]
fn hostile_input_is_refused_with_typed_errors() {
    assert!(SessionDescription::parse(&m_lines(MAX_MEDIA)).is_ok());
    for n in [MAX_MEDIA + 1, 500] {
        let err = SessionDescription::parse(&m_lines(n)).unwrap_err();
        assert_eq!(err, SdpError::TooManyMedia);
        assert_eq!(err.status_code(), 400);
    }
    let formats = |n: usize| {
        let list: Vec<String> = (0..n).map(|i| (i % 128).to_string()).collect();
        format!("{HEADER}m=audio 1000 RTP/AVP {}\n", list.join(" "))
    };
    assert!(SessionDescription::parse(&formats(MAX_FORMATS)).is_ok());
    assert_eq!(
        SessionDescription::parse(&formats(MAX_FORMATS + 1)).unwrap_err(),
        SdpError::TooManyFormats { line: 6 }
    );
    for port in [
        "65536",
        "70000",
        "99999999999",
        "-1",
        "abc",
        "12a",
        "1/x",
        "",
    ] {
        let err =
            SessionDescription::parse(&format!("{HEADER}m=audio {port} RTP/AVP 0\n")).unwrap_err();
        assert!(
            matches!(err, SdpError::InvalidLine { line: 6, .. }),
            "{port}: {err:?}"
        );
        assert_eq!(err.status_code(), 400);
    }
    // Missing mandatory lines.
    let cases = [
        ("o=- 1 1 IN IP4 a\ns=-\nt=0 0\n", SdpError::BadVersion),
        ("v=0\ns=-\nt=0 0\n", SdpError::MissingLine('o')),
        ("v=0\no=- 1 1 IN IP4 a\nt=0 0\n", SdpError::MissingLine('s')),
        ("v=0\no=- 1 1 IN IP4 a\ns=-\n", SdpError::MissingLine('t')),
        ("", SdpError::BadVersion),
        (
            "v=0\no=- 1 1 IN IP4 a\ns=-\nt=0 0\nm=audio 0 RTP/AVP 0\nm=audio 5 RTP/AVP 0\n",
            SdpError::MissingConnection { index: 1 },
        ),
    ];
    for (text, want) in cases {
        let err = SessionDescription::parse(text).unwrap_err();
        assert_eq!(err, want, "{text:?}");
        assert_eq!(err.status_code(), 400);
    }
    // A disabled stream needs no c=, and a media-level c= is enough.
    assert!(
        SessionDescription::parse("v=0\no=- 1 1 IN IP4 a\ns=-\nt=0 0\nm=audio 0 RTP/AVP 0\n")
            .is_ok()
    );
    assert!(
        SessionDescription::parse(
            "v=0\no=- 1 1 IN IP4 a\ns=-\nt=0 0\nm=audio 5 RTP/AVP 0\nc=IN IP4 192.0.2.1\n"
        )
        .is_ok()
    );
    // Line and body size limits.
    let long = format!("{HEADER}a=x:{}\n", "y".repeat(MAX_LINE_LEN));
    assert_eq!(
        SessionDescription::parse(&long).unwrap_err(),
        SdpError::LineTooLong { line: 6 }
    );
    let just = format!("{HEADER}a=x:{}\n", "y".repeat(MAX_LINE_LEN - 4));
    assert!(SessionDescription::parse(&just).is_ok());
    let mut big = HEADER.to_owned();
    while big.len() <= MAX_SDP_LEN {
        big.push_str("a=filler:0123456789012345678901234567890123456789\n");
    }
    let err = SessionDescription::parse(&big).unwrap_err();
    assert_eq!(err, SdpError::TooLarge { len: big.len() });
    assert_eq!(err.status_code(), 400);
    assert_eq!(
        SessionDescription::parse_bytes(big.as_bytes()).unwrap_err(),
        SdpError::TooLarge { len: big.len() }
    );
    assert_eq!(
        SessionDescription::parse_bytes(b"v=0\r\no=\xff\xfe 1 1 IN IP4 a\r\n").unwrap_err(),
        SdpError::NotUtf8
    );
}

#[test]
fn many_rtpmap_attributes_stay_cheap() {
    // 64 formats and ~1500 rtpmap lines: parsing and answering is linear.
    let mut s = HEADER.to_owned();
    let list: Vec<String> = (64..128).map(|i: u32| i.to_string()).collect();
    s.push_str(&format!("m=audio 1000 RTP/AVP {}\n", list.join(" ")));
    for i in 0..1500u32 {
        s.push_str(&format!("a=rtpmap:{} X{i}/8000\n", 64 + i % 64));
    }
    s.push_str("a=rtpmap:127 PCMU/8000\n");
    let offer = SessionDescription::parse(&s).unwrap();
    assert_eq!(offer.media[0].rtpmaps().len(), 64);
    // The first rtpmap of a payload type wins: 127 is X63, not PCMU.
    assert_eq!(answer(&offer).unwrap_err(), SdpError::NoAcceptableMedia);
}

#[test]
fn remote_addresses() {
    let offer = parse(&format!(
        "{HEADER}m=audio 9000 RTP/AVP 0\nc=IN IP4 203.0.113.5\n"
    ));
    let n = answer(&offer).unwrap().1;
    assert_eq!(
        n.remote_rtp,
        Some(SocketAddr::from(([203, 0, 113, 5], 9000)))
    );
    assert_eq!(
        n.remote_rtcp,
        Some(SocketAddr::from(([203, 0, 113, 5], 9001)))
    );
    // A host name in c= is not usable for RTP: no address (the call can still be answered).
    let offer =
        parse("v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 host.example\nt=0 0\nm=audio 9000 RTP/AVP 0\n");
    let n = answer(&offer).unwrap().1;
    assert_eq!(n.remote_rtp, None);
}

#[test]
fn rtcp_port_and_mux_in_offers_and_answers() {
    let mut o = MediaOffer::new(vec![Codec::pcmu()]);
    o.rtcp_port = Some(7003);
    let offer = build_offer(1, 1, IP, 7000, &o);
    assert!(offer.to_string().contains("a=rtcp:7003\r\na=rtcp-mux\r\n"));
    // An answerer that multiplexes writes only a=rtcp-mux ...
    let mut bob = MediaOffer::new(vec![Codec::pcmu()]);
    bob.rtcp_port = Some(8003);
    let (ans, b) = answer_offer(&offer, &bob, 2, 1, IP, 8000, plain_only).unwrap();
    assert!(b.rtcp_mux);
    assert_eq!(b.remote_rtcp, Some(SocketAddr::new(IP, 7000)));
    assert!(!ans.to_string().contains("a=rtcp:"));
    // ... one that does not, its a=rtcp; the offerer then sends RTCP there.
    bob.rtcp_mux = false;
    let (ans, b) = answer_offer(&offer, &bob, 2, 1, IP, 8000, plain_only).unwrap();
    assert!(!b.rtcp_mux);
    assert_eq!(b.remote_rtcp, Some(SocketAddr::new(IP, 7003)));
    assert!(ans.to_string().contains("a=rtcp:8003\r\na=sendrecv\r\n"));
    let a = accept_answer(&offer, &ans).unwrap();
    assert!(!a.rtcp_mux);
    assert_eq!(a.remote_rtcp, Some(SocketAddr::new(IP, 8003)));
}

#[test]
fn packet_times_are_sanitised() {
    for (value, want) in [
        ("20", Some(20)),
        ("30.0", Some(30)),
        (" 40 ", Some(40)),
        ("0", None),
        ("-20", None),
        ("1001", None),
        ("4294967295", None),
        ("1e9", None),
        ("NaN", None),
        ("inf", None),
        ("x", None),
        ("", None),
    ] {
        let offer = parse(&format!(
            "{HEADER}m=audio 9000 RTP/AVP 0\na=ptime:{value}\na=maxptime:{value}\n"
        ));
        let n = answer(&offer).unwrap().1;
        assert_eq!(n.ptime, want, "{value:?}");
        assert_eq!(n.maxptime, want, "{value:?}");
    }
    // Session-level ptime applies when the media has none.
    let offer = parse(&format!("{HEADER}a=ptime:60\nm=audio 9000 RTP/AVP 0\n"));
    assert_eq!(answer(&offer).unwrap().1.ptime, Some(60));
}

#[test]
fn values_cannot_inject_lines() {
    let mut o = MediaOffer::new(vec![Codec::pcmu()]);
    o.crypto = vec!["1 AES_CM_128_HMAC_SHA1_80 inline:QUJD\r\na=inactive".into()];
    o.fingerprint = Some("sha-256 AA\nm=video 9 RTP/AVP 0".into());
    let mut sdp = build_offer(1, 1, IP, 7000, &o);
    sdp.session_name = "evil\r\nc=IN IP4 0.0.0.0".into();
    let text = sdp.to_string();
    let parsed = SessionDescription::parse(&text).unwrap();
    assert_eq!(parsed.media.len(), 1);
    assert_eq!(parsed.session_name, "evil  c=IN IP4 0.0.0.0");
    assert_eq!(parsed.media_direction(0), Direction::SendRecv);
    assert!(text.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:QUJD  a=inactive\r\n"));
    assert_eq!(text.matches("\r\n").count(), text.matches('\n').count());
}

#[test]
fn bare_cr_and_nul_inside_lines_are_refused() {
    for bad in ["s=Talk\r0\r\n", "s=a\0b\r\n", "a=x\r\r\n"] {
        let text = format!("v=0\r\no=- 1 1 IN IP4 a\r\n{bad}t=0 0\r\n");
        let err = SessionDescription::parse(&text).unwrap_err();
        assert!(
            matches!(err, SdpError::InvalidLine { line: 3, .. }),
            "{bad:?}: {err:?}"
        );
        assert_eq!(err.status_code(), 400);
    }
    // LF-only line endings are fine.
    assert!(SessionDescription::parse("v=0\no=- 1 1 IN IP4 a\ns=x\nt=0 0\n").is_ok());
}

#[test]
fn lenient_opus_rtpmaps() {
    for rtpmap in ["opus/48000", "OPUS/48000/1", "opus/48000/0"] {
        let offer = parse(&format!(
            "{HEADER}m=audio 9000 RTP/AVP 100\na=rtpmap:100 {rtpmap}\n"
        ));
        let (ans, n) = answer(&offer).unwrap();
        assert_eq!(n.send_codec.payload_type, 100, "{rtpmap}");
        assert_eq!(n.send_codec.channels, 2, "{rtpmap}");
        assert!(
            ans.to_string().contains("a=rtpmap:100 opus/48000/2\r\n"),
            "{rtpmap}"
        );
    }
    // Not at 48000: not Opus as we know it.
    let offer = parse(&format!(
        "{HEADER}m=audio 9000 RTP/AVP 100\na=rtpmap:100 opus/16000/2\n"
    ));
    assert_eq!(answer(&offer).unwrap_err(), SdpError::NoAcceptableMedia);
}
