//! Launching baresip headless (tone or WAV source, ALSA null sink, optional dumps of the received audio) and
//! driving it over `ctrl_tcp` (JSON netstrings).

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{HarnessError, IoContext, Result};
use crate::paths::{render, write};
use crate::ports::free_port_block;
use crate::process::ChildGuard;
use crate::sip::Transport;

/// The largest netstring we accept from baresip.
const MAX_NETSTRING: usize = 1 << 20;

/// How to configure a baresip instance.
#[derive(Debug, Clone)]
pub struct BaresipOptions {
    /// The account's AoR user.
    pub user: String,
    /// The AoR domain.
    pub domain: String,
    /// Digest password (none: no auth).
    pub password: Option<String>,
    /// Outbound proxy / registrar address (none: no registration).
    pub registrar: Option<SocketAddr>,
    /// Transport to the registrar.
    pub transport: Transport,
    /// Auto-answer incoming calls.
    pub auto_answer: bool,
    /// What baresip sends as its microphone.
    pub source: BaresipSource,
    /// Dump the decoded received audio of each call to a WAV file (`sndfile` module; see [`Baresip::recordings`]).
    pub record: bool,
    /// The account's media encryption (`mediaenc`): `srtp` (SDES, optional), `srtp-mand` (SDES, mandatory),
    /// `dtls_srtp`; none: plain RTP.
    pub media_enc: Option<String>,
    /// The account's codec list (`audio_codecs`), e.g. `opus/48000/2` or `PCMU/8000/1`; none: every codec loaded.
    pub audio_codecs: Option<String>,
    /// SIP URIs written to its `contacts` file; the first one is the current contact (the peer of the
    /// `message` command).
    pub contacts: Vec<String>,
    /// SIP URIs written to its `contacts` file with `;presence=p2p`: the `presence` module SUBSCRIBEs to each
    /// (through the registrar) and shows the state in its `contacts` listing (see [`Baresip::contact_presence`]).
    pub presence_contacts: Vec<String>,
    /// Presence publication interval (the account's `pubint`): the `presence` module PUBLISHes `open` at start
    /// and on `presence_online`, `closed` on `presence_offline` (see [`Baresip::set_presence`]).
    pub publish_interval: Option<u32>,
    /// Run inside this network namespace (`ip netns exec NAME baresip …`; ctrl_tcp is reached from inside it).
    pub netns: Option<String>,
    /// The address its SIP listener binds (default 127.0.0.1), e.g. a NAT topology host's LAN address.
    pub listen_ip: Option<std::net::IpAddr>,
    /// Video calls (the `vp8`, `avcodec` and `fakevideo` modules; see [`BaresipVideo`]); none: audio only.
    pub video: Option<BaresipVideo>,
}

/// baresip's video configuration: the codec modules `vp8.so` (VP8) and `avcodec.so` (H.264), the `fakevideo`
/// display (decodes and discards; [`Baresip::video_debug`] counts the frames), and a source.
#[derive(Debug, Clone, PartialEq)]
pub struct BaresipVideo {
    /// `video_size` width (what baresip encodes; a file source should have this size).
    pub width: u32,
    /// `video_size` height.
    pub height: u32,
    /// `video_fps`.
    pub fps: u32,
    /// `video_bitrate` in bit/s.
    pub bitrate_bps: u32,
    /// What baresip sends.
    pub source: BaresipVideoSource,
    /// The account's `video_codecs` (e.g. `VP8` or `H264`); none: every loaded video codec.
    pub codecs: Option<String>,
}

/// baresip's video source.
#[derive(Debug, Clone, PartialEq)]
pub enum BaresipVideoSource {
    /// `fakevideo`: three static vertical colour bars (red, green, blue), every frame the same.
    Fake,
    /// `avformat`: a video file (e.g. Y4M) played at its own frame rate, rewound at its end (after a 1 s pause).
    File(PathBuf),
}

impl BaresipVideo {
    /// VP8 at `width`x`height`, 15 fps, 500 kbit/s, from `source`.
    pub fn vp8(width: u32, height: u32, source: BaresipVideoSource) -> Self {
        BaresipVideo {
            width,
            height,
            fps: 15,
            bitrate_bps: 500_000,
            source,
            codecs: Some("VP8".into()),
        }
    }

