//! RFC 4733 interop with a real peer, below the media session: a minimal SIP UAC in this test
//! calls an auto-answering baresip, then
//! - sends PCMU audio with DTMF digits made by [`DtmfSender`] through [`RtpStream`], and checks
//!   baresip reports each digit once (its `CALL_DTMF_START` events over `ctrl_tcp`);
//! - has baresip send digits (`sndcode`) and checks [`DtmfReceiver`] reports each once.
//!
//! baresip is part of the testbed (xtask installs it); without it the test says so and passes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tandem_media::dtmf::{DtmfReceiver, DtmfSender};
use tandem_media::rtp::{PacketKind, RtpPacket, RtpStream, classify};

/// Kills and reaps baresip when the test ends, passing or failing.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn baresip_available() -> bool {
    Command::new("baresip")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(dir: &Path, sip: SocketAddr, ctrl: SocketAddr) {
    let config = format!(
        "poll_method epoll\n\
         sip_listen {sip}\n\
         call_local_timeout 120\n\
         audio_player alsa,null\n\
         audio_alert alsa,null\n\
         audio_source ausine,440\n\
         ausrc_srate 48000\n\
         auplay_srate 48000\n\
         ausrc_channels 2\n\
         audio_level no\n\
         rtcp_mux no\n\
         module_path /usr/lib/baresip/modules\n\
         module g711.so\n\
         module alsa.so\n\
         module ausine.so\n\
         module_tmp uuid.so\n\
         module_tmp account.so\n\
         module_app menu.so\n\
         module_app ctrl_tcp.so\n\
         ctrl_tcp_listen {ctrl}\n"
    );
    std::fs::write(dir.join("config"), config).unwrap();
    std::fs::write(
        dir.join("accounts"),
        "<sip:bob@127.0.0.1>;regint=0;answermode=auto;audio_codecs=PCMU/8000/1\n",
    )
    .unwrap();
    std::fs::write(dir.join("contacts"), "").unwrap();
}

/// Reads `LEN:DATA,` netstrings from baresip's ctrl_tcp into a channel.
fn spawn_ctrl_reader(stream: TcpStream) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut r = std::io::BufReader::new(stream);
        loop {
            let mut len = 0usize;
            let mut b = [0u8; 1];
            loop {
                if r.read_exact(&mut b).is_err() {
                    return;
                }
                match b[0] {
                    b'0'..=b'9' => len = len * 10 + usize::from(b[0] - b'0'),
                    b':' => break,
                    _ => return,
                }
                if len > 1 << 20 {
                    return;
                }
            }
            let mut data = vec![0u8; len + 1];
            if r.read_exact(&mut data).is_err() {
                return;
            }
            data.pop();
            if tx
                .send(String::from_utf8_lossy(&data).into_owned())
                .is_err()
            {
                return;
            }
        }
    });
    rx
}

