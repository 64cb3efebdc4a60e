//! `tandem`: the Tandem desktop app. A thin Tauri 2 shell over `tandem-app`: one `api` command
//! forwards every command to [`tandem_app::dispatch`], every [`AppEvent`] is emitted to the ui
//! as `app-event`, the `tandem-video:` URI scheme answers the ui's requests for the pictures of
//! a call's video ([`AppState::video_frame`]), plus a tray icon, a single running instance and a
//! system notification for incoming calls, and `sip:`/`sips:`/`tel:`/`callto:` links (the
//! deep-link plugin: a link on the command line, a second launch forwarded to the running
//! instance over the session bus, an Apple Event on macOS) offered as a call to confirm.
//!
//! Flags: `--minimized` (start hidden in the tray; also `TANDEM_START_MINIMIZED=1`),
//! `--register-links` (make Tandem the system's handler for those links, then run).
//!
//! Environment (for tests and kiosks): `TANDEM_KEYRING_SERVICE` (keyring service name of the
//! passwords), `TANDEM_CAPTURE` / `TANDEM_PLAYBACK` (device specs of new calls: `default`, a
//! device name, `null`, `tone:440`, `file:PATH`), `TANDEM_SIP_IP` (local address for SIP and
//! media), `TANDEM_START_LAB=1` (start the bundled lab server and sign in at launch, as the
//! wizard's first choice does; prints `tandem: signed in as … (lab at …) in N ms` on stderr).
//! The data folder follows `XDG_DATA_HOME`.

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod memory;
mod tray;

use anyhow::Context;
use serde_json::Value;
use tandem_app::links::LinkArg;
use tandem_app::types::{AppEvent, CallPhase, DeviceChoice, Failure};
use tandem_app::{AppOptions, AppState, Secrets};
use tauri::{Emitter, Manager};
use tauri_plugin_deep_link::DeepLinkExt;
use tauri_plugin_notification::NotificationExt;
use tray::show_main;

/// The one command the ui calls: `invoke("api", { command, args })`.
#[tauri::command]
async fn api(
    state: tauri::State<'_, AppState>,
    command: String,
    args: Value,
) -> Result<Value, Failure> {
    tandem_app::dispatch(&state, &command, args).await
}

/// Answers one `tandem-video:` request from the ui ([`tandem_app::scheme`]), asynchronously: it
/// may wait for the next picture.
fn video_request<R: tauri::Runtime>(
    ctx: tauri::UriSchemeContext<'_, R>,
    request: tauri::http::Request<Vec<u8>>,
    responder: tauri::UriSchemeResponder,
) {
    let state = ctx
        .app_handle()
        .try_state::<AppState>()
        .map(|s| s.inner().clone());
    tauri::async_runtime::spawn(async move {
        responder.respond(tandem_app::scheme::video_response(state, request.uri()).await);
    });
}

/// Offers the call a link asks for (the ui asks the user to confirm it).
fn open_link(state: &AppState, link: &str) {
    if let Err(f) = state.open_link(LinkArg {
        link: link.to_owned(),
    }) {
        tracing::warn!(link, problem = %f.message, "link refused");
    }
}

fn main() -> anyhow::Result<()> {
    // First: it sets the environment WebKit reads, which is sound only before any thread exists.
    let memory_choices = memory::prepare();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    tracing::info!(?memory_choices, "start-up memory choices");
    tauri::Builder::default()
        // A second launch hands its arguments to this instance (a link among them goes to the
        // deep-link plugin first) and exits.
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
            show_main(app)
        }))
        .plugin(tauri_plugin_deep_link::init())
        .plugin(tauri_plugin_notification::init())
        .invoke_handler(tauri::generate_handler![api])
        .register_asynchronous_uri_scheme_protocol(tandem_app::video::URI_SCHEME, video_request)
        .setup(|app| {
            let data_dir = app.path().app_data_dir()?;
            let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
            let secrets = match env("TANDEM_KEYRING_SERVICE") {
                Some(service) => Secrets::os_with_service(&service),
                None => Secrets::os(),
            }
            .map_err(|f| anyhow::anyhow!("{}: {}", f.message, f.detail))?;
            let defaults = DeviceChoice::default();
            let listen_ip = match env("TANDEM_SIP_IP") {
                Some(ip) => ip
                    .parse()
                    .with_context(|| format!("TANDEM_SIP_IP={ip} is not an IP address"))?,
                None => std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            };
            let state = AppState::open(AppOptions {
                data_dir,
                secrets,
                devices: DeviceChoice {
                    capture: env("TANDEM_CAPTURE").unwrap_or(defaults.capture),
                    playback: env("TANDEM_PLAYBACK").unwrap_or(defaults.playback),
                },
                listen_ip,
            })
            .map_err(|f| anyhow::anyhow!("{}: {}", f.message, f.detail))?;
            let handle = app.handle().clone();
            let mut events = state.subscribe();
            tauri::async_runtime::spawn(async move {
                loop {
                    match events.recv().await {
                        Ok(event) => {
                            if let AppEvent::Call { call } = &event
                                && call.phase == CallPhase::Incoming
                            {
                                let _ = handle
                                    .notification()
                                    .builder()
                                    .title("Incoming call")
                                    .body(format!("{} is calling", call.remote))
                                    .show();
                            }
                            let _ = handle.emit("app-event", &event);
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(missed = n, "ui events dropped");
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    }
                }
            });
            if env("TANDEM_START_LAB").is_some_and(|v| v != "0") {
                let lab_state = state.clone();
                let launched = std::time::Instant::now();
                tauri::async_runtime::spawn(async move {
                    match lab_state.start_bundled_lab().await {
                        Ok(info) => eprintln!(
                            "tandem: signed in as {} (lab at {}) in {} ms",
                            info.signed_in_as,
                            info.udp,
                            launched.elapsed().as_millis()
                        ),
                        Err(f) => eprintln!("tandem: the bundled lab did not start: {}", f.message),
                    }
                });
            }
            // Received files go to the user's Downloads folder.
            state.set_received_dir(app.path().download_dir().ok());
            // Links: the one this launch was started with, and the ones that come later.
            let links = app.deep_link();
            if std::env::args().any(|a| a == "--register-links")
                && let Err(e) = links.register_all()
            {
                eprintln!("tandem: could not register as the handler of sip: and tel: links: {e}");
            }
            for url in links.get_current().ok().flatten().unwrap_or_default() {
                open_link(&state, url.as_str());
            }
            let link_state = state.clone();
            links.on_open_url(move |event| {
                for url in event.urls() {
                    open_link(&link_state, url.as_str());
                }
            });
            tray::build(app, &state)?;
            if tray::start_minimized(std::env::args(), env("TANDEM_START_MINIMIZED"))
                && let Some(window) = app.get_webview_window("main")
            {
                let _ = window.hide();
            }
            app.manage(state);
            tauri::async_runtime::spawn(async {
                tokio::time::sleep(memory::TRIM_AFTER).await;
                if let Ok(trimmed) = tokio::task::spawn_blocking(memory::trim_heap).await {
                    tracing::debug!(trimmed, "heap trimmed after start-up");
                }
            });

            Ok(())
        })
        .run(tauri::generate_context!())
        .context("running the Tandem desktop app")
}
