//! Chat (page-mode MESSAGE with CPIM, delivery and read notifications, typing indicator),
//! contacts with live presence (SUBSCRIBE per contact, buddy list in XCAP when the account has
//! an XCAP server), our own published presence, and the people watching us with allow/block
//! (watcher-info subscription + XCAP pres-rules). All of it is [`AppState`] methods reached
//! through the command table, over client-core.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tandem_client_core::conference::ConferenceEvent;
use tandem_client_core::mwi::MwiEvent;
use tandem_client_core::types::simple::conference_info::{
    ConferenceInfo, ElementState, EndpointStatus,
};
use tandem_client_core::types::simple::imdn::{
    DeliveryStatus, DisplayStatus, Disposition, Imdn, Notification,
};
use tandem_client_core::types::simple::iscomposing::ComposingState;
use tandem_client_core::types::simple::pidf::{Availability, Presence};
use tandem_client_core::types::simple::watcherinfo::{State as WinfoState, WatcherInfo};
use tandem_client_core::{
    Account, OutgoingMessage, PresenceEvent, Publication, ReceivedMessage, WinfoEvent, XcapClient,
};
use tokio::task::JoinHandle;

use crate::explain::{explain_call, failure};
use crate::persist::{load_json, save_json};
use crate::state::{AppState, lock, now_ms};
use crate::types::*;

/// How many chat messages are kept (oldest dropped first).
const MESSAGE_LIMIT: usize = 2000;
/// How many received messages are remembered for read notifications.
const READ_RECEIPT_LIMIT: usize = 512;
/// How long a typing indication lasts without a refresh, in seconds (RFC 3994 refresh).
const COMPOSING_REFRESH: u32 = 60;
/// How long an `active` indication without a refresh interval lasts (RFC 3994 §4.2: 120 s).
const COMPOSING_DEFAULT_EXPIRY: std::time::Duration = std::time::Duration::from_secs(120);

/// A contact as saved in `contacts.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SavedContact {
    account_id: String,
    uri: String,
    name: Option<String>,
}

struct ContactSlot {
    contact: Contact,
    task: Option<JoinHandle<()>>,
}

