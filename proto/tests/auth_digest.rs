//! Digest authentication: RFC vectors, header parsing/printing, client and nonce issuer.

use std::time::Duration;

use tandem_proto::auth::{
    Algorithm, AuthError, Challenge, Credentials, DigestClient, NonceIssuer, NonceStatus, ha1,
    response, response_with_body, verify, verify_with_body,
};

const RFC7616_NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
const RFC7616_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

#[test]
fn rfc7616_md5_example() {
    let h = ha1(
        Algorithm::Md5,
        "Mufasa",
        "http-auth@example.org",
        "Circle of Life",
    );
    let r = response(
        Algorithm::Md5,
        &h,
        RFC7616_NONCE,
        Some(1),
        Some(RFC7616_CNONCE),
        Some("auth"),
        "GET",
        "/dir/index.html",
    );
    assert_eq!(r, "8ca523f5e9506fed4657c9700eebdbec");
}

#[test]
fn rfc7616_sha256_example() {
    let h = ha1(
        Algorithm::Sha256,
        "Mufasa",
        "http-auth@example.org",
        "Circle of Life",
    );
    let r = response(
        Algorithm::Sha256,
        &h,
        RFC7616_NONCE,
        Some(1),
        Some(RFC7616_CNONCE),
        Some("auth"),
        "GET",
        "/dir/index.html",
    );
    assert_eq!(
        r,
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    );
}

#[test]
fn rfc7616_client_reproduces_example_from_parsed_challenge() {
    let ch = Challenge::parse(
        r#"Digest
       realm="http-auth@example.org",
       qop="auth, auth-int",
       algorithm=SHA-256,
       nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
       opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#,
    )
    .unwrap();
    assert_eq!(ch.qop, vec!["auth", "auth-int"]);
    let mut client = DigestClient::new("Mufasa", "Circle of Life");
    let creds = client
        .authorize(&[ch], "GET", "/dir/index.html", RFC7616_CNONCE)
        .unwrap();
    assert_eq!(
        creds.response,
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    );
    assert_eq!(creds.nc, Some(1));
    assert_eq!(creds.qop.as_deref(), Some("auth"));
    assert_eq!(
        creds.opaque.as_deref(),
        Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS")
    );
}

#[test]
fn rfc2617_example() {
    let creds = Credentials::parse(
        r#"Digest username="Mufasa",
                 realm="testrealm@host.com",
                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
                 uri="/dir/index.html",
                 qop=auth,
                 nc=00000001,
                 cnonce="0a4f113b",
                 response="6629fae49393a05397450978507c4ef1",
                 opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
    )
    .unwrap();
    let h = ha1(
        Algorithm::Md5,
        "Mufasa",
        "testrealm@host.com",
        "Circle Of Life",
    );
    assert!(verify(&creds, "GET", &h));
    assert!(!verify(&creds, "POST", &h));
    let wrong = ha1(
        Algorithm::Md5,
        "Mufasa",
        "testrealm@host.com",
        "circle of life",
    );
    assert!(!verify(&creds, "GET", &wrong));
}

// Expected values computed independently with Python's hashlib.
const SIP_HA1_MD5: &str = "a185309fcd051e2b8377b4e1c78fcc74";
const SIP_HA1_SHA256: &str = "499bfcbb1377e8d4773cee636d81df52cdc65f06da973de32bc05858faf247b7";

