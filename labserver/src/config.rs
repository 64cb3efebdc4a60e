//! Lab server configuration (`lab.toml`), every setting with a default.
//!
//! Every key is optional; unknown keys are rejected so a typo does not silently fall back
//! to a default. [`LabConfig::load`] reads, parses, normalises (domains lower-cased) and
//! validates a file; [`LabConfig::to_toml`] prints the effective configuration.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The default SIP port for UDP and TCP.
pub const DEFAULT_SIP_PORT: u16 = 5060;
/// The default SIP port for TLS.
pub const DEFAULT_SIPS_PORT: u16 = 5061;
/// The digest algorithm names the lab server knows (RFC 7616, RFC 8760).
pub const KNOWN_ALGORITHMS: [&str; 2] = ["SHA-256", "MD5"];

/// Errors from loading or checking a configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration is not valid TOML or has unknown keys or wrong types.
    #[error("invalid configuration: {0}")]
    Parse(#[from] toml::de::Error),
    /// The effective configuration could not be printed as TOML.
    #[error("cannot print the configuration: {0}")]
    Print(#[from] toml::ser::Error),
    /// A value is out of range or inconsistent with another.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The lab server configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LabConfig {
    /// The SIP domain served (also the default digest realm); default `tandem.lab`.
    /// `localhost` and every local IP address are accepted as local domains too.
    pub domain: String,
    /// Further names accepted as local domains (and put in the server certificate).
    pub aliases: Vec<String>,
    /// Where the SQLite database, the lab CA and the server certificate live.
    pub data_dir: PathBuf,
    /// `None`: SQLite in `data_dir`; otherwise a `postgres://…` (or `sqlite://…`) URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// The sockets to listen on.
    pub listen: ListenConfig,
    /// The host name or address to put in Record-Route/Via instead of the bound address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_host: Option<String>,
    /// Registrar policy.
    pub registrar: RegistrarConfig,
    /// Digest authentication settings.
    pub auth: AuthConfig,
    /// Proxy behaviour.
    pub proxy: ProxyConfig,
    /// Resource limits.
    pub limits: LimitsConfig,
    /// Create alice, bob and carol with random passwords on first start; default true.
    pub demo_users: bool,
    /// Page-mode messaging with store-and-forward (`[im]`).
    pub im: crate::im::ImConfig,
    /// The presence agent (`[presence]`).
    pub presence: crate::presence::PresenceConfig,
    /// The XCAP server (`[xcap]`).
    pub xcap: crate::xcap::XcapConfig,
    /// The MSRP relay (`[msrp]`).
    pub msrp: crate::msrp_relay::MsrpRelayConfig,
    /// The STUN/TURN server (`[turn]`).
    pub turn: crate::turn::TurnConfig,
    /// The media server (`[mediasrv]`).
    pub mediasrv: crate::mediasrv::MediaServerConfig,
    /// Voicemail (`[voicemail]`).
    pub voicemail: crate::mediasrv::voicemail::VoicemailConfig,
    /// Conference rooms (`[conference]`).
    pub conference: crate::mediasrv::conference::ConferenceConfig,
    /// IVR menus (`[ivr]`).
    pub ivr: crate::mediasrv::ivr::IvrConfig,
    /// The click-to-call HTTP API (`[api]`).
    pub api: crate::mediasrv::api::ApiConfig,
    /// `[relay]`: the media relay for NATed and IPv4 <-> IPv6 calls.
    pub relay: crate::media_relay::RelayConfig,
}

/// Listening sockets per transport.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenConfig {
    /// UDP sockets; default `0.0.0.0:5060` (and `[::]:5060` when the machine has IPv6).
    pub udp: Vec<SocketAddr>,
    /// TCP listeners; default as for UDP.
    pub tcp: Vec<SocketAddr>,
    /// TLS listeners; default `0.0.0.0:5061` (and `[::]:5061` when the machine has IPv6).
    pub tls: Vec<SocketAddr>,
}

