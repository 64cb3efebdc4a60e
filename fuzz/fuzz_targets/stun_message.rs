//! Fuzz target: STUN/TURN decoding (RFC 8489, RFC 8656) never panics; a message that decodes
//! re-encodes (with integrity and fingerprint) to one that decodes to the same attributes and
//! verifies; ChannelData round-trips; the stream framer accounts for every byte.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_proto::stun::channel::Frame;
use tandem_proto::stun::{
    Attribute, ChannelData, Integrity, Message, StreamFramer, is_channel_data, is_stun,
};

fn plain(attrs: &[Attribute]) -> Vec<Attribute> {
    attrs
        .iter()
        .filter(|a| {
            !matches!(
                a,
                Attribute::MessageIntegrity(_)
                    | Attribute::MessageIntegritySha256(_)
                    | Attribute::Fingerprint(_)
            )
        })
        .cloned()
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let stun = is_stun(data);
    let channel = is_channel_data(data);
    assert!(!(stun && channel), "both STUN and ChannelData");

    if let Ok(cd) = ChannelData::decode(data) {
        assert!(channel, "ChannelData decoded but is_channel_data says no");
        assert!(cd.data.len() + 4 <= data.len());
        let printed = ChannelData::encode(cd.channel, cd.data, true);
        assert_eq!(printed.len() % 4, 0);
        let again = match ChannelData::decode(&printed) {
            Ok(c) => c,
            Err(e) => panic!("printed ChannelData does not decode: {e}"),
        };
        assert_eq!(again, cd);
    }

    if let Ok(m) = Message::decode(data) {
        assert!(stun, "STUN decoded but is_stun says no");
        let _ = m.verify_integrity(b"fuzz-key");
        let printed = m.encode(Integrity::Both(b"fuzz-key"), true);
        if printed.len() - 20 <= usize::from(u16::MAX) {
            let again = match Message::decode(&printed) {
                Ok(a) => a,
                Err(e) => panic!("re-encoded STUN does not decode: {e}"),
            };
            assert_eq!((again.class, again.method), (m.class, m.method));
            assert_eq!(again.transaction_id, m.transaction_id);
            assert_eq!(plain(&again.attributes), plain(&m.attributes));
            assert!(again.verify_integrity(b"fuzz-key").is_ok());
        }
    }

    // The framer: split anywhere, every byte is either in a frame or still buffered.
    let mid = data.first().map_or(0, |b| usize::from(*b) % (data.len() + 1));
    let mut framer = StreamFramer::new();
    let mut framed = 0usize;
    let mut failed = false;
    for part in [&data[..mid], &data[mid..]] {
        framer.push(part);
        loop {
            match framer.pop() {
                Ok(Some(Frame::Stun(b))) | Ok(Some(Frame::ChannelData(b))) => framed += b.len(),
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            break;
        }
    }
    if !failed {
        assert_eq!(framed + framer.buffered(), data.len());
    }
});
