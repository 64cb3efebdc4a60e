//! [`AppState`]: the accounts, their user agents, registrations and calls, and the event stream
//! the ui follows. Every command of the shells and of the dev server is a method here.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tandem_client_core::types::{DeviceSpec, SrtpPolicy, Transport, Uri};
use tandem_client_core::{
    Account, AnswerOptions, Call, CallEvent, CallOptions, EndReason, IncomingCall, MediaOptions,
    RegEvent, Registration, UaConfig, UaError, UaEvent, UaEvents, UserAgent, VideoNotice,
    VideoSourceSpec, parse_proxy,
};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::explain::{explain_call, explain_registration, failure};
use crate::lab::BundledLab;
use crate::persist::{load_json, save_json};
use crate::secrets::Secrets;
use crate::trust::{TrustStore, Witness, explain_problem};
use crate::types::*;

/// How long after a conference room answers its PIN is sent.
const PIN_DELAY: std::time::Duration = std::time::Duration::from_millis(600);
/// How long "test connection" waits for the registrar before it says there is no answer.
const TEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How many events a slow subscriber may fall behind before it misses some.
const EVENT_BACKLOG: usize = 256;
/// How many history entries are kept.
const HISTORY_LIMIT: usize = 500;
/// How long to wait before repeating a re-INVITE the peer answered with 500.
const RETRY_AFTER_500: std::time::Duration = std::time::Duration::from_millis(300);
/// The SIP status sent when the user declines a call (603 Decline).
const DECLINE_STATUS: u16 = 603;

/// Where the app keeps its files and which keyring and devices it uses.
#[derive(Debug, Clone)]
pub struct AppOptions {
    /// Directory of `accounts.json`, `history.json` and the bundled lab's data.
    pub data_dir: PathBuf,
    /// Where passwords live.
    pub secrets: Secrets,
    /// Devices new calls use until the user picks others.
    pub devices: DeviceChoice,
    /// Local address the user agents bind (port 0 is always used).
    pub listen_ip: IpAddr,
}

type Reply<T> = oneshot::Sender<Result<T, Failure>>;

enum CallCtl {
    /// Answer, with video (true) or audio only.
    Answer(bool, Reply<()>),
    /// Upgrade to video (true) or take the video away.
    Video(bool, Reply<()>),
    /// Send from another camera (its id), or stop sending pictures (none).
    Camera(Option<String>, Reply<()>),
    Decline,
    Hangup,
    Hold(bool, Reply<()>),
    Mute(bool),
    Dtmf(String, Reply<()>),
    Transfer(Uri, Reply<()>),
    Devices(DeviceSpec, DeviceSpec, Reply<()>),
}

pub(crate) struct AccountSlot {
    settings: AccountSettings,
    pub(crate) registration: RegistrationState,
    ua: Option<UserAgent>,
    /// The TLS verifier of `ua`, which remembers the certificate of a refused server.
    witness: Option<Arc<Witness>>,
    unregister: Option<oneshot::Sender<oneshot::Sender<()>>>,
}

struct CallSlot {
    info: CallInfo,
    ctl: mpsc::UnboundedSender<CallCtl>,
    /// A conference PIN to send as DTMF once the room answers.
    pin: Option<String>,
    /// The camera the call sends video from, when it has video (or gets it later).
    camera: Option<String>,
}

pub(crate) struct Inner {
    pub(crate) options: AppOptions,
    events: broadcast::Sender<AppEvent>,
    pub(crate) accounts: Mutex<BTreeMap<String, AccountSlot>>,
    calls: Mutex<HashMap<String, CallSlot>>,
    history: Mutex<Vec<HistoryEntry>>,
    devices: Mutex<DeviceChoice>,
    pub(crate) lab: tokio::sync::Mutex<Option<BundledLab>>,
    next_call: AtomicU64,
    pub(crate) social: crate::social::Social,
    pub(crate) trust: Arc<TrustStore>,
    pub(crate) files: crate::files::Files,
    /// The latest pictures of every call's video streams, for the ui.
    pub(crate) video: crate::video::VideoHub,
    /// The camera new video calls send from (none: receive-only video).
    camera: Mutex<Option<String>>,
    /// A link waiting for the ui.
    pub(crate) links: crate::links::PendingLink,
}

/// The app: accounts with one client-core [`UserAgent`] each, calls, history, the bundled lab
/// server, and the [`AppEvent`] stream. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("data_dir", &self.inner.options.data_dir)
            .finish_non_exhaustive()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// The id of an account: `user@domain`.
pub fn account_id(settings: &AccountSettings) -> String {
    format!("{}@{}", settings.user.trim(), settings.domain.trim())
}

fn invalid(message: impl Into<String>) -> Failure {
    failure(FailureKind::Settings, message, "")
}

fn no_such_call(id: &str) -> Failure {
    failure(
        FailureKind::Other,
        "That call is no longer there.",
        id.to_owned(),
    )
}

fn parse_device(spec: &str) -> Result<DeviceSpec, Failure> {
    spec.parse::<DeviceSpec>()
        .map_err(|e| invalid(format!("Unknown audio device \"{spec}\": {e}")))
}

fn quality_of(q: &tandem_client_core::types::CallQuality) -> Quality {
    Quality {
        codec: q.codec.clone(),
        loss_percent: q.loss_percent,
        jitter_ms: q.jitter_ms,
        rtt_ms: q.rtt_ms,
        mos: q.mos,
        secure: q.srtp,
    }
}

/// Builds the client-core account for `settings` with `password`.
fn core_account(settings: &AccountSettings, password: Option<String>) -> Result<Account, Failure> {
    if settings.user.trim().is_empty() || settings.domain.trim().is_empty() {
        return Err(invalid("An account needs a user name and a domain."));
    }
    let mut a = Account::new(settings.user.trim(), settings.domain.trim());
    a.auth_user = settings.auth_user.clone().filter(|s| !s.trim().is_empty());
    a.display_name = settings
        .display_name
        .clone()
        .filter(|s| !s.trim().is_empty());
    a.password = password;
    a.transport = match settings.transport {
        TransportKind::Udp => Transport::Udp,
        TransportKind::Tcp => Transport::Tcp,
        TransportKind::Tls => Transport::Tls,
    };
    a.expires = settings.expires.max(60);
    a.srtp = match settings.srtp {
        SrtpMode::Off => SrtpPolicy::Off,
        SrtpMode::Optional => SrtpPolicy::Optional,
        SrtpMode::Mandatory => SrtpPolicy::Mandatory,
    };
    if let Some(proxy) = settings.proxy.as_deref().filter(|p| !p.trim().is_empty()) {
        a.proxy =
            Some(parse_proxy(proxy.trim()).map_err(|e| {
                invalid(format!("The proxy address \"{proxy}\" is not valid: {e}"))
            })?);
    }
    a.aor().map_err(|e| {
        invalid(format!(
            "\"{}\" is not a valid SIP address: {e}",
            account_id(settings)
        ))
    })?;
    Ok(a)
}

