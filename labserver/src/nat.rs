//! SIP NAT handling at the edge (what Kamailio's nathelper does): the Contact of a request or
//! response that came straight from a UA behind a NAT is rewritten to the flow it came over,
//! and requests for a NATed binding are routed over the binding's flow (RFC 5626 §5.3 for
//! outbound UAs; RFC 3581 symmetric signalling for the others). Via `received`/`rport` are
//! added by the transaction layer to every request.

use std::net::IpAddr;

use tandem_proto::msg::{ContactValue, HeaderName, Host, Request, Response, Uri};
use tandem_proto::{Flow, Transport};

use crate::location::contact_differs_from_flow;
use crate::store::Binding;

/// True for addresses that cannot be reached from the outside: RFC 1918 / RFC 6598 / unique
/// local / link-local / loopback / unspecified.
pub fn is_private_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments().first().copied().unwrap_or(0);
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| is_private_ip(v4.into()))
        }
    }
}

/// True when a URI host is a private address or an unresolvable `.invalid` name (RFC 7118 UAs).
fn is_unreachable_host(host: &Host) -> bool {
    match host {
        Host::V4(ip) => is_private_ip((*ip).into()),
        Host::V6(ip) => is_private_ip((*ip).into()),
        Host::Domain(d) => d
            .trim_end_matches('.')
            .to_ascii_lowercase()
            .ends_with(".invalid"),
    }
}

/// `uri` pointed at `flow`: the flow's address and port, and its transport (`transport=` for
/// streams; none for UDP), keeping the user part and the other parameters (e.g. `ob`).
pub fn flow_uri(uri: &Uri, flow: Flow) -> Uri {
    let mut out = uri.clone();
    out.host = Host::from(flow.remote.ip());
    out.port = Some(flow.remote.port());
    match flow.transport {
        Transport::Udp => out.remove_param("transport"),
        t => out.set_param("transport", Some(t.uri_param())),
    }
    out
}

/// The single Contact of a message when it differs from `flow`, with that Contact rewritten to
/// the flow; `None` when there is nothing to fix.
fn fixed_contact(headers: &tandem_proto::msg::Headers, flow: Flow) -> Option<String> {
    let contacts = headers.contacts().ok()?;
    let [ContactValue::Addr(na)] = contacts.as_slice() else {
        return None;
    };
    if !contact_differs_from_flow(&na.uri, flow) {
        return None;
    }
    let mut na = na.clone();
    na.uri = flow_uri(&na.uri, flow);
    Some(na.to_string())
}

/// Rewrites the Contact of a request that came straight from a NATed UA (it has one Via, so
/// `flow` is the UA's own) to the flow's public address; true when it did. REGISTER is left
/// alone: the registrar keeps the flow beside the binding instead.
pub fn fix_request_contact(request: &mut Request, flow: Flow) -> bool {
    if request.method == tandem_proto::msg::Method::Register {
        return false;
    }
    if request.headers.vias().map_or(true, |v| v.len() != 1) {
        return false;
    }
    match fixed_contact(&request.headers, flow) {
        Some(value) => {
            tracing::debug!(%flow, contact = %value, "NATed request: Contact fixed");
            request.headers.set(HeaderName::Contact, value);
            true
        }
        None => false,
    }
}

/// Rewrites the Contact of a response that came over `flow` from a UA we reached through its
/// registration (the UA itself answered) when it differs from the flow; true when it did.
pub fn fix_response_contact(response: &mut Response, flow: Flow) -> bool {
    match fixed_contact(&response.headers, flow) {
        Some(value) => {
            tracing::debug!(%flow, contact = %value, "NATed response: Contact fixed");
            response.headers.set(HeaderName::Contact, value);
            true
        }
        None => false,
    }
}

