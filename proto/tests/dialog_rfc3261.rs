//! Dialogs (RFC 3261 §12): creation on both sides, in-dialog requests, routing, CSeq rules.
#![allow(clippy::unwrap_used)] // test helpers: a failure here is a test failure

use bytes::Bytes;
use tandem_proto::dialog::{Dialog, DialogError, DialogState};
use tandem_proto::msg::{HeaderName, Method, NameAddr, Request, Response, Uri};

fn sip(text: &str) -> Bytes {
    Bytes::from(text.replace('\n', "\r\n"))
}

fn req(text: &str) -> Request {
    Request::parse(sip(text)).unwrap()
}

fn resp(text: &str) -> Response {
    Response::parse(sip(text)).unwrap()
}

/// Alice's INVITE as she sent it (RFC 3665 / RFC 3261 §24.2 style, two record-routing proxies).
const INVITE_SENT: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8
Max-Forwards: 70
To: Bob <sip:bob@biloxi.example.com>
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 314159 INVITE
Contact: <sip:alice@pc33.atlanta.example.com>
Content-Length: 0

";

/// The same INVITE as Bob receives it, after proxies ss1 then ss2 record-routed.
const INVITE_RECEIVED: &str = "INVITE sip:bob@client.biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP ss2.biloxi.example.com;branch=z9hG4bK721e4.1
Via: SIP/2.0/UDP ss1.atlanta.example.com;branch=z9hG4bK2d4790.1
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8
Max-Forwards: 68
Record-Route: <sip:ss2.biloxi.example.com;lr>
Record-Route: <sip:ss1.atlanta.example.com;lr>
To: Bob <sip:bob@biloxi.example.com>
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 314159 INVITE
Contact: <sip:alice@pc33.atlanta.example.com>
Content-Length: 0

";

/// Bob's 200 OK as Alice receives it.
const OK_RECEIVED: &str = "SIP/2.0 200 OK
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8
Record-Route: <sip:ss2.biloxi.example.com;lr>, <sip:ss1.atlanta.example.com;lr>
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 314159 INVITE
Contact: <sip:bob@client.biloxi.example.com>
Content-Length: 0

";

fn uac_dialog() -> Dialog {
    Dialog::from_uac(&req(INVITE_SENT), &resp(OK_RECEIVED)).unwrap()
}

fn uas_dialog() -> Dialog {
    let mut d = Dialog::from_uas(&req(INVITE_RECEIVED), "a6c85cf").unwrap();
    d.confirm();
    d
}

fn route_uris(r: &Request) -> Vec<String> {
    r.headers
        .routes()
        .unwrap()
        .iter()
        .map(|n| n.uri.to_string())
        .collect()
}

/// Adds a Via (as the transaction layer would) and parses the printed request back.
fn on_the_wire(mut r: Request) -> Request {
    r.headers.push_front(
        HeaderName::Via,
        "SIP/2.0/UDP host.example.com;branch=z9hG4bKtest1",
    );
    Request::parse(r.to_bytes()).unwrap()
}

#[test]
fn uac_dialog_state_from_2xx() {
    let d = uac_dialog();
    assert_eq!(d.id.call_id, "a84b4c76e66710@pc33.atlanta.example.com");
    assert_eq!(d.id.local_tag, "1928301774");
    assert_eq!(d.id.remote_tag, "a6c85cf");
    assert_eq!(d.local_seq, 314159);
    assert_eq!(d.remote_seq, None);
    assert_eq!(d.state, DialogState::Confirmed);
    assert!(!d.secure);
    assert_eq!(
        d.remote_target.to_string(),
        "sip:bob@client.biloxi.example.com"
    );
    assert_eq!(d.local_uri.uri.to_string(), "sip:alice@atlanta.example.com");
    assert_eq!(d.local_uri.tag(), None);
    assert_eq!(d.remote_uri.display.as_deref(), Some("Bob"));
    // Record-Route reversed: the proxy nearest to us first.
    let routes: Vec<String> = d.route_set.iter().map(|r| r.uri.to_string()).collect();
    assert_eq!(
        routes,
        vec![
            "sip:ss1.atlanta.example.com;lr",
            "sip:ss2.biloxi.example.com;lr"
        ]
    );
    assert_eq!(
        d.local_contact.as_ref().unwrap().uri.to_string(),
        "sip:alice@pc33.atlanta.example.com"
    );
}

