//! A tiny authoritative DNS responder on a loopback UDP port, for RFC 3263 tests.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_resolver::proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, NAPTR, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// The zone the responder serves.
#[derive(Default, Clone)]
pub struct Zone {
    records: Vec<Record>,
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

impl Zone {
    /// Adds a NAPTR record `owner -> replacement` with flags "s".
    pub fn naptr(&mut self, owner: &str, order: u16, pref: u16, service: &str, replacement: &str) {
        let rdata = NAPTR::new(
            order,
            pref,
            b"s".to_vec().into_boxed_slice(),
            service.as_bytes().to_vec().into_boxed_slice(),
            Vec::new().into_boxed_slice(),
            name(replacement),
        );
        self.records
            .push(Record::from_rdata(name(owner), 60, RData::NAPTR(rdata)));
    }

    /// Adds an SRV record.
    pub fn srv(&mut self, owner: &str, priority: u16, weight: u16, port: u16, target: &str) {
        let rdata = SRV::new(priority, weight, port, name(target));
        self.records
            .push(Record::from_rdata(name(owner), 60, RData::SRV(rdata)));
    }

    /// Adds an A or AAAA record.
    pub fn addr(&mut self, owner: &str, ip: IpAddr) {
        let rdata = match ip {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        };
        self.records
            .push(Record::from_rdata(name(owner), 60, rdata));
    }
}

/// A running responder; stops when dropped.
pub struct TestDns {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestDns {
    /// Starts answering from `zone` on 127.0.0.1 with a free port.
    pub async fn start(zone: Zone) -> TestDns {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = socket.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let reply = answer(&zone, &query);
                if let Ok(bytes) = reply.to_vec() {
                    let _ = socket.send_to(&bytes, from).await;
                }
            }
        });
        TestDns { addr, task }
    }
}

fn answer(zone: &Zone, query: &Message) -> Message {
    let mut reply = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
    reply.metadata.authoritative = true;
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    let mut known = false;
    for q in &query.queries {
        reply.add_query(q.clone());
        for r in &zone.records {
            if r.name == *q.name() {
                known = true;
                if r.record_type() == q.query_type() {
                    reply.add_answer(r.clone());
                }
            }
        }
    }
    if !known {
        reply.metadata.response_code = ResponseCode::NXDomain;
    }
    reply
}
