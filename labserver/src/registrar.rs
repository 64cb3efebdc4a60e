//! The registrar (RFC 3261 §10).
//!
//! [`Registrar::handle`] runs the steps of RFC 3261 §10.3 on one REGISTER: domain check,
//! authentication and authorization, the AoR from `To`, Contact/Expires processing with
//! Call-ID/CSeq ordering per binding, and the 200 listing every current binding. The bindings live in
//! the [`Location`] service, which persists them behind the scenes. [`LocalDomains`] answers "is
//! this host one of ours" for the registrar, the proxy and the server.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tandem_proto::msg::{ContactValue, HeaderName, Host, Request, Response, Scheme, Uri};
use tandem_proto::{Flow, Transport};

use crate::authn::{AuthRole, Authenticator, Identity};
use crate::location::{Location, unix_now};
use crate::store::Binding;

/// The set of hosts and ports that address this server.
#[derive(Debug, Clone)]
pub struct LocalDomains {
    domain: String,
    names: HashSet<String>,
    ips: HashSet<IpAddr>,
    ports: HashSet<u16>,
}

impl LocalDomains {
    /// Local domains: `domain` (the primary one) plus `names` (aliases, `localhost`, local IP
    /// addresses as text) and the listener addresses; `listeners` also give the ports that
    /// identify us in Route and Via headers.
    pub fn new(domain: &str, names: &[String], listeners: &[SocketAddr]) -> LocalDomains {
        let mut set: HashSet<String> = HashSet::new();
        let mut ips: HashSet<IpAddr> = HashSet::new();
        for n in names
            .iter()
            .map(String::as_str)
            .chain([domain, "localhost"])
        {
            let n = n
                .trim()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase();
            match n.parse::<IpAddr>() {
                Ok(ip) => {
                    ips.insert(ip);
                }
                Err(_) => {
                    set.insert(n);
                }
            }
        }
        for l in listeners {
            if !l.ip().is_unspecified() {
                ips.insert(l.ip());
            }
        }
        let ports = listeners.iter().map(|l| l.port()).collect();
        LocalDomains {
            domain: domain.to_ascii_lowercase(),
            names: set,
            ips,
            ports,
        }
    }

    /// The primary domain (the one AoRs of every local domain are canonicalised to).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// True when `host` names this server (a local domain, alias or address).
    pub fn is_local_host(&self, host: &Host) -> bool {
        match host {
            Host::Domain(d) => {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                self.names.contains(&d) || d.parse::<IpAddr>().is_ok_and(|ip| self.is_local_ip(ip))
            }
            Host::V4(ip) => self.is_local_ip(IpAddr::V4(*ip)),
            Host::V6(ip) => self.is_local_ip(IpAddr::V6(*ip)),
        }
    }

    fn is_local_ip(&self, ip: IpAddr) -> bool {
        ip.is_loopback() || self.ips.contains(&ip)
    }

    /// True when `uri` addresses this server itself (a local host and one of our ports, or no
    /// port where we listen on a default port): a Route or Record-Route we inserted.
    pub fn is_us(&self, uri: &Uri) -> bool {
        if !self.is_local_host(&uri.host) {
            return false;
        }
        match uri.port {
            Some(p) => self.ports.contains(&p),
            None => {
                let default = if uri.scheme == Scheme::Sips
                    || uri.transport_param() == Some(Transport::Tls)
                {
                    5061
                } else {
                    5060
                };
                self.ports.contains(&default) || matches!(uri.host, Host::Domain(_))
            }
        }
    }

    /// The canonical AoR `sip:user@<primary domain>` of a URI in a local domain with a user part.
    pub fn canonical_aor(&self, uri: &Uri) -> Option<String> {
        let user = uri.user.as_deref().filter(|u| !u.is_empty())?;
        if !is_sip_scheme(uri) || !self.is_local_host(&uri.host) {
            return None;
        }
        Some(format!(
            "sip:{}@{}",
            uri.user_unescaped().unwrap_or_else(|| user.to_string()),
            self.domain
        ))
    }
}

