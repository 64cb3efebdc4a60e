//! IVR menus from the configuration: prompts, DTMF choices, timeouts, retries and transfers.
//!
//! `ivr@domain` enters [`IvrConfig::default_menu`], `ivr-<menu>@domain` enters `<menu>`. Each
//! menu plays its prompt (a key interrupts it), waits `timeout_secs` for one key and acts on
//! it; no key or a key without a choice counts as a failed attempt (the `timeout_prompt` or
//! `invalid_prompt` plays and the menu repeats) and after `retries` failed attempts the IVR
//! says goodbye and hangs up.
//!
//! Configuration (`[ivr]`; without any `[ivr.menus.*]` the built-in three-level demo of
//! [`IvrConfig::demo_menus`] is used):
//!
//! ```toml
//! [ivr]
//! default_menu = "main"
//! transfer_mode = "refer"         # or "bridge"
//! goodbye_prompt = "ivr-goodbye"  # these are the defaults
//! transfer_prompt = "ivr-transfer"
//!
//! [ivr.menus.main]
//! prompt = "ivr-welcome"          # a built-in prompt name or a path to an .opus/.ogg/.wav file
//! timeout_secs = 6                # wait for a key after the prompt (default 6)
//! retries = 3                     # failed attempts before goodbye (default 3)
//! invalid_prompt = "ivr-invalid"  # optional, these are the defaults
//! timeout_prompt = "ivr-timeout"
//! choices = { 1 = { submenu = "sales" }, 2 = { transfer = "alice" }, 3 = { conference = "lab" },
//!             8 = { voicemail = "alice" }, 9 = { transfer = "voicemail" },
//!             "*" = "back", "#" = "repeat", 0 = "hangup" }
//! ```
//!
//! Actions: `{ submenu = NAME }`, `{ transfer = USER-or-URI }` (a bare user is
//! `sip:USER@domain`), `{ conference = ROOM }` (= transfer to `conf-ROOM`), `{ voicemail =
//! USER }` (= transfer to `vm-USER`, leaving a message), `"repeat"`, `"back"` (the previous
//! menu), `"hangup"`.
//!
//! **Transfers** (`[ivr] transfer_mode`): with `refer` (the default) the IVR sends REFER (RFC
//! 3515) to the caller: the call is already answered, so a 302 is no longer possible, and REFER
//! lets the caller's own UA place the new call straight to the target (through the proxy, with
//! its own credentials), which keeps the media server out of the media path. The REFER carries
//! `Refer-To: <target>` and `Referred-By: <ivr URI>`; after the 202 the IVR follows the `refer`
//! NOTIFYs (sipfrag): a 2xx means the caller is connected and the IVR hangs up (RFC 5589 §6); a
//! failure or no progress within 32 s brings the caller back to the menu with the
//! invalid-choice prompt. A caller that refuses the REFER (any non-2xx) is **bridged**, which is
//! what `bridge` mode always does: the media server places a third-party call
//! ([`InternalCall`], the click-to-call engine) between the target (showing the caller's
//! address) and `ivr-bridge-<token>@domain`, which comes back to the media server as a second
//! leg; the IVR passes the audio between the two legs (16 kHz, at most 200 ms buffered per
//! direction) until either side hangs up, then hangs up the other.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tandem_proto::msg::{HeaderName, Host, Method, Uri};

use tandem_media::device::{CaptureDevice, DeviceError, PlaybackDevice};
use tokio::sync::oneshot;

use super::api::InternalCall;
use super::prompts::{Prompt, PromptPlayer, PromptRef};
use super::{Leg, LegEvent, MediaCtx, PlayResult, random_tag};

/// Rate of the IVR's prompt audio (the leg converts to the codec's rate).
const PROMPT_RATE: u32 = 16_000;
/// How long a transfer may take to report its outcome.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(32);
/// Most menus a configuration may have (a sanity bound).
const MAX_MENUS: usize = 256;
/// Most menus the caller can be nested in (protects against `submenu` cycles).
const MAX_DEPTH: usize = 32;

