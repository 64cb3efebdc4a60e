//! Minimal raw SIP over sockets, independent of Tandem's own stack: liveness probes (OPTIONS), sending arbitrary
//! bytes, and registering a foreign contact with MD5 digest (to put a SIPp UAS into a registrar).

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};

use crate::error::{HarnessError, IoContext, Result};

/// A SIP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
}

impl Transport {
    /// The lower-case name (`udp`, `tcp`, `tls`), as in `--transport` and `;transport=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed SIP response: status code, and the raw header section.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// The whole response text (start line and headers).
    pub text: String,
}

impl RawResponse {
    /// The value of the first header named `name` (case-insensitive, long form only).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers(name).into_iter().next()
    }

    /// The values of every header named `name` (case-insensitive, long form only).
    pub fn headers(&self, name: &str) -> Vec<&str> {
        self.text
            .lines()
            .skip(1)
            .filter_map(|line| {
                let (n, v) = line.split_once(':')?;
                n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
            })
            .collect()
    }
}

fn parse_status(text: &str) -> Option<u16> {
    let first = text.lines().next()?;
    let mut parts = first.split_whitespace();
    (parts.next()? == "SIP/2.0")
        .then(|| parts.next()?.parse().ok())
        .flatten()
}

fn random_token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}{:x}", nanos, std::process::id())
}

/// Sends `request` over UDP from a fresh socket on 127.0.0.1 and returns the first final response (or the first
/// response at all when `final_only` is false).
fn udp_transaction(
    to: SocketAddr,
    make: impl Fn(SocketAddr) -> String,
    timeout: Duration,
) -> Result<RawResponse> {
    let sock = UdpSocket::bind("127.0.0.1:0").ctx(|| "binding a UDP socket".into())?;
    let local = sock.local_addr().ctx(|| "local address".into())?;
    let request = make(local);
    let start = Instant::now();
    let mut next_send = start;
    let mut interval = Duration::from_millis(500);
    let mut buf = vec![0u8; 65_535];
    loop {
        let now = Instant::now();
        if now >= start + timeout {
            return Err(HarnessError::Timeout {
                what: format!("a final response from {to}"),
                waited: timeout,
            });
        }
        if now >= next_send {
            sock.send_to(request.as_bytes(), to)
                .ctx(|| format!("sending to {to}"))?;
            next_send = now + interval;
            interval = (interval * 2).min(Duration::from_secs(4));
        }
        let wait = next_send
            .min(start + timeout)
            .saturating_duration_since(now);
        sock.set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .ctx(|| "setting a read timeout".into())?;
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if let Some(status) = parse_status(&text)
                    && status >= 200
                {
                    return Ok(RawResponse { status, text });
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e).ctx(|| format!("receiving from {to}")),
        }
    }
}

/// Sends `request` over a new TCP connection and returns the first final response.
fn tcp_transaction(
    to: SocketAddr,
    make: impl Fn(SocketAddr) -> String,
    timeout: Duration,
) -> Result<RawResponse> {
    let mut stream =
        TcpStream::connect_timeout(&to, timeout).ctx(|| format!("connecting to {to}"))?;
    let local = stream.local_addr().ctx(|| "local address".into())?;
    stream
        .write_all(make(local).as_bytes())
        .ctx(|| format!("sending to {to}"))?;
    let start = Instant::now();
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        // Responses without a body: each ends at the blank line; skip provisional ones.
        while let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = data.drain(..end + 4).collect();
            let text = String::from_utf8_lossy(&head).into_owned();
            if let Some(status) = parse_status(&text)
                && status >= 200
            {
                return Ok(RawResponse { status, text });
            }
        }
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(HarnessError::Timeout {
                what: format!("a final response from {to} over TCP"),
                waited: timeout,
            });
        }
        stream
            .set_read_timeout(Some(left))
            .ctx(|| "setting a read timeout".into())?;
        match stream.read(&mut buf) {
            Ok(0) => {
                return Err(HarnessError::Protocol {
                    what: to.to_string(),
                    detail: "connection closed before a final response".into(),
                });
            }
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e).ctx(|| format!("reading from {to}")),
        }
    }
}

fn transaction(
    to: SocketAddr,
    transport: Transport,
    make: impl Fn(SocketAddr) -> String,
    timeout: Duration,
) -> Result<RawResponse> {
    match transport {
        Transport::Udp => udp_transaction(to, make, timeout),
        Transport::Tcp => tcp_transaction(to, make, timeout),
        Transport::Tls => Err(HarnessError::Protocol {
            what: to.to_string(),
            detail: "raw helpers do not speak TLS".into(),
        }),
    }
}

