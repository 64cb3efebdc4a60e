//! A hand-written SIP peer for the presence tests (included with `#[path]`; as a test target of
//! its own it holds no tests): sends PUBLISH/SUBSCRIBE answering digest challenges, answers and
//! queues NOTIFYs, and builds PIDF and pres-rules documents.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "sip_util/mod.rs"]
mod sip_util;

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
pub(crate) use sip_util::{DOMAIN, Lab, Ua, rand_token};
use tandem_labserver::store_xcap::{XcapCondition, XcapDocument};
use tandem_proto::msg::{HeaderName, Message, Method, Request, Response};
use tandem_proto::simple::pidf;

/// A test SIP peer: sends requests (answering digest challenges), and answers every NOTIFY it
/// receives (200 unless told otherwise), queueing them for the test.
pub(crate) struct Peer {
    pub(crate) ua: Ua,
    pub(crate) notifies: VecDeque<Request>,
    pub(crate) notify_status: u16,
    /// Every message body this peer ever received.
    pub(crate) seen: Vec<String>,
}

/// The subscriber's side of a subscription dialog.
#[derive(Clone)]
pub(crate) struct SubDialog {
    pub(crate) call_id: String,
    pub(crate) from_tag: String,
    pub(crate) to: String,
    pub(crate) target: String,
    pub(crate) event: String,
}

pub(crate) fn pidf_doc(user: &str, tuple: &str, basic: &str, note: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:{user}@{DOMAIN}\">\n\
         <tuple id=\"{tuple}\"><status><basic>{basic}</basic></status><note>{note}</note></tuple>\n\
         </presence>\n"
    )
}

pub(crate) fn rules_doc(rules: &[(&str, &str)]) -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <cr:ruleset xmlns:cr=\"urn:ietf:params:xml:ns:common-policy\" \
         xmlns:pr=\"urn:ietf:params:xml:ns:pres-rules\">\n",
    );
    for (i, (user, handling)) in rules.iter().enumerate() {
        s.push_str(&format!(
            "<cr:rule id=\"r{i}\"><cr:conditions><cr:identity><cr:one id=\"sip:{user}@{DOMAIN}\"/>\
             </cr:identity></cr:conditions><cr:actions><pr:sub-handling>{handling}</pr:sub-handling>\
             </cr:actions><cr:transformations><pr:provide-services><pr:all-services/></pr:provide-services>\
             <pr:provide-persons><pr:all-persons/></pr:provide-persons><pr:provide-devices><pr:all-devices/>\
             </pr:provide-devices><pr:provide-all-attributes/></cr:transformations></cr:rule>\n"
        ));
    }
    s.push_str("</cr:ruleset>\n");
    s
}

/// Stores `user`'s pres-rules directly (the XCAP path is tested where it matters).
pub(crate) async fn store_rules(lab: &Lab, user: &str, rules: &[(&str, &str)]) {
    let doc = XcapDocument {
        auid: "pres-rules".into(),
        xui: format!("{user}@{DOMAIN}"),
        name: "index".into(),
        etag: rand_token(),
        content_type: "application/auth-policy+xml".into(),
        body: rules_doc(rules).into_bytes(),
        updated_at: 0,
    };
    lab.store
        .xcap_put(&doc, &XcapCondition::None)
        .await
        .unwrap();
}

pub(crate) fn subscription_state(r: &Request) -> String {
    r.headers
        .get_str(&HeaderName::SubscriptionState)
        .unwrap_or("")
        .to_string()
}

pub(crate) fn body(r: &Request) -> String {
    String::from_utf8(r.body.to_vec()).unwrap()
}

impl Peer {
    pub(crate) async fn new(lab: &Lab, user: &str) -> Peer {
        Peer {
            ua: lab.ua(user).await,
            notifies: VecDeque::new(),
            notify_status: 200,
            seen: Vec::new(),
        }
    }

    pub(crate) fn answer(&mut self, request: &Request) -> Response {
        let status = if request.method == Method::Notify {
            self.notify_status
        } else {
            405
        };
        Response::for_request(request, status)
    }

    pub(crate) async fn handle_request(&mut self, request: Request, from: std::net::SocketAddr) {
        self.seen.push(body(&request));
        let response = self.answer(&request);
        self.ua.send_to(&Message::Response(response), from).await;
        if request.method == Method::Notify {
            self.notifies.push_back(request);
        }
    }

    /// Sends `request` (answering one digest challenge) and returns the final response.
    pub(crate) async fn transact(&mut self, mut request: Request) -> Response {
        let mut challenged = false;
        self.ua.send(&Message::Request(request.clone())).await;
        loop {
            let Some((msg, from)) = self.ua.recv_within(5.0).await else {
                panic!("{}: no response to {}", self.ua.user, request.method);
            };
            match msg {
                Message::Request(r) => self.handle_request(r, from).await,
                Message::Response(r) => {
                    let cseq = r.headers.cseq().unwrap();
                    let sent = request.headers.cseq().unwrap();
                    if cseq.seq != sent.seq || cseq.method != sent.method || r.status < 200 {
                        continue;
                    }
                    if (r.status == 401 || r.status == 407) && !challenged {
                        challenged = true;
                        request = self.ua.authorize(&request, &r, None);
                        self.ua.send(&Message::Request(request.clone())).await;
                        continue;
                    }
                    return r;
                }
            }
        }
    }