/// Registrar policy (RFC 3261 §10.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrarConfig {
    /// Shorter requested expiries are answered 423 Interval Too Brief; default 60.
    pub min_expires: u32,
    /// Longer requested expiries are shortened to this; default 3600.
    pub max_expires: u32,
    /// Expiry used when the REGISTER asks for none; default 3600.
    pub default_expires: u32,
    /// Most contacts one address-of-record may hold; default 10.
    pub max_contacts: usize,
    /// Users allowed to register any address-of-record of a local domain (third-party
    /// registration, RFC 3261 §10.3 step 6); empty by default.
    pub third_party: Vec<String>,
    /// Seconds between a UA's keep-alives on an RFC 5626 outbound flow (the `Flow-Timer`
    /// header of the 200); default 25.
    pub flow_timer: u32,
}

/// Digest authentication settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The digest realm; `None` means the domain. Stored HA1s are computed with it: after
    /// changing it, set the users' passwords again (`tandem-lab user add NAME --password P`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    /// How long an issued nonce stays valid, in seconds; default 300.
    pub nonce_lifetime_secs: u64,
    /// Algorithms offered, in order of preference; default `["MD5"]`, because common softphones
    /// (baresip 1.0, SIPp 3.6) fail when SHA-256 is offered at all; `["SHA-256", "MD5"]` offers both (RFC 8760).
    pub algorithms: Vec<String>,
    /// Source networks whose requests are not challenged; empty by default.
    pub trusted: Vec<IpNet>,
}

/// Proxy behaviour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// Most branches one request is forked to; default 10.
    pub max_forks: usize,
    /// How long an INVITE may ring before the proxy gives up (408/480); default 30.
    pub invite_timeout_secs: u64,
    /// Whether the proxy inserts Record-Route to stay on the dialog path; default true.
    pub record_route: bool,
}

/// Resource limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most live transactions before new requests get 503; default 250000 (a finished UDP transaction
    /// lives 32 s, so 3,000 digest REGISTERs/s keep about 200,000 alive).
    pub max_transactions: usize,
}

/// An IP network in CIDR notation, e.g. `127.0.0.0/8` or `::1/128` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// A network from an address and prefix length; host bits of `addr` are cleared.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<IpNet, ConfigError> {
        let max = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if prefix > max {
            return Err(ConfigError::Invalid(format!(
                "prefix length {prefix} is longer than {max} for {addr}"
            )));
        }
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask_v4(prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask_v6(prefix))),
        };
        Ok(IpNet { addr, prefix })
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is inside this network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                u32::from(a) & mask_v4(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                u128::from(a) & mask_v6(self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask_v4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask_v6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for IpNet {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<IpNet, ConfigError> {
        let bad = || ConfigError::Invalid(format!("{s:?} is not an IP network (e.g. 10.0.0.0/8)"));
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => {
                let addr: IpAddr = a.trim().parse().map_err(|_| bad())?;
                let prefix: u8 = p.trim().parse().map_err(|_| bad())?;
                (addr, prefix)
            }
            None => {
                let addr: IpAddr = s.trim().parse().map_err(|_| bad())?;
                let prefix = if addr.is_ipv4() { 32 } else { 128 };
                (addr, prefix)
            }
        };
        IpNet::new(addr, prefix)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for IpNet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<IpNet, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Default for LabConfig {
    fn default() -> LabConfig {
        LabConfig {
            domain: "tandem.lab".to_owned(),
            aliases: Vec::new(),
            data_dir: default_data_dir(),
            database_url: None,
            listen: ListenConfig::default(),
            public_host: None,
            registrar: RegistrarConfig::default(),
            auth: AuthConfig::default(),
            proxy: ProxyConfig::default(),
            limits: LimitsConfig::default(),
            demo_users: true,
            im: Default::default(),
            presence: Default::default(),
            xcap: Default::default(),
            msrp: Default::default(),
            turn: Default::default(),
            mediasrv: Default::default(),
            voicemail: Default::default(),
            conference: Default::default(),
            ivr: Default::default(),
            api: Default::default(),
            relay: Default::default(),
        }
    }
}

impl Default for ListenConfig {
    fn default() -> ListenConfig {
        let ipv6 = has_ipv6();
        let on = |port: u16| {
            let mut v = vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)];
            if ipv6 {
                v.push(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port));
            }
            v
        };
        ListenConfig {
            udp: on(DEFAULT_SIP_PORT),
            tcp: on(DEFAULT_SIP_PORT),
            tls: on(DEFAULT_SIPS_PORT),
        }
    }
}

