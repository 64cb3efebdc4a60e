//! SDP parsing/printing of real-world bodies and RFC 3264 offer/answer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tandem_proto::sdp::{
    Codec, Direction, RtpMap, SdpError, SessionDescription, audio_offer, negotiate_answer,
    negotiated_from_answer,
};

fn crlf(s: &str) -> String {
    s.lines().map(|l| format!("{l}\r\n")).collect()
}

const BARESIP: &str = "v=0
o=- 1503409158 1103219925 IN IP4 192.168.1.5
s=-
c=IN IP4 192.168.1.5
t=0 0
m=audio 10402 RTP/AVP 96 97 9 0 8 101
b=AS:128
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1
a=rtpmap:97 L16/48000/2
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
a=label:1
a=ssrc:1234567 cname:abc@baresip
a=rtcp-rsize
a=ptime:20
";

const LINPHONE: &str = "v=0
o=alice 3078 1205 IN IP4 192.168.0.10
s=Talk
c=IN IP4 192.168.0.10
t=0 0
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:97 SILK/16000
a=rtpmap:98 speex/16000
a=fmtp:98 vbr=on
a=fmtp:18 annexb=yes
a=rtpmap:101 telephone-event/48000
a=rtpmap:99 telephone-event/16000
a=rtpmap:100 telephone-event/8000
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:* ccm tmmbr
";

const ASTERISK_HOLD: &str = "v=0
o=- 1726646542 1726646544 IN IP4 10.0.0.2
s=Asterisk
c=IN IP4 10.0.0.2
t=0 0
m=audio 14226 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=maxptime:150
a=sendonly
";

const KAMAILIO_IPV6: &str = "v=0
o=user1 53655765 2353687637 IN IP6 2001:db8::1
s=-
c=IN IP6 2001:db8::1
t=0 0
m=audio 6000 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=rtcp:6001 IN IP6 2001:db8::1
";

const WEBRTC: &str = "v=0
o=- 4611731400430051336 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=extmap-allow-mixed
a=msid-semantic: WMS stream
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:abcd
a=ice-pwd:aaaaaaaaaaaaaaaaaaaaaaaa
a=ice-options:trickle
a=fingerprint:sha-256 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89
a=setup:actpass
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=sendrecv
a=msid:stream track
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:13 CN/8000
a=rtpmap:110 telephone-event/48000
a=rtpmap:126 telephone-event/8000
a=ssrc:1001 cname:xyz
m=video 9 UDP/TLS/RTP/SAVPF 96 97
c=IN IP4 0.0.0.0
a=mid:1
a=rtpmap:96 VP8/90000
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=recvonly
";

const RFC8866_EXAMPLE: &str = "v=0
o=jdoe 3724394400 3724394405 IN IP4 198.51.100.1
s=Call to John Smith
i=SDP Offer #1
u=http://www.jdoe.example.com/home.html
e=Jane Doe <jane@jdoe.example.com>
p=+1 617 555-6011
c=IN IP4 198.51.100.1
t=0 0
m=audio 49170 RTP/AVP 0
m=audio 49180 RTP/AVP 0
m=video 51372 RTP/AVP 99
c=IN IP6 2001:db8::2
a=rtpmap:99 h263-1998/90000
";

fn pcmu() -> Codec {
    Codec::new("PCMU", 8000, 1, 0)
}
fn pcma() -> Codec {
    Codec::new("PCMA", 8000, 1, 8)
}
fn dtmf() -> Codec {
    Codec::new("telephone-event", 8000, 1, 101)
}
fn opus() -> Codec {
    Codec::new("opus", 48000, 2, 96).with_fmtp("useinbandfec=1")
}

#[test]
fn real_world_bodies_round_trip_exactly() {
    for body in [
        BARESIP,
        LINPHONE,
        ASTERISK_HOLD,
        KAMAILIO_IPV6,
        WEBRTC,
        RFC8866_EXAMPLE,
    ] {
        let sdp = SessionDescription::parse(body).unwrap();
        let printed = sdp.to_string();
        assert_eq!(printed, crlf(body));
        // CRLF input parses the same.
        assert_eq!(SessionDescription::parse(&printed).unwrap(), sdp);
    }
}

