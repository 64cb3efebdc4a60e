//! MSRP in the app: files sent and received with progress (RFC 4975/5547), and incoming
//! session-mode chats, whose messages join the page-mode conversation with the same peer.
//!
//! An incoming file offer becomes a [`FileTransfer`] in the `offered` state until the user
//! accepts (the file is written to the received-files folder, hash-checked, then listed with
//! its path) or declines it (603). Sending takes a file on disk, or contents handed over by the
//! ui's file picker (written to the data folder's `outgoing/` first).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use tandem_client_core::msrp::{self, MsrpEvent, MsrpOffer, MsrpOptions, MsrpSession};
use tandem_client_core::{IncomingCall, UserAgent};
use tokio::sync::{mpsc, oneshot};

use crate::explain::failure;
use crate::state::{AppState, lock, now_ms};
use crate::types::*;

/// How many transfers the list keeps.
const TRANSFER_LIMIT: usize = 200;
/// Largest file the ui may hand over as base64 contents (64 MiB).
const MAX_UPLOAD: usize = 64 * 1024 * 1024;
/// Progress events are emitted at most this often per transfer (the last one always).
const PROGRESS_EVERY: Duration = Duration::from_millis(200);
/// The SIP status of a declined file offer.
const DECLINE_STATUS: u16 = 603;

/// The user's answer to an offered file.
enum Decision {
    Accept(oneshot::Sender<Result<(), Failure>>),
    Decline,
}

/// A text for an open MSRP chat session, and where to say whether it went out.
type ChatSend = (String, oneshot::Sender<Result<(), String>>);

/// How long the peer has to take a chat session we open.
const CHAT_SETUP_TIMEOUT: Duration = Duration::from_secs(15);

/// The app's file transfers, the offers waiting for the user, and the open chat sessions.
#[derive(Default)]
pub(crate) struct Files {
    transfers: Mutex<Vec<FileTransfer>>,
    pending: Mutex<HashMap<String, oneshot::Sender<Decision>>>,
    /// Open session-mode chats by conversation (account and peer): our messages to that peer
    /// go through them.
    chats: Mutex<HashMap<String, mpsc::UnboundedSender<ChatSend>>>,
    next: AtomicU64,
    /// Where received files are saved, when the shell named a folder (the user's Downloads).
    downloads: Mutex<Option<PathBuf>>,
}

fn file_failure(message: impl Into<String>, detail: impl std::fmt::Display) -> Failure {
    failure(FailureKind::Other, message, detail.to_string())
}

/// Bytes as the ui's JSON numbers.
fn num(n: u64) -> f64 {
    n as f64
}

/// A file name safe to create in our folders: the last path component, without separators or
/// control characters; `file` when nothing is left.
fn safe_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control() && *c != '/' && *c != '\\')
        .collect();
    let trimmed = cleaned.trim().trim_start_matches('.').to_owned();
    if trimmed.is_empty() {
        "file".to_owned()
    } else {
        trimmed
    }
}

impl AppState {
    fn files(&self) -> &Files {
        &self.inner.files
    }

    /// Where received files go: the folder the shell named (the user's Downloads folder on
    /// the desktop), else `received` in the data folder. A name already taken there gets a
    /// ` (1)`, ` (2)`… suffix: nothing is overwritten.
    pub fn received_dir(&self) -> PathBuf {
        lock(&self.files().downloads)
            .clone()
            .unwrap_or_else(|| self.inner.options.data_dir.join("received"))
    }

    /// Saves received files in `dir` from now on (the shell calls it with the platform's
    /// Downloads folder; `None` goes back to the data folder).
    pub fn set_received_dir(&self, dir: Option<PathBuf>) {
        *lock(&self.files().downloads) = dir;
    }

    fn msrp_options(&self, save_dir: PathBuf) -> Result<MsrpOptions, Failure> {
        let (_, tls) = self.inner.trust.client()?;
        Ok(MsrpOptions {
            tls: Some(tls),
            save_dir,
            answer_timeout: Duration::from_secs(60),
            ..MsrpOptions::default()
        })
    }

    fn new_transfer_id(&self) -> String {
        format!(
            "file-{}",
            self.files().next.fetch_add(1, Ordering::Relaxed) + 1
        )
    }