impl Drop for ContactSlot {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// A background task that ends with its owner.
pub(crate) struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The chat, contacts and presence state of the app.
#[derive(Default)]
pub(crate) struct Social {
    messages: Mutex<VecDeque<ChatMessage>>,
    /// CPIM message id of a sent message → our id.
    sent_ids: Mutex<HashMap<String, String>>,
    /// Our id of a received message that asked for a read notification → the message.
    read_receipts: Mutex<VecDeque<(String, ReceivedMessage)>>,
    /// The generation of the latest typing change per conversation (`typing_key`).
    typing: Mutex<HashMap<String, u64>>,
    typing_generation: AtomicU64,
    contacts: Mutex<BTreeMap<(String, String), ContactSlot>>,
    watchers: Mutex<BTreeMap<String, BTreeMap<String, Watcher>>>,
    winfo: Mutex<HashMap<String, AbortOnDrop>>,
    publications: tokio::sync::Mutex<HashMap<String, Publication>>,
    presence: Mutex<HashMap<String, MyPresence>>,
    voicemail: Mutex<BTreeMap<String, Voicemail>>,
    mwi: Mutex<HashMap<String, AbortOnDrop>>,
    next_id: AtomicU64,
}

impl Social {
    /// Loads saved messages and contacts from `dir`.
    pub(crate) fn load(dir: &std::path::Path) -> Result<Social, Failure> {
        let messages: Vec<ChatMessage> = load_json(&dir.join("messages.json"))?.unwrap_or_default();
        let saved: Vec<SavedContact> = load_json(&dir.join("contacts.json"))?.unwrap_or_default();
        let contacts = saved
            .into_iter()
            .map(|c| {
                (
                    (c.account_id.clone(), c.uri.clone()),
                    ContactSlot {
                        contact: Contact {
                            account_id: c.account_id,
                            uri: c.uri,
                            name: c.name,
                            status: PresenceStatus::Unknown,
                            note: None,
                            watch: WatchState::Subscribing,
                        },
                        task: None,
                    },
                )
            })
            .collect();
        Ok(Social {
            next_id: AtomicU64::new(messages.len() as u64 + 1),
            messages: Mutex::new(messages.into()),
            contacts: Mutex::new(contacts),
            ..Social::default()
        })
    }
}

fn status_of(a: Availability) -> PresenceStatus {
    match a {
        Availability::Available => PresenceStatus::Available,
        Availability::Away => PresenceStatus::Away,
        Availability::Busy => PresenceStatus::Busy,
        Availability::OnThePhone => PresenceStatus::OnThePhone,
        Availability::Offline => PresenceStatus::Offline,
    }
}

fn availability_of(s: PresenceStatus) -> Availability {
    match s {
        PresenceStatus::Available | PresenceStatus::Unknown => Availability::Available,
        PresenceStatus::Away => Availability::Away,
        PresenceStatus::Busy => Availability::Busy,
        PresenceStatus::OnThePhone => Availability::OnThePhone,
        PresenceStatus::Offline => Availability::Offline,
    }
}

/// The first note of a presence document: a person's, else a tuple's, else the document's.
fn note_of(p: &Presence) -> Option<String> {
    p.persons
        .iter()
        .flat_map(|x| x.notes.iter())
        .chain(p.tuples.iter().flat_map(|t| t.notes.iter()))
        .chain(p.notes.iter())
        .map(|n| n.text.trim().to_owned())
        .find(|t| !t.is_empty())
}

/// The participants of a conference document: users that have not left, with their speaking
/// and mute state from their audio streams.
fn roster_of(info: &ConferenceInfo) -> Vec<RosterEntry> {
    info.users
        .iter()
        .filter(|u| {
            u.state != ElementState::Deleted
                && (u.endpoints.is_empty()
                    || u.endpoints.iter().any(|e| {
                        !matches!(
                            e.status,
                            Some(EndpointStatus::Disconnected | EndpointStatus::Disconnecting)
                        )
                    }))
        })
        .map(|u| {
            let (mut speaking, mut muted) = (false, false);
            for e in &u.endpoints {
                muted |= matches!(
                    e.status,
                    Some(EndpointStatus::MutedViaFocus | EndpointStatus::OnHold)
                );
            }
            for m in u.endpoints.iter().flat_map(|e| e.media.iter()) {
                speaking |= m.speaking == Some(true);
                muted |= matches!(m.status.as_deref(), Some("recvonly" | "inactive"));
            }
            RosterEntry {
                uri: u.entity.clone(),
                name: u.display_text.clone(),
                speaking,
                muted,
            }
        })
        .collect()
}

/// The key of a conversation's typing state: the account and the peer as [`same_peer`]
/// compares it.
/// The longest message sent in page mode (RFC 3428 §9); longer ones go through a chat session.
pub const PAGE_MODE_LIMIT: usize = 1300;

pub(crate) fn typing_key(account_id: &str, peer: &str) -> String {
    format!("{account_id}|{}", peer_key(peer))
}

/// An address reduced to scheme, user and host, lowercased, without parameters, display name
/// or angle brackets.
fn peer_key(s: &str) -> String {
    let s = s.trim();
    let s = match (s.find('<'), s.rfind('>')) {
        (Some(i), Some(j)) if i < j => &s[i + 1..j],
        _ => s,
    };
    let s = s.split([';', '?']).next().unwrap_or(s);
    s.to_ascii_lowercase()
}

/// Compares addresses the way the ui groups conversations: scheme, user and host, ignoring
/// parameters, display names and angle brackets.
pub fn same_peer(a: &str, b: &str) -> bool {
    peer_key(a) == peer_key(b)
}

impl AppState {
    fn social(&self) -> &Social {
        &self.inner.social
    }

    fn save_messages(&self) {
        let list: Vec<ChatMessage> = lock(&self.social().messages).iter().cloned().collect();
        if let Err(f) = save_json(&self.inner.options.data_dir.join("messages.json"), &list) {
            tracing::warn!(error = %f.detail, "messages not saved");
        }
    }

    fn save_contacts(&self) {
        let list: Vec<SavedContact> = lock(&self.social().contacts)
            .values()
            .map(|s| SavedContact {
                account_id: s.contact.account_id.clone(),
                uri: s.contact.uri.clone(),
                name: s.contact.name.clone(),
            })
            .collect();
        if let Err(f) = save_json(&self.inner.options.data_dir.join("contacts.json"), &list) {
            tracing::warn!(error = %f.detail, "contacts not saved");
        }
    }

