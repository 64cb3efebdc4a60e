//! DTLS-SRTP: two of our `DtlsSrtp` endpoints handshake on a virtual clock, datagrams pumped
//! between them in memory.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::time::{Duration, Instant};

use tandem_media::srtp::{
    CryptoSuite, DtlsCertificate, DtlsRole, DtlsSrtp, SetupAttr, SrtpContext, SrtpError,
};

type Outcome = Option<Result<SrtpContext, SrtpError>>;

/// Decides whether the n-th datagram (counted per direction) from the client (`true`) or
/// the server (`false`) is lost.
type LossFn<'a> = &'a mut dyn FnMut(bool, usize) -> bool;

/// An owned loss decision, for tables of patterns.
type LossPattern = Box<dyn FnMut(bool, usize) -> bool>;

/// Runs the two endpoints until both have a result or nothing is left to do, losing the
/// datagrams `lose` picks. Returns both outcomes and the virtual time elapsed.
fn pump_lossy(
    client: &mut DtlsSrtp,
    server: &mut DtlsSrtp,
    start: Instant,
    lose: LossFn<'_>,
) -> (Outcome, Outcome, Duration) {
    let mut now = start;
    let (mut c_res, mut s_res) = (None, None);
    let (mut from_client, mut from_server) = (0, 0);
    for _ in 0..1000 {
        let mut moved = false;
        while let Some(d) = client.poll_transmit() {
            moved = true;
            from_client += 1;
            if !lose(true, from_client - 1) {
                server.handle_datagram(now, &d);
            }
        }
        while let Some(d) = server.poll_transmit() {
            moved = true;
            from_server += 1;
            if !lose(false, from_server - 1) {
                client.handle_datagram(now, &d);
            }
        }
        if c_res.is_none() {
            c_res = client.poll_result();
        }
        if s_res.is_none() {
            s_res = server.poll_result();
        }
        if c_res.is_some() && s_res.is_some() {
            break;
        }
        if !moved {
            // Nothing in flight: jump the virtual clock to the next timer.
            let next = [client.poll_timeout(), server.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next else { break };
            now = now.max(next);
            client.handle_timeout(now);
            server.handle_timeout(now);
        }
    }
    (c_res, s_res, now - start)
}

/// [`pump_lossy`] losing the client's first `drop_first` datagrams.
fn pump(
    client: &mut DtlsSrtp,
    server: &mut DtlsSrtp,
    start: Instant,
    drop_first: usize,
) -> (Outcome, Outcome, Duration) {
    pump_lossy(client, server, start, &mut |from_client, n| {
        from_client && n < drop_first
    })
}

fn endpoints(
    client_expects: Option<String>,
    server_expects: Option<String>,
    now: Instant,
) -> (DtlsSrtp, DtlsSrtp) {
    let client_cert = DtlsCertificate::generate().unwrap();
    let server_cert = DtlsCertificate::generate().unwrap();
    let client = DtlsSrtp::new_at(
        DtlsRole::Client,
        client_cert.clone(),
        client_expects.unwrap_or_else(|| server_cert.fingerprint()),
        now,
    )
    .unwrap();
    let server = DtlsSrtp::new_at(
        DtlsRole::Server,
        server_cert,
        server_expects.unwrap_or_else(|| client_cert.fingerprint()),
        now,
    )
    .unwrap();
    (client, server)
}

fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0x60];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&1234u32.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(b"twenty bytes of opus");
    p
}

fn check_media_flows(a: &mut SrtpContext, b: &mut SrtpContext) {
    for seq in 0..5u16 {
        let p = rtp(seq, 1);
        assert_eq!(b.unprotect_rtp(&a.protect_rtp(&p).unwrap()).unwrap(), p);
        let p = rtp(seq, 2);
        assert_eq!(a.unprotect_rtp(&b.protect_rtp(&p).unwrap()).unwrap(), p);
    }
    let rr = [0x80, 201, 0, 1, 0, 0, 0, 1];
    assert_eq!(b.unprotect_rtcp(&a.protect_rtcp(&rr).unwrap()).unwrap(), rr);
    assert_eq!(a.unprotect_rtcp(&b.protect_rtcp(&rr).unwrap()).unwrap(), rr);
    assert_eq!(a.auth_failures() + b.auth_failures(), 0);
}

