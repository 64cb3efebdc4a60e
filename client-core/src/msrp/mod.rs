//! MSRP sessions (RFC 4975): session-mode chat and file transfer (RFC 5547) over TCP/TLS, via
//! relays (RFC 4976).
//!
//! A session is an INVITE dialog whose SDP has one `m=message PORT TCP/MSRP *` line (our `a=path`,
//! `a=accept-types`, `a=setup` per RFC 6135: the offerer offers `actpass` and the answerer takes
//! `passive` on direct connections; with a relay both connect to their relay and say `active`).
//! With [`Account::msrp_relay`] set, the client connects to the relay, AUTHenticates with the SIP
//! account's digest credentials and puts the relay's Use-Path before its own URI in `a=path`.
//!
//! - [`start_chat`]: INVITE a chat session; [`MsrpSession::send_text`] sends text/plain SENDs.
//! - [`send_file`]: offer a file (`sendonly`, `a=file-selector` with SHA-1); it is streamed from
//!   disk in chunks from where the receiver's `a=file-range` says, and a broken connection makes
//!   the sender offer again (up to [`MsrpOptions::retries`] times with backoff), so the transfer
//!   resumes by itself.
//! - [`offer_of`] tells an incoming INVITE's MSRP offer apart; [`accept`] answers it. A file is
//!   written to `<save-dir>/<name>.part` (with a `.part.meta` sidecar naming the transfer) through
//!   the reassembler, never held in memory, and renamed once complete and hash-checked; the same
//!   file offered again resumes from the bytes already on disk.
//!
//! Progress and results arrive as [`MsrpEvent`]s from [`MsrpSession::next_event`].

mod conn;
mod file;
mod relay;
mod session;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tandem_proto::msg::Uri;
use tandem_proto::msrp::MsrpUri;
use tandem_proto::msrp::sdp::{FileSelector, MsrpMedia};
use tandem_proto::sdp::SessionDescription;
use tokio::sync::mpsc;

use crate::account::Account;
use crate::call::IncomingCall;
use crate::error::UaError;
use crate::ua::UserAgent;

pub use file::{FileInfo, guess_media_type, safe_file_name};
pub use relay::parse_relay;

/// Default chunk size of our SENDs.
pub const DEFAULT_CHUNK_SIZE: usize = 128 * 1024;

/// Why an MSRP session could not be set up or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MsrpError {
    /// The INVITE failed (rejected, authentication, timeout, …).
    #[error("session setup failed: {0}")]
    Sip(#[from] UaError),
    /// Invalid options, relay URI or file.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Connecting, TLS, or the connection broke.
    #[error("MSRP network error: {0}")]
    Network(String),
    /// The relay refused or misbehaved.
    #[error("MSRP relay error: {0}")]
    Relay(String),
    /// The relay refused our credentials.
    #[error("MSRP relay authentication failed")]
    RelayAuth,
    /// The peer's SDP or MSRP traffic is unusable.
    #[error("MSRP protocol error: {0}")]
    Protocol(String),
    /// The peer refused a message or the file with an MSRP status.
    #[error("refused by the peer with {status}")]
    Refused {
        /// The MSRP status code.
        status: u16,
    },
    /// Reading or writing a file failed.
    #[error("file error: {0}")]
    Io(String),
    /// The session has ended.
    #[error("the MSRP session has ended")]
    Closed,
}

/// Options of MSRP sessions.
#[derive(Debug, Clone)]
pub struct MsrpOptions {
    /// TLS client configuration for `msrps:` relays and peers (e.g. trusting the lab CA).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Where received files go (the current directory by default).
    pub save_dir: PathBuf,
    /// Largest SEND chunk we produce.
    pub chunk_size: usize,
    /// Give up when the INVITE is not answered within this time.
    pub answer_timeout: Duration,
    /// How often a file sender offers again after its connection broke.
    pub retries: u32,
    /// Largest chat message accepted.
    pub max_message_size: u64,
    /// Largest file accepted.
    pub max_file_size: u64,
}

impl Default for MsrpOptions {
    fn default() -> Self {
        MsrpOptions {
            tls: None,
            save_dir: PathBuf::from("."),
            chunk_size: DEFAULT_CHUNK_SIZE,
            answer_timeout: Duration::from_secs(60),
            retries: 3,
            max_message_size: 1024 * 1024,
            max_file_size: 16 * 1024 * 1024 * 1024,
        }
    }
}