#[test]
fn baresip_fields() {
    let sdp = SessionDescription::parse(BARESIP).unwrap();
    assert_eq!(sdp.origin.session_id, 1503409158);
    assert_eq!(sdp.origin.session_version, 1103219925);
    assert_eq!(
        sdp.connection.as_ref().unwrap().ip(),
        Some(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 5)))
    );
    let m = &sdp.media[0];
    assert_eq!(m.port, 10402);
    assert_eq!(m.bandwidths, vec!["AS:128"]);
    let maps = m.rtpmaps();
    assert_eq!(maps.len(), 6);
    assert_eq!(
        maps[0],
        RtpMap {
            payload_type: 96,
            encoding: "opus".into(),
            clock_rate: 48000,
            channels: Some(2)
        }
    );
    assert_eq!(maps[3].encoding, "PCMU");
    assert_eq!(m.fmtp(96), Some("stereo=1;sprop-stereo=1"));
    assert_eq!(m.fmtp(101), Some("0-15"));
    assert_eq!(m.fmtp(0), None);
    assert_eq!(m.direction(), Direction::SendRecv);
    assert_eq!(m.attribute("ssrc"), Some("1234567 cname:abc@baresip"));
    assert!(m.has_attribute("rtcp-rsize"));
    assert_eq!(
        sdp.media_remote_addr(0),
        Some("192.168.1.5:10402".parse().unwrap())
    );
}

#[test]
fn linphone_static_payload_types_without_rtpmap() {
    let sdp = SessionDescription::parse(LINPHONE).unwrap();
    let maps = sdp.media[0].rtpmaps();
    let names: Vec<(u8, &str, u32)> = maps
        .iter()
        .map(|m| (m.payload_type, m.encoding.as_str(), m.clock_rate))
        .collect();
    assert_eq!(
        names,
        vec![
            (96, "opus", 48000),
            (97, "SILK", 16000),
            (98, "speex", 16000),
            (0, "PCMU", 8000),
            (8, "PCMA", 8000),
            (18, "G729", 8000),
            (101, "telephone-event", 48000),
            (99, "telephone-event", 16000),
            (100, "telephone-event", 8000),
        ]
    );
    assert_eq!(sdp.media[0].fmtp(18), Some("annexb=yes"));
    assert_eq!(
        sdp.attributes[0].value.as_deref(),
        Some("rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics")
    );
}

#[test]
fn webrtc_attributes_kept_verbatim() {
    let sdp = SessionDescription::parse(WEBRTC).unwrap();
    assert!(sdp.connection.is_none());
    assert_eq!(sdp.attributes[2].name, "msid-semantic");
    assert_eq!(sdp.attributes[2].value.as_deref(), Some(" WMS stream"));
    assert_eq!(sdp.media.len(), 2);
    assert_eq!(sdp.media[0].protocol, "UDP/TLS/RTP/SAVPF");
    assert_eq!(sdp.media[1].direction(), Direction::RecvOnly);
    assert_eq!(sdp.media_direction(1), Direction::RecvOnly);
    // 0.0.0.0 is not a usable address.
    assert_eq!(sdp.media_remote_addr(0), None);
    assert_eq!(sdp.media[0].attribute("fingerprint").unwrap().len(), 8 + 95);
}

#[test]
fn rfc8866_example_fields() {
    let sdp = SessionDescription::parse(RFC8866_EXAMPLE).unwrap();
    assert_eq!(sdp.session_name, "Call to John Smith");
    assert_eq!(sdp.other_fields.len(), 4);
    assert_eq!(sdp.other_fields[0], ('i', "SDP Offer #1".to_owned()));
    assert_eq!(sdp.media.len(), 3);
    assert_eq!(
        sdp.media_connection(2).unwrap().ip(),
        Some(IpAddr::V6("2001:db8::2".parse().unwrap()))
    );
    assert_eq!(
        sdp.media_connection(0).unwrap().ip(),
        Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)))
    );
    assert_eq!(sdp.media[2].rtpmaps()[0].encoding, "h263-1998");
}

