//! Fuzz target: `a=crypto` values (RFC 4568 §9.1) never panic the SDES parser; a value that
//! parses prints to a value that parses to the same thing, and a supported one yields an
//! SRTP context that round-trips a packet.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tandem_media::srtp::{SdesCrypto, SrtpContext, sdes_accept, sdes_answer, sdes_offer};

/// Our SDES offer, generated once (fresh keys come from the OS RNG).
fn our_offer() -> &'static [SdesCrypto] {
    static OFFER: OnceLock<Vec<SdesCrypto>> = OnceLock::new();
    OFFER.get_or_init(sdes_offer)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines: Vec<&str> = text.split('\n').collect();
    let all = SdesCrypto::parse_all(&lines);
    for line in &lines {
        let Ok(crypto) = SdesCrypto::parse(line) else {
            continue;
        };
        assert_eq!(crypto.key_salt.len(), crypto.suite.key_salt_len());
        let printed = crypto.to_attribute_value();
        let again = match SdesCrypto::parse(&printed) {
            Ok(c) => c,
            Err(e) => panic!("printed a=crypto {printed:?} does not parse again: {e}"),
        };
        assert_eq!(again, crypto, "a=crypto print/parse round trip");
        let _ = format!("{crypto:?}");
        if crypto.check_supported().is_ok() {
            let mut sender = match SrtpContext::from_sdes(&crypto, &crypto) {
                Ok(c) => c,
                Err(e) => panic!("supported crypto {printed:?} gives no context: {e}"),
            };
            let mut receiver = SrtpContext::from_sdes(&crypto, &crypto).expect("same keys");
            let rtp = [
                0x80, 0x00, 0x12, 0x34, 0, 0, 0, 160, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3,
            ];
            let protected = sender.protect_rtp(&rtp).expect("protect_rtp");
            let plain = receiver.unprotect_rtp(&protected).expect("unprotect_rtp");
            assert_eq!(plain, rtp, "SRTP round trip with parsed keys");
        }
    }
    if let Some((remote, local)) = sdes_answer(&all) {
        assert_eq!(remote.tag, local.tag);
        assert_eq!(remote.suite, local.suite);
        assert!(remote.check_supported().is_ok());
        assert!(
            local.check_supported().is_ok(),
            "our answer line is unsupported"
        );
    }
    // Each parsed line as the answer to our own offer (tags 1..=3, one per suite).
    let ours = our_offer();
    for answer in &all {
        let matching = ours.iter().find(|c| c.tag == answer.tag);
        let expected =
            matching.is_some_and(|c| c.suite == answer.suite) && answer.check_supported().is_ok();
        match sdes_accept(ours, answer) {
            Ok((local, remote)) => {
                assert!(expected, "sdes_accept took an answer it should refuse");
                assert_eq!(local.tag, answer.tag);
                assert_eq!(&remote, answer);
            }
            Err(e) => assert!(!expected, "sdes_accept refused a valid answer: {e}"),
        }
    }
});
