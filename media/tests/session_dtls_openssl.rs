//! DTLS-SRTP in a whole media session against OpenSSL's `s_client`, the DTLS stack baresip
//! uses. Without rtcp-mux baresip runs a second DTLS association from its RTCP port to ours
//! (RFC 5764 §4.1); when that component's ClientHello reached our RTP association first,
//! rtc-dtls kept its client random and signed the RTP client's ServerKeyExchange over it, and
//! OpenSSL refused the flight (`tls_process_key_exchange:bad signature`, alert DecryptError).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tandem_media::codec::{CodecKind, CodecSpec};
use tandem_media::device::{NullCapture, NullPlayback};
use tandem_media::session::{MediaConfig, MediaEvent, MediaSecurity, MediaSession, SessionTuning};
use tandem_media::srtp::{DtlsCertificate, DtlsRole};
use tokio::net::UdpSocket;

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

/// A loopback address with a port that was free a moment ago (for `s_client -bind`).
fn free_addr() -> SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}

/// `openssl s_client` as a DTLS-SRTP client from `bind` to `connect`, its standard output and
/// standard error collected in the background.
fn s_client(pem: &str, bind: SocketAddr, connect: SocketAddr) -> (KillOnDrop, Arc<Mutex<String>>) {
    let mut child = KillOnDrop(
        Command::new("openssl")
            .args([
                "s_client",
                "-dtls1_2",
                "-bind",
                &bind.to_string(),
                "-connect",
                &connect.to_string(),
                "-use_srtp",
                "SRTP_AES128_CM_SHA1_80",
                "-keymatexport",
                "EXTRACTOR-dtls_srtp",
                "-keymatexportlen",
                "60",
                "-cert",
                pem,
                "-key",
                pem,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let output = Arc::new(Mutex::new(String::new()));
    let out = child.0.stdout.take().unwrap();
    let err = child.0.stderr.take().unwrap();
    for reader in [
        Box::new(out) as Box<dyn std::io::Read + Send>,
        Box::new(err) as Box<dyn std::io::Read + Send>,
    ] {
        let sink = Arc::clone(&output);
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines().map_while(Result::ok) {
                let mut o = sink.lock().unwrap();
                o.push_str(&line);
                o.push('\n');
            }
        });
    }
    (child, output)
}

/// One call: our session is the DTLS server without rtcp-mux; a second `s_client` (the
/// peer's RTCP component) says hello to our RTCP port first, then the RTP component's
/// `s_client` must complete its handshake with our RTP port.
async fn handshake_with_rtcp_component_first(pem: &str, client_fingerprint: &str) {
    let rtp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let rtcp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let (peer_rtp, peer_rtcp) = (free_addr(), free_addr());
    let codec = CodecSpec::new(CodecKind::Pcmu, 0);
    let mut cfg = MediaConfig::new(
        Arc::clone(&rtp),
        peer_rtp,
        codec,
        Box::new(NullCapture::new(8000)),
        Box::new(NullPlayback::new(8000)),
    );
    cfg.rtcp_mux = false;
    cfg.rtcp_socket = Some(Arc::clone(&rtcp).into());
    cfg.remote_rtcp = Some(peer_rtcp);
    cfg.security = MediaSecurity::Dtls {
        role: DtlsRole::Server,
        cert: DtlsCertificate::generate().unwrap(),
        remote_fingerprint: client_fingerprint.to_owned(),
    };
    let tuning = SessionTuning::default().with_dtls_timeout(Duration::from_secs(8));
    let (session, mut events) = MediaSession::start_tuned(cfg, tuning).unwrap();

    let (_rtcp_client, _) = s_client(pem, peer_rtcp, rtcp.local_addr().unwrap());
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (_rtp_client, rtp_out) = s_client(pem, peer_rtp, rtp.local_addr().unwrap());

    let deadline = Instant::now() + Duration::from_secs(8);
    let outcome = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(MediaEvent::SecureEstablished)) => break Ok(()),
            Ok(Some(MediaEvent::SecurityFailed(why))) => break Err(why),
            Ok(Some(_)) => {}
            Ok(None) => break Err("session ended".to_owned()),
            Err(_) => break Err("no handshake result in time".to_owned()),
        }
    };
    // OpenSSL agrees: it printed the exported SRTP keys, so it accepted our flight.
    let keyed = async {
        while !rtp_out.lock().unwrap().contains("Keying material: ") {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let openssl_done = tokio::time::timeout(Duration::from_secs(3), keyed).await;
    session.stop().await;
    let said = rtp_out.lock().unwrap().clone();
    assert!(outcome.is_ok(), "{outcome:?}; openssl said:\n{said}");
    assert!(openssl_done.is_ok(), "openssl did not finish:\n{said}");
    assert!(!said.contains("bad signature"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtls_server_ignores_the_rtcp_components_hello_40_handshakes() {
    if !openssl_available() {
        eprintln!("openssl not installed; skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let client_cert = DtlsCertificate::generate().unwrap();
    let pem = dir.path().join("client.pem");
    std::fs::write(&pem, client_cert.to_pem()).unwrap();
    let pem = pem.to_string_lossy().into_owned();
    for round in 0..40 {
        eprintln!("handshake {round}");
        handshake_with_rtcp_component_first(&pem, &client_cert.fingerprint()).await;
    }
}
