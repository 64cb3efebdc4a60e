//! Fuzz target: PIDF/RPID parsing (RFC 3863, RFC 4480) over the bounded XML reader never panics;
//! a document it accepts prints to XML that parses again and prints the same.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_proto::simple::pidf::Presence;

fuzz_target!(|data: &[u8]| {
    if let Ok(presence) = Presence::parse(data) {
        let xml = presence.to_xml();
        let again = Presence::parse(xml.as_bytes()).expect("printed PIDF must parse");
        assert_eq!(again.to_xml(), xml);
    }
});