    fn new_message_id(&self) -> String {
        format!(
            "msg-{}-{}",
            std::process::id(),
            self.social().next_id.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Stores `message` (replacing the one with its id) and tells the ui.
    fn put_message(&self, message: ChatMessage) {
        {
            let mut list = lock(&self.social().messages);
            match list.iter_mut().find(|m| m.id == message.id) {
                Some(slot) => *slot = message.clone(),
                None => {
                    list.push_back(message.clone());
                    while list.len() > MESSAGE_LIMIT {
                        list.pop_front();
                    }
                }
            }
        }
        self.save_messages();
        self.emit(AppEvent::Message { message });
    }

    fn update_message(&self, id: &str, f: impl FnOnce(&mut ChatMessage)) {
        let updated = {
            let mut list = lock(&self.social().messages);
            list.iter_mut().find(|m| m.id == id).map(|m| {
                f(m);
                m.clone()
            })
        };
        if let Some(message) = updated {
            self.save_messages();
            self.emit(AppEvent::Message { message });
        }
    }

    /// Command `list_messages`: every chat message kept, oldest first.
    pub fn list_messages(&self) -> Vec<ChatMessage> {
        lock(&self.social().messages).iter().cloned().collect()
    }

    /// Command `send_message`: sends `text` as a CPIM-wrapped page-mode message asking for
    /// delivery and read notifications. The message appears at once as `sending`; the result
    /// is its state after the server's answer (`sent`, `stored` or `failed`).
    pub async fn send_message(&self, request: SendMessage) -> Result<ChatMessage, Failure> {
        let account = self.account_of(&request.account_id)?;
        let text = request.text.trim_end().to_owned();
        if text.trim().is_empty() {
            return Err(failure(FailureKind::Settings, "Type a message first.", ""));
        }
        let to = account.target_uri(&request.to).map_err(|e| {
            failure(
                FailureKind::Settings,
                format!("\"{}\" is not an address we can write to: {e}", request.to),
                "",
            )
        })?;
        let ua = self.ua_for(&request.account_id).await?;
        let id = self.new_message_id();
        let message = ChatMessage {
            id: id.clone(),
            account_id: request.account_id.clone(),
            peer: to.to_string(),
            direction: Direction::Outgoing,
            text: text.clone(),
            at_ms: now_ms(),
            status: MessageStatus::Sending,
            error: None,
        };
        self.put_message(message);
        // A session-mode chat open with the peer carries our messages (RFC 4975). A message
        // too long for page mode (RFC 3428 §9: 1300 bytes) opens one; page mode otherwise, and
        // when the session is gone or the peer takes none.
        let mut in_session = self
            .send_in_session(&request.account_id, &to.to_string(), &text)
            .await;
        if in_session.is_none() && text.len() > PAGE_MODE_LIMIT {
            match self.open_chat(&request.account_id, to.clone()).await {
                Ok(()) => {
                    in_session = self
                        .send_in_session(&request.account_id, &to.to_string(), &text)
                        .await;
                }
                Err(f) => {
                    tracing::debug!(problem = %f.message, detail = %f.detail, "no chat session: page mode");
                }
            }
        }
        if let Some(Ok(())) = in_session {
            self.update_message(&id, |m| {
                if m.status == MessageStatus::Sending {
                    m.status = MessageStatus::Sent;
                }
            });
            return lock(&self.social().messages)
                .iter()
                .find(|m| m.id == id)
                .cloned()
                .ok_or_else(|| failure(FailureKind::Other, "The message was dropped.", id));
        }
        let outgoing = OutgoingMessage::cpim_text(
            text,
            &[Disposition::PositiveDelivery, Disposition::Display],
        );
        match ua.send_message(&account, to, outgoing).await {
            Ok(outcome) => {
                {
                    let mut ids = lock(&self.social().sent_ids);
                    if ids.len() >= MESSAGE_LIMIT {
                        ids.clear();
                    }
                    ids.insert(outcome.message_id.clone(), id.clone());
                }
                self.update_message(&id, |m| {
                    // An IMDN may already have overtaken the 2xx.
                    if m.status == MessageStatus::Sending {
                        m.status = if outcome.stored {
                            MessageStatus::Stored
                        } else {
                            MessageStatus::Sent
                        };
                    }
                });
            }
            Err(e) => {
                let f = explain_call(&e);
                self.update_message(&id, |m| {
                    m.status = MessageStatus::Failed;
                    m.error = Some(f.message.clone());
                });
            }
        }
        lock(&self.social().messages)
            .iter()
            .find(|m| m.id == id)
            .cloned()
            .ok_or_else(|| failure(FailureKind::Other, "The message was dropped.", id))
    }

    /// Command `composing`: tells `peer` that we are typing (or stopped).
    pub async fn composing(&self, arg: PeerArg) -> Result<(), Failure> {
        let account = self.account_of(&arg.account_id)?;
        let to = account
            .target_uri(&arg.peer)
            .map_err(|e| failure(FailureKind::Settings, "Not a valid address.", e.to_string()))?;
        let ua = self.ua_for(&arg.account_id).await?;
        let (state, refresh) = if arg.active {
            (ComposingState::Active, Some(COMPOSING_REFRESH))
        } else {
            (ComposingState::Idle, None)
        };
        ua.send_composing(&account, to, state, refresh)
            .await
            .map_err(|e| explain_call(&e))
    }

    /// Command `mark_read`: marks every unread message from `peer` as read and sends the read
    /// notifications their senders asked for. Returns how many were marked.
    pub async fn mark_read(&self, arg: PeerArg) -> Result<u32, Failure> {
        let ids: Vec<String> = lock(&self.social().messages)
            .iter()
            .filter(|m| {
                m.account_id == arg.account_id
                    && m.status == MessageStatus::Unread
                    && same_peer(&m.peer, &arg.peer)
            })
            .map(|m| m.id.clone())
            .collect();
        let mut receipts = Vec::new();
        {
            let mut pending = lock(&self.social().read_receipts);
            pending.retain(|(id, m)| {
                if ids.contains(id) {
                    receipts.push(m.clone());
                    false
                } else {
                    true
                }
            });
        }
        for id in &ids {
            self.update_message(id, |m| m.status = MessageStatus::Read);
        }
        if !receipts.is_empty() {
            let account = self.account_of(&arg.account_id)?;
            let ua = self.ua_for(&arg.account_id).await?;
            for m in receipts {
                let n = Notification::Display(DisplayStatus::Displayed);
                if let Err(e) = ua.send_imdn(&account, &m, n).await {
                    tracing::debug!(error = %e, "read notification not sent");
                }
            }
        }
        Ok(u32::try_from(ids.len()).unwrap_or(u32::MAX))
    }

    /// A MESSAGE arrived on `account_id`.
    pub(crate) fn on_message(&self, account_id: &str, message: ReceivedMessage) {
        let Some(text) = message.text() else {
            tracing::debug!(content_type = %message.content_type, "non-text message ignored");
            return;
        };
        let id = self.new_message_id();
        if message.imdn_requested.contains(&Disposition::Display) {
            let mut pending = lock(&self.social().read_receipts);
            pending.push_back((id.clone(), message.clone()));
            while pending.len() > READ_RECEIPT_LIMIT {
                pending.pop_front();
            }
        }
        self.typing_changed(account_id, &message.from);
        self.emit(AppEvent::Composing {
            account_id: account_id.to_owned(),
            peer: message.from.clone(),
            active: false,
        });
        self.put_message(ChatMessage {
            id,
            account_id: account_id.to_owned(),
            peer: message.from,
            direction: Direction::Incoming,
            text,
            at_ms: now_ms(),
            status: MessageStatus::Unread,
            error: None,
        });
    }

    /// A message arrived in an MSRP chat session: it joins the conversation with the peer.
    pub(crate) fn chat_session_message(&self, account_id: &str, from: String, text: String) {
        let id = self.new_message_id();
        self.typing_changed(account_id, &from);
        self.emit(AppEvent::Composing {
            account_id: account_id.to_owned(),
            peer: from.clone(),
            active: false,
        });
        self.put_message(ChatMessage {
            id,
            account_id: account_id.to_owned(),
            peer: from,
            direction: Direction::Incoming,
            text,
            at_ms: now_ms(),
            status: MessageStatus::Unread,
            error: None,
        });
    }

    /// A delivery or read notification arrived about one of our messages.
    pub(crate) fn on_imdn(&self, imdn: &Imdn) {
        let Some(id) = lock(&self.social().sent_ids).get(&imdn.message_id).cloned() else {
            return;
        };
        self.update_message(&id, |m| match imdn.notification {
            // A read message stays read when a late delivery notification arrives.
            Notification::Delivery(DeliveryStatus::Delivered)
                if m.status != MessageStatus::Displayed =>
            {
                m.status = MessageStatus::Delivered;
            }
            Notification::Delivery(DeliveryStatus::Delivered) => {}
            Notification::Display(DisplayStatus::Displayed) => {
                m.status = MessageStatus::Displayed;
            }
            Notification::Delivery(_) => {
                m.status = MessageStatus::Failed;
                m.error = Some("The recipient's device could not deliver it.".to_owned());
            }
            _ => {}
        });
    }

    /// An is-composing indication arrived. An `active` state lapses by itself (RFC 3994 §4.2):
    /// after the sender's refresh interval, or [`COMPOSING_DEFAULT_EXPIRY`] without one, with
    /// no newer indication or message from that peer, the peer is shown as no longer typing.
    pub(crate) fn on_composing(
        &self,
        account_id: &str,
        from: String,
        active: bool,
        refresh: Option<u32>,
    ) {
        let generation = self.typing_changed(account_id, &from);
        if active {
            let lapse = refresh
                .filter(|r| *r > 0)
                .map(|r| std::time::Duration::from_secs(u64::from(r)))
                .unwrap_or(COMPOSING_DEFAULT_EXPIRY);
            let me = self.clone();
            let account = account_id.to_owned();
            let peer = from.clone();
            tokio::spawn(async move {
                tokio::time::sleep(lapse).await;
                let current = lock(&me.social().typing)
                    .get(&typing_key(&account, &peer))
                    .copied();
                if current == Some(generation) {
                    me.typing_changed(&account, &peer);
                    me.emit(AppEvent::Composing {
                        account_id: account,
                        peer,
                        active: false,
                    });
                }
            });
        }
        self.emit(AppEvent::Composing {
            account_id: account_id.to_owned(),
            peer: from,
            active,
        });
    }

    /// Something changed about whether `peer` types (an indication or a message arrived):
    /// pending expiries of earlier indications are void. Returns the new generation.
    fn typing_changed(&self, account_id: &str, peer: &str) -> u64 {
        let mut typing = lock(&self.social().typing);
        let next = self
            .social()
            .typing_generation
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        typing.insert(typing_key(account_id, peer), next);
        next
    }

    /// The XCAP client of an account, when it has an XCAP server (the bundled lab's accounts do).
    async fn xcap_for(&self, account: &Account) -> Result<Option<XcapClient>, Failure> {
        let lab = self.inner.lab.lock().await;
        let Some(lab) = lab.as_ref() else {
            return Ok(None);
        };
        if account.domain != lab.info().domain {
            return Ok(None);
        }
        lab.xcap_client(account)
    }

    fn normalize_contact(account: &Account, uri: &str) -> Result<String, Failure> {
        account.target_uri(uri).map(|u| u.to_string()).map_err(|e| {
            failure(
                FailureKind::Settings,
                format!("\"{}\" is not a valid contact address.", uri.trim()),
                e.to_string(),
            )
        })
    }

    fn contact_changed(&self, account_id: &str, uri: &str, f: impl FnOnce(&mut Contact)) {
        let updated = {
            let mut contacts = lock(&self.social().contacts);
            contacts
                .get_mut(&(account_id.to_owned(), uri.to_owned()))
                .map(|slot| {
                    f(&mut slot.contact);
                    slot.contact.clone()
                })
        };
        if let Some(contact) = updated {
            self.emit(AppEvent::Contact { contact });
        }
    }

    /// Command `list_contacts`: every contact of every account with their presence.
    pub fn list_contacts(&self) -> Vec<Contact> {
        lock(&self.social().contacts)
            .values()
            .map(|s| s.contact.clone())
            .collect()
    }

    /// Command `add_contact`: adds a contact (to the account's XCAP buddy list too, when it has
    /// one) and subscribes to their presence when the account is signed in.
    pub async fn add_contact(&self, arg: ContactArg) -> Result<Contact, Failure> {
        let account = self.account_of(&arg.account_id)?;
        let uri = Self::normalize_contact(&account, &arg.uri)?;
        let name = arg.name.filter(|n| !n.trim().is_empty());
        if let Some(xcap) = self.xcap_for(&account).await? {
            xcap.add_buddy(&uri, name.as_deref()).await.map_err(|e| {
                failure(
                    FailureKind::Other,
                    "The buddy list on the server could not be updated.",
                    e.to_string(),
                )
            })?;
        }
        let contact = Contact {
            account_id: arg.account_id.clone(),
            uri: uri.clone(),
            name,
            status: PresenceStatus::Unknown,
            note: None,
            watch: WatchState::Subscribing,
        };
        lock(&self.social().contacts).insert(
            (arg.account_id.clone(), uri.clone()),
            ContactSlot {
                contact: contact.clone(),
                task: None,
            },
        );
        self.save_contacts();
        self.emit(AppEvent::Contact {
            contact: contact.clone(),
        });
        if self.is_registered(&arg.account_id) {
            self.watch_contact(&arg.account_id, &uri).await;
        }
        Ok(contact)
    }

    /// Command `remove_contact`: forgets a contact and ends the presence subscription.
    pub async fn remove_contact(&self, arg: ContactArg) -> Result<(), Failure> {
        let account = self.account_of(&arg.account_id)?;
        let uri = Self::normalize_contact(&account, &arg.uri)?;
        let removed = lock(&self.social().contacts).remove(&(arg.account_id.clone(), uri.clone()));
        if removed.is_none() {
            return Err(failure(
                FailureKind::Settings,
                format!("{uri} is not a contact."),
                "",
            ));
        }
        drop(removed);
        self.save_contacts();
        if let Some(xcap) = self.xcap_for(&account).await?
            && let Err(e) = xcap.remove_buddy(&uri).await
        {
            tracing::debug!(error = %e, "buddy not removed from XCAP");
        }
        self.emit(AppEvent::ContactRemoved {
            account_id: arg.account_id,
            uri,
        });
        Ok(())
    }

    /// Starts (or restarts) the presence subscription of one contact.
    async fn watch_contact(&self, account_id: &str, uri: &str) {
        let (account, ua) = match (self.account_of(account_id), self.ua_for(account_id).await) {
            (Ok(a), Ok(u)) => (a, u),
            _ => return,
        };
        let Ok(target) = account.target_uri(uri) else {
            return;
        };
        let mut sub = ua.subscribe_presence(&account, target);
        let me = self.clone();
        let (acc, u) = (account_id.to_owned(), uri.to_owned());
        let task = tokio::spawn(async move {
            while let Some(event) = sub.next().await {
                match event {
                    PresenceEvent::State(p) => me.contact_changed(&acc, &u, |c| {
                        c.status = status_of(p.availability());
                        c.note = note_of(&p);
                        c.watch = WatchState::Active;
                    }),
                    PresenceEvent::Pending => me.contact_changed(&acc, &u, |c| {
                        c.watch = WatchState::Pending;
                        c.status = PresenceStatus::Unknown;
                    }),
                    PresenceEvent::Terminated { final_, .. } => {
                        me.contact_changed(&acc, &u, |c| {
                            c.status = PresenceStatus::Unknown;
                            c.watch = if final_ {
                                WatchState::Refused
                            } else {
                                WatchState::Subscribing
                            };
                        });
                    }
                    _ => {}
                }
            }
        });
        let mut contacts = lock(&self.social().contacts);
        match contacts.get_mut(&(account_id.to_owned(), uri.to_owned())) {
            Some(slot) => {
                if let Some(old) = slot.task.replace(task) {
                    old.abort();
                }
            }
            None => task.abort(),
        }
    }

    fn is_registered(&self, account_id: &str) -> bool {
        lock(&self.inner.accounts)
            .get(account_id)
            .is_some_and(|s| matches!(s.registration, RegistrationState::Registered { .. }))
    }

    /// The account signed in: merge its XCAP buddy list, subscribe to every contact's presence
    /// and to our watcher list, and publish our presence.
    pub(crate) async fn account_online(&self, account_id: &str) {
        let Ok(account) = self.account_of(account_id) else {
            return;
        };
        if let Ok(Some(xcap)) = self.xcap_for(&account).await {
            match xcap.buddies().await {
                Ok(buddies) => {
                    let mut added = false;
                    {
                        let mut contacts = lock(&self.social().contacts);
                        for b in buddies {
                            let key = (account_id.to_owned(), b.uri.clone());
                            if let std::collections::btree_map::Entry::Vacant(v) =
                                contacts.entry(key)
                            {
                                added = true;
                                v.insert(ContactSlot {
                                    contact: Contact {
                                        account_id: account_id.to_owned(),
                                        uri: b.uri.clone(),
                                        name: b.display_name.as_ref().map(|d| d.text.clone()),
                                        status: PresenceStatus::Unknown,
                                        note: None,
                                        watch: WatchState::Subscribing,
                                    },
                                    task: None,
                                });
                            }
                        }
                    }
                    if added {
                        self.save_contacts();
                    }
                }
                Err(e) => tracing::debug!(error = %e, "XCAP buddy list not read"),
            }
        }
        let uris: Vec<String> = lock(&self.social().contacts)
            .values()
            .filter(|s| s.contact.account_id == account_id)
            .map(|s| s.contact.uri.clone())
            .collect();
        for uri in uris {
            self.watch_contact(account_id, &uri).await;
        }
        self.watch_watchers(account_id, &account).await;
        self.watch_voicemail(account_id, &account).await;
        let mine = lock(&self.social().presence)
            .get(account_id)
            .cloned()
            .unwrap_or(MyPresence {
                account_id: account_id.to_owned(),
                status: PresenceStatus::Available,
                note: None,
            });
        if let Err(f) = self.set_presence(mine).await {
            tracing::debug!(error = %f.detail, "presence not published");
        }
    }

    /// The account signed out: end its subscriptions and publication.
    pub(crate) async fn account_offline(&self, account_id: &str) {
        {
            let mut contacts = lock(&self.social().contacts);
            for slot in contacts.values_mut() {
                if slot.contact.account_id == account_id {
                    if let Some(t) = slot.task.take() {
                        t.abort();
                    }
                    slot.contact.status = PresenceStatus::Unknown;
                }
            }
        }
        lock(&self.social().winfo).remove(account_id);
        lock(&self.social().mwi).remove(account_id);
        let publication = self.social().publications.lock().await.remove(account_id);
        if let Some(p) = publication
            && let Err(e) = p.remove().await
        {
            tracing::debug!(error = %e, "publication not removed");
        }
    }

    async fn watch_watchers(&self, account_id: &str, account: &Account) {
        let Ok(ua) = self.ua_for(account_id).await else {
            return;
        };
        let mut sub = match ua.subscribe_winfo(account) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "no watcher-info subscription");
                return;
            }
        };
        let me = self.clone();
        let acc = account_id.to_owned();
        let task = tokio::spawn(async move {
            while let Some(event) = sub.next().await {
                if let WinfoEvent::Info(info) = event {
                    me.on_winfo(&acc, &info);
                }
            }
        });
        lock(&self.social().winfo).insert(account_id.to_owned(), AbortOnDrop(task));
    }

