//! An XCAP client for the lab server's tests: `curl` over HTTPS with digest credentials,
//! trusting the lab CA. Included by the XCAP and presence tests (`#[path]`); as a test target
//! of its own it holds no tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;

/// One HTTP exchange's final answer.
#[derive(Debug)]
pub struct HttpReply {
    /// The status code.
    pub status: u16,
    /// The final response's headers (names lower-cased).
    pub headers: Vec<(String, String)>,
    /// The final body.
    pub body: String,
}

impl HttpReply {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The ETag without quotes.
    pub fn etag(&self) -> String {
        self.header("etag")
            .expect("an ETag")
            .trim_matches('"')
            .to_string()
    }
}

/// Talks XCAP to one lab.
pub struct XcapClient {
    /// The XCAP server's address.
    pub addr: SocketAddr,
    /// The lab CA certificate (PEM).
    pub ca_file: PathBuf,
    /// The lab domain (the certificate's name).
    pub domain: String,
}

/// The `xcap=IP:PORT` address of a lab's ready line.
pub fn xcap_addr(ready_line: &str) -> SocketAddr {
    ready_line
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("xcap="))
        .unwrap_or_else(|| panic!("no xcap= in {ready_line:?}"))
        .parse()
        .unwrap()
}

impl XcapClient {
    /// A client for the lab at `addr` whose data directory is `data_dir`.
    pub fn new(addr: SocketAddr, data_dir: &std::path::Path, domain: &str) -> XcapClient {
        XcapClient {
            addr,
            ca_file: data_dir.join("ca.pem"),
            domain: domain.to_string(),
        }
    }

    /// The URL of `path` (below the host, e.g. `/xcap-root/...`).
    pub fn url(&self, path: &str) -> String {
        format!("https://{}:{}{path}", self.domain, self.addr.port())
    }

    /// `path` of `auid` in `user`'s directory.
    pub fn user_path(&self, auid: &str, user: &str, document: &str) -> String {
        format!(
            "/xcap-root/{auid}/users/sip:{user}@{}/{document}",
            self.domain
        )
    }

    /// PUTs `body` as `content_type` to `path`, with an optional precondition header such as
    /// (`If-Match`, `"etag"`) or (`If-None-Match`, `*`).
    pub async fn put(
        &self,
        path: &str,
        auth: Option<(&str, &str)>,
        content_type: &str,
        precondition: Option<(&str, &str)>,
        body: &str,
    ) -> HttpReply {
        let mut headers = vec![("Content-Type", content_type)];
        headers.extend(precondition);
        self.send("PUT", path, auth, &headers, Some(body)).await
    }

    /// Sends one request with curl; `auth` = (user, password) for digest.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        auth: Option<(&str, &str)>,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> HttpReply {
        let dir = tempfile::tempdir().unwrap();
        let head_file = dir.path().join("headers");
        let body_file = dir.path().join("body");
        let mut cmd = tokio::process::Command::new("curl");
        cmd.arg("-sS")
            .arg("--max-time")
            .arg("20")
            .arg("-X")
            .arg(method)
            .arg("--cacert")
            .arg(&self.ca_file)
            .arg("--resolve")
            .arg(format!(
                "{}:{}:{}",
                self.domain,
                self.addr.port(),
                self.addr.ip()
            ))
            .arg("-D")
            .arg(&head_file)
            .arg("-o")
            .arg(&body_file);
        if let Some((u, p)) = auth {
            cmd.arg("--digest").arg("-u").arg(format!("{u}:{p}"));
        }
        for (n, v) in headers {
            cmd.arg("-H").arg(format!("{n}: {v}"));
        }
        if let Some(b) = body {
            let file = dir.path().join("request");
            std::fs::write(&file, b).unwrap();
            cmd.arg("--data-binary").arg(format!("@{}", file.display()));
        }
        cmd.arg(self.url(path));
        cmd.kill_on_drop(true);
        let out = cmd.output().await.expect("curl runs");
        assert!(
            out.status.success(),
            "curl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let raw = std::fs::read_to_string(&head_file).unwrap();
        // With --digest, curl records the 401 and the final response: keep the last block.
        let last = raw
            .split("\r\n\r\n")
            .filter(|b| b.starts_with("HTTP/"))
            .last()
            .expect("a response")
            .to_string();
        let mut lines = last.lines();
        let status_line = lines.next().unwrap();
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let body = std::fs::read_to_string(&body_file).unwrap_or_default();
        HttpReply {
            status,
            headers,
            body,
        }
    }
}
