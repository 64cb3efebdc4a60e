//! Fuzz target: SIP INFO DTMF bodies (`application/dtmf-relay`, `application/dtmf`) and
//! RFC 4733 telephone-event payloads never panic; a digit that parses is a real DTMF digit
//! and survives `format_dtmf_relay` -> `parse_dtmf_info`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_media::dtmf::{
    DtmfReceiver, TelephoneEvent, digit_to_event, event_to_digit, format_dtmf_relay,
    parse_dtmf_info,
};

const CONTENT_TYPES: [&str; 4] = [
    "application/dtmf-relay",
    "Application/DTMF",
    "application/dtmf-relay; charset=utf-8",
    "text/plain",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    // The selector either picks a known content type or makes the type itself fuzzed.
    let (content_type, body) = if selector & 0x80 == 0 {
        (
            CONTENT_TYPES[usize::from(selector) % CONTENT_TYPES.len()].to_owned(),
            rest,
        )
    } else {
        let split = usize::from(selector & 0x3f).min(rest.len());
        let (ct, body) = rest.split_at(split);
        (String::from_utf8_lossy(ct).into_owned(), body)
    };
    if let Some((digit, duration)) = parse_dtmf_info(&content_type, body) {
        let event = match digit_to_event(digit) {
            Some(e) => e,
            None => panic!("parse_dtmf_info returned a non-DTMF digit {digit:?}"),
        };
        assert_eq!(event_to_digit(event), Some(digit));
        let ms = duration.unwrap_or(160);
        let Some(body) = format_dtmf_relay(digit, ms) else {
            panic!("format_dtmf_relay refused digit {digit:?}");
        };
        assert_eq!(
            parse_dtmf_info("application/dtmf-relay", body.as_bytes()),
            Some((digit, Some(ms))),
            "dtmf-relay round trip"
        );
    }

    // RFC 4733 payloads: the same bytes as telephone-event packets into a receiver.
    let mut receiver = DtmfReceiver::new();
    for (i, chunk) in body.chunks(4).enumerate() {
        if let Ok(ev) = TelephoneEvent::parse(chunk) {
            let encoded = ev.encode();
            assert_eq!(TelephoneEvent::parse(&encoded), Ok(ev), "event round trip");
            let _ = ev.digit();
            let ts = u32::from(selector)
                .wrapping_mul(160)
                .wrapping_add((i as u32 / 3) * 800);
            if let Some(d) = receiver.on_packet(ts, &ev) {
                assert!(digit_to_event(d).is_some(), "receiver reported {d:?}");
            }
        }
    }
});
