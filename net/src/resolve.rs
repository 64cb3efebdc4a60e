//! RFC 3263 server location: from a SIP URI to an ordered list of flows to try.
//!
//! The procedure: a numeric IP goes straight to a flow; `;transport=` or `sips:` fixes the
//! transport; an explicit port means A/AAAA only; otherwise NAPTR (RFC 3403) picks the
//! transports, SRV (RFC 2782) the hosts and ports, and A/AAAA the addresses; with no NAPTR,
//! SRV is tried for `_sips._tcp`, `_sip._tcp`, `_sip._udp`; with no SRV either, the host's
//! addresses on the transport's default port (UDP, or TLS for `sips:`).

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
};
use hickory_resolver::net::NetError as DnsError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tandem_proto::{Flow, Transport};

use crate::NetError;

/// Where DNS questions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DnsConfig {
    /// The system's resolver configuration (`/etc/resolv.conf`, hosts file).
    #[default]
    System,
    /// One DNS server at this address (UDP and TCP), no search domains, no hosts file.
    Nameserver(SocketAddr),
    /// No DNS at all: only IP literals can be resolved.
    Disabled,
}

/// The host part of a target to resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetHost {
    /// A numeric IP address: no DNS needed.
    Ip(IpAddr),
    /// A domain name.
    Name(String),
}

/// What RFC 3263 needs to know about a URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveTarget {
    /// The host.
    pub host: TargetHost,
    /// The explicit port, if the URI had one.
    pub port: Option<u16>,
    /// The transport fixed by `;transport=`, if any.
    pub transport: Option<Transport>,
    /// True for a `sips:` URI (TLS only).
    pub secure: bool,
}

/// An RFC 3263 resolver over hickory, with a seeded RNG for SRV weight selection.
pub struct SipResolver {
    /// The DNS resolver, or why there is none.
    dns: Result<TokioResolver, String>,
    transports: Vec<Transport>,
    rng: Mutex<StdRng>,
}

impl std::fmt::Debug for SipResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipResolver")
            .field("dns", &self.dns.as_ref().err())
            .field("transports", &self.transports)
            .finish()
    }
}

/// One SRV answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SrvRecord {
    priority: u16,
    weight: u16,
    port: u16,
    target: String,
}

