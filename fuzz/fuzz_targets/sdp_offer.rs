//! Fuzz target: an SDP offer from the network is parsed and answered the way the client
//! answers calls (its normal codec set, SRTP policy "optional": DTLS, SDES or plain), and
//! must never panic. Rejections carry 400/488; a parsed offer prints to SDP that parses to the
//! same print; an answer we produce parses, is accepted by the offer it answers, and its
//! negotiated codecs and SDES keys are usable by the media engine.

#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tandem_media::codec::CodecSpec;
use tandem_media::srtp::{SdesCrypto, SrtpContext, sdes_answer};
use tandem_proto::sdp::{
    self, AnswerSecurity, Codec, MediaOffer, NegotiatedCodec, OfferChange, OfferedStream,
    SecurityKind, SessionDescription, accept_answer, answer_offer, classify_offer,
};

/// A fixed DTLS certificate fingerprint (generating a certificate per input is too slow).
const OUR_FINGERPRINT: &str = "sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08";

/// The client's codec list: the SDP defaults the media engine implements (as
/// `client_core::media::supported_codecs` builds it).
fn client_codecs() -> &'static [Codec] {
    static CODECS: OnceLock<Vec<Codec>> = OnceLock::new();
    CODECS.get_or_init(|| {
        sdp::default_audio_codecs()
            .into_iter()
            .filter(|c| {
                c.is_telephone_event()
                    || CodecSpec::from_rtpmap(
                        &c.name,
                        c.clock_rate,
                        c.channels,
                        c.payload_type,
                        c.fmtp.as_deref(),
                    )
                    .is_some()
            })
            .collect()
    })
}

fn spec(c: &NegotiatedCodec) -> Option<CodecSpec> {
    CodecSpec::from_rtpmap(
        &c.name,
        c.clock_rate,
        c.channels,
        c.payload_type,
        c.fmtp.as_deref(),
    )
}

fuzz_target!(|data: &[u8]| {
    let offer = match SessionDescription::parse_bytes(data) {
        Ok(offer) => offer,
        Err(e) => {
            assert_eq!(
                e.status_code(),
                400,
                "parse error {e} has status {}",
                e.status_code()
            );
            return;
        }
    };
    let printed = offer.to_string();
    let reparsed = match SessionDescription::parse(&printed) {
        Ok(s) => s,
        Err(e) => panic!("printed offer does not parse again: {e}\n{printed}"),
    };
    assert_eq!(reparsed.to_string(), printed, "SDP printing is not stable");
    assert_eq!(classify_offer(&offer, &reparsed), OfferChange::Unchanged);
    for i in 0..offer.media.len() {
        let _ = (
            offer.media_direction(i),
            offer.media_remote_addr(i),
            offer.media_connection(i),
        );
    }

    let local = MediaOffer::new(client_codecs().to_vec());
    let mut chosen_keys: Option<(SdesCrypto, SdesCrypto)> = None;
    let chooser = |s: &OfferedStream<'_>| -> Option<AnswerSecurity> {
        chosen_keys = None;
        if s.profile.is_dtls() {
            s.fingerprint?;
            return Some(AnswerSecurity::Dtls {
                fingerprint: OUR_FINGERPRINT.to_owned(),
                setup: sdp::setup_answer(s.setup).to_owned(),
            });
        }
        if !s.crypto.is_empty()
            && let Some((remote, local)) = sdes_answer(&SdesCrypto::parse_all(&s.crypto))
        {
            let value = local.to_attribute_value();
            chosen_keys = Some((local, remote));
            return Some(AnswerSecurity::Sdes(value));
        }
        s.profile.is_plain().then_some(AnswerSecurity::Plain)
    };
    let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    let (answer, neg) = match answer_offer(&offer, &local, 42, 1, ip, 40000, chooser) {
        Ok(a) => a,
        Err(e) => {
            assert_eq!(
                e.status_code(),
                488,
                "answer error {e} has status {}",
                e.status_code()
            );
            return;
        }
    };

    // The negotiated stream is usable by the media engine.
    if spec(&neg.send_codec).is_none() {
        panic!(
            "negotiated send codec {:?} is not one the media engine has",
            neg.send_codec
        );
    }
    assert!(
        neg.recv_codecs.iter().any(|c| spec(c).is_some()),
        "no receivable codec"
    );
    assert_eq!(answer.media.len(), offer.media.len(), "answer m-line count");
    match neg.security {
        SecurityKind::Sdes => {
            let Some((local_key, remote_key)) = chosen_keys.take() else {
                panic!("SDES negotiated but the chooser picked no keys");
            };
            if let Err(e) = SrtpContext::from_sdes(&local_key, &remote_key) {
                panic!("negotiated SDES keys give no SRTP context: {e}");
            }
        }
        SecurityKind::Dtls => assert!(neg.fingerprint.is_some(), "DTLS without a fingerprint"),
        SecurityKind::Plain => assert!(neg.profile.is_plain(), "plain media on {}", neg.profile),
    }

    // Our answer, as the offerer sees it.
    let answer_text = answer.to_string();
    let answer_parsed = match SessionDescription::parse(&answer_text) {
        Ok(a) => a,
        Err(e) => panic!(
            "our answer does not parse: {e}\n--- offer\n{printed}\n--- answer\n{answer_text}"
        ),
    };
    match accept_answer(&offer, &answer_parsed) {
        Ok(theirs) => {
            assert_eq!(
                theirs.index, neg.index,
                "offerer and answerer disagree on the stream"
            );
            assert_eq!(theirs.security, neg.security, "security kind differs");
        }
        Err(e) => panic!(
            "the offerer would reject our answer: {e}\n--- offer\n{printed}\n--- answer\n{answer_text}"
        ),
    }
});
