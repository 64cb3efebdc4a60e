//! Hostile input to a running video session: garbage datagrams, truncated RTP and RTCP, foreign
//! payload types, a fake frame spanning thousands of packets, a bitstream claiming an absurd
//! size, PLI/FIR/NACK floods and an absurd REMB. The session survives, counts, stays bounded,
//! and decodes a real peer afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

mod session_support;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use session_support::*;
use tandem_media::session::MediaSecurity;
use tandem_video::codec::VideoCodecKind;
use tandem_video::feedback::{Feedback, write_feedback};
use tandem_video::session::VideoUpdate;
use tokio::net::UdpSocket;

/// Resident set size of this process in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80, pt | if marker { 0x80 } else { 0 }];
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&ts.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Sends `packets`, yielding every few so the receiver's socket buffer keeps up.
async fn send_all(socket: &UdpSocket, to: SocketAddr, packets: &[Vec<u8>]) {
    for (i, p) in packets.iter().enumerate() {
        let _ = socket.send_to(p, to).await;
        if i % 20 == 19 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_dropped_counted_and_bounded() {
    let mut rng = StdRng::seed_from_u64(42);
    let (attacker, attacker_addr) = bind().await;
    let (sb, addr_b) = bind().await;
    // B sends to the attacker (so that the PLI/NACK floods have something to hit).
    let (cfg_b, seen_b) = config(
        sb,
        attacker_addr,
        VideoCodecKind::Vp8,
        (320, 240, 15),
        MediaSecurity::Plain,
    );
    let b = start(cfg_b, seen_b);
    // Learn B's SSRC and a run of its sequence numbers from its RTP.
    let mut buf = vec![0u8; 2048];
    let mut b_ssrc = None;
    let mut b_seqs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while b_seqs.len() < 60 && Instant::now() < deadline {
        let got = tokio::time::timeout(Duration::from_secs(1), attacker.recv_from(&mut buf)).await;
        let Ok(Ok((n, _))) = got else { continue };
        if n >= 12 && buf[0] >> 6 == 2 && !(200..=206).contains(&buf[1]) {
            b_ssrc = Some(u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]));
            b_seqs.push(u16::from_be_bytes([buf[2], buf[3]]));
        }
    }
    let b_ssrc = b_ssrc.expect("B sends RTP");
    assert!(b_seqs.len() >= 60);
    // Keep draining what B sends us, remembering its latest sequence numbers.
    let recent = Arc::new(Mutex::new(VecDeque::from(b_seqs)));
    let drain = {
        let attacker = attacker.clone();
        let recent = Arc::clone(&recent);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, _)) = attacker.recv_from(&mut buf).await {
                if n >= 12 && !(200..=206).contains(&buf[1]) {
                    let mut recent = recent.lock().unwrap();
                    recent.push_back(u16::from_be_bytes([buf[2], buf[3]]));
                    if recent.len() > 60 {
                        recent.pop_front();
                    }
                }
            }
        })
    };
    let rss_before = rss_kib();
    let started = Instant::now();

    // 1. Garbage of every length.
    let mut garbage = Vec::new();
    for _ in 0..2000 {
        let len = rng.random_range(0..1500);
        let mut d = vec![0u8; len];
        rng.fill_bytes(&mut d);
        garbage.push(d);
    }
    send_all(&attacker, addr_b, &garbage).await;

    // 2. Truncated and inconsistent RTP/RTCP headers.
    let mut broken = Vec::new();
    for len in 1..12 {
        broken.push(vec![0x80; len]);
    }
    broken.push(vec![0x8f, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 1, 2]); // 15 CSRCs announced
    broken.push(vec![
        0x90, 96, 0, 2, 0, 0, 0, 0, 0, 0, 0, 9, 0xbe, 0xde, 0xff, 0xff,
    ]); // extension past the end
    broken.push(vec![0xa0, 96, 0, 3, 0, 0, 0, 0, 0, 0, 0, 9, 0x10, 0xff]); // padding longer than the packet
    broken.push(vec![0x80, 201, 0xff, 0xff, 0, 0, 0, 1]); // RTCP length past the end
    broken.push(vec![0x81, 205, 0, 1, 0, 0, 0, 1]); // feedback without its media SSRC
    broken.push(vec![0x8f, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0]); // FIR without its FCI
    for _ in 0..100 {
        broken.push(rtp(96, rng.random(), 0, 9, true, &[])); // VP8 without a descriptor
    }
    send_all(&attacker, addr_b, &broken).await;

    // 3. Payload types nobody negotiated.
    let foreign: Vec<Vec<u8>> = (0..200u16)
        .map(|i| rtp(100, i, 0, 77, true, &[0x10, 0, 0, 0]))
        .collect();
    send_all(&attacker, addr_b, &foreign).await;

    // 4. One fake frame spanning 4000 packets (5.6 MB), never finished, from a new source.
    let fake_ssrc = 0x0bad_f00d;
    let mut huge = Vec::new();
    for i in 0..4000u16 {
        let mut payload = vec![if i == 0 { 0x10 } else { 0x00 }];
        let mut junk = vec![0u8; 1400];
        rng.fill_bytes(&mut junk);
        payload.extend_from_slice(&junk);
        huge.push(rtp(96, 1000 + i, 5000, fake_ssrc, false, &payload));
    }
    send_all(&attacker, addr_b, &huge).await;

    // 5. A keyframe that claims 16383x16383, then more frames of the fake source.
    let mut absurd = vec![0x10];
    let first_part = 100u32;
    let tag = (first_part << 5) | 0x10; // key frame, version 0, shown
    absurd.extend_from_slice(&tag.to_le_bytes()[..3]);
    absurd.extend_from_slice(&[0x9d, 0x01, 0x2a, 0xff, 0x3f, 0xff, 0x3f]);
    let mut rest = vec![0u8; 300];
    rng.fill_bytes(&mut rest);
    absurd.extend_from_slice(&rest);
    let mut frames = Vec::new();
    for k in 0..20u16 {
        frames.push(rtp(
            96,
            6000 + k,
            90_000 + u32::from(k) * 6000,
            fake_ssrc,
            true,
            &absurd,
        ));
    }
    send_all(&attacker, addr_b, &frames).await;

    // 6. Keyframe request floods, a NACK flood for what B really sent, an absurd REMB.
    let mut floods = Vec::new();
    for i in 0..1000u32 {
        let mut compound = Vec::new();
        let fb = if i % 2 == 0 {
            Feedback::Pli {
                sender_ssrc: fake_ssrc,
                media_ssrc: b_ssrc,
            }
        } else {
            Feedback::Fir {
                sender_ssrc: fake_ssrc,
                media_ssrc: b_ssrc,
                seq_nr: i as u8,
            }
        };
        write_feedback(&mut compound, &fb);
        floods.push(compound);
    }
    // Packets B sent in the last few seconds: still in its send history.
    let asked: Vec<u16> = recent.lock().unwrap().iter().copied().collect();
    for _ in 0..300 {
        let mut compound = Vec::new();
        write_feedback(
            &mut compound,
            &Feedback::Nack {
                sender_ssrc: fake_ssrc,
                media_ssrc: b_ssrc,
                seqs: asked.clone(),
            },
        );
        floods.push(compound);
    }
    let mut remb = Vec::new();
    write_feedback(
        &mut remb,
        &Feedback::Remb {
            sender_ssrc: fake_ssrc,
            bitrate_bps: u64::MAX / 2,
            ssrcs: vec![b_ssrc],
        },
    );
    floods.push(remb);
    send_all(&attacker, addr_b, &floods).await;
    let flood_time = started.elapsed();
    tokio::time::sleep(Duration::from_millis(800)).await;

    let stats = b.session.stats();
    eprintln!("after the attack: {stats:?}");
    assert!(b.session.control().is_running());
    assert!(stats.malformed_dropped >= 500, "{stats:?}");
    assert!(stats.unknown_pt_dropped >= 100, "{stats:?}");
    assert!(
        stats.packets_dropped > 0 || stats.frames_dropped_assembler > 0,
        "{stats:?}"
    );
    assert_eq!(b.seen.len(), 0, "no fake picture reached the sink");
    // The kernel may drop some of the flood while B is busy; most of it arrives.
    let requests = stats.plis_received + stats.firs_received;
    assert!(requests >= 100, "{stats:?}");
    // At most one keyframe per 500 ms for the requests, plus the first one; the rest coalesced.
    let allowed = 2 + (flood_time.as_millis() as u64 + 800) / 500 + 1;
    assert!(
        stats.keyframes_sent <= allowed,
        "{stats:?} allowed {allowed}"
    );
    assert!(
        stats.keyframe_requests_coalesced + allowed >= requests,
        "{stats:?}"
    );
    assert!(stats.nacks_received >= 50, "{stats:?}");
    // 300 NACKs x 60 packets asked: some are served, the guard and the budget keep the
    // answer small (about 300 kbit/s of retransmissions).
    assert!(stats.retransmissions > 0, "{stats:?}");
    assert!(stats.retransmissions <= 600, "{stats:?}");
    assert!(stats.target_bitrate_bps <= 1_000_000, "{stats:?}");
    let grown = rss_kib().saturating_sub(rss_before);
    assert!(grown < 150 * 1024, "RSS grew by {grown} KiB");

    // Keyframes of another new source that claim 16383x16383, sent calmly: they reach the
    // decoder, which refuses them; nothing reaches the sink.
    let calm_ssrc = 0x5eed_5eed;
    let before = b.session.stats();
    for k in 0..20u16 {
        let p = rtp(
            96,
            40_000 + k,
            u32::from(k) * 6000,
            calm_ssrc,
            true,
            &absurd,
        );
        attacker.send_to(&p, addr_b).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let refused = wait_until(Duration::from_secs(5), || {
        let s = b.session.stats();
        s.oversized_dropped + s.decode_errors > before.oversized_dropped + before.decode_errors
    })
    .await;
    let stats = b.session.stats();
    eprintln!("after the absurd keyframes: {stats:?}");
    assert!(refused, "{stats:?}");
    assert!(stats.frames_received > before.frames_received);
    assert_eq!(stats.frames_decoded, 0);
    assert_eq!(b.seen.len(), 0);

    // A real peer now: B follows its SSRC and decodes its pictures.
    let (sa, addr_a) = bind().await;
    let (cfg_a, seen_a) = config(
        sa,
        addr_b,
        VideoCodecKind::Vp8,
        (160, 120, 15),
        MediaSecurity::Plain,
    );
    let a = start(cfg_a, seen_a);
    b.session.control().update(VideoUpdate {
        remote_rtp: Some(addr_a),
        ..VideoUpdate::default()
    });
    let recovered = wait_until(Duration::from_secs(15), || b.seen.len() >= 15).await;
    let final_b = b.session.stop().await;
    a.session.stop().await;
    drain.abort();
    eprintln!("after the real peer: {final_b:?}");
    assert!(recovered, "{final_b:?}");
    let seen = b.seen.snapshot();
    assert!(seen.iter().all(|s| (s.width, s.height) == (160, 120)));
    let counters = counters(&seen);
    assert!(counters.len() >= 10);
    assert_increasing(&counters);
    assert!(final_b.ssrc_changes >= 1, "{final_b:?}");
}
