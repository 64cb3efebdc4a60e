//! Turning the merged account options into a client-core account and UA configuration.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Context, Result, bail};
use tandem_client_core::types::{SrtpPolicy, Transport, Uri};
use tandem_client_core::{Account, DEFAULT_EXPIRES, SrtpKeying, UaConfig, parse_proxy};
use tandem_proto::msg::Host;

use crate::args::AccountArgs;

/// CRLF keep-alive interval on stream flows when `--keepalive` is not given, in seconds.
const STREAM_KEEPALIVE_SECS: u32 = 90;

/// Everything the commands need: the account (possibly without user) and the UA config.
#[derive(Debug)]
pub struct Settings {
    /// The account; `user`/`domain` may be empty for `options`.
    pub account: Account,
    /// The user agent's configuration.
    pub ua: UaConfig,
}

/// The ICE options: `--ice`, `--ice-policy`, `--stun`, `--turn` with `--turn-user` and
/// `--turn-password` (default: the account's auth user and password).
fn apply_ice_args(args: &AccountArgs, account: &mut Account) -> Result<()> {
    use tandem_client_core::nat::ice::IcePolicy;
    use tandem_client_core::nat::turn::TurnConfig;
    if let Some(mode) = &args.ice {
        account.ice = match mode.trim().to_ascii_lowercase().as_str() {
            "on" | "yes" | "true" => true,
            "off" | "no" | "false" => false,
            other => bail!("--ice {other}: expected on or off"),
        };
    }
    if let Some(policy) = &args.ice_policy {
        account.ice_policy = policy
            .parse::<IcePolicy>()
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("--ice-policy {policy}"))?;
    }
    if let Some(stun) = args
        .stun
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        account.stun = Some(stun.to_string());
    }
    if let Some(uri) = args
        .turn
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let user = args
            .turn_user
            .clone()
            .or_else(|| account.auth_user.clone())
            .unwrap_or_else(|| account.user.clone());
        let password = args
            .turn_password
            .clone()
            .or_else(|| account.password.clone())
            .unwrap_or_default();
        account.turn =
            Some(TurnConfig::new(uri, user, password).with_context(|| format!("--turn {uri}"))?);
    }
    if account.ice && account.ice_policy == IcePolicy::Relay && account.turn.is_none() {
        bail!("--ice-policy relay needs --turn");
    }
    Ok(())
}

