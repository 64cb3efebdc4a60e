//! The HTTP face of the commands and events, for the ui in a plain browser: `POST
//! /api/COMMAND` with JSON arguments answers JSON (HTTP 422 with a [`Failure`] on error),
//! `GET /api/events` is a server-sent event stream of [`AppEvent`]s, `GET
//! /api/video/{call}/{remote|self}?after=N&maxw=W&maxh=H` answers the next picture of a call's
//! video ([`crate::video::serve_frame`]), and everything else is served from the built ui folder.

use std::convert::Infallible;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

use crate::state::AppState;
use crate::types::{AppEvent, Failure};

struct Served {
    state: AppState,
    ui_dir: PathBuf,
}

/// The router: the command and event endpoints over `state`, and the files of `ui_dir`.
pub fn router(state: AppState, ui_dir: PathBuf) -> Router {
    let served = Arc::new(Served { state, ui_dir });
    Router::new()
        .route("/api/events", get(events))
        .route("/api/video/{call}/{stream}", get(video_frame))
        .route("/api/{command}", post(command))
        .fallback(get(file))
        .with_state(served)
}

async fn command(
    State(served): State<Arc<Served>>,
    UrlPath(name): UrlPath<String>,
    body: Option<axum::Json<Value>>,
) -> Response {
    let arguments = body.map(|b| b.0).unwrap_or(Value::Null);
    match crate::dispatch(&served.state, &name, arguments).await {
        Ok(value) => axum::Json(value).into_response(),
        Err(failure) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json::<Failure>(failure),
        )
            .into_response(),
    }
}

async fn video_frame(State(served): State<Arc<Served>>, uri: Uri) -> Response {
    let path = uri.path().strip_prefix("/api/video").unwrap_or_default();
    let reply = served.state.video_frame(path, uri.query()).await;
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [
            (header::CONTENT_TYPE, reply.content_type()),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from(reply.body),
    )
        .into_response()
}

async fn events(State(served): State<Arc<Served>>) -> impl IntoResponse {
    let stream = BroadcastStream::new(served.state.subscribe()).filter_map(|item| {
        let event: AppEvent = item.ok()?;
        let data = serde_json::to_string(&event).ok()?;
        Some(Ok::<Event, Infallible>(Event::default().data(data)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// The file for `path` below `root`, refusing anything that leaves it.
fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let mut out = root.to_path_buf();
    for part in Path::new(path.trim_start_matches('/')).components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" | "map" => "application/json",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

async fn file(State(served): State<Arc<Served>>, uri: Uri) -> Response {
    let Some(mut path) = resolve(&served.ui_dir, uri.path()) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    if !path.is_file() {
        // A single-page app: unknown paths get the index.
        path = served.ui_dir.join("index.html");
    }
    match tokio::fs::read(&path).await {
        Ok(bytes) => (
            [(header::CONTENT_TYPE, content_type(&path))],
            Body::from(bytes),
        )
            .into_response(),
        Err(_) => (
            StatusCode::NOT_FOUND,
            format!(
                "the ui is not built: no {} (run `npm run build` in ui/)",
                path.display()
            ),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_stays_inside() {
        let root = Path::new("/srv/ui");
        assert_eq!(
            resolve(root, "/assets/a.js"),
            Some(PathBuf::from("/srv/ui/assets/a.js"))
        );
        assert_eq!(resolve(root, "/../etc/passwd"), None);
        assert_eq!(resolve(root, "/a/../../b"), None);
    }
}