impl AppState {
    /// Opens the app state in `options.data_dir` (creating it), loading saved accounts and history.
    pub fn open(options: AppOptions) -> Result<AppState, Failure> {
        std::fs::create_dir_all(&options.data_dir).map_err(|e| {
            failure(
                FailureKind::Other,
                format!(
                    "Cannot create the data folder {}.",
                    options.data_dir.display()
                ),
                e.to_string(),
            )
        })?;
        let saved: Vec<AccountSettings> =
            load_json(&options.data_dir.join("accounts.json"))?.unwrap_or_default();
        let history: Vec<HistoryEntry> =
            load_json(&options.data_dir.join("history.json"))?.unwrap_or_default();
        let accounts = saved
            .into_iter()
            .map(|settings| {
                (
                    account_id(&settings),
                    AccountSlot {
                        settings,
                        registration: RegistrationState::Unregistered,
                        ua: None,
                        witness: None,
                        unregister: None,
                    },
                )
            })
            .collect();
        let social = crate::social::Social::load(&options.data_dir)?;
        let trust = Arc::new(TrustStore::open(&options.data_dir)?);
        let camera = load_json::<CameraChoice>(&options.data_dir.join("video.json"))?
            .map(|c| c.camera)
            .unwrap_or_else(|| Some(crate::video::PATTERN_CAMERA.to_owned()));
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        Ok(AppState {
            inner: Arc::new(Inner {
                devices: Mutex::new(options.devices.clone()),
                options,
                events,
                accounts: Mutex::new(accounts),
                calls: Mutex::new(HashMap::new()),
                history: Mutex::new(history),
                lab: tokio::sync::Mutex::new(None),
                next_call: AtomicU64::new(1),
                social,
                trust,
                files: crate::files::Files::default(),
                video: crate::video::VideoHub::default(),
                camera: Mutex::new(camera),
                links: crate::links::PendingLink::default(),
            }),
        })
    }

    /// A new subscription to the event stream (events from now on).
    pub fn subscribe(&self) -> broadcast::Receiver<AppEvent> {
        self.inner.events.subscribe()
    }

    pub(crate) fn emit(&self, event: AppEvent) {
        // No subscriber is fine: the ui may not be up yet.
        let _ = self.inner.events.send(event);
    }

    fn save_accounts(&self) -> Result<(), Failure> {
        let list: Vec<AccountSettings> = lock(&self.inner.accounts)
            .values()
            .map(|s| s.settings.clone())
            .collect();
        save_json(&self.inner.options.data_dir.join("accounts.json"), &list)
    }

    fn account_infos(&self) -> Vec<AccountInfo> {
        let ids: Vec<(String, AccountSettings, RegistrationState)> = lock(&self.inner.accounts)
            .iter()
            .map(|(id, s)| (id.clone(), s.settings.clone(), s.registration.clone()))
            .collect();
        ids.into_iter()
            .map(|(id, settings, registration)| AccountInfo {
                has_password: matches!(self.inner.options.secrets.get(&id), Ok(Some(_))),
                id,
                settings,
                registration,
            })
            .collect()
    }

    fn accounts_changed(&self) {
        let accounts = self.account_infos();
        self.emit(AppEvent::AccountsChanged { accounts });
    }

    /// Command `list_accounts`: every account with its registration state.
    pub fn list_accounts(&self) -> Vec<AccountInfo> {
        self.account_infos()
    }