impl SipResolver {
    /// A resolver using `dns`, that only returns flows over `transports` (in no particular order),
    /// with SRV weighted choices drawn from an RNG seeded with `seed`.
    pub fn new(dns: DnsConfig, transports: &[Transport], seed: u64) -> Result<Self, NetError> {
        let dns = match dns {
            DnsConfig::Disabled => Err("DNS is disabled".to_string()),
            DnsConfig::System => match TokioResolver::builder_tokio() {
                Ok(builder) => builder.build().map_err(|e| format!("DNS resolver: {e}")),
                // No usable resolv.conf: IP literals still work, names fail with this reason.
                Err(e) => {
                    tracing::warn!(error = %e, "no system DNS configuration");
                    Err(format!("no system DNS configuration: {e}"))
                }
            },
            DnsConfig::Nameserver(addr) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                let server = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
                let config = ResolverConfig::from_parts(None, Vec::new(), vec![server]);
                let mut builder =
                    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
                let opts = builder.options_mut();
                opts.use_hosts_file = ResolveHosts::Never;
                opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
                opts.attempts = 1;
                opts.timeout = std::time::Duration::from_secs(2);
                Ok(builder
                    .build()
                    .map_err(|e| NetError::Resolve(format!("DNS resolver: {e}")))?)
            }
        };
        Ok(Self {
            dns,
            transports: transports.to_vec(),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        })
    }

    fn supports(&self, transport: Transport) -> bool {
        self.transports.contains(&transport)
    }

    /// The transport when nothing else decides: UDP (or TCP without UDP) for `sip:`, TLS for `sips:`.
    fn default_transport(&self, secure: bool) -> Option<Transport> {
        if secure {
            return self.supports(Transport::Tls).then_some(Transport::Tls);
        }
        [Transport::Udp, Transport::Tcp]
            .into_iter()
            .find(|t| self.supports(*t))
    }

    /// Resolves `target` to the ordered list of flows to try (RFC 3263 §4).
    pub async fn resolve(&self, target: &ResolveTarget) -> Result<Vec<Flow>, NetError> {
        if let Some(t) = target.transport {
            if target.secure && t != Transport::Tls {
                // sips: over a non-TLS transport is not allowed (RFC 3261 §26.2.2, RFC 5630).
                return Err(NetError::NoTarget);
            }
            if !self.supports(t) {
                return Err(NetError::NoTarget);
            }
        }
        let fixed = target.transport.or(target.secure.then_some(Transport::Tls));
        let flows = match &target.host {
            TargetHost::Ip(ip) => {
                let transport = fixed
                    .or_else(|| self.default_transport(target.secure))
                    .ok_or(NetError::NoTarget)?;
                let port = target.port.unwrap_or(transport.default_port());
                vec![Flow::new(transport, SocketAddr::new(*ip, port))]
            }
            TargetHost::Name(name) => {
                if let Ok(ip) = name.parse::<IpAddr>() {
                    let t = ResolveTarget {
                        host: TargetHost::Ip(ip),
                        ..target.clone()
                    };
                    return Box::pin(self.resolve(&t)).await;
                }
                self.resolve_name(name, target.port, fixed, target.secure)
                    .await?
            }
        };
        let mut seen = HashSet::new();
        let flows: Vec<Flow> = flows.into_iter().filter(|f| seen.insert(*f)).collect();
        if flows.is_empty() {
            return Err(NetError::NoTarget);
        }
        tracing::debug!(?target, ?flows, "RFC 3263 resolution");
        Ok(flows)
    }

    async fn resolve_name(
        &self,
        name: &str,
        port: Option<u16>,
        fixed: Option<Transport>,
        secure: bool,
    ) -> Result<Vec<Flow>, NetError> {
        let dns = self
            .dns
            .as_ref()
            .map_err(|why| NetError::Resolve(format!("{name}: {why}")))?;
        let fqdn = if name.ends_with('.') {
            name.to_string()
        } else {
            format!("{name}.")
        };

        // An explicit port: A/AAAA only (§4.2).
        if let Some(port) = port {
            let transport = fixed
                .or_else(|| self.default_transport(secure))
                .ok_or(NetError::NoTarget)?;
            return self.addresses(dns, name, port, transport).await;
        }

        // A fixed transport: SRV for it, then A/AAAA on its default port.
        if let Some(transport) = fixed {
            let srv = self
                .srv_flows(dns, &srv_name(transport, &fqdn), transport)
                .await?;
            if !srv.is_empty() {
                return Ok(srv);
            }
            return self
                .addresses(dns, name, transport.default_port(), transport)
                .await;
        }

        // NAPTR (§4.1).
        let naptr = self.naptr(dns, &fqdn, secure).await?;
        if !naptr.is_empty() {
            let mut flows = Vec::new();
            for (transport, replacement) in naptr {
                flows.extend(self.srv_flows(dns, &replacement, transport).await?);
            }
            if !flows.is_empty() {
                return Ok(flows);
            }
        }

        // No NAPTR: SRV for each supported transport, TLS first.
        let mut flows = Vec::new();
        let candidates: &[Transport] = if secure {
            &[Transport::Tls]
        } else {
            &[Transport::Tls, Transport::Tcp, Transport::Udp]
        };
        for &transport in candidates {
            if self.supports(transport) {
                flows.extend(
                    self.srv_flows(dns, &srv_name(transport, &fqdn), transport)
                        .await?,
                );
            }
        }
        if !flows.is_empty() {
            return Ok(flows);
        }

        // Fallback: A/AAAA on the default port.
        let transport = self.default_transport(secure).ok_or(NetError::NoTarget)?;
        self.addresses(dns, name, transport.default_port(), transport)
            .await
    }

    /// The usable NAPTR records for `fqdn`, as (transport, SRV name), best first.
    async fn naptr(
        &self,
        dns: &TokioResolver,
        fqdn: &str,
        secure: bool,
    ) -> Result<Vec<(Transport, String)>, NetError> {
        let lookup = match dns.lookup(fqdn, RecordType::NAPTR).await {
            Ok(l) => l,
            Err(e) => return empty_or_error(e, fqdn, "NAPTR"),
        };
        let mut records: Vec<(u16, u16, Transport, String)> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::NAPTR(n) => {
                    if !n.flags.eq_ignore_ascii_case(b"s") {
                        return None;
                    }
                    let transport = naptr_service(&n.services)?;
                    if secure && transport != Transport::Tls {
                        return None;
                    }
                    if !self.supports(transport) {
                        return None;
                    }
                    Some((n.order, n.preference, transport, n.replacement.to_ascii()))
                }
                _ => None,
            })
            .collect();
        records.sort_by_key(|(order, pref, _, _)| (*order, *pref));
        Ok(records.into_iter().map(|(_, _, t, n)| (t, n)).collect())
    }

    /// SRV lookup of `name`, ordered per RFC 2782, each target expanded to its addresses.
    async fn srv_flows(
        &self,
        dns: &TokioResolver,
        name: &str,
        transport: Transport,
    ) -> Result<Vec<Flow>, NetError> {
        let lookup = match dns.lookup(name, RecordType::SRV).await {
            Ok(l) => l,
            Err(e) => return empty_or_error(e, name, "SRV"),
        };
        let records: Vec<SrvRecord> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(s) => Some(SrvRecord {
                    priority: s.priority,
                    weight: s.weight,
                    port: s.port,
                    target: s.target.to_ascii(),
                }),
                _ => None,
            })
            .collect();
        // A single "." target means "decidedly not available" (RFC 2782).
        if records.len() == 1 && records.iter().all(|r| r.target == ".") {
            return Ok(Vec::new());
        }
        let ordered = {
            let mut rng = self.rng.lock().map_err(|_| NetError::Closed)?;
            order_srv(records, &mut *rng)
        };
        let mut flows = Vec::new();
        for rec in ordered {
            if rec.target == "." {
                continue;
            }
            match self.addresses(dns, &rec.target, rec.port, transport).await {
                Ok(f) => flows.extend(f),
                Err(e) => {
                    tracing::debug!(target = %rec.target, error = %e, "SRV target has no address")
                }
            }
        }
        Ok(flows)
    }

    /// A/AAAA of `host` (or the host itself if it is numeric) on `port`.
    async fn addresses(
        &self,
        dns: &TokioResolver,
        host: &str,
        port: u16,
        transport: Transport,
    ) -> Result<Vec<Flow>, NetError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![Flow::new(transport, SocketAddr::new(ip, port))]);
        }
        let ips = dns
            .lookup_ip(host)
            .await
            .map_err(|e| NetError::Resolve(format!("{host}: {e}")))?;
        let mut flows: Vec<Flow> = ips
            .iter()
            .map(|ip| Flow::new(transport, SocketAddr::new(ip, port)))
            .collect();
        // IPv4 first, keeping the DNS order inside each family.
        flows.sort_by_key(|f| f.remote.is_ipv6());
        if flows.is_empty() {
            return Err(NetError::Resolve(format!("{host}: no address")));
        }
        Ok(flows)
    }
}