/// Builds the settings; `need_user`: the command needs an AoR (all but `options`).
pub fn build(args: &AccountArgs, need_user: bool) -> Result<Settings> {
    let transport: Transport = match &args.transport {
        Some(t) => t.parse().with_context(|| format!("--transport {t}"))?,
        None => Transport::Udp,
    };
    let user = args.user.clone().unwrap_or_default();
    let domain = args.domain.clone().unwrap_or_default();
    if need_user && user.is_empty() {
        bail!("--user is required for this command");
    }
    if need_user && domain.is_empty() {
        bail!("--domain is required for this command");
    }
    if user.contains(['@', ':', ' ', '<', '>']) {
        bail!("--user must be a plain user part, not {user:?}");
    }
    let proxy = match &args.proxy {
        Some(p) => Some(parse_proxy(p).with_context(|| format!("--proxy {p}"))?),
        None => None,
    };
    let mut account = Account::new(user, domain);
    account.auth_user = args.auth_user.clone().filter(|s| !s.is_empty());
    account.password = args.password.clone();
    account.display_name = args.display_name.clone().filter(|s| !s.is_empty());
    account.proxy = proxy;
    account.transport = transport;
    account.expires = args.expires.unwrap_or(DEFAULT_EXPIRES);
    if let Some(policy) = &args.srtp {
        account.srtp = policy
            .parse::<SrtpPolicy>()
            .with_context(|| format!("--srtp {policy}"))?;
    }
    if let Some(keying) = &args.srtp_keying {
        account.srtp_keying = keying
            .parse::<SrtpKeying>()
            .with_context(|| format!("--srtp-keying {keying}"))?;
    }
    if let Some(relay) = args.msrp_relay.as_deref().filter(|r| !r.trim().is_empty()) {
        tandem_client_core::msrp::parse_relay(relay)
            .with_context(|| format!("--msrp-relay {relay}"))?;
        account.msrp_relay = Some(relay.trim().to_string());
    }
    apply_ice_args(args, &mut account)?;
    if let Some(mode) = &args.outbound {
        account.outbound = match mode.trim().to_ascii_lowercase().as_str() {
            "on" | "yes" | "true" => true,
            "off" | "no" | "false" => false,
            other => bail!("--outbound {other}: expected on or off"),
        };
    }
    if let Some(urn) = args.instance.as_deref().map(str::trim) {
        if !urn.to_ascii_lowercase().starts_with("urn:")
            || urn.len() < 6
            || urn.contains(['"', '<', '>', ' ', ';', ','])
        {
            bail!("--instance {urn:?}: expected a URN such as urn:uuid:…");
        }
        account.instance = Some(urn.to_string());
    }
    account.keepalive_secs = args.keepalive;
    if need_user {
        account.aor().context("invalid --user/--domain")?;
    }

    let tls_client = if transport == Transport::Tls || args.ca_file.is_some() {
        Some(crate::tls::client_config(args.ca_file.as_deref())?)
    } else {
        None
    };
    let route_hint = account
        .proxy
        .as_ref()
        .and_then(ip_of)
        .or_else(|| account.registrar_uri().ok().as_ref().and_then(ip_of));
    let ua = UaConfig {
        listen: args
            .listen
            .unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)),
        transport,
        route_hint,
        tls_client,
        seed: rand::random(),
        // CRLF pings on the TCP/TLS connections we open (RFC 5626 §4.4.1).
        keepalive: Some(std::time::Duration::from_secs(u64::from(
            args.keepalive.unwrap_or(STREAM_KEEPALIVE_SECS),
        ))),
        ..UaConfig::default()
    };
    Ok(Settings { account, ua })
}