#[test]
fn uac_bye_with_loose_routes() {
    let mut d = uac_dialog();
    let bye = d.new_request(Method::Bye);
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(bye.uri.to_string(), "sip:bob@client.biloxi.example.com");
    assert_eq!(
        route_uris(&bye),
        vec![
            "sip:ss1.atlanta.example.com;lr",
            "sip:ss2.biloxi.example.com;lr"
        ]
    );
    let cseq = bye.headers.cseq().unwrap();
    assert_eq!(cseq.seq, 314160);
    assert_eq!(cseq.method, Method::Bye);
    assert_eq!(d.local_seq, 314160);
    assert_eq!(bye.headers.from().unwrap().tag(), Some("1928301774"));
    assert_eq!(bye.headers.to().unwrap().tag(), Some("a6c85cf"));
    assert_eq!(
        bye.headers.call_id().unwrap(),
        "a84b4c76e66710@pc33.atlanta.example.com"
    );
    assert_eq!(bye.headers.max_forwards().unwrap(), Some(70));
    assert!(bye.headers.contacts().unwrap().is_empty());
    // A valid request once a Via is added.
    let wire = on_the_wire(bye);
    assert_eq!(wire.headers.cseq().unwrap().seq, 314160);
}

#[test]
fn reinvite_carries_contact_and_increments_cseq() {
    let mut d = uac_dialog();
    let reinvite = d.new_request(Method::Invite);
    assert_eq!(reinvite.headers.cseq().unwrap().seq, 314160);
    assert_eq!(reinvite.headers.contacts().unwrap().len(), 1);
    let info = d.new_request(Method::Info);
    assert_eq!(info.headers.cseq().unwrap().seq, 314161);
    assert!(info.headers.contacts().unwrap().is_empty());
}

#[test]
fn ack_and_cancel_do_not_consume_cseq() {
    let mut d = uac_dialog();
    let ack = d.ack(314159);
    let cseq = ack.headers.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (314159, Method::Ack));
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.uri.to_string(), "sip:bob@client.biloxi.example.com");
    assert_eq!(route_uris(&ack).len(), 2);
    assert_eq!(d.local_seq, 314159);
    let ack2 = d.new_request(Method::Ack);
    assert_eq!(ack2.headers.cseq().unwrap().seq, 314159);
    let cancel = d.new_request(Method::Cancel);
    assert_eq!(cancel.headers.cseq().unwrap().seq, 314159);
    assert_eq!(d.local_seq, 314159);
    on_the_wire(ack);
}

#[test]
fn uas_dialog_and_requests() {
    let mut d = Dialog::from_uas(&req(INVITE_RECEIVED), "a6c85cf").unwrap();
    assert_eq!(d.state, DialogState::Early);
    d.confirm();
    assert_eq!(d.state, DialogState::Confirmed);
    assert_eq!(d.id.local_tag, "a6c85cf");
    assert_eq!(d.id.remote_tag, "1928301774");
    assert_eq!(d.remote_seq, Some(314159));
    assert_eq!(d.local_seq, 0);
    assert_eq!(
        d.remote_target.to_string(),
        "sip:alice@pc33.atlanta.example.com"
    );
    // Record-Route in order: the proxy nearest to us (ss2) first.
    let routes: Vec<String> = d.route_set.iter().map(|r| r.uri.to_string()).collect();
    assert_eq!(
        routes,
        vec![
            "sip:ss2.biloxi.example.com;lr",
            "sip:ss1.atlanta.example.com;lr"
        ]
    );
    let bye = d.new_request(Method::Bye);
    assert_eq!(bye.uri.to_string(), "sip:alice@pc33.atlanta.example.com");
    assert_eq!(bye.headers.cseq().unwrap().seq, 1);
    let from = bye.headers.from().unwrap();
    assert_eq!(from.uri.to_string(), "sip:bob@biloxi.example.com");
    assert_eq!(from.tag(), Some("a6c85cf"));
    let to = bye.headers.to().unwrap();
    assert_eq!(to.uri.to_string(), "sip:alice@atlanta.example.com");
    assert_eq!(to.tag(), Some("1928301774"));
    assert_eq!(route_uris(&bye)[0], "sip:ss2.biloxi.example.com;lr");
}

