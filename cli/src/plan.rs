//! What to do in a call besides talking: the media devices, and the scripted actions (DTMF, hold/resume, transfer)
//! of `call` and `answer`, checked once from the command line.

use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tandem_client_core::types::Uri;
use tandem_client_core::{Account, MediaOptions, VideoOptions, VideoSourceSpec};
use tandem_media::device::DeviceSpec;

use crate::args::MediaArgs;

/// The media devices and scripted actions of every call of one run.
#[derive(Debug, Clone)]
pub struct CallPlan {
    /// Devices and looping for the media session.
    pub media: MediaOptions,
    /// Digits to send, and how long after the answer.
    pub dtmf: Option<(String, Duration)>,
    /// Hold this long after the answer.
    pub hold_after: Option<Duration>,
    /// Resume this long after the answer.
    pub resume_after: Option<Duration>,
    /// Blind-transfer to this target, this long after the answer.
    pub transfer: Option<(Uri, Duration)>,
    /// `--accept-video`: when the peer adds video, turn our camera on sending this.
    pub accept_video: Option<VideoSourceSpec>,
}

impl CallPlan {
    /// A plan with no media options beyond the defaults and no scripted action.
    pub fn plain() -> Self {
        CallPlan {
            media: MediaOptions::default(),
            dtmf: None,
            hold_after: None,
            resume_after: None,
            transfer: None,
            accept_video: None,
        }
    }

    /// The same devices without the scripted actions (for the follow-up call of a transfer or a replacement).
    pub fn devices_only(&self) -> Self {
        CallPlan {
            media: self.media.clone(),
            accept_video: self.accept_video.clone(),
            ..CallPlan::plain()
        }
    }
}

/// Parses a `--device` value.
pub fn parse_device(text: &str) -> Result<DeviceSpec> {
    DeviceSpec::from_str(text).with_context(|| format!("--device {text}"))
}

/// Builds the plan from the media flags; also applies `--codec` to the account.
pub fn build(args: &MediaArgs, account: &mut Account) -> Result<CallPlan> {
    let device = args.device.as_deref().map(parse_device).transpose()?;
    let capture = match (&args.play, &device) {
        (Some(path), _) => {
            if !path.is_file() {
                bail!("--play {}: no such file", path.display());
            }
            DeviceSpec::File(path.clone())
        }
        (None, Some(d)) => d.clone(),
        (None, None) => DeviceSpec::Null,
    };
    let playback = match (&args.record, &device) {
        (Some(path), _) => DeviceSpec::File(path.clone()),
        (None, Some(d)) => d.clone(),
        (None, None) => DeviceSpec::Null,
    };
    let media = MediaOptions {
        capture,
        playback,
        loop_capture: !args.play_once,
        video: video_options(args)?,
        ..MediaOptions::default()
    };
    if !args.codec.is_empty() {
        account.codecs = args.codec.clone();
    }
    if let (Some(hold), Some(resume)) = (args.hold_after, args.resume_after)
        && resume <= hold
    {
        bail!("--resume-after must be later than --hold-after");
    }
    let transfer = match &args.transfer_to {
        Some(target) => Some((
            account
                .target_uri(target)
                .with_context(|| format!("--transfer-to {target}"))?,
            args.transfer_after,
        )),
        None => None,
    };
    Ok(CallPlan {
        media,
        dtmf: args.dtmf.clone().map(|d| (d, args.dtmf_delay)),
        hold_after: args.hold_after,
        resume_after: args.resume_after,
        transfer,
        accept_video: args
            .accept_video
            .as_deref()
            .map(|v| source_spec("--accept-video", v, args))
            .transpose()?,
    })
}

