//! Launching `linphonec` (Linphone's command-line softphone) with its own config file and driving it over stdin,
//! with WAV files instead of a sound card (`soundcard use files`, `play`, `record`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::error::{HarnessError, IoContext, Result};
use crate::paths::write;
use crate::ports::free_port_block;
use crate::process::{ChildGuard, Stream};

/// How long linphonec may take to start and answer its first command.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Linphone's audio codecs as (mime, rate, channels), all written to the config so that only the chosen ones are
/// enabled (codecs missing from the config would be added enabled).
const CODECS: &[(&str, u32, u32)] = &[
    ("opus", 48000, 2),
    ("speex", 16000, 1),
    ("speex", 8000, 1),
    ("speex", 32000, 1),
    ("PCMU", 8000, 1),
    ("PCMA", 8000, 1),
    ("GSM", 8000, 1),
    ("G722", 8000, 1),
    ("G729", 8000, 1),
    ("L16", 44100, 2),
    ("L16", 44100, 1),
];

/// A registrar account for linphonec.
#[derive(Debug, Clone)]
pub struct LinphoneRegistrar {
    /// The registrar / outbound proxy (UDP).
    pub addr: SocketAddr,
    /// The AoR domain.
    pub domain: String,
    /// Digest password.
    pub password: String,
}

/// How to configure a linphonec instance.
#[derive(Debug, Clone)]
pub struct LinphoneOptions {
    /// The user part of our identity.
    pub user: String,
    /// Register there (none: direct calls only, `sip:user@127.0.0.1:PORT`).
    pub registrar: Option<LinphoneRegistrar>,
    /// Answer incoming calls at once.
    pub auto_answer: bool,
    /// Send this WAV file instead of a microphone.
    pub play: Option<PathBuf>,
    /// Record the received audio to this WAV file.
    pub record: Option<PathBuf>,
    /// Enable only these codecs (mime names, case-insensitive, e.g. `opus`, `PCMU`); empty: Linphone's defaults.
    pub codecs: Vec<String>,
    /// SDES-SRTP (`media_encryption=srtp`, mandatory).
    pub srtp: bool,
    /// Publish our presence through the registrar (`publish=1`; see [`Linphone::set_status`]).
    pub publish: bool,
}

impl LinphoneOptions {
    /// A direct (unregistered) linphonec for `user`.
    pub fn new(user: &str) -> Self {
        LinphoneOptions {
            user: user.into(),
            registrar: None,
            auto_answer: false,
            play: None,
            record: None,
            codecs: Vec::new(),
            srtp: false,
            publish: false,
        }
    }
}

/// A running linphonec, stopped on drop.
pub struct Linphone {
    child: ChildGuard,
    sip_addr: SocketAddr,
    user: String,
    record: Option<PathBuf>,
}

/// Rewrites the RIFF and `data` chunk sizes of a WAV file to what the file really holds. linphonec 5.1 writes the
/// whole file's length as the data size, so strict readers see a truncated file.
pub fn repair_wav_sizes(path: &Path) -> Result<()> {
    let mut bytes = std::fs::read(path).ctx(|| format!("reading {}", path.display()))?;
    let len = bytes.len();
    if len < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(HarnessError::Protocol {
            what: path.display().to_string(),
            detail: "not a RIFF/WAVE file".into(),
        });
    }
    let riff = u32::try_from(len - 8).unwrap_or(u32::MAX);
    bytes[4..8].copy_from_slice(&riff.to_le_bytes());
    let mut at = 12;
    while at + 8 <= len {
        let id = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        let size = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        let body = at + 8;
        if &id == b"data" {
            let real = u32::try_from(len - body).unwrap_or(u32::MAX).min(size);
            bytes[at + 4..at + 8].copy_from_slice(&real.to_le_bytes());
            return write(path, bytes);
        }
        at = body + size as usize + (size as usize & 1);
    }
    Err(HarnessError::Protocol {
        what: path.display().to_string(),
        detail: "no data chunk".into(),
    })
}

