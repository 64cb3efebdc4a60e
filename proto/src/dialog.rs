//! Dialogs (RFC 3261 §12, with the target-refresh methods of RFC 3311, RFC 3515 and RFC 6665).
//!
//! A [`Dialog`] is created by the UAC from a request and a 101–299 response with a To tag
//! ([`Dialog::from_uac`]) or by the UAS from a request and the tag it puts in its response
//! ([`Dialog::from_uas`]). It then builds in-dialog requests (Request-URI and Route for loose
//! and strict routers, CSeq, From/To with tags) and checks incoming ones.
//!
//! `secure` is derived from a `sips:` Request-URI; the transport (TLS) is the caller's to check.

use crate::msg::{
    ContactValue, HeaderName, Method, NameAddr, ParseError, Request, Response, Scheme, Uri,
};
use thiserror::Error;

/// Max-Forwards value put in requests built by a dialog (RFC 3261 §8.1.1.6).
pub const MAX_FORWARDS: u32 = 70;

/// Largest CSeq number allowed (RFC 3261 §8.1.1.5: less than 2**31).
const MAX_CSEQ: u32 = (1 << 31) - 1;

/// Errors from creating a dialog or checking an in-dialog request.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DialogError {
    /// A header needed for the dialog is missing or malformed.
    #[error("invalid message: {0}")]
    Message(#[from] ParseError),
    /// The From (UAC) or To (response) tag is missing.
    #[error("missing {0} tag")]
    MissingTag(&'static str),
    /// The message has no usable Contact (no Contact, or `*`).
    #[error("missing or invalid Contact")]
    MissingContact,
    /// The response cannot create a dialog (100, or a 3xx–6xx).
    #[error("a {0} response does not create a dialog")]
    NotDialogCreating(u16),
    /// The request's CSeq is lower than the last one seen (answer 500, RFC 3261 §12.2.2).
    #[error("CSeq {got} is lower than the last remote CSeq {last}")]
    CSeqOutOfOrder {
        /// The CSeq number of the request.
        got: u32,
        /// The highest remote CSeq number seen so far.
        last: u32,
    },
    /// The request does not belong to this dialog (Call-ID or tags differ; answer 481).
    #[error("request does not match the dialog")]
    NotThisDialog,
}

/// A dialog's identifier (RFC 3261 §12): Call-ID and the two tags.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    /// The Call-ID.
    pub call_id: String,
    /// Our tag (From tag of our requests).
    pub local_tag: String,
    /// The peer's tag (empty for an RFC 2543 peer that sent none).
    pub remote_tag: String,
}

/// The state of a dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DialogState {
    /// Created by a provisional response.
    Early,
    /// Created or confirmed by a 2xx.
    Confirmed,
    /// Ended: the INVITE failed, or an in-dialog request got 481/408.
    Terminated,
}

/// The state of one dialog (RFC 3261 §12.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    /// Call-ID and tags.
    pub id: DialogId,
    /// The CSeq number of our last request (0 before our first one on the UAS side).
    pub local_seq: u32,
    /// The highest CSeq number received from the peer.
    pub remote_seq: Option<u32>,
    /// Our address (From of our requests, without tag).
    pub local_uri: NameAddr,
    /// The peer's address (To of our requests, without tag).
    pub remote_uri: NameAddr,
    /// Where to send requests: the peer's Contact URI.
    pub remote_target: Uri,
    /// Proxies to traverse, in the order our requests visit them.
    pub route_set: Vec<NameAddr>,
    /// Whether the dialog was established with a `sips:` Request-URI.
    pub secure: bool,
    /// Early, confirmed or terminated.
    pub state: DialogState,
    /// Our Contact, added to target-refresh requests (from the UAC's initial request, or set by the UAS).
    pub local_contact: Option<NameAddr>,
}

/// Whether requests of this method refresh the remote target
/// (re-INVITE, UPDATE, SUBSCRIBE, NOTIFY, REFER).
pub fn is_target_refresh(method: &Method) -> bool {
    matches!(
        method,
        Method::Invite | Method::Update | Method::Subscribe | Method::Notify | Method::Refer
    )
}

fn without_tag(mut addr: NameAddr) -> NameAddr {
    addr.remove_param("tag");
    addr
}

fn first_contact(contacts: Vec<ContactValue>) -> Option<NameAddr> {
    contacts.into_iter().find_map(|c| match c {
        ContactValue::Addr(a) => Some(a),
        ContactValue::Star => None,
    })
}

