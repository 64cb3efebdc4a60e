//! The command line of `tandem-cli` (clap derive) and its merge with a `--profile` file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// `tandem-cli`: register, call, answer and probe with OPTIONS from the command line.
#[derive(Debug, Parser)]
#[command(
    name = "tandem-cli",
    version,
    about,
    long_about = None,
    after_help = "Events go to stdout, one line each: `event key=value ...` (registered, unregistered, \
trying, ringing, answered, media, dtmf, held, resumed, transferred, quality, ended, incoming, rejected, \
failed, options, message, imdn, published, presence, msrp, chat, file, buddy, video). Diagnostics go to stderr.\n\
Exit codes: 0 success, 1 refused by the peer (3xx-6xx), 2 usage/config error, 3 authentication \
failed, 4 timeout or network error, 5 interrupted (SIGINT/SIGTERM).\n\
During a call, stdin takes one command a line: hold, resume, mute, unmute, dtmf DIGITS, transfer URI, \
quality, hangup, video on|off, camera pattern|FILE.y4m|none."
)]
pub struct Cli {
    /// Account and transport options (each may also come from `--profile`).
    #[command(flatten)]
    pub account: AccountArgs,
    /// List the audio devices and exit (the same as the `devices` command).
    #[arg(long = "list-devices", global = true)]
    pub list_devices: bool,
    /// What to do (required unless --list-devices).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Account options; any of them may come from a profile file, flags win.
#[derive(Debug, Clone, Default, Args)]
pub struct AccountArgs {
    /// A TOML file with account options (same key names as the flags).
    #[arg(long, global = true, value_name = "FILE.toml")]
    pub profile: Option<PathBuf>,
    /// AoR user part (required except for `options`).
    #[arg(long, global = true, value_name = "NAME")]
    pub user: Option<String>,
    /// AoR domain (e.g. tandem.lab or 127.0.0.1).
    #[arg(long, global = true, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// Digest username (default: --user).
    #[arg(long = "auth-user", global = true, value_name = "NAME")]
    pub auth_user: Option<String>,
    /// Digest password (or the environment variable TANDEM_PASSWORD).
    #[arg(long, global = true, env = "TANDEM_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Outbound proxy / registrar to send everything to (default: RFC 3263 on the domain).
    #[arg(long, global = true, value_name = "URI|HOST:PORT")]
    pub proxy: Option<String>,
    /// Transport: udp, tcp or tls (default udp).
    #[arg(long, global = true, value_name = "udp|tcp|tls")]
    pub transport: Option<String>,
    /// An extra CA certificate (PEM) to trust for TLS, e.g. the lab CA.
    #[arg(long = "ca-file", global = true, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Local bind address (default 0.0.0.0:0).
    #[arg(long, global = true, value_name = "IP:PORT")]
    pub listen: Option<SocketAddr>,
    /// Registration expiry to ask for, in seconds (default 3600).
    #[arg(long, global = true, value_name = "SECS")]
    pub expires: Option<u32>,
    /// Display name for From headers.
    #[arg(long = "display-name", global = true, value_name = "NAME")]
    pub display_name: Option<String>,
    /// SRTP policy: off, optional (offer SDES, accept plain RTP) or mandatory (never plain RTP); default off.
    #[arg(long, global = true, value_name = "off|optional|mandatory")]
    pub srtp: Option<String>,
    /// How SRTP keys are exchanged when --srtp is not off: sdes (a=crypto) or dtls (DTLS-SRTP); default sdes.
    #[arg(long = "srtp-keying", global = true, value_name = "sdes|dtls")]
    pub srtp_keying: Option<String>,
    /// MSRP relay for chat and send-file sessions (RFC 4976), authenticated with the account's
    /// credentials: msrps://HOST:PORT;tcp or msrp://HOST:PORT;tcp.
    #[arg(long = "msrp-relay", global = true, value_name = "URI")]
    pub msrp_relay: Option<String>,
    /// STUN server for server-reflexive ICE candidates (default: the --turn server).
    #[arg(long, global = true, value_name = "HOST:PORT")]
    pub stun: Option<String>,
    /// TURN server for relay ICE candidates: turn:HOST:PORT, turn:HOST:PORT?transport=tcp or turns:HOST:PORT.
    #[arg(long, global = true, value_name = "URI")]
    pub turn: Option<String>,
    /// TURN username (default: the account's auth user).
    #[arg(long = "turn-user", global = true, value_name = "NAME")]
    pub turn_user: Option<String>,
    /// TURN password (default: the account's password).
    #[arg(long = "turn-password", global = true, value_name = "PW")]
    pub turn_password: Option<String>,
    /// ICE for call media (RFC 8445, candidates in SDP): on or off; default on.
    #[arg(long, global = true, value_name = "on|off")]
    pub ice: Option<String>,
    /// Which ICE candidates calls may use: all, or relay (media only through --turn).
    #[arg(long = "ice-policy", global = true, value_name = "all|relay")]
    pub ice_policy: Option<String>,
    /// Keep-alive interval in seconds on the registration flow (default: the registrar's
    /// Flow-Timer, else 25 s STUN keep-alives on UDP; CRLF pings every 90 s on TCP/TLS).
    #[arg(long, global = true, value_name = "SECS", value_parser = clap::value_parser!(u32).range(1..))]
    pub keepalive: Option<u32>,
    /// RFC 5626 outbound (+sip.instance, reg-id, ;ob, Supported: outbound, path): on or off; default on.
    #[arg(long, global = true, value_name = "on|off")]
    pub outbound: Option<String>,
    /// The +sip.instance URN (default: a UUID URN derived from the account and this machine).
    #[arg(long, global = true, value_name = "URN")]
    pub instance: Option<String>,
    /// Log SIP traffic to stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

/// The commands of `tandem-cli`.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Register, stay registered for --duration seconds, then unregister unless --keep.
    Register {
        /// How long to stay registered (refreshing before expiry), in seconds.
        #[arg(long, default_value_t = 0, value_name = "SECS")]
        duration: u64,
        /// Do not unregister at the end.
        #[arg(long)]
        keep: bool,
        /// Register this contact instead of our own (third-party contact).
        #[arg(long, value_name = "URI")]
        contact: Option<String>,
    },
    /// Call a URI with a real SDP offer, hold the call, then hang up.
    Call {
        /// Whom to call (sip:bob@tandem.lab, or bob, or bob@host).
        #[arg(value_name = "URI")]
        uri: String,
        /// How long to hold the answered call before BYE, in seconds.
        #[arg(long, default_value_t = 5, value_name = "SECS")]
        duration: u64,
        /// Give up (CANCEL) if not answered within this many seconds.
        #[arg(long, default_value_t = 30, value_name = "SECS")]
        timeout: u64,
        /// Register before calling (and unregister at the end).
        #[arg(long)]
        register: bool,
        /// Audio and scripted in-call actions.
        #[command(flatten)]
        media: MediaArgs,
    },
    /// Register, then auto-answer incoming calls; incoming instant messages are printed as
    /// `message from=URI type=CONTENT-TYPE id=… [stored-id=…] text="…"` lines (disposition
    /// notifications about messages we sent as `imdn from=… id=… notification=delivery status=delivered`).
    /// MSRP sessions are accepted too: chat messages print `chat from=URI text=…`, files offered
    /// (RFC 5547) are saved in --save-dir with `file progress received=N total=M` and
    /// `file received name=… size=N sha256=HEX path=…` lines (a part kept from an interrupted
    /// transfer of the same file is resumed: `file resumed from=N`).
    Answer {
        /// Exit after this many calls (default: run until SIGINT/SIGTERM).
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Hang up after this many seconds (default: wait for the caller's BYE).
        #[arg(long, value_name = "SECS")]
        duration: Option<u64>,
        /// Ring this many seconds before answering.
        #[arg(long, default_value_t = 0, value_name = "SECS")]
        ring: u64,
        /// Reject every call with this status code instead of answering.
        #[arg(long, value_name = "CODE", value_parser = clap::value_parser!(u16).range(300..=699))]
        reject: Option<u16>,
        /// Do not register first.
        #[arg(long = "no-register")]
        no_register: bool,
        /// Where files received over MSRP (RFC 5547) are saved (default: the current directory).
        #[arg(long = "save-dir", value_name = "DIR")]
        save_dir: Option<PathBuf>,
        /// Audio and scripted in-call actions.
        #[command(flatten)]
        media: MediaArgs,
    },
    /// Send one instant message (SIP MESSAGE, RFC 3428) and print how it was accepted:
    /// `message status=200 stored=no id=…` (stored=yes: the server keeps it for an offline user).
    Message {
        /// The recipient (sip:bob@tandem.lab, or bob, or bob@host).
        #[arg(value_name = "URI")]
        uri: String,
        /// The text (sent as text/plain).
        #[arg(value_name = "TEXT")]
        text: String,
        /// Wrap the text in message/cpim (RFC 3862) with an imdn.Message-ID.
        #[arg(long)]
        cpim: bool,
        /// Ask for disposition notifications (RFC 5438; implies --cpim): delivery, display, or both.
        #[arg(long, value_name = "delivery,display", value_delimiter = ',', value_parser = ["delivery", "display"])]
        imdn: Vec<String>,
        /// After sending, wait this many seconds and print `imdn …` lines for the notifications that arrive.
        #[arg(long = "wait-imdn", default_value_t = 0, value_name = "SECS")]
        wait_imdn: u64,
    },
    /// Publish our presence (PUBLISH, RFC 3903, PIDF + RPID), keep it refreshed for --duration seconds,
    /// then remove it: prints `published status=… etag=… expires=…`, then `unpublished`.
    Presence {
        /// What to publish.
        #[arg(long, value_name = "available|away|busy|on-the-phone", value_parser = ["available", "away", "busy", "on-the-phone"])]
        status: String,
        /// A free-text note.
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
        /// How long to keep the publication, in seconds.
        #[arg(long, default_value_t = 0, value_name = "SECS")]
        duration: u64,
    },
    /// Watch a presentity (SUBSCRIBE, RFC 6665/3856) for --duration seconds (default: until SIGINT):
    /// prints `presence entity=… status=available|away|busy|on-the-phone|offline note="…"`,
    /// `presence-pending`, `presence-terminated reason=…`.
    Watch {
        /// The presentity (sip:bob@tandem.lab, or bob, or bob@host).
        #[arg(value_name = "URI")]
        uri: String,
        /// URI is a resource list (RFC 4662, `Supported: eventlist`): prints `list uri=… version=N full=yes|no
        /// resources=N`, then a `presence`/`presence-pending`/`presence-terminated entity=…` line per resource.
        #[arg(long)]
        list: bool,
        /// How long to watch, in seconds.
        #[arg(long, value_name = "SECS")]
        duration: Option<u64>,
    },
    /// Watch a conference's roster (SUBSCRIBE `Event: conference`, RFC 4575) for --duration seconds
    /// (default: until SIGINT): prints `conference entity=… version=N users=N locked=yes|no`, then a
    /// `conference-user uri=… role=… status=connected|muted speaking=yes|no endpoints=N` line per user.
    Conference {
        /// The conference (sip:conf-lab@tandem.lab, or conf-lab, or conf-lab@host).
        #[arg(value_name = "URI")]
        uri: String,
        /// How long to watch, in seconds.
        #[arg(long, value_name = "SECS")]
        duration: Option<u64>,
    },
    /// Watch a mailbox's message summary (SUBSCRIBE `Event: message-summary`, RFC 3842) for
    /// --duration seconds (default: until SIGINT): prints `mwi new=N old=M account=URI` on every NOTIFY.
    Mwi {
        /// The message account (default: the account's own AoR; or `voicemail`).
        #[arg(value_name = "URI")]
        uri: Option<String>,
        /// How long to watch, in seconds.
        #[arg(long, value_name = "SECS")]
        duration: Option<u64>,
    },
    /// Start an MSRP chat session (INVITE with m=message): each stdin line is sent as text/plain;
    /// prints `msrp connected`, `chat from=URI text=…` for received messages; EOF or `/quit` ends it.
    Chat {
        /// Whom to chat with (sip:bob@tandem.lab, or bob, or bob@host).
        #[arg(value_name = "URI")]
        uri: String,
    },
    /// Send a file over MSRP (RFC 5547): prints `file offer name=… size=… sha256=…`,
    /// `file progress sent=N total=M`, `file resumed from=N`, `file sent size=N sha256=HEX`; exits 0
    /// once the receiver confirmed the last byte. A broken connection is retried up to 3 times.
    SendFile {
        /// The recipient (sip:bob@tandem.lab, or bob, or bob@host).
        #[arg(value_name = "URI")]
        uri: String,
        /// The file to send.
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
    /// Edit or show our buddy list (resource-lists over XCAP, RFC 4825/4826): `buddy add URI [--name NAME]`
    /// prints `buddy-added uri=…`, `buddy del URI` prints `buddy-removed uri=…`, `buddy list` prints
    /// one `buddy uri=… name=…` line per entry.
    Buddy {
        /// The XCAP root (https://HOST:PORT/xcap-root).
        #[arg(long = "xcap-root", global = true, value_name = "URL")]
        xcap_root: Option<String>,
        /// What to do with the list.
        #[command(subcommand)]
        action: BuddyAction,
    },
    /// List the audio devices (capture and playback) and exit.
    #[command(visible_alias = "list-devices")]
    Devices,
    /// List the cameras (id, name, formats), or record a few seconds from one with --record.
    Cameras(crate::cameras::CamerasArgs),
    /// Send OPTIONS and print the status.
    Options {
        /// The URI to probe.
        #[arg(value_name = "URI")]
        uri: String,
    },
}

/// The operations of `tandem-cli buddy`.
#[derive(Debug, Clone, Subcommand)]
pub enum BuddyAction {
    /// Add (or rename) a buddy.
    Add {
        /// The buddy (sip:bob@tandem.lab, or bob, or bob@host).
        #[arg(value_name = "URI")]
        uri: String,
        /// The display name to store with it.
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// Remove a buddy (no error when absent).
    #[command(visible_alias = "remove")]
    Del {
        /// The buddy (sip:bob@tandem.lab, or bob, or bob@host).
        #[arg(value_name = "URI")]
        uri: String,
    },
    /// Print the buddies, one `buddy uri=… name=…` line each.
    List,
}

/// Audio options and scripted in-call actions of `call` and `answer`.
#[derive(Debug, Clone, Default, Args)]
pub struct MediaArgs {
    /// Audio device for capture and playback: a device name, `default`, `null` (silence), `tone:HZ` or a
    /// WAV path (default: null, i.e. no sound card).
    #[arg(long, value_name = "NAME|default|null")]
    pub device: Option<String>,
    /// Send this WAV file instead of the capture device (looped unless --play-once).
    #[arg(long, value_name = "FILE.wav")]
    pub play: Option<PathBuf>,
    /// Play the --play file once, then send silence.
    #[arg(long = "play-once", requires = "play")]
    pub play_once: bool,
    /// Write the received audio to this WAV file instead of the playback device.
    #[arg(long, value_name = "FILE.wav")]
    pub record: Option<PathBuf>,
    /// Send these DTMF digits (0-9, *, #, A-D) once the call is answered, after --dtmf-delay.
    #[arg(long, value_name = "DIGITS", value_parser = parse_digits)]
    pub dtmf: Option<String>,
    /// Seconds to wait after the answer before sending --dtmf.
    #[arg(long = "dtmf-delay", value_name = "SECS", default_value = "1", value_parser = parse_secs)]
    pub dtmf_delay: Duration,
    /// Codecs to offer and accept, in order of preference (comma-separated: opus, pcmu, pcma, g722).
    #[arg(long, value_name = "opus|pcmu|pcma", value_delimiter = ',', value_parser = parse_codec)]
    pub codec: Vec<String>,
    /// Put the call on hold this many seconds after the answer.
    #[arg(long = "hold-after", value_name = "SECS", value_parser = parse_secs)]
    pub hold_after: Option<Duration>,
    /// Resume a held call this many seconds after the answer (needs --hold-after, and must be later).
    #[arg(long = "resume-after", value_name = "SECS", value_parser = parse_secs, requires = "hold_after")]
    pub resume_after: Option<Duration>,
    /// Blind-transfer the call (REFER) to this URI, --transfer-after seconds after the answer.
    #[arg(long = "transfer-to", value_name = "URI")]
    pub transfer_to: Option<String>,
    /// Seconds after the answer before --transfer-to.
    #[arg(long = "transfer-after", value_name = "SECS", default_value = "1", value_parser = parse_secs)]
    pub transfer_after: Duration,
    /// Offer and accept video, sending `pattern` (moving colour bars with a frame counter), a YUV4MPEG2
    /// file (looped), `camera` (the first camera) or `camera:ID` (a camera's id, name or a fragment of
    /// either, see `tandem-cli cameras`; captured at --video-size/--video-fps) or `none` (receive only). Prints `video started codec=VP8 pt=96 send=320x240@15 recv=yes`,
    /// `video first-frame WxH`, and at hang-up `video stats sent=N received=N decoded=N keyframes=N
    /// nacks_sent=N nacks_received=N plis_sent=N plis_received=N retransmitted=N decode_errors=N lost=N`
    /// (sent: frames we encoded; received/decoded/keyframes: frames from the peer; lost: RTP packets never received).
    #[arg(long, value_name = "pattern|FILE.y4m|camera[:ID]|none")]
    pub video: Option<String>,
    /// Size of the --video pattern, WIDTHxHEIGHT.
    #[arg(long = "video-size", value_name = "WxH", default_value = "320x240", value_parser = parse_video_size)]
    pub video_size: (u32, u32),
    /// Frame rate of the --video pattern.
    #[arg(long = "video-fps", value_name = "N", default_value_t = 15, value_parser = clap::value_parser!(u32).range(1..=60))]
    pub video_fps: u32,
    /// Video codecs to offer and accept, in order of preference (comma-separated: vp8, h264; default vp8,h264).
    #[arg(long = "video-codec", value_name = "vp8|h264", value_delimiter = ',', value_parser = parse_video_codec)]
    pub video_codec: Vec<String>,
    /// Write the received video to this YUV4MPEG2 file (also without --video: then we only receive).
    #[arg(long = "record-video", value_name = "OUT.y4m")]
    pub record_video: Option<PathBuf>,
    /// When the peer adds video to the call (prints `video offered by peer receiving=yes|no ask=yes|no`):
    /// `receive` takes it receive-only when --record-video shows it, `ask` does the same and waits for
    /// `video on`/`camera SOURCE` on stdin (or --accept-video) to send ours, `never` declines it (port 0).
    /// Without --video the call starts audio-only. Default: ask.
    #[arg(long = "video-policy", value_name = "receive|ask|never", value_parser = parse_video_policy)]
    pub video_policy: Option<tandem_client_core::VideoPolicy>,
    /// When the peer adds video, turn our camera on at once (re-INVITE, two-way video), sending
    /// `pattern` (the default, at --video-size/--video-fps) or a YUV4MPEG2 file.
    #[arg(long = "accept-video", value_name = "pattern|FILE.y4m", num_args = 0..=1, default_missing_value = "pattern")]
    pub accept_video: Option<String>,
}

/// Parses `--video-policy`.
pub fn parse_video_policy(text: &str) -> Result<tandem_client_core::VideoPolicy, String> {
    text.parse()
}

/// Parses `--video-size` (`WIDTHxHEIGHT`).
pub fn parse_video_size(text: &str) -> Result<(u32, u32), String> {
    tandem_client_core::parse_video_size(text)
}

/// Checks a video codec name (case-insensitive) and returns its SDP name (`VP8`, `H264`).
pub fn parse_video_codec(text: &str) -> Result<String, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "vp8" => Ok("VP8".into()),
        "h264" | "h.264" | "avc" => Ok("H264".into()),
        _ => Err(format!("unknown video codec {text:?} (vp8, h264)")),
    }
}

/// Parses a number of seconds (fractions allowed) into a duration.
pub fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("{text:?} is out of range (0 to 86400 seconds)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Checks a DTMF digit string: 0-9, *, #, A-D (case-insensitive), at most 64 digits.
pub fn parse_digits(text: &str) -> Result<String, String> {
    let digits: String = text.trim().to_ascii_uppercase();
    if digits.is_empty() {
        return Err("no DTMF digits given".into());
    }
    if digits.len() > 64 {
        return Err("at most 64 DTMF digits at once".into());
    }
    if let Some(bad) = digits
        .chars()
        .find(|c| !matches!(c, '0'..='9' | '*' | '#' | 'A'..='D'))
    {
        return Err(format!("{bad:?} is not a DTMF digit (0-9, *, #, A-D)"));
    }
    Ok(digits)
}

/// Checks a codec name (case-insensitive) and returns it in lower case.
pub fn parse_codec(text: &str) -> Result<String, String> {
    let name = text.trim().to_ascii_lowercase();
    match name.as_str() {
        "opus" | "pcmu" | "pcma" | "g722" => Ok(name),
        _ => Err(format!("unknown codec {text:?} (opus, pcmu, pcma, g722)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds() {
        assert_eq!(parse_secs("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_secs("0").unwrap(), Duration::ZERO);
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("NaN").is_err());
        assert!(parse_secs("1e9").is_err());
        assert!(parse_secs("soon").is_err());
    }

    #[test]
    fn digits() {
        assert_eq!(parse_digits("12#*ab").unwrap(), "12#*AB");
        assert!(parse_digits("12x").is_err());
        assert!(parse_digits("").is_err());
        assert!(parse_digits(&"1".repeat(65)).is_err());
    }

    #[test]
    fn codecs() {
        assert_eq!(parse_codec("OPUS").unwrap(), "opus");
        assert!(parse_codec("gsm").is_err());
    }

    #[test]
    fn buddy_parse() {
        let cli = Cli::try_parse_from([
            "tandem-cli",
            "buddy",
            "add",
            "bob",
            "--name",
            "Bob B",
            "--xcap-root",
            "https://127.0.0.1:5443/xcap-root",
        ])
        .unwrap();
        let Some(Command::Buddy { xcap_root, action }) = cli.command else {
            panic!("not buddy");
        };
        assert_eq!(
            xcap_root.as_deref(),
            Some("https://127.0.0.1:5443/xcap-root")
        );
        assert!(
            matches!(action, BuddyAction::Add { uri, name } if uri == "bob" && name.as_deref() == Some("Bob B"))
        );
        let cli =
            Cli::try_parse_from(["tandem-cli", "buddy", "--xcap-root", "x", "del", "b"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Buddy {
                action: BuddyAction::Del { .. },
                ..
            })
        ));
        assert!(Cli::try_parse_from(["tandem-cli", "buddy"]).is_err());
        assert!(Cli::try_parse_from(["tandem-cli", "buddy", "add"]).is_err());
    }

    #[test]
    fn video_flags_parse() {
        let cli = Cli::try_parse_from([
            "tandem-cli",
            "answer",
            "--video",
            "pattern",
            "--video-size",
            "640x480",
            "--video-fps",
            "30",
            "--video-codec",
            "h264,VP8",
            "--record-video",
            "out.y4m",
        ])
        .unwrap();
        let Some(Command::Answer { media, .. }) = cli.command else {
            panic!("not answer");
        };
        assert_eq!(media.video.as_deref(), Some("pattern"));
        assert_eq!(media.video_size, (640, 480));
        assert_eq!(media.video_fps, 30);
        assert_eq!(
            media.video_codec,
            vec!["H264".to_string(), "VP8".to_string()]
        );
        assert_eq!(
            media.record_video.as_deref(),
            Some(std::path::Path::new("out.y4m"))
        );
        for bad in [
            ["--video-size", "640"],
            ["--video-size", "0x0"],
            ["--video-fps", "0"],
            ["--video-fps", "500"],
            ["--video-codec", "theora"],
        ] {
            assert!(
                Cli::try_parse_from(["tandem-cli", "call", "x", bad[0], bad[1]]).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn media_flags_parse() {
        let cli = Cli::try_parse_from([
            "tandem-cli",
            "--user",
            "a",
            "--srtp",
            "mandatory",
            "call",
            "sip:b@x",
            "--play",
            "in.wav",
            "--play-once",
            "--record",
            "out.wav",
            "--dtmf",
            "12#",
            "--dtmf-delay",
            "0.5",
            "--codec",
            "pcmu,opus",
            "--hold-after",
            "1",
            "--resume-after",
            "2",
            "--transfer-to",
            "sip:c@x",
        ])
        .unwrap();
        assert_eq!(cli.account.srtp.as_deref(), Some("mandatory"));
        let Some(Command::Call { media, .. }) = cli.command else {
            panic!("not a call");
        };
        assert_eq!(media.play.as_deref(), Some(std::path::Path::new("in.wav")));
        assert!(media.play_once);
        assert_eq!(media.dtmf.as_deref(), Some("12#"));
        assert_eq!(media.dtmf_delay, Duration::from_millis(500));
        assert_eq!(media.codec, vec!["pcmu".to_string(), "opus".to_string()]);
        assert_eq!(media.resume_after, Some(Duration::from_secs(2)));
        assert_eq!(media.transfer_after, Duration::from_secs(1));
        assert!(Cli::try_parse_from(["tandem-cli", "call", "x", "--play-once"]).is_err());
        assert!(Cli::try_parse_from(["tandem-cli", "call", "x", "--resume-after", "2"]).is_err());
        assert!(Cli::try_parse_from(["tandem-cli", "list-devices"]).is_ok());
        assert!(media.video.is_none() && media.record_video.is_none());
        assert_eq!((media.video_size, media.video_fps), ((320, 240), 15));
        let cli = Cli::try_parse_from(["tandem-cli", "--list-devices"]).unwrap();
        assert!(cli.list_devices && cli.command.is_none());
    }
}
