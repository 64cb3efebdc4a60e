//! The command line of `tandem-cli` (clap derive) and its merge with a `--profile` file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// `tandem-cli`: register, call, answer and probe with OPTIONS from the command line.
#[derive(Debug, Parser)]
#[command(
    name = "tandem-cli",
    version,
    about,
    long_about = None,
    after_help = "Events go to stdout, one line each: `event key=value ...` (registered, unregistered, \
trying, ringing, answered, ended, incoming, rejected, failed, options). Diagnostics go to stderr.\n\
Exit codes: 0 success, 1 refused by the peer (3xx-6xx), 2 usage/config error, 3 authentication \
failed, 4 timeout or network error, 5 interrupted (SIGINT/SIGTERM)."
)]
pub struct Cli {
    /// Account and transport options (each may also come from `--profile`).
    #[command(flatten)]
    pub account: AccountArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Account options; any of them may come from a profile file, flags win.
#[derive(Debug, Clone, Default, Args)]
pub struct AccountArgs {
    /// A TOML file with account options (same key names as the flags).
    #[arg(long, global = true, value_name = "FILE.toml")]
    pub profile: Option<PathBuf>,
    /// AoR user part (required except for `options`).
    #[arg(long, global = true, value_name = "NAME")]
    pub user: Option<String>,
    /// AoR domain (e.g. tandem.lab or 127.0.0.1).
    #[arg(long, global = true, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// Digest username (default: --user).
    #[arg(long = "auth-user", global = true, value_name = "NAME")]
    pub auth_user: Option<String>,
    /// Digest password (or the environment variable TANDEM_PASSWORD).
    #[arg(long, global = true, env = "TANDEM_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Outbound proxy / registrar to send everything to (default: RFC 3263 on the domain).
    #[arg(long, global = true, value_name = "URI|HOST:PORT")]
    pub proxy: Option<String>,
    /// Transport: udp, tcp or tls (default udp).
    #[arg(long, global = true, value_name = "udp|tcp|tls")]
    pub transport: Option<String>,
    /// An extra CA certificate (PEM) to trust for TLS, e.g. the lab CA.
    #[arg(long = "ca-file", global = true, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Local bind address (default 0.0.0.0:0).
    #[arg(long, global = true, value_name = "IP:PORT")]
    pub listen: Option<SocketAddr>,
    /// Registration expiry to ask for, in seconds (default 3600).
    #[arg(long, global = true, value_name = "SECS")]
    pub expires: Option<u32>,
    /// Display name for From headers.
    #[arg(long = "display-name", global = true, value_name = "NAME")]
    pub display_name: Option<String>,
    /// Log SIP traffic to stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

/// The commands of `tandem-cli`.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Register, stay registered for --duration seconds, then unregister unless --keep.
    Register {
        /// How long to stay registered (refreshing before expiry), in seconds.
        #[arg(long, default_value_t = 0, value_name = "SECS")]
        duration: u64,
        /// Do not unregister at the end.
        #[arg(long)]
        keep: bool,
        /// Register this contact instead of our own (third-party contact).
        #[arg(long, value_name = "URI")]
        contact: Option<String>,
    },
    /// Call a URI with a real SDP offer, hold the call, then hang up.
    Call {
        /// Whom to call (sip:bob@tandem.lab, or bob, or bob@host).
        #[arg(value_name = "URI")]
        uri: String,
        /// How long to hold the answered call before BYE, in seconds.
        #[arg(long, default_value_t = 5, value_name = "SECS")]
        duration: u64,
        /// Give up (CANCEL) if not answered within this many seconds.
        #[arg(long, default_value_t = 30, value_name = "SECS")]
        timeout: u64,
        /// Register before calling (and unregister at the end).
        #[arg(long)]
        register: bool,
    },
    /// Register, then auto-answer incoming calls.
    Answer {
        /// Exit after this many calls (default: run until SIGINT/SIGTERM).
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Hang up after this many seconds (default: wait for the caller's BYE).
        #[arg(long, value_name = "SECS")]
        duration: Option<u64>,
        /// Ring this many seconds before answering.
        #[arg(long, default_value_t = 0, value_name = "SECS")]
        ring: u64,
        /// Reject every call with this status code instead of answering.
        #[arg(long, value_name = "CODE", value_parser = clap::value_parser!(u16).range(300..=699))]
        reject: Option<u16>,
        /// Do not register first.
        #[arg(long = "no-register")]
        no_register: bool,
    },
    /// Send OPTIONS and print the status.
    Options {
        /// The URI to probe.
        #[arg(value_name = "URI")]
        uri: String,
    },
}