#[test]
fn both_sides_recognise_each_others_requests() {
    let mut alice = uac_dialog();
    let mut bob = uas_dialog();
    let bye = on_the_wire(alice.new_request(Method::Bye));
    assert!(bob.matches_request(&bye));
    assert!(!alice.matches_request(&bye));
    bob.check_request(&bye).unwrap();
    assert_eq!(bob.remote_seq, Some(314160));
    let notify = on_the_wire(bob.new_request(Method::Info));
    assert!(alice.matches_request(&notify));
    alice.check_request(&notify).unwrap();
    assert_eq!(alice.remote_seq, Some(1));
}

#[test]
fn strict_router_first_in_route_set() {
    let ok = OK_RECEIVED.replace(
        "Record-Route: <sip:ss2.biloxi.example.com;lr>, <sip:ss1.atlanta.example.com;lr>",
        "Record-Route: <sip:ss2.biloxi.example.com;lr>, <sip:strict.atlanta.example.com;transport=tcp;method=INVITE>",
    );
    let mut d = Dialog::from_uac(&req(INVITE_SENT), &resp(&ok)).unwrap();
    let bye = d.new_request(Method::Bye);
    // The strict router's URI becomes the Request-URI (without the method parameter)...
    assert_eq!(
        bye.uri.to_string(),
        "sip:strict.atlanta.example.com;transport=tcp"
    );
    // ...and the remote target goes last in Route.
    assert_eq!(
        route_uris(&bye),
        vec![
            "sip:ss2.biloxi.example.com;lr",
            "sip:bob@client.biloxi.example.com"
        ]
    );
    on_the_wire(bye);
}

#[test]
fn strict_router_alone() {
    let ok = OK_RECEIVED.replace(
        "Record-Route: <sip:ss2.biloxi.example.com;lr>, <sip:ss1.atlanta.example.com;lr>",
        "Record-Route: <sip:ss1.atlanta.example.com>",
    );
    let mut d = Dialog::from_uac(&req(INVITE_SENT), &resp(&ok)).unwrap();
    let bye = d.new_request(Method::Bye);
    assert_eq!(bye.uri.to_string(), "sip:ss1.atlanta.example.com");
    assert_eq!(route_uris(&bye), vec!["sip:bob@client.biloxi.example.com"]);
}

#[test]
fn no_route_set() {
    let ok = OK_RECEIVED.replace(
        "Record-Route: <sip:ss2.biloxi.example.com;lr>, <sip:ss1.atlanta.example.com;lr>\n",
        "",
    );
    let mut d = Dialog::from_uac(&req(INVITE_SENT), &resp(&ok)).unwrap();
    assert!(d.route_set.is_empty());
    let bye = d.new_request(Method::Bye);
    assert_eq!(bye.uri.to_string(), "sip:bob@client.biloxi.example.com");
    assert!(!bye.headers.contains(&HeaderName::Route));
}

#[test]
fn remote_cseq_rules() {
    let mut bob = uas_dialog();
    let base = "BYE sip:bob@client.biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds9
Max-Forwards: 70
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: SEQ METHOD
Content-Length: 0

";
    let make = |seq: u32, method: &str| {
        req(&base
            .replace("BYE sip", &format!("{method} sip"))
            .replace("SEQ METHOD", &format!("{seq} {method}")))
    };
    // Lower than the INVITE's CSeq: out of order (500).
    assert_eq!(
        bob.check_request(&make(314158, "INFO")),
        Err(DialogError::CSeqOutOfOrder {
            got: 314158,
            last: 314159
        })
    );
    assert_eq!(bob.remote_seq, Some(314159));
    // ACK for the 2xx carries the INVITE's number and is fine.
    bob.check_request(&make(314159, "ACK")).unwrap();
    bob.check_request(&make(314170, "INFO")).unwrap();
    assert_eq!(bob.remote_seq, Some(314170));
    // ACK/CANCEL do not move the remote sequence number.
    bob.check_request(&make(1, "ACK")).unwrap();
    assert_eq!(bob.remote_seq, Some(314170));
    assert!(matches!(
        bob.check_request(&make(314160, "BYE")),
        Err(DialogError::CSeqOutOfOrder { .. })
    ));
    bob.check_request(&make(314171, "BYE")).unwrap();
    // Another dialog's request (wrong tag): 481.
    let other = req(&base
        .replace("tag=a6c85cf", "tag=zzz")
        .replace("SEQ METHOD", "314172 BYE"));
    assert!(!bob.matches_request(&other));
    assert_eq!(bob.check_request(&other), Err(DialogError::NotThisDialog));
    let other_call = req(&base
        .replace("a84b4c76e66710@", "b84b4c76e66710@")
        .replace("SEQ METHOD", "314172 BYE"));
    assert_eq!(
        bob.check_request(&other_call),
        Err(DialogError::NotThisDialog)
    );
}

