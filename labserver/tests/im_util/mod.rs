//! Shared helpers for the store-and-forward tests: MESSAGE submission and reception over
//! raw SIP, and a PostgreSQL server for the back-end tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use tandem_labserver::im::STORED_ID_HEADER;
use tandem_proto::msg::{HeaderName, Message, Method, Request, Response};

use crate::sip_util::{DOMAIN, Ua, answer, rand_token};

pub const BOB: &str = "sip:bob@tandem.lab";

/// A MESSAGE from `ua` to `target` (new Call-ID and tag each time).
pub fn message(ua: &mut Ua, target: &str, content_type: &str, body: &str) -> Request {
    ua.call_id = format!("{}@test", rand_token());
    ua.tag = rand_token();
    ua.cseq += 1;
    let text = format!(
        "MESSAGE {target} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: \"Alice A\" <sip:{}@{DOMAIN}>;tag={}\r\nTo: <{target}>\r\nCall-ID: {}\r\nCSeq: {} MESSAGE\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        ua.via(),
        ua.user,
        ua.tag,
        ua.call_id,
        ua.cseq,
        body.len()
    );
    Request::parse(Bytes::from(text)).unwrap()
}

/// Sends `request` answering the 407 with credentials; returns the final response and the
/// request sent last (the one a retransmission would repeat).
pub async fn submit(ua: &mut Ua, request: Request) -> (Response, Request) {
    ua.send(&Message::Request(request.clone())).await;
    let r = ua.response_for(Method::Message).await;
    if r.status != 407 {
        return (r, request);
    }
    let authed = ua.authorize(&request, &r, None);
    ua.send(&Message::Request(authed.clone())).await;
    (ua.response_for(Method::Message).await, authed)
}

/// Receives the next new MESSAGE at `ua` and answers it `status`; retransmissions of MESSAGEs
/// already answered (same Via branch) get the same answer again and are skipped.
pub async fn take_message(ua: &Ua, seen: &mut HashMap<String, u16>, status: u16) -> Request {
    loop {
        let (req, from) = ua.request(10.0).await;
        assert_eq!(req.method, Method::Message, "expected a MESSAGE");
        let branch = req.headers.top_via().unwrap().branch().unwrap().to_string();
        let (known, answer_status) = match seen.get(&branch) {
            Some(s) => (true, *s),
            None => (false, status),
        };
        ua.send_to(
            &Message::Response(answer(&req, answer_status, "bobtag", &ua.contact())),
            from,
        )
        .await;
        if !known {
            seen.insert(branch, status);
            return req;
        }
    }
}

/// Asserts that no new MESSAGE arrives within `secs` (retransmissions are answered).
pub async fn assert_quiet(ua: &Ua, seen: &mut HashMap<String, u16>, secs: f64) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs_f64(secs);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return;
        }
        let Some((Message::Request(req), from)) = ua.recv_within(left.as_secs_f64()).await else {
            return;
        };
        let branch = req.headers.top_via().unwrap().branch().unwrap().to_string();
        let Some(status) = seen.get(&branch) else {
            panic!("unexpected {} with body {:?}", req.method, body(&req));
        };
        ua.send_to(
            &Message::Response(answer(&req, *status, "bobtag", &ua.contact())),
            from,
        )
        .await;
    }
}

pub fn stored_id(req: &Request) -> Option<String> {
    req.headers
        .get_str(&HeaderName::parse(STORED_ID_HEADER))
        .map(str::to_owned)
}

pub fn body(req: &Request) -> String {
    String::from_utf8(req.body.to_vec()).unwrap()
}

/// A second UA for the same user on a new socket (so a spawned task can own it).
pub trait CloneUa {
    async fn clone_ua(&self) -> Ua;
}

impl CloneUa for Ua {
    async fn clone_ua(&self) -> Ua {
        Ua::new(&self.user, &self.password, self.server).await
    }
}

/// A PostgreSQL server for one test: `TANDEM_TEST_POSTGRES_URL` (a fresh database is created
/// on it and dropped afterwards), else a throw-away cluster in a temporary directory (stopped on
/// drop). `None` (test skipped, with a note) when neither is available.
pub struct Postgres {
    /// The URL of the test's database.
    pub url: String,
    cleanup: Option<Cleanup>,
}