    /// Command `add_account`: adds (or replaces the settings of) an account; the password goes
    /// to the keyring. Returns the account.
    pub async fn add_account(&self, new: NewAccount) -> Result<AccountInfo, Failure> {
        core_account(&new.settings, None)?;
        let id = account_id(&new.settings);
        match new.password.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => self.inner.options.secrets.set(&id, p)?,
            None => self.inner.options.secrets.delete(&id)?,
        }
        let replaced = lock(&self.inner.accounts).insert(
            id.clone(),
            AccountSlot {
                settings: new.settings,
                registration: RegistrationState::Unregistered,
                ua: None,
                witness: None,
                unregister: None,
            },
        );
        if let Some(old) = replaced {
            retire(old).await;
        }
        self.save_accounts()?;
        self.accounts_changed();
        self.account_infos()
            .into_iter()
            .find(|a| a.id == id)
            .ok_or_else(|| invalid("The account disappeared while it was added."))
    }

    /// Command `remove_account`: signs out, forgets the account and its password.
    pub async fn remove_account(&self, account_id: &str) -> Result<(), Failure> {
        self.account_offline(account_id).await;
        let slot = lock(&self.inner.accounts).remove(account_id);
        let Some(slot) = slot else {
            return Err(invalid(format!("There is no account {account_id}.")));
        };
        retire(slot).await;
        self.inner.options.secrets.delete(account_id)?;
        self.save_accounts()?;
        self.accounts_changed();
        Ok(())
    }

    fn settings_of(&self, account_id: &str) -> Result<AccountSettings, Failure> {
        lock(&self.inner.accounts)
            .get(account_id)
            .map(|s| s.settings.clone())
            .ok_or_else(|| invalid(format!("There is no account {account_id}.")))
    }

    pub(crate) fn account_of(&self, account_id: &str) -> Result<Account, Failure> {
        let settings = self.settings_of(account_id)?;
        let password = self.inner.options.secrets.get(account_id)?;
        core_account(&settings, password)
    }

    fn set_registration(&self, account_id: &str, state: RegistrationState) {
        if let Some(slot) = lock(&self.inner.accounts).get_mut(account_id) {
            slot.registration = state.clone();
        } else {
            return;
        }
        self.emit(AppEvent::Registration {
            account_id: account_id.to_owned(),
            state,
        });
    }

    /// The account's user agent, created on first use.
    pub(crate) async fn ua_for(&self, account_id: &str) -> Result<UserAgent, Failure> {
        let (existing, settings) = {
            let accounts = lock(&self.inner.accounts);
            let slot = accounts
                .get(account_id)
                .ok_or_else(|| invalid(format!("There is no account {account_id}.")))?;
            (slot.ua.clone(), slot.settings.clone())
        };
        if let Some(ua) = existing {
            return Ok(ua);
        }
        let account = core_account(&settings, None)?;
        let (witness, tls) = self.inner.trust.client()?;
        let config = UaConfig {
            listen: SocketAddr::new(self.inner.options.listen_ip, 0),
            transport: account.transport,
            tls_client: Some(tls),
            ..UaConfig::default()
        };
        let (ua, events) = UserAgent::new(config)
            .await
            .map_err(|e| explain_registration(&e, "the network"))?;
        let winner = {
            let mut accounts = lock(&self.inner.accounts);
            match accounts.get_mut(account_id) {
                Some(slot) => match &slot.ua {
                    Some(other) => Some(other.clone()),
                    None => {
                        slot.ua = Some(ua.clone());
                        slot.witness = Some(witness);
                        None
                    }
                },
                None => return Err(invalid(format!("There is no account {account_id}."))),
            }
        };
        if let Some(other) = winner {
            ua.shutdown().await;
            return Ok(other);
        }
        tokio::spawn(self.clone().run_ua_events(account_id.to_owned(), events));
        Ok(ua)
    }

    async fn run_ua_events(self, account_id: String, mut events: UaEvents) {
        while let Some(event) = events.next().await {
            match event {
                UaEvent::IncomingCall(incoming) => {
                    if let Some(call) = self.incoming_msrp(&account_id, incoming) {
                        self.incoming_call(&account_id, call);
                    }
                }
                UaEvent::TransferCall { call, .. } => {
                    self.spawn_call(&account_id, call, Direction::Outgoing, CallPhase::Dialing);
                }
                UaEvent::CallReplaced { call, .. } => {
                    self.spawn_call(&account_id, call, Direction::Incoming, CallPhase::Active);
                }
                UaEvent::Message(message) => self.on_message(&account_id, message),
                UaEvent::Composing { from, state } => self.on_composing(
                    &account_id,
                    from,
                    state.state
                        == tandem_client_core::types::simple::iscomposing::ComposingState::Active,
                    state.refresh,
                ),
                UaEvent::Imdn { imdn, .. } => self.on_imdn(&imdn),
                _ => {}
            }
        }
    }

    /// Command `register`: signs the account in (and keeps it signed in). Returns the granted
    /// expiry; failures are explained in words and also reported as a `Registration` event.
    pub async fn register(&self, account_id: &str) -> Result<u32, Failure> {
        let account = self.account_of(account_id)?;
        let server = account
            .proxy
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_else(|| account.domain.clone());
        self.set_registration(account_id, RegistrationState::Registering);
        let ua = match self.ua_for(account_id).await {
            Ok(ua) => ua,
            Err(f) => {
                self.set_registration(account_id, RegistrationState::Failed { failure: f.clone() });
                return Err(f);
            }
        };
        let witness = lock(&self.inner.accounts)
            .get(account_id)
            .and_then(|s| s.witness.clone());
        if let Some(w) = &witness {
            w.clear();
        }
        match ua.register(&account).await {
            Ok(registration) => {
                let expires = registration.expires();
                let (stop_tx, stop_rx) = oneshot::channel();
                let previous = lock(&self.inner.accounts)
                    .get_mut(account_id)
                    .and_then(|slot| slot.unregister.replace(stop_tx));
                if let Some(prev) = previous {
                    let (done_tx, _done_rx) = oneshot::channel();
                    let _ = prev.send(done_tx);
                }
                self.set_registration(account_id, RegistrationState::Registered { expires });
                let me = self.clone();
                let id = account_id.to_owned();
                tokio::spawn(async move { me.account_online(&id).await });
                tokio::spawn(self.clone().watch_registration(
                    account_id.to_owned(),
                    server,
                    registration,
                    stop_rx,
                ));
                Ok(expires)
            }
            Err(e) => {
                let f = explain_with_certificate(&e, &server, witness.as_deref());
                self.set_registration(account_id, RegistrationState::Failed { failure: f.clone() });
                Err(f)
            }
        }
    }

    async fn watch_registration(
        self,
        account_id: String,
        server: String,
        mut registration: Registration,
        mut stop: oneshot::Receiver<oneshot::Sender<()>>,
    ) {
        loop {
            tokio::select! {
                done = &mut stop => {
                    if let Err(e) = registration.unregister().await {
                        tracing::debug!(error = %e, account = %account_id, "un-register failed");
                    }
                    if let Ok(done) = done {
                        let _ = done.send(());
                    }
                    return;
                }
                event = registration.next_event() => match event {
                    Some(RegEvent::Refreshed { expires }) => {
                        self.set_registration(&account_id, RegistrationState::Registered { expires });
                    }
                    Some(RegEvent::RefreshFailed(e)) => {
                        let failure = explain_registration(&e, &server);
                        self.set_registration(&account_id, RegistrationState::Failed { failure });
                    }
                    Some(_) => {}
                    None => return,
                },
            }
        }
    }

    /// Command `unregister`: signs the account out (it stays in the list).
    pub async fn unregister(&self, account_id: &str) -> Result<(), Failure> {
        let stop = lock(&self.inner.accounts)
            .get_mut(account_id)
            .ok_or_else(|| invalid(format!("There is no account {account_id}.")))?
            .unregister
            .take();
        self.account_offline(account_id).await;
        if let Some(stop) = stop {
            let (done_tx, done_rx) = oneshot::channel();
            if stop.send(done_tx).is_ok() {
                let _ = done_rx.await;
            }
        }
        self.set_registration(account_id, RegistrationState::Unregistered);
        Ok(())
    }

    /// Tests whether `new` can sign in, without saving anything: registers once on a
    /// throw-away user agent and un-registers. The failure says what went wrong in words.
    pub async fn test_connection(&self, new: NewAccount) -> Result<u32, Failure> {
        let account = core_account(&new.settings, new.password.filter(|p| !p.is_empty()))?;
        let server = account
            .proxy
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_else(|| account.domain.clone());
        let (witness, tls) = self.inner.trust.client()?;
        let config = UaConfig {
            listen: SocketAddr::new(self.inner.options.listen_ip, 0),
            transport: account.transport,
            tls_client: Some(tls),
            ..UaConfig::default()
        };
        let (ua, _events) = UserAgent::new(config)
            .await
            .map_err(|e| explain_registration(&e, "the network"))?;
        let result = tokio::time::timeout(TEST_TIMEOUT, ua.register(&account)).await;
        let outcome = match result {
            Ok(Ok(reg)) => {
                let expires = reg.expires();
                let _ = reg.unregister().await;
                Ok(expires)
            }
            Ok(Err(e)) => Err(explain_with_certificate(&e, &server, Some(&witness))),
            Err(_) => Err(explain_with_certificate(
                &UaError::Timeout,
                &server,
                Some(&witness),
            )),
        };
        ua.shutdown().await;
        outcome
    }

    /// The media of a new call (or answer): the chosen audio devices, and with `video` the
    /// chosen camera (or receive-only video when there is none). Also returns the camera.
    fn media_options(&self, video: bool) -> Result<(MediaOptions, Option<String>), Failure> {
        let devices = lock(&self.inner.devices).clone();
        let camera = if video {
            lock(&self.inner.camera).clone()
        } else {
            None
        };
        let video = if video {
            let source = match &camera {
                Some(id) => crate::video::camera_spec(id)?,
                None => VideoSourceSpec::None,
            };
            Some(crate::video::video_options(source))
        } else {
            None
        };
        Ok((
            MediaOptions {
                capture: parse_device(&devices.capture)?,
                playback: parse_device(&devices.playback)?,
                video,
                ..MediaOptions::default()
            },
            camera,
        ))
    }

    /// Command `call`: calls `target` from the account. Returns the call (phase `Dialing`);
    /// its progress arrives as `Call` events.
    pub async fn call(&self, request: CallRequest) -> Result<CallInfo, Failure> {
        let account = self.account_of(&request.account_id)?;
        let target_text = request.target.trim();
        if target_text.is_empty() {
            return Err(invalid(
                "Enter who to call: a name, a number or a SIP address.",
            ));
        }
        let target = account.target_uri(target_text).map_err(|e| {
            invalid(format!(
                "\"{target_text}\" is not something we can call: {e}"
            ))
        })?;
        let (media, camera) = self.media_options(request.video.unwrap_or(false))?;
        let ua = self.ua_for(&request.account_id).await?;
        let call = ua
            .call(
                &account,
                target,
                CallOptions {
                    media,
                    ..CallOptions::default()
                },
            )
            .await
            .map_err(|e| explain_call(&e))?;
        let info = self.spawn_call(
            &request.account_id,
            call,
            Direction::Outgoing,
            CallPhase::Dialing,
        );
        if request.video == Some(true) {
            self.video_camera(&info.id, camera, true);
        }
        Ok(info)
    }

    /// Command `join_conference`: calls the room `conf-<room>@<domain>` (or the address given)
    /// and, when a PIN is given, sends it as DTMF followed by `#` once the room answers.
    pub async fn join_conference(&self, join: JoinConference) -> Result<CallInfo, Failure> {
        let room = join.room.trim();
        let pin: String = join
            .pin
            .as_deref()
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if !pin.chars().all(|c| c.is_ascii_digit()) {
            return Err(invalid("A conference PIN is made of digits."));
        }
        let target = conference_target(room, &self.account_of(&join.account_id)?.domain)?;
        let info = self
            .call(CallRequest {
                account_id: join.account_id,
                target,
                video: None,
            })
            .await?;
        if !pin.is_empty() {
            let answered = {
                let mut calls = lock(&self.inner.calls);
                match calls.get_mut(&info.id) {
                    Some(slot) if slot.info.phase == CallPhase::Active => true,
                    Some(slot) => {
                        slot.pin = Some(pin.clone());
                        false
                    }
                    None => false,
                }
            };
            if answered {
                self.enter_pin(&info.id, pin);
            }
        }
        Ok(info)
    }

    /// Sends a conference PIN and `#` a moment after the room answered (its prompt starts with
    /// the media; digits sent before the media flows would be lost).
    fn enter_pin(&self, call_id: &str, pin: String) {
        let me = self.clone();
        let id = call_id.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(PIN_DELAY).await;
            if let Err(f) = me.send_dtmf(&id, &format!("{pin}#")).await {
                me.emit(AppEvent::Notice {
                    call_id: Some(id),
                    message: format!("The conference PIN could not be sent: {}", f.message),
                });
            }
        });
    }

    fn new_info(
        &self,
        sip_call_id: String,
        account_id: &str,
        remote: String,
        direction: Direction,
        phase: CallPhase,
    ) -> CallInfo {
        CallInfo {
            id: format!(
                "call-{}",
                self.inner.next_call.fetch_add(1, Ordering::Relaxed)
            ),
            sip_call_id,
            account_id: account_id.to_owned(),
            remote,
            direction,
            phase,
            answered_at_ms: (phase == CallPhase::Active).then(now_ms),
            held: false,
            remote_held: false,
            muted: false,
            codec: None,
            secure: false,
            end_reason: None,
            media_path: None,
            video: None,
        }
    }

    fn spawn_call(
        &self,
        account_id: &str,
        call: Call,
        direction: Direction,
        phase: CallPhase,
    ) -> CallInfo {
        let info = self.new_info(
            call.call_id().to_owned(),
            account_id,
            call.remote().to_string(),
            direction,
            phase,
        );
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        lock(&self.inner.calls).insert(
            info.id.clone(),
            CallSlot {
                info: info.clone(),
                ctl: ctl_tx,
                pin: None,
                camera: None,
            },
        );
        self.emit(AppEvent::Call { call: info.clone() });
        tokio::spawn(self.clone().run_call(
            info.id.clone(),
            call,
            ctl_rx,
            now_ms(),
            Instant::now(),
        ));
        info
    }

    fn incoming_call(&self, account_id: &str, incoming: IncomingCall) {
        let remote = incoming
            .from()
            .map(|u| u.to_string())
            .unwrap_or_else(|| "unknown caller".to_owned());
        let mut info = self.new_info(
            incoming.call_id(),
            account_id,
            remote,
            Direction::Incoming,
            CallPhase::Incoming,
        );
        if offers_video(&incoming.request().body) {
            // Not answered yet: the ui offers "answer with video".
            info.video = Some(Box::default());
        }
        if let Err(e) = incoming.ring() {
            tracing::debug!(error = %e, "180 Ringing not sent");
        }
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        lock(&self.inner.calls).insert(
            info.id.clone(),
            CallSlot {
                info: info.clone(),
                ctl: ctl_tx,
                pin: None,
                camera: None,
            },
        );
        self.emit(AppEvent::Call { call: info.clone() });
        tokio::spawn(self.clone().run_incoming(info, incoming, ctl_rx));
    }

    async fn run_incoming(
        self,
        info: CallInfo,
        mut incoming: IncomingCall,
        mut ctl: mpsc::UnboundedReceiver<CallCtl>,
    ) {
        let started_ms = now_ms();
        loop {
            tokio::select! {
                _ = incoming.cancelled() => {
                    self.finish(&info.id, "The caller hung up.".to_owned(), HistoryOutcome::Missed, started_ms, None);
                    return;
                }
                cmd = ctl.recv() => match cmd {
                    Some(CallCtl::Answer(video, reply)) => {
                        let (options, camera) = match (self.account_of(&info.account_id), self.media_options(video)) {
                            (Ok(account), Ok((media, camera))) => (AnswerOptions { account: Some(account), media }, camera),
                            (Err(f), _) | (_, Err(f)) => {
                                let _ = reply.send(Err(f));
                                continue;
                            }
                        };
                        match incoming.accept_with(options).await {
                            Ok(call) => {
                                let _ = reply.send(Ok(()));
                                self.update(&info.id, |i| {
                                    i.phase = CallPhase::Active;
                                    i.answered_at_ms = Some(now_ms());
                                    if !video {
                                        i.video = None;
                                    }
                                });
                                if video {
                                    // Shown as video only when the caller offered it.
                                    self.video_camera(&info.id, camera, info.video.is_some());
                                }
                                self.run_call(info.id.clone(), call, ctl, started_ms, Instant::now()).await;
                            }
                            Err(e) => {
                                let f = explain_call(&e);
                                let _ = reply.send(Err(f.clone()));
                                self.finish(&info.id, f.message, HistoryOutcome::Failed, started_ms, None);
                            }
                        }
                        return;
                    }
                    Some(CallCtl::Decline) | Some(CallCtl::Hangup) => {
                        if let Err(e) = incoming.reject(DECLINE_STATUS) {
                            tracing::debug!(error = %e, "603 not sent");
                        }
                        self.finish(&info.id, "Declined.".to_owned(), HistoryOutcome::Declined, started_ms, None);
                        return;
                    }
                    Some(other) => reply_not_yet(other),
                    None => return,
                },
            }
        }
    }

    fn update(&self, call_id: &str, change: impl FnOnce(&mut CallInfo)) {
        let info = {
            let mut calls = lock(&self.inner.calls);
            let Some(slot) = calls.get_mut(call_id) else {
                return;
            };
            change(&mut slot.info);
            slot.info.clone()
        };
        self.emit(AppEvent::Call { call: info });
    }

    fn finish(
        &self,
        call_id: &str,
        reason: String,
        outcome: HistoryOutcome,
        started_ms: f64,
        talk: Option<Instant>,
    ) {
        let Some(slot) = lock(&self.inner.calls).remove(call_id) else {
            return;
        };
        self.inner.video.detach_call(call_id);
        let mut info = slot.info;
        info.phase = CallPhase::Ended;
        info.end_reason = Some(reason.clone());
        let entry = HistoryEntry {
            account_id: info.account_id.clone(),
            remote: info.remote.clone(),
            direction: info.direction,
            outcome,
            started_at_ms: started_ms,
            duration_secs: talk.map(|t| t.elapsed().as_secs_f64()).unwrap_or(0.0),
            detail: reason,
        };
        let snapshot = {
            let mut history = lock(&self.inner.history);
            history.insert(0, entry);
            history.truncate(HISTORY_LIMIT);
            history.clone()
        };
        if let Err(f) = save_json(&self.inner.options.data_dir.join("history.json"), &snapshot) {
            tracing::warn!(error = %f.detail, "history not saved");
        }
        self.emit(AppEvent::Call { call: info });
    }

    async fn run_call(
        self,
        id: String,
        mut call: Call,
        mut ctl: mpsc::UnboundedReceiver<CallCtl>,
        started_ms: f64,
        created: Instant,
    ) {
        let mut roster = None;
        self.inner
            .video
            .attach(&id, crate::video::Stream::Remote, call.video_frames());
        self.inner
            .video
            .attach(&id, crate::video::Stream::Local, call.local_video_frames());
        let mut answered: Option<Instant> = lock(&self.inner.calls)
            .get(&id)
            .and_then(|s| s.info.answered_at_ms)
            .map(|_| created);
        loop {
            tokio::select! {
                event = call.next_event() => {
                    let Some(event) = event else {
                        let outcome = if answered.is_some() { HistoryOutcome::Answered } else { HistoryOutcome::Failed };
                        self.finish(&id, "Call ended.".to_owned(), outcome, started_ms, answered);
                        return;
                    };
                    match event {
                        CallEvent::Ringing { .. } => self.update(&id, |i| {
                            if i.phase == CallPhase::Dialing {
                                i.phase = CallPhase::Ringing;
                            }
                        }),
                        CallEvent::MediaStarted { codec, secure, .. } => self.update(&id, |i| {
                            i.codec = Some(codec);
                            i.secure = secure;
                        }),
                        CallEvent::Answered { .. } => {
                            answered.get_or_insert_with(Instant::now);
                            if roster.is_none() {
                                let target = lock(&self.inner.calls)
                                    .get(&id)
                                    .map(|s| (s.info.account_id.clone(), s.info.remote.clone()));
                                if let Some((account, remote)) = target {
                                    roster = self.watch_roster(&id, &account, &remote).await;
                                }
                            }
                            self.update(&id, |i| {
                                i.phase = CallPhase::Active;
                                i.answered_at_ms.get_or_insert_with(now_ms);
                            });
                            let pin = lock(&self.inner.calls).get_mut(&id).and_then(|s| s.pin.take());
                            if let Some(pin) = pin {
                                self.enter_pin(&id, pin);
                            }
                        }
                        CallEvent::Held => self.update(&id, |i| i.held = true),
                        CallEvent::Resumed => self.update(&id, |i| i.held = false),
                        CallEvent::RemoteHold => self.update(&id, |i| i.remote_held = true),
                        CallEvent::RemoteResumed => self.update(&id, |i| i.remote_held = false),
                        CallEvent::Quality(q) => self.emit(AppEvent::Quality { call_id: id.clone(), quality: quality_of(&q) }),
                        CallEvent::Video(notice) => self.on_video(&id, notice),
                        CallEvent::Dtmf(d) => self.emit(AppEvent::Dtmf { call_id: id.clone(), digit: d.to_string() }),
                        CallEvent::TransferFailed { status, reason } => self.emit(AppEvent::Notice {
                            call_id: Some(id.clone()),
                            message: format!("The transfer failed ({status} {reason}); the call goes on."),
                        }),
                        CallEvent::IcePath(p) => {
                            let path = media_path_of(&p);
                            self.update(&id, |i| i.media_path = Some(path));
                        }
                        CallEvent::IceOff(reason) => self.update(&id, |i| i.media_path = Some(MediaPath {
                            kind: MediaPathKind::Plain,
                            local_type: None,
                            remote_type: None,
                            local: None,
                            remote: None,
                            why: format!(
                                "The other side does not do ICE ({reason}): the audio goes as plain RTP to the address in its offer (through the server's relay when it anchors the call)."
                            ),
                        })),
                        CallEvent::IceFailed(reason) => self.update(&id, |i| i.media_path = Some(MediaPath {
                            kind: MediaPathKind::Failed,
                            local_type: None,
                            remote_type: None,
                            local: None,
                            remote: None,
                            why: format!(
                                "No network path between the two sides works ({reason}). A TURN server in the account settings lets calls through strict NATs and firewalls."
                            ),
                        })),
                        CallEvent::MediaWarning(w) => self.emit(AppEvent::Notice { call_id: Some(id.clone()), message: w }),
                        CallEvent::RtpTimeout => self.emit(AppEvent::Notice {
                            call_id: Some(id.clone()),
                            message: "No audio has arrived from the other party for a while.".to_owned(),
                        }),
                        CallEvent::Ended { by, reason } => {
                            let text = match reason {
                                EndReason::Transferred => "Transferred.".to_owned(),
                                EndReason::Replaced => "Replaced by another call.".to_owned(),
                                EndReason::MediaFailed => "The audio failed.".to_owned(),
                                EndReason::Timeout => "The call timed out.".to_owned(),
                                _ => format!("Ended by {by}."),
                            };
                            let outcome = if answered.is_some() { HistoryOutcome::Answered } else { HistoryOutcome::Failed };
                            self.finish(&id, text, outcome, started_ms, answered);
                            return;
                        }
                        CallEvent::Failed(e) => {
                            let f = explain_call(&e);
                            self.finish(&id, f.message, HistoryOutcome::Failed, started_ms, answered);
                            return;
                        }
                        _ => {}
                    }
                }
                cmd = ctl.recv() => match cmd {
                    None | Some(CallCtl::Hangup) | Some(CallCtl::Decline) => call.hangup(),
                    Some(CallCtl::Answer(_, reply)) => {
                        let _ = reply.send(Err(invalid("This call is already answered.")));
                    }
                    Some(CallCtl::Video(on, reply)) => {
                        let camera = if on { lock(&self.inner.camera).clone() } else { None };
                        let r = self.switch_video(&id, &mut call, on, camera).await;
                        let _ = reply.send(r);
                    }
                    Some(CallCtl::Camera(camera, reply)) => {
                        let r = self.switch_camera(&id, &mut call, camera).await;
                        let _ = reply.send(r);
                    }
                    Some(CallCtl::Hold(on, reply)) => {
                        let mut r = if on { call.hold().await } else { call.resume().await };
                        // A peer still finishing the previous INVITE answers 500 (RFC 3261
                        // §14.2): try once more after a moment.
                        if matches!(r, Err(UaError::Rejected { status: 500, .. })) {
                            tokio::time::sleep(RETRY_AFTER_500).await;
                            r = if on { call.hold().await } else { call.resume().await };
                        }
                        let _ = reply.send(r.map_err(|e| explain_call(&e)));
                    }
                    Some(CallCtl::Mute(muted)) => {
                        call.set_mute(muted);
                        self.update(&id, |i| i.muted = muted);
                    }
                    Some(CallCtl::Dtmf(digits, reply)) => {
                        let _ = reply.send(call.send_dtmf(&digits).await.map_err(|e| explain_call(&e)));
                    }
                    Some(CallCtl::Transfer(target, reply)) => {
                        let _ = reply.send(call.transfer_blind(target).await.map_err(|e| explain_call(&e)));
                    }
                    Some(CallCtl::Devices(capture, playback, reply)) => {
                        let r = call.switch_devices(Some(capture), Some(playback)).await;
                        let _ = reply.send(r.map_err(|e| explain_call(&e)));
                    }
                },
            }
        }
    }

    fn send_ctl(&self, call_id: &str, ctl: CallCtl) -> Result<(), Failure> {
        let calls = lock(&self.inner.calls);
        let slot = calls.get(call_id).ok_or_else(|| no_such_call(call_id))?;
        slot.ctl.send(ctl).map_err(|_| no_such_call(call_id))
    }

    async fn ask(
        &self,
        call_id: &str,
        make: impl FnOnce(Reply<()>) -> CallCtl,
    ) -> Result<(), Failure> {
        let (tx, rx) = oneshot::channel();
        self.send_ctl(call_id, make(tx))?;
        rx.await.map_err(|_| no_such_call(call_id))?
    }

    /// Command `answer`: answers an incoming call.
    pub async fn answer(&self, call_id: &str) -> Result<(), Failure> {
        self.answer_with(call_id, false).await
    }

    /// Command `answer` with its `video` flag: answers with video (when the caller offered
    /// it, sending from the chosen camera) or audio only.
    pub async fn answer_with(&self, call_id: &str, video: bool) -> Result<(), Failure> {
        self.ask(call_id, |r| CallCtl::Answer(video, r)).await
    }

    /// Command `decline`: declines an incoming call (603 Decline).
    pub fn decline(&self, call_id: &str) -> Result<(), Failure> {
        self.send_ctl(call_id, CallCtl::Decline)
    }

    /// Command `hangup`: ends a call (or cancels it while it rings).
    pub fn hangup(&self, call_id: &str) -> Result<(), Failure> {
        self.send_ctl(call_id, CallCtl::Hangup)
    }

    /// Command `hold`: puts the call on hold.
    pub async fn hold(&self, call_id: &str) -> Result<(), Failure> {
        self.ask(call_id, |r| CallCtl::Hold(true, r)).await
    }

    /// Command `resume`: takes the call off hold.
    pub async fn resume(&self, call_id: &str) -> Result<(), Failure> {
        self.ask(call_id, |r| CallCtl::Hold(false, r)).await
    }

    /// Command `mute`: mutes or unmutes our microphone in the call.
    pub fn mute(&self, call_id: &str, muted: bool) -> Result<(), Failure> {
        self.send_ctl(call_id, CallCtl::Mute(muted))
    }

    /// Command `send_dtmf`: sends DTMF digits (`0-9*#A-D`).
    pub async fn send_dtmf(&self, call_id: &str, digits: &str) -> Result<(), Failure> {
        if digits.is_empty()
            || !digits
                .chars()
                .all(|c| c.is_ascii_digit() || "*#ABCDabcd".contains(c))
        {
            return Err(invalid("DTMF digits are 0-9, *, # and A-D."));
        }
        let digits = digits.to_ascii_uppercase();
        self.ask(call_id, |r| CallCtl::Dtmf(digits, r)).await
    }

    /// Command `transfer`: blind transfer of the call to `target`.
    pub async fn transfer(&self, call_id: &str, target: &str) -> Result<(), Failure> {
        let account_id = lock(&self.inner.calls)
            .get(call_id)
            .map(|s| s.info.account_id.clone())
            .ok_or_else(|| no_such_call(call_id))?;
        let account = self.account_of(&account_id)?;
        let uri = account.target_uri(target.trim()).map_err(|e| {
            invalid(format!(
                "\"{target}\" is not something we can transfer to: {e}"
            ))
        })?;
        self.ask(call_id, |r| CallCtl::Transfer(uri, r)).await
    }

    /// Command `list_calls`: the calls in progress.
    pub fn list_calls(&self) -> Vec<CallInfo> {
        lock(&self.inner.calls)
            .values()
            .map(|s| s.info.clone())
            .collect()
    }

    /// Command `list_devices`: the audio devices and the current choice.
    pub async fn list_devices(&self) -> Devices {
        let available = tokio::task::spawn_blocking(tandem_media::device::list_devices)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|d| AudioDevice {
                name: d.name,
                description: d.description,
                input: d.input,
                output: d.output,
                default: d.default,
            })
            .collect();
        Devices {
            available,
            current: lock(&self.inner.devices).clone(),
        }
    }

    /// Command `switch_devices`: the devices for new calls, and for every call in progress.
    pub async fn switch_devices(&self, choice: DeviceChoice) -> Result<(), Failure> {
        let capture = parse_device(&choice.capture)?;
        let playback = parse_device(&choice.playback)?;
        *lock(&self.inner.devices) = choice;
        let ids: Vec<String> = lock(&self.inner.calls)
            .iter()
            .filter(|(_, s)| s.info.phase == CallPhase::Active)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            let (c, p) = (capture.clone(), playback.clone());
            self.ask(&id, |r| CallCtl::Devices(c, p, r)).await?;
        }
        Ok(())
    }

    /// Command `list_cameras`: the video sources (the test pattern and the `.y4m` files of the
    /// videos folder) and the one new video calls use.
    pub fn list_cameras(&self) -> Cameras {
        let folder = crate::video::videos_folder(&self.inner.options.data_dir);
        let mut available = crate::video::list_cameras(&folder);
        let current = lock(&self.inner.camera).clone();
        // A file chosen from elsewhere stays listed.
        if let Some(id) = &current
            && !available.iter().any(|c| &c.id == id)
            && let Some(path) = id.strip_prefix(crate::video::FILE_CAMERA_PREFIX)
            && let Ok(camera) = crate::video::file_camera(std::path::Path::new(path))
        {
            available.push(camera);
        }
        Cameras {
            available,
            current,
            folder: folder.display().to_string(),
        }
    }

    /// Command `choose_camera`: the camera new video calls send from (none: they only
    /// receive video). Checked (a file must be a readable `.y4m`) and remembered.
    pub fn choose_camera(&self, camera: Option<&str>) -> Result<(), Failure> {
        if let Some(id) = camera {
            crate::video::camera_spec(id)?;
        }
        let choice = CameraChoice {
            camera: camera.map(str::to_owned),
        };
        save_json(&self.inner.options.data_dir.join("video.json"), &choice)?;
        *lock(&self.inner.camera) = choice.camera;
        Ok(())
    }

    /// Command `set_video`: upgrades an answered call to video (re-INVITE, sending from the
    /// chosen camera) or takes its video away. When the peer turned its video on, "on" is the
    /// user's "Show my camera": the video becomes two-way.
    pub async fn set_video(&self, call_id: &str, on: bool) -> Result<(), Failure> {
        self.ask(call_id, |r| CallCtl::Video(on, r)).await?;
        self.update(call_id, |i| {
            if let Some(v) = i.video.as_mut() {
                v.peer_offered = false;
            }
        });
        Ok(())
    }

    /// Command `dismiss_video_offer`: "Not now" to the peer's video: we keep showing it and
    /// send nothing; the question goes away.
    pub fn dismiss_video_offer(&self, call_id: &str) -> Result<(), Failure> {
        if !lock(&self.inner.calls).contains_key(call_id) {
            return Err(no_such_call(call_id));
        }
        self.update(call_id, |i| {
            if let Some(v) = i.video.as_mut() {
                v.peer_offered = false;
            }
        });
        Ok(())
    }

    /// Command `set_camera`: sends a call's video from another camera, or stops sending
    /// pictures (none) while the peer's video keeps coming.
    pub async fn set_camera(&self, call_id: &str, camera: Option<&str>) -> Result<(), Failure> {
        if let Some(id) = camera {
            crate::video::camera_spec(id)?;
        }
        let camera = camera.map(str::to_owned);
        self.ask(call_id, |r| CallCtl::Camera(camera, r)).await
    }

    /// Remembers that call `call_id` sends video from `camera` (none: camera off); with `show`
    /// the call is shown as a video call from now on (else only once its video starts).
    fn video_camera(&self, call_id: &str, camera: Option<String>, show: bool) {
        if let Some(slot) = lock(&self.inner.calls).get_mut(call_id) {
            slot.camera = camera.clone();
        }
        self.update(call_id, |i| {
            if show {
                i.video.get_or_insert_with(Box::default).camera = camera;
            } else if let Some(video) = i.video.as_mut() {
                video.camera = camera;
            }
        });
    }

    /// Follows a video notice of call `id`.
    fn on_video(&self, id: &str, notice: VideoNotice) {
        match notice {
            VideoNotice::Started {
                codec, send, recv, ..
            } => {
                let camera = lock(&self.inner.calls)
                    .get(id)
                    .and_then(|s| s.camera.clone());
                self.update(id, |i| {
                    let video = i.video.get_or_insert_with(Box::default);
                    video.codec = Some(codec);
                    video.sending = send.map(|(width, height, fps)| VideoSize {
                        width,
                        height,
                        fps: Some(fps),
                    });
                    video.receiving = recv;
                    video.camera = camera;
                });
            }
            VideoNotice::FirstFrame { width, height }
            | VideoNotice::SizeChanged { width, height } => self.update(id, |i| {
                if let Some(video) = i.video.as_mut() {
                    video.remote_size = Some(VideoSize {
                        width,
                        height,
                        fps: None,
                    });
                }
            }),
            VideoNotice::Stats(s) => self.emit(AppEvent::Video {
                call_id: id.to_owned(),
                figures: VideoFigures {
                    frames_sent: s.frames_sent,
                    frames_received: s.frames_received,
                    frames_decoded: s.frames_decoded,
                    keyframes_sent: s.keyframes_sent,
                    nacks_sent: s.nacks_sent,
                    plis_sent: s.plis_sent,
                    packets_lost: s.packets_lost,
                    target_bitrate_bps: s.target_bitrate_bps,
                },
            }),
            VideoNotice::Stopped(_) => self.update(id, |i| i.video = None),
            VideoNotice::Rejected(why) => {
                self.update(id, |i| i.video = None);
                self.emit(AppEvent::Notice {
                    call_id: Some(id.to_owned()),
                    message: format!(
                        "The other side takes no video ({why}); the call goes on with audio."
                    ),
                });
            }
            VideoNotice::RtpTimeout => self.emit(AppEvent::Notice {
                call_id: Some(id.to_owned()),
                message: "No video has arrived from the other party for a while.".to_owned(),
            }),
            VideoNotice::PeerOffered { receiving, ask } => {
                if receiving {
                    // The picture shows at once; the banner asks about our camera.
                    self.update(id, |i| {
                        i.video.get_or_insert_with(Box::default).peer_offered = ask;
                    });
                } else {
                    self.emit(AppEvent::Notice {
                        call_id: Some(id.to_owned()),
                        message: "The other side turned on video, but this call takes none."
                            .to_owned(),
                    });
                }
            }
            VideoNotice::Warning(w) => self.emit(AppEvent::Notice {
                call_id: Some(id.to_owned()),
                message: format!("Video: {w}"),
            }),
            _ => {}
        }
    }

    /// Upgrades call `id` to video sending from `camera`, or downgrades it.
    async fn switch_video(
        &self,
        id: &str,
        call: &mut Call,
        on: bool,
        camera: Option<String>,
    ) -> Result<(), Failure> {
        if !on {
            call.set_video(false).await.map_err(|e| explain_call(&e))?;
            self.update(id, |i| i.video = None);
            return Ok(());
        }
        let spec = match &camera {
            Some(c) => crate::video::camera_spec(c)?,
            None => VideoSourceSpec::None,
        };
        call.set_camera(Some(spec))
            .await
            .map_err(|e| explain_call(&e))?;
        let mut r = call.set_video(true).await;
        if matches!(r, Err(UaError::Rejected { status: 500, .. })) {
            tokio::time::sleep(RETRY_AFTER_500).await;
            r = call.set_video(true).await;
        }
        r.map_err(|e| explain_call(&e))?;
        self.video_camera(id, camera, true);
        Ok(())
    }

    /// Sends call `id`'s video from `camera`, or stops sending pictures.
    async fn switch_camera(
        &self,
        id: &str,
        call: &mut Call,
        camera: Option<String>,
    ) -> Result<(), Failure> {
        let spec = camera
            .as_deref()
            .map(crate::video::camera_spec)
            .transpose()?;
        call.set_camera(spec).await.map_err(|e| explain_call(&e))?;
        self.video_camera(id, camera, false);
        Ok(())
    }

    /// Command `history`: calls, newest first.
    pub fn history(&self) -> Vec<HistoryEntry> {
        lock(&self.inner.history).clone()
    }

    /// Command `start_bundled_lab`: starts the lab server in-process (once), makes sure its demo
    /// accounts exist, adds them as accounts (passwords in the keyring) and signs in as the
    /// first one.
    pub async fn start_bundled_lab(&self) -> Result<LabInfo, Failure> {
        let mut lab = self.inner.lab.lock().await;
        if lab.is_none() {
            let dir = self.inner.options.data_dir.join("lab");
            *lab = Some(BundledLab::start(dir, &self.inner.options.secrets).await?);
        }
        let Some(running) = lab.as_ref() else {
            return Err(failure(
                FailureKind::Other,
                "The lab server did not start.",
                "",
            ));
        };
        let info = running.info();
        drop(lab);
        for user in &info.users {
            let settings = AccountSettings {
                user: user.user.clone(),
                domain: info.domain.clone(),
                auth_user: None,
                display_name: None,
                proxy: Some(info.udp.clone()),
                transport: TransportKind::Udp,
                srtp: SrtpMode::Off,
                expires: 600,
                lab: true,
            };
            let id = account_id(&settings);
            let unchanged = lock(&self.inner.accounts)
                .get(&id)
                .is_some_and(|s| s.settings == settings);
            let has_password =
                self.inner.options.secrets.get(&id)?.as_deref() == Some(user.password.as_str());
            if !(unchanged && has_password) {
                self.add_account(NewAccount {
                    settings,
                    password: Some(user.password.clone()),
                })
                .await?;
            }
        }
        self.register(&info.signed_in_as).await?;
        Ok(info)
    }

    /// Signs every account out, ends calls and stops the bundled lab server.
    pub async fn shutdown(&self) {
        let accounts: Vec<String> = lock(&self.inner.accounts).keys().cloned().collect();
        for id in accounts {
            self.account_offline(&id).await;
        }
        let ids: Vec<String> = lock(&self.inner.calls).keys().cloned().collect();
        for id in ids {
            let _ = self.hangup(&id);
        }
        let slots: Vec<AccountSlot> = {
            let mut accounts = lock(&self.inner.accounts);
            accounts
                .values_mut()
                .map(|s| AccountSlot {
                    settings: s.settings.clone(),
                    registration: RegistrationState::Unregistered,
                    ua: s.ua.take(),
                    witness: s.witness.take(),
                    unregister: s.unregister.take(),
                })
                .collect()
        };
        for slot in slots {
            retire(slot).await;
        }
        if let Some(lab) = self.inner.lab.lock().await.take() {
            lab.stop().await;
        }
    }
}

