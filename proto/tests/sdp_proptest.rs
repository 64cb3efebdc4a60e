//! Property tests: SDP printing and parsing round-trip; the parser never panics.

use std::net::{IpAddr, Ipv4Addr};

use proptest::option;
use proptest::prelude::*;
use tandem_proto::sdp::{
    Attribute, Codec, Connection, Direction, MediaDescription, Origin, SessionDescription,
    audio_offer, negotiate_answer, negotiated_from_answer,
};

fn word() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9./:+_-]{1,12}"
}

/// A line value: printable, no line breaks, may contain spaces and ':'.
fn value() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 .:/;=,+_é-]{0,24}"
}

fn connection() -> impl Strategy<Value = Connection> {
    (word(), word(), word()).prop_map(|(net_type, addr_type, address)| Connection {
        net_type,
        addr_type,
        address,
    })
}

fn attribute() -> impl Strategy<Value = Attribute> {
    ("[a-zA-Z0-9_-]{1,12}", option::of(value())).prop_map(|(name, value)| Attribute { name, value })
}

fn media() -> impl Strategy<Value = MediaDescription> {
    (
        (word(), any::<u16>(), option::of(any::<u16>()), word()),
        prop::collection::vec("[a-zA-Z0-9]{1,4}", 0..5),
        option::of(connection()),
        prop::collection::vec(value(), 0..2),
        prop::collection::vec(attribute(), 0..5),
        option::of(value()),
    )
        .prop_map(
            |(
                (media, port, num_ports, protocol),
                formats,
                connection,
                bandwidths,
                attributes,
                info,
            )| {
                MediaDescription {
                    media,
                    port,
                    num_ports,
                    protocol,
                    formats,
                    connection,
                    bandwidths,
                    attributes,
                    other_fields: info.map(|i| ('i', i)).into_iter().collect(),
                }
            },
        )
}

fn session() -> impl Strategy<Value = SessionDescription> {
    (
        (word(), any::<u64>(), any::<u64>(), word(), word(), word()),
        value(),
        option::of(connection()),
        prop::collection::vec(value(), 0..2),
        prop::collection::vec((any::<u64>(), any::<u64>()), 1..3),
        prop::collection::vec(attribute(), 0..4),
        prop::collection::vec(media(), 0..3),
        option::of(value()),
    )
        .prop_map(
            |(
                (username, id, version, net, addr_type, addr),
                name,
                connection,
                bandwidths,
                times,
                attributes,
                media,
                info,
            )| {
                // RFC 8866 §5.7: every active stream needs a c= somewhere.
                let needs_c = media.iter().any(|m| m.port != 0 && m.connection.is_none());
                let connection = connection.or_else(|| {
                    needs_c.then(|| Connection {
                        net_type: "IN".into(),
                        addr_type: "IP4".into(),
                        address: "192.0.2.1".into(),
                    })
                });
                SessionDescription {
                    origin: Origin {
                        username,
                        session_id: id,
                        session_version: version,
                        net_type: net,
                        addr_type,
                        address: addr,
                    },
                    session_name: name,
                    connection,
                    bandwidths,
                    times,
                    attributes,
                    media,
                    other_fields: info.map(|i| ('i', i)).into_iter().collect(),
                }
            },
        )
}

proptest! {
    #[test]
    fn sdp_round_trips(sdp in session()) {
        let printed = sdp.to_string();
        let parsed = SessionDescription::parse(&printed).unwrap();
        prop_assert_eq!(parsed, sdp);
    }

    #[test]
    fn parser_does_not_panic(s in "\\PC{0,300}") {
        let _ = SessionDescription::parse(&s);
        let with_header = format!("v=0\no=- 1 1 IN IP4 a\ns=-\n{s}");
        if let Ok(sdp) = SessionDescription::parse(&with_header) {
            for (i, m) in sdp.media.iter().enumerate() {
                let _ = m.rtpmaps();
                let _ = m.fmtp(0);
                let _ = sdp.media_remote_addr(i);
            }
        }
    }

    #[test]
    fn answers_to_random_offers_are_consistent(sdp in session(), ports in prop::collection::vec(1u16.., 0..4)) {
        let supported = [
            Codec::new("PCMU", 8000, 1, 0),
            Codec::new("telephone-event", 8000, 1, 101),
        ];
        if let Ok((answer, media)) = negotiate_answer(&sdp, &supported, 1, IpAddr::V4(Ipv4Addr::LOCALHOST), &ports) {
            prop_assert_eq!(answer.media.len(), sdp.media.len());
            let seen = negotiated_from_answer(&sdp, &answer).unwrap();
            prop_assert_eq!(seen.len(), media.len());
            for (a, b) in seen.iter().zip(&media) {
                prop_assert_eq!(a.index, b.index);
                prop_assert_eq!(&a.codecs, &b.codecs);
            }
        }
    }

    #[test]
    fn offer_answer_agree(port in 1u16.., their_port in 1u16.., dir in prop_oneof![
        Just(Direction::SendRecv), Just(Direction::SendOnly), Just(Direction::RecvOnly), Just(Direction::Inactive)
    ]) {
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let codecs = [Codec::new("PCMA", 8000, 1, 8), Codec::new("telephone-event", 8000, 1, 101)];
        let offer = audio_offer(1, ip, port, &codecs, dir);
        let (answer, theirs) = negotiate_answer(&offer, &codecs, 2, ip, &[their_port]).unwrap();
        let ours = negotiated_from_answer(&offer, &answer).unwrap();
        prop_assert_eq!(ours[0].direction, dir);
        prop_assert_eq!(theirs[0].direction, dir.reverse());
        prop_assert_eq!(ours[0].telephone_event, Some(101));
    }
}