    /// The next NOTIFY within `secs`.
    pub(crate) async fn next_notify(&mut self, secs: f64) -> Option<Request> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
        loop {
            if let Some(n) = self.notifies.pop_front() {
                return Some(n);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            if let Some((Message::Request(r), from)) = self.ua.recv_within(left.as_secs_f64()).await
            {
                self.handle_request(r, from).await;
            }
        }
    }

    pub(crate) async fn notify(&mut self) -> Request {
        self.next_notify(8.0)
            .await
            .unwrap_or_else(|| panic!("{}: no NOTIFY", self.ua.user))
    }

    /// NOTIFYs until one satisfies `pred` (panics after 8 s).
    pub(crate) async fn notify_until(&mut self, pred: impl Fn(&Request) -> bool) -> Request {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let n = self
                .next_notify(left.as_secs_f64())
                .await
                .unwrap_or_else(|| panic!("{}: no matching NOTIFY", self.ua.user));
            if pred(&n) {
                return n;
            }
        }
    }

    /// Reads and answers whatever arrives for `secs`.
    pub(crate) async fn drain(&mut self, secs: f64) {
        while self.next_notify(secs).await.is_some() {}
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn request(
        &mut self,
        method: &str,
        ruri: &str,
        to: &str,
        call_id: &str,
        from_tag: &str,
        extra: &[String],
        body: Option<(&str, &str)>,
    ) -> Request {
        self.ua.cseq += 1;
        let mut text = format!(
            "{method} {ruri} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: <sip:{}@{DOMAIN}>;tag={from_tag}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {} {method}\r\nContact: <{}>\r\n",
            self.ua.via(),
            self.ua.user,
            self.ua.cseq,
            self.ua.contact()
        );
        for e in extra {
            text.push_str(e);
            text.push_str("\r\n");
        }
        match body {
            Some((ct, b)) => text.push_str(&format!(
                "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            )),
            None => text.push_str("Content-Length: 0\r\n\r\n"),
        }
        Request::parse(Bytes::from(text)).unwrap()
    }

    /// PUBLISH of presence (`Event: presence`) to `target`: a PIDF body when given, the entity
    /// tag to refresh or modify as SIP-If-Match, and Expires when given.
    pub(crate) async fn publish_presence(
        &mut self,
        target: &str,
        if_match: Option<&str>,
        expires: Option<u32>,
        pidf: Option<&str>,
    ) -> Response {
        let mut extra = vec!["Event: presence".to_owned()];
        extra.extend(if_match.map(|e| format!("SIP-If-Match: {e}")));
        extra.extend(expires.map(|e| format!("Expires: {e}")));
        self.publish(
            target,
            &extra,
            pidf.map(|doc| ("application/pidf+xml", doc)),
        )
        .await
    }

    /// PUBLISH to our own AoR (or `target`).
    pub(crate) async fn publish(
        &mut self,
        target: &str,
        extra: &[String],
        body: Option<(&str, &str)>,
    ) -> Response {
        let aor = format!("sip:{target}@{DOMAIN}");
        let req = self.request(
            "PUBLISH",
            &aor,
            &format!("<{aor}>"),
            &format!("{}@test", rand_token()),
            &rand_token(),
            extra,
            body,
        );
        self.transact(req).await
    }

    /// A new subscription to `target`'s `event`.
    pub(crate) async fn subscribe(
        &mut self,
        target: &str,
        event: &str,
        expires: u32,
    ) -> (Response, SubDialog) {
        let aor = format!("sip:{target}@{DOMAIN}");
        let call_id = format!("{}@test", rand_token());
        let from_tag = rand_token();
        let accept = if event == "presence" {
            "application/pidf+xml"
        } else {
            "application/watcherinfo+xml"
        };
        let req = self.request(
            "SUBSCRIBE",
            &aor,
            &format!("<{aor}>"),
            &call_id,
            &from_tag,
            &[
                format!("Event: {event}"),
                format!("Accept: {accept}"),
                format!("Expires: {expires}"),
            ],
            None,
        );
        let r = self.transact(req).await;
        let to = r.headers.get_str(&HeaderName::To).unwrap().to_string();
        let target = r
            .headers
            .contacts()
            .ok()
            .and_then(|c| c.into_iter().next())
            .map(|c| match c {
                tandem_proto::msg::ContactValue::Addr(a) => a.uri.to_string(),
                tandem_proto::msg::ContactValue::Star => aor.clone(),
            })
            .unwrap_or(aor);
        (
            r,
            SubDialog {
                call_id,
                from_tag,
                to,
                target,
                event: event.to_string(),
            },
        )
    }

    /// A refresh (or, with 0, an unsubscribe) inside the subscription's dialog.
    pub(crate) async fn resubscribe(&mut self, d: &SubDialog, expires: u32) -> Response {
        let req = self.request(
            "SUBSCRIBE",
            &d.target,
            &d.to,
            &d.call_id,
            &d.from_tag,
            &[format!("Event: {}", d.event), format!("Expires: {expires}")],
            None,
        );
        self.transact(req).await
    }
}

pub(crate) fn etag(r: &Response) -> String {
    r.headers
        .get_str(&HeaderName::Other("SIP-ETag".into()))
        .expect("SIP-ETag")
        .to_string()
}

pub(crate) fn notes(n: &Request) -> Vec<String> {
    let p = pidf::parse(&n.body).unwrap();
    let mut notes: Vec<String> = p
        .tuples
        .iter()
        .flat_map(|t| t.notes.iter().map(|n| n.text.clone()))
        .collect();
    notes.sort();
    notes
}
