//! DTLS-SRTP interop with an independent implementation: OpenSSL's `s_client` handshakes with
//! our `DtlsSrtp` server over loopback UDP and prints its RFC 5705 export of the SRTP keying
//! material; SRTP keyed from OpenSSL's export must interoperate with our context.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tandem_media::srtp::{CryptoSuite, DtlsCertificate, DtlsRole, DtlsSrtp, SrtpContext};

/// Kills the child process when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn openssl_available() -> bool {
    Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `test` when the `openssl` command is installed; otherwise says the test is skipped.
fn with_openssl(test: impl FnOnce()) {
    if openssl_available() {
        test();
    } else {
        eprintln!("SKIPPED: the openssl command is not installed");
    }
}

/// Starts `openssl` with `args`, collecting its standard output lines in the background.
fn spawn_openssl(args: &[String]) -> (KillOnDrop, Arc<Mutex<String>>) {
    let mut child = KillOnDrop(
        Command::new("openssl")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let output = Arc::new(Mutex::new(String::new()));
    let stdout = child.0.stdout.take().unwrap();
    let sink = Arc::clone(&output);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let mut out = sink.lock().unwrap();
            out.push_str(&line);
            out.push('\n');
        }
    });
    (child, output)
}

/// The keying material OpenSSL printed, once it has.
fn keying_material(output: &Mutex<String>, profile: &str) -> Option<Vec<u8>> {
    let text = output.lock().unwrap().clone();
    let hex = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Keying material: "))?;
    assert!(
        text.contains(&format!("SRTP Extension negotiated, profile={profile}")),
        "{text}"
    );
    Some(hex::decode(hex.trim()).unwrap())
}

/// RFC 5764 §4.2: (client key, client salt, server key, server salt).
fn split(suite: CryptoSuite, m: &[u8]) -> (&[u8], &[u8], &[u8], &[u8]) {
    let (k, s) = (suite.key_len(), suite.salt_len());
    assert_eq!(m.len(), 2 * (k + s));
    (&m[..k], &m[2 * k..2 * k + s], &m[k..2 * k], &m[2 * k + s..])
}

fn check_media(ours: &mut SrtpContext, theirs: &mut SrtpContext) {
    for seq in 0..3 {
        let p = rtp(seq, 0xabc);
        assert_eq!(
            theirs
                .unprotect_rtp(&ours.protect_rtp(&p).unwrap())
                .unwrap(),
            p
        );
        let p = rtp(seq, 0xdef);
        assert_eq!(
            ours.unprotect_rtp(&theirs.protect_rtp(&p).unwrap())
                .unwrap(),
            p
        );
    }
    let rr = [0x80, 201, 0, 1, 0, 0, 0x0a, 0xbc];
    assert_eq!(
        theirs
            .unprotect_rtcp(&ours.protect_rtcp(&rr).unwrap())
            .unwrap(),
        rr
    );
    assert_eq!(ours.auth_failures() + theirs.auth_failures(), 0);
}

fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&160u32.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0x55; 160]);
    p
}

/// OpenSSL's `s_client` as the DTLS client, our `DtlsSrtp` as the server.
fn interop(openssl_profile: &str, suite: CryptoSuite) {
    let dir = tempfile::tempdir().unwrap();
    // OpenSSL's identity: one of our certificates, written out as PEM (certificate + key).
    let client_cert = DtlsCertificate::generate().unwrap();
    let pem_path = dir.path().join("client.pem");
    std::fs::write(&pem_path, client_cert.to_pem()).unwrap();

    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();

    let server_cert = DtlsCertificate::generate().unwrap();
    let mut server =
        DtlsSrtp::new(DtlsRole::Server, server_cert, client_cert.fingerprint()).unwrap();

    let args: Vec<String> = [
        "s_client",
        "-dtls1_2",
        "-connect",
        &format!("127.0.0.1:{port}"),
        "-use_srtp",
        openssl_profile,
        "-keymatexport",
        "EXTRACTOR-dtls_srtp",
        "-keymatexportlen",
        &(2 * suite.key_salt_len()).to_string(),
        "-cert",
        &pem_path.to_string_lossy(),
        "-key",
        &pem_path.to_string_lossy(),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let (child, output) = spawn_openssl(&args);

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut peer = None;
    let mut buf = [0u8; 2048];
    let mut ours: Option<SrtpContext> = None;
    while ours.is_none() {
        assert!(
            Instant::now() < deadline,
            "handshake with openssl timed out"
        );
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            peer = Some(from);
            server.handle_datagram(Instant::now(), &buf[..n]);
        }
        if server.poll_timeout().is_some_and(|t| t <= Instant::now()) {
            server.handle_timeout(Instant::now());
        }
        while let Some(d) = server.poll_transmit() {
            socket.send_to(&d, peer.unwrap()).unwrap();
        }
        if let Some(result) = server.poll_result() {
            match result {
                Ok(ctx) => ours = Some(ctx),
                Err(e) => panic!(
                    "handshake failed: {e}\nopenssl said:\n{}",
                    output.lock().unwrap()
                ),
            }
        }
    }
    let mut ours = ours.unwrap();
    assert_eq!(ours.suite(), suite);

    // OpenSSL prints its exported keying material once the handshake is done.
    let material = loop {
        assert!(Instant::now() < deadline, "no keying material from openssl");
        // Keep answering: openssl may still be waiting for our final flight.
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            server.handle_datagram(Instant::now(), &buf[..n]);
            while let Some(d) = server.poll_transmit() {
                socket.send_to(&d, from).unwrap();
            }
        }
        if let Some(m) = keying_material(&output, openssl_profile) {
            break m;
        }
    };
    drop(child);

    // OpenSSL is the client.
    let (ck, cs, sk, ss) = split(suite, &material);
    let mut theirs = SrtpContext::from_keys(suite, ck, cs, sk, ss).unwrap();
    check_media(&mut ours, &mut theirs);
}