    /// The modules and configuration lines this video setup adds to baresip's `config`.
    fn config_lines(&self) -> (Vec<&'static str>, String) {
        let mut modules = vec![
            "module\t\t\tvp8.so",
            "module\t\t\tavcodec.so",
            "module\t\t\tfakevideo.so",
        ];
        let source = match &self.source {
            BaresipVideoSource::Fake => "fakevideo,nil".to_string(),
            BaresipVideoSource::File(path) => {
                modules.push("module\t\t\tavformat.so");
                format!("avformat,{}", path.display())
            }
        };
        let keys = format!(
            "video_source\t\t{source}\nvideo_display\t\tfakevideo,nil\nvideo_size\t\t{}x{}\nvideo_fps\t\t{}\nvideo_bitrate\t\t{}\n",
            self.width, self.height, self.fps, self.bitrate_bps
        );
        (modules, keys)
    }
}

/// baresip's view of the current call's video stream (its `video_debug` command).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaresipVideoStats {
    /// Whether the stream started (`started: yes`; no when its m-line was declined or not yet negotiated).
    pub started: bool,
    /// The encoder's codec name (`VP8`, `H264`; `none` before one is set).
    pub encoder: String,
    /// Frames its source produced.
    pub source_frames: u64,
    /// The decoder's codec name.
    pub decoder: String,
    /// The size of the last decoded frame (0x0 before the first).
    pub decoded_width: u32,
    /// See `decoded_width`.
    pub decoded_height: u32,
    /// Frames decoded and handed to the display.
    pub decoded_frames: u64,
    /// Keyframes (intra frames) decoded.
    pub keyframes: u64,
    /// Picture updates (PLI/FIR) it requested.
    pub picture_updates: u64,
    /// The whole report, for assertion messages.
    pub raw: String,
}

impl BaresipVideoStats {
    /// Parses the text of `video_debug` (`tx: encode: VP8 …`, `source: NAME W x H, fps=F frames=N`,
    /// `rx: decode: VP8 …`, `vidisp: NAME W x H frames=N`, `n_keyframes=N, n_picup=N`); `None` when there is no
    /// video stream in it.
    pub fn parse(text: &str) -> Option<Self> {
        if !text.contains("--- Video stream ---") {
            return None;
        }
        let mut stats = BaresipVideoStats {
            raw: text.to_string(),
            ..Default::default()
        };
        let field = |line: &str, key: &str| -> Option<u64> {
            let at = line.find(key)? + key.len();
            let digits: String = line[at..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        };
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("started:") {
                stats.started = rest.trim() == "yes";
            } else if let Some(rest) = line.strip_prefix("tx: encode:") {
                stats.encoder = rest.split_whitespace().next().unwrap_or("").to_string();
            } else if let Some(rest) = line.strip_prefix("rx: decode:") {
                stats.decoder = rest.split_whitespace().next().unwrap_or("").to_string();
            } else if line.starts_with("source:") {
                stats.source_frames = field(line, "frames=").unwrap_or(0);
            } else if line.starts_with("vidisp:") {
                stats.decoded_frames = field(line, "frames=").unwrap_or(0);
                // `vidisp: NAME W x H frames=N`
                let words: Vec<&str> = line.split_whitespace().collect();
                if let [_, _, w, "x", h, ..] = words.as_slice() {
                    stats.decoded_width = w.parse().unwrap_or(0);
                    stats.decoded_height = h.parse().unwrap_or(0);
                }
            } else if line.starts_with("n_keyframes=") {
                stats.keyframes = field(line, "n_keyframes=").unwrap_or(0);
                stats.picture_updates = field(line, "n_picup=").unwrap_or(0);
            }
        }
        Some(stats)
    }
}

/// baresip's audio source.
#[derive(Debug, Clone, PartialEq)]
pub enum BaresipSource {
    /// A sine tone of this frequency (`ausine`), 48 kHz stereo.
    Sine(u32),
    /// A 48 kHz mono 16-bit WAV file (`aufile`); silence after its end.
    File(PathBuf),
}

