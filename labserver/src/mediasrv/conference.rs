//! Audio conference rooms with mix-minus and the conference event package (RFC 4575).

use serde::{Deserialize, Serialize};

/// The `[conference]` section: rooms, PINs and mixer limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ConferenceConfig {}

/// Serves one INVITE to `conf-<room>@domain` (`room` without the prefix). The leg arrives
/// negotiated but unanswered: [`Leg::answer`](super::Leg::answer) it or
/// [`Leg::reject`](super::Leg::reject) it (e.g. 404 for an unknown room).
///
/// Placeholder until the conference service lands: answers 480.
pub async fn handle(ctx: std::sync::Arc<super::MediaCtx>, mut leg: super::Leg, room: String) {
    let _ = (ctx, room);
    leg.reject(480, "Conference Service Not Available");
}

/// Serves an out-of-dialog non-INVITE request to `conf-<room>@domain` (e.g. SUBSCRIBE
/// `Event: conference`, RFC 4575). Answer it on `req.tx` with `ctx.endpoint().respond(…)`; use
/// [`MediaCtx::register_dialog`](super::MediaCtx::register_dialog) for the subscription's
/// in-dialog requests.
///
/// Placeholder until the conference service lands: answers 489.
pub fn handle_request(
    ctx: std::sync::Arc<super::MediaCtx>,
    req: super::ServerRequest,
    room: String,
) {
    let _ = room;
    let r = super::response_with_tag(&req.request, 489, "Bad Event", &super::random_tag());
    ctx.endpoint().respond(req.tx, r);
}