/// What a key does in a menu.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum IvrAction {
    /// Enter another menu.
    Submenu(String),
    /// Transfer the caller to a user (`alice`), a service user (`voicemail`) or a SIP URI.
    Transfer(String),
    /// Transfer the caller into the conference room `conf-<room>`.
    Conference(String),
    /// Transfer the caller to `<user>`'s mailbox to leave a message (`vm-<user>`).
    Voicemail(String),
    /// Play the menu again.
    Repeat,
    /// Return to the previous menu (the same menu at the top).
    Back,
    /// Say goodbye and hang up.
    Hangup,
}

/// One menu.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IvrMenu {
    /// What the menu says (a built-in prompt name or a file path).
    pub prompt: PromptRef,
    /// Keys (`0`-`9`, `*`, `#`, `A`-`D`) and what they do.
    pub choices: BTreeMap<String, IvrAction>,
    /// Seconds to wait for a key after the prompt ended.
    pub timeout_secs: u64,
    /// Failed attempts (no key, invalid key) before the IVR hangs up.
    pub retries: u32,
    /// Played after a key without a choice (and after a failed transfer).
    pub invalid_prompt: PromptRef,
    /// Played when no key came in time.
    pub timeout_prompt: PromptRef,
}

impl Default for IvrMenu {
    fn default() -> Self {
        IvrMenu {
            prompt: PromptRef::Builtin(Prompt::IvrWelcome),
            choices: BTreeMap::new(),
            timeout_secs: 6,
            retries: 3,
            invalid_prompt: PromptRef::Builtin(Prompt::IvrInvalid),
            timeout_prompt: PromptRef::Builtin(Prompt::IvrTimeout),
        }
    }
}

impl IvrMenu {
    /// The action for key `key`, if the menu has one.
    pub fn choice(&self, key: char) -> Option<&IvrAction> {
        let mut buf = [0u8; 4];
        let k: &str = key.encode_utf8(&mut buf);
        self.choices
            .get(k)
            .or_else(|| self.choices.get(&k.to_ascii_uppercase()))
    }
}

/// The `[ivr]` section: menus, prompts, choices and timeouts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IvrConfig {
    /// The menu `ivr@domain` enters.
    pub default_menu: String,
    /// Menus by name (`ivr-<name>@domain` enters one directly). Empty: the built-in demo.
    pub menus: BTreeMap<String, IvrMenu>,
    /// Played before hanging up.
    pub goodbye_prompt: PromptRef,
    /// Played before a transfer.
    pub transfer_prompt: PromptRef,
    /// How transfers are made: `refer` (REFER, bridging callers that refuse it) or `bridge`
    /// (always through the media server).
    pub transfer_mode: TransferMode,
}

/// How the IVR transfers callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferMode {
    /// REFER the caller to the target; bridge when the caller refuses the REFER.
    #[default]
    Refer,
    /// Call the target from the media server and bridge the audio of both calls.
    Bridge,
}

impl Default for IvrConfig {
    fn default() -> Self {
        IvrConfig {
            default_menu: "main".to_owned(),
            menus: BTreeMap::new(),
            goodbye_prompt: PromptRef::Builtin(Prompt::IvrGoodbye),
            transfer_prompt: PromptRef::Builtin(Prompt::IvrTransfer),
            transfer_mode: TransferMode::Refer,
        }
    }
}

fn menu(prompt: Prompt, choices: &[(&str, IvrAction)]) -> IvrMenu {
    IvrMenu {
        prompt: PromptRef::Builtin(prompt),
        choices: choices
            .iter()
            .map(|(k, a)| ((*k).to_owned(), a.clone()))
            .collect(),
        ..IvrMenu::default()
    }
}