/// `_sip._udp.`, `_sip._tcp.` or `_sips._tcp.` prefixed to `fqdn`.
fn srv_name(transport: Transport, fqdn: &str) -> String {
    match transport {
        Transport::Udp => format!("_sip._udp.{fqdn}"),
        Transport::Tcp => format!("_sip._tcp.{fqdn}"),
        Transport::Tls => format!("_sips._tcp.{fqdn}"),
    }
}

/// The transport of a NAPTR service field (RFC 3263 §4.1), if it is one we know.
fn naptr_service(services: &[u8]) -> Option<Transport> {
    if services.eq_ignore_ascii_case(b"SIP+D2U") {
        Some(Transport::Udp)
    } else if services.eq_ignore_ascii_case(b"SIP+D2T") {
        Some(Transport::Tcp)
    } else if services.eq_ignore_ascii_case(b"SIPS+D2T") {
        Some(Transport::Tls)
    } else {
        None
    }
}

/// A "no records" answer is an empty list; any other DNS failure is an error.
fn empty_or_error<T>(e: DnsError, name: &str, kind: &str) -> Result<Vec<T>, NetError> {
    if e.is_no_records_found() || e.is_nx_domain() {
        Ok(Vec::new())
    } else {
        Err(NetError::Resolve(format!("{kind} {name}: {e}")))
    }
}