impl BaresipOptions {
    /// An account `user@domain` registering at `registrar` over UDP.
    pub fn new(user: &str, domain: &str, password: &str, registrar: SocketAddr) -> Self {
        BaresipOptions {
            user: user.into(),
            domain: domain.into(),
            password: Some(password.into()),
            registrar: Some(registrar),
            transport: Transport::Udp,
            auto_answer: false,
            source: BaresipSource::Sine(440),
            record: false,
            media_enc: None,
            audio_codecs: None,
            contacts: Vec::new(),
            presence_contacts: Vec::new(),
            publish_interval: None,
            netns: None,
            listen_ip: None,
            video: None,
        }
    }
}

/// Reads one netstring (`LEN:DATA,`) from `r`.
fn read_netstring(r: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut len = 0usize;
    let mut digits = 0;
    let mut byte = [0u8; 1];
    loop {
        r.read_exact(&mut byte)?;
        match byte[0] {
            b'0'..=b'9' if digits < 8 => {
                len = len * 10 + usize::from(byte[0] - b'0');
                digits += 1;
            }
            b':' if digits > 0 => break,
            other => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("bad netstring length byte {other:#x}"),
                ));
            }
        }
    }
    if len > MAX_NETSTRING {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "netstring too long",
        ));
    }
    let mut data = vec![0u8; len];
    r.read_exact(&mut data)?;
    r.read_exact(&mut byte)?;
    if byte[0] != b',' {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "netstring without trailing comma",
        ));
    }
    Ok(data)
}

/// Frames `data` as a netstring.
fn netstring(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{}:", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.push(b',');
    out
}

/// A running baresip, stopped on drop.
pub struct Baresip {
    child: ChildGuard,
    ctrl: TcpStream,
    messages: Receiver<Value>,
    events: Vec<Value>,
    sip_addr: SocketAddr,
    next_token: u64,
    snd_dir: PathBuf,
}