enum Cleanup {
    Cluster {
        dir: tempfile::TempDir,
        bin: PathBuf,
        run_as: Option<String>,
    },
    Database {
        admin_url: String,
        name: String,
    },
}

impl Postgres {
    /// Connects to or starts a server; `None` when there is none to be had.
    pub async fn start() -> Option<Postgres> {
        if let Ok(admin_url) = std::env::var("TANDEM_TEST_POSTGRES_URL")
            && !admin_url.is_empty()
        {
            use sqlx::Connection;
            let name = format!("tandem_im_{}_{}", std::process::id(), rand_token());
            let mut conn = sqlx::PgConnection::connect(&admin_url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .execute(&mut conn)
                .await
                .unwrap();
            let (base, query) = admin_url
                .split_once('?')
                .map_or((admin_url.as_str(), None), |(b, q)| (b, Some(q)));
            let host_end = base
                .find("://")
                .map(|i| i + 3)
                .and_then(|s| base[s..].find('/').map(|i| s + i))
                .unwrap_or(base.len());
            let mut url = format!("{}/{name}", &base[..host_end]);
            if let Some(q) = query {
                url = format!("{url}?{q}");
            }
            return Some(Postgres {
                url,
                cleanup: Some(Cleanup::Database { admin_url, name }),
            });
        }
        match start_cluster() {
            Ok((dir, bin, run_as, port)) => Some(Postgres {
                url: format!("postgres://tandem@127.0.0.1:{port}/postgres"),
                cleanup: Some(Cleanup::Cluster { dir, bin, run_as }),
            }),
            Err(why) => {
                eprintln!("SKIPPED: no PostgreSQL (TANDEM_TEST_POSTGRES_URL unset; {why})");
                None
            }
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        match self.cleanup.take() {
            Some(Cleanup::Cluster { dir, bin, run_as }) => {
                let _ = pg_tool(&bin, "pg_ctl", run_as.as_deref())
                    .arg("-D")
                    .arg(dir.path().join("data"))
                    .args(["-m", "immediate", "-w", "stop"])
                    .output();
            }
            Some(Cleanup::Database { admin_url, name }) => {
                // Drop may run inside the test's runtime: clean up on a thread with its own.
                let _ = std::thread::spawn(move || {
                    use sqlx::Connection;
                    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        return;
                    };
                    rt.block_on(async {
                        if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                            let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                            let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                                .execute(&mut conn)
                                .await;
                        }
                    });
                })
                .join();
            }
            None => {}
        }
    }
}

fn pg_tool(bin: &Path, tool: &str, run_as: Option<&str>) -> Command {
    match run_as {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(bin.join(tool));
            c
        }
        None => Command::new(bin.join(tool)),
    }
}

/// initdb + pg_ctl start in a temporary directory (as `postgres`/`nobody` when we are root).
fn start_cluster() -> Result<(tempfile::TempDir, PathBuf, Option<String>, u16), String> {
    let bin = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(
            std::fs::read_dir("/usr/lib/postgresql")
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path().join("bin")),
        )
        .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
        .ok_or("initdb/pg_ctl not found")?;
    let uid = |user: &str| -> Option<u32> {
        let out = Command::new("id").args(["-u", user]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    let is_root = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    };
    let run_as = if is_root {
        ["postgres", "nobody"]
            .into_iter()
            .find(|u| uid(u).is_some())
            .map(str::to_owned)
    } else {
        None
    };
    let dir = tempfile::Builder::new()
        .prefix("tandem-im-pg-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    if let Some(user) = &run_as {
        std::os::unix::fs::chown(dir.path(), uid(user), None).map_err(|e| e.to_string())?;
    }
    let out = pg_tool(&bin, "initdb", run_as.as_deref())
        .arg("-D")
        .arg(dir.path().join("data"))
        .args([
            "-A",
            "trust",
            "-U",
            "tandem",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!("initdb: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let mut last = String::new();
    for _ in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            dir.path().display()
        );
        let out = pg_tool(&bin, "pg_ctl", run_as.as_deref())
            .arg("-D")
            .arg(dir.path().join("data"))
            .arg("-l")
            .arg(dir.path().join("postgres.log"))
            .args(["-w", "-t", "30", "-o", &opts, "start"])
            .output()
            .map_err(|e| format!("pg_ctl: {e}"))?;
        if out.status.success() {
            return Ok((dir, bin, run_as, port));
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
    }
    Err(format!("pg_ctl start: {last}"))
}