/// Explains a registration error; when the TLS verifier refused the server's certificate, the
/// failure says what is wrong with it and carries its details (and the CA the user may trust).
fn explain_with_certificate(err: &UaError, server: &str, witness: Option<&Witness>) -> Failure {
    let mut f = explain_registration(err, server);
    if let Some(problem) = witness.and_then(Witness::take_problem) {
        f.kind = FailureKind::Tls;
        f.message = explain_problem(&problem, server);
        f.detail = format!("{}; {}", problem.error, f.detail);
        f.certificate = Some(Box::new(problem));
    }
    f
}

/// The media path ICE selected, explained.
fn media_path_of(p: &tandem_client_core::nat::ice::IcePathInfo) -> MediaPath {
    use tandem_client_core::nat::ice::IcePathKind;
    let (local_type, remote_type) = (p.local_type.to_string(), p.remote_type.to_string());
    let (kind, why) = match p.path {
        IcePathKind::Direct => (
            MediaPathKind::Direct,
            format!(
                "Direct: the two sides reach each other at their own addresses ({} ↔ {}), nothing in between.",
                p.local, p.remote
            ),
        ),
        IcePathKind::Reflexive => (
            MediaPathKind::Reflexive,
            format!(
                "Through a NAT: the path uses an address a NAT router mapped ({local_type} ↔ {remote_type} candidates, {} ↔ {}).",
                p.local, p.remote
            ),
        ),
        IcePathKind::Relay => (
            MediaPathKind::Relay,
            format!(
                "Through a TURN relay ({local_type} ↔ {remote_type} candidates, {} ↔ {}): no direct or NAT path worked, or the account only allows relayed media.",
                p.local, p.remote
            ),
        ),
    };
    MediaPath {
        kind,
        local_type: Some(local_type),
        remote_type: Some(remote_type),
        local: Some(p.local.to_string()),
        remote: Some(p.remote.to_string()),
        why,
    }
}

