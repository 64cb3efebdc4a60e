//! Property tests for the video offer/answer: hostile m=video lines never panic and never give
//! limits outside 16x16@1 ..= 4096x2304@60, and two Tandems with random settings agree both ways.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use proptest::prelude::*;
use tandem_proto::sdp::video::{
    ImageAttr, NegotiatedVideo, VideoCodec, VideoFeedback, VideoLimits, VideoOfferParams,
    accept_video_answer_in, answer_video_in, video_offer,
};
use tandem_proto::sdp::{Direction, SessionDescription, TransportProfile};

fn in_bounds(l: VideoLimits) -> bool {
    (16..=4096).contains(&l.max_width)
        && (16..=2304).contains(&l.max_height)
        && (1..=60).contains(&l.max_fps)
}

fn check(n: &NegotiatedVideo) {
    assert!(in_bounds(n.peer_limits), "{:?}", n.peer_limits);
    assert!(!n.recv.is_empty());
    if let Some(s) = &n.send {
        assert!(s.kind_name == "VP8" || s.kind_name == "H264");
        assert!(n.direction.sends());
    }
}

/// Tokens hostile peers put in numbers.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..5000).prop_map(|n| n.to_string()),
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("99999999999999999999999999".to_owned()),
        Just("4294967296".to_owned()),
        Just("1e9".to_owned()),
        Just(String::new()),
        "[0-9a-z.:,\\-]{0,12}",
    ]
}

fn xy() -> impl Strategy<Value = String> {
    prop_oneof![
        number(),
        (number(), number()).prop_map(|(a, b)| format!("[{a}:{b}]")),
        (number(), number(), number()).prop_map(|(a, s, b)| format!("[{a}:{s}:{b}]")),
        prop::collection::vec(number(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
        "[\\[\\]x=y,:0-9 ]{0,16}",
    ]
}

fn imageattr() -> impl Strategy<Value = String> {
    let set = (
        xy(),
        xy(),
        prop::option::of("(q|sar|par)=[0-9.\\-\\[\\]]{0,8}"),
    )
        .prop_map(|(x, y, extra)| match extra {
            Some(e) => format!("[x={x},y={y},{e}]"),
            None => format!("[x={x},y={y}]"),
        });
    let list = prop_oneof![
        Just("*".to_owned()),
        prop::collection::vec(set, 0..4).prop_map(|v| v.join(" ")),
    ];
    (
        prop_oneof![
            Just("*".to_owned()),
            (90u16..130).prop_map(|p| p.to_string())
        ],
        prop::collection::vec(
            (
                prop_oneof![Just("send"), Just("recv"), Just("RECV"), Just("bad")],
                list,
            ),
            0..3,
        ),
    )
        .prop_map(|(pt, dirs)| {
            let mut s = pt;
            for (d, l) in dirs {
                s.push(' ');
                s.push_str(d);
                s.push(' ');
                s.push_str(&l);
            }
            s
        })
}

fn fmtp() -> impl Strategy<Value = String> {
    let param = prop_oneof![
        number().prop_map(|n| format!("max-fs={n}")),
        number().prop_map(|n| format!("max-fr={n}")),
        number().prop_map(|n| format!("max-mbps={n}")),
        prop_oneof![Just("0"), Just("1"), Just("2"), Just("1x")]
            .prop_map(|n| format!("packetization-mode={n}")),
        "[0-9a-fA-F]{0,8}".prop_map(|p| format!("profile-level-id={p}")),
        Just("level-asymmetry-allowed=1".to_owned()),
        "[a-z=;]{0,10}",
    ];
    prop::collection::vec(param, 0..5).prop_map(|v| v.join(";"))
}

fn rtcp_fb() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just("*".to_owned()),
            (90u16..130).prop_map(|p| p.to_string())
        ],
        prop_oneof![
            Just("nack"),
            Just("nack pli"),
            Just("ccm fir"),
            Just("goog-remb"),
            Just("transport-cc"),
            Just("NACK  PLI"),
            Just(""),
        ],
    )
        .prop_map(|(pt, fb)| format!("{pt} {fb}"))
}