impl IvrConfig {
    /// The built-in demo, three levels deep:
    ///
    /// - `main` ("Welcome…"): 1 → `sales`, 2 → `support`, 3 → conference `lab`, 9 → transfer
    ///   to `voicemail` (retrieval), `#` repeat;
    /// - `sales`: 1 → transfer to `sales`, 2 → transfer to `accounts`, `*` back;
    /// - `support`: 0 → transfer to `operator`, 1 → `technical`, `*` back;
    /// - `technical`: 1 → transfer to `engineer`, 2 → voicemail of `engineer`, `*` back.
    pub fn demo_menus() -> BTreeMap<String, IvrMenu> {
        use IvrAction::*;
        let s = |v: &str| v.to_owned();
        BTreeMap::from([
            (
                s("main"),
                menu(
                    Prompt::IvrWelcome,
                    &[
                        ("1", Submenu(s("sales"))),
                        ("2", Submenu(s("support"))),
                        ("3", Conference(s("lab"))),
                        ("9", Transfer(s("voicemail"))),
                        ("#", Repeat),
                    ],
                ),
            ),
            (
                s("sales"),
                menu(
                    Prompt::IvrSales,
                    &[
                        ("1", Transfer(s("sales"))),
                        ("2", Transfer(s("accounts"))),
                        ("*", Back),
                        ("#", Repeat),
                    ],
                ),
            ),
            (
                s("support"),
                menu(
                    Prompt::IvrSupport,
                    &[
                        ("0", Transfer(s("operator"))),
                        ("1", Submenu(s("technical"))),
                        ("*", Back),
                        ("#", Repeat),
                    ],
                ),
            ),
            (
                s("technical"),
                menu(
                    Prompt::IvrTechnical,
                    &[
                        ("1", Transfer(s("engineer"))),
                        ("2", Voicemail(s("engineer"))),
                        ("*", Back),
                        ("#", Repeat),
                    ],
                ),
            ),
        ])
    }