    fn on_winfo(&self, account_id: &str, info: &WatcherInfo) {
        let watchers = {
            let mut all = lock(&self.social().watchers);
            let list = all.entry(account_id.to_owned()).or_default();
            if info.state == WinfoState::Full {
                list.clear();
            }
            for wl in info.lists.iter().filter(|l| l.package == "presence") {
                for w in &wl.watchers {
                    list.insert(
                        w.uri.clone(),
                        Watcher {
                            account_id: account_id.to_owned(),
                            uri: w.uri.clone(),
                            name: w.display_name.clone(),
                            status: w.status.as_str().to_owned(),
                        },
                    );
                }
            }
            list.values().cloned().collect::<Vec<_>>()
        };
        self.emit(AppEvent::Watchers {
            account_id: account_id.to_owned(),
            watchers,
        });
    }

    /// Subscribes to the account's message summary (RFC 3842): every NOTIFY becomes a
    /// `Voicemail` event with the counts and the address to call.
    async fn watch_voicemail(&self, account_id: &str, account: &Account) {
        let Ok(ua) = self.ua_for(account_id).await else {
            return;
        };
        let mut sub = ua.subscribe_mwi(account, None);
        let me = self.clone();
        let acc = account_id.to_owned();
        let fallback = format!("sip:voicemail@{}", account.domain);
        let task = tokio::spawn(async move {
            while let Some(event) = sub.next().await {
                let (Some((new_messages, old_messages)), MwiEvent::Summary(summary)) =
                    (event.voice_counts(), &event)
                else {
                    continue;
                };
                let voicemail = Voicemail {
                    account_id: acc.clone(),
                    new_messages,
                    old_messages,
                    voicemail_uri: summary
                        .account
                        .clone()
                        .filter(|a| !a.trim().is_empty())
                        .unwrap_or_else(|| fallback.clone()),
                };
                lock(&me.social().voicemail).insert(acc.clone(), voicemail.clone());
                me.emit(AppEvent::Voicemail { voicemail });
            }
        });
        lock(&self.social().mwi).insert(account_id.to_owned(), AbortOnDrop(task));
    }