/// True for `sip:` and `sips:` URIs.
pub fn is_sip_scheme(uri: &Uri) -> bool {
    matches!(uri.scheme, Scheme::Sip | Scheme::Sips)
}

/// Registrar policy settings (from `[registrar]`).
#[derive(Debug, Clone)]
pub struct RegistrarSettings {
    /// Shortest accepted non-zero expiry; shorter ones get 423.
    pub min_expires: u32,
    /// Longest granted expiry; longer requests are shortened.
    pub max_expires: u32,
    /// Expiry when the request asks for none.
    pub default_expires: u32,
    /// Maximum bindings per AoR.
    pub max_contacts: usize,
    /// Users allowed to register bindings for any AoR of a local domain.
    pub third_party: Vec<String>,
    /// The keep-alive interval announced to RFC 5626 outbound UAs (`Flow-Timer`), seconds.
    pub flow_timer: u32,
}

/// The REGISTER handler.
pub struct Registrar {
    settings: RegistrarSettings,
    location: Location,
    authn: Arc<Authenticator>,
    locals: Arc<LocalDomains>,
}

/// One Contact of a REGISTER, evaluated.
struct NewContact {
    uri: Uri,
    key: String,
    expires: u32,
    q: Option<f32>,
    instance: Option<String>,
    reg_id: Option<u32>,
    features: Option<String>,
}

impl Registrar {
    /// A registrar over `location`, authenticating with `authn`.
    pub fn new(
        settings: RegistrarSettings,
        location: Location,
        authn: Arc<Authenticator>,
        locals: Arc<LocalDomains>,
    ) -> Registrar {
        Registrar {
            settings,
            location,
            authn,
            locals,
        }
    }

    /// Processes one REGISTER received on `flow` and returns the final response (RFC 3261 §10.3).
    pub async fn handle(&self, request: &Request, flow: Flow) -> Response {
        // Step 1: the Request-URI must name one of our domains.
        if let Some(r) = check_domain(request, &self.locals) {
            return r;
        }
        // Step 3: authentication.
        match self
            .authn
            .authenticate(request, AuthRole::Registrar, flow.remote.ip())
            .await
        {
            Ok(identity) => self.authenticated(request, flow, &identity),
            Err(challenge) => *challenge,
        }
    }

    /// Like [`Registrar::handle`], without waiting: `None` when authentication needs the store
    /// (an HA1 not in the cache); then call `handle`. Saves spawning a task for most REGISTERs.
    pub fn handle_now(&self, request: &Request, flow: Flow) -> Option<Response> {
        if let Some(r) = check_domain(request, &self.locals) {
            return Some(r);
        }
        Some(
            match self
                .authn
                .authenticate_cached(request, AuthRole::Registrar, flow.remote.ip())?
            {
                Ok(identity) => self.authenticated(request, flow, &identity),
                Err(challenge) => *challenge,
            },
        )
    }