/// OpenSSL's `s_server` as the DTLS server, our `DtlsSrtp` as the client.
fn interop_as_client(openssl_profile: &str, suite: CryptoSuite) {
    let dir = tempfile::tempdir().unwrap();
    let server_cert = DtlsCertificate::generate().unwrap();
    let pem_path = dir.path().join("server.pem");
    std::fs::write(&pem_path, server_cert.to_pem()).unwrap();
    let pem = pem_path.to_string_lossy().to_string();
    let args: Vec<String> = [
        "s_server",
        "-dtls1_2",
        "-accept",
        "127.0.0.1:0",
        "-naccept",
        "1",
        "-use_srtp",
        openssl_profile,
        "-keymatexport",
        "EXTRACTOR-dtls_srtp",
        "-keymatexportlen",
        &(2 * suite.key_salt_len()).to_string(),
        "-cert",
        &pem,
        "-key",
        &pem,
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let (child, output) = spawn_openssl(&args);
    let deadline = Instant::now() + Duration::from_secs(20);
    // s_server binds port 0 and prints the port it got.
    let server_addr = loop {
        assert!(Instant::now() < deadline, "openssl s_server did not start");
        let text = output.lock().unwrap().clone();
        if let Some(addr) = text.lines().find_map(|l| l.strip_prefix("ACCEPT ")) {
            break addr.trim().parse::<std::net::SocketAddr>().unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
    };

    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let client_cert = DtlsCertificate::generate().unwrap();
    let mut client =
        DtlsSrtp::new(DtlsRole::Client, client_cert, server_cert.fingerprint()).unwrap();
    let mut buf = [0u8; 2048];
    let mut ours = None;
    while ours.is_none() {
        assert!(
            Instant::now() < deadline,
            "handshake with openssl timed out"
        );
        while let Some(d) = client.poll_transmit() {
            socket.send_to(&d, server_addr).unwrap();
        }
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            client.handle_datagram(Instant::now(), &buf[..n]);
        }
        if client.poll_timeout().is_some_and(|t| t <= Instant::now()) {
            client.handle_timeout(Instant::now());
        }
        if let Some(result) = client.poll_result() {
            ours = Some(result.unwrap());
        }
    }
    while let Some(d) = client.poll_transmit() {
        socket.send_to(&d, server_addr).unwrap();
    }
    let mut ours = ours.unwrap();
    assert_eq!(ours.suite(), suite);
    let material = loop {
        assert!(Instant::now() < deadline, "no keying material from openssl");
        if let Some(m) = keying_material(&output, openssl_profile) {
            break m;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    drop(child);

    // OpenSSL is the server.
    let (ck, cs, sk, ss) = split(suite, &material);
    let mut theirs = SrtpContext::from_keys(suite, sk, ss, ck, cs).unwrap();
    check_media(&mut ours, &mut theirs);
}

#[test]
fn openssl_server_aes_cm_sha1_80() {
    with_openssl(|| interop_as_client("SRTP_AES128_CM_SHA1_80", CryptoSuite::AesCm128HmacSha1_80));
}

#[test]
fn openssl_server_aead_aes_128_gcm() {
    with_openssl(|| interop_as_client("SRTP_AEAD_AES_128_GCM", CryptoSuite::AeadAes128Gcm));
}

#[test]
fn openssl_client_aes_cm_sha1_80() {
    with_openssl(|| interop("SRTP_AES128_CM_SHA1_80", CryptoSuite::AesCm128HmacSha1_80));
}

#[test]
fn openssl_client_aead_aes_128_gcm() {
    with_openssl(|| interop("SRTP_AEAD_AES_128_GCM", CryptoSuite::AeadAes128Gcm));
}