#[test]
fn remote_seq_set_on_first_request_of_uac() {
    let mut alice = uac_dialog();
    assert_eq!(alice.remote_seq, None);
    let mut bob = uas_dialog();
    bob.local_seq = 500;
    let info = on_the_wire(bob.new_request(Method::Info));
    alice.check_request(&info).unwrap();
    assert_eq!(alice.remote_seq, Some(501));
}

#[test]
fn target_refresh_by_request() {
    let mut bob = uas_dialog();
    let mut alice = uac_dialog();
    alice.local_contact = Some(NameAddr::new(
        Uri::parse("sip:alice@192.0.2.99:5070").unwrap(),
    ));
    let reinvite = on_the_wire(alice.new_request(Method::Invite));
    bob.check_request(&reinvite).unwrap();
    assert_eq!(bob.remote_target.to_string(), "sip:alice@192.0.2.99:5070");
    // BYE with a Contact is not a target refresh.
    let mut bye = alice.new_request(Method::Bye);
    bye.headers
        .push(HeaderName::Contact, "<sip:alice@198.51.100.1>");
    bob.check_request(&on_the_wire(bye)).unwrap();
    assert_eq!(bob.remote_target.to_string(), "sip:alice@192.0.2.99:5070");
}

#[test]
fn early_dialog_confirmed_by_2xx_recomputes_route_set() {
    let ringing = "SIP/2.0 180 Ringing
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8
Record-Route: <sip:ss2.biloxi.example.com;lr>, <sip:ss1.atlanta.example.com;lr>
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 314159 INVITE
Contact: <sip:bob@early.biloxi.example.com>
Content-Length: 0

";
    let mut d = Dialog::from_uac(&req(INVITE_SENT), &resp(ringing)).unwrap();
    assert_eq!(d.state, DialogState::Early);
    assert_eq!(
        d.remote_target.to_string(),
        "sip:bob@early.biloxi.example.com"
    );
    assert_eq!(d.route_set.len(), 2);
    let ok = OK_RECEIVED.replace(
        "Record-Route: <sip:ss2.biloxi.example.com;lr>, <sip:ss1.atlanta.example.com;lr>",
        "Record-Route: <sip:ss1.atlanta.example.com;lr>",
    );
    d.update_from_response(&resp(&ok));
    assert_eq!(d.state, DialogState::Confirmed);
    assert_eq!(
        d.remote_target.to_string(),
        "sip:bob@client.biloxi.example.com"
    );
    let routes: Vec<String> = d.route_set.iter().map(|r| r.uri.to_string()).collect();
    assert_eq!(routes, vec!["sip:ss1.atlanta.example.com;lr"]);
}

#[test]
fn early_dialog_terminated_by_failure() {
    let ringing = OK_RECEIVED.replace("200 OK", "183 Session Progress");
    let mut d = Dialog::from_uac(&req(INVITE_SENT), &resp(&ringing)).unwrap();
    assert_eq!(d.state, DialogState::Early);
    d.update_from_response(&resp(&OK_RECEIVED.replace("200 OK", "486 Busy Here")));
    assert_eq!(d.state, DialogState::Terminated);
}

#[test]
fn responses_in_confirmed_dialog() {
    let mut d = uac_dialog();
    let reinvite = d.new_request(Method::Invite);
    let seq = reinvite.headers.cseq().unwrap().seq;
    let ok = OK_RECEIVED
        .replace("CSeq: 314159 INVITE", &format!("CSeq: {seq} INVITE"))
        .replace("client.biloxi", "moved.biloxi");
    d.update_from_response(&resp(&ok));
    assert_eq!(
        d.remote_target.to_string(),
        "sip:bob@moved.biloxi.example.com"
    );
    // Route set is fixed once confirmed.
    assert_eq!(d.route_set.len(), 2);
    // A response of another dialog is ignored.
    let foreign = OK_RECEIVED
        .replace("tag=a6c85cf", "tag=other")
        .replace("client.biloxi", "evil.biloxi");
    d.update_from_response(&resp(&foreign));
    assert_eq!(
        d.remote_target.to_string(),
        "sip:bob@moved.biloxi.example.com"
    );
    assert_eq!(d.state, DialogState::Confirmed);
    // 481 to an in-dialog request ends the dialog.
    let gone = OK_RECEIVED
        .replace("200 OK", "481 Call/Transaction Does Not Exist")
        .replace("CSeq: 314159 INVITE", "CSeq: 314161 INFO");
    d.update_from_response(&resp(&gone));
    assert_eq!(d.state, DialogState::Terminated);
}

