//! RFC 4733 telephone events: payload codec, sender packet sequence, receiver deduplication,
//! and the SIP INFO bodies.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use tandem_media::dtmf::{
    DtmfError, DtmfPacket, DtmfReceiver, DtmfSender, MAX_QUEUED, TelephoneEvent, digit_to_event,
    event_to_digit, format_dtmf_relay, parse_dtmf_info,
};
use tandem_media::rtp::{RtpPacket, RtpStream};

#[test]
fn event_payload_wire_format() {
    // What Asterisk sends first for '1' at 8 kHz: event 1, volume 10, duration 160.
    let first = TelephoneEvent::parse(&[0x01, 0x0A, 0x00, 0xA0]).unwrap();
    assert_eq!(
        first,
        TelephoneEvent {
            event: 1,
            end: false,
            volume: 10,
            duration: 160
        }
    );
    // End bit, reserved bit set (ignored), volume 63, duration 0xFFFF.
    let end = TelephoneEvent::parse(&[11, 0xFF, 0xFF, 0xFF, 0x99]).unwrap();
    assert_eq!(
        end,
        TelephoneEvent {
            event: 11,
            end: true,
            volume: 63,
            duration: 0xFFFF
        }
    );
    assert_eq!(end.digit(), Some('#'));
    assert_eq!(end.encode(), [11, 0xBF, 0xFF, 0xFF]);
    assert_eq!(first.encode(), [0x01, 0x0A, 0x00, 0xA0]);
    // Several reports in one payload: the first is taken.
    let two = TelephoneEvent::parse(&[5, 0x8A, 0x03, 0x20, 6, 0x0A, 0, 0xA0]).unwrap();
    assert_eq!((two.event, two.end, two.duration), (5, true, 800));
    assert_eq!(
        TelephoneEvent::parse(&[1, 2, 3]),
        Err(DtmfError::TooShort(3))
    );
    // Volume above 6 bits is masked when encoding.
    let loud = TelephoneEvent {
        event: 0,
        end: false,
        volume: 0xFF,
        duration: 1,
    };
    assert_eq!(loud.encode()[1], 0x3F);
}

#[test]
fn digit_event_mapping() {
    let digits = "0123456789*#ABCD";
    for (code, d) in digits.chars().enumerate() {
        assert_eq!(digit_to_event(d), Some(code as u8));
        assert_eq!(event_to_digit(code as u8), Some(d));
    }
    assert_eq!(digit_to_event('a'), Some(12));
    assert_eq!(digit_to_event('d'), Some(15));
    for bad in ['e', 'E', ' ', 'x', '+', 'é'] {
        assert_eq!(digit_to_event(bad), None);
    }
    assert_eq!(event_to_digit(16), None); // flash
    assert_eq!(event_to_digit(255), None);
}

/// Runs the sender for `ticks` frame ticks; returns (tick, packet) pairs.
fn run(sender: &mut DtmfSender, frame: u32, ticks: usize) -> Vec<(usize, DtmfPacket)> {
    (0..ticks)
        .filter_map(|t| sender.poll(frame).map(|p| (t, p)))
        .collect()
}

