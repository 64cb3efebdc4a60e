//! Cross-checks our wire format with an independent dissector: RTP audio, RFC 4733 event
//! packets from the DTMF sender, and RTCP compounds are written to a pcap file and decoded by
//! tshark (Wireshark), whose fields must match what we meant to send.
//!
//! tshark is part of the testbed (xtask installs it); without it the test says so and passes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tandem_media::dtmf::DtmfSender;
use tandem_media::rtcp::{
    Bye, ReceiverReport, ReportBlock, RtcpPacket, Sdes, SenderReport, build_compound,
};
use tandem_media::rtp::RtpStream;

const RTP_PORT: u16 = 40_000;
const RTCP_PORT: u16 = 40_001;

fn tshark_available() -> bool {
    Command::new("tshark")
        .arg("-v")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Writes UDP datagrams (dst port, payload) as raw-IPv4 pcap records.
fn write_pcap(path: &Path, datagrams: &[(u16, Vec<u8>)]) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xA1B2_C3D4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&101u32.to_le_bytes()); // LINKTYPE_RAW
    for (i, (port, payload)) in datagrams.iter().enumerate() {
        let udp_len = 8 + payload.len();
        let ip_len = 20 + udp_len;
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&(ip_len as u16).to_be_bytes());
        ip.extend_from_slice(&(i as u16).to_be_bytes());
        ip.extend_from_slice(&[0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 2]);
        let mut sum: u32 = ip
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        while sum > 0xFFFF {
            sum = (sum & 0xFFFF) + (sum >> 16);
        }
        let checksum = !(sum as u16);
        ip[10..12].copy_from_slice(&checksum.to_be_bytes());
        ip.extend_from_slice(&(port - 10_000).to_be_bytes());
        ip.extend_from_slice(&port.to_be_bytes());
        ip.extend_from_slice(&(udp_len as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 0]);
        ip.extend_from_slice(payload);
        out.extend_from_slice(&(1_700_000_000u32 + i as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(ip.len() as u32).to_le_bytes());
        out.extend_from_slice(&(ip.len() as u32).to_le_bytes());
        out.extend_from_slice(&ip);
    }
    std::fs::write(path, out).unwrap();
}