#[test]
fn creation_errors() {
    let invite = req(INVITE_SENT);
    let trying = resp(&OK_RECEIVED.replace("200 OK", "100 Trying"));
    assert_eq!(
        Dialog::from_uac(&invite, &trying),
        Err(DialogError::NotDialogCreating(100))
    );
    let busy = resp(&OK_RECEIVED.replace("200 OK", "486 Busy Here"));
    assert_eq!(
        Dialog::from_uac(&invite, &busy),
        Err(DialogError::NotDialogCreating(486))
    );
    let untagged_180 = resp(
        &OK_RECEIVED
            .replace("200 OK", "180 Ringing")
            .replace(";tag=a6c85cf", ""),
    );
    assert_eq!(
        Dialog::from_uac(&invite, &untagged_180),
        Err(DialogError::MissingTag("To"))
    );
    let no_contact =
        resp(&OK_RECEIVED.replace("Contact: <sip:bob@client.biloxi.example.com>\n", ""));
    assert_eq!(
        Dialog::from_uac(&invite, &no_contact),
        Err(DialogError::MissingContact)
    );
    let star = resp(&OK_RECEIVED.replace("<sip:bob@client.biloxi.example.com>", "*"));
    assert_eq!(
        Dialog::from_uac(&invite, &star),
        Err(DialogError::MissingContact)
    );
    let untagged_invite = req(&INVITE_SENT.replace(";tag=1928301774", ""));
    assert_eq!(
        Dialog::from_uac(&untagged_invite, &resp(OK_RECEIVED)),
        Err(DialogError::MissingTag("From"))
    );
    let no_contact_invite =
        req(&INVITE_RECEIVED.replace("Contact: <sip:alice@pc33.atlanta.example.com>\n", ""));
    assert_eq!(
        Dialog::from_uas(&no_contact_invite, "x"),
        Err(DialogError::MissingContact)
    );
    assert_eq!(
        Dialog::from_uas(&req(INVITE_RECEIVED), ""),
        Err(DialogError::MissingTag("To"))
    );
}

#[test]
fn rfc2543_peer_without_to_tag() {
    let ok = resp(&OK_RECEIVED.replace(";tag=a6c85cf", ""));
    let mut d = Dialog::from_uac(&req(INVITE_SENT), &ok).unwrap();
    assert_eq!(d.id.remote_tag, "");
    let bye = d.new_request(Method::Bye);
    assert_eq!(bye.headers.to().unwrap().tag(), None);
    // A UAS dialog for a request without From tag matches requests without From tag.
    let mut bob =
        Dialog::from_uas(&req(&INVITE_RECEIVED.replace(";tag=1928301774", "")), "b1").unwrap();
    assert_eq!(bob.id.remote_tag, "");
    let mut bye = bob.new_request(Method::Bye);
    assert_eq!(bye.headers.to().unwrap().tag(), None);
    // Swap roles to build the peer's request: From without tag, To with our tag.
    bye.headers
        .set(HeaderName::From, "Alice <sip:alice@atlanta.example.com>");
    bye.headers
        .set(HeaderName::To, "Bob <sip:bob@biloxi.example.com>;tag=b1");
    bye.headers.set(HeaderName::CSeq, "314160 BYE");
    assert!(bob.matches_request(&on_the_wire(bye)));
}

#[test]
fn sips_dialog_is_secure() {
    let invite = req(&INVITE_SENT.replace(
        "INVITE sip:bob@biloxi.example.com",
        "INVITE sips:bob@biloxi.example.com",
    ));
    let d = Dialog::from_uac(&invite, &resp(OK_RECEIVED)).unwrap();
    assert!(d.secure);
    assert!(!uac_dialog().secure);
}
