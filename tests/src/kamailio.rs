//! Launching Kamailio (registrar + record-routing proxy, digest auth from SQLite, UDP/TCP/TLS) on free ports; with
//! [`KamailioOptions::presence`] also its presence server, resource list server and XCAP server
//! (`tests/peers/kamailio-presence.cfg.in`).

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

/// Where Debian's Kamailio db_text table templates are.
const DBTEXT_DIR: &str = "/usr/share/kamailio/dbtext/kamailio";

/// How to configure Kamailio for a test.
#[derive(Debug, Clone)]
pub struct KamailioOptions {
    /// Subscribers (username, password) in the auth_db table.
    pub users: Vec<(String, String)>,
    /// Challenge REGISTERs (define `WITH_AUTH`).
    pub auth: bool,
    /// Worker processes per transport.
    pub children: u32,
    /// Run the presence configuration (`kamailio-presence.cfg.in`: presence, presence_xml, rls, xcap_server over
    /// xhttp) instead of the plain registrar/proxy.
    pub presence: bool,
    /// With `presence`: every presence subscription is active at once (define `WITH_FORCE_ACTIVE`; no pres-rules).
    pub force_active: bool,
}

impl Default for KamailioOptions {
    fn default() -> Self {
        KamailioOptions {
            users: Vec::new(),
            auth: true,
            children: 2,
            presence: false,
            force_active: false,
        }
    }
}

impl KamailioOptions {
    /// Adds a subscriber.
    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.into(), password.into()));
        self
    }

    /// The presence/RLS/XCAP configuration (see [`KamailioOptions::presence`]).
    pub fn with_presence(mut self) -> Self {
        self.presence = true;
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
    make_db_with(path, users, &["standard", "auth_db", "usrloc"])
}

/// Creates Kamailio's SQLite database from the named schema files (`<name>-create.sql` of Debian's
/// `db_sqlite` directory) with the given subscribers.
pub fn make_db_with(path: &Path, users: &[(String, String)], schemas: &[&str]) -> Result<()> {
    let mut sql = String::new();
    for schema in schemas {
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
        // The rls tables in db_text (see kamailio-presence.cfg.in), from Debian's templates.
        let dbtext = kdir.join("dbtext");
        if opts.presence {
            std::fs::create_dir_all(&dbtext).ctx(|| format!("creating {}", dbtext.display()))?;
            for table in ["rls_presentity", "rls_watchers", "version"] {
                let from = Path::new(DBTEXT_DIR).join(table);
                std::fs::copy(&from, dbtext.join(table))
                    .ctx(|| format!("copying {}", from.display()))?;
            }
        }
        let db = kdir.join("kamailio.sqlite");
        let (template, schemas): (&str, &[&str]) = if opts.presence {
            (
                "kamailio-presence.cfg.in",
                &["standard", "auth_db", "usrloc", "presence", "rls"],
            )
        } else {
            ("kamailio-test.cfg.in", &["standard", "auth_db", "usrloc"])
        };
        make_db_with(&db, &opts.users, schemas)?;
        let (udp, tcp, tls) = (free_port(), free_port(), free_port());
        let cfg = kdir.join("kamailio.cfg");
        write(
            &cfg,
            render(
                template,
                &[
                    ("UDP", udp.to_string()),
                    ("TCP", tcp.to_string()),
                    ("TLS", tls.to_string()),
                    ("DB", db.display().to_string()),
                    ("DBTEXT", dbtext.display().to_string()),
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
        if opts.presence && opts.force_active {
            cmd.args(["-A", "WITH_FORCE_ACTIVE"]);
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

    /// The XCAP root over HTTPS on the TLS listener (`https://127.0.0.1:PORT/xcap-root`; presence configuration).
    pub fn xcap_root(&self) -> String {
        format!("https://{}/xcap-root", self.tls)
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

/// The answer to an XCAP request made with curl.
#[derive(Debug, Clone)]
pub struct XcapReply {
    /// HTTP status.
    pub status: u16,
    /// Response body.
    pub body: String,
}

/// One XCAP request with curl (digest credentials `user:password` when given, the CA file to trust): `method` on
/// `url` with an optional (content type, body). Works against any XCAP server (Kamailio's xcap_server, the lab's).
pub fn curl_xcap(
    method: &str,
    url: &str,
    credentials: Option<(&str, &str)>,
    ca: &Path,
    body: Option<(&str, &str)>,
) -> Result<XcapReply> {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "20",
        "-X",
        method,
        "-w",
        "\n%{http_code}",
    ])
    .arg("--cacert")
    .arg(ca);
    if let Some((user, password)) = credentials {
        cmd.args(["--digest", "-u", &format!("{user}:{password}")]);
    }
    if let Some((content_type, data)) = body {
        cmd.args(["-H", &format!("Content-Type: {content_type}")])
            .args(["--data-binary", data]);
    }
    cmd.arg(url);
    let out = cmd
        .output()
        .ctx(|| format!("running curl {method} {url}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    match code.trim().parse::<u16>() {
        Ok(status) if out.status.success() => Ok(XcapReply {
            status,
            body: body.to_string(),
        }),
        _ => Err(HarnessError::Tool {
            what: format!("curl {method} {url}"),
            detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr)),
        }),
    }
}
