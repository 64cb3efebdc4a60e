//! Transaction responses, REPORT requests (RFC 4975 §7.1.2, §7.2) and AUTH (RFC 4976 §5).

use rand::Rng;

use super::chunker::new_transaction_id;
use super::message::{
    AUTHORIZATION, BYTE_RANGE, ByteRange, Continuation, EXPIRES, FROM_PATH, FailureReport, Headers,
    MESSAGE_ID, Method, Request, Response, STATUS, StatusHeader, TO_PATH, USE_PATH,
    WWW_AUTHENTICATE,
};
use super::reassembly::Completed;
use super::{MsrpError, MsrpUri};
use crate::auth::{Challenge, Credentials};

/// The transaction response to send for `request` with `status`, honouring its
/// `Failure-Report` (RFC 4975 §7.2): none for REPORT requests, none with `no`, only negative ones
/// with `partial`. AUTH requests are always answered.
pub fn response_for(request: &Request, status: u16) -> Result<Option<Response>, MsrpError> {
    match request.method {
        Method::Report => return Ok(None),
        Method::Auth => return Response::for_request(request, status).map(Some),
        _ => {}
    }
    // an unparsable Failure-Report is treated as the default, so the 400 still goes out
    let mode = request.headers.failure_report().unwrap_or_default();
    let send = match mode {
        FailureReport::Yes => true,
        FailureReport::No => false,
        FailureReport::Partial => status != 200,
    };
    if send {
        Response::for_request(request, status).map(Some)
    } else {
        Ok(None)
    }
}

/// A REPORT for the message of `original` (any chunk of it): To-Path is the original From-Path,
/// From-Path the first URI of its To-Path (the receiving endpoint), same Message-ID, the given
/// Byte-Range and Status (RFC 4975 §7.1.2).
pub fn report<R: Rng + ?Sized>(
    rng: &mut R,
    original: &Headers,
    byte_range: ByteRange,
    status: StatusHeader,
) -> Result<Request, MsrpError> {
    let to = original.from_path()?;
    let from = original.to_path()?;
    let message_id = original
        .message_id()
        .ok_or(MsrpError::MissingHeader(MESSAGE_ID))?;
    let mut headers = Headers::new();
    headers.push(TO_PATH, MsrpUri::format_list(&to));
    if let Some(us) = from.first() {
        headers.push(FROM_PATH, us.to_string());
    }
    headers.push(MESSAGE_ID, message_id);
    headers.push(BYTE_RANGE, byte_range.to_string());
    headers.push(STATUS, status.to_string());
    Ok(Request {
        transaction_id: new_transaction_id(rng),
        method: Method::Report,
        headers,
        body: None,
        continuation: Continuation::Complete,
    })
}

/// The success REPORT for a completed message, if its sender asked for one
/// (`Byte-Range: 1-total/total`, `Status: 000 200 OK`).
pub fn success_report<R: Rng + ?Sized>(
    rng: &mut R,
    completed: &Completed,
) -> Result<Option<Request>, MsrpError> {
    if !completed.success_report {
        return Ok(None);
    }
    let range = ByteRange {
        start: 1,
        end: Some(completed.total),
        total: Some(completed.total),
    };
    report(rng, &completed.headers, range, StatusHeader::new(200)).map(Some)
}

/// The failure REPORT for a chunk that could not be delivered with `status` (RFC 4975 §7.1.2:
/// only when Failure-Report is `yes` or `partial`; endpoints normally answer with a response
/// instead, relays send REPORTs for downstream failures). The Byte-Range is the chunk's.
pub fn failure_report<R: Rng + ?Sized>(
    rng: &mut R,
    chunk: &Request,
    status: u16,
) -> Result<Option<Request>, MsrpError> {
    if chunk.method != Method::Send {
        return Ok(None);
    }
    if chunk.headers.failure_report().unwrap_or_default() == FailureReport::No {
        return Ok(None);
    }
    let len = chunk.body_bytes().len() as u64;
    let range = match chunk.headers.byte_range()? {
        Some(r) => ByteRange {
            start: r.start,
            end: Some(r.offset() + len),
            total: r.total,
        },
        None => ByteRange {
            start: 1,
            end: Some(len),
            total: None,
        },
    };
    report(rng, &chunk.headers, range, StatusHeader::new(status)).map(Some)
}

/// An AUTH request to a relay (RFC 4976 §5.1): To-Path is the relay's URI, From-Path ours,
/// with the credentials when answering a 401.
pub fn auth_request<R: Rng + ?Sized>(
    rng: &mut R,
    relay: &MsrpUri,
    local: &MsrpUri,
    credentials: Option<&Credentials>,
) -> Request {
    let mut headers = Headers::new();
    headers.push(TO_PATH, relay.to_string());
    headers.push(FROM_PATH, local.to_string());
    if let Some(c) = credentials {
        headers.push(AUTHORIZATION, c.to_string());
    }
    Request {
        transaction_id: new_transaction_id(rng),
        method: Method::Auth,
        headers,
        body: None,
        continuation: Continuation::Complete,
    }
}

/// The digest URI an AUTH is authenticated for: the rightmost To-Path URI, the relay's, as
/// written (RFC 4976 §5.1).
pub fn auth_digest_uri(request: &Request) -> Result<String, MsrpError> {
    request
        .headers
        .get(TO_PATH)
        .and_then(|v| v.split_whitespace().last())
        .map(str::to_owned)
        .ok_or(MsrpError::MissingHeader(TO_PATH))
}

/// A 401 to an AUTH with the relay's challenge (RFC 4976 §5.1).
pub fn auth_challenge(request: &Request, challenge: &Challenge) -> Result<Response, MsrpError> {
    let mut r = Response::for_request(request, 401)?;
    r.headers.push(WWW_AUTHENTICATE, challenge.to_string());
    Ok(r)
}

/// A 200 to an AUTH: the path the client must use (its own URI last is not included) and
/// how long the authorisation lasts (RFC 4976 §5.1).
pub fn auth_ok(
    request: &Request,
    use_path: &[MsrpUri],
    expires: u32,
) -> Result<Response, MsrpError> {
    let mut r = Response::for_request(request, 200)?;
    r.headers.push(USE_PATH, MsrpUri::format_list(use_path));
    r.headers.push(EXPIRES, expires.to_string());
    Ok(r)
}

/// The digest credentials of an AUTH request, with `uri` set to the digest URI the relay must
/// verify against: the rightmost To-Path URI (RFC 4976 §5.1). RFC 4976's own example omits the
/// `uri` parameter, so a missing one is accepted; a present one is replaced.
pub fn auth_credentials(request: &Request) -> Result<Option<Credentials>, MsrpError> {
    let Some(value) = request.headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let digest_uri = auth_digest_uri(request)?;
    let mut creds = match Credentials::parse(value) {
        Ok(c) => c,
        Err(crate::auth::AuthError::MissingParameter("uri")) => {
            // re-parse with the implied parameter; the value is quoted like any digest string
            let escaped = digest_uri.replace('\\', "\\\\").replace('"', "\\\"");
            Credentials::parse(&format!("{value}, uri=\"{escaped}\""))?
        }
        Err(e) => return Err(e.into()),
    };
    creds.uri = digest_uri;
    Ok(Some(creds))
}