    /// The menus in effect: the configured ones, or the demo when none are configured.
    pub fn effective_menus(&self) -> std::borrow::Cow<'_, BTreeMap<String, IvrMenu>> {
        if self.menus.is_empty() {
            std::borrow::Cow::Owned(Self::demo_menus())
        } else {
            std::borrow::Cow::Borrowed(&self.menus)
        }
    }

    /// Checks names, keys, submenu references and prompt files.
    pub fn validate(&self) -> Result<(), String> {
        let menus = self.effective_menus();
        if menus.len() > MAX_MENUS {
            return Err(format!("ivr: at most {MAX_MENUS} menus"));
        }
        if !menus.contains_key(&self.default_menu) {
            return Err(format!(
                "ivr.default_menu {:?} is not a menu",
                self.default_menu
            ));
        }
        for p in [&self.goodbye_prompt, &self.transfer_prompt] {
            p.check().map_err(|e| format!("ivr: {e}"))?;
        }
        for (name, m) in menus.iter() {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "ivr.menus: {name:?} must be letters, digits, - or _"
                ));
            }
            if name.to_ascii_lowercase().starts_with(BRIDGE_PREFIX) {
                return Err(format!(
                    "ivr.menus: {name:?}: names starting with {BRIDGE_PREFIX} are reserved"
                ));
            }
            if m.timeout_secs == 0 || m.timeout_secs > 600 {
                return Err(format!("ivr.menus.{name}.timeout_secs must be 1..=600"));
            }
            for p in [&m.prompt, &m.invalid_prompt, &m.timeout_prompt] {
                p.check().map_err(|e| format!("ivr.menus.{name}: {e}"))?;
            }
            for (key, action) in &m.choices {
                let mut chars = key.chars();
                let ok = matches!((chars.next(), chars.next()), (Some(c), None)
                    if c.is_ascii_digit() || matches!(c.to_ascii_uppercase(), '*' | '#' | 'A'..='D'));
                if !ok {
                    return Err(format!(
                        "ivr.menus.{name}.choices: {key:?} is not a DTMF key"
                    ));
                }
                match action {
                    IvrAction::Submenu(s) if !menus.contains_key(s) => {
                        return Err(format!("ivr.menus.{name}.choices.{key}: no menu {s:?}"));
                    }
                    IvrAction::Transfer(t) | IvrAction::Conference(t) | IvrAction::Voicemail(t)
                        if t.trim().is_empty() =>
                    {
                        return Err(format!("ivr.menus.{name}.choices.{key}: empty target"));
                    }
                    IvrAction::Transfer(t) if t.contains(':') && t.parse::<Uri>().is_err() => {
                        return Err(format!(
                            "ivr.menus.{name}.choices.{key}: {t:?} is not a SIP URI"
                        ));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// Where a transfer action sends the caller.
pub fn transfer_target(action: &IvrAction, domain: &str) -> Option<Uri> {
    let user = |u: &str| Some(Uri::sip(Some(u), Host::Domain(domain.to_owned()), None));
    match action {
        IvrAction::Transfer(t) if t.contains(':') => t.parse().ok(),
        IvrAction::Transfer(t) => user(t.trim()),
        IvrAction::Conference(room) => user(&format!("conf-{}", room.trim())),
        IvrAction::Voicemail(u) => user(&format!("vm-{}", u.trim())),
        _ => None,
    }
}

/// How a menu step ended.
enum Step {
    /// The caller chose this action.
    Chose(IvrAction),
    /// Out of retries.
    GiveUp,
    /// The call ended.
    Hangup,
}

/// How a transfer ended.
#[derive(Debug, PartialEq, Eq)]
enum Transfer {
    /// The caller is connected to the target (or left).
    Done,
    /// It did not work; back to the menu.
    Failed,
}

/// Serves one INVITE to `ivr@domain` (`menu` = `None`) or `ivr-<menu>@domain`: answers it and
/// walks the caller through the menus (404 for an unknown menu).
pub async fn handle(ctx: Arc<MediaCtx>, mut leg: Leg, menu: Option<String>) {
    if let Some(token) = menu.as_deref().and_then(|m| m.strip_prefix(BRIDGE_PREFIX)) {
        // The target of a bridged transfer, called by our own third-party call.
        let waiting = lock_bridges().remove(token);
        match waiting {
            Some(tx) => {
                if let Err(mut leg) = tx.send(leg) {
                    leg.reject(480, "Transfer Abandoned");
                }
            }
            None => leg.reject(404, "No Such Transfer"),
        }
        return;
    }
    let cfg = &ctx.config().ivr;
    let menus = cfg.effective_menus().into_owned();
    let start = menu.unwrap_or_else(|| cfg.default_menu.clone());
    let Some(start) = menus
        .keys()
        .find(|k| k.eq_ignore_ascii_case(&start))
        .cloned()
    else {
        leg.reject(404, "No Such Menu");
        return;
    };
    if let Err(e) = leg.answer().await {
        tracing::debug!(error = %e, "ivr: answer failed");
        return;
    }
    tracing::info!(caller = %leg.caller(), menu = %start, "ivr: call");
    let mut stack = vec![start];
    while let Some(name) = stack.last().cloned() {
        let Some(menu) = menus.get(&name) else {
            break;
        };
        match run_menu(&mut leg, menu).await {
            Step::Hangup => return,
            Step::GiveUp => break,
            Step::Chose(action) => {
                tracing::info!(caller = %leg.caller(), menu = %name, ?action, "ivr: choice");
                match &action {
                    IvrAction::Repeat => {}
                    IvrAction::Back => {
                        if stack.len() > 1 {
                            stack.pop();
                        }
                    }
                    IvrAction::Hangup => break,
                    IvrAction::Submenu(s) => {
                        if menus.contains_key(s) && stack.len() < MAX_DEPTH {
                            stack.push(s.clone());
                        }
                    }
                    IvrAction::Transfer(_) | IvrAction::Conference(_) | IvrAction::Voicemail(_) => {
                        let Some(target) = transfer_target(&action, ctx.domain()) else {
                            if play(&mut leg, &menu.invalid_prompt).await.is_err() {
                                return;
                            }
                            continue;
                        };
                        match transfer(&ctx, &mut leg, &target).await {
                            Transfer::Done => return,
                            Transfer::Failed => {
                                if play(&mut leg, &menu.invalid_prompt).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    let _ = play(&mut leg, &cfg.goodbye_prompt).await;
    leg.hangup().await;
}

/// Plays a prompt to its end (keys pressed meanwhile are ignored); `Err` when the call ended.
async fn play(leg: &mut Leg, prompt: &PromptRef) -> Result<(), ()> {
    let source = match prompt.source(PROMPT_RATE) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "ivr: prompt");
            return Ok(());
        }
    };
    let mut done = leg.play(source);
    loop {
        tokio::select! {
            _ = &mut done => return if leg.is_ended() { Err(()) } else { Ok(()) },
            ev = leg.next_event() => match ev {
                Some(LegEvent::Hangup) | None => return Err(()),
                Some(_) => {}
            }
        }
    }
}

/// One menu: prompt, key, retries.
async fn run_menu(leg: &mut Leg, menu: &IvrMenu) -> Step {
    let mut failures = 0u32;
    loop {
        let source = match PromptPlayer::new(PROMPT_RATE).and_then(|p| p.prompt_ref(&menu.prompt)) {
            Ok(p) => Box::new(p),
            Err(e) => {
                tracing::warn!(error = %e, "ivr: menu prompt");
                return Step::GiveUp;
            }
        };
        let key = match leg.play_interruptible(source).await {
            PlayResult::Hangup => return Step::Hangup,
            PlayResult::Digit(d) => Some(d),
            PlayResult::Finished => {
                let timeout = Duration::from_secs(menu.timeout_secs.max(1));
                let got = leg.collect_digits(1, None, timeout, timeout).await;
                if got.hangup {
                    return Step::Hangup;
                }
                got.digits.chars().next()
            }
        };
        let retry_prompt = match key {
            Some(k) => match menu.choice(k) {
                Some(action) => return Step::Chose(action.clone()),
                None => &menu.invalid_prompt,
            },
            None => &menu.timeout_prompt,
        };
        failures += 1;
        if failures >= menu.retries.max(1) {
            return Step::GiveUp;
        }
        if play(leg, retry_prompt).await.is_err() {
            return Step::Hangup;
        }
    }
}

/// The status code in a `message/sipfrag` body (`SIP/2.0 200 OK`).
fn sipfrag_status(body: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(body).ok()?;
    let line = text.lines().next()?.trim();
    let rest = line.strip_prefix("SIP/2.0 ")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Transfers the caller with REFER and follows the NOTIFYs.
async fn transfer(ctx: &Arc<MediaCtx>, leg: &mut Leg, target: &Uri) -> Transfer {
    let cfg = &ctx.config().ivr;
    if play(leg, &cfg.transfer_prompt).await.is_err() {
        return Transfer::Done;
    }
    if cfg.transfer_mode == TransferMode::Bridge {
        return bridge(ctx, leg, target).await;
    }
    let referred_by = leg.target().clone();
    let headers = vec![
        (HeaderName::ReferTo, format!("<{target}>")),
        (HeaderName::ReferredBy, format!("<{referred_by}>")),
    ];
    tracing::info!(caller = %leg.caller(), %target, "ivr: REFER");
    match leg
        .request(Method::Refer, headers, None, Bytes::new())
        .await
    {
        Ok(r) if (200..300).contains(&r.status) => {}
        Ok(r) => {
            tracing::info!(status = r.status, "ivr: REFER refused, bridging");
            return bridge(ctx, leg, target).await;
        }
        Err(e) => {
            tracing::info!(error = %e, "ivr: REFER failed");
            return if leg.is_ended() {
                Transfer::Done
            } else {
                bridge(ctx, leg, target).await
            };
        }
    }
    let deadline = tokio::time::Instant::now() + TRANSFER_TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, leg.next_event()).await {
            Err(_) => {
                tracing::info!(%target, "ivr: transfer timed out");
                return Transfer::Failed;
            }
            Ok(Some(LegEvent::Hangup)) | Ok(None) => return Transfer::Done,
            Ok(Some(LegEvent::Notify { event, body, .. }))
                if event.eq_ignore_ascii_case("refer") =>
            {
                match sipfrag_status(&body) {
                    Some(s) if (200..300).contains(&s) => {
                        tracing::info!(%target, "ivr: transferred");
                        leg.hangup().await;
                        return Transfer::Done;
                    }
                    Some(s) if s >= 300 => {
                        tracing::info!(%target, status = s, "ivr: transfer failed");
                        return Transfer::Failed;
                    }
                    _ => {}
                }
            }
            Ok(Some(_)) => {}
        }
    }
}

/// Request-URI users `ivr-bridge-<token>` are the far ends of bridged transfers.
const BRIDGE_PREFIX: &str = "bridge-";
/// Rate of the audio passed between two bridged legs.
const BRIDGE_RATE: u32 = 16_000;
/// Most audio buffered between two bridged legs (the rest is dropped, oldest first).
const BRIDGE_MAX_BUFFER: usize = BRIDGE_RATE as usize / 5;

type BridgeTable = HashMap<String, oneshot::Sender<Leg>>;

/// Transfers waiting for their target's leg, by token.
fn lock_bridges() -> std::sync::MutexGuard<'static, BridgeTable> {
    static BRIDGES: OnceLock<Mutex<BridgeTable>> = OnceLock::new();
    BRIDGES
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Removes a waiting transfer when the bridging attempt ends.
struct BridgeSlot(String);

impl Drop for BridgeSlot {
    fn drop(&mut self) {
        lock_bridges().remove(&self.0);
    }
}

/// One direction of a bridge: what one leg receives, the other leg sends.
#[derive(Clone, Default)]
struct Pipe(Arc<Mutex<VecDeque<i16>>>);

impl Pipe {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<i16>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl PlaybackDevice for Pipe {
    fn rate(&self) -> u32 {
        BRIDGE_RATE
    }

    fn write_frame(&mut self, pcm: &[i16]) -> Result<(), DeviceError> {
        let mut q = self.lock();
        q.extend(pcm.iter().copied());
        let excess = q.len().saturating_sub(BRIDGE_MAX_BUFFER);
        q.drain(..excess);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }
}

impl CaptureDevice for Pipe {
    fn rate(&self) -> u32 {
        BRIDGE_RATE
    }

    fn read_frame(&mut self, out: &mut [i16]) -> Result<bool, DeviceError> {
        let mut q = self.lock();
        let n = q.len().min(out.len());
        for (slot, v) in out.iter_mut().zip(q.drain(..n)) {
            *slot = v;
        }
        out[n..].fill(0);
        Ok(true)
    }
}

/// Transfers by calling the target from the media server (a third-party call between the
/// target and `ivr-bridge-<token>`, which lands back here) and passing the audio between the
/// two legs until either side hangs up.
async fn bridge(ctx: &Arc<MediaCtx>, caller: &mut Leg, target: &Uri) -> Transfer {
    let token = random_tag();
    let (tx, mut rx) = oneshot::channel();
    lock_bridges().insert(token.clone(), tx);
    let _slot = BridgeSlot(token.clone());
    let meet = ctx.aor(&format!("ivr-{BRIDGE_PREFIX}{token}"));
    tracing::info!(caller = %caller.caller(), %target, "ivr: bridging");
    let call = InternalCall::start(
        Arc::clone(ctx),
        target.clone(),
        meet,
        Some(caller.caller().clone()),
    );
    let mut other = loop {
        tokio::select! {
            got = &mut rx => match got {
                Ok(leg) => break leg,
                Err(_) => return Transfer::Failed,
            },
            ev = caller.next_event() => {
                if matches!(ev, Some(LegEvent::Hangup) | None) {
                    return Transfer::Done;
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                let info = call.info();
                if info.state.is_final() {
                    tracing::info!(%target, reason = ?info.reason, "ivr: bridged transfer failed");
                    return Transfer::Failed;
                }
            }
        }
    };
    if let Err(e) = other.answer().await {
        tracing::info!(error = %e, "ivr: bridge leg not answered");
        return Transfer::Failed;
    }
    let (to_caller, to_target) = (Pipe::default(), Pipe::default());
    caller.set_devices(Box::new(to_caller.clone()), Box::new(to_target.clone()));
    other.set_devices(Box::new(to_target), Box::new(to_caller));
    tracing::info!(caller = %caller.caller(), %target, "ivr: bridged");
    loop {
        tokio::select! {
            ev = caller.next_event() => {
                if matches!(ev, Some(LegEvent::Hangup) | None) {
                    other.hangup().await;
                    return Transfer::Done;
                }
            }
            ev = other.next_event() => {
                if matches!(ev, Some(LegEvent::Hangup) | None) {
                    caller.hangup().await;
                    return Transfer::Done;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_menus_are_valid_and_three_deep() {
        let cfg = IvrConfig::default();
        cfg.validate().unwrap();
        let menus = cfg.effective_menus();
        assert_eq!(
            menus["main"].choice('2'),
            Some(&IvrAction::Submenu("support".into()))
        );
        assert_eq!(
            menus["support"].choice('1'),
            Some(&IvrAction::Submenu("technical".into()))
        );
        assert_eq!(
            menus["technical"].choice('1'),
            Some(&IvrAction::Transfer("engineer".into()))
        );
        assert_eq!(menus["technical"].choice('5'), None);
    }

    #[test]
    fn config_parses_from_toml() {
        let cfg: IvrConfig = toml::from_str(
            r##"
            default_menu = "top"
            [menus.top]
            prompt = "ivr-welcome"
            timeout_secs = 3
            retries = 2
            choices = { 1 = { submenu = "next" }, "#" = "repeat", 0 = "hangup", 5 = { transfer = "sip:bob@example.org" } }
            [menus.next]
            prompt = "ivr-sales"
            choices = { "*" = "back", 2 = { conference = "lab" }, 3 = { voicemail = "carol" } }
            "##,
        )
        .unwrap();
        cfg.validate().unwrap();
        let top = &cfg.menus["top"];
        assert_eq!(top.timeout_secs, 3);
        assert_eq!(top.retries, 2);
        assert_eq!(top.choice('#'), Some(&IvrAction::Repeat));
        assert_eq!(top.invalid_prompt, PromptRef::Builtin(Prompt::IvrInvalid));
        let next = &cfg.menus["next"];
        let d = "lab.test";
        assert_eq!(
            transfer_target(next.choice('2').unwrap(), d)
                .unwrap()
                .to_string(),
            "sip:conf-lab@lab.test"
        );
        assert_eq!(
            transfer_target(next.choice('3').unwrap(), d)
                .unwrap()
                .to_string(),
            "sip:vm-carol@lab.test"
        );
        assert_eq!(
            transfer_target(top.choice('5').unwrap(), d)
                .unwrap()
                .to_string(),
            "sip:bob@example.org"
        );
        assert_eq!(transfer_target(&IvrAction::Back, d), None);
    }

    #[test]
    fn bad_configs_are_refused() {
        let bad = [
            r#"default_menu = "nope""#,
            "[menus.a]\nchoices = { 1 = { submenu = \"b\" } }",
            "default_menu = \"a\"\n[menus.a]\nchoices = { 11 = \"repeat\" }",
            "default_menu = \"a\"\n[menus.a]\nchoices = { X = \"repeat\" }",
            "default_menu = \"a\"\n[menus.a]\ntimeout_secs = 0",
            "default_menu = \"a\"\n[menus.a]\nprompt = \"/nonexistent/x.opus\"",
            "default_menu = \"a\"\n[menus.a]\nchoices = { 1 = { transfer = \"\" } }",
            "default_menu = \"a\"\n[menus.a]\nchoices = { 1 = { transfer = \"sip:\" } }",
            "default_menu = \"bridge-x\"\n[menus.bridge-x]",
        ];
        for text in bad {
            let cfg: IvrConfig = toml::from_str(text).unwrap();
            assert!(cfg.validate().is_err(), "accepted: {text}");
        }
        assert!(toml::from_str::<IvrConfig>("[menus.a]\nchoices = { 1 = \"fly\" }").is_err());
        assert!(toml::from_str::<IvrConfig>("[menus.a]\nbogus = 1").is_err());
        assert!(toml::from_str::<IvrConfig>("transfer_mode = \"teleport\"").is_err());
        let c: IvrConfig = toml::from_str("transfer_mode = \"bridge\"").unwrap();
        assert_eq!(c.transfer_mode, TransferMode::Bridge);
    }

    #[test]
    fn sipfrag_status_lines() {
        assert_eq!(sipfrag_status(b"SIP/2.0 200 OK\r\n"), Some(200));
        assert_eq!(sipfrag_status(b"SIP/2.0 180 Ringing"), Some(180));
        assert_eq!(sipfrag_status(b"SIP/2.0 486 Busy Here\r\nX: y"), Some(486));
        assert_eq!(sipfrag_status(b"HTTP/1.1 200 OK"), None);
        assert_eq!(sipfrag_status(b"\xff\xfe"), None);
        assert_eq!(sipfrag_status(b""), None);
    }
}