impl Dialog {
    /// UAC side (RFC 3261 §12.1.2): from our dialog-creating `request` and a
    /// 101–299 `response` carrying a To tag. Route set = Record-Route reversed,
    /// remote target = the response's Contact.
    ///
    /// A 2xx without To tag (RFC 2543 peer) gives an empty remote tag; a 1xx
    /// without Contact uses the Request-URI as remote target until a 2xx refreshes it.
    pub fn from_uac(request: &Request, response: &Response) -> Result<Self, DialogError> {
        let early = match response.status {
            101..=199 => true,
            200..=299 => false,
            other => return Err(DialogError::NotDialogCreating(other)),
        };
        let from = request.headers.from()?;
        let local_tag = from
            .tag()
            .filter(|t| !t.is_empty())
            .ok_or(DialogError::MissingTag("From"))?
            .to_owned();
        let to = response.headers.to()?;
        let remote_tag = match to.tag() {
            Some(t) if !t.is_empty() => t.to_owned(),
            _ if early => return Err(DialogError::MissingTag("To")),
            _ => String::new(),
        };
        let call_id = request.headers.call_id()?.to_owned();
        let local_seq = request.headers.cseq()?.seq;
        let contact = first_contact(response.headers.contacts()?);
        let remote_target = match contact {
            Some(c) => c.uri,
            None if early => request.uri.clone(),
            None => return Err(DialogError::MissingContact),
        };
        let mut route_set = response.headers.record_routes()?;
        route_set.reverse();
        let local_contact = first_contact(request.headers.contacts()?);
        Ok(Dialog {
            id: DialogId {
                call_id,
                local_tag,
                remote_tag,
            },
            local_seq,
            remote_seq: None,
            local_uri: without_tag(from),
            remote_uri: without_tag(to),
            remote_target,
            route_set,
            secure: request.uri.scheme == Scheme::Sips,
            state: if early {
                DialogState::Early
            } else {
                DialogState::Confirmed
            },
            local_contact,
        })
    }

    /// UAS side (RFC 3261 §12.1.1): from the dialog-creating `request` and the
    /// tag we put in the To of our response. Route set = Record-Route in order,
    /// remote target = the request's Contact. The dialog starts
    /// [`DialogState::Early`]; call [`Dialog::confirm`] when sending the 2xx.
    pub fn from_uas(request: &Request, local_tag: &str) -> Result<Self, DialogError> {
        if local_tag.is_empty() {
            return Err(DialogError::MissingTag("To"));
        }
        let from = request.headers.from()?;
        let remote_tag = from.tag().unwrap_or_default().to_owned();
        let to = request.headers.to()?;
        let call_id = request.headers.call_id()?.to_owned();
        let cseq = request.headers.cseq()?;
        let remote_target = first_contact(request.headers.contacts()?)
            .ok_or(DialogError::MissingContact)?
            .uri;
        Ok(Dialog {
            id: DialogId {
                call_id,
                local_tag: local_tag.to_owned(),
                remote_tag,
            },
            local_seq: 0,
            remote_seq: Some(cseq.seq),
            local_uri: without_tag(to),
            remote_uri: without_tag(from),
            remote_target,
            route_set: request.headers.record_routes()?,
            secure: request.uri.scheme == Scheme::Sips,
            state: DialogState::Early,
            local_contact: None,
        })
    }

    /// Marks the dialog confirmed (UAS: when sending the 2xx).
    pub fn confirm(&mut self) {
        if self.state == DialogState::Early {
            self.state = DialogState::Confirmed;
        }
    }

    /// Marks the dialog terminated (e.g. after BYE).
    pub fn terminate(&mut self) {
        self.state = DialogState::Terminated;
    }

    /// A new in-dialog request (RFC 3261 §12.2.1.1): Request-URI and Route from
    /// the remote target and route set (loose or strict routing), the next CSeq
    /// (unchanged for ACK and CANCEL), From/To with tags, Call-ID,
    /// Max-Forwards 70 and, for target-refresh methods, our Contact.
    /// Via is added by the transaction layer.
    pub fn new_request(&mut self, method: Method) -> Request {
        if !matches!(method, Method::Ack | Method::Cancel) {
            self.local_seq = if self.local_seq >= MAX_CSEQ {
                1
            } else {
                self.local_seq + 1
            };
        }
        let seq = self.local_seq;
        self.build(method, seq)
    }

    /// The ACK for a 2xx to our INVITE with CSeq number `invite_cseq` (RFC 3261 §13.2.2.4).
    pub fn ack(&self, invite_cseq: u32) -> Request {
        self.build(Method::Ack, invite_cseq)
    }

    fn build(&self, method: Method, seq: u32) -> Request {
        let (uri, routes) = self.request_uri_and_routes();
        let mut req = Request::new(method.clone(), uri);
        req.headers
            .push(HeaderName::MaxForwards, MAX_FORWARDS.to_string());
        for route in routes {
            req.headers.push(HeaderName::Route, route.to_string());
        }
        let mut from = self.local_uri.clone();
        from.set_tag(&self.id.local_tag);
        req.headers.push(HeaderName::From, from.to_string());
        let mut to = self.remote_uri.clone();
        if !self.id.remote_tag.is_empty() {
            to.set_tag(&self.id.remote_tag);
        }
        req.headers.push(HeaderName::To, to.to_string());
        req.headers
            .push(HeaderName::CallId, self.id.call_id.clone());
        req.headers
            .push(HeaderName::CSeq, format!("{seq} {}", method.as_str()));
        if is_target_refresh(&method)
            && let Some(contact) = &self.local_contact
        {
            req.headers.push(HeaderName::Contact, contact.to_string());
        }
        req
    }