fn ctrl_command(ctrl: &mut TcpStream, command: &str, params: &str, token: u32) {
    let json = format!(r#"{{"command":"{command}","params":"{params}","token":"{token}"}}"#);
    ctrl.write_all(format!("{}:{json},", json.len()).as_bytes())
        .unwrap();
}

/// The `"param"` value of a ctrl_tcp event of type `ty`, if `msg` is one.
fn event_param(msg: &str, ty: &str) -> Option<String> {
    if !msg.contains(&format!(r#""type":"{ty}""#)) {
        return None;
    }
    let start = msg.find(r#""param":""#)? + r#""param":""#.len();
    let end = msg[start..].find('"')? + start;
    Some(msg[start..end].to_owned())
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn dtmf_interop_with_baresip() {
    if !baresip_available() {
        eprintln!("baresip not installed: skipping the RFC 4733 interop check");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sip_addr = SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
    let ctrl_addr = SocketAddr::from(([127, 0, 0, 1], free_tcp_port()));
    write_config(dir.path(), sip_addr, ctrl_addr);
    let log = std::fs::File::create(dir.path().join("baresip.log")).unwrap();
    let child = Command::new("baresip")
        .arg("-f")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let _guard = Guard(child);
    let logs = || std::fs::read_to_string(dir.path().join("baresip.log")).unwrap_or_default();

    let start = Instant::now();
    let mut ctrl = loop {
        match TcpStream::connect_timeout(&ctrl_addr, Duration::from_millis(200)) {
            Ok(s) => break s,
            Err(e) if start.elapsed() > Duration::from_secs(10) => {
                panic!("baresip ctrl_tcp: {e}\n{}", logs())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let events = spawn_ctrl_reader(ctrl.try_clone().unwrap());

    // Our side: one SIP socket, one RTP socket.
    let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
    sip.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    rtp.set_nonblocking(true).unwrap();
    let sip_port = sip.local_addr().unwrap().port();
    let rtp_port = rtp.local_addr().unwrap().port();
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
    );
    let invite = format!(
        "INVITE sip:bob@{sip_addr} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{sip_port};branch=z9hG4bK-rtp-inv;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@127.0.0.1>;tag=rtp-a\r\n\
         To: <sip:bob@127.0.0.1>\r\n\
         Call-ID: rtp-dtmf-{sip_port}@127.0.0.1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@127.0.0.1:{sip_port}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    // Retransmit the INVITE until a final response (UDP, timer A style).
    let mut buf = vec![0u8; 65_535];
    let mut last_sent = None::<Instant>;
    let ok = loop {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no 200 OK from baresip\n{}",
            logs()
        );
        if last_sent.is_none_or(|t| t.elapsed() > Duration::from_millis(500)) {
            sip.send_to(invite.as_bytes(), sip_addr).unwrap();
            last_sent = Some(Instant::now());
        }
        let Ok((n, _)) = sip.recv_from(&mut buf) else {
            continue;
        };
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if msg.starts_with("SIP/2.0 200") && msg.contains("CSeq: 1 INVITE") {
            break msg;
        }
        assert!(
            !msg.starts_with("SIP/2.0 4")
                && !msg.starts_with("SIP/2.0 5")
                && !msg.starts_with("SIP/2.0 6"),
            "baresip rejected the call: {msg}"
        );
    };
    let to = header(&ok, "To").unwrap().to_owned();
    let contact = header(&ok, "Contact").unwrap();
    let target = &contact[contact.find('<').unwrap() + 1..contact.find('>').unwrap()];
    let ack = format!(
        "ACK {target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{sip_port};branch=z9hG4bK-rtp-ack;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@127.0.0.1>;tag=rtp-a\r\n\
         To: {to}\r\n\
         Call-ID: rtp-dtmf-{sip_port}@127.0.0.1\r\n\
         CSeq: 1 ACK\r\n\
         Content-Length: 0\r\n\r\n"
    );
    sip.send_to(ack.as_bytes(), sip_addr).unwrap();
    // The answer's audio port and telephone-event payload type.
    let body = &ok[ok.find("\r\n\r\n").unwrap() + 4..];
    let m_port: u16 = body
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let te_pt: u8 = body
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix("a=rtpmap:")?;
            let (pt, enc) = rest.split_once(' ')?;
            enc.to_ascii_lowercase()
                .starts_with("telephone-event/8000")
                .then(|| pt.parse().ok())?
        })
        .expect("baresip answered without telephone-event");
    let remote_rtp = SocketAddr::from(([127, 0, 0, 1], m_port));

    // Media loop: 20 ms ticks, PCMU silence, our digits, baresip's digits.
    let sent_digits = "1223#*90";
    let mut stream = RtpStream::new(RtpStream::random_ssrc(), 0, 8000);
    let mut sender = DtmfSender::new(8000);
    sender
        .start_all(sent_digits, Duration::from_millis(100))
        .unwrap();
    let mut receiver = DtmfReceiver::new();
    let mut got_at_baresip = String::new();
    let mut got_here = String::new();
    let baresip_digits = ["7", "*", "3", "3", "D"];
    let mut next_sndcode = 0usize;
    let mut last_sndcode = None::<Instant>;
    let mut token = 1;
    let tick = Duration::from_millis(20);
    let mut next_tick = Instant::now();
    let media_start = Instant::now();
    while media_start.elapsed() < Duration::from_secs(12) {
        // Send this tick's packet.
        let packet = match sender.poll(160) {
            Some(ev) => {
                let ts = stream.timestamp().wrapping_sub(ev.timestamp_offset);
                let p = stream.packet_with(te_pt, ev.payload, ts, ev.marker);
                stream.advance(160);
                p
            }
            None => stream.next_packet(Bytes::from_static(&[0xFF; 160]), 160, false),
        };
        rtp.send_to(&packet.to_bytes(), remote_rtp).unwrap();
        // Once our digits are through, have baresip send its own, 300 ms apart.
        if sender.is_idle()
            && next_sndcode < baresip_digits.len()
            && last_sndcode.is_none_or(|t| t.elapsed() > Duration::from_millis(300))
        {
            ctrl_command(&mut ctrl, "sndcode", baresip_digits[next_sndcode], token);
            token += 1;
            next_sndcode += 1;
            last_sndcode = Some(Instant::now());
        }
        // Drain what baresip sent.
        while let Ok((n, _)) = rtp.recv_from(&mut buf) {
            if classify(&buf[..n]) != PacketKind::Rtp {
                continue;
            }
            let p = RtpPacket::parse(&buf[..n]).unwrap();
            if p.header.payload_type == te_pt
                && let Some(d) = receiver.on_rtp(&p)
            {
                got_here.push(d);
            }
        }
        while let Ok(msg) = events.try_recv() {
            if let Some(d) = event_param(&msg, "CALL_DTMF_START") {
                got_at_baresip.push_str(d.trim());
            }
        }
        if got_here.len() == baresip_digits.len()
            && got_at_baresip.len() == sent_digits.len()
            && last_sndcode.is_some_and(|t| t.elapsed() > Duration::from_secs(1))
        {
            // Everything arrived; the last second gave duplicates time to show.
            break;
        }
        next_tick += tick;
        std::thread::sleep(next_tick.saturating_duration_since(Instant::now()));
    }
    assert_eq!(
        got_at_baresip,
        sent_digits,
        "digits baresip reported\n{}",
        logs()
    );
    assert_eq!(
        got_here,
        baresip_digits.concat(),
        "digits we decoded from baresip"
    );

    let bye = format!(
        "BYE {target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{sip_port};branch=z9hG4bK-rtp-bye;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@127.0.0.1>;tag=rtp-a\r\n\
         To: {to}\r\n\
         Call-ID: rtp-dtmf-{sip_port}@127.0.0.1\r\n\
         CSeq: 2 BYE\r\n\
         Content-Length: 0\r\n\r\n"
    );
    sip.send_to(bye.as_bytes(), sip_addr).unwrap();
}
