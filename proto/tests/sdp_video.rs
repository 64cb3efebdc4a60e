//! Video offer/answer (`tandem_proto::sdp::video`) against real peers' SDP: baresip 1.0
//! (captured here from `baresip` with the `vp8`, `avcodec` and `fakevideo` modules), linphonec
//! 5.1, a Chrome-style WebRTC offer, plus hostile limits, missing rtpmaps, port 0 and hold.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::net::SocketAddr;

use tandem_proto::sdp::video::{
    self, H264ProfileLevel, ImageAttr, ImageAttrSets, NegotiatedVideo, VideoCodec, VideoFeedback,
    VideoLimits, VideoOfferParams, accept_video_answer, accept_video_answer_in, answer_video,
    answer_video_in, default_video_codecs, offered_video_security, rejected_video,
    security_attributes, security_fits, video_index, video_offer,
};
use tandem_proto::sdp::{
    AnswerSecurity, Attribute, Connection, Direction, MediaDescription, SdpError, SecurityKind,
    SessionDescription, TransportProfile,
};

/// baresip 1.0.0 calling with `vp8.so` + `avcodec.so` + `fakevideo.so`, plain RTP (captured INVITE body).
const BARESIP_OFFER: &str = "v=0
o=- 3715847155 544442348 IN IP4 192.0.2.2
s=-
c=IN IP4 192.0.2.2
t=0 0
a=tool:baresip 1.0.0
m=audio 46008 RTP/AVP 96 0 8 101
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
a=label:1
a=rtcp-rsize
a=ssrc:1206218734 cname:sip:alice@127.0.0.1
a=minptime:20
a=ptime:20
m=video 46000 RTP/AVP 96 97 98 34 99 100
a=rtpmap:96 VP8/90000
a=fmtp:96 max-fs=3600
a=rtpmap:97 H264/90000
a=fmtp:97 packetization-mode=0;profile-level-id=42e01f
a=rtpmap:98 H264/90000
a=fmtp:98 packetization-mode=1;profile-level-id=42e01f
a=rtpmap:34 H263/90000
a=fmtp:34 CIF=1;CIF4=1
a=rtpmap:99 MP4V-ES/90000
a=fmtp:99 profile-level-id=3
a=rtpmap:100 H265/90000
a=fmtp:100 profile-id=1
a=sendrecv
a=label:2
a=rtcp-rsize
a=ssrc:2281951738 cname:sip:alice@127.0.0.1
a=framerate:25.00
a=rtcp-fb:* nack pli
a=content:main
";

/// baresip 1.0.0 with `mediaenc=srtp-mandf` and only `vp8.so` (video m-line of the captured INVITE).
const BARESIP_SAVPF_OFFER: &str = "v=0
o=- 1 2 IN IP4 192.0.2.2
s=-
c=IN IP4 192.0.2.2
t=0 0
a=tool:baresip 1.0.0
m=audio 46002 RTP/SAVPF 96 0 8 101
a=rtpmap:96 opus/48000/2
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:0vTUsRbW2J2pcLBQV5HwmvKc9nmcSRmXQaXyZaBE
a=sendrecv
m=video 46004 RTP/SAVPF 96
a=rtpmap:96 VP8/90000
a=fmtp:96 max-fs=3600
a=sendrecv
a=label:2
a=rtcp-rsize
a=ssrc:3475099852 cname:sip:alice@127.0.0.1
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:GS1zs9m3v/tMXoF2ZCJkzqGtLj6z1N+cLVMZin7p
a=framerate:25.00
a=rtcp-fb:* nack pli
a=content:main
";

/// baresip 1.0.0 with `mediaenc=dtls_srtp` (captured): fingerprint and setup at session level.
const BARESIP_DTLS_OFFER: &str = "v=0
o=- 3539969035 1641616551 IN IP4 192.0.2.2
s=-
c=IN IP4 192.0.2.2
t=0 0
a=tool:baresip 1.0.0
a=setup:actpass
a=fingerprint:SHA-256 56:AF:56:D2:17:E3:23:9E:7E:7F:E0:67:5C:1F:CF:79:61:A4:29:61:65:0A:8B:16:E3:E5:43:6C:C3:F5:A6:0D
m=audio 46004 UDP/TLS/RTP/SAVPF 96 0 8 101
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
a=label:1
a=rtcp-rsize
a=ssrc:208492288 cname:sip:alice@127.0.0.1
a=minptime:20
a=ptime:20
m=video 46006 UDP/TLS/RTP/SAVPF 96
a=rtpmap:96 VP8/90000
a=fmtp:96 max-fs=3600
a=sendrecv
a=label:2
a=rtcp-rsize
a=ssrc:3870498297 cname:sip:alice@127.0.0.1
a=framerate:25.00
a=rtcp-fb:* nack pli
a=content:main
";

/// Our offer as sent to baresip (audio opus + video VP8/H264 on RTP/AVP, everything `video_offer` writes).
const OUR_OFFER_TO_BARESIP: &str = "v=0
o=- 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 47000 RTP/AVP 111
a=rtpmap:111 opus/48000/2
a=sendrecv
m=video 47002 RTP/AVP 96 97
b=AS:2000
b=TIAS:2000000
a=rtpmap:96 VP8/90000
a=fmtp:96 max-fs=3600;max-fr=30
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtcp-fb:96 ccm fir
a=rtcp-fb:96 goog-remb
a=imageattr:96 recv [x=[16:1280],y=[16:720]]
a=rtpmap:97 H264/90000
a=fmtp:97 profile-level-id=42e01f;packetization-mode=1
a=rtcp-fb:97 nack
a=rtcp-fb:97 nack pli
a=rtcp-fb:97 ccm fir
a=rtcp-fb:97 goog-remb
a=imageattr:97 recv [x=[16:1280],y=[16:720]]
a=framerate:30
a=rtcp-mux
a=sendrecv
";

/// baresip 1.0.0's answer (auto-answer) to [`OUR_OFFER_TO_BARESIP`] (captured 200 OK body).
const BARESIP_ANSWER: &str = "v=0
o=- 2543178514 1838477667 IN IP4 192.0.2.2
s=-
c=IN IP4 192.0.2.2
t=0 0
a=tool:baresip 1.0.0
m=audio 46006 RTP/AVP 111
a=rtpmap:111 opus/48000/2
a=fmtp:111 stereo=1;sprop-stereo=1
a=sendrecv
a=label:1
a=ssrc:815599851 cname:sip:alice@127.0.0.1:45061
a=minptime:20
a=ptime:20
m=video 46004 RTP/AVP 96 97
a=rtpmap:96 VP8/90000
a=fmtp:96 max-fs=3600
a=rtpmap:97 H264/90000
a=fmtp:97 packetization-mode=1;profile-level-id=42e01f
a=sendrecv
a=label:2
a=ssrc:1124319172 cname:sip:alice@127.0.0.1:45061
a=framerate:25.00
a=rtcp-fb:* nack pli
a=content:main
";

/// baresip 1.0.0 (no SRTP) rejecting the same offer sent as `RTP/AVPF` (captured).
const BARESIP_AVPF_REJECT: &str = "v=0
o=- 2543178514 1838477667 IN IP4 192.0.2.2
s=-
c=IN IP4 192.0.2.2
t=0 0
a=tool:baresip 1.0.0
m=audio 46006 RTP/AVP 111
a=rtpmap:111 opus/48000/2
a=sendrecv
m=video 0 RTP/AVPF 0
";

/// linphonec 5.1.65 calling with video (`-C`, StaticImage camera, msopenh264 installed; captured INVITE body).
const LINPHONE_OFFER: &str = "v=0
o=linphone 2670 326 IN IP4 192.0.2.2
s=Talk
c=IN IP4 192.0.2.2
t=0 0
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
m=audio 46100 RTP/AVP 96 97 98 0 8 18 99 100 101
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:97 speex/16000
a=fmtp:97 vbr=on
a=rtpmap:98 speex/8000
a=fmtp:98 vbr=on
a=fmtp:18 annexb=yes
a=rtpmap:99 telephone-event/48000
a=rtpmap:100 telephone-event/16000
a=rtpmap:101 telephone-event/8000
a=rtcp-fb:* trr-int 5000
a=rtcp-fb:* ccm tmmbr
m=video 46102 RTP/AVP 96 97
a=rtpmap:96 VP8/90000
a=rtpmap:97 H264/90000
a=fmtp:97 profile-level-id=42801F
a=rtcp-fb:* trr-int 5000
a=rtcp-fb:* ccm tmmbr
a=rtcp-fb:96 nack pli
a=rtcp-fb:96 nack sli
a=rtcp-fb:96 ack rpsi
a=rtcp-fb:96 ccm fir
a=rtcp-fb:97 nack pli
a=rtcp-fb:97 ccm fir
";

