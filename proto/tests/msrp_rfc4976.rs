//! RFC 4976 (relays) AUTH exchange: the RFC's messages (header lines the RFC folds for print
//! are unfolded, MSRP has no header folding) and a full digest round trip with `proto::auth`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rand::SeedableRng;
use rand::rngs::StdRng;
use std::time::Duration;
use tandem_proto::auth::{self, Algorithm, DigestClient, NonceIssuer, NonceStatus};
use tandem_proto::msrp::report::{
    auth_challenge, auth_credentials, auth_digest_uri, auth_ok, auth_request, response_for,
};
use tandem_proto::msrp::{Framer, Message, Method, MsrpUri, Request, Response};

fn wire(fig: &str) -> Vec<u8> {
    fig.replace('\n', "\r\n").into_bytes()
}

const AUTH_1: &str = "MSRP 49fh AUTH
To-Path: msrps://alice@intra.example.com;tcp
From-Path: msrps://alice.example.com:9892/98cjs;tcp
-------49fh$
";

const CHALLENGE_1: &str = "MSRP 49fh 401 Unauthorized
To-Path: msrps://alice.example.com:9892/98cjs;tcp
From-Path: msrps://alice@intra.example.com;tcp
WWW-Authenticate: Digest realm=\"intra.example.com\", qop=\"auth\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\"
-------49fh$
";

const AUTH_2: &str = "MSRP 49fi AUTH
To-Path: msrps://alice@intra.example.com;tcp
From-Path: msrps://alice.example.com:9892/98cjs;tcp
Authorization: Digest username=\"Alice\", realm=\"intra.example.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", response=\"6629fae49393a05397450978507c4ef1\"
-------49fi$
";

const OK_2: &str = "MSRP 49fi 200 OK
To-Path: msrps://alice.example.com:9892/98cjs;tcp
From-Path: msrps://alice@intra.example.com;tcp
Use-Path: msrps://relay.example.com:2855/hjdhfsdf;tcp
Expires: 900
-------49fi$
";

fn parse_req(fig: &str) -> Request {
    match Message::parse(&wire(fig)).unwrap() {
        Message::Request(r) => r,
        m => panic!("not a request: {m:?}"),
    }
}

fn parse_resp(fig: &str) -> Response {
    match Message::parse(&wire(fig)).unwrap() {
        Message::Response(r) => r,
        m => panic!("not a response: {m:?}"),
    }
}

#[test]
fn rfc_exchange_parses() {
    let a1 = parse_req(AUTH_1);
    assert_eq!(a1.method, Method::Auth);
    assert!(a1.body.is_none());
    a1.validate().unwrap();
    assert_eq!(a1.to_bytes(), wire(AUTH_1));
    assert!(auth_credentials(&a1).unwrap().is_none());

    let c1 = parse_resp(CHALLENGE_1);
    assert_eq!(c1.status, 401);
    let ch = c1.headers.challenges();
    assert_eq!(ch.len(), 1);
    assert_eq!(ch[0].realm, "intra.example.com");
    assert_eq!(ch[0].nonce, "dcd98b7102dd2f0e8b11d0f600bfb0c093");
    assert_eq!(ch[0].qop, vec!["auth".to_owned()]);
    assert_eq!(c1.to_bytes(), wire(CHALLENGE_1));

    // the RFC's Authorization has no uri parameter: the digest URI is the To-Path URI
    let a2 = parse_req(AUTH_2);
    let creds = auth_credentials(&a2).unwrap().unwrap();
    assert_eq!(creds.username, "Alice");
    assert_eq!(creds.uri, "msrps://alice@intra.example.com;tcp");
    assert_eq!(creds.nc, Some(1));
    assert_eq!(creds.cnonce.as_deref(), Some("0a4f113b"));
    assert_eq!(creds.response, "6629fae49393a05397450978507c4ef1");

    let ok = parse_resp(OK_2);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.headers.expires().unwrap(), Some(900));
    let use_path = ok.headers.use_path().unwrap().unwrap();
    assert_eq!(use_path[0].host, "relay.example.com");
    assert_eq!(use_path[0].session_id.as_deref(), Some("hjdhfsdf"));
    // the relay's 200 built by our helper is byte-identical
    let ours = auth_ok(&a2, &use_path, 900).unwrap();
    assert_eq!(ours.to_bytes(), wire(OK_2));
    // AUTH is always answered, whatever Failure-Report says
    assert!(response_for(&a2, 200).unwrap().is_some());
}

#[test]
fn digest_round_trip_through_msrp_messages() {
    let relay = MsrpUri::parse("msrps://alice@intra.example.com;tcp").unwrap();
    let local = MsrpUri::parse("msrps://alice.example.com:9892/98cjs;tcp").unwrap();
    let mut rng = StdRng::seed_from_u64(99);
    let mut issuer = NonceIssuer::new([7; 32], Duration::from_secs(300));
    let now = 1_700_000_000;

    // client → relay without credentials; relay challenges
    let first = auth_request(&mut rng, &relay, &local, None);
    let first = match Message::parse(&first.to_bytes()).unwrap() {
        Message::Request(r) => r,
        m => panic!("{m:?}"),
    };
    let challenge = issuer.challenge("intra.example.com", Algorithm::Md5, now, 42, false);
    let resp = auth_challenge(&first, &challenge).unwrap();
    let resp = match Message::parse(&resp.to_bytes()).unwrap() {
        Message::Response(r) => r,
        m => panic!("{m:?}"),
    };
    assert_eq!(resp.headers.to_path().unwrap(), vec![local.clone()]);

    // client answers
    let mut client = DigestClient::new("alice", "secret");
    let creds = client
        .authorize(
            &resp.headers.challenges(),
            "AUTH",
            &relay.to_string(),
            "c0ffee",
        )
        .unwrap();
    let second = auth_request(&mut rng, &relay, &local, Some(&creds));
    let mut f = Framer::default();
    f.push(&second.to_bytes());
    let Some(Message::Request(second)) = f.pop().unwrap() else {
        panic!("no request")
    };

    // relay verifies with the stored HA1
    let got = auth_credentials(&second).unwrap().unwrap();
    assert_eq!(got.uri, auth_digest_uri(&second).unwrap());
    let ha1 = auth::ha1(Algorithm::Md5, "alice", "intra.example.com", "secret");
    assert!(auth::verify(&got, "AUTH", &ha1));
    assert_eq!(
        issuer.check(&got.nonce, got.nc, now + 1),
        NonceStatus::Valid
    );
    let wrong = auth::ha1(Algorithm::Md5, "alice", "intra.example.com", "guess");
    assert!(!auth::verify(&got, "AUTH", &wrong));

    // credentials computed for another relay URI do not verify here
    let mut other = second.clone();
    other
        .headers
        .set("To-Path", "msrps://mallory@intra.example.com;tcp");
    let moved = auth_credentials(&other).unwrap().unwrap();
    assert!(!auth::verify(&moved, "AUTH", &ha1));
}