#[test]
fn multicast_and_port_counts() {
    let sdp = SessionDescription::parse(
        "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 224.2.1.1/127/3\nt=0 0\nm=video 49170/2 RTP/AVP 31\n",
    )
    .unwrap();
    let c = sdp.connection.as_ref().unwrap();
    assert_eq!(c.address, "224.2.1.1/127/3");
    assert_eq!(c.ip(), Some(IpAddr::V4(Ipv4Addr::new(224, 2, 1, 1))));
    assert_eq!(sdp.media[0].num_ports, Some(2));
    assert_eq!(sdp.media[0].rtpmaps()[0].encoding, "H261");
    assert!(sdp.to_string().contains("m=video 49170/2 RTP/AVP 31\r\n"));
}

#[test]
fn session_level_direction_applies_to_media() {
    let sdp = SessionDescription::parse(
        "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\na=sendonly\nm=audio 4000 RTP/AVP 0\nm=audio 4002 RTP/AVP 0\na=inactive\n",
    )
    .unwrap();
    assert_eq!(sdp.media[0].direction(), Direction::SendRecv);
    assert_eq!(sdp.media_direction(0), Direction::SendOnly);
    assert_eq!(sdp.media_direction(1), Direction::Inactive);
}

#[test]
fn parse_errors() {
    let ok = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nt=0 0\n";
    assert!(SessionDescription::parse(ok).is_ok());
    assert_eq!(SessionDescription::parse(""), Err(SdpError::BadVersion));
    assert_eq!(
        SessionDescription::parse("v=1\no=- 1 1 IN IP4 a\ns=-\n"),
        Err(SdpError::BadVersion)
    );
    assert_eq!(
        SessionDescription::parse("o=- 1 1 IN IP4 a\nv=0\ns=-\n"),
        Err(SdpError::BadVersion)
    );
    assert_eq!(
        SessionDescription::parse("v=0\ns=-\nt=0 0\n"),
        Err(SdpError::MissingLine('o'))
    );
    assert_eq!(
        SessionDescription::parse("v=0\no=- 1 1 IN IP4 a\nt=0 0\n"),
        Err(SdpError::MissingLine('s'))
    );
    let bad = [
        "v=0\no=- x 1 IN IP4 a\ns=-\n",
        "v=0\no=- 1 1 IN IP4\ns=-\n",
        "v=0\no=- 1 1 IN IP4 a\ns=-\nc=IN IP4\n",
        "v=0\no=- 1 1 IN IP4 a\ns=-\nt=0\n",
        "v=0\no=- 1 1 IN IP4 a\ns=-\nm=audio 70000 RTP/AVP 0\n",
        "v=0\no=- 1 1 IN IP4 a\ns=-\nm=audio x RTP/AVP 0\n",
        "v=0\no=- 1 1 IN IP4 a\ns=-\nm=audio 4000\n",
        "v=0\no=- 1 1 IN IP4 a\ns=-\nm=audio 4000 RTP/AVP 0\nt=0 0\n",
        "v=0\no=- 1 1 IN IP4 a\ns=-\nX=1\n",
        "v=0\no=- 1 1 IN IP4 a\ns=-\nab\n",
        "v=0\no=- 1 1 IN IP4 a\no=- 1 1 IN IP4 a\ns=-\n",
    ];
    for b in bad {
        assert!(
            matches!(
                SessionDescription::parse(b),
                Err(SdpError::InvalidLine { .. })
            ),
            "{b:?}"
        );
    }
    // Malformed rtpmap lines are ignored, not fatal.
    let sdp = SessionDescription::parse(
        "v=0\no=- 1 1 IN IP4 a\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 1 RTP/AVP 96 97 0\na=rtpmap:96 opus\na=rtpmap:97 x/y\n",
    )
    .unwrap();
    assert_eq!(sdp.media[0].rtpmaps().len(), 1);
}