/// Progress of an MSRP session, in order; the last one is `Closed` (after `Failed` on errors).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MsrpEvent {
    /// The MSRP connection is up (our first SEND was answered, or the peer's first request came).
    Connected,
    /// A complete chat message.
    ChatMessage {
        /// The peer (SIP URI).
        from: String,
        /// Its Content-Type (the inner one of message/cpim).
        content_type: String,
        /// The text (lossy UTF-8).
        text: String,
    },
    /// A chat message of ours was refused.
    SendFailed {
        /// Its Message-ID.
        message_id: String,
        /// The MSRP status.
        status: u16,
    },
    /// File bytes sent (acknowledged) or received so far.
    Progress {
        /// The `a=file-transfer-id`.
        transfer_id: String,
        /// Bytes so far (including bytes kept from an earlier, interrupted attempt).
        bytes: u64,
        /// The file size.
        total: u64,
    },
    /// A received file is complete, hash-checked and in place.
    FileReceived {
        /// Where it is.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// Its SHA-256 (hex).
        sha256: String,
    },
    /// The receiver confirmed the whole file (success REPORT for the last byte).
    FileSent {
        /// The file size.
        size: u64,
        /// Its SHA-256 (hex).
        sha256: String,
    },
    /// The transfer continues from this 0-based byte: the receiver had the part before it.
    Resumed {
        /// The first byte sent (or received) in this attempt.
        from_byte: u64,
    },
    /// The file sender's connection broke; it offers the file again.
    Retrying {
        /// The attempt about to start (2 for the first retry).
        attempt: u32,
        /// What went wrong.
        reason: String,
    },
    /// The session failed.
    Failed {
        /// Why.
        reason: String,
    },
    /// The session is over (BYE sent or received).
    Closed,
}

/// What an incoming INVITE offers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MsrpOffer {
    /// A chat session.
    Chat,
    /// A file (RFC 5547 push: the offerer sends).
    File {
        /// The offered file's name, type, size and hashes.
        selector: FileSelector,
        /// Its `a=file-transfer-id`.
        transfer_id: Option<String>,
    },
    /// A request for one of our files (RFC 5547 pull); not supported, [`accept`] refuses it (488).
    FileRequest {
        /// The file asked for.
        selector: FileSelector,
    },
}

/// Commands from a session handle to its task.
#[derive(Debug)]
pub(crate) enum Command {
    Send { content_type: String, body: Bytes },
    Close,
}

/// A running MSRP session (chat, or one file transfer); dropping it ends the session.
#[derive(Debug)]
pub struct MsrpSession {
    peer: String,
    cmds: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedReceiver<MsrpEvent>,
}

impl MsrpSession {
    /// The peer's SIP URI.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The next event; `None` after `Closed` was taken.
    pub async fn next_event(&mut self) -> Option<MsrpEvent> {
        self.events.recv().await
    }

    /// Sends a text/plain message (chunked when long).
    pub fn send_text(&self, text: &str) -> Result<(), MsrpError> {
        self.send("text/plain", Bytes::copy_from_slice(text.as_bytes()))
    }

    /// Sends a message of any type the peer accepts.
    pub fn send(&self, content_type: &str, body: Bytes) -> Result<(), MsrpError> {
        self.cmds
            .send(Command::Send {
                content_type: content_type.to_owned(),
                body,
            })
            .map_err(|_| MsrpError::Closed)
    }

    /// Ends the session (BYE); `Closed` follows.
    pub fn close(&self) {
        let _ = self.cmds.send(Command::Close);
    }
}

impl Drop for MsrpSession {
    fn drop(&mut self) {
        let _ = self.cmds.send(Command::Close);
    }
}

/// The first usable `m=message` line of an SDP, with its index.
pub(crate) fn msrp_media(sdp: &SessionDescription) -> Option<MsrpMedia> {
    sdp.media
        .iter()
        .filter(|m| m.media.eq_ignore_ascii_case("message") && m.port != 0)
        .find_map(|m| MsrpMedia::from_media(m).ok())
        .filter(|m| !m.path.is_empty())
}

