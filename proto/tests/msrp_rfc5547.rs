//! RFC 5547 file-transfer SDP attributes and RFC 4975 §8 MSRP media lines.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tandem_proto::msrp::sdp::{FileRange, FileSelector, MsrpMedia, Setup, accepts};
use tandem_proto::sdp::SessionDescription;

// RFC 5547 §9.1 offer (push), as printed in the RFC (the long a=file-selector line unfolded).
const OFFER: &str = "v=0
o=Alice 1234 1234 IN IP4 alicepc.example.com
s=
c=IN IP4 alicepc.example.com
t=0 0
m=message 7654 TCP/MSRP *
i=This is my latest picture
a=sendonly
a=accept-types:message/cpim
a=accept-wrapped-types:*
a=path:msrp://alicepc.example.com:7654/jshA7we;tcp
a=file-selector:name:\"My cool picture.jpg\" type:image/jpeg size:32349 hash:sha-1:72:24:5F:E8:65:3D:DA:F3:71:36:2F:86:D4:71:91:3E:E4:A2:CE:2E
a=file-transfer-id:vBnG916bdberum2fFEABR1FR3ExZMUrd
a=file-disposition:render
a=file-date:creation:\"Mon, 15 May 2006 15:01:31 +0300\"
a=file-icon:cid:id2@alicepc.example.com
";

const ANSWER: &str = "v=0
o=Bob 1234 1234 IN IP4 bobpc.example.com
s=
c=IN IP4 bobpc.example.com
t=0 0
m=message 8888 TCP/MSRP *
a=recvonly
a=accept-types:message/cpim
a=accept-wrapped-types:*
a=path:msrp://bobpc.example.com:8888/9di4eae923wzd;tcp
a=file-selector:name:\"My cool picture.jpg\" type:image/jpeg size:32349 hash:sha-1:72:24:5F:E8:65:3D:DA:F3:71:36:2F:86:D4:71:91:3E:E4:A2:CE:2E
a=file-transfer-id:vBnG916bdberum2fFEABR1FR3ExZMUrd
";

fn sdp(s: &str) -> SessionDescription {
    SessionDescription::parse(&s.replace('\n', "\r\n")).unwrap()
}

#[test]
fn offer_and_answer_attributes() {
    let offer = sdp(OFFER);
    let m = MsrpMedia::from_media(&offer.media[0]).unwrap();
    assert_eq!(m.port, 7654);
    assert!(!m.tls);
    assert_eq!(m.direction.as_deref(), Some("sendonly"));
    assert_eq!(m.accept_types, vec!["message/cpim"]);
    assert_eq!(m.accept_wrapped_types, vec!["*"]);
    assert_eq!(m.path[0].session_id.as_deref(), Some("jshA7we"));
    let f = m.file.as_ref().unwrap();
    assert_eq!(f.selector.name.as_deref(), Some("My cool picture.jpg"));
    assert_eq!(f.selector.media_type.as_deref(), Some("image/jpeg"));
    assert_eq!(f.selector.size, Some(32349));
    let sha1 = f.selector.sha1().unwrap();
    assert_eq!(sha1.len(), 20);
    assert_eq!(sha1[0], 0x72);
    assert_eq!(sha1[19], 0x2E);
    assert_eq!(
        f.transfer_id.as_deref(),
        Some("vBnG916bdberum2fFEABR1FR3ExZMUrd")
    );
    assert_eq!(f.disposition.as_deref(), Some("render"));
    assert_eq!(
        f.date.as_deref(),
        Some("creation:\"Mon, 15 May 2006 15:01:31 +0300\"")
    );
    assert_eq!(f.icon.as_deref(), Some("cid:id2@alicepc.example.com"));
    assert_eq!(f.range, None);

    let answer = sdp(ANSWER);
    let a = MsrpMedia::from_media(&answer.media[0]).unwrap();
    assert_eq!(a.direction.as_deref(), Some("recvonly"));
    assert_eq!(a.file.as_ref().unwrap().selector, f.selector);

    // the selector prints back exactly as the RFC writes it
    let line = offer.media[0]
        .attributes
        .iter()
        .find(|x| x.name == "file-selector")
        .and_then(|x| x.value.clone())
        .unwrap();
    assert_eq!(f.selector.to_string(), line);
}

#[test]
fn media_line_round_trip_with_resume_range() {
    let offer = sdp(OFFER);
    let mut m = MsrpMedia::from_media(&offer.media[0]).unwrap();
    m.setup = Some(Setup::Actpass);
    m.max_size = Some(1_000_000);
    m.tls = true;
    if let Some(f) = m.file.as_mut() {
        f.range = Some(FileRange {
            start: 10001,
            stop: None,
        });
    }
    let md = m.to_media(None);
    assert_eq!(md.protocol, "TCP/TLS/MSRP");
    assert_eq!(md.formats, vec!["*"]);
    assert_eq!(md.attribute("file-range"), Some("10001-*"));
    assert_eq!(md.attribute("setup"), Some("actpass"));
    let back = MsrpMedia::from_media(&md).unwrap();
    assert_eq!(back, m);
}

#[test]
fn selector_edge_cases() {
    let s: FileSelector =
        "name:\"a%22b%25c d.txt\" type:text/plain;charset=\"utf-8 x\" size:0 x-new:1"
            .parse()
            .unwrap();
    assert_eq!(s.name.as_deref(), Some("a\"b%c d.txt"));
    assert_eq!(
        s.media_type.as_deref(),
        Some("text/plain;charset=\"utf-8 x\"")
    );
    assert_eq!(s.size, Some(0));
    let again: FileSelector = s.to_string().parse().unwrap();
    assert_eq!(again, s);
    for bad in [
        "name:\"unterminated",
        "name:noquotes",
        "size:-1",
        "size:99999999999999999999",
        "hash:sha-1:7",
        "hash:sha-1:GG",
        "type:jpeg",
        "name:\"%4\"",
    ] {
        assert!(bad.parse::<FileSelector>().is_err(), "{bad:?} parsed");
    }
    assert_eq!(
        "1-32349".parse::<FileRange>().unwrap(),
        FileRange {
            start: 1,
            stop: Some(32349)
        }
    );
    assert!("0-5".parse::<FileRange>().is_err());
    assert!("9-5".parse::<FileRange>().is_err());
    assert!("5".parse::<FileRange>().is_err());
}

#[test]
fn accept_types_matching() {
    let list = vec!["message/cpim".to_owned(), "text/*".to_owned()];
    assert!(accepts(&list, "message/CPIM"));
    assert!(accepts(&list, "text/plain; charset=utf-8"));
    assert!(!accepts(&list, "image/jpeg"));
    assert!(accepts(&["*".to_owned()], "image/jpeg"));
    assert!(!accepts(&[], "text/plain"));
}

#[test]
fn non_msrp_lines_and_missing_path_are_errors() {
    let offer = sdp("v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=message 7654 TCP/MSRP *
a=accept-types:text/plain
m=audio 4000 RTP/AVP 0
");
    assert!(MsrpMedia::from_media(&offer.media[0]).is_err());
    assert!(MsrpMedia::from_media(&offer.media[1]).is_err());
}