/// Orders SRV records per RFC 2782: by priority, then a weighted random draw within each priority.
fn order_srv(mut records: Vec<SrvRecord>, rng: &mut impl Rng) -> Vec<SrvRecord> {
    records.sort_by_key(|r| r.priority);
    let mut out = Vec::with_capacity(records.len());
    let mut start = 0;
    while start < records.len() {
        let prio = records[start].priority;
        let end = records[start..]
            .iter()
            .position(|r| r.priority != prio)
            .map_or(records.len(), |p| start + p);
        // Zero-weight records first, as RFC 2782 asks, so that they get a small chance.
        let mut group: Vec<SrvRecord> = records[start..end].to_vec();
        group.sort_by_key(|r| r.weight != 0);
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let pick = rng.random_range(0..=total);
            let mut running = 0u32;
            let mut chosen = group.len() - 1;
            for (i, r) in group.iter().enumerate() {
                running += u32::from(r.weight);
                if running >= pick {
                    chosen = i;
                    break;
                }
            }
            out.push(group.remove(chosen));
        }
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, target: &str) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            port: 5060,
            target: target.to_string(),
        }
    }

    #[test]
    fn srv_priority_orders_first() {
        let mut rng = StdRng::seed_from_u64(7);
        let out = order_srv(
            vec![srv(20, 10, "c."), srv(10, 0, "a."), srv(10, 0, "b.")],
            &mut rng,
        );
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].target, "c.");
        assert!(out[..2].iter().all(|r| r.priority == 10));
    }

    #[test]
    fn srv_weights_are_respected_statistically() {
        let mut rng = StdRng::seed_from_u64(42);
        let mut heavy_first = 0;
        for _ in 0..1000 {
            let out = order_srv(vec![srv(1, 90, "heavy."), srv(1, 10, "light.")], &mut rng);
            if out[0].target == "heavy." {
                heavy_first += 1;
            }
        }
        assert!(heavy_first > 820 && heavy_first < 970, "{heavy_first}");
    }

    #[test]
    fn naptr_services() {
        assert_eq!(naptr_service(b"SIP+D2U"), Some(Transport::Udp));
        assert_eq!(naptr_service(b"sip+d2t"), Some(Transport::Tcp));
        assert_eq!(naptr_service(b"SIPS+D2T"), Some(Transport::Tls));
        assert_eq!(naptr_service(b"SIPS+D2U"), None);
        assert_eq!(naptr_service(b"E2U+sip"), None);
    }

    #[tokio::test]
    async fn ip_literals_need_no_dns() {
        let r = SipResolver::new(
            DnsConfig::Disabled,
            &[Transport::Udp, Transport::Tcp, Transport::Tls],
            1,
        )
        .unwrap();
        let t = ResolveTarget {
            host: TargetHost::Ip("192.0.2.1".parse().unwrap()),
            port: None,
            transport: None,
            secure: true,
        };
        assert_eq!(
            r.resolve(&t).await.unwrap(),
            vec![Flow::new(Transport::Tls, "192.0.2.1:5061".parse().unwrap())]
        );
        let t = ResolveTarget {
            host: TargetHost::Name("::1".into()),
            port: Some(7000),
            transport: Some(Transport::Tcp),
            secure: false,
        };
        assert_eq!(
            r.resolve(&t).await.unwrap(),
            vec![Flow::new(Transport::Tcp, "[::1]:7000".parse().unwrap())]
        );
        let t = ResolveTarget {
            host: TargetHost::Name("example.com".into()),
            port: None,
            transport: None,
            secure: false,
        };
        assert!(matches!(r.resolve(&t).await, Err(NetError::Resolve(_))));
    }
}