/// How to reach a binding registered over UDP `flow` with Contact `uri`: `Some(true)` = over
/// the flow only (an outbound UA, or a NATed one whose Contact is private or not the flow's
/// port: never sent to a private address that differs from the flow), `Some(false)` = the
/// Contact first and the flow as fallback (a public Contact registered from elsewhere, e.g. a
/// third-party registration), `None` = the Contact is the flow.
pub fn udp_flow_preference(uri: &Uri, binding: &Binding, flow: Flow) -> Option<bool> {
    if !contact_differs_from_flow(uri, flow) {
        return None;
    }
    let outbound = uri.has_param("ob") || binding.reg_id.is_some();
    let same_host = match &uri.host {
        Host::V4(ip) => IpAddr::V4(*ip) == flow.remote.ip(),
        Host::V6(ip) => IpAddr::V6(*ip) == flow.remote.ip(),
        Host::Domain(_) => false,
    };
    Some(outbound || same_host || is_unreachable_host(&uri.host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(s: &str) -> Flow {
        crate::proxy::parse_flow(s).unwrap()
    }

    fn request(raw: &str) -> Request {
        match tandem_proto::msg::Message::parse(bytes::Bytes::from(raw.to_string())).unwrap() {
            tandem_proto::msg::Message::Request(r) => r,
            _ => panic!("a request"),
        }
    }

    fn invite(vias: &str, contact: &str) -> Request {
        request(&format!(
            "INVITE sip:b@lab SIP/2.0\r\n{vias}Max-Forwards: 70\r\nFrom: <sip:a@lab>;tag=1\r\n\
             To: <sip:b@lab>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContact: {contact}\r\n\
             Content-Length: 0\r\n\r\n"
        ))
    }

    #[test]
    fn private_ranges() {
        for ip in [
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.5",
            "127.0.0.1",
            "100.64.0.1",
            "fd00::1",
            "fe80::1",
            "::1",
            "169.254.1.1",
        ] {
            assert!(is_private_ip(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["203.0.113.5", "8.8.8.8", "2001:db8::1", "172.32.0.1"] {
            assert!(!is_private_ip(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn a_nated_request_gets_the_flow_as_contact() {
        let via = "Via: SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bK1;rport=40000;received=203.0.113.7\r\n";
        let mut r = invite(via, "\"A\" <sip:a@192.168.1.10:5060;ob>;+sip.ice");
        assert!(fix_request_contact(&mut r, flow("udp:203.0.113.7:40000")));
        let c = r.headers.get_str(&HeaderName::Contact).unwrap().to_string();
        assert_eq!(c, "A <sip:a@203.0.113.7:40000;ob>;+sip.ice");
        // Already fixed: nothing more to do.
        assert!(!fix_request_contact(&mut r, flow("udp:203.0.113.7:40000")));
        // Over TCP the transport is named.
        let mut r = invite(via, "<sip:a@192.168.1.10:5060;transport=tcp>");
        assert!(fix_request_contact(&mut r, flow("tcp:[2001:db8::9]:40000")));
        assert_eq!(
            r.headers.get_str(&HeaderName::Contact),
            Some("<sip:a@[2001:db8::9]:40000;transport=tcp>")
        );
        // Through another proxy (two Vias): not ours to fix.
        let two = format!("{via}Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK2\r\n");
        let mut r = invite(&two, "<sip:a@192.168.1.10:5060>");
        assert!(!fix_request_contact(&mut r, flow("udp:203.0.113.7:40000")));
        // A UA that is its flow is left alone.
        let mut r = invite(via, "<sip:a@203.0.113.7:40000>");
        assert!(!fix_request_contact(&mut r, flow("udp:203.0.113.7:40000")));
    }

    #[test]
    fn udp_routing_preferences() {
        let mut b = Binding {
            aor: "sip:a@lab".into(),
            contact: String::new(),
            expires_at: 0,
            q: None,
            call_id: "c".into(),
            cseq: 1,
            flow: None,
            user_agent: None,
            instance: None,
            reg_id: None,
            features: None,
        };
        let f = flow("udp:203.0.113.7:40000");
        let u = |s: &str| Uri::parse(s).unwrap();
        assert_eq!(
            udp_flow_preference(&u("sip:a@203.0.113.7:40000"), &b, f),
            None
        );
        assert_eq!(
            udp_flow_preference(&u("sip:a@192.168.1.2"), &b, f),
            Some(true)
        );
        assert_eq!(
            udp_flow_preference(&u("sip:a@203.0.113.7:5060"), &b, f),
            Some(true)
        );
        assert_eq!(
            udp_flow_preference(&u("sip:a@x.invalid"), &b, f),
            Some(true)
        );
        assert_eq!(
            udp_flow_preference(&u("sip:a@198.51.100.1"), &b, f),
            Some(false)
        );
        b.reg_id = Some(1);
        assert_eq!(
            udp_flow_preference(&u("sip:a@198.51.100.1"), &b, f),
            Some(true)
        );
    }
}
