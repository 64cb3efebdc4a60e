//! IVR menus from the configuration: prompts, DTMF choices, timeouts, retries and transfers.

use serde::{Deserialize, Serialize};

/// The `[ivr]` section: menus, prompts, choices and timeouts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct IvrConfig {}

/// Serves one INVITE to `ivr@domain` (`menu` = `None`) or `ivr-<menu>@domain`. The leg arrives
/// negotiated but unanswered: [`Leg::answer`](super::Leg::answer) it or
/// [`Leg::reject`](super::Leg::reject) it (e.g. 404 for an unknown menu).
///
/// Placeholder until the IVR lands: answers 480.
pub async fn handle(
    ctx: std::sync::Arc<super::MediaCtx>,
    mut leg: super::Leg,
    menu: Option<String>,
) {
    let _ = (ctx, menu);
    leg.reject(480, "IVR Not Available");
}
