//! The types that cross the bridge between the Rust side and the ui: command arguments,
//! command results and events. Their TypeScript twins in `ui/src/lib/bindings/` are generated
//! from these definitions ([`crate::bindings`]); they are never written by hand.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// Which transport an account uses to reach its registrar or proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS, Default)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// SIP over UDP.
    #[default]
    Udp,
    /// SIP over TCP.
    Tcp,
    /// SIP over TLS.
    Tls,
}

/// How an account protects call media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS, Default)]
#[serde(rename_all = "lowercase")]
pub enum SrtpMode {
    /// Plain RTP.
    #[default]
    Off,
    /// SRTP offered, plain RTP accepted.
    Optional,
    /// SRTP only; plain calls are refused.
    Mandatory,
}

/// An account's settings as the user entered them (the password is not part of it: it lives in
/// the OS keyring).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct AccountSettings {
    /// User part of the address of record (`alice` in `sip:alice@example.org`).
    pub user: String,
    /// Domain of the address of record.
    pub domain: String,
    /// Digest user name when it differs from `user`.
    #[serde(default)]
    pub auth_user: Option<String>,
    /// Name shown to the people we call.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Outbound proxy (`host`, `host:port` or a SIP URI); none means the domain itself.
    #[serde(default)]
    pub proxy: Option<String>,
    /// Transport towards the proxy or registrar.
    #[serde(default)]
    pub transport: TransportKind,
    /// Media protection.
    #[serde(default)]
    pub srtp: SrtpMode,
    /// Registration expiry asked for, in seconds.
    #[serde(default = "default_expires")]
    pub expires: u32,
    /// True for accounts of the bundled lab server (their proxy follows the lab's address).
    #[serde(default)]
    pub lab: bool,
}

fn default_expires() -> u32 {
    tandem_client_core::DEFAULT_EXPIRES
}

/// The arguments of `add_account`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct NewAccount {
    /// The account's settings.
    pub settings: AccountSettings,
    /// Its password (stored in the OS keyring, never in a file); none for accounts without auth.
    #[serde(default)]
    pub password: Option<String>,
}

/// Why a registration or a test connection failed, as a category the ui can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub enum FailureKind {
    /// The server refused the user name or password.
    WrongPassword,
    /// Nothing answered: wrong address, server down, or a firewall.
    Unreachable,
    /// The TLS handshake failed (certificate not trusted, expired, wrong name).
    Tls,
    /// The server answered with an error status.
    Rejected,
    /// The settings are invalid (bad address, missing user).
    Settings,
    /// The password could not be read from or written to the OS keyring.
    Keyring,
    /// Anything else.
    Other,
}

/// A failure explained in words for the user, with its category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// The category.
    pub kind: FailureKind,
    /// One or two sentences for the user: what went wrong and what to try.
    pub message: String,
    /// The technical detail (status line, socket error), for the curious.
    pub detail: String,
    /// For TLS failures: the certificate the server presented and what is wrong with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub certificate: Option<Box<CertificateProblem>>,
}

/// What is wrong with a server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub enum CertificateTrouble {
    /// Its validity ended.
    Expired,
    /// Its validity has not begun (or this computer's clock is wrong).
    NotYetValid,
    /// It comes from a certificate authority the app does not trust.
    Untrusted,
    /// It is for another server name.
    WrongName,
    /// Something else (bad signature, unsupported, revoked).
    Other,
}

/// One certificate, as the ui shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct CertificateDetails {
    /// Its subject (`CN=…, O=…`).
    pub subject: String,
    /// Who issued it.
    pub issuer: String,
    /// First day of validity (`YYYY-MM-DD`, UTC).
    pub not_before: String,
    /// Last day of validity (`YYYY-MM-DD`, UTC).
    pub not_after: String,
    /// SHA-256 fingerprint (`AB:CD:…`).
    pub sha256: String,
    /// It is a certificate authority's certificate.
    pub is_ca: bool,
    /// Subject and issuer are the same.
    pub self_signed: bool,
    /// The certificate in PEM form (what `trust_ca` takes).
    pub pem: String,
}