fn config(opts: &LinphoneOptions, sip_port: u16, rtp_port: u16, home: &Path) -> String {
    let mut c = format!(
        "[sip]\nsip_port={sip_port}\nsip_tcp_port=0\nsip_tls_port=0\nguess_hostname=0\n\
         contact=sip:{user}@127.0.0.1\nuse_ipv6=0\nipv6_enabled=0\ninc_timeout=30\nin_call_timeout=0\n\
         register_only_when_network_is_up=0\nsupported=replaces\nmedia_encryption={enc}\n\
         media_encryption_mandatory={mand}\ndefault_proxy={proxy}\n\n\
         [rtp]\naudio_rtp_port={rtp_port}\nvideo_rtp_port={video}\ntext_rtp_port={text}\n\
         nortp_timeout=30\naudio_jitt_comp=60\n\n\
         [sound]\necho_cancellation=0\nechocancellation=0\n\n\
         [video]\ndisplay=0\ncapture=0\nautomatically_initiate=0\nautomatically_accept=0\n\n\
         [misc]\nuser_certificates_path={home}/certs\n\n",
        user = opts.user,
        enc = if opts.srtp { "srtp" } else { "none" },
        mand = u8::from(opts.srtp),
        proxy = if opts.registrar.is_some() { 0 } else { -1 },
        video = rtp_port + 2,
        text = rtp_port + 4,
        home = home.display(),
    );
    if let Some(reg) = &opts.registrar {
        c.push_str(&format!(
            "[proxy_0]\nreg_proxy=<sip:{addr};transport=udp>\nreg_route=<sip:{addr};transport=udp;lr>\n\
             reg_identity=sip:{user}@{domain}\nreg_expires=600\nreg_sendregister=1\npublish={publish}\n\
             dial_escape_plus=0\n\n\
             [auth_info_0]\nusername={user}\npasswd={pw}\ndomain={domain}\n\n",
            addr = reg.addr,
            user = opts.user,
            domain = reg.domain,
            pw = reg.password,
            publish = u8::from(opts.publish),
        ));
    }
    for (i, (mime, rate, channels)) in CODECS.iter().enumerate() {
        let enabled = if opts.codecs.is_empty() {
            let off_by_default =
                matches!(*mime, "GSM" | "G722" | "L16") || (*mime == "speex" && *rate == 32000);
            !off_by_default
        } else {
            opts.codecs.iter().any(|c| c.eq_ignore_ascii_case(mime))
        };
        c.push_str(&format!(
            "[audio_codec_{i}]\nmime={mime}\nrate={rate}\nchannels={channels}\nenabled={}\n\n",
            u8::from(enabled)
        ));
    }
    c
}

impl Linphone {
    /// Writes `<dir>/<user>-linphone/linphonerc` (free SIP and RTP ports), starts `linphonec -c` with its own
    /// HOME, switches it to WAV files, sets play/record files and auto-answer, and (with a registrar) waits for the
    /// registration.
    pub fn start(opts: LinphoneOptions, dir: &Path) -> Result<Self> {
        let home = dir.join(format!("{}-linphone", opts.user));
        std::fs::create_dir_all(home.join(".local/share/linphone"))
            .ctx(|| format!("creating {}", home.display()))?;
        let sip_port = free_port_block(1);
        let rtp_port = free_port_block(6);
        let rc = home.join("linphonerc");
        write(&rc, config(&opts, sip_port, rtp_port, &home))?;
        let mut cmd = Command::new("linphonec");
        cmd.arg("-c").arg(&rc).env("HOME", &home);
        let child = ChildGuard::spawn_with_stdin(&format!("linphonec-{}", opts.user), cmd, dir)?;
        let mut lp = Linphone {
            child,
            sip_addr: SocketAddr::from(([127, 0, 0, 1], sip_port)),
            user: opts.user.clone(),
            record: opts.record.clone(),
        };
        lp.send("soundcard use files")?;
        lp.wait_for("Using wav files instead of soundcard", READY_TIMEOUT)?;
        // Otherwise its SDP may name the host's IPv6 address, which our loopback-bound peers cannot reach.
        lp.send("ipv6 disable")?;
        if let Some(play) = &opts.play {
            lp.send(&format!("play {}", play.display()))?;
        }
        if let Some(record) = &opts.record {
            lp.send(&format!("record {}", record.display()))?;
        }
        if opts.auto_answer {
            lp.send("autoanswer enable")?;
            lp.wait_for("Auto answer enabled", READY_TIMEOUT)?;
        }
        if opts.registrar.is_some() {
            lp.wait_registered(READY_TIMEOUT)?;
        } else {
            // The SIP stack listens a moment after the prompt appears; a `ports` round trip covers that.
            lp.send("ports")?;
            lp.wait_for("audio rtp port", READY_TIMEOUT)?;
            std::thread::sleep(Duration::from_millis(700));
        }
        Ok(lp)
    }

