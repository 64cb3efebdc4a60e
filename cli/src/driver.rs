//! Following one call to its end: printing its events, running the scripted actions of the [`CallPlan`] and the
//! stdin control commands, and printing the final `quality` line.

use std::time::Duration;

use tandem_client_core::types::CallQuality;
use tandem_client_core::{
    Account, Call, CallEvent, EndReason, EndedBy, UaError, VideoNotice, VideoStats,
};
use tandem_proto::sdp::SecurityKind;
use tokio::sync::{broadcast, watch};
use tokio::time::{Instant, sleep_until, timeout};

use crate::control::Control;
use crate::output::{Event, emit_failure};
use crate::plan::CallPlan;

/// How long a hold, resume, DTMF or transfer request may take before we report it as failed.
const ACTION_TIMEOUT: Duration = Duration::from_secs(32);

/// How a driven call finished.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// It was set up and then ended.
    Ended {
        /// Who ended it.
        by: EndedBy,
        /// How.
        reason: EndReason,
    },
    /// It could not be set up.
    Failed(UaError),
    /// The call's task went away without a final event.
    Lost,
}

/// The timers of a call's scripted actions, armed at the answer.
#[derive(Debug, Default)]
struct Timers {
    hangup: Option<Instant>,
    dtmf: Option<Instant>,
    hold: Option<Instant>,
    resume: Option<Instant>,
    transfer: Option<Instant>,
}