/// A server certificate the app refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct CertificateProblem {
    /// What is wrong.
    pub trouble: CertificateTrouble,
    /// The name or address we connected to.
    pub server: String,
    /// The verifier's words.
    pub error: String,
    /// The server's certificate.
    pub certificate: Option<CertificateDetails>,
    /// The CA certificate the server sent, which the user may choose to trust (only for
    /// `untrusted`).
    pub ca: Option<CertificateDetails>,
}

/// The arguments of `trust_ca`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct TrustArg {
    /// The CA certificate in PEM form.
    pub pem: String,
}

/// Where a file transfer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub enum TransferState {
    /// Incoming: offered, waiting for the user to accept or decline.
    Offered,
    /// Under way.
    Transferring,
    /// Complete (received and hash-checked, or confirmed by the receiver).
    Done,
    /// Declined by us or the peer.
    Declined,
    /// Failed.
    Failed,
}

/// A file sent or received over MSRP (RFC 5547).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct FileTransfer {
    /// Its id in this app.
    pub id: String,
    /// The account.
    pub account_id: String,
    /// The other party.
    pub peer: String,
    /// Who sends.
    pub direction: Direction,
    /// The file name.
    pub name: String,
    /// Its size in bytes.
    pub size: f64,
    /// Bytes sent (acknowledged) or received so far.
    pub bytes: f64,
    /// Where it is.
    pub state: TransferState,
    /// Where the file is on this computer (received: once complete).
    pub path: Option<String>,
    /// Why it failed, in words.
    pub error: Option<String>,
    /// When it started (Unix ms).
    pub at_ms: f64,
}

/// The arguments of `send_file`: a file on disk (`path`), or its contents from the ui
/// (`name` and `dataBase64`, e.g. from a file picker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct SendFile {
    /// The account to send from.
    pub account_id: String,
    /// The recipient: a SIP URI, `user` or `user@domain`.
    pub to: String,
    /// A file on this computer.
    #[serde(default)]
    pub path: Option<String>,
    /// The file name (with `dataBase64`).
    #[serde(default)]
    pub name: Option<String>,
    /// The contents, base64 (with `name`).
    #[serde(default)]
    pub data_base64: Option<String>,
}

/// The arguments of commands that name one file transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct FileArg {
    /// The transfer id.
    pub transfer_id: String,
}

/// The arguments of `join_conference`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct JoinConference {
    /// The account to call from.
    pub account_id: String,
    /// The room name (`team` joins `conf-team@<the account's domain>`), or a full SIP address.
    pub room: String,
    /// The room's PIN, sent as DTMF (followed by `#`) once the room answers.
    #[serde(default)]
    pub pin: Option<String>,
}

/// An account's registration state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum RegistrationState {
    /// Not registered (never tried, or signed out).
    Unregistered,
    /// A REGISTER is under way.
    Registering,
    /// Registered; the binding is refreshed in the background.
    Registered {
        /// Granted expiry in seconds.
        expires: u32,
    },
    /// The last attempt or refresh failed.
    Failed {
        /// What went wrong.
        failure: Failure,
    },
}

/// One account as the ui lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct AccountInfo {
    /// Stable id (`user@domain`).
    pub id: String,
    /// The settings.
    pub settings: AccountSettings,
    /// Whether a password is stored in the keyring.
    pub has_password: bool,
    /// Registration state.
    pub registration: RegistrationState,
}

/// Which side started a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// We called.
    Outgoing,
    /// We were called.
    Incoming,
}

/// Where a call is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub enum CallPhase {
    /// Outgoing: INVITE sent, no answer yet.
    Dialing,
    /// Outgoing: the far end is ringing.
    Ringing,
    /// Incoming: waiting for the user to answer or decline.
    Incoming,
    /// Answered, media flowing.
    Active,
    /// Ended.
    Ended,
}

/// Live audio quality of a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct Quality {
    /// Codec we send with.
    pub codec: String,
    /// Receive loss in percent.
    pub loss_percent: f32,
    /// Receive jitter in milliseconds.
    pub jitter_ms: f32,
    /// Round-trip time in milliseconds, once measured.
    pub rtt_ms: Option<f32>,
    /// Estimated mean opinion score (1.0 to 4.5).
    pub mos: f32,
    /// True when media is SRTP-protected.
    pub secure: bool,
}

