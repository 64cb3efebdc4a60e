//! The task of one MSRP session: INVITE offer/answer with an `m=message` line, the MSRP
//! connection (direct or through our relay), and the SEND/REPORT traffic of a chat or a file.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tandem_proto::msg::Uri;
use tandem_proto::msrp::message::BYTE_RANGE;
use tandem_proto::msrp::report::{report, response_for, success_report};
use tandem_proto::msrp::sdp::{FileAttributes, FileRange, MsrpMedia, Setup};
use tandem_proto::msrp::{
    ByteRange, ChunkSink, Chunker, Completed, Continuation, FailureReport, Message, Method,
    MsrpUri, Progress, Reassembler, ReassemblyLimits, Request, Response, StatusHeader,
    new_message_id,
};
use tandem_proto::sdp::{Connection as SdpConnection, Origin, SessionDescription};
use tandem_proto::simple::cpim::CpimMessage;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until, timeout};

use super::conn::Connection;
use super::file::{FileInfo, PartFile, PartLock, PartSink, lock_part};
use super::relay::{self, RelayBinding, uri_host};
use super::{Command, MsrpError, MsrpEvent, MsrpOptions, msrp_media};
use crate::account::Account;
use crate::call::{AnswerOptions, Call, CallEvent, CallOptions, IncomingCall};
use crate::media::MediaOptions;
use crate::ua::UserAgent;

/// Accept-types of a chat session.
const CHAT_TYPES: &[&str] = &["text/plain", "message/cpim", "text/html"];
/// Unanswered MSRP transactions allowed in flight while sending a file.
const WINDOW: usize = 32;
/// Time for a transaction response (RFC 4975 suggests 30 s).
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Time for the success REPORT once every chunk was answered (the receiver hashes the file).
const REPORT_TIMEOUT: Duration = Duration::from_secs(120);
/// Time for a peer to connect to our listener.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Time for the BYE to be answered at the end.
const BYE_WAIT: Duration = Duration::from_secs(3);
/// Interval of the empty SENDs that keep a relayed connection from idling out.
const KEEPALIVE: Duration = Duration::from_secs(60);
/// Largest synthetic chunk used to account for bytes kept from an earlier attempt.
const PREFIX_PIECE: usize = 1024 * 1024;

/// Everything a session task needs.
pub(crate) struct Context {
    pub ua: UserAgent,
    pub account: Account,
    pub relay: Option<MsrpUri>,
    pub options: MsrpOptions,
    pub events: mpsc::UnboundedSender<MsrpEvent>,
    pub peer: String,
}

impl Context {
    fn emit(&self, ev: MsrpEvent) {
        let _ = self.events.send(ev);
    }
}

/// Where our end of the session is, before the peer's SDP is known.
struct LocalEnd {
    relay: Option<RelayBinding>,
    listener: Option<TcpListener>,
    /// Our URI (last in our path).
    local: MsrpUri,
    /// Our whole `a=path`.
    path: Vec<MsrpUri>,
}