/// What an incoming INVITE offers, when it is an MSRP session (`None` for audio calls and for
/// INVITEs without an offer).
pub fn offer_of(incoming: &IncomingCall) -> Option<MsrpOffer> {
    let body = &incoming.request().body;
    if body.is_empty() {
        return None;
    }
    let sdp = SessionDescription::parse_bytes(body).ok()?;
    let media = msrp_media(&sdp)?;
    Some(match media.file {
        Some(f) if media.direction.as_deref() == Some("sendonly") => MsrpOffer::File {
            selector: f.selector,
            transfer_id: f.transfer_id,
        },
        Some(f) => MsrpOffer::FileRequest {
            selector: f.selector,
        },
        None => MsrpOffer::Chat,
    })
}

/// Starts a chat session with `target`: INVITE, MSRP connection (direct or via the account's
/// relay). Returns once the INVITE is sent; `Connected` follows when the session is up.
pub async fn start_chat(
    ua: &UserAgent,
    account: &Account,
    target: Uri,
    options: MsrpOptions,
) -> Result<MsrpSession, MsrpError> {
    let relay = account.msrp_relay.as_deref().map(parse_relay).transpose()?;
    account.aor()?;
    let (ctx, cmd_rx, handle) = new_session(ua, account, relay, options, target.to_string());
    tokio::spawn(session::run_outgoing_chat(ctx, target, cmd_rx));
    Ok(handle)
}

/// Sends a file to `target` (RFC 5547 push). `info` comes from [`FileInfo::from_path`]. Returns
/// at once; `Progress`, `Resumed`, `Retrying`, then `FileSent` (the receiver's success REPORT for
/// the last byte) or `Failed`, then `Closed` follow.
pub async fn send_file(
    ua: &UserAgent,
    account: &Account,
    target: Uri,
    info: FileInfo,
    options: MsrpOptions,
) -> Result<MsrpSession, MsrpError> {
    let relay = account.msrp_relay.as_deref().map(parse_relay).transpose()?;
    account.aor()?;
    let (ctx, cmd_rx, handle) = new_session(ua, account, relay, options, target.to_string());
    tokio::spawn(session::run_file_sender(ctx, target, info, cmd_rx));
    Ok(handle)
}

/// Accepts an incoming MSRP offer (see [`offer_of`]): a chat, or a file saved under
/// [`MsrpOptions::save_dir`]. Offers we cannot take are refused here (488) with an error.
pub async fn accept(
    ua: &UserAgent,
    incoming: IncomingCall,
    account: &Account,
    options: MsrpOptions,
) -> Result<MsrpSession, MsrpError> {
    let relay = match account.msrp_relay.as_deref().map(parse_relay).transpose() {
        Ok(r) => r,
        Err(e) => {
            let _ = incoming.reject(500);
            return Err(e);
        }
    };
    let peer = incoming.from().map(|u| u.to_string()).unwrap_or_default();
    let (ctx, cmd_rx, handle) = new_session(ua, account, relay, options, peer);
    let prepared = session::prepare_incoming(&ctx, incoming).await?;
    tokio::spawn(session::run_incoming(ctx, prepared, cmd_rx));
    Ok(handle)
}

/// A session's task context, the command receiver its task reads, and the handle given to the
/// caller, wired to each other.
fn new_session(
    ua: &UserAgent,
    account: &Account,
    relay: Option<MsrpUri>,
    options: MsrpOptions,
    peer: String,
) -> (
    session::Context,
    mpsc::UnboundedReceiver<Command>,
    MsrpSession,
) {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let ctx = session::Context {
        ua: ua.clone(),
        account: account.clone(),
        relay,
        options,
        events: ev_tx,
        peer: peer.clone(),
    };
    let handle = MsrpSession {
        peer,
        cmds: cmd_tx,
        events: ev_rx,
    };
    (ctx, cmd_rx, handle)
}

/// The relay URI of an account, parsed (for callers that want to validate it early).
pub fn account_relay(account: &Account) -> Result<Option<MsrpUri>, MsrpError> {
    account.msrp_relay.as_deref().map(parse_relay).transpose()
}

/// Computes a [`FileInfo`] on a blocking thread.
pub async fn file_info(path: &Path) -> Result<FileInfo, MsrpError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || FileInfo::from_path(&path))
        .await
        .map_err(|e| MsrpError::Io(format!("hashing task failed: {e}")))?
}