/// One call as the ui shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct CallInfo {
    /// The call's id in this app (unique even when both ends of a call are our accounts).
    pub id: String,
    /// Its SIP Call-ID.
    pub sip_call_id: String,
    /// The account the call belongs to.
    pub account_id: String,
    /// The other party's address.
    pub remote: String,
    /// Who called.
    pub direction: Direction,
    /// Where the call is.
    pub phase: CallPhase,
    /// When the call was answered (Unix time in milliseconds): the call timer starts here.
    pub answered_at_ms: Option<f64>,
    /// We put the call on hold.
    pub held: bool,
    /// The other party put us on hold.
    pub remote_held: bool,
    /// Our microphone is muted.
    pub muted: bool,
    /// Codec in use, once media runs.
    pub codec: Option<String>,
    /// Media is encrypted.
    pub secure: bool,
    /// Why it ended (set in the `Ended` phase).
    pub end_reason: Option<String>,
    /// The path the media takes (ICE's choice), once known.
    #[serde(default)]
    pub media_path: Option<MediaPath>,
    /// The call's video, while it has a video stream (absent for audio-only calls).
    #[serde(default)]
    pub video: Option<Box<VideoInfo>>,
}

/// Which way a call's media goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub enum MediaPathKind {
    /// Host to host: nothing in between.
    Direct,
    /// Through a NAT mapping (a server- or peer-reflexive candidate).
    Reflexive,
    /// Through a TURN relay.
    Relay,
    /// The other side does no ICE: plain RTP to the address in its SDP.
    Plain,
    /// ICE found no working path (or lost it).
    Failed,
}

/// The path of a call's media, with the reason in words (for the call-quality badge).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct MediaPath {
    /// Direct, reflexive, relay, plain or failed.
    pub kind: MediaPathKind,
    /// Our candidate's type (`host`, `srflx`, `prflx`, `relay`) when ICE selected a pair.
    pub local_type: Option<String>,
    /// The peer's candidate's type.
    pub remote_type: Option<String>,
    /// Our address on the path.
    pub local: Option<String>,
    /// The peer's address on the path.
    pub remote: Option<String>,
    /// Why the media goes this way, in words.
    pub why: String,
}

/// An audio device the user can pick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct AudioDevice {
    /// The name to pass back in `switch_devices` (e.g. `null.monitor`).
    pub name: String,
    /// Human-readable description.
    pub description: String,
    /// Usable as a microphone.
    pub input: bool,
    /// Usable as a speaker.
    pub output: bool,
    /// The system default for its direction.
    pub default: bool,
}

/// The devices new calls use, as device specs (`default`, a device name, `null`, `tone:440`,
/// `file:PATH`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct DeviceChoice {
    /// Microphone.
    pub capture: String,
    /// Speaker.
    pub playback: String,
}

impl Default for DeviceChoice {
    fn default() -> Self {
        DeviceChoice {
            capture: "default".to_owned(),
            playback: "default".to_owned(),
        }
    }
}

/// What `list_devices` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct Devices {
    /// The devices the audio host reports (empty when there is no audio server).
    pub available: Vec<AudioDevice>,
    /// What new calls use.
    pub current: DeviceChoice,
}

/// How a call in the history ended, for the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub enum HistoryOutcome {
    /// Answered and then ended normally.
    Answered,
    /// Incoming and never answered.
    Missed,
    /// Incoming and declined by us.
    Declined,
    /// Outgoing and not answered (busy, declined, no answer, failure).
    Failed,
}

/// One entry of the call history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// The account.
    pub account_id: String,
    /// The other party.
    pub remote: String,
    /// Who called.
    pub direction: Direction,
    /// How it ended.
    pub outcome: HistoryOutcome,
    /// When it started (Unix ms).
    pub started_at_ms: f64,
    /// Talk time in seconds (0 when never answered).
    pub duration_secs: f64,
    /// The end reason or failure in words.
    pub detail: String,
}

/// A demo account of the bundled lab server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct LabUser {
    /// User name (`alice`).
    pub user: String,
    /// Its password (the lab is local and for learning: the ui may show it).
    pub password: String,
}