impl Default for RegistrarConfig {
    fn default() -> RegistrarConfig {
        RegistrarConfig {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_contacts: 10,
            third_party: Vec::new(),
            flow_timer: 25,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> AuthConfig {
        AuthConfig {
            realm: None,
            nonce_lifetime_secs: 300,
            algorithms: vec!["MD5".to_owned()],
            trusted: Vec::new(),
        }
    }
}

impl Default for ProxyConfig {
    fn default() -> ProxyConfig {
        ProxyConfig {
            max_forks: 10,
            invite_timeout_secs: 30,
            record_route: true,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig {
            max_transactions: 250_000,
        }
    }
}

impl LabConfig {
    /// Reads, normalises and validates a configuration file.
    pub fn load(path: &Path) -> Result<LabConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        LabConfig::from_toml_str(&text)
    }

    /// Parses, normalises and validates a configuration from TOML text.
    pub fn from_toml_str(text: &str) -> Result<LabConfig, ConfigError> {
        let mut config: LabConfig = toml::from_str(text)?;
        config.normalize();
        config.validate()?;
        Ok(config)
    }

    /// The effective configuration as TOML (every setting, defaults included).
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        Ok(toml::to_string_pretty(self)?)
    }

    /// Lower-cases and trims the domain and aliases, canonicalises algorithm names and
    /// drops duplicate aliases.
    pub fn normalize(&mut self) {
        self.domain = self.domain.trim().to_ascii_lowercase();
        let mut aliases: Vec<String> = Vec::new();
        for alias in &self.aliases {
            let a = alias.trim().to_ascii_lowercase();
            if !a.is_empty() && a != self.domain && !aliases.contains(&a) {
                aliases.push(a);
            }
        }
        self.aliases = aliases;
        for alg in &mut self.auth.algorithms {
            if let Some(known) = KNOWN_ALGORITHMS
                .iter()
                .find(|k| k.eq_ignore_ascii_case(alg.trim()))
            {
                *alg = (*known).to_owned();
            }
        }
    }

    /// Checks ranges and consistency.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.domain.is_empty() || self.domain.chars().any(|c| c.is_whitespace()) {
            return invalid(format!("domain {:?} must be a host name", self.domain));
        }
        let r = &self.registrar;
        if r.min_expires == 0 {
            return invalid("registrar.min_expires must be at least 1".to_owned());
        }
        if !(r.min_expires <= r.default_expires && r.default_expires <= r.max_expires) {
            return invalid(format!(
                "registrar expiries must satisfy min_expires ({}) <= default_expires ({}) <= max_expires ({})",
                r.min_expires, r.default_expires, r.max_expires
            ));
        }
        if r.max_contacts == 0 {
            return invalid("registrar.max_contacts must be at least 1".to_owned());
        }
        if r.flow_timer == 0 {
            return invalid("registrar.flow_timer must be at least 1".to_owned());
        }
        if self.auth.algorithms.is_empty() {
            return invalid("auth.algorithms must name at least one algorithm".to_owned());
        }
        for alg in &self.auth.algorithms {
            if !KNOWN_ALGORITHMS.contains(&alg.as_str()) {
                return invalid(format!(
                    "auth.algorithms: unknown algorithm {alg:?} (known: SHA-256, MD5)"
                ));
            }
        }
        if self.auth.nonce_lifetime_secs == 0 {
            return invalid("auth.nonce_lifetime_secs must be at least 1".to_owned());
        }
        if let Some(realm) = &self.auth.realm
            && (realm.is_empty() || realm.contains('"'))
        {
            return invalid(format!("auth.realm {realm:?} is not a valid realm"));
        }
        if self.proxy.max_forks == 0 {
            return invalid("proxy.max_forks must be at least 1".to_owned());
        }
        if self.proxy.invite_timeout_secs == 0 {
            return invalid("proxy.invite_timeout_secs must be at least 1".to_owned());
        }
        self.im.validate().map_err(ConfigError::Invalid)?;
        self.presence.validate().map_err(ConfigError::Invalid)?;
        self.ivr.validate().map_err(ConfigError::Invalid)?;
        self.api.validate().map_err(ConfigError::Invalid)?;
        self.relay.validate().map_err(ConfigError::Invalid)?;
        if self.limits.max_transactions == 0 {
            return invalid("limits.max_transactions must be at least 1".to_owned());
        }
        if self.listen.udp.is_empty() && self.listen.tcp.is_empty() && self.listen.tls.is_empty() {
            return invalid("listen: at least one udp, tcp or tls address is needed".to_owned());
        }
        if let Some(url) = &self.database_url {
            let lower = url.to_ascii_lowercase();
            if !["sqlite:", "postgres:", "postgresql:"]
                .iter()
                .any(|p| lower.starts_with(p))
            {
                return invalid(
                    "database_url must start with sqlite:, postgres: or postgresql:".to_owned(),
                );
            }
        }
        Ok(())
    }

    /// The digest realm: `auth.realm`, or else the domain.
    pub fn realm(&self) -> &str {
        self.auth.realm.as_deref().unwrap_or(&self.domain)
    }

    /// The names put in the server certificate: domain, aliases, public host.
    pub fn certificate_hostnames(&self) -> Vec<String> {
        let mut names = vec![self.domain.clone()];
        names.extend(self.aliases.iter().cloned());
        if let Some(host) = &self.public_host {
            names.push(host.clone());
        }
        names
    }

    /// Every name accepted as a local domain: domain, aliases, public host, `localhost`
    /// and the local IP addresses (lower-case; IPv6 without brackets).
    pub fn local_domains(&self) -> Vec<String> {
        let mut names = self.certificate_hostnames();
        names.push("localhost".to_owned());
        names.extend(local_ips().iter().map(IpAddr::to_string));
        let mut out: Vec<String> = Vec::with_capacity(names.len());
        for n in names {
            let n = n
                .trim()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase();
            if !n.is_empty() && !out.contains(&n) {
                out.push(n);
            }
        }
        out
    }

    /// Whether `host` (a domain, or an IP address with or without brackets) is local.
    /// Lists the network interfaces on every call: on hot paths, keep [`LabConfig::local_domains`].
    pub fn is_local_domain(&self, host: &str) -> bool {
        let host = host
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return ip.is_loopback() || ip.is_unspecified() || local_ips().contains(&ip);
        }
        self.local_domains()
            .iter()
            .any(|d| d.eq_ignore_ascii_case(host))
    }
}