/// Sends an OPTIONS to `sip:<to>` and returns the final response (any status proves the peer is alive).
pub fn options(to: SocketAddr, transport: Transport, timeout: Duration) -> Result<RawResponse> {
    let call_id = random_token();
    transaction(
        to,
        transport,
        |local| {
            format!(
                "OPTIONS sip:{to} SIP/2.0\r\n\
                 Via: SIP/2.0/{t} {local};branch=z9hG4bK{call_id};rport\r\n\
                 Max-Forwards: 70\r\n\
                 From: <sip:probe@{local}>;tag={call_id}\r\n\
                 To: <sip:{to}>\r\n\
                 Call-ID: {call_id}@probe\r\n\
                 CSeq: 1 OPTIONS\r\n\
                 Accept: application/sdp\r\n\
                 Content-Length: 0\r\n\r\n",
                t = transport.as_str().to_uppercase()
            )
        },
        timeout,
    )
}

/// Polls `to` with OPTIONS until it answers anything or `timeout` passes.
pub fn wait_until_answers(to: SocketAddr, transport: Transport, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        match options(to, transport, Duration::from_millis(700)) {
            Ok(_) => return Ok(()),
            Err(e) if start.elapsed() >= timeout => {
                return Err(HarnessError::Timeout {
                    what: format!("{to} to answer OPTIONS over {transport} (last: {e})"),
                    waited: timeout,
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Sends an INVITE for `request_uri` with `body` as its SDP (any bytes, e.g. a hostile SDP) over UDP to `to`, waits
/// for the final response, and completes the transaction: an ACK for a non-2xx final, ACK and BYE for a 2xx.
pub fn invite_udp(
    to: SocketAddr,
    request_uri: &str,
    body: &str,
    timeout: Duration,
) -> Result<RawResponse> {
    let call_id = random_token();
    let branch = format!("z9hG4bK{call_id}");
    let from_tag = format!("f{call_id}");
    let invite = |local: SocketAddr| {
        format!(
            "INVITE {request_uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:hostile@127.0.0.1>;tag={from_tag}\r\n\
             To: <{request_uri}>\r\n\
             Call-ID: {call_id}@hostile\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:hostile@{local}>\r\n\
             Content-Type: application/sdp\r\n\
             Content-Length: {len}\r\n\r\n{body}",
            len = body.len()
        )
    };
    let response = udp_transaction(to, invite, timeout)?;
    let to_header = response.header("To").unwrap_or(request_uri).to_string();
    let via = response.header("Via").unwrap_or_default().to_string();
    // The ACK of a non-2xx goes in the INVITE's transaction (same branch); a 2xx gets a new one, then a BYE.
    let sock = UdpSocket::bind("127.0.0.1:0").ctx(|| "binding a UDP socket".into())?;
    let local = sock.local_addr().ctx(|| "local address".into())?;
    let ack_branch = if response.status >= 300 {
        branch.clone()
    } else {
        format!("z9hG4bK{}a", random_token())
    };
    let sent_via = if response.status >= 300 && !via.is_empty() {
        via
    } else {
        format!("SIP/2.0/UDP {local};branch={ack_branch};rport")
    };
    let ack = format!(
        "ACK {request_uri} SIP/2.0\r\nVia: {sent_via}\r\nMax-Forwards: 70\r\n\
         From: <sip:hostile@127.0.0.1>;tag={from_tag}\r\nTo: {to_header}\r\nCall-ID: {call_id}@hostile\r\n\
         CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(ack.as_bytes(), to)
        .ctx(|| format!("sending ACK to {to}"))?;
    if (200..300).contains(&response.status) {
        let bye = format!(
            "BYE {request_uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{}b;rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:hostile@127.0.0.1>;tag={from_tag}\r\nTo: {to_header}\r\n\
             Call-ID: {call_id}@hostile\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
            random_token()
        );
        sock.send_to(bye.as_bytes(), to)
            .ctx(|| format!("sending BYE to {to}"))?;
    }
    Ok(response)
}

/// Sends raw bytes in one UDP datagram.
pub fn send_udp(to: SocketAddr, bytes: &[u8]) -> Result<()> {
    let sock = UdpSocket::bind("127.0.0.1:0").ctx(|| "binding a UDP socket".into())?;
    sock.send_to(bytes, to).ctx(|| format!("sending to {to}"))?;
    Ok(())
}

/// Sends raw bytes over a new TCP connection, lingers briefly for the peer to read them, then closes.
/// Write errors after the connection is up (the peer may close on garbage) are not errors.
pub fn send_tcp(to: SocketAddr, bytes: &[u8]) -> Result<()> {
    let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(3))
        .ctx(|| format!("connecting to {to}"))?;
    let _ = stream.write_all(bytes);
    let _ = stream.flush();
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 4096];
    let _ = stream.read(&mut sink);
    Ok(())
}

/// A foreign-contact registration (e.g. of a SIPp UAS) sent with our own raw client.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The registrar's address.
    pub registrar: SocketAddr,
    /// The AoR user.
    pub user: String,
    /// The AoR domain (also the Request-URI host).
    pub domain: String,
    /// The digest username.
    pub auth_user: String,
    /// The digest password.
    pub password: String,
    /// The contact URI to bind.
    pub contact: String,
    /// Requested expiry in seconds.
    pub expires: u32,
}

/// The parameters of a `WWW-Authenticate`/`Proxy-Authenticate` Digest challenge.
fn challenge_params(value: &str) -> Vec<(String, String)> {
    let rest = value.trim();
    let rest = rest
        .strip_prefix("Digest")
        .or_else(|| rest.strip_prefix("digest"))
        .unwrap_or(rest);
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let name: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if name.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.push((name, value.trim().to_string()));
    }
    params
}

fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Registers `reg.contact` for `sip:user@domain` over UDP, answering one digest challenge (MD5, qop=auth or none).
/// Returns the final response (200 on success).
pub fn register_contact(reg: &Registration, timeout: Duration) -> Result<RawResponse> {
    let call_id = random_token();
    let build = |cseq: u32, auth: Option<&str>| {
        let reg = reg.clone();
        let call_id = call_id.clone();
        let auth = auth.map(str::to_string);
        move |local: SocketAddr| {
            format!(
                "REGISTER sip:{domain} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {local};branch=z9hG4bK{call_id}{cseq};rport\r\n\
                 Max-Forwards: 70\r\n\
                 From: <sip:{user}@{domain}>;tag={call_id}\r\n\
                 To: <sip:{user}@{domain}>\r\n\
                 Call-ID: {call_id}@reg\r\n\
                 CSeq: {cseq} REGISTER\r\n\
                 Contact: <{contact}>\r\n\
                 Expires: {expires}\r\n\
                 {auth}Content-Length: 0\r\n\r\n",
                domain = reg.domain,
                user = reg.user,
                contact = reg.contact,
                expires = reg.expires,
                auth = auth.as_deref().unwrap_or(""),
            )
        }
    };
    let first = udp_transaction(reg.registrar, build(1, None), timeout)?;
    if first.status != 401 && first.status != 407 {
        return Ok(first);
    }
    let (challenge_header, answer_header) = if first.status == 401 {
        ("WWW-Authenticate", "Authorization")
    } else {
        ("Proxy-Authenticate", "Proxy-Authorization")
    };
    // We answer MD5 only: pick the challenge whose algorithm is MD5 (or unspecified, which means MD5).
    let params = first
        .headers(challenge_header)
        .into_iter()
        .map(challenge_params)
        .find(|p| {
            p.iter()
                .find(|(n, _)| n == "algorithm")
                .is_none_or(|(_, v)| v.eq_ignore_ascii_case("MD5"))
        })
        .ok_or_else(|| HarnessError::Protocol {
            what: reg.registrar.to_string(),
            detail: format!("{} without an MD5 {challenge_header}", first.status),
        })?;
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let realm = get("realm").unwrap_or("");
    let nonce = get("nonce").unwrap_or("");
    let uri = format!("sip:{}", reg.domain);
    let ha1 = md5_hex(&format!("{}:{realm}:{}", reg.auth_user, reg.password));
    let ha2 = md5_hex(&format!("REGISTER:{uri}"));
    let qop_auth = get("qop").is_some_and(|q| q.split(',').any(|q| q.trim() == "auth"));
    let mut answer = format!(
        "{answer_header}: Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", algorithm=MD5",
        reg.auth_user
    );
    if qop_auth {
        let cnonce = random_token();
        let response = md5_hex(&format!("{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}"));
        answer.push_str(&format!(
            ", qop=auth, nc=00000001, cnonce=\"{cnonce}\", response=\"{response}\""
        ));
    } else {
        let response = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
        answer.push_str(&format!(", response=\"{response}\""));
    }
    if let Some(opaque) = get("opaque") {
        answer.push_str(&format!(", opaque=\"{opaque}\""));
    }
    answer.push_str("\r\n");
    udp_transaction(reg.registrar, build(2, Some(&answer)), timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let p = challenge_params(
            r#"Digest realm="127.0.0.1", nonce="ab\"c", qop="auth,auth-int", algorithm=MD5, stale=FALSE"#,
        );
        assert_eq!(p[0], ("realm".into(), "127.0.0.1".into()));
        assert_eq!(p[1], ("nonce".into(), "ab\"c".into()));
        assert_eq!(p[2], ("qop".into(), "auth,auth-int".into()));
        assert_eq!(p[3], ("algorithm".into(), "MD5".into()));
        assert_eq!(p[4], ("stale".into(), "FALSE".into()));
    }

    #[test]
    fn rfc2617_md5() {
        // RFC 2617 §3.5's example values.
        let ha1 = md5_hex("Mufasa:testrealm@host.com:Circle Of Life");
        assert_eq!(ha1, "939e7578ed9e3c518a452acee763bce9");
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status("SIP/2.0 200 OK\r\n"), Some(200));
        assert_eq!(parse_status("HTTP/1.1 200 OK\r\n"), None);
        let r = RawResponse {
            status: 401,
            text: "SIP/2.0 401 Unauthorized\r\nwww-authenticate: Digest realm=\"x\"\r\n".into(),
        };
        assert_eq!(r.header("WWW-Authenticate"), Some("Digest realm=\"x\""));
    }
}