/// The running bundled lab server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct LabInfo {
    /// Its SIP domain.
    pub domain: String,
    /// `host:port` of its UDP listener.
    pub udp: String,
    /// `host:port` of its TCP listener.
    pub tcp: Option<String>,
    /// `host:port` of its XCAP server (HTTPS: buddy lists and presence rules).
    pub xcap: Option<String>,
    /// The demo accounts.
    pub users: Vec<LabUser>,
    /// The account the app signed in as.
    pub signed_in_as: String,
}

/// The arguments of `call`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct CallRequest {
    /// The account to call from.
    pub account_id: String,
    /// Who to call: a SIP URI, `user`, `user@domain` or a `tel:` number.
    pub target: String,
    /// Offer video too (sending from the chosen camera); absent or false: an audio call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub video: Option<bool>,
}

/// Where a chat message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub enum MessageStatus {
    /// Outgoing: the MESSAGE is under way.
    Sending,
    /// Outgoing: the recipient's device took it (200).
    Sent,
    /// Outgoing: a server stored it for a recipient who is offline (202).
    Stored,
    /// Outgoing: the recipient's device confirmed delivery (IMDN).
    Delivered,
    /// Outgoing: the recipient read it (IMDN display).
    Displayed,
    /// Outgoing: it could not be sent.
    Failed,
    /// Incoming: not yet read here.
    Unread,
    /// Incoming: read here.
    Read,
}

/// One chat message (page mode, RFC 3428).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessage {
    /// Its id in this app (for outgoing messages also the CPIM `imdn.Message-ID`).
    pub id: String,
    /// The account it was sent from or received on.
    pub account_id: String,
    /// The other party's address (`sip:bob@example.org`).
    pub peer: String,
    /// Who wrote it.
    pub direction: Direction,
    /// The text.
    pub text: String,
    /// When it was sent or received (Unix ms).
    pub at_ms: f64,
    /// Delivery and read state.
    pub status: MessageStatus,
    /// Why it failed, in words (set with `Failed`).
    pub error: Option<String>,
}

/// The arguments of `send_message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct SendMessage {
    /// The account to send from.
    pub account_id: String,
    /// The recipient: a SIP URI, `user` or `user@domain`.
    pub to: String,
    /// The text.
    pub text: String,
}

/// The arguments of `composing` (typing indicator) and `mark_read`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct PeerArg {
    /// The account.
    pub account_id: String,
    /// The other party's address.
    pub peer: String,
    /// For `composing`: typing (true) or stopped (false); ignored by `mark_read`.
    #[serde(default)]
    pub active: bool,
}

/// A presence state as the ui shows and sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub enum PresenceStatus {
    /// Online and free.
    Available,
    /// Away from the device.
    Away,
    /// Busy, do not disturb.
    Busy,
    /// In a call.
    OnThePhone,
    /// Offline (or hidden).
    Offline,
    /// Not known: the contact has not allowed us to see it yet, or nothing arrived.
    Unknown,
}

/// How far our subscription to a contact's presence has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub enum WatchState {
    /// The SUBSCRIBE is under way.
    Subscribing,
    /// The contact has not yet allowed us to see their presence.
    Pending,
    /// We see their presence.
    Active,
    /// The contact refused, or the subscription ended for good.
    Refused,
}

/// One contact with their live presence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    /// The account whose buddy list holds the contact.
    pub account_id: String,
    /// Their address (`sip:bob@example.org`).
    pub uri: String,
    /// The name to show.
    pub name: Option<String>,
    /// Their presence.
    pub status: PresenceStatus,
    /// Their presence note.
    pub note: Option<String>,
    /// How far our subscription got.
    pub watch: WatchState,
}

/// The arguments of `add_contact` and `remove_contact`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct ContactArg {
    /// The account.
    pub account_id: String,
    /// The contact's address: a SIP URI, `user` or `user@domain`.
    pub uri: String,
    /// The name to show (`add_contact` only).
    #[serde(default)]
    pub name: Option<String>,
}

/// Someone who asked to see (or sees) our presence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct Watcher {
    /// The account being watched.
    pub account_id: String,
    /// The watcher's address.
    pub uri: String,
    /// Their display name, when given.
    pub name: Option<String>,
    /// `pending` (awaiting our decision), `active` (allowed), `waiting` or `terminated`.
    pub status: String,
}

