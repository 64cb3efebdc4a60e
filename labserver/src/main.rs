//! `tandem-lab`: the Tandem lab server.
//!
//! ```text
//! tandem-lab [--config lab.toml] [--data-dir DIR] [--print-config] [serve]
//! tandem-lab user add NAME [--password P] [--domain D]
//! tandem-lab user del NAME [--domain D]
//! tandem-lab user list
//! tandem-lab cdr list [--limit N]
//! ```
//! Exit codes: 0 success, 1 runtime error, 2 usage or configuration error.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rand::seq::IndexedRandom;
use tandem_labserver::ca::LabCa;
use tandem_labserver::config::LabConfig;
use tandem_labserver::store::{Cdr, Store};

/// The demo accounts created on first start when `demo_users` is on.
const DEMO_USERS: [&str; 3] = ["alice", "bob", "carol"];
/// The store key recording that the demo accounts were created once.
const DEMO_USERS_META_KEY: &str = "demo_users_created";
/// Characters of generated passwords (no look-alikes such as 0/O or 1/l/I).
const PASSWORD_ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// Length of generated passwords (about 70 bits).
const PASSWORD_LEN: usize = 12;

#[derive(Debug, Parser)]
#[command(
    name = "tandem-lab",
    version,
    about = "The Tandem lab server: SIP registrar and proxy with digest auth, TLS and call records."
)]
struct Cli {
    /// Configuration file (TOML); every setting has a default.
    #[arg(
        short,
        long,
        global = true,
        value_name = "FILE",
        env = "TANDEM_LAB_CONFIG"
    )]
    config: Option<PathBuf>,
    /// Data directory (database, lab CA); overrides `data_dir` from the configuration.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long, global = true)]
    print_config: bool,
    /// More logging on stderr (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the lab server (the default).
    Serve,
    /// Manage user accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Show call detail records.
    #[command(subcommand)]
    Cdr(CdrCommand),
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user or set a new password (a random one is printed if none is given).
    Add {
        /// The user name (user part of the address, and digest username).
        name: String,
        /// The password; random if omitted.
        #[arg(long, env = "TANDEM_LAB_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// The domain; default the configured domain.
        #[arg(long)]
        domain: Option<String>,
    },
    /// Delete a user.
    Del {
        /// The user name.
        name: String,
        /// The domain; default the configured domain.
        #[arg(long)]
        domain: Option<String>,
    },
    /// List users.
    List,
}

#[derive(Debug, Subcommand)]
enum CdrCommand {
    /// List the most recent call records, newest first.
    List {
        /// How many records to show.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(0..))]
        limit: i64,
    },
}

/// Why the program stops early: a usage or configuration error (exit 2) or anything else (1).
enum Failure {
    Usage(anyhow::Error),
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::Runtime(e)
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with 0; usage errors to stderr with 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    init_logging(cli.verbose);
    // One thread runs the whole SIP core: the transaction layer lives in one driver task anyway, and
    // hand-offs between worker threads made responses leave in bursts under load (SIPp then dropped
    // some and retransmitted: 6,000 digest REGISTERs/s went from ~100 retransmissions to none).
    // SQLite work runs on sqlx's own worker thread, so it never blocks this one.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tandem-lab: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => {
            eprintln!("tandem-lab: {e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("tandem-lab: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let mut config = match &cli.config {
        Some(path) => LabConfig::load(path).map_err(|e| Failure::Usage(e.into()))?,
        None => LabConfig::default(),
    };
    if let Some(dir) = &cli.data_dir {
        config.data_dir = dir.clone();
    }
    config.normalize();
    config.validate().map_err(|e| Failure::Usage(e.into()))?;
    if cli.print_config {
        let text = config.to_toml().map_err(anyhow::Error::from)?;
        print!("{text}");
        return Ok(());
    }
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await?,
        Command::User(cmd) => user(&config, cmd).await?,
        Command::Cdr(CdrCommand::List { limit }) => cdr_list(&config, limit).await?,
    }
    Ok(())
}