#[test]
fn audio_offer_exact_text() {
    let offer = audio_offer(
        42,
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        4000,
        &[pcmu(), pcma(), dtmf()],
        Direction::SendRecv,
    );
    assert_eq!(
        offer.to_string(),
        "v=0\r\no=- 42 42 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
         m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    );
    let v6 = audio_offer(
        7,
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        5000,
        &[opus()],
        Direction::SendOnly,
    );
    let text = v6.to_string();
    assert!(text.contains("c=IN IP6 ::1\r\n"), "{text}");
    assert!(text.contains("a=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\n"));
    assert!(text.ends_with("a=sendonly\r\n"));
}

#[test]
fn answer_keeps_offer_order_and_numbering() {
    let offer = SessionDescription::parse(BARESIP).unwrap();
    let local = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 20));
    let (answer, media) =
        negotiate_answer(&offer, &[pcma(), pcmu(), dtmf()], 99, local, &[30000]).unwrap();
    let m = &answer.media[0];
    assert_eq!(m.port, 30000);
    assert_eq!(m.protocol, "RTP/AVP");
    assert_eq!(m.formats, vec!["0", "8", "101"]);
    assert_eq!(m.direction(), Direction::SendRecv);
    assert_eq!(m.fmtp(101), Some("0-16"));
    assert_eq!(answer.origin.session_id, 99);
    assert_eq!(answer.connection.as_ref().unwrap().ip(), Some(local));
    assert_eq!(media.len(), 1);
    assert_eq!(media[0].index, 0);
    assert_eq!(
        media[0].remote_addr,
        Some("192.168.1.5:10402".parse().unwrap())
    );
    assert_eq!(media[0].codecs.len(), 2);
    assert_eq!(media[0].codecs[0].payload_type, 0);
    assert_eq!(media[0].telephone_event, Some(101));
    assert_eq!(media[0].direction, Direction::SendRecv);
    // The answer text parses back and is a valid answer to the offer.
    let reparsed = SessionDescription::parse(&answer.to_string()).unwrap();
    assert_eq!(reparsed, answer);
}

#[test]
fn dynamic_payload_types_keep_offerer_numbers() {
    let offer_text = "v=0\no=- 5 5 IN IP4 10.1.1.1\ns=-\nc=IN IP4 10.1.1.1\nt=0 0\n\
                      m=audio 8000 RTP/AVP 109 0 110\na=rtpmap:109 opus/48000/2\n\
                      a=fmtp:109 maxplaybackrate=16000\na=rtpmap:110 telephone-event/8000\na=ptime:40\n";
    let offer = SessionDescription::parse(offer_text).unwrap();
    let (answer, media) = negotiate_answer(
        &offer,
        &[opus(), pcmu(), dtmf()],
        1,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        &[4000],
    )
    .unwrap();
    let m = &answer.media[0];
    assert_eq!(m.formats, vec!["109", "0", "110"]);
    assert_eq!(m.rtpmaps()[0].payload_type, 109);
    assert_eq!(m.rtpmaps()[0].encoding, "opus");
    assert_eq!(m.fmtp(109), Some("useinbandfec=1"));
    assert_eq!(m.attribute("ptime"), Some("40"));
    assert_eq!(media[0].telephone_event, Some(110));
    assert_eq!(
        media[0]
            .codecs
            .iter()
            .map(|c| c.payload_type)
            .collect::<Vec<_>>(),
        vec![109, 0]
    );
}