/// Runs tshark over the capture and returns one line of `;`-separated fields per packet.
fn tshark(path: &Path, filter: &str, fields: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n")
        .arg("-r")
        .arg(path)
        .args(["-d", &format!("udp.port=={RTP_PORT},rtp")])
        .args(["-d", &format!("udp.port=={RTCP_PORT},rtcp")])
        .args(["-d", "rtp.pt==101,rtpevent"])
        .args(["-Y", filter])
        .args(["-T", "fields", "-E", "separator=;", "-E", "aggregator=,"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn wireshark_decodes_our_rtp_dtmf_and_rtcp() {
    if !tshark_available() {
        eprintln!("tshark not installed: skipping the Wireshark cross-check");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("media.pcap");
    let t0 = Instant::now();

    let mut stream = RtpStream::with_initial(0x1234_5678, 0, 8000, 65_534, 4_000_000);
    let mut sender = DtmfSender::new(8000);
    let mut datagrams = Vec::new();
    // Two audio frames, then the digit '7' for 60 ms, then audio again.
    for i in 0..2u32 {
        let p = stream.next_packet_at(
            t0 + Duration::from_millis(20 * u64::from(i)),
            Bytes::from(vec![0xD5; 160]),
            160,
            i == 0,
        );
        datagrams.push((RTP_PORT, p.to_bytes()));
    }
    sender.start('7', Duration::from_millis(60)).unwrap();
    while let Some(ev) = sender.poll(160) {
        let ts = stream.timestamp().wrapping_sub(ev.timestamp_offset);
        let p = stream.packet_with(101, ev.payload, ts, ev.marker);
        stream.advance(160);
        datagrams.push((RTP_PORT, p.to_bytes()));
    }
    let p = stream.next_packet(Bytes::from(vec![0xD5; 160]), 160, false);
    datagrams.push((RTP_PORT, p.to_bytes()));

    let counters = stream.sender_counters(t0 + Duration::from_millis(40));
    let block = ReportBlock {
        ssrc: 0xCAFE_BABE,
        fraction_lost: 26,
        cumulative_lost: -3,
        highest_seq: 0x0002_0010,
        jitter: 123,
        lsr: 0xB705_2000,
        dlsr: 0x0005_4000,
    };
    let sr = build_compound(&[
        RtcpPacket::SenderReport(SenderReport {
            ssrc: stream.ssrc(),
            ntp_timestamp: 0xE8F0_1234_8000_0000,
            rtp_timestamp: counters.rtp_timestamp,
            packet_count: counters.packet_count,
            octet_count: counters.octet_count,
            reports: vec![block],
        }),
        RtcpPacket::Sdes(Sdes::cname(stream.ssrc(), "alice@tandem.test")),
    ]);
    datagrams.push((RTCP_PORT, sr));
    let rr = build_compound(&[
        RtcpPacket::ReceiverReport(ReceiverReport {
            ssrc: stream.ssrc(),
            reports: vec![],
        }),
        RtcpPacket::Sdes(Sdes::cname(stream.ssrc(), "ab")),
        RtcpPacket::Bye(Bye {
            sources: vec![stream.ssrc()],
            reason: Some("call ended".into()),
        }),
    ]);
    datagrams.push((RTCP_PORT, rr));
    write_pcap(&pcap, &datagrams);

    // Nothing is malformed or flagged as a protocol error.
    let bad = tshark(
        &pcap,
        "_ws.malformed || _ws.expert.severity >= \"warning\"",
        &["frame.number", "_ws.expert.message"],
    );
    assert!(bad.is_empty(), "Wireshark complains: {bad:?}");

    let rtp = tshark(
        &pcap,
        "rtp",
        &[
            "rtp.version",
            "rtp.p_type",
            "rtp.marker",
            "rtp.seq",
            "rtp.timestamp",
            "rtp.ssrc",
            "rtpevent.event_id",
            "rtpevent.end_of_event",
            "rtpevent.volume",
            "rtpevent.duration",
        ],
    );
    let ssrc = "0x12345678";
    let expected = vec![
        format!("2;0;1;65534;4000000;{ssrc};;;;"),
        format!("2;0;0;65535;4000160;{ssrc};;;;"),
        format!("2;101;1;0;4000320;{ssrc};7;0;10;160"),
        format!("2;101;0;1;4000320;{ssrc};7;0;10;320"),
        format!("2;101;0;2;4000320;{ssrc};7;1;10;480"),
        format!("2;101;0;3;4000320;{ssrc};7;1;10;480"),
        format!("2;101;0;4;4000320;{ssrc};7;1;10;480"),
        format!("2;0;0;5;4001120;{ssrc};;;;"), // 5 event ticks later
    ];
    assert_eq!(rtp, expected);

    let rtcp = tshark(
        &pcap,
        "rtcp",
        &[
            "rtcp.pt",
            "rtcp.senderssrc",
            "rtcp.timestamp.rtp",
            "rtcp.sender.packetcount",
            "rtcp.sender.octetcount",
            "rtcp.ssrc.identifier",
            "rtcp.ssrc.fraction",
            "rtcp.ssrc.cum_nr",
            "rtcp.ssrc.high_seq",
            "rtcp.ssrc.high_cycles",
            "rtcp.ssrc.jitter",
            "rtcp.ssrc.lsr",
            "rtcp.ssrc.dlsr",
            "rtcp.sdes.text",
        ],
    );
    assert_eq!(rtcp.len(), 2, "{rtcp:?}");
    let sr_fields: Vec<&str> = rtcp[0].split(';').collect();
    assert_eq!(sr_fields[0], "200,202");
    assert_eq!(sr_fields[1], ssrc);
    assert_eq!(sr_fields[2], counters.rtp_timestamp.to_string());
    assert_eq!(sr_fields[3], "8");
    assert_eq!(sr_fields[4], (3 * 160 + 5 * 4).to_string());
    assert_eq!(sr_fields[5], "0xcafebabe,0x12345678"); // block, then the SDES chunk
    assert_eq!(sr_fields[6], "26");
    assert_eq!(sr_fields[7], "-3");
    assert_eq!(sr_fields[8], "16");
    assert_eq!(sr_fields[9], "2");
    assert_eq!(sr_fields[10], "123");
    assert_eq!(sr_fields[11], "3070566400"); // 0xB7052000
    assert_eq!(sr_fields[12], "344064"); // 0x00054000
    assert_eq!(sr_fields[13], "alice@tandem.test");
    let rr_fields: Vec<&str> = rtcp[1].split(';').collect();
    assert_eq!(rr_fields[0], "201,202,203");
    assert_eq!(rr_fields[13], "ab,call ended"); // Wireshark files the BYE reason as text too
}