    /// Polls `status register` until linphonec reports `registered, identity=…` (it prints nothing by itself
    /// when the registration succeeds).
    pub fn wait_registered(&mut self, timeout: Duration) -> Result<()> {
        let start = std::time::Instant::now();
        let pattern = "registered, identity=";
        loop {
            self.send("status register")?;
            match self.wait_for(pattern, Duration::from_millis(500)) {
                Ok(_) => return Ok(()),
                Err(HarnessError::Timeout { .. }) if start.elapsed() < timeout => {}
                Err(HarnessError::Timeout { .. }) => {
                    return Err(HarnessError::Timeout {
                        what: format!("{} to register", self.child.name()),
                        waited: timeout,
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// linphonec's SIP address (UDP).
    pub fn sip_addr(&self) -> SocketAddr {
        self.sip_addr
    }

    /// The URI that reaches it directly.
    pub fn uri(&self) -> String {
        format!("sip:{}@{}", self.user, self.sip_addr)
    }

    /// Sends one command line.
    pub fn send(&mut self, line: &str) -> Result<()> {
        self.child.send_line(line)
    }

    /// Waits for a stdout line matching `pattern` (see [`crate::process::line_matches`]).
    pub fn wait_for(&mut self, pattern: &str, timeout: Duration) -> Result<String> {
        self.child.wait_for_line(Stream::Stdout, pattern, timeout)
    }

    /// Calls `uri` and waits until the call is connected.
    pub fn call(&mut self, uri: &str, timeout: Duration) -> Result<()> {
        self.send(&format!("call {uri}"))?;
        self.wait_for("Call .* connected", timeout).map(|_| ())
    }

    /// Waits until a call is connected (e.g. an auto-answered incoming one).
    pub fn wait_connected(&mut self, timeout: Duration) -> Result<()> {
        self.wait_for("Call .* connected", timeout).map(|_| ())
    }

    /// Waits until a call ended.
    pub fn wait_ended(&mut self, timeout: Duration) -> Result<()> {
        self.wait_for("Call .* ended", timeout).map(|_| ())
    }

    /// Hangs up the current call.
    pub fn terminate(&mut self) -> Result<()> {
        self.send("terminate")
    }

    /// Quits linphonec (finishing its record file, whose sizes are then repaired, see [`repair_wav_sizes`]) and
    /// waits for it to exit.
    pub fn quit(&mut self, timeout: Duration) -> Result<()> {
        self.send("quit")?;
        let status = self.child.wait_exit(timeout)?;
        if status.success() {
            match &self.record {
                Some(rec) if rec.is_file() => repair_wav_sizes(rec),
                _ => Ok(()),
            }
        } else {
            Err(HarnessError::Tool {
                what: "linphonec".into(),
                detail: format!("exited with {status}"),
            })
        }
    }

    /// Adds a friend whose presence linphonec subscribes to (`friend add`); it prints the friend's state changes.
    pub fn add_friend(&mut self, name: &str, uri: &str) -> Result<()> {
        self.send(&format!("friend add \"{name}\" {uri}"))
    }

    /// Sets our presence (`status online|busy|away|offline|…`), published when [`LinphoneOptions::publish`] is on.
    pub fn set_status(&mut self, status: &str) -> Result<()> {
        self.send(&format!("status {status}"))
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
    fn wav_sizes_are_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.wav");
        let mut b = b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0".to_vec();
        b.extend_from_slice(&[1, 0, 1, 0, 0x40, 0x1f, 0, 0, 0x80, 0x3e, 0, 0, 2, 0, 16, 0]);
        b.extend_from_slice(b"data");
        b.extend_from_slice(&1000u32.to_le_bytes());
        b.extend_from_slice(&[0u8; 10]);
        std::fs::write(&p, &b).unwrap();
        repair_wav_sizes(&p).unwrap();
        let fixed = std::fs::read(&p).unwrap();
        assert_eq!(&fixed[4..8], &(fixed.len() as u32 - 8).to_le_bytes());
        assert_eq!(&fixed[40..44], &10u32.to_le_bytes());
        std::fs::write(&p, b"nope").unwrap();
        assert!(repair_wav_sizes(&p).is_err());
    }

    #[test]
    fn config_enables_only_the_chosen_codecs() {
        let mut opts = LinphoneOptions::new("lp");
        opts.codecs = vec!["pcmu".into()];
        opts.srtp = true;
        let c = config(&opts, 5000, 6000, Path::new("/tmp/x"));
        assert!(c.contains("sip_port=5000\n"));
        assert!(c.contains("audio_rtp_port=6000\n"));
        assert!(c.contains("media_encryption=srtp\n"));
        assert!(c.contains("mime=PCMU\nrate=8000\nchannels=1\nenabled=1\n"));
        assert!(c.contains("mime=opus\nrate=48000\nchannels=2\nenabled=0\n"));
        assert!(c.contains("default_proxy=-1\n"));
        assert!(!c.contains("[proxy_0]"));
    }
}
