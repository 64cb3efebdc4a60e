//! Account profiles: a TOML file with the same keys as the account flags; flags win.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::args::AccountArgs;

/// The contents of a `--profile FILE.toml` (every key optional; kebab-case or snake_case).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Profile {
    /// AoR user part.
    pub user: Option<String>,
    /// AoR domain.
    pub domain: Option<String>,
    /// Digest username.
    #[serde(alias = "auth_user")]
    pub auth_user: Option<String>,
    /// Digest password.
    pub password: Option<String>,
    /// Outbound proxy.
    pub proxy: Option<String>,
    /// Transport name.
    pub transport: Option<String>,
    /// Extra CA file for TLS (relative paths are relative to the profile's folder).
    #[serde(alias = "ca_file")]
    pub ca_file: Option<PathBuf>,
    /// Local bind address.
    pub listen: Option<SocketAddr>,
    /// Registration expiry.
    pub expires: Option<u32>,
    /// Display name.
    #[serde(alias = "display_name")]
    pub display_name: Option<String>,
    /// Verbose logging.
    pub verbose: Option<bool>,
    /// SRTP policy (off, optional, mandatory).
    pub srtp: Option<String>,
    /// SRTP keying (sdes, dtls).
    #[serde(alias = "srtp_keying")]
    pub srtp_keying: Option<String>,
    /// MSRP relay URI.
    #[serde(alias = "msrp_relay")]
    pub msrp_relay: Option<String>,
}

impl Profile {
    /// Reads and parses a profile file.
    pub fn load(path: &Path) -> Result<Profile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read profile {}", path.display()))?;
        let mut profile: Profile =
            toml::from_str(&text).with_context(|| format!("invalid profile {}", path.display()))?;
        if let Some(ca) = &profile.ca_file
            && ca.is_relative()
            && let Some(dir) = path.parent()
        {
            profile.ca_file = Some(dir.join(ca));
        }
        Ok(profile)
    }
}

/// Fills the options not given on the command line from the profile (if any).
pub fn merge(mut args: AccountArgs) -> Result<AccountArgs> {
    let Some(path) = args.profile.clone() else {
        return Ok(args);
    };
    if !path.is_file() {
        bail!("profile {} does not exist", path.display());
    }
    let p = Profile::load(&path)?;
    fill(&mut args.user, p.user);
    fill(&mut args.domain, p.domain);
    fill(&mut args.auth_user, p.auth_user);
    fill(&mut args.password, p.password);
    fill(&mut args.proxy, p.proxy);
    fill(&mut args.transport, p.transport);
    fill(&mut args.ca_file, p.ca_file);
    fill(&mut args.listen, p.listen);
    fill(&mut args.expires, p.expires);
    fill(&mut args.display_name, p.display_name);
    fill(&mut args.srtp, p.srtp);
    fill(&mut args.srtp_keying, p.srtp_keying);
    fill(&mut args.msrp_relay, p.msrp_relay);
    if !args.verbose {
        args.verbose = p.verbose.unwrap_or(false);
    }
    Ok(args)
}

fn fill<T>(slot: &mut Option<T>, from_profile: Option<T>) {
    if slot.is_none() {
        *slot = from_profile;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn flags_win_over_profile() {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        writeln!(
            file,
            "user = \"alice\"\ndomain = \"tandem.lab\"\nauth-user = \"a1\"\ntransport = \"tcp\"\nexpires = 60\nca_file = \"ca.pem\"\nverbose = true"
        )
        .unwrap();
        let args = AccountArgs {
            profile: Some(file.path().to_path_buf()),
            user: Some("bob".into()),
            ..AccountArgs::default()
        };
        let merged = merge(args).unwrap();
        assert_eq!(merged.user.as_deref(), Some("bob"));
        assert_eq!(merged.domain.as_deref(), Some("tandem.lab"));
        assert_eq!(merged.auth_user.as_deref(), Some("a1"));
        assert_eq!(merged.transport.as_deref(), Some("tcp"));
        assert_eq!(merged.expires, Some(60));
        assert!(merged.verbose);
        let ca = merged.ca_file.unwrap();
        assert_eq!(ca, file.path().parent().unwrap().join("ca.pem"));
    }

    #[test]
    fn unknown_key_is_an_error() {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        writeln!(file, "usr = \"alice\"").unwrap();
        let args = AccountArgs {
            profile: Some(file.path().to_path_buf()),
            ..AccountArgs::default()
        };
        assert!(merge(args).is_err());
    }

    #[test]
    fn missing_profile_is_an_error() {
        let args = AccountArgs {
            profile: Some(PathBuf::from("/nonexistent/tandem-profile.toml")),
            ..AccountArgs::default()
        };
        assert!(merge(args).is_err());
    }
}
