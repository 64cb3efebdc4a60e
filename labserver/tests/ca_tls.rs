//! The lab CA: files on disk, reload, re-issue, and real TLS 1.3 handshakes over loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use rustls::ProtocolVersion;
use rustls_pki_types::ServerName;
use tandem_labserver::ca::{CaError, LabCa};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Runs one handshake between `server` and `client` for `name`, sends a ping both ways and
/// returns the negotiated protocol version, or the client's error.
async fn handshake(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    name: &str,
) -> Result<ProtocolVersion, std::io::Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(server);
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = acceptor.accept(tcp).await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping");
        tls.write_all(b"pong").await?;
        tls.shutdown().await?;
        Ok::<_, std::io::Error>(())
    });
    let connector = TlsConnector::from(client);
    let server_name = ServerName::try_from(name.to_owned()).unwrap();
    let result = async {
        let tcp = TcpStream::connect(addr).await?;
        let mut tls = connector.connect(server_name, tcp).await?;
        let version = tls.get_ref().1.protocol_version();
        tls.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"pong");
        Ok::<_, std::io::Error>(version.unwrap())
    }
    .await;
    match &result {
        Ok(_) => server_task.await.unwrap().unwrap(),
        Err(_) => server_task.abort(),
    }
    result
}

#[tokio::test]
async fn tls13_handshake_between_server_and_client_configs() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("tls");
    let ca = LabCa::load_or_create(&ca_dir, &names(&["tandem.lab", "alias.lab"])).unwrap();

    for file in ["ca.pem", "ca.key", "server.pem", "server.key"] {
        assert!(ca_dir.join(file).is_file(), "{file} written");
    }
    assert_eq!(mode(&ca_dir.join("ca.key")), 0o600);
    assert_eq!(mode(&ca_dir.join("server.key")), 0o600);
    assert_eq!(mode(&ca_dir), 0o700);
    assert_eq!(ca.ca_pem_path(), ca_dir.join("ca.pem"));
    assert_eq!(
        ca.ca_cert_pem(),
        std::fs::read_to_string(ca_dir.join("ca.pem")).unwrap()
    );
    assert!(ca.ca_cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    for want in ["tandem.lab", "alias.lab", "localhost", "127.0.0.1", "::1"] {
        assert!(
            ca.server_names().iter().any(|n| n == want),
            "{want} in {:?}",
            ca.server_names()
        );
    }

    let server = ca.server_config().unwrap();
    let client = ca.client_config().unwrap();
    for name in ["tandem.lab", "alias.lab", "localhost", "127.0.0.1", "::1"] {
        let version = handshake(server.clone(), client.clone(), name)
            .await
            .unwrap_or_else(|e| panic!("handshake for {name}: {e}"));
        assert_eq!(version, ProtocolVersion::TLSv1_3, "{name}");
    }

    // A name the certificate does not carry is refused by the client.
    let err = handshake(server.clone(), client.clone(), "evil.example")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[tokio::test]
async fn client_trusts_only_its_own_lab_ca() {
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    let ca1 = LabCa::load_or_create(one.path(), &names(&["tandem.lab"])).unwrap();
    let ca2 = LabCa::load_or_create(two.path(), &names(&["tandem.lab"])).unwrap();
    assert_ne!(ca1.ca_cert_pem(), ca2.ca_cert_pem());
    let result = handshake(
        ca2.server_config().unwrap(),
        ca1.client_config().unwrap(),
        "tandem.lab",
    )
    .await;
    assert!(result.is_err(), "a foreign CA's server must be rejected");
}

#[tokio::test]
async fn reload_keeps_everything_and_new_names_reissue_only_the_server_cert() {
    let dir = tempfile::tempdir().unwrap();
    let first = LabCa::load_or_create(dir.path(), &names(&["tandem.lab"])).unwrap();
    let ca_key = std::fs::read(dir.path().join("ca.key")).unwrap();

    let again = LabCa::load_or_create(dir.path(), &names(&["tandem.lab"])).unwrap();
    assert_eq!(again.ca_cert_pem(), first.ca_cert_pem());
    assert_eq!(again.server_cert_der(), first.server_cert_der());

    let wider =
        LabCa::load_or_create(dir.path(), &names(&["tandem.lab", "new-alias.lab"])).unwrap();
    assert_eq!(wider.ca_cert_pem(), first.ca_cert_pem(), "same CA");
    assert_eq!(std::fs::read(dir.path().join("ca.key")).unwrap(), ca_key);
    assert_ne!(
        wider.server_cert_der(),
        first.server_cert_der(),
        "re-issued"
    );
    // The old client config (same CA) accepts the re-issued certificate for the new name.
    let version = handshake(
        wider.server_config().unwrap(),
        first.client_config().unwrap(),
        "new-alias.lab",
    )
    .await
    .unwrap();
    assert_eq!(version, ProtocolVersion::TLSv1_3);
}

#[tokio::test]
async fn damaged_server_files_are_replaced_and_loose_key_modes_tightened() {
    let dir = tempfile::tempdir().unwrap();
    let first = LabCa::load_or_create(dir.path(), &names(&["tandem.lab"])).unwrap();

    std::fs::set_permissions(
        dir.path().join("server.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let _ = LabCa::load_or_create(dir.path(), &names(&["tandem.lab"])).unwrap();
    assert_eq!(mode(&dir.path().join("server.key")), 0o600);

    std::fs::write(dir.path().join("server.pem"), b"garbage").unwrap();
    let repaired = LabCa::load_or_create(dir.path(), &names(&["tandem.lab"])).unwrap();
    assert_eq!(repaired.ca_cert_pem(), first.ca_cert_pem());
    assert_ne!(repaired.server_cert_der(), first.server_cert_der());
    handshake(
        repaired.server_config().unwrap(),
        repaired.client_config().unwrap(),
        "tandem.lab",
    )
    .await
    .unwrap();

    // A server key that does not belong to the certificate is replaced too.
    let other = tempfile::tempdir().unwrap();
    let _ = LabCa::load_or_create(other.path(), &names(&["tandem.lab"])).unwrap();
    std::fs::copy(
        other.path().join("server.key"),
        dir.path().join("server.key"),
    )
    .unwrap();
    let rekeyed = LabCa::load_or_create(dir.path(), &names(&["tandem.lab"])).unwrap();
    assert_ne!(rekeyed.server_cert_der(), repaired.server_cert_der());
    handshake(
        rekeyed.server_config().unwrap(),
        rekeyed.client_config().unwrap(),
        "tandem.lab",
    )
    .await
    .unwrap();
}

#[test]
fn a_half_missing_ca_is_an_error_not_a_silent_new_ca() {
    let dir = tempfile::tempdir().unwrap();
    LabCa::load_or_create(dir.path(), &names(&["tandem.lab"])).unwrap();
    std::fs::remove_file(dir.path().join("ca.key")).unwrap();
    assert!(matches!(
        LabCa::load_or_create(dir.path(), &names(&["tandem.lab"])),
        Err(CaError::IncompleteCa { .. })
    ));
    assert!(
        dir.path().join("ca.pem").exists(),
        "nothing was overwritten"
    );

    let bad = tempfile::tempdir().unwrap();
    std::fs::write(bad.path().join("ca.pem"), b"not pem").unwrap();
    std::fs::write(bad.path().join("ca.key"), b"not pem").unwrap();
    assert!(LabCa::load_or_create(bad.path(), &names(&["tandem.lab"])).is_err());
}