    /// Steps 4 to 8 of RFC 3261 §10.3 for a request from `identity`.
    fn authenticated(&self, request: &Request, flow: Flow, identity: &Identity) -> Response {
        // Step 5: the address-of-record from To.
        let Ok(to) = request.headers.to() else {
            return reply(request, 400, "Missing or Bad To");
        };
        let Some(aor) = self.locals.canonical_aor(&to.uri) else {
            return reply(request, 404, "Not Found");
        };
        let aor_user = to.uri.user.clone().unwrap_or_default();
        // Step 4: authorization. A user registers its own AoR; users listed in
        // `registrar.third_party` (and trusted sources) may register any AoR of a local domain.
        if let Identity::User(user) = identity
            && user != &aor_user
            && !self.settings.third_party.iter().any(|t| t == user)
        {
            return reply(request, 403, "Not Allowed To Register This AoR");
        }
        let Ok(call_id) = request.headers.call_id().map(str::to_string) else {
            return reply(request, 400, "Missing Call-ID");
        };
        let Ok(cseq) = request.headers.cseq() else {
            return reply(request, 400, "Missing CSeq");
        };
        let Ok(contacts) = request.headers.contacts() else {
            return reply(request, 400, "Bad Contact");
        };
        let Ok(header_expires) = request.headers.expires() else {
            return reply(request, 400, "Bad Expires");
        };
        let now = unix_now();
        let outbound = has_option_tag(request, &HeaderName::Supported, "outbound");

        let star = contacts.iter().any(|c| matches!(c, ContactValue::Star));
        let outcome = if star {
            // Step 6: "*" must be alone and come with Expires: 0.
            if contacts.len() != 1 || header_expires != Some(0) {
                return reply(request, 400, "Invalid Wildcard Contact");
            }
            self.location.update(&aor, now, |bindings| {
                for b in bindings.iter() {
                    if b.call_id == call_id && cseq.seq <= b.cseq {
                        return Err(500u16);
                    }
                }
                bindings.clear();
                Ok(())
            })
        } else if contacts.is_empty() {
            Ok(())
        } else {
            let new = match self.evaluate_contacts(&contacts, header_expires) {
                Ok(mut n) => {
                    // RFC 5626 §6: reg-id counts only when the UA supports outbound, and only
                    // when we are its first hop (one Via, or a Path our edge marked `ob`).
                    if !outbound {
                        for c in &mut n {
                            c.reg_id = None;
                        }
                    } else if n.iter().any(|c| c.reg_id.is_some()) && !first_hop(request) {
                        return reply(request, 439, "First Hop Lacks Outbound Support");
                    }
                    n
                }
                Err(EvalError::TooBrief) => {
                    let mut r = reply(request, 423, "Interval Too Brief");
                    r.headers.push(
                        HeaderName::MinExpires,
                        self.settings.min_expires.to_string(),
                    );
                    return r;
                }
                Err(EvalError::Bad(what)) => return reply(request, 400, what),
            };
            let user_agent = request
                .headers
                .get_str(&HeaderName::UserAgent)
                .map(str::to_string);
            let flow_text = flow.to_string();
            let direct_udp = sent_from_own_address(request, flow);
            let max_contacts = self.settings.max_contacts;
            self.location.update(&aor, now, |bindings| {
                for c in &new {
                    // RFC 5626: the same instance and reg-id replace an older flow's binding.
                    if let (Some(inst), Some(reg)) = (&c.instance, c.reg_id) {
                        bindings.retain(|b| {
                            b.contact == c.key
                                || b.instance.as_deref() != Some(inst.as_str())
                                || b.reg_id != Some(reg)
                        });
                    }
                    let existing = bindings.iter().position(|b| {
                        b.contact == c.key
                            || Uri::parse(&b.contact).is_ok_and(|u| u.equivalent(&c.uri))
                    });
                    if let Some(i) = existing {
                        let b = &bindings[i];
                        if b.call_id == call_id && cseq.seq <= b.cseq {
                            return Err(500u16);
                        }
                        if c.expires == 0 {
                            bindings.remove(i);
                            continue;
                        }
                        bindings.remove(i);
                    } else if c.expires == 0 {
                        continue;
                    }
                    bindings.push(Binding {
                        aor: aor.clone(),
                        contact: c.key.clone(),
                        expires_at: now + i64::from(c.expires),
                        q: c.q,
                        call_id: call_id.clone(),
                        cseq: cseq.seq,
                        // A UA that is not behind a NAT registering another address (a
                        // third-party registration, or a listener on another port) is reached
                        // at its Contact, not over the REGISTER's flow.
                        flow: (!(direct_udp
                            && c.reg_id.is_none()
                            && !c.uri.has_param("ob")
                            && crate::location::contact_differs_from_flow(&c.uri, flow)
                            && reachable_beside(&c.uri, flow)))
                        .then(|| flow_text.clone()),
                        user_agent: user_agent.clone(),
                        instance: c.instance.clone(),
                        reg_id: c.reg_id,
                        features: c.features.clone(),
                    });
                }
                if bindings.len() > max_contacts {
                    return Err(403u16);
                }
                Ok(())
            })
        };
        match outcome {
            Ok(()) => {}
            Err(500) => return reply(request, 500, "Out Of Order Request"),
            Err(403) => return reply(request, 403, "Too Many Contacts"),
            Err(code) => return reply(request, code, "Registration Failed"),
        }
        // Step 8: 200 with every current binding.
        let mut response = reply(request, 200, "OK");
        let flow_used = outbound
            && contacts.iter().any(|c| match c {
                ContactValue::Addr(na) => {
                    na.param("reg-id").is_some() && na.param("+sip.instance").is_some()
                }
                ContactValue::Star => false,
            });
        if flow_used {
            // RFC 5626 §6: the flow is in use; §4.4.1: how often the UA must keep it alive.
            response.headers.push(HeaderName::Require, "outbound");
            response.headers.push(
                HeaderName::Other("Flow-Timer".into()),
                self.settings.flow_timer.to_string(),
            );
        }
        response.headers.push(HeaderName::Supported, "outbound");
        let mut current = self.location.lookup(&aor, now);
        crate::location::sort_by_preference(&mut current);
        for b in &current {
            let remaining = (b.expires_at - now).max(0);
            let mut value = format!("<{}>;expires={}", b.contact, remaining);
            if let Some(q) = b.q {
                value.push_str(&format!(";q={}", format_q(q)));
            }
            if let Some(inst) = &b.instance {
                value.push_str(&format!(";+sip.instance={inst}"));
            }
            if let Some(r) = b.reg_id {
                value.push_str(&format!(";reg-id={r}"));
            }
            response.headers.push(HeaderName::Contact, value);
        }
        response
            .headers
            .push(HeaderName::Date, http_date(unix_now()));
        response
    }