prop_compose! {
    fn hostile_offer()(
        profile in prop_oneof![
            Just("RTP/AVP"), Just("RTP/AVPF"), Just("RTP/SAVPF"), Just("UDP/TLS/RTP/SAVPF"), Just("TCP/MSRP")
        ],
        formats in prop::collection::vec((90u8..130, prop_oneof![
            Just("VP8/90000"), Just("H264/90000"), Just("vp8/90000"), Just("VP8/8000"), Just("VP9/90000"), Just("")
        ], fmtp()), 0..6),
        images in prop::collection::vec(imageattr(), 0..3),
        fbs in prop::collection::vec(rtcp_fb(), 0..4),
        framerate in prop::option::of(prop_oneof![number(), Just("25.00".to_owned()), Just("NaN".to_owned()), Just("inf".to_owned())]),
        bandwidth in prop::option::of(prop_oneof![number().prop_map(|n| format!("AS:{n}")), number().prop_map(|n| format!("TIAS:{n}"))]),
        dir in prop_oneof![Just("sendrecv"), Just("sendonly"), Just("recvonly"), Just("inactive")],
        addr in prop_oneof![Just("203.0.113.9"), Just("0.0.0.0"), Just("host.example")],
        mux in any::<bool>(),
        rtcp in prop::option::of(number()),
    ) -> String {
        let pts: Vec<String> = formats.iter().map(|(p, ..)| p.to_string()).collect();
        let mut s = format!(
            "v=0\r\no=- 1 1 IN IP4 203.0.113.9\r\ns=-\r\nc=IN IP4 {addr}\r\nt=0 0\r\nm=video 5000 {profile} {}\r\n",
            pts.join(" ")
        );
        if let Some(b) = bandwidth {
            s.push_str(&format!("b={b}\r\n"));
        }
        for (p, map, f) in &formats {
            if !map.is_empty() {
                s.push_str(&format!("a=rtpmap:{p} {map}\r\n"));
            }
            s.push_str(&format!("a=fmtp:{p} {f}\r\n"));
        }
        for i in images {
            s.push_str(&format!("a=imageattr:{i}\r\n"));
        }
        for f in fbs {
            s.push_str(&format!("a=rtcp-fb:{f}\r\n"));
        }
        if let Some(f) = framerate {
            s.push_str(&format!("a=framerate:{f}\r\n"));
        }
        if let Some(r) = rtcp {
            s.push_str(&format!("a=rtcp:{r}\r\n"));
        }
        if mux {
            s.push_str("a=rtcp-mux\r\n");
        }
        s.push_str(&format!("a={dir}\r\n"));
        s
    }
}

fn profile() -> impl Strategy<Value = TransportProfile> {
    prop_oneof![
        Just(TransportProfile::RtpAvp),
        Just(TransportProfile::RtpAvpf)
    ]
}

fn direction() -> impl Strategy<Value = Direction> {
    prop_oneof![
        Just(Direction::SendRecv),
        Just(Direction::SendOnly),
        Just(Direction::RecvOnly),
        Just(Direction::Inactive)
    ]
}

fn feedback() -> impl Strategy<Value = VideoFeedback> {
    (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(nack, pli, fir, remb)| VideoFeedback {
            nack,
            pli,
            fir,
            remb,
        },
    )
}

fn params() -> impl Strategy<Value = VideoOfferParams> {
    (
        prop::sample::subsequence(vec![0usize, 1], 1..=2),
        prop::bool::ANY,
        96u8..112,
        112u8..128,
        profile(),
        direction(),
        feedback(),
        (0u32..5000, 0u32..3000, 0u32..100),
        any::<bool>(),
    )
        .prop_map(
            |(which, swap, vp8_pt, h264_pt, profile, direction, fb, (w, h, fps), mux)| {
                let mut codecs: Vec<VideoCodec> = which
                    .into_iter()
                    .map(|i| {
                        if i == 0 {
                            VideoCodec::vp8(vp8_pt)
                        } else {
                            VideoCodec::h264(h264_pt)
                        }
                    })
                    .collect();
                if swap {
                    codecs.reverse();
                }
                let mut p = VideoOfferParams::new(codecs, 4000);
                p.profile = profile;
                p.direction = direction;
                p.feedback = fb;
                p.recv_limits = VideoLimits {
                    max_width: w,
                    max_height: h,
                    max_fps: fps,
                };
                p.rtcp_mux = mux;
                p
            },
        )
}

