//! `tandem-cli`: the headless Tandem client (register, call, answer, options, devices).
//!
//! Events go to stdout, one line each (`event key=value ...`); diagnostics go to stderr.
//! Exit codes: 0 success, 1 refused by the peer, 2 usage, 3 authentication failed,
//! 4 timeout or network error, 5 interrupted.

mod args;
mod buddy;
mod cameras;
mod commands;
mod conference;
mod control;
mod devices;
mod driver;
mod msrp;
mod mwi;
mod output;
mod plan;
mod profile;
mod settings;
mod tls;
mod watch_list;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::output::Exit;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() {
                Exit::Usage.code()
            } else {
                0
            });
        }
    };
    let command = match cli.command {
        _ if cli.list_devices => Command::Devices,
        Some(c) => c,
        None => {
            eprintln!(
                "tandem-cli: a command is required (register, call, answer, message, chat, send-file, presence, watch, buddy, options, devices); see --help"
            );
            std::process::exit(Exit::Usage.code());
        }
    };
    if let Command::Cameras(args) = &command {
        init_logging(cli.account.verbose);
        std::process::exit(cameras::run(args).code());
    }
    if matches!(command, Command::Devices) {
        init_logging(cli.account.verbose);
        std::process::exit(devices::list().code());
    }
    let account = match profile::merge(cli.account.clone()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tandem-cli: {e:#}");
            std::process::exit(Exit::Usage.code());
        }
    };
    init_logging(account.verbose);
    let need_user = !matches!(command, Command::Options { .. });
    let settings = match settings::build(&account, need_user) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tandem-cli: {e:#}");
            std::process::exit(Exit::Usage.code());
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tandem-cli: cannot start the async runtime: {e}");
            std::process::exit(Exit::Network.code());
        }
    };
    let exit = runtime.block_on(commands::run(settings, command));
    // Background tasks (timers of finished transactions) must not delay the exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    std::process::exit(exit.code());
}

/// Diagnostics to stderr: `RUST_LOG` if set, else warnings (SIP traffic with `-v`).
fn init_logging(verbose: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if verbose {
        "debug,hickory_proto=info,hickory_resolver=info,rustls=info"
    } else {
        "warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(verbose)
        .try_init();
}