    fn evaluate_contacts(
        &self,
        contacts: &[ContactValue],
        header_expires: Option<u32>,
    ) -> Result<Vec<NewContact>, EvalError> {
        let mut out = Vec::with_capacity(contacts.len());
        for c in contacts {
            let ContactValue::Addr(na) = c else {
                return Err(EvalError::Bad("Invalid Wildcard Contact"));
            };
            let requested = na
                .expires()
                .or(header_expires)
                .unwrap_or(self.settings.default_expires);
            if requested != 0 && requested < self.settings.min_expires {
                return Err(EvalError::TooBrief);
            }
            let expires = requested.min(self.settings.max_expires);
            let q = match na.param("q").flatten() {
                Some(v) => match v.trim().parse::<f32>() {
                    Ok(q) if (0.0..=1.0).contains(&q) => Some(q),
                    _ => return Err(EvalError::Bad("Invalid q Value")),
                },
                None => None,
            };
            let instance = na.param("+sip.instance").flatten().map(str::to_string);
            let reg_id = na
                .param("reg-id")
                .flatten()
                .and_then(|v| v.trim().parse::<u32>().ok());
            // The same contact listed twice: the last one counts.
            out.retain(|c: &NewContact| !c.uri.equivalent(&na.uri));
            out.push(NewContact {
                key: na.uri.to_string(),
                uri: na.uri.clone(),
                expires,
                q,
                instance,
                reg_id,
                features: crate::location::feature_text(&na.params),
            });
        }
        Ok(out)
    }
}

/// True when a header of `request` (comma-separated option tags) lists `tag`.
pub fn has_option_tag(request: &Request, name: &HeaderName, tag: &str) -> bool {
    request.headers.get_all(name).any(|v| {
        String::from_utf8_lossy(v)
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case(tag))
    })
}

/// RFC 5626 §6: we are the UA's first hop when the REGISTER has exactly one Via. (Path,
/// RFC 3327, is not supported: an edge proxy between the UA and us means no outbound flow.)
/// True when a UDP REGISTER came straight from its sender's own address: one Via whose
/// sent-by (port 5060 when absent) is the flow's source, so the UA is not behind a NAT.
fn sent_from_own_address(request: &Request, flow: Flow) -> bool {
    if flow.transport != Transport::Udp {
        return false;
    }
    let Ok(vias) = request.headers.vias() else {
        return false;
    };
    let [via] = vias.as_slice() else {
        return false;
    };
    via.host == Host::from(flow.remote.ip()) && via.port.unwrap_or(5060) == flow.remote.port()
}