async fn open_store(config: &LabConfig) -> anyhow::Result<Store> {
    match &config.database_url {
        Some(url) => Store::open(url)
            .await
            .context("cannot open the database given by database_url"),
        None => Store::open_in(&config.data_dir)
            .await
            .with_context(|| format!("cannot open the database in {}", config.data_dir.display())),
    }
}

fn random_password() -> String {
    let mut rng = rand::rng();
    (0..PASSWORD_LEN)
        .filter_map(|_| PASSWORD_ALPHABET.choose(&mut rng).map(|&b| char::from(b)))
        .collect()
}

async fn serve(config: LabConfig) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let demo = create_demo_users(&config, &store).await?;
    let ca = LabCa::load_or_create(&config.data_dir, &config.certificate_hostnames())
        .with_context(|| format!("cannot set up the lab CA in {}", config.data_dir.display()))?;
    print_banner(&config, &ca, &demo)?;
    run_server(config, store, ca).await
}

/// Creates the demo users once (first start with `demo_users` on); returns the
/// (name, password) pairs created now.
async fn create_demo_users(
    config: &LabConfig,
    store: &Store,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut created = Vec::new();
    if !config.demo_users || store.get_meta(DEMO_USERS_META_KEY).await?.is_some() {
        return Ok(created);
    }
    for name in DEMO_USERS {
        if store.user_exists(name, &config.domain).await? {
            continue;
        }
        let password = random_password();
        store
            .add_user_in_realm(name, &config.domain, config.realm(), &password)
            .await?;
        created.push((name.to_owned(), password));
    }
    store.set_meta(DEMO_USERS_META_KEY, "1").await?;
    Ok(created)
}

fn first_port(addrs: &[std::net::SocketAddr]) -> String {
    match addrs.first() {
        None => "off".to_owned(),
        Some(a) if a.port() == 0 => "(any free port: see the ready line)".to_owned(),
        Some(a) => a.port().to_string(),
    }
}

fn print_banner(config: &LabConfig, ca: &LabCa, demo: &[(String, String)]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let domain = &config.domain;
    writeln!(out, "Tandem lab server")?;
    writeln!(out, "  domain      {domain}")?;
    if !config.aliases.is_empty() {
        writeln!(out, "  aliases     {}", config.aliases.join(", "))?;
    }
    writeln!(out, "  data dir    {}", config.data_dir.display())?;
    writeln!(
        out,
        "  SIP         udp {} / tcp {} / tls {}",
        first_port(&config.listen.udp),
        first_port(&config.listen.tcp),
        first_port(&config.listen.tls)
    )?;
    writeln!(out, "  lab CA      {}", ca.ca_pem_path().display())?;
    if !demo.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "Demo users created (passwords are shown only this once):"
        )?;
        for (name, password) in demo {
            writeln!(out, "  {name}@{domain}  password: {password}")?;
        }
        writeln!(
            out,
            "Set a password of your own with: tandem-lab user add alice --password NEW"
        )?;
    }
    writeln!(out)?;
    writeln!(out, "Point a softphone at it:")?;
    writeln!(
        out,
        "  account     sip:alice@{domain}, digest username alice, realm {}",
        config.realm()
    )?;
    writeln!(
        out,
        "  proxy       this machine's address, port {} (UDP/TCP) or {} (TLS)",
        first_port(&config.listen.udp),
        first_port(&config.listen.tls)
    )?;
    writeln!(
        out,
        "  tandem-cli  tandem-cli --user alice --domain {domain} --password PW --proxy 127.0.0.1:{} register",
        config
            .listen
            .udp
            .first()
            .filter(|a| a.port() != 0)
            .map_or_else(|| "PORT".to_owned(), |a| a.port().to_string())
    )?;
    writeln!(
        out,
        "  TLS         trust the lab CA: tandem-cli --transport tls --ca-file {} ...",
        ca.ca_pem_path().display()
    )?;
    writeln!(
        out,
        "              system-wide (Debian/Ubuntu): sudo cp {} /usr/local/share/ca-certificates/tandem-lab.crt && sudo update-ca-certificates",
        ca.ca_pem_path().display()
    )?;
    writeln!(
        out,
        "              other softphones: import {} as a trusted root certificate",
        ca.ca_pem_path().display()
    )?;
    out.flush()?;
    Ok(())
}