/// The IP of a URI whose host is an IP literal.
fn ip_of(uri: &Uri) -> Option<IpAddr> {
    match &uri.host {
        Host::V4(a) => Some(IpAddr::V4(*a)),
        Host::V6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> AccountArgs {
        AccountArgs {
            user: Some("alice".into()),
            domain: Some("127.0.0.1".into()),
            ..AccountArgs::default()
        }
    }

    #[test]
    fn defaults() {
        let s = build(&args(), true).unwrap();
        assert_eq!(s.account.transport, Transport::Udp);
        assert_eq!(s.account.expires, 3600);
        assert_eq!(s.ua.route_hint, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert!(s.ua.listen.ip().is_unspecified());
        assert_eq!(s.account.aor().unwrap().to_string(), "sip:alice@127.0.0.1");
    }

    #[test]
    fn proxy_and_transport() {
        let mut a = args();
        a.proxy = Some("127.0.0.2:5070".into());
        a.transport = Some("TCP".into());
        let s = build(&a, true).unwrap();
        assert_eq!(s.account.transport, Transport::Tcp);
        let proxy = s.account.proxy.clone().unwrap();
        assert_eq!(proxy.port, Some(5070));
        assert_eq!(s.ua.route_hint, Some("127.0.0.2".parse().unwrap()));
    }

    #[test]
    fn srtp_policy_and_keying() {
        let mut a = args();
        a.srtp = Some("mandatory".into());
        a.srtp_keying = Some("dtls".into());
        let s = build(&a, true).unwrap();
        assert_eq!(s.account.srtp, SrtpPolicy::Mandatory);
        assert_eq!(s.account.srtp_keying, SrtpKeying::Dtls);
        assert_eq!(build(&args(), true).unwrap().account.srtp, SrtpPolicy::Off);
        let mut a = args();
        a.srtp = Some("maybe".into());
        assert!(build(&a, true).is_err());
        let mut a = args();
        a.srtp_keying = Some("zrtp".into());
        assert!(build(&a, true).is_err());
    }

    #[test]
    fn outbound_flags() {
        let s = build(&args(), true).unwrap();
        assert!(s.account.outbound);
        assert_eq!(s.account.instance, None);
        assert_eq!(s.account.keepalive_secs, None);
        assert_eq!(s.ua.keepalive, Some(std::time::Duration::from_secs(90)));
        let mut a = args();
        a.outbound = Some("off".into());
        a.instance = Some("urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6".into());
        a.keepalive = Some(10);
        let s = build(&a, true).unwrap();
        assert!(!s.account.outbound);
        assert_eq!(
            s.account.instance.as_deref(),
            Some("urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6")
        );
        assert_eq!(s.account.keepalive_secs, Some(10));
        assert_eq!(s.ua.keepalive, Some(std::time::Duration::from_secs(10)));
        for (outbound, instance) in [
            ("maybe", None),
            ("on", Some("uuid:1")),
            ("on", Some("urn:x\"y")),
        ] {
            let mut a = args();
            a.outbound = Some(outbound.into());
            a.instance = instance.map(str::to_string);
            assert!(build(&a, true).is_err(), "{outbound} {instance:?}");
        }
    }

    #[test]
    fn msrp_relay() {
        let mut a = args();
        a.msrp_relay = Some("msrps://127.0.0.1:2856;tcp".into());
        let s = build(&a, true).unwrap();
        assert_eq!(
            s.account.msrp_relay.as_deref(),
            Some("msrps://127.0.0.1:2856;tcp")
        );
        assert_eq!(build(&args(), true).unwrap().account.msrp_relay, None);
        for bad in ["https://relay", "msrp://relay:2855/sess;tcp", "relay:2855"] {
            let mut a = args();
            a.msrp_relay = Some(bad.into());
            assert!(build(&a, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn usage_errors() {
        let mut a = args();
        a.user = None;
        assert!(build(&a, true).is_err());
        assert!(build(&a, false).is_ok());
        let mut a = args();
        a.transport = Some("sctp".into());
        assert!(build(&a, true).is_err());
        let mut a = args();
        a.user = Some("bob@x".into());
        assert!(build(&a, true).is_err());
    }

    #[test]
    fn ice_flags() {
        use tandem_client_core::nat::ice::IcePolicy;
        let s = build(&args(), true).unwrap();
        assert!(s.account.ice, "ICE is on by default");
        assert_eq!(s.account.ice_policy, IcePolicy::All);
        assert!(s.account.turn.is_none() && s.account.stun.is_none());

        let mut a = args();
        a.password = Some("pw".into());
        a.auth_user = Some("alice-auth".into());
        a.turn = Some("turn:192.0.2.1:3478?transport=tcp".into());
        a.stun = Some("192.0.2.2:3478".into());
        a.ice_policy = Some("relay".into());
        let s = build(&a, true).unwrap();
        let turn = s.account.turn.expect("a TURN server");
        assert_eq!(turn.username, "alice-auth", "default: the auth user");
        assert_eq!(turn.password, "pw", "default: the account password");
        assert_eq!(turn.uri.port, 3478);
        assert_eq!(s.account.stun.as_deref(), Some("192.0.2.2:3478"));
        assert_eq!(s.account.ice_policy, IcePolicy::Relay);

        a.turn_user = Some("t".into());
        a.turn_password = Some("tp".into());
        let turn = build(&a, true).unwrap().account.turn.unwrap();
        assert_eq!(
            (turn.username.as_str(), turn.password.as_str()),
            ("t", "tp")
        );

        let mut a = args();
        a.ice = Some("off".into());
        assert!(!build(&a, true).unwrap().account.ice);
        for (flag, bad) in [
            ("ice", "maybe"),
            ("ice-policy", "some"),
            ("turn", "http://x"),
        ] {
            let mut a = args();
            match flag {
                "ice" => a.ice = Some(bad.into()),
                "ice-policy" => a.ice_policy = Some(bad.into()),
                _ => a.turn = Some(bad.into()),
            }
            assert!(build(&a, true).is_err(), "--{flag} {bad} accepted");
        }
        let mut a = args();
        a.ice_policy = Some("relay".into());
        assert!(build(&a, true).is_err(), "relay-only needs --turn");
    }
}