/// The video options of `--video`, `--video-size`, `--video-fps`, `--video-codec`,
/// `--record-video`, `--video-policy` and `--accept-video` (`None` without any of them: an
/// audio-only call whose peer's video is declined, as nothing shows it). With only
/// `--video-policy`/`--accept-video` (no `--video`) the call starts audio-only and the options
/// apply when the peer adds video.
pub fn video_options(args: &MediaArgs) -> Result<Option<VideoOptions>> {
    let later =
        args.video.is_none() && (args.video_policy.is_some() || args.accept_video.is_some());
    if args.video.is_none() && args.record_video.is_none() && !later {
        if !args.video_codec.is_empty() {
            bail!("--video-codec needs --video or --record-video");
        }
        return Ok(None);
    }
    let source = match (args.video.as_deref(), args.accept_video.as_deref()) {
        (Some(v), _) => source_spec("--video", v, args)?,
        (None, Some(v)) if later => source_spec("--accept-video", v, args)?,
        (None, _) => VideoSourceSpec::None,
    };
    let mut video = VideoOptions {
        offer: !later,
        policy: args.video_policy.unwrap_or_default(),
        source,
        record: args.record_video.clone(),
        ..VideoOptions::default()
    };
    if !args.video_codec.is_empty() {
        video.codecs = args.video_codec.clone();
    }
    Ok(Some(video))
}

