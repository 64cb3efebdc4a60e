//! Path handling for endpoints and relays (RFC 4975 §7.3, RFC 4976 §6).

use super::message::{FROM_PATH, TO_PATH};
use super::{MsrpError, MsrpUri, Request};

/// Whether a request is addressed to `local`: its first To-Path URI is equivalent to it
/// (RFC 4975 §6.1). An endpoint answers 481 when this is false.
pub fn addressed_to(request: &Request, local: &MsrpUri) -> Result<bool, MsrpError> {
    Ok(request
        .headers
        .to_path()?
        .first()
        .is_some_and(|u| u.equivalent(local)))
}

/// Rewrites a request a relay forwards (RFC 4976 §6.1): its own URI, which must be the first
/// To-Path URI, moves to the front of From-Path. Returns the next hop (the new first To-Path
/// URI). Fails with [`MsrpError::InvalidHeaderValue`] when the request is not for `relay` or
/// has nowhere to go.
pub fn forward(request: &mut Request, relay: &MsrpUri) -> Result<MsrpUri, MsrpError> {
    let mut to = request.headers.to_path()?;
    let mut from = request.headers.from_path()?;
    if !to.first().is_some_and(|u| u.equivalent(relay)) {
        return Err(MsrpError::InvalidHeaderValue {
            name: TO_PATH,
            reason: "the first URI is not this relay",
        });
    }
    to.remove(0);
    let next = to.first().cloned().ok_or(MsrpError::InvalidHeaderValue {
        name: TO_PATH,
        reason: "no hop after this relay",
    })?;
    from.insert(0, relay.clone());
    request.headers.set(TO_PATH, MsrpUri::format_list(&to));
    request.headers.set(FROM_PATH, MsrpUri::format_list(&from));
    Ok(next)
}