fn random_token(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// Binds our end: AUTH at the relay, or a listener on the SIP address.
async fn local_end(ctx: &Context, ip: IpAddr) -> Result<LocalEnd, MsrpError> {
    let session_id = random_token(20);
    if let Some(relay_uri) = &ctx.relay {
        let binding = relay::bind(
            relay_uri,
            &ctx.account,
            ctx.options.tls.as_ref(),
            &session_id,
        )
        .await?;
        tracing::debug!(relay = %relay_uri, expires = ?binding.expires, peer = %binding.conn.peer, "MSRP relay path granted");
        let local = binding.local.clone();
        let mut path = binding.use_path.clone();
        path.push(local.clone());
        return Ok(LocalEnd {
            relay: Some(binding),
            listener: None,
            local,
            path,
        });
    }
    let listener = TcpListener::bind((ip, 0))
        .await
        .map_err(|e| MsrpError::Network(format!("cannot listen for MSRP: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| MsrpError::Network(e.to_string()))?
        .port();
    let local = MsrpUri::new(false, &uri_host(ip), port, &session_id);
    Ok(LocalEnd {
        relay: None,
        listener: Some(listener),
        path: vec![local.clone()],
        local,
    })
}

/// A session description with one MSRP media line.
fn build_sdp(ip: IpAddr, media: &MsrpMedia) -> SessionDescription {
    let conn = SdpConnection::from_ip(ip);
    SessionDescription {
        origin: Origin {
            username: "-".to_owned(),
            session_id: u64::from(rand::random::<u32>()),
            session_version: 0,
            net_type: "IN".to_owned(),
            addr_type: conn.addr_type.clone(),
            address: ip.to_string(),
        },
        session_name: "-".to_owned(),
        connection: Some(conn),
        bandwidths: Vec::new(),
        times: vec![(0, 0)],
        attributes: Vec::new(),
        media: vec![media.to_media(None)],
        other_fields: Vec::new(),
    }
}

/// Our media line.
fn our_media(end: &LocalEnd, setup: Setup, accept: &[&str]) -> MsrpMedia {
    MsrpMedia {
        port: end.local.port_or_default(),
        tls: end.local.secure,
        path: end.path.clone(),
        accept_types: accept.iter().map(|s| (*s).to_owned()).collect(),
        accept_wrapped_types: if accept.contains(&"message/cpim") {
            vec!["*".to_owned()]
        } else {
            Vec::new()
        },
        max_size: None,
        setup: Some(setup),
        direction: None,
        file: None,
    }
}

/// The connected MSRP side of a session.
struct Link {
    conn: Connection,
    local: MsrpUri,
    to_path: Vec<MsrpUri>,
    /// We opened the connection (we send the first SEND).
    active: bool,
    /// Our relay authorization, kept fresh.
    refresher: Option<relay::Refresher>,
}

/// Connects per the negotiated roles: through our relay, to the peer's first hop, or by
/// accepting the peer's connection.
async fn connect(
    ctx: &Context,
    end: LocalEnd,
    peer: &MsrpMedia,
    we_listen: bool,
) -> Result<Link, MsrpError> {
    if let Some(binding) = end.relay {
        let mut to_path = binding.use_path.clone();
        to_path.extend(peer.path.iter().cloned());
        return Ok(Link {
            conn: binding.conn,
            local: end.local,
            to_path,
            active: true,
            refresher: Some(binding.refresher),
        });
    }
    if !we_listen {
        let first = peer
            .path
            .first()
            .ok_or_else(|| MsrpError::Protocol("the peer's a=path is empty".into()))?;
        let conn = Connection::connect(first, ctx.options.tls.as_ref()).await?;
        return Ok(Link {
            conn,
            local: end.local,
            to_path: peer.path.clone(),
            active: true,
            refresher: None,
        });
    }
    let listener = end
        .listener
        .ok_or_else(|| MsrpError::Network("no MSRP listener".into()))?;
    let (tcp, from) = timeout(ACCEPT_TIMEOUT, listener.accept())
        .await
        .map_err(|_| MsrpError::Network("the peer did not connect".into()))?
        .map_err(|e| MsrpError::Network(format!("accepting the MSRP connection: {e}")))?;
    tracing::debug!(%from, "MSRP peer connected");
    Ok(Link {
        conn: Connection::accepted(tcp)?,
        local: end.local,
        to_path: peer.path.clone(),
        active: false,
        refresher: None,
    })
}

/// Whether we (the offerer, on a direct connection) wait for the answerer to connect.
fn offerer_listens(answer: &MsrpMedia) -> bool {
    answer.path.len() == 1 && answer.setup == Some(Setup::Active)
}

/// Places the INVITE with our SDP and waits for the answer's MSRP media.
async fn invite(
    ctx: &Context,
    target: Uri,
    sdp: SessionDescription,
) -> Result<(Call, MsrpMedia), MsrpError> {
    let options = CallOptions {
        timeout: Some(ctx.options.answer_timeout),
        media: MediaOptions {
            session_sdp: Some(sdp),
            ..MediaOptions::default()
        },
    };
    let mut call = ctx.ua.call(&ctx.account, target, options).await?;
    loop {
        match call.next_event().await {
            Some(CallEvent::Answered { .. }) => break,
            Some(CallEvent::Failed(e)) => return Err(MsrpError::Sip(e)),
            Some(CallEvent::Ended { .. }) | None => {
                return Err(MsrpError::Protocol(
                    "the session ended before the answer".into(),
                ));
            }
            Some(_) => {}
        }
    }
    let answer = call
        .media()
        .remote_sdp
        .as_ref()
        .and_then(msrp_media)
        .ok_or_else(|| {
            call.hangup();
            MsrpError::Protocol("the answer has no usable m=message line".into())
        })?;
    Ok((call, answer))
}

/// Why our opening SEND was refused, in words.
fn bind_refused(status: u16, hops: usize) -> String {
    if status == 481 && hops > 1 {
        format!(
            "the peer refused our first SEND with {status}: a relay on the path cannot reach \
             the other end (use an MSRP relay on both sides)"
        )
    } else {
        format!("the peer refused our first SEND with {status}")
    }
}

/// How a session loop ended.
enum End {
    /// BYE sent or received, or the file is done.
    Closed,
    /// The connection broke or a transaction timed out (a file sender retries).
    Broken(String),
    /// Fatal.
    Failed(String),
}

/// A transaction of ours waiting for its response.
enum Pending {
    Bind,
    /// A refreshing AUTH to our relay (`answered`: it carried credentials for a 401).
    Auth {
        answered: bool,
    },
    Chat {
        message_id: String,
    },
    FileChunk {
        end: u64,
    },
}

/// The file being sent in this attempt.
struct Outgoing {
    info: FileInfo,
    transfer_id: String,
    file: std::fs::File,
    chunker: Chunker,
    acked: u64,
    all_acked: bool,
    report_deadline: Option<Instant>,
    buf: Vec<u8>,
}

/// The file being received.
struct Receiving {
    part: PartFile,
    /// The part file, opened before we answered (taken by the reassembler's sink).
    file: Option<std::fs::File>,
    transfer_id: String,
    keep: u64,
    message_id: Option<String>,
    lock: PartLock,
}

/// The SEND/REPORT side of a connected session.
struct Session<'a> {
    ctx: &'a Context,
    link: Link,
    rng: StdRng,
    reassembler: Reassembler,
    pending: HashMap<String, (Pending, Instant)>,
    connected: bool,
    outgoing: Option<Outgoing>,
    receiving: Option<Receiving>,
    file_done: bool,
    /// A 401 to a refreshing AUTH, to answer.
    auth_challenge: Option<Vec<tandem_proto::auth::Challenge>>,
}

impl<'a> Session<'a> {
    fn new(ctx: &'a Context, link: Link, mut receiving: Option<Receiving>) -> Session<'a> {
        let mut limits = ReassemblyLimits {
            max_message_size: ctx.options.max_message_size,
            ..ReassemblyLimits::default()
        };
        let mut reassembler = Reassembler::new(limits);
        if let Some(r) = receiving.as_mut() {
            limits.max_message_size = ctx.options.max_file_size.max(r.part.meta.size);
            limits.max_messages = 4;
            let mut file = r.file.take();
            let keep = r.keep;
            let expected = r.part.meta.size;
            reassembler = Reassembler::new(limits).with_sink_factory(Box::new(move |chunk| {
                let total = chunk
                    .headers
                    .byte_range()
                    .ok()
                    .flatten()
                    .and_then(|b| b.total);
                if total != Some(expected) {
                    return Ok(None);
                }
                match file.take() {
                    Some(f) => Ok(Some(Box::new(PartSink::new(f, keep)) as Box<dyn ChunkSink>)),
                    None => Err(std::io::Error::other("the file is already being received")),
                }
            }));
        }
        Session {
            ctx,
            link,
            rng: StdRng::from_rng(&mut rand::rng()),
            reassembler,
            pending: HashMap::new(),
            connected: false,
            outgoing: None,
            receiving,
            file_done: false,
            auth_challenge: None,
        }
    }

    fn our_path(&self) -> Vec<MsrpUri> {
        vec![self.link.local.clone()]
    }

    async fn write(&mut self, bytes: Vec<u8>) -> Result<(), End> {
        self.link
            .conn
            .send(bytes)
            .await
            .map_err(|e| End::Broken(e.to_string()))
    }

    fn mark_connected(&mut self) {
        if !self.connected {
            self.connected = true;
            self.ctx.emit(MsrpEvent::Connected);
        }
    }

    /// The empty SEND an active endpoint opens with (RFC 4975 §7.1.1).
    async fn send_bind(&mut self) -> Result<(), End> {
        let message_id = new_message_id(&mut self.rng);
        let chunker = Chunker::new(
            &self.link.to_path,
            &self.our_path(),
            &message_id,
            "text/plain",
            Some(0),
            1,
        )
        .with_reports(Some(false), Some(FailureReport::Yes));
        let mut req = chunker
            .split(&mut self.rng, b"")
            .map_err(|e| End::Failed(e.to_string()))?
            .into_iter()
            .next()
            .ok_or_else(|| End::Failed("no bind chunk".into()))?;
        // No body at all: nothing for the peer to show.
        req.body = None;
        req.headers.remove("Content-Type");
        self.pending.insert(
            req.transaction_id.clone(),
            (Pending::Bind, Instant::now() + TRANSACTION_TIMEOUT),
        );
        self.write(req.to_bytes()).await
    }

    async fn send_message(&mut self, content_type: &str, body: &[u8]) -> Result<(), End> {
        let message_id = new_message_id(&mut self.rng);
        let chunks = Chunker::new(
            &self.link.to_path,
            &self.our_path(),
            &message_id,
            content_type,
            Some(body.len() as u64),
            self.ctx.options.chunk_size,
        )
        .with_reports(Some(false), Some(FailureReport::Yes))
        .split(&mut self.rng, body)
        .map_err(|e| End::Failed(e.to_string()))?;
        for req in chunks {
            self.pending.insert(
                req.transaction_id.clone(),
                (
                    Pending::Chat {
                        message_id: message_id.clone(),
                    },
                    Instant::now() + TRANSACTION_TIMEOUT,
                ),
            );
            self.write(req.to_bytes()).await?;
        }
        Ok(())
    }

    async fn respond(&mut self, req: &Request, status: u16) -> Result<(), End> {
        match response_for(req, status) {
            Ok(Some(r)) => self.write(r.to_bytes()).await,
            Ok(None) => Ok(()),
            Err(e) => {
                tracing::debug!(error = %e, "cannot answer an MSRP request");
                Ok(())
            }
        }
    }

    /// Handles one request from the peer; `Some(end)` ends the session.
    async fn on_request(&mut self, req: Request) -> Result<Option<End>, End> {
        if let Err(e) = req.validate() {
            self.respond(&req, 400).await?;
            tracing::debug!(error = %e, "invalid MSRP request");
            return Ok(None);
        }
        let ours = tandem_proto::msrp::relay::addressed_to(&req, &self.link.local).unwrap_or(false);
        if !ours {
            self.respond(&req, 481).await?;
            return Ok(None);
        }
        self.mark_connected();
        match req.method {
            Method::Send => self.on_send(req).await,
            Method::Report => Ok(self.on_report(&req)),
            _ => {
                self.respond(&req, 501).await?;
                Ok(None)
            }
        }
    }

    async fn on_send(&mut self, req: Request) -> Result<Option<End>, End> {
        if req.body_bytes().is_empty() && req.headers.content_type().is_none() {
            // The peer's opening SEND.
            self.respond(&req, 200).await?;
            return Ok(None);
        }
        self.account_kept_prefix(&req);
        let progress = match self.reassembler.push(&req) {
            Ok(p) => p,
            Err(e) => {
                self.respond(&req, e.status_code()).await?;
                return Ok(None);
            }
        };
        self.respond(&req, 200).await?;
        match progress {
            Progress::Partial {
                message_id,
                received,
                total,
            } => {
                if let Some(r) = &self.receiving
                    && r.message_id.as_deref() == Some(message_id.as_str())
                {
                    self.ctx.emit(MsrpEvent::Progress {
                        transfer_id: r.transfer_id.clone(),
                        bytes: received,
                        total: total.unwrap_or(r.part.meta.size),
                    });
                }
                Ok(None)
            }
            Progress::Complete(done) => self.on_complete(done).await,
            _ => Ok(None),
        }
    }

    /// Before the first chunk of a resumed file, tells the reassembler about the bytes already
    /// on disk (synthetic chunks the part sink skips), so the message completes.
    fn account_kept_prefix(&mut self, req: &Request) {
        let Some(r) = self.receiving.as_mut() else {
            return;
        };
        if r.message_id.is_some() {
            return;
        }
        let total = req
            .headers
            .byte_range()
            .ok()
            .flatten()
            .and_then(|b| b.total);
        if total != Some(r.part.meta.size) {
            return;
        }
        let Some(id) = req.headers.message_id() else {
            return;
        };
        r.message_id = Some(id.to_owned());
        let keep = r.keep;
        if keep == 0 {
            return;
        }
        let zeros = Bytes::from(vec![0u8; PREFIX_PIECE]);
        let mut pos = 0u64;
        while pos < keep {
            let len = (keep - pos).min(PREFIX_PIECE as u64);
            let mut piece = req.clone();
            piece.headers.set(
                BYTE_RANGE,
                ByteRange {
                    start: pos + 1,
                    end: Some(pos + len),
                    total,
                }
                .to_string(),
            );
            piece.body = Some(zeros.slice(..usize::try_from(len).unwrap_or(PREFIX_PIECE)));
            piece.continuation = Continuation::More;
            if let Err(e) = self.reassembler.push(&piece) {
                tracing::warn!(error = %e, "cannot account for the kept part of the file");
                return;
            }
            pos += len;
        }
    }

    async fn on_complete(&mut self, done: Completed) -> Result<Option<End>, End> {
        let is_file = self
            .receiving
            .as_ref()
            .is_some_and(|r| r.message_id.as_deref() == Some(done.message_id.as_str()));
        if !is_file {
            let body = done.body.clone().unwrap_or_default();
            let ct = done.content_type().unwrap_or("text/plain").to_owned();
            let (content_type, text) = if ct.to_ascii_lowercase().starts_with("message/cpim") {
                match CpimMessage::parse(&body) {
                    Ok(m) => (
                        m.content_type.unwrap_or_else(|| "text/plain".into()),
                        String::from_utf8_lossy(&m.body).into_owned(),
                    ),
                    Err(_) => (ct, String::from_utf8_lossy(&body).into_owned()),
                }
            } else {
                (ct, String::from_utf8_lossy(&body).into_owned())
            };
            self.ctx.emit(MsrpEvent::ChatMessage {
                from: self.ctx.peer.clone(),
                content_type,
                text,
            });
            if let Ok(Some(rep)) = success_report(&mut self.rng, &done) {
                self.write(rep.to_bytes()).await?;
            }
            return Ok(None);
        }
        let Some(r) = &self.receiving else {
            return Ok(None);
        };
        self.ctx.emit(MsrpEvent::Progress {
            transfer_id: r.transfer_id.clone(),
            bytes: done.total,
            total: done.total,
        });
        match r.part.finish() {
            Ok((path, size, sha256)) => {
                if let Ok(Some(rep)) = success_report(&mut self.rng, &done) {
                    self.write(rep.to_bytes()).await?;
                }
                self.file_done = true;
                self.ctx
                    .emit(MsrpEvent::FileReceived { path, size, sha256 });
                Ok(None)
            }
            Err(e) => {
                let range = ByteRange {
                    start: 1,
                    end: Some(done.total),
                    total: Some(done.total),
                };
                if let Ok(rep) = report(&mut self.rng, &done.headers, range, StatusHeader::new(400))
                {
                    self.write(rep.to_bytes()).await?;
                }
                Ok(Some(End::Failed(e.to_string())))
            }
        }
    }

    fn on_report(&mut self, req: &Request) -> Option<End> {
        let Some(out) = &self.outgoing else {
            return None;
        };
        if req.headers.message_id() != Some(out.chunker.message_id()) {
            return None;
        }
        let status = req.headers.status().ok().flatten();
        let range = req.headers.byte_range().ok().flatten();
        match status {
            Some(s) if s.code == 200 => {
                let complete = range.is_some_and(|b| b.start <= 1 && b.end == Some(out.info.size))
                    || out.info.size == 0;
                if complete {
                    self.ctx.emit(MsrpEvent::FileSent {
                        size: out.info.size,
                        sha256: out.info.sha256.clone(),
                    });
                    return Some(End::Closed);
                }
                None
            }
            Some(s) => Some(End::Failed(format!(
                "the receiver reported status {} for the file",
                s.code
            ))),
            None => None,
        }
    }

    fn on_response(&mut self, r: Response) -> Option<End> {
        let (what, _) = self.pending.remove(&r.transaction_id)?;
        match what {
            Pending::Auth { answered } => self.on_auth_response(&r, answered),
            Pending::Bind => {
                if r.status == 200 {
                    self.mark_connected();
                    None
                } else {
                    Some(End::Failed(bind_refused(r.status, self.link.to_path.len())))
                }
            }
            Pending::Chat { message_id } => {
                self.mark_connected();
                if r.status != 200 {
                    self.ctx.emit(MsrpEvent::SendFailed {
                        message_id,
                        status: r.status,
                    });
                }
                None
            }
            Pending::FileChunk { end } => {
                self.mark_connected();
                let out = self.outgoing.as_mut()?;
                match r.status {
                    200 => {
                        if end > out.acked {
                            out.acked = end;
                            self.ctx.emit(MsrpEvent::Progress {
                                transfer_id: out.transfer_id.clone(),
                                bytes: out.acked,
                                total: out.info.size,
                            });
                        }
                        let chunks_left = self
                            .pending
                            .values()
                            .any(|(p, _)| matches!(p, Pending::FileChunk { .. }));
                        if out.chunker.is_finished() && !chunks_left && !out.all_acked {
                            out.all_acked = true;
                            out.report_deadline = Some(Instant::now() + REPORT_TIMEOUT);
                        }
                        None
                    }
                    413 | 415 => Some(End::Failed(format!(
                        "the receiver refused the file with {}",
                        r.status
                    ))),
                    s => Some(End::Broken(format!("a chunk was answered {s}"))),
                }
            }
        }
    }

    /// Sends a refreshing AUTH (answering `challenges` when given).
    async fn send_auth(
        &mut self,
        challenges: Option<&[tandem_proto::auth::Challenge]>,
    ) -> Result<(), End> {
        let Some(refresher) = self.link.refresher.as_mut() else {
            return Ok(());
        };
        let req = refresher
            .request(&mut self.rng, challenges)
            .map_err(|e| End::Failed(e.to_string()))?;
        self.pending.insert(
            req.transaction_id.clone(),
            (
                Pending::Auth {
                    answered: challenges.is_some(),
                },
                Instant::now() + TRANSACTION_TIMEOUT,
            ),
        );
        self.write(req.to_bytes()).await
    }

    fn on_auth_response(&mut self, r: &Response, answered: bool) -> Option<End> {
        let refresher = self.link.refresher.as_mut()?;
        match r.status {
            200 => refresher
                .granted(r)
                .err()
                .map(|e| End::Failed(e.to_string())),
            401 if !answered => {
                self.auth_challenge = Some(r.headers.challenges());
                None
            }
            s => Some(End::Failed(format!(
                "the relay refused to refresh our authorization ({s})"
            ))),
        }
    }

    fn window_open(&self) -> bool {
        let Some(out) = &self.outgoing else {
            return false;
        };
        !out.chunker.is_finished()
            && self
                .pending
                .values()
                .filter(|(p, _)| matches!(p, Pending::FileChunk { .. }))
                .count()
                < WINDOW
    }

    /// Reads and sends the next file chunk into a reserved writer slot.
    fn next_file_chunk(&mut self) -> Result<Vec<u8>, End> {
        let out = self
            .outgoing
            .as_mut()
            .ok_or_else(|| End::Failed("no file".into()))?;
        let len = out.chunker.next_len();
        out.buf.resize(len, 0);
        out.file
            .read_exact(&mut out.buf)
            .map_err(|e| End::Failed(format!("reading {}: {e}", out.info.path.display())))?;
        let req = out
            .chunker
            .next_chunk(&mut self.rng, &out.buf, false)
            .map_err(|e| End::Failed(e.to_string()))?;
        let end = out.chunker.position();
        self.pending.insert(
            req.transaction_id.clone(),
            (
                Pending::FileChunk { end },
                Instant::now() + TRANSACTION_TIMEOUT,
            ),
        );
        Ok(req.to_bytes())
    }

    fn next_deadline(&self) -> Option<Instant> {
        let tx = self.pending.values().map(|(_, d)| *d).min();
        let rep = self.outgoing.as_ref().and_then(|o| o.report_deadline);
        match (tx, rep) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs until the session ends.
    async fn run(&mut self, call: &mut Call, cmds: &mut mpsc::UnboundedReceiver<Command>) -> End {
        if self.link.active {
            if let Err(end) = self.send_bind().await {
                return end;
            }
        } else {
            // The peer connected to us: the session is up (even if its first SEND is late).
            self.mark_connected();
        }
        let writer = self.link.conn.writer();
        let mut watch_superseded = self.receiving.is_some();
        let mut keepalive = tokio::time::interval_at(Instant::now() + KEEPALIVE, KEEPALIVE);
        let mut superseded = self
            .receiving
            .as_ref()
            .map(|r| r.lock.superseded.clone())
            .unwrap_or_else(|| watch::channel(false).1);
        let result = loop {
            if let Some(challenges) = self.auth_challenge.take()
                && let Err(end) = self.send_auth(Some(&challenges)).await
            {
                break end;
            }
            let refresh_due = self
                .link
                .refresher
                .as_ref()
                .and_then(relay::Refresher::due)
                .filter(|_| {
                    !self
                        .pending
                        .values()
                        .any(|(p, _)| matches!(p, Pending::Auth { .. }))
                });
            let deadline = self.next_deadline();
            let window = self.window_open() && self.connected;
            tokio::select! {
                msg = self.link.conn.recv() => match msg {
                    Some(Ok(Message::Request(req))) => match self.on_request(req).await {
                        Ok(Some(end)) => break end,
                        Ok(None) => {}
                        Err(end) => break end,
                    },
                    Some(Ok(Message::Response(r))) => {
                        if let Some(end) = self.on_response(r) {
                            break end;
                        }
                    }
                    Some(Err(reason)) => break End::Broken(reason),
                    None => break End::Broken("the MSRP connection closed".into()),
                },
                ev = call.next_event() => match ev {
                    Some(CallEvent::Ended { .. }) | Some(CallEvent::Failed(_)) | None => {
                        return match &self.outgoing {
                            Some(o) if !o.all_acked || o.report_deadline.is_some() => {
                                End::Broken("the receiver ended the session".into())
                            }
                            _ => End::Closed,
                        };
                    }
                    Some(_) => {}
                },
                cmd = cmds.recv() => match cmd {
                    Some(Command::Send { content_type, body }) => {
                        if let Err(end) = self.send_message(&content_type, &body).await {
                            break end;
                        }
                    }
                    Some(Command::Close) | None => break End::Closed,
                },
                permit = writer.reserve(), if window => match permit {
                    Ok(permit) => match self.next_file_chunk() {
                        Ok(bytes) => permit.send(bytes),
                        Err(end) => break end,
                    },
                    Err(_) => break End::Broken("the MSRP connection closed".into()),
                },
                _ = sleep_until_opt(deadline) => {
                    let now = Instant::now();
                    if self.pending.values().any(|(_, d)| *d <= now) {
                        break End::Broken("an MSRP transaction timed out".into());
                    }
                    if self.outgoing.as_ref().and_then(|o| o.report_deadline).is_some_and(|d| d <= now) {
                        break End::Broken("no success report for the file".into());
                    }
                },
                changed = superseded.changed(), if watch_superseded => match changed {
                    Ok(()) if *superseded.borrow() => {
                        break End::Failed("the same file is offered again in a new session".into());
                    }
                    Ok(()) => {}
                    Err(_) => watch_superseded = false,
                },
                _ = sleep_until_opt(refresh_due) => {
                    if let Err(end) = self.send_auth(None).await {
                        break end;
                    }
                },
                _ = keepalive.tick() => {
                    // Relays close idle connections: an empty SEND now and then keeps ours open.
                    if self.connected && self.pending.is_empty() && self.link.to_path.len() > 1
                        && let Err(end) = self.send_bind().await
                    {
                        break end;
                    }
                }
            }
        };
        call.hangup();
        let _ = timeout(BYE_WAIT, async {
            while let Some(ev) = call.next_event().await {
                if matches!(ev, CallEvent::Ended { .. } | CallEvent::Failed(_)) {
                    break;
                }
            }
        })
        .await;
        result
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Finishes a session task: `Failed` when it failed, then `Closed`.
fn finish(ctx: &Context, end: &End) {
    match end {
        End::Closed => {}
        End::Broken(reason) | End::Failed(reason) => ctx.emit(MsrpEvent::Failed {
            reason: reason.clone(),
        }),
    }
    ctx.emit(MsrpEvent::Closed);
}

/// The chat offerer.
pub(crate) async fn run_outgoing_chat(
    ctx: Context,
    target: Uri,
    mut cmds: mpsc::UnboundedReceiver<Command>,
) {
    let end = chat_attempt(&ctx, target, &mut cmds).await;
    finish(&ctx, &end);
}

async fn chat_attempt(
    ctx: &Context,
    target: Uri,
    cmds: &mut mpsc::UnboundedReceiver<Command>,
) -> End {
    let ip = ctx.ua.local_ip();
    let end = match local_end(ctx, ip).await {
        Ok(e) => e,
        Err(e) => return End::Failed(e.to_string()),
    };
    let setup = if end.relay.is_some() {
        Setup::Active
    } else {
        Setup::Actpass
    };
    let sdp = build_sdp(ip, &our_media(&end, setup, CHAT_TYPES));
    let (mut call, answer) = match invite(ctx, target, sdp).await {
        Ok(x) => x,
        Err(e) => return End::Failed(e.to_string()),
    };
    let listens = end.relay.is_none() && offerer_listens(&answer);
    let link = match connect(ctx, end, &answer, listens).await {
        Ok(l) => l,
        Err(e) => {
            call.hangup();
            return End::Failed(e.to_string());
        }
    };
    let mut session = Session::new(ctx, link, None);
    let end = session.run(&mut call, cmds).await;
    session.link.conn.close().await;
    end
}

/// The file sender: one offer per attempt, retried with backoff while the connection breaks.
pub(crate) async fn run_file_sender(
    ctx: Context,
    target: Uri,
    info: FileInfo,
    mut cmds: mpsc::UnboundedReceiver<Command>,
) {
    let mut attempt = 1u32;
    let end = loop {
        let end = file_attempt(&ctx, target.clone(), &info, &mut cmds).await;
        match end {
            End::Broken(reason) if attempt <= ctx.options.retries => {
                attempt += 1;
                ctx.emit(MsrpEvent::Retrying {
                    attempt,
                    reason: reason.clone(),
                });
                let backoff = Duration::from_secs(1 << (attempt - 2).min(4));
                tokio::select! {
                    _ = sleep(backoff) => {}
                    cmd = cmds.recv() => if matches!(cmd, Some(Command::Close) | None) {
                        break End::Failed(reason);
                    },
                }
            }
            other => break other,
        }
    };
    finish(&ctx, &end);
}

async fn file_attempt(
    ctx: &Context,
    target: Uri,
    info: &FileInfo,
    cmds: &mut mpsc::UnboundedReceiver<Command>,
) -> End {
    let ip = ctx.ua.local_ip();
    let end = match local_end(ctx, ip).await {
        Ok(e) => e,
        Err(e @ (MsrpError::RelayAuth | MsrpError::Config(_))) => {
            return End::Failed(e.to_string());
        }
        Err(e) => return End::Broken(e.to_string()),
    };
    let setup = if end.relay.is_some() {
        Setup::Active
    } else {
        Setup::Actpass
    };
    let transfer_id = random_token(16);
    let mut media = our_media(&end, setup, &["*"]);
    media.direction = Some("sendonly".into());
    media.file = Some(FileAttributes {
        selector: info.selector(),
        transfer_id: Some(transfer_id.clone()),
        disposition: Some("attachment".into()),
        ..FileAttributes::default()
    });
    let sdp = build_sdp(ip, &media);
    let (mut call, answer) = match invite(ctx, target, sdp).await {
        Ok(x) => x,
        Err(MsrpError::Sip(e))
            if matches!(e, crate::UaError::Network(_) | crate::UaError::Timeout) =>
        {
            return End::Broken(e.to_string());
        }
        Err(e) => return End::Failed(e.to_string()),
    };
    let start = answer
        .file
        .as_ref()
        .and_then(|f| f.range)
        .map_or(0, |r| r.start.saturating_sub(1))
        .min(info.size);
    let listens = end.relay.is_none() && offerer_listens(&answer);
    let link = match connect(ctx, end, &answer, listens).await {
        Ok(l) => l,
        Err(e) => {
            call.hangup();
            return End::Broken(e.to_string());
        }
    };
    let mut file = match std::fs::File::open(&info.path) {
        Ok(f) => f,
        Err(e) => {
            call.hangup();
            return End::Failed(format!("cannot open {}: {e}", info.path.display()));
        }
    };
    if let Err(e) = file.seek(SeekFrom::Start(start)) {
        call.hangup();
        return End::Failed(format!("cannot seek in {}: {e}", info.path.display()));
    }
    if start > 0 {
        ctx.emit(MsrpEvent::Resumed { from_byte: start });
    }
    let message_id = new_message_id(&mut rand::rng());
    let mut chunker = Chunker::new(
        &link.to_path,
        std::slice::from_ref(&link.local),
        &message_id,
        &info.media_type,
        Some(info.size),
        ctx.options.chunk_size,
    )
    .with_reports(Some(true), Some(FailureReport::Yes))
    .with_header(
        "Content-Disposition",
        &format!("attachment; filename=\"{}\"", info.name.replace('"', "")),
    );
    chunker.seek(start);
    let mut session = Session::new(ctx, link, None);
    session.outgoing = Some(Outgoing {
        info: info.clone(),
        transfer_id,
        file,
        chunker,
        acked: start,
        all_acked: false,
        report_deadline: None,
        buf: Vec::new(),
    });
    let end = session.run(&mut call, cmds).await;
    session.link.conn.close().await;
    end
}

/// An incoming session after our answer was sent.
pub(crate) struct Prepared {
    call: Call,
    end: LocalEnd,
    offer: MsrpMedia,
    we_listen: bool,
    receiving: Option<Receiving>,
}

/// Answers an incoming MSRP offer: binds our end, builds the answer (with `a=file-range` when
/// part of the file is already here) and accepts the INVITE.
pub(crate) async fn prepare_incoming(
    ctx: &Context,
    incoming: IncomingCall,
) -> Result<Prepared, MsrpError> {
    let offer = match SessionDescription::parse_bytes(&incoming.request().body)
        .ok()
        .as_ref()
        .and_then(msrp_media)
    {
        Some(m) => m,
        None => {
            let _ = incoming.reject(488);
            return Err(MsrpError::Protocol(
                "the offer has no usable m=message line".into(),
            ));
        }
    };
    if offer.file.is_some() && offer.direction.as_deref() != Some("sendonly") {
        let _ = incoming.reject(488);
        return Err(MsrpError::Protocol(
            "file requests (RFC 5547 pull) are not supported".into(),
        ));
    }
    let ip = ctx.ua.local_ip();
    let end = match local_end(ctx, ip).await {
        Ok(e) => e,
        Err(e) => {
            let _ = incoming.reject(500);
            return Err(e);
        }
    };
    // With a relay we connect to it; toward a peer behind a relay or a passive offerer we connect.
    let (setup, we_listen) =
        if end.relay.is_some() || offer.path.len() > 1 || offer.setup == Some(Setup::Passive) {
            (Setup::Active, false)
        } else {
            (Setup::Passive, true)
        };
    let file_offer = offer
        .file
        .clone()
        .filter(|_| offer.direction.as_deref() == Some("sendonly"));
    let mut receiving = None;
    let media = match &file_offer {
        None => our_media(&end, setup, CHAT_TYPES),
        Some(f) => {
            let size = f.selector.size.unwrap_or(0);
            if f.selector.size.is_none() || size > ctx.options.max_file_size {
                let _ = incoming.reject(488);
                return Err(MsrpError::Refused { status: 488 });
            }
            let part = match PartFile::new(&ctx.options.save_dir, &f.selector) {
                Ok(p) => p,
                Err(e) => {
                    let _ = incoming.reject(488);
                    return Err(e);
                }
            };
            let lock = match lock_part(&part.part_path()).await {
                Ok(l) => l,
                Err(e) => {
                    let _ = incoming.reject(486);
                    return Err(e);
                }
            };
            let keep = part.resume_point();
            let mut media = our_media(&end, setup, &["*"]);
            media.direction = Some("recvonly".into());
            let mut attrs = f.clone();
            attrs.range = (keep > 0 && keep < size).then_some(FileRange {
                start: keep + 1,
                stop: Some(size),
            });
            media.file = Some(attrs);
            let keep = if keep < size { keep } else { 0 };
            let file = match part.open(keep) {
                Ok(f) => f,
                Err(e) => {
                    let _ = incoming.reject(500);
                    return Err(e);
                }
            };
            receiving = Some(Receiving {
                transfer_id: f.transfer_id.clone().unwrap_or_default(),
                part,
                file: Some(file),
                keep,
                message_id: None,
                lock,
            });
            media
        }
    };
    let sdp = build_sdp(ip, &media);
    let options = AnswerOptions {
        account: Some(ctx.account.clone()),
        media: MediaOptions {
            session_sdp: Some(sdp),
            ..MediaOptions::default()
        },
    };
    let call = incoming.accept_with(options).await?;
    Ok(Prepared {
        call,
        end,
        offer,
        we_listen,
        receiving,
    })
}

/// The answerer's session.
pub(crate) async fn run_incoming(
    ctx: Context,
    prepared: Prepared,
    mut cmds: mpsc::UnboundedReceiver<Command>,
) {
    let Prepared {
        mut call,
        end,
        offer,
        we_listen,
        receiving,
    } = prepared;
    let link = tokio::select! {
        link = connect(&ctx, end, &offer, we_listen) => link,
        _ = wait_ended(&mut call) => Err(MsrpError::Protocol("the peer ended the session".into())),
    };
    let end = match link {
        Ok(link) => {
            if let Some(r) = &receiving
                && r.keep > 0
            {
                ctx.emit(MsrpEvent::Resumed { from_byte: r.keep });
            }
            let mut session = Session::new(&ctx, link, receiving);
            let end = session.run(&mut call, &mut cmds).await;
            session.link.conn.close().await;
            match (&session.receiving, end) {
                (Some(r), End::Closed) if !session.file_done => End::Failed(format!(
                    "the transfer of {} stopped before the end (the part is kept for a resume)",
                    r.part.name
                )),
                (_, end) => end,
            }
        }
        Err(e) => {
            call.hangup();
            End::Failed(e.to_string())
        }
    };
    finish(&ctx, &end);
}

async fn wait_ended(call: &mut Call) {
    while let Some(ev) = call.next_event().await {
        if matches!(ev, CallEvent::Ended { .. } | CallEvent::Failed(_)) {
            return;
        }
    }
}