#[test]
fn telephone_event_rate_follows_primary_codec() {
    let offer = SessionDescription::parse(LINPHONE).unwrap();
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    // Only 8 kHz events supported: pick PT 100.
    let (_, media) = negotiate_answer(&offer, &[opus(), dtmf()], 1, local, &[4000]).unwrap();
    assert_eq!(media[0].telephone_event, Some(100));
    // 48 kHz events supported too: match opus's clock (PT 101).
    let dtmf48 = Codec::new("telephone-event", 48000, 1, 102);
    let (answer, media) =
        negotiate_answer(&offer, &[opus(), dtmf(), dtmf48], 1, local, &[4000]).unwrap();
    assert_eq!(media[0].telephone_event, Some(101));
    assert_eq!(answer.media[0].formats, vec!["96", "101"]);
    // No telephone-event supported: none in the answer.
    let (answer, media) = negotiate_answer(&offer, &[pcma()], 1, local, &[4000]).unwrap();
    assert_eq!(media[0].telephone_event, None);
    assert_eq!(answer.media[0].formats, vec!["8"]);
}

#[test]
fn hold_offer_gets_recvonly_answer() {
    let offer = SessionDescription::parse(ASTERISK_HOLD).unwrap();
    let (answer, media) = negotiate_answer(
        &offer,
        &[pcmu(), dtmf()],
        1,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        &[4000],
    )
    .unwrap();
    assert_eq!(answer.media[0].direction(), Direction::RecvOnly);
    assert_eq!(media[0].direction, Direction::RecvOnly);
    // inactive stays inactive, recvonly becomes sendonly.
    for (offered, expected) in [
        ("inactive", Direction::Inactive),
        ("recvonly", Direction::SendOnly),
    ] {
        let text = ASTERISK_HOLD.replace("a=sendonly", &format!("a={offered}"));
        let offer = SessionDescription::parse(&text).unwrap();
        let (answer, _) = negotiate_answer(
            &offer,
            &[pcmu()],
            1,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            &[4000],
        )
        .unwrap();
        assert_eq!(answer.media[0].direction(), expected);
    }
}

#[test]
fn old_style_hold_has_no_remote_address() {
    let text = ASTERISK_HOLD
        .replace("c=IN IP4 10.0.0.2", "c=IN IP4 0.0.0.0")
        .replace("a=sendonly\n", "");
    let offer = SessionDescription::parse(&text).unwrap();
    let (_, media) = negotiate_answer(
        &offer,
        &[pcmu()],
        1,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        &[4000],
    )
    .unwrap();
    assert_eq!(media[0].remote_addr, None);
}

#[test]
fn no_common_codec_is_rejected() {
    let g729_only =
        "v=0\no=- 5 5 IN IP4 10.1.1.1\ns=-\nc=IN IP4 10.1.1.1\nt=0 0\nm=audio 8000 RTP/AVP 18\n";
    let offer = SessionDescription::parse(g729_only).unwrap();
    assert_eq!(
        negotiate_answer(
            &offer,
            &[pcmu(), dtmf()],
            1,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            &[4000]
        ),
        Err(SdpError::NoAcceptableMedia)
    );
    // Only telephone-event in common is not enough.
    let te_only = "v=0\no=- 5 5 IN IP4 10.1.1.1\ns=-\nc=IN IP4 10.1.1.1\nt=0 0\n\
                   m=audio 8000 RTP/AVP 18 101\na=rtpmap:101 telephone-event/8000\n";
    let offer = SessionDescription::parse(te_only).unwrap();
    assert_eq!(
        negotiate_answer(
            &offer,
            &[pcmu(), dtmf()],
            1,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            &[4000]
        ),
        Err(SdpError::NoAcceptableMedia)
    );
}

