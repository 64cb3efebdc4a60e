//! Launching Kamailio (registrar + record-routing proxy, digest auth from SQLite, UDP/TCP/TLS) on free ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::error::{HarnessError, IoContext, Result};
use crate::paths::{render, write};
use crate::ports::free_port;
use crate::process::ChildGuard;
use crate::sip::{Transport, wait_until_answers};

/// How long Kamailio may take to answer its first OPTIONS.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Where Debian's Kamailio SQLite schema files are.
const SCHEMA_DIR: &str = "/usr/share/kamailio/db_sqlite";

/// How to configure Kamailio for a test.
#[derive(Debug, Clone)]
pub struct KamailioOptions {
    /// Subscribers (username, password) in the auth_db table.
    pub users: Vec<(String, String)>,
    /// Challenge REGISTERs (define `WITH_AUTH`).
    pub auth: bool,
    /// Worker processes per transport.
    pub children: u32,
}

impl Default for KamailioOptions {
    fn default() -> Self {
        KamailioOptions {
            users: Vec::new(),
            auth: true,
            children: 2,
        }
    }
}

impl KamailioOptions {
    /// Adds a subscriber.
    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.into(), password.into()));
        self
    }
}

/// A running Kamailio, stopped on drop.
pub struct Kamailio {
    udp: SocketAddr,
    tcp: SocketAddr,
    tls: SocketAddr,
    ca_cert: PathBuf,
    child: ChildGuard,
}

/// Runs a helper tool to completion, failing with its stderr.
pub(crate) fn run_tool(mut cmd: Command, what: &str) -> Result<()> {
    let out = cmd.output().ctx(|| format!("running {what}"))?;
    if !out.status.success() {
        return Err(HarnessError::Tool {
            what: what.to_string(),
            detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr)),
        });
    }
    Ok(())
}

/// Creates a test CA and a server certificate for 127.0.0.1/localhost signed by it, with openssl.
/// Returns (CA certificate, server certificate, server key).
pub fn make_tls_certs(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let ca_key = dir.join("ca.key");
    let ca = dir.join("ca.pem");
    let key = dir.join("key.pem");
    let csr = dir.join("server.csr");
    let cert = dir.join("cert.pem");
    let ext = dir.join("server.ext");
    write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n",
    )?;
    let mut c = Command::new("openssl");
    c.args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ])
    .arg("-keyout")
    .arg(&ca_key)
    .arg("-out")
    .arg(&ca)
    .args(["-days", "3", "-subj", "/CN=Tandem Test CA"]);
    run_tool(c, "openssl req (CA)")?;
    let mut c = Command::new("openssl");
    c.args([
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ])
    .arg("-keyout")
    .arg(&key)
    .arg("-out")
    .arg(&csr)
    .args(["-subj", "/CN=127.0.0.1"]);
    run_tool(c, "openssl req (server)")?;
    let mut c = Command::new("openssl");
    c.args(["x509", "-req", "-in"])
        .arg(&csr)
        .arg("-CA")
        .arg(&ca)
        .arg("-CAkey")
        .arg(&ca_key)
        .args(["-CAcreateserial", "-days", "2", "-out"])
        .arg(&cert)
        .arg("-extfile")
        .arg(&ext);
    run_tool(c, "openssl x509 (sign)")?;
    Ok((ca, cert, key))
}

fn sql_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Creates Kamailio's SQLite database (standard, auth_db, usrloc tables) with the given subscribers.
pub fn make_db(path: &Path, users: &[(String, String)]) -> Result<()> {
    let mut sql = String::new();
    for schema in ["standard", "auth_db", "usrloc"] {
        let file = Path::new(SCHEMA_DIR).join(format!("{schema}-create.sql"));
        sql.push_str(
            &std::fs::read_to_string(&file).ctx(|| format!("reading {}", file.display()))?,
        );
        sql.push('\n');
    }
    for (user, password) in users {
        sql.push_str(&format!(
            "INSERT INTO subscriber (username, domain, password) VALUES ({}, '127.0.0.1', {});\n",
            sql_quote(user),
            sql_quote(password)
        ));
    }
    let script = path.with_extension("sql");
    write(&script, sql)?;
    let mut c = Command::new("sqlite3");
    c.arg(path).arg(format!(".read {}", script.display()));
    run_tool(c, "sqlite3 (Kamailio schema)")
}

impl Kamailio {
    /// Renders `tests/peers/kamailio-test.cfg.in` into `<dir>/kamailio/` with free ports, a fresh SQLite database
    /// and TLS certificate, starts `kamailio -DD -E`, and waits until it answers OPTIONS over UDP and TCP.
    pub fn start(opts: KamailioOptions, dir: &Path) -> Result<Self> {
        let kdir = dir.join("kamailio");
        std::fs::create_dir_all(&kdir).ctx(|| format!("creating {}", kdir.display()))?;
        let (ca_cert, _, _) = make_tls_certs(&kdir)?;
        let tls_cfg = kdir.join("tls.cfg");
        write(
            &tls_cfg,
            render(
                "kamailio-tls.cfg.in",
                &[("DIR", kdir.display().to_string())],
            )?,
        )?;
        let db = kdir.join("kamailio.sqlite");
        make_db(&db, &opts.users)?;
        let (udp, tcp, tls) = (free_port(), free_port(), free_port());
        let cfg = kdir.join("kamailio.cfg");
        write(
            &cfg,
            render(
                "kamailio-test.cfg.in",
                &[
                    ("UDP", udp.to_string()),
                    ("TCP", tcp.to_string()),
                    ("TLS", tls.to_string()),
                    ("DB", db.display().to_string()),
                    ("TLSCFG", tls_cfg.display().to_string()),
                    ("CHILDREN", opts.children.max(1).to_string()),
                ],
            )?,
        )?;
        let runtime = kdir.join("run");
        std::fs::create_dir_all(&runtime).ctx(|| format!("creating {}", runtime.display()))?;
        let mut cmd = Command::new("kamailio");
        cmd.args(["-DD", "-E", "-m", "64", "-M", "8", "-f"])
            .arg(&cfg)
            .arg("-Y")
            .arg(&runtime);
        if opts.auth {
            cmd.args(["-A", "WITH_AUTH"]);
        }
        let child = ChildGuard::spawn("kamailio", cmd, dir)?;
        let mut k = Kamailio {
            udp: SocketAddr::from(([127, 0, 0, 1], udp)),
            tcp: SocketAddr::from(([127, 0, 0, 1], tcp)),
            tls: SocketAddr::from(([127, 0, 0, 1], tls)),
            ca_cert,
            child,
        };
        for transport in [Transport::Udp, Transport::Tcp] {
            let addr = k.addr(transport);
            if let Err(e) = wait_until_answers(addr, transport, READY_TIMEOUT) {
                eprintln!("{}", k.child.tails());
                return Err(e);
            }
        }
        if !k.child.is_running() {
            return Err(HarnessError::Protocol {
                what: "kamailio".into(),
                detail: "exited right after answering".into(),
            });
        }
        Ok(k)
    }

    /// The listener for `transport`.
    pub fn addr(&self, transport: Transport) -> SocketAddr {
        match transport {
            Transport::Udp => self.udp,
            Transport::Tcp => self.tcp,
            Transport::Tls => self.tls,
        }
    }

    /// The CA that signed Kamailio's TLS certificate (for `--ca-file`).
    pub fn ca_cert(&self) -> &Path {
        &self.ca_cert
    }

    /// Whether Kamailio is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.is_running()
    }

    /// Kamailio's process guard (logs).
    pub fn process(&mut self) -> &mut ChildGuard {
        &mut self.child
    }
}