#[test]
fn one_digit_packet_sequence_at_8khz() {
    let mut s = DtmfSender::new(8000);
    s.start('5', Duration::from_millis(100)).unwrap();
    assert!(!s.is_idle());
    let out = run(&mut s, 160, 20);
    let shape: Vec<(usize, bool, bool, u16, u32, bool)> = out
        .iter()
        .map(|(t, p)| {
            (
                *t,
                p.marker,
                p.event.end,
                p.event.duration,
                p.timestamp_offset,
                p.end_of_event,
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            (0, true, false, 160, 0, false),
            (1, false, false, 320, 160, false),
            (2, false, false, 480, 320, false),
            (3, false, false, 640, 480, false),
            (4, false, true, 800, 640, false),
            (5, false, true, 800, 800, false),
            (6, false, true, 800, 960, true),
        ]
    );
    for (_, p) in &out {
        assert_eq!(p.event.event, 5);
        assert_eq!(p.event.volume, 10);
        assert_eq!(p.payload, Bytes::copy_from_slice(&p.event.encode()));
    }
    assert!(s.is_idle());
}

#[test]
fn queued_digits_are_separated_by_a_pause() {
    let mut s = DtmfSender::new(8000);
    s.set_pause(Duration::from_millis(60));
    s.start_all("12", Duration::from_millis(60)).unwrap();
    assert_eq!(s.queued(), 2);
    let out = run(&mut s, 160, 30);
    let ticks: Vec<(usize, u8, bool)> = out
        .iter()
        .map(|(t, p)| (*t, p.event.event, p.marker))
        .collect();
    // '1': ticks 0..=2 updates+end, 3..=4 end repeats; pause of 3 ticks (5, 6, 7);
    // '2' starts at tick 8 with the marker.
    assert_eq!(
        ticks,
        vec![
            (0, 1, true),
            (1, 1, false),
            (2, 1, false),
            (3, 1, false),
            (4, 1, false),
            (8, 2, true),
            (9, 2, false),
            (10, 2, false),
            (11, 2, false),
            (12, 2, false),
        ]
    );
    // Nothing queued is lost when an invalid digit is in the string.
    let mut s = DtmfSender::new(8000);
    assert_eq!(
        s.start_all("12x3", Duration::from_millis(60)),
        Err(DtmfError::InvalidDigit('x'))
    );
    assert!(s.is_idle());
    assert_eq!(
        s.start('?', Duration::from_millis(60)),
        Err(DtmfError::InvalidDigit('?'))
    );
    // The queue is bounded; a string that does not fit is refused whole.
    let many = "1".repeat(MAX_QUEUED - 1);
    s.start_all(&many, Duration::from_millis(60)).unwrap();
    assert_eq!(
        s.start_all("23", Duration::from_millis(60)),
        Err(DtmfError::QueueFull)
    );
    assert_eq!(s.queued(), MAX_QUEUED - 1);
    s.start('2', Duration::from_millis(60)).unwrap();
    assert_eq!(
        s.start('3', Duration::from_millis(60)),
        Err(DtmfError::QueueFull)
    );
}

#[test]
fn durations_are_clamped_and_partial_frames_end_exactly() {
    // 10 ms asked: sent as 40 ms at 48 kHz = 1920 units, in 960-unit ticks.
    let mut s = DtmfSender::new(48_000);
    s.start('#', Duration::from_millis(10)).unwrap();
    let out = run(&mut s, 960, 10);
    let d: Vec<(u16, bool)> = out
        .iter()
        .map(|(_, p)| (p.event.duration, p.event.end))
        .collect();
    assert_eq!(
        d,
        vec![(960, false), (1920, true), (1920, true), (1920, true)]
    );
    // 50 ms in 20 ms ticks at 8 kHz: 160, 320, then the end at 400.
    let mut s = DtmfSender::new(8000);
    s.start('0', Duration::from_millis(50)).unwrap();
    let d: Vec<u16> = run(&mut s, 160, 10)
        .iter()
        .map(|(_, p)| p.event.duration)
        .collect();
    assert_eq!(d, vec![160, 320, 400, 400, 400]);
}

#[test]
fn an_event_never_starts_with_an_end_packet() {
    // 40 ms at 48 kHz in 40 ms ticks: one tick covers the whole digit. The first packet is
    // still a plain start (marker, no E bit), then the three end packets follow.
    let mut s = DtmfSender::new(48_000);
    s.start('4', Duration::from_millis(40)).unwrap();
    let out = run(&mut s, 1920, 10);
    let d: Vec<(bool, bool, u16, u32, bool)> = out
        .iter()
        .map(|(_, p)| {
            (
                p.marker,
                p.event.end,
                p.event.duration,
                p.timestamp_offset,
                p.end_of_event,
            )
        })
        .collect();
    assert_eq!(
        d,
        vec![
            (true, false, 1920, 0, false),
            (false, true, 1920, 1920, false),
            (false, true, 1920, 3840, false),
            (false, true, 1920, 5760, true),
        ]
    );
}

#[test]
fn long_events_are_split_into_segments() {
    // 3 s at 48 kHz = 144000 units: segments of 65535, 65535 and 12930.
    let mut s = DtmfSender::new(48_000);
    s.start('9', Duration::from_secs(3)).unwrap();
    let out = run(&mut s, 960, 400);
    let frame = 960u32;
    // Absolute event-relative timestamp of each packet = tick * frame - offset.
    let starts: Vec<u32> = out
        .iter()
        .map(|(t, p)| *t as u32 * frame - p.timestamp_offset)
        .collect();
    let mut segs = starts.clone();
    segs.dedup();
    assert_eq!(segs, vec![0, 65_535, 131_070]);
    // Only the very first packet has the marker; only the last segment ends.
    assert_eq!(out.iter().filter(|(_, p)| p.marker).count(), 1);
    assert!(out[0].1.marker);
    for ((_, p), start) in out.iter().zip(&starts) {
        if *start < 131_070 {
            assert!(!p.event.end);
        }
        assert!(p.event.duration > 0);
    }
    // Each full segment reports 0xFFFF in its last packet.
    let full: Vec<_> = out
        .iter()
        .filter(|(_, p)| p.event.duration == 0xFFFF)
        .collect();
    assert_eq!(full.len(), 2);
    let ends: Vec<_> = out.iter().filter(|(_, p)| p.event.end).collect();
    assert_eq!(ends.len(), 3);
    assert!(ends.iter().all(|(_, p)| p.event.duration == 12_930));
    // The receiver reports the digit once across the segments.
    let mut r = DtmfReceiver::new();
    let digits: Vec<char> = out
        .iter()
        .zip(&starts)
        .filter_map(|((_, p), start)| r.on_packet(1000 + start, &p.event))
        .collect();
    assert_eq!(digits, vec!['9']);
}

#[test]
fn clear_ends_the_current_event_properly() {
    let mut s = DtmfSender::new(8000);
    s.start_all("123", Duration::from_millis(200)).unwrap();
    let _ = run(&mut s, 160, 3);
    assert!(s.is_active());
    s.clear();
    assert_eq!(s.queued(), 0);
    let out = run(&mut s, 160, 20);
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(|(_, p)| p.event.end && p.event.event == 1));
    assert!(out[2].1.end_of_event);
    assert!(s.is_idle());
}