/// Linphone with AVPF and H.264 in packetization-mode 1 first (its conventions: uppercase
/// profile-level-id, `rtcp-fb` per payload type, `trr-int`/`tmmbr` wildcards, session `c=`).
const LINPHONE_H264_OFFER: &str = "v=0
o=linphone 1543 2876 IN IP4 10.0.0.7
s=Talk
c=IN IP4 10.0.0.7
t=0 0
m=audio 7078 RTP/AVPF 96 0 8 101
a=rtpmap:96 opus/48000/2
a=rtpmap:101 telephone-event/8000
m=video 9078 RTP/AVPF 99 96
a=rtpmap:99 H264/90000
a=fmtp:99 profile-level-id=42801F;packetization-mode=1
a=rtpmap:96 VP8/90000
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:* ccm tmmbr
a=rtcp-fb:99 nack pli
a=rtcp-fb:99 ccm fir
a=rtcp-fb:96 nack pli
a=rtcp-fb:96 nack sli
a=rtcp-fb:96 ack rpsi
a=rtcp-fb:96 ccm fir
";

/// A Chrome-style WebRTC offer: DTLS, ICE (c=0.0.0.0 port 9), rtx, many H.264 profiles, REMB.
const CHROME_OFFER: &str = "v=0
o=- 4611731400430051336 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=extmap-allow-mixed
a=msid-semantic: WMS
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:0xsR
a=ice-pwd:vXzwyFyFyHqxTBn8pJ1IbCV1
a=ice-options:trickle
a=fingerprint:sha-256 3B:6A:5E:1F:8B:52:6B:40:04:AE:0F:61:3A:8B:2C:DC:8A:44:11:C8:37:8E:6A:46:4A:05:87:59:0B:0F:A6:9F
a=setup:actpass
a=mid:0
a=sendrecv
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 104 105 106 107 108 109 127 125 39 40 45 46 98 99 100 101 112 113 116 117 118
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:0xsR
a=ice-pwd:vXzwyFyFyHqxTBn8pJ1IbCV1
a=ice-options:trickle
a=fingerprint:sha-256 3B:6A:5E:1F:8B:52:6B:40:04:AE:0F:61:3A:8B:2C:DC:8A:44:11:C8:37:8E:6A:46:4A:05:87:59:0B:0F:A6:9F
a=setup:actpass
a=mid:1
a=extmap:14 urn:ietf:params:rtp-hdrext:toffset
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=sendrecv
a=msid:- 7d2b1c4e-5a3f-4d7e-9b1a-2f6e8c0d4a91
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:96 VP8/90000
a=rtcp-fb:96 goog-remb
a=rtcp-fb:96 transport-cc
a=rtcp-fb:96 ccm fir
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=rtpmap:102 H264/90000
a=rtcp-fb:102 goog-remb
a=rtcp-fb:102 transport-cc
a=rtcp-fb:102 ccm fir
a=rtcp-fb:102 nack
a=rtcp-fb:102 nack pli
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f
a=rtpmap:103 rtx/90000
a=fmtp:103 apt=102
a=rtpmap:104 H264/90000
a=rtcp-fb:104 goog-remb
a=rtcp-fb:104 ccm fir
a=rtcp-fb:104 nack
a=rtcp-fb:104 nack pli
a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f
a=rtpmap:105 rtx/90000
a=fmtp:105 apt=104
a=rtpmap:106 H264/90000
a=rtcp-fb:106 goog-remb
a=rtcp-fb:106 transport-cc
a=rtcp-fb:106 ccm fir
a=rtcp-fb:106 nack
a=rtcp-fb:106 nack pli
a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
a=rtpmap:107 rtx/90000
a=fmtp:107 apt=106
a=rtpmap:108 H264/90000
a=rtcp-fb:108 goog-remb
a=rtcp-fb:108 ccm fir
a=rtcp-fb:108 nack
a=rtcp-fb:108 nack pli
a=fmtp:108 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f
a=rtpmap:109 rtx/90000
a=fmtp:109 apt=108
a=rtpmap:127 H264/90000
a=rtcp-fb:127 goog-remb
a=rtcp-fb:127 ccm fir
a=rtcp-fb:127 nack
a=rtcp-fb:127 nack pli
a=fmtp:127 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f
a=rtpmap:125 rtx/90000
a=fmtp:125 apt=127
a=rtpmap:39 H264/90000
a=fmtp:39 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640034
a=rtpmap:40 rtx/90000
a=fmtp:40 apt=39
a=rtpmap:45 AV1/90000
a=rtpmap:46 rtx/90000
a=fmtp:46 apt=45
a=rtpmap:98 VP9/90000
a=fmtp:98 profile-id=0
a=rtpmap:99 rtx/90000
a=fmtp:99 apt=98
a=rtpmap:100 VP9/90000
a=fmtp:100 profile-id=2
a=rtpmap:101 rtx/90000
a=fmtp:101 apt=100
a=rtpmap:112 H264/90000
a=fmtp:112 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f
a=rtpmap:113 rtx/90000
a=fmtp:113 apt=112
a=rtpmap:116 red/90000
a=rtpmap:117 rtx/90000
a=fmtp:117 apt=116
a=rtpmap:118 ulpfec/90000
a=ssrc-group:FID 2231627014 632943048
a=ssrc:2231627014 cname:4TOk42mSjXCkVIa6
a=ssrc:632943048 cname:4TOk42mSjXCkVIa6
";

fn parse(s: &str) -> SessionDescription {
    SessionDescription::parse(s).unwrap()
}