/// Parses the video source `value` of `flag` (`pattern` at `--video-size`/`--video-fps`,
/// a `.y4m` file, `none`, …).
fn source_spec(flag: &str, value: &str, args: &MediaArgs) -> Result<VideoSourceSpec> {
    let v = value.trim();
    if v.eq_ignore_ascii_case("pattern") {
        let (width, height) = args.video_size;
        return Ok(VideoSourceSpec::Pattern {
            width,
            height,
            fps: args.video_fps,
        });
    }
    let mut spec: VideoSourceSpec = v
        .parse()
        .map_err(|e: String| anyhow::anyhow!("{flag} {v}: {e}"))?;
    // A camera is captured at --video-size and --video-fps.
    if let VideoSourceSpec::Camera {
        width, height, fps, ..
    } = &mut spec
    {
        (*width, *height) = args.video_size;
        *fps = args.video_fps;
    }
    if let VideoSourceSpec::File(path) = &spec
        && !path.is_file()
    {
        bail!("{flag} {}: no such file", path.display());
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> MediaArgs {
        MediaArgs {
            dtmf_delay: Duration::from_secs(1),
            transfer_after: Duration::from_secs(1),
            video_size: (320, 240),
            video_fps: 15,
            ..MediaArgs::default()
        }
    }

    #[test]
    fn video_plans() {
        let mut account = Account::new("a", "127.0.0.1");
        assert!(build(&args(), &mut account).unwrap().media.video.is_none());
        // A camera takes --video-size and --video-fps.
        let mut a = args();
        a.video = Some("camera:USB".into());
        a.video_size = (352, 288);
        let v = build(&a, &mut account).unwrap().media.video.unwrap();
        assert_eq!(
            v.source,
            VideoSourceSpec::Camera {
                id: Some("USB".into()),
                width: 352,
                height: 288,
                fps: 15
            }
        );
        let mut a = args();
        a.video = Some("pattern".into());
        a.video_size = (640, 480);
        a.video_fps = 30;
        a.video_codec = vec!["H264".into()];
        let v = build(&a, &mut account).unwrap().media.video.unwrap();
        assert_eq!(
            v.source,
            VideoSourceSpec::Pattern {
                width: 640,
                height: 480,
                fps: 30
            }
        );
        assert_eq!(v.codecs, vec!["H264".to_string()]);
        assert!(v.record.is_none());
        // Recording alone receives only.
        let mut a = args();
        a.record_video = Some("out.y4m".into());
        let v = build(&a, &mut account).unwrap().media.video.unwrap();
        assert_eq!(v.source, VideoSourceSpec::None);
        assert_eq!(v.record.as_deref(), Some(std::path::Path::new("out.y4m")));
        assert_eq!(v.codecs, vec!["VP8".to_string(), "H264".to_string()]);
        // A file source must exist.
        let mut a = args();
        a.video = Some("/nonexistent/clip.y4m".into());
        assert!(build(&a, &mut account).is_err());
        let mut a = args();
        a.video_codec = vec!["VP8".into()];
        assert!(build(&a, &mut account).is_err());
    }

    #[test]
    fn peer_video_plans() {
        use tandem_client_core::VideoPolicy;
        let mut account = Account::new("a", "127.0.0.1");
        // A policy alone: audio first, the peer's video recorded, nothing sent until asked.
        let mut a = args();
        a.video_policy = Some(VideoPolicy::Receive);
        a.record_video = Some("in.y4m".into());
        let plan = build(&a, &mut account).unwrap();
        let v = plan.media.video.unwrap();
        assert!(!v.offer);
        assert_eq!(v.policy, VideoPolicy::Receive);
        assert!(plan.accept_video.is_none());
        // --accept-video: audio first, our pattern sent once the peer adds video.
        let mut a = args();
        a.accept_video = Some("pattern".into());
        let plan = build(&a, &mut account).unwrap();
        let v = plan.media.video.unwrap();
        assert!(!v.offer);
        assert_eq!(v.policy, VideoPolicy::Ask);
        let pattern = VideoSourceSpec::Pattern {
            width: 320,
            height: 240,
            fps: 15,
        };
        assert_eq!(v.source, pattern);
        assert_eq!(plan.accept_video, Some(pattern));
        // With --video the call offers video from the start; the policy still applies later.
        let mut a = args();
        a.video = Some("pattern".into());
        a.video_policy = Some(VideoPolicy::Never);
        let v = build(&a, &mut account).unwrap().media.video.unwrap();
        assert!(v.offer);
        assert_eq!(v.policy, VideoPolicy::Never);
        let mut a = args();
        a.accept_video = Some("/nonexistent/clip.y4m".into());
        assert!(build(&a, &mut account).is_err());
    }

    #[test]
    fn defaults_are_null_devices() {
        let mut account = Account::new("a", "127.0.0.1");
        let plan = build(&args(), &mut account).unwrap();
        assert_eq!(plan.media.capture, DeviceSpec::Null);
        assert_eq!(plan.media.playback, DeviceSpec::Null);
        assert!(plan.media.loop_capture);
        assert!(plan.dtmf.is_none() && plan.transfer.is_none());
    }

    #[test]
    fn play_record_device_codec_transfer() {
        let dir = tempfile::tempdir().unwrap();
        let wav = dir.path().join("in.wav");
        std::fs::write(&wav, b"x").unwrap();
        let mut a = args();
        a.play = Some(wav.clone());
        a.play_once = true;
        a.device = Some("null".into());
        a.codec = vec!["pcmu".into()];
        a.transfer_to = Some("carol".into());
        a.dtmf = Some("12#".into());
        let mut account = Account::new("a", "tandem.lab");
        let plan = build(&a, &mut account).unwrap();
        assert_eq!(plan.media.capture, DeviceSpec::File(wav));
        assert_eq!(plan.media.playback, DeviceSpec::Null);
        assert!(!plan.media.loop_capture);
        assert_eq!(account.codecs, vec!["pcmu".to_string()]);
        let (target, after) = plan.transfer.unwrap();
        assert_eq!(target.to_string(), "sip:carol@tandem.lab");
        assert_eq!(after, Duration::from_secs(1));
        assert_eq!(plan.dtmf.unwrap().0, "12#");
    }

    #[test]
    fn bad_plans() {
        let mut account = Account::new("a", "127.0.0.1");
        let mut a = args();
        a.play = Some("/nonexistent/tone.wav".into());
        assert!(build(&a, &mut account).is_err());
        let mut a = args();
        a.hold_after = Some(Duration::from_secs(2));
        a.resume_after = Some(Duration::from_secs(1));
        assert!(build(&a, &mut account).is_err());
    }
}