#[test]
fn rejected_streams_get_port_zero_and_keep_their_place() {
    let text = "v=0\no=- 5 5 IN IP4 10.1.1.1\ns=-\nc=IN IP4 10.1.1.1\nt=0 0\n\
                m=audio 8000 RTP/AVP 18\n\
                m=video 8002 RTP/AVP 96\na=rtpmap:96 VP8/90000\n\
                m=audio 8004 RTP/AVP 8\n\
                m=audio 0 RTP/AVP 0\n";
    let offer = SessionDescription::parse(text).unwrap();
    let (answer, media) = negotiate_answer(
        &offer,
        &[pcmu(), pcma()],
        1,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        &[5000, 5002],
    )
    .unwrap();
    let ports: Vec<u16> = answer.media.iter().map(|m| m.port).collect();
    assert_eq!(ports, vec![0, 0, 5000, 0]);
    let kinds: Vec<&str> = answer.media.iter().map(|m| m.media.as_str()).collect();
    assert_eq!(kinds, vec!["audio", "video", "audio", "audio"]);
    assert_eq!(answer.media[0].formats, vec!["18"]);
    assert_eq!(media.len(), 1);
    assert_eq!(media[0].index, 2);
    assert_eq!(media[0].remote_addr, Some("10.1.1.1:8004".parse().unwrap()));
    // The offerer sees the same single stream.
    let seen = negotiated_from_answer(&offer, &answer).unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].index, 2);
    assert_eq!(seen[0].remote_addr, Some("127.0.0.1:5000".parse().unwrap()));
}

#[test]
fn not_enough_ports() {
    let text = "v=0\no=- 5 5 IN IP4 10.1.1.1\ns=-\nc=IN IP4 10.1.1.1\nt=0 0\n\
                m=audio 8000 RTP/AVP 0\nm=audio 8004 RTP/AVP 0\n";
    let offer = SessionDescription::parse(text).unwrap();
    assert_eq!(
        negotiate_answer(
            &offer,
            &[pcmu()],
            1,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            &[5000]
        ),
        Err(SdpError::NotEnoughPorts {
            needed: 2,
            given: 1
        })
    );
}

#[test]
fn srtp_and_webrtc_offers_are_not_accepted() {
    let offer = SessionDescription::parse(WEBRTC).unwrap();
    assert_eq!(
        negotiate_answer(
            &offer,
            &[pcmu(), opus()],
            1,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            &[5000, 5002]
        ),
        Err(SdpError::NoAcceptableMedia)
    );
}

#[test]
fn ipv6_offer_and_answer() {
    let offer = SessionDescription::parse(KAMAILIO_IPV6).unwrap();
    let local = IpAddr::V6("2001:db8::9".parse().unwrap());
    let (answer, media) = negotiate_answer(&offer, &[pcmu(), dtmf()], 3, local, &[7000]).unwrap();
    assert_eq!(
        media[0].remote_addr,
        Some(SocketAddr::new("2001:db8::1".parse().unwrap(), 6000))
    );
    let text = answer.to_string();
    assert!(text.contains("o=- 3 3 IN IP6 2001:db8::9\r\n"), "{text}");
    assert!(text.contains("c=IN IP6 2001:db8::9\r\n"), "{text}");
    let seen = negotiated_from_answer(&offer, &SessionDescription::parse(&text).unwrap()).unwrap();
    assert_eq!(seen[0].remote_addr, Some(SocketAddr::new(local, 7000)));
}

#[test]
fn offerer_view_of_answer() {
    let local = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
    let offer = audio_offer(
        42,
        local,
        4000,
        &[pcmu(), pcma(), dtmf()],
        Direction::SendRecv,
    );
    // Peer answers PCMA only, holds us (recvonly from its side): we only send.
    let answer_text = "v=0\no=- 1 1 IN IP4 198.51.100.7\ns=-\nc=IN IP4 198.51.100.7\nt=0 0\n\
                       m=audio 20000 RTP/AVP 8 101\na=rtpmap:8 PCMA/8000\n\
                       a=rtpmap:101 telephone-event/8000\na=recvonly\n";
    let answer = SessionDescription::parse(answer_text).unwrap();
    let seen = negotiated_from_answer(&offer, &answer).unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].direction, Direction::SendOnly);
    assert_eq!(seen[0].codecs.len(), 1);
    assert_eq!(seen[0].codecs[0].encoding, "PCMA");
    assert_eq!(seen[0].telephone_event, Some(101));
    assert_eq!(
        seen[0].remote_addr,
        Some("198.51.100.7:20000".parse().unwrap())
    );
    // We offered sendonly and the answer says recvonly: we send.
    let hold = audio_offer(42, local, 4000, &[pcmu()], Direction::SendOnly);
    let ans = negotiate_answer(&hold, &[pcmu()], 2, local, &[5000])
        .unwrap()
        .0;
    let seen = negotiated_from_answer(&hold, &ans).unwrap();
    assert_eq!(seen[0].direction, Direction::SendOnly);
}