    /// When `call_id` is a call to a conference room (`conf-…`), follows the room's roster
    /// (RFC 4575) as `Roster` events until the returned guard is dropped.
    pub(crate) async fn watch_roster(
        &self,
        call_id: &str,
        account_id: &str,
        remote: &str,
    ) -> Option<AbortOnDrop> {
        let account = self.account_of(account_id).ok()?;
        let room = account.target_uri(remote).ok()?;
        if !room.user.as_deref().is_some_and(|u| u.starts_with("conf-")) {
            return None;
        }
        let ua = self.ua_for(account_id).await.ok()?;
        let mut sub = ua.subscribe_conference(&account, room);
        let me = self.clone();
        let call = call_id.to_owned();
        Some(AbortOnDrop(tokio::spawn(async move {
            while let Some(event) = sub.next().await {
                if let ConferenceEvent::Roster(info) = event {
                    me.emit(AppEvent::Roster {
                        call_id: call.clone(),
                        participants: roster_of(&info),
                    });
                }
            }
        })))
    }

    /// Command `list_voicemail`: the voicemail waiting per account (from message summaries).
    pub fn list_voicemail(&self) -> Vec<Voicemail> {
        lock(&self.social().voicemail).values().cloned().collect()
    }

    /// Command `list_watchers`: everyone watching (or asking to watch) our accounts.
    pub fn list_watchers(&self) -> Vec<Watcher> {
        lock(&self.social().watchers)
            .values()
            .flat_map(|m| m.values().cloned())
            .collect()
    }