fn media(sdp: &SessionDescription) -> &MediaDescription {
    &sdp.media[video_index(sdp).unwrap()]
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ours(port: u16) -> VideoOfferParams {
    VideoOfferParams::new(default_video_codecs(), port)
}

fn h264_first(port: u16) -> VideoOfferParams {
    VideoOfferParams::new(vec![VideoCodec::h264(97), VideoCodec::vp8(96)], port)
}

fn lines(m: &MediaDescription) -> Vec<String> {
    m.to_string().lines().map(str::to_owned).collect()
}

/// Wraps an answer m-line into a full description (audio rejected) and parses it back.
fn reparse(m: &MediaDescription) -> MediaDescription {
    let text = format!(
        "v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\n{m}"
    );
    let sdp = SessionDescription::parse(&text).unwrap();
    assert_eq!(sdp.to_string(), text, "printing is stable");
    sdp.media[0].clone()
}

fn answer_in(
    offer: &SessionDescription,
    params: &VideoOfferParams,
) -> (MediaDescription, NegotiatedVideo) {
    answer_video_in(offer, video_index(offer).unwrap(), params)
        .unwrap()
        .unwrap()
}

#[test]
fn defaults() {
    let codecs = default_video_codecs();
    assert_eq!(codecs.len(), 2);
    assert_eq!(
        (codecs[0].kind_name.as_str(), codecs[0].payload_type),
        ("VP8", 96)
    );
    assert_eq!(codecs[0].fmtp, None);
    assert_eq!(
        (codecs[1].kind_name.as_str(), codecs[1].payload_type),
        ("H264", 97)
    );
    assert_eq!(
        codecs[1].fmtp.as_deref(),
        Some("profile-level-id=42e01f;packetization-mode=1")
    );
    // No clash with the audio payload types.
    for pt in [0, 8, 9, 101, 111] {
        assert!(codecs.iter().all(|c| c.payload_type != pt));
    }
    assert_eq!(
        VideoLimits::default(),
        VideoLimits {
            max_width: 1280,
            max_height: 720,
            max_fps: 30
        }
    );
    assert_eq!(VideoLimits::default().frame_macroblocks(), 3600);
}

#[test]
fn baresip_offer_answered_with_vp8() {
    let offer = parse(BARESIP_OFFER);
    assert_eq!(video_index(&offer), Some(1));
    let (m, n) = answer_in(&offer, &ours(40000));
    let send = n.send.clone().unwrap();
    assert_eq!(
        (
            send.kind_name.as_str(),
            send.payload_type,
            send.fmtp.as_deref()
        ),
        ("VP8", 96, Some("max-fs=3600"))
    );
    // VP8 under 96, H.264 under 98 (97 is packetization-mode 0).
    let recv: Vec<(&str, u8)> = n
        .recv
        .iter()
        .map(|c| (c.kind_name.as_str(), c.payload_type))
        .collect();
    assert_eq!(recv, [("VP8", 96), ("H264", 98)]);
    assert_eq!(n.remote_rtp, Some(addr("192.0.2.2:46000")));
    assert!(!n.rtcp_mux, "baresip did not offer rtcp-mux");
    assert_eq!(n.remote_rtcp, Some(addr("192.0.2.2:46001")));
    assert_eq!(n.direction, Direction::SendRecv);
    assert_eq!(n.remote_direction, Direction::SendRecv);
    assert_eq!(n.profile, TransportProfile::RtpAvp);
    assert_eq!(n.security, SecurityKind::Plain);
    // `a=rtcp-fb:* nack pli` is PLI only: no generic NACK, no FIR, no REMB.
    assert_eq!(
        n.feedback,
        VideoFeedback {
            pli: true,
            ..VideoFeedback::default()
        }
    );
    // max-fs=3600 and a=framerate:25.00.
    assert_eq!(n.peer_limits, VideoLimits::new(1280, 720, 25));
    assert_eq!(n.peer_max_bitrate_bps, None);

    let m = reparse(&m);
    assert_eq!(m.port, 40000);
    assert_eq!(m.protocol, "RTP/AVP");
    assert_eq!(m.formats, ["96", "98"]);
    let l = lines(&m);
    assert!(l.contains(&"a=rtpmap:96 VP8/90000".to_owned()), "{l:?}");
    assert!(
        l.contains(&"a=fmtp:96 max-fs=3600;max-fr=30".to_owned()),
        "{l:?}"
    );
    assert!(l.contains(&"a=rtpmap:98 H264/90000".to_owned()), "{l:?}");
    assert!(
        l.contains(&"a=fmtp:98 profile-level-id=42e01f;packetization-mode=1".to_owned()),
        "{l:?}"
    );
    let fb: Vec<&String> = l.iter().filter(|x| x.starts_with("a=rtcp-fb")).collect();
    assert_eq!(fb, ["a=rtcp-fb:96 nack pli", "a=rtcp-fb:98 nack pli"]);
    assert!(!m.has_attribute("rtcp-mux"));
    assert_eq!(m.direction(), Direction::SendRecv);
    // baresip offered no a=imageattr: none in the answer.
    assert!(!m.has_attribute("imageattr"));
    // Exactly the line baresip 1.0 accepted in a live call (it logged
    // `Set video encoder: VP8 (500000 bit/s, 30.00 fps)`, taking the rate from our a=framerate).
    let (ours_m, _) = answer_in(&offer, &ours(47002));
    assert_eq!(
        ours_m.to_string(),
        "m=video 47002 RTP/AVP 96 98\r\n\
         a=rtpmap:96 VP8/90000\r\n\
         a=fmtp:96 max-fs=3600;max-fr=30\r\n\
         a=rtcp-fb:96 nack pli\r\n\
         a=rtpmap:98 H264/90000\r\n\
         a=fmtp:98 profile-level-id=42e01f;packetization-mode=1\r\n\
         a=rtcp-fb:98 nack pli\r\n\
         a=framerate:30\r\n\
         a=sendrecv\r\n"
    );
}

#[test]
fn baresip_offer_answered_with_h264_packetization_mode_1() {
    let offer = parse(BARESIP_OFFER);
    let (m, n) = answer_in(&offer, &h264_first(40000));
    let send = n.send.unwrap();
    assert_eq!((send.kind_name.as_str(), send.payload_type), ("H264", 98));
    assert_eq!(
        send.fmtp.as_deref(),
        Some("packetization-mode=1;profile-level-id=42e01f")
    );
    assert_eq!(m.formats, ["98", "96"]);
    // Level 3.1 (3600 macroblocks, 108000 per second) and a=framerate:25.
    assert_eq!(n.peer_limits, VideoLimits::new(1280, 720, 25));
    // The same offer answered by H.264 only when the only H.264 is packetization-mode 0.
    let mut only_mode0 = offer.clone();
    let v = video_index(&only_mode0).unwrap();
    only_mode0.media[v]
        .formats
        .retain(|f| f != "98" && f != "96");
    let h264_only = VideoOfferParams::new(vec![VideoCodec::h264(97)], 40000);
    assert_eq!(answer_video_in(&only_mode0, v, &h264_only).unwrap(), None);
    let rejected = rejected_video(&only_mode0.media[v]);
    assert_eq!(rejected.port, 0);
    assert_eq!(rejected.protocol, "RTP/AVP");
    assert_eq!(rejected.formats, ["97", "34", "99", "100"]);
    assert!(rejected.attributes.is_empty());
}

#[test]
fn baresip_srtp_offer_needs_our_crypto() {
    let offer = parse(BARESIP_SAVPF_OFFER);
    let v = video_index(&offer).unwrap();
    let offered = offered_video_security(&offer, v).unwrap();
    assert_eq!(offered.profile, TransportProfile::RtpSavpf);
    assert_eq!(
        offered.crypto,
        ["1 AES_CM_128_HMAC_SHA1_80 inline:GS1zs9m3v/tMXoF2ZCJkzqGtLj6z1N+cLVMZin7p"]
    );
    // Plain does not fit RTP/SAVPF: answering without keys is an error, not a silent plain answer.
    assert!(!security_fits(&AnswerSecurity::Plain, &offered));
    let err = answer_video_in(&offer, v, &ours(40000)).unwrap_err();
    assert!(
        matches!(err, SdpError::Unacceptable { index: 1, .. }),
        "{err:?}"
    );
    assert_eq!(err.status_code(), 488);

    let sdes = AnswerSecurity::Sdes(
        "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz".to_owned(),
    );
    assert!(security_fits(&sdes, &offered));
    let mut params = ours(40000);
    params.attributes = security_attributes(&sdes);
    let (m, n) = answer_in(&offer, &params);
    assert_eq!(m.protocol, "RTP/SAVPF");
    assert_eq!(n.profile, TransportProfile::RtpSavpf);
    assert_eq!(n.security, SecurityKind::Sdes);
    assert_eq!(n.crypto, offered.crypto);
    assert_eq!(
        m.attribute("crypto"),
        Some("1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz")
    );
    // DTLS attributes do not fit SDES.
    let dtls = AnswerSecurity::Dtls {
        fingerprint: "sha-256 AA:BB".to_owned(),
        setup: "active".to_owned(),
    };
    assert!(!security_fits(&dtls, &offered));
}

#[test]
fn baresip_dtls_offer_with_session_level_fingerprint() {
    let offer = parse(BARESIP_DTLS_OFFER);
    let v = video_index(&offer).unwrap();
    let offered = offered_video_security(&offer, v).unwrap();
    assert_eq!(offered.profile, TransportProfile::UdpTlsRtpSavpf);
    assert!(offered.fingerprint.unwrap().starts_with("SHA-256 56:AF:56"));
    assert_eq!(offered.setup, Some("actpass"));
    let dtls = AnswerSecurity::Dtls {
        fingerprint: "sha-256 01:02:03".to_owned(),
        setup: tandem_proto::sdp::setup_answer(offered.setup).to_owned(),
    };
    assert!(security_fits(&dtls, &offered));
    let mut params = ours(40000);
    params.attributes = security_attributes(&dtls);
    let (m, n) = answer_in(&offer, &params);
    assert_eq!(n.security, SecurityKind::Dtls);
    assert_eq!(n.setup.as_deref(), Some("actpass"));
    assert!(
        n.fingerprint
            .as_deref()
            .unwrap()
            .starts_with("SHA-256 56:AF")
    );
    assert_eq!(m.attribute("fingerprint"), Some("sha-256 01:02:03"));
    assert_eq!(m.attribute("setup"), Some("active"));
    assert_eq!(m.protocol, "UDP/TLS/RTP/SAVPF");
    // The m-line alone does not show the session-level fingerprint: the DTLS answer does not fit.
    let err = answer_video(media(&offer), offer.connection.as_ref(), &params).unwrap_err();
    assert!(matches!(err, SdpError::Unacceptable { .. }), "{err:?}");
}

#[test]
fn our_offer_and_baresips_answer() {
    let mut params = ours(47002);
    params.max_recv_bitrate_bps = Some(2_000_000);
    let m = video_offer(&params);
    let built = lines(&m);
    let offer = parse(OUR_OFFER_TO_BARESIP);
    assert_eq!(
        built,
        lines(media(&offer)),
        "video_offer writes what was sent to baresip"
    );

    let answer = parse(BARESIP_ANSWER);
    let n = accept_video_answer_in(&offer, &answer, 1).unwrap().unwrap();
    let send = n.send.clone().unwrap();
    assert_eq!(
        (
            send.kind_name.as_str(),
            send.payload_type,
            send.fmtp.as_deref()
        ),
        ("VP8", 96, Some("max-fs=3600"))
    );
    let recv: Vec<(&str, u8)> = n
        .recv
        .iter()
        .map(|c| (c.kind_name.as_str(), c.payload_type))
        .collect();
    assert_eq!(recv, [("VP8", 96), ("H264", 97)]);
    assert_eq!(n.recv[0].fmtp.as_deref(), Some("max-fs=3600;max-fr=30"));
    assert_eq!(
        n.feedback,
        VideoFeedback {
            pli: true,
            ..VideoFeedback::default()
        }
    );
    assert!(!n.rtcp_mux);
    assert_eq!(n.remote_rtp, Some(addr("192.0.2.2:46004")));
    assert_eq!(n.remote_rtcp, Some(addr("192.0.2.2:46005")));
    assert_eq!(n.direction, Direction::SendRecv);
    assert_eq!(n.peer_limits, VideoLimits::new(1280, 720, 25));
    assert_eq!(n.security, SecurityKind::Plain);
    assert_eq!(n.profile, TransportProfile::RtpAvp);
    // The media-only form gives the same result with the session c= passed in.
    let same = accept_video_answer(media(&offer), media(&answer), answer.connection.as_ref())
        .unwrap()
        .unwrap();
    assert_eq!(same, n);
    // Without any c= the answer is unusable.
    let err = accept_video_answer(media(&offer), media(&answer), None).unwrap_err();
    assert!(matches!(err, SdpError::MissingConnection { .. }));
}

#[test]
fn baresip_rejects_avpf_video() {
    let mut offer = parse(OUR_OFFER_TO_BARESIP);
    offer.media[1].protocol = "RTP/AVPF".to_owned();
    let answer = parse(BARESIP_AVPF_REJECT);
    assert_eq!(accept_video_answer_in(&offer, &answer, 1).unwrap(), None);
    assert_eq!(
        accept_video_answer(&offer.media[1], &answer.media[1], None).unwrap(),
        None
    );
}

#[test]
fn linphone_offer_without_packetization_mode_gets_vp8() {
    let offer = parse(LINPHONE_OFFER);
    // H.264 first in our preference, but linphone's H.264 is packetization-mode 0 (absent).
    let (m, n) = answer_in(&offer, &h264_first(40000));
    assert_eq!(m.formats, ["96"]);
    let send = n.send.unwrap();
    assert_eq!(
        (send.kind_name.as_str(), send.payload_type, send.fmtp),
        ("VP8", 96, None)
    );
    // PLI and FIR for 96; `nack sli`, `ack rpsi`, `trr-int`, `tmmbr` are not ours.
    assert_eq!(
        n.feedback,
        VideoFeedback {
            pli: true,
            fir: true,
            ..VideoFeedback::default()
        }
    );
    let fb: Vec<String> = lines(&m)
        .into_iter()
        .filter(|l| l.starts_with("a=rtcp-fb"))
        .collect();
    assert_eq!(fb, ["a=rtcp-fb:96 nack pli", "a=rtcp-fb:96 ccm fir"]);
    assert_eq!(n.peer_limits, VideoLimits::default());
    assert_eq!(n.remote_rtp, Some(addr("192.0.2.2:46102")));
    // H.264 only: rejected.
    let h264_only = VideoOfferParams::new(vec![VideoCodec::h264(97)], 40000);
    assert_eq!(answer_video_in(&offer, 1, &h264_only).unwrap(), None);
    // Exactly the line linphonec 5.1 accepted in a live call ("Media streams established ... (video)").
    let (m, _) = answer_in(&offer, &ours(47002));
    assert_eq!(
        m.to_string(),
        "m=video 47002 RTP/AVP 96\r\n\
         a=rtpmap:96 VP8/90000\r\n\
         a=fmtp:96 max-fs=3600;max-fr=30\r\n\
         a=rtcp-fb:96 nack pli\r\n\
         a=rtcp-fb:96 ccm fir\r\n\
         a=framerate:30\r\n\
         a=sendrecv\r\n"
    );
}

#[test]
fn linphone_h264_offer() {
    let offer = parse(LINPHONE_H264_OFFER);
    let (m, n) = answer_in(&offer, &h264_first(40000));
    assert_eq!(m.protocol, "RTP/AVPF");
    assert_eq!(m.formats, ["99", "96"]);
    let l = lines(&m);
    // Linphone's profile (baseline, constraint_set0) at the common level 3.1.
    assert!(
        l.contains(&"a=fmtp:99 profile-level-id=42801f;packetization-mode=1".to_owned()),
        "{l:?}"
    );
    let send = n.send.unwrap();
    assert_eq!((send.kind_name.as_str(), send.payload_type), ("H264", 99));
    assert_eq!(n.peer_limits, VideoLimits::new(1280, 720, 30));
    assert_eq!(
        n.feedback,
        VideoFeedback {
            pli: true,
            fir: true,
            ..VideoFeedback::default()
        }
    );
    assert_eq!(n.remote_rtp, Some(addr("10.0.0.7:9078")));
    assert_eq!(n.remote_rtcp, Some(addr("10.0.0.7:9079")));
    assert_eq!(n.profile, TransportProfile::RtpAvpf);
    // A lower level in the offer: we answer that level and send within it (level 3.0: 1620 MBs, 40500 MB/s).
    let lower = parse(&LINPHONE_H264_OFFER.replace("42801F", "42801E"));
    let (m, n) = answer_in(&lower, &h264_first(40000));
    assert!(
        lines(&m).contains(&"a=fmtp:99 profile-level-id=42801e;packetization-mode=1".to_owned())
    );
    assert_eq!(n.peer_limits, VideoLimits::new(848, 480, 25));
    assert!(n.peer_limits.frame_macroblocks() <= 1620);
    // A higher level offered: we answer our own level 3.1 (no level asymmetry).
    let higher = parse(&LINPHONE_H264_OFFER.replace("42801F", "428028"));
    let (m, n) = answer_in(&higher, &h264_first(40000));
    assert!(
        lines(&m).contains(&"a=fmtp:99 profile-level-id=42801f;packetization-mode=1".to_owned())
    );
    assert_eq!(n.peer_limits, VideoLimits::new(1280, 720, 30));
}

#[test]
fn chrome_offer_many_codecs() {
    let offer = parse(CHROME_OFFER);
    let v = video_index(&offer).unwrap();
    assert_eq!(v, 1);
    let offered = offered_video_security(&offer, v).unwrap();
    assert_eq!(offered.profile, TransportProfile::UdpTlsRtpSavpf);
    let dtls = AnswerSecurity::Dtls {
        fingerprint: "sha-256 01:02".to_owned(),
        setup: "active".to_owned(),
    };
    let mut params = h264_first(40000);
    params.attributes = security_attributes(&dtls);
    params.attributes.push(Attribute::new("ice-ufrag", "abcd"));
    params
        .attributes
        .push(Attribute::new("ice-pwd", "0123456789abcdefghijklmn"));
    let (m, n) = answer_in(&offer, &params);
    // H.264: the constrained-baseline mode-1 format (106), not baseline 102, mode-0 104/108,
    // main 127 or high 39/112; then VP8 on 96. No rtx/red/ulpfec/VP9/AV1.
    assert_eq!(m.formats, ["106", "96"]);
    let send = n.send.clone().unwrap();
    assert_eq!((send.kind_name.as_str(), send.payload_type), ("H264", 106));
    let l = lines(&m);
    assert!(
        l.contains(&"a=fmtp:106 profile-level-id=42e01f;packetization-mode=1".to_owned()),
        "{l:?}"
    );
    assert_eq!(n.feedback, VideoFeedback::ALL);
    assert!(n.rtcp_mux);
    assert_eq!(n.security, SecurityKind::Dtls);
    assert_eq!(n.setup.as_deref(), Some("actpass"));
    // ICE: c=0.0.0.0 port 9 is "no candidate yet", not hold: we still send, the address comes from ICE.
    assert_eq!(n.remote_rtp, None);
    assert_eq!(n.direction, Direction::SendRecv);
    assert!(m.has_attribute("ice-ufrag"));
    assert!(m.has_attribute("rtcp-mux"));
    assert_eq!(m.attribute("setup"), Some("active"));
    // Level asymmetry on both sides: our level in the answer, theirs bounds what we send.
    let mut asym = h264_first(40000);
    asym.codecs[0].fmtp =
        Some("profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1".to_owned());
    asym.attributes = params.attributes.clone();
    let high = parse(&CHROME_OFFER.replace(
        "packetization-mode=1;profile-level-id=42e01f",
        "packetization-mode=1;profile-level-id=42e034",
    ));
    let (m, n) = answer_in(&high, &asym);
    assert!(
        lines(&m).contains(
            &"a=fmtp:106 profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1"
                .to_owned()
        )
    );
    // Level 5.2 allows 4096x2304: nothing else limits the size (no imageattr); the rate stays at the default 30.
    assert_eq!(n.peer_limits, VideoLimits::new(4096, 2304, 30));
    // VP8 preferred: 96 with its REMB/NACK/PLI/FIR.
    let mut vp8 = ours(40000);
    vp8.attributes = params.attributes.clone();
    let (m, n) = answer_in(&offer, &vp8);
    assert_eq!(m.formats, ["96", "106"]);
    assert_eq!(n.send.unwrap().payload_type, 96);
    assert_eq!(n.feedback, VideoFeedback::ALL);
}

#[test]
fn missing_rtpmap_for_dynamic_payload_type() {
    let text = "v=0
o=- 1 1 IN IP4 203.0.113.5
s=-
c=IN IP4 203.0.113.5
t=0 0
m=video 5004 RTP/AVP 96 97 31
a=rtpmap:97 H264/90000
a=fmtp:97 packetization-mode=1;profile-level-id=42c01e
";
    let offer = parse(text);
    // 96 has no rtpmap: unknown, even though we prefer VP8 on 96; 31 is static H.261.
    let (m, n) = answer_in(&offer, &ours(6000));
    assert_eq!(m.formats, ["97"]);
    assert_eq!(n.send.unwrap().payload_type, 97);
    // 42c01e is constrained baseline level 3.0.
    assert!(
        lines(&m).contains(&"a=fmtp:97 profile-level-id=42c01e;packetization-mode=1".to_owned())
    );
    // Nothing mapped at all: rejected.
    let bare = parse(&text.replace("a=rtpmap:97 H264/90000\n", ""));
    assert_eq!(answer_video_in(&bare, 0, &ours(6000)).unwrap(), None);
    // VP8 at a wrong clock rate is not VP8.
    let clock = parse(&text.replace("a=rtpmap:97 H264/90000", "a=rtpmap:97 VP8/8000"));
    assert_eq!(answer_video_in(&clock, 0, &ours(6000)).unwrap(), None);
}

#[test]
fn port_zero_and_mismatches() {
    let offer = parse(OUR_OFFER_TO_BARESIP);
    let ours_m = media(&offer).clone();
    // Answered with port 0: rejected.
    let mut answer = media(&parse(BARESIP_ANSWER)).clone();
    answer.port = 0;
    assert_eq!(accept_video_answer(&ours_m, &answer, None).unwrap(), None);
    assert_eq!(
        accept_video_answer(&ours_m, &rejected_video(&ours_m), None).unwrap(),
        None
    );
    // We disabled it (port 0) but the answer accepts it.
    let mut disabled = ours_m.clone();
    disabled.port = 0;
    let conn = Connection::from_ip("192.0.2.2".parse().unwrap());
    let good = media(&parse(BARESIP_ANSWER)).clone();
    assert!(matches!(
        accept_video_answer(&disabled, &good, Some(&conn)),
        Err(SdpError::MediaMismatch { .. })
    ));
    // An offered port 0 is not answered.
    assert_eq!(
        answer_video(&disabled, Some(&conn), &ours(1)).unwrap(),
        None
    );
    // Not video.
    let audio = &offer.media[0];
    assert_eq!(answer_video(audio, Some(&conn), &ours(1)).unwrap(), None);
    assert!(matches!(
        accept_video_answer(&ours_m, audio, Some(&conn)),
        Err(SdpError::MediaMismatch { .. })
    ));
    // The answer changed the profile.
    let mut avpf = good.clone();
    avpf.protocol = "RTP/AVPF".to_owned();
    assert!(matches!(
        accept_video_answer(&ours_m, &avpf, Some(&conn)),
        Err(SdpError::Unacceptable { .. })
    ));
    // The answer has no codec we offered.
    let mut other = good.clone();
    other.formats = vec!["34".to_owned()];
    assert!(matches!(
        accept_video_answer(&ours_m, &other, Some(&conn)),
        Err(SdpError::MediaMismatch { .. })
    ));
    // The answer picked H.264 in packetization-mode 0: not usable.
    let mut mode0 = good.clone();
    mode0.formats = vec!["97".to_owned()];
    for a in &mut mode0.attributes {
        if a.value.as_deref() == Some("97 packetization-mode=1;profile-level-id=42e01f") {
            a.value = Some("97 packetization-mode=0;profile-level-id=42e01f".to_owned());
        }
    }
    assert!(matches!(
        accept_video_answer(&ours_m, &mode0, Some(&conn)),
        Err(SdpError::MediaMismatch { .. })
    ));
    // Rejecting an offer without an RTP profile.
    let mut odd = ours_m.clone();
    odd.protocol = "TCP/MSRP".to_owned();
    assert_eq!(answer_video(&odd, Some(&conn), &ours(1)).unwrap(), None);
    // No c= anywhere for an active offered stream.
    assert!(matches!(
        answer_video(&ours_m, None, &ours(1)),
        Err(SdpError::MissingConnection { .. })
    ));
    // Index out of range.
    assert_eq!(answer_video_in(&offer, 7, &ours(1)).unwrap(), None);
    assert!(matches!(
        accept_video_answer_in(&offer, &parse(BARESIP_ANSWER), 7),
        Err(SdpError::MediaCountMismatch { .. })
    ));
}

fn with_direction(text: &str, dir: &str) -> SessionDescription {
    parse(
        &text
            .replace(
                "m=video 46000 RTP/AVP 96 97 98 34 99 100\na=rtpmap",
                &format!("m=video 46000 RTP/AVP 96 97 98 34 99 100\na={dir}\na=rtpmap"),
            )
            .replace("a=sendrecv\na=label:2", "a=label:2"),
    )
}

#[test]
fn hold_directions_when_answering() {
    let cases = [
        ("sendonly", Direction::SendRecv, Direction::RecvOnly),
        ("recvonly", Direction::SendRecv, Direction::SendOnly),
        ("inactive", Direction::SendRecv, Direction::Inactive),
        ("sendrecv", Direction::RecvOnly, Direction::RecvOnly),
        ("sendrecv", Direction::SendOnly, Direction::SendOnly),
        ("sendonly", Direction::SendOnly, Direction::Inactive),
    ];
    for (offered, mine, expect) in cases {
        let offer = with_direction(BARESIP_OFFER, offered);
        assert_eq!(media(&offer).direction().as_str(), offered);
        let mut params = ours(40000);
        params.direction = mine;
        let (m, n) = answer_in(&offer, &params);
        assert_eq!(n.direction, expect, "{offered} answered by {mine}");
        assert_eq!(m.direction(), expect);
        assert_eq!(n.send.is_some(), expect.sends(), "{offered} / {mine}");
        assert!(!n.recv.is_empty());
    }
    // Legacy hold: c=0.0.0.0 without ICE means the peer does not receive.
    let legacy = parse(&BARESIP_OFFER.replace("c=IN IP4 192.0.2.2", "c=IN IP4 0.0.0.0"));
    let (m, n) = answer_in(&legacy, &ours(40000));
    assert_eq!(n.remote_rtp, None);
    assert_eq!(n.remote_direction, Direction::SendOnly);
    assert_eq!(n.direction, Direction::RecvOnly);
    assert_eq!(n.send, None);
    assert_eq!(m.direction(), Direction::RecvOnly);
    // Session-level direction applies to the m-line without its own.
    let session_hold = parse(
        &BARESIP_OFFER
            .replace("a=tool:baresip 1.0.0", "a=tool:baresip 1.0.0\na=sendonly")
            .replace("a=sendrecv\na=label:2", "a=label:2"),
    );
    let (_, n) = answer_in(&session_hold, &ours(40000));
    assert_eq!(n.direction, Direction::RecvOnly);
}

#[test]
fn hold_directions_when_offering() {
    let conn = Connection::from_ip("192.0.2.2".parse().unwrap());
    let mut params = ours(47002);
    params.direction = Direction::SendRecv.hold();
    let offer = video_offer(&params);
    assert_eq!(offer.direction(), Direction::SendOnly);
    let mut answer = media(&parse(BARESIP_ANSWER)).clone();
    answer.attributes.retain(|a| a.name != "sendrecv");
    answer.attributes.push(Attribute::flag("recvonly"));
    let n = accept_video_answer(&offer, &answer, Some(&conn))
        .unwrap()
        .unwrap();
    assert_eq!(n.direction, Direction::SendOnly);
    assert!(n.send.is_some());
    // The peer answered inactive.
    answer.attributes.retain(|a| a.name != "recvonly");
    answer.attributes.push(Attribute::flag("inactive"));
    let n = accept_video_answer(&offer, &answer, Some(&conn))
        .unwrap()
        .unwrap();
    assert_eq!(n.direction, Direction::Inactive);
    assert_eq!(n.send, None);
    // We hold with inactive; the peer's sendrecv answer cannot widen it.
    params.direction = Direction::Inactive;
    let offer = video_offer(&params);
    let sendrecv = media(&parse(BARESIP_ANSWER)).clone();
    let n = accept_video_answer(&offer, &sendrecv, Some(&conn))
        .unwrap()
        .unwrap();
    assert_eq!(n.direction, Direction::Inactive);
}

#[test]
fn offer_answer_between_two_tandems() {
    // Alice offers with SDES on RTP/SAVPF, small receive limits and a bitrate cap.
    let mut alice = ours(30000);
    alice.profile = TransportProfile::RtpSavpf;
    alice.recv_limits = VideoLimits::new(640, 480, 15);
    alice.max_recv_bitrate_bps = Some(300_000);
    alice.rtcp_port = Some(30001);
    alice.attributes = vec![Attribute::new(
        "crypto",
        "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
    )];
    let offer_m = video_offer(&alice);
    let offer = parse(&format!(
        "v=0\r\no=- 5 5 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\n{offer_m}"
    ));
    let l = lines(media(&offer));
    assert_eq!(l[0], "m=video 30000 RTP/SAVPF 96 97");
    assert!(l.contains(&"b=AS:300".to_owned()));
    assert!(l.contains(&"b=TIAS:300000".to_owned()));
    assert!(
        l.contains(&"a=fmtp:96 max-fs=1200;max-fr=15".to_owned()),
        "{l:?}"
    );
    assert!(l.contains(&"a=imageattr:97 recv [x=[16:640],y=[16:480]]".to_owned()));
    assert!(l.contains(&"a=framerate:15".to_owned()));
    assert!(l.contains(&"a=rtcp:30001".to_owned()));
    assert!(l.contains(&"a=rtcp-mux".to_owned()));

    // Bob answers.
    let offered = offered_video_security(&offer, 0).unwrap();
    let sdes = AnswerSecurity::Sdes(
        "1 AES_CM_128_HMAC_SHA1_80 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj".to_owned(),
    );
    assert!(security_fits(&sdes, &offered));
    let mut bob = ours(31000);
    bob.attributes = security_attributes(&sdes);
    bob.feedback = VideoFeedback {
        remb: false,
        ..VideoFeedback::ALL
    };
    let (answer_m, bob_n) = answer_in(&offer, &bob);
    // Bob sends VP8 to Alice within her 640x480@15 (imageattr box with max-fs=1200 and max-fr=15).
    assert_eq!(bob_n.peer_limits, VideoLimits::new(640, 480, 15));
    assert_eq!(bob_n.peer_max_bitrate_bps, Some(300_000));
    assert_eq!(bob_n.security, SecurityKind::Sdes);
    assert!(bob_n.rtcp_mux);
    assert_eq!(bob_n.remote_rtcp, Some(addr("198.51.100.1:30000")));
    assert_eq!(
        bob_n.feedback,
        VideoFeedback {
            remb: false,
            ..VideoFeedback::ALL
        }
    );
    let answer_m = reparse(&answer_m);
    assert!(
        !answer_m.has_attribute("rtcp"),
        "muxed answers carry no a=rtcp"
    );

    // Alice accepts.
    let conn = Connection::from_ip("198.51.100.1".parse().unwrap());
    let alice_n = accept_video_answer(media(&offer), &answer_m, Some(&conn))
        .unwrap()
        .unwrap();
    assert_eq!(alice_n.send.as_ref().unwrap().payload_type, 96);
    assert_eq!(alice_n.security, SecurityKind::Sdes);
    assert_eq!(alice_n.crypto.len(), 1);
    assert_eq!(alice_n.feedback, bob_n.feedback);
    assert_eq!(alice_n.peer_limits, VideoLimits::default());
    assert!(alice_n.rtcp_mux);
    assert_eq!(alice_n.remote_rtp, Some(addr("198.51.100.1:31000")));
    // The payload types each side receives are the ones the other sends.
    assert!(
        alice_n
            .recv
            .iter()
            .any(|c| c.payload_type == bob_n.send.as_ref().unwrap().payload_type)
    );
    assert!(
        bob_n
            .recv
            .iter()
            .any(|c| c.payload_type == alice_n.send.as_ref().unwrap().payload_type)
    );
    // SAVPF answered without a=crypto is refused.
    let mut bare = answer_m.clone();
    bare.attributes.retain(|a| a.name != "crypto");
    assert!(matches!(
        accept_video_answer(media(&offer), &bare, Some(&conn)),
        Err(SdpError::Unacceptable { .. })
    ));
}

#[test]
fn answer_payload_type_renumbered() {
    // A B2BUA renumbered VP8 to 100 in the answer: we send 100 and accept both 96 and 100.
    let offer = parse(OUR_OFFER_TO_BARESIP);
    let text = BARESIP_ANSWER
        .replace("m=video 46004 RTP/AVP 96 97", "m=video 46004 RTP/AVP 100")
        .replace(
            "a=rtpmap:96 VP8/90000\na=fmtp:96 max-fs=3600",
            "a=rtpmap:100 VP8/90000\na=fmtp:100 max-fs=1200",
        )
        .replace(
            "a=rtpmap:97 H264/90000\na=fmtp:97 packetization-mode=1;profile-level-id=42e01f\n",
            "",
        );
    let answer = parse(&text);
    let n = accept_video_answer_in(&offer, &answer, 1).unwrap().unwrap();
    let send = n.send.unwrap();
    assert_eq!(
        (send.payload_type, send.fmtp.as_deref()),
        (100, Some("max-fs=1200"))
    );
    let recv: Vec<u8> = n.recv.iter().map(|c| c.payload_type).collect();
    assert_eq!(recv, [96, 100]);
    // max-fs=1200 and a=framerate:25.
    assert_eq!(n.peer_limits, VideoLimits::new(736, 416, 25));
    // Renumbered onto our H.264 number: 97 is not accepted for VP8 as well.
    let clash = parse(
        &text
            .replace("RTP/AVP 100", "RTP/AVP 97")
            .replace(":100 ", ":97 "),
    );
    let n = accept_video_answer_in(&offer, &clash, 1).unwrap().unwrap();
    let recv: Vec<u8> = n.recv.iter().map(|c| c.payload_type).collect();
    assert_eq!(recv, [96]);
    assert_eq!(n.send.unwrap().payload_type, 97);
}

#[test]
fn absurd_limits_are_clamped() {
    let text = |fmtp: &str, extra: &str| {
        format!(
            "v=0\no=- 1 1 IN IP4 203.0.113.5\ns=-\nc=IN IP4 203.0.113.5\nt=0 0\n\
             m=video 5004 RTP/AVP 96\na=rtpmap:96 VP8/90000\na=fmtp:96 {fmtp}\n{extra}"
        )
    };
    let limits = |fmtp: &str, extra: &str| {
        let offer = parse(&text(fmtp, extra));
        answer_in(&offer, &ours(1)).1.peer_limits
    };
    let huge = "99999999999999999999999999999999999999";
    assert_eq!(
        limits(&format!("max-fs={huge};max-fr={huge}"), ""),
        VideoLimits::new(4096, 2304, 60)
    );
    assert_eq!(
        limits(
            &format!("max-fs={huge}"),
            &format!("a=imageattr:96 recv [x=[1:{huge}],y={huge}]\n")
        ),
        VideoLimits::new(4096, 2304, 30)
    );
    // 0, negative and garbage values are ignored.
    assert_eq!(limits("max-fs=0;max-fr=0", ""), VideoLimits::default());
    assert_eq!(
        limits("max-fs=-5;max-fr=abc", "a=framerate:NaN\n"),
        VideoLimits::default()
    );
    assert_eq!(
        limits("max-fs=3600", "a=framerate:inf\n"),
        VideoLimits::default()
    );
    assert_eq!(
        limits("max-fs=3600", "a=framerate:1e308\n"),
        VideoLimits::new(1280, 720, 60)
    );
    // Tiny: one macroblock at 1 fps.
    assert_eq!(limits("max-fs=1;max-fr=1", ""), VideoLimits::new(16, 16, 1));
    // A thin imageattr strip is bounded by sqrt(8 * max-fs) macroblocks per side.
    assert_eq!(
        limits("max-fs=3600", "a=imageattr:96 recv [x=4096,y=16]\n"),
        VideoLimits::new(2704, 16, 30)
    );
    // Malformed imageattr sets are ignored, valid ones used (largest area wins).
    assert_eq!(
        limits(
            "max-fs=8160",
            "a=imageattr:* recv [x=[5:1],y=3] [x=[320,640,1920],y=[240,480,1080],q=0.5] [x=800,y=600]\n"
        ),
        VideoLimits::new(1920, 1080, 30)
    );
    // A specific payload type line wins over `*`; `*` sets mean "anything".
    assert_eq!(
        limits(
            "max-fs=3600",
            "a=imageattr:* recv [x=320,y=240]\na=imageattr:96 send * recv [x=[160:16:640],y=[120:16:360]]\n"
        ),
        VideoLimits::new(640, 360, 30)
    );
    assert_eq!(
        limits("max-fs=3600", "a=imageattr:96 recv *\n"),
        VideoLimits::default()
    );
    // Only a send set: no constraint on what we send.
    assert_eq!(
        limits("max-fs=3600", "a=imageattr:96 send [x=320,y=240]\n"),
        VideoLimits::default()
    );
    // A 4:3 imageattr box shrunk to the area of max-fs keeps its aspect.
    assert_eq!(
        limits("max-fs=300", "a=imageattr:96 recv [x=1280,y=960]\n"),
        VideoLimits::new(320, 240, 30)
    );
    // Thousands of sets in one line: bounded, no panic.
    let many: String = (1..=250).map(|i| format!(" [x={i},y={i}]")).collect();
    let l = limits("max-fs=3600", &format!("a=imageattr:96 recv{many}\n"));
    assert!(l.max_width <= 4096 && l.max_height <= 2304);
    // H.264: an absurd level and absurd max-fs/max-mbps.
    let h264 = |fmtp: &str| {
        let offer = parse(&text(fmtp, "").replace("VP8/90000", "H264/90000"));
        let params = VideoOfferParams::new(vec![VideoCodec::h264(96)], 1);
        answer_in(&offer, &params).1.peer_limits
    };
    assert_eq!(
        h264(&format!(
            "packetization-mode=1;profile-level-id=42e0ff;max-fs={huge};max-mbps={huge}"
        )),
        VideoLimits::new(1280, 720, 30),
        "our answered level 3.1 bounds the size without level asymmetry"
    );
    // Level 1: 99 macroblocks, the 16:9 box is 13x7 of them, 1485 per second gives 16 fps.
    assert_eq!(
        h264("packetization-mode=1;profile-level-id=42e00a"),
        VideoLimits::new(208, 112, 16)
    );
    // Level 1b written with constraint_set3.
    assert_eq!(
        h264("packetization-mode=1;profile-level-id=42f00b"),
        VideoLimits::new(208, 112, 16)
    );
    // packetization mode garbage is not mode 1.
    let offer = parse(
        &text("packetization-mode=1x;profile-level-id=42e01f", "")
            .replace("VP8/90000", "H264/90000"),
    );
    let params = VideoOfferParams::new(vec![VideoCodec::h264(96)], 1);
    assert_eq!(answer_video_in(&offer, 0, &params).unwrap(), None);
}

#[test]
fn h264_profile_level_id() {
    let p = |s: &str| H264ProfileLevel::parse(s).unwrap();
    assert_eq!(
        p("42e01f"),
        H264ProfileLevel {
            profile_idc: 0x42,
            profile_iop: 0xe0,
            level_idc: 0x1f
        }
    );
    assert_eq!(p("42E01F").to_string(), "42e01f");
    for cb in ["42e01f", "42c01e", "42401f", "4d8028", "58c01f"] {
        assert!(p(cb).is_constrained_baseline(), "{cb}");
        assert!(p(cb).accepts_constrained_baseline(), "{cb}");
    }
    for baseline in ["42801f", "42001f"] {
        assert!(!p(baseline).is_constrained_baseline(), "{baseline}");
        assert!(p(baseline).accepts_constrained_baseline(), "{baseline}");
    }
    for other in ["4d001f", "640c1f", "64001f", "f4001f", "58001f"] {
        assert!(!p(other).accepts_constrained_baseline(), "{other}");
    }
    for bad in ["", "42e01", "42e01f0", "zze01f", "42 01f"] {
        assert_eq!(H264ProfileLevel::parse(bad), None, "{bad:?}");
    }
    assert_eq!(p("42e01f").level_limits(), (108_000, 3_600));
    assert_eq!(p("42e00a").level_limits(), (1_485, 99));
    assert_eq!(p("42f00b").level_limits(), (1_485, 99));
    assert_eq!(p("42e00b").level_limits(), (3_000, 396));
    assert_eq!(p("640009").level_limits(), (1_485, 99));
    // Unknown level numbers round down to the level below.
    assert_eq!(p("42e01b").level_limits(), (20_250, 1_620));
    assert_eq!(p("42e0ff").level_limits(), (16_711_680, 139_264));
    assert_eq!(p("42e001").level_limits(), (1_485, 99));
}

#[test]
fn imageattr_parsing() {
    let a =
        ImageAttr::parse("97 send [x=800,y=640,sar=1.1,q=0.6] [x=480,y=320] recv [x=330,y=250]")
            .unwrap();
    assert_eq!(a.payload_type, Some(97));
    assert_eq!(
        a.send,
        Some(ImageAttrSets::Sets(vec![(800, 640), (480, 320)]))
    );
    assert_eq!(a.recv, Some(ImageAttrSets::Sets(vec![(330, 250)])));
    // RFC 6236 §3.2 examples.
    let a = ImageAttr::parse("97 send [x=[480:16:800],y=[320:16:640],par=[1.2-1.3],q=0.6] [x=[176:8:208],y=[144:8:176],par=[1.2-1.3]] recv *").unwrap();
    assert_eq!(
        a.send,
        Some(ImageAttrSets::Sets(vec![(800, 640), (208, 176)]))
    );
    assert_eq!(a.recv, Some(ImageAttrSets::Any));
    let a = ImageAttr::parse("* recv [x=[320,640],y=[240,480]]").unwrap();
    assert_eq!(a.payload_type, None);
    assert_eq!(a.recv, Some(ImageAttrSets::Sets(vec![(640, 480)])));
    for bad in [
        "",
        "97",
        "97 sideways [x=1,y=1]",
        "97 recv",
        "97 recv [x=1,y=1] recv [x=2,y=2]",
        "200 recv [x=1,y=1]",
        "97 recv [x=1,y=1",
        "97 recv [y=5]",
        "97 recv [x=0,y=5]",
        "97 recv ]]]",
    ] {
        assert_eq!(ImageAttr::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn macroblock_boxes() {
    assert_eq!(VideoLimits::box_for_macroblocks(0), None);
    assert_eq!(VideoLimits::box_for_macroblocks(1), Some((16, 16)));
    assert_eq!(VideoLimits::box_for_macroblocks(3600), Some((1280, 720)));
    assert_eq!(VideoLimits::box_for_macroblocks(1620), Some((848, 480)));
    assert_eq!(VideoLimits::box_for_macroblocks(36864), Some((4096, 2304)));
    assert_eq!(
        VideoLimits::box_for_macroblocks(u64::MAX),
        Some((4096, 2304))
    );
    for fs in [1u64, 2, 7, 99, 396, 1200, 1620, 3600, 8192, 22080, 36864] {
        let (w, h) = VideoLimits::box_for_macroblocks(fs).unwrap();
        assert!(u64::from(w / 16) * u64::from(h / 16) <= fs, "{fs}");
    }
    assert_eq!(VideoLimits::new(0, 0, 0), VideoLimits::new(16, 16, 1));
    assert_eq!(
        VideoLimits::new(u32::MAX, u32::MAX, u32::MAX),
        VideoLimits::MAX
    );
    assert_eq!(
        VideoLimits::new(640, 480, 30).intersect(VideoLimits::new(1280, 360, 15)),
        VideoLimits::new(640, 360, 15)
    );
}

#[test]
fn feedback_attributes() {
    let m = media(&parse(CHROME_OFFER)).clone();
    assert_eq!(VideoFeedback::from_media(&m, 96), VideoFeedback::ALL);
    assert_eq!(
        VideoFeedback::from_media(&m, 39),
        VideoFeedback::default(),
        "no rtcp-fb lines for 39"
    );
    assert!(VideoFeedback::default().is_empty());
    let attrs = VideoFeedback::ALL.attributes("*");
    let values: Vec<&str> = attrs.iter().filter_map(|a| a.value.as_deref()).collect();
    assert_eq!(values, ["* nack", "* nack pli", "* ccm fir", "* goog-remb"]);
    // Case-insensitive, extra whitespace.
    let mut odd = m.clone();
    odd.attributes = vec![
        Attribute::new("rtcp-fb", "*   NACK   PLI"),
        Attribute::new("RTCP-FB", "96 Nack"),
        Attribute::new("rtcp-fb", "97 ccm fir"),
        Attribute::new("rtcp-fb", ""),
        Attribute::new("rtcp-fb", "x nack"),
    ];
    assert_eq!(
        VideoFeedback::from_media(&odd, 96),
        VideoFeedback {
            nack: true,
            pli: true,
            ..VideoFeedback::default()
        }
    );
}

#[test]
fn offer_skips_unknown_and_duplicate_codecs() {
    let mut params = VideoOfferParams::new(
        vec![
            VideoCodec::vp8(96),
            VideoCodec {
                kind_name: "VP9".to_owned(),
                payload_type: 98,
                fmtp: None,
            },
            VideoCodec::h264(96),
            VideoCodec::h264(200),
            VideoCodec::h264(97),
        ],
        40000,
    );
    params.feedback = VideoFeedback::default();
    params.rtcp_mux = false;
    params.direction = Direction::RecvOnly;
    let m = video_offer(&params);
    assert_eq!(m.formats, ["96", "97"]);
    assert!(!m.has_attribute("rtcp-fb"));
    assert!(!m.has_attribute("rtcp-mux"));
    assert_eq!(m.direction(), Direction::RecvOnly);
    // A VP8 fmtp of our own is kept; ours are added unless it already limits.
    params.codecs = vec![VideoCodec {
        fmtp: Some("max-fs=1200".to_owned()),
        ..VideoCodec::vp8(96)
    }];
    assert_eq!(video_offer(&params).fmtp(96), Some("max-fs=1200"));
    params.codecs = vec![VideoCodec {
        fmtp: Some("foo=1".to_owned()),
        ..VideoCodec::vp8(96)
    }];
    assert_eq!(
        video_offer(&params).fmtp(96),
        Some("foo=1;max-fs=3600;max-fr=30")
    );
    // The video module's name for the codecs.
    assert_eq!(video::VP8, "VP8");
    assert_eq!(video::H264, "H264");
}

#[test]
fn best_effort_sdes_and_rtcp_attribute() {
    // An RTP/AVP offer carrying a=crypto (best-effort SRTP) and a=rtcp with an address, no mux.
    let text = "v=0
o=- 1 1 IN IP4 203.0.113.5
s=-
c=IN IP4 203.0.113.5
t=0 0
m=video 5004 RTP/AVP 100
a=rtpmap:100 VP8/90000
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:GS1zs9m3v/tMXoF2ZCJkzqGtLj6z1N+cLVMZin7p
a=rtcp:53020 IN IP4 198.51.100.77
";
    let offer = parse(text);
    let offered = offered_video_security(&offer, 0).unwrap();
    assert_eq!(offered.profile, TransportProfile::RtpAvp);
    // Plain fits RTP/AVP, and so do SDES keys.
    assert!(security_fits(&AnswerSecurity::Plain, &offered));
    let sdes = AnswerSecurity::Sdes(
        "1 AES_CM_128_HMAC_SHA1_80 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj".to_owned(),
    );
    let mut params = ours(6000);
    params.attributes = security_attributes(&sdes);
    params.rtcp_port = Some(6001);
    let (m, n) = answer_in(&offer, &params);
    assert_eq!(n.security, SecurityKind::Sdes);
    assert_eq!(m.protocol, "RTP/AVP");
    assert!(!n.rtcp_mux);
    assert_eq!(n.remote_rtp, Some(addr("203.0.113.5:5004")));
    assert_eq!(n.remote_rtcp, Some(addr("198.51.100.77:53020")));
    // Not muxed: our a=rtcp is in the answer.
    assert_eq!(m.attribute("rtcp"), Some("6001"));
    let (_, plain) = answer_in(&offer, &ours(6000));
    assert_eq!(plain.security, SecurityKind::Plain);
    // As the offerer: our RTP/AVP offer with keys, answered with or without a=crypto.
    let mut mine = ours(7000);
    mine.attributes = security_attributes(&sdes);
    let our_offer = video_offer(&mine);
    let conn = Connection::from_ip("203.0.113.5".parse().unwrap());
    let mut answer = media(&offer).clone();
    answer.formats = vec!["96".to_owned()];
    answer.attributes = vec![
        Attribute::new("rtpmap", "96 VP8/90000"),
        Attribute::new(
            "crypto",
            "1 AES_CM_128_HMAC_SHA1_80 inline:GS1zs9m3v/tMXoF2ZCJkzqGtLj6z1N+cLVMZin7p",
        ),
        Attribute::flag("rtcp-mux"),
    ];
    let n = accept_video_answer(&our_offer, &answer, Some(&conn))
        .unwrap()
        .unwrap();
    assert_eq!(n.security, SecurityKind::Sdes);
    assert!(n.rtcp_mux);
    assert_eq!(n.remote_rtcp, n.remote_rtp);
    answer.attributes.retain(|a| a.name != "crypto");
    let n = accept_video_answer(&our_offer, &answer, Some(&conn))
        .unwrap()
        .unwrap();
    assert_eq!(n.security, SecurityKind::Plain);
    // A DTLS answer to our RTP/AVP offer changed the profile.
    answer.protocol = "UDP/TLS/RTP/SAVPF".to_owned();
    assert!(matches!(
        accept_video_answer(&our_offer, &answer, Some(&conn)),
        Err(SdpError::Unacceptable { .. })
    ));
}

#[test]
fn bandwidth_lines() {
    let with = |b: &str| {
        let text = BARESIP_OFFER.replace(
            "m=video 46000 RTP/AVP 96 97 98 34 99 100\n",
            &format!("m=video 46000 RTP/AVP 96 97 98 34 99 100\n{b}"),
        );
        answer_in(&parse(&text), &ours(1)).1.peer_max_bitrate_bps
    };
    assert_eq!(with(""), None);
    assert_eq!(with("b=AS:512\n"), Some(512_000));
    assert_eq!(with("b=AS:512\nb=TIAS:480000\n"), Some(480_000));
    assert_eq!(with("b=TIAS:0\nb=AS:0\n"), None);
    assert_eq!(with("b=AS:99999999999999999999\n"), Some(u32::MAX));
    assert_eq!(with("b=CT:1000\nb=AS:x\n"), None);
}