#[test]
fn sip_register_vectors() {
    let (u, r, p) = ("alice", "lab.example", "s3cr3t pass");
    assert_eq!(ha1(Algorithm::Md5, u, r, p), SIP_HA1_MD5);
    assert_eq!(ha1(Algorithm::Sha256, u, r, p), SIP_HA1_SHA256);
    // The -sess variants store the same base HA1.
    assert_eq!(ha1(Algorithm::Md5Sess, u, r, p), SIP_HA1_MD5);
    let nonce = "4a1f2c3d5e6f";
    let cn = Some("0a4f113b");
    let uri = "sip:lab.example";
    let cases = [
        (
            Algorithm::Md5,
            SIP_HA1_MD5,
            Some(2),
            Some("auth"),
            "f2c9bc196e4e61bbd1921b3d36b724cb",
        ),
        (
            Algorithm::Md5,
            SIP_HA1_MD5,
            None,
            None,
            "1d0c430681ca8e2383e4408aa31a044b",
        ),
        (
            Algorithm::Md5Sess,
            SIP_HA1_MD5,
            Some(1),
            Some("auth"),
            "8f256870a3e3b7f87e3ecbd7af06f0c0",
        ),
        (
            Algorithm::Sha256,
            SIP_HA1_SHA256,
            Some(2),
            Some("auth"),
            "45200b74e814c9d9be204c4fcd5dc4ad2126507ef75532c7da75a8b5a7f19235",
        ),
        (
            Algorithm::Sha256,
            SIP_HA1_SHA256,
            None,
            None,
            "021a27815a05670d6b0ba25ddfe02a8022fe3748c52727633ac9d04ede71a24f",
        ),
        (
            Algorithm::Sha256Sess,
            SIP_HA1_SHA256,
            Some(1),
            Some("auth"),
            "e69069247c6bfb85b3424c74e5619629c81c865318004aabf521818cd63782c0",
        ),
    ];
    for (alg, h, nc, qop, expected) in cases {
        let cnonce = qop.and(cn).or(alg.is_session().then_some("0a4f113b"));
        assert_eq!(
            response(alg, h, nonce, nc, cnonce, qop, "REGISTER", uri),
            expected,
            "{alg} qop={qop:?}"
        );
    }
    // Uppercase stored HA1 gives the same answer.
    assert_eq!(
        response(
            Algorithm::Md5,
            &SIP_HA1_MD5.to_uppercase(),
            nonce,
            Some(2),
            cn,
            Some("auth"),
            "REGISTER",
            uri
        ),
        "f2c9bc196e4e61bbd1921b3d36b724cb"
    );
}

#[test]
fn auth_int_uses_body_hash() {
    let body = b"v=0\r\n";
    let uri = "sip:bob@lab.example";
    let md5 = response_with_body(
        Algorithm::Md5,
        SIP_HA1_MD5,
        "4a1f2c3d5e6f",
        Some(1),
        Some("0a4f113b"),
        Some("auth-int"),
        "INVITE",
        uri,
        body,
    );
    assert_eq!(md5, "07638f863b26684124ddfb84287f885d");
    let sha = response_with_body(
        Algorithm::Sha256,
        SIP_HA1_SHA256,
        "4a1f2c3d5e6f",
        Some(1),
        Some("0a4f113b"),
        Some("auth-int"),
        "INVITE",
        uri,
        body,
    );
    assert_eq!(
        sha,
        "51bd88ba35fc0fcd88691ffb8d6f869e33528603bceaa381dd234a5ca65c1963"
    );
    let creds = Credentials {
        username: "alice".into(),
        realm: "lab.example".into(),
        nonce: "4a1f2c3d5e6f".into(),
        uri: uri.into(),
        response: md5,
        algorithm: Algorithm::Md5,
        cnonce: Some("0a4f113b".into()),
        opaque: None,
        qop: Some("auth-int".into()),
        nc: Some(1),
    };
    assert!(verify_with_body(&creds, "INVITE", SIP_HA1_MD5, body));
    assert!(!verify_with_body(&creds, "INVITE", SIP_HA1_MD5, b"v=1\r\n"));
}

#[test]
fn algorithm_parse_and_display() {
    for (s, a) in [
        ("MD5", Algorithm::Md5),
        ("md5", Algorithm::Md5),
        ("MD5-sess", Algorithm::Md5Sess),
        ("md5-SESS", Algorithm::Md5Sess),
        ("SHA-256", Algorithm::Sha256),
        ("sha-256", Algorithm::Sha256),
        ("SHA-256-sess", Algorithm::Sha256Sess),
    ] {
        assert_eq!(s.parse::<Algorithm>().unwrap(), a);
    }
    assert_eq!(Algorithm::Md5.to_string(), "MD5");
    assert_eq!(Algorithm::Sha256Sess.to_string(), "SHA-256-sess");
    assert_eq!(
        "SHA-512-256".parse::<Algorithm>(),
        Err(AuthError::UnsupportedAlgorithm("SHA-512-256".into()))
    );
}

