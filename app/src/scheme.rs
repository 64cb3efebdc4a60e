//! The app shells' `tandem-video:` URI scheme ([`crate::video::URI_SCHEME`]), defined once for
//! the desktop and mobile shells: the ui asks `tandem-video://localhost/CALL/remote?after=N…`
//! for the next picture of a call's video and gets it as an HTTP answer
//! ([`AppState::video_frame`] makes the picture; this module makes the answer).
//!
//! A shell's asynchronous scheme handler takes the [`AppState`] it manages (none while the app
//! is still starting), spawns [`video_response`] on its async runtime and hands the answer to
//! the webview's responder.

use axum::http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use axum::http::{Response, StatusCode, Uri};

use crate::AppState;
use crate::video::FrameReply;

/// The answer to one `tandem-video:` request: the next picture of the call's stream named by
/// the path (waiting for it a bounded time), or a short text with the status saying why not
/// (503 while the app is still starting, i.e. `state` is `None`).
pub async fn video_response(state: Option<AppState>, uri: &Uri) -> Response<Vec<u8>> {
    let reply = match state {
        Some(state) => state.video_frame(uri.path(), uri.query()).await,
        None => FrameReply {
            status: 503,
            body: b"the app is starting".to_vec(),
        },
    };
    frame_response(reply)
}

/// The HTTP answer carrying `reply`. Nothing is cached (every answer is a new picture), and any
/// origin may read it: the ui's page and the scheme are different origins.
pub fn frame_response(reply: FrameReply) -> Response<Vec<u8>> {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = reply.content_type();
    let mut response = Response::new(reply.body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(response: &'a Response<Vec<u8>>, name: &str) -> &'a str {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header"))
    }

    #[tokio::test]
    async fn a_request_before_the_state_exists_is_503_text() {
        let uri: Uri = "tandem-video://localhost/call-1/remote?after=3"
            .parse()
            .unwrap();
        let response = video_response(None, &uri).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.body(), b"the app is starting");
        assert_eq!(
            header(&response, "content-type"),
            "text/plain; charset=utf-8"
        );
        assert_eq!(header(&response, "cache-control"), "no-store");
        assert_eq!(header(&response, "access-control-allow-origin"), "*");
    }

    #[test]
    fn a_picture_is_binary_and_not_cached() {
        let body = vec![1u8, 2, 3, 4];
        let response = frame_response(FrameReply {
            status: 200,
            body: body.clone(),
        });
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.body(), &body);
        assert_eq!(
            header(&response, "content-type"),
            "application/octet-stream"
        );
        assert_eq!(header(&response, "cache-control"), "no-store");
        assert_eq!(header(&response, "access-control-allow-origin"), "*");
    }

    #[test]
    fn the_reply_status_is_kept_and_an_impossible_one_is_a_server_error() {
        for (status, expected) in [
            (204, StatusCode::NO_CONTENT),
            (400, StatusCode::BAD_REQUEST),
            (404, StatusCode::NOT_FOUND),
            (1000, StatusCode::INTERNAL_SERVER_ERROR),
        ] {
            let response = frame_response(FrameReply {
                status,
                body: b"why".to_vec(),
            });
            assert_eq!(response.status(), expected, "status {status}");
            assert_eq!(
                header(&response, "content-type"),
                "text/plain; charset=utf-8"
            );
        }
    }
}