/// Sends digits through an RtpStream as the session does and returns the wire packets.
fn session_like(digits: &str, clock: u32, frame: u32, ticks: usize) -> Vec<RtpPacket> {
    let mut stream = RtpStream::with_initial(0x5EED, 0, clock, 0xFFF0, 0xFFFF_F000);
    let mut sender = DtmfSender::new(clock);
    sender.start_all(digits, Duration::from_millis(80)).unwrap();
    let mut wire = Vec::new();
    for _ in 0..ticks {
        match sender.poll(frame) {
            Some(p) => {
                let ts = stream.timestamp().wrapping_sub(p.timestamp_offset);
                wire.push(stream.packet_with(101, p.payload, ts, p.marker));
                stream.advance(frame);
            }
            None => wire.push(stream.next_packet(Bytes::from_static(&[0xFF; 160]), frame, false)),
        }
    }
    wire
}

#[test]
fn sender_to_receiver_reports_each_digit_once() {
    let wire = session_like("1123#", 8000, 160, 80);
    // Every packet of one event shares a timestamp; the audio timestamps continue around them.
    let events: Vec<&RtpPacket> = wire
        .iter()
        .filter(|p| p.header.payload_type == 101)
        .collect();
    let mut by_ts: Vec<u32> = events.iter().map(|p| p.header.timestamp).collect();
    by_ts.dedup();
    assert_eq!(by_ts.len(), 5);
    assert_eq!(events.iter().filter(|p| p.header.marker).count(), 5);
    let mut r = DtmfReceiver::new();
    let got: String = wire
        .iter()
        .filter(|p| p.header.payload_type == 101)
        .filter_map(|p| r.on_rtp(&RtpPacket::parse(&p.to_bytes()).unwrap()))
        .collect();
    assert_eq!(got, "1123#");
}

#[test]
fn receiver_survives_loss_reordering_and_duplicates() {
    let wire = session_like("55", 8000, 160, 40);
    let mut events: Vec<RtpPacket> = wire
        .into_iter()
        .filter(|p| p.header.payload_type == 101)
        .collect();
    // Lose the first two packets of the first '5' (marker included), duplicate everything and
    // swap neighbours.
    events.drain(0..2);
    let mut mangled = Vec::new();
    for pair in events.chunks(2) {
        for p in pair.iter().rev() {
            mangled.push(p.clone());
            mangled.push(p.clone());
        }
    }
    let mut r = DtmfReceiver::new();
    let got: String = mangled.iter().filter_map(|p| r.on_rtp(p)).collect();
    assert_eq!(got, "55");
    // Only end packets of an event: still reported once.
    let mut r = DtmfReceiver::new();
    let end = TelephoneEvent {
        event: 7,
        end: true,
        volume: 10,
        duration: 800,
    };
    assert_eq!(r.on_packet(4000, &end), Some('7'));
    assert_eq!(r.on_packet(4000, &end), None);
    assert_eq!(r.on_packet(4000, &end), None);
    // Non-DTMF events (flash) are tracked but not reported.
    let flash = TelephoneEvent { event: 16, ..end };
    assert_eq!(r.on_packet(9000, &flash), None);
    // Garbage payloads are ignored.
    let junk = RtpPacket {
        header: Default::default(),
        payload: Bytes::from_static(&[1, 2]),
    };
    assert_eq!(r.on_rtp(&junk), None);
}