    /// Command `allow_watcher` / `block_watcher`: writes the decision into the account's
    /// presence rules (XCAP pres-rules); the server re-evaluates the watcher's subscription.
    pub async fn decide_watcher(&self, arg: WatcherArg, allow: bool) -> Result<(), Failure> {
        let account = self.account_of(&arg.account_id)?;
        let Some(xcap) = self.xcap_for(&account).await? else {
            return Err(failure(
                FailureKind::Settings,
                "This account has no XCAP server, so watchers cannot be allowed or blocked from here.",
                "",
            ));
        };
        let result = if allow {
            xcap.allow_watcher(&arg.uri).await
        } else {
            xcap.block_watcher(&arg.uri).await
        };
        result.map_err(|e| {
            failure(
                FailureKind::Other,
                "The presence rules on the server could not be updated.",
                e.to_string(),
            )
        })
    }

    /// Command `my_presence`: what we publish for each account.
    pub fn my_presence(&self) -> Vec<MyPresence> {
        lock(&self.social().presence).values().cloned().collect()
    }

    /// Command `set_presence`: publishes our state and note (PUBLISH, refreshed in the
    /// background); remembered for the next sign-in.
    pub async fn set_presence(&self, presence: MyPresence) -> Result<(), Failure> {
        let account = self.account_of(&presence.account_id)?;
        let availability = availability_of(presence.status);
        let note = presence
            .note
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty());
        lock(&self.social().presence).insert(presence.account_id.clone(), presence.clone());
        if self.is_registered(&presence.account_id) {
            let mut pubs = self.social().publications.lock().await;
            let existing = pubs.get(&presence.account_id);
            let result = match existing {
                Some(p) => p.modify(availability, note).await,
                None => {
                    let ua = self.ua_for(&presence.account_id).await?;
                    match ua.publish(&account, availability, note).await {
                        Ok(p) => {
                            pubs.insert(presence.account_id.clone(), p);
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            result.map_err(|e| explain_call(&e))?;
        }
        self.emit(AppEvent::MyPresence { presence });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_compare_without_parameters_and_brackets() {
        assert!(same_peer(
            "sip:bob@tandem.lab",
            "<sip:Bob@tandem.lab>;tag=1"
        ));
        assert!(same_peer(
            "\"Bob\" <sip:bob@tandem.lab>",
            "sip:bob@tandem.lab;transport=udp"
        ));
        assert!(!same_peer("sip:bob@tandem.lab", "sip:carol@tandem.lab"));
    }

    #[test]
    fn notes_prefer_the_person() {
        let p = Availability::Busy.to_presence("sip:a@b", Some("in a meeting"));
        assert_eq!(note_of(&p).as_deref(), Some("in a meeting"));
        assert_eq!(status_of(p.availability()), PresenceStatus::Busy);
        let none = Availability::Available.to_presence("sip:a@b", None);
        assert_eq!(note_of(&none), None);
    }
}