impl Timers {
    fn arm(plan: &CallPlan, hold_for: Option<Duration>) -> Timers {
        let now = Instant::now();
        Timers {
            hangup: hold_for.map(|d| now + d),
            dtmf: plan.dtmf.as_ref().map(|(_, after)| now + *after),
            hold: plan.hold_after.map(|d| now + d),
            resume: plan.resume_after.map(|d| now + d),
            transfer: plan.transfer.as_ref().map(|(_, after)| now + *after),
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn next_control(rx: &mut Option<broadcast::Receiver<Control>>) -> Option<Control> {
    let Some(r) = rx.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        match r.recv().await {
            Ok(c) => return Some(c),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                eprintln!("tandem-cli: {n} control commands were dropped (too many queued)");
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

/// Resolves once `stop` turns true (never when its sender is gone without doing so).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Why a `quality` line is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// The media session's periodic report.
    Periodic,
    /// Asked for on stdin.
    Query,
    /// The call's final figures.
    Final,
}

impl Report {
    fn as_str(self) -> &'static str {
        match self {
            Report::Periodic => "periodic",
            Report::Query => "query",
            Report::Final => "final",
        }
    }
}

/// Prints `quality codec=… loss=… jitter_ms=… rtt_ms=… mos=… … report=periodic|query|final`.
pub fn emit_quality(q: &CallQuality, report: Report) {
    quality_event(q, report).emit();
}

/// The `quality` line for `q`.
pub fn quality_event(q: &CallQuality, report: Report) -> Event {
    let rtt = q
        .rtt_ms
        .map_or_else(|| "-".to_string(), |r| format!("{r:.1}"));
    let remote_loss = q
        .remote_loss_percent
        .map_or_else(|| "-".to_string(), |r| format!("{r:.2}"));
    Event::new("quality")
        .kv("codec", &q.codec)
        .kv("loss", format!("{:.2}", q.loss_percent))
        .kv("jitter_ms", format!("{:.1}", q.jitter_ms))
        .kv("rtt_ms", rtt)
        .kv("mos", format!("{:.2}", q.mos))
        .kv("sent", q.packets_sent)
        .kv("received", q.packets_received)
        .kv("lost", q.packets_lost)
        .kv("remote_loss", remote_loss)
        .kv("srtp", if q.srtp { "yes" } else { "no" })
        .kv("srtp_auth_failures", q.srtp_auth_failures)
        .kv("report", report.as_str())
}

/// The `video stats …` line printed at hang-up: frames we sent, frames from the peer
/// (received, decoded, keyframes among them), feedback both ways, retransmissions, decoder
/// errors and RTP packets lost.
pub fn video_stats_event(s: &VideoStats) -> Event {
    Event::new("video stats")
        .kv("sent", s.frames_sent)
        .kv("received", s.frames_received)
        .kv("decoded", s.frames_decoded)
        .kv("keyframes", s.keyframes_received)
        .kv("nacks_sent", s.nacks_sent)
        .kv("nacks_received", s.nacks_received)
        .kv("plis_sent", s.plis_sent)
        .kv("plis_received", s.plis_received)
        .kv("retransmitted", s.retransmissions)
        .kv("decode_errors", s.decode_errors)
        .kv("lost", s.packets_lost)
}

/// The line for a video notice (`None`: not printed, e.g. periodic counters).
pub fn video_event(n: &VideoNotice) -> Option<Event> {
    Some(match n {
        VideoNotice::Started {
            codec,
            payload_type,
            send,
            recv,
            ..
        } => Event::new("video started")
            .kv("codec", codec)
            .kv("pt", payload_type)
            .kv(
                "send",
                match send {
                    Some((w, h, fps)) => format!("{w}x{h}@{fps}"),
                    None => "no".into(),
                },
            )
            .kv("recv", if *recv { "yes" } else { "no" }),
        VideoNotice::FirstFrame { width, height } => {
            Event::new(&format!("video first-frame {width}x{height}"))
        }
        VideoNotice::SizeChanged { width, height } => {
            Event::new(&format!("video size {width}x{height}"))
        }
        VideoNotice::Stopped(_) => Event::new("video stopped"),
        VideoNotice::Rejected(reason) => Event::new("video rejected").kv("reason", reason),
        VideoNotice::RtpTimeout => Event::new("video rtp-timeout"),
        VideoNotice::Warning(reason) => Event::new("video warning").kv("reason", reason),
        VideoNotice::PeerOffered { receiving, ask } => Event::new("video offered by peer")
            .kv("receiving", if *receiving { "yes" } else { "no" })
            .kv("ask", if *ask { "yes" } else { "no" }),
        _ => return None,
    })
}

/// Prints `media codec=… secure=no|sdes|dtls local=IP:PORT remote=IP:PORT` (and `early=yes` for early media).
fn emit_media(call: &Call, codec: &str, secure: bool, early: bool) {
    let info = call.media();
    let negotiated = info.negotiated.as_ref();
    let security = match negotiated.map(|n| n.security) {
        Some(SecurityKind::Dtls) => "dtls",
        Some(SecurityKind::Sdes) => "sdes",
        _ if secure => "yes",
        _ => "no",
    };
    let mut ev = Event::new("media")
        .kv("codec", codec)
        .kv("secure", security);
    if let Some(n) = negotiated {
        ev = ev
            .kv("pt", n.send_codec.payload_type)
            .kv("rate", n.send_codec.clock_rate);
    }
    ev = ev.kv("local", info.local_rtp);
    if let Some(remote) = negotiated.and_then(|n| n.remote_rtp) {
        ev = ev.kv("remote", remote);
    }
    if early {
        ev = ev.kv("early", "yes");
    }
    ev.emit();
}

fn emit_action_error(command: &str, err: &UaError) {
    eprintln!("tandem-cli: {command} failed: {err}");
    Event::new("error")
        .kv("command", command)
        .kv("reason", err)
        .emit();
}

/// Runs a call action with a time limit, reporting a failure as an `error command=…` line.
async fn act(
    command: &str,
    fut: impl std::future::Future<Output = tandem_client_core::Result<()>>,
) {
    match timeout(ACTION_TIMEOUT, fut).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => emit_action_error(command, &e),
        Err(_) => emit_action_error(command, &UaError::Timeout),
    }
}

/// What [`drive`] needs besides the call.
pub struct DriveContext<'a> {
    /// The account (to resolve transfer targets typed on stdin).
    pub account: &'a Account,
    /// The scripted actions.
    pub plan: &'a CallPlan,
    /// Hang up this long after the answer (`None`: wait for the peer or a `hangup`).
    pub hold_for: Option<Duration>,
    /// Commands from stdin.
    pub controls: Option<broadcast::Receiver<Control>>,
    /// Becomes true when the run must stop (signal, or the end of `answer`): we hang up.
    pub stop: watch::Receiver<bool>,
}

/// Follows `call` to its end, printing its events; returns how it ended.
pub async fn drive(mut call: Call, mut ctx: DriveContext<'_>) -> Outcome {
    let mut timers = Timers::default();
    let mut hung_up = false;
    let mut media_started = false;
    loop {
        tokio::select! {
            ev = call.next_event() => {
                let Some(ev) = ev else { return Outcome::Lost };
                match ev {
                    CallEvent::Trying => Event::new("trying").emit(),
                    CallEvent::Ringing { status, .. } => {
                        Event::new("ringing").kv("status", status).emit();
                    }
                    CallEvent::MediaStarted { codec, secure, early } => {
                        media_started = true;
                        emit_media(&call, &codec, secure, early);
                    }
                    CallEvent::Answered { status } => {
                        Event::new("answered").kv("status", status).emit();
                        timers = Timers::arm(ctx.plan, ctx.hold_for);
                    }
                    CallEvent::Dtmf(digit) => Event::new("dtmf").kv("digit", digit).emit(),
                    CallEvent::Held => Event::new("held").kv("by", "local").emit(),
                    CallEvent::Resumed => Event::new("resumed").kv("by", "local").emit(),
                    CallEvent::RemoteHold => Event::new("held").kv("by", "remote").emit(),
                    CallEvent::RemoteResumed => Event::new("resumed").kv("by", "remote").emit(),
                    CallEvent::ReferRequested { target, referred_by } => {
                        let mut ev = Event::new("refer").kv("to", target);
                        if let Some(by) = referred_by {
                            ev = ev.kv("by", by);
                        }
                        ev.emit();
                    }
                    CallEvent::TransferProgress { status, reason } => {
                        Event::new("transfer")
                            .kv("status", status)
                            .kv("reason", reason)
                            .emit();
                    }
                    CallEvent::Transferred { target, status } => {
                        Event::new("transferred")
                            .kv("to", target)
                            .kv("status", status)
                            .emit();
                    }
                    CallEvent::TransferFailed { status, reason } => {
                        Event::new("transfer-failed")
                            .kv("status", status)
                            .kv("reason", reason)
                            .emit();
                    }
                    CallEvent::Quality(q) => emit_quality(&q, Report::Periodic),
                    CallEvent::RtpTimeout => Event::new("rtp-timeout").emit(),
                    CallEvent::CaptureEnded => Event::new("capture-ended").emit(),
                    CallEvent::MediaWarning(m) => {
                        eprintln!("tandem-cli: media: {m}");
                        Event::new("warning").kv("reason", m).emit();
                    }
                    CallEvent::IcePath(p) => Event::new("ice selected")
                        .kv("path", p.path)
                        .kv("local_type", p.local_type)
                        .kv("remote_type", p.remote_type)
                        .kv("local", p.local)
                        .kv("remote", p.remote)
                        .emit(),
                    CallEvent::IceFailed(r) => Event::new("ice failed").kv("reason", r).emit(),
                    CallEvent::IceRestart(r) => Event::new("ice restart").kv("reason", r).emit(),
                    CallEvent::IceOff(r) => Event::new("ice off").kv("reason", r).emit(),
                    CallEvent::Video(n) => {
                        if let VideoNotice::Warning(m) = &n {
                            eprintln!("tandem-cli: video: {m}");
                        }
                        if let Some(ev) = video_event(&n) {
                            ev.emit();
                        }
                        // --accept-video: the user's "yes" to the peer's video, unless declined by policy.
                        if let (VideoNotice::PeerOffered { receiving, ask }, Some(source)) =
                            (&n, &ctx.plan.accept_video)
                            && (*receiving || *ask)
                        {
                            act("camera", call.set_camera(Some(source.clone()))).await;
                        }
                    }
                    CallEvent::Ended { by, reason } => {
                        if media_started {
                            emit_quality(&call.quality(), Report::Final);
                        }
                        if let Some(v) = call.video_stats() {
                            video_stats_event(&v).emit();
                        }
                        Event::new("ended").kv("by", by).kv("reason", reason).emit();
                        return Outcome::Ended { by, reason };
                    }
                    CallEvent::Failed(e) => {
                        eprintln!("tandem-cli: call failed: {e}");
                        emit_failure(&e);
                        return Outcome::Failed(e);
                    }
                    other => tracing::debug!(event = ?other, "unhandled call event"),
                }
            }
            _ = sleep_until_opt(timers.hangup), if !hung_up => {
                timers.hangup = None;
                hung_up = true;
                call.hangup();
            }
            _ = sleep_until_opt(timers.dtmf) => {
                timers.dtmf = None;
                if let Some((digits, _)) = &ctx.plan.dtmf {
                    act("dtmf", call.send_dtmf(digits)).await;
                }
            }
            _ = sleep_until_opt(timers.hold) => {
                timers.hold = None;
                act("hold", call.hold()).await;
            }
            _ = sleep_until_opt(timers.resume) => {
                timers.resume = None;
                act("resume", call.resume()).await;
            }
            _ = sleep_until_opt(timers.transfer) => {
                timers.transfer = None;
                if let Some((target, _)) = &ctx.plan.transfer {
                    act("transfer", call.transfer_blind(target.clone())).await;
                }
            }
            cmd = next_control(&mut ctx.controls) => match cmd {
                Some(cmd) => apply(&call, ctx.account, cmd, &mut hung_up).await,
                None => ctx.controls = None,
            },
            () = stopped(&mut ctx.stop), if !hung_up => {
                hung_up = true;
                call.hangup();
            }
        }
    }
}

/// Applies one stdin command to the call.
async fn apply(call: &Call, account: &Account, cmd: Control, hung_up: &mut bool) {
    match cmd {
        Control::Hold => act("hold", call.hold()).await,
        Control::Resume => act("resume", call.resume()).await,
        Control::Mute => {
            call.set_mute(true);
            Event::new("muted").emit();
        }
        Control::Unmute => {
            call.set_mute(false);
            Event::new("unmuted").emit();
        }
        Control::Dtmf(digits) => act("dtmf", call.send_dtmf(&digits)).await,
        Control::Transfer(target) => match account.target_uri(&target) {
            Ok(uri) => act("transfer", call.transfer_blind(uri)).await,
            Err(e) => emit_action_error("transfer", &e),
        },
        Control::Quality => emit_quality(&call.quality(), Report::Query),
        Control::Video(on) => act("video", call.set_video(on)).await,
        Control::Camera(source) => {
            let source = (!source.is_none()).then_some(source);
            act("camera", call.set_camera(source)).await;
        }
        Control::Hangup => {
            if !*hung_up {
                *hung_up = true;
                call.hangup();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_lines() {
        let started = VideoNotice::Started {
            codec: "VP8".into(),
            payload_type: 96,
            send: Some((320, 240, 15)),
            recv: true,
            secure: false,
        };
        assert_eq!(
            video_event(&started).unwrap().as_str(),
            "video started codec=VP8 pt=96 send=320x240@15 recv=yes"
        );
        let recv_only = VideoNotice::Started {
            codec: "H264".into(),
            payload_type: 97,
            send: None,
            recv: true,
            secure: true,
        };
        assert_eq!(
            video_event(&recv_only).unwrap().as_str(),
            "video started codec=H264 pt=97 send=no recv=yes"
        );
        assert_eq!(
            video_event(&VideoNotice::FirstFrame {
                width: 320,
                height: 240
            })
            .unwrap()
            .as_str(),
            "video first-frame 320x240"
        );
        assert_eq!(
            video_event(&VideoNotice::PeerOffered {
                receiving: true,
                ask: false
            })
            .unwrap()
            .as_str(),
            "video offered by peer receiving=yes ask=no"
        );
        assert!(video_event(&VideoNotice::Stats(VideoStats::default())).is_none());
        let s = VideoStats {
            frames_sent: 90,
            frames_received: 88,
            frames_decoded: 87,
            keyframes_received: 2,
            nacks_sent: 3,
            nacks_received: 4,
            plis_sent: 1,
            plis_received: 2,
            retransmissions: 5,
            decode_errors: 0,
            packets_lost: 6,
            ..VideoStats::default()
        };
        assert_eq!(
            video_stats_event(&s).as_str(),
            "video stats sent=90 received=88 decoded=87 keyframes=2 nacks_sent=3 nacks_received=4 \
             plis_sent=1 plis_received=2 retransmitted=5 decode_errors=0 lost=6"
        );
    }

    #[test]
    fn quality_line() {
        let q = CallQuality {
            codec: "opus".into(),
            packets_sent: 150,
            packets_received: 148,
            packets_lost: 2,
            loss_percent: 1.333,
            jitter_ms: 2.25,
            rtt_ms: Some(0.42),
            mos: 4.3,
            srtp: true,
            srtp_auth_failures: 25,
            remote_loss_percent: None,
        };
        assert_eq!(
            quality_event(&q, Report::Final).as_str(),
            "quality codec=opus loss=1.33 jitter_ms=2.2 rtt_ms=0.4 mos=4.30 sent=150 received=148 lost=2 \
             remote_loss=- srtp=yes srtp_auth_failures=25 report=final"
        );
        let q = CallQuality {
            rtt_ms: None,
            remote_loss_percent: Some(0.5),
            ..q
        };
        let line = quality_event(&q, Report::Query);
        assert!(line.as_str().contains(" rtt_ms=- "), "{}", line.as_str());
        assert!(
            line.as_str().contains(" remote_loss=0.50 "),
            "{}",
            line.as_str()
        );
        assert!(
            line.as_str().ends_with(" report=query"),
            "{}",
            line.as_str()
        );
    }
}
