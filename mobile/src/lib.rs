//! The Tandem mobile app shell (Tauri 2, Android and iOS): the same `api` command and
//! `app-event` events as the desktop shell over [`tandem_app`], in the ui's phone layout.
//!
//! Android loads `libtandem_mobile.so` and calls the generated entry point; iOS links the static
//! library. What a phone needs beyond this shell (push, CallKit/ConnectionService, background
//! audio) is designed in `mobile/ARCHITECTURE-mobile.md` with its plugin points.

use serde_json::Value;
use tandem_app::types::{DeviceChoice, Failure};
use tandem_app::{AppOptions, AppState, Secrets};
use tauri::{Emitter, Manager};

/// The one command the ui calls: `invoke("api", { command, args })`.
#[tauri::command]
async fn api(
    state: tauri::State<'_, AppState>,
    command: String,
    args: Value,
) -> Result<Value, Failure> {
    tandem_app::dispatch(&state, &command, args).await
}

/// Opens the app state in the platform's app data folder.
fn open_state(app: &tauri::App) -> Result<AppState, Box<dyn std::error::Error>> {
    let data_dir = app.path().app_data_dir()?;
    let secrets = Secrets::os().map_err(|f| format!("{}: {}", f.message, f.detail))?;
    let state = AppState::open(AppOptions {
        data_dir,
        secrets,
        devices: DeviceChoice::default(),
        listen_ip: std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    })
    .map_err(|f| format!("{}: {}", f.message, f.detail))?;
    Ok(state)
}

/// Forwards every app event to the ui as `app-event`.
fn forward_events(handle: tauri::AppHandle, state: &AppState) {
    let mut events = state.subscribe();
    tauri::async_runtime::spawn(async move {
        loop {
            match events.recv().await {
                Ok(event) => {
                    let _ = handle.emit("app-event", &event);
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "ui events dropped");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}

/// Answers one `tandem-video:` picture request of the ui as the desktop shell does
/// ([`tandem_app::scheme`]); on phones without video codecs no call has pictures and it answers
/// 404.
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

/// The app's entry point on Android and iOS (and a plain function elsewhere).
#[cfg_attr(mobile, tauri::mobile_entry_point)]
pub fn run() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let result = tauri::Builder::default()
        .invoke_handler(tauri::generate_handler![api])
        .register_asynchronous_uri_scheme_protocol(tandem_app::video::URI_SCHEME, video_request)
        .setup(|app| {
            let state = open_state(app)?;
            forward_events(app.handle().clone(), &state);
            app.manage(state);
            Ok(())
        })
        .run(tauri::generate_context!());
    if let Err(e) = result {
        tracing::error!(error = %e, "the Tandem app stopped");
    }
}
