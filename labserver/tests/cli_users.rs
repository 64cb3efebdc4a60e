//! The `tandem-lab` command line: user and CDR commands, configuration printing, exit codes,
//! and a first and second `serve` start (demo users, lab CA, the `ready` line, an OPTIONS
//! answer and a TLS handshake) against a temporary data dir.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "im_util/lab_proc.rs"]
mod lab_proc;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use lab_proc::{ChildGuard, spawn_until_ready};

use tandem_labserver::config::LabConfig;
use tandem_labserver::store::{Cdr, Store};
use tandem_proto::auth::{self, Algorithm};

const BIN: &str = env!("CARGO_BIN_EXE_tandem-lab");

fn lab(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("TANDEM_LAB_CONFIG")
        .env_remove("TANDEM_LAB_PASSWORD")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

async fn stored_ha1(data_dir: &Path, user: &str, domain: &str) -> Option<String> {
    let store = Store::open_in(data_dir).await.unwrap();
    let ha1 = store.ha1(user, domain, Algorithm::Sha256).await.unwrap();
    store.close().await;
    ha1
}

#[tokio::test]
async fn user_add_list_del() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();

    let out = lab(data, &["user", "add", "alice", "--password", "s3cret"]);
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(stdout(&out), "added alice@tandem.lab\n");
    assert_eq!(
        stored_ha1(data, "alice", "tandem.lab").await,
        Some(auth::ha1(
            Algorithm::Sha256,
            "alice",
            "tandem.lab",
            "s3cret"
        ))
    );

    // A random password is printed, and it is the one stored.
    let out = lab(data, &["user", "add", "bob", "--domain", "Other.Lab"]);
    assert_eq!(code(&out), 0, "{out:?}");
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("added bob@other.lab"));
    let password = lines
        .next()
        .and_then(|l| l.strip_prefix("password: "))
        .expect("a generated password line");
    assert!(password.len() >= 12, "{password}");
    assert_eq!(
        stored_ha1(data, "bob", "other.lab").await,
        Some(auth::ha1(Algorithm::Sha256, "bob", "other.lab", password))
    );

    // Re-adding changes the password.
    let out = lab(data, &["user", "add", "alice", "--password", "new"]);
    assert_eq!(stdout(&out), "updated alice@tandem.lab\n");
    assert_eq!(
        stored_ha1(data, "alice", "tandem.lab").await,
        Some(auth::ha1(Algorithm::Sha256, "alice", "tandem.lab", "new"))
    );

    let out = lab(data, &["user", "list"]);
    assert_eq!(code(&out), 0);
    let listed: Vec<String> = stdout(&out)
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_owned())
        .collect();
    assert_eq!(listed, vec!["bob@other.lab", "alice@tandem.lab"]);

    let out = lab(data, &["user", "del", "alice"]);
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(stdout(&out), "deleted alice@tandem.lab\n");
    let out = lab(data, &["user", "del", "alice"]);
    assert_eq!(code(&out), 1, "deleting a missing user is a runtime error");
    let out = lab(data, &["user", "del", "bob", "--domain", "other.lab"]);
    assert_eq!(code(&out), 0);
    let out = lab(data, &["user", "list"]);
    assert_eq!(stdout(&out), "");
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    for args in [
        &["--no-such-flag"][..],
        &["user"][..],
        &["user", "add"][..],
        &["user", "add", "x y", "--password", "p"][..],
        &["user", "add", "carol", "--password", ""][..],
        &["cdr", "list", "--limit", "-3"][..],
        &["frobnicate"][..],
    ] {
        let out = lab(data, args);
        assert_eq!(code(&out), 2, "{args:?}: {out:?}");
    }
    let out = lab(data, &["--help"]);
    assert_eq!(code(&out), 0);
    assert!(stdout(&out).contains("user"));
}

#[tokio::test]
async fn config_errors_exit_2_and_print_config_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "domian = \"typo.lab\"\n").unwrap();
    let out = lab(&data, &["--config", bad.to_str().unwrap(), "user", "list"]);
    assert_eq!(code(&out), 2, "{out:?}");
    let missing = dir.path().join("missing.toml");
    let out = lab(
        &data,
        &["--config", missing.to_str().unwrap(), "user", "list"],
    );
    assert_eq!(code(&out), 2, "{out:?}");

    let good = dir.path().join("lab.toml");
    std::fs::write(
        &good,
        "domain = \"Lab.Example\"\n[registrar]\nmax_contacts = 3\n[auth]\nrealm = \"Lab Realm\"\ntrusted = [\"10.0.0.0/8\"]\n",
    )
    .unwrap();
    let out = lab(
        &data,
        &["--config", good.to_str().unwrap(), "--print-config"],
    );
    assert_eq!(code(&out), 0, "{out:?}");
    let printed = LabConfig::from_toml_str(&stdout(&out)).unwrap();
    assert_eq!(printed.domain, "lab.example");
    assert_eq!(printed.registrar.max_contacts, 3);
    assert_eq!(printed.data_dir, data, "--data-dir overrides the file");
    assert_eq!(printed.auth.trusted[0].to_string(), "10.0.0.0/8");
    assert!(!data.exists(), "--print-config touches nothing");

    // The configured domain is the default for user commands.
    let out = lab(
        &data,
        &[
            "--config",
            good.to_str().unwrap(),
            "user",
            "add",
            "dave",
            "--password",
            "pw",
        ],
    );
    assert_eq!(stdout(&out), "added dave@lab.example\n");
    // ... and its HA1s are computed for the configured realm.
    let store = Store::open_in(&data).await.unwrap();
    assert_eq!(
        store
            .ha1("dave", "lab.example", Algorithm::Md5)
            .await
            .unwrap(),
        Some(auth::ha1(Algorithm::Md5, "dave", "Lab Realm", "pw"))
    );
    store.close().await;
}

