//! Hostile input never takes the lab server down: RFC 4475 torture messages, random bytes and a huge header, over
//! UDP and TCP; afterwards it still answers OPTIONS and REGISTER.

use std::path::PathBuf;
use std::time::Duration;

use tandem_tests::sip::{self, Registration, register_contact};
use tandem_tests::{LabOptions, LabServer, TestDir, Transport};

use crate::common::{ok, secs};

/// The largest payload we put in one UDP datagram.
const MAX_DATAGRAM: usize = 65_000;

/// Every message file of RFC 4475 (valid ones too: a superset of the invalid ones is no weaker a test).
fn torture_messages() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../proto/tests/data/rfc4475");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes =
                std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
            (p.display().to_string(), bytes)
        })
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no RFC 4475 messages in {}",
        dir.display()
    );
    files
}

/// A small deterministic PRNG (xorshift64*), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn huge_header(len: usize) -> Vec<u8> {
    let mut m = b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKhuge\r\n\
        Max-Forwards: 70\r\nFrom: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\n\
        Call-ID: huge@x\r\nCSeq: 1 OPTIONS\r\nX-Huge: "
        .to_vec();
    m.extend(std::iter::repeat_n(b'a', len));
    m.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
    m
}

fn assert_alive(lab: &mut LabServer, what: &str) {
    std::thread::sleep(Duration::from_millis(200));
    assert!(lab.is_running(), "the lab server died after {what}");
}

#[test]
fn lab_survives_malformed_input() {
    let dir = ok(TestDir::new("lab-malformed"));
    let mut lab = ok(LabServer::start(
        LabOptions::default().user("alice", "alicepw"),
        dir.path(),
    ));
    let (udp, tcp) = (lab.udp(), lab.tcp());

    for (name, bytes) in torture_messages() {
        if bytes.len() <= MAX_DATAGRAM {
            ok(sip::send_udp(udp, &bytes));
        }
        ok(sip::send_tcp(tcp, &bytes));
        assert!(lab.is_running(), "the lab server died on {name}");
    }
    assert_alive(&mut lab, "the RFC 4475 messages");

    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for _ in 0..300 {
        let len = (rng.next() % 1500) as usize + 1;
        ok(sip::send_udp(udp, &rng.bytes(len)));
    }
    for _ in 0..20 {
        let len = (rng.next() % 20_000) as usize + 1;
        ok(sip::send_tcp(tcp, &rng.bytes(len)));
    }
    // Half a valid message, then garbage, on one stream.
    let mut mixed = huge_header(10);
    mixed.truncate(60);
    mixed.extend(rng.bytes(5000));
    ok(sip::send_tcp(tcp, &mixed));
    assert_alive(&mut lab, "random bytes");

    ok(sip::send_udp(udp, &huge_header(60_000)));
    ok(sip::send_tcp(tcp, &huge_header(100_000)));
    assert_alive(&mut lab, "a 100 kB header");

    for t in [Transport::Udp, Transport::Tcp] {
        let r = ok(sip::options(lab.addr(t).unwrap_or(udp), t, secs(5)));
        assert_eq!(r.status, 200, "OPTIONS over {t} afterwards:\n{}", r.text);
    }
    let reg = ok(register_contact(
        &Registration {
            registrar: udp,
            user: "alice".into(),
            domain: lab.domain().into(),
            auth_user: "alice".into(),
            password: "alicepw".into(),
            contact: "sip:alice@127.0.0.1:9".into(),
            expires: 60,
        },
        secs(5),
    ));
    assert_eq!(reg.status, 200, "REGISTER afterwards:\n{}", reg.text);
    assert!(lab.is_running());
}