#[test]
fn certificate_fingerprint_is_sha256_of_the_der() {
    let cert = DtlsCertificate::generate().unwrap();
    let fp = cert.fingerprint();
    let hex = fp.strip_prefix("sha-256 ").unwrap();
    let bytes: Vec<&str> = hex.split(':').collect();
    assert_eq!(bytes.len(), 32);
    assert!(bytes.iter().all(|b| {
        b.len() == 2
            && b.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
    }));
    let other = DtlsCertificate::generate().unwrap();
    assert_ne!(other.fingerprint(), fp);
    // PEM round trip keeps the identity.
    let pem = cert.to_pem();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    assert!(pem.contains("-----BEGIN CERTIFICATE-----\n"));
    let again = DtlsCertificate::from_pem(&pem).unwrap();
    assert_eq!(again.fingerprint(), fp);
    assert_eq!(again.to_pem(), pem);
    // The reloaded identity works in a handshake that checks the original fingerprint.
    let start = Instant::now();
    let peer = DtlsCertificate::generate().unwrap();
    let mut client = DtlsSrtp::new_at(DtlsRole::Client, again, peer.fingerprint(), start).unwrap();
    let mut server = DtlsSrtp::new_at(DtlsRole::Server, peer, fp, start).unwrap();
    let (c, s, _) = pump(&mut client, &mut server, start, 0);
    assert!(matches!((c, s), (Some(Ok(_)), Some(Ok(_)))));

    for bad in [
        "not pem",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----\n",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END CERTIFICATE-----\n",
    ] {
        assert!(
            matches!(
                DtlsCertificate::from_pem(bad),
                Err(SrtpError::Certificate(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn handshake_exports_matching_srtp_keys() {
    let start = Instant::now();
    let (mut client, mut server) = endpoints(None, None, start);
    assert_eq!(client.role(), DtlsRole::Client);
    let (c, s, elapsed) = pump(&mut client, &mut server, start, 0);
    let mut c = c.expect("client finished").unwrap();
    let mut s = s.expect("server finished").unwrap();
    // Our first preference is the AEAD profile.
    assert_eq!(c.suite(), CryptoSuite::AeadAes128Gcm);
    assert_eq!(s.suite(), CryptoSuite::AeadAes128Gcm);
    assert!(
        elapsed < Duration::from_millis(1),
        "no retransmission needed"
    );
    assert!(client.is_finished() && server.is_finished());
    check_media_flows(&mut c, &mut s);
    // Results are handed out once.
    assert!(client.poll_result().is_none());
}

#[test]
fn handshake_survives_a_lost_first_flight() {
    let start = Instant::now();
    let (mut client, mut server) = endpoints(None, None, start);
    let (c, s, elapsed) = pump(&mut client, &mut server, start, 1);
    let mut c = c.unwrap().unwrap();
    let mut s = s.unwrap().unwrap();
    assert!(
        elapsed > Duration::ZERO,
        "the ClientHello had to be retransmitted"
    );
    check_media_flows(&mut c, &mut s);
}

/// An `a=setup:active` answerer's first ClientHello reaches the offerer before the SDP answer
/// and is dropped there: the early resend completes the handshake well before RFC 6347's
/// 1 s retransmission timer would.
#[test]
fn lost_first_hello_is_resent_early() {
    let start = Instant::now();
    let (mut client, mut server) = endpoints(None, None, start);
    let first = client.poll_transmit().unwrap();
    assert!(
        client.poll_transmit().is_none(),
        "one datagram first flight"
    );
    // Lost: the server is not there yet. The virtual clock moves in 10 ms steps.
    let mut now = start;
    let mut copies = 0;
    while now < start + Duration::from_millis(500) {
        now += Duration::from_millis(10);
        if client.poll_timeout().is_some_and(|t| t <= now) {
            client.handle_timeout(now);
        }
        if let Some(d) = client.poll_transmit() {
            assert_eq!(d, first, "the first flight, byte for byte");
            copies += 1;
            server.handle_datagram(now, &d);
            break;
        }
    }
    assert_eq!(copies, 1, "no early resend within 500 ms");
    assert!(
        now - start <= Duration::from_millis(200),
        "resent after {:?}",
        now - start
    );
    let (c, s, elapsed) = pump(&mut client, &mut server, now, 0);
    let mut c = c.unwrap().unwrap();
    let mut s = s.unwrap().unwrap();
    assert!(
        now - start + elapsed < Duration::from_millis(500),
        "handshake took {:?}",
        now - start + elapsed
    );
    check_media_flows(&mut c, &mut s);
}

/// The early resends stop once the peer has answered, and there are two of them at most
/// before the regular retransmission timer (1 s) fires.
#[test]
fn early_resends_are_bounded_and_stop_when_the_peer_answers() {
    let start = Instant::now();
    let (mut client, mut server) = endpoints(None, None, start);
    let first = client.poll_transmit().unwrap();
    let mut copies_of_first = 0;
    server.handle_datagram(start, &first);
    let (c, s, _) = pump(&mut client, &mut server, start, 0);
    assert!(
        matches!((&c, &s), (Some(Ok(_)), Some(Ok(_)))),
        "{c:?} {s:?}"
    );
    // Nothing left to resend after an answered hello.
    for t in [150, 400, 1000] {
        client.handle_timeout(start + Duration::from_millis(t));
        while let Some(d) = client.poll_transmit() {
            if d == first {
                copies_of_first += 1;
            }
        }
    }
    assert_eq!(copies_of_first, 0);

    // Unanswered: exactly two early copies before the 1 s retransmission.
    let cert = DtlsCertificate::generate().unwrap();
    let peer = DtlsCertificate::generate().unwrap().fingerprint();
    let mut lone = DtlsSrtp::new_at(DtlsRole::Client, cert, peer, start).unwrap();
    let mut sent_before_1s = 0;
    let mut now = start;
    while now < start + Duration::from_millis(990) {
        while lone.poll_transmit().is_some() {
            sent_before_1s += 1;
        }
        let Some(t) = lone.poll_timeout() else { break };
        now = now.max(t);
        if now >= start + Duration::from_millis(990) {
            break;
        }
        lone.handle_timeout(now);
    }
    assert_eq!(sent_before_1s, 3, "the hello and two early copies");
}

#[test]
fn handshake_completes_under_loss_in_both_directions() {
    // Deterministic loss patterns: every n-th datagram of one or both directions, a burst.
    let patterns: Vec<(&str, LossPattern)> = vec![
        ("every 2nd from server", Box::new(|c, n| !c && n % 2 == 1)),
        ("every 3rd both ways", Box::new(|_, n| n % 3 == 2)),
        (
            "client 2nd and 3rd",
            Box::new(|c, n| c && (n == 1 || n == 2)),
        ),
    ];
    for (name, mut lose) in patterns {
        let start = Instant::now();
        let (mut client, mut server) = endpoints(None, None, start);
        let (c, s, elapsed) = pump_lossy(&mut client, &mut server, start, &mut *lose);
        let mut c = c
            .unwrap_or_else(|| panic!("{name}: client unfinished"))
            .unwrap_or_else(|e| panic!("{name}: client {e}"));
        let mut s = s
            .unwrap_or_else(|| panic!("{name}: server unfinished"))
            .unwrap_or_else(|e| panic!("{name}: server {e}"));
        assert!(
            elapsed < Duration::from_secs(60),
            "{name}: took {elapsed:?}"
        );
        check_media_flows(&mut c, &mut s);
    }
}

#[test]
fn lost_final_flight_is_resent_by_the_finished_server() {
    // Learn how many datagrams the server sends in a clean handshake...
    let start = Instant::now();
    let (mut client, mut server) = endpoints(None, None, start);
    let mut server_total = 0;
    let (c, s, _) = pump_lossy(&mut client, &mut server, start, &mut |c, _| {
        if !c {
            server_total += 1;
        }
        false
    });
    assert!(matches!((c, s), (Some(Ok(_)), Some(Ok(_)))));
    // ...then lose the last one: the server has finished, the client has not, so the client
    // retransmits its Finished flight and the server must answer it again.
    let (mut client, mut server) = endpoints(None, None, start);
    let (c, s, elapsed) = pump_lossy(&mut client, &mut server, start, &mut |c, n| {
        !c && n == server_total - 1
    });
    let mut c = c.unwrap().unwrap();
    let mut s = s.unwrap().unwrap();
    assert!(elapsed > Duration::ZERO, "the client had to retransmit");
    check_media_flows(&mut c, &mut s);
}

#[test]
fn server_rejects_a_client_whose_fingerprint_does_not_match() {
    let start = Instant::now();
    let stranger = DtlsCertificate::generate().unwrap().fingerprint();
    let (mut client, mut server) = endpoints(None, Some(stranger.clone()), start);
    let (c, s, _) = pump(&mut client, &mut server, start, 0);
    match s {
        Some(Err(SrtpError::FingerprintMismatch { expected, actual })) => {
            assert_eq!(expected, stranger);
            assert_ne!(actual, stranger);
        }
        other => panic!("server outcome {other:?}"),
    }
    // The client never gets keys: the server aborted with an alert, or it times out.
    assert!(!matches!(c, Some(Ok(_))), "client outcome {c:?}");
}

#[test]
fn client_rejects_a_server_whose_fingerprint_does_not_match() {
    let start = Instant::now();
    let stranger = DtlsCertificate::generate().unwrap().fingerprint();
    let (mut client, mut server) = endpoints(Some(stranger), None, start);
    let (c, s, _) = pump(&mut client, &mut server, start, 0);
    assert!(
        matches!(c, Some(Err(SrtpError::FingerprintMismatch { .. }))),
        "client outcome {c:?}"
    );
    assert!(!matches!(s, Some(Ok(_))), "server outcome {s:?}");
}

#[test]
fn unanswered_client_times_out() {
    let start = Instant::now();
    let cert = DtlsCertificate::generate().unwrap();
    let peer = DtlsCertificate::generate().unwrap().fingerprint();
    let mut client = DtlsSrtp::new_at(DtlsRole::Client, cert, peer, start).unwrap();
    let mut now = start;
    let mut sent = 0;
    let mut result = None;
    for _ in 0..200 {
        while client.poll_transmit().is_some() {
            sent += 1;
        }
        if let Some(r) = client.poll_result() {
            result = Some(r);
            break;
        }
        let Some(t) = client.poll_timeout() else {
            break;
        };
        now = now.max(t);
        client.handle_timeout(now);
    }
    assert!(sent > 1, "the ClientHello was retransmitted");
    assert!(
        matches!(result, Some(Err(SrtpError::DtlsTimeout))),
        "{result:?} after {:?}",
        now - start
    );
}

#[test]
fn garbage_is_ignored() {
    let start = Instant::now();
    let (mut client, mut server) = endpoints(None, None, start);
    server.handle_datagram(start, &[0x80, 0, 1, 2]);
    server.handle_datagram(start, &[]);
    server.handle_datagram(start, &[0x16; 3]);
    // A handshake record header whose length runs past the datagram.
    let mut bogus = vec![0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00];
    bogus.extend_from_slice(&[0u8; 20]);
    server.handle_datagram(start, &bogus);
    // A well-framed record of garbage.
    let mut framed = vec![0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 20];
    framed.extend_from_slice(&[0xabu8; 20]);
    server.handle_datagram(start, &framed);
    assert!(server.poll_result().is_none());
    assert!(server.poll_timeout().is_some());
    let (c, s, _) = pump(&mut client, &mut server, start, 0);
    assert!(matches!(c, Some(Ok(_))), "{c:?}");
    assert!(matches!(s, Some(Ok(_))), "{s:?}");
}

#[test]
fn a_stuck_handshake_ends_at_the_deadline() {
    // A forged epoch-0 handshake record reaching the client before the ServerHello confuses
    // rtc-dtls's handshake state; the deadline still guarantees an outcome.
    let start = Instant::now();
    let (mut client, mut server) = endpoints(None, None, start);
    client.set_handshake_timeout(Duration::from_secs(5));
    server.set_handshake_timeout(Duration::from_secs(5));
    let mut framed = vec![0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 20];
    framed.extend_from_slice(&[0xabu8; 20]);
    client.handle_datagram(start, &framed);
    let (c, s, elapsed) = pump(&mut client, &mut server, start, 0);
    assert!(c.is_some(), "the client has an outcome");
    assert!(s.is_some(), "the server has an outcome");
    assert!(elapsed <= Duration::from_secs(5), "{elapsed:?}");
}

#[test]
fn server_waiting_for_a_client_times_out() {
    let start = Instant::now();
    let cert = DtlsCertificate::generate().unwrap();
    let peer = DtlsCertificate::generate().unwrap().fingerprint();
    let mut server = DtlsSrtp::new_at(DtlsRole::Server, cert, peer, start).unwrap();
    assert!(server.poll_transmit().is_none(), "a server speaks second");
    let t = server.poll_timeout().unwrap();
    assert_eq!(t, start + tandem_media::srtp::DEFAULT_HANDSHAKE_TIMEOUT);
    server.handle_timeout(t - Duration::from_millis(1));
    assert!(server.poll_result().is_none());
    server.handle_timeout(t);
    assert_eq!(
        server.poll_result().unwrap().unwrap_err(),
        SrtpError::DtlsTimeout
    );
    assert!(server.poll_timeout().is_none());
}

#[test]
fn bad_fingerprint_attribute_is_an_error() {
    let cert = DtlsCertificate::generate().unwrap();
    for bad in [
        "",
        "sha-256",
        "sha-1 AB:CD",
        "sha-256 zz:yy",
        "sha-256 AB:CD:EF",
    ] {
        assert!(
            matches!(
                DtlsSrtp::new(DtlsRole::Server, cert.clone(), bad.to_owned()),
                Err(SrtpError::BadFingerprint(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn setup_roles() {
    use SetupAttr::*;
    assert_eq!("ACTPASS".parse::<SetupAttr>().unwrap(), ActPass);
    assert!("sometimes".parse::<SetupAttr>().is_err());
    assert_eq!(DtlsRole::offer_setup(), ActPass);
    assert_eq!(DtlsRole::answer_setup(ActPass).unwrap(), Active);
    assert_eq!(DtlsRole::answer_setup(Active).unwrap(), Passive);
    assert_eq!(DtlsRole::answer_setup(Passive).unwrap(), Active);
    assert!(DtlsRole::answer_setup(HoldConn).is_err());

    // We offered actpass; the answer decides.
    assert_eq!(
        DtlsRole::from_setup(ActPass, Active, true).unwrap(),
        DtlsRole::Server
    );
    assert_eq!(
        DtlsRole::from_setup(ActPass, Passive, true).unwrap(),
        DtlsRole::Client
    );
    // We answered.
    assert_eq!(
        DtlsRole::from_setup(ActPass, Active, false).unwrap(),
        DtlsRole::Client
    );
    assert_eq!(
        DtlsRole::from_setup(Active, Passive, false).unwrap(),
        DtlsRole::Server
    );
    // The two sides always end up with opposite roles.
    for (offer, answer) in [
        (ActPass, Active),
        (ActPass, Passive),
        (Active, Passive),
        (Passive, Active),
    ] {
        assert_eq!(
            DtlsRole::from_setup(offer, answer, true).unwrap(),
            DtlsRole::from_setup(offer, answer, false)
                .unwrap()
                .opposite()
        );
    }
    for (offer, answer) in [
        (Active, Active),
        (Passive, Passive),
        (ActPass, ActPass),
        (HoldConn, Active),
        (ActPass, HoldConn),
    ] {
        assert!(
            matches!(
                DtlsRole::from_setup(offer, answer, true),
                Err(SrtpError::BadSetup(_))
            ),
            "{offer} / {answer}"
        );
    }
    assert_eq!(DtlsRole::Client.setup_attr(), Active);
    assert_eq!(DtlsRole::Server.setup_attr(), Passive);
}

#[test]
fn handshake_state_can_move_between_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<DtlsSrtp>();
    assert_send::<DtlsCertificate>();
    assert_send::<SrtpContext>();
}