/// Hands over to the SIP service: serves until SIGINT/SIGTERM (prints the `ready …` line).
async fn run_server(config: LabConfig, store: Store, ca: LabCa) -> anyhow::Result<()> {
    tandem_labserver::server::run(config, store, ca).await
}

async fn user(config: &LabConfig, cmd: UserCommand) -> Result<(), Failure> {
    let store = open_store(config).await?;
    let result = match cmd {
        UserCommand::Add {
            name,
            password,
            domain,
        } => {
            let domain = domain.map_or_else(|| config.domain.clone(), |d| d.to_ascii_lowercase());
            // Users of the served domain get HA1s for the realm the server challenges with.
            let realm = if domain == config.domain {
                config.realm().to_owned()
            } else {
                domain.clone()
            };
            user_add(&store, &name, &domain, &realm, password).await
        }
        UserCommand::Del { name, domain } => {
            let domain = domain.map_or_else(|| config.domain.clone(), |d| d.to_ascii_lowercase());
            if store
                .delete_user(&name, &domain)
                .await
                .map_err(anyhow::Error::from)?
            {
                println!("deleted {name}@{domain}");
                Ok(())
            } else {
                Err(Failure::Runtime(anyhow::anyhow!("no user {name}@{domain}")))
            }
        }
        UserCommand::List => {
            let users = store.list_users().await.map_err(anyhow::Error::from)?;
            let mut out = std::io::stdout().lock();
            for u in users {
                writeln!(
                    out,
                    "{}@{}\tcreated {}",
                    u.username,
                    u.domain,
                    format_unix_secs(u.created_at)
                )
                .map_err(anyhow::Error::from)?;
            }
            Ok(())
        }
    };
    store.close().await;
    result
}

async fn user_add(
    store: &Store,
    name: &str,
    domain: &str,
    realm: &str,
    password: Option<String>,
) -> Result<(), Failure> {
    let existed = store
        .user_exists(name, domain)
        .await
        .map_err(anyhow::Error::from)?;
    let (password, generated) = match password {
        Some(p) if p.is_empty() => {
            return Err(Failure::Usage(anyhow::anyhow!(
                "the password must not be empty"
            )));
        }
        Some(p) => (p, false),
        None => (random_password(), true),
    };
    store
        .add_user_in_realm(name, domain, realm, &password)
        .await
        .map_err(|e| match e {
            tandem_labserver::store::StoreError::InvalidInput { .. } => Failure::Usage(e.into()),
            other => Failure::Runtime(other.into()),
        })?;
    let verb = if existed { "updated" } else { "added" };
    println!("{verb} {name}@{domain}");
    if generated {
        println!("password: {password}");
    }
    Ok(())
}

async fn cdr_list(config: &LabConfig, limit: i64) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    let cdrs = store.list_cdrs(limit).await;
    store.close().await;
    let mut out = std::io::stdout().lock();
    for cdr in cdrs? {
        writeln!(out, "{}", format_cdr(&cdr))?;
    }
    Ok(())
}

fn format_cdr(cdr: &Cdr) -> String {
    let duration = match (cdr.answer_at, cdr.end_at) {
        (Some(a), Some(e)) if e >= a => format!("{:.1}s", (e - a) as f64 / 1000.0),
        (Some(_), None) => "ongoing".to_owned(),
        _ => "-".to_owned(),
    };
    let status = cdr.status.map_or_else(|| "-".to_owned(), |s| s.to_string());
    format!(
        "{}\t{} -> {}\t{}\tstatus={}\tduration={}\tcall-id={}",
        format_unix_millis(cdr.start_at),
        cdr.caller,
        cdr.callee,
        cdr.cause,
        status,
        duration,
        cdr.call_id
    )
}

fn format_unix_secs(secs: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => secs.to_string(),
    }
}

fn format_unix_millis(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    let base = format_unix_secs(secs);
    match base.strip_suffix('Z') {
        Some(b) => format!("{b}.{frac:03}Z"),
        None => base,
    }
}