#[test]
fn kamailio_style_challenge() {
    // Kamailio auth module: quoted qop, no algorithm (MD5 default).
    let ch = Challenge::parse(
        r#"Digest realm="127.0.0.1", nonce="ZbX1Wme19i4aDb2l0jPgB0yJ5gJ/Lw3G", qop="auth""#,
    )
    .unwrap();
    assert_eq!(ch.realm, "127.0.0.1");
    assert_eq!(ch.nonce, "ZbX1Wme19i4aDb2l0jPgB0yJ5gJ/Lw3G");
    assert_eq!(ch.algorithm, Algorithm::Md5);
    assert_eq!(ch.qop, vec!["auth"]);
    assert!(!ch.stale);
    assert_eq!(
        ch.to_string(),
        r#"Digest realm="127.0.0.1", nonce="ZbX1Wme19i4aDb2l0jPgB0yJ5gJ/Lw3G", algorithm=MD5, qop="auth""#
    );
    assert_eq!(Challenge::parse(&ch.to_string()).unwrap(), ch);
}

#[test]
fn asterisk_style_challenge() {
    // Asterisk chan_pjsip: unquoted algorithm, opaque, qop list.
    let v = r#"Digest  realm="asterisk",nonce="1700000000/0ff3c1c9b1e2bd7d3ab5d4a4c1e09e8e",opaque="2a3b4c5d6e7f8091",algorithm=md5,qop="auth,auth-int",stale=FALSE"#;
    let ch = Challenge::parse(v).unwrap();
    assert_eq!(ch.realm, "asterisk");
    assert_eq!(ch.opaque.as_deref(), Some("2a3b4c5d6e7f8091"));
    assert_eq!(ch.qop, vec!["auth", "auth-int"]);
    assert!(!ch.stale);
    assert_eq!(ch.algorithm, Algorithm::Md5);
    let again = Challenge::parse(&ch.to_string()).unwrap();
    assert_eq!(again, ch);
}