/// The address of conference room `room` in `domain`: `conf-<room>@<domain>`, or `room` itself
/// when it already is an address (`sip:…` or `…@…`).
pub fn conference_target(room: &str, domain: &str) -> Result<String, Failure> {
    let room = room.trim();
    if room.starts_with("sip:") || room.starts_with("sips:") || room.contains('@') {
        return Ok(room.to_owned());
    }
    let name = room.strip_prefix("conf-").unwrap_or(room);
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !valid {
        return Err(invalid(
            "A room name is 1 to 64 letters, digits, dots, dashes or underscores.",
        ));
    }
    Ok(format!("conf-{name}@{domain}"))
}

fn reply_not_yet(ctl: CallCtl) {
    let not_yet = || invalid("Answer the call first.");
    match ctl {
        CallCtl::Answer(_, r)
        | CallCtl::Video(_, r)
        | CallCtl::Camera(_, r)
        | CallCtl::Hold(_, r)
        | CallCtl::Dtmf(_, r)
        | CallCtl::Transfer(_, r)
        | CallCtl::Devices(_, _, r) => {
            let _ = r.send(Err(not_yet()));
        }
        CallCtl::Decline | CallCtl::Hangup | CallCtl::Mute(_) => {}
    }
}

/// True when an INVITE body is an SDP offer with an enabled `m=video` line (a call may be
/// answered with video).
fn offers_video(body: &[u8]) -> bool {
    let Ok(sdp) = tandem_proto::sdp::SessionDescription::parse_bytes(body) else {
        return false;
    };
    tandem_proto::sdp::video::video_index(&sdp)
        .and_then(|i| sdp.media.get(i))
        .is_some_and(|m| m.port != 0)
}

/// Signs an account's user agent out and shuts it down.
async fn retire(slot: AccountSlot) {
    if let Some(stop) = slot.unregister {
        let (done_tx, done_rx) = oneshot::channel();
        if stop.send(done_tx).is_ok() {
            // The un-REGISTER is answered before the endpoint closes.
            let _ = done_rx.await;
        }
    }
    if let Some(ua) = slot.ua {
        ua.shutdown().await;
    }
}
