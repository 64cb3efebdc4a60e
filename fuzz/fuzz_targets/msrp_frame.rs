//! Fuzz target: the MSRP framer (RFC 4975) never panics on any byte stream, fed whole or split at
//! an input-chosen point; a frame it accepts prints back to bytes that frame to an equal message.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_proto::msrp::{Framer, FramerLimits};

fn frames(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut framer = Framer::new(FramerLimits::default());
    let mut out = Vec::new();
    for chunk in chunks {
        framer.push(chunk);
        loop {
            match framer.pop() {
                Ok(Some(message)) => out.push(message.to_bytes()),
                Ok(None) => break,
                // Any error poisons the connection: nothing more is read from it.
                Err(_) => return out,
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let split = usize::from(data[0]) * data.len() / 256;
    let body = &data[1..];
    let split = split.min(body.len());
    let whole = frames(&[body]);
    let parts = frames(&[&body[..split], &body[split..]]);
    // Splitting the stream never changes what is framed.
    assert_eq!(whole, parts);
    // Every printed frame frames again to itself.
    for bytes in &whole {
        let again = frames(&[bytes]);
        assert_eq!(again.len(), 1, "a printed frame must frame again");
        assert_eq!(&again[0], bytes);
    }
});