    fn put_transfer(&self, transfer: FileTransfer) {
        {
            let mut list = lock(&self.files().transfers);
            match list.iter_mut().find(|t| t.id == transfer.id) {
                Some(slot) => *slot = transfer.clone(),
                None => {
                    list.push(transfer.clone());
                    let excess = list.len().saturating_sub(TRANSFER_LIMIT);
                    list.drain(..excess);
                }
            }
        }
        self.emit(AppEvent::FileTransfer { transfer });
    }

    fn change_transfer(&self, id: &str, f: impl FnOnce(&mut FileTransfer)) {
        let changed = {
            let mut list = lock(&self.files().transfers);
            list.iter_mut().find(|t| t.id == id).map(|t| {
                f(t);
                t.clone()
            })
        };
        if let Some(transfer) = changed {
            self.emit(AppEvent::FileTransfer { transfer });
        }
    }

    /// Command `list_transfers`: files sent and received, oldest first.
    pub fn list_transfers(&self) -> Vec<FileTransfer> {
        lock(&self.files().transfers).clone()
    }

    /// Command `send_file`: sends a file to `to` over MSRP. Returns the transfer; its progress
    /// arrives as `FileTransfer` events.
    pub async fn send_file(&self, request: SendFile) -> Result<FileTransfer, Failure> {
        let account = self.account_of(&request.account_id)?;
        let target = account.target_uri(request.to.trim()).map_err(|e| {
            failure(
                FailureKind::Settings,
                format!(
                    "\"{}\" is not someone we can send a file to: {e}",
                    request.to
                ),
                "",
            )
        })?;
        let path = match (&request.path, &request.name, &request.data_base64) {
            (Some(path), _, _) if !path.trim().is_empty() => PathBuf::from(path.trim()),
            (_, Some(name), Some(data)) => self.store_upload(name, data).await?,
            _ => {
                return Err(failure(FailureKind::Settings, "Choose a file to send.", ""));
            }
        };
        let info = msrp::file_info(&path)
            .await
            .map_err(|e| file_failure(format!("Cannot read the file {}.", path.display()), e))?;
        let ua = self.ua_for(&request.account_id).await?;
        let options = self.msrp_options(self.received_dir())?;
        let transfer = FileTransfer {
            id: self.new_transfer_id(),
            account_id: request.account_id.clone(),
            peer: target.to_string(),
            direction: Direction::Outgoing,
            name: info.name.clone(),
            size: num(info.size),
            bytes: 0.0,
            state: TransferState::Transferring,
            path: Some(path.display().to_string()),
            error: None,
            at_ms: now_ms(),
        };
        let session = msrp::send_file(&ua, &account, target, info, options)
            .await
            .map_err(|e| file_failure("The file could not be offered.", e))?;
        self.put_transfer(transfer.clone());
        tokio::spawn(self.clone().follow(transfer.id.clone(), session));
        Ok(transfer)
    }