/// True when a Contact other than `flow` can be reached as registered: on the flow's own host
/// (another port) or at a public address; a private address elsewhere cannot.
fn reachable_beside(contact: &Uri, flow: Flow) -> bool {
    let ip = match &contact.host {
        Host::V4(ip) => IpAddr::V4(*ip),
        Host::V6(ip) => IpAddr::V6(*ip),
        Host::Domain(_) => return true,
    };
    ip == flow.remote.ip() || !crate::nat::is_private_ip(ip)
}

fn first_hop(request: &Request) -> bool {
    request.headers.vias().is_ok_and(|v| v.len() == 1)
}

/// Step 1 of RFC 3261 §10.3: a 403 unless the Request-URI names one of our domains.
fn check_domain(request: &Request, locals: &LocalDomains) -> Option<Response> {
    (!is_sip_scheme(&request.uri) || !locals.is_local_host(&request.uri.host))
        .then(|| reply(request, 403, "Domain Not Served Here"))
}

enum EvalError {
    TooBrief,
    Bad(&'static str),
}

fn format_q(q: f32) -> String {
    let s = format!("{q:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// A response to `request` with `status` and `reason`, with a To tag added when missing.
pub fn reply(request: &Request, status: u16, reason: &str) -> Response {
    let mut r = Response::for_request(request, status);
    r.reason = reason.to_string();
    ensure_to_tag(&mut r);
    r
}

/// Adds a random tag to the To header of a locally generated response when it has none.
pub fn ensure_to_tag(response: &mut Response) {
    let has_no_tag = response.headers.to().is_ok_and(|to| to.tag().is_none());
    let Some(raw) = response.headers.get(&HeaderName::To).filter(|_| has_no_tag) else {
        return;
    };
    // Appending `;tag=` to the value as received is exact: a URI with parameters is always
    // inside `<>` (RFC 3261 §20), so trailing parameters are header parameters. This avoids
    // re-serialising the whole header.
    let raw = raw.trim_ascii_end();
    let mut value = Vec::with_capacity(raw.len() + 21);
    value.extend_from_slice(raw);
    value.extend_from_slice(b";tag=");
    value.extend_from_slice(format!("{:016x}", rand::random::<u64>()).as_bytes());
    response.headers.set(HeaderName::To, value);
}

/// An RFC 1123 date (`Sun, 06 Nov 1994 08:49:37 GMT`) for the `Date` header.
pub fn http_date(unix_secs: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = DAYS
        .get(usize::try_from(days.rem_euclid(7)).unwrap_or(0))
        .copied()
        .unwrap_or("Thu");
    let month_name = MONTHS
        .get(usize::try_from(month - 1).unwrap_or(0))
        .copied()
        .unwrap_or("Jan");
    format!(
        "{weekday}, {day:02} {month_name} {year} {:02}:{:02}:{:02} GMT",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_709_208_000), "Thu, 29 Feb 2024 12:00:00 GMT");
    }

    #[test]
    fn to_tags_are_added_once() {
        let raw = "REGISTER sip:tandem.lab SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n\
                   Max-Forwards: 70\r\nFrom: <sip:a@tandem.lab>;tag=f\r\n\
                   To: \"A\" <sip:a@tandem.lab;transport=udp>;x=1\r\nCall-ID: c\r\n\
                   CSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n";
        let Ok(tandem_proto::msg::Message::Request(req)) =
            tandem_proto::msg::Message::parse(bytes::Bytes::from(raw))
        else {
            panic!("a request");
        };
        let mut r = Response::for_request(&req, 200);
        ensure_to_tag(&mut r);
        let to = r.headers.to().unwrap();
        let tag = to.tag().unwrap().to_string();
        assert_eq!(tag.len(), 16);
        assert_eq!(to.param("x").flatten(), Some("1"));
        assert_eq!(to.uri.transport_param(), Some(Transport::Udp));
        ensure_to_tag(&mut r);
        assert_eq!(r.headers.to().unwrap().tag(), Some(tag.as_str()));
    }

    #[test]
    fn q_format() {
        assert_eq!(format_q(0.5), "0.5");
        assert_eq!(format_q(1.0), "1");
        assert_eq!(format_q(0.125), "0.125");
    }
}