/// The arguments of `allow_watcher` and `block_watcher`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct WatcherArg {
    /// The account being watched.
    pub account_id: String,
    /// The watcher's address.
    pub uri: String,
}

/// The arguments of `set_presence`, and our own published state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct MyPresence {
    /// The account.
    pub account_id: String,
    /// The state to publish (`Unknown` is treated as `Available`).
    pub status: PresenceStatus,
    /// A note shown to watchers.
    #[serde(default)]
    pub note: Option<String>,
}

/// Voicemail waiting for an account (RFC 3842 message summary).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct Voicemail {
    /// The account.
    pub account_id: String,
    /// New (unheard) messages.
    pub new_messages: u32,
    /// Old (heard) messages.
    pub old_messages: u32,
    /// The address to call to listen to them.
    pub voicemail_uri: String,
}

/// One participant of a conference call's roster (RFC 4575).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct RosterEntry {
    /// The participant's address.
    pub uri: String,
    /// The name the conference shows, when given.
    pub name: Option<String>,
    /// Speaking now (the lab's energy detection).
    pub speaking: bool,
    /// Their audio is not sent to the room (muted or on hold).
    pub muted: bool,
}

/// Everything the Rust side tells the ui without being asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum AppEvent {
    /// The account list changed (added, removed, edited).
    AccountsChanged {
        /// The accounts now.
        accounts: Vec<AccountInfo>,
    },
    /// An account's registration state changed.
    Registration {
        /// The account.
        #[serde(rename = "accountId")]
        #[ts(rename = "accountId")]
        account_id: String,
        /// Its new state.
        state: RegistrationState,
    },
    /// A call appeared or changed (incoming, ringing, answered, held, muted, ended).
    Call {
        /// The call now.
        call: CallInfo,
    },
    /// A quality report for a call in progress.
    Quality {
        /// The call.
        #[serde(rename = "callId")]
        #[ts(rename = "callId")]
        call_id: String,
        /// The figures.
        quality: Quality,
    },
    /// A DTMF digit arrived from the other party.
    Dtmf {
        /// The call.
        #[serde(rename = "callId")]
        #[ts(rename = "callId")]
        call_id: String,
        /// The digit.
        digit: String,
    },
    /// A chat message arrived, or one of ours changed state (sent, delivered, read, failed).
    Message {
        /// The message now.
        message: ChatMessage,
    },
    /// The other party started or stopped typing.
    Composing {
        /// The account.
        #[serde(rename = "accountId")]
        #[ts(rename = "accountId")]
        account_id: String,
        /// Who is typing.
        peer: String,
        /// Typing (true) or stopped (false).
        active: bool,
    },
    /// A contact was added or their presence changed.
    Contact {
        /// The contact now.
        contact: Contact,
    },
    /// A `sip:`/`tel:` link asks for a call, for the user to confirm.
    CallLink {
        /// The call the link asks for.
        link: crate::links::CallLink,
    },
    /// A contact was removed.
    ContactRemoved {
        /// The account.
        #[serde(rename = "accountId")]
        #[ts(rename = "accountId")]
        account_id: String,
        /// Their address.
        uri: String,
    },
    /// The list of people watching an account's presence changed.
    Watchers {
        /// The account.
        #[serde(rename = "accountId")]
        #[ts(rename = "accountId")]
        account_id: String,
        /// Every watcher now.
        watchers: Vec<Watcher>,
    },
    /// Our own published presence changed.
    MyPresence {
        /// The state now.
        presence: MyPresence,
    },
    /// Voicemail waiting changed.
    Voicemail {
        /// The counts now.
        voicemail: Voicemail,
    },
    /// The roster of a conference call changed.
    Roster {
        /// The call (to the conference).
        #[serde(rename = "callId")]
        #[ts(rename = "callId")]
        call_id: String,
        /// Everyone in the room now.
        participants: Vec<RosterEntry>,
    },
    /// A file transfer was offered, progressed, finished or failed.
    FileTransfer {
        /// The transfer now.
        transfer: FileTransfer,
    },
    /// Video figures of a call (every few seconds while it has video).
    Video {
        /// The call.
        #[serde(rename = "callId")]
        #[ts(rename = "callId")]
        call_id: String,
        /// The figures.
        figures: VideoFigures,
    },
    /// Something the user should know that belongs to no command (a media warning, a failed transfer).
    Notice {
        /// The call it concerns, if any.
        #[serde(rename = "callId")]
        #[ts(rename = "callId")]
        call_id: Option<String>,
        /// The message.
        message: String,
    },
}

