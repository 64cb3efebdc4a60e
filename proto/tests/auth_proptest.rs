//! Property tests: digest header printing and parsing round-trip; parsers never panic.

use proptest::option;
use proptest::prelude::*;
use std::time::Duration;
use tandem_proto::auth::{
    Algorithm, Challenge, Credentials, NonceIssuer, NonceStatus, parse_challenges,
};

fn algorithm() -> impl Strategy<Value = Algorithm> {
    prop_oneof![
        Just(Algorithm::Md5),
        Just(Algorithm::Md5Sess),
        Just(Algorithm::Sha256),
        Just(Algorithm::Sha256Sess),
    ]
}

/// Printable text, including quotes, backslashes, commas, spaces and non-ASCII.
fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 \"\\\\,=;:/@.+_é€-]{0,24}"
}

fn token() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,12}"
}

fn challenge() -> impl Strategy<Value = Challenge> {
    (
        text(),
        text(),
        option::of(text()),
        algorithm(),
        prop::collection::vec(token(), 0..3),
        any::<bool>(),
        option::of(text()),
        any::<bool>(),
    )
        .prop_map(
            |(realm, nonce, opaque, algorithm, qop, stale, domain, userhash)| Challenge {
                realm,
                nonce,
                opaque,
                algorithm,
                qop,
                stale,
                domain,
                userhash,
            },
        )
}

fn credentials() -> impl Strategy<Value = Credentials> {
    (
        (text(), text(), text(), text(), "[0-9a-f]{32}"),
        algorithm(),
        option::of(text()),
        option::of((
            prop_oneof![Just("auth".to_owned()), Just("auth-int".to_owned()), text()],
            text(),
            any::<u32>(),
        )),
    )
        .prop_map(
            |((username, realm, nonce, uri, response), algorithm, opaque, qop)| {
                let (qop, cnonce, nc) = match qop {
                    Some((q, c, n)) => (Some(q), Some(c), Some(n)),
                    None => (None, None, None),
                };
                Credentials {
                    username,
                    realm,
                    nonce,
                    uri,
                    response,
                    algorithm,
                    cnonce,
                    opaque,
                    qop,
                    nc,
                }
            },
        )
}

proptest! {
    #[test]
    fn challenge_round_trips(ch in challenge()) {
        let printed = ch.to_string();
        let parsed = Challenge::parse(&printed).unwrap();
        prop_assert_eq!(parsed, ch);
    }

    #[test]
    fn joined_challenges_split_back(chs in prop::collection::vec(challenge(), 1..4)) {
        let joined = chs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        prop_assert_eq!(parse_challenges([joined.as_str()]), chs);
    }

    #[test]
    fn credentials_round_trip(c in credentials()) {
        let printed = c.to_string();
        let parsed = Credentials::parse(&printed).unwrap();
        prop_assert_eq!(parsed, c);
    }

    #[test]
    fn parsers_do_not_panic(s in "\\PC{0,200}") {
        let _ = Challenge::parse(&s);
        let _ = Credentials::parse(&s);
        let digest = format!("Digest {s}");
        let _ = Challenge::parse(&digest);
        let _ = Credentials::parse(&digest);
    }

    #[test]
    fn foreign_nonces_are_invalid(s in "[0-9a-fA-F]{0,80}", nc in option::of(any::<u32>())) {
        let mut issuer = NonceIssuer::new([5; 32], Duration::from_secs(300));
        prop_assert_eq!(issuer.check(&s, nc, 1_000), NonceStatus::Invalid);
    }

    #[test]
    fn own_nonces_are_valid_within_lifetime(now in 0u64..u64::MAX / 2, random in any::<u64>(), age in 0u64..=300) {
        let mut issuer = NonceIssuer::new([6; 32], Duration::from_secs(300));
        let nonce = issuer.issue(now, random);
        prop_assert_eq!(issuer.check(&nonce, Some(1), now + age), NonceStatus::Valid);
        prop_assert_eq!(issuer.check(&nonce, Some(1), now + age), NonceStatus::Replay);
        prop_assert_eq!(issuer.check(&nonce, None, now + 301), NonceStatus::Stale);
    }
}