impl Baresip {
    /// Renders `tests/peers/baresip-config.in` into `<dir>/<user>-baresip/` with free ports, writes the account,
    /// starts baresip and connects to its `ctrl_tcp`.
    pub fn start(opts: BaresipOptions, dir: &Path) -> Result<Self> {
        let conf = dir.join(format!("{}-baresip", opts.user));
        std::fs::create_dir_all(&conf).ctx(|| format!("creating {}", conf.display()))?;
        // SIP port P (UDP/TCP) and P+1 (baresip's TLS listener), then ctrl_tcp, then an RTP range.
        let sip_port = free_port_block(2);
        let ctrl_port = free_port_block(1);
        let rtp = free_port_block(8);
        let sip_addr = SocketAddr::new(
            opts.listen_ip
                .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1])),
            sip_port,
        );
        let ctrl_addr = SocketAddr::from(([127, 0, 0, 1], ctrl_port));
        let snd_dir = conf.join("recordings");
        std::fs::create_dir_all(&snd_dir).ctx(|| format!("creating {}", snd_dir.display()))?;
        let (source, channels) = match &opts.source {
            BaresipSource::Sine(hz) => (format!("ausine,{hz}"), 2),
            BaresipSource::File(path) => (format!("aufile,{}", path.display()), 1),
        };
        let mut modules = Vec::new();
        if opts
            .media_enc
            .as_deref()
            .is_some_and(|e| e.starts_with("srtp"))
        {
            modules.push("module\t\t\tsrtp.so");
        }
        if opts.media_enc.as_deref() == Some("dtls_srtp") {
            modules.push("module\t\t\tdtls_srtp.so");
        }
        if opts.record {
            modules.push("module\t\t\tsndfile.so");
        }
        let video = opts.video.as_ref().map(BaresipVideo::config_lines);
        if let Some((video_modules, _)) = &video {
            modules.extend(video_modules.iter().copied());
        }
        // The presence module walks the contacts and accounts when it loads: after contact.so and account.so.
        let app_modules = if opts.presence_contacts.is_empty() && opts.publish_interval.is_none() {
            ""
        } else {
            "module_app\t\tpresence.so"
        };
        let mut config = render(
            "baresip-config.in",
            &[
                ("SIP_LISTEN", sip_addr.to_string()),
                ("CTRL_LISTEN", ctrl_addr.to_string()),
                ("RTP_PORTS", format!("{rtp}-{}", rtp + 7)),
                ("AUDIO_SOURCE", source),
                ("AUSRC_CHANNELS", channels.to_string()),
                ("SND_PATH", snd_dir.display().to_string()),
                ("EXTRA_MODULES", modules.join("\n")),
                ("APP_MODULES", app_modules.to_string()),
            ],
        )?;
        if let Some((_, keys)) = &video {
            config.push_str(keys);
        }
        write(&conf.join("config"), config)?;
        let mut account = format!("<sip:{}@{}>", opts.user, opts.domain);
        if let Some(pw) = &opts.password {
            account.push_str(&format!(";auth_pass={pw}"));
        }
        match opts.registrar {
            Some(reg) => account.push_str(&format!(
                ";outbound=\"sip:{reg};transport={}\";regint=600",
                opts.transport
            )),
            None => account.push_str(";regint=0"),
        }
        if opts.auto_answer {
            account.push_str(";answermode=auto");
        }
        if let Some(enc) = &opts.media_enc {
            account.push_str(&format!(";mediaenc={enc}"));
        }
        if let Some(codecs) = &opts.audio_codecs {
            account.push_str(&format!(";audio_codecs={codecs}"));
        }
        if let Some(codecs) = opts.video.as_ref().and_then(|v| v.codecs.as_ref()) {
            account.push_str(&format!(";video_codecs={codecs}"));
        }
        if let Some(pubint) = opts.publish_interval {
            account.push_str(&format!(";pubint={pubint}"));
        }
        write(&conf.join("accounts"), format!("{account}\n"))?;
        let mut contacts: String = opts.contacts.iter().map(|c| format!("<{c}>\n")).collect();
        contacts.extend(
            opts.presence_contacts
                .iter()
                .map(|c| format!("<{c}>;presence=p2p\n")),
        );
        write(&conf.join("contacts"), contacts)?;
        if let Some(first) = opts.contacts.first() {
            write(&conf.join("current_contact"), first.clone())?;
        }
        let mut cmd = match &opts.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "baresip"]);
                c
            }
            None => Command::new("baresip"),
        };
        cmd.arg("-f").arg(&conf).arg("-v");
        let mut child = ChildGuard::spawn(&format!("baresip-{}", opts.user), cmd, dir)?;
        let start = Instant::now();
        let ctrl = loop {
            let connect = || TcpStream::connect_timeout(&ctrl_addr, Duration::from_millis(200));
            let attempt = match &opts.netns {
                Some(ns) => crate::nat::in_netns(ns, connect)?,
                None => connect(),
            };
            match attempt {
                Ok(s) => break s,
                Err(e) => {
                    if !child.is_running() || start.elapsed() > Duration::from_secs(10) {
                        eprintln!("{}", child.tails());
                        return Err(e)
                            .ctx(|| format!("connecting to baresip ctrl_tcp {ctrl_addr}"));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        let reader = ctrl
            .try_clone()
            .ctx(|| "cloning the ctrl_tcp stream".into())?;
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(reader);
            while let Ok(data) = read_netstring(&mut r) {
                if let Ok(v) = serde_json::from_slice::<Value>(&data)
                    && tx.send(v).is_err()
                {
                    break;
                }
            }
        });
        Ok(Baresip {
            child,
            ctrl,
            messages: rx,
            events: Vec::new(),
            sip_addr,
            next_token: 1,
            snd_dir,
        })
    }

    /// The WAV dumps of the decoded received audio (`dump-…-dec.wav`, one per call, oldest first); complete once
    /// the call has closed.
    pub fn recordings(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.snd_dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with("dump-") && n.ends_with("-dec.wav"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort_by_key(|p| {
            std::fs::metadata(p)
                .and_then(|m| m.created().or_else(|_| m.modified()))
                .ok()
        });
        files
    }

    /// Waits for `n` received DTMF digits (`CALL_DTMF_START` events) and returns them in order.
    pub fn wait_dtmf(&mut self, n: usize, timeout: Duration) -> Result<String> {
        let start = Instant::now();
        let mut digits = String::new();
        while digits.chars().count() < n {
            let left = timeout.saturating_sub(start.elapsed());
            let ev = self
                .wait_event_type("CALL_DTMF_START", left)
                .map_err(|e| match e {
                    HarnessError::Timeout { .. } => HarnessError::Timeout {
                        what: format!("{n} DTMF digits at baresip (got {digits:?})"),
                        waited: timeout,
                    },
                    other => other,
                })?;
            let param = ev.get("param").and_then(Value::as_str).unwrap_or("");
            digits.push_str(param.trim());
        }
        Ok(digits)
    }

    /// baresip's SIP address.
    pub fn sip_addr(&self) -> SocketAddr {
        self.sip_addr
    }

    /// Sends a command (e.g. `dial`, `sip:alice@127.0.0.1`) and waits for its response; returns the response's
    /// `data` (fails when `ok` is false).
    pub fn command(&mut self, command: &str, params: &str, timeout: Duration) -> Result<String> {
        let token = self.next_token.to_string();
        self.next_token += 1;
        let msg = serde_json::json!({ "command": command, "params": params, "token": token });
        self.ctrl
            .write_all(&netstring(msg.to_string().as_bytes()))
            .ctx(|| "writing to baresip ctrl_tcp".into())?;
        let start = Instant::now();
        loop {
            let v =
                self.next_message(start, timeout, &format!("baresip's response to {command}"))?;
            if v.get("response").and_then(Value::as_bool) == Some(true)
                && v.get("token").and_then(Value::as_str) == Some(token.as_str())
            {
                let data = v
                    .get("data")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if v.get("ok").and_then(Value::as_bool) == Some(true) {
                    return Ok(data);
                }
                return Err(HarnessError::Protocol {
                    what: "baresip".into(),
                    detail: format!("{command} {params} failed: {data}"),
                });
            }
            if v.get("event").and_then(Value::as_bool) == Some(true) {
                self.events.push(v);
            }
        }
    }

    fn next_message(&mut self, start: Instant, timeout: Duration, what: &str) -> Result<Value> {
        let left = timeout.saturating_sub(start.elapsed());
        match self.messages.recv_timeout(left) {
            Ok(v) => Ok(v),
            Err(RecvTimeoutError::Timeout) => Err(HarnessError::Timeout {
                what: what.to_string(),
                waited: timeout,
            }),
            Err(RecvTimeoutError::Disconnected) => Err(HarnessError::Protocol {
                what: "baresip".into(),
                detail: format!("ctrl_tcp closed while waiting for {what}"),
            }),
        }
    }

    /// Waits for an event (`{"event":true,"type":…}`) matching `pred`, including events already received, and
    /// returns it (consumed, so the next wait needs a new event).
    pub fn wait_event(
        &mut self,
        pred: impl Fn(&Value) -> bool,
        what: &str,
        timeout: Duration,
    ) -> Result<Value> {
        if let Some(i) = self.events.iter().position(&pred) {
            return Ok(self.events.remove(i));
        }
        let start = Instant::now();
        loop {
            let v = self.next_message(start, timeout, &format!("baresip event {what}"))?;
            if v.get("event").and_then(Value::as_bool) == Some(true) {
                if pred(&v) {
                    return Ok(v);
                }
                self.events.push(v);
            }
        }
    }

    /// Waits for an event of type `ty` (e.g. `REGISTER_OK`, `CALL_ESTABLISHED`, `CALL_CLOSED`).
    pub fn wait_event_type(&mut self, ty: &str, timeout: Duration) -> Result<Value> {
        self.wait_event(
            |v| v.get("type").and_then(Value::as_str) == Some(ty),
            ty,
            timeout,
        )
    }

    /// Waits until the account is registered: a `REGISTER_OK` event, or `reginfo` reporting `OK` (the event may
    /// have fired before the ctrl_tcp connection was up).
    pub fn wait_registered(&mut self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            let is_ok = |v: &Value| v.get("type").and_then(Value::as_str) == Some("REGISTER_OK");
            let info = self.command("reginfo", "", timeout)?;
            if info.lines().any(|l| l.contains("sip:") && l.contains("OK")) {
                return Ok(());
            }
            if start.elapsed() >= timeout {
                return Err(HarnessError::Timeout {
                    what: format!("baresip to register (reginfo: {info:?})"),
                    waited: timeout,
                });
            }
            if self
                .wait_event(is_ok, "REGISTER_OK", Duration::from_millis(200))
                .is_ok()
            {
                return Ok(());
            }
        }
    }

    /// Sets our published presence (`presence_online` / `presence_offline`; needs
    /// [`BaresipOptions::publish_interval`]).
    pub fn set_presence(&mut self, online: bool, timeout: Duration) -> Result<()> {
        let command = if online {
            "presence_online"
        } else {
            "presence_offline"
        };
        self.command(command, "", timeout).map(|_| ())
    }

    /// The presence status baresip shows for contact `uri` (`Unknown`, `Online`, `Offline` or `Busy`, from the
    /// `contacts` command); `None` when the contact is not listed.
    pub fn contact_presence(&mut self, uri: &str, timeout: Duration) -> Result<Option<String>> {
        let listing = self.command("contacts", "", timeout)?;
        Ok(listing
            .lines()
            .filter(|l| l.contains(uri))
            .find_map(|l| {
                ["Unknown", "Online", "Offline", "Busy"]
                    .into_iter()
                    .find(|s| l.contains(s))
            })
            .map(str::to_string))
    }

    /// Polls [`Baresip::contact_presence`] until contact `uri` shows `status`; returns when it was seen.
    pub fn wait_contact_presence(
        &mut self,
        uri: &str,
        status: &str,
        timeout: Duration,
    ) -> Result<Instant> {
        let start = Instant::now();
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            let seen = self.contact_presence(uri, left.max(Duration::from_millis(500)))?;
            if seen.as_deref() == Some(status) {
                return Ok(Instant::now());
            }
            if start.elapsed() >= timeout {
                return Err(HarnessError::Timeout {
                    what: format!("baresip to show {uri} as {status} (last: {seen:?})"),
                    waited: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The current call's video stream as baresip sees it (`video_debug`); `None` when the call has no video.
    pub fn video_debug(&mut self, timeout: Duration) -> Result<Option<BaresipVideoStats>> {
        Ok(BaresipVideoStats::parse(&self.command(
            "video_debug",
            "",
            timeout,
        )?))
    }

    /// The events received so far and not consumed by a wait.
    pub fn pending_events(&self) -> &[Value] {
        &self.events
    }

    /// Whether baresip is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.is_running()
    }

    /// Its process guard (logs).
    pub fn process(&mut self) -> &mut ChildGuard {
        &mut self.child
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netstrings_round_trip() {
        let framed = netstring(br#"{"a":1}"#);
        assert_eq!(framed, br#"7:{"a":1},"#.to_vec());
        let mut two = framed.clone();
        two.extend_from_slice(b"2:hi,");
        let mut r = &two[..];
        assert_eq!(read_netstring(&mut r).unwrap(), br#"{"a":1}"#.to_vec());
        assert_eq!(read_netstring(&mut r).unwrap(), b"hi".to_vec());
        assert!(read_netstring(&mut &b"x:,"[..]).is_err());
        assert!(read_netstring(&mut &b"3:abc;"[..]).is_err());
    }

    #[test]
    fn video_debug_parses() {
        // baresip 1.0's `video_debug` during a VP8 call with fakevideo.
        let text = "\n--- Video stream ---\n started: yes\n tx: encode: VP8 yuv420p\n     source: fakevideo 352 x 288, fps=15.00 frames=95\n     skipc=0 sendq=0\n     time = 6.266 sec\n rx: decode: VP8 yuv420p\n     vidisp: fakevideo 352 x 288 frames=92\n     n_keyframes=1, n_picup=3\n     time = 6.133 sec\n video dir=sendrecv pt_enc=96\n";
        let s = BaresipVideoStats::parse(text).unwrap();
        assert!(s.started);
        assert_eq!(s.encoder, "VP8");
        assert_eq!(s.decoder, "VP8");
        assert_eq!(s.source_frames, 95);
        assert_eq!(s.decoded_frames, 92);
        assert_eq!((s.decoded_width, s.decoded_height), (352, 288));
        assert_eq!((s.keyframes, s.picture_updates), (1, 3));
        assert_eq!(BaresipVideoStats::parse("no call"), None);
        let before =
            "--- Video stream ---\n rx: decode: none (null)\n     vidisp: none 0 x 0 frames=0\n";
        let s = BaresipVideoStats::parse(before).unwrap();
        assert_eq!(
            (s.decoder.as_str(), s.decoded_frames, s.decoded_width),
            ("none", 0, 0)
        );
    }
}