#[test]
fn sip_info_bodies() {
    assert_eq!(
        parse_dtmf_info("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n"),
        Some(('5', Some(160)))
    );
    assert_eq!(
        parse_dtmf_info(
            "Application/DTMF-Relay; charset=utf-8",
            b"signal= #\nduration = 250"
        ),
        Some(('#', Some(250)))
    );
    assert_eq!(
        parse_dtmf_info("application/dtmf-relay", b"Signal=*\r\n"),
        Some(('*', None))
    );
    assert_eq!(
        parse_dtmf_info("application/dtmf-relay", b"Signal=11\r\nDuration=x"),
        Some(('#', None))
    );
    assert_eq!(
        parse_dtmf_info("application/dtmf-relay", b"Signal=a\r\n"),
        Some(('A', None))
    );
    assert_eq!(parse_dtmf_info("application/dtmf", b"7"), Some(('7', None)));
    assert_eq!(
        parse_dtmf_info("application/dtmf", b" 10\r\n"),
        Some(('*', None))
    );
    for (ct, body) in [
        ("application/dtmf-relay", &b"Duration=160"[..]),
        ("application/dtmf-relay", b"Signal=Z"),
        ("application/dtmf-relay", b"Signal=99"),
        ("application/dtmf-relay", b"Signal=12345678901234567890"),
        ("application/dtmf-relay", b"\xFF\xFE"),
        ("application/dtmf", b""),
        ("application/dtmf", b"55"),
        ("text/plain", b"Signal=5"),
        ("", b"5"),
    ] {
        assert_eq!(parse_dtmf_info(ct, body), None, "{ct} {body:?}");
    }
    assert_eq!(
        format_dtmf_relay('5', 160).as_deref(),
        Some("Signal=5\r\nDuration=160\r\n")
    );
    assert_eq!(
        format_dtmf_relay('b', 100).as_deref(),
        Some("Signal=B\r\nDuration=100\r\n")
    );
    assert_eq!(format_dtmf_relay('x', 100), None);
    for d in "0123456789*#ABCD".chars() {
        let body = format_dtmf_relay(d, 120).unwrap();
        assert_eq!(
            parse_dtmf_info("application/dtmf-relay", body.as_bytes()),
            Some((d, Some(120)))
        );
    }
}

proptest! {
    #[test]
    fn arbitrary_payloads_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..16),
        ts in any::<u32>(),
    ) {
        if let Ok(ev) = TelephoneEvent::parse(&data) {
            prop_assert_eq!(&ev.encode()[..], &{
                let mut b = [0u8; 4];
                b.copy_from_slice(&data[..4]);
                b[1] &= 0xBF; // the reserved bit is not kept
                b
            }[..]);
            let mut r = DtmfReceiver::new();
            let first = r.on_packet(ts, &ev);
            prop_assert_eq!(first, event_to_digit(ev.event));
            prop_assert_eq!(r.on_packet(ts, &ev), None);
        }
    }

    #[test]
    fn arbitrary_info_bodies_never_panic(
        ct in "(application/dtmf-relay|application/dtmf|[ -~]{0,30})",
        body in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        if let Some((d, _)) = parse_dtmf_info(&ct, &body) {
            prop_assert!(digit_to_event(d).is_some());
        }
    }

    #[test]
    fn every_digit_sequence_arrives_exactly_once(
        digits in "[0-9*#A-D]{1,8}",
        ms in 40u64..400,
        frame in prop_oneof![Just(160u32), Just(320), Just(960), Just(1920)],
        clock in prop_oneof![Just(8000u32), Just(48_000)],
    ) {
        let mut sender = DtmfSender::new(clock);
        sender.start_all(&digits, Duration::from_millis(ms)).unwrap();
        let mut receiver = DtmfReceiver::new();
        let mut got = String::new();
        let mut audio_ts = 77u32;
        let mut ticks = 0;
        while !sender.is_idle() && ticks < 10_000 {
            if let Some(p) = sender.poll(frame) {
                prop_assert!(p.event.duration > 0);
                if let Some(d) = receiver.on_packet(audio_ts.wrapping_sub(p.timestamp_offset), &p.event) {
                    got.push(d);
                }
            }
            audio_ts = audio_ts.wrapping_add(frame);
            ticks += 1;
        }
        prop_assert!(sender.is_idle());
        prop_assert_eq!(got, digits);
    }
}