#[test]
fn challenge_with_everything_round_trips() {
    let v = "digest realm=\"a \\\"quoted\\\" realm\" ,  domain=\"sip:a.example sip:b.example\", nonce=abc, \
             stale=TRUE, algorithm=\"SHA-256-sess\", qop=auth, userhash=true, charset=UTF-8, x-unknown=\"ignored\"";
    let ch = Challenge::parse(v).unwrap();
    assert_eq!(ch.realm, "a \"quoted\" realm");
    assert_eq!(ch.domain.as_deref(), Some("sip:a.example sip:b.example"));
    assert_eq!(ch.nonce, "abc");
    assert!(ch.stale);
    assert!(ch.userhash);
    assert_eq!(ch.algorithm, Algorithm::Sha256Sess);
    assert_eq!(ch.qop, vec!["auth"]);
    let printed = ch.to_string();
    assert!(
        printed.starts_with(r#"Digest realm="a \"quoted\" realm""#),
        "{printed}"
    );
    assert!(printed.contains("algorithm=SHA-256-sess"));
    assert!(printed.contains("stale=true"));
    assert_eq!(Challenge::parse(&printed).unwrap(), ch);
}

#[test]
fn challenge_errors() {
    assert_eq!(
        Challenge::parse(r#"Basic realm="x""#),
        Err(AuthError::NotDigest("Basic".into()))
    );
    assert_eq!(
        Challenge::parse(r#"Digest nonce="x""#),
        Err(AuthError::MissingParameter("realm"))
    );
    assert_eq!(
        Challenge::parse(r#"Digest realm="x""#),
        Err(AuthError::MissingParameter("nonce"))
    );
    assert!(matches!(
        Challenge::parse(r#"Digest realm="x", nonce="unterminated"#),
        Err(AuthError::Syntax(_))
    ));
    assert!(matches!(
        Challenge::parse(r#"Digest realm="x" nonce="y""#),
        Err(AuthError::Syntax(_))
    ));
    assert!(matches!(
        Challenge::parse(r#"Digest realm="x", realm="y", nonce="z""#),
        Err(AuthError::DuplicateParameter(_))
    ));
    assert!(matches!(
        Challenge::parse(r#"Digest realm="x", nonce="y", stale=maybe"#),
        Err(AuthError::InvalidValue { name: "stale", .. })
    ));
    assert_eq!(
        Challenge::parse(r#"Digest realm="x", nonce="y", algorithm=SHA-512-256"#),
        Err(AuthError::UnsupportedAlgorithm("SHA-512-256".into()))
    );
    assert!(Challenge::parse("").is_err());
    assert!(Challenge::parse("Digest").is_err());
    assert!(Challenge::parse("Digest =x").is_err());
}

#[test]
fn credentials_parse_print_round_trip() {
    // baresip style (no spaces after commas, quoted qop tolerated, uppercase nc).
    let v = r#"Digest username="alice",realm="lab.example",nonce="4a1f2c3d5e6f",uri="sip:lab.example",response="F2C9BC196E4E61BBD1921B3D36B724CB",cnonce="0a4f113b",qop="auth",nc=0000000A,algorithm=MD5"#;
    let c = Credentials::parse(v).unwrap();
    assert_eq!(c.username, "alice");
    assert_eq!(c.nc, Some(10));
    assert_eq!(c.qop.as_deref(), Some("auth"));
    let printed = c.to_string();
    assert_eq!(
        printed,
        r#"Digest username="alice", realm="lab.example", nonce="4a1f2c3d5e6f", uri="sip:lab.example", response="F2C9BC196E4E61BBD1921B3D36B724CB", algorithm=MD5, cnonce="0a4f113b", qop=auth, nc=0000000a"#
    );
    assert_eq!(Credentials::parse(&printed).unwrap(), c);
}

#[test]
fn credentials_uppercase_response_verifies() {
    let creds = Credentials::parse(
        r#"Digest username="alice", realm="lab.example", nonce="4a1f2c3d5e6f", uri="sip:lab.example", response="F2C9BC196E4E61BBD1921B3D36B724CB", cnonce="0a4f113b", qop=auth, nc=00000002"#,
    )
    .unwrap();
    assert!(verify(&creds, "REGISTER", SIP_HA1_MD5));
    assert!(!verify(&creds, "INVITE", SIP_HA1_MD5));
}

#[test]
fn credentials_errors_and_ext_username() {
    assert_eq!(
        Credentials::parse(
            r#"Digest username="a", realm="r", nonce="n", uri="u", response="x", qop=auth, nc=00000001"#
        ),
        Err(AuthError::MissingParameter("cnonce"))
    );
    assert_eq!(
        Credentials::parse(
            r#"Digest username="a", realm="r", nonce="n", uri="u", response="x", qop=auth, cnonce="c""#
        ),
        Err(AuthError::MissingParameter("nc"))
    );
    assert!(matches!(
        Credentials::parse(
            r#"Digest username="a", realm="r", nonce="n", uri="u", response="x", qop=auth, cnonce="c", nc=1g"#
        ),
        Err(AuthError::InvalidValue { name: "nc", .. })
    ));
    assert!(matches!(
        Credentials::parse(
            r#"Digest username="a", realm="r", nonce="n", uri="u", response="x", qop=auth, cnonce="c", nc=123456789"#
        ),
        Err(AuthError::InvalidValue { name: "nc", .. })
    ));
    assert_eq!(
        Credentials::parse(r#"Digest realm="r", nonce="n", uri="u", response="x""#),
        Err(AuthError::MissingParameter("username"))
    );
    let c = Credentials::parse(
        r#"Digest username*=UTF-8''J%C3%A4ger, realm="r", nonce="n", uri="u", response="x""#,
    )
    .unwrap();
    assert_eq!(c.username, "Jäger");
    assert_eq!(c.algorithm, Algorithm::Md5);
    assert!(
        Credentials::parse(
            r#"Digest username*=UTF-8''J%C3, realm="r", nonce="n", uri="u", response="x""#
        )
        .is_err()
    );
    assert!(
        Credentials::parse(
            r#"Digest username*=UTF-8''J%Z1, realm="r", nonce="n", uri="u", response="x""#
        )
        .is_err()
    );
}

#[test]
fn rfc2069_style_without_qop() {
    let ch = Challenge::parse(r#"Digest realm="lab.example", nonce="4a1f2c3d5e6f""#).unwrap();
    let mut client = DigestClient::new("alice", "s3cr3t pass");
    let creds = client
        .authorize(&[ch], "REGISTER", "sip:lab.example", "ignored")
        .unwrap();
    assert_eq!(creds.response, "1d0c430681ca8e2383e4408aa31a044b");
    assert_eq!(creds.qop, None);
    assert_eq!(creds.nc, None);
    assert_eq!(creds.cnonce, None);
    assert!(verify(&creds, "REGISTER", SIP_HA1_MD5));
    let printed = creds.to_string();
    assert!(!printed.contains("nc="));
    assert_eq!(Credentials::parse(&printed).unwrap(), creds);
}

fn challenge(realm: &str, nonce: &str, alg: Algorithm, stale: bool) -> Challenge {
    Challenge {
        realm: realm.into(),
        nonce: nonce.into(),
        opaque: None,
        algorithm: alg,
        qop: vec!["auth".into()],
        stale,
        domain: None,
        userhash: false,
    }
}

#[test]
fn client_picks_topmost_supported_challenge() {
    let mut client = DigestClient::new("alice", "pw");
    // Server prefers SHA-256 (listed first).
    let offered = [
        challenge("r", "n1", Algorithm::Sha256, false),
        challenge("r", "n2", Algorithm::Md5, false),
    ];
    let c = client
        .authorize(&offered, "REGISTER", "sip:r", "c")
        .unwrap();
    assert_eq!(c.algorithm, Algorithm::Sha256);
    assert_eq!(c.nonce, "n1");
    // A challenge with only unknown qop values is skipped.
    let mut client = DigestClient::new("alice", "pw");
    let mut odd = challenge("r", "n0", Algorithm::Sha256, false);
    odd.qop = vec!["auth-conf".into()];
    let offered = [odd.clone(), challenge("r", "n2", Algorithm::Md5, false)];
    let c = client
        .authorize(&offered, "REGISTER", "sip:r", "c")
        .unwrap();
    assert_eq!(c.algorithm, Algorithm::Md5);
    assert_eq!(
        client.authorize(&[odd], "REGISTER", "sip:r", "c"),
        Err(AuthError::NoSupportedChallenge)
    );
    assert_eq!(
        client.authorize(&[], "REGISTER", "sip:r", "c"),
        Err(AuthError::NoSupportedChallenge)
    );
}

#[test]
fn client_stale_retry_then_wrong_password_stops() {
    let mut client = DigestClient::new("alice", "pw");
    let first = client
        .authorize(
            &[challenge("r", "n1", Algorithm::Md5, false)],
            "REGISTER",
            "sip:r",
            "c1",
        )
        .unwrap();
    assert_eq!(first.nc, Some(1));
    // Server says the nonce is stale: answer again without bothering the user.
    let second = client
        .authorize(
            &[challenge("r", "n2", Algorithm::Md5, true)],
            "REGISTER",
            "sip:r",
            "c2",
        )
        .unwrap();
    assert_eq!(second.nonce, "n2");
    assert_eq!(second.nc, Some(1));
    // A non-stale challenge after our answer: the password is wrong.
    assert_eq!(
        client.authorize(
            &[challenge("r", "n3", Algorithm::Md5, false)],
            "REGISTER",
            "sip:r",
            "c3",
        ),
        Err(AuthError::CredentialsRejected { realm: "r".into() })
    );
    // After success, a new challenge is a fresh start.
    client.accepted();
    assert!(
        client
            .authorize(
                &[challenge("r", "n4", Algorithm::Md5, false)],
                "REGISTER",
                "sip:r",
                "c4",
            )
            .is_ok()
    );
}

#[test]
fn client_gives_up_on_endless_stale() {
    let mut client = DigestClient::new("alice", "pw");
    let mut results = Vec::new();
    for i in 0..6 {
        let stale = i > 0;
        results.push(
            client
                .authorize(
                    &[challenge("r", &format!("n{i}"), Algorithm::Md5, stale)],
                    "REGISTER",
                    "sip:r",
                    "c",
                )
                .is_ok(),
        );
    }
    assert_eq!(results, vec![true, true, true, true, false, false]);
}

#[test]
fn client_nonce_count_increments_for_same_nonce() {
    let mut client = DigestClient::new("alice", "s3cr3t pass");
    let ch = challenge("lab.example", "4a1f2c3d5e6f", Algorithm::Md5, false);
    let c1 = client
        .authorize(&[ch], "REGISTER", "sip:lab.example", "0a4f113b")
        .unwrap();
    assert_eq!(c1.nc, Some(1));
    client.accepted();
    let c2 = client
        .preemptive("lab.example", "REGISTER", "sip:lab.example", "0a4f113b")
        .unwrap();
    assert_eq!(c2.nc, Some(2));
    assert_eq!(c2.response, "f2c9bc196e4e61bbd1921b3d36b724cb");
    assert!(verify(&c2, "REGISTER", SIP_HA1_MD5));
    assert!(
        client
            .preemptive("other", "REGISTER", "sip:x", "c")
            .is_none()
    );
    client.reset();
    assert!(
        client
            .preemptive("lab.example", "REGISTER", "sip:lab.example", "c")
            .is_none()
    );
}

#[test]
fn client_answers_each_realm() {
    let mut client = DigestClient::new("alice", "pw");
    let offered = [
        challenge("proxy-a", "na1", Algorithm::Sha256, false),
        challenge("proxy-b", "nb", Algorithm::Md5, false),
        challenge("proxy-a", "na2", Algorithm::Md5, false),
    ];
    let all = client
        .authorize_all(&offered, "INVITE", "sip:bob@x", "c", b"")
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].realm, "proxy-a");
    assert_eq!(all[0].algorithm, Algorithm::Sha256);
    assert_eq!(all[1].realm, "proxy-b");
    let h = ha1(Algorithm::Md5, "alice", "proxy-b", "pw");
    assert!(verify(&all[1], "INVITE", &h));
}

#[test]
fn client_and_server_agree_with_sess() {
    let mut issuer = NonceIssuer::new([7; 32], Duration::from_secs(300));
    let ch = issuer.challenge("lab.example", Algorithm::Sha256Sess, 1_000, 42, false);
    let mut client = DigestClient::new("alice", "s3cr3t pass");
    let creds = client
        .authorize(&[ch], "REGISTER", "sip:lab.example", "xyz")
        .unwrap();
    let parsed = Credentials::parse(&creds.to_string()).unwrap();
    assert!(verify(&parsed, "REGISTER", SIP_HA1_SHA256));
    assert_eq!(
        issuer.check(&parsed.nonce, parsed.nc, 1_010),
        NonceStatus::Valid
    );
}

#[test]
fn nonce_lifecycle() {
    let mut issuer = NonceIssuer::new([1; 32], Duration::from_secs(300));
    let nonce = issuer.issue(10_000, 0xdead_beef);
    assert_eq!(nonce.len(), 64);
    assert_ne!(nonce, issuer.issue(10_000, 0xdead_bef0));
    assert_eq!(issuer.check(&nonce, None, 10_000), NonceStatus::Valid);
    assert_eq!(issuer.check(&nonce, None, 10_300), NonceStatus::Valid);
    // Expired but authentic: stale.
    assert_eq!(issuer.check(&nonce, Some(1), 10_301), NonceStatus::Stale);
    // From the future (beyond a small skew): invalid.
    assert_eq!(issuer.check(&nonce, None, 9_000), NonceStatus::Invalid);
    // Another server secret does not accept it.
    let mut other = NonceIssuer::new([2; 32], Duration::from_secs(300));
    assert_eq!(other.check(&nonce, None, 10_000), NonceStatus::Invalid);
}

#[test]
fn tampered_nonce_is_invalid() {
    let mut issuer = NonceIssuer::new([9; 32], Duration::from_secs(300));
    let nonce = issuer.issue(5_000, 1);
    // Move the timestamp forward to extend its life: the MAC no longer matches.
    let mut bytes = hex::decode(&nonce).unwrap();
    bytes[7] = bytes[7].wrapping_add(100);
    let forged = hex::encode(&bytes);
    assert_eq!(issuer.check(&forged, None, 5_000), NonceStatus::Invalid);
    let mut flipped = hex::decode(&nonce).unwrap();
    flipped[31] ^= 1;
    assert_eq!(
        issuer.check(&hex::encode(flipped), None, 5_000),
        NonceStatus::Invalid
    );
    for junk in ["", "zz", &nonce[..62], &format!("{nonce}00"), "Digest"] {
        assert_eq!(
            issuer.check(junk, None, 5_000),
            NonceStatus::Invalid,
            "{junk}"
        );
    }
    // Uppercase hex of a genuine nonce is still genuine.
    assert_eq!(
        issuer.check(&nonce.to_uppercase(), None, 5_000),
        NonceStatus::Valid
    );
}

#[test]
fn nonce_count_replay() {
    let mut issuer = NonceIssuer::new([3; 32], Duration::from_secs(300));
    let nonce = issuer.issue(100, 7);
    assert_eq!(issuer.check(&nonce, Some(1), 100), NonceStatus::Valid);
    assert_eq!(issuer.check(&nonce, Some(1), 101), NonceStatus::Replay);
    assert_eq!(issuer.check(&nonce, Some(2), 101), NonceStatus::Valid);
    assert_eq!(issuer.check(&nonce, Some(5), 102), NonceStatus::Valid);
    assert_eq!(issuer.check(&nonce, Some(3), 102), NonceStatus::Replay);
    assert_eq!(issuer.check(&nonce, Some(0), 102), NonceStatus::Invalid);
    let other = issuer.issue(100, 8);
    assert_eq!(issuer.check(&other, Some(1), 103), NonceStatus::Valid);
}

#[test]
fn nonce_map_is_bounded_and_evicted_nonces_go_stale() {
    let mut issuer = NonceIssuer::new([4; 32], Duration::from_secs(300)).with_capacity(2);
    let a = issuer.issue(100, 1);
    let b = issuer.issue(101, 2);
    let c = issuer.issue(102, 3);
    assert_eq!(issuer.check(&a, Some(1), 110), NonceStatus::Valid);
    assert_eq!(issuer.check(&b, Some(1), 110), NonceStatus::Valid);
    // Inserting c evicts a (the oldest).
    assert_eq!(issuer.check(&c, Some(1), 110), NonceStatus::Valid);
    // a's count is forgotten: it must not be replayable, so it is stale.
    assert_eq!(issuer.check(&a, Some(1), 111), NonceStatus::Stale);
    assert_eq!(issuer.check(&b, Some(1), 111), NonceStatus::Replay);
    assert_eq!(issuer.check(&c, Some(2), 111), NonceStatus::Valid);
    // A nonce issued after the eviction is fine.
    let d = issuer.issue(120, 4);
    assert_eq!(issuer.check(&d, Some(1), 121), NonceStatus::Valid);
}

#[test]
fn parser_never_panics_on_garbage() {
    let samples = [
        "Digest ,,,,",
        "Digest a=\"\\",
        "Digest a=\"\\\"",
        "Digest é=1",
        "Digest realm=\"ü\", nonce=ñ",
        "Digest realm",
        "Digest realm=",
        "Digest realm=\"a\"\"b\"",
        "\u{0}Digest",
        "Digest username*=UTF-8''%",
    ];
    for s in samples {
        let _ = Challenge::parse(s);
        let _ = Credentials::parse(s);
    }
    let ok = Challenge::parse("Digest realm=\"ü\", nonce=ñ").unwrap();
    assert_eq!(ok.realm, "ü");
    assert_eq!(ok.nonce, "ñ");
}

#[test]
fn several_challenges_in_headers() {
    use tandem_proto::auth::parse_challenges;
    let values = [
        r#"Digest realm="lab.example", nonce="n1", algorithm=SHA-256, qop="auth,auth-int", Digest realm="lab.example", nonce="n2", algorithm=MD5, qop="auth""#,
        r#"Basic realm="x", Bearer abc==, Digest realm="b, \"c\"", nonce="n3""#,
        r#"Digest realm="lab.example", nonce="n4", algorithm=SHA-512-256"#,
        "Digest realm=",
    ];
    let all = parse_challenges(values);
    let nonces: Vec<&str> = all.iter().map(|c| c.nonce.as_str()).collect();
    assert_eq!(nonces, vec!["n1", "n2", "n3"]);
    assert_eq!(all[0].algorithm, Algorithm::Sha256);
    assert_eq!(all[0].qop, vec!["auth", "auth-int"]);
    assert_eq!(all[2].realm, "b, \"c\"");
    let mut client = DigestClient::new("alice", "pw");
    let creds = client
        .authorize(&all, "REGISTER", "sip:lab.example", "c")
        .unwrap();
    assert_eq!(creds.algorithm, Algorithm::Sha256);
    assert!(parse_challenges(["Basic realm=\"x\""]).is_empty());
}