/// A frame size, with the frame rate when it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct VideoSize {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frames per second, when known.
    pub fps: Option<u32>,
}

/// A call's video as the ui shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct VideoInfo {
    /// The video codec negotiated (`VP8`, `H264`), once the stream runs.
    pub codec: Option<String>,
    /// What we send (size and rate), or none when our camera is off or the peer takes no video.
    pub sending: Option<VideoSize>,
    /// The peer sends us video (the negotiated direction allows it).
    pub receiving: bool,
    /// The size of the peer's pictures, once the first one was decoded.
    pub remote_size: Option<VideoSize>,
    /// The camera we send from (a camera id from `list_cameras`), none when it is off.
    pub camera: Option<String>,
    /// The peer turned its video on (we show it at once, receive-only): ask whether to send our
    /// camera too. "Show my camera" is `set_video` on; "Not now" is `dismiss_video_offer`.
    pub peer_offered: bool,
}

/// What kind of video source a camera is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub enum CameraKind {
    /// The built-in moving test pattern with a frame counter.
    Pattern,
    /// A YUV4MPEG2 (`.y4m`) video file, played in a loop.
    File,
    /// A camera of this machine (webcam, PipeWire camera), captured through GStreamer.
    Device,
}

/// A video source the user can send from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct Camera {
    /// The id to pass to `choose_camera` / `set_camera`: `pattern`, `file:PATH` or `device:ID`.
    pub id: String,
    /// The name shown to the user.
    pub label: String,
    /// Pattern, file or device.
    pub kind: CameraKind,
    /// Its picture size and rate, when known.
    pub size: Option<VideoSize>,
}

/// What `list_cameras` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct Cameras {
    /// The sources available now.
    pub available: Vec<Camera>,
    /// The camera new video calls send from (none: receive-only video).
    pub current: Option<String>,
    /// The folder searched for `.y4m` files.
    pub folder: String,
}

/// The arguments of `choose_camera`: the camera of new video calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct CameraChoice {
    /// A camera id (`pattern`, `file:PATH`), or none for no camera.
    pub camera: Option<String>,
}

/// The arguments of `set_video`: upgrade a call to video or take its video away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct VideoArg {
    /// The call id.
    pub call_id: String,
    /// Video on (true) or off (false).
    pub on: bool,
}

/// The arguments of `set_camera`: switch a call's camera, or turn it off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct CameraArg {
    /// The call id.
    pub call_id: String,
    /// A camera id (`pattern`, `file:PATH`), or none to stop sending pictures (the peer's
    /// video keeps coming).
    pub camera: Option<String>,
}

/// The arguments of `answer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct AnswerArg {
    /// The call id.
    pub call_id: String,
    /// Answer with video (when the caller offered it); absent or false: audio only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub video: Option<bool>,
}

/// Video figures of a call in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct VideoFigures {
    /// Frames we sent.
    pub frames_sent: u64,
    /// Frames the peer sent that arrived complete.
    pub frames_received: u64,
    /// Frames decoded.
    pub frames_decoded: u64,
    /// Keyframes we sent.
    pub keyframes_sent: u64,
    /// Retransmission requests (NACK) we sent.
    pub nacks_sent: u64,
    /// Keyframe requests (PLI) we sent.
    pub plis_sent: u64,
    /// Packets of the peer's stream lost.
    pub packets_lost: u64,
    /// What our sender aims for, in bits per second.
    pub target_bitrate_bps: u64,
}

/// The error every command returns: a failure explained in words.
pub type CommandError = Failure;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_as_the_bindings_say() {
        let e = AppEvent::Dtmf {
            call_id: "call-1".into(),
            digit: "5".into(),
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap_or_default(),
            r#"{"type":"dtmf","callId":"call-1","digit":"5"}"#
        );
        let r = RegistrationState::Registered { expires: 600 };
        assert_eq!(
            serde_json::to_string(&r).unwrap_or_default(),
            r#"{"state":"registered","expires":600}"#
        );
    }
}