fn wrap(m: &tandem_proto::sdp::MediaDescription, ip: &str) -> SessionDescription {
    let text = format!("v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n{m}");
    SessionDescription::parse(&text).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn hostile_offers_never_panic(offer in hostile_offer(), ours in params()) {
        let Ok(sdp) = SessionDescription::parse(&offer) else { return Ok(()); };
        if let Ok(Some((m, n))) = answer_video_in(&sdp, 0, &ours) {
            check(&n);
            // Our answer is valid SDP, and a payload type we send was offered.
            let answer = wrap(&m, "198.51.100.1");
            if let Some(s) = &n.send {
                prop_assert!(sdp.media[0].formats.contains(&s.payload_type.to_string()));
            }
            prop_assert!(!answer.media[0].formats.is_empty());
        }
    }

    #[test]
    fn imageattr_never_panics(value in imageattr(), junk in "\\PC{0,64}") {
        let _ = ImageAttr::parse(&value);
        let _ = ImageAttr::parse(&junk);
    }

    #[test]
    fn two_tandems_agree(alice in params(), bob in params()) {
        let offer = wrap(&video_offer(&alice), "10.0.0.1");
        let answered = answer_video_in(&offer, 0, &bob).unwrap();
        let common = alice.codecs.iter().any(|a| bob.codecs.iter().any(|b| a.kind_name == b.kind_name));
        prop_assert_eq!(answered.is_some(), common);
        let Some((m, bob_n)) = answered else { return Ok(()); };
        check(&bob_n);
        let answer = wrap(&m, "10.0.0.2");
        let alice_n = accept_video_answer_in(&offer, &answer, 0).unwrap().unwrap();
        check(&alice_n);
        // Directions mirror each other and respect both wishes.
        prop_assert_eq!(alice_n.direction.sends(), bob_n.direction.receives());
        prop_assert_eq!(alice_n.direction.receives(), bob_n.direction.sends());
        prop_assert_eq!(alice_n.direction, alice.direction.intersect(bob.direction.reverse()));
        // Each side receives what the other sends.
        if let Some(s) = &alice_n.send {
            prop_assert!(bob_n.recv.iter().any(|c| c.payload_type == s.payload_type && c.kind_name == s.kind_name));
        }
        if let Some(s) = &bob_n.send {
            prop_assert!(alice_n.recv.iter().any(|c| c.payload_type == s.payload_type && c.kind_name == s.kind_name));
        }
        // Feedback is what both support.
        prop_assert_eq!(alice_n.feedback, alice.feedback.intersect(bob.feedback));
        prop_assert_eq!(bob_n.feedback, alice_n.feedback);
        prop_assert_eq!(alice_n.rtcp_mux, alice.rtcp_mux && bob.rtcp_mux);
        prop_assert_eq!(bob_n.rtcp_mux, alice_n.rtcp_mux);
        // What Bob may send stays within what Alice asked to receive (and the other way round).
        let a = alice.recv_limits.clamped();
        prop_assert!(bob_n.peer_limits.max_width <= a.max_width, "{:?} {:?}", bob_n.peer_limits, a);
        prop_assert!(bob_n.peer_limits.max_height <= a.max_height);
        prop_assert!(bob_n.peer_limits.max_fps <= a.max_fps);
        let b = bob.recv_limits.clamped();
        prop_assert!(alice_n.peer_limits.max_width <= b.max_width, "{:?} {:?}", alice_n.peer_limits, b);
        prop_assert!(alice_n.peer_limits.max_height <= b.max_height);
        prop_assert!(alice_n.peer_limits.max_fps <= b.max_fps);
    }
}