    /// RFC 3261 §12.2.1.1: the Request-URI and Route values for the next request.
    fn request_uri_and_routes(&self) -> (Uri, Vec<NameAddr>) {
        match self.route_set.split_first() {
            None => (self.remote_target.clone(), Vec::new()),
            Some((first, _)) if first.uri.is_loose_route() => {
                (self.remote_target.clone(), self.route_set.clone())
            }
            Some((first, rest)) => {
                // Strict router: it gets the Request-URI; the remote target goes last in Route.
                let mut uri = first.uri.clone();
                uri.headers.clear();
                uri.remove_param("method");
                let mut routes = rest.to_vec();
                routes.push(NameAddr::new(self.remote_target.clone()));
                (uri, routes)
            }
        }
    }

    /// Whether `request` belongs to this dialog: same Call-ID, its To tag is
    /// ours and its From tag is the peer's.
    pub fn matches_request(&self, request: &Request) -> bool {
        let Ok(call_id) = request.headers.call_id() else {
            return false;
        };
        let (Ok(from), Ok(to)) = (request.headers.from(), request.headers.to()) else {
            return false;
        };
        call_id == self.id.call_id
            && to.tag().unwrap_or_default() == self.id.local_tag
            && from.tag().unwrap_or_default() == self.id.remote_tag
    }

    /// Whether `response` (to one of our requests) belongs to this dialog.
    pub fn matches_response(&self, response: &Response) -> bool {
        let Ok(call_id) = response.headers.call_id() else {
            return false;
        };
        let (Ok(from), Ok(to)) = (response.headers.from(), response.headers.to()) else {
            return false;
        };
        call_id == self.id.call_id
            && from.tag().unwrap_or_default() == self.id.local_tag
            && to.tag().unwrap_or_default() == self.id.remote_tag
    }

    /// UAS processing of an in-dialog request (RFC 3261 §12.2.2): it must match
    /// the dialog (else 481), its CSeq must not be lower than the last one (else
    /// 500); the remote CSeq is recorded and a target-refresh request with a
    /// Contact replaces the remote target. ACK and CANCEL skip the CSeq check.
    pub fn check_request(&mut self, request: &Request) -> Result<(), DialogError> {
        if !self.matches_request(request) {
            return Err(DialogError::NotThisDialog);
        }
        let cseq = request.headers.cseq()?;
        if !matches!(request.method, Method::Ack | Method::Cancel) {
            if let Some(last) = self.remote_seq
                && cseq.seq < last
            {
                return Err(DialogError::CSeqOutOfOrder {
                    got: cseq.seq,
                    last,
                });
            }
            self.remote_seq = Some(cseq.seq);
        }
        if is_target_refresh(&request.method)
            && let Some(contact) = first_contact(request.headers.contacts()?)
        {
            self.remote_target = contact.uri;
        }
        Ok(())
    }

    /// UAC processing of a response to a request in (or creating) this dialog:
    /// a 2xx to a target-refresh request (or a tagged 1xx while early) with a
    /// Contact updates the remote target; a 2xx to the INVITE confirms an early
    /// dialog and recomputes its route set (RFC 3261 §13.2.2.4); a final
    /// failure to the INVITE of an early dialog, or a 481/408 to any
    /// in-dialog request, terminates it (§12.2.1.2). Responses of other dialogs are ignored.
    pub fn update_from_response(&mut self, response: &Response) {
        if !self.matches_response(response) {
            return;
        }
        let Ok(cseq) = response.headers.cseq() else {
            return;
        };
        let status = response.status;
        if matches!(status, 408 | 481) {
            self.state = DialogState::Terminated;
            return;
        }
        if self.state == DialogState::Early && cseq.method == Method::Invite {
            if (200..=299).contains(&status) {
                self.state = DialogState::Confirmed;
                if let Ok(mut rr) = response.headers.record_routes() {
                    rr.reverse();
                    self.route_set = rr;
                }
            } else if status >= 300 {
                self.state = DialogState::Terminated;
                return;
            }
        }
        let refreshes = (200..=299).contains(&status)
            || (self.state == DialogState::Early && (101..=199).contains(&status));
        if refreshes
            && is_target_refresh(&cseq.method)
            && let Ok(contacts) = response.headers.contacts()
            && let Some(contact) = first_contact(contacts)
        {
            self.remote_target = contact.uri;
        }
    }
}