/// The default data directory: `$TANDEM_LAB_DATA`, else `$XDG_DATA_HOME/tandem-lab`, else
/// `~/.local/share/tandem-lab`, else `./tandem-lab-data`.
pub fn default_data_dir() -> PathBuf {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = non_empty("TANDEM_LAB_DATA") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = non_empty("XDG_DATA_HOME") {
        return PathBuf::from(dir).join("tandem-lab");
    }
    if let Some(home) = non_empty("HOME") {
        return PathBuf::from(home).join(".local/share/tandem-lab");
    }
    PathBuf::from("tandem-lab-data")
}

/// A lab service's port: `configured` if set, else `0` (any free port) when every SIP listener
/// asks for an ephemeral port (as in-process tests do), else the service's `default`.
pub fn service_port(configured: Option<u16>, default: u16, sip_listeners: &[SocketAddr]) -> u16 {
    let ephemeral = !sip_listeners.is_empty() && sip_listeners.iter().all(|a| a.port() == 0);
    match configured {
        Some(p) => p,
        None if ephemeral => 0,
        None => default,
    }
}

/// The IP a lab service binds by default: the first SIP listener's, else the IPv4 wildcard.
pub fn first_listener_ip(sip_listeners: &[SocketAddr]) -> IpAddr {
    sip_listeners
        .first()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// The machine's IP addresses on interfaces that are up (loopback included, IPv6 link-local
/// excluded); just the loopback addresses if the interfaces cannot be listed.
pub fn local_ips() -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = Vec::new();
    match if_addrs::get_if_addrs() {
        Ok(ifaces) => {
            for iface in ifaces {
                let ip = iface.ip();
                if let IpAddr::V6(v6) = ip
                    && v6.is_unicast_link_local()
                {
                    continue;
                }
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        }
        Err(err) => {
            tracing::warn!(%err, "cannot list network interfaces");
            ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
    }
    ips
}

/// Whether the machine has any IPv6 address (loopback included).
pub fn has_ipv6() -> bool {
    local_ips().iter().any(IpAddr::is_ipv6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = LabConfig::from_toml_str("").unwrap();
        assert_eq!(c.domain, "tandem.lab");
        assert_eq!(c.registrar.min_expires, 60);
        assert_eq!(c.registrar.max_expires, 3600);
        assert_eq!(c.registrar.default_expires, 3600);
        assert_eq!(c.registrar.max_contacts, 10);
        assert_eq!(c.auth.nonce_lifetime_secs, 300);
        assert_eq!(c.auth.algorithms, vec!["MD5"]);
        assert_eq!(c.proxy.invite_timeout_secs, 30);
        assert!(c.proxy.record_route);
        assert_eq!(c.limits.max_transactions, 250_000);
        assert!(c.demo_users);
        assert!(c.listen.udp.iter().any(|a| a.port() == 5060));
        assert!(c.listen.tls.iter().all(|a| a.port() == 5061));
        assert_eq!(c.realm(), "tandem.lab");
    }

    #[test]
    fn full_file_parses_and_round_trips() {
        let text = r#"
            domain = "Lab.Example"
            aliases = ["sip.lab.example", "LAB.example"]
            data_dir = "/tmp/x"
            database_url = "postgres://u@localhost/db"
            public_host = "203.0.113.5"
            demo_users = false
            [listen]
            udp = ["127.0.0.1:5070"]
            tcp = ["127.0.0.1:5070", "[::1]:5070"]
            tls = []
            [registrar]
            min_expires = 30
            max_expires = 7200
            default_expires = 600
            max_contacts = 3
            third_party = ["labuser"]
            [auth]
            realm = "lab"
            nonce_lifetime_secs = 60
            algorithms = ["md5"]
            trusted = ["127.0.0.1/32", "10.1.2.3/8", "::1"]
            [proxy]
            max_forks = 4
            invite_timeout_secs = 20
            record_route = false
            [limits]
            max_transactions = 100
        "#;
        let c = LabConfig::from_toml_str(text).unwrap();
        assert_eq!(c.domain, "lab.example");
        assert_eq!(c.aliases, vec!["sip.lab.example"]);
        assert_eq!(c.auth.algorithms, vec!["MD5"]);
        assert_eq!(c.auth.trusted[1].to_string(), "10.0.0.0/8");
        assert_eq!(c.auth.trusted[2].to_string(), "::1/128");
        assert_eq!(c.registrar.third_party, vec!["labuser"]);
        assert_eq!(c.realm(), "lab");
        assert!(c.listen.tls.is_empty());
        let again = LabConfig::from_toml_str(&c.to_toml().unwrap()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(LabConfig::from_toml_str("domian = \"x\"").is_err());
        assert!(LabConfig::from_toml_str("[registrar]\nmin_expires = 0").is_err());
        assert!(LabConfig::from_toml_str("[registrar]\nmin_expires = 4000").is_err());
        assert!(LabConfig::from_toml_str("[auth]\nalgorithms = [\"SHA-512\"]").is_err());
        assert!(LabConfig::from_toml_str("[auth]\ntrusted = [\"10.0.0.0/33\"]").is_err());
        assert!(LabConfig::from_toml_str("database_url = \"mysql://x\"").is_err());
        assert!(LabConfig::from_toml_str("[listen]\nudp = []\ntcp = []\ntls = []").is_err());
    }

    #[test]
    fn ip_networks_match() {
        let net: IpNet = "192.168.1.77/24".parse().unwrap();
        assert_eq!(net.to_string(), "192.168.1.0/24");
        assert!(net.contains("192.168.1.1".parse().unwrap()));
        assert!(net.contains("::ffff:192.168.1.9".parse().unwrap()));
        assert!(!net.contains("192.168.2.1".parse().unwrap()));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!(!all.contains("::2".parse().unwrap()));
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.contains("2001:db9::5".parse().unwrap()));
    }

    #[test]
    fn loopback_and_localhost_are_local() {
        let c = LabConfig {
            aliases: vec!["other.lab".to_owned()],
            ..LabConfig::default()
        };
        assert!(c.is_local_domain("tandem.lab"));
        assert!(c.is_local_domain("TANDEM.LAB."));
        assert!(c.is_local_domain("other.lab"));
        assert!(c.is_local_domain("localhost"));
        assert!(c.is_local_domain("127.0.0.1"));
        assert!(c.is_local_domain("[::1]"));
        assert!(!c.is_local_domain("example.com"));
        assert!(!c.is_local_domain("192.0.2.1"));
    }
}
