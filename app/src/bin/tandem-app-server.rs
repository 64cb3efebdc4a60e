//! `tandem-app-server`: the Tandem ui in a plain browser. Serves the built ui and the app's
//! commands (HTTP) and events (server-sent events) over the same client-core state the desktop
//! app uses, for fast ui work and browser tests.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tandem_app::types::DeviceChoice;
use tandem_app::{AppOptions, AppState, Secrets};

#[derive(Debug, Parser)]
#[command(
    name = "tandem-app-server",
    version,
    about = "The Tandem ui and app API over HTTP, for a browser."
)]
struct Cli {
    /// Address to serve on (loopback by default: the API can place calls).
    #[arg(long, default_value = "127.0.0.1:1421")]
    listen: SocketAddr,
    /// Folder of the built ui.
    #[arg(long, default_value = "ui/dist")]
    ui_dir: PathBuf,
    /// Data folder (accounts, history, bundled lab).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Keyring service name for passwords.
    #[arg(long, default_value = tandem_app::secrets::SERVICE)]
    keyring_service: String,
    /// Microphone for calls (`default`, a device name, `null`, `tone:440`, `file:PATH`).
    #[arg(long, default_value = "default")]
    capture: String,
    /// Speaker for calls (`default`, a device name, `null`, `file:PATH`).
    #[arg(long, default_value = "default")]
    playback: String,
    /// Local address for SIP and media (all interfaces by default).
    #[arg(long, default_value = "0.0.0.0")]
    sip_ip: std::net::IpAddr,
    /// Start the bundled lab server and sign in to it at once.
    #[arg(long)]
    lab: bool,
}

fn default_data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(std::env::temp_dir)
        .join("tandem-app")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let secrets = Secrets::os_with_service(&cli.keyring_service)
        .map_err(|f| anyhow::anyhow!("{}", f.message))?;
    let state = AppState::open(AppOptions {
        data_dir: cli.data_dir.unwrap_or_else(default_data_dir),
        secrets,
        devices: DeviceChoice {
            capture: cli.capture,
            playback: cli.playback,
        },
        listen_ip: cli.sip_ip,
    })
    .map_err(|f| anyhow::anyhow!("{} ({})", f.message, f.detail))?;
    if cli.lab {
        let lab = state
            .start_bundled_lab()
            .await
            .map_err(|f| anyhow::anyhow!("{} ({})", f.message, f.detail))?;
        println!(
            "lab {} udp={} signed in as {}",
            lab.domain, lab.udp, lab.signed_in_as
        );
    }
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    println!("listening http://{}", listener.local_addr()?);
    let app = tandem_app::server::router(state.clone(), cli.ui_dir);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    state.shutdown().await;
    Ok(())
}