    /// Writes contents handed over by the ui into `outgoing/` and returns the file's path.
    async fn store_upload(&self, name: &str, data: &str) -> Result<PathBuf, Failure> {
        if data.len() / 4 * 3 > MAX_UPLOAD {
            return Err(failure(
                FailureKind::Settings,
                "That file is too large to attach here (64 MiB at most); send it from a folder instead.",
                "",
            ));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| file_failure("The attached file arrived damaged.", e))?;
        let dir = self
            .inner
            .options
            .data_dir
            .join("outgoing")
            .join(self.new_transfer_id());
        let path = dir.join(safe_name(name));
        let written = path.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            std::fs::write(&written, bytes)
        })
        .await
        .map_err(|e| file_failure("The attached file could not be stored.", e))?
        .map_err(|e| file_failure("The attached file could not be stored.", e))?;
        Ok(path)
    }

    /// Follows a file session's events into the transfer until it closes.
    async fn follow(self, id: String, mut session: MsrpSession) {
        let mut last_emit: Option<Instant> = None;
        let mut finished = false;
        while let Some(event) = session.next_event().await {
            match event {
                MsrpEvent::Progress { bytes, total, .. } => {
                    let due = last_emit.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY);
                    if due || bytes >= total {
                        last_emit = Some(Instant::now());
                        self.change_transfer(&id, |t| {
                            t.bytes = num(bytes);
                            t.size = num(total);
                        });
                    }
                }
                MsrpEvent::FileReceived { path, size, .. } => {
                    finished = true;
                    self.change_transfer(&id, |t| {
                        t.state = TransferState::Done;
                        t.bytes = num(size);
                        t.size = num(size);
                        t.path = Some(path.display().to_string());
                    });
                }
                MsrpEvent::FileSent { size, .. } => {
                    finished = true;
                    self.change_transfer(&id, |t| {
                        t.state = TransferState::Done;
                        t.bytes = num(size);
                    });
                }
                MsrpEvent::Failed { reason } => {
                    finished = true;
                    let declined = reason.contains("603") || reason.contains("declin");
                    self.change_transfer(&id, |t| {
                        if declined {
                            t.state = TransferState::Declined;
                            t.error = Some("The other party declined the file.".to_owned());
                        } else {
                            t.state = TransferState::Failed;
                            t.error = Some(format!("The transfer failed: {reason}."));
                        }
                    });
                }
                MsrpEvent::Retrying { attempt, reason } => self.emit(AppEvent::Notice {
                    call_id: None,
                    message: format!(
                        "The file transfer broke off ({reason}); trying again (attempt {attempt})."
                    ),
                }),
                MsrpEvent::Closed => break,
                _ => {}
            }
        }
        if !finished {
            self.change_transfer(&id, |t| {
                if t.state == TransferState::Transferring {
                    t.state = TransferState::Failed;
                    t.error = Some("The transfer ended before the file was complete.".to_owned());
                }
            });
        }
    }

    /// An incoming INVITE that offers MSRP: a file (offered to the user) or a chat session
    /// (accepted; its messages join the conversation). Returns the call back when it is not
    /// an MSRP offer.
    pub(crate) fn incoming_msrp(
        &self,
        account_id: &str,
        incoming: IncomingCall,
    ) -> Option<IncomingCall> {
        match msrp::offer_of(&incoming) {
            None => Some(incoming),
            Some(MsrpOffer::File { selector, .. }) => {
                let peer = incoming
                    .from()
                    .map(|u| u.to_string())
                    .unwrap_or_else(|| "unknown sender".to_owned());
                let transfer = FileTransfer {
                    id: self.new_transfer_id(),
                    account_id: account_id.to_owned(),
                    peer,
                    direction: Direction::Incoming,
                    name: msrp::safe_file_name(selector.name.as_deref()),
                    size: num(selector.size.unwrap_or(0)),
                    bytes: 0.0,
                    state: TransferState::Offered,
                    path: None,
                    error: None,
                    at_ms: now_ms(),
                };
                let (tx, rx) = oneshot::channel();
                lock(&self.files().pending).insert(transfer.id.clone(), tx);
                if let Err(e) = incoming.ring() {
                    tracing::debug!(error = %e, "180 for a file offer not sent");
                }
                self.put_transfer(transfer.clone());
                tokio::spawn(self.clone().await_decision(
                    account_id.to_owned(),
                    transfer.id,
                    incoming,
                    rx,
                ));
                None
            }
            Some(_) => {
                tokio::spawn(self.clone().accept_chat(account_id.to_owned(), incoming));
                None
            }
        }
    }

    async fn await_decision(
        self,
        account_id: String,
        id: String,
        incoming: IncomingCall,
        decision: oneshot::Receiver<Decision>,
    ) {
        let mut incoming = incoming;
        let decision = tokio::select! {
            _ = incoming.cancelled() => None,
            d = decision => d.ok(),
        };
        lock(&self.files().pending).remove(&id);
        match decision {
            None => self.change_transfer(&id, |t| {
                t.state = TransferState::Failed;
                t.error = Some("The sender withdrew the file.".to_owned());
            }),
            Some(Decision::Decline) => {
                if let Err(e) = incoming.reject(DECLINE_STATUS) {
                    tracing::debug!(error = %e, "603 for a file offer not sent");
                }
                self.change_transfer(&id, |t| t.state = TransferState::Declined);
            }
            Some(Decision::Accept(reply)) => {
                let started = self.start_receiving(&account_id, incoming).await;
                match started {
                    Ok(session) => {
                        let _ = reply.send(Ok(()));
                        self.change_transfer(&id, |t| t.state = TransferState::Transferring);
                        self.follow(id, session).await;
                    }
                    Err(f) => {
                        self.change_transfer(&id, |t| {
                            t.state = TransferState::Failed;
                            t.error = Some(f.message.clone());
                        });
                        let _ = reply.send(Err(f));
                    }
                }
            }
        }
    }

    async fn start_receiving(
        &self,
        account_id: &str,
        incoming: IncomingCall,
    ) -> Result<MsrpSession, Failure> {
        let (ua, account, options) = match self.msrp_parts(account_id).await {
            Ok(parts) => parts,
            Err(f) => {
                let _ = incoming.reject(500);
                return Err(f);
            }
        };
        let dir = options.save_dir.clone();
        if let Err(e) = std::fs::create_dir_all(&dir) {
            let _ = incoming.reject(500);
            return Err(file_failure(
                format!("Cannot create the folder {}.", dir.display()),
                e,
            ));
        }
        msrp::accept(&ua, incoming, &account, options)
            .await
            .map_err(|e| file_failure("The file could not be received.", e))
    }

    async fn msrp_parts(
        &self,
        account_id: &str,
    ) -> Result<(UserAgent, tandem_client_core::Account, MsrpOptions), Failure> {
        let ua = self.ua_for(account_id).await?;
        let account = self.account_of(account_id)?;
        let options = self.msrp_options(self.received_dir())?;
        Ok((ua, account, options))
    }

    /// Command `accept_file`: takes an offered file; it is saved in the received-files folder.
    pub async fn accept_file(&self, arg: FileArg) -> Result<(), Failure> {
        let tx = lock(&self.files().pending).remove(&arg.transfer_id);
        let Some(tx) = tx else {
            return Err(file_failure(
                "That file is no longer offered.",
                &arg.transfer_id,
            ));
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        tx.send(Decision::Accept(reply_tx))
            .map_err(|_| file_failure("That file is no longer offered.", &arg.transfer_id))?;
        reply_rx
            .await
            .map_err(|_| file_failure("The file could not be received.", &arg.transfer_id))?
    }

    /// Command `decline_file`: refuses an offered file (603 Decline).
    pub fn decline_file(&self, arg: FileArg) -> Result<(), Failure> {
        let tx = lock(&self.files().pending).remove(&arg.transfer_id);
        match tx {
            Some(tx) => {
                let _ = tx.send(Decision::Decline);
                Ok(())
            }
            None => Err(file_failure(
                "That file is no longer offered.",
                &arg.transfer_id,
            )),
        }
    }

    /// Command `open_folder`: shows the folder of a transfer's file (or the received-files
    /// folder) in the system's file manager.
    pub fn open_folder(&self, arg: FileArg) -> Result<String, Failure> {
        let path = lock(&self.files().transfers)
            .iter()
            .find(|t| t.id == arg.transfer_id)
            .and_then(|t| t.path.clone());
        let dir = path
            .as_deref()
            .map(Path::new)
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.received_dir());
        std::fs::create_dir_all(&dir)
            .map_err(|e| file_failure(format!("Cannot create the folder {}.", dir.display()), e))?;
        let opener = if cfg!(target_os = "macos") {
            "open"
        } else if cfg!(target_os = "windows") {
            "explorer"
        } else {
            "xdg-open"
        };
        match std::process::Command::new(opener)
            .arg(&dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            Ok(mut child) => {
                // Reap the opener in the background (it exits once it handed the folder over).
                std::thread::spawn(move || {
                    let _ = child.wait();
                });
            }
            Err(e) => tracing::debug!(error = %e, opener, "no file manager opener"),
        }
        Ok(dir.display().to_string())
    }

    /// Accepts an incoming MSRP chat session; its messages join the conversation with the peer.
    async fn accept_chat(self, account_id: String, incoming: IncomingCall) {
        let (ua, account, options) = match self.msrp_parts(&account_id).await {
            Ok(parts) => parts,
            Err(f) => {
                let _ = incoming.reject(500);
                tracing::debug!(error = %f.message, "MSRP chat refused");
                return;
            }
        };
        let session = match msrp::accept(&ua, incoming, &account, options).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "MSRP chat not accepted");
                return;
            }
        };
        self.run_chat(account_id, session).await;
    }

    /// Opens a session-mode chat (MSRP, RFC 4975) with `to` from the account and keeps it for
    /// the conversation: our next messages to that peer go through it. Returns once the
    /// session is up (or with why it is not).
    pub(crate) async fn open_chat(
        &self,
        account_id: &str,
        to: tandem_client_core::types::Uri,
    ) -> Result<(), Failure> {
        let (ua, account, options) = self.msrp_parts(account_id).await?;
        let mut session = msrp::start_chat(&ua, &account, to, options)
            .await
            .map_err(|e| file_failure("The chat session could not be opened.", e))?;
        let deadline = tokio::time::Instant::now() + CHAT_SETUP_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, session.next_event()).await {
                Ok(Some(MsrpEvent::Connected)) => break,
                Ok(Some(MsrpEvent::ChatMessage { from, text, .. })) => {
                    self.chat_session_message(account_id, from, text);
                }
                Ok(Some(MsrpEvent::Failed { reason, .. })) => {
                    return Err(file_failure(
                        "The peer did not take a chat session.",
                        reason,
                    ));
                }
                Ok(Some(MsrpEvent::Closed) | None) => {
                    return Err(file_failure(
                        "The peer did not take a chat session.",
                        "closed",
                    ));
                }
                Ok(Some(_)) => {}
                Err(_) => {
                    session.close();
                    return Err(file_failure(
                        "The peer did not take a chat session.",
                        format!("no answer within {} s", CHAT_SETUP_TIMEOUT.as_secs()),
                    ));
                }
            }
        }
        let app = self.clone();
        let account_id = account_id.to_owned();
        let (key, tx, outgoing) = self.register_chat(&account_id, session.peer());
        tokio::spawn(async move {
            app.chat_loop(account_id, session, key, tx, outgoing).await;
        });
        Ok(())
    }

    /// Makes `peer`'s conversation send through a new session: its key, sender and queue.
    fn register_chat(
        &self,
        account_id: &str,
        peer: &str,
    ) -> (
        String,
        mpsc::UnboundedSender<ChatSend>,
        mpsc::UnboundedReceiver<ChatSend>,
    ) {
        let key = crate::social::typing_key(account_id, peer);
        let (tx, outgoing) = mpsc::unbounded_channel::<ChatSend>();
        lock(&self.files().chats).insert(key.clone(), tx.clone());
        (key, tx, outgoing)
    }

    /// Runs a chat session (ours or the peer's) until it closes: its messages join the
    /// conversation, the conversation's messages go out through it.
    async fn run_chat(self, account_id: String, session: MsrpSession) {
        let (key, tx, outgoing) = self.register_chat(&account_id, session.peer());
        self.chat_loop(account_id, session, key, tx, outgoing).await;
    }

    async fn chat_loop(
        self,
        account_id: String,
        mut session: MsrpSession,
        key: String,
        tx: mpsc::UnboundedSender<ChatSend>,
        mut outgoing: mpsc::UnboundedReceiver<ChatSend>,
    ) {
        loop {
            tokio::select! {
                event = session.next_event() => match event {
                    Some(MsrpEvent::ChatMessage { from, text, .. }) => {
                        self.chat_session_message(&account_id, from, text);
                    }
                    Some(MsrpEvent::Closed) | None => break,
                    Some(_) => {}
                },
                Some((text, reply)) = outgoing.recv() => {
                    let _ = reply.send(session.send_text(&text).map_err(|e| e.to_string()));
                }
            }
        }
        let mut chats = lock(&self.files().chats);
        if chats.get(&key).is_some_and(|t| t.same_channel(&tx)) {
            chats.remove(&key);
        }
    }

    /// Whether the conversation of the account with `peer` goes through an open MSRP chat
    /// session (ours or the peer's) rather than page mode.
    pub fn in_chat_session(&self, account_id: &str, peer: &str) -> bool {
        let key = crate::social::typing_key(account_id, peer);
        lock(&self.files().chats)
            .get(&key)
            .is_some_and(|tx| !tx.is_closed())
    }

    /// Sends `text` through the open MSRP chat session with `peer`, when there is one: `None`
    /// when there is none (page mode then), else whether the session took it.
    pub(crate) async fn send_in_session(
        &self,
        account_id: &str,
        peer: &str,
        text: &str,
    ) -> Option<Result<(), String>> {
        let key = crate::social::typing_key(account_id, peer);
        let tx = lock(&self.files().chats).get(&key).cloned()?;
        let (reply_tx, reply_rx) = oneshot::channel();
        tx.send((text.to_owned(), reply_tx)).ok()?;
        reply_rx.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::safe_name;

    #[test]
    fn upload_names_stay_in_their_folder() {
        assert_eq!(safe_name("report.pdf"), "report.pdf");
        assert_eq!(safe_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_name("C:\\x\\y.txt"), "y.txt");
        assert_eq!(safe_name(".."), "file");
        assert_eq!(safe_name(".hidden"), "hidden");
        assert_eq!(safe_name("a\u{7}b"), "ab");
        assert_eq!(safe_name(""), "file");
    }
}