#[test]
fn full_exchange_agrees_on_both_sides() {
    let a_ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let b_ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    let offer = audio_offer(
        1,
        a_ip,
        4000,
        &[opus(), pcmu(), dtmf()],
        Direction::SendRecv,
    );
    let offer_rx = SessionDescription::parse(&offer.to_string()).unwrap();
    let (answer, b_view) =
        negotiate_answer(&offer_rx, &[pcmu(), opus(), dtmf()], 2, b_ip, &[6000]).unwrap();
    let answer_rx = SessionDescription::parse(&answer.to_string()).unwrap();
    let a_view = negotiated_from_answer(&offer, &answer_rx).unwrap();
    assert_eq!(a_view[0].codecs, b_view[0].codecs);
    assert_eq!(a_view[0].codecs[0].encoding, "opus");
    assert_eq!(a_view[0].telephone_event, b_view[0].telephone_event);
    assert_eq!(a_view[0].remote_addr, Some(SocketAddr::new(b_ip, 6000)));
    assert_eq!(b_view[0].remote_addr, Some(SocketAddr::new(a_ip, 4000)));
    assert_eq!(a_view[0].direction, Direction::SendRecv);
}

#[test]
fn invalid_answers_are_errors() {
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let offer = audio_offer(1, local, 4000, &[pcmu()], Direction::SendRecv);
    let two = SessionDescription::parse(
        "v=0\no=- 1 1 IN IP4 1.1.1.1\ns=-\nc=IN IP4 1.1.1.1\nt=0 0\nm=audio 1 RTP/AVP 0\nm=audio 2 RTP/AVP 0\n",
    )
    .unwrap();
    assert_eq!(
        negotiated_from_answer(&offer, &two),
        Err(SdpError::MediaCountMismatch {
            offer: 1,
            answer: 2
        })
    );
    let video = SessionDescription::parse(
        "v=0\no=- 1 1 IN IP4 1.1.1.1\ns=-\nc=IN IP4 1.1.1.1\nt=0 0\nm=video 1 RTP/AVP 0\n",
    )
    .unwrap();
    assert_eq!(
        negotiated_from_answer(&offer, &video),
        Err(SdpError::MediaMismatch { index: 0 })
    );
    let foreign_codec = SessionDescription::parse(
        "v=0\no=- 1 1 IN IP4 1.1.1.1\ns=-\nc=IN IP4 1.1.1.1\nt=0 0\nm=audio 1 RTP/AVP 8\n",
    )
    .unwrap();
    assert_eq!(
        negotiated_from_answer(&offer, &foreign_codec),
        Err(SdpError::MediaMismatch { index: 0 })
    );
    let rejected = SessionDescription::parse(
        "v=0\no=- 1 1 IN IP4 1.1.1.1\ns=-\nc=IN IP4 1.1.1.1\nt=0 0\nm=audio 0 RTP/AVP 0\n",
    )
    .unwrap();
    assert_eq!(negotiated_from_answer(&offer, &rejected).unwrap(), vec![]);
}

#[test]
fn direction_algebra() {
    use Direction::*;
    for d in [SendRecv, SendOnly, RecvOnly, Inactive] {
        assert_eq!(d.reverse().reverse(), d);
        assert_eq!(Direction::from_attribute(d.as_str()), Some(d));
        assert_eq!(d.intersect(SendRecv), d);
        assert_eq!(d.intersect(Inactive), Inactive);
    }
    assert_eq!(SendOnly.reverse(), RecvOnly);
    assert_eq!(SendOnly.intersect(RecvOnly), Inactive);
}