#[tokio::test]
async fn cdr_list_shows_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let out = lab(data, &["cdr", "list"]);
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(stdout(&out), "");

    let store = Store::open_in(data).await.unwrap();
    for (i, cause) in ["answered", "busy", "cancelled"].iter().enumerate() {
        let start = 1_700_000_000_000 + i as i64 * 1000;
        store
            .insert_cdr(&Cdr {
                call_id: format!("call-{i}"),
                caller: "sip:alice@tandem.lab".to_owned(),
                callee: "sip:bob@tandem.lab".to_owned(),
                start_at: start,
                answer_at: (i == 0).then_some(start + 1000),
                end_at: Some(start + 6500),
                cause: (*cause).to_owned(),
                status: Some(if i == 1 { 486 } else { 200 }),
            })
            .await
            .unwrap();
    }
    store.close().await;

    let out = lab(data, &["cdr", "list", "--limit", "2"]);
    assert_eq!(code(&out), 0, "{out:?}");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].contains("call-id=call-2"), "{text}");
    assert!(lines[0].contains("cancelled"));
    assert!(lines[1].contains("call-id=call-1"));
    assert!(lines[1].contains("status=486"));
    let out = lab(data, &["cdr", "list"]);
    let all = stdout(&out);
    assert!(
        all.lines()
            .last()
            .unwrap()
            .starts_with("2023-11-14 22:13:20.000Z\tsip:alice@tandem.lab -> sip:bob@tandem.lab\tanswered\tstatus=200\tduration=5.5s"),
        "{all}"
    );
}

/// Starts `tandem-lab serve` on free ports and collects its stdout up to the `ready …`
/// line; returns the server (still running) and the lines.
fn start_serve(data: &Path, config: &Path) -> (ChildGuard, Vec<String>) {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .arg("serve")
        .env("RUST_LOG", "warn")
        .stderr(Stdio::null());
    spawn_until_ready(cmd, Duration::from_secs(30))
}

#[tokio::test]
async fn serve_creates_demo_users_and_ca_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("lab.toml");
    std::fs::write(
        &config,
        "[listen]\nudp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]\ntls = [\"127.0.0.1:0\"]\n",
    )
    .unwrap();

    let (mut server, lines) = start_serve(&data, &config);
    let ready = ready_addrs(lines.last().unwrap());
    options_over_udp(ready.udp).await;
    tls_handshake(ready.tls, &data.join("ca.pem")).await;
    let status = server.stop();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");

    let ca_line = lines
        .iter()
        .find(|l| l.trim_start().starts_with("lab CA"))
        .expect("the CA path is printed");
    let ca_path = data.join("ca.pem");
    assert!(ca_line.contains(ca_path.to_str().unwrap()), "{ca_line}");
    assert!(ca_path.is_file());
    assert!(lines.iter().any(|l| l.contains("--ca-file")));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("tandem-lab user add alice --password"))
    );

    for user in ["alice", "bob", "carol"] {
        let prefix = format!("{user}@tandem.lab  password: ");
        let password = lines
            .iter()
            .find_map(|l| l.trim_start().strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("password for {user} printed: {lines:#?}"));
        assert_eq!(
            stored_ha1(&data, user, "tandem.lab").await,
            Some(auth::ha1(Algorithm::Sha256, user, "tandem.lab", password)),
            "{user}"
        );
    }
    let ca_pem = std::fs::read_to_string(&ca_path).unwrap();

    // Second start: same CA, no new demo users or passwords, even after one was deleted.
    let out = lab(&data, &["user", "del", "carol"]);
    assert_eq!(code(&out), 0);
    let (mut server, lines) = start_serve(&data, &config);
    assert!(server.stop().success());
    assert!(
        !lines.iter().any(|l| l.contains("password: ")),
        "{lines:#?}"
    );
    assert_eq!(std::fs::read_to_string(&ca_path).unwrap(), ca_pem);
    assert_eq!(stored_ha1(&data, "carol", "tandem.lab").await, None);
}

/// The listener addresses from a `ready udp=… tcp=… tls=…` line.
struct Ready {
    udp: SocketAddr,
    tls: SocketAddr,
}

fn ready_addrs(line: &str) -> Ready {
    let get = |key: &str| -> SocketAddr {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} in {line:?}"))
            .parse()
            .unwrap()
    };
    let ready = Ready {
        udp: get("udp="),
        tls: get("tls="),
    };
    assert_ne!(ready.udp.port(), 0);
    assert_ne!(ready.tls.port(), 0);
    ready
}

/// The running binary answers an OPTIONS on its UDP port.
async fn options_over_udp(server: SocketAddr) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = socket.local_addr().unwrap();
    let request = format!(
        "OPTIONS sip:tandem.lab SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-cli-test-1;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@tandem.lab>;tag=cli1\r\n\
         To: <sip:tandem.lab>\r\n\
         Call-ID: cli-test-options@{local}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    );
    socket.send_to(request.as_bytes(), server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .expect("an answer to OPTIONS")
        .unwrap();
    assert_eq!(from, server);
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("SIP/2.0 "), "{text}");
    assert!(text.contains("cli-test-options@"), "{text}");
}

/// The running binary's TLS port presents the server certificate of the printed lab CA.
async fn tls_handshake(server: SocketAddr, ca_pem: &Path) {
    // Trust exactly the CA file the banner printed, as a softphone would.
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca_pem).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(server).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("tandem.lab").unwrap();
    let tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .expect("TLS handshake in time")
        .expect("the lab CA verifies the server");
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
}
