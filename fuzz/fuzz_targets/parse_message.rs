//! Fuzz target: SIP message parsing, printing, typed accessors, error responses and stream
//! framing must never panic, and a message that parses must print to bytes that parse again to
//! the same printed form.
//!
//! Run with `cargo fuzz run parse_message` from `fuzz/` (seed it with
//! `proto/tests/data/rfc4475/*.dat`).

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tandem_proto::msg::{Message, StreamFramer, error_response};

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    match Message::parse(input.clone()) {
        Ok(msg) => {
            let printed = msg.to_bytes();
            let again = match Message::parse(printed.clone()) {
                Ok(m) => m,
                Err(e) => panic!("printed message does not parse again: {e}"),
            };
            assert_eq!(again.to_bytes(), printed, "printing is not stable");
            let h = msg.headers();
            let _ = (h.vias(), h.from(), h.to(), h.call_id(), h.cseq());
            let _ = (h.contacts(), h.routes(), h.record_routes());
            let _ = (h.max_forwards(), h.expires(), h.content_type());
        }
        Err(err) => {
            let _ = err.reason();
            if let Some(resp) = error_response(data, &err) {
                // Our own error responses are well-formed messages.
                if let Err(e) = Message::parse_unvalidated(resp, &Default::default()) {
                    panic!("error response does not parse: {e}");
                }
            }
        }
    }
    let mut framer = StreamFramer::new(64 * 1024);
    for chunk in data.chunks(97) {
        framer.push(chunk);
        while let Some(Ok(_)) = framer.next() {}
    }
});
